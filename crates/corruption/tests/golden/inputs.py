"""Deterministic test images for the corruption golden fixtures.

    python inputs.py        # writes inputs/*.png

The images are synthetic but photo-like where it matters to the corruptions: smooth shading
(fog, contrast), hard edges (spatter's Canny, pixelate, JPEG), fine texture and noise (blurs),
saturated and grey regions (the HSV corruptions), and pure black/white pixels (clipping).
Sizes: 224×224 (ImageNet-C), 32×32 (CIFAR-10-C), 480×640 and 37×53 (non-square, odd) for
imagecorruptions, and 7×5 / 1×1 for the below-32 behaviour.
"""
import os

import numpy as np
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = {"224x224": (224, 224), "32x32": (32, 32), "480x640": (480, 640), "37x53": (37, 53),
         "7x5": (7, 5), "1x1": (1, 1)}


def make(height, width, seed):
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    ny, nx = yy / max(height - 1, 1), xx / max(width - 1, 1)
    img = np.zeros((height, width, 3))
    img[..., 0] = 0.55 + 0.4 * np.sin(3.1 * nx + 1.3 * ny)
    img[..., 1] = 0.5 + 0.45 * np.cos(2.3 * ny - 0.7 * nx)
    img[..., 2] = 0.45 + 0.4 * np.sin(5.0 * nx * ny + 0.5)
    img += 0.06 * rng.standard_normal((height, width, 3))
    pil = Image.fromarray(np.uint8(np.clip(img, 0, 1) * 255))
    draw = ImageDraw.Draw(pil)
    for _ in range(max(2, (height * width) // 4000)):
        x0, y0 = rng.randint(0, width), rng.randint(0, height)
        x1 = x0 + rng.randint(1, max(2, width // 3))
        y1 = y0 + rng.randint(1, max(2, height // 3))
        colour = tuple(int(v) for v in rng.randint(0, 256, size=3))
        if rng.rand() < 0.5:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
        else:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
    out = np.array(pil)
    # Pure black, pure white and grey patches exercise clipping and the HSV tie rules.
    if height >= 8 and width >= 8:
        out[: height // 8, : width // 8] = 0
        out[-(height // 8):, -(width // 8):] = 255
        out[: height // 8, -(width // 8):] = 128
    return out


def main():
    os.makedirs(os.path.join(HERE, "inputs"), exist_ok=True)
    for index, (name, (height, width)) in enumerate(SIZES.items()):
        Image.fromarray(make(height, width, seed=100 + index)).save(
            os.path.join(HERE, "inputs", f"{name}.png"))


if __name__ == "__main__":
    main()
