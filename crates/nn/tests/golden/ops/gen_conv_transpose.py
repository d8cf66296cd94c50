"""Golden fixtures for rtb-nn's conv_transpose2d (kernel = stride): inputs, PyTorch CPU
outputs of F.conv_transpose2d(x, weight, bias, stride=k), and gradients of sum(y * gy) for a
fixed random upstream gradient gy. float32; cfg = [k, has_bias]. Same stack as gen_ops.py:

    python3 -m venv /work/venvs/nn-ops
    /work/venvs/nn-ops/bin/pip install -r crates/nn/tests/golden/ops/requirements-ops.txt
    /work/venvs/nn-ops/bin/python crates/nn/tests/golden/ops/gen_conv_transpose.py
"""

import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(20261207)
torch.set_num_threads(1)


def main():
    cases = {}
    # name, (n, c_in, h, w), c_out, k, bias
    for name, (n, c, h, w), o, k, bias in [
        ("mask_like", (3, 8, 5, 5), 6, 2, True),
        ("no_bias", (2, 5, 4, 6), 7, 2, False),
        ("k3", (2, 3, 3, 4), 4, 3, True),
        ("k1", (2, 4, 3, 3), 5, 1, True),
        ("batch1_rect", (1, 6, 2, 7), 3, 2, True),
        ("batch5", (5, 2, 3, 2), 2, 2, True),
    ]:
        inputs = {"x": torch.randn(n, c, h, w), "weight": torch.randn(c, o, k, k)}
        if bias:
            inputs["bias"] = torch.randn(o)
        leaves = {key: v.clone().requires_grad_(True) for key, v in inputs.items()}
        y = F.conv_transpose2d(leaves["x"], leaves["weight"], leaves.get("bias"), stride=k)
        gy = torch.randn(*y.shape)
        (y * gy).sum().backward()
        case = {key: v for key, v in inputs.items()}
        case["y"] = y.detach()
        case["gy"] = gy
        for key, v in leaves.items():
            case["g" + key] = v.grad.detach()
        case["cfg"] = torch.tensor([k, float(bias)], dtype=torch.float64)
        for key, v in case.items():
            cases[f"{name}.{key}"] = v.contiguous()
    save_file(cases, os.path.join(OUT, "conv_transpose2d.safetensors"))


if __name__ == "__main__":
    main()
