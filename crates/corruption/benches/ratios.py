"""Joins criterion's estimates (benches/corruptions.rs) with reference_timing.py's JSON into the
Markdown table of BENCHMARKS.md: per corruption and size, Python ms, rtb ms, ratio; and the
whole 19 x 5 suite per size.

    python ratios.py --criterion TARGET/criterion --reference reference_timing.json
"""
import argparse
import json
import os


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--criterion", required=True, help="the target/criterion directory")
    parser.add_argument("--reference", required=True)
    args = parser.parse_args()
    with open(args.reference) as f:
        reference = json.load(f)["times"]
    rows = []
    totals = {}
    for key, python_s in reference.items():
        size, name = key.split("/")
        path = os.path.join(args.criterion, size, name, "new", "estimates.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            rust_s = json.load(f)["median"]["point_estimate"] * 1e-9
        rows.append((name, size, python_s, rust_s))
        total = totals.setdefault(size, [0.0, 0.0, 0])
        total[0] += python_s
        total[1] += rust_s
        total[2] += 1
    print("| corruption | size | imagecorruptions (ms, 5 severities) | rtb (ms) | ratio |")
    print("|---|---|---:|---:|---:|")
    for name, size, python_s, rust_s in rows:
        print(f"| {name} | {size} | {python_s * 1e3:.1f} | {rust_s * 1e3:.2f} | "
              f"{python_s / rust_s:.0f}x |")
    for size, (python_s, rust_s, count) in totals.items():
        print(f"| **all {count} x 5** | {size} | {python_s * 1e3:.0f} | {rust_s * 1e3:.1f} | "
              f"**{python_s / rust_s:.0f}x** |")


if __name__ == "__main__":
    main()
