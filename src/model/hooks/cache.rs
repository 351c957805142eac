//! The activations one forward pass captured, by hook point, with analysis helpers.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};

use crate::error::{GenolensError, Result};
use crate::model::hooks::point::{BlockSite, HookPoint};

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
