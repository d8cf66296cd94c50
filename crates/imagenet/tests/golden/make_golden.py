"""Golden fixtures for rtb-imagenet's evaluation transform.

Makes a few small synthetic images of odd sizes (RGB, grey and RGBA PNGs, a grey and an RGB
JPEG), loads each as torchvision's ImageFolder does (``Image.open(f).convert('RGB')``), applies
``transforms.Resize(256, interpolation=...)`` then ``transforms.CenterCrop(224)`` and saves the
224x224 uint8 crop (before ToTensor/Normalize) as a PNG, plus ``cases.json`` describing each case.

Run from the repository root with the pinned environment (requirements-golden.txt):

    python crates/imagenet/tests/golden/make_golden.py

The outputs (inputs/, expected/, cases.json) are committed; cargo test needs no Python.
"""

import json
import os

import numpy as np
import PIL
import torchvision
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode

HERE = os.path.dirname(os.path.abspath(__file__))
INPUTS = os.path.join(HERE, "inputs")
EXPECTED = os.path.join(HERE, "expected")


def pattern(width, height, seed):
    """Gradients, fine stripes (aliasing test), hard edges and a noisy patch: uint8 HxWx3."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 127.5 + 127.5 * np.sin(x / 3.0 + y / 17.0)
    g = 255.0 * x / max(width - 1, 1)
    b = 255.0 * ((x // 9 + y // 7) % 2)
    img = np.stack([r, g, b], axis=-1)
    # A noisy patch and a saturated square exercise clipping in the bicubic case.
    ph, pw = height // 8, width // 8
    img[3 * ph : 4 * ph, 3 * pw : 4 * pw] = rng.randint(0, 256, size=(ph, pw, 3))
    img[4 * ph : 6 * ph, 4 * pw : 6 * pw] = [255, 0, 255]
    return np.clip(img, 0, 255).astype(np.uint8)


def main():
    os.makedirs(INPUTS, exist_ok=True)
    os.makedirs(EXPECTED, exist_ok=True)
    inputs = []

    def save_input(name, array, mode, fmt, **kwargs):
        image = Image.fromarray(array)
        if mode != "RGB":
            image = image.convert(mode)
        image.save(os.path.join(INPUTS, name), fmt, **kwargs)
        inputs.append(name)
        return name

    save_input("rgb_300x257.png", pattern(300, 257, 1), "RGB", "PNG")
    save_input("rgb_257x300.png", pattern(257, 300, 2), "RGB", "PNG")
    save_input("rgb_500x375.png", pattern(500, 375, 3), "RGB", "PNG")
    save_input("rgb_200x180.png", pattern(200, 180, 4), "RGB", "PNG")
    save_input("grey_331x260.png", pattern(331, 260, 5), "L", "PNG")
    rgba = np.concatenate(
        [pattern(280, 290, 6), np.full((290, 280, 1), 128, np.uint8)], axis=-1
    )
    name = "rgba_280x290.png"
    Image.fromarray(rgba, "RGBA").save(os.path.join(INPUTS, name), "PNG")
    inputs.append(name)
    save_input("grey_301x259.jpg", pattern(301, 259, 7), "L", "JPEG", quality=90)
    save_input("rgb_320x241.jpg", pattern(320, 241, 8), "RGB", "JPEG", quality=90)

    cases = []
    for name in inputs:
        filters = ["bilinear"]
        if name in ("rgb_500x375.png", "rgb_200x180.png", "rgb_300x257.png"):
            filters.append("bicubic")
        for filt in filters:
            mode = InterpolationMode.BILINEAR if filt == "bilinear" else InterpolationMode.BICUBIC
            with open(os.path.join(INPUTS, name), "rb") as f:
                image = Image.open(f).convert("RGB")
            resized = transforms.Resize(256, interpolation=mode)(image)
            crop = transforms.CenterCrop(224)(resized)
            out = f"{os.path.splitext(name)[0]}_{filt}.png"
            crop.save(os.path.join(EXPECTED, out), "PNG")
            cases.append(
                {
                    "input": name,
                    "interpolation": filt,
                    "resize": 256,
                    "crop": 224,
                    "resized_size": list(resized.size),
                    "expected": out,
                }
            )

    meta = {
        "torchvision": torchvision.__version__,
        "pillow": PIL.__version__,
        "numpy": np.__version__,
        "cases": cases,
    }
    with open(os.path.join(HERE, "cases.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
