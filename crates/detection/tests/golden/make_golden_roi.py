"""Golden fixtures for rtb-detection's RoI heads: torchvision's MultiScaleRoIAlign (box 7x7
and mask 14x14, sampling_ratio 2), TwoMLPHead + FastRCNNPredictor and
RoIHeads.postprocess_detections (eval mode), MaskRCNNHeads + MaskRCNNPredictor,
project_masks_on_boxes / maskrcnn_loss, fastrcnn_loss on given (already sampled) proposals,
and paste_masks_in_image. Shared random weights, small sizes.

    /work/venvs/golden/bin/pip install -r crates/detection/tests/golden/requirements.txt
    /work/venvs/golden/bin/python crates/detection/tests/golden/make_golden_roi.py

Files (float32 unless noted; integer results int64, bitmaps uint8):
  roi_heads.safetensors
    p2..p5             features [2, C, H_l, W_l] of a 160x160 batch (strides 4..32)
    image_shapes       int64 [2, 2] (h, w) of each image before padding
    proposals.<i>      [K, 4] proposals of image i
    pooled_box         [2K, C, 7, 7] MultiScaleRoIAlign(7, sampling 2) of both images' proposals
    pooled_mask        [2K, C, 14, 14] the same at 14x14
    levels             int64 [2K] torchvision's LevelMapper levels (0..3)
    box_head.*, box_predictor.*, mask_head.*, mask_predictor.*   weights (torchvision names)
    class_logits, box_regression   box branch outputs on pooled_box
    det.<i>.{boxes, scores, labels} postprocess_detections of image i
    det_mask_logits    [12, classes, 28, 28] mask branch on the first detections (both images)
    gt.<i>.{boxes, labels, masks}   ground truth of image i (masks uint8 [G, h, w])
    train.<i>.proposals            proposals of image i used as the sampled set
    train.<i>.{matched_idxs, labels, regression_targets}
    train.class_logits, train.box_regression, train.loss_classifier, train.loss_box_reg
    train.mask_targets, train.loss_mask   (positives only, in image order)
    mmdet_det.<i>.{boxes, scores, labels}  mmdet 2.x's get_bboxes + multiclass_nms (rewritten
                       below) on the same head outputs under mmdet's class order (labels 0-based)
    train.mmdet_mask_targets  mmdet 2.x's mask_target (rewritten below) of the same positives
  paste.safetensors
    masks [M, 1, 28, 28] probabilities, boxes [M, 4], pasted [M, 1, 64, 80],
    mmdet_pasted [M, 64, 80] (mmdet 2.x's _do_paste_mask, skip_empty=False, rewritten below)

mmdet is not installed here: its rules are rewritten from mmdet 2.x's source
(mmdet/core/bbox/coder/delta_xywh_bbox_coder.py delta2bbox, mmdet/core/post_processing/
bbox_nms.py multiclass_nms with mmcv's batched_nms coordinate offsets, mmdet/core/mask/
mask_target.py + BitmapMasks.crop_and_resize, mmdet/models/roi_heads/mask_heads/
fcn_mask_head.py _do_paste_mask); mmcv's CPU nms is replaced by torchvision's, which keeps
the same boxes (IoU > threshold suppresses, no +1 offset).
"""

import math
import os

import torch
from safetensors.torch import save_file
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import (
    RoIHeads,
    fastrcnn_loss,
    maskrcnn_loss,
    paste_masks_in_image,
    project_masks_on_boxes,
)
from torchvision.ops import MultiScaleRoIAlign, nms, roi_align
from torchvision.ops.poolers import LevelMapper

OUT = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(20261208)
torch.set_num_threads(1)

C = 4  # feature channels
REP = 32  # box head representation
CLASSES = 4  # with background (torchvision counts it)
MASK_CH = 8
K = 48  # proposals per image
IMAGE_SHAPES = [(160, 160), (144, 152)]


def random_boxes(n, h, w, lo=6.0, hi=500.0):
    cx = torch.rand(n) * w
    cy = torch.rand(n) * h
    side = torch.exp(torch.empty(n).uniform_(torch.log(torch.tensor(lo)), torch.log(torch.tensor(hi))))
    ratio = torch.exp(torch.empty(n).uniform_(-0.7, 0.7))
    bw, bh = side * ratio, side / ratio
    return torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)


def clustered(n, h, w):
    """Boxes inside the image around a few centres, so that NMS has work to do."""
    base = random_boxes(4, h, w, 20.0, 90.0)
    base[:, 0::2] = base[:, 0::2].clamp(0, w - 1)
    base[:, 1::2] = base[:, 1::2].clamp(0, h - 1)
    idx = torch.randint(0, 4, (n,))
    jitter = torch.randn(n, 4) * 4.0
    out = base[idx] + jitter
    x1 = torch.minimum(out[:, 0], out[:, 2] - 2)
    y1 = torch.minimum(out[:, 1], out[:, 3] - 2)
    return torch.stack([x1, y1, out[:, 2], out[:, 3]], 1)


def mmdet_delta2bbox(rois, deltas, max_shape, stds=(0.1, 0.1, 0.2, 0.2)):
    m = deltas.size(1) // 4
    stds = deltas.new_tensor(stds).view(1, -1).repeat(1, m)
    denorm = deltas * stds
    dx, dy, dw, dh = denorm[:, 0::4], denorm[:, 1::4], denorm[:, 2::4], denorm[:, 3::4]
    max_ratio = abs(math.log(16 / 1000))
    dw = dw.clamp(min=-max_ratio, max=max_ratio)
    dh = dh.clamp(min=-max_ratio, max=max_ratio)
    px = ((rois[:, 0] + rois[:, 2]) * 0.5).unsqueeze(1).expand_as(dx)
    py = ((rois[:, 1] + rois[:, 3]) * 0.5).unsqueeze(1).expand_as(dy)
    pw = (rois[:, 2] - rois[:, 0]).unsqueeze(1).expand_as(dw)
    ph = (rois[:, 3] - rois[:, 1]).unsqueeze(1).expand_as(dh)
    gw, gh = pw * dw.exp(), ph * dh.exp()
    gx, gy = px + pw * dx, py + ph * dy
    x1 = (gx - gw * 0.5).clamp(min=0, max=max_shape[1])
    y1 = (gy - gh * 0.5).clamp(min=0, max=max_shape[0])
    x2 = (gx + gw * 0.5).clamp(min=0, max=max_shape[1])
    y2 = (gy + gh * 0.5).clamp(min=0, max=max_shape[0])
    return torch.stack([x1, y1, x2, y2], dim=-1).view(deltas.size())


def mmdet_multiclass_nms(multi_bboxes, multi_scores, score_thr=0.05, iou_thr=0.5, max_num=100):
    num_classes = multi_scores.size(1) - 1
    bboxes = multi_bboxes.view(multi_scores.size(0), -1, 4)
    scores = multi_scores[:, :-1]
    labels = torch.arange(num_classes).view(1, -1).expand_as(scores)
    bboxes, scores, labels = bboxes.reshape(-1, 4), scores.reshape(-1), labels.reshape(-1)
    inds = (scores > score_thr).nonzero(as_tuple=False).squeeze(1)
    bboxes, scores, labels = bboxes[inds], scores[inds], labels[inds]
    # mmcv batched_nms: offset each class's boxes by (max coordinate + 1) · class.
    offsets = labels.to(bboxes) * (bboxes.max() + 1)
    keep = nms(bboxes + offsets[:, None], scores, iou_thr)[:max_num]
    return bboxes[keep], scores[keep], labels[keep]


def mmdet_mask_target(proposals, assigned, gt_masks, size=28):
    h, w = gt_masks.shape[-2:]
    p = proposals.clone()
    p[:, [0, 2]] = p[:, [0, 2]].clamp(0, w)
    p[:, [1, 3]] = p[:, [1, 3]].clamp(0, h)
    rois = torch.cat([torch.arange(p.shape[0]).to(p)[:, None], p], 1)
    masks = gt_masks.index_select(0, assigned)[:, None].to(p)
    targets = roi_align(masks, rois, (size, size), 1.0, 0, True)[:, 0]
    return (targets >= 0.5).to(torch.float32)


def mmdet_do_paste_mask(masks, boxes, img_h, img_w):
    x0, y0, x1, y1 = torch.split(boxes, 1, dim=1)
    n = masks.shape[0]
    img_y = torch.arange(0, img_h).to(torch.float32) + 0.5
    img_x = torch.arange(0, img_w).to(torch.float32) + 0.5
    img_y = (img_y - y0) / (y1 - y0) * 2 - 1
    img_x = (img_x - x0) / (x1 - x0) * 2 - 1
    img_x[torch.isinf(img_x)] = 0
    img_y[torch.isinf(img_y)] = 0
    gx = img_x[:, None, :].expand(n, img_y.size(1), img_x.size(1))
    gy = img_y[:, :, None].expand(n, img_y.size(1), img_x.size(1))
    grid = torch.stack([gx, gy], dim=3)
    return torch.nn.functional.grid_sample(masks.to(torch.float32), grid, align_corners=False)[:, 0]


def main():
    feats = {f"p{i + 2}": torch.randn(2, C, 160 // s, 160 // s) for i, s in enumerate([4, 8, 16, 32])}
    keys = ["0", "1", "2", "3"]
    x = {k: feats[f"p{i + 2}"] for i, k in enumerate(keys)}
    proposals = [torch.cat([random_boxes(K // 2, h, w), clustered(K // 2, h, w)]) for h, w in IMAGE_SHAPES]

    box_pool = MultiScaleRoIAlign(keys, 7, 2)
    mask_pool = MultiScaleRoIAlign(keys, 14, 2)
    pooled_box = box_pool(x, proposals, IMAGE_SHAPES)
    pooled_mask = mask_pool(x, proposals, IMAGE_SHAPES)
    mapper = LevelMapper(2, 5)
    levels = mapper(proposals)

    box_head = TwoMLPHead(C * 49, REP)
    box_predictor = FastRCNNPredictor(REP, CLASSES)
    mask_head = MaskRCNNHeads(C, [MASK_CH] * 4, 1)
    mask_predictor = MaskRCNNPredictor(MASK_CH, MASK_CH, CLASSES)
    with torch.no_grad():
        # Spread the class scores and deltas so that thresholds, NMS and clipping all act.
        box_predictor.cls_score.weight.mul_(6.0)
        box_predictor.bbox_pred.weight.mul_(2.0)
        for p in list(mask_head.parameters()) + list(mask_predictor.parameters()):
            p.add_(torch.randn_like(p) * 0.05)
    heads = RoIHeads(
        box_pool, box_head, box_predictor,
        0.5, 0.5, 512, 0.25, None,
        0.05, 0.5, 100,
        mask_roi_pool=mask_pool, mask_head=mask_head, mask_predictor=mask_predictor,
    ).eval()

    out = {**feats}
    out["image_shapes"] = torch.tensor(IMAGE_SHAPES, dtype=torch.int64)
    for i, p in enumerate(proposals):
        out[f"proposals.{i}"] = p
    out["pooled_box"] = pooled_box
    out["pooled_mask"] = pooled_mask
    out["levels"] = levels.to(torch.int64)
    for name, module in [
        ("box_head", box_head), ("box_predictor", box_predictor),
        ("mask_head", mask_head), ("mask_predictor", mask_predictor),
    ]:
        for k, v in module.state_dict().items():
            out[f"{name}.{k}"] = v.clone()

    with torch.no_grad():
        feats_box = box_head(pooled_box)
        class_logits, box_regression = box_predictor(feats_box)
        out["class_logits"] = class_logits
        out["box_regression"] = box_regression
        result, _ = heads(x, proposals, IMAGE_SHAPES)
        for i, r in enumerate(result):
            out[f"det.{i}.boxes"] = r["boxes"]
            out[f"det.{i}.scores"] = r["scores"]
            out[f"det.{i}.labels"] = r["labels"]
        # mmdet's flavor on the same weights: background last, no background deltas.
        cls_mm = torch.cat([class_logits[:, 1:], class_logits[:, :1]], 1)
        reg_mm = box_regression[:, 4:]
        start = 0
        for i, (p, shape) in enumerate(zip(proposals, IMAGE_SHAPES)):
            k = p.shape[0]
            scores = torch.softmax(cls_mm[start : start + k], 1)
            boxes = mmdet_delta2bbox(p, reg_mm[start : start + k], shape)
            b, sc, lab = mmdet_multiclass_nms(boxes, scores)
            out[f"mmdet_det.{i}.boxes"] = b
            out[f"mmdet_det.{i}.scores"] = sc
            out[f"mmdet_det.{i}.labels"] = lab.to(torch.int64)
            start += k
        det_boxes = [r["boxes"] for r in result]
        mask_feats = mask_pool(x, det_boxes, IMAGE_SHAPES)
        out["det_mask_logits"] = mask_predictor(mask_head(mask_feats))[:12]

    # Training losses on given (already sampled) proposals.
    train_props, gt_boxes, gt_labels, gt_masks = [], [], [], []
    for i, (h, w) in enumerate(IMAGE_SHAPES):
        g = 3
        boxes = random_boxes(g, h, w, 24.0, 80.0)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w - 1)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h - 1)
        labels = torch.randint(1, CLASSES, (g,))
        masks = torch.zeros(g, h, w, dtype=torch.uint8)
        yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        for j, b in enumerate(boxes):
            cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
            rx, ry = (b[2] - b[0]) / 2, (b[3] - b[1]) / 2
            masks[j] = (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1).to(torch.uint8)
        # Proposals: jittered copies of the gts (positives), random ones, and the gts.
        jit = boxes.repeat(4, 1) + torch.randn(4 * g, 4) * 5.0
        props = torch.cat([jit, random_boxes(20, h, w, 8.0, 200.0), boxes])
        train_props.append(props)
        gt_boxes.append(boxes)
        gt_labels.append(labels)
        gt_masks.append(masks)
        out[f"gt.{i}.boxes"] = boxes
        out[f"gt.{i}.labels"] = labels.to(torch.int64)
        out[f"gt.{i}.masks"] = masks
        out[f"train.{i}.proposals"] = props

    heads.train()
    matched_idxs, labels = heads.assign_targets_to_proposals(train_props, gt_boxes, gt_labels)
    matched_gt = [g[m] for g, m in zip(gt_boxes, matched_idxs)]
    regression_targets = heads.box_coder.encode(matched_gt, train_props)
    for i in range(2):
        out[f"train.{i}.matched_idxs"] = matched_idxs[i].to(torch.int64)
        out[f"train.{i}.labels"] = labels[i].to(torch.int64)
        out[f"train.{i}.regression_targets"] = regression_targets[i]
    with torch.no_grad():
        class_logits, box_regression = box_predictor(box_head(box_pool(x, train_props, IMAGE_SHAPES)))
        loss_cls, loss_box = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        out["train.class_logits"] = class_logits
        out["train.box_regression"] = box_regression
        out["train.loss_classifier"] = loss_cls.reshape(1)
        out["train.loss_box_reg"] = loss_box.reshape(1)
        pos_props, pos_matched = [], []
        for i in range(2):
            pos = torch.where(labels[i] > 0)[0]
            pos_props.append(train_props[i][pos])
            pos_matched.append(matched_idxs[i][pos])
        mask_logits = mask_predictor(mask_head(mask_pool(x, pos_props, IMAGE_SHAPES)))
        loss_mask = maskrcnn_loss(mask_logits, pos_props, gt_masks, gt_labels, pos_matched)
        targets = torch.cat(
            [project_masks_on_boxes(m, p, i, 28) for m, p, i in zip(gt_masks, pos_props, pos_matched)]
        )
        out["train.mask_targets"] = targets
        out["train.mmdet_mask_targets"] = torch.cat(
            [mmdet_mask_target(p, i, m) for m, p, i in zip(gt_masks, pos_props, pos_matched)]
        )
        out["train.loss_mask"] = loss_mask.reshape(1)
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(OUT, "roi_heads.safetensors"))

    # Pasting: a few masks into a 64x80 image, boxes inside, across the border and tiny.
    m = 6
    masks = torch.rand(m, 1, 28, 28)
    masks = torch.nn.functional.avg_pool2d(masks, 3, 1, 1)  # smooth, so bilinear shows
    boxes = torch.tensor(
        [
            [10.3, 5.7, 40.2, 30.9],
            [-8.5, -3.2, 20.4, 18.8],
            [50.1, 40.6, 95.3, 70.2],
            [30.0, 20.0, 31.5, 21.2],
            [0.0, 0.0, 80.0, 64.0],
            [22.9, 11.4, 57.6, 59.5],
        ]
    )
    pasted = paste_masks_in_image(masks, boxes, (64, 80), padding=1)
    save_file(
        {
            "masks": masks.contiguous(),
            "boxes": boxes,
            "pasted": pasted.contiguous(),
            "mmdet_pasted": mmdet_do_paste_mask(masks, boxes, 64, 80).contiguous(),
        },
        os.path.join(OUT, "paste.safetensors"),
    )


if __name__ == "__main__":
    main()
