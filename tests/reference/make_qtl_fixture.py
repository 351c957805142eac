"""Writes tests/fixtures/qtl/: a small GTEx-style QTL table on a real 16 kb excerpt of chr20.

Standard library only (no pinned environment needed). The reference is the committed held-out
excerpt tests/fixtures/heldout-chr20.fa (its header: chr20:45000000-45016000) renamed to contig
`chr20` so that positions in the table are 1-based offsets into the excerpt. REF alleles are read
from the excerpt; ALT is a fixed different base; slopes and p-values are drawn from a seeded RNG,
so the table looks like a GTEx `*.signif_variant_gene_pairs` / eGenes file, not like measured data.
Used by tests/cli.rs (`genolens data variants --qtl-table` then `genolens patch`) and by README's
"Patching your own variants" commands.
"""

import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "fixtures"
OUT = ROOT / "qtl"


def main() -> None:
    lines = (ROOT / "heldout-chr20.fa").read_text().splitlines()
    sequence = "".join(line.strip() for line in lines if not line.startswith(">")).upper()
    OUT.mkdir(exist_ok=True)
    with open(OUT / "chr20-excerpt.fa", "w") as fasta:
        fasta.write(">chr20 excerpt of chr20 (heldout-chr20.fa), positions rebased to 1\n")
        for start in range(0, len(sequence), 80):
            fasta.write(sequence[start : start + 80] + "\n")
    rng = random.Random(13)
    rows = []
    for index in range(8):
        position = 1_000 + index * 1_700 + rng.randrange(0, 400)
        ref = sequence[position - 1]
        alt = {"A": "G", "C": "T", "G": "A", "T": "C"}[ref]
        slope = round(rng.uniform(-1.2, 1.2), 4)
        significant = index % 2 == 0
        pval = 10 ** -rng.uniform(6, 12) if significant else 10 ** -rng.uniform(0.5, 3)
        rows.append(
            f"chr20\t{position}\t{ref}\t{alt}\t{slope}\t{pval:.3e}\t1.000e-05\tENSG_FIXTURE{index}\n"
        )
    with open(OUT / "egenes.tsv", "w") as table:
        table.write("chr\tvariant_pos\tref\talt\tslope\tpval_nominal\tpval_nominal_threshold\tgene_id\n")
        table.writelines(rows)


if __name__ == "__main__":
    main()
