"""Golden fixture for Mask R-CNN end to end: torchvision's MaskRCNN class (eval mode) around a
tiny torchvision-style ResNet body (torchvision's Bottleneck blocks; stem 8, widths 4, 8, 8,
16, depths 1, 2, 1, 1: rtb-models' ResNetConfig::tiny() without classifier) wrapped in
BackboneWithFPN (16 channels), slim heads (box MLP 32, mask convs 8), 3 foreground classes,
seeded random weights and BatchNorm statistics.

The transform neither resizes nor normalises: image_mean 0, std 1, and min_size / max_size
chosen so that the scale of both images is exactly 1 (bilinear interpolation at scale 1 is
the identity). Detections are capped at 10 per image to keep the fixture small.

    /work/venvs/golden/bin/python crates/detection/tests/golden/make_golden_mask_rcnn.py

File mask_rcnn.safetensors (float32):
  the model's state dict under torchvision's keys (backbone.body.*, backbone.fpn.*, rpn.*,
  roi_heads.*; BatchNorm num_batches_tracked dropped)
  image.<i>                       the two images [3, h_i, w_i] (40x56 and 48x40)
  proposals.<i>                   RPN proposals of image i in eval mode [K_i, 4]
  boxes.<i>, scores.<i>, labels.<i> (int64, 1-based), masks.<i> [D_i, h_i, w_i] (pasted
                                  probabilities) of model(images)
  train.gt.<i>.{boxes, labels (int64, 1-based), masks (uint8)}  ground truth of image i
  train.proposals.<i>             RPN proposals in training mode (2000 / 2000)
  train.rpn_pos.<i>, train.rpn_neg.<i>   anchors torchvision's RPN sampler drew (int64)
  train.rois.<i>, train.roi_matched.<i>, train.roi_labels.<i>   the RoIs its RoI sampler drew,
                                  their matched ground truth and label (0: background)
  train.loss.<name>               the five losses of model(images, targets) with the
                                  backbone body in eval mode (BatchNorm running statistics)
"""

import os

import torch
from safetensors.torch import save_file
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.resnet import Bottleneck

OUT = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(20261209)
torch.set_num_threads(1)


class TinyResNet(nn.Module):
    """torchvision's ResNet layout with free widths (its ResNet class fixes them to 64..512)."""

    def __init__(self, stem=8, widths=(4, 8, 8, 16), depths=(1, 2, 1, 1)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = stem
        for s, (width, depth) in enumerate(zip(widths, depths)):
            blocks = []
            for i in range(depth):
                stride = 2 if (s > 0 and i == 0) else 1
                down = None
                if stride != 1 or inplanes != width * 4:
                    down = nn.Sequential(
                        nn.Conv2d(inplanes, width * 4, 1, stride, bias=False), nn.BatchNorm2d(width * 4)
                    )
                blocks.append(Bottleneck(inplanes, width, stride, down))
                inplanes = width * 4
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def main():
    body = TinyResNet()
    backbone = BackboneWithFPN(
        body, {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}, [16, 32, 32, 64], 16
    )
    model = MaskRCNN(
        backbone,
        num_classes=None,
        min_size=40,
        max_size=56,
        image_mean=[0.0, 0.0, 0.0],
        image_std=[1.0, 1.0, 1.0],
        box_head=TwoMLPHead(16 * 7 * 7, 32),
        box_predictor=FastRCNNPredictor(32, 4),
        box_detections_per_img=10,
        mask_head=MaskRCNNHeads(16, (8, 8, 8, 8), 1),
        mask_predictor=MaskRCNNPredictor(8, 8, 4),
    ).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            # Slim class logits keep scores well apart from 1 (saturated softmax gives ties).
            scale = 0.3 if name.startswith("backbone") else 0.1
            if name.startswith("roi_heads.box"):
                scale = 0.04
            p.copy_(torch.randn_like(p) * scale)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn_like(b) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand_like(b) + 0.5)
    images = [torch.rand(3, 40, 56), torch.rand(3, 48, 40)]
    tensors = {k: v.contiguous() for k, v in model.state_dict().items() if "num_batches_tracked" not in k}
    with torch.no_grad():
        out = model(images)
        batch, _ = model.transform(images)
        assert list(batch.image_sizes) == [(40, 56), (48, 40)], batch.image_sizes
        assert tuple(batch.tensors.shape[-2:]) == (64, 64)
        features = model.backbone(batch.tensors)
        proposals, _ = model.rpn(batch, features)
    for i in range(2):
        tensors[f"image.{i}"] = images[i]
        tensors[f"proposals.{i}"] = proposals[i].contiguous()
        tensors[f"boxes.{i}"] = out[i]["boxes"].contiguous()
        tensors[f"scores.{i}"] = out[i]["scores"].contiguous()
        tensors[f"labels.{i}"] = out[i]["labels"].contiguous()
        tensors[f"masks.{i}"] = out[i]["masks"][:, 0].contiguous()
        print(i, proposals[i].shape, out[i]["boxes"].shape, out[i]["labels"].tolist(), out[i]["scores"].tolist())
    train(model, images, tensors)
    save_file(tensors, os.path.join(OUT, "mask_rcnn.safetensors"))


class Recorder:
    """Wraps a sampler or method and keeps what it returned."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = []

    def __call__(self, *args, **kwargs):
        out = self.inner(*args, **kwargs)
        self.calls.append(out)
        return out


def box_masks(h, w, boxes):
    masks = torch.zeros(len(boxes), h, w, dtype=torch.uint8)
    for j, (x1, y1, x2, y2) in enumerate(boxes):
        masks[j, y1:y2, x1:x2] = 1
    return masks


def train(model, images, tensors):
    model.train()
    model.backbone.body.eval()
    gts = [
        ([[4, 6, 30, 30], [20, 10, 54, 38]], [1, 3]),
        ([[6, 4, 36, 44]], [2]),
    ]
    targets = []
    for i, (boxes, labels) in enumerate(gts):
        h, w = images[i].shape[-2:]
        t = {
            "boxes": torch.tensor(boxes, dtype=torch.float32),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "masks": box_masks(h, w, boxes),
        }
        targets.append(t)
        for k, v in t.items():
            tensors[f"train.gt.{i}.{k}"] = v
    rpn_sampler = Recorder(model.rpn.fg_bg_sampler)
    model.rpn.fg_bg_sampler = rpn_sampler
    select = Recorder(model.roi_heads.select_training_samples)
    model.roi_heads.select_training_samples = select
    filter_proposals = Recorder(model.rpn.filter_proposals)
    model.rpn.filter_proposals = filter_proposals
    torch.manual_seed(5)
    losses = model(images, targets)
    pos, neg = rpn_sampler.calls[0]
    boxes, _ = filter_proposals.calls[0]
    rois, matched, labels, _ = select.calls[0]
    for i in range(2):
        tensors[f"train.proposals.{i}"] = boxes[i].detach().contiguous()
        tensors[f"train.rpn_pos.{i}"] = torch.where(pos[i])[0]
        tensors[f"train.rpn_neg.{i}"] = torch.where(neg[i])[0]
        tensors[f"train.rois.{i}"] = rois[i].detach().contiguous()
        tensors[f"train.roi_matched.{i}"] = matched[i]
        tensors[f"train.roi_labels.{i}"] = labels[i]
    names = {
        "loss_objectness": "objectness",
        "loss_rpn_box_reg": "rpn_box",
        "loss_classifier": "classifier",
        "loss_box_reg": "box_reg",
        "loss_mask": "mask",
    }
    for k, v in losses.items():
        tensors[f"train.loss.{names[k]}"] = v.detach().reshape(1)
    print({k: v.item() for k, v in losses.items()}, [r.shape for r in rois], [p.sum().item() for p in pos])


if __name__ == "__main__":
    main()
