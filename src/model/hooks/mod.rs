//! Hooks: which activations a forward pass captures and how it intervenes. Three parts, as in
//! TransformerLens: hook points (typed names, [`point`]), interventions ([`intervention`]) and
//! the activation cache ([`cache`]).

pub mod cache;
pub mod intervention;
pub mod point;

use crate::error::{GenolensError, Result};
pub use crate::ops::relevance::RelevanceRules;
pub use cache::ActivationCache;
use candle_core::Tensor;
use intervention::apply_intervention;
pub use intervention::{HookFn, Intervention};
pub use point::{ActivationLayout, BlockSite, HookLayout, HookPattern, HookPoint};

/// Which activations a forward pass captures and how it intervenes. `Hooks::default()` does nothing.
#[derive(Clone, Debug, Default)]
pub struct Hooks {
    captures: Vec<HookPattern>,
    interventions: Vec<(HookPoint, Intervention)>,
    rules: Option<RelevanceRules>,
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

    /// Run the forward with relevance rules (AttnLRP or CP-LRP): the values are the same, the
    /// backward is modified so that gradient × input at the embeddings is the LRP relevance.
    pub fn with_rules(mut self, rules: RelevanceRules) -> Self {
        self.rules = Some(rules);
        self
    }

    /// The relevance rules this forward applies, if any.
    pub fn rules(&self) -> Option<RelevanceRules> {
        self.rules
    }

    /// True when the forward pass needs to do nothing at any hook.
    pub fn is_empty(&self) -> bool {
        self.captures.is_empty() && self.interventions.is_empty() && self.rules.is_none()
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
    pub fn validate(&self, layout: &HookLayout, num_heads: usize) -> Result<()> {
        let num_layers = layout.layers;
        let points = HookPoint::all_of(layout);
        for pattern in &self.captures {
            if !points.iter().any(|p| pattern.matches(*p)) {
                return Err(GenolensError::hook(
                    pattern.as_str(),
                    format!("matches no hook of this {num_layers}-layer model (`genolens inspect` lists its hooks)"),
                ));
            }
        }
        for (point, intervention) in &self.interventions {
            if point.layer().is_none_or(|layer| layer < num_layers) && !points.contains(point) {
                return Err(GenolensError::hook(
                    point,
                    "this architecture has no such hook (`genolens inspect` lists its hooks)",
                ));
            }
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
