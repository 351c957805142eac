//! Single tokens through a block, on the host in f32, one row at a time.
//!
//! Activation patching only reads the final [CLS] vector (and the classifier's logits), and a patch
//! at one token position of `attn_out`, `mlp_out` or `z` changes only that token's row of its
//! block's output. Both are a few matrix–vector products per patched run, where the batched path
//! would recompute every token. The products here sum in a fixed order (16 lanes, then the lanes),
//! so a row's value never depends on how many rows were evaluated beside it: a batched sweep
//! still equals the one-at-a-time sweep bit for bit.

use candle_core::{DType, Tensor};

use crate::error::Result;
use crate::model::config::Activation;
use crate::ops::vector_math as vm;

/// `y = W x + b` with `W` stored [out, in] (torch's layout).
pub(crate) struct RowLinear {
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
}

fn host(tensor: &Tensor) -> Result<Vec<f32>> {
    Ok(tensor.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?)
}

impl RowLinear {
    pub(crate) fn new(weight: &Tensor, bias: &Tensor) -> Result<Self> {
        Ok(RowLinear {
            inputs: weight.dim(1)?,
            weight: host(weight)?,
            bias: host(bias)?,
        })
    }

    pub(crate) fn apply(&self, x: &[f32]) -> Vec<f32> {
        debug_assert_eq!(x.len(), self.inputs);
        let mut out = vec![0f32; self.bias.len()];
        matrix_vector(&mut out, &self.weight, &self.bias, x);
        out
    }
}

crate::simd_dispatch! {
    /// out = W x + b, one 16-lane dot product per output (the same bits at any vector width).
    fn matrix_vector(out: &mut [f32], weight: &[f32], bias: &[f32], x: &[f32]) {
        for ((o, row), &b) in out.iter_mut().zip(weight.chunks_exact(x.len())).zip(bias) {
            *o = vm::dot(row, x) + b;
        }
    }
}

/// LayerNorm of one row (biased variance, torch's definition).
pub(crate) struct RowLayerNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl RowLayerNorm {
    pub(crate) fn new(weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Self> {
        Ok(RowLayerNorm {
            weight: host(weight)?,
            bias: host(bias)?,
            eps: eps as f32,
        })
    }

    pub(crate) fn apply(&self, x: &[f32]) -> Vec<f32> {
        let width = x.len() as f32;
        let mean = vm::sum(x) / width;
        let centred: Vec<f32> = x.iter().map(|v| v - mean).collect();
        let variance = vm::dot(&centred, &centred) / width;
        let inverse_std = 1.0 / (variance + self.eps).sqrt();
        centred
            .iter()
            .zip(&self.weight)
            .zip(&self.bias)
            .map(|((c, g), b)| c * inverse_std * g + b)
            .collect()
    }
}

fn activate(activation: Activation, x: f32) -> f32 {
    match activation {
        Activation::GeluErf => crate::ops::kernels::gelu_value(x),
        Activation::GeluTanh => {
            let inner = (2.0 / std::f32::consts::PI).sqrt() * (x + 0.044_715 * x * x * x);
            0.5 * x * (1.0 + inner.tanh())
        }
        Activation::Relu => x.max(0.0),
        Activation::Silu => x / (1.0 + (-x).exp()),
    }
}

/// What a patch writes into one token's row of a block (the source run's values).
#[derive(Debug, Clone, Copy)]
pub enum RowOverride<'a> {
    /// Nothing: the row as the block computes it.
    None,
    /// `hook_z` of one head (`Some(h)`: that head's `d_head` slice of `value`) or of every head;
    /// `value` is the source's whole z row [heads · d_head].
    Z {
        /// The head, or every head.
        head: Option<usize>,
        /// The source run's z row.
        value: &'a [f32],
    },
    /// `hook_attn_out`.
    AttnOut(&'a [f32]),
    /// `hook_mlp_out`.
    MlpOut(&'a [f32]),
}

/// Every token's keys and values ([tokens, d], heads side by side), with one token's replaced.
#[derive(Debug, Clone, Copy)]
pub struct TokenRows<'a> {
    /// Keys of every token.
    pub keys: &'a [f32],
    /// Values of every token.
    pub values: &'a [f32],
    /// (token, its key, its value) replacing that token's rows.
    pub replaced: Option<(usize, &'a [f32], &'a [f32])>,
}

impl TokenRows<'_> {
    fn rows(&self, token: usize, width: usize) -> (&[f32], &[f32]) {
        match self.replaced {
            Some((p, key, value)) if p == token => (key, value),
            _ => (
                &self.keys[token * width..][..width],
                &self.values[token * width..][..width],
            ),
        }
    }
}

/// One encoder block's weights on the host, for single rows.
pub struct RowBlock {
    pub(crate) query: RowLinear,
    pub(crate) key: RowLinear,
    pub(crate) value: RowLinear,
    pub(crate) attention_output: RowLinear,
    pub(crate) attention_layer_norm: RowLayerNorm,
    pub(crate) intermediate: RowLinear,
    pub(crate) output: RowLinear,
    pub(crate) output_layer_norm: RowLayerNorm,
    pub(crate) heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) activation: Activation,
}

impl RowBlock {
    /// The block's query, key and value rows (unscaled, heads side by side) for one token's input.
    pub fn qkv(&self, resid_pre: &[f32]) -> [Vec<f32>; 3] {
        [
            self.query.apply(resid_pre),
            self.key.apply(resid_pre),
            self.value.apply(resid_pre),
        ]
    }

    /// `z` row with the override's heads replaced.
    fn overridden_z(&self, z: &mut [f32], change: RowOverride) {
        if let RowOverride::Z { head, value } = change {
            match head {
                Some(h) => {
                    let range = h * self.head_dim..(h + 1) * self.head_dim;
                    z[range.clone()].copy_from_slice(&value[range]);
                }
                None => z.copy_from_slice(value),
            }
        }
    }

    /// The block's output row (`hook_normalized_resid_post`) after its attention, from the row's
    /// `hook_resid_pre` and `hook_z` (`z` is used only when the override needs the attention).
    pub fn finish_row(&self, resid_pre: &[f32], z: &[f32], change: RowOverride) -> Vec<f32> {
        let attention_out = match change {
            RowOverride::AttnOut(value) => value.to_vec(),
            _ => {
                let mut z = z.to_vec();
                self.overridden_z(&mut z, change);
                self.attention_output.apply(&z)
            }
        };
        let resid_mid: Vec<f32> = attention_out
            .iter()
            .zip(resid_pre)
            .map(|(a, r)| a + r)
            .collect();
        let normalized_mid = self.attention_layer_norm.apply(&resid_mid);
        let mlp_out = match change {
            RowOverride::MlpOut(value) => value.to_vec(),
            _ => {
                let mut hidden = self.intermediate.apply(&normalized_mid);
                hidden
                    .iter_mut()
                    .for_each(|h| *h = activate(self.activation, *h));
                self.output.apply(&hidden)
            }
        };
        let resid_post: Vec<f32> = mlp_out
            .iter()
            .zip(&normalized_mid)
            .map(|(m, n)| m + n)
            .collect();
        self.output_layer_norm.apply(&resid_post)
    }

    /// The block's output at one token whose `hook_resid_pre` is `resid_pre`, given every token's
    /// keys and values and how many tokens are real (the rest are padding, masked out). Used for
    /// the last block's [CLS] row.
    pub fn row(
        &self,
        resid_pre: &[f32],
        tokens: TokenRows,
        real_tokens: usize,
        change: RowOverride,
    ) -> Vec<f32> {
        if let RowOverride::AttnOut(_) = change {
            return self.finish_row(resid_pre, &[], change);
        }
        let width = self.heads * self.head_dim;
        let scale = (self.head_dim as f64).powf(-0.5) as f32;
        let query: Vec<f32> = self
            .query
            .apply(resid_pre)
            .iter()
            .map(|q| q * scale)
            .collect();
        let mut z = vec![0f32; width];
        let mut scores = vec![0f32; real_tokens];
        for head in 0..self.heads {
            let slice = head * self.head_dim..(head + 1) * self.head_dim;
            let q = &query[slice.clone()];
            for (j, score) in scores.iter_mut().enumerate() {
                *score = vm::dot(q, &tokens.rows(j, width).0[slice.clone()]);
            }
            let max = vm::max(&scores);
            scores.iter_mut().for_each(|s| *s = vm::exp(*s - max));
            let inverse = 1.0 / vm::sum(&scores);
            let out = &mut z[slice.clone()];
            for (j, &weight) in scores.iter().enumerate() {
                let p = weight * inverse;
                for (o, &v) in out.iter_mut().zip(&tokens.rows(j, width).1[slice.clone()]) {
                    *o += p * v;
                }
            }
        }
        self.finish_row(resid_pre, &z, change)
    }
}

/// The pooler and classifier on the host (for a [CLS] row's logits).
pub struct RowHead {
    pub(crate) pooler: Option<RowLinear>,
    pub(crate) classifier: Option<RowLinear>,
}

impl RowHead {
    /// Classifier logits of a final [CLS] row; `None` for models without a classifier.
    pub fn logits(&self, cls: &[f32]) -> Option<Vec<f32>> {
        let (pooler, classifier) = (self.pooler.as_ref()?, self.classifier.as_ref()?);
        let pooled: Vec<f32> = pooler.apply(cls).iter().map(|v| v.tanh()).collect();
        Some(classifier.apply(&pooled))
    }
}
