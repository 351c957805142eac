"""Builds the conformance fixtures of the other model families: DNABERT-2 (MosaicBERT) and the
Nucleotide Transformer v1 and v2 (ESM), as tiny random models laid out exactly as their hub
repositories ship them, with reference outputs of the reference implementations.

Run with `just family-fixtures DNABERT2_CODE` (pinned environment: requirements-families.txt):

    python tests/reference/make_family_fixtures.py --dnabert2-code DIR

- DNABERT-2: the hub's own remote code (`bert_layers.py`, `bert_padding.py` of
  zhihan1996/DNABERT-2-117M, read from DIR: a local copy of the hub repository, e.g. a clone of
  one of its public mirrors), imported as a package with the PyTorch attention path forced
  (`flash_attn_qkvpacked_func = None`: no Triton). Nothing of it is copied into this repository.
  Its forward returns no attention probabilities (DNABERT_2 issue #80): they are read at the
  input of each layer's attention dropout, and the per-layer states (unpadded [nnz, d]) are
  re-padded.
- NT v1: stock `transformers.EsmForMaskedLM` (learned positions, token dropout), as the hub
  repository uses it (no remote code).
- NT v2: stock ESM with rotary embeddings, each MLP replaced by the bias-free SwiGLU of the
  hub's remote `modeling_esm.py` (`dense` Linear(d, 2·d_mlp, bias=False), SiLU on the first half
  times the second, `output.dense` Linear(d_mlp, d, bias=False)); every other module of that
  remote code is 4.32-era HF ESM. The checkpoint carries the unused tensors the real one does
  (a position table, `contact_head`, per-layer `inv_freq`).

Writes tests/fixtures/families/<name>/ (config.json, weights, tokenizer files) and
<name>.reference.safetensors: input_ids, attention_mask, hidden_states.{l} (HF's tuple),
last_layer_output (ESM: before the final LayerNorm), attentions.{l}, logits; plus
tokens.json (the reference tokenizer's ids for each test sequence).
"""

import argparse
import itertools
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "families"

# Upper-case DNA of different lengths; one has an N (a token of its own in NT, [UNK] in BPE).
SEQUENCES = [
    "ACGTAGCATCGGATCTATCTATCGACACTTGGTTATCGATCTACGAGCATC",
    "TTGACNGTACGATCGATTACAGGCT",
    "GATTACAGATTACACGTACGTACGGCATTAG",
    "ACGTACGTACGTA",
]


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial weights everywhere (HF init leaves LayerNorm at 1/0 and biases at 0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            lower = name.lower()
            if "norm" in lower and lower.endswith("weight"):
                parameter.copy_(1.0 + 0.1 * noise)
            elif name.endswith("bias"):
                parameter.copy_(0.05 * noise)
            else:
                parameter.copy_(0.2 * noise)


def pad(rows, pad_id):
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], dtype=torch.long)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], dtype=torch.long)
    return ids, mask


# ---------------------------------------------------------------------------------------------
# DNABERT-2


def bpe_tokenizer(path: Path) -> None:
    """A small BPE tokenizer.json shaped like DNABERT-2's (Whitespace pre-tokenizer, BPE with
    [UNK], no normaliser, [CLS] $A [SEP]), trained on seeded random DNA."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    rng = random.Random(11)
    motifs = ["TATAAA", "GGGCGG", "CACGTG", "TTGACA", "AAAAAAAA"]
    corpus = []
    for _ in range(3000):
        text = "".join(rng.choice("ACGT") for _ in range(rng.randint(20, 80)))
        cut = rng.randrange(len(text))
        corpus.append(text[:cut] + rng.choice(motifs) + text[cut:])
    trainer = trainers.BpeTrainer(vocab_size=160, special_tokens=specials, initial_alphabet=list("ACGT"), show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 1), ("[SEP]", 2)],
    )
    tokenizer.save(str(path))


def import_dnabert2(code: Path):
    """The hub's bert_layers.py and bert_padding.py as a package in a scratch folder (the Triton
    module is left out, so the import falls back to PyTorch attention)."""
    scratch = Path(tempfile.mkdtemp())
    package = scratch / "dnabert2_hub"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for file in ["bert_layers.py", "bert_padding.py", "configuration_bert.py"]:
        shutil.copy(code / file, package / file)
    sys.path.insert(0, str(scratch))
    import dnabert2_hub.bert_layers as bert_layers

    bert_layers.flash_attn_qkvpacked_func = None
    return bert_layers


def dnabert2(code: Path, classifier: bool) -> None:
    name = "dnabert2-cls" if classifier else "dnabert2-mlm"
    out = ROOT / name
    out.mkdir(parents=True, exist_ok=True)
    bpe_tokenizer(out / "tokenizer.json")
    (out / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]", "cls_token": "[CLS]",
                    "sep_token": "[SEP]", "pad_token": "[PAD]", "mask_token": "[MASK]"}, indent=2) + "\n"
    )
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(out / "tokenizer.json"))
    vocab_size = fast.backend_tokenizer.get_vocab_size()
    config_json = {
        "_name_or_path": "zhihan1996/DNABERT-2-117M",
        "alibi_starting_size": 512,
        "attention_probs_dropout_prob": 0.0,
        "auto_map": {
            "AutoConfig": "configuration_bert.BertConfig",
            "AutoModel": "bert_layers.BertModel",
            "AutoModelForMaskedLM": "bert_layers.BertForMaskedLM",
            "AutoModelForSequenceClassification": "bert_layers.BertForSequenceClassification",
        },
        "classifier_dropout": None,
        "gradient_checkpointing": False,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": 48,
        "initializer_range": 0.02,
        "intermediate_size": 64,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 512,
        "num_attention_heads": 12,
        "num_hidden_layers": 2,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
        "transformers_version": "4.28.0",
        "type_vocab_size": 2,
        "use_cache": True,
        "vocab_size": vocab_size,
    }
    if classifier:
        # As a fine-tuned copy's config: the classes named.
        config_json["architectures"] = ["BertForSequenceClassification"]
        config_json["id2label"] = {"0": "background", "1": "promoter"}
        config_json["label2id"] = {"background": 0, "promoter": 1}
    (out / "config.json").write_text(json.dumps(config_json, indent=2) + "\n")
    bert_layers = import_dnabert2(code)
    config = transformers.BertConfig(**{k: v for k, v in config_json.items() if k not in ("auto_map", "_name_or_path", "architectures")})
    config.alibi_starting_size = 512
    if classifier:
        model = bert_layers.BertForSequenceClassification(config)
    else:
        model = bert_layers.BertForMaskedLM(config)
    randomise(model, 12 if classifier else 2)
    model.eval()
    # As the hub file: torch.save of the state dict, the decoder sharing the embeddings' storage.
    torch.save(model.state_dict(), out / "pytorch_model.bin")

    tokens = {s: fast(s)["input_ids"] for s in SEQUENCES}
    tokens["acgtNNacgt"] = fast("acgtNNacgt")["input_ids"]
    if not classifier:
        (ROOT / f"{name}.tokens.json").write_text(json.dumps(tokens, indent=1) + "\n")
    ids, mask = pad([tokens[s] for s in SEQUENCES], 3)

    captured = {}
    layers = model.bert.encoder.layer
    hooks = []
    for index, layer in enumerate(layers):
        hooks.append(layer.attention.self.dropout.register_forward_hook(
            lambda module, args, output, index=index: captured.__setitem__(f"attentions.{index}", args[0].detach().clone())))
        hooks.append(layer.register_forward_hook(
            lambda module, args, output, index=index: captured.__setitem__(f"layer.{index}", output.detach().clone())))
    hooks.append(model.bert.embeddings.register_forward_hook(
        lambda module, args, output: captured.__setitem__("embeddings", output.detach().clone())))
    with torch.no_grad():
        output = model(input_ids=ids, attention_mask=mask)
    for hook in hooks:
        hook.remove()
    from dnabert2_hub.bert_padding import pad_input

    batch, width = ids.shape
    indices = torch.nonzero(mask.flatten(), as_tuple=False).flatten()
    reference = {
        "input_ids": ids,
        "attention_mask": mask,
        "hidden_states.0": captured["embeddings"],
        "logits": output.logits.detach(),
    }
    for index in range(len(layers)):
        reference[f"hidden_states.{index + 1}"] = pad_input(captured[f"layer.{index}"], indices, batch, width)
        reference[f"attentions.{index}"] = captured[f"attentions.{index}"]
    reference["last_layer_output"] = reference[f"hidden_states.{len(layers)}"].clone()
    save_file({k: v.contiguous().float() if v.is_floating_point() else v.contiguous() for k, v in reference.items()},
              ROOT / f"{name}.reference.safetensors")
    print(name, "params", sum(p.numel() for p in model.parameters()))


# ---------------------------------------------------------------------------------------------
# Nucleotide Transformer


def nt_vocab(version: int):
    kmers = ["".join(p) for p in itertools.product("ATCG", repeat=6)]
    if version == 1:
        return ["<unk>", "<pad>", "<mask>", "<cls>"] + kmers + list("ATCGN") + ["<eos>", "<bos>"]
    return ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>"] + kmers + list("ATCGN")


class SwiGlu(torch.nn.Module):
    """The hub's NT v2 MLP: SiLU on the first half of a bias-free projection, times the second."""

    def __init__(self, hidden, intermediate):
        super().__init__()
        self.dense = torch.nn.Linear(hidden, 2 * intermediate, bias=False)

    def forward(self, x):
        first, second = self.dense(x).chunk(2, dim=-1)
        return torch.nn.functional.silu(first) * second


def nt(version: int, classifier: bool) -> None:
    name = f"nt-v{version}-{'cls' if classifier else 'mlm'}"
    out = ROOT / name
    out.mkdir(parents=True, exist_ok=True)
    vocab = nt_vocab(version)
    (out / "vocab.txt").write_text("\n".join(vocab))  # as the hub file: no final newline
    (out / "special_tokens_map.json").write_text(json.dumps(
        {"cls_token": "<cls>", "mask_token": "<mask>", "pad_token": "<pad>", "unk_token": "<unk>"}, indent=2) + "\n")
    (out / "tokenizer_config.json").write_text(json.dumps(
        {"clean_up_tokenization_spaces": True, "eos_token": None, "model_max_length": 1000 if version == 1 else 2048,
         "tokenizer_class": "EsmTokenizer"}, indent=2) + "\n")
    vocab_size = 4105 if version == 1 else 4107
    common = dict(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=40, emb_layer_norm_before=False, layer_norm_eps=1e-12, pad_token_id=1,
        mask_token_id=2, tie_word_embeddings=False, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        is_folding_model=False, esmfold_config=None, vocab_list=None, use_cache=False,
    )
    if version == 1:
        config = transformers.EsmConfig(intermediate_size=64, position_embedding_type="absolute", token_dropout=True, **common)
    else:
        config = transformers.EsmConfig(intermediate_size=48, position_embedding_type="rotary", token_dropout=False, **common)
    config._attn_implementation = "eager"
    if classifier:
        config.num_labels = 2
        config.id2label = {0: "background", 1: "promoter"}
        config.label2id = {"background": 0, "promoter": 1}
        model = transformers.EsmForSequenceClassification(config)
    else:
        model = transformers.EsmForMaskedLM(config)
    if version == 2:
        for layer in model.esm.encoder.layer:
            layer.intermediate = SwiGlu(config.hidden_size, config.intermediate_size)
            layer.output.dense = torch.nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
    randomise(model, 3 + version + (10 if classifier else 0))
    model.eval()
    state = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    config_json = json.loads(config.to_json_string())
    for key in ["_attn_implementation_autoset", "_name_or_path"]:
        config_json.pop(key, None)
    if version == 1:
        config_json["architectures"] = ["EsmForSequenceClassification" if classifier else "EsmForMaskedLM"]
        # The hub's .bin holds the int64 position_ids buffer.
        state["esm.embeddings.position_ids"] = torch.arange(config.max_position_embeddings).unsqueeze(0)
        torch.save(state, out / "pytorch_model.bin")
    else:
        config_json.pop("model_type", None)
        config_json["add_bias_fnn"] = False
        config_json["architectures"] = ["EsmForMaskedLM", "EsmForTokenClassification", "EsmForSequenceClassification"]
        config_json["auto_map"] = {
            "AutoConfig": "esm_config.EsmConfig",
            "AutoModelForMaskedLM": "modeling_esm.EsmForMaskedLM",
            "AutoModelForTokenClassification": "modeling_esm.EsmForTokenClassification",
            "AutoModelForSequenceClassification": "modeling_esm.EsmForSequenceClassification",
        }
        generator = torch.Generator().manual_seed(99)
        # What the real v2 checkpoint carries and never uses.
        state["esm.embeddings.position_embeddings.weight"] = torch.randn(
            config.max_position_embeddings, config.hidden_size, generator=generator)
        head_dim = config.hidden_size // config.num_attention_heads
        inv_freq = 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
        for index in range(config.num_hidden_layers):
            key = f"esm.encoder.layer.{index}.attention.self.rotary_embeddings.inv_freq"
            state[key] = state.get(key, inv_freq).clone()
        save_file(state, out / "model.safetensors")
    assert any(k.startswith("esm.contact_head.") for k in state), "the stock model carries contact_head"
    (out / "config.json").write_text(json.dumps(config_json, indent=2, sort_keys=True) + "\n")

    tokenizer = transformers.EsmTokenizer(str(out / "vocab.txt"), eos_token=None)
    tokens = {s: tokenizer(s)["input_ids"] for s in SEQUENCES}
    if not classifier:
        (ROOT / f"{name}.tokens.json").write_text(json.dumps(tokens, indent=1) + "\n")
    rows = [tokens[s] for s in SEQUENCES]
    if version == 1:
        # Token dropout: a sequence with two <mask> tokens changes the scale of its embeddings.
        masked = list(rows[0])
        masked[3] = masked[5] = 2
        rows.append(masked)
    ids, mask = pad(rows, 1)
    captured = {}
    hook = model.esm.encoder.layer[-1].register_forward_hook(
        lambda module, args, output: captured.__setitem__("last", (output[0] if isinstance(output, tuple) else output).detach().clone()))
    with torch.no_grad():
        output = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    hook.remove()
    reference = {"input_ids": ids, "attention_mask": mask, "logits": output.logits, "last_layer_output": captured["last"]}
    for index, hidden in enumerate(output.hidden_states):
        reference[f"hidden_states.{index}"] = hidden
    for index, attention in enumerate(output.attentions):
        reference[f"attentions.{index}"] = attention
    save_file({k: v.contiguous() for k, v in reference.items()}, ROOT / f"{name}.reference.safetensors")
    print(name, "params", sum(p.numel() for p in model.parameters()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dnabert2-code", type=Path, required=True,
                        help="local copy of the zhihan1996/DNABERT-2-117M hub repository (bert_layers.py, bert_padding.py)")
    args = parser.parse_args()
    ROOT.mkdir(parents=True, exist_ok=True)
    for classifier in [False, True]:
        dnabert2(args.dnabert2_code, classifier)
        nt(1, classifier)
        nt(2, classifier)
    (ROOT / "manifest.json").write_text(json.dumps({
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sequences": SEQUENCES,
        "dnabert2_remote_code": "bert_layers.py + bert_padding.py of zhihan1996/DNABERT-2-117M (hub main d064dec), PyTorch attention",
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
