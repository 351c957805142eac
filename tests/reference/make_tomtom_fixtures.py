#!/usr/bin/env python3
"""Reference TOMTOM matches from memelite 0.5.0 (pinned in requirements.txt) for tests/motifs.rs.

Writes tests/fixtures/motifs/tomtom.json: 40 query matrices and, for each, memelite's 25 best
JASPAR 2024 CORE vertebrate targets (data/jaspar/, file order) by p-value, with score, offset,
overlap and strand. memelite runs with exact target columns (n_target_bins=None), both strands,
100 score bins (its defaults otherwise). Queries, all seeded:
  - 24 JASPAR motifs with every column perturbed (Dirichlet around it, concentration 30), some
    trimmed by up to 2 columns on either end, half of them reverse-complemented;
  - 8 random matrices (Dirichlet(0.3) columns, width 6-18), which match nothing;
  - 8 consensus strings of known sites as near one-hot matrices (OCT4 octamer, SOX2, MAF MARE,
    CTCF core, GATA, E-box, AP-1, NF-Y CCAAT).

Usage: .venv-ref/bin/python tests/reference/make_tomtom_fixtures.py
"""
import json
import os

import numpy
from memelite.io import read_meme
from memelite.tomtom import tomtom

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "motifs", "tomtom.json")
MOTIFS = os.path.join(ROOT, "data", "jaspar", "JASPAR2024_CORE_vertebrates.meme")
TOP = 25
SITES = ["ATGCAAAT", "CCATTGTTCT", "TGCTGACTCAGCA", "CCGCGNGGNGGCAG", "AGATAAGG",
         "CACGTG", "TGACTCA", "CCAATCAG"]


def one_hot(site):
    columns = []
    for b in site:
        c = numpy.full(4, 0.02)
        if b in "ACGT":
            c["ACGT".index(b)] = 0.94
        else:
            c[:] = 0.25
        columns.append(c)
    return numpy.array(columns).T


def main():
    rng = numpy.random.default_rng(20261206)
    motifs = read_meme(MOTIFS)
    names = list(motifs.keys())
    targets = [numpy.asarray(motifs[n], dtype=numpy.float64) for n in names]
    queries, kinds = [], []
    for index in rng.choice(len(targets), size=24, replace=False):
        m = targets[index]
        cols = numpy.array([rng.dirichlet(30 * c + 0.05) for c in m.T]).T
        left, right = rng.integers(0, 3), rng.integers(0, 3)
        if m.shape[1] - left - right >= 6:
            cols = cols[:, left:m.shape[1] - right]
        if rng.random() < 0.5:
            cols = cols[::-1, ::-1]
            kinds.append(f"perturbed-rc:{names[index].split()[0]}")
        else:
            kinds.append(f"perturbed:{names[index].split()[0]}")
        queries.append(numpy.ascontiguousarray(cols))
    for _ in range(8):
        width = int(rng.integers(6, 19))
        queries.append(numpy.array([rng.dirichlet(numpy.full(4, 0.3)) for _ in range(width)]).T)
        kinds.append("random")
    for site in SITES:
        queries.append(one_hot(site))
        kinds.append(f"site:{site}")
    p, scores, offsets, overlaps, strands = tomtom(queries, targets, n_target_bins=None, n_jobs=1)
    rows = []
    for i, (q, kind) in enumerate(zip(queries, kinds)):
        order = numpy.argsort(p[i], kind="stable")[:TOP]
        rows.append({
            "kind": kind,
            "columns": [[float(v) for v in col] for col in q.T],
            "matches": [{
                "target": int(t),
                "jaspar_id": names[t].split()[0],
                "p_value": float(p[i, t]),
                "score": int(scores[i, t]),
                "offset": int(offsets[i, t]),
                "overlap": int(overlaps[i, t]),
                "strand": "-" if strands[i, t] == 1 else "+",
            } for t in order],
        })
    with open(OUT, "w") as fh:
        json.dump({"tool": "memelite 0.5.0 tomtom(n_target_bins=None)", "targets": len(targets),
                   "queries": rows}, fh, indent=0)
    print(f"{len(rows)} queries written to {OUT}")


if __name__ == "__main__":
    main()
