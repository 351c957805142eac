"""Reference values for genolens's explanation metrics (src/analysis/explain_metrics.rs).

Gini (Quantus `Sparseness`) and entropy (Quantus `Complexity`) come from Quantus itself, called
on pre-computed attributions with abs=True and normalise=False (the formulas alone); continuous
Jaccard (seed 001; not in Quantus) from a direct numpy transcription of methods.md §9. Writes
tests/fixtures/faithfulness/explain_metrics.json; the Rust test reads it, so CI needs no Python.

Pinned: quantus==0.6.0, numpy (whatever .venv-ref has; recorded in the fixture).
Run: `just faithfulness-fixtures` (pins in tests/reference/requirements-quantus.txt).
"""

import json
import pathlib
import warnings

import numpy as np
import quantus

warnings.filterwarnings("ignore")
rng = np.random.default_rng(20261206)
vectors = []
for length in [5, 17, 64, 245]:
    for kind in ["normal", "sparse", "positive"]:
        v = rng.normal(size=length)
        if kind == "sparse":
            v = v * (rng.random(length) < 0.15)
        elif kind == "positive":
            v = np.abs(v) + 0.01
        vectors.append(v)
# (Quantus refuses an all-zero vector; the Rust unit tests cover it.)
vectors.append(np.array([0.0, 0.0, 3.0, 0.0]))


def quantus_metric(metric, a):
    a = np.asarray(a, dtype=np.float64).reshape(1, 1, -1)
    x = np.zeros_like(a)
    y = np.zeros(1, dtype=int)
    return float(metric(model=None, x_batch=x, y_batch=y, a_batch=a.copy())[0])


sparseness = quantus.Sparseness(abs=True, normalise=False, disable_warnings=True)
complexity = quantus.Complexity(abs=True, normalise=False, disable_warnings=True)


def cj(v, w):
    num = np.sum(np.sign(v) * np.sign(w) * np.minimum(np.abs(v), np.abs(w)))
    den = np.sum(np.maximum(np.abs(v), np.abs(w)))
    return None if den == 0 else float(num / den)


cases = []
for i, v in enumerate(vectors):
    w = vectors[i - 1] if len(vectors[i - 1]) == len(v) else rng.normal(size=len(v))
    total = np.abs(v).sum()
    cases.append(
        {
            "v": v.tolist(),
            "w": w.tolist(),
            "gini": quantus_metric(sparseness, v),
            "entropy": None if total == 0 else quantus_metric(complexity, v),
            "continuous_jaccard": cj(v, w),
        }
    )
out = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "faithfulness" / "explain_metrics.json"
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(
    json.dumps(
        {
            "made_by": "tests/reference/make_explain_metric_fixtures.py",
            "quantus": quantus.__version__ if hasattr(quantus, "__version__") else "0.6.0",
            "numpy": np.__version__,
            "cases": cases,
        },
        indent=1,
    )
)
print(f"{len(cases)} cases -> {out}")
