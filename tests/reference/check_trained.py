#!/usr/bin/env python3
"""Checks that models trained by genolens load in HF transformers and give the same outputs.

Usage: .venv-ref/bin/python tests/reference/check_trained.py MODEL_DIR [MODEL_DIR ...]

For each folder: loads it with transformers (BertForMaskedLM or BertForSequenceClassification,
from config.json's architectures), tokenises 16 real test sequences (data/human-promoters.parquet)
into DNABERT k-mers, and compares with `genolens embed --hook hook_logits` (mean over k-mer
positions for an MLM, the class logits for a classifier) and the last layer's mean hidden state.
Writes the result into the folder's MODEL.md (section "## Loads in HF transformers") and exits
non-zero if any difference exceeds 1e-4.
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import torch
import transformers
from transformers import BertForMaskedLM, BertForSequenceClassification

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / "target" / "release" / "genolens"
TOLERANCE = 1e-4


def sequences(n=16):
    table = pq.read_table(ROOT / "data" / "human-promoters.parquet").to_pandas()
    test = table[table["split"] == "test"].head(n)
    return list(zip(test["id"], test["sequence"]))


def kmer_ids(sequence, k, vocab):
    sequence = sequence.upper()
    ids = [vocab["[CLS]"]]
    ids += [vocab.get(sequence[i:i + k], vocab["[UNK]"]) for i in range(len(sequence) - k + 1)]
    ids.append(vocab["[SEP]"])
    return ids


def genolens_vectors(model_dir, fasta, hook, out):
    subprocess.run([str(BINARY), "embed", "--model", str(model_dir), "--data", str(fasta), "--hook", hook,
                    "--pooling", "mean", "--out", str(out)], check=True, capture_output=True)
    table = pq.read_table(out / "embeddings.parquet").to_pandas()
    wide = table.pivot(index="sequence_index", columns="dim", values="value").sort_index()
    return torch.tensor(wide.to_numpy(), dtype=torch.float32)


def check(model_dir: Path):
    config = json.loads((model_dir / "config.json").read_text())
    architecture = (config.get("architectures") or ["BertForMaskedLM"])[0]
    cls = BertForSequenceClassification if architecture == "BertForSequenceClassification" else BertForMaskedLM
    # float32 compute, as genolens does (transformers 5 would otherwise keep an f16 checkpoint in f16).
    model = cls.from_pretrained(model_dir, dtype=torch.float32).eval()
    vocab = {t: i for i, t in enumerate((model_dir / "vocab.txt").read_text().splitlines())}
    k = len(next(t for t in vocab if not t.startswith("[")))
    seqs = sequences()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fasta = tmp / "seqs.fa"
        fasta.write_text("".join(f">{i}\n{s}\n" for i, s in seqs))
        layers = config["num_hidden_layers"]
        ours_logits = genolens_vectors(model_dir, fasta, "hook_logits", tmp / "logits")
        ours_hidden = genolens_vectors(model_dir, fasta, f"blocks.{layers - 1}.hook_normalized_resid_post", tmp / "hidden")
    worst_logits = worst_hidden = 0.0
    with torch.no_grad():
        for row, (_, sequence) in enumerate(seqs):
            ids = torch.tensor([kmer_ids(sequence, k, vocab)])
            out = model(input_ids=ids, output_hidden_states=True)
            hidden = out.hidden_states[-1][0, 1:-1].mean(0)
            logits = out.logits[0] if architecture == "BertForSequenceClassification" else out.logits[0, 1:-1].mean(0)
            worst_logits = max(worst_logits, (logits - ours_logits[row]).abs().max().item())
            worst_hidden = max(worst_hidden, (hidden - ours_hidden[row]).abs().max().item())
    ok = worst_logits <= TOLERANCE and worst_hidden <= TOLERANCE
    line = (f"Loaded with transformers {transformers.__version__} (torch {torch.__version__}) as {architecture}; "
            f"on 16 human-promoters test sequences the largest difference from genolens is {worst_logits:.2e} "
            f"(logits{', mean over k-mers' if architecture == 'BertForMaskedLM' else ''}) and {worst_hidden:.2e} "
            f"(last hidden state, mean over k-mers): {'agree' if ok else 'DISAGREE'} within {TOLERANCE:g} "
            f"(`tests/reference/check_trained.py`).")
    card = model_dir / "MODEL.md"
    text = card.read_text() if card.exists() else f"# {model_dir.name}\n"
    text = text.split("\n## Loads in HF transformers")[0].rstrip("\n")
    card.write_text(text + "\n\n## Loads in HF transformers\n\n" + line + "\n")
    print(f"{model_dir}: {line}")
    return ok


if __name__ == "__main__":
    results = [check(Path(p)) for p in sys.argv[1:]]
    sys.exit(0 if results and all(results) else 1)
