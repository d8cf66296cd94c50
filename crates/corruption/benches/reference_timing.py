"""Times the Python reference on the images and settings of benches/corruptions.rs: every
corruption of imagecorruptions 1.1.2 at 224x224 and 640x480 (tests/golden/inputs), one
iteration = severities 1..5 (each after np.random.seed(severity)), on one thread.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python reference_timing.py \
        --frost-dir DIR --out reference_timing.json [--repeat 3]

Run it with the pinned stack (../tests/golden/requirements.txt). Threads: OpenCV is limited
with cv2.setNumThreads(1) and the BLAS/OpenMP pools by the environment variables above (set
them before Python starts; the script refuses to run without them). impulse_noise runs
scikit-image 0.20's own random_noise (what imagecorruptions calls today). The result holds the
best of --repeat runs per corruption and size, in seconds of process CPU time
(time.process_time, the measure benches/corruptions.rs uses) per iteration (5 severities).
"""
import argparse
import json
import os
import sys
import time

import cv2
import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "golden"))
import reference  # noqa: E402

NAMES = ["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
         "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
         "elastic_transform", "pixelate", "jpeg_compression", "speckle_noise", "gaussian_blur",
         "spatter", "saturate"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frost-dir", default=os.environ.get("RTB_FROST_DIR"))
    parser.add_argument("--out", default="reference_timing.json")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default=None, help="comma-separated corruption names")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        if os.environ.get(var) != "1":
            parser.error(f"set {var}=1 (one thread) before running")
    cv2.setNumThreads(1)
    import imagecorruptions
    reference.imagecorruptions(args.frost_dir)
    names = args.only.split(",") if args.only else NAMES
    results = {"python": sys.version.split()[0], "numpy": np.__version__, "times": {}}
    for label, name in (("224x224", "224x224"), ("640x480", "480x640")):
        image = np.array(Image.open(os.path.join(HERE, "..", "tests", "golden", "inputs",
                                                 f"{name}.png")).convert("RGB"))
        for corruption in names:
            if corruption == "frost" and not args.frost_dir:
                continue
            best = float("inf")
            for _ in range(args.repeat):
                start = time.process_time()
                for severity in range(1, 6):
                    np.random.seed(severity)
                    imagecorruptions.corrupt(image, severity, corruption)
                best = min(best, time.process_time() - start)
            results["times"][f"{label}/{corruption}"] = best
            print(f"{label} {corruption}: {best * 1000:.1f} ms", flush=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
