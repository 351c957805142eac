//! Captures and interventions at hook points, and the cache of captured activations.

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::{DType, Tensor};

use crate::error::{GenolensError, Result};
pub use crate::model::hook_point::{ActivationLayout, BlockSite, HookPattern, HookPoint};

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

/// Which activations a forward pass captures and how it intervenes. `Hooks::default()` does nothing.
#[derive(Clone, Debug, Default)]
pub struct Hooks {
    captures: Vec<HookPattern>,
    interventions: Vec<(HookPoint, Intervention)>,
}

impl Hooks {
    /// No captures, no interventions.
    pub fn none() -> Self {
        Self::default()
    }

    /// Also capture every hook matching `pattern` (exact name or `*` wildcards).
    pub fn capture(mut self, pattern: &str) -> Result<Self> {
        self.captures.push(HookPattern::new(pattern)?);
        Ok(self)
    }

    /// Also capture one hook point.
    pub fn capture_point(mut self, point: HookPoint) -> Self {
        self.captures
            .push(HookPattern::new(&point.to_string()).expect("hook names are valid patterns"));
        self
    }

    /// Add an intervention at `point` (several at one point apply in the order added).
    pub fn intervene(mut self, point: HookPoint, intervention: Intervention) -> Self {
        self.interventions.push((point, intervention));
        self
    }

    /// True when the forward pass needs to do nothing at any hook.
    pub fn is_empty(&self) -> bool {
        self.captures.is_empty() && self.interventions.is_empty()
    }

    /// Whether `point` is captured or intervened on (lets the model skip optional work such as hook_result).
    pub fn wants(&self, point: HookPoint) -> bool {
        self.is_intervened(point) || self.captures.iter().any(|c| c.matches(point))
    }

    /// Whether any intervention targets `point`.
    pub fn is_intervened(&self, point: HookPoint) -> bool {
        self.interventions.iter().any(|(p, _)| *p == point)
    }

    /// Checks every capture pattern matches a hook of this model and every intervention is in range.
    pub fn validate(&self, num_layers: usize, num_heads: usize) -> Result<()> {
        let points = HookPoint::all(num_layers);
        for pattern in &self.captures {
            if !points.iter().any(|p| pattern.matches(*p)) {
                return Err(GenolensError::hook(
                    pattern.as_str(),
                    format!("matches no hook of this {num_layers}-layer model"),
                ));
            }
        }
        for (point, intervention) in &self.interventions {
            if let Some(layer) = point.layer() {
                if layer >= num_layers {
                    return Err(GenolensError::hook(
                        point,
                        format!("layer {layer} out of range: the model has {num_layers} layers (0-based)"),
                    ));
                }
            }
            let heads = match intervention {
                Intervention::Replace {
                    heads: Some(heads), ..
                } => heads.as_slice(),
                Intervention::ZeroHeads { heads } | Intervention::MeanHeads { heads, .. } => {
                    heads.as_slice()
                }
                _ => &[],
            };
            if !heads.is_empty() {
                if !matches!(
                    point.layout(),
                    ActivationLayout::TokenHead | ActivationLayout::HeadQueryKey
                ) {
                    return Err(GenolensError::hook(
                        point,
                        "head selection needs a head-resolved hook (attn.hook_q/k/v/z/result/attn_scores/pattern)",
                    ));
                }
                if let Some(head) = heads.iter().find(|&&h| h >= num_heads) {
                    return Err(GenolensError::hook(
                        point,
                        format!(
                            "head {head} out of range: the model has {num_heads} heads (0-based)"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Applies this point's interventions, then captures the result if asked. Called by the model.
    pub fn apply(
        &self,
        point: HookPoint,
        activation: Tensor,
        cache: &mut ActivationCache,
    ) -> Result<Tensor> {
        if self.is_empty() {
            return Ok(activation);
        }
        let mut activation = activation;
        for (target, intervention) in &self.interventions {
            if *target == point {
                activation = apply_intervention(point, &activation, intervention)?;
            }
        }
        if self.captures.iter().any(|c| c.matches(point)) {
            cache.insert(point, activation.clone());
        }
        Ok(activation)
    }
}

fn apply_intervention(
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
            if out.dims() != dims {
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

/// Activations captured during one forward pass, in forward order.
#[derive(Clone, Debug, Default)]
pub struct ActivationCache {
    entries: BTreeMap<HookPoint, Tensor>,
}

impl ActivationCache {
    /// Stores an activation.
    pub fn insert(&mut self, point: HookPoint, activation: Tensor) {
        self.entries.insert(point, activation);
    }

    /// The activation at a typed hook point, if captured.
    pub fn get_point(&self, point: HookPoint) -> Option<&Tensor> {
        self.entries.get(&point)
    }

    /// The activation at a hook name; errors name what was captured.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        let point: HookPoint = name.parse()?;
        self.entries.get(&point).ok_or_else(|| {
            let captured: Vec<String> = self.entries.keys().map(|p| p.to_string()).collect();
            GenolensError::hook(
                name,
                format!("not captured (captured: {})", captured.join(", ")),
            )
        })
    }

    /// Captured (hook, activation) pairs in forward order.
    pub fn iter(&self) -> impl Iterator<Item = (&HookPoint, &Tensor)> {
        self.entries.iter()
    }

    /// Number of captured activations.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing was captured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// One site across layers 0..n stacked on a new leading axis ([layer, ...]).
    pub fn stack_layers(&self, site: BlockSite, num_layers: usize) -> Result<Tensor> {
        let tensors = (0..num_layers)
            .map(|layer| {
                let point = HookPoint::block(layer, site);
                self.entries
                    .get(&point)
                    .cloned()
                    .ok_or_else(|| GenolensError::hook(point, "not captured"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::stack(&tensors, 0)?)
    }

    /// Moves every activation to f32 on the CPU (for writing tables).
    pub fn to_cpu_f32(&self) -> Result<Self> {
        let mut out = ActivationCache::default();
        for (point, tensor) in &self.entries {
            out.insert(
                *point,
                tensor
                    .to_device(&candle_core::Device::Cpu)?
                    .to_dtype(DType::F32)?,
            );
        }
        Ok(out)
    }
}
