"""Golden fixture for Swin's convolutional stem (`SwinConfig::stem_channels`).

timm's SwinTransformer of SwinConfig::tiny()'s shape with its patch projection replaced by the
stem rtb builds for `stem_channels = 4`: Conv2d(3, 4, 3, 2, 1) -> GELU -> Conv2d(4, 8, 3, 2, 1)
(patch_embed.norm after, as timm). Keys are renamed to rtb's: `patch_embed.proj.0` ->
`patch_embed.stem.0`, `patch_embed.proj.2` -> `patch_embed.proj`.

    pip install -r requirements-golden.txt
    python make_golden_swin_stem.py      # writes swin_stem_tiny{,_golden}.safetensors here
"""

import os

import torch
from safetensors.torch import save_file
from timm.models.swin_transformer import SwinTransformer

from make_golden import HERE, SWIN_TINY, outputs, randomize, state, swin_stages

torch.set_num_threads(1)
STEM_CHANNELS = 4


def make(size):
    model = SwinTransformer(img_size=size, **SWIN_TINY)
    model.patch_embed.proj = torch.nn.Sequential(
        torch.nn.Conv2d(3, STEM_CHANNELS, 3, 2, 1),
        torch.nn.GELU(),
        torch.nn.Conv2d(STEM_CHANNELS, SWIN_TINY["embed_dim"], 3, 2, 1),
    )
    return randomize(model, 4).eval()


def rtb_key(key):
    return key.replace("patch_embed.proj.0.", "patch_embed.stem.0.").replace(
        "patch_embed.proj.2.", "patch_embed.proj.")


def main():
    g = torch.Generator().manual_seed(9)
    square = make((96, 96))
    sd = {k: v for k, v in state(square).items()
          if not k.endswith("relative_position_index") and not k.endswith("attn_mask")}
    nonsquare = make((96, 128))
    nonsquare.load_state_dict(sd, strict=False)
    x_96 = torch.randn(2, 3, 96, 96, generator=g)
    x_96x128 = torch.randn(1, 3, 96, 128, generator=g)
    with torch.no_grad():
        gold = {"square.input": x_96, "nonsquare.input": x_96x128}
        gold.update(outputs("square.", swin_stages(square, x_96), square(x_96)))
        gold.update(outputs("nonsquare.", swin_stages(nonsquare, x_96x128), nonsquare(x_96x128)))
    save_file({rtb_key(k): v for k, v in sd.items()},
              os.path.join(HERE, "swin_stem_tiny.safetensors"))
    save_file({k: v.contiguous() for k, v in gold.items()},
              os.path.join(HERE, "swin_stem_tiny_golden.safetensors"))


if __name__ == "__main__":
    main()
