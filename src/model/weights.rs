//! Named tensors in HF layout: taking them with shape checks (collecting every problem), and seeded random init.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use crate::error::{GenolensError, Result, ShapeMismatch};

/// Tensors by normalised HF name; `take` records missing and wrongly shaped ones instead of failing early.
pub struct WeightTaker {
    path: PathBuf,
    tensors: BTreeMap<String, Tensor>,
    missing: Vec<String>,
    wrong_shape: Vec<ShapeMismatch>,
    device: Device,
}

impl WeightTaker {
    /// Wraps a map of tensors that came from `path`.
    pub fn new(path: &Path, tensors: BTreeMap<String, Tensor>, device: &Device) -> Self {
        WeightTaker {
            path: path.to_path_buf(),
            tensors,
            missing: Vec::new(),
            wrong_shape: Vec::new(),
            device: device.clone(),
        }
    }

    /// Whether a tensor of this name is present (and not yet taken).
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Removes and returns `name` as f32 on the target device; records a problem and returns a
    /// placeholder when it is missing or wrongly shaped (the load then fails in `finish`).
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        match self.tensors.remove(name) {
            Some(tensor) if tensor.dims() == shape => Ok(tensor
                .to_dtype(DType::F32)?
                .contiguous()?
                .to_device(&self.device)?),
            Some(tensor) => {
                self.wrong_shape.push(ShapeMismatch {
                    name: name.to_string(),
                    expected: shape.to_vec(),
                    found: tensor.dims().to_vec(),
                });
                Ok(Tensor::zeros(shape, DType::F32, &self.device)?)
            }
            None => {
                self.missing.push(name.to_string());
                Ok(Tensor::zeros(shape, DType::F32, &self.device)?)
            }
        }
    }

    /// Fails listing every missing, unexpected and wrongly shaped tensor; Ok only for an exact match.
    pub fn finish(self) -> Result<()> {
        let unexpected: Vec<String> = self.tensors.into_keys().collect();
        if self.missing.is_empty() && unexpected.is_empty() && self.wrong_shape.is_empty() {
            return Ok(());
        }
        Err(GenolensError::Weights {
            path: self.path,
            missing: self.missing,
            unexpected,
            wrong_shape: self.wrong_shape,
        })
    }
}

/// Seeded random tensors with BERT's init (normal σ = 0.02; LayerNorm γ = 1, β = 0; biases small).
pub struct RandomInit {
    rng: rand_chacha::ChaCha8Rng,
    device: Device,
}

impl RandomInit {
    /// A generator whose output depends only on `seed`.
    pub fn new(seed: u64, device: &Device) -> Self {
        RandomInit {
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
            device: device.clone(),
        }
    }

    /// Normal(0, std) values of the given shape.
    pub fn normal(&mut self, shape: &[usize], std: f32) -> Result<Tensor> {
        let count: usize = shape.iter().product();
        let normal = Normal::new(0.0f32, std).expect("std is finite and positive");
        let values: Vec<f32> = (0..count).map(|_| normal.sample(&mut self.rng)).collect();
        Ok(Tensor::from_vec(values, shape, &self.device)?)
    }

    /// A LayerNorm γ near 1 (perturbed so tests see a non-trivial scale).
    pub fn near_one(&mut self, size: usize) -> Result<Tensor> {
        Ok((self.normal(&[size], 0.1)? + 1.0)?)
    }
}
