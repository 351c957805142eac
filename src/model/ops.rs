//! Differentiable building blocks (every op here has a correct candle gradient: no fused no-grad kernels).

use candle_core::{DType, Tensor};

use crate::model::{dense, kernels, row_ops};

use crate::model::config::Activation;

/// A dense layer `y = x Wᵀ + b` with HF's [out, in] weight layout.
#[derive(Clone, Debug)]
pub struct Linear {
    /// [out, in].
    pub weight: Tensor,
    /// [out].
    pub bias: Tensor,
}

impl Linear {
    /// Applies the layer to the last axis of `x`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dims = x.dims();
        let in_features = dims[dims.len() - 1];
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let flat = x.reshape((rows, in_features))?;
        let out = row_ops::add_row_bias(&dense::dense_product(&flat, &self.weight)?, &self.bias)?;
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("non-empty dims") = self.weight.dim(0)?;
        out.reshape(out_dims)
    }
}

/// LayerNorm over the last axis with the biased variance (torch's definition).
#[derive(Clone, Debug)]
pub struct LayerNorm {
    /// Scale γ.
    pub weight: Tensor,
    /// Shift β.
    pub bias: Tensor,
    /// Added to the variance.
    pub eps: f64,
}

impl LayerNorm {
    /// Normalises the last axis (fused kernel with a hand-written gradient; candle's fused
    /// layer_norm has none).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        row_ops::add_row_bias(
            &row_ops::mul_row_scale(&kernels::normalise_last_dim(x, self.eps)?, &self.weight)?,
            &self.bias,
        )
    }
}

/// Softmax over the last axis (differentiable; stable for masked f32::MIN scores).
pub fn softmax_last_dim(x: &Tensor) -> candle_core::Result<Tensor> {
    kernels::softmax_last_dim(x)
}

/// The feed-forward activation.
pub fn activate(x: &Tensor, activation: Activation) -> candle_core::Result<Tensor> {
    match activation {
        Activation::GeluErf => kernels::gelu_erf(x),
        Activation::GeluTanh => x.gelu(),
        Activation::Relu => x.relu(),
    }
}

/// Additive key mask [b,1,1,t]: 0 for real tokens, f32::MIN for padding (HF's eager convention).
pub fn additive_key_mask(attention_mask: &Tensor) -> candle_core::Result<Tensor> {
    let (batch, tokens) = attention_mask.dims2()?;
    let valid = attention_mask.to_dtype(DType::F32)?;
    let masked = ((1.0 - valid)? * f32::MIN as f64)?;
    masked.reshape((batch, 1, 1, tokens))
}
