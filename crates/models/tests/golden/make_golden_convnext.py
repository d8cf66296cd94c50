"""Golden fixtures for rtb-models' ConvNeXt: timm forward passes and PyTorch gradients on a tiny
seeded random ConvNeXt, and the same weights in the original facebookresearch layout (.pth under
'model') and in transformers' layouts (ConvNextForImageClassification, ConvNextBackbone).

Run from the repository root with the pinned stack (requirements-golden.txt):

    /work/venvs/golden/bin/python crates/models/tests/golden/make_golden_convnext.py

Writes crates/models/tests/golden/convnext_tiny*.{safetensors,pth} (about 750 KB in all).

    make_golden_convnext.py --full OUT_DIR [--convnext-t W]

writes the full-size check instead (ConvNeXt-T at 224²; weights from the given timm
safetensors file, or seeded random ones) for
`RTB_FULL_PARITY_DIR=OUT_DIR cargo test -p rtb-models --test convnext`.
"""

import argparse
import collections
import os
import sys

import numpy as np
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from timm.models.convnext import ConvNeXt
from transformers import ConvNextBackbone, ConvNextConfig, ConvNextForImageClassification

HERE = os.path.dirname(os.path.abspath(__file__))
torch.set_num_threads(1)

# Must equal ConvNeXtConfig::tiny() in the crate.
CONVNEXT_TINY = dict(depths=(1, 1, 2, 1), dims=(8, 16, 16, 32), num_classes=5, ls_init_value=1e-6,
                     drop_path_rate=0.0)


def randomize(model, seed):
    """Seeded random values everywhere (the idea of make_golden.py's randomize), and layer
    scales around 0.5 instead of timm's 1e-6 so that every block changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.copy_(0.5 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("weight") and p.dim() == 1:  # norm scales
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
    return model


def state(model):
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def stages(model, x):
    """C2..C5: the output of each timm stage."""
    x = model.stem(x)
    outs = []
    for stage in model.stages:
        x = stage(x)
        outs.append(x)
    return outs


def outputs(prefix, model, x):
    """C2..C5, pooled features (after head.norm) and logits under `prefix`."""
    maps = stages(model, x)
    out = {f"{prefix}c{i + 2}": s.detach().contiguous() for i, s in enumerate(maps)}
    feats = model.forward_features(x)
    out[f"{prefix}pooled"] = model.forward_head(feats, pre_logits=True).detach().contiguous()
    out[f"{prefix}logits"] = model(x).detach().contiguous()
    # forward_intermediates must agree with the stage-by-stage outputs.
    _, inter = model.forward_intermediates(x)
    for a, b in zip(inter, maps):
        assert torch.equal(a, b)
    return out


def timm_to_facebook(sd):
    """timm names to the original release's (the inverse of timm's checkpoint_filter_fn)."""
    out = collections.OrderedDict()
    for k, v in sd.items():
        p = k.split(".")
        if k.startswith("stem."):
            k = "downsample_layers.0." + ".".join(p[1:])
        elif k.startswith("stages.") and p[2] == "downsample":
            k = f"downsample_layers.{p[1]}." + ".".join(p[3:])
        elif k.startswith("stages.") and p[2] == "blocks":
            rest = ".".join(p[4:])
            rest = rest.replace("conv_dw.", "dwconv.").replace("mlp.fc1.", "pwconv1.").replace("mlp.fc2.", "pwconv2.")
            k = f"stages.{p[1]}.{p[3]}.{rest}"
        elif k.startswith("head.norm."):
            k = "norm." + p[-1]
        elif k.startswith("head.fc."):
            k = "head." + p[-1]
        else:
            raise KeyError(k)
        out[k] = v
    return out


def timm_to_transformers(sd, backbone=False):
    """timm names to transformers' ConvNextForImageClassification (or ConvNextBackbone) names."""
    p = "" if backbone else "convnext."
    out = {}
    for k, v in sd.items():
        s = k.split(".")
        if k.startswith("stem.0."):
            out[p + "embeddings.patch_embeddings." + s[-1]] = v
        elif k.startswith("stem.1."):
            out[p + "embeddings.layernorm." + s[-1]] = v
        elif k.startswith("stages.") and s[2] == "downsample":
            out[p + f"encoder.stages.{s[1]}.downsampling_layer.{s[3]}.{s[4]}"] = v
        elif k.startswith("stages.") and s[2] == "blocks":
            rest = ".".join(s[4:])
            for a, b in (("conv_dw.", "dwconv."), ("norm.", "layernorm."), ("mlp.fc1.", "pwconv1."),
                         ("mlp.fc2.", "pwconv2."), ("gamma", "layer_scale_parameter")):
                if rest.startswith(a):
                    rest = b + rest[len(a):]
                    break
            else:
                raise KeyError(k)
            out[p + f"encoder.stages.{s[1]}.layers.{s[3]}.{rest}"] = v
        elif k.startswith("head.norm."):
            if not backbone:
                out[p + "layernorm." + s[-1]] = v
        elif k.startswith("head.fc."):
            if not backbone:
                out["classifier." + s[-1]] = v
        else:
            raise KeyError(k)
    return out


def hf_config(backbone=False):
    # layer_norm_eps: transformers' final LayerNorm defaults to 1e-12; timm's is 1e-6.
    return ConvNextConfig(num_channels=3, patch_size=4, num_stages=4, hidden_sizes=list(CONVNEXT_TINY["dims"]),
                          depths=list(CONVNEXT_TINY["depths"]), hidden_act="gelu", layer_scale_init_value=1e-6,
                          drop_path_rate=0.0, layer_norm_eps=1e-6, num_labels=CONVNEXT_TINY["num_classes"],
                          out_features=["stage1", "stage2", "stage3", "stage4"] if backbone else None)


def train_step(model, x, y):
    """One step of cross entropy in train mode: the loss, the input's and every parameter's
    gradient (drop path 0, so train mode is deterministic)."""
    model.train()
    model.zero_grad()
    x = x.clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    out = {"loss": loss.detach().reshape(1), "grad_input": x.grad.detach().clone()}
    for name, p in model.named_parameters():
        out["grad." + name] = p.grad.detach().clone()
    return out


def tiny():
    g = torch.Generator().manual_seed(4321)
    model = randomize(ConvNeXt(**CONVNEXT_TINY), 3).eval()
    sd = state(model)
    save_file(sd, os.path.join(HERE, "convnext_tiny.safetensors"))
    x_sq = torch.randn(1, 3, 64, 64, generator=g)
    x_ns = torch.randn(1, 3, 32, 96, generator=g)
    with torch.no_grad():
        gold = {"square.input": x_sq, "nonsquare.input": x_ns}
        gold.update(outputs("square.", model, x_sq))
        gold.update(outputs("nonsquare.", model, x_ns))

        # Original release layout, zip .pth under 'model' as the release ships it.
        torch.save({"model": timm_to_facebook(sd)}, os.path.join(HERE, "convnext_tiny_fb.pth"))

        # transformers, classification: same weights, same logits.
        hf = ConvNextForImageClassification(hf_config()).eval()
        hf_sd = timm_to_transformers(sd)
        hf.load_state_dict(hf_sd, strict=True)
        hf_logits = hf(pixel_values=x_sq).logits
        err = (hf_logits - gold["square.logits"]).abs().max().item()
        assert err < 1e-5, f"transformers != timm: {err}"
        save_file({k: v.contiguous() for k, v in hf.state_dict().items()},
                  os.path.join(HERE, "convnext_tiny_transformers.safetensors"))

        # transformers' ConvNextBackbone: the dense-task norms, random; on nonsquare.input.
        hb = ConvNextBackbone(hf_config(backbone=True)).eval()
        hb_sd = timm_to_transformers(sd, backbone=True)
        for i in range(4):
            c = CONVNEXT_TINY["dims"][i]
            hb_sd[f"hidden_states_norms.stage{i + 1}.weight"] = 1.0 + 0.2 * torch.randn(c, generator=g)
            hb_sd[f"hidden_states_norms.stage{i + 1}.bias"] = 0.1 * torch.randn(c, generator=g)
        hb.load_state_dict(hb_sd, strict=True)
        save_file({k: v.contiguous() for k, v in hb.state_dict().items()},
                  os.path.join(HERE, "convnext_tiny_backbone_transformers.safetensors"))
        maps = hb(pixel_values=x_ns).feature_maps
        gold.update({f"dense.c{i + 2}": m.contiguous() for i, m in enumerate(maps)})

    # Train step at 32×64 (every stage, the head, the input gradient); small to keep the file small.
    x_tr = torch.randn(2, 3, 32, 64, generator=g)
    y_tr = torch.tensor([1, 4])
    trained = randomize(ConvNeXt(**CONVNEXT_TINY), 3)
    trained.load_state_dict(sd)
    step = train_step(trained, x_tr, y_tr)
    gold["train.input"] = x_tr
    gold["train.target"] = y_tr.to(torch.int64)
    gold.update({"train." + k: v for k, v in step.items()})
    save_file({k: v.contiguous() for k, v in gold.items()}, os.path.join(HERE, "convnext_tiny_golden.safetensors"))


def full(out_dir, weights):
    os.makedirs(out_dir, exist_ok=True)
    g = torch.Generator().manual_seed(99)
    x224 = torch.randn(2, 3, 224, 224, generator=g)
    model = timm.create_model("convnext_tiny", pretrained=False)
    if weights:
        model.load_state_dict(load_file(weights))
    else:
        randomize(model, 3)
    model.eval()
    save_file(state(model), os.path.join(out_dir, "convnext_t.safetensors"))
    with torch.no_grad():
        gold = {"square.input": x224}
        gold.update(outputs("square.", model, x224))
    save_file(gold, os.path.join(out_dir, "convnext_t_golden.safetensors"))
    print("wrote convnext_t", file=sys.stderr)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", metavar="OUT_DIR")
    ap.add_argument("--convnext-t", help="timm convnext_tiny safetensors (default: seeded random)")
    args = ap.parse_args()
    torch.manual_seed(0)
    np.random.seed(0)
    if args.full:
        full(args.full, args.convnext_t)
    else:
        tiny()
