//! Fused GPU kernels with a gradient. candle ships fused softmax and LayerNorm kernels for CUDA
//! but without a backward pass, and its composed (differentiable) versions launch a chain of
//! strided kernels over the largest tensors of the model, the [batch, heads, tokens, tokens]
//! attention scores; on an H200 their backward passes dominated an MLM training step. Here the
//! fused kernel computes the value beforehand and a custom op holding it grafts the hand-written
//! gradient on: its forward returns the value (a custom op cannot run one of candle's kernels),
//! its backward the gradients with respect to its inputs. (On the CPU genolens has its own fused
//! kernels with gradients: `kernels.rs`, `layer_norm.rs`.)

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor, D,
};

use crate::ops::row_ops::{column_sums, softmax_backward};

/// A copy of the precomputed value's storage, taken from `pick` for the op's device. The value is
/// fresh from a kernel, so its whole buffer is the tensor.
fn copy_of<T>(
    value: &Tensor,
    pick: impl Fn(&Storage, &Layout) -> Option<Result<T>>,
) -> Result<(T, Shape)> {
    let (storage, layout) = value.storage_and_layout();
    if !(layout.is_contiguous() && layout.start_offset() == 0) {
        candle_core::bail!("genolens-graft: expected a fresh contiguous value");
    }
    match pick(&storage, layout) {
        Some(copy) => Ok((copy?, layout.shape().clone())),
        None => candle_core::bail!("genolens-graft: the value is on another device"),
    }
}

fn cpu_copy(value: &Tensor) -> Result<(CpuStorage, Shape)> {
    copy_of(value, |storage, layout| match storage {
        Storage::Cpu(storage) => Some(storage.try_clone(layout)),
        _ => None,
    })
}

#[cfg(feature = "cuda")]
fn cuda_copy(value: &Tensor) -> Result<(candle_core::CudaStorage, Shape)> {
    copy_of(value, |storage, layout| match storage {
        Storage::Cuda(storage) => Some(storage.try_clone(layout)),
        _ => None,
    })
}

/// Softmax over the last axis, computed beforehand; the gradient goes to the scores.
struct GraftSoftmax {
    value: Tensor,
}

impl CustomOp1 for GraftSoftmax {
    fn name(&self) -> &'static str {
        "genolens-graft-softmax"
    }

    fn cpu_fwd(&self, _scores: &CpuStorage, _layout: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_copy(&self.value)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _scores: &candle_core::CudaStorage,
        _layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda_copy(&self.value)
    }

    fn bwd(&self, _scores: &Tensor, output: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(softmax_backward(output, grad)?))
    }
}

/// Whether the grafted GPU path applies: CUDA and f32 (elsewhere the composed ops are used).
pub fn applies(x: &Tensor) -> bool {
    x.device().is_cuda() && x.dtype() == DType::F32
}

/// `value` (the softmax of `scores`, or of scores plus a constant) with the gradient at `scores`.
fn graft_softmax(scores: &Tensor, value: Tensor) -> Result<Tensor> {
    if scores.track_op() {
        scores.apply_op1(GraftSoftmax { value })
    } else {
        Ok(value)
    }
}

/// Softmax over the last axis: candle's fused kernel, with its gradient.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let x = x.contiguous()?;
    let value = candle_nn::ops::softmax_last_dim(&x.detach())?;
    graft_softmax(&x, value)
}

/// softmax(scores + mask) over the last axis with a constant additive mask: the sum is made
/// outside the graph, so the backward pass neither stores nor differentiates the
/// [batch, heads, t, t] broadcast (candle would accumulate a zero-initialised gradient for the mask
/// side too).
pub fn masked_softmax(scores: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let scores = scores.contiguous()?;
    let masked = scores
        .detach()
        .broadcast_add(&mask.detach())?
        .contiguous()?;
    graft_softmax(&scores, candle_nn::ops::softmax_last_dim(&masked)?)
}

/// LayerNorm `γ ⊙ x̂ + β`, computed beforehand; the backward gives the gradients at x, γ and β.
/// One autograd node instead of three (normalise, scale, shift).
struct GraftLayerNorm {
    value: Tensor,
    eps: f64,
}

impl CustomOp3 for GraftLayerNorm {
    fn name(&self) -> &'static str {
        "genolens-graft-layer-norm"
    }

    fn cpu_fwd(
        &self,
        _x: &CpuStorage,
        _x_layout: &Layout,
        _scale: &CpuStorage,
        _scale_layout: &Layout,
        _shift: &CpuStorage,
        _shift_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        cpu_copy(&self.value)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _x: &candle_core::CudaStorage,
        _x_layout: &Layout,
        _scale: &candle_core::CudaStorage,
        _scale_layout: &Layout,
        _shift: &candle_core::CudaStorage,
        _shift_layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda_copy(&self.value)
    }

    fn bwd(
        &self,
        x: &Tensor,
        scale: &Tensor,
        shift: &Tensor,
        _output: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let width = x.dim(D::Minus1)?;
        let ones = Tensor::ones(width, x.dtype(), x.device())?;
        let zeros = Tensor::zeros(width, x.dtype(), x.device())?;
        let normalised = candle_nn::ops::layer_norm(&x.detach(), &ones, &zeros, self.eps as f32)?;
        let x_grad = if x.track_op() {
            let grad_normalised = grad.broadcast_mul(scale)?;
            Some(normalise_backward(
                x,
                &normalised,
                &grad_normalised,
                self.eps,
            )?)
        } else {
            None
        };
        let scale_grad = if scale.track_op() {
            Some(column_sums(&(grad * &normalised)?)?)
        } else {
            None
        };
        let shift_grad = if shift.track_op() {
            Some(column_sums(grad)?)
        } else {
            None
        };
        Ok((x_grad, scale_grad, shift_grad))
    }
}

/// γ ⊙ (x − mean)/√(var + eps) + β over the last axis: candle's fused LayerNorm kernel, with the
/// gradients at x, γ and β.
pub fn layer_norm(x: &Tensor, scale: &Tensor, shift: &Tensor, eps: f64) -> Result<Tensor> {
    let x = x.contiguous()?;
    let value =
        candle_nn::ops::layer_norm(&x.detach(), &scale.detach(), &shift.detach(), eps as f32)?;
    if x.track_op() || scale.track_op() || shift.track_op() {
        x.apply_op3(scale, shift, GraftLayerNorm { value, eps })
    } else {
        Ok(value)
    }
}

/// x̂ = (x − μ)/σ:  dx = (g − mean(g) − x̂ ⊙ mean(g ⊙ x̂)) / σ, for the gradient g at x̂.
fn normalise_backward(
    input: &Tensor,
    normalised: &Tensor,
    grad: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let centred = input.broadcast_sub(&input.mean_keepdim(D::Minus1)?)?;
    let std = (centred.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?;
    let mean_grad = grad.mean_keepdim(D::Minus1)?;
    let mean_grad_normalised = (grad * normalised)?.mean_keepdim(D::Minus1)?;
    let numerator = grad
        .broadcast_sub(&mean_grad)?
        .sub(&normalised.broadcast_mul(&mean_grad_normalised)?)?;
    numerator.broadcast_div(&std)
}
