"""Golden fixtures for rtb-ade-eval from mmsegmentation 1.2.2's own code.

For every case this writes ground-truth PNGs (stored values, as ADE20K annotations hold them)
and prediction PNGs (class indices) under cases/<case>/{gt,pred}/, and cases/<case>/expected.json
with what mmseg computes from those files:

- each ground truth is loaded by mmseg's LoadAnnotations (pillow backend), which applies
  reduce_zero_label when the case asks for it;
- per-image areas come from IoUMetric.intersect_and_union (torch.histc, float32 counts);
- totals are summed in float64 (as mmseg 0.x's total_intersect_and_union does) and passed to
  IoUMetric.total_area_to_metrics as float64 tensors: "metrics";
- mmseg 1.x's own path sums the float32 per-image results (IoUMetric.compute_metrics) and
  rounds with np.round(np.nanmean(x) * 100, 2): "native" (float32 arithmetic throughout).

Also writes classes.json, the ADE20K class names from mmseg's ADE20KDataset.

Run (outside the repo's tree for the venv):
    python3 -m venv /work/venvs/ade && /work/venvs/ade/bin/pip install -r requirements-golden.txt
    /work/venvs/ade/bin/python make_golden.py
"""

import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# mmcv-lite ships without compiled ops; mmseg.utils imports mmcv.ops.point_sample at import time
# but neither LoadAnnotations nor the IoU metric calls it.
_ops = types.ModuleType("mmcv.ops")
_ops.point_sample = None
sys.modules["mmcv.ops"] = _ops

import mmseg  # noqa: E402
from mmseg.datasets import ADE20KDataset  # noqa: E402
from mmseg.datasets.transforms import LoadAnnotations  # noqa: E402
from mmseg.evaluation.metrics import IoUMetric  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE / "cases"


def blocky(rng, height, width, values, block=(7, 9)):
    """Rectangles of one value; block sizes vary so edges fall anywhere."""
    out = np.empty((height, width), dtype=np.uint8)
    y = 0
    while y < height:
        bh = int(rng.integers(1, block[0] * 2))
        x = 0
        while x < width:
            bw = int(rng.integers(1, block[1] * 2))
            out[y : y + bh, x : x + bw] = rng.choice(values)
            x += bw
        y += bh
    return out


def perturb(rng, pred, num_classes, fraction, classes=None):
    """Replaces a fraction of pixels by random classes (from `classes` if given)."""
    noise = rng.random(pred.shape) < fraction
    pool = np.arange(num_classes) if classes is None else np.asarray(classes)
    pred = pred.copy()
    pred[noise] = rng.choice(pool, size=int(noise.sum()))
    return pred.astype(np.uint8)


def ignore_some(rng, label, fraction, value=255):
    label = label.copy()
    label[rng.random(label.shape) < fraction] = value
    return label


def reduced(label):
    out = label.astype(np.int32) - 1
    out[(label == 0) | (label == 255)] = 255
    return out.astype(np.uint8)


def make_cases():
    rng = np.random.default_rng(20240531)
    cases = {}

    # ADE20K-like: stored values 0..150 (0 = other), reduce_zero_label, random maps.
    pairs = []
    for h, w in [(37, 53), (64, 48), (1, 100), (80, 80)]:
        gt = rng.integers(0, 151, size=(h, w)).astype(np.uint8)
        pred = perturb(rng, np.where(gt > 0, gt - 1, 0).astype(np.uint8), 150, 0.6)
        pairs.append((gt, pred))
    cases["random_ade_reduce"] = dict(num_classes=150, reduce=True, ignore=255, pairs=pairs)

    # Blocky ADE-like maps with 255 pixels as stored values too (they stay ignored).
    pairs = []
    for h, w in [(60, 83), (45, 64), (33, 31)]:
        gt = blocky(rng, h, w, np.arange(0, 151))
        gt = ignore_some(rng, gt, 0.05)
        base = reduced(gt)
        base[base == 255] = rng.integers(0, 150)
        pred = perturb(rng, base, 150, 0.15)
        pairs.append((gt, pred))
    cases["blocky_ade_reduce"] = dict(num_classes=150, reduce=True, ignore=255, pairs=pairs)

    # Classes absent from the ground truth (10..18), absent from the predictions (0..4),
    # and absent from both (19..24: NaN IoU and accuracy).
    pairs = []
    for h, w in [(50, 70), (40, 40)]:
        gt = blocky(rng, h, w, np.arange(0, 10), block=(5, 5))
        gt = ignore_some(rng, gt, 0.1)
        pred = rng.integers(5, 19, size=(h, w)).astype(np.uint8)
        keep = rng.random((h, w)) < 0.5
        pred[keep & (gt >= 5) & (gt < 19)] = gt[keep & (gt >= 5) & (gt < 19)]
        pairs.append((gt, pred))
    cases["absent_classes_25"] = dict(num_classes=25, reduce=False, ignore=255, pairs=pairs)

    # An image entirely ignored, next to ordinary ones.
    pairs = []
    gt = np.full((20, 30), 255, dtype=np.uint8)
    pairs.append((gt, rng.integers(0, 5, size=(20, 30)).astype(np.uint8)))
    for h, w in [(25, 25), (10, 41)]:
        gt = ignore_some(rng, blocky(rng, h, w, np.arange(5), block=(4, 4)), 0.2)
        pred = perturb(rng, np.where(gt == 255, 0, gt).astype(np.uint8), 5, 0.3)
        pairs.append((gt, pred))
    cases["all_ignored_image_5"] = dict(num_classes=5, reduce=False, ignore=255, pairs=pairs)

    # Perfect predictions: IoU 1 wherever the class appears.
    pairs = []
    for h, w in [(30, 40), (17, 23)]:
        gt = blocky(rng, h, w, np.arange(0, 8))
        pairs.append((gt, gt.copy()))
    cases["perfect_19"] = dict(num_classes=19, reduce=False, ignore=255, pairs=pairs)

    # Two classes, blocky, a few ignored pixels.
    pairs = []
    for h, w in [(64, 64), (31, 77)]:
        gt = ignore_some(rng, blocky(rng, h, w, np.arange(2), block=(12, 12)), 0.02)
        pred = perturb(rng, blocky(rng, h, w, np.arange(2), block=(12, 12)), 2, 0.05)
        pairs.append((gt, pred))
    cases["binary_blocky"] = dict(num_classes=2, reduce=False, ignore=255, pairs=pairs)

    # 256 classes and nothing ignored (mmseg: ignore_index=256 never matches a uint8 label).
    pairs = []
    for h, w in [(48, 48), (16, 90)]:
        gt = rng.integers(0, 256, size=(h, w)).astype(np.uint8)
        pred = perturb(rng, gt, 256, 0.5)
        pairs.append((gt, pred))
    cases["no_ignore_256"] = dict(num_classes=256, reduce=False, ignore=None, pairs=pairs)

    # Predictions stored as palette ("P" mode) PNGs; their indices are the classes.
    pairs = []
    for h, w in [(40, 52), (27, 19)]:
        gt = ignore_some(rng, blocky(rng, h, w, np.arange(0, 151)), 0.03)
        base = reduced(gt)
        base[base == 255] = 3
        pairs.append((gt, perturb(rng, base, 150, 0.25)))
    cases["palette_predictions"] = dict(
        num_classes=150, reduce=True, ignore=255, pairs=pairs, palette=True
    )
    return cases


def nan_to_none(values):
    return [None if np.isnan(v) else float(v) for v in np.asarray(values, dtype=np.float64)]


def scalar(value):
    value = float(value)
    return None if np.isnan(value) else value


def save_png(path, array, palette=False):
    image = Image.fromarray(array, mode="L")
    if palette:
        image = Image.fromarray(array, mode="P")
        image.putpalette([(i * 37) % 256 for i in range(768)])
    image.save(path)


def run_case(name, case):
    folder = OUT / name
    (folder / "gt").mkdir(parents=True)
    (folder / "pred").mkdir(parents=True)
    num_classes = case["num_classes"]
    ignore_index = 256 if case["ignore"] is None else case["ignore"]
    loader = LoadAnnotations(reduce_zero_label=case["reduce"], imdecode_backend="pillow")
    per_image = []
    results = []
    for index, (gt, pred) in enumerate(case["pairs"]):
        file_name = f"{index:03d}.png"
        save_png(folder / "gt" / file_name, gt)
        save_png(folder / "pred" / file_name, pred, palette=case.get("palette", False))
        loaded = loader(
            dict(
                seg_map_path=str(folder / "gt" / file_name),
                reduce_zero_label=case["reduce"],
                seg_fields=[],
            )
        )["gt_seg_map"]
        pred_loaded = np.array(Image.open(folder / "pred" / file_name))
        assert pred_loaded.dtype == np.uint8 and pred_loaded.shape == gt.shape
        areas = IoUMetric.intersect_and_union(
            # IoUMetric.process squeezes both maps, as LoadAnnotations squeezed the label.
            torch.from_numpy(pred_loaded.astype(np.int64)).squeeze(),
            torch.from_numpy(loaded.astype(np.int64)),
            num_classes,
            ignore_index,
        )
        for area in areas:
            assert torch.equal(area, area.round()), "histc counts are integers"
        results.append(areas)
        per_image.append([[int(v) for v in area.tolist()] for area in areas])

    # float64 totals, as mmseg 0.x's total_intersect_and_union sums them.
    totals64 = [
        sum(area[k].double() for area in results) for k in range(4)
    ]
    metrics = IoUMetric.total_area_to_metrics(*totals64, metrics=["mIoU"])
    # mmseg 1.x's compute_metrics: float32 sums, float32 metrics, then its rounding.
    totals32 = [sum(area[k] for area in results) for k in range(4)]
    native = IoUMetric.total_area_to_metrics(*totals32, metrics=["mIoU"])
    expected = dict(
        mmseg_version=mmseg.__version__,
        num_classes=num_classes,
        reduce_zero_label=case["reduce"],
        ignore_index=case["ignore"],
        files=[f"{i:03d}.png" for i in range(len(case["pairs"]))],
        per_image_areas=per_image,
        total_areas=[[int(v) for v in t.tolist()] for t in totals64],
        metrics=dict(
            aAcc=scalar(metrics["aAcc"]),
            IoU=nan_to_none(metrics["IoU"]),
            Acc=nan_to_none(metrics["Acc"]),
            mIoU=scalar(np.nanmean(metrics["IoU"])),
            mAcc=scalar(np.nanmean(metrics["Acc"])),
        ),
        display=dict(
            aAcc=scalar(np.round(np.nanmean(metrics["aAcc"]) * 100, 2)),
            mIoU=scalar(np.round(np.nanmean(metrics["IoU"]) * 100, 2)),
            mAcc=scalar(np.round(np.nanmean(metrics["Acc"]) * 100, 2)),
            IoU=nan_to_none(np.round(metrics["IoU"] * 100, 2)),
            Acc=nan_to_none(np.round(metrics["Acc"] * 100, 2)),
        ),
        native_float32_display=dict(
            aAcc=scalar(np.round(np.nanmean(native["aAcc"]) * 100, 2)),
            mIoU=scalar(np.round(np.nanmean(native["IoU"]) * 100, 2)),
            mAcc=scalar(np.round(np.nanmean(native["Acc"]) * 100, 2)),
        ),
    )
    (folder / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir()
    for name, case in make_cases().items():
        run_case(name, case)
    classes = list(ADE20KDataset.METAINFO["classes"])
    (OUT / "classes.json").write_text(json.dumps(classes) + "\n")
    # np.round's half-to-even after scaling, on values where the scaled value is near .5.
    probes = [0.00125, 0.00375, 0.123456, 0.5, 0.999999, 0.33335, 0.12345, 0.98765, 0.0]
    probes += list(np.random.default_rng(1).random(200))
    rounding = [[float(p), float(np.round(np.float64(p) * 100, 2))] for p in probes]
    (OUT / "rounding.json").write_text(json.dumps(rounding) + "\n")


if __name__ == "__main__":
    main()
