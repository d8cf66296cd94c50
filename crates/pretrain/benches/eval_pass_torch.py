"""One evaluation pass over the corrupted source task in PyTorch: the peer of eval_pass.rs
(76 sets of 250 random 32x32 images, inference mode, batches of 100, arg-max and
correctness; one untimed pass first).

    python3 crates/pretrain/benches/eval_pass_torch.py [--threads 2] [--passes 1] [CASE ...]

Stack: crates/cifar/benches/requirements-bench.txt (the mini networks are built as in
crates/cifar/benches/train_step_torch.py).
"""

import argparse
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "cifar" / "benches"))
from train_step_torch import MiniResNet, mini_swin  # noqa: E402

SETS = 1 + 15 * 5
IMAGES = 250
BATCH = 100
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def run(arch, passes):
    model = MiniResNet(10) if arch == "resnet_mini" else mini_swin(10)
    model.eval()
    sets = []
    for s in range(SETS):
        g = torch.Generator().manual_seed(s)
        sets.append((torch.randint(0, 256, (IMAGES, 32, 32, 3), generator=g, dtype=torch.uint8),
                     torch.arange(IMAGES) % 10))
    seconds = 0.0
    for p in range(passes + 1):
        start = time.perf_counter()
        correct = 0
        with torch.inference_mode():
            for rgb, labels in sets:
                for i in range(0, IMAGES, BATCH):
                    x = rgb[i:i + BATCH].permute(0, 3, 1, 2).float().div(255.0)
                    x = (x - MEAN) / STD
                    correct += (model(x).argmax(1) == labels[i:i + BATCH]).sum().item()
        if p > 0:
            seconds += time.perf_counter() - start
    print(f"{arch:<12} {SETS} sets of {IMAGES} images, batch {BATCH}: "
          f"{passes * SETS * IMAGES / seconds:8.2f} img/s ({seconds / passes:.3f} s/pass)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--passes", type=int, default=1)
    parser.add_argument("cases", nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for arch in args.cases or ["resnet_mini", "swin_mini"]:
        run(arch, args.passes)


if __name__ == "__main__":
    main()
