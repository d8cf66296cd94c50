"""Golden fixtures for rtb-corruption's blur corruptions, elastic transform and the numerical
primitives behind them (src/filters/).

    python blur.py [--imagenet-c-dir DIR]

writes
  filters.json  small inputs and the exact outputs of numpy / scipy / scikit-image / OpenCV /
                ImageMagick primitives (unit tests of src/filters/);
  blur.json     sha256 digests of reference outputs of defocus, glass, motion, zoom and
                gaussian blur and of the elastic transform, for every severity and flavor on
                the golden inputs, with seeds for the stochastic ones.

Run it with the pinned stack of requirements.txt (numpy 1.26.4, scipy 1.13.1, scikit-image
0.20.0, opencv-python 4.10.0.84, Wand 0.7.2 on Debian's libmagickwand-6.q16-6,
imagecorruptions 1.1.2) on an x86-64 machine with AVX-512 (numpy's exp differs elsewhere).
imagecorruptions' `gaussian(..., multichannel=True)` is redirected to `channel_axis=-1`, which
scikit-image 0.20 requires and which computes the same numbers.

The ImageNet-C / CIFAR-10-C functions come from the generation code of
https://github.com/hendrycks/robustness (ImageNet-C/create_c/make_imagenet_c.py and
make_cifar_c.py, Apache-2.0). That code is not on PyPI and is not part of this repository:
check out the repository anywhere and pass its create_c directory with --imagenet-c-dir (or
set RTB_IMAGENET_C_DIR). The script imports only the corruption functions from those files
(it strips their dataset-generation code at import time) and never writes into that directory.
"""
import argparse
import ctypes
import hashlib
import json
import os
import sys
import types
from io import BytesIO

import cv2
import numpy as np
import scipy.ndimage as ndi
import skimage
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
INPUTS = os.path.join(HERE, "inputs")
SIZES = ["224x224", "480x640", "37x53"]
SEEDS = [0, 1, 12345]

cv2.setNumThreads(1)


def patched_gaussian(image, sigma=1, *args, multichannel=None, **kwargs):
    if multichannel:
        kwargs["channel_axis"] = -1
    return skimage.filters.gaussian(image, sigma, *args, **kwargs)


def load_imagecorruptions():
    import imagecorruptions.corruptions as ic
    ic.gaussian = patched_gaussian
    return ic


def load_create_c(directory, filename):
    """The corruption functions of one ImageNet-C generation script, as a module.

    The scripts run dataset generation at import time (and import torch for it); only the
    part between the imports and the dataset code is executed here.
    """
    path = os.path.join(directory, filename)
    with open(path) as f:
        source = f.read()
    start = source.index("# /////////////// Distortion Helpers ///////////////")
    end = source.index("# /////////////// End Distortions ///////////////")
    module = types.ModuleType(filename[:-3])
    module.__dict__["np"] = np
    module.__dict__["os"] = os
    module.__dict__["Image"] = Image
    exec(compile(source[start:end], path, "exec"), module.__dict__)
    # The scripts use skimage's removed multichannel argument and np.fromstring, which numpy
    # 1.26 still has (deprecated) for binary data; route gaussian like imagecorruptions.
    module.gaussian = patched_gaussian
    return module


def sha(array):
    array = np.ascontiguousarray(np.asarray(array, dtype=np.uint8))
    return hashlib.sha256(array.tobytes()).hexdigest()


def load(name):
    return np.array(Image.open(os.path.join(INPUTS, name + ".png")).convert("RGB"))


def floats(a):
    return [float(v) for v in np.asarray(a, dtype=np.float64).ravel()]


# ----------------------------------------------------------------------------- primitives


def primitive_fixtures():
    rng = np.random.RandomState(2024)
    out = {}

    # numpy's exp on kernel-like arguments.
    xs = np.concatenate([-rng.random_sample(1500) * 60, rng.random_sample(300) * 20 - 10,
                         -0.5 / np.arange(0.05, 30, 0.37) ** 2 * 7.0])
    out["exp"] = {"x": floats(xs), "y": floats(np.exp(xs))}

    # gaussian_filter as skimage.filters.gaussian calls it.
    cases = []

    def gauss_case(name, image, sigma, **kwargs):
        result = skimage.filters.gaussian(image, sigma, **kwargs)
        cases.append({
            "name": name, "shape": list(image.shape if image.ndim == 3 else image.shape + (1,)),
            "dtype": str(image.dtype), "input": floats(image), "sigma": sigma if
            isinstance(sigma, list) else [sigma, sigma], "mode": kwargs.get("mode", "nearest"),
            "truncate": kwargs.get("truncate", 4.0), "output": floats(result),
            "output_dtype": str(result.dtype)})

    rgb = rng.randint(0, 256, (11, 9, 3)) / 255.
    for s in [0.05, 0.4, 0.7, 1.5, 3.0, 6.0]:
        gauss_case("rgb sigma %g" % s, rgb, s, channel_axis=-1)
    plane32 = rng.normal(0.6, 0.3, (13, 10)).astype(np.float32)
    for s in [0.5, 1.5, 2.0, 4.0]:
        gauss_case("plane f32 sigma %g" % s, plane32, s)
    plane = rng.uniform(-1, 1, (12, 17))
    gauss_case("reflect per-axis truncate 3", plane, [1.7, 0.9], mode="reflect", truncate=3)
    for mode in ["reflect", "mirror", "wrap", "constant", "nearest"]:
        gauss_case("mode " + mode, plane, 2.3, mode=mode)
    for shape in [(1, 1), (1, 5), (2, 3), (3, 1)]:
        tiny = rng.uniform(0, 1, shape)
        for mode in ["reflect", "mirror", "wrap", "nearest"]:
            gauss_case("tiny %s %s" % (shape, mode), tiny, 2.5, mode=mode)
    out["gaussian"] = cases

    # correlate1d with general and antisymmetric weights.
    corr = []
    line_image = rng.uniform(-1, 1, (6, 8))
    for weights in [[0.2, 0.5, 0.1], [0.3, 0.0, -0.3], [0.25, 0.5, 0.125, 0.0625]]:
        for axis in [0, 1]:
            for mode in ["reflect", "mirror", "nearest", "wrap", "constant"]:
                result = ndi.correlate1d(line_image, weights, axis=axis, mode=mode, cval=0.25)
                corr.append({"weights": weights, "axis": axis, "mode": mode, "cval": 0.25,
                             "shape": [6, 8, 1], "input": floats(line_image),
                             "output": floats(result)})
    out["correlate1d"] = corr

    # zoom, order 1.
    zooms = []
    img32 = (rng.randint(0, 256, (6, 9, 3)) / 255.).astype(np.float32)
    layer = rng.normal(0.3, 0.3, (7, 5, 1))
    for z in [1.0, 1.01, 1.13, 1.3, 2.5, 4.5]:
        for name, image in [("f32 rgb", img32), ("f64 plane", layer)]:
            result = ndi.zoom(image, (z, z, 1), order=1)
            zooms.append({"name": name, "zoom": z, "shape": list(image.shape),
                          "dtype": str(image.dtype), "input": floats(image),
                          "output_shape": list(result.shape), "output": floats(result)})
    out["zoom"] = zooms

    # clipped_zoom of both references (cropped by the callers to the input size).
    ic = load_imagecorruptions()

    def clipped_imagenet_c(img, zoom_factor):
        h = img.shape[0]
        ch = int(np.ceil(h / zoom_factor))
        top = (h - ch) // 2
        img = ndi.zoom(img[top:top + ch, top:top + ch], (zoom_factor, zoom_factor, 1), order=1)
        trim_top = (img.shape[0] - h) // 2
        return img[trim_top:trim_top + h, trim_top:trim_top + h]

    clipped = []
    square32 = (rng.randint(0, 256, (12, 12, 3)) / 255.).astype(np.float32)
    oblong = rng.normal(0.5, 0.3, (11, 8, 1))
    for z in [1.0, 1.02, 1.24, 2.0, 4.5]:
        r = ic.clipped_zoom(square32, z)[:12, :12]
        clipped.append({"variant": "imagecorruptions", "zoom": z, "shape": [12, 12, 3],
                        "dtype": "float32", "input": floats(square32),
                        "output_shape": list(r.shape), "output": floats(r)})
        r = ic.clipped_zoom(oblong, z)[:11, :8]
        clipped.append({"variant": "imagecorruptions", "zoom": z, "shape": [11, 8, 1],
                        "dtype": "float64", "input": floats(oblong),
                        "output_shape": list(r.shape), "output": floats(r)})
        r = clipped_imagenet_c(square32, z)
        clipped.append({"variant": "imagenet-c", "zoom": z, "shape": [12, 12, 3],
                        "dtype": "float32", "input": floats(square32),
                        "output_shape": list(r.shape), "output": floats(r)})
    out["clipped_zoom"] = clipped

    # map_coordinates, order 1, the elastic indexing (rows, cols, channel).
    maps = []
    image = (rng.randint(0, 256, (8, 11, 3)) / 255.).astype(np.float32)
    yy, xx = np.meshgrid(np.arange(8), np.arange(11), indexing="ij")
    for spread in [0.3, 12.0]:
        dy = rng.uniform(-spread, spread, (8, 11)).astype(np.float32)
        dx = rng.uniform(-spread, spread, (8, 11)).astype(np.float32)
        for mode in ["reflect", "mirror", "nearest", "constant", "wrap"]:
            x, y, z = np.meshgrid(np.arange(11), np.arange(8), np.arange(3))
            indices = (np.reshape(y + dy[..., None], (-1, 1)), np.reshape(x + dx[..., None], (-1, 1)),
                       np.reshape(z, (-1, 1)))
            result = ndi.map_coordinates(image, indices, order=1, mode=mode).reshape(image.shape)
            maps.append({"mode": mode, "shape": [8, 11, 3], "input": floats(image),
                         "rows": floats(yy + dy), "cols": floats(xx + dx),
                         "output": floats(result)})
    out["map_coordinates"] = maps

    # Motion blur kernels.
    motion = []
    img8 = rng.randint(0, 256, (13, 17, 3)).astype(np.uint8)
    img8[:4, :4] = 255
    img8[4:8, :4] = 0
    plane64 = np.clip(rng.normal(0.4, 0.4, (12, 15)), 0, 1)
    for radius, sigma, angle in [(10, 3, 17.3), (20, 15, -44.2), (6, 1.5, -12.5),
                                 (12, 8, -100.0), (3, 1, 90.0)]:
        result = ic._motion_blur(img8, radius=radius, sigma=sigma, angle=angle)
        motion.append({"variant": "numpy", "radius": radius, "sigma": sigma, "angle": angle,
                       "shape": [13, 17, 3], "input": floats(img8), "output": floats(result)})
        result = ic._motion_blur(plane64, radius=radius, sigma=sigma, angle=angle)
        motion.append({"variant": "numpy", "radius": radius, "sigma": sigma, "angle": angle,
                       "shape": [12, 15, 1], "input": floats(plane64), "output": floats(result)})
        result = imagemagick_motion_blur(img8, radius, sigma, angle)
        motion.append({"variant": "imagemagick", "radius": radius, "sigma": sigma,
                       "angle": angle, "shape": [13, 17, 3], "input": floats(img8),
                       "output": floats(result)})
        gray = (plane64 * 255).astype(np.uint8)
        result = imagemagick_motion_blur(gray, radius, sigma, angle)
        motion.append({"variant": "imagemagick", "radius": radius, "sigma": sigma,
                       "angle": angle, "shape": [12, 15, 1], "input": floats(gray),
                       "output": floats(result)})
    out["motion"] = motion

    # OpenCV: the defocus disks (GaussianBlur on float32), getGaussianKernel, filter2D,
    # getAffineTransform and warpAffine.
    out["disk"] = []
    for radius, alias in sorted(set(DEFOCUS["imagenet"] + DEFOCUS["cifar"])):
        k = ic.disk(radius=radius, alias_blur=alias)
        out["disk"].append({"radius": radius, "alias_blur": alias, "size": k.shape[0],
                            "kernel": floats(k)})
    out["gaussian_kernel"] = []
    for ksize in [1, 3, 5, 7, 9]:
        for sigma in [0.1, 0.2, 0.4, 0.5, 0.6, 1.3, 0.0]:
            k = cv2.getGaussianKernel(ksize, sigma, cv2.CV_32F).ravel()
            out["gaussian_kernel"].append({"ksize": ksize, "sigma": sigma, "kernel": floats(k)})
    f2d = []
    src = rng.randint(0, 256, (9, 12)).astype(np.uint8)
    for kernel in [np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]),
                   np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]]) * 3]:
        result = cv2.filter2D(src, cv2.CV_8U, kernel)
        f2d.append({"dtype": "uint8", "shape": [9, 12, 1], "input": floats(src),
                    "kernel": floats(kernel), "ksize": kernel.shape[0], "output": floats(result)})
    srcf = rng.uniform(0, 1, (9, 12))
    small = rng.uniform(-0.5, 1, (5, 5))
    result = cv2.filter2D(srcf, -1, small)
    f2d.append({"dtype": "float64", "shape": [9, 12, 1], "input": floats(srcf),
                "kernel": floats(small), "ksize": 5, "output": floats(result)})
    out["filter2d"] = f2d
    affine = []
    for size, jitter in [((224, 224), 244 * 0.1), ((32, 32), 32 * 0.08), ((37, 53), 3.0),
                         ((480, 640), 20.0), ((7, 5), 1.0)]:
        shape_size = np.array(size)
        center_square = np.float32(shape_size) // 2
        square_size = min(shape_size) // 3
        pts1 = np.float32([center_square + square_size,
                           [center_square[0] + square_size, center_square[1] - square_size],
                           center_square - square_size])
        pts2 = pts1 + rng.uniform(-jitter, jitter, size=pts1.shape).astype(np.float32)
        m = cv2.getAffineTransform(pts1, pts2)
        h, w = min(size[0], 12), min(size[1], 14)
        image = (rng.randint(0, 256, (h, w, 3)) / 255.).astype(np.float32)
        warped = cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REFLECT_101)
        affine.append({"pts1": floats(pts1), "pts2": floats(pts2), "matrix": floats(m),
                       "shape": [h, w, 3], "input": floats(image), "output": floats(warped)})
    out["affine"] = affine
    return out


class _MotionImage:
    """Wand's image with the MagickMotionBlurImage call of the ImageNet-C code."""

    def __init__(self):
        from wand.api import library
        from wand.image import Image as WandImage
        library.MagickMotionBlurImage.argtypes = (ctypes.c_void_p, ctypes.c_double,
                                                  ctypes.c_double, ctypes.c_double)
        self.library = library
        self.WandImage = WandImage


def imagemagick_motion_blur(img, radius, sigma, angle):
    helper = _MotionImage()
    output = BytesIO()
    Image.fromarray(img).save(output, format="PNG")
    with helper.WandImage(blob=output.getvalue()) as x:
        helper.library.MagickMotionBlurImage(x.wand, radius, sigma, angle)
        blob = x.make_blob()
    decoded = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded.ndim == 3:
        decoded = decoded[..., [2, 1, 0]]
    return decoded


# ----------------------------------------------------------------------------- corruptions

DEFOCUS = {
    "imagenet": [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)],
    "cifar": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
}
STOCHASTIC = {"glass_blur", "motion_blur", "elastic_transform"}
NAMES = ["defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur",
         "elastic_transform"]


def corruption_fixtures(create_c_dir):
    ic = load_imagecorruptions()
    import imagecorruptions
    flavors = [("imagecorruptions", None, SIZES)]
    if create_c_dir:
        flavors.append(("imagenet-c", load_create_c(create_c_dir, "make_imagenet_c.py"),
                        ["224x224"]))
        flavors.append(("cifar-c", load_create_c(create_c_dir, "make_cifar_c.py"), ["32x32"]))
    cases = []
    for flavor, module, sizes in flavors:
        for size in sizes:
            image = load(size)
            for name in NAMES:
                seeds = SEEDS if name in STOCHASTIC else [None]
                if name == "glass_blur" and size == "480x640":
                    seeds = SEEDS[:1]  # the Python reference takes ~10 s per call here
                for severity in range(1, 6):
                    for seed in seeds:
                        if seed is not None:
                            np.random.seed(seed)
                        if module is None:
                            result = imagecorruptions.corrupt(image, severity=severity,
                                                              corruption_name=name)
                        else:
                            result = np.uint8(getattr(module, name)(Image.fromarray(image),
                                                                    severity))
                        cases.append({"flavor": flavor, "input": size, "corruption": name,
                                      "severity": severity, "seed": seed, "sha256": sha(result)})
                        print(flavor, size, name, severity, seed, file=sys.stderr)
    return cases


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--imagenet-c-dir", default=os.environ.get("RTB_IMAGENET_C_DIR"),
                        help="the ImageNet-C/create_c directory of hendrycks/robustness")
    parser.add_argument("--only", choices=["filters", "blur"], default=None)
    args = parser.parse_args()
    if args.only in (None, "filters"):
        with open(os.path.join(HERE, "filters.json"), "w") as f:
            json.dump(primitive_fixtures(), f)
    if args.only in (None, "blur"):
        if not args.imagenet_c_dir:
            print("warning: no --imagenet-c-dir: ImageNet-C and CIFAR-10-C cases are skipped",
                  file=sys.stderr)
        cases = corruption_fixtures(args.imagenet_c_dir)
        with open(os.path.join(HERE, "blur.json"), "w") as f:
            json.dump({"cases": cases}, f, indent=0)


if __name__ == "__main__":
    main()
