//! Fused CPU kernels and CUDA grafts: dense layers, LayerNorm, softmax, GELU and the batched
//! attention products. The model calls these; nothing outside the crate needs them. Every op has
//! a correct candle gradient (candle's own fused kernels have none; see candle-notes).
//!
//! Layering inside: `vector_math` (scalar maths) ← `kernels` (row softmax, GELU, shared helpers)
//! ← `row_ops` ← `graft` (CUDA) ← `dense`, `layer_norm`, `batched_matmul` ← `layers` (the
//! building blocks the model holds). Every CPU matrix product goes through `matmul` (the `gemm`
//! crate, or the BLAS library `GENOLENS_BLAS` names).

pub(crate) mod attention;
#[cfg(test)]
mod backprop_tests;
pub(crate) mod batched_matmul;
pub(crate) mod dense;
pub(crate) mod graft;
pub(crate) mod kernels;
pub(crate) mod layer_norm;
mod layers;
pub(crate) mod matmul;
pub(crate) mod mlp;
pub mod relevance;
pub(crate) mod row_ops;
pub(crate) mod vector_math;

pub use matmul::{check_backend, BLAS_VARIABLE};

pub use layers::{
    additive_key_mask, embedding_rows, gelu_erf, softmax_last_dim, LayerNorm, Linear,
};
