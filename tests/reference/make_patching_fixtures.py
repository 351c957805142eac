"""Activation-patching references from HF transformers with forward hooks (issue 13's check).

Run with `just fixtures` (after make_fixtures.py, whose tiny models it loads from
tests/fixtures/models/). For each tiny model and one REF/ALT pair (one SNV), every patch of the
clean run's activation into the corrupt run that genolens's PairRuns::patch supports is done the
TransformerLens way: one full forward of the corrupt input per patch, with a hook replacing

  resid_pre L              the input of encoder.layer[L]            (forward pre-hook)
  attn_out L               the output of layer[L].attention.output.dense (before dropout, + , LN)
  mlp_out L                the output of layer[L].output.dense
  normalized_resid_post L  the output of layer[L].output (the block output, after its LayerNorm)
  z L, head h              head h's slice of the input of layer[L].attention.output.dense

at every position or one token position ([CLS] = 0). Saved per model:
tests/fixtures/patching/<model>.safetensors with `cls` [cases, hidden] (the last block's output
at token 0) and, for classifiers, `logits` [cases, labels]; plus `clean_cls`, `corrupt_cls` and
the tokens; the case list (site, layer, position, head; -1 = every) is in patching/cases.json.
"""

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import BertForMaskedLM, BertForSequenceClassification, BertTokenizer

ROOT = Path(__file__).resolve().parents[1] / "fixtures"
CLEAN = "ACGTTGCATGCAAATCGGCTAGCT"
CORRUPT = "ACGTTGCATGCTAATCGGCTAGCT"
SITES = ["resid_pre", "attn_out", "mlp_out", "normalized_resid_post", "z"]


def tokens(model_dir: Path, k: int, sequence: str) -> torch.Tensor:
    tokenizer = BertTokenizer(str(model_dir / "vocab.txt"), do_lower_case=False)
    text = " ".join(sequence[i : i + k] for i in range(len(sequence) - k + 1))
    return tokenizer([text], return_tensors="pt")["input_ids"]


def run(model, input_ids):
    """Final [CLS] vector and logits of one forward."""
    bert = model.bert
    output = bert(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))
    hidden = output.last_hidden_state
    logits = None
    if isinstance(model, BertForSequenceClassification):
        logits = model.classifier(output.pooler_output)
    return hidden[0, 0].clone(), logits


def capture(model, input_ids, layers: int):
    """Every hooked activation of a clean run, keyed (site, layer)."""
    store, handles = {}, []
    for layer_index, layer in enumerate(model.bert.encoder.layer[:layers]):
        def pre(module, args, kwargs, l=layer_index):
            hidden = args[0] if args else kwargs["hidden_states"]
            store[("resid_pre", l)] = hidden.clone()

        def z(module, args, l=layer_index):
            store[("z", l)] = args[0].clone()

        def out(name, l=layer_index):
            def hook(module, args, output):
                store[(name, l)] = output.clone()
            return hook

        handles.append(layer.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(layer.attention.output.dense.register_forward_pre_hook(z))
        handles.append(layer.attention.output.dense.register_forward_hook(out("attn_out")))
        handles.append(layer.output.dense.register_forward_hook(out("mlp_out")))
        handles.append(layer.output.register_forward_hook(out("normalized_resid_post")))
    run(model, input_ids)
    for handle in handles:
        handle.remove()
    return store


def patched(model, corrupt_ids, clean, site, layer, position, head, head_dim):
    """One full corrupt forward with one clean activation written in."""
    rows = slice(None) if position < 0 else slice(position, position + 1)
    columns = slice(None) if head < 0 else slice(head * head_dim, (head + 1) * head_dim)

    def replace(tensor):
        tensor = tensor.clone()
        tensor[:, rows, columns] = clean[(site, layer)][:, rows, columns]
        return tensor

    block = model.bert.encoder.layer[layer]
    if site == "resid_pre":
        def hook(module, args, kwargs):
            if args:
                return (replace(args[0]),) + tuple(args[1:]), kwargs
            kwargs = dict(kwargs)
            kwargs["hidden_states"] = replace(kwargs["hidden_states"])
            return args, kwargs
        handle = block.register_forward_pre_hook(hook, with_kwargs=True)
    elif site == "z":
        handle = block.attention.output.dense.register_forward_pre_hook(
            lambda module, args: (replace(args[0]),)
        )
    else:
        module = {
            "attn_out": block.attention.output.dense,
            "mlp_out": block.output.dense,
            "normalized_resid_post": block.output,
        }[site]
        handle = module.register_forward_hook(lambda module, args, output: replace(output))
    try:
        return run(model, corrupt_ids)
    finally:
        handle.remove()


def main() -> None:
    out_dir = ROOT / "patching"
    out_dir.mkdir(exist_ok=True)
    manifest = {"clean": CLEAN, "corrupt": CORRUPT, "torch": torch.__version__, "models": {}}
    for name, model_class in (("tiny-cls-k6", BertForSequenceClassification), ("tiny-mlm-k3", BertForMaskedLM)):
        model_dir = ROOT / "models" / name
        model = model_class.from_pretrained(model_dir, attn_implementation="eager").eval()
        config = model.config
        k = 6 if name.endswith("k6") else 3
        clean_ids, corrupt_ids = tokens(model_dir, k, CLEAN), tokens(model_dir, k, CORRUPT)
        head_dim = config.hidden_size // config.num_attention_heads
        cases, cls, logits = [], [], []
        with torch.no_grad():
            clean = capture(model, clean_ids, config.num_hidden_layers)
            clean_cls, clean_logits = run(model, clean_ids)
            corrupt_cls, corrupt_logits = run(model, corrupt_ids)
            for layer in range(config.num_hidden_layers):
                for site in SITES:
                    heads = range(config.num_attention_heads) if site == "z" else [-1]
                    for head in heads:
                        for position in [-1] + list(range(clean_ids.shape[1])):
                            vector, logit = patched(model, corrupt_ids, clean, site, layer, position, head, head_dim)
                            cases.append({"site": site, "layer": layer, "position": position, "head": head})
                            cls.append(vector)
                            if logit is not None:
                                logits.append(logit[0])
        tensors = {
            "cls": torch.stack(cls),
            "clean_cls": clean_cls,
            "corrupt_cls": corrupt_cls,
            "clean_ids": clean_ids[0].to(torch.int64),
            "corrupt_ids": corrupt_ids[0].to(torch.int64),
        }
        if logits:
            tensors["logits"] = torch.stack(logits)
            tensors["clean_logits"] = clean_logits[0]
            tensors["corrupt_logits"] = corrupt_logits[0]
        save_file({n: t.float().contiguous() if t.is_floating_point() else t.contiguous() for n, t in tensors.items()},
                  str(out_dir / f"{name}.safetensors"))
        manifest["models"][name] = {"k": k, "cases": cases}
    (out_dir / "cases.json").write_text(json.dumps(manifest) + "\n")


if __name__ == "__main__":
    main()
