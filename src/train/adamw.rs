//! AdamW (decoupled weight decay, PyTorch's update) whose moments can be saved and restored, so a
//! resumed run continues exactly where it stopped. Biases and LayerNorm weights are not decayed,
//! as in HF's and DNABERT's training scripts.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::error::{GenolensError, Result};

/// Hyperparameters of [`AdamW`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWSettings {
    /// β1.
    pub beta1: f64,
    /// β2.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay (applied as `p -= lr · wd · p`).
    pub weight_decay: f64,
}

impl Default for AdamWSettings {
    /// β = (0.9, 0.999), ε = 1e-8 (PyTorch), weight decay 0.01 (DNABERT).
    fn default() -> Self {
        AdamWSettings {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

impl AdamWSettings {
    /// The defaults with another weight decay.
    pub fn with_weight_decay(weight_decay: f64) -> Self {
        AdamWSettings {
            weight_decay,
            ..Default::default()
        }
    }
}

struct Slot {
    name: String,
    var: Var,
    first: Tensor,
    second: Tensor,
    decay: bool,
}

/// The optimiser: one (m, v) pair per trainable variable.
pub struct AdamW {
    slots: Vec<Slot>,
    settings: AdamWSettings,
    /// Updates applied so far (for the bias correction).
    pub steps: usize,
}

/// Whether a parameter is weight-decayed (not biases, not LayerNorm weights).
pub fn decays(name: &str) -> bool {
    !(name.ends_with(".bias") || name.contains("LayerNorm") || name == "cls.predictions.bias")
}

impl AdamW {
    /// Zero moments for every named variable.
    pub fn new(vars: Vec<(String, Var)>, settings: AdamWSettings) -> Result<Self> {
        let slots = vars
            .into_iter()
            .map(|(name, var)| {
                Ok(Slot {
                    first: var.as_tensor().zeros_like()?,
                    second: var.as_tensor().zeros_like()?,
                    decay: decays(&name),
                    name,
                    var,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(AdamW {
            slots,
            settings,
            steps: 0,
        })
    }

    /// One update at learning rate `lr` from the gradients of a backward pass. A variable the
    /// loss does not reach keeps its value and moments.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.steps += 1;
        let s = self.settings;
        let t = self.steps as i32;
        let correction1 = 1.0 - s.beta1.powi(t);
        let correction2 = 1.0 - s.beta2.powi(t);
        for slot in &mut self.slots {
            let Some(grad) = grads.get(slot.var.as_tensor()) else {
                continue;
            };
            // candle's gradients for variables still record the ops that made them (and so the
            // whole forward graph); a moment built from them would chain every step's graph to
            // the next and memory would grow without bound.
            let grad = grad.detach();
            let grad = &grad;
            slot.first = ((&slot.first * s.beta1)? + (grad * (1.0 - s.beta1))?)?;
            slot.second = ((&slot.second * s.beta2)? + (grad.sqr()? * (1.0 - s.beta2))?)?;
            let update =
                ((&slot.first / correction1)? / ((&slot.second / correction2)?.sqrt()? + s.eps)?)?;
            let mut value = slot.var.as_tensor().clone();
            if slot.decay && s.weight_decay != 0.0 {
                value = (&value * (1.0 - lr * s.weight_decay))?;
            }
            slot.var.set(&(value - (update * lr)?)?)?;
        }
        Ok(())
    }

    /// Moments by `<name>.exp_avg` / `<name>.exp_avg_sq`, for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.slots
            .iter()
            .flat_map(|slot| {
                [
                    (format!("{}.exp_avg", slot.name), slot.first.clone()),
                    (format!("{}.exp_avg_sq", slot.name), slot.second.clone()),
                ]
            })
            .collect()
    }

    /// Restores moments saved by [`state`](Self::state); every variable must be present.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, steps: usize) -> Result<()> {
        for slot in &mut self.slots {
            let get = |suffix: &str| {
                let key = format!("{}.{suffix}", slot.name);
                state
                    .get(&key)
                    .cloned()
                    .ok_or_else(|| GenolensError::Weights {
                        path: "optimizer.safetensors".into(),
                        missing: vec![key],
                        unexpected: Vec::new(),
                        wrong_shape: Vec::new(),
                    })
            };
            slot.first = get("exp_avg")?.to_device(slot.var.device())?;
            slot.second = get("exp_avg_sq")?.to_device(slot.var.device())?;
        }
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_pytorch_adamw_on_one_parameter() {
        // torch.optim.AdamW([p], lr=0.1, weight_decay=0.01), loss = sum(p²), p = [1, -2], 2 steps:
        // step 1: m = 0.1g, v = 0.001g², update = lr · sign(g) ⇒ p = p(1 − 0.001) − 0.1·sign(p).
        let var = Var::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        let mut optimiser = AdamW::new(
            vec![("w.weight".into(), var.clone())],
            AdamWSettings::default(),
        )
        .unwrap();
        let loss = var.as_tensor().sqr().unwrap().sum_all().unwrap();
        optimiser.step(&loss.backward().unwrap(), 0.1).unwrap();
        let p: Vec<f32> = var.as_tensor().to_vec1().unwrap();
        assert!((p[0] - (1.0 * 0.999 - 0.1)).abs() < 1e-6, "{p:?}");
        assert!((p[1] - (-2.0 * 0.999 + 0.1)).abs() < 1e-6, "{p:?}");
        assert!(!decays(
            "bert.encoder.layer.0.attention.output.LayerNorm.weight"
        ));
        assert!(!decays("classifier.bias") && decays("classifier.weight"));
    }

    #[test]
    fn moments_do_not_hold_the_forward_graph() {
        // The gradient of w in w · (eʷ + 1) includes grad · (eʷ + 1), an op candle records on the forward
        // tensor; moments must not keep it (or every later step's graph) alive.
        let device = Device::Cpu;
        let var = Var::new(&[1.0f32, -2.0], &device).unwrap();
        let mut optimiser = AdamW::new(
            vec![("w.weight".into(), var.clone())],
            AdamWSettings::default(),
        )
        .unwrap();
        for _ in 0..2 {
            let x = (var.as_tensor().exp().unwrap() + 1.0).unwrap();
            let loss = (var.as_tensor() * &x).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            assert!(grads.get(var.as_tensor()).unwrap().track_op());
            optimiser.step(&grads, 0.1).unwrap();
        }
        for (name, moment) in optimiser.state() {
            assert!(
                !moment.track_op(),
                "{name} records the ops of a forward pass"
            );
        }
    }
}
