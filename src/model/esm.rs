//! The Nucleotide Transformer (ESM): pre-LN blocks (`attention.LayerNorm` before attention, the
//! layer's `LayerNorm` before the MLP), a final `emb_layer_norm_after`, an untied LM head
//! (`lm_head.dense`, GELU, `lm_head.layer_norm`, `lm_head.decoder`, `lm_head.bias`).
//! - NT v1: learned positions read from row `padding_idx + 1` on, token dropout scaling
//!   (`token_dropout: true`), erf-GELU MLP with biases.
//! - NT v2 (the hub's remote `modeling_esm.py`): rotary embeddings on q and k, SwiGLU MLP
//!   (SiLU on the first half of `intermediate.dense`) without biases (`add_bias_fnn: false`).
//!   Its checkpoints carry an unused position table, `contact_head` and per-layer `inv_freq`
//!   buffers: the loader recognises and skips them (reading `inv_freq` first).
//!
//! The forward is [`HookedModel`](crate::model::HookedModel)'s; this module reads the names.

use candle_core::Device;

use crate::error::Result;
use crate::model::bert::{
    layer_norm, linear, linear_without_bias, Embeddings, EncoderLayer, Head, Parts, Positions,
};
use crate::model::config::{Activation, ModelConfig};
use crate::model::heads::HeadKind;
use crate::model::source::TensorSource;
use crate::ops::Linear;

/// Name under which the loader hands over NT v2's stored rotary `inv_freq` (layer 0's buffer;
/// every layer's is checked equal).
pub const ROTARY_INV_FREQ: &str = "esm.encoder.layer.0.attention.self.rotary_embeddings.inv_freq";

/// `inv_freq_i = 1 / 10000^(2i/d)` in f32, as `RotaryEmbedding` computes it when no buffer is stored.
pub fn rotary_inv_freq(head_dim: usize) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|i| 1.0f32 / 10000f32.powf((2 * i) as f32 / head_dim as f32))
        .collect()
}

/// Builds an ESM model's parts from HF names (`esm.…`, `lm_head.…`, `classifier.…`).
pub(crate) fn build(
    config: &ModelConfig,
    head_kind: HeadKind,
    source: &mut impl TensorSource,
    device: &Device,
) -> Result<Parts> {
    let hidden = config.hidden_size;
    let mlp = config.intermediate_size;
    let eps = config.layer_norm_eps;
    let rotary = config.rotary();
    let gated = config.gated_mlp();
    let embeddings = Embeddings {
        word: source.take(
            "esm.embeddings.word_embeddings.weight",
            &[config.vocab_size, hidden],
        )?,
        position: if rotary {
            None
        } else {
            Some(source.take(
                "esm.embeddings.position_embeddings.weight",
                &[config.max_position_embeddings, hidden],
            )?)
        },
        position_offset: config.pad_token_id as usize + 1,
        token_type: None,
        layer_norm: if config.emb_layer_norm_before == Some(true) {
            Some(layer_norm(
                source,
                "esm.embeddings.layer_norm",
                hidden,
                eps,
            )?)
        } else {
            None
        },
    };
    let positions = if rotary {
        let head_dim = config.head_dim();
        let inv_freq = match source.take_buffer(ROTARY_INV_FREQ, &[head_dim / 2])? {
            Some(stored) => stored.to_vec1::<f32>()?,
            None => rotary_inv_freq(head_dim),
        };
        Positions::Rotary(inv_freq)
    } else {
        Positions::Learned
    };
    let mlp_bias = config.add_bias_fnn.unwrap_or(true);
    let mut layers = Vec::with_capacity(config.num_hidden_layers);
    for layer in 0..config.num_hidden_layers {
        let prefix = format!("esm.encoder.layer.{layer}");
        let dense = |source: &mut _, name: &str, out, inp| {
            linear(source, &format!("{prefix}.{name}"), out, inp)
        };
        let (intermediate, output) = if gated && !mlp_bias {
            (
                linear_without_bias(
                    source,
                    &format!("{prefix}.intermediate.dense.weight"),
                    2 * mlp,
                    hidden,
                    device,
                )?,
                linear_without_bias(
                    source,
                    &format!("{prefix}.output.dense.weight"),
                    hidden,
                    mlp,
                    device,
                )?,
            )
        } else {
            let width = if gated { 2 * mlp } else { mlp };
            (
                dense(source, "intermediate.dense", width, hidden)?,
                dense(source, "output.dense", hidden, mlp)?,
            )
        };
        let attention: [Linear; 3] = [
            dense(source, "attention.self.query", hidden, hidden)?,
            dense(source, "attention.self.key", hidden, hidden)?,
            dense(source, "attention.self.value", hidden, hidden)?,
        ];
        let [query, key, value] = attention;
        layers.push(EncoderLayer {
            query,
            key,
            value,
            attention_output: dense(source, "attention.output.dense", hidden, hidden)?,
            attention_layer_norm: layer_norm(
                source,
                &format!("{prefix}.attention.LayerNorm"),
                hidden,
                eps,
            )?,
            intermediate,
            output,
            output_layer_norm: layer_norm(source, &format!("{prefix}.LayerNorm"), hidden, eps)?,
        });
    }
    let final_layer_norm = Some(layer_norm(
        source,
        "esm.encoder.emb_layer_norm_after",
        hidden,
        eps,
    )?);
    let (pooler, head) = match head_kind {
        HeadKind::Encoder { .. } => (None, Head::Encoder),
        HeadKind::MaskedLm => (
            None,
            Head::MaskedLm {
                transform: linear(source, "lm_head.dense", hidden, hidden)?,
                layer_norm: layer_norm(source, "lm_head.layer_norm", hidden, eps)?,
                decoder_weight: source
                    .take("lm_head.decoder.weight", &[config.vocab_size, hidden])?,
                bias: source.take("lm_head.bias", &[config.vocab_size])?,
            },
        ),
        // EsmClassificationHead: out_proj(tanh(dense(x[:, 0]))), the same shape as BERT's
        // pooler + classifier.
        HeadKind::SequenceClassification { num_labels } => (
            Some(linear(source, "classifier.dense", hidden, hidden)?),
            Head::Classifier(linear(source, "classifier.out_proj", num_labels, hidden)?),
        ),
    };
    Ok(Parts {
        embeddings,
        positions,
        layers,
        final_layer_norm,
        mlp_activation: if gated {
            Activation::Silu
        } else {
            Activation::GeluErf
        },
        gated_mlp: gated,
        pooler,
        head,
    })
}
