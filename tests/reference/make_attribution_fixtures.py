"""Attribution references from captum (issue 15's checks), on the tiny fixture classifier.

Runs in its own pinned environment (tests/reference/requirements-lxt.txt: torch 2.15.0,
transformers 4.46.3, captum 0.9.0, lxt 2.1; LXT's efficient BERT needs transformers 4.x), built by
`just attribution-fixtures` into the git-ignored .venv-lxt/. For tiny-cls-k6 and the fixture
sequences as one padded batch, target = logit of class 1, on HF `inputs_embeds` (word embeddings
only; positions and token types are added inside the model):
  - gradient x input: captum InputXGradient;
  - integrated gradients: captum IntegratedGradients, n_steps 50, methods gausslegendre and
    riemann_trapezoid, baselines zero (all-zero word embeddings) and mask (every token but
    [CLS]/[SEP]/[PAD] replaced by [MASK]), with captum's convergence delta; and once for the
    target's log-probability (Gauss-Legendre, zero baseline);
  - DNABERT's attention score, attention rollout and attention GradCAM from output_attentions
    (the published formulas in float64, valid tokens only);
  - ISM by a direct loop of HF forwards, one per substitution (identity = 0);
  - Chefer LRP (lrp from layer 0, lrp_last, full_lrp) with Chefer et al.'s own code, one
    sequence at a time (see chefer_reference: needs CHEFER_DIR);
  - AttnLRP with LXT 2.1's efficient BERT and CP-LRP from LXT's rules (see lxt_relevance).
Token scores are summed over hidden dims. Writes tests/fixtures/attribution/tiny-cls-k6.json.
"""

import json
from pathlib import Path

import captum
import torch
import transformers
from captum.attr import InputXGradient, IntegratedGradients
from transformers import BertForSequenceClassification, BertTokenizer

ROOT = Path(__file__).resolve().parents[1] / "fixtures"
TARGET = 1


def read_fasta(path: Path):
    records, name = [], None
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            name = line[1:].split()[0]
        elif line.strip():
            records.append((name, line.strip()))
    return records


CHEFER_COMMIT = "c3e578f76b954e8528afeaaee26de3f07e3fe559"


def chefer_reference(model_dir, ids, lengths):
    """Chefer et al.'s own BERT relevance code (hila-chefer/Transformer-Explainability at
    CHEFER_COMMIT, not on PyPI): set CHEFER_DIR to a checkout. Their Generator runs one sequence
    at a time on CUDA; here each sequence alone, with Tensor.cuda() a no-op so it runs on CPU.
    generate_LRP with start_layer 0 (seed 000's LRP), generate_LRP_last_layer,
    generate_full_lrp; index = TARGET."""
    import os
    import sys
    import types as pytypes

    root = os.environ.get("CHEFER_DIR")
    if not root or not (Path(root) / "BERT_explainability").is_dir():
        raise SystemExit(
            "set CHEFER_DIR to a checkout of github.com/hila-chefer/Transformer-Explainability "
            f"at {CHEFER_COMMIT} (the folder holding BERT_explainability/)"
        )
    sys.path.insert(0, root)
    # Their classifier module imports a helper from their rationale benchmark it never uses.
    for name in ("BERT_rationale_benchmark", "BERT_rationale_benchmark.models"):
        sys.modules.setdefault(name, pytypes.ModuleType(name))
    utils = pytypes.ModuleType("BERT_rationale_benchmark.models.model_utils")
    utils.PaddedSequence = object
    sys.modules["BERT_rationale_benchmark.models.model_utils"] = utils
    cuda = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    from BERT_explainability.modules.BERT.BertForSequenceClassification import (
        BertForSequenceClassification as CheferBert,
    )
    from BERT_explainability.modules.BERT.ExplanationGenerator import Generator

    model = CheferBert.from_pretrained(model_dir)
    model.eval()
    model.config.return_dict = False  # their forward names an output class it never imports
    generator = Generator(model)
    out = {"commit": CHEFER_COMMIT, "lrp": [], "lrp_last": [], "full_lrp": []}
    for b in range(ids.shape[0]):
        one = ids[b : b + 1, : lengths[b]]
        mask = torch.ones_like(one)
        out["lrp"].append(generator.generate_LRP(one, mask, index=TARGET, start_layer=0)[0].tolist())
        out["lrp_last"].append(generator.generate_LRP_last_layer(one, mask, index=TARGET)[0].tolist())
        out["full_lrp"].append(generator.generate_full_lrp(one, mask, index=TARGET)[0].tolist())
    torch.Tensor.cuda = cuda
    return out


def lxt_relevance(model_dir, ids, mask, types, lengths):
    """AttnLRP with LXT's efficient BERT (eager attention), and CP-LRP built from LXT's own rules
    on the same patched model: q and k detached (lxt.efficient.rules.stop_gradient, as LXT's
    patch_cp_attention does) and no uniform rule inside attention (its cp_LRP maps keep only the
    LayerNorm, dropout and activation patches). Target = logit of TARGET; relevance = Σ_d
    inputs_embeds ⊙ grad."""
    import lxt

    from lxt_bert import attnlrp_bert

    modeling_bert, lxt_bert = attnlrp_bert()
    from lxt.efficient.rules import stop_gradient
    model = modeling_bert.BertForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager")
    model.eval()
    assert type(model.bert.encoder.layer[0].attention.self).__module__ == lxt_bert.__name__

    def relevance():
        x = model.bert.embeddings.word_embeddings(ids).detach().requires_grad_(True)
        logits = model(inputs_embeds=x, attention_mask=mask, token_type_ids=types,
                       position_ids=torch.arange(ids.shape[1]).expand_as(ids)).logits
        logits[:, TARGET].sum().backward()
        scores = (x * x.grad).sum(-1)
        return {
            "scores": [scores[b, : lengths[b]].tolist() for b in range(ids.shape[0])],
            "target": logits[:, TARGET].tolist(),
        }

    out = {"lxt": lxt.__version__ if hasattr(lxt, "__version__") else "2.1", "attnlrp": relevance()}
    handles = []
    for layer in model.bert.encoder.layer:
        for linear in (layer.attention.self.query, layer.attention.self.key):
            handles.append(linear.register_forward_hook(lambda m, i, o: stop_gradient(o)))
    uniform = lxt_bert.divide_gradient
    lxt_bert.divide_gradient = lambda x, factor=2: x
    out["cp_lrp"] = relevance()
    lxt_bert.divide_gradient = uniform
    for handle in handles:
        handle.remove()
    return out


def main():
    torch.manual_seed(0)
    name, k = "tiny-cls-k6", 6
    model_dir = ROOT / "models" / name
    tokenizer = BertTokenizer(str(model_dir / "vocab.txt"), do_lower_case=False)
    records = read_fasta(ROOT / "sequences.fa")
    texts = [" ".join(s.upper()[i : i + k] for i in range(len(s) - k + 1)) for _, s in records]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    types = torch.zeros_like(ids)
    model = BertForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager")
    model.eval()
    embeddings = model.bert.embeddings.word_embeddings

    def forward(inputs_embeds):
        rows = inputs_embeds.shape[0]
        repeat = rows // ids.shape[0]
        return model(
            inputs_embeds=inputs_embeds,
            attention_mask=mask.repeat(repeat, 1),
            token_type_ids=types.repeat(repeat, 1),
        ).logits

    x = embeddings(ids).detach()
    special = torch.tensor([tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id])
    masked_ids = torch.where(torch.isin(ids, special), ids, torch.full_like(ids, tokenizer.mask_token_id))
    baselines = {"zero": torch.zeros_like(x), "mask": embeddings(masked_ids).detach()}
    lengths = mask.sum(1).tolist()

    def per_token(attribution):
        scores = attribution.sum(-1)
        return [scores[b, : lengths[b]].tolist() for b in range(scores.shape[0])]

    out = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "captum": captum.__version__,
        "target": TARGET,
        "ids": [ids[b, : lengths[b]].tolist() for b in range(ids.shape[0])],
        "logits": forward(x).tolist(),
        "grad_x_input": per_token(InputXGradient(forward).attribute(x.clone().requires_grad_(True), target=TARGET)),
        "integrated_gradients": [],
    }
    ig = IntegratedGradients(forward)
    for method in ("gausslegendre", "riemann_trapezoid"):
        for baseline_name, baseline in baselines.items():
            attribution, delta = ig.attribute(
                x, baselines=baseline, target=TARGET, n_steps=50, method=method,
                internal_batch_size=4 * 10, return_convergence_delta=True,
            )
            out["integrated_gradients"].append({
                "method": method,
                "baseline": baseline_name,
                "steps": 50,
                "scores": per_token(attribution),
                "convergence_delta": delta.tolist(),
            })
    # Attention maps: DNABERT's attention score, rollout, GradCAM (published formulas, float64).
    output = model(input_ids=ids, attention_mask=mask, token_type_ids=types, output_attentions=True)
    attentions = output.attentions
    attentions[-1].retain_grad()
    output.logits[:, TARGET].sum().backward()
    out["attention_maps"] = []
    for b in range(ids.shape[0]):
        n = lengths[b]
        last = attentions[-1][b, :, :n, :n].double().detach()
        rollout = torch.eye(n, dtype=torch.float64)
        for a in attentions:
            hat = a[b, :, :n, :n].double().detach().mean(0) + torch.eye(n, dtype=torch.float64)
            hat = hat / hat.sum(-1, keepdim=True)
            rollout = hat @ rollout
        grad = attentions[-1].grad[b, :, :n, :n].double()
        weights = grad.mean(dim=(-1, -2))
        gradcam = (last[:, 0, :] * weights[:, None]).clamp(min=0).mean(0)
        out["attention_maps"].append({
            "attention": last[:, 0, :].sum(0).tolist(),
            "rollout": rollout[0].tolist(),
            "gradcam": gradcam.tolist(),
        })
    model.zero_grad()

    # ISM by a direct loop: one forward of a batch of one per substitution (identity = 0).
    def logit_of(sequence):
        text = " ".join(sequence[i : i + k] for i in range(len(sequence) - k + 1))
        one = tokenizer([text], return_tensors="pt")
        with torch.no_grad():
            logits = model(input_ids=one["input_ids"], attention_mask=one["attention_mask"],
                           token_type_ids=torch.zeros_like(one["input_ids"])).logits
        return float(logits[0, TARGET])

    out["ism"] = []
    for _, sequence in records:
        sequence = sequence.upper()
        reference = logit_of(sequence)
        deltas = []
        for p, observed in enumerate(sequence):
            row = []
            for base in "ACGT":
                if base == observed:
                    row.append(0.0)
                else:
                    row.append(logit_of(sequence[:p] + base + sequence[p + 1 :]) - reference)
            deltas.append(row)
        out["ism"].append({"reference": reference, "deltas": deltas})
    # Integrated gradients of the log-probability of the target class.
    def log_probability(inputs_embeds):
        return torch.log_softmax(forward(inputs_embeds), dim=-1)

    attribution, delta = IntegratedGradients(log_probability).attribute(
        x, baselines=baselines["zero"], target=TARGET, n_steps=50, method="gausslegendre",
        internal_batch_size=40, return_convergence_delta=True,
    )
    out["integrated_gradients_log_probability"] = {
        "method": "gausslegendre", "baseline": "zero", "steps": 50,
        "scores": per_token(attribution), "convergence_delta": delta.tolist(),
    }
    out["chefer"] = chefer_reference(model_dir, ids, lengths)
    out["lxt"] = lxt_relevance(model_dir, ids, mask, types, lengths)
    dest = ROOT / "attribution"
    dest.mkdir(exist_ok=True)
    (dest / f"{name}.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
