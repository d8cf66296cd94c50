"""Loads rtb-synth's COCO export with pycocotools and checks it.

For every annotation: pycocotools decodes the mask (annToMask); an RLE mask must have exactly
the stated `area` and `bbox` (maskUtils.area / toBbox), a polygon must rasterise to about the
stated area and box (area within 4·sqrt(area) + 4 pixels, box IoU at least 0.75: pycocotools
rasterises polygons its own way, and thin star tips differ by a few pixels).
Then COCOeval scores the ground truth against itself as detections: AP must be 1.0 for bbox
and segm (crowd regions are ignored, as in COCO).

Make a dataset and run (a venv outside the repo):
    cargo run --release -p rtb-synth --example generate -- /tmp/synth tiny
    python3 -m venv /work/venvs/ade && /work/venvs/ade/bin/pip install -r requirements-coco-check.txt
    /work/venvs/ade/bin/python coco_check.py /tmp/synth/coco
"""

import contextlib
import io
import sys
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def box_iou(a, b):
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def check_split(json_path, image_dir):
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(json_path))
    kinds = {"polygon": 0, "rle": 0, "crowd": 0}
    for image in coco.dataset["images"]:
        assert (image_dir / image["file_name"]).is_file(), image["file_name"]
    for ann in coco.dataset["annotations"]:
        image = coco.imgs[ann["image_id"]]
        mask = coco.annToMask(ann)
        assert mask.shape == (image["height"], image["width"]), ann["id"]
        x, y, w, h = ann["bbox"]
        if isinstance(ann["segmentation"], list):
            kinds["polygon"] += 1
            assert ann["iscrowd"] == 0
            area = int(mask.sum())
            slack = 4 * np.sqrt(ann["area"]) + 4
            assert abs(area - ann["area"]) <= slack, (ann["id"], area, ann["area"])
            ys, xs = np.nonzero(mask)
            box = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert box_iou(box, ann["bbox"]) >= 0.75, (ann["id"], box, ann["bbox"])
        else:
            kinds["crowd" if ann["iscrowd"] else "rle"] += 1
            rle = coco.annToRLE(ann)
            assert int(mask_utils.area(rle)) == ann["area"] == int(mask.sum()), ann["id"]
            assert np.array_equal(mask_utils.toBbox(rle), ann["bbox"]), ann["id"]
        assert x >= 0 and y >= 0 and x + w <= image["width"] and y + h <= image["height"]

    stats = {}
    for iou_type in ("bbox", "segm"):
        detections = []
        for ann in coco.dataset["annotations"]:
            if ann["iscrowd"]:
                continue
            det = {"image_id": ann["image_id"], "category_id": ann["category_id"], "score": 1.0}
            if iou_type == "bbox":
                det["bbox"] = ann["bbox"]
            else:
                rle = coco.annToRLE(ann)
                rle["counts"] = rle["counts"].decode("ascii")
                det["segmentation"] = rle
            detections.append(det)
        with contextlib.redirect_stdout(io.StringIO()):
            results = coco.loadRes(detections)
            evaluator = COCOeval(coco, results, iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        stats[iou_type] = evaluator.stats[0]
        assert abs(evaluator.stats[0] - 1.0) < 1e-12, (iou_type, evaluator.stats)
    return len(coco.dataset["images"]), kinds, stats


def main():
    root = Path(sys.argv[1])
    for split in ("train2017", "val2017"):
        images, kinds, stats = check_split(
            root / "annotations" / f"instances_{split}.json", root / split
        )
        print(
            f"{split}: {images} images; {kinds['polygon']} polygon, {kinds['rle']} RLE, "
            f"{kinds['crowd']} crowd annotations loaded by pycocotools; "
            f"self-AP bbox {stats['bbox']:.3f}, segm {stats['segm']:.3f}"
        )
    print("ok")


if __name__ == "__main__":
    main()
