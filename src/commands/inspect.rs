//! `genolens inspect`: what a model is, what it has, and what can be hooked.

use std::fmt::Write;

use crate::model::{BlockSite, HeadKind, HookPoint, LoadedModel};

/// A human-readable description of a loaded model.
pub fn describe(loaded: &LoadedModel) -> String {
    let model = &loaded.model;
    let config = model.config();
    let tokenizer = &loaded.tokenizer;
    let special = tokenizer.vocab.special;
    let mut text = String::new();
    let _ = writeln!(text, "model      {}", loaded.source.id);
    let _ = writeln!(text, "folder     {}", loaded.source.dir.display());
    let _ = writeln!(
        text,
        "weights    {} (sha256 {})",
        loaded.source.weights_file.display(),
        loaded.source.weights_sha256
    );
    let head = match model.head_kind() {
        HeadKind::Encoder { pooler } => format!("encoder only (BertModel), pooler: {pooler}"),
        HeadKind::MaskedLm => format!(
            "masked LM (BertForMaskedLM), output bias {}",
            if config.legacy_double_bias {
                "added twice (legacy DNABERT fork)"
            } else {
                "added once (modern HF)"
            }
        ),
        HeadKind::SequenceClassification { num_labels } => {
            format!("sequence classification (BertForSequenceClassification), {num_labels} labels")
        }
    };
    let _ = writeln!(text, "head       {head}");
    let _ = writeln!(
        text,
        "shape      {} layers, hidden {}, {} heads x {}, mlp {}, activation {:?}, LayerNorm eps {:e}",
        config.num_hidden_layers,
        config.hidden_size,
        config.num_attention_heads,
        config.head_dim(),
        config.intermediate_size,
        config.hidden_act,
        config.layer_norm_eps
    );
    let _ = writeln!(
        text,
        "parameters {} (tied tensors counted once)",
        model.parameter_count()
    );
    let _ = writeln!(
        text,
        "tokenizer  overlapping {}-mers, vocab {} ({}), [PAD]={} [UNK]={} [CLS]={} [SEP]={} [MASK]={}",
        tokenizer.k(),
        tokenizer.vocab.len(),
        tokenizer.vocab.path.display(),
        special.pad,
        special.unk,
        special.cls,
        special.sep,
        special.mask
    );
    let _ = writeln!(
        text,
        "window     {} positions = [CLS] + {} k-mers + [SEP] = at most {} nt; input is upper-cased, N/IUPAC -> [UNK] (counted)",
        config.max_position_embeddings,
        config.max_position_embeddings - 2,
        tokenizer.max_sequence_length()
    );
    let last = config.num_hidden_layers - 1;
    let _ = writeln!(
        text,
        "hooks      (layers 0..={last}; patterns like blocks.*.attn.hook_pattern select several)"
    );
    for point in [
        HookPoint::Embed,
        HookPoint::PosEmbed,
        HookPoint::TokenTypeEmbed,
    ] {
        let _ = writeln!(text, "  {point}");
    }
    for site in BlockSite::ALL {
        let _ = writeln!(text, "  blocks.{{0..{last}}}.{}", site.suffix());
    }
    let mut tail = vec![HookPoint::Cls];
    if model.head_kind().uses_pooler() {
        tail.push(HookPoint::Pooled);
    }
    if !matches!(model.head_kind(), HeadKind::Encoder { .. }) {
        tail.push(HookPoint::Logits);
    }
    for point in tail {
        let _ = writeln!(text, "  {point}");
    }
    if !loaded.notes.is_empty() {
        let _ = writeln!(text, "load notes");
        for note in &loaded.notes {
            let _ = writeln!(text, "  {note}");
        }
    }
    text
}
