#!/usr/bin/env python3
"""Export one JASPAR release's CORE matrices for one taxon group to MEME minimal format.

Usage: jaspar_to_meme.py JASPAR.sqlite TAX_GROUP OUT.meme

Standard library only (sqlite3). Takes the latest VERSION per BASE_ID, as pyjaspar's
fetch_motifs(collection=['CORE'], tax_group=[...]) does; counts are normalised per column with no
pseudocount (the scanner adds its own). Output is deterministic: motifs sorted by matrix id,
probabilities printed with 6 decimals.
"""
import sqlite3
import sys


def export(database, tax_group, out):
    con = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    rows = con.execute(
        """SELECT m.ID, m.BASE_ID, m.VERSION, m.NAME FROM MATRIX m
           JOIN MATRIX_ANNOTATION a ON a.ID = m.ID AND a.TAG = 'tax_group'
           WHERE m.COLLECTION = 'CORE' AND lower(a.VAL) = lower(?)
             AND m.VERSION = (SELECT max(m2.VERSION) FROM MATRIX m2
                              WHERE m2.BASE_ID = m.BASE_ID AND m2.COLLECTION = m.COLLECTION)
           ORDER BY m.BASE_ID""",
        (tax_group,),
    ).fetchall()
    with open(out, "w", newline="\n") as fh:
        fh.write("MEME version 4\n\nALPHABET= ACGT\n\nstrands: + -\n\n"
                 "Background letter frequencies\nA 0.25 C 0.25 G 0.25 T 0.25\n\n")
        for matrix_id, base, version, name in rows:
            counts = {(r.upper(), int(c)): float(v) for r, c, v in con.execute(
                "SELECT row, col, val FROM MATRIX_DATA WHERE ID = ?", (matrix_id,))}
            width = max(c for _, c in counts)
            nsites = round(sum(counts.get((b, 1), 0.0) for b in "ACGT"))
            fh.write(f"MOTIF {base}.{version} {name}\n"
                     f"letter-probability matrix: alength= 4 w= {width} nsites= {nsites} E= 0\n")
            for c in range(1, width + 1):
                column = [counts.get((b, c), 0.0) for b in "ACGT"]
                total = sum(column)
                fh.write(" " + "  ".join(f"{x / total:.6f}" for x in column) + "\n")
            fh.write("\n")
    return len(rows)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    n = export(*sys.argv[1:4])
    print(f"{n} motifs ({sys.argv[2]}) written to {sys.argv[3]}")
