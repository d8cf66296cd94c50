"""torchvision's side of benches/roi_align.rs: multi-level RoIAlign forward and backward.

1000 RoIs over 4 FPN levels (strides 4..32 of an 800x1344 image), 256 channels, 7x7,
sampling_ratio 0, aligned, mmdet's level rule; roi_align is called once per level as mmdet's
SingleRoIExtractor does. Stack: crates/nn/tests/golden/train/requirements-train.txt.

    /work/venvs/nn-train/bin/python crates/nn/benches/roi_align_torchvision.py --threads 2
"""

import argparse
import math
import time

import torch
from torchvision.ops import roi_align

IMAGE = (800, 1344)
CHANNELS = 256
N_ROIS = 1000
STRIDES = [4, 8, 16, 32]


def unit(i, salt):
    v = math.sin((i + 1.0) * 12.9898 + salt * 78.233) * 43758.5453
    return v - math.floor(v)


def bench_rois():
    rows = []
    for i in range(N_ROIS):
        side = 16.0 * 50.0 ** unit(i, 1.0)
        aspect = math.exp(unit(i, 2.0) - 0.5)
        w, h = side * aspect, side / aspect
        cx, cy = unit(i, 3.0) * IMAGE[1], unit(i, 4.0) * IMAGE[0]
        rows.append([0.0, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    return torch.tensor(rows, dtype=torch.float32)


def pool(features, rois):
    scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
    levels = torch.floor(torch.log2(scale / 56 + 1e-6)).clamp(0, 3).long()
    out = features[0].new_zeros(rois.shape[0], CHANNELS, 7, 7)
    for lvl, stride in enumerate(STRIDES):
        idx = torch.nonzero(levels == lvl).flatten()
        if idx.numel():
            out[idx] = roi_align(features[lvl], rois[idx], 7, 1.0 / stride, 0, True)
    return out, levels


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    features = [
        torch.randn(1, CHANNELS, IMAGE[0] // s, IMAGE[1] // s, requires_grad=True) for s in STRIDES
    ]
    rois = bench_rois()
    grad_output = torch.randn(N_ROIS, CHANNELS, 7, 7)
    _, levels = pool(features, rois)
    print("RoIs per level:", [int((levels == l).sum()) for l in range(4)])

    def forward():
        with torch.no_grad():
            pool(features, rois)

    def backward_only():
        out, _ = pool(features, rois)
        start = time.perf_counter()
        out.backward(grad_output)
        for f in features:
            f.grad = None
        return time.perf_counter() - start

    forward()
    backward_only()
    fwd = median_time(forward, args.repeats)
    bwd = sorted(backward_only() for _ in range(args.repeats))[args.repeats // 2]
    print(f"torch {torch.__version__}, {args.threads} threads")
    print(f"forward  {fwd * 1e3:.1f} ms")
    print(f"backward {bwd * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
