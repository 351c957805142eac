//! Fused GPU kernels with a gradient. candle ships fused softmax and LayerNorm kernels for CUDA
//! but without a backward pass, and its composed (differentiable) versions launch a chain of
//! strided kernels over the largest tensors of the model, the [batch, heads, tokens, tokens]
//! attention scores; on an H200 their backward passes dominated an MLM training step. Here the
//! fused kernel computes the value and a two-input custom op grafts the hand-written gradient
//! onto it: its forward returns the precomputed value, its backward the gradient with respect to
//! the input. (On the CPU genolens has its own fused kernels with gradients, `kernels.rs`.)

use candle_core::backend::BackendStorage;

use crate::model::row_ops::column_sums;
use candle_core::{
    CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor, D,
};

/// Which gradient to graft.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// y = softmax(x) over the last axis.
    Softmax,
    /// y = (x − μ)/√(σ² + eps) over the last axis.
    Normalise { eps: f64 },
}

struct Graft(Rule);

/// The value unchanged; it is fresh from a kernel, so the whole buffer is the tensor.
fn check_whole(layout: &Layout) -> Result<()> {
    if layout.is_contiguous() && layout.start_offset() == 0 {
        Ok(())
    } else {
        candle_core::bail!("genolens-graft: expected a fresh contiguous value")
    }
}

impl CustomOp2 for Graft {
    fn name(&self) -> &'static str {
        "genolens-graft"
    }

    fn cpu_fwd(
        &self,
        _input: &CpuStorage,
        _input_layout: &Layout,
        value: &CpuStorage,
        value_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        check_whole(value_layout)?;
        Ok((value.try_clone(value_layout)?, value_layout.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _input: &candle_core::CudaStorage,
        _input_layout: &Layout,
        value: &candle_core::CudaStorage,
        value_layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        check_whole(value_layout)?;
        Ok((value.try_clone(value_layout)?, value_layout.shape().clone()))
    }

    fn bwd(
        &self,
        input: &Tensor,
        _value: &Tensor,
        output: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let input_grad = match self.0 {
            Rule::Softmax => crate::model::row_ops::softmax_backward(output, grad)?,
            Rule::Normalise { eps } => normalise_backward(input, output, grad, eps)?,
        };
        Ok((Some(input_grad), None))
    }
}

/// Whether the grafted GPU path applies: CUDA and f32 (elsewhere the composed ops are used).
pub fn applies(x: &Tensor) -> bool {
    x.device().is_cuda() && x.dtype() == DType::F32
}

fn with_gradient(input: &Tensor, value: Tensor, rule: Rule) -> Result<Tensor> {
    if input.track_op() {
        input.apply_op2(&value, Graft(rule))
    } else {
        Ok(value)
    }
}

/// Softmax over the last axis: candle's fused kernel, with its gradient.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let x = x.contiguous()?;
    with_gradient(&x, candle_nn::ops::softmax_last_dim(&x)?, Rule::Softmax)
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
    with_gradient(
        &scores,
        candle_nn::ops::softmax_last_dim(&masked)?,
        Rule::Softmax,
    )
}

/// (x − mean)/√(var + eps) over the last axis: candle's fused LayerNorm kernel (γ = 1, β = 0),
/// with its gradient.
pub fn normalise_last_dim(x: &Tensor, eps: f64) -> Result<Tensor> {
    let x = x.contiguous()?;
    let width = x.dim(D::Minus1)?;
    let ones = Tensor::ones(width, x.dtype(), x.device())?;
    let zeros = Tensor::zeros(width, x.dtype(), x.device())?;
    let value = candle_nn::ops::layer_norm(&x, &ones, &zeros, eps as f32)?;
    with_gradient(&x, value, Rule::Normalise { eps })
}

/// LayerNorm `γ ⊙ x̂ + β` whose value candle's fused kernel computed beforehand (held here, as a
/// custom op cannot run a kernel of candle's): the forward returns it, the backward gives the
/// gradients at x, γ and β. One autograd node instead of three (normalise, scale, shift).
struct GraftLayerNorm {
    value: Tensor,
    eps: f64,
}

impl GraftLayerNorm {
    fn value_storage<T>(&self, pick: impl Fn(&Storage) -> Option<T>) -> Result<(T, Shape)> {
        let (storage, layout) = self.value.storage_and_layout();
        check_whole(layout)?;
        match pick(&storage) {
            Some(copy) => Ok((copy, layout.shape().clone())),
            None => candle_core::bail!("genolens-graft: the value is on another device"),
        }
    }
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
        let layout = self.value.layout().clone();
        self.value_storage(|storage| match storage {
            Storage::Cpu(value) => value.try_clone(&layout).ok(),
            _ => None,
        })
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
        let layout = self.value.layout().clone();
        self.value_storage(|storage| match storage {
            Storage::Cuda(value) => value.try_clone(&layout).ok(),
            _ => None,
        })
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

/// x̂ = (x − μ)/σ:  dx = (g − mean(g) − x̂ ⊙ mean(g ⊙ x̂)) / σ.
pub fn normalise_backward(
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
