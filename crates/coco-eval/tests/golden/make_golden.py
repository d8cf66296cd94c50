"""Golden fixtures for rtb-coco-eval, made with pycocotools (see requirements-golden.txt).

Run inside a virtual environment outside the repository:

    python3 -m venv /work/venvs/coco && /work/venvs/coco/bin/pip install -r requirements-golden.txt
    /work/venvs/coco/bin/python crates/coco-eval/tests/golden/make_golden.py

Writes `cases/<name>/` (gt.json, dt.json, params.json, expected.json and the precision /
recall / scores arrays as .npy) and `mask_api.json`, `numpy_mean.json`. Every draw comes from
numpy's default_rng with a fixed seed, so the output is reproducible byte for byte.

The synthetic sets cover what COCOeval is sensitive to: crowd regions (uncompressed RLE),
score ties (scores quantised, duplicated detections), images without ground truth or without
detections, a category without ground truth, detections of a category absent from the ground
truth, polygons (multi-part, partly outside the image), compressed and uncompressed RLE, tiny
and degenerate boxes, areas exactly at the range boundaries (0, 32², 96²), more than 100
detections on one image, an annotation with id 0 and repeated annotation ids.
"""

import contextlib
import io
import json
import os
import sys

import numpy as np
import pycocotools
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.path.join(HERE, "cases")


def dump(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")


def star_polygon(rng, cx, cy, radius, n):
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = radius * rng.uniform(0.5, 1.0, n)
    xs = cx + radii * np.cos(angles)
    ys = cy + radii * np.sin(angles)
    poly = np.stack([xs, ys], 1).reshape(-1)
    return [round(float(v), 2) for v in poly]


def shoelace(poly):
    xs = np.array(poly[0::2])
    ys = np.array(poly[1::2])
    return float(0.5 * abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))))


def poly_bbox(polys):
    xs = np.concatenate([np.array(p[0::2]) for p in polys])
    ys = np.concatenate([np.array(p[1::2]) for p in polys])
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min()), float(ys.max() - ys.min())]


def uncompressed_counts(mask):
    """Run lengths of a 2-D uint8 mask in column-major order, starting with zeros."""
    flat = np.asfortranarray(mask).reshape(-1, order="F")
    counts = []
    value, run = 0, 0
    for pixel in flat:
        if pixel != value:
            counts.append(run)
            run = 0
            value = pixel
        run += 1
    counts.append(run)
    return [int(c) for c in counts]


def blob_mask(rng, h, w, cx, cy, rx, ry):
    yy, xx = np.mgrid[0:h, 0:w]
    mask = (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0).astype(np.uint8)
    # A second ellipse makes crowd regions irregular.
    mask |= (((xx - cx - rx / 2) / (rx / 2 + 1)) ** 2 + ((yy - cy) / (ry / 2 + 1)) ** 2 <= 1.0).astype(np.uint8)
    return mask


def compressed(rle):
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def make_ground_truth(rng, n_images, cat_ids, empty_cat, seg_forms):
    """Images, annotations with polygons / RLE / crowds, categories (one without objects)."""
    images, annotations = [], []
    next_id = 1
    for image_id in range(1, n_images + 1):
        # Image ids are not contiguous and not in file order.
        image_id = image_id * 3 + (7 if image_id % 4 == 0 else 0)
        h, w = int(rng.integers(64, 360)), int(rng.integers(64, 360))
        images.append({"id": image_id, "height": h, "width": w, "file_name": f"{image_id}.jpg"})
        if image_id % 5 == 1:
            continue  # images without ground truth
        for _ in range(int(rng.integers(0, 9))):
            cat = int(rng.choice(cat_ids))
            kind = rng.random()
            cx, cy = float(rng.uniform(0, w)), float(rng.uniform(0, h))
            radius = float(rng.choice([3.0, 10.0, 20.0, 40.0, 70.0]) * rng.uniform(0.6, 1.4))
            ann = {"id": next_id, "image_id": image_id, "category_id": cat, "iscrowd": 0}
            next_id += 1
            if kind < 0.1:
                # Crowd region as uncompressed RLE (as COCO stores them).
                mask = blob_mask(rng, h, w, cx, cy, radius, radius * 0.6)
                if mask.sum() == 0:
                    mask[int(min(cy, h - 1)), int(min(cx, w - 1))] = 1
                rle = {"size": [h, w], "counts": uncompressed_counts(mask)}
                ann["segmentation"] = rle
                ann["iscrowd"] = 1 if rng.random() < 0.5 else True
                ann["area"] = float(mask.sum())
                ann["bbox"] = [float(v) for v in mask_utils.toBbox(mask_utils.encode(np.asfortranarray(mask)))]
            else:
                parts = [star_polygon(rng, cx, cy, radius, int(rng.integers(3, 12)))]
                if rng.random() < 0.15:
                    parts.append(star_polygon(rng, cx + radius, cy, radius * 0.5, int(rng.integers(3, 8))))
                ann["bbox"] = poly_bbox(parts)
                ann["area"] = sum(shoelace(p) for p in parts)
                ann["_parts"] = parts  # detections reuse the shape; removed before writing
                form = rng.choice(seg_forms)
                if form == "polygon":
                    ann["segmentation"] = parts
                else:
                    rle = mask_utils.merge(mask_utils.frPyObjects(parts, h, w))
                    if form == "compressed":
                        ann["segmentation"] = compressed(rle)
                    else:
                        ann["segmentation"] = {"size": [h, w], "counts": uncompressed_counts(mask_utils.decode(rle))}
            # Areas exactly at the range boundaries, which are inclusive on both ends.
            boundary = rng.random()
            if boundary < 0.06:
                ann["area"] = 1024.0
            elif boundary < 0.12:
                ann["area"] = 9216
            elif boundary < 0.14:
                ann["area"] = 0.0
            annotations.append(ann)
    # Tiny and degenerate ground-truth boxes.
    annotations.append({"id": next_id, "image_id": images[1]["id"], "category_id": cat_ids[0], "iscrowd": 0,
                        "bbox": [5.0, 5.0, 0.0, 4.0], "area": 0.0, "segmentation": [[5, 5, 5, 9, 5.4, 9]]})
    annotations.append({"id": next_id + 1, "image_id": images[1]["id"], "category_id": cat_ids[0], "iscrowd": 0,
                        "bbox": [20.0, 20.0, 0.5, 0.5], "area": 0.25,
                        "segmentation": [[20, 20, 20.5, 20, 20.5, 20.5, 20, 20.5]]})
    categories = [{"id": c, "name": f"cat{c}", "supercategory": "shape"} for c in list(cat_ids) + [empty_cat]]
    return {"info": {"description": "rtb-coco-eval golden"}, "images": images,
            "annotations": annotations, "categories": categories}


def jitter_box(rng, box, scale):
    x, y, w, h = box
    return [x + float(rng.normal(0, scale * max(w, 1))), y + float(rng.normal(0, scale * max(h, 1))),
            max(0.0, w * float(rng.uniform(1 - scale, 1 + scale))), max(0.0, h * float(rng.uniform(1 - scale, 1 + scale)))]


def make_detections(rng, gt, cat_ids, absent_cat, mask_mode):
    """Detections near the objects, false positives, ties, a crowded image; shuffled."""
    sizes = {img["id"]: (img["height"], img["width"]) for img in gt["images"]}
    dets = []

    def add(image_id, cat, box, score, source=None):
        h, w = sizes[image_id]
        det = {"image_id": image_id, "category_id": int(cat), "score": score}
        if mask_mode == "none":
            det["bbox"] = [round(v, 3) for v in box]
            return dets.append(det)
        x, y, bw, bh = box
        if source is not None and "_parts" in source:
            # The object's own outline moved and scaled like the box: IoUs spread over the
            # thresholds instead of staying near zero.
            sx, sy, sw, sh = source["bbox"]
            fx, fy = bw / max(sw, 1e-6), bh / max(sh, 1e-6)
            part = source["_parts"][0]
            poly = []
            for i in range(0, len(part), 2):
                poly += [round(x + (part[i] - sx) * fx, 2), round(y + (part[i + 1] - sy) * fy, 2)]
        else:
            cx, cy = x + bw / 2, y + bh / 2
            poly = star_polygon(rng, cx, cy, max(bw, bh) / 2 + 0.5, int(rng.integers(3, 10)))
        rle = mask_utils.merge(mask_utils.frPyObjects([poly], h, w))
        if mask_mode == "rle":
            det["segmentation"] = compressed(rle)
        else:  # "mixed": the bbox branch of loadRes, with every segmentation form
            det["bbox"] = [round(v, 3) for v in box]
            form = rng.random()
            if form < 0.4:
                det["segmentation"] = compressed(rle)
            elif form < 0.6:
                det["segmentation"] = [poly]
            elif form < 0.8:
                det["segmentation"] = {"size": [h, w], "counts": uncompressed_counts(mask_utils.decode(rle))}
            # else: no segmentation, pycocotools uses the box as a polygon
        dets.append(det)

    for ann in gt["annotations"]:
        for _ in range(int(rng.integers(0, 4))):
            cat = ann["category_id"]
            if rng.random() < 0.1:
                cat = int(rng.choice(cat_ids))
            if rng.random() < 0.03:
                cat = absent_cat
            score = round(float(rng.choice([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 1.0]) if rng.random() < 0.5
                                else rng.uniform(0, 1)), 2)
            add(ann["image_id"], cat, jitter_box(rng, ann["bbox"], float(rng.choice([0.02, 0.1, 0.25]))), score, ann)
    image_ids = [img["id"] for img in gt["images"]]
    for image_id in image_ids:
        h, w = sizes[image_id]
        for _ in range(int(rng.integers(0, 6))):
            bw, bh = float(rng.uniform(1, w / 2)), float(rng.uniform(1, h / 2))
            add(image_id, int(rng.choice(cat_ids)), [float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh)), bw, bh],
                round(float(rng.uniform(0, 1)), 1))
    # Boxes whose area is exactly 32² and 96², tiny and degenerate boxes.
    crowded = image_ids[2]
    add(crowded, cat_ids[0], [1.0, 1.0, 32.0, 32.0], 0.6)
    add(crowded, cat_ids[0], [2.0, 2.0, 96.0, 96.0], 0.6)
    add(crowded, cat_ids[0], [3.0, 3.0, 0.0, 10.0], 0.6)
    add(crowded, cat_ids[0], [3.0, 3.0, 0.4, 0.4], 0.6)
    # More than 100 detections of one category on one image (maxDets cuts them).
    h, w = sizes[crowded]
    for i in range(130):
        add(crowded, cat_ids[1], [float(i % 20) * w / 25, float(i // 20) * h / 8, w / 10, h / 10], round(0.3 + (i % 7) * 0.1, 1))
    # Exact duplicates: equal scores must keep file order.
    dets.extend([dict(d) for d in dets[:5]])
    order = rng.permutation(len(dets))
    return [dets[i] for i in order]


def run_eval(gt_path, dt_path, iou_type, params):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        coco_gt = COCO(gt_path)
        coco_dt = coco_gt.loadRes(dt_path)
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        if "img_ids" in params:
            ev.params.imgIds = params["img_ids"]
        if "cat_ids" in params:
            ev.params.catIds = params["cat_ids"]
        if "iou_thrs" in params:
            ev.params.iouThrs = np.array(params["iou_thrs"])
        if "rec_thrs" in params:
            ev.params.recThrs = np.array(params["rec_thrs"])
        if "max_dets" in params:
            ev.params.maxDets = params["max_dets"]
        if "area_rng" in params:
            ev.params.areaRng = params["area_rng"]
            ev.params.areaRngLbl = params["area_rng_lbl"]
        if "use_cats" in params:
            ev.params.useCats = int(params["use_cats"])
        ev.evaluate()
        ev.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        ev.summarize()
    return ev, summary.getvalue().splitlines()


def write_case(name, gt, dt, iou_type, params):
    gt = dict(gt, annotations=[{k: v for k, v in a.items() if k != "_parts"} for a in gt["annotations"]])
    case_dir = os.path.join(CASES, name)
    os.makedirs(case_dir, exist_ok=True)
    gt_path = os.path.join(case_dir, "gt.json")
    dt_path = os.path.join(case_dir, "dt.json")
    dump(gt_path, gt)
    dump(dt_path, dt)
    dump(os.path.join(case_dir, "params.json"), dict(params, iou_type=iou_type))
    ev, lines = run_eval(gt_path, dt_path, iou_type, params)
    for key in ("precision", "recall", "scores"):
        np.save(os.path.join(case_dir, f"{key}.npy"), np.ascontiguousarray(ev.eval[key], dtype="<f8"))
    dump(os.path.join(case_dir, "expected.json"), {
        "stats": [float(s) for s in ev.stats],
        "lines": lines,
        "counts": [int(c) for c in ev.eval["counts"]],
        "iou_thrs": [float(v) for v in ev.params.iouThrs],
        "rec_thrs": [float(v) for v in ev.params.recThrs],
        "pycocotools": pycocotools.__version__ if hasattr(pycocotools, "__version__") else "2.0.11",
        "numpy": np.__version__,
    })
    print(f"{name}: stats {np.round(ev.stats, 4).tolist()}", file=sys.stderr)


def make_cases():
    cat_ids = [1, 3, 7]
    empty_cat, absent_cat = 12, 55

    rng = np.random.default_rng(20240601)
    gt = make_ground_truth(rng, 36, cat_ids, empty_cat, ["polygon"])
    # pycocotools' id-0 quirk: a detection matched to this object counts as a false positive.
    zero = next(a for a in gt["annotations"] if not a["iscrowd"] and a["area"] > 100)
    zero["id"] = 0
    dt = make_detections(rng, gt, cat_ids, absent_cat, "none")
    # A sure match for it, so that the quirk changes the numbers.
    dt.insert(7, {"image_id": zero["image_id"], "category_id": zero["category_id"], "bbox": zero["bbox"],
                  "score": 0.97})
    write_case("bbox_default", gt, dt, "bbox", {})
    write_case("bbox_pooled", gt, dt, "bbox", {"use_cats": False})
    image_ids = sorted(img["id"] for img in gt["images"])
    write_case("bbox_custom_params", gt, dt, "bbox", {
        "img_ids": image_ids[::2] + [999999],
        "cat_ids": [3, 7, 12, 55],
        "iou_thrs": [0.3, 0.5, 0.75, 0.9, 0.99],
        "rec_thrs": [float(v) for v in np.linspace(0, 1, 11)],
        "max_dets": [20, 1, 5],
        "area_rng": [[0, 1e10], [0, 1024], [1024, 1e10]],
        "area_rng_lbl": ["all", "small", "large"],
    })

    rng = np.random.default_rng(20240602)
    gt = make_ground_truth(rng, 30, cat_ids, empty_cat, ["polygon", "polygon", "compressed", "uncompressed"])
    # Repeated annotation ids: pycocotools evaluates each as the last annotation with that id.
    gt["annotations"][5]["id"] = gt["annotations"][9]["id"]
    dt = make_detections(rng, gt, cat_ids, absent_cat, "rle")
    write_case("segm_rle_results", gt, dt, "segm", {})
    write_case("bbox_from_mask_results", gt, dt, "bbox", {})

    rng = np.random.default_rng(20240603)
    gt = make_ground_truth(rng, 24, cat_ids, empty_cat, ["polygon", "compressed"])
    dt = make_detections(rng, gt, cat_ids, absent_cat, "mixed")
    write_case("segm_bbox_results", gt, dt, "segm", {})
    write_case("segm_pooled_small_grid", gt, dt, "segm", {
        "use_cats": False,
        "rec_thrs": [float(v) for v in np.linspace(0, 1, 21)],
    })


def make_mask_api():
    rng = np.random.default_rng(7)
    out = {"encode": [], "polygon": [], "bbox": [], "iou": [], "merge": [], "uncompressed": []}
    for _ in range(40):
        h, w = int(rng.integers(1, 24)), int(rng.integers(1, 24))
        mask = (rng.random((h, w)) < rng.uniform(0.05, 0.95)).astype(np.uint8)
        rle = mask_utils.encode(np.asfortranarray(mask))
        out["encode"].append({
            "size": [h, w], "mask_column_major": mask.reshape(-1, order="F").tolist(),
            "counts": rle["counts"].decode("ascii"), "area": int(mask_utils.area(rle)),
            "bbox": [float(v) for v in mask_utils.toBbox(rle)],
        })
    polygons = []
    for _ in range(60):
        h, w = int(rng.integers(1, 80)), int(rng.integers(1, 80))
        n = int(rng.integers(3, 14))
        scale = float(rng.choice([1.0, 10.0, 100.0]))
        poly = [round(float(v), int(rng.integers(0, 4))) for v in rng.uniform(-5, max(h, w) + 5, 2 * n)]
        polygons.append((poly, h, w))
    # Hand-picked cases: coordinates on .5 and integer grid points, repeated points, points
    # outside the image, a degenerate (collinear) polygon, a single-pixel image.
    polygons += [
        ([0.5, 0.5, 10.5, 0.5, 10.5, 10.5, 0.5, 10.5], 12, 12),
        ([0, 0, 10, 0, 10, 10, 0, 10], 12, 12),
        ([2, 2, 2, 2, 8, 3, 8, 3, 5, 9], 12, 12),
        ([-3, -3, 20, -3, 20, 20, -3, 20], 12, 15),
        ([1, 1, 5, 5, 9, 9], 12, 12),
        ([0, 0, 1, 0, 1, 1], 1, 1),
        ([0.2, 0.2, 0.8, 0.2, 0.8, 0.8, 0.2, 0.8], 1, 1),
    ]
    for poly, h, w in polygons:
        rle = mask_utils.frPyObjects([poly], h, w)[0]
        out["polygon"].append({
            "polygon": poly, "size": [h, w], "counts": rle["counts"].decode("ascii"),
            "area": int(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
        })
    for _ in range(30):
        h, w = int(rng.integers(1, 60)), int(rng.integers(1, 60))
        box = [round(float(v), 2) for v in [rng.uniform(-5, w), rng.uniform(-5, h), rng.uniform(0, w), rng.uniform(0, h)]]
        rle = mask_utils.frPyObjects(np.array([box], dtype=np.double), h, w)[0]
        out["bbox"].append({"bbox": box, "size": [h, w], "counts": rle["counts"].decode("ascii")})
    for _ in range(25):
        h, w = int(rng.integers(8, 40)), int(rng.integers(8, 40))
        def random_rles(n):
            rles = []
            for _ in range(n):
                cx, cy = rng.uniform(0, w), rng.uniform(0, h)
                mask = blob_mask(rng, h, w, cx, cy, rng.uniform(1, w / 2), rng.uniform(1, h / 2))
                if rng.random() < 0.1:
                    mask[:] = 0
                rles.append(mask_utils.encode(np.asfortranarray(mask)))
            return rles
        dts, gts = random_rles(int(rng.integers(1, 5))), random_rles(int(rng.integers(1, 5)))
        crowd = [int(rng.random() < 0.3) for _ in gts]
        ious = mask_utils.iou(dts, gts, crowd)
        boxes_dt = [[float(v) for v in rng.uniform(0, 30, 4)] for _ in range(3)]
        boxes_gt = [[float(v) for v in rng.uniform(0, 30, 4)] for _ in range(4)]
        box_crowd = [int(rng.random() < 0.3) for _ in boxes_gt]
        box_ious = mask_utils.iou(boxes_dt, boxes_gt, box_crowd)
        out["iou"].append({
            "size": [h, w],
            "dt": [r["counts"].decode("ascii") for r in dts], "gt": [r["counts"].decode("ascii") for r in gts],
            "crowd": crowd, "iou": np.asarray(ious).tolist(),
            "box_dt": boxes_dt, "box_gt": boxes_gt, "box_crowd": box_crowd,
            "box_iou": np.asarray(box_ious).tolist(),
        })
        out["merge"].append({
            "size": [h, w], "rles": [r["counts"].decode("ascii") for r in dts + gts],
            "union": mask_utils.merge(dts + gts, intersect=0)["counts"].decode("ascii"),
            "intersection": mask_utils.merge(dts + gts, intersect=1)["counts"].decode("ascii"),
        })
    # Large masks: multi-character and negative count deltas in the compressed string.
    for h, w, counts in [
        (5000, 4000, [7_000_000, 3, 12_999_000, 997]),
        (1000, 1000, [0, 1000, 999_000]),
        (3, 3, [9]),
        (300, 200, [5, 30000, 10, 2, 29983]),
    ]:
        rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
        out["uncompressed"].append({
            "size": [h, w], "counts": counts, "compressed": rle["counts"].decode("ascii"),
            "area": int(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
        })
    dump(os.path.join(HERE, "mask_api.json"), out)


def make_numpy_mean():
    rng = np.random.default_rng(11)
    arrays = []
    for n in [1, 5, 8, 9, 100, 128, 129, 1000, 4001]:
        values = rng.random(n)
        values[rng.random(n) < 0.2] = 0.0
        arrays.append({"values": [float(v) for v in values], "mean": float(np.mean(values))})
    dump(os.path.join(HERE, "numpy_mean.json"), arrays)


if __name__ == "__main__":
    make_cases()
    make_mask_api()
    make_numpy_mean()
