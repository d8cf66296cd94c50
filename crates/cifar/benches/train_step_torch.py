"""Training-step throughput of the CIFAR transfer task in PyTorch: the peer of
train_step.rs (same cases, same step: bilinear upsampling of 32x32 inputs, backbone, linear
head, cross-entropy, backward, SGD momentum 0.9 / weight decay 5e-4; first step untimed).

    python3 crates/cifar/benches/train_step_torch.py [--threads 2] [--steps 5] [CASE ...]

Stack: crates/cifar/benches/requirements-bench.txt.
"""

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet50
from torchvision.models.resnet import BasicBlock, ResNet


class MiniResNet(ResNet):
    """rtb-models' ResNetConfig::mini: a 3×3 stride-2 stem without max pool, basic blocks,
    one per stage, widths 16..128, stem 16."""

    def __init__(self, num_classes):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = 16
        self.dilation = 1
        self.groups = 1
        self.base_width = 64
        self.conv1 = nn.Conv2d(3, 16, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()
        self.layer1 = self._make_layer(BasicBlock, 16, 1)
        self.layer2 = self._make_layer(BasicBlock, 32, 1, stride=2)
        self.layer3 = self._make_layer(BasicBlock, 64, 1, stride=2)
        self.layer4 = self._make_layer(BasicBlock, 128, 1, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(128, num_classes)


def mini_swin(num_classes):
    """rtb-models' SwinConfig::mini: patch 4, width 32, depths 1-1-2-1, heads 1-2-4-8,
    window 4, MLP ratio 2, stochastic depth 0.1, and a convolutional stem in place of the
    4x4 patch projection (3x3 stride-2 convolutions 3->16 and 16->32, GELU between)."""
    from timm.models.swin_transformer import SwinTransformer

    model = SwinTransformer(img_size=32, patch_size=4, embed_dim=32, depths=(1, 1, 2, 1),
                            num_heads=(1, 2, 4, 8), window_size=4, mlp_ratio=2.0,
                            drop_path_rate=0.1, num_classes=num_classes)
    model.patch_embed.proj = nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1), nn.GELU(), nn.Conv2d(16, 32, 3, 2, 1))
    return model


CASES = {
    "mini32": ("mini", "full", 32, 64),
    "swinmini32": ("swin_mini", "full", 32, 64),
    "r50full": ("resnet50", "full", 224, 8),
    "r50fixed": ("resnet50", "fixed", 224, 8),
}


def run(name, steps):
    arch, regime, size, batch = CASES[name]
    if arch == "mini":
        model = MiniResNet(10)
    elif arch == "swin_mini":
        model = mini_swin(10)
    else:
        model = resnet50(num_classes=10)
    if regime == "fixed":
        for p in model.parameters():
            p.requires_grad_(False)
        model.fc = nn.Linear(model.fc.in_features, 10)
        params = model.fc.parameters()
    else:
        params = model.parameters()
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
    seconds = 0.0
    for step in range(steps + 1):
        g = torch.Generator().manual_seed(step)
        xs = (torch.rand(batch, 3, 32, 32, generator=g) - 0.5) * 4.0
        ys = torch.arange(batch) % 10
        start = time.perf_counter()
        if regime == "fixed":
            model.eval()
            with torch.no_grad():
                x = F.interpolate(xs, size=(size, size), mode="bilinear", align_corners=False)
                feats = torch.flatten(model.avgpool(model.layer4(model.layer3(model.layer2(
                    model.layer1(model.maxpool(model.relu(model.bn1(model.conv1(x))))))))), 1)
            logits = model.fc(feats)
        else:
            model.train()
            x = F.interpolate(xs, size=(size, size), mode="bilinear", align_corners=False)
            logits = model(x)
        loss = F.cross_entropy(logits, ys)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        elapsed = time.perf_counter() - start
        if step > 0:
            seconds += elapsed
    print(f"{name:<9} {arch:>10} {regime} {size}px batch {batch:>3}: "
          f"{steps * batch / seconds:8.2f} img/s ({seconds / steps:.3f} s/step)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("cases", nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.cases or CASES:
        run(name, args.steps)


if __name__ == "__main__":
    main()
