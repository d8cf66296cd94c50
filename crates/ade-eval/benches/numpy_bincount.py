"""The numpy peer of benches/accumulate.rs: mmseg-style mIoU accumulation with np.bincount on
the very same 2000 synthetic 512x683 label/prediction pairs (the generator below mirrors
`synthetic_pair` in accumulate.rs bit for bit; both print the resulting mIoU).

Per image, what a numpy implementation of mmseg's intersect_and_union does: reduce_zero_label
by a lookup table, mask the ignore index, one joint np.bincount of label * 150 + prediction,
and sum the 150x150 confusion over the dataset; metrics from it at the end.

Run: python3 benches/numpy_bincount.py [--images 2000]  (numpy only; one thread)
"""

import argparse
import time

import numpy as np

HEIGHT, WIDTH, POOL, CLASSES = 512, 683, 100, 150
M1, M2, GOLDEN = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def mix(x):
    z = x + GOLDEN
    z = (z ^ (z >> np.uint64(30))) * M1
    z = (z ^ (z >> np.uint64(27))) * M2
    return z ^ (z >> np.uint64(31))


def synthetic_pair(image, blocky):
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.uint64)
    image = np.uint64(image)
    if blocky:
        block = image * np.uint64(1_000_003) + (y // np.uint64(40)) * np.uint64(1000) + x // np.uint64(56)
        stored = (mix(block) % np.uint64(151)).astype(np.uint8)
        shifted = (image * np.uint64(1_000_003) + ((y + np.uint64(13)) // np.uint64(40)) * np.uint64(1000)
                   + (x + np.uint64(23)) // np.uint64(56) + np.uint64(1 << 40))
        h = mix(shifted)
        other = ((h >> np.uint64(8)) % np.uint64(150)).astype(np.uint8)
        follow = np.maximum(stored, 1) - 1
        pred = np.where(h % np.uint64(4) == 0, other, follow).astype(np.uint8)
        return stored, pred
    key = image * np.uint64(HEIGHT * WIDTH) + y * np.uint64(WIDTH) + x
    label = (mix(key) % np.uint64(151)).astype(np.uint8)
    pred = (mix(key + np.uint64(1 << 40)) % np.uint64(150)).astype(np.uint8)
    return label, pred


REDUCE = np.array([255] + list(range(0, 254)) + [255], dtype=np.uint8)


def accumulate(pool, images):
    confusion = np.zeros(CLASSES * CLASSES, dtype=np.int64)
    for i in range(images):
        stored, pred = pool[i % POOL]
        label = REDUCE[stored]
        mask = label != 255
        index = label[mask].astype(np.int64) * CLASSES + pred[mask]
        confusion += np.bincount(index, minlength=CLASSES * CLASSES)
    return confusion.reshape(CLASSES, CLASSES)


def miou(confusion):
    intersect = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - intersect
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nanmean(intersect / union)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2000)
    args = parser.parse_args()
    for blocky in (True, False):
        pool = [synthetic_pair(i, blocky) for i in range(POOL)]
        accumulate(pool, 10)  # warm up
        start, cpu_start = time.perf_counter(), time.process_time()
        confusion = accumulate(pool, args.images)
        seconds = time.perf_counter() - start
        cpu_seconds = time.process_time() - cpu_start
        gb = args.images * HEIGHT * WIDTH * 2 / 1e9
        kind = "blocky" if blocky else "random"
        print(f"{kind}: mIoU {miou(confusion):.10f} over {args.images} images; "
              f"{seconds:.3f} s, {gb / seconds:.3f} GB/s of label+prediction bytes "
              f"(CPU time {cpu_seconds:.3f} s, {gb / cpu_seconds:.3f} GB/s)")


if __name__ == "__main__":
    main()
