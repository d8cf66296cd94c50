"""PyTorch's side of benches/deconv.rs: ConvTranspose2d(256, 256, 2, stride=2) on 256 RoIs of
14x14 (the mask head's upsampler), forward, and the backward to input and weight alone
(torch.autograd.grad of sum(y * gy)). Median wall time of `--rounds` calls after a warm-up.
Stack: crates/nn/tests/golden/ops/requirements-ops.txt.

    python crates/nn/benches/deconv_torch.py --threads 2
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

ROIS, CHANNELS, SIZE = 256, 256, 14


def timed(fn, rounds):
    fn()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.randn(ROIS, CHANNELS, SIZE, SIZE, requires_grad=True)
    w = (torch.randn(CHANNELS, CHANNELS, 2, 2) * 0.03).requires_grad_(True)
    b = torch.zeros(CHANNELS)
    gy = torch.randn(ROIS, CHANNELS, 2 * SIZE, 2 * SIZE)

    def forward():
        with torch.no_grad():
            F.conv_transpose2d(x, w, b, stride=2)

    y = F.conv_transpose2d(x, w, b, stride=2)

    def backward():
        torch.autograd.grad(y, (x, w), gy, retain_graph=True)

    fwd = timed(forward, args.rounds)
    bwd = timed(backward, args.rounds)
    print(f"torch {torch.__version__}, {args.threads} threads")
    print(f"deconv2x2_mask_head/forward         {fwd * 1e3:8.1f} ms")
    print(f"deconv2x2_mask_head/backward_dx_dw  {bwd * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
