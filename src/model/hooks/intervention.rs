//! Interventions: what a hook does to an activation (replace, ablate heads, steer, any function).

use std::sync::Arc;

use candle_core::Tensor;

use crate::error::{GenolensError, Result};
use crate::model::hooks::point::{ActivationLayout, HookPoint};

/// A user-supplied function applied to an activation (anything the built-in interventions don't cover).
pub type HookFn = Arc<dyn Fn(&Tensor) -> candle_core::Result<Tensor> + Send + Sync>;

/// What to do to the activation at a hook point.
#[derive(Clone)]
pub enum Intervention {
    /// Replace with `value` (same shape as the activation), optionally only at some positions
    /// and/or heads. Replacing with the activation itself changes nothing, bit for bit.
    Replace {
        /// Replacement activation, e.g. from a clean run's cache.
        value: Tensor,
        /// Token positions to replace (query positions for [b,h,q,k] hooks); `None` = all.
        positions: Option<Vec<usize>>,
        /// Heads to replace (head-resolved hooks only); `None` = all.
        heads: Option<Vec<usize>>,
    },
    /// Set the listed heads to zero (on `attn.hook_z` this is ablation before W_O).
    ZeroHeads {
        /// Heads to ablate.
        heads: Vec<usize>,
    },
    /// Set the listed heads to a reference mean (broadcastable to the activation, e.g. [h,d_head]).
    MeanHeads {
        /// Heads to ablate.
        heads: Vec<usize>,
        /// Mean activation over a reference set.
        mean: Tensor,
    },
    /// Add `scale · direction` (direction broadcastable to the activation's last axis), optionally
    /// only at some positions.
    Add {
        /// Direction vector, e.g. [d_model].
        direction: Tensor,
        /// Multiplier.
        scale: f64,
        /// Positions to steer; `None` = all.
        positions: Option<Vec<usize>>,
    },
    /// Any function of the activation.
    Custom(HookFn),
}

impl std::fmt::Debug for Intervention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Intervention::Replace {
                positions, heads, ..
            } => {
                write!(
                    f,
                    "Replace {{ positions: {positions:?}, heads: {heads:?} }}"
                )
            }
            Intervention::ZeroHeads { heads } => write!(f, "ZeroHeads {{ heads: {heads:?} }}"),
            Intervention::MeanHeads { heads, .. } => write!(f, "MeanHeads {{ heads: {heads:?} }}"),
            Intervention::Add {
                scale, positions, ..
            } => {
                write!(f, "Add {{ scale: {scale}, positions: {positions:?} }}")
            }
            Intervention::Custom(_) => f.write_str("Custom"),
        }
    }
}

pub(crate) fn apply_intervention(
    point: HookPoint,
    activation: &Tensor,
    intervention: &Intervention,
) -> Result<Tensor> {
    let dims = activation.dims();
    match intervention {
        Intervention::Replace {
            value,
            positions,
            heads,
        } => {
            if value.dims() != dims {
                return Err(GenolensError::hook(
                    point,
                    format!(
                        "replacement shape {:?} does not match activation shape {:?}",
                        value.dims(),
                        dims
                    ),
                ));
            }
            let value = value.to_dtype(activation.dtype())?;
            if positions.is_none() && heads.is_none() {
                return Ok(value);
            }
            let mask = selection_mask(
                point,
                dims,
                positions.as_deref(),
                heads.as_deref(),
                activation.device(),
            )?;
            Ok(mask.where_cond(&value, activation)?)
        }
        Intervention::ZeroHeads { heads } => {
            let zeros = activation.zeros_like()?;
            let mask = selection_mask(point, dims, None, Some(heads), activation.device())?;
            Ok(mask.where_cond(&zeros, activation)?)
        }
        Intervention::MeanHeads { heads, mean } => {
            let mean = mean
                .to_dtype(activation.dtype())?
                .broadcast_as(dims)
                .map_err(|_| {
                    GenolensError::hook(
                        point,
                        format!(
                            "mean of shape {:?} does not broadcast to activation shape {:?}",
                            mean.dims(),
                            dims
                        ),
                    )
                })?;
            let mask = selection_mask(point, dims, None, Some(heads), activation.device())?;
            Ok(mask.where_cond(&mean, activation)?)
        }
        Intervention::Add {
            direction,
            scale,
            positions,
        } => {
            let step = (direction.to_dtype(activation.dtype())? * *scale)?
                .broadcast_as(dims)
                .map_err(|_| {
                    GenolensError::hook(
                        point,
                        format!(
                            "direction of shape {:?} does not broadcast to activation shape {:?}",
                            direction.dims(),
                            dims
                        ),
                    )
                })?;
            let steered = (activation + step)?;
            match positions {
                None => Ok(steered),
                Some(positions) => {
                    let mask =
                        selection_mask(point, dims, Some(positions), None, activation.device())?;
                    Ok(mask.where_cond(&steered, activation)?)
                }
            }
        }
        Intervention::Custom(function) => {
            let out = function(activation)?;
            // Position and token-type rows ([1,t,d], shared by the batch) may come back per
            // sequence ([b,t,d]): attribution reads each sequence's positional relevance so.
            let per_sequence = matches!(point, HookPoint::PosEmbed | HookPoint::TokenTypeEmbed)
                && dims.first() == Some(&1)
                && out.rank() == dims.len()
                && out.dims()[1..] == dims[1..];
            if out.dims() != dims && !per_sequence {
                return Err(GenolensError::hook(
                    point,
                    format!(
                        "custom hook returned shape {:?}, expected {:?}",
                        out.dims(),
                        dims
                    ),
                ));
            }
            Ok(out)
        }
    }
}

/// A u8 mask (broadcast to `dims`) that is 1 where the selected positions and heads meet.
fn selection_mask(
    point: HookPoint,
    dims: &[usize],
    positions: Option<&[usize]>,
    heads: Option<&[usize]>,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let (position_axis, head_axis) = match point.layout() {
        ActivationLayout::Token => (Some(1), None),
        ActivationLayout::TokenHead => (Some(1), Some(2)),
        ActivationLayout::HeadQueryKey => (Some(2), Some(1)),
        ActivationLayout::Sequence => (None, None),
    };
    let mut small_shape = vec![1usize; dims.len()];
    let mut selected: Vec<(usize, &[usize])> = Vec::new();
    for (axis, indices, what) in [
        (position_axis, positions, "positions"),
        (head_axis, heads, "heads"),
    ] {
        let Some(indices) = indices else { continue };
        let axis = axis
            .ok_or_else(|| GenolensError::hook(point, format!("this hook has no {what} axis")))?;
        if let Some(bad) = indices.iter().find(|&&i| i >= dims[axis]) {
            return Err(GenolensError::hook(
                point,
                format!(
                    "{what} index {bad} out of range for axis of size {}",
                    dims[axis]
                ),
            ));
        }
        small_shape[axis] = dims[axis];
        selected.push((axis, indices));
    }
    let total: usize = small_shape.iter().product();
    let mut data = vec![1u8; total];
    let strides: Vec<usize> = (0..small_shape.len())
        .map(|axis| small_shape[axis + 1..].iter().product())
        .collect();
    for (flat, value) in data.iter_mut().enumerate() {
        for (axis, indices) in &selected {
            let index = (flat / strides[*axis]) % small_shape[*axis];
            if !indices.contains(&index) {
                *value = 0;
            }
        }
    }
    let mask = Tensor::from_vec(data, small_shape, device)?;
    Ok(mask.broadcast_as(dims)?)
}
