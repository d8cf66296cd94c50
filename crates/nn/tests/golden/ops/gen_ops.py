"""Golden fixtures for rtb-nn's ops (resize, pooling, norms, activations, DropPath, conv2d,
BatchNorm2d, Linear): inputs, PyTorch CPU outputs, and gradients of sum(y * gy) for a fixed
random upstream gradient gy. All tensors are float32.

Each file holds cases named `<case>.<tensor>`; `<case>.cfg` is a float64 vector whose layout
per family is documented in the `cfg` comments below (and read by crates/nn/tests/ops_*.rs).

    python3 -m venv /work/venvs/nn-ops
    /work/venvs/nn-ops/bin/pip install -r crates/nn/tests/golden/ops/requirements-ops.txt
    /work/venvs/nn-ops/bin/python crates/nn/tests/golden/ops/gen_ops.py
"""

import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(20240611)
torch.set_num_threads(1)


def t32(*shape):
    return torch.randn(*shape, dtype=torch.float32)


def run(fn, inputs, cfg):
    """Forward, then backward of sum(y * gy); returns the tensors to store."""
    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
    y = fn(**leaves)
    gy = t32(*y.shape)
    (y * gy).sum().backward()
    out = {k: v.detach().clone() for k, v in inputs.items()}
    out["y"] = y.detach().clone()
    out["gy"] = gy
    for k, v in leaves.items():
        out["g" + k] = v.grad.detach().clone()
    out["cfg"] = torch.tensor(cfg, dtype=torch.float64)
    return out


def save(name, cases):
    flat = {}
    for case, tensors in cases.items():
        for k, v in tensors.items():
            flat[f"{case}.{k}"] = v.contiguous()
    save_file(flat, os.path.join(OUT, f"{name}.safetensors"))


def bilinear():
    # cfg = [out_h, out_w, align_corners]
    cases = {}
    for name, (h, w), (oh, ow) in [
        ("up", (5, 7), (9, 12)),
        ("down", (9, 11), (4, 6)),
        ("mixed", (6, 4), (3, 10)),
        ("to_1x1", (4, 5), (1, 1)),
        ("from_1x1", (1, 1), (3, 4)),
        ("x2", (4, 6), (8, 12)),
        ("same", (5, 6), (5, 6)),
    ]:
        for ac in (False, True):
            x = t32(2, 3, h, w)
            cases[f"{name}_ac{int(ac)}"] = run(
                lambda x: F.interpolate(x, size=(oh, ow), mode="bilinear", align_corners=ac),
                {"x": x},
                [oh, ow, float(ac)],
            )
    save("bilinear", cases)


def nearest():
    # cfg = [out_h, out_w]
    cases = {}
    for name, (h, w), (oh, ow) in [
        ("x2", (5, 6), (10, 12)),
        ("x3x2", (3, 4), (9, 8)),
        ("general", (5, 7), (8, 9)),
        ("down", (9, 8), (4, 3)),
    ]:
        x = t32(2, 3, h, w)
        cases[name] = run(
            lambda x: F.interpolate(x, size=(oh, ow), mode="nearest"), {"x": x}, [oh, ow]
        )
    save("nearest", cases)


def adaptive():
    # cfg = [out_h, out_w]
    cases = {}
    for name, (h, w), (oh, ow) in [
        ("7x5_to_3x2", (7, 5), (3, 2)),
        ("10x10_to_6x6", (10, 10), (6, 6)),
        ("5x5_to_1x1", (5, 5), (1, 1)),
        ("3x4_to_5x7", (3, 4), (5, 7)),
        ("13x9_to_4x4", (13, 9), (4, 4)),
    ]:
        x = t32(2, 3, h, w)
        cases[name] = run(lambda x: F.adaptive_avg_pool2d(x, (oh, ow)), {"x": x}, [oh, ow])
    save("adaptive_avg_pool", cases)


def max_pool():
    # cfg = [kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode]
    cases = {}
    specs = [
        ("k3s2p1_9x9", (9, 9), (3, 3), (2, 2), (1, 1), (1, 1), False, False),
        ("k3s2p1_8x8", (8, 8), (3, 3), (2, 2), (1, 1), (1, 1), False, False),
        ("k3s2p1_ceil_8x8", (8, 8), (3, 3), (2, 2), (1, 1), (1, 1), True, False),
        ("k2s2_8x8", (8, 8), (2, 2), (2, 2), (0, 0), (1, 1), False, False),
        ("k2s2_7x7", (7, 7), (2, 2), (2, 2), (0, 0), (1, 1), False, False),
        ("k2s2_ceil_7x7", (7, 7), (2, 2), (2, 2), (0, 0), (1, 1), True, False),
        ("k3s1p1_6x7", (6, 7), (3, 3), (1, 1), (1, 1), (1, 1), False, False),
        ("k3s2_dil2_p1_9x10", (9, 10), (3, 3), (2, 2), (1, 1), (2, 2), False, False),
        ("k3x2_s2x1_p1x0_ceil_7x6", (7, 6), (3, 2), (2, 1), (1, 0), (1, 1), True, False),
        ("ties_k3s2p1_9x9", (9, 9), (3, 3), (2, 2), (1, 1), (1, 1), False, True),
        ("ties_k3s1_7x7", (7, 7), (3, 3), (1, 1), (0, 0), (1, 1), False, True),
        ("ties_k2s2_ceil_7x7", (7, 7), (2, 2), (2, 2), (0, 0), (1, 1), True, True),
    ]
    for name, (h, w), k, s, p, d, ceil, ties in specs:
        x = t32(2, 3, h, w)
        if ties:
            # Few distinct values: many windows have several maxima.
            x = torch.round(x)
        cases[name] = run(
            lambda x: F.max_pool2d(x, k, s, p, d, ceil_mode=ceil),
            {"x": x},
            [*k, *s, *p, *d, float(ceil)],
        )
    save("max_pool", cases)


def norms():
    # layer_norm cfg = [eps, affine]; layer_norm2d cfg = [eps, affine]
    cases = {}
    for name, shape, eps in [("ln_last", (2, 5, 8), 1e-5), ("ln_2d_input", (3, 7), 1e-6)]:
        x = t32(*shape) * 3 + 1
        feat = shape[-1]
        cases[name] = run(
            lambda x, weight, bias: F.layer_norm(x, (feat,), weight, bias, eps),
            {"x": x, "weight": t32(feat), "bias": t32(feat)},
            [eps, 1.0],
        )
    x = t32(2, 5, 4)
    cases["ln_no_affine"] = run(lambda x: F.layer_norm(x, (4,), None, None, 1e-5), {"x": x}, [1e-5, 0.0])

    def ln2d(x, weight, bias, eps=1e-6):
        # timm's LayerNorm2d: permute to channels-last, layer_norm, permute back.
        return F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), weight, bias, eps).permute(0, 3, 1, 2)

    x = t32(2, 6, 3, 4) * 2 - 0.5
    cases["ln2d"] = run(ln2d, {"x": x, "weight": t32(6), "bias": t32(6)}, [1e-6, 1.0])
    save("layer_norm", cases)


def activations():
    # softmax cfg = [dim]; gelu cfg = []
    cases = {}
    x = t32(2, 3, 5) * 3
    for dim in (2, 1, 0):
        cases[f"softmax_dim{dim}"] = run(lambda x: F.softmax(x, dim), {"x": x.clone()}, [dim])
        cases[f"log_softmax_dim{dim}"] = run(lambda x: F.log_softmax(x, dim), {"x": x.clone()}, [dim])
    x = torch.cat([torch.linspace(-6, 6, 49), t32(3, 17).flatten() * 2]).reshape(4, 25)
    cases["gelu"] = run(lambda x: F.gelu(x), {"x": x}, [])
    save("activation", cases)


def drop_path():
    # cfg = [drop_prob]; mask = keep flags per sample
    cases = {}
    x = t32(4, 3, 2, 2)
    mask = torch.tensor([1.0, 0.0, 1.0, 1.0])
    p = 0.25

    def dp(x):
        # timm's drop_path with scale_by_keep=True and the given mask.
        return x * (mask / (1 - p)).reshape(4, 1, 1, 1)

    cases["p025"] = run(dp, {"x": x}, [p])
    cases["p025"]["mask"] = mask
    save("drop_path", cases)


def conv():
    # cfg = [stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, has_bias]
    cases = {}
    specs = [
        # name, N, C, H, W, O, (kh, kw), stride, padding, dilation, groups, bias
        ("k3s1p1", 2, 4, 8, 8, 6, (3, 3), (1, 1), (1, 1), (1, 1), 1, True),
        ("k3s2p1_odd", 2, 4, 7, 9, 5, (3, 3), (2, 2), (1, 1), (1, 1), 1, True),
        ("k3_dil2_p2", 2, 3, 9, 8, 4, (3, 3), (1, 1), (2, 2), (2, 2), 1, True),
        ("k3_groups2", 2, 4, 6, 6, 6, (3, 3), (1, 1), (1, 1), (1, 1), 2, True),
        ("depthwise_k3", 2, 4, 6, 5, 4, (3, 3), (1, 1), (1, 1), (1, 1), 4, True),
        ("depthwise_k7_p3", 1, 3, 9, 9, 3, (7, 7), (1, 1), (3, 3), (1, 1), 3, True),
        ("k1", 2, 5, 6, 7, 3, (1, 1), (1, 1), (0, 0), (1, 1), 1, True),
        ("k1s2", 2, 5, 7, 6, 4, (1, 1), (2, 2), (0, 0), (1, 1), 1, False),
        ("stem_k7s2p3", 2, 3, 11, 12, 4, (7, 7), (2, 2), (3, 3), (1, 1), 1, False),
        ("k1x3_p0x1", 2, 3, 5, 6, 4, (1, 3), (1, 1), (0, 1), (1, 1), 1, True),
        ("k3_s2x1_p1x2", 2, 3, 8, 7, 4, (3, 3), (2, 1), (1, 2), (1, 1), 1, True),
        ("k3_nobias", 1, 2, 5, 5, 3, (3, 3), (1, 1), (0, 0), (1, 1), 1, False),
        ("k4s4_patch_embed", 2, 3, 8, 12, 5, (4, 4), (4, 4), (0, 0), (1, 1), 1, True),
    ]
    for name, n, c, h, w, o, k, s, p, d, g, bias in specs:
        inputs = {"x": t32(n, c, h, w), "weight": t32(o, c // g, *k) * 0.5}
        if bias:
            inputs["bias"] = t32(o)

        def f(x, weight, bias=None):
            return F.conv2d(x, weight, bias, s, p, d, g)

        cases[name] = run(f, inputs, [*s, *p, *d, g, float(bias)])
    save("conv2d", cases)


def batch_norm():
    # cfg = [eps, momentum]; two train steps then eval, with grads of the first step.
    cases = {}
    bn = torch.nn.BatchNorm2d(3, eps=1e-5, momentum=0.1)
    with torch.no_grad():
        bn.weight.copy_(t32(3))
        bn.bias.copy_(t32(3))
        bn.running_mean.copy_(t32(3))
        bn.running_var.copy_(torch.rand(3) + 0.5)
    case = {
        "weight": bn.weight.detach().clone(),
        "bias": bn.bias.detach().clone(),
        "running_mean0": bn.running_mean.clone(),
        "running_var0": bn.running_var.clone(),
    }
    bn.train()
    x1 = (t32(4, 3, 5, 5) * 2 + 1).requires_grad_(True)
    y1 = bn(x1)
    gy = t32(*y1.shape)
    (y1 * gy).sum().backward()
    case.update(
        x1=x1.detach(), y1=y1.detach(), gy=gy, gx=x1.grad, gweight=bn.weight.grad.clone(),
        gbias=bn.bias.grad.clone(), running_mean1=bn.running_mean.clone(),
        running_var1=bn.running_var.clone(),
    )
    x2 = t32(2, 3, 3, 4) - 0.5
    with torch.no_grad():
        bn(x2)
    case.update(x2=x2, running_mean2=bn.running_mean.clone(), running_var2=bn.running_var.clone())
    bn.eval()
    x3 = t32(2, 3, 4, 4)
    with torch.no_grad():
        y3 = bn(x3)
    case.update(x3=x3, y3=y3, cfg=torch.tensor([1e-5, 0.1], dtype=torch.float64))
    cases["bn"] = case
    save("batch_norm", cases)


def linear():
    # cfg = [] (candle_nn::Linear checked against F.linear)
    cases = {}
    for name, shape in [("x2d", (3, 4)), ("x3d", (2, 3, 4))]:
        cases[name] = run(
            lambda x, weight, bias: F.linear(x, weight, bias),
            {"x": t32(*shape), "weight": t32(5, 4), "bias": t32(5)},
            [],
        )
    save("linear", cases)


if __name__ == "__main__":
    bilinear()
    nearest()
    adaptive()
    max_pool()
    norms()
    activations()
    drop_path()
    conv()
    batch_norm()
    linear()
    print("torch", torch.__version__)
