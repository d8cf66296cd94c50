"""PyTorch's f32 GELU against the exact one on the grid of rtb-nn's
`gelu_in_f32_is_within_its_error_bound_of_f64` test (x from -12 to 12 in steps of 1/1024):
prints the smallest c with |gelu32(x) - gelu(x)| <= c |x| + 1.2e-7 |gelu(x)| everywhere, the
form of the test's bound (rtb's f32 kernel: c = 1.8e-7).

    python crates/nn/tests/golden/ops/gelu_error.py   # with requirements-ops.txt installed
"""

import math

import torch

torch.set_num_threads(1)
x = torch.arange(-12288, 12289, dtype=torch.float64) / 1024
y32 = torch.nn.functional.gelu(x.float()).double()
exact = x * 0.5 * torch.erfc(-x / math.sqrt(2))
excess = (y32 - exact).abs() - 1.2e-7 * exact.abs()
c = (excess / x.abs().clamp(min=1e-30)).max().item()
print(f"torch {torch.__version__}: f32 F.gelu within {c:.2e} |x| + 1.2e-7 |y| of the exact GELU")
