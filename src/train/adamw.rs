//! AdamW (decoupled weight decay, PyTorch's update) whose moments can be saved and restored, so a
//! resumed run continues exactly where it stopped. Biases and LayerNorm weights are not decayed,
//! as in HF's and DNABERT's training scripts.
//!
//! On the CPU (f32) each variable's update is one pass over the parameter, its gradient and its
//! moments, in place ([`FusedUpdate`]); elsewhere it is composed of tensor ops. Both compute the
//! same f32 expressions in the same order, so they give the same bits.

use std::collections::HashMap;
use std::sync::Mutex;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, InplaceOp2, Layout, Tensor, Var};

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
    moments: Moments,
    decay: bool,
}

/// A variable's first and second moments.
enum Moments {
    /// CPU f32 variables: plain buffers, updated in place with the parameter.
    Host { first: Vec<f32>, second: Vec<f32> },
    /// Other devices and dtypes: tensors, updated by composed ops.
    Tensors { first: Tensor, second: Tensor },
}

impl Moments {
    fn zeros(var: &Var) -> Result<Self> {
        let tensor = var.as_tensor();
        Ok(if fusable(tensor) {
            let n = tensor.elem_count();
            Moments::Host {
                first: vec![0.0; n],
                second: vec![0.0; n],
            }
        } else {
            Moments::Tensors {
                first: tensor.zeros_like()?,
                second: tensor.zeros_like()?,
            }
        })
    }

    /// The moments as tensors shaped like `like`.
    fn tensors(&self, like: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok(match self {
            Moments::Host { first, second } => (
                Tensor::from_slice(first, like.shape(), like.device())?,
                Tensor::from_slice(second, like.shape(), like.device())?,
            ),
            Moments::Tensors { first, second } => (first.clone(), second.clone()),
        })
    }
}

/// Whether a variable takes the fused in-place update.
fn fusable(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32 && x.is_contiguous()
}

/// The constants of one update, in f32 as candle's affine ops take them.
#[derive(Clone, Copy)]
struct UpdateConstants {
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    inverse_correction1: f32,
    inverse_correction2: f32,
    eps: f32,
    /// 1 − lr · weight decay, or None when the variable is not decayed.
    decay: Option<f32>,
    lr: f32,
}

impl UpdateConstants {
    /// One value's moments, updated, and its step before the learning rate: the composed path's
    /// ops in its order, `x * c + 0` being candle's affine (the `+ 0` turns −0 into +0 as it does
    /// there). The parameter then becomes `p · keep + 0 − (step · lr + 0)`, or `p − (step · lr + 0)`
    /// without decay.
    #[inline(always)]
    fn step(&self, g: f32, m: &mut f32, v: &mut f32) -> f32 {
        let c = self;
        *m = (*m * c.beta1 + 0.0) + (g * c.one_minus_beta1 + 0.0);
        *v = (*v * c.beta2 + 0.0) + ((g * g) * c.one_minus_beta2 + 0.0);
        let m_hat = *m * c.inverse_correction1 + 0.0;
        let v_hat = *v * c.inverse_correction2 + 0.0;
        m_hat / (v_hat.sqrt() * 1.0 + c.eps)
    }
}

crate::simd_dispatch! {
/// [`UpdateConstants::step`] and the parameter's update over a chunk, compiled per vector unit (the same bits in each: no
/// fused multiply-adds, and IEEE square roots and divisions).
fn update_chunk(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: &UpdateConstants) {
    // One loop per case, so the decay test is not in the loop.
    let values = p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut());
    let lr = c.lr;
    match c.decay {
        Some(keep) => values.for_each(|(((p, &g), m), v)| {
            let step = c.step(g, m, v);
            *p = (*p * keep + 0.0) - (step * lr + 0.0);
        }),
        None => values.for_each(|(((p, &g), m), v)| {
            let step = c.step(g, m, v);
            *p -= step * lr + 0.0;
        }),
    }
}
}

/// Applies `update(param, grad, first, second)` to aligned chunks of the four buffers, in parallel
/// when there is enough to share (an Adam step is memory-bound: each buffer is read once). Also
/// the SAE trainer's.
pub(crate) fn for_each_chunk(
    param: &mut [f32],
    grad: &[f32],
    first: &mut [f32],
    second: &mut [f32],
    update: impl Fn(&mut [f32], &[f32], &mut [f32], &mut [f32]) + Sync + Send,
) {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 15;
    if param.len() >= 2 * CHUNK {
        param
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(first.par_chunks_mut(CHUNK))
            .zip(second.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m), v)| update(p, g, m, v));
    } else {
        update(param, grad, first, second);
    }
}

/// The in-place update of one CPU f32 variable from its gradient, its moments held by the op.
struct FusedUpdate<'a> {
    constants: UpdateConstants,
    moments: Mutex<(&'a mut [f32], &'a mut [f32])>,
}

impl InplaceOp2 for FusedUpdate<'_> {
    fn name(&self) -> &'static str {
        "genolens-adamw"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        grad: &CpuStorage,
        grad_l: &Layout,
    ) -> candle_core::Result<()> {
        let (CpuStorage::F32(param), CpuStorage::F32(grad)) = (dst, grad) else {
            candle_core::bail!("{}: expected f32 parameter and gradient", self.name());
        };
        let (Some((p0, p1)), Some((g0, g1))) =
            (dst_l.contiguous_offsets(), grad_l.contiguous_offsets())
        else {
            candle_core::bail!("{}: expected contiguous tensors", self.name());
        };
        let (param, grad) = (&mut param[p0..p1], &grad[g0..g1]);
        let mut moments = self
            .moments
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (first, second) = &mut *moments;
        if grad.len() != param.len() || first.len() != param.len() {
            candle_core::bail!(
                "{}: {} parameters, {} gradients, {} moments",
                self.name(),
                param.len(),
                grad.len(),
                first.len()
            );
        }
        let c = self.constants;
        for_each_chunk(param, grad, first, second, |p, g, m, v| {
            update_chunk(p, g, m, v, &c)
        });
        Ok(())
    }
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
                    moments: Moments::zeros(&var)?,
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
            let constants = UpdateConstants {
                beta1: s.beta1 as f32,
                one_minus_beta1: (1.0 - s.beta1) as f32,
                beta2: s.beta2 as f32,
                one_minus_beta2: (1.0 - s.beta2) as f32,
                inverse_correction1: (1.0 / correction1) as f32,
                inverse_correction2: (1.0 / correction2) as f32,
                eps: s.eps as f32,
                decay: (slot.decay && s.weight_decay != 0.0)
                    .then_some((1.0 - lr * s.weight_decay) as f32),
                lr: lr as f32,
            };
            match &mut slot.moments {
                Moments::Host { first, second } => {
                    let op = FusedUpdate {
                        constants,
                        moments: Mutex::new((first, second)),
                    };
                    // (`contiguous` is the gradient itself unless it is a strided view.)
                    slot.var.as_tensor().inplace_op2(&grad.contiguous()?, &op)?;
                }
                Moments::Tensors { first, second } => {
                    // candle's gradients for variables still record the ops that made them (and
                    // so the whole forward graph); a moment built from them would chain every
                    // step's graph to the next and memory would grow without bound.
                    let grad = grad.detach();
                    let grad = &grad;
                    *first = ((&*first * s.beta1)? + (grad * (1.0 - s.beta1))?)?;
                    *second = ((&*second * s.beta2)? + (grad.sqr()? * (1.0 - s.beta2))?)?;
                    let update =
                        ((&*first / correction1)? / ((&*second / correction2)?.sqrt()? + s.eps)?)?;
                    let mut value = slot.var.as_tensor().clone();
                    if slot.decay && s.weight_decay != 0.0 {
                        value = (&value * (1.0 - lr * s.weight_decay))?;
                    }
                    slot.var.set(&(value - (update * lr)?)?)?;
                }
            }
        }
        Ok(())
    }

    /// Moments by `<name>.exp_avg` / `<name>.exp_avg_sq`, for a checkpoint.
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut state = Vec::with_capacity(2 * self.slots.len());
        for slot in &self.slots {
            let (first, second) = slot.moments.tensors(slot.var.as_tensor())?;
            state.push((format!("{}.exp_avg", slot.name), first));
            state.push((format!("{}.exp_avg_sq", slot.name), second));
        }
        Ok(state)
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
            let (first, second) = (get("exp_avg")?, get("exp_avg_sq")?);
            let var = slot.var.as_tensor();
            for (moment, key) in [(&first, "exp_avg"), (&second, "exp_avg_sq")] {
                if moment.shape() != var.shape() {
                    return Err(GenolensError::Weights {
                        path: "optimizer.safetensors".into(),
                        missing: Vec::new(),
                        unexpected: Vec::new(),
                        wrong_shape: vec![crate::error::ShapeMismatch {
                            name: format!("{}.{key}", slot.name),
                            expected: var.dims().to_vec(),
                            found: moment.dims().to_vec(),
                        }],
                    });
                }
            }
            slot.moments = match &slot.moments {
                Moments::Host { .. } => Moments::Host {
                    first: first.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?,
                    second: second.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?,
                },
                Moments::Tensors { .. } => Moments::Tensors {
                    first: first.to_device(var.device())?.to_dtype(var.dtype())?,
                    second: second.to_device(var.device())?.to_dtype(var.dtype())?,
                },
            };
        }
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// AdamW with the defaults over `var` (named `w.weight`), after one step on sum(var²) at lr 0.1.
    fn stepped_once(var: &Var) -> AdamW {
        let mut optimiser = AdamW::new(
            vec![("w.weight".into(), var.clone())],
            AdamWSettings::default(),
        )
        .unwrap();
        let loss = var.as_tensor().sqr().unwrap().sum_all().unwrap();
        optimiser.step(&loss.backward().unwrap(), 0.1).unwrap();
        optimiser
    }

    #[test]
    fn matches_pytorch_adamw_on_one_parameter() {
        // torch.optim.AdamW([p], lr=0.1, weight_decay=0.01), loss = sum(p²), p = [1, -2], 2 steps:
        // step 1: m = 0.1g, v = 0.001g², update = lr · sign(g) ⇒ p = p(1 − 0.001) − 0.1·sign(p).
        let var = Var::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        stepped_once(&var);
        let p: Vec<f32> = var.as_tensor().to_vec1().unwrap();
        assert!((p[0] - (1.0 * 0.999 - 0.1)).abs() < 1e-6, "{p:?}");
        assert!((p[1] - (-2.0 * 0.999 + 0.1)).abs() < 1e-6, "{p:?}");
        assert!(!decays(
            "bert.encoder.layer.0.attention.output.LayerNorm.weight"
        ));
        assert!(!decays("classifier.bias") && decays("classifier.weight"));
    }

    /// The optimiser with tensor moments (the path other devices take), on the CPU.
    fn composed(vars: Vec<(String, Var)>) -> AdamW {
        let mut optimiser = AdamW::new(vars, AdamWSettings::default()).unwrap();
        for slot in &mut optimiser.slots {
            slot.moments = Moments::Tensors {
                first: slot.var.as_tensor().zeros_like().unwrap(),
                second: slot.var.as_tensor().zeros_like().unwrap(),
            };
        }
        optimiser
    }

    #[test]
    fn the_fused_update_gives_the_composed_updates_bits() {
        use crate::ops::kernels::test_support::normal;
        // A decayed matrix large enough for parallel chunks, a small one and a bias; gradients
        // with exact zeros (a ReLU) and a transposed use of one variable.
        let make = || {
            vec![
                (
                    "a.weight".to_string(),
                    Var::from_tensor(&normal(&[300, 250], 1, 1.0)).unwrap(),
                ),
                (
                    "b.weight".to_string(),
                    Var::from_tensor(&normal(&[7, 300], 2, 1.0)).unwrap(),
                ),
                (
                    "b.bias".to_string(),
                    Var::from_tensor(&normal(&[7], 3, 1.0)).unwrap(),
                ),
            ]
        };
        let (fused_vars, composed_vars) = (make(), make());
        let mut fused = AdamW::new(fused_vars.clone(), AdamWSettings::default()).unwrap();
        assert!(fused
            .slots
            .iter()
            .all(|slot| matches!(slot.moments, Moments::Host { .. })));
        let mut reference = composed(composed_vars.clone());
        let x = normal(&[5, 250], 4, 1.0);
        let loss = |vars: &[(String, Var)]| {
            let hidden = x
                .matmul(&vars[0].1.as_tensor().t().unwrap())
                .unwrap()
                .relu()
                .unwrap();
            let out = hidden
                .matmul(&vars[1].1.as_tensor().t().unwrap())
                .unwrap()
                .broadcast_add(vars[2].1.as_tensor())
                .unwrap();
            out.sqr().unwrap().sum_all().unwrap()
        };
        for step in 0..3 {
            let lr = 1e-3 * (step + 1) as f64;
            fused
                .step(&loss(&fused_vars).backward().unwrap(), lr)
                .unwrap();
            reference
                .step(&loss(&composed_vars).backward().unwrap(), lr)
                .unwrap();
        }
        let bits = |t: &Tensor| -> Vec<u32> {
            let values: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            values.iter().map(|v| v.to_bits()).collect()
        };
        for ((name, a), (_, b)) in fused_vars.iter().zip(&composed_vars) {
            assert_eq!(bits(a.as_tensor()), bits(b.as_tensor()), "{name}");
        }
        for ((name, a), (_, b)) in fused
            .state()
            .unwrap()
            .iter()
            .zip(&reference.state().unwrap())
        {
            assert_eq!(bits(a), bits(b), "{name}");
        }
        assert_ne!(
            bits(fused_vars[0].1.as_tensor()),
            bits(&normal(&[300, 250], 1, 1.0))
        );
    }

    #[test]
    fn saved_moments_restore_on_either_path_and_wrong_shapes_are_refused() {
        let var = Var::new(&[[1.0f32, -2.0], [0.5, 3.0]], &Device::Cpu).unwrap();
        let mut optimiser = stepped_once(&var);
        let state: HashMap<String, Tensor> = optimiser.state().unwrap().into_iter().collect();
        let mut restored = composed(vec![("w.weight".into(), var.clone())]);
        restored.load_state(&state, 1).unwrap();
        let again: HashMap<String, Tensor> = restored.state().unwrap().into_iter().collect();
        for (key, value) in &state {
            let (a, b): (Vec<f32>, Vec<f32>) = (
                value.flatten_all().unwrap().to_vec1().unwrap(),
                again[key].flatten_all().unwrap().to_vec1().unwrap(),
            );
            assert_eq!(a, b, "{key}");
        }
        let mut wrong = state.clone();
        wrong.insert(
            "w.weight.exp_avg".into(),
            Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap(),
        );
        let message = optimiser.load_state(&wrong, 1).unwrap_err().to_string();
        assert!(message.contains("w.weight.exp_avg"), "{message}");
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
        for (name, moment) in optimiser.state().unwrap() {
            assert!(
                !moment.track_op(),
                "{name} records the ops of a forward pass"
            );
        }
    }
}
