//! Differentiable building blocks (every op here has a correct candle gradient: no fused no-grad kernels).

use candle_core::{DType, Tensor};

use crate::ops::{dense, kernels};

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
        let out = dense::dense_layer(&flat, &self.weight, &self.bias)?;
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("non-empty dims") = self.weight.dim(0)?;
        out.reshape(out_dims)
    }

    /// `gelu_erf(self.forward(x))` as one op where it applies (CPU f32, no gradient wanted);
    /// `None` otherwise.
    pub fn forward_gelu(&self, x: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let dims = x.dims();
        let in_features = dims[dims.len() - 1];
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let flat = x.reshape((rows, in_features))?;
        let Some(out) = dense::dense_gelu(&flat, &self.weight, &self.bias)? else {
            return Ok(None);
        };
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("non-empty dims") = self.weight.dim(0)?;
        Ok(Some(out.reshape(out_dims)?))
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
        crate::ops::layer_norm::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

/// Softmax over the last axis (differentiable; stable for masked f32::MIN scores).
pub fn softmax_last_dim(x: &Tensor) -> candle_core::Result<Tensor> {
    kernels::softmax_last_dim(x)
}

/// GELU with the exact erf (BERT's `gelu`), fused on the CPU.
pub fn gelu_erf(x: &Tensor) -> candle_core::Result<Tensor> {
    kernels::gelu_erf(x)
}

/// Additive key mask [b,1,1,t]: 0 for real tokens, f32::MIN for padding (HF's eager convention).
pub fn additive_key_mask(attention_mask: &Tensor) -> candle_core::Result<Tensor> {
    let (batch, tokens) = attention_mask.dims2()?;
    let valid = attention_mask.to_dtype(DType::F32)?;
    let masked = ((1.0 - valid)? * f32::MIN as f64)?;
    masked.reshape((batch, 1, 1, tokens))
}

/// Rows `table[ids]` of an embedding table, for 1-D `ids`. On a GPU, when the table is being
/// trained, they are taken as a one-hot product: candle's CUDA gradient of a row gather
/// (`index_add`) runs one thread per hidden unit looping over every id in turn, which took tens of
/// milliseconds for a 128 × 253-token batch, while a one-hot product's gradient is one GEMM. The
/// product is exact (each output is one weight times 1 plus zeros).
pub fn embedding_rows(table: &Tensor, ids: &Tensor) -> candle_core::Result<Tensor> {
    if !ids.device().is_cpu() && table.track_op() {
        one_hot_rows(table, ids)
    } else {
        table.index_select(ids, 0)
    }
}

/// `one_hot(ids) · table`.
pub fn one_hot_rows(table: &Tensor, ids: &Tensor) -> candle_core::Result<Tensor> {
    let rows = table.dim(0)? as u32;
    let classes = Tensor::arange(0u32, rows, ids.device())?.unsqueeze(0)?;
    let one_hot = ids
        .to_dtype(DType::U32)?
        .unsqueeze(1)?
        .broadcast_eq(&classes)?
        .to_dtype(table.dtype())?;
    one_hot.matmul(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn one_hot_rows_equal_gathered_rows_in_value_and_gradient() {
        let device = Device::Cpu;
        let table =
            Var::from_tensor(&crate::ops::kernels::test_support::normal(&[11, 6], 4, 1.0)).unwrap();
        let ids = Tensor::new(&[3u32, 0, 3, 10, 7, 3], &device).unwrap();
        let weights = crate::ops::kernels::test_support::normal(&[6, 6], 5, 1.0);
        let gathered = table.as_tensor().index_select(&ids, 0).unwrap();
        let product = one_hot_rows(table.as_tensor(), &ids).unwrap();
        let difference: f32 = (&gathered - &product)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(difference, 0.0);
        let gradient = |rows: &Tensor| {
            let grads = (rows * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            grads.get(table.as_tensor()).unwrap().clone()
        };
        let expected = gradient(&gathered);
        let got = gradient(&product);
        assert!(crate::ops::kernels::test_support::max_difference(&expected, &got) < 1e-6);
        // Row 3 collects three ids' gradients; rows no id names get none.
        assert_ne!(
            got.get(3)
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            0.0
        );
        assert_eq!(
            got.get(1)
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            0.0
        );
    }
}
