"""Golden fixture for rtb-results' paired bootstrap (tests/bootstrap_golden.rs).

An independent implementation of what rtb stores and reports: per-image top-1 correctness
under clean data and the 15 benchmark corruptions x 5 severities; B resamples of the images
drawn with rtb's documented generator (SplitMix64: one stream per replicate, seeded from the
evaluation seed and the replicate number, index = (draw * n) >> 64), the same resample for
every condition; per replicate mPC, rPC, the drop and the per-category drops; and numpy's
percentile intervals (linear interpolation, 2.5 and 97.5).

    pip install -r tests/golden/requirements.txt
    python tests/golden/make_bootstrap_golden.py > tests/golden/bootstrap_golden.json
"""

import json
import sys

import numpy as np

MASK = (1 << 64) - 1
CATEGORIES = {
    "noise": ["gaussian_noise", "shot_noise", "impulse_noise"],
    "blur": ["defocus_blur", "glass_blur", "motion_blur", "zoom_blur"],
    "weather": ["snow", "frost", "fog", "brightness"],
    "digital": ["contrast", "elastic_transform", "pixelate", "jpeg_compression"],
}
BENCHMARK = [c for names in CATEGORIES.values() for c in names]


def splitmix(state):
    """One SplitMix64 step: the new state and the output."""
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def indices(seed, n, b):
    """The image indices of resample b."""
    _, first = splitmix(seed ^ 0x5254425F424F4F54)
    state = first ^ ((b * 0xD1B54A32D192ED03) & MASK)
    state, _ = splitmix(state)
    out = []
    for _ in range(n):
        state, x = splitmix(state)
        out.append((x * n) >> 64)
    return np.array(out)


def interval(values):
    low, high = np.percentile(np.asarray(values, dtype=np.float64), [2.5, 97.5])
    return [float(low), float(high)]


def main():
    rng = np.random.default_rng(17)
    n, replicates, seed = 37, 100, 2024
    clean = (rng.random(n) < 0.8).astype(np.int64)
    corrupted = {}
    for i, name in enumerate(BENCHMARK):
        rows = []
        for s in range(5):
            # Mostly the clean-correct images stay correct, fewer at higher severities.
            keep = rng.random(n) < 0.95 - 0.08 * s - 0.01 * i
            flip = rng.random(n) < 0.05
            rows.append(((clean.astype(bool) & keep) | flip).astype(np.int64))
        corrupted[name] = rows

    resamples = [indices(seed, n, b) for b in range(replicates)]
    rep = {"clean": [], "mpc": [], "rpc": [], "drop": [], **{c: [] for c in CATEGORIES}}
    for idx in resamples:
        p_clean = clean[idx].mean()
        p = {name: [rows[s][idx].mean() for s in range(5)] for name, rows in corrupted.items()}
        mpc = np.mean([p[name] for name in BENCHMARK])
        rep["clean"].append(p_clean)
        rep["mpc"].append(mpc)
        rep["rpc"].append(mpc / p_clean)
        rep["drop"].append(100.0 * (1.0 - mpc / p_clean))
        for category, names in CATEGORIES.items():
            mean = np.mean([p[name] for name in names])
            rep[category].append(100.0 * (1.0 - mean / p_clean))

    fixture = {
        "seed": seed,
        "images": n,
        "replicates": replicates,
        "first_indices": [int(i) for i in resamples[0][:10]],
        "clean": clean.tolist(),
        "corrupted": {name: [row.tolist() for row in rows] for name, rows in corrupted.items()},
        "intervals": {key: interval(values) for key, values in rep.items()},
    }
    json.dump(fixture, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
