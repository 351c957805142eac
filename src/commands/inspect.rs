//! `genolens inspect`: what a model is, what it has, and what can be hooked.

use std::fmt::Write;

use crate::model::{Architecture, HeadKind, HookPoint, LoadedModel};
use crate::tokenize::Tokenizer;

/// A human-readable description of a loaded model.
pub fn describe(loaded: &LoadedModel) -> String {
    let model = &loaded.model;
    let config = model.config();
    let tokenizer = &loaded.tokenizer;
    let mut text = String::new();
    let _ = writeln!(text, "model      {}", loaded.source.id);
    let _ = writeln!(text, "folder     {}", loaded.source.dir.display());
    let _ = writeln!(
        text,
        "weights    {} (sha256 {})",
        loaded.source.weights_file.display(),
        loaded.source.weights_sha256
    );
    let family = match config.architecture {
        Architecture::Bert => "DNABERT (BERT: post-LN, learned positions)",
        Architecture::MosaicBert => {
            "DNABERT-2 (MosaicBERT: post-LN, ALiBi, GEGLU MLP, no position table)"
        }
        Architecture::Esm if config.rotary() => {
            "Nucleotide Transformer v2 (ESM: pre-LN, rotary embeddings, SwiGLU MLP)"
        }
        Architecture::Esm => {
            "Nucleotide Transformer v1 (ESM: pre-LN, learned positions, token dropout)"
        }
    };
    let _ = writeln!(text, "architecture {family}");
    let (encoder, masked_lm, classifier) = match config.architecture {
        Architecture::Bert => (
            "BertModel",
            "BertForMaskedLM",
            "BertForSequenceClassification",
        ),
        Architecture::MosaicBert => (
            "bert_layers.BertModel",
            "bert_layers.BertForMaskedLM",
            "bert_layers.BertForSequenceClassification",
        ),
        Architecture::Esm => ("EsmModel", "EsmForMaskedLM", "EsmForSequenceClassification"),
    };
    let head = match model.head_kind() {
        HeadKind::Encoder { pooler } => format!("encoder only ({encoder}), pooler: {pooler}"),
        HeadKind::MaskedLm => format!(
            "masked LM ({masked_lm}), output bias {}",
            if config.legacy_double_bias {
                "added twice (legacy DNABERT fork)"
            } else {
                "added once (modern HF)"
            }
        ),
        HeadKind::SequenceClassification { num_labels } => {
            format!("sequence classification ({classifier}), {num_labels} labels")
        }
    };
    let _ = writeln!(text, "head       {head}");
    let _ = writeln!(
        text,
        "shape      {} layers, hidden {}, {} heads x {}, mlp {}{}, activation {:?}, LayerNorm eps {:e}",
        config.num_hidden_layers,
        config.hidden_size,
        config.num_attention_heads,
        config.head_dim(),
        config.intermediate_size,
        if config.gated_mlp() { " (gated)" } else { "" },
        model.mlp_activation(),
        config.layer_norm_eps
    );
    let _ = writeln!(
        text,
        "parameters {} (tied tensors counted once)",
        model.parameter_count()
    );
    let special = tokenizer.special();
    let _ = writeln!(
        text,
        "tokenizer  {}, vocab {} ({}), pad={} unk={} cls={} sep={} mask={}",
        tokenizer.kind(),
        tokenizer.len(),
        tokenizer.path().display(),
        special.pad,
        special.unk,
        special.cls,
        if matches!(tokenizer, Tokenizer::Nt(_)) {
            "none".to_string()
        } else {
            special.sep.to_string()
        },
        special.mask
    );
    let _ = writeln!(
        text,
        "window     at most {} tokens including special tokens; up to {} nt fit{}; input is upper-cased, N/IUPAC counted",
        tokenizer.max_tokens(),
        tokenizer.max_sequence_length(),
        match tokenizer {
            Tokenizer::Nt(_) => " (of A/C/G/T: an N is a token of one base)",
            Tokenizer::Bpe(_) => " whatever the merges (each token covers at least one base)",
            Tokenizer::Kmer(_) => "",
        }
    );
    let last = config.num_hidden_layers - 1;
    let _ = writeln!(
        text,
        "hooks      (layers 0..={last}; patterns like blocks.*.attn.hook_pattern select several)"
    );
    for point in model.hook_points() {
        match point {
            HookPoint::Block { layer: 0, site } => {
                let _ = writeln!(text, "  blocks.{{0..{last}}}.{}", site.suffix());
            }
            HookPoint::Block { .. } => {}
            HookPoint::Pooled if !model.head_kind().uses_pooler() => {}
            HookPoint::Logits if matches!(model.head_kind(), HeadKind::Encoder { .. }) => {}
            other => {
                let _ = writeln!(text, "  {other}");
            }
        }
    }
    if !loaded.notes.is_empty() {
        let _ = writeln!(text, "load notes");
        for note in &loaded.notes {
            let _ = writeln!(text, "  {note}");
        }
    }
    text
}
