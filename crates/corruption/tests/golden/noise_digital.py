"""Golden outputs for the noise, colour and digital corruptions and for frost
(tests/noise_digital_parity.rs): gaussian_noise, shot_noise, impulse_noise, speckle_noise,
brightness, saturate, contrast, pixelate, jpeg_compression, frost.

    python noise_digital.py --create-c DIR --frost-dir DIR
    # or RTB_CREATE_C=DIR RTB_FROST_DIR=DIR python noise_digital.py

Needs the pinned stack of requirements.txt (numpy 1.26.4, scikit-image 0.20.0, scipy 1.13.1,
opencv-python 4.10.0.84, Pillow 13.0.0, Wand 0.7.2 with Debian's libmagickwand-6.q16-6 — the
create_c scripts import it — and imagecorruptions 1.1.2), the hendrycks/robustness
`ImageNet-C/create_c` directory (not on PyPI, not in this repository: clone
github.com/hendrycks/robustness outside the repository; see reference.py) and the six frost
textures (`cargo xtask assets`, or `pip download imagecorruptions==1.1.2 --no-deps` and unzip
imagecorruptions/frost/*). The create_c frost function opens ./frostN.png, so the script runs
it from inside the frost directory.

Writes noise_digital.json and the PNGs in noise_digital/ (reference frost outputs of
imagecorruptions, compared within a tolerance; see below). Every case runs as
`np.random.seed(seed)` then the reference call, and stores the sha256 of the uint8 output:

- imagecorruptions: the functions of imagecorruptions.corruptions on 224x224, 480x640, 37x53
  and, below the package's 32-pixel limit (its functions run there; only `corrupt()` refuses),
  7x5 and 1x1 — except pixelate at 1x1, where Pillow refuses a 0-pixel intermediate;
- imagenet-c on 224x224 and cifar-c on 32x32 with the create_c functions;
- impulse_noise by scikit-image <= 0.18's rule (global-state masks, reference.py) for the
  exact cases, plus `impulse_stats` cases: statistics of scikit-image 0.20's own random_noise,
  which draws from fresh OS entropy and cannot be reproduced, for a tolerance comparison;
- frost: imagenet-c and cifar-c exact; imagecorruptions within a tolerance, because
  opencv-python rescales the texture with Intel IPP's cubic resize (float32 arithmetic that
  rounds a few values near .5 differently from any float64 evaluation); the reference output is
  stored as PNG. `textures` holds the sha256 of each texture as cv2.imread decodes it (RGB).
"""
import argparse
import contextlib
import hashlib
import json
import os
import warnings

import cv2
import numpy as np
from PIL import Image

import reference

HERE = os.path.dirname(os.path.abspath(__file__))
NOISE = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise")
DETERMINISTIC = ("brightness", "saturate", "contrast", "pixelate", "jpeg_compression")
FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg",
               "frost6.jpg")
# np.random.seed(s); np.random.randint(5) for these seeds gives textures 0, 1, 2, 3, 4.
FROST_SEEDS = (2, 10, 3, 1, 0)


def load_input(name):
    return np.array(Image.open(os.path.join(HERE, "inputs", f"{name}.png")).convert("RGB"))


def digest(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@contextlib.contextmanager
def working_directory(path):
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def exact_cases():
    """(flavor, corruption, input, severity, seed)."""
    sizes = {"imagecorruptions": ("224x224", "480x640", "37x53", "7x5", "1x1"),
             "imagenet-c": ("224x224",), "cifar-c": ("32x32",)}
    for flavor, names in sizes.items():
        for index, name in enumerate(names):
            for corruption in NOISE + DETERMINISTIC:
                if corruption == "pixelate" and name == "1x1":
                    continue
                for severity in range(1, 6):
                    seeds = (100 * severity + index, 7000 + severity) if corruption in NOISE \
                        else (0,)
                    for seed in seeds:
                        yield flavor, corruption, name, severity, seed


def channel_stats(out):
    values = out.reshape(-1, 3).astype(np.float64)
    return {"mean": values.mean(axis=0).tolist(), "std": values.std(axis=0).tolist(),
            "zero": (values == 0).mean(axis=0).tolist(),
            "full": (values == 255).mean(axis=0).tolist()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--create-c", default=os.environ.get("RTB_CREATE_C"),
                        help="hendrycks/robustness ImageNet-C/create_c directory")
    parser.add_argument("--frost-dir", default=os.environ.get("RTB_FROST_DIR"),
                        help="directory with frost1.png ... frost6.jpg")
    args = parser.parse_args()
    if not args.create_c or not args.frost_dir:
        parser.error("pass --create-c DIR and --frost-dir DIR (see the module docstring)")
    warnings.simplefilter("ignore")
    frost_dir = os.path.abspath(args.frost_dir)
    ic = reference.imagecorruptions(frost_dir)
    references = {
        "imagecorruptions": vars(ic),
        "imagenet-c": reference.create_c(os.path.join(args.create_c, "make_imagenet_c.py")),
        "cifar-c": reference.create_c(os.path.join(args.create_c, "make_cifar_c.py")),
    }
    skimage_random_noise = reference.use_random_noise_018(ic)

    out = {"cases": [], "impulse_stats": [], "frost": [], "textures": {}}
    for flavor, corruption, name, severity, seed in exact_cases():
        image = load_input(name)
        np.random.seed(seed)
        result = np.uint8(references[flavor][corruption](Image.fromarray(image), severity))
        assert result.shape == image.shape, (flavor, corruption, name)
        out["cases"].append({"flavor": flavor, "corruption": corruption, "input": name,
                             "severity": severity, "seed": seed, "sha256": digest(result)})

    # scikit-image 0.20's own impulse noise (unseedable): statistics over the image.
    ic.sk.util.random_noise = skimage_random_noise
    for name in ("480x640",):
        image = load_input(name)
        for severity in range(1, 6):
            result = np.uint8(ic.impulse_noise(Image.fromarray(image), severity))
            out["impulse_stats"].append({"input": name, "severity": severity,
                                         **channel_stats(result)})
    ic.sk.util.random_noise = reference.random_noise_018

    for index, file in enumerate(FROST_FILES):
        texture = cv2.imread(os.path.join(frost_dir, file))[..., ::-1]
        out["textures"][file] = {"shape": list(texture.shape), "sha256": digest(texture)}

    os.makedirs(os.path.join(HERE, "noise_digital"), exist_ok=True)
    frost_cases = []
    for severity, seed in zip(range(1, 6), FROST_SEEDS):
        for flavor, name in (("imagenet-c", "224x224"), ("cifar-c", "32x32")):
            frost_cases.append((flavor, name, severity, seed, False))
            frost_cases.append((flavor, name, severity, 50 + seed, False))
        frost_cases.append(("imagecorruptions", "37x53", severity, seed, True))
        frost_cases.append(("imagecorruptions", "224x224", severity, seed, True))
    frost_cases.append(("imagecorruptions", "480x640", 3, 1, True))
    frost_cases.append(("imagecorruptions", "480x640", 5, 0, True))
    for flavor, name, severity, seed, store in frost_cases:
        image = load_input(name)
        np.random.seed(seed)
        with working_directory(frost_dir):
            result = np.uint8(references[flavor]["frost"](Image.fromarray(image), severity))
        case = {"flavor": flavor, "input": name, "severity": severity, "seed": seed,
                "sha256": digest(result)}
        if store:
            png = f"frost_{flavor}_{name}_{severity}_{seed}.png"
            Image.fromarray(result).save(os.path.join(HERE, "noise_digital", png),
                                         optimize=True)
            case["png"] = png
        out["frost"].append(case)

    import PIL
    import scipy
    import skimage
    out["versions"] = {"numpy": np.__version__, "scipy": scipy.__version__,
                       "scikit-image": skimage.__version__, "opencv": cv2.__version__,
                       "pillow": PIL.__version__}
    with open(os.path.join(HERE, "noise_digital.json"), "w") as f:
        json.dump(out, f, indent=0)
        f.write("\n")


if __name__ == "__main__":
    main()
