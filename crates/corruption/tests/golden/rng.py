"""Golden values for rtb-corruption's numpy-compatible RandomState.

Run with the pinned stack (../../../../../shared/reference/requirements-imagecorruptions.txt,
numpy 1.26.4):  python rng.py > rng.json
Each case seeds numpy's global generator and records the draws in call order, exactly as the
corruption references draw them.
"""
import json

import numpy as np


def case(seed, calls):
    np.random.seed(seed)
    out = []
    for name, args in calls:
        if name == "random_sample":
            values = np.random.random_sample(args).tolist()
        elif name == "normal":
            loc, scale, n = args
            values = np.random.normal(loc=loc, scale=scale, size=n).tolist()
        elif name == "uniform":
            low, high, n = args
            values = np.random.uniform(low, high, size=n).tolist()
        elif name == "randint":
            low, high, n = args
            values = np.random.randint(low, high, size=n).tolist()
        elif name == "randint_scalar":
            low, high = args
            values = [int(np.random.randint(low, high))]
        elif name == "poisson":
            values = np.random.poisson(np.array(args, dtype=np.float64)).tolist()
        elif name == "choice":
            p, n = args
            values = np.random.choice([True, False], size=n, p=[p, 1 - p]).tolist()
        else:
            raise ValueError(name)
        out.append({"call": name, "args": args, "values": values})
    return {"seed": seed, "calls": out}


cases = [
    case(0, [("random_sample", 10), ("normal", [0.0, 1.0, 7]), ("random_sample", 3),
             ("normal", [0.5, 0.3, 4])]),
    case(1, [("uniform", [-45.0, 45.0, 5]), ("randint", [-2, 2, 40]), ("randint_scalar", [0, 5])]),
    case(12345, [("randint", [0, 1000, 30]), ("randint", [-4, 4, 30]),
                 ("randint", [0, 2**33, 5]), ("randint", [7, 8, 3]), ("random_sample", 2)]),
    case(2**32 - 1, [("poisson", [0.0, 0.3, 1.7, 5.0, 9.99, 10.0, 12.5, 60.0, 255.0, 500.0] * 3),
                     ("random_sample", 2)]),
    case(7, [("choice", [0.03, 50]), ("choice", [0.5, 50]), ("choice", [0.27, 20]),
             ("normal", [0.1, 0.3, 5])]),
    case(42, [("normal", [0.0, 1.0, 2001]), ("random_sample", 700)]),
]

print(json.dumps({"numpy": np.__version__, "cases": cases}))
