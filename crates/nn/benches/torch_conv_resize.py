"""PyTorch CPU timings for the shapes of benches/conv_resize.rs (2 threads, same machine).

    /work/venvs/nn-ops/bin/python crates/nn/benches/torch_conv_resize.py
"""

import time

import torch
import torch.nn.functional as F

torch.set_num_threads(2)
torch.manual_seed(0)


def best_ms(fn, repeats=10, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return 1000 * times[len(times) // 2]  # median, like criterion's estimate


def conv():
    for name, n, c, o, s, k in [
        ("3x3_64ch_56", 8, 64, 64, 56, 3),
        ("3x3_256ch_14", 8, 256, 256, 14, 3),
        ("1x1_256ch_56", 8, 256, 256, 56, 1),
    ]:
        x = torch.randn(n, c, s, s)
        w = torch.randn(o, c, k, k) * 0.05

        def fwd():
            with torch.no_grad():
                F.conv2d(x, w, None, 1, k // 2)

        xg = x.clone().requires_grad_(True)
        wg = w.clone().requires_grad_(True)

        def fwd_bwd():
            y = F.conv2d(xg, wg, None, 1, k // 2)
            y.backward(torch.ones_like(y))
            xg.grad = None
            wg.grad = None

        print(f"conv2d/{name}/forward {best_ms(fwd):.2f} ms")
        print(f"conv2d/{name}/forward_backward {best_ms(fwd_bwd):.2f} ms")


def resize():
    for name, shape, out in [
        ("8x256x28x28_to_56", (8, 256, 28, 28), (56, 56)),
        ("2x19x128x128_to_512", (2, 19, 128, 128), (512, 512)),
    ]:
        x = torch.randn(*shape)

        def fwd():
            with torch.no_grad():
                F.interpolate(x, size=out, mode="bilinear", align_corners=False)

        xg = x.clone().requires_grad_(True)

        def fwd_bwd():
            y = F.interpolate(xg, size=out, mode="bilinear", align_corners=False)
            y.backward(torch.ones_like(y))
            xg.grad = None

        print(f"resize_bilinear/{name}/forward {best_ms(fwd):.2f} ms")
        print(f"resize_bilinear/{name}/forward_backward {best_ms(fwd_bwd):.2f} ms")


if __name__ == "__main__":
    print("torch", torch.__version__, "threads", torch.get_num_threads())
    conv()
    resize()
