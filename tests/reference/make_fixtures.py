"""Builds the HF-transformers conformance fixtures that the Rust tests compare against.

Run with `just fixtures` (creates .venv-ref/ with the pinned versions in requirements.txt).
Writes tests/fixtures/: tiny random BertForMaskedLM and BertForSequenceClassification models
for k = 3 and k = 6, each saved as model.safetensors (save_pretrained, tied decoder omitted)
and as a zip-format pytorch_model.bin (torch.save of the state dict, tied storage shared),
plus reference outputs (input ids, logits, every hidden state, every attention pattern) for a
padded batch of sequences of different lengths, one with N and one in lower case.
Also a legacy (pre-1.6, non-zip) pickle that the loader must refuse with a clear error.
"""

import itertools
import json
import shutil
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertTokenizer

ROOT = Path(__file__).resolve().parents[1] / "fixtures"

# Raw sequences as a user would give them: different lengths, one with N, one partly lower case.
SEQUENCES = [
    "ACGTAGCATCGGATCTAGGCT",
    "TTGACNGTACGATCGA",
    "gattacaGATTACAcgtacgtacgt",
    "ACGTACGTAC",
]


def write_vocab(path: Path, k: int) -> None:
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += ["".join(p) for p in itertools.product("ATCG", repeat=k)]
    path.write_text("\n".join(tokens) + "\n")


def tiny_config(k: int, num_labels: int = 2) -> BertConfig:
    return BertConfig(
        vocab_size=4**k + 5,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        hidden_act="gelu",
        max_position_embeddings=40,
        type_vocab_size=2,
        layer_norm_eps=1e-12,
        pad_token_id=0,
        num_labels=num_labels,
    )


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial weights everywhere (HF init leaves LayerNorm at 1/0 and biases at 0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if name.endswith("LayerNorm.weight"):
                parameter.copy_(1.0 + 0.1 * noise)
            elif name.endswith("bias"):
                parameter.copy_(0.05 * noise)
            else:
                parameter.copy_(0.1 * noise)


def tokenize(vocab_file: Path, k: int):
    """DNABERT's reference path: upper-case, space-separated overlapping k-mers, BertTokenizer lookup."""
    tokenizer = BertTokenizer(str(vocab_file), do_lower_case=False)
    kmer_texts = []
    for sequence in SEQUENCES:
        sequence = sequence.upper()
        kmer_texts.append(" ".join(sequence[i : i + k] for i in range(len(sequence) - k + 1)))
    batch = tokenizer(kmer_texts, padding=True, return_tensors="pt")
    return batch["input_ids"], batch["attention_mask"]


def save_model(model, config, k: int, name: str, vocab_file: Path) -> None:
    safetensors_dir = ROOT / "models" / name
    bin_dir = ROOT / "models" / f"{name}-bin"
    for directory in (safetensors_dir, bin_dir):
        if directory.exists():
            shutil.rmtree(directory)
    model.save_pretrained(safetensors_dir)
    for stale in ("generation_config.json",):
        (safetensors_dir / stale).unlink(missing_ok=True)
    shutil.copy(vocab_file, safetensors_dir / "vocab.txt")
    bin_dir.mkdir(parents=True)
    torch.save(model.state_dict(), bin_dir / "pytorch_model.bin")
    shutil.copy(safetensors_dir / "config.json", bin_dir / "config.json")
    shutil.copy(vocab_file, bin_dir / "vocab.txt")


def reference_outputs(model, input_ids, attention_mask, classifier: bool) -> dict:
    model.eval()
    with torch.no_grad():
        output = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=torch.zeros_like(input_ids),
            output_hidden_states=True,
            output_attentions=True,
        )
        tensors = {
            "input_ids": input_ids.to(torch.int64),
            "attention_mask": attention_mask.to(torch.int64),
            "logits": output.logits.float(),
        }
        for layer, hidden in enumerate(output.hidden_states):
            tensors[f"hidden_states.{layer}"] = hidden.float()
        for layer, attention in enumerate(output.attentions):
            tensors[f"attentions.{layer}"] = attention.float()
        if classifier:
            tensors["pooled"] = model.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
            ).pooler_output.float()
    tensors.update(reference_gradients(model, input_ids, attention_mask, classifier))
    return {name: tensor.contiguous() for name, tensor in tensors.items()}


def reference_gradients(model, input_ids, attention_mask, classifier: bool) -> dict:
    """Backward-pass references (eval mode, no dropout).

    Classifier: the gradient of Σ_b logit[b, 1] at the word embeddings (gradient × input's
    gradient). MLM: the cross-entropy of predicting every real token's own id, and its gradient at
    every parameter (`grad.<name>`; the decoder is tied to the word embeddings).
    """
    types = torch.zeros_like(input_ids)
    model.zero_grad()
    if classifier:
        embeddings = model.bert.embeddings.word_embeddings(input_ids).detach().requires_grad_(True)
        logits = model(inputs_embeds=embeddings, attention_mask=attention_mask, token_type_ids=types).logits
        logits[:, 1].sum().backward()
        return {"embedding_gradient": embeddings.grad.float()}
    logits = model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=types).logits
    real = attention_mask.bool()
    loss = torch.nn.functional.cross_entropy(logits[real], input_ids[real])
    loss.backward()
    gradients = {"mlm_loss": loss.detach().float().reshape(1)}
    for name, parameter in model.named_parameters():
        if parameter.grad is not None:
            gradients[f"grad.{name}"] = parameter.grad.float()
    return gradients


def main() -> None:
    ROOT.mkdir(parents=True, exist_ok=True)
    manifest = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sequences": SEQUENCES,
        "models": {},
    }
    for k in (3, 6):
        vocab_file = ROOT / f"vocab-k{k}.txt"
        write_vocab(vocab_file, k)
        input_ids, attention_mask = tokenize(vocab_file, k)
        for head, model_class in (("mlm", BertForMaskedLM), ("cls", BertForSequenceClassification)):
            torch.manual_seed(1000 * k + (head == "cls"))
            config = tiny_config(k)
            config._attn_implementation = "eager"
            model = model_class(config)
            randomise(model, seed=1000 * k + 7 * (head == "cls"))
            name = f"tiny-{head}-k{k}"
            save_model(model, config, k, name, vocab_file)
            reference = reference_outputs(model, input_ids, attention_mask, classifier=head == "cls")
            save_file(reference, str(ROOT / "models" / f"{name}.reference.safetensors"))
            manifest["models"][name] = {"k": k, "class": model_class.__name__, "layers": config.num_hidden_layers}
        vocab_file.unlink()

    # A legacy (torch < 1.6) pickle: the loader must refuse it and explain the conversion.
    legacy_dir = ROOT / "models" / "legacy-pickle"
    if legacy_dir.exists():
        shutil.rmtree(legacy_dir)
    legacy_dir.mkdir(parents=True)
    torch.save({"bert.embeddings.LayerNorm.weight": torch.ones(4)}, legacy_dir / "pytorch_model.bin",
               _use_new_zipfile_serialization=False)
    shutil.copy(ROOT / "models" / "tiny-mlm-k3" / "config.json", legacy_dir / "config.json")
    shutil.copy(ROOT / "models" / "tiny-mlm-k3" / "vocab.txt", legacy_dir / "vocab.txt")

    (ROOT / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (ROOT / "sequences.fa").write_text("".join(f">seq{i} fixture\n{s}\n" for i, s in enumerate(SEQUENCES)))


if __name__ == "__main__":
    main()
