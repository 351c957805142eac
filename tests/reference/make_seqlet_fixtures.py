#!/usr/bin/env python3
"""Reference seqlets from tangermeme 1.6.0's recursive_seqlets for tests/faithfulness.rs.

Writes tests/fixtures/motifs/seqlets.json: 40 seeded attribution tracks of 150 positions (noise
N(0, 0.15) plus 1-2 spans of 5-16 elevated positions, some with a weak base inside, away from the
ends) and tangermeme's seqlets with its defaults (p 0.01, lengths 4-25, 1000 bins).

Usage: .venv-ref/bin/python tests/reference/make_seqlet_fixtures.py  (tangermeme==1.6.0, torch)
"""
import json
import os

import numpy
from tangermeme.seqlet import recursive_seqlets

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "motifs", "seqlets.json")


def main():
    rng = numpy.random.default_rng(20261206)
    X = rng.normal(0, 0.15, size=(40, 150))
    for row in X:
        for _ in range(int(rng.integers(1, 3))):
            length = int(rng.integers(5, 17))
            start = int(rng.integers(10, 150 - 10 - length))
            row[start:start + length] += rng.uniform(0.4, 1.2, size=length)
            if rng.random() < 0.3:
                row[start + length // 2] = rng.normal(0, 0.15)
    seqlets = recursive_seqlets(X)
    rows = [{"example": int(r["example_idx"]), "start": int(r["start"]), "end": int(r["end"]),
             "attribution": float(r["attribution"]), "p_value": float(r["p-value"])}
            for _, r in seqlets.iterrows()]
    with open(OUT, "w") as fh:
        json.dump({"tool": "tangermeme 1.6.0 recursive_seqlets (defaults)",
                   "scores": [[float(v) for v in row] for row in X], "seqlets": rows}, fh)
    print(f"{len(rows)} seqlets written to {OUT}")


if __name__ == "__main__":
    main()
