"""The peer of benches/upernet.rs: transformers' UperNetForSemanticSegmentation with its
ResNet-50 backbone (bottleneck, stride in the 3×3 as torchvision / mmseg), hidden size 512,
pools (1, 2, 3, 6), auxiliary FCN on C4 (256 channels, weight 0.4), 150 labels, on the CPU.

- infer: one 512×512 image, logits upsampled to the image (torch.inference_mode());
- train: one step at batch 2 (512², labels with ignored pixels 255), the model's loss
  (cross-entropy, ignore 255, auxiliary 0.4), backward, SGD with momentum.

Seeded random weights. Stack: tests/golden/requirements-golden.txt.

    python upernet_transformers.py --threads 2 --steps 3 [infer|train]
"""

import argparse
import time

import torch
from transformers import ResNetConfig, UperNetConfig, UperNetForSemanticSegmentation

SIZE = 512


def model():
    torch.manual_seed(0)
    backbone = ResNetConfig(
        embedding_size=64,
        hidden_sizes=[256, 512, 1024, 2048],
        depths=[3, 4, 6, 3],
        layer_type="bottleneck",
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = UperNetConfig(
        backbone_config=backbone,
        hidden_size=512,
        pool_scales=[1, 2, 3, 6],
        use_auxiliary_head=True,
        auxiliary_in_channels=1024,
        auxiliary_channels=256,
        auxiliary_loss_weight=0.4,
        num_labels=150,
        loss_ignore_index=255,
    )
    return UperNetForSemanticSegmentation(config)


def images(batch):
    g = torch.Generator().manual_seed(1)
    return torch.randn(batch, 3, SIZE, SIZE, generator=g)


def labels(batch):
    i = torch.arange(batch * SIZE * SIZE)
    y = (i // 37) % 150
    y[i % 16 == 0] = 255
    return y.view(batch, SIZE, SIZE)


def infer(steps):
    net = model().eval()
    x = images(1)
    with torch.inference_mode():
        net(pixel_values=x)
        start = time.perf_counter()
        for _ in range(steps):
            net(pixel_values=x)
        seconds = (time.perf_counter() - start) / steps
    print(f"infer: {seconds:.3f} s/image ({1 / seconds:.3f} images/s)")


def train(steps):
    net = model().train()
    sgd = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x, y = images(2), labels(2)

    def step():
        loss = net(pixel_values=x, labels=y).loss
        sgd.zero_grad()
        loss.backward()
        sgd.step()
        return loss.item()

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
