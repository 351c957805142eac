#!/usr/bin/env python3
"""Reference motif hits from memelite's FIMO (pinned in requirements.txt) for tests/motif_scan.rs.

Writes tests/fixtures/motifs/{sequences.fa, hits.tsv}: 10 kb of real hg19 chr20 (from the data
cache that `just data` fills) plus a short sequence with lower case, N and an IUPAC code, scanned
with every JASPAR 2024 CORE vertebrate motif (data/jaspar/), both strands, p < 1e-4, memelite's
defaults (pseudocount 1e-4, 0.1-bit bins).

Usage: .venv-ref/bin/python tests/reference/make_motif_fixtures.py [DATA_CACHE]
"""
import gzip
import os
import shutil
import sys
import tempfile

from memelite import fimo

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "motifs")
MOTIFS = os.path.join(ROOT, "data", "jaspar", "JASPAR2024_CORE_vertebrates.meme")
REGION = (32_000_000, 32_010_000)  # 0-based half-open on hg19 chr20


def chr20_region(cache):
    path = os.path.join(cache, "raw", "hg19_chr20.fa.gz")
    with gzip.open(path, "rt") as fh:
        header = fh.readline()
        assert header.startswith(">20"), header
        sequence = "".join(line.strip() for line in fh)
    return sequence[REGION[0]:REGION[1]]


def main():
    cache = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "data", "cache")
    region = chr20_region(cache)
    assert "N" not in region
    # Lower case, an N run and an IUPAC letter around a CTCF-like core: all read as in FIMO.
    tricky = region[:120].lower() + "NNNNN" + "CCGCGNGGNGGCAG" + "R" + region[120:300]
    records = [(f"chr20:{REGION[0]}-{REGION[1]}", region), ("tricky", tricky)]
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        fasta = os.path.join(tmp, "sequences.fa")
        with open(fasta, "w") as fh:
            for name, seq in records:
                fh.write(f">{name}\n")
                for i in range(0, len(seq), 60):
                    fh.write(seq[i:i + 60] + "\n")
        hits = fimo(MOTIFS, fasta, threshold=1e-4)
        shutil.copy(fasta, os.path.join(OUT, "sequences.fa"))
    rows = []
    for table in hits:
        for r in table.itertuples(index=False):
            motif_id = r.motif_name.split()[0]
            rows.append((motif_id, r.sequence_name, int(r.start), int(r.end), r.strand,
                         float(r.score), float(getattr(r, "_7"))))
    rows.sort(key=lambda r: (r[0], r[1], r[4] == "-", r[2]))
    with open(os.path.join(OUT, "hits.tsv"), "w") as fh:
        fh.write("motif_id\tsequence\tstart\tend\tstrand\tscore\tp_value\n")
        for r in rows:
            fh.write("\t".join([r[0], r[1], str(r[2]), str(r[3]), r[4], repr(r[5]), repr(r[6])]) + "\n")
    print(f"{len(rows)} hits of {len(hits)} motifs written to {OUT}/hits.tsv")


if __name__ == "__main__":
    main()
