"""Seed corpora for the fuzz targets (fuzz/corpus/TARGET/), cut from the repository's committed
files: `python fuzz/make_corpus.py` (needs pyarrow for the Parquet seeds). The output is
committed; libFuzzer's own finds go to fuzz/work/ (not committed)."""

import gzip
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fuzz" / "corpus"


def text(path, limit=None):
    data = (ROOT / path).read_bytes()
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    return data if limit is None else data[:limit]


def lines(path, count):
    return b"".join(text(path).splitlines(keepends=True)[:count])


def gz(data):
    # mtime 0: the same bytes on every run.
    return gzip.compress(data, mtime=0)


def write(target, seeds):
    folder = OUT / target
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    for index, seed in enumerate(seeds):
        (folder / f"seed-{index:02}").write_bytes(seed)


def parquet(table):
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def main():
    sequences = text("tests/fixtures/sequences.fa")
    motif_fasta = lines("tests/fixtures/motifs/sequences.fa", 8)
    chr20 = text("tests/fixtures/qtl/chr20-excerpt.fa")
    write("fasta", [sequences, motif_fasta, gz(sequences), b">a\nACGTN\n>b desc\nacgtRY\n"])

    promoters = pq.read_table(ROOT / "data/human-promoters.parquet").slice(0, 4).to_pydict()
    short = {k: [str(v)[:60] if k == "sequence" else v for v in vs] for k, vs in promoters.items()}
    csv = "id,sequence,label\n" + "".join(
        f"{i},{s},{l}\n" for i, s, l in zip(short["id"], short["sequence"], short.get("label", ["1"] * 4)))
    write("sequence_table", [csv.encode(), csv.replace(",", "\t").encode(), b"sequence\nACGT\nTTGA\n"])

    write("parquet_table", [
        parquet(pa.table({k: v for k, v in short.items()})),
        parquet(pq.read_table(ROOT / "data/eqtl-proxy.parquet").slice(0, 2)),
        parquet(pa.table({"id": ["a", "b"], "sequence": ["ACGT", "GGCA"], "label": [0, 1]})),
    ])

    # The VCF target splits its input at the first NUL: reference FASTA, then the VCF.
    reference = b">chr20\n" + b"".join(chr20.splitlines(keepends=True)[1:6])
    bases = b"".join(reference.splitlines()[1:])
    vcf = (b"##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
           + b"chr20\t10\trs1\t%c\tA,T\t.\t.\t.\n" % bases[9]
           + b"chr20\t40\t.\t%c\tG\t.\t.\t.\n" % bases[39]
           + b"chr20\t60\trs3\tAC\tA\t.\t.\t.\n")
    write("vcf_windows", [reference + b"\0" + vcf + b"\x10", reference + b"\0" + gz(vcf) + b"\x20"])

    egenes = text("tests/fixtures/qtl/egenes.tsv")
    write("qtl_table", [egenes, egenes.replace(b"\t", b","), gz(egenes)])

    bed = lines("data/annotations-chr20/cpg_islands.bed.gz", 12)
    write("bed", [bed, gz(bed), b"track name=x\nchr1\t10\t20\tpeak\t5\t+\n"])

    meme = text("data/jaspar/JASPAR2024_CORE_insects.meme").decode()
    head = meme[: meme.index("MOTIF", meme.index("MOTIF", meme.index("MOTIF") + 1) + 1)]
    write("meme", [head.encode()])

    configs = sorted({text(str(p.relative_to(ROOT))) for p in ROOT.glob("tests/fixtures/**/config.json")})
    configs += sorted({text(str(p.relative_to(ROOT))) for p in ROOT.glob("data/models/*/config.json")})[:1]
    write("config_json", configs)

    write("vocab", [text("tests/fixtures/models/tiny-cls-k3/vocab.txt"),
                    text("tests/fixtures/families/nt-v2-mlm/vocab.txt")])

    write("tokenizer_input", [line for line in sequences.splitlines() if not line.startswith(b">")]
          + [b"acgtnNNRYacgt", b"ACGTACGTAAAAAACCCCCC"])

    write("safetensors_header", [text("tests/fixtures/sae/inputs.safetensors")])


if __name__ == "__main__":
    main()
