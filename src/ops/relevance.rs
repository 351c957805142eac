//! Modified backward passes for relevance propagation as gradient × input (AttnLRP and CP-LRP,
//! LXT's "efficient" rules; methods.md §7). Each op returns exactly the forward value and changes
//! only the gradient, built from `detach`: `x.detach() + (x − x.detach())·m` has the value of `x`
//! (the difference is an exact zero) and the gradient `m`.

use candle_core::{Tensor, D};

use crate::ops::LayerNorm;

/// Which relevance rules a forward pass applies (see [`crate::model::Hooks::with_rules`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelevanceRules {
    /// AttnLRP (Achtibat et al. 2024) as LXT's efficient BERT: identity rule on GELU and tanh,
    /// uniform rule on both attention products (their output gradients halved), LayerNorm with
    /// σ detached.
    AttnLrp,
    /// CP-LRP (Ali et al. 2022): as AttnLRP outside attention; queries and keys detached, so no
    /// relevance flows through the softmax and the pattern is a constant.
    CpLrp,
}

/// The value of `x`, the gradient multiplied by `factor` (LXT `divide_gradient(x, 1/factor)`).
pub fn scale_gradient(x: &Tensor, factor: f64) -> candle_core::Result<Tensor> {
    let fixed = x.detach();
    let delta = ((x - &fixed)? * factor)?;
    fixed + delta
}

/// `f(x)` with the identity rule's backward: the gradient is multiplied by f(x)/(x + 1e-10)
/// rather than f′(x) (LXT `identity_rule_implicit`), so relevance passes through unchanged.
pub fn identity_rule(
    x: &Tensor,
    f: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> candle_core::Result<Tensor> {
    let fixed = x.detach();
    let value = f(&fixed)?;
    let ratio = (&value / (&fixed + 1e-10)?)?;
    let delta = ((x - &fixed)? * ratio)?;
    value + delta
}

/// LayerNorm with the standard deviation detached (LXT `layer_norm_forward`): the mean stays in
/// the graph, so the backward is the identity rule on the normalisation.
pub fn layer_norm_detached_std(x: &Tensor, norm: &LayerNorm) -> candle_core::Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let variance = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let std = (variance + norm.eps)?.sqrt()?.detach();
    centred
        .broadcast_div(&std)?
        .broadcast_mul(&norm.weight)?
        .broadcast_add(&norm.bias)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn rules_keep_the_value_and_change_only_the_gradient() -> candle_core::Result<()> {
        let device = Device::Cpu;
        let x = Var::from_vec(vec![-1.5f32, -0.2, 0.3, 2.0], (1, 4), &device)?;
        // Scaled gradient: value x, gradient 0.25.
        let y = scale_gradient(x.as_tensor(), 0.25)?;
        assert_eq!(y.to_vec2::<f32>()?, x.as_tensor().to_vec2::<f32>()?);
        let g = y.sum_all()?.backward()?;
        let g: Vec<f32> = g.get(x.as_tensor()).unwrap().flatten_all()?.to_vec1()?;
        assert!(g.iter().all(|&v| (v - 0.25).abs() < 1e-7));
        // Identity rule on tanh: value tanh(x), gradient × input = tanh(x) (relevance kept).
        let y = identity_rule(x.as_tensor(), |t| t.tanh())?;
        let expected = x.as_tensor().tanh()?;
        assert_eq!(y.to_vec2::<f32>()?, expected.to_vec2::<f32>()?);
        let g = y.sum_all()?.backward()?;
        let relevance: Vec<f32> = (g.get(x.as_tensor()).unwrap() * x.as_tensor())?
            .flatten_all()?
            .to_vec1()?;
        let expected: Vec<f32> = expected.flatten_all()?.to_vec1()?;
        for (r, e) in relevance.iter().zip(&expected) {
            assert!((r - e).abs() < 1e-6, "{r} vs {e}");
        }
        Ok(())
    }

    #[test]
    fn detached_layer_norm_matches_the_fused_one() -> candle_core::Result<()> {
        let device = Device::Cpu;
        let x = Tensor::new(&[[0.5f32, -1.0, 2.0, 0.25], [3.0, 3.5, -2.0, 0.0]], &device)?;
        let norm = LayerNorm {
            weight: Tensor::new(&[1.0f32, 0.5, 2.0, -1.0], &device)?,
            bias: Tensor::new(&[0.1f32, 0.0, -0.3, 0.2], &device)?,
            eps: 1e-12,
        };
        let a: Vec<f32> = norm.forward(&x)?.flatten_all()?.to_vec1()?;
        let b: Vec<f32> = layer_norm_detached_std(&x, &norm)?
            .flatten_all()?
            .to_vec1()?;
        for (a, b) in a.iter().zip(&b) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        Ok(())
    }
}
