//! Where a model's parameters come from: a checkpoint (with checks) or a seeded random init.

use std::collections::BTreeMap;

use candle_core::Tensor;

use crate::error::Result;
use crate::model::weights::{RandomInit, WeightTaker};

/// Supplies each parameter by its HF name and expected shape.
pub trait TensorSource {
    /// The tensor called `name`, of shape `shape`.
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor>;

    /// A stored non-parameter buffer (NT v2's rotary `inv_freq`) when the source has one; not a
    /// parameter (never trained, never listed), and `None` from sources without stored tensors.
    fn take_buffer(&mut self, _name: &str, _shape: &[usize]) -> Result<Option<Tensor>> {
        Ok(None)
    }

    /// A parameter the architecture ties to `tied` (DNABERT-2's MLM decoder is its word
    /// embeddings): a checkpoint still supplies it under `name` (the loader has made it the
    /// same tensor when the file stores both); a random init returns `tied` itself.
    fn take_tied(&mut self, name: &str, shape: &[usize], _tied: &Tensor) -> Result<Tensor> {
        self.take(name, shape)
    }
}

impl TensorSource for WeightTaker {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        WeightTaker::take(self, name, shape)
    }

    fn take_buffer(&mut self, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        if self.contains(name) {
            Ok(Some(WeightTaker::take(self, name, shape)?))
        } else {
            Ok(None)
        }
    }
}

impl TensorSource for RandomInit {
    fn take_tied(&mut self, _name: &str, _shape: &[usize], tied: &Tensor) -> Result<Tensor> {
        Ok(tied.clone())
    }

    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with("layernorm.weight")
            || lower.ends_with("layer_norm.weight")
            || lower.ends_with("layer_norm_after.weight")
        {
            self.near_one(shape[0])
        } else {
            self.normal(shape, 0.02)
        }
    }
}

/// Records every parameter taken, so the model can list (and save) its named parameters.
pub struct Recording<'a, S: TensorSource> {
    inner: &'a mut S,
    /// Parameters taken so far, by HF name.
    pub taken: BTreeMap<String, Tensor>,
}

impl<'a, S: TensorSource> Recording<'a, S> {
    /// Wraps a source.
    pub fn new(inner: &'a mut S) -> Self {
        Recording {
            inner,
            taken: BTreeMap::new(),
        }
    }
}

impl<S: TensorSource> TensorSource for Recording<'_, S> {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let tensor = self.inner.take(name, shape)?;
        self.taken.insert(name.to_string(), tensor.clone());
        Ok(tensor)
    }

    fn take_buffer(&mut self, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        self.inner.take_buffer(name, shape)
    }

    fn take_tied(&mut self, name: &str, shape: &[usize], tied: &Tensor) -> Result<Tensor> {
        let tensor = self.inner.take_tied(name, shape, tied)?;
        self.taken.insert(name.to_string(), tensor.clone());
        Ok(tensor)
    }
}

/// Wraps a source so every parameter becomes a trainable [`candle_core::Var`]; tensors that are
/// tied in the source (the MLM decoder and the word embeddings) share one Var.
pub struct VarSource<'a, S: TensorSource> {
    inner: &'a mut S,
    by_tensor: std::collections::HashMap<candle_core::TensorId, candle_core::Var>,
    /// Trainable variables by HF name, in the order taken (tied names appear once).
    pub vars: Vec<(String, candle_core::Var)>,
}

impl<'a, S: TensorSource> VarSource<'a, S> {
    /// Wraps a source.
    pub fn new(inner: &'a mut S) -> Self {
        VarSource {
            inner,
            by_tensor: Default::default(),
            vars: Vec::new(),
        }
    }
}

impl<S: TensorSource> VarSource<'_, S> {
    /// The Var holding `tensor` (one per source tensor: tied names share it).
    fn var_of(&mut self, name: &str, tensor: Tensor) -> Result<Tensor> {
        if let Some(var) = self.by_tensor.get(&tensor.id()) {
            return Ok(var.as_tensor().clone());
        }
        let var = candle_core::Var::from_tensor(&tensor)?;
        self.by_tensor.insert(tensor.id(), var.clone());
        self.vars.push((name.to_string(), var.clone()));
        Ok(var.as_tensor().clone())
    }
}

impl<S: TensorSource> TensorSource for VarSource<'_, S> {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let tensor = self.inner.take(name, shape)?;
        self.var_of(name, tensor)
    }

    fn take_buffer(&mut self, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        self.inner.take_buffer(name, shape)
    }

    fn take_tied(&mut self, name: &str, shape: &[usize], tied: &Tensor) -> Result<Tensor> {
        // `tied` is already a Var's tensor; a checkpoint's copy is the same tensor as the one
        // the word embeddings were taken from, so it maps onto the same Var either way.
        let tensor = self.inner.take_tied(name, shape, tied)?;
        if tensor.id() == tied.id() {
            return Ok(tensor);
        }
        self.var_of(name, tensor)
    }
}
