"""Golden values for src/cv.rs: the OpenCV functions that spatter and snow call, on small arrays.

Run with the pinned stack (requirements.txt: opencv-python 4.10.0.84, numpy 1.26.4):

    python cv_ops.py            # writes cv_ops.json next to this file

Inputs cover what the corruptions feed these functions (thresholded liquid layers, Canny edge
maps, clipped distance maps) and the edge cases: 1×1, single rows and columns, constant images,
all-zero histograms, images without a zero pixel for the distance transform.
"""
import json
import os

import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = [(1, 1), (1, 6), (6, 1), (2, 2), (3, 5), (7, 4), (16, 16), (23, 31)]


def liquid_layer(rng, h, w, sigma=1.5, threshold=0.69):
    """A spatter-like uint8 liquid layer (the input of Canny)."""
    layer = cv2.GaussianBlur(rng.normal(0.65, 0.3, (h, w)), (0, 0), sigma)
    layer = np.where(layer < threshold, 0, layer)
    return (np.clip(layer, 0, 1) * 255).astype(np.uint8)


def u8_inputs(rng):
    for h, w in SIZES:
        yield f"uniform {h}x{w}", rng.randint(0, 256, (h, w)).astype(np.uint8)
        yield f"liquid {h}x{w}", liquid_layer(rng, h, w)
        yield f"blobs {h}x{w}", ((cv2.GaussianBlur(rng.rand(h, w), (0, 0), 2) > 0.5)
                                 * rng.randint(60, 256)).astype(np.uint8)
        yield f"constant {h}x{w}", np.full((h, w), 200, np.uint8)
        yield f"few levels {h}x{w}", rng.randint(0, 21, (h, w)).astype(np.uint8)
    yield "zeros 5x5", np.zeros((5, 5), np.uint8)


def binary_inputs(rng):
    for h, w in SIZES:
        for p in (0.0, 0.01, 0.05, 0.3):
            yield f"p={p} {h}x{w}", np.where(rng.rand(h, w) < p, 0, 255).astype(np.uint8)
    yield "one zero 9x11", np.pad(np.zeros((1, 1), np.uint8), ((4, 4), (5, 5)), constant_values=255)


def case(name, inp, out):
    return {"name": name, "height": int(inp.shape[0]), "width": int(inp.shape[1]),
            "input": inp.ravel().tolist(), "output": out.ravel().tolist()}


def main():
    rng = np.random.RandomState(2024)
    golden = {"opencv": cv2.__version__, "canny": [], "distance_transform": [], "blur_f32": [],
              "blur_u8": [], "equalize_hist": [], "filter2d": [], "rgb2gray": []}
    kernel = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
    for name, img in u8_inputs(rng):
        golden["canny"].append(case(name, img, cv2.Canny(img, 50, 150)))
        golden["blur_u8"].append(case(name, img, cv2.blur(img, (3, 3))))
        golden["equalize_hist"].append(case(name, img, cv2.equalizeHist(img)))
        golden["filter2d"].append(case(name, img, cv2.filter2D(img, cv2.CV_8U, kernel)))
    for name, img in binary_inputs(rng):
        dist = cv2.distanceTransform(img, cv2.DIST_L2, 5)
        golden["distance_transform"].append(case(name, img, dist))
        _, clipped = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
        golden["blur_f32"].append(case(name + " clipped distances", clipped,
                                       cv2.blur(clipped, (3, 3))))
    for h, w in SIZES:
        img = (rng.rand(h, w) * 20).astype(np.float32)
        golden["blur_f32"].append(case(f"uniform floats {h}x{w}", img, cv2.blur(img, (3, 3))))
    for h, w in SIZES:
        x = rng.randint(0, 256, (h, w, 3)).astype(np.float32) / 255.0
        golden["rgb2gray"].append(case(f"unit rgb {h}x{w}", x, cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)))
    x = rng.rand(8, 9, 3).astype(np.float32) * 2 - 0.5
    golden["rgb2gray"].append(case("wide range 8x9", x, cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)))
    with open(os.path.join(HERE, "cv_ops.json"), "w") as f:
        # float32 values print exactly through float64 repr.
        json.dump(golden, f, separators=(",", ":"))


if __name__ == "__main__":
    main()
