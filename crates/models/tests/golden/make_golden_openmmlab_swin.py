"""Golden fixture for the OpenMMLab Swin layout (tests/parity.rs).

mmdetection 3.3.0's `SwinTransformer` (the class mmsegmentation 1.x's is a copy of) in the
tiny test configuration of `SwinConfig::tiny().into_dense(0.0)` (width 8, window 3, depths
2-2-2-2, heads 1-2-2-4, MLP ratio 2, output norms on every stage), every tensor drawn from a
seeded generator. Writes
- swin_tiny_openmmlab.safetensors: its state dict, OpenMMLab names (patch merging in
  `nn.Unfold` channel order);
- swin_tiny_openmmlab_golden.safetensors: C2..C5 in eval mode for a 128×160 input (every stage
  padded to whole windows) and a 96×224 one (the last stage, 3×7, fits one window along H).

Run with the stack of ../../detection/tests/golden/requirements-mmdet.txt.
"""

import os
import sys
import types

import torch
from safetensors.torch import save_file


class _NoCompiledOps(types.ModuleType):
    """Stands in for mmcv's compiled `_ext`: importing works, calling an op fails loudly."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)

        def unavailable(*args, **kwargs):
            raise RuntimeError(f"mmcv._ext.{name} is not built (mmcv-lite)")

        return unavailable


sys.modules["mmcv._ext"] = _NoCompiledOps("mmcv._ext")

from mmdet.models.backbones import SwinTransformer  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    torch.manual_seed(0)
    model = SwinTransformer(
        pretrain_img_size=224,
        in_channels=3,
        embed_dims=8,
        patch_size=4,
        window_size=3,
        mlp_ratio=2,
        depths=(2, 2, 2, 2),
        num_heads=(1, 2, 2, 4),
        strides=(4, 2, 2, 2),
        out_indices=(0, 1, 2, 3),
        qkv_bias=True,
        drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=0.0,
        patch_norm=True,
        use_abs_pos_embed=False,
    )
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("relative_position_index"):
                continue
            fan_in = tensor[0].numel() if tensor.dim() > 1 else 1
            tensor.copy_(torch.randn(tensor.shape, generator=generator) / fan_in**0.5)
            if name.endswith("norm1.weight") or name.endswith("norm2.weight"):
                tensor.add_(1.0)
    model.eval()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(HERE, "swin_tiny_openmmlab.safetensors"))

    golden = {}
    for prefix, (height, width) in {"dense": (128, 160), "dense_fit": (96, 224)}.items():
        image = torch.randn(1, 3, height, width, generator=generator)
        with torch.no_grad():
            levels = model(image)
        golden[f"{prefix}.input"] = image
        for i, level in enumerate(levels):
            golden[f"{prefix}.c{i + 2}"] = level.contiguous()
    save_file(golden, os.path.join(HERE, "swin_tiny_openmmlab_golden.safetensors"))
    print(f"wrote {len(state)} weights, {len(golden)} golden tensors")


if __name__ == "__main__":
    main()
