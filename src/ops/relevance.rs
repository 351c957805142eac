//! Modified backward passes for relevance propagation as gradient × input (AttnLRP and CP-LRP,
//! LXT's "efficient" rules; methods.md §7). Each op returns exactly the forward value and changes
//! only the gradient: on CPU f32 as custom ops with a hand-written backward (they keep no more
//! for the backward than the plain op would), elsewhere built from `detach`:
//! `x.detach() + (x − x.detach())·m` has the value of `x` (the difference is an exact zero) and
//! the gradient `m`.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Shape, Tensor, D};

use crate::ops::kernels::{contiguous_f32, fused};
use crate::ops::row_ops::new_in_parallel;
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
    scaled(x, 1.0, factor)
}

/// `x · value_factor`, its gradient multiplied by `gradient_factor` instead: one op on CPU f32
/// (it keeps no tensor for the backward), composed from `detach` elsewhere.
pub fn scaled(x: &Tensor, value_factor: f64, gradient_factor: f64) -> candle_core::Result<Tensor> {
    if fused(x) {
        return x.contiguous()?.apply_op1(Scaled {
            value_factor: value_factor as f32,
            gradient_factor,
        });
    }
    let value = (x.detach() * value_factor)?;
    let delta = ((x - x.detach())? * gradient_factor)?;
    value + delta
}

/// `f(x)` with the identity rule's backward: the gradient is multiplied by f(x)/(x + 1e-10)
/// rather than f′(x) (LXT `identity_rule_implicit`), so relevance passes through unchanged.
pub fn identity_rule(
    x: &Tensor,
    f: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> candle_core::Result<Tensor> {
    let fixed = x.detach();
    let value = f(&fixed)?;
    let ratio = (&value / (&fixed + IDENTITY_EPSILON)?)?;
    let delta = ((x - &fixed)? * ratio)?;
    value + delta
}

/// LXT's ε in the identity rule's ratio f(x)/(x + ε).
const IDENTITY_EPSILON: f64 = 1e-10;

/// The erf GELU under the identity rule: one op on CPU f32 that keeps only its input and
/// output for the backward (the composed [`identity_rule`] keeps four more tensors of the
/// MLP's width per layer), the composed rule elsewhere.
pub fn gelu_identity_rule(x: &Tensor) -> candle_core::Result<Tensor> {
    if fused(x) {
        x.contiguous()?.apply_op1(GeluIdentityRule)
    } else {
        identity_rule(x, crate::ops::gelu_erf)
    }
}

/// LayerNorm with the standard deviation detached (LXT `layer_norm_forward`): the mean stays in
/// the graph, so the backward is the identity rule on the normalisation. One fused op on CPU
/// f32 (the forward value is the ordinary LayerNorm's), composed from `detach` elsewhere.
pub fn layer_norm_detached_std(x: &Tensor, norm: &LayerNorm) -> candle_core::Result<Tensor> {
    if let Some(y) =
        crate::ops::layer_norm::layer_norm_detached_std(x, &norm.weight, &norm.bias, norm.eps)?
    {
        return Ok(y);
    }
    layer_norm_detached_std_composed(x, norm)
}

/// [`layer_norm_detached_std`] from candle's ops and `detach`.
fn layer_norm_detached_std_composed(x: &Tensor, norm: &LayerNorm) -> candle_core::Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let variance = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let std = (variance + norm.eps)?.sqrt()?.detach();
    centred
        .broadcast_div(&std)?
        .broadcast_mul(&norm.weight)?
        .broadcast_add(&norm.bias)
}

/// x·a forward, g·b backward.
struct Scaled {
    value_factor: f32,
    gradient_factor: f64,
}

impl CustomOp1 for Scaled {
    fn name(&self) -> &'static str {
        "genolens-scaled-gradient"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let input = contiguous_f32(storage, layout, self.name())?;
        let factor = self.value_factor;
        let output = new_in_parallel(input.len(), BLOCK, |start, out| {
            let input = &input[start..start + out.len()];
            if factor == 1.0 {
                out.copy_from_slice(input);
            } else {
                scale_slice(out, input, factor);
            }
        });
        Ok((CpuStorage::F32(output), layout.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some((grad * self.gradient_factor)?))
    }
}

/// gelu(x) forward; g ⊙ gelu(x)/(x + ε) backward.
struct GeluIdentityRule;

impl CustomOp1 for GeluIdentityRule {
    fn name(&self) -> &'static str {
        "genolens-gelu-identity-rule"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let input = contiguous_f32(storage, layout, self.name())?;
        let output = crate::ops::kernels::map_parallel(input, crate::ops::kernels::gelu_slice);
        Ok((CpuStorage::F32(output), layout.shape().clone()))
    }

    fn bwd(
        &self,
        input: &Tensor,
        output: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(input.apply_op3_no_bwd(
            output,
            &grad.contiguous()?,
            &IdentityRuleGradient,
        )?))
    }
}

/// g ⊙ y/(x + ε) of (x, y, g).
struct IdentityRuleGradient;

impl CustomOp3 for IdentityRuleGradient {
    fn name(&self) -> &'static str {
        "genolens-identity-rule-gradient"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, self.name())?;
        let y = contiguous_f32(s2, l2, self.name())?;
        let g = contiguous_f32(s3, l3, self.name())?;
        if x.len() != y.len() || x.len() != g.len() {
            candle_core::bail!("{}: operands of different sizes", self.name());
        }
        let output = new_in_parallel(x.len(), BLOCK, |start, out| {
            let range = start..start + out.len();
            identity_rule_gradient_slice(out, &x[range.clone()], &y[range.clone()], &g[range]);
        });
        Ok((CpuStorage::F32(output), l1.shape().clone()))
    }
}

/// Elements per parallel task.
const BLOCK: usize = 16 * 1024;

crate::simd_dispatch! {
    fn scale_slice(output: &mut [f32], input: &[f32], factor: f32) {
        for (o, &x) in output.iter_mut().zip(input) {
            *o = x * factor;
        }
    }
}

crate::simd_dispatch! {
    fn identity_rule_gradient_slice(output: &mut [f32], x: &[f32], y: &[f32], g: &[f32]) {
        // As the composed rule: ratio = y / (x + ε) in f32, then g · ratio.
        let epsilon = IDENTITY_EPSILON as f32;
        for (((o, &x), &y), &g) in output.iter_mut().zip(x).zip(y).zip(g) {
            *o = g * (y / (x + epsilon));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::kernels::test_support::normal;
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

    /// Value and input gradient of `f` at `x` (random output weights make the gradient
    /// depend on every output).
    fn value_and_gradient(
        x: &Tensor,
        f: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<(Vec<f32>, Vec<f32>)> {
        let var = Var::from_tensor(x)?;
        let y = f(var.as_tensor())?;
        let weights = normal(y.dims(), 7, 1.0);
        let g = (&y * weights)?.sum_all()?.backward()?;
        let grad = g.get(var.as_tensor()).expect("a gradient").flatten_all()?;
        Ok((y.flatten_all()?.to_vec1()?, grad.to_vec1()?))
    }

    fn assert_close(a: &[f32], b: &[f32], tolerance: f32) {
        assert_eq!(a.len(), b.len());
        for (a, b) in a.iter().zip(b) {
            assert!((a - b).abs() <= tolerance * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn detached_layer_norm_fused_matches_the_composed_rule() -> candle_core::Result<()> {
        let x = (normal(&[3, 5, 24], 1, 2.0) + 0.7)?;
        let norm = LayerNorm {
            weight: normal(&[24], 2, 1.0),
            bias: normal(&[24], 3, 1.0),
            eps: 1e-12,
        };
        let (fused_value, fused_grad) =
            value_and_gradient(&x, |x| layer_norm_detached_std(x, &norm))?;
        let (value, grad) = value_and_gradient(&x, |x| layer_norm_detached_std_composed(x, &norm))?;
        assert_close(&fused_value, &value, 1e-5);
        assert_close(&fused_grad, &grad, 1e-5);
        // The forward value is the ordinary LayerNorm's, bit for bit.
        let plain: Vec<f32> = norm.forward(&x)?.flatten_all()?.to_vec1()?;
        assert_eq!(fused_value, plain);
        Ok(())
    }

    #[test]
    fn fused_rules_match_the_composed_ones() -> candle_core::Result<()> {
        let x = normal(&[4, 7, 33], 4, 2.0);
        let composed_gelu = |x: &Tensor| identity_rule(x, crate::ops::gelu_erf);
        let (a, ga) = value_and_gradient(&x, gelu_identity_rule)?;
        let (b, gb) = value_and_gradient(&x, composed_gelu)?;
        assert_eq!(a, b);
        assert_eq!(ga, gb);
        // Scaling: value × 0.125, gradient × 0.0625, as the detach composition.
        let composed_scaled = |x: &Tensor| {
            let value = (x.detach() * 0.125)?;
            value + ((x - x.detach())? * 0.0625)?
        };
        let (a, ga) = value_and_gradient(&x, |x| scaled(x, 0.125, 0.0625))?;
        let (b, gb) = value_and_gradient(&x, composed_scaled)?;
        assert_eq!(a, b);
        assert_eq!(ga, gb);
        Ok(())
    }
}
