//! Attribution methods on the hooked model (methods.md §7), batched: relevance of each token's
//! word-embedding input (summed over hidden dims, the LXT/captum convention).

pub mod attention_maps;
pub mod chefer;
pub mod integrated_gradients;
pub mod ism;
pub mod lrp;
pub mod nucleotides;
pub mod planted;

pub use attention_maps::{attention_maps, AttentionMaps};
pub use chefer::{chefer_relevance, CheferRelevance};
pub use integrated_gradients::{
    integrated_gradients, path_points, Baseline, IgResult, IgSettings, Quadrature, TargetKind,
};
pub use ism::{ism, IsmResult};
pub use lrp::{lrp, lrp_direction, DirectionTarget, LrpResult};
pub use nucleotides::{
    kmer_scores_to_nucleotides, nucleotide_scores_to_tokens, scale_to_unit,
    token_scores_to_nucleotides, Spread,
};

use crate::error::{GenolensError, Result};
use crate::model::{Batch, HookedModel, Hooks};

/// The classifier's scores [b, classes] under `hooks`: logits, or log-probabilities per `kind`.
/// `method` names the attribution method in the error a model without a classifier head gets.
pub fn class_scores(
    model: &HookedModel,
    batch: &Batch,
    hooks: &Hooks,
    kind: TargetKind,
    method: &str,
) -> Result<candle_core::Tensor> {
    // The last block for [CLS] only unless a hook reads it (the head reads nothing else).
    let logits = model
        .classifier_forward(batch, hooks)?
        .map(|(logits, _)| logits)
        .ok_or_else(|| {
            GenolensError::hook(
                "hook_logits",
                format!(
                    "{method} needs a sequence classifier, and this model is a {}",
                    model.head_kind().hf_class()
                ),
            )
        })?;
    Ok(match kind {
        TargetKind::Logit => logits,
        TargetKind::LogProbability => candle_nn::ops::log_softmax(&logits, candle_core::D::Minus1)?,
    })
}

/// The one-hot [rows, classes] selector of each row's target class (`dtype` on `device`), after
/// checking every target is a class of the classifier.
pub fn one_hot_targets(
    targets: &[usize],
    classes: usize,
    device: &candle_core::Device,
    dtype: candle_core::DType,
) -> Result<candle_core::Tensor> {
    if let Some(&bad) = targets.iter().find(|&&t| t >= classes) {
        return Err(GenolensError::argument(
            "target",
            format!("class {bad} is out of range: the classifier has {classes} classes (0-based)"),
        ));
    }
    let mut one_hot = vec![0f32; targets.len() * classes];
    for (row, &t) in targets.iter().enumerate() {
        one_hot[row * classes + t] = 1.0;
    }
    Ok(
        candle_core::Tensor::from_vec(one_hot, (targets.len(), classes), device)?
            .to_dtype(dtype)?,
    )
}

/// The class each row of `logits` [b, classes] is predicted as (argmax).
pub fn argmax_rows(logits: &[Vec<f32>]) -> Vec<usize> {
    logits
        .iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 {
                        (i, v)
                    } else {
                        best
                    }
                })
                .0
        })
        .collect()
}

/// The class each sequence of `batch` is predicted as (argmax of the logits): the default target.
pub fn predicted_classes(model: &HookedModel, batch: &Batch) -> Result<Vec<usize>> {
    let logits = class_scores(
        model,
        batch,
        &Hooks::none(),
        TargetKind::Logit,
        "a predicted class",
    )?;
    let logits: Vec<Vec<f32>> = logits.to_dtype(candle_core::DType::F32)?.to_vec2()?;
    Ok(argmax_rows(&logits))
}
