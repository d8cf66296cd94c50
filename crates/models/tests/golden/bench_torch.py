"""PyTorch CPU eager forward throughput and peak memory, the peer of rtb-models'
`examples/forward_throughput.rs` (same batch, size, warm-up and repetitions, 2 threads):

    /work/venvs/models/bin/python crates/models/tests/golden/bench_torch.py resnet50 16 224 3

Run one architecture per process so the peak resident memory belongs to it.
"""

import resource
import sys
import time

import timm
import torch

NAMES = {"resnet50": "resnet50", "swin_t": "swin_tiny_patch4_window7_224"}


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else "resnet50"
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    side = int(sys.argv[3]) if len(sys.argv) > 3 else 224
    reps = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = timm.create_model(NAMES[name], pretrained=False, img_size=side) if name == "swin_t" else \
        timm.create_model(NAMES[name], pretrained=False)
    model.eval()
    x = torch.randn(batch, 3, side, side)
    with torch.inference_mode():
        model(x)  # warm-up
        start = time.perf_counter()
        for _ in range(reps):
            model(x)
        seconds = (time.perf_counter() - start) / reps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{name} batch {batch} {side}x{side}: {seconds:.3f} s/batch, {batch / seconds:.2f} img/s, "
          f"peak RSS {peak:.0f} MiB (torch {torch.__version__}, timm {timm.__version__}, 2 threads)")


if __name__ == "__main__":
    main()
