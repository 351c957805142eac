//! Pooling token activations into one vector per sequence. Pooling never averages padding, and
//! the mean never includes [CLS] or [SEP] (DESIGN's correctness rules).

use candle_core::{Tensor, D};

use crate::error::{GenolensError, Result};
use crate::model::hooks::ActivationLayout;
use crate::model::{Batch, HookPoint};

/// How to pool token activations into one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The [CLS] position.
    Cls,
    /// Mean over k-mer tokens (excluding [CLS], [SEP] and padding).
    Mean,
}

/// Whether `point` holds one vector per sequence (`hook_cls`, `hook_pooled`, a classifier's
/// `hook_logits`) rather than one per token.
pub fn is_per_sequence(point: HookPoint, head: crate::model::HeadKind) -> bool {
    matches!(point.layout(), ActivationLayout::Sequence)
        || (point == HookPoint::Logits && head != crate::model::HeadKind::MaskedLm)
}

/// Masked mean over the sequence tokens of a [b,t,d] activation, excluding [CLS], [SEP] and
/// padding. `lengths` are the token counts with the special tokens (as in [`Batch::lengths`]);
/// `ends_with_special` says whether the last is a [SEP] (false for the Nucleotide Transformer).
pub fn mean_over_kmers(
    activation: &Tensor,
    lengths: &[usize],
    ends_with_special: bool,
) -> Result<Tensor> {
    let (batch_size, tokens, _) = activation.dims3()?;
    let mut weights = vec![0f32; batch_size * tokens];
    for (row, &length) in lengths.iter().enumerate() {
        let end = length.saturating_sub(usize::from(ends_with_special));
        let kmers = end.saturating_sub(1).max(1);
        for position in 1..end {
            weights[row * tokens + position] = 1.0 / kmers as f32;
        }
    }
    let weights = Tensor::from_vec(weights, (batch_size, tokens, 1), activation.device())?
        .to_dtype(activation.dtype())?;
    Ok(activation.broadcast_mul(&weights)?.sum(D::Minus2)?)
}

/// One vector per sequence, [b, features], from the activation a hook captured: per-sequence
/// hooks (`hook_cls`, `hook_pooled`, a classifier's `hook_logits`) as they are; token hooks
/// ([b,t,...], heads flattened into features) at [CLS] or averaged over k-mers. Attention maps
/// ([b,h,q,k]) are refused: they are not vectors.
pub fn pool_activation(
    point: HookPoint,
    activation: &Tensor,
    batch: &Batch,
    pooling: Pooling,
) -> Result<Tensor> {
    let dims = activation.dims().to_vec();
    match point.layout() {
        ActivationLayout::Sequence => Ok(activation.clone()),
        ActivationLayout::HeadQueryKey => Err(GenolensError::hook(
            point,
            "attention scores/patterns are [b,h,q,k] maps, not vectors; use a residual, MLP or head-output hook",
        )),
        _ if point == HookPoint::Logits && dims.len() == 2 => Ok(activation.clone()),
        _ => {
            let flat =
                activation.reshape((dims[0], dims[1], dims[2..].iter().product::<usize>()))?;
            match pooling {
                Pooling::Cls => Ok(flat.narrow(1, 0, 1)?.squeeze(1)?),
                Pooling::Mean => mean_over_kmers(&flat, &batch.lengths, batch.ends_with_special),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_mean_skips_cls_sep_and_padding() {
        // Two sequences of 4 and 3 tokens padded to 5; special and pad rows hold 100.
        let values = [
            [100.0, 1.0, 3.0, 100.0, 100.0],
            [100.0, 7.0, 100.0, 100.0, 100.0],
        ];
        let flat: Vec<f32> = values.iter().flatten().copied().collect();
        let activation = Tensor::from_vec(flat, (2, 5, 1), &Device::Cpu).unwrap();
        let mean = mean_over_kmers(&activation, &[4, 3], true).unwrap();
        assert_eq!(mean.to_vec2::<f32>().unwrap(), vec![vec![2.0], vec![7.0]]);
    }
}
