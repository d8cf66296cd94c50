"""Golden fixtures for rtb-detection: torchvision's AnchorGenerator, BoxCoder, Matcher,
FeaturePyramidNetwork + LastLevelMaxPool, RPNHead and RegionProposalNetwork.filter_proposals
(eval mode), and mmdetection 2.x's AnchorGenerator and MaxIoUAssigner rules reimplemented
below from mmdet 2.x's source (mmdet/core/anchor/anchor_generator.py,
mmdet/core/bbox/assigners/max_iou_assigner.py), since mmdet is not installed here.

    python3 -m venv /work/venvs/golden
    /work/venvs/golden/bin/pip install -r crates/detection/tests/golden/requirements.txt
    /work/venvs/golden/bin/python crates/detection/tests/golden/make_golden.py

Files (tensors float32 unless noted; integer results int64):
  anchors.safetensors   tv.<level>, mmdet.<level>: [H*W*A, 4] anchors over a 96x160 batch
  box_coder.safetensors <w>.{proposals, gt, targets, deltas, decoded} for weights rpn / roi
  matcher.safetensors   <case>.{iou, tv, mmdet}: IoU [G, N], torchvision matches (-1 / -2 / g)
                        and mmdet gt_inds (0 / -1 / g+1)
  fpn.safetensors       weights under torchvision's names, c2..c5, p2..p6
  rpn.safetensors       head weights, features, objectness / deltas per level, anchors,
                        proposals and scores per image
  rpn_mmdet.safetensors proposals and scores per image of mmdet 2.x's RPNHead._get_bboxes
                        (reimplemented below) on rpn.safetensors' head outputs
"""

import math
import os

import torch
from safetensors.torch import save_file
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection._utils import BoxCoder, Matcher
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import (
    RegionProposalNetwork,
    RPNHead,
    concat_box_prediction_layers,
)
from torchvision.ops import FeaturePyramidNetwork, batched_nms, box_iou
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

OUT = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(20261207)
torch.set_num_threads(1)

STRIDES = [4, 8, 16, 32, 64]
RATIOS = [0.5, 1.0, 2.0]


def grids_of(h, w):
    """Feature sizes of P2..P6 over an (h, w) batch padded to 32 (P6 = P5 subsampled by 2)."""
    sizes = [(h // s, w // s) for s in STRIDES[:4]]
    h5, w5 = sizes[-1]
    sizes.append(((h5 + 1) // 2, (w5 + 1) // 2))
    return sizes


def mmdet_anchors(grid_sizes):
    """mmdet 2.x AnchorGenerator(strides=STRIDES, ratios=RATIOS, scales=[8]): base anchors
    (gen_single_level_base_anchors, scale_major, centre offset 0) shifted by
    single_level_grid_priors (row-major meshgrid)."""
    out = []
    scales = torch.Tensor([8])
    ratios = torch.Tensor(RATIOS)
    for stride, (fh, fw) in zip(STRIDES, grid_sizes):
        w = h = stride
        x_center = 0.0 * w
        y_center = 0.0 * h
        h_ratios = torch.sqrt(ratios)
        w_ratios = 1 / h_ratios
        ws = (w * w_ratios[:, None] * scales[None, :]).view(-1)
        hs = (h * h_ratios[:, None] * scales[None, :]).view(-1)
        base = torch.stack(
            [x_center - 0.5 * ws, y_center - 0.5 * hs, x_center + 0.5 * ws, y_center + 0.5 * hs],
            dim=-1,
        )
        shift_x = torch.arange(0, fw) * stride
        shift_y = torch.arange(0, fh) * stride
        xx = shift_x.repeat(shift_y.shape[0])
        yy = shift_y.view(-1, 1).repeat(1, shift_x.shape[0]).view(-1)
        shifts = torch.stack([xx, yy, xx, yy], dim=-1).type_as(base)
        out.append((base[None, :, :] + shifts[:, None, :]).view(-1, 4))
    return out


def tv_anchor_generator():
    return AnchorGenerator(tuple((8 * s,) for s in STRIDES), (tuple(RATIOS),) * len(STRIDES))


def anchors():
    h, w = 96, 160  # P5 3x5, P6 2x3: torchvision's P6 strides are 96 // 2 = 48, 160 // 3 = 53
    grid_sizes = grids_of(h, w)
    images = ImageList(torch.zeros(1, 3, h, w), [(h, w)])
    feats = [torch.zeros(1, 1, gh, gw) for gh, gw in grid_sizes]
    tv = tv_anchor_generator()(images, feats)[0]
    counts = [gh * gw * 3 for gh, gw in grid_sizes]
    tensors = {}
    for level, chunk in enumerate(tv.split(counts)):
        tensors[f"tv.{level}"] = chunk.contiguous()
    for level, chunk in enumerate(mmdet_anchors(grid_sizes)):
        tensors[f"mmdet.{level}"] = chunk.contiguous()
    tensors["image_size"] = torch.tensor([h, w], dtype=torch.int64)
    save_file(tensors, os.path.join(OUT, "anchors.safetensors"))


def random_boxes(n, size=200.0, min_side=2.0):
    xy = torch.rand(n, 2) * size
    wh = torch.rand(n, 2) * size / 2 + min_side
    return torch.cat([xy, xy + wh], dim=1)


def box_coder():
    tensors = {}
    for name, weights in [("rpn", (1.0, 1.0, 1.0, 1.0)), ("roi", (10.0, 10.0, 5.0, 5.0))]:
        coder = BoxCoder(weights)
        proposals = random_boxes(64)
        gt = random_boxes(64)
        targets = coder.encode_single(gt, proposals)
        deltas = torch.randn(64, 8) * 2
        deltas[:4, 2:4] = torch.tensor([[6.0, -6.0], [-9.0, 9.0], [4.2, 4.0], [-4.2, -4.0]])
        decoded = coder.decode_single(deltas, proposals)
        tensors.update(
            {
                f"{name}.proposals": proposals,
                f"{name}.gt": gt,
                f"{name}.targets": targets,
                f"{name}.deltas": deltas,
                f"{name}.decoded": decoded,
            }
        )
    save_file(tensors, os.path.join(OUT, "box_coder.safetensors"))


def mmdet_assign(overlaps, pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3):
    """MaxIoUAssigner.assign_wrt_overlaps with gt_max_assign_all=True, match_low_quality=True."""
    num_gts, num_bboxes = overlaps.shape
    assigned = overlaps.new_full((num_bboxes,), -1, dtype=torch.long)
    if num_gts == 0:
        assigned[:] = 0
        return assigned
    max_overlaps, argmax_overlaps = overlaps.max(dim=0)
    gt_max_overlaps, _ = overlaps.max(dim=1)
    assigned[(max_overlaps >= 0) & (max_overlaps < neg_iou_thr)] = 0
    pos = max_overlaps >= pos_iou_thr
    assigned[pos] = argmax_overlaps[pos] + 1
    for i in range(num_gts):
        if gt_max_overlaps[i] >= min_pos_iou:
            assigned[overlaps[i, :] == gt_max_overlaps[i]] = i + 1
    return assigned


def matcher():
    tensors = {}
    tv = Matcher(0.7, 0.3, allow_low_quality_matches=True)
    cases = {}
    # Random boxes around a few ground truths: every category occurs.
    gt = random_boxes(5, size=100.0, min_side=10.0)
    jitter = gt.repeat(40, 1) + torch.randn(200, 4) * 8
    jitter[:, 2:] = torch.maximum(jitter[:, 2:], jitter[:, :2] + 1)
    cases["random"] = box_iou(gt, torch.cat([jitter, random_boxes(100)]))
    # Ties: two predictions share a ground truth's highest IoU; a prediction is the best of
    # two ground truths; a ground truth whose best IoU is low (0.2: torchvision matches it,
    # mmdet with min_pos_iou 0.3 does not), and one with IoU 0 everywhere.
    cases["ties"] = torch.tensor(
        [
            [0.9, 0.6, 0.6, 0.1, 0.0, 0.0],
            [0.8, 0.5, 0.1, 0.65, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.2, 0.1],
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    cases["single_gt"] = torch.tensor([[0.25, 0.1, 0.25, 0.75, 0.3, 0.29]])
    for name, iou in cases.items():
        tensors[f"{name}.iou"] = iou.contiguous()
        tensors[f"{name}.tv"] = tv(iou)
        tensors[f"{name}.mmdet"] = mmdet_assign(iou)
    save_file(tensors, os.path.join(OUT, "matcher.safetensors"))


def randomize(module, scale=0.2):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * scale)


def fpn():
    in_channels = [8, 16, 24, 32]
    fpn = FeaturePyramidNetwork(in_channels, 16, extra_blocks=LastLevelMaxPool()).eval()
    randomize(fpn)
    # C2..C5 of a 64x84 input (odd C5 width: P6 rounds up), batch 2.
    sizes = [(16, 21), (8, 11), (4, 6), (2, 3)]
    feats = {f"c{i + 2}": torch.randn(2, c, h, w) for i, (c, (h, w)) in enumerate(zip(in_channels, sizes))}
    with torch.no_grad():
        out = fpn(dict(feats))
    tensors = {k: v.contiguous() for k, v in fpn.state_dict().items()}
    tensors.update(feats)
    for i, v in enumerate(out.values()):
        tensors[f"p{i + 2}"] = v.contiguous()
    save_file(tensors, os.path.join(OUT, "fpn.safetensors"))


def rpn():
    channels = 8
    h, w = 128, 192
    image_sizes = [(120, 180), (128, 150)]
    grid_sizes = grids_of(h, w)
    head = RPNHead(channels, 3).eval()
    randomize(head, 0.3)
    rpn = RegionProposalNetwork(
        tv_anchor_generator(),
        head,
        0.7,
        0.3,
        256,
        0.5,
        dict(training=2000, testing=1000),
        dict(training=2000, testing=1000),
        0.7,
        score_thresh=0.0,
    ).eval()
    feats = [torch.randn(2, channels, gh, gw) for gh, gw in grid_sizes]
    images = ImageList(torch.zeros(2, 3, h, w), image_sizes)
    tensors = {f"head.{k}": v.contiguous() for k, v in head.state_dict().items()}
    with torch.no_grad():
        objectness, deltas = rpn.head(feats)
        anchors = rpn.anchor_generator(images, feats)
        num_anchors_per_level = [o[0].numel() for o in objectness]
        for level, (f, o, d) in enumerate(zip(feats, objectness, deltas)):
            tensors[f"features.{level}"] = f
            tensors[f"objectness.{level}"] = o.contiguous()
            tensors[f"deltas.{level}"] = d.contiguous()
        flat_obj, flat_deltas = concat_box_prediction_layers(objectness, deltas)
        proposals = rpn.box_coder.decode(flat_deltas, anchors).view(2, -1, 4)
        boxes, scores = rpn.filter_proposals(proposals, flat_obj, image_sizes, num_anchors_per_level)
        # The forward pass gives the same boxes.
        forward_boxes, _ = rpn(images, dict(enumerate(feats)))
        for i in range(2):
            assert torch.equal(forward_boxes[i], boxes[i])
            tensors[f"proposals.{i}"] = boxes[i].contiguous()
            tensors[f"scores.{i}"] = scores[i].contiguous()
    tensors["image_sizes"] = torch.tensor(image_sizes, dtype=torch.int64)
    save_file(tensors, os.path.join(OUT, "rpn.safetensors"))
    mmdet_proposals(objectness, deltas, grid_sizes, image_sizes)


def delta2bbox(rois, deltas, max_shape, wh_ratio_clip=16 / 1000):
    """mmdet 2.x DeltaXYWHBBoxCoder.decode (delta2bbox) with means 0, stds 1, clip_border."""
    dx, dy, dw, dh = deltas[:, 0], deltas[:, 1], deltas[:, 2], deltas[:, 3]
    max_ratio = abs(math.log(wh_ratio_clip))
    dw = dw.clamp(min=-max_ratio, max=max_ratio)
    dh = dh.clamp(min=-max_ratio, max=max_ratio)
    px = (rois[:, 0] + rois[:, 2]) * 0.5
    py = (rois[:, 1] + rois[:, 3]) * 0.5
    pw = rois[:, 2] - rois[:, 0]
    ph = rois[:, 3] - rois[:, 1]
    gw = pw * dw.exp()
    gh = ph * dh.exp()
    gx = px + pw * dx
    gy = py + ph * dy
    x1 = (gx - gw * 0.5).clamp(min=0, max=max_shape[1])
    y1 = (gy - gh * 0.5).clamp(min=0, max=max_shape[0])
    x2 = (gx + gw * 0.5).clamp(min=0, max=max_shape[1])
    y2 = (gy + gh * 0.5).clamp(min=0, max=max_shape[0])
    return torch.stack([x1, y1, x2, y2], dim=-1)


def mmdet_proposals(objectness, deltas, grid_sizes, image_sizes, nms_pre=1000, max_per_img=1000):
    """mmdet 2.x RPNHead._get_bboxes (test cfg: nms_pre 1000, max_per_img 1000, nms 0.7,
    min_bbox_size 0) on the same head outputs, with mmdet's anchors; torchvision's batched_nms
    stands in for mmcv's (same rule: NMS per level id, result sorted by score)."""
    anchors = mmdet_anchors(grid_sizes)
    tensors = {}
    for i, img_shape in enumerate(image_sizes):
        mlvl_scores, mlvl_deltas, mlvl_anchors, level_ids = [], [], [], []
        for idx, (obj, reg) in enumerate(zip(objectness, deltas)):
            scores = obj[i].permute(1, 2, 0).reshape(-1).sigmoid()
            reg = reg[i].permute(1, 2, 0).reshape(-1, 4)
            level_anchors = anchors[idx]
            if scores.shape[0] > nms_pre:
                ranked_scores, rank_inds = scores.sort(descending=True)
                topk_inds = rank_inds[:nms_pre]
                scores = ranked_scores[:nms_pre]
                reg = reg[topk_inds, :]
                level_anchors = level_anchors[topk_inds, :]
            mlvl_scores.append(scores)
            mlvl_deltas.append(reg)
            mlvl_anchors.append(level_anchors)
            level_ids.append(scores.new_full((scores.size(0),), idx, dtype=torch.long))
        scores = torch.cat(mlvl_scores)
        proposals = delta2bbox(torch.cat(mlvl_anchors), torch.cat(mlvl_deltas), img_shape)
        ids = torch.cat(level_ids)
        keep = batched_nms(proposals, scores, ids, 0.7)[:max_per_img]
        tensors[f"proposals.{i}"] = proposals[keep].contiguous()
        tensors[f"scores.{i}"] = scores[keep].contiguous()
    save_file(tensors, os.path.join(OUT, "rpn_mmdet.safetensors"))


if __name__ == "__main__":
    anchors()
    box_coder()
    matcher()
    fpn()
    rpn()
