"""Times pycocotools, faster-coco-eval and `rtb coco-eval` on the same files, in one run.

    cargo build --release -p rtb-cli
    python crates/coco-eval/bench/make_bench_data.py            # once; writes bench-data/coco
    python crates/coco-eval/bench/compare.py [--data bench-data/coco] [--rtb target/release/rtb]

Each tool runs in its own process on the same GT / results files, load included: pycocotools
and faster-coco-eval from `COCO(gt)` to `summarize()` (timed inside the process, so Python's
start-up and imports are not counted against them), rtb as the whole `rtb coco-eval`
process (start-up included). The 12 stats of all three are compared; the script fails if they
differ. Prints a Markdown table of seconds and ratios.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

RUNNER = r"""
import contextlib, io, json, sys, time
tool, gt, dt, iou_type = sys.argv[1:5]
import numpy as np
if tool == "pycocotools":
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval as Eval
else:
    from faster_coco_eval import COCO, COCOeval_faster as Eval
quiet = io.StringIO()
started = time.perf_counter()
cpu_started = time.process_time()
with contextlib.redirect_stdout(quiet):
    coco_gt = COCO(gt)
    coco_dt = coco_gt.loadRes(dt)
    loaded = time.perf_counter()
    ev = Eval(coco_gt, coco_dt, iou_type)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
finished = time.perf_counter()
print(json.dumps({"seconds": finished - started, "load": loaded - started,
                  "cpu": time.process_time() - cpu_started, "stats": [float(s) for s in ev.stats]}))
"""


def run_python(python, tool, gt, dt, iou_type):
    out = subprocess.run([python, "-c", RUNNER, tool, gt, dt, iou_type], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_rtb(rtb, gt, dt, iou_type, threads):
    with tempfile.TemporaryDirectory() as tmp:
        out_json = os.path.join(tmp, "stats.json")
        command = [rtb, "--quiet", "coco-eval", "--gt", gt, "--dt", dt, "--iou-type", iou_type,
                   "--json", out_json]
        if threads:
            command += ["--threads", str(threads)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(out_json) as f:
            stats = json.load(f)["stats"]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"seconds": seconds, "cpu": cpu, "stats": stats}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.normpath(os.path.join(here, "../../.."))
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=os.path.join(root, "bench-data/coco"))
    parser.add_argument("--rtb", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target")),
                                                     "release/rtb"))
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--iou-types", default="bbox,segm")
    parser.add_argument("--repeat", type=int, default=3, help="rtb and faster-coco-eval runs (median)")
    parser.add_argument("--threads", type=int, default=0, help="rtb worker threads (0: one per core)")
    parser.add_argument("--skip-pycocotools", action="store_true")
    args = parser.parse_args()

    gt = os.path.join(args.data, "gt.json")
    rows = []
    failed = False
    for iou_type in args.iou_types.split(","):
        dt = os.path.join(args.data, f"dt_{iou_type}.json")
        result = {}
        if not args.skip_pycocotools:
            result["pycocotools"] = run_python(args.python, "pycocotools", gt, dt, iou_type)
            print(f"{iou_type} pycocotools: {result['pycocotools']['seconds']:.2f}s", file=sys.stderr)
        runs = [run_python(args.python, "faster", gt, dt, iou_type) for _ in range(args.repeat)]
        result["faster-coco-eval"] = dict(runs[0], seconds=statistics.median(r["seconds"] for r in runs),
                                          cpu=statistics.median(r["cpu"] for r in runs))
        print(f"{iou_type} faster-coco-eval: {[round(r['seconds'], 2) for r in runs]}", file=sys.stderr)
        runs = [run_rtb(args.rtb, gt, dt, iou_type, args.threads) for _ in range(args.repeat)]
        result["rtb"] = dict(runs[0], seconds=statistics.median(r["seconds"] for r in runs),
                             cpu=statistics.median(r["cpu"] for r in runs))
        print(f"{iou_type} rtb: {[round(r['seconds'], 3) for r in runs]}", file=sys.stderr)

        reference = result.get("pycocotools", result["faster-coco-eval"])["stats"]
        for tool, value in result.items():
            diff = max(abs(a - b) for a, b in zip(value["stats"], reference))
            if diff > 1e-12:
                failed = True
                print(f"{iou_type}: {tool} stats differ by {diff:g}: {value['stats']} vs {reference}",
                      file=sys.stderr)
        rows.append((iou_type, result))

    print("Wall-clock seconds, load included (median of --repeat runs for faster-coco-eval and rtb):\n")
    print("| iou type | pycocotools | faster-coco-eval | rtb coco-eval | rtb vs faster-coco-eval | rtb vs pycocotools | stats equal |")
    print("|---|---|---|---|---|---|---|")
    for iou_type, result in rows:
        rtb = result["rtb"]["seconds"]
        fce = result["faster-coco-eval"]["seconds"]
        pyc = result.get("pycocotools", {}).get("seconds")
        agree = all(v["stats"] == result["rtb"]["stats"] for v in result.values())
        pyc_text = f"{pyc:.2f}" if pyc is not None else "-"
        pyc_ratio = f"{pyc / rtb:.1f}x" if pyc is not None else "-"
        print(f"| {iou_type} | {pyc_text} | {fce:.2f} | {rtb:.3f} | {fce / rtb:.1f}x | {pyc_ratio} | {'yes' if agree else 'NO'} |")
    print("\nCPU seconds (user + system, all threads):\n")
    print("| iou type | pycocotools | faster-coco-eval | rtb coco-eval | rtb vs faster-coco-eval | rtb vs pycocotools |")
    print("|---|---|---|---|---|---|")
    for iou_type, result in rows:
        rtb = result["rtb"]["cpu"]
        fce = result["faster-coco-eval"]["cpu"]
        pyc = result.get("pycocotools", {}).get("cpu")
        pyc_text = f"{pyc:.2f}" if pyc is not None else "-"
        pyc_ratio = f"{pyc / rtb:.1f}x" if pyc is not None else "-"
        print(f"| {iou_type} | {pyc_text} | {fce:.2f} | {rtb:.3f} | {fce / rtb:.1f}x | {pyc_ratio} |")
    print("\nAP / AR stats (rtb):")
    for iou_type, result in rows:
        print(f"  {iou_type}: {[round(s, 4) for s in result['rtb']['stats']]}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
