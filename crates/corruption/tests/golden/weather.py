"""Golden outputs for fog, snow and spatter in the three flavors (tests/weather_parity.rs).

    python weather.py --create-c DIR      # or RTB_CREATE_C=DIR python weather.py

Needs the pinned stack of requirements.txt (numpy 1.26.4, scikit-image 0.20.0, scipy 1.13.1,
opencv-python 4.10.0.84, Pillow, Wand 0.7.2 with Debian's libmagickwand-6.q16-6,
imagecorruptions 1.1.2) and, for the imagenet-c and cifar-c flavors, the directory
`ImageNet-C/create_c` of the hendrycks/robustness repository (its make_imagenet_c.py and
make_cifar_c.py). That code is not on PyPI and is not part of this repository: clone
github.com/hendrycks/robustness anywhere outside the repository and pass the directory. Only the
corruption functions are taken from those scripts (their torch data loaders and their
dataset-writing loop are skipped), and nothing from them is copied here.

For every case the reference runs as `np.random.seed(seed)` followed by the reference call:
imagecorruptions.corrupt(image, severity, name) for the imagecorruptions flavor,
np.uint8(fn(PIL image, severity)) for the ImageNet-C (224×224) and CIFAR-10-C (32×32) code.
The output's sha256 is stored, with its per-channel means (a hint when a digest differs).
Every case is exact, including the ImageNet-C / CIFAR-10-C snow whose layer ImageMagick blurs.

imagecorruptions 1.1.2 calls skimage's gaussian(..., multichannel=True), which scikit-image
0.20 removed; the `gaussian` name inside imagecorruptions.corruptions is wrapped to pass
channel_axis=-1 instead, which computes the same numbers.
"""
import argparse
import ast
import hashlib
import json
import os
import warnings

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
CORRUPTIONS = ("fog", "snow", "spatter")


def load_imagecorruptions():
    import imagecorruptions
    from imagecorruptions import corruptions
    from skimage.filters import gaussian

    def patched_gaussian(image, *args, multichannel=None, **kwargs):
        if multichannel:
            kwargs["channel_axis"] = -1
        return gaussian(image, *args, **kwargs)

    corruptions.gaussian = patched_gaussian
    return imagecorruptions


def load_create_c(path):
    """The corruption functions of one hendrycks create_c script, without its torch parts."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    keep = []
    for node in tree.body:
        text = ast.unparse(node)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if "torch" not in text:
                keep.append(node)
        elif isinstance(node, ast.FunctionDef):
            keep.append(node)
        elif isinstance(node, ast.ClassDef):
            if "data.Dataset" not in text:
                keep.append(node)
        elif isinstance(node, ast.Assign) and "argtypes" in text:
            keep.append(node)
    namespace = {"__name__": "create_c_" + os.path.basename(path)}
    exec(compile(ast.Module(body=keep, type_ignores=[]), path, "exec"), namespace)
    return namespace


def load_input(name):
    return np.array(Image.open(os.path.join(HERE, "inputs", f"{name}.png")).convert("RGB"))


def cases():
    """(flavor, corruption, input, severity, seed)."""
    for corruption in CORRUPTIONS:
        for size_index, name in enumerate(("224x224", "480x640", "37x53")):
            for severity in range(1, 6):
                yield "imagecorruptions", corruption, name, severity, 1000 * severity + size_index
        for severity in range(1, 6):
            for repeat in range(2):
                yield "imagenet-c", corruption, "224x224", severity, 2000 + 10 * severity + repeat
                yield "cifar-c", corruption, "32x32", severity, 3000 + 10 * severity + repeat


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--create-c", default=os.environ.get("RTB_CREATE_C"),
                        help="hendrycks/robustness ImageNet-C/create_c directory")
    args = parser.parse_args()
    if not args.create_c:
        parser.error("pass --create-c DIR or set RTB_CREATE_C (see the module docstring)")
    warnings.simplefilter("ignore")
    imagecorruptions = load_imagecorruptions()
    references = {
        "imagenet-c": load_create_c(os.path.join(args.create_c, "make_imagenet_c.py")),
        "cifar-c": load_create_c(os.path.join(args.create_c, "make_cifar_c.py")),
    }
    out = {"cases": []}
    for flavor, corruption, name, severity, seed in cases():
        image = load_input(name)
        np.random.seed(seed)
        if flavor == "imagecorruptions":
            result = imagecorruptions.corrupt(image, severity, corruption)
        else:
            result = np.uint8(references[flavor][corruption](Image.fromarray(image), severity))
        assert result.shape == image.shape and result.dtype == np.uint8, (flavor, corruption)
        case = {"flavor": flavor, "corruption": corruption, "input": name,
                "severity": severity, "seed": seed,
                "sha256": hashlib.sha256(result.tobytes()).hexdigest(),
                "mean": result.reshape(-1, 3).mean(axis=0).round(4).tolist()}
        out["cases"].append(case)
    import cv2, scipy, skimage, wand.version
    out["versions"] = {"numpy": np.__version__, "scipy": scipy.__version__,
                       "scikit-image": skimage.__version__, "opencv": cv2.__version__,
                       "imagemagick": wand.version.MAGICK_VERSION}
    with open(os.path.join(HERE, "weather.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
