"""A synthetic COCO-val-scale evaluation set for the rtb-coco-eval speed comparison.

    python crates/coco-eval/bench/make_bench_data.py [--out bench-data/coco] [--seed 0]

Writes (not committed; bench-data/ is ignored by git):
    gt.json       5000 images, 80 categories with COCO's ids, ~36.8k objects (polygons, 1% crowd
                  regions as uncompressed RLE), COCO-like sizes (41% small, 34% medium, 25% large)
    dt_bbox.json  100 detections per image (500k): jittered copies of the objects with
                  higher scores, then false positives of random categories
    dt_segm.json  the same detections as masks (compressed RLE, no bbox: pycocotools takes the
                  area and box from the mask)
Every draw comes from numpy's default_rng(seed).
"""

import argparse
import json
import os
import time

import numpy as np
from pycocotools import mask as mask_utils

COCO_CATEGORY_IDS = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27,
    28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53,
    54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80,
    81, 82, 84, 85, 86, 87, 88, 89, 90,
]
IMAGE_SHAPES = [(480, 640), (427, 640), (640, 480), (640, 427), (375, 500), (360, 640), (512, 640)]


def polygon(rng, cx, cy, rx, ry, n):
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = rng.uniform(0.7, 1.0, n)
    xs = cx + rx * radii * np.cos(angles)
    ys = cy + ry * radii * np.sin(angles)
    return np.round(np.stack([xs, ys], 1).reshape(-1), 2)


def shoelace(poly):
    xs, ys = poly[0::2], poly[1::2]
    return float(0.5 * abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))))


def uncompressed(mask):
    flat = mask.reshape(-1, order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return counts


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "../../../bench-data/coco"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--dets-per-image", type=int, default=100)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    started = time.time()

    images, annotations = [], []
    bbox_results, segm_results = [], []
    next_ann = 1
    for index in range(args.images):
        image_id = 100000 + index * 7
        h, w = IMAGE_SHAPES[rng.integers(len(IMAGE_SHAPES))]
        images.append({"id": image_id, "height": h, "width": w, "file_name": f"{image_id:012d}.jpg"})
        objects = []
        n_objects = int(min(rng.geometric(1 / 7.36), 60))
        for _ in range(n_objects):
            cat = int(COCO_CATEGORY_IDS[rng.integers(80)])
            # Object scale: log-uniform radius, so that about 41/34/25% are small/medium/large.
            radius = float(np.exp(rng.uniform(np.log(4), np.log(180))))
            rx, ry = radius * rng.uniform(0.6, 1.4), radius * rng.uniform(0.6, 1.4)
            cx, cy = float(rng.uniform(0, w)), float(rng.uniform(0, h))
            ann = {"id": next_ann, "image_id": image_id, "category_id": cat, "iscrowd": 0}
            next_ann += 1
            if rng.random() < 0.01:
                yy, xx = np.mgrid[0:h, 0:w]
                mask = ((((xx - cx) / max(rx * 2, 4)) ** 2 + ((yy - cy) / max(ry * 2, 4)) ** 2) <= 1).astype(np.uint8)
                if mask.sum() == 0:
                    mask[min(int(cy), h - 1), min(int(cx), w - 1)] = 1
                ann["iscrowd"] = 1
                ann["segmentation"] = {"size": [h, w], "counts": uncompressed(mask)}
                rle = mask_utils.encode(np.asfortranarray(mask))
                ann["area"] = float(mask_utils.area(rle))
                ann["bbox"] = [float(v) for v in mask_utils.toBbox(rle)]
                objects.append((ann, None))
            else:
                poly = polygon(rng, cx, cy, rx, ry, int(rng.integers(8, 30)))
                poly[0::2] = np.clip(poly[0::2], 0, w)
                poly[1::2] = np.clip(poly[1::2], 0, h)
                xs, ys = poly[0::2], poly[1::2]
                ann["segmentation"] = [poly.tolist()]
                ann["area"] = round(shoelace(poly), 2)
                ann["bbox"] = [float(xs.min()), float(ys.min()), round(float(xs.max() - xs.min()), 2),
                               round(float(ys.max() - ys.min()), 2)]
                objects.append((ann, poly))
            annotations.append(ann)

        # Detections: up to 4 per object, then false positives, 100 in all.
        dets = []
        for ann, poly in objects:
            for _ in range(int(rng.integers(1, 5))):
                if len(dets) >= args.dets_per_image:
                    break
                x, y, bw, bh = ann["bbox"]
                shift = rng.normal(0, 0.12, 2) * [max(bw, 1), max(bh, 1)]
                scale = rng.uniform(0.8, 1.25, 2)
                cat = ann["category_id"] if rng.random() < 0.9 else int(COCO_CATEGORY_IDS[rng.integers(80)])
                if poly is not None:
                    pts = poly.reshape(-1, 2)
                    centre = np.array([x + bw / 2, y + bh / 2])
                    moved = (pts - centre) * scale + centre + shift
                else:
                    moved = polygon(rng, x + bw / 2 + shift[0], y + bh / 2 + shift[1], bw / 2 * scale[0],
                                    bh / 2 * scale[1], 12).reshape(-1, 2)
                dets.append((cat, float(rng.beta(5, 2)), moved.reshape(-1)))
        while len(dets) < args.dets_per_image:
            radius = float(np.exp(rng.uniform(np.log(4), np.log(120))))
            cx, cy = float(rng.uniform(0, w)), float(rng.uniform(0, h))
            moved = polygon(rng, cx, cy, radius, radius * rng.uniform(0.5, 1.5), 10)
            dets.append((int(COCO_CATEGORY_IDS[rng.integers(80)]), float(rng.beta(1.2, 5)), moved))
        for cat, score, poly in dets:
            xs, ys = np.clip(poly[0::2], 0, w), np.clip(poly[1::2], 0, h)
            box = [round(float(xs.min()), 2), round(float(ys.min()), 2),
                   round(float(xs.max() - xs.min()), 2), round(float(ys.max() - ys.min()), 2)]
            score = round(score, 5)
            bbox_results.append({"image_id": image_id, "category_id": cat, "bbox": box, "score": score})
            rle = mask_utils.frPyObjects([[float(v) for v in poly]], h, w)[0]
            segm_results.append({"image_id": image_id, "category_id": cat,
                                 "segmentation": {"size": [h, w], "counts": rle["counts"].decode("ascii")},
                                 "score": score})
        if index % 500 == 0:
            print(f"{index}/{args.images} images, {time.time() - started:.0f}s", flush=True)

    categories = [{"id": c, "name": f"category{c}", "supercategory": "thing"} for c in COCO_CATEGORY_IDS]
    gt = {"info": {"description": "rtb synthetic COCO-val-scale set", "seed": args.seed},
          "images": images, "annotations": annotations, "categories": categories}
    for name, value in [("gt.json", gt), ("dt_bbox.json", bbox_results), ("dt_segm.json", segm_results)]:
        with open(os.path.join(args.out, name), "w") as f:
            json.dump(value, f)
    areas = np.array([a["area"] for a in annotations])
    print(f"{len(images)} images, {len(annotations)} objects ({sum(a['iscrowd'] for a in annotations)} crowd), "
          f"small/medium/large = {np.mean(areas < 1024):.2f}/{np.mean((areas >= 1024) & (areas < 9216)):.2f}/"
          f"{np.mean(areas >= 9216):.2f}, {len(bbox_results)} detections, {time.time() - started:.0f}s")


if __name__ == "__main__":
    main()
