"""PyTorch's side of the device check: the same four models at the same sizes and batches as
`rtb device-check`, timed the same way (one warm-up, then N training steps with a plain SGD
update, then N evaluation batches; the device synchronised around the timed loop).

Models: torchvision's resnet50 / swin_t (10 classes) at 224², torchvision's
maskrcnn_resnet50_fpn (81 classes, no resizing: images are already 1333x800) and
transformers' UperNetForSemanticSegmentation on a ResNet-50 (150 classes) at 512². Random
weights on both sides: throughput does not depend on them.

    python3 gpu-check/torch_peer.py --device cuda --size paper --output torch.json
"""

import argparse
import json
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--size", choices=["small", "paper"], default="paper")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--cifar-batch", type=int, default=None)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (f32 weights)")
    p.add_argument("--only", default="", help="comma-separated: cifar-resnet50,cifar-swin-t,mask-rcnn,upernet")
    p.add_argument("--output", required=True)
    return p.parse_args()


def sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_s(device, iters, batch, run):
    run()
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        run()
    sync(device)
    return iters * batch / max(time.perf_counter() - start, 1e-9)


def sizes(args):
    paper = args.size == "paper"
    cifar_batch = args.cifar_batch or (64 if paper else 4)
    return {
        "cifar-resnet50": ((224, 224) if paper else (64, 64), cifar_batch),
        "cifar-swin-t": ((224, 224) if paper else (96, 96), cifar_batch),
        "mask-rcnn": ((800, 1333) if paper else (64, 80), 2),
        "upernet": ((512, 512) if paper else (64, 64), 4 if paper else 2),
    }


def classifier(name, size, batch, device):
    import torch
    import torchvision

    model = getattr(torchvision.models, "resnet50" if name == "cifar-resnet50" else "swin_t")(num_classes=10)
    model = model.to(device)
    xs = torch.randn(batch, 3, *size, device=device)
    labels = torch.arange(batch, device=device) * 3 % 10

    def train_loss():
        return torch.nn.functional.cross_entropy(model(xs), labels)

    def evaluate():
        with torch.no_grad():
            model(xs)

    return model, train_loss, evaluate


def mask_rcnn(size, batch, device):
    import torch
    import torchvision

    h, w = size
    model = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=81, min_size=min(h, w), max_size=max(h, w)
    ).to(device)
    xs = [torch.randn(3, h, w, device=device) for _ in range(batch)]
    fractions = [[0.1, 0.1, 0.45, 0.5], [0.4, 0.3, 0.9, 0.8], [0.05, 0.6, 0.3, 0.95]]
    targets = []
    for i in range(batch):
        boxes = torch.tensor([[f[0] * w, f[1] * h, f[2] * w, f[3] * h] for f in fractions], device=device).floor()
        masks = torch.zeros(len(fractions), h, w, dtype=torch.uint8, device=device)
        for k, b in enumerate(boxes.long().tolist()):
            masks[k, b[1] : b[3], b[0] : b[2]] = 1
        labels = torch.tensor([(k + i) % 80 + 1 for k in range(len(fractions))], device=device)
        targets.append({"boxes": boxes, "labels": labels, "masks": masks})

    def train_loss():
        model.train()
        return sum(model(xs, targets).values())

    def evaluate():
        model.eval()
        with torch.no_grad():
            model(xs)

    return model, train_loss, evaluate


def upernet(size, batch, device, small):
    import torch
    from transformers import ResNetConfig, UperNetConfig, UperNetForSemanticSegmentation

    if small:
        backbone = ResNetConfig(
            embedding_size=8, hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1],
            out_features=["stage1", "stage2", "stage3", "stage4"],
        )
        cfg = UperNetConfig(backbone_config=backbone, hidden_size=16, auxiliary_channels=8, num_labels=5)
    else:
        backbone = ResNetConfig(out_features=["stage1", "stage2", "stage3", "stage4"])
        cfg = UperNetConfig(backbone_config=backbone, num_labels=150)
    model = UperNetForSemanticSegmentation(cfg).to(device)
    xs = torch.randn(batch, 3, *size, device=device)
    labels = torch.randint(0, cfg.num_labels, (batch, *size), device=device, generator=None)

    def train_loss():
        model.train()
        return model(pixel_values=xs, labels=labels).loss

    def evaluate():
        model.eval()
        with torch.no_grad():
            model(pixel_values=xs)

    return model, train_loss, evaluate


def main():
    args = parse_args()
    try:
        import torch
    except ImportError:
        print("torch_peer: no torch here; PyTorch's numbers are left out", file=sys.stderr)
        return 0
    torch.manual_seed(0)
    device = torch.device(args.device)
    wanted = [p for p in args.only.split(",") if p] or list(sizes(args))
    results = []
    for name in wanted:
        size, batch = sizes(args)[name]
        entry = {"name": name, "image_size": list(size), "batch": batch, "bf16": args.bf16}
        try:
            if name.startswith("cifar"):
                model, train_loss, evaluate = classifier(name, size, batch, device)
            elif name == "mask-rcnn":
                model, train_loss, evaluate = mask_rcnn(size, batch, device)
            else:
                model, train_loss, evaluate = upernet(size, batch, device, args.size == "small")
            opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4)
            autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)

            def step():
                opt.zero_grad(set_to_none=True)
                with autocast:
                    loss = train_loss()
                loss.backward()
                opt.step()

            def eval_batch():
                with autocast:
                    evaluate()

            entry["train_images_per_s"] = images_per_s(device, args.iters, batch, step)
            entry["eval_images_per_s"] = images_per_s(device, args.iters, batch, eval_batch)
        except Exception as err:  # noqa: BLE001 - one model failing must not hide the others
            entry["error"] = f"{type(err).__name__}: {err}"
        print(json.dumps(entry), file=sys.stderr)
        results.append(entry)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    report = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "size": args.size,
        "models": results,
    }
    with open(args.output, "w") as f:
        json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
