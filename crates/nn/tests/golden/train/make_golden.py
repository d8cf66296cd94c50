"""Golden fixtures for rtb-nn's detection ops, losses, optimizers, schedules and clipping.

Run with the pinned stack (requirements-train.txt) from this folder:

    python3 -m venv /work/venvs/nn-train
    /work/venvs/nn-train/bin/pip install -r requirements-train.txt
    /work/venvs/nn-train/bin/python make_golden.py

Writes *.safetensors next to this script. The references are torchvision (roi_align,
MultiScaleRoIAlign, nms, batched_nms, box_iou, BoxCoder), torch.nn.functional (losses),
torch.optim (SGD, AdamW), torch.optim.lr_scheduler and torch.nn.utils.clip_grad_norm_.
Two references are not installable next to torch 2.15 (mmcv 1.x / mmdet 2.x need their
compiled ops); their formulas are written out below, each cross-checked against the torch
counterpart where one exists:
  * mmdet's DeltaXYWHBBoxCoder (bbox2delta / delta2bbox of mmdet 2.x), checked against
    torchvision's BoxCoder(weights=1/stds) where the two agree (deltas inside the clamp);
  * mmdet's level rule of SingleRoIExtractor.map_roi_levels;
  * mmcv's LrUpdaterHook formulas (warmup, poly with min_lr, cosine with min_lr), checked
    against torch's LinearLR / PolynomialLR / CosineAnnealingLR where min_lr = 0.
"""

import math
import os

import numpy as np
import torch
import torchvision
from safetensors.torch import save_file
from torchvision.ops import MultiScaleRoIAlign, batched_nms, box_iou, nms, roi_align
from torchvision.ops.boxes import _batched_nms_coordinate_trick, _batched_nms_vanilla
from torchvision.models.detection._utils import BoxCoder

HERE = os.path.dirname(os.path.abspath(__file__))
torch.set_num_threads(1)


def save(name, tensors):
    missing = [k for k, v in tensors.items() if v is None]
    assert not missing, f"no value for {missing}"
    tensors = {k: v.detach().clone().contiguous() for k, v in tensors.items()}
    save_file(tensors, os.path.join(HERE, name))


def random_rois(gen, count, batch, height, width, dtype):
    """RoIs in image coordinates: ordinary, partly outside, degenerate, tiny, huge."""
    x1 = torch.rand(count, generator=gen, dtype=torch.float64) * width * 1.1 - 0.05 * width
    y1 = torch.rand(count, generator=gen, dtype=torch.float64) * height * 1.1 - 0.05 * height
    w = torch.rand(count, generator=gen, dtype=torch.float64) * width * 0.7
    h = torch.rand(count, generator=gen, dtype=torch.float64) * height * 0.7
    b = torch.randint(0, batch, (count,), generator=gen).to(torch.float64)
    rois = torch.stack([b, x1, y1, x1 + w, y1 + h], 1)
    rois[0, 1:] = torch.tensor([0.0, 0.0, width, height], dtype=torch.float64)  # whole map
    rois[1, 1:] = torch.tensor([3.0, 2.0, 3.0, 2.0], dtype=torch.float64)  # a point
    rois[2, 1:] = torch.tensor([5.0, 4.0, 5.5, 4.2], dtype=torch.float64)  # tiny
    rois[3, 1:] = torch.tensor([-30.0, -20.0, 10.0, 8.0], dtype=torch.float64)  # outside
    rois[4, 1:] = torch.tensor([width - 2.0, height - 1.0, width + 25.0, height + 30.0], dtype=torch.float64)
    rois[5, 1:] = torch.tensor([6.0, 7.0, 2.0, 3.0], dtype=torch.float64)  # inverted
    return rois.to(dtype)


def roi_align_fixtures():
    gen = torch.Generator().manual_seed(1)
    cases = [
        # (name, output (h, w), spatial_scale, sampling_ratio, aligned)
        ("aligned_adaptive", (7, 7), 0.5, 0, True),
        ("legacy_sampling2", (3, 4), 0.25, 2, False),
        ("aligned_sampling3", (5, 3), 1.0, 3, True),
        ("legacy_adaptive", (2, 2), 0.5, -1, False),
    ]
    out = {}
    for dtype, tag in [(torch.float32, "f32"), (torch.float64, "f64")]:
        features = torch.randn(2, 3, 12, 15, generator=gen, dtype=torch.float64).to(dtype)
        rois = random_rois(gen, 16, 2, 24, 30, dtype)
        out[f"{tag}.features"] = features
        out[f"{tag}.rois"] = rois
        for name, size, scale, sampling, aligned in cases:
            f = features.clone().requires_grad_(True)
            pooled = roi_align(f, rois, size, spatial_scale=scale, sampling_ratio=sampling, aligned=aligned)
            grad_out = torch.randn(pooled.shape, generator=gen, dtype=torch.float64).to(dtype)
            (pooled * grad_out).sum().backward()
            out[f"{tag}.{name}.output"] = pooled
            out[f"{tag}.{name}.grad_output"] = grad_out
            out[f"{tag}.{name}.grad_features"] = f.grad
            out[f"{tag}.{name}.config"] = torch.tensor(
                [size[0], size[1], scale, sampling, float(aligned)], dtype=torch.float64
            )
    save("roi_align.safetensors", out)


def mmdet_levels(rois, num_levels, finest_scale=56):
    scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
    levels = torch.floor(torch.log2(scale / finest_scale + 1e-6))
    return levels.clamp(min=0, max=num_levels - 1).long()


def multiscale_fixtures():
    gen = torch.Generator().manual_seed(2)
    image = (128, 160)
    strides = [4, 8, 16, 32]
    names = ["p2", "p3", "p4", "p5"]
    feats = {
        n: torch.randn(2, 4, image[0] // s, image[1] // s, generator=gen) for n, s in zip(names, strides)
    }
    # Sizes spread over all levels (sqrt(area) from ~8 to ~600 pixels).
    count = 40
    centre = torch.rand(count, 2, generator=gen) * torch.tensor([image[1], image[0]])
    side = torch.exp(torch.rand(count, generator=gen) * math.log(600 / 8)) * 8
    aspect = torch.exp((torch.rand(count, generator=gen) - 0.5) * 1.4)
    w, h = side * aspect, side / aspect
    boxes = torch.stack([centre[:, 0] - w / 2, centre[:, 1] - h / 2, centre[:, 0] + w / 2, centre[:, 1] + h / 2], 1)
    batch = torch.randint(0, 2, (count,), generator=gen).float()
    # Boxes exactly on mmdet level boundaries (sqrt(area) = 112, 224, 448).
    boxes[0] = torch.tensor([10.0, 10.0, 122.0, 122.0])
    boxes[1] = torch.tensor([0.0, 0.0, 224.0, 224.0])
    boxes[2] = torch.tensor([5.0, 5.0, 61.0, 61.0])
    boxes[3] = torch.tensor([-200.0, -180.0, 300.0, 320.0])
    rois = torch.cat([batch[:, None], boxes], 1)

    out = {"rois": rois, "strides": torch.tensor(strides, dtype=torch.float64)}
    for n in names:
        out[f"features.{n}"] = feats[n]

    # torchvision's MultiScaleRoIAlign (its own LevelMapper, aligned=False).
    pooler = MultiScaleRoIAlign(names, output_size=7, sampling_ratio=2)
    leaves = {n: f.clone().requires_grad_(True) for n, f in feats.items()}
    per_image = [boxes[batch == i] for i in range(2)]
    order = torch.cat([torch.nonzero(batch == i).flatten() for i in range(2)])
    pooled = pooler(leaves, per_image, [image, image])
    # torchvision returns RoIs image by image; put them back in input order.
    restored = torch.empty_like(pooled)
    restored[order] = pooled
    grad_out = torch.randn(restored.shape, generator=gen)
    (restored * grad_out).sum().backward()
    out["torchvision.output"] = restored
    out["torchvision.grad_output"] = grad_out
    for n in names:
        out[f"torchvision.grad.{n}"] = leaves[n].grad
    mapper = pooler.map_levels
    out["torchvision.levels"] = mapper([b for b in per_image])  # in image order
    out["torchvision.levels_input_order"] = torch.empty(count, dtype=torch.int64)
    out["torchvision.levels_input_order"][order] = out["torchvision.levels"].to(torch.int64)

    # mmdet's SingleRoIExtractor: mmdet's level rule, RoIAlign aligned=True, sampling 0, 7x7.
    levels = mmdet_levels(rois, 4)
    leaves = {n: f.clone().requires_grad_(True) for n, f in feats.items()}
    result = torch.zeros(count, 4, 7, 7)
    for lvl, (n, s) in enumerate(zip(names, strides)):
        idx = torch.nonzero(levels == lvl).flatten()
        if idx.numel() == 0:
            continue
        result[idx] = roi_align(leaves[n], rois[idx], 7, spatial_scale=1.0 / s, sampling_ratio=0, aligned=True)
    grad_out = torch.randn(result.shape, generator=gen)
    (result * grad_out).sum().backward()
    out["mmdet.levels"] = levels
    out["mmdet.output"] = result
    out["mmdet.grad_output"] = grad_out
    for n in names:
        out[f"mmdet.grad.{n}"] = leaves[n].grad
    save("multiscale_roi_align.safetensors", out)


def nms_fixtures():
    gen = torch.Generator().manual_seed(3)
    count = 300
    xy = torch.rand(count, 2, generator=gen) * 100
    wh = torch.rand(count, 2, generator=gen) * 40 + 1
    boxes = torch.cat([xy, xy + wh], 1)
    # Scores on a coarse grid so that ties occur; some exact duplicates of boxes too.
    scores = torch.randint(0, 40, (count,), generator=gen).float() / 40
    boxes[10] = boxes[11]
    scores[10] = scores[11]
    ids = torch.randint(0, 6, (count,), generator=gen)
    out = {"boxes": boxes, "scores": scores, "ids": ids}
    for thr in [0.3, 0.5, 0.7]:
        keep = batched_nms(boxes, scores, ids, thr)
        vanilla = _batched_nms_vanilla(boxes, scores, ids, thr)
        trick = _batched_nms_coordinate_trick(boxes, scores, ids, thr)
        # Same kept set; the per-id path (torchvision's choice above 4000 coordinates on the CPU)
        # orders tied scores arbitrarily, the offset path stably (input order).
        assert set(vanilla.tolist()) == set(trick.tolist()), "batched_nms paths keep different boxes"
        assert torch.equal(keep, trick)
        out[f"batched_keep_{int(thr * 10)}"] = keep
        out[f"nms_keep_{int(thr * 10)}"] = nms(boxes, scores, thr)
    a = boxes[:7]
    b = torch.cat([boxes[20:28], torch.tensor([[5.0, 5.0, 5.0, 9.0]])])  # a zero-area box
    out["iou_a"] = a
    out["iou_b"] = b
    out["iou"] = box_iou(a, b)
    save("nms.safetensors", out)


def mmdet_bbox2delta(proposals, gt, means, stds):
    px = (proposals[..., 0] + proposals[..., 2]) * 0.5
    py = (proposals[..., 1] + proposals[..., 3]) * 0.5
    pw = proposals[..., 2] - proposals[..., 0]
    ph = proposals[..., 3] - proposals[..., 1]
    gx = (gt[..., 0] + gt[..., 2]) * 0.5
    gy = (gt[..., 1] + gt[..., 3]) * 0.5
    gw = gt[..., 2] - gt[..., 0]
    gh = gt[..., 3] - gt[..., 1]
    deltas = torch.stack([(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)], -1)
    return (deltas - deltas.new_tensor(means)) / deltas.new_tensor(stds)


def mmdet_delta2bbox(rois, deltas, means, stds, max_shape, wh_ratio_clip=16 / 1000):
    reps = deltas.size(-1) // 4
    denorm = deltas * deltas.new_tensor(stds).repeat(reps) + deltas.new_tensor(means).repeat(reps)
    dx, dy, dw, dh = denorm[:, 0::4], denorm[:, 1::4], denorm[:, 2::4], denorm[:, 3::4]
    px = ((rois[:, 0] + rois[:, 2]) * 0.5)[:, None]
    py = ((rois[:, 1] + rois[:, 3]) * 0.5)[:, None]
    pw = (rois[:, 2] - rois[:, 0])[:, None]
    ph = (rois[:, 3] - rois[:, 1])[:, None]
    max_ratio = abs(math.log(wh_ratio_clip))
    dw = dw.clamp(min=-max_ratio, max=max_ratio)
    dh = dh.clamp(min=-max_ratio, max=max_ratio)
    gw, gh = pw * dw.exp(), ph * dh.exp()
    gx, gy = px + pw * dx, py + ph * dy
    boxes = torch.stack([gx - gw * 0.5, gy - gh * 0.5, gx + gw * 0.5, gy + gh * 0.5], -1).view(deltas.shape)
    if max_shape is not None:
        h, w = max_shape
        bound = torch.tensor([w, h, w, h], dtype=boxes.dtype).repeat(reps)
        boxes = torch.where(boxes < 0, torch.zeros_like(boxes), boxes)
        boxes = torch.where(boxes > bound, bound.expand_as(boxes), boxes)
    return boxes


def box_coder_fixtures():
    gen = torch.Generator().manual_seed(4)
    n = 25
    xy = torch.rand(n, 2, generator=gen) * 50
    wh = torch.rand(n, 2, generator=gen) * 30 + 2
    proposals = torch.cat([xy, xy + wh], 1)
    gxy = xy + torch.randn(n, 2, generator=gen) * 4
    gwh = wh * torch.exp(torch.randn(n, 2, generator=gen) * 0.4)
    gt = torch.cat([gxy, gxy + gwh], 1)
    means, stds = (0.0, 0.0, 0.0, 0.0), (0.1, 0.1, 0.2, 0.2)
    deltas = mmdet_bbox2delta(proposals, gt, means, stds)
    tv = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    tv_deltas = tv.encode_single(gt, proposals)
    assert torch.allclose(deltas, tv_deltas, atol=1e-5), "mmdet and torchvision encodings disagree"
    # Class-specific predictions (3 classes) with some dw, dh far outside the clamp.
    pred = torch.randn(n, 12, generator=gen) * 2
    pred[0, 2] = 40.0
    pred[1, 3] = -40.0
    decoded = mmdet_delta2bbox(proposals, pred, (0.0, 0.0, 0.0, 0.0), stds, (60, 70))
    # torchvision agrees where no clamp or clip applies.
    small = torch.randn(n, 4, generator=gen) * 0.5
    tv_decoded = tv.decode_single(small, proposals)
    mm_decoded = mmdet_delta2bbox(proposals, small, means, stds, None)
    assert torch.allclose(tv_decoded, mm_decoded, atol=1e-4), "mmdet and torchvision decodings disagree"
    means2 = (0.01, -0.02, 0.03, 0.0)
    save(
        "box_coder.safetensors",
        {
            "proposals": proposals,
            "gt": gt,
            "deltas_rcnn": deltas,
            "deltas_means": mmdet_bbox2delta(proposals, gt, means2, (1.0, 1.0, 1.0, 1.0)),
            "pred": pred,
            "decoded_clipped": decoded,
            "decoded_unclipped": mmdet_delta2bbox(proposals, pred, (0.0, 0.0, 0.0, 0.0), stds, None),
            "small": small,
            "decoded_small_torchvision": tv_decoded,
        },
    )


def loss_fixtures():
    gen = torch.Generator().manual_seed(5)
    out = {}
    for dtype, tag in [(torch.float32, "f32"), (torch.float64, "f64")]:
        # [N, C] with ignore_index and class weights.
        logits = torch.randn(9, 5, generator=gen, dtype=torch.float64).to(dtype) * 3
        targets = torch.randint(0, 5, (9,), generator=gen)
        targets[2] = -100
        targets[6] = -100
        weight = torch.rand(5, generator=gen, dtype=torch.float64).to(dtype) + 0.5
        out[f"{tag}.ce2d.logits"] = logits
        out[f"{tag}.ce2d.targets"] = targets
        out[f"{tag}.ce2d.weight"] = weight
        for reduction in ["mean", "sum", "none"]:
            for weighted in [False, True]:
                x = logits.clone().requires_grad_(True)
                loss = torch.nn.functional.cross_entropy(
                    x, targets, weight=weight if weighted else None, ignore_index=-100, reduction=reduction
                )
                proj = torch.randn(loss.shape, generator=gen, dtype=torch.float64).to(dtype)
                (loss * proj).sum().backward()
                key = f"{tag}.ce2d.{reduction}.{'w' if weighted else 'nw'}"
                out[f"{key}.loss"] = loss
                out[f"{key}.proj"] = proj
                out[f"{key}.grad"] = x.grad
        # [N, C, H, W] with ignore 255.
        logits = torch.randn(2, 4, 3, 5, generator=gen, dtype=torch.float64).to(dtype) * 2
        targets = torch.randint(0, 4, (2, 3, 5), generator=gen)
        targets[0, 1, 2:] = 255
        targets[1, 0, 0] = 255
        weight = torch.rand(4, generator=gen, dtype=torch.float64).to(dtype) + 0.5
        out[f"{tag}.ce4d.logits"] = logits
        out[f"{tag}.ce4d.targets"] = targets
        out[f"{tag}.ce4d.weight"] = weight
        for reduction in ["mean", "none"]:
            for weighted in [False, True]:
                x = logits.clone().requires_grad_(True)
                loss = torch.nn.functional.cross_entropy(
                    x, targets, weight=weight if weighted else None, ignore_index=255, reduction=reduction
                )
                proj = torch.randn(loss.shape, generator=gen, dtype=torch.float64).to(dtype)
                (loss * proj).sum().backward()
                key = f"{tag}.ce4d.{reduction}.{'w' if weighted else 'nw'}"
                out[f"{key}.loss"] = loss
                out[f"{key}.proj"] = proj
                out[f"{key}.grad"] = x.grad
        # BCE with logits, including 0 and ±100.
        logits = torch.randn(4, 6, generator=gen, dtype=torch.float64).to(dtype) * 4
        logits[0, 0], logits[0, 1], logits[0, 2], logits[0, 3] = 100.0, -100.0, 0.0, 30.0
        probs = torch.rand(4, 6, generator=gen, dtype=torch.float64).to(dtype)
        probs[1] = (probs[1] > 0.5).to(dtype)
        probs[0, 0], probs[0, 1] = 0.0, 1.0
        weight = torch.rand(4, 6, generator=gen, dtype=torch.float64).to(dtype)
        pos_weight = torch.rand(6, generator=gen, dtype=torch.float64).to(dtype) * 3
        out[f"{tag}.bce.logits"] = logits
        out[f"{tag}.bce.targets"] = probs
        out[f"{tag}.bce.weight"] = weight
        out[f"{tag}.bce.pos_weight"] = pos_weight
        for variant, kwargs in [
            ("plain", {}),
            ("weight", {"weight": weight}),
            ("pos_weight", {"pos_weight": pos_weight}),
        ]:
            for reduction in ["mean", "none"]:
                x = logits.clone().requires_grad_(True)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(x, probs, reduction=reduction, **kwargs)
                proj = torch.randn(loss.shape, generator=gen, dtype=torch.float64).to(dtype)
                (loss * proj).sum().backward()
                key = f"{tag}.bce.{variant}.{reduction}"
                out[f"{key}.loss"] = loss
                out[f"{key}.proj"] = proj
                out[f"{key}.grad"] = x.grad
        # L1 and smooth L1.
        pred = torch.randn(5, 4, generator=gen, dtype=torch.float64).to(dtype) * 2
        target = torch.randn(5, 4, generator=gen, dtype=torch.float64).to(dtype) * 2
        target[0, 0] = pred[0, 0]  # an exact zero difference: torch's sign(0) = 0
        out[f"{tag}.reg.pred"] = pred
        out[f"{tag}.reg.target"] = target
        for name, fn in [
            ("l1", lambda x, r: torch.nn.functional.l1_loss(x, target, reduction=r)),
            ("smooth_l1_b1", lambda x, r: torch.nn.functional.smooth_l1_loss(x, target, reduction=r, beta=1.0)),
            ("smooth_l1_b05", lambda x, r: torch.nn.functional.smooth_l1_loss(x, target, reduction=r, beta=0.5)),
            ("smooth_l1_b0", lambda x, r: torch.nn.functional.smooth_l1_loss(x, target, reduction=r, beta=0.0)),
        ]:
            for reduction in ["mean", "sum", "none"]:
                x = pred.clone().requires_grad_(True)
                loss = fn(x, reduction)
                proj = torch.randn(loss.shape, generator=gen, dtype=torch.float64).to(dtype)
                (loss * proj).sum().backward()
                key = f"{tag}.{name}.{reduction}"
                out[f"{key}.loss"] = loss
                out[f"{key}.proj"] = proj
                out[f"{key}.grad"] = x.grad
    save("losses.safetensors", out)


def regression_problem(gen):
    x = torch.randn(16, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(16, 3, generator=gen, dtype=torch.float64)
    w0 = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    b0 = torch.randn(3, generator=gen, dtype=torch.float64)
    return x, y, w0, b0


def loss_fn(x, y, w, b):
    return ((x @ w.T + b - y) ** 2).mean()


def optimizer_fixtures():
    gen = torch.Generator().manual_seed(6)
    x, y, w0, b0 = regression_problem(gen)
    lrs = [0.05 * (0.9 ** i) if i >= 3 else 0.05 * (i + 1) / 3 for i in range(20)]
    out = {"x": x, "y": y, "w0": w0, "b0": b0, "lrs": torch.tensor(lrs, dtype=torch.float64)}
    sgd_cases = {
        "sgd_momentum_wd": dict(momentum=0.9, weight_decay=1e-2),
        "sgd_nesterov": dict(momentum=0.9, nesterov=True, weight_decay=1e-3),
        "sgd_dampening": dict(momentum=0.8, dampening=0.3),
        "sgd_plain": dict(),
    }
    for name, kwargs in sgd_cases.items():
        w = w0.clone().requires_grad_(True)
        b = b0.clone().requires_grad_(True)
        opt = torch.optim.SGD([w, b], lr=lrs[0], **kwargs)
        ws, bs = [], []
        for step in range(20):
            for g in opt.param_groups:
                g["lr"] = lrs[step]
            opt.zero_grad()
            loss_fn(x, y, w, b).backward()
            opt.step()
            ws.append(w.detach().clone())
            bs.append(b.detach().clone())
        out[f"{name}.w"] = torch.stack(ws)
        out[f"{name}.b"] = torch.stack(bs)
    # AdamW with two groups: w decays; b has no decay and twice the lr (lr_mult 2).
    w = w0.clone().requires_grad_(True)
    b = b0.clone().requires_grad_(True)
    opt = torch.optim.AdamW(
        [{"params": [w], "weight_decay": 0.05}, {"params": [b], "weight_decay": 0.0}],
        lr=lrs[0],
        betas=(0.9, 0.999),
        eps=1e-8,
    )
    ws, bs = [], []
    for step in range(20):
        opt.param_groups[0]["lr"] = lrs[step]
        opt.param_groups[1]["lr"] = 2 * lrs[step]
        opt.zero_grad()
        loss_fn(x, y, w, b).backward()
        opt.step()
        ws.append(w.detach().clone())
        bs.append(b.detach().clone())
    out["adamw_groups.w"] = torch.stack(ws)
    out["adamw_groups.b"] = torch.stack(bs)
    save("optim.safetensors", out)


def mmcv_lr(base_lr, decay, by_epoch, warmup, it, epoch):
    """mmcv 1.x LrUpdaterHook, written out (see the module docstring)."""
    progress = epoch if by_epoch else it
    kind = decay[0]
    if kind == "step":
        _, milestones, gamma = decay
        exp = len(milestones)
        for i, s in enumerate(milestones):
            if progress < s:
                exp = i
                break
        regular = base_lr * gamma**exp
    elif kind == "poly":
        _, power, min_lr, max_progress = decay
        coeff = (1 - progress / max_progress) ** power
        regular = (base_lr - min_lr) * coeff + min_lr
    elif kind == "cosine":
        _, min_lr, max_progress = decay
        factor = progress / max_progress
        regular = min_lr + 0.5 * (base_lr - min_lr) * (math.cos(math.pi * factor) + 1)
    else:
        regular = base_lr
    if warmup is not None and it < warmup[1]:
        kind, iters, ratio = warmup
        if kind == "linear":
            k = (1 - it / iters) * (1 - ratio)
            return regular * (1 - k)
        if kind == "constant":
            return regular * ratio
        if kind == "exp":
            return regular * ratio ** (1 - it / iters)
    return regular


def torch_trajectory(make, steps, base_lr=0.1):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base_lr)
    sched = make(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return torch.tensor(lrs, dtype=torch.float64)


def schedule_fixtures():
    S = torch.optim.lr_scheduler
    steps = 30
    out = {}
    out["torch.multistep"] = torch_trajectory(lambda o: S.MultiStepLR(o, milestones=[8, 11, 20], gamma=0.1), steps)
    out["torch.poly"] = torch_trajectory(lambda o: S.PolynomialLR(o, total_iters=25, power=0.9), steps)
    out["torch.cosine"] = torch_trajectory(lambda o: S.CosineAnnealingLR(o, T_max=30, eta_min=1e-3), steps)
    out["torch.warmup_multistep"] = torch_trajectory(
        lambda o: S.ChainedScheduler(
            [S.LinearLR(o, start_factor=0.001, total_iters=5), S.MultiStepLR(o, milestones=[8, 11], gamma=0.1)]
        ),
        steps,
    )
    out["torch.warmup_poly"] = torch_trajectory(
        lambda o: S.ChainedScheduler(
            [S.LinearLR(o, start_factor=1e-6, total_iters=7), S.PolynomialLR(o, total_iters=25, power=1.0)]
        ),
        steps,
    )
    mmcv_cases = {
        "mmcv.step_warmup": ("step", [8, 11], 0.1),
        "mmcv.poly_min": ("poly", 0.9, 1e-4, 30),
        "mmcv.cosine_min": ("cosine", 1e-3, 30),
    }
    for name, decay in mmcv_cases.items():
        for wkind in ["linear", "constant", "exp"]:
            warmup = (wkind, 6, 0.01)
            out[f"{name}.{wkind}"] = torch.tensor(
                [mmcv_lr(0.1, decay, False, warmup, it, 0) for it in range(steps)], dtype=torch.float64
            )
    # By epoch: 4 iterations per epoch, decay by epoch, warmup by iteration.
    out["mmcv.step_by_epoch"] = torch.tensor(
        [mmcv_lr(0.1, ("step", [3, 5], 0.1), True, ("linear", 6, 0.001), it, it // 4) for it in range(steps)],
        dtype=torch.float64,
    )
    # Cross-check the written-out formulas against torch where both exist.
    check = torch.tensor([mmcv_lr(0.1, ("poly", 0.9, 0.0, 25), False, None, min(it, 25), 0) for it in range(steps)], dtype=torch.float64)
    assert torch.allclose(check.double(), out["torch.poly"], rtol=1e-9, atol=1e-12)
    check = torch.tensor([mmcv_lr(0.1, ("cosine", 1e-3, 30), False, None, it, 0) for it in range(steps)], dtype=torch.float64)
    assert torch.allclose(check.double(), out["torch.cosine"], rtol=1e-9, atol=1e-12)
    check = torch.tensor([mmcv_lr(0.1, ("step", [8, 11], 0.1), False, ("linear", 5, 0.001), it, 0) for it in range(steps)], dtype=torch.float64)
    assert torch.allclose(check.double(), out["torch.warmup_multistep"], rtol=1e-9, atol=1e-12)
    save("schedules.safetensors", out)


def clip_fixtures():
    gen = torch.Generator().manual_seed(7)
    out = {}
    for tag, dtype in [("f32", torch.float32), ("f64", torch.float64)]:
        params = [torch.zeros(s, dtype=dtype, requires_grad=True) for s in [(3, 4), (5,), (2, 2, 2)]]
        grads = [torch.randn(p.shape, generator=gen, dtype=torch.float64).to(dtype) for p in params]
        for max_norm in [1.0, 100.0]:
            for p, g in zip(params, grads):
                p.grad = g.clone()
            total = torch.nn.utils.clip_grad_norm_(params, max_norm)
            key = f"{tag}.max{int(max_norm)}"
            out[f"{key}.total"] = total.reshape(1).to(torch.float64)
            for i, p in enumerate(params):
                out[f"{key}.clipped{i}"] = p.grad.clone()
        for i, g in enumerate(grads):
            out[f"{tag}.grad{i}"] = g
    save("clip.safetensors", out)


if __name__ == "__main__":
    print("torch", torch.__version__, "torchvision", torchvision.__version__)
    roi_align_fixtures()
    multiscale_fixtures()
    nms_fixtures()
    box_coder_fixtures()
    loss_fixtures()
    optimizer_fixtures()
    schedule_fixtures()
    clip_fixtures()
    for name in sorted(os.listdir(HERE)):
        if name.endswith(".safetensors"):
            print(name, os.path.getsize(os.path.join(HERE, name)), "bytes")
