//! AttnLRP and CP-LRP (methods.md §7) as gradient × input with a modified backward: the rules
//! are a mode of the hooked model's own forward ([`Hooks::with_rules`]), not a copy of it, so
//! every hook still works during an LRP pass.

use candle_core::{DType, Tensor, Var, D};

use crate::error::{GenolensError, Result};
use crate::model::{Batch, HookPoint, HookedModel, Hooks, Intervention};
use crate::ops::relevance::RelevanceRules;

use super::TargetKind;

/// One sequence's LRP relevance.
#[derive(Debug, Clone, PartialEq)]
pub struct LrpResult {
    /// Relevance of each valid token's word embedding ([CLS] and [SEP] included), summed over
    /// hidden dims.
    pub scores: Vec<f32>,
    /// The explained target (logit or log-probability of the class).
    pub target: f64,
    /// Relevance that reached the position and token-type embeddings (reported, not dropped).
    pub positional: f64,
    /// Σ scores − target: the conservation error (biases and the LayerNorm shift absorb some).
    pub conservation_error: f64,
}

/// A scalar to explain on a model with or without a head: the projection of the activation at
/// `hook` on `direction` (an SAE feature's encoder row, a probe's weights, a unit vector), read
/// at token `position` for token-resolved hooks ([b,t,d]) or directly for [b,d] hooks
/// (`hook_cls`, `hook_pooled`).
#[derive(Debug, Clone)]
pub struct DirectionTarget {
    /// Where the activation is read.
    pub hook: HookPoint,
    /// [d] direction.
    pub direction: Tensor,
    /// Token position for [b,t,d] hooks (0 = [CLS]).
    pub position: usize,
}

/// LRP relevance (or plain gradient × input with `rules` = `None`) of a [`DirectionTarget`]:
/// what `target` of each row is, and which tokens it comes from. Works on encoders without a
/// head; `conservation_error` compares Σ relevance with the projection.
pub fn lrp_direction(
    model: &HookedModel,
    batch: &Batch,
    target: &DirectionTarget,
    rules: Option<RelevanceRules>,
) -> Result<Vec<LrpResult>> {
    let (hooks, variable, embedding, positional) =
        embedding_hooks(model, batch, rules, Some(target.hook))?;
    let output = model.forward(batch, &hooks)?;
    let activation = output
        .cache
        .get_point(target.hook)
        .expect("captured")
        .clone();
    let activation = match activation.rank() {
        2 => activation,
        3 => {
            let tokens = activation.dim(1)?;
            if target.position >= tokens {
                return Err(GenolensError::argument(
                    "position",
                    format!(
                        "token {} is past the batch's {tokens} tokens",
                        target.position
                    ),
                ));
            }
            activation.narrow(1, target.position, 1)?.squeeze(1)?
        }
        _ => {
            return Err(GenolensError::hook(
                target.hook,
                "a direction target needs a [b,t,d] or [b,d] hook (not a head-resolved one)",
            ))
        }
    };
    let width = activation.dim(1)?;
    if target.direction.dims() != [width] {
        return Err(GenolensError::argument(
            "direction",
            format!(
                "shape {:?} does not match the hook's width {width}",
                target.direction.dims()
            ),
        ));
    }
    let direction = target
        .direction
        .to_dtype(activation.dtype())?
        .to_device(activation.device())?;
    let selected = activation.broadcast_mul(&direction)?.sum(1)?;
    relevance_of(batch, &positional, &variable, &embedding, &selected)
}

/// LRP relevance of each row's `targets[row]` class under `rules`, for the whole batch in one
/// forward and one backward. `None` is plain gradient × input (the same read-outs).
pub fn lrp(
    model: &HookedModel,
    batch: &Batch,
    targets: &[usize],
    kind: TargetKind,
    rules: Option<RelevanceRules>,
) -> Result<Vec<LrpResult>> {
    let rows = batch.size();
    if targets.len() != rows {
        return Err(GenolensError::argument(
            "lrp",
            format!("{} targets for {rows} sequences", targets.len()),
        ));
    }
    let (hooks, variable, embedding, positional) = embedding_hooks(model, batch, rules, None)?;
    // The last block for [CLS] only (the head reads nothing else): less forward and backward.
    let (logits, _) = model.classifier_forward(batch, &hooks)?.ok_or_else(|| {
        GenolensError::hook(
            "hook_logits",
            format!(
                "LRP needs a sequence classifier, and this model is a {}",
                model.head_kind().hf_class()
            ),
        )
    })?;
    let scores = match kind {
        TargetKind::Logit => logits,
        TargetKind::LogProbability => candle_nn::ops::log_softmax(&logits, D::Minus1)?,
    };
    let selector =
        super::one_hot_targets(targets, scores.dim(1)?, scores.device(), scores.dtype())?;
    let selected = (scores * selector)?.sum(1)?;
    relevance_of(batch, &positional, &variable, &embedding, &selected)
}

/// Leaves standing in for the position and token-type embeddings (whichever the model has),
/// broadcast to [b,t,d] so each row's relevance can be read; filled during the forward.
type PositionalLeaves = Vec<std::sync::Arc<std::sync::Mutex<Option<Var>>>>;

/// The hooks of a forward (under `rules`) with the word embeddings as a leaf and the position
/// and token-type embeddings (those the model has) as leaves of their own, `capture` captured:
/// (hooks, the word leaf, the embeddings, the positional leaves).
fn embedding_hooks(
    model: &HookedModel,
    batch: &Batch,
    rules: Option<RelevanceRules>,
    capture: Option<HookPoint>,
) -> Result<(Hooks, Var, Tensor, PositionalLeaves)> {
    let embedding = model.word_embeddings(&batch.ids)?;
    let variable = Var::from_tensor(&embedding)?;
    let mut hooks = match rules {
        Some(rules) => Hooks::none().with_rules(rules),
        None => Hooks::none(),
    };
    if let Some(point) = capture {
        hooks = hooks.capture_point(point);
    }
    let shape = embedding.dims().to_vec();
    let points = model.hook_points();
    let mut leaves = Vec::new();
    for point in [HookPoint::PosEmbed, HookPoint::TokenTypeEmbed] {
        if !points.contains(&point) {
            continue;
        }
        let leaf: std::sync::Arc<std::sync::Mutex<Option<Var>>> = Default::default();
        let slot = leaf.clone();
        let shape = shape.clone();
        hooks = hooks.intervene(
            point,
            Intervention::Custom(std::sync::Arc::new(move |activation: &Tensor| {
                let var =
                    Var::from_tensor(&activation.broadcast_as(shape.as_slice())?.contiguous()?)?;
                let tensor = var.as_tensor().clone();
                *slot.lock().expect("one forward at a time") = Some(var);
                Ok(tensor)
            })),
        );
        leaves.push(leaf);
    }
    let hooks = hooks.intervene(
        HookPoint::Embed,
        Intervention::Replace {
            value: variable.as_tensor().clone(),
            positions: None,
            heads: None,
        },
    );
    Ok((hooks, variable, embedding, leaves))
}

/// Gradient × input at the word embeddings of `selected` [b] (one scalar per row), with the
/// positional relevance (at the position and token-type leaves) and the conservation error.
fn relevance_of(
    batch: &Batch,
    positional_leaves: &PositionalLeaves,
    variable: &Var,
    embedding: &Tensor,
    selected: &Tensor,
) -> Result<Vec<LrpResult>> {
    let target_values: Vec<f32> = selected.to_dtype(DType::F32)?.to_vec1()?;
    let gradients = selected.sum_all()?.backward()?;
    let gradient = gradients
        .get(variable.as_tensor())
        .ok_or_else(|| GenolensError::hook("hook_embed", "no relevance reached the embeddings"))?;
    let token_scores: Vec<Vec<f32>> = (gradient * embedding)?
        .sum(D::Minus1)?
        .to_dtype(DType::F32)?
        .to_vec2()?;
    let rows = token_scores.len();
    let tokens = token_scores.first().map_or(0, Vec::len);
    let mut positional = vec![vec![0f32; tokens]; rows];
    for leaf in positional_leaves {
        let Some(var) = leaf.lock().expect("forward finished").take() else {
            continue;
        };
        let Some(leaf_gradient) = gradients.get(var.as_tensor()) else {
            continue;
        };
        let relevance: Vec<Vec<f32>> = (leaf_gradient * var.as_tensor())?
            .sum(D::Minus1)?
            .to_dtype(DType::F32)?
            .to_vec2()?;
        for (total, row) in positional.iter_mut().zip(relevance) {
            for (t, r) in total.iter_mut().zip(row) {
                *t += r;
            }
        }
    }
    Ok(token_scores
        .into_iter()
        .zip(positional)
        .enumerate()
        .map(|(row, (mut scores, positional))| {
            let n = batch.lengths[row];
            scores.truncate(n);
            let total: f64 = scores.iter().map(|&v| f64::from(v)).sum();
            let target = f64::from(target_values[row]);
            LrpResult {
                scores,
                target,
                positional: positional[..n].iter().map(|&v| f64::from(v)).sum(),
                conservation_error: total - target,
            }
        })
        .collect())
}
