"""Golden fixtures for rtb-models: timm / transformers forward passes and PyTorch gradients on
tiny seeded random models, plus PyTorch checkpoints in both serialisation formats.

Run from the repository root with the pinned stack (requirements-golden.txt):

    python3 -m venv /work/venvs/models
    /work/venvs/models/bin/pip install -r crates/models/tests/golden/requirements-golden.txt
    /work/venvs/models/bin/python crates/models/tests/golden/make_golden.py

Writes crates/models/tests/golden/*.safetensors and *.pth (a few hundred KB in all).

    make_golden.py --full OUT_DIR [--resnet50 W] [--swin-t W]

writes the full-size check instead (ResNet-50 and Swin-T at 224², ResNet-50 also at 192×256):
weights (from the given timm safetensors files, or seeded random ones) and their outputs, for
`RTB_FULL_PARITY_DIR=OUT_DIR cargo test -p rtb-models --test parity`.
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
from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from timm.models.swin_transformer import SwinTransformer
from transformers import SwinBackbone, SwinConfig, SwinForImageClassification

HERE = os.path.dirname(os.path.abspath(__file__))
torch.set_num_threads(1)

# Must equal ResNetConfig::tiny() and SwinConfig::tiny() in the crate.
RESNET_TINY = dict(block=Bottleneck, layers=[1, 2, 1, 1], stem_width=8, channels=(4, 8, 8, 16), num_classes=5)
SWIN_TINY = dict(patch_size=4, embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=3,
                 mlp_ratio=2.0, num_classes=5, drop_path_rate=0.0)


def randomize(model, seed):
    """Seeded random values everywhere, BatchNorm statistics included, so eval BN matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight") and p.dim() == 1:  # norm scales
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
    return model


def state(model):
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def tiny_resnet(seed):
    """timm's ResNet with a narrower stem than its fixed 64 (timm only widens deep stems):
    the stem and the layers that read it are swapped for 8-channel ones."""
    model = ResNet(**RESNET_TINY)
    stem = RESNET_TINY["stem_width"]
    model.conv1 = torch.nn.Conv2d(3, stem, 7, 2, 3, bias=False)
    model.bn1 = torch.nn.BatchNorm2d(stem)
    first = model.layer1[0]
    first.conv1 = torch.nn.Conv2d(stem, first.conv1.out_channels, 1, bias=False)
    first.downsample[0] = torch.nn.Conv2d(stem, first.downsample[0].out_channels, 1, bias=False)
    return randomize(model, seed)


def resnet_stages(model, x):
    x = model.maxpool(model.act1(model.bn1(model.conv1(x))))
    outs = []
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        x = layer(x)
        outs.append(x)
    return outs


def swin_stages(model, x):
    x = model.patch_embed(x)
    outs = []
    for layer in model.layers:
        x = layer(x)
        outs.append(x.permute(0, 3, 1, 2).contiguous())
    return outs


def outputs(prefix, stages, logits):
    out = {f"{prefix}c{i + 2}": s.detach().contiguous() for i, s in enumerate(stages)}
    if logits is not None:
        out[f"{prefix}logits"] = logits.detach().contiguous()
    return out


def timm_to_transformers(sd, depths, backbone=False):
    """timm >= 0.9 Swin keys to transformers' (qkv split, merging at the end of the stage)."""
    p = "" if backbone else "swin."
    out = {}
    for k, v in sd.items():
        if k.endswith("relative_position_index") or k.endswith("attn_mask"):
            continue
        if k.startswith("patch_embed.proj."):
            out[p + "embeddings.patch_embeddings.projection." + k.split(".")[-1]] = v
        elif k.startswith("patch_embed.norm."):
            out[p + "embeddings.norm." + k.split(".")[-1]] = v
        elif k.startswith("norm."):
            if not backbone:
                out[p + "layernorm." + k.split(".")[-1]] = v
        elif k.startswith("head.fc."):
            if not backbone:
                out["classifier." + k.split(".")[-1]] = v
        elif k.startswith("layers."):
            parts = k.split(".")
            stage = int(parts[1])
            if parts[2] == "downsample":
                out[p + f"encoder.layers.{stage - 1}.downsample." + ".".join(parts[3:])] = v
                continue
            block = parts[3]
            base = p + f"encoder.layers.{stage}.blocks.{block}."
            rest = ".".join(parts[4:])
            if rest.startswith("attn.qkv."):
                param = rest.split(".")[-1]
                q, kk, vv = v.chunk(3, dim=0)
                out[base + "attention.self.query." + param] = q
                out[base + "attention.self.key." + param] = kk
                out[base + "attention.self.value." + param] = vv
                continue
            mapping = {"norm1.": "layernorm_before.", "norm2.": "layernorm_after.",
                       "attn.relative_position_bias_table": "attention.self.relative_position_bias_table",
                       "attn.proj.": "attention.output.dense.", "mlp.fc1.": "intermediate.dense.",
                       "mlp.fc2.": "output.dense."}
            for a, b in mapping.items():
                if rest.startswith(a):
                    out[base + b + rest[len(a):]] = v
                    break
            else:
                raise KeyError(k)
        else:
            raise KeyError(k)
    return out


V5_RENAMES = [
    ("attention.self.query", "attention.q_proj"),
    ("attention.self.key", "attention.k_proj"),
    ("attention.self.value", "attention.v_proj"),
    ("attention.self.relative_position_bias_table", "attention.relative_position_bias.relative_position_bias_table"),
    ("attention.output.dense", "attention.o_proj"),
    ("intermediate.dense", "mlp.fc1"),
    ("output.dense", "mlp.fc2"),
]


def hub_to_v5(sd, backbone=False):
    """The hub checkpoints' transformers names to transformers 5's module names (the renames
    transformers 5 applies when it loads such a checkpoint; conversion_mapping.py, "swin")."""
    out = {}
    for k, v in sd.items():
        for a, b in V5_RENAMES:
            k = k.replace(a, b)
        if backbone and (k.startswith("encoder.") or k.startswith("embeddings.")):
            k = "swin." + k
        out[k] = v
    return out


def timm_to_microsoft(sd):
    out = collections.OrderedDict()
    for k, v in sd.items():
        parts = k.split(".")
        if k.startswith("layers.") and parts[2] == "downsample":
            k = f"layers.{int(parts[1]) - 1}." + ".".join(parts[2:])
        elif k.startswith("head.fc."):
            k = "head." + parts[-1]
        out[k] = v
    return out


def hf_config(image_size, num_labels=None, backbone=False):
    cfg = SwinConfig(image_size=image_size, patch_size=4, num_channels=3, embed_dim=8, depths=[2, 2, 2, 2],
                     num_heads=[1, 2, 2, 4], window_size=3, mlp_ratio=2.0, qkv_bias=True, hidden_act="gelu",
                     layer_norm_eps=1e-5, drop_path_rate=0.0, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0, num_labels=num_labels or 2,
                     out_features=["stage1", "stage2", "stage3", "stage4"] if backbone else None)
    return cfg


def train_step(model, x, y):
    """One step of cross entropy in train mode: the loss, every parameter's gradient and the
    updated BatchNorm statistics."""
    model.train()
    model.zero_grad()
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    out = {"loss": loss.detach().reshape(1)}
    for name, p in model.named_parameters():
        out["grad." + name] = p.grad.detach().clone()
    for name, b in model.named_buffers():
        if name.endswith("running_mean") or name.endswith("running_var"):
            out["stat." + name] = b.detach().clone()
    return out


def tiny():
    g = torch.Generator().manual_seed(1234)

    # ResNet (timm; names equal torchvision's).
    resnet = tiny_resnet(1).eval()
    sd = state(resnet)
    save_file({k: v for k, v in sd.items()}, os.path.join(HERE, "resnet_tiny.safetensors"))
    x_sq = torch.randn(1, 3, 224, 224, generator=g)
    x_ns = torch.randn(2, 3, 96, 160, generator=g)
    with torch.no_grad():
        gold = {"square.input": x_sq, "nonsquare.input": x_ns}
        gold.update(outputs("square.", resnet_stages(resnet, x_sq), resnet(x_sq)))
        gold.update(outputs("nonsquare.", resnet_stages(resnet, x_ns), resnet(x_ns)))
    # Train step on a copy (running statistics change).
    x_tr = torch.randn(4, 3, 64, 64, generator=g)
    y_tr = torch.tensor([0, 3, 4, 1])
    trained = tiny_resnet(1)
    step = train_step(trained, x_tr, y_tr)
    gold["train.input"] = x_tr
    gold["train.target"] = y_tr.to(torch.int64)
    gold.update({"train." + k: v for k, v in step.items()})
    save_file({k: v.contiguous() for k, v in gold.items()}, os.path.join(HERE, "resnet_tiny_golden.safetensors"))

    # The same weights as PyTorch checkpoints: ANT-style zip, DeepAug-style legacy.
    torch.save({"model_state_dict": resnet.state_dict(), "epoch": 5},
               os.path.join(HERE, "resnet_tiny_ant_style.pth"))
    opt = torch.optim.SGD(resnet.parameters(), lr=0.1, momentum=0.9)
    resnet.train()
    F.cross_entropy(resnet(x_tr), y_tr).backward()
    opt.step()  # gives the optimizer momentum buffers, stored alongside as in the real file
    resnet.load_state_dict(sd)
    resnet.eval()
    module_sd = collections.OrderedDict(("module." + k, v) for k, v in resnet.state_dict().items())
    torch.save({"epoch": 180, "arch": "resnet50", "state_dict": module_sd,
                "best_acc1": torch.tensor(75.8), "optimizer": opt.state_dict()},
               os.path.join(HERE, "resnet_tiny_deepaug_style.pth.tar"), _use_new_zipfile_serialization=False)

    # Swin (timm >= 0.9 layout).
    def make_swin(size):
        return randomize(SwinTransformer(img_size=size, **SWIN_TINY), 2).eval()

    swin = make_swin((96, 96))
    swin_sd = {k: v for k, v in state(swin).items()
               if not k.endswith("relative_position_index") and not k.endswith("attn_mask")}
    save_file(swin_sd, os.path.join(HERE, "swin_tiny.safetensors"))
    x_96 = torch.randn(2, 3, 96, 96, generator=g)
    x_96x128 = torch.randn(1, 3, 96, 128, generator=g)
    swin_ns = make_swin((96, 128))
    swin_ns.load_state_dict(swin_sd, strict=False)
    with torch.no_grad():
        gold = {"square.input": x_96, "nonsquare.input": x_96x128}
        gold.update(outputs("square.", swin_stages(swin, x_96), swin(x_96)))
        gold.update(outputs("nonsquare.", swin_stages(swin_ns, x_96x128), swin_ns(x_96x128)))

        # transformers layout, classification: same logits as timm at 96².
        hf = SwinForImageClassification(hf_config(96, num_labels=5)).eval()
        hf_sd = timm_to_transformers(state(swin), SWIN_TINY["depths"])
        missing, unexpected = hf.load_state_dict(hub_to_v5(hf_sd), strict=False)
        assert not unexpected and all(k.endswith("relative_position_index") for k in missing), (missing, unexpected)
        hf_logits = hf(pixel_values=x_96).logits
        assert torch.allclose(hf_logits, gold["square.logits"], rtol=1e-4, atol=1e-5), "transformers != timm"
        save_file({k: v.contiguous() for k, v in hf_sd.items()}, os.path.join(HERE, "swin_tiny_transformers.safetensors"))

        # Microsoft layout (patch merging at the end of the stage, head.weight), zip .pth under 'model'.
        ms_sd = timm_to_microsoft(state(swin))
        torch.save({"model": ms_sd, "epoch": 300}, os.path.join(HERE, "swin_tiny_microsoft.pth"))

        # Dense rule: transformers' SwinBackbone keeps shift and window at every size (padding
        # first, then rolling), as mmdetection's Swin does. Random output norms.
        x_dense = torch.randn(1, 3, 128, 160, generator=g)
        hb = SwinBackbone(hf_config(128, backbone=True)).eval()
        hb_sd = timm_to_transformers(state(swin), SWIN_TINY["depths"], backbone=True)
        for i, stage in enumerate(["stage1", "stage2", "stage3", "stage4"]):
            c = 8 << i
            hb_sd[f"hidden_states_norms.{stage}.weight"] = 1.0 + 0.2 * torch.randn(c, generator=g)
            hb_sd[f"hidden_states_norms.{stage}.bias"] = 0.1 * torch.randn(c, generator=g)
        missing, unexpected = hb.load_state_dict(hub_to_v5(hb_sd, backbone=True), strict=False)
        assert not unexpected and all(k.endswith("relative_position_index") or k.startswith("swin.layernorm.")
                                      for k in missing), (missing, unexpected)
        # Saved with transformers 5's own module names (the other fixture has the hub's).
        save_file({k: v.contiguous() for k, v in hb.state_dict().items()
                   if not k.endswith("relative_position_index") and not k.startswith("swin.layernorm.")},
                  os.path.join(HERE, "swin_tiny_backbone_transformers.safetensors"))
        maps = hb(pixel_values=x_dense).feature_maps
        x_dense224 = torch.randn(1, 3, 96, 224, generator=g)
        maps224 = SwinBackbone(hf_config(96, backbone=True)).eval()
        maps224.load_state_dict(hub_to_v5(hb_sd, backbone=True), strict=False)
        maps224 = maps224(pixel_values=x_dense224).feature_maps
        gold["dense.input"] = x_dense
        gold.update({f"dense.c{i + 2}": m.contiguous() for i, m in enumerate(maps)})
        gold["dense_fit.input"] = x_dense224
        gold.update({f"dense_fit.c{i + 2}": m.contiguous() for i, m in enumerate(maps224)})

    # Train step at 96×128 (rolls, padding and masks all in the graph).
    x_tr = torch.randn(2, 3, 96, 128, generator=g)
    y_tr = torch.tensor([1, 4])
    swin_tr = make_swin((96, 128))
    swin_tr.load_state_dict(swin_sd, strict=False)
    step = train_step(swin_tr, x_tr, y_tr)
    gold["train.input"] = x_tr
    gold["train.target"] = y_tr.to(torch.int64)
    gold.update({"train." + k: v for k, v in step.items()})
    save_file({k: v.contiguous() for k, v in gold.items()}, os.path.join(HERE, "swin_tiny_golden.safetensors"))


def full(out_dir, resnet_path, swin_path):
    os.makedirs(out_dir, exist_ok=True)
    g = torch.Generator().manual_seed(99)
    x224 = torch.randn(2, 3, 224, 224, generator=g)
    x_ns = torch.randn(1, 3, 192, 256, generator=g)
    for name, path in (("resnet50", resnet_path), ("swin_t", swin_path)):
        model_name = "resnet50" if name == "resnet50" else "swin_tiny_patch4_window7_224"
        model = timm.create_model(model_name, pretrained=False)
        if path:
            model.load_state_dict(load_file(path), strict=False)
        else:
            randomize(model, 3)
        model.eval()
        sd = {k: v for k, v in state(model).items()
              if not k.endswith("relative_position_index") and not k.endswith("attn_mask")}
        save_file(sd, os.path.join(out_dir, f"{name}.safetensors"))
        stages = resnet_stages if name == "resnet50" else swin_stages
        with torch.no_grad():
            gold = {"square.input": x224}
            gold.update(outputs("square.", stages(model, x224), model(x224)))
            if name == "resnet50":
                gold["nonsquare.input"] = x_ns
                gold.update(outputs("nonsquare.", stages(model, x_ns), model(x_ns)))
        save_file(gold, os.path.join(out_dir, f"{name}_golden.safetensors"))
        print("wrote", name, file=sys.stderr)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", metavar="OUT_DIR")
    ap.add_argument("--resnet50", help="timm resnet50 safetensors (default: seeded random)")
    ap.add_argument("--swin-t", help="timm swin_tiny_patch4_window7_224 safetensors (default: seeded random)")
    args = ap.parse_args()
    torch.manual_seed(0)
    np.random.seed(0)
    if args.full:
        full(args.full, args.resnet50, args.swin_t)
    else:
        tiny()
