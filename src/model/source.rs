//! Where a model's parameters come from: a checkpoint (with checks) or a seeded random init.

use std::collections::BTreeMap;

use candle_core::Tensor;

use crate::error::Result;
use crate::model::weights::{RandomInit, WeightTaker};

/// Supplies each parameter by its HF name and expected shape.
pub trait TensorSource {
    /// The tensor called `name`, of shape `shape`.
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor>;
}

impl TensorSource for WeightTaker {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        WeightTaker::take(self, name, shape)
    }
}

impl TensorSource for RandomInit {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        if name.ends_with("LayerNorm.weight") {
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

impl<S: TensorSource> TensorSource for VarSource<'_, S> {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let tensor = self.inner.take(name, shape)?;
        if let Some(var) = self.by_tensor.get(&tensor.id()) {
            return Ok(var.as_tensor().clone());
        }
        let var = candle_core::Var::from_tensor(&tensor)?;
        self.by_tensor.insert(tensor.id(), var.clone());
        self.vars.push((name.to_string(), var.clone()));
        Ok(var.as_tensor().clone())
    }
}
