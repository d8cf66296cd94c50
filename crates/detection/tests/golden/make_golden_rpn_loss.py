"""Golden fixture for the RPN's training losses: torchvision's
RegionProposalNetwork.assign_targets_to_anchors, its sampler and compute_loss on random head
outputs over a 64x96 batch of two images (the second without objects), plus mmdet 2.x's
box loss (L1, summed, divided by the sampled count) on the same sampled anchors.

    /work/venvs/golden/bin/python crates/detection/tests/golden/make_golden_rpn_loss.py

rtb samples with its own seeded sampler, so the fixture records torchvision's draws
(the sampler is run twice under the same torch seed: once to record, once inside
compute_loss) and the Rust test feeds them through `rpn_targets_sampled`.

File rpn_loss.safetensors (float32; integer results int64):
  objectness.<l>, deltas.<l>   head outputs per level [2, A, H, W], [2, 4A, H, W]
  gt.<i>                       ground-truth boxes of image i [G_i, 4]
  anchors                      anchors of one image, all levels [ΣHWA, 4]
  matches.<i>                  torchvision matcher result per anchor (g / -1 / -2)
  pos.<i>, neg.<i>             sampled anchor indices of image i
  targets.<i>                  regression targets of the sampled positives of image i [P_i, 4]
  loss.objectness, loss.box    torchvision's losses; loss.box_mmdet the mmdet box loss
  grad.objectness.<l>, grad.deltas.<l>  gradients of (objectness + box) w.r.t. the head outputs
"""

import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead, concat_box_prediction_layers
from torchvision.ops import box_iou

OUT = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(20261208)
torch.set_num_threads(1)
STRIDES = [4, 8, 16, 32, 64]


def main():
    h, w = 64, 96
    grids = [(h // s, w // s) for s in STRIDES[:4]] + [(1, 2)]
    gen = AnchorGenerator(tuple((8 * s,) for s in STRIDES), ((0.5, 1.0, 2.0),) * 5)
    rpn = RegionProposalNetwork(
        gen, RPNHead(8, 3), 0.7, 0.3, 256, 0.5,
        dict(training=2000, testing=1000), dict(training=2000, testing=1000), 0.7,
    ).train()
    objectness = [(torch.randn(2, 3, gh, gw) * 2).requires_grad_() for gh, gw in grids]
    deltas = [(torch.randn(2, 12, gh, gw) * 0.5).requires_grad_() for gh, gw in grids]
    feats = [torch.zeros(2, 1, gh, gw) for gh, gw in grids]
    images = ImageList(torch.zeros(2, 3, h, w), [(60, 90), (64, 80)])
    anchors = gen(images, feats)
    gts = [
        torch.tensor([[5.0, 10.0, 30.0, 40.0], [20.0, 15.0, 75.0, 60.0], [50.0, 25.0, 65.0, 45.0], [0.0, 0.0, 10.0, 6.0]]),
        torch.zeros(0, 4),
    ]
    targets = [{"boxes": g} for g in gts]
    labels, matched = rpn.assign_targets_to_anchors(anchors, targets)
    regression = rpn.box_coder.encode(matched, anchors)
    tensors = {"anchors": anchors[0].contiguous()}
    torch.manual_seed(7)
    pos, neg = rpn.fg_bg_sampler(labels)
    for i in range(2):
        tensors[f"gt.{i}"] = gts[i]
        if gts[i].numel() > 0:
            m = rpn.proposal_matcher(box_iou(gts[i], anchors[i]))
        else:
            m = torch.full((anchors[i].shape[0],), -1, dtype=torch.int64)
        tensors[f"matches.{i}"] = m
        tensors[f"pos.{i}"] = torch.where(pos[i])[0]
        tensors[f"neg.{i}"] = torch.where(neg[i])[0]
        tensors[f"targets.{i}"] = regression[i][pos[i].bool()].contiguous()
    flat_obj, flat_deltas = concat_box_prediction_layers(objectness, deltas)
    torch.manual_seed(7)
    obj_loss, box_loss = rpn.compute_loss(flat_obj, flat_deltas, labels, regression)
    (obj_loss + box_loss).backward()
    pos_all = torch.where(torch.cat(pos))[0]
    sampled = pos_all.numel() + torch.cat(neg).sum()
    box_mmdet = F.l1_loss(flat_deltas[pos_all], torch.cat(regression)[pos_all], reduction="sum") / sampled
    tensors["loss.objectness"] = obj_loss.detach().reshape(1)
    tensors["loss.box"] = box_loss.detach().reshape(1)
    tensors["loss.box_mmdet"] = box_mmdet.detach().reshape(1)
    for l in range(5):
        tensors[f"objectness.{l}"] = objectness[l].detach().contiguous()
        tensors[f"deltas.{l}"] = deltas[l].detach().contiguous()
        tensors[f"grad.objectness.{l}"] = objectness[l].grad.contiguous()
        tensors[f"grad.deltas.{l}"] = deltas[l].grad.contiguous()
    save_file(tensors, os.path.join(OUT, "rpn_loss.safetensors"))


if __name__ == "__main__":
    main()
