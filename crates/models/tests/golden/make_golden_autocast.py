"""Golden fixture for mixed precision: PyTorch's autocast training step of the tiny ResNet,
Swin and ConvNeXt (f32 weights, f16 activations on the CPU; candle's CPU backend has f16 but no bf16 matrix
products, so the CPU parity check of rtb's autocast path is in f16).

The same weights, inputs and targets as the f32 train steps of make_golden.py and
make_golden_convnext.py (read back from their fixtures); writes
autocast_f16_golden.safetensors: `{resnet,swin,convnext}.loss` and
`{resnet,swin,convnext}.grad.NAME` for every parameter.

    pip install -r requirements-golden.txt
    python make_golden_autocast.py
"""

import os

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from timm.models.convnext import ConvNeXt
from timm.models.swin_transformer import SwinTransformer

from make_golden import HERE, SWIN_TINY, tiny_resnet
from make_golden_convnext import CONVNEXT_TINY

torch.set_num_threads(1)


def autocast_step(model, x, y):
    model.train()
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.float16):
        logits = model(x)
    assert logits.dtype == torch.float16
    loss = F.cross_entropy(logits.float(), y)
    loss.backward()
    out = {"loss": loss.detach().reshape(1)}
    for name, p in model.named_parameters():
        assert p.dtype == torch.float32 and p.grad.dtype == torch.float32, name
        out["grad." + name] = p.grad.detach().clone()
    return out


def main():
    gold = {}
    resnet = tiny_resnet(1)
    resnet.load_state_dict(load_file(os.path.join(HERE, "resnet_tiny.safetensors")))
    data = load_file(os.path.join(HERE, "resnet_tiny_golden.safetensors"))
    step = autocast_step(resnet, data["train.input"], data["train.target"])
    gold.update({"resnet." + k: v for k, v in step.items()})

    swin = SwinTransformer(img_size=(96, 128), **SWIN_TINY)
    swin.load_state_dict(load_file(os.path.join(HERE, "swin_tiny.safetensors")), strict=False)
    data = load_file(os.path.join(HERE, "swin_tiny_golden.safetensors"))
    step = autocast_step(swin, data["train.input"], data["train.target"])
    gold.update({"swin." + k: v for k, v in step.items()})

    convnext = ConvNeXt(**CONVNEXT_TINY)
    convnext.load_state_dict(load_file(os.path.join(HERE, "convnext_tiny.safetensors")))
    data = load_file(os.path.join(HERE, "convnext_tiny_golden.safetensors"))
    step = autocast_step(convnext, data["train.input"], data["train.target"])
    gold.update({"convnext." + k: v for k, v in step.items()})
    save_file({k: v.contiguous() for k, v in gold.items()}, os.path.join(HERE, "autocast_f16_golden.safetensors"))


if __name__ == "__main__":
    main()
