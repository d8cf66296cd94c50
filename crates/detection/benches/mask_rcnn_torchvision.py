"""The peer of benches/mask_rcnn.rs: torchvision's maskrcnn_resnet50_fpn on the CPU.

- infer: one 800×1333 image (the transform's resize is disabled: min_size 800, max_size 1333
  keep the size), eval mode, torch.inference_mode();
- train: one step at batch 2 (two 800×1333 images, 4 boxes with masks each), the five losses,
  backward, SGD with momentum (trainable_backbone_layers=3: stem and stage 1 frozen,
  FrozenBatchNorm2d, as torchvision builds it around pretrained weights).

Seeded random weights (weights=None, weights_backbone=None). Stack: requirements.txt beside
tests/golden/make_golden.py.

    python mask_rcnn_torchvision.py --threads 2 --steps 3 [infer|train]
"""

import argparse
import time

import torch
import torchvision
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops.misc import FrozenBatchNorm2d

HEIGHT, WIDTH = 800, 1333


def model():
    # What maskrcnn_resnet50_fpn builds around pretrained weights (FrozenBatchNorm2d, stem and
    # stage 1 frozen), with seeded random weights: the builder itself would make every layer
    # trainable with plain BatchNorm when no weights are given.
    torch.manual_seed(0)
    resnet = torchvision.models.resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    backbone = _resnet_fpn_extractor(resnet, trainable_layers=3)
    return MaskRCNN(backbone, num_classes=91)


def image(seed):
    g = torch.Generator().manual_seed(seed)
    # The transform normalises; keep pixel values in [0, 1] like a decoded image.
    return torch.rand(3, HEIGHT, WIDTH, generator=g)


def target():
    boxes = torch.tensor(
        [[100, 120, 400, 500], [600, 80, 900, 300], [300, 450, 1200, 780], [1000, 100, 1300, 400]],
        dtype=torch.float32,
    )
    masks = torch.zeros(4, HEIGHT, WIDTH, dtype=torch.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
        masks[i, y1:y2, x1:x2] = 1
    return {"boxes": boxes, "labels": torch.tensor([1, 6, 18, 43]), "masks": masks}


def infer(steps):
    net = model().eval()
    x = [image(0)]
    with torch.inference_mode():
        net(x)
        start = time.perf_counter()
        for _ in range(steps):
            out = net(x)
        seconds = (time.perf_counter() - start) / steps
    print(f"infer: {seconds:.3f} s/image ({1 / seconds:.3f} images/s), {len(out[0]['boxes'])} detections")


def train(steps):
    net = model().train()
    params = [p for p in net.parameters() if p.requires_grad]
    sgd = torch.optim.SGD(params, lr=0.02, momentum=0.9, weight_decay=1e-4)
    xs = [image(0), image(1)]
    ts = [target(), target()]

    def step():
        losses = net(xs, ts)
        total = sum(losses.values())
        sgd.zero_grad()
        total.backward()
        sgd.step()
        return total.item()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    seconds = (time.perf_counter() - start) / steps
    print(f"train: {seconds:.3f} s/step of 2 images ({2 / seconds:.3f} images/s), loss {loss:.4f}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("cases", nargs="*", default=["infer", "train"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if "infer" in args.cases:
        infer(args.steps)
    if "train" in args.cases:
        train(args.steps)


if __name__ == "__main__":
    main()
