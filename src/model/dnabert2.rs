//! DNABERT-2 (MosaicBERT, as the hub's `bert_layers.py` runs it): fused `Wqkv`, symmetric ALiBi
//! (−slope_h·|i − j| on every head's scores, no position table), a GEGLU MLP without input bias
//! (`gated_layers`: gate rows first, erf GELU whatever `hidden_act` says), post-LN blocks, and an
//! MLM head whose decoder is the word-embedding matrix with its own bias.
//!
//! The forward is [`HookedModel`](crate::model::HookedModel)'s; this module reads the
//! checkpoint's names into its parts. `Wqkv` is split into q, k and v by rows (q first, then k,
//! then v; head-major within each), so every hook and study sees the same tensors as for BERT.

use candle_core::Device;

use crate::error::Result;
use crate::model::bert::{
    alibi_slopes, bert_embeddings, bert_pooler_and_head, layer_norm, linear, linear_without_bias,
    EncoderLayer, Parts, Positions,
};
use crate::model::config::{Activation, ModelConfig};
use crate::model::heads::HeadKind;
use crate::model::source::TensorSource;
use crate::ops::Linear;

/// MosaicBERT's MLM-head LayerNorm epsilon, fixed in `bert_layers.py` whatever the config says.
const HEAD_LAYER_NORM_EPS: f64 = 1e-12;

/// Builds DNABERT-2's parts from HF names (`bert.…`, `cls.predictions.…`, `classifier.…`).
pub(crate) fn build(
    config: &ModelConfig,
    head_kind: HeadKind,
    source: &mut impl TensorSource,
    device: &Device,
) -> Result<Parts> {
    let hidden = config.hidden_size;
    let mlp = config.intermediate_size;
    let eps = config.layer_norm_eps;
    let embeddings = bert_embeddings(config, source, false)?;
    let mut layers = Vec::with_capacity(config.num_hidden_layers);
    for layer in 0..config.num_hidden_layers {
        let prefix = format!("bert.encoder.layer.{layer}");
        let qkv = linear(
            source,
            &format!("{prefix}.attention.self.Wqkv"),
            3 * hidden,
            hidden,
        )?;
        let part = |index: usize| -> Result<Linear> {
            Ok(Linear {
                weight: qkv.weight.narrow(0, index * hidden, hidden)?.contiguous()?,
                bias: qkv.bias.narrow(0, index * hidden, hidden)?.contiguous()?,
            })
        };
        layers.push(EncoderLayer {
            query: part(0)?,
            key: part(1)?,
            value: part(2)?,
            attention_output: linear(
                source,
                &format!("{prefix}.attention.output.dense"),
                hidden,
                hidden,
            )?,
            attention_layer_norm: layer_norm(
                source,
                &format!("{prefix}.attention.output.LayerNorm"),
                hidden,
                eps,
            )?,
            intermediate: linear_without_bias(
                source,
                &format!("{prefix}.mlp.gated_layers.weight"),
                2 * mlp,
                hidden,
                device,
            )?,
            output: linear(source, &format!("{prefix}.mlp.wo"), hidden, mlp)?,
            output_layer_norm: layer_norm(source, &format!("{prefix}.mlp.layernorm"), hidden, eps)?,
        });
    }
    let (pooler, head) = bert_pooler_and_head(
        config,
        head_kind,
        source,
        HEAD_LAYER_NORM_EPS,
        Some(&embeddings.word),
    )?;
    Ok(Parts {
        embeddings,
        positions: Positions::Alibi(alibi_slopes(config.num_attention_heads)),
        layers,
        final_layer_norm: None,
        mlp_activation: Activation::GeluErf,
        gated_mlp: true,
        pooler,
        head,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alibi_slopes_match_mosaicbert_for_any_head_count() {
        let twelve = alibi_slopes(12);
        let expected = [
            0.5,
            0.25,
            0.125,
            0.0625,
            0.03125,
            0.015625,
            0.0078125,
            0.00390625,
            std::f64::consts::FRAC_1_SQRT_2,
            0.35355339,
            0.17677670,
            0.08838835,
        ];
        for (got, want) in twelve.iter().zip(expected) {
            assert!((*got as f64 - want).abs() < 1e-7, "{twelve:?}");
        }
        assert_eq!(
            alibi_slopes(6),
            vec![0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125]
        );
        assert_eq!(alibi_slopes(1), vec![0.00390625]);
    }
}
