"""Attention-head statistics from HF transformers' output_attentions (issue 14's check).

Run with `just fixtures` (after make_fixtures.py, whose tiny models and sequences.fa it reads).
For tiny-cls-k6 and tiny-mlm-k3, the fixture sequences (different lengths, one with N, one in
lower case) run as ONE padded batch with output_attentions=True (eager attention). For every
sequence, layer and head, in float64 over the valid tokens only (the attention mask), the
statistics of methods.md section 2: [CLS]-row entropy, mean row entropy, [CLS] max and
population variance, [CLS] -> variant sum and mean (variant at base len // 2, covered by tokens
max(0, p-k+1) ..= min(p, L-k), model positions +1), mean mass on [CLS] and on [SEP]; and the
token scores of section 3 (received_max, received_mean, cls_row; [CLS]/[SEP] excluded).
Writes tests/fixtures/attention/<model>.json.
"""

import json
import math
from pathlib import Path

import torch
import transformers
from transformers import BertForMaskedLM, BertForSequenceClassification, BertTokenizer

ROOT = Path(__file__).resolve().parents[1] / "fixtures"
MODELS = {"tiny-cls-k6": (BertForSequenceClassification, 6), "tiny-mlm-k3": (BertForMaskedLM, 3)}


def read_fasta(path: Path):
    records, name = [], None
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            name = line[1:].split()[0]
        elif line.strip():
            records.append((name, line.strip()))
    return records


def entropy(row):
    return -sum(p * math.log(p) for p in row if p > 0)


def main():
    records = read_fasta(ROOT / "sequences.fa")
    out_dir = ROOT / "attention"
    out_dir.mkdir(exist_ok=True)
    for name, (model_class, k) in MODELS.items():
        model_dir = ROOT / "models" / name
        tokenizer = BertTokenizer(str(model_dir / "vocab.txt"), do_lower_case=False)
        texts = []
        for _, sequence in records:
            s = sequence.upper()
            texts.append(" ".join(s[i : i + k] for i in range(len(s) - k + 1)))
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        model = model_class.from_pretrained(model_dir, attn_implementation="eager")
        model.eval()
        with torch.no_grad():
            output = model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                token_type_ids=torch.zeros_like(batch["input_ids"]),
                output_attentions=True,
            )
        sequences = []
        for b, (seq_id, sequence) in enumerate(records):
            n = int(batch["attention_mask"][b].sum())
            length = len(sequence)
            variant = length // 2
            covering = list(range(max(0, variant - k + 1) + 1, min(variant, length - k) + 2))
            heads = []
            for layer, attention in enumerate(output.attentions):
                a = attention[b].double()
                for head in range(a.shape[0]):
                    m = a[head, :n, :n].tolist()
                    cls = m[0]
                    mean_cls = sum(cls) / n
                    heads.append({
                        "layer": layer,
                        "head": head,
                        "cls_entropy_nats": entropy(cls),
                        "mean_entropy_nats": sum(entropy(r) for r in m) / n,
                        "cls_max_attention": max(cls),
                        "cls_variance": sum((p - mean_cls) ** 2 for p in cls) / n,
                        "cls_to_variant_sum": sum(cls[t] for t in covering),
                        "cls_to_variant_mean": sum(cls[t] for t in covering) / len(covering),
                        "mass_on_cls": sum(r[0] for r in m) / n,
                        "mass_on_sep": sum(r[n - 1] for r in m) / n,
                        "received_max": [max(r[t] for r in m) for t in range(1, n - 1)],
                        "received_mean": [sum(r[t] for r in m) / n for t in range(1, n - 1)],
                        "cls_row": [cls[t] for t in range(1, n - 1)],
                    })
            sequences.append({"id": seq_id, "valid_tokens": n, "variant_offset": variant,
                              "covering_positions": covering, "heads": heads})
        (out_dir / f"{name}.json").write_text(json.dumps({
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "padded_tokens": int(batch["input_ids"].shape[1]),
            "sequences": sequences,
        }, indent=1) + "\n")


if __name__ == "__main__":
    main()
