"""How far can any learner get on human-promoters with its 2 114 training windows?

The fine-tuned mini-dnabert6-promoters scores about the same test AUROC as the 4-mer logistic
baseline (0.744). This script asks whether that is the model's fault or the data's: it fits other
learners on the same train split, picks every setting on the validation split, and reports test
AUROC with a bootstrap 95 % CI:

- linear probes (L2 logistic regression on z-scored features) on the pretrained MLM's hidden
  states, mean-pooled over k-mers, at every layer, and on the last layer's [CLS];
- small CNNs trained from scratch on one-hot sequence (64 filters of width 15, then either global
  max pooling, which ignores position, or pooling in 25-bp bins, which keeps the position relative
  to the TSS);
- optionally, the mean of the z-scored logit differences of several fine-tuned classifiers
  (--finetuned DIR ...), an ensemble none of which alone is the default.

Run with the pinned reference environment (tests/reference/requirements.txt), one thread, fixed
seeds; about 10 minutes on 2 CPU cores:

    .venv-ref/bin/python scripts/promoters_ceiling.py --mlm data/cache/train/mini-dnabert6 \
        [--finetuned data/cache/train/mini-dnabert6-promoters ...]
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from transformers import BertForSequenceClassification, BertModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "reference"))
from check_trained import kmer_ids  # noqa: E402  (DNABERT k-mer tokenisation, [CLS] ... [SEP])

SPLITS = ["train", "valid", "test"]


def auroc(score, label):
    """Mann-Whitney AUROC (ties are not expected for continuous scores)."""
    order = np.argsort(score, kind="stable")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    positive = label == 1
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return (ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def bootstrap_ci(score, label, resamples=1000, seed=0):
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        pick = rng.integers(0, len(score), len(score))
        if 0 < label[pick].sum() < len(pick):
            values.append(auroc(score[pick], label[pick]))
    return np.percentile(values, [2.5, 97.5])


def read_vocab(folder):
    return {word: i for i, word in enumerate(open(f"{folder}/vocab.txt").read().split())}


def hidden_features(mlm, table):
    """Per split: (sequences, layers + 1, hidden) mean-pooled states, then the last [CLS]."""
    vocab = read_vocab(mlm)
    model = BertModel.from_pretrained(mlm, add_pooling_layer=False, dtype=torch.float32).eval()
    features = {}
    with torch.no_grad():
        for split in SPLITS:
            ids = torch.tensor([kmer_ids(s, 6, vocab) for s in table[split]["sequence"]])
            chunks = []
            for start in range(0, len(ids), 64):
                states = model(ids[start : start + 64], output_hidden_states=True).hidden_states
                pooled = [h[:, 1:-1].mean(1) for h in states] + [states[-1][:, 0]]
                chunks.append(torch.stack(pooled, 1))
            features[split] = torch.cat(chunks)
    return features


def fit_logistic(x, y, l2):
    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / scale
    w = torch.zeros(z.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y)
        loss = loss + l2 * (w**2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return lambda x: ((x - mean) / scale @ w + b).detach().numpy()


def probe_rows(features, labels):
    layers = features["train"].shape[1]
    for layer in range(layers):
        name = f"linear probe, layer {layer} mean" if layer < layers - 1 else "linear probe, [CLS]"
        best = None
        for l2 in [1e-3, 1e-2, 1e-1]:
            score = fit_logistic(features["train"][:, layer], labels["train"], l2)
            valid = auroc(score(features["valid"][:, layer]), labels["valid"].numpy())
            if best is None or valid > best[0]:
                best = (valid, l2, score(features["test"][:, layer]))
        valid, l2, test_score = best
        yield f"{name} (L2 {l2:g})", valid, test_score


def one_hot(sequences):
    index = {base: i for i, base in enumerate("ACGT")}
    x = np.zeros((len(sequences), 4, len(sequences[0])), np.float32)
    for n, sequence in enumerate(sequences):
        for i, base in enumerate(sequence):
            x[n, index[base], i] = 1.0
    return torch.tensor(x)


def cnn(positional, length):
    layers = [torch.nn.Conv1d(4, 64, 15, padding=7), torch.nn.ReLU(), torch.nn.Dropout(0.2)]
    if positional:
        bins = length // 25
        layers += [torch.nn.MaxPool1d(25), torch.nn.Flatten(), torch.nn.Dropout(0.3)]
        layers += [torch.nn.Linear(64 * bins, 1)]
    else:
        layers += [torch.nn.AdaptiveMaxPool1d(1), torch.nn.Flatten(), torch.nn.Linear(64, 1)]
    return torch.nn.Sequential(*layers)


def cnn_rows(table, labels, seeds=(0, 1, 2), epochs=30):
    x = {split: one_hot(list(table[split]["sequence"])) for split in SPLITS}
    for positional in [False, True]:
        for seed in seeds:
            torch.manual_seed(seed)
            net = cnn(positional, x["train"].shape[2])
            optimiser = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=0.01)
            best = None
            for epoch in range(epochs):
                net.train()
                order = torch.randperm(len(x["train"]))
                for start in range(0, len(order), 32):
                    pick = order[start : start + 32]
                    logits = net(x["train"][pick]).squeeze(1)
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(
                        logits, labels["train"][pick]
                    )
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                net.eval()
                with torch.no_grad():
                    valid = auroc(net(x["valid"]).squeeze(1).numpy(), labels["valid"].numpy())
                    if best is None or valid > best[0]:
                        best = (valid, epoch + 1, net(x["test"]).squeeze(1).numpy())
            valid, epoch, test_score = best
            pooling = "25-bp bins (positional)" if positional else "global max"
            yield f"CNN from scratch, {pooling} pooling, seed {seed} (epoch {epoch})", valid, test_score


def ensemble_rows(folders, table):
    def logit_difference(folder, split):
        vocab = read_vocab(folder)
        model = BertForSequenceClassification.from_pretrained(folder, dtype=torch.float32).eval()
        ids = torch.tensor([kmer_ids(s, 6, vocab) for s in table[split]["sequence"]])
        with torch.no_grad():
            logits = torch.cat([model(ids[i : i + 64]).logits for i in range(0, len(ids), 64)])
        difference = (logits[:, 1] - logits[:, 0]).numpy()
        return (difference - difference.mean()) / difference.std()

    scores = {split: [logit_difference(f, split) for f in folders] for split in ["valid", "test"]}
    labels = {split: table[split]["label"].to_numpy() for split in ["valid", "test"]}
    for folder, valid, test in zip(folders, scores["valid"], scores["test"]):
        yield f"fine-tuned {folder}", auroc(valid, labels["valid"]), test
    if len(folders) > 1:
        valid, test = np.mean(scores["valid"], 0), np.mean(scores["test"], 0)
        yield f"ensemble of the {len(folders)} fine-tuned", auroc(valid, labels["valid"]), test


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data/human-promoters.parquet")
    parser.add_argument("--mlm", default="data/models/mini-dnabert6")
    parser.add_argument("--finetuned", nargs="*", default=[])
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    frame = pq.read_table(args.data).to_pandas()
    table = {split: frame[frame["split"] == split].reset_index(drop=True) for split in SPLITS}
    labels = {s: torch.tensor(table[s]["label"].to_numpy(), dtype=torch.float32) for s in SPLITS}
    test_labels = table["test"]["label"].to_numpy()
    print("| learner | valid AUROC | test AUROC (95 % bootstrap CI) |")
    print("|---|---|---|")
    rows = [
        lambda: probe_rows(hidden_features(args.mlm, table), labels),
        lambda: cnn_rows(table, labels),
        lambda: ensemble_rows(args.finetuned, table),
    ]
    for make in rows:
        for name, valid, test_score in make():
            low, high = bootstrap_ci(test_score, test_labels)
            test = auroc(test_score, test_labels)
            print(f"| {name} | {valid:.3f} | {test:.3f} ({low:.3f}–{high:.3f}) |", flush=True)


if __name__ == "__main__":
    main()
