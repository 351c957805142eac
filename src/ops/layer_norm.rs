//! LayerNorm `y = γ ⊙ (x − μ)/√(σ² + ε) + β` over the last axis as one CPU op with a fused
//! backward. Composed from a normalisation, a scale and a shift it was three autograd nodes, each
//! with its own gradient accumulation, and its input gradient was ten single-threaded candle
//! passes; here the forward is one parallel pass and the input gradient another. On CUDA,
//! candle's fused kernel with a grafted gradient (`graft::layer_norm`); other devices and dtypes
//! compose candle's ops.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, D};

use crate::ops::graft;
use crate::ops::kernels::{contiguous_f32, fused};
use crate::ops::row_ops::{column_sums, new_row_blocks};
use crate::ops::vector_math as vm;

/// Mean and 1/√(biased variance + ε) of a row; `scratch` (as long as the row) is overwritten.
#[inline(always)]
fn row_statistics(row: &[f32], scratch: &mut [f32], eps: f32) -> (f32, f32) {
    let mean = vm::sum(row) / row.len() as f32;
    vm::map_into(scratch, row, |x| (x - mean) * (x - mean));
    let inverse_std = 1.0 / (vm::sum(scratch) / row.len() as f32 + eps).sqrt();
    (mean, inverse_std)
}

crate::simd_dispatch! {
    /// γ ⊙ x̂ + β of each `width`-long row.
    fn layer_norm_rows(output: &mut [f32], input: &[f32], scale: &[f32], shift: &[f32], eps: f32) {
        let width = scale.len();
        for (out, row) in output.chunks_mut(width).zip(input.chunks(width)) {
            let (mean, inverse_std) = row_statistics(row, out, eps);
            for (((o, &x), &g), &b) in out.iter_mut().zip(row).zip(scale).zip(shift) {
                *o = (x - mean) * inverse_std * g + b;
            }
        }
    }
}

crate::simd_dispatch! {
    /// dx = (γg − mean(γg) − x̂ ⊙ mean(γg ⊙ x̂)) / σ of each row, from x, γ and the output
    /// gradient g; with `detached_std` (σ treated as a constant, the relevance rules' LayerNorm)
    /// dx = (γg − mean(γg)) / σ.
    fn input_gradient_rows(
        output: &mut [f32],
        input: &[f32],
        grad: &[f32],
        scale: &[f32],
        eps: f32,
        detached_std: bool,
    ) {
        let width = scale.len();
        for ((out, row), g) in output.chunks_mut(width).zip(input.chunks(width)).zip(grad.chunks(width)) {
            let (mean, inverse_std) = row_statistics(row, out, eps);
            // out ← γg; then the two means.
            for ((o, &gj), &s) in out.iter_mut().zip(g).zip(scale) {
                *o = gj * s;
            }
            let mean_scaled = vm::sum(out) / width as f32;
            if detached_std {
                // σ a constant: only the mean's term remains.
                for o in out.iter_mut() {
                    *o = (*o - mean_scaled) * inverse_std;
                }
                continue;
            }
            let mut lanes = [0f32; 16];
            for (index, (&o, &x)) in out.iter().zip(row).enumerate() {
                lanes[index % 16] += o * (x - mean) * inverse_std;
            }
            let mean_scaled_normalised = lanes.iter().sum::<f32>() / width as f32;
            for (o, &x) in out.iter_mut().zip(row) {
                let normalised = (x - mean) * inverse_std;
                *o = (*o - mean_scaled - normalised * mean_scaled_normalised) * inverse_std;
            }
        }
    }
}

crate::simd_dispatch! {
    /// g ⊙ x̂ of each row (summed over rows it is γ's gradient).
    fn grad_times_normalised_rows(output: &mut [f32], input: &[f32], grad: &[f32], width: usize, eps: f32) {
        for ((out, row), g) in output.chunks_mut(width).zip(input.chunks(width)).zip(grad.chunks(width)) {
            let (mean, inverse_std) = row_statistics(row, out, eps);
            for ((o, &x), &gj) in out.iter_mut().zip(row).zip(g) {
                *o = gj * (x - mean) * inverse_std;
            }
        }
    }
}

crate::simd_dispatch! {
    /// γ ⊙ norm(a + r) + β of each row, the sum formed in `output` (`scratch`: one row).
    fn layer_norm_of_sum_rows(
        output: &mut [f32],
        a: &[f32],
        r: &[f32],
        scale: &[f32],
        shift: &[f32],
        eps: f32,
        scratch: &mut [f32],
    ) {
        let width = scale.len();
        for ((out, a_row), r_row) in output.chunks_mut(width).zip(a.chunks(width)).zip(r.chunks(width)) {
            for ((o, &x), &y) in out.iter_mut().zip(a_row).zip(r_row) {
                *o = x + y;
            }
            let (mean, inverse_std) = row_statistics(out, scratch, eps);
            for ((o, &g), &b) in out.iter_mut().zip(scale).zip(shift) {
                *o = (*o - mean) * inverse_std * g + b;
            }
        }
    }
}

/// LayerNorm of a sum (the residual add and the norm in one pass; inference only).
struct LayerNormOfSum {
    scale: Vec<f32>,
    shift: Vec<f32>,
    eps: f32,
}

impl CustomOp2 for LayerNormOfSum {
    fn name(&self) -> &'static str {
        "genolens-layer-norm-of-sum"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let a = contiguous_f32(s1, l1, self.name())?;
        let r = contiguous_f32(s2, l2, self.name())?;
        let width = self.scale.len();
        if l1.dims() != l2.dims() || l1.dims()[l1.dims().len() - 1] != width {
            candle_core::bail!(
                "{}: {:?} + {:?} with γ of {width} values",
                self.name(),
                l1.dims(),
                l2.dims()
            );
        }
        let output = new_row_blocks(a.len(), width, |start, out| {
            let rows = start..start + out.len();
            let mut scratch = vec![0f32; width];
            layer_norm_of_sum_rows(
                out,
                &a[rows.clone()],
                &r[rows],
                &self.scale,
                &self.shift,
                self.eps,
                &mut scratch,
            )
        });
        Ok((CpuStorage::F32(output), l1.shape().clone()))
    }
}

/// `layer_norm(a + r)` in one pass where it applies (CPU f32, no gradient wanted), equal to the
/// two ops bit for bit; `None` otherwise.
pub fn layer_norm_of_sum(
    a: &Tensor,
    r: &Tensor,
    scale: &Tensor,
    shift: &Tensor,
    eps: f64,
) -> Result<Option<Tensor>> {
    let applies = [a, r, scale, shift]
        .iter()
        .all(|t| fused(t) && !t.track_op())
        && a.dims() == r.dims()
        && scale.rank() == 1
        && shift.rank() == 1;
    if !applies {
        return Ok(None);
    }
    let op = LayerNormOfSum {
        scale: scale.to_vec1()?,
        shift: shift.to_vec1()?,
        eps: eps as f32,
    };
    Ok(Some(a.contiguous()?.apply_op2(&r.contiguous()?, op)?))
}

struct AffineLayerNorm {
    eps: f32,
    /// The backward treats σ as a constant (AttnLRP's and CP-LRP's LayerNorm rule).
    detached_std: bool,
}

impl CustomOp3 for AffineLayerNorm {
    fn name(&self) -> &'static str {
        "genolens-layer-norm-affine"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, self.name())?;
        let scale = contiguous_f32(s2, l2, self.name())?;
        let shift = contiguous_f32(s3, l3, self.name())?;
        let width = l1.dims()[l1.dims().len() - 1];
        if scale.len() != width || shift.len() != width {
            candle_core::bail!(
                "{}: rows of {width} but γ has {} and β {} values",
                self.name(),
                scale.len(),
                shift.len()
            );
        }
        let output = new_row_blocks(x.len(), width, |start, out| {
            layer_norm_rows(out, &x[start..start + out.len()], scale, shift, self.eps)
        });
        Ok((CpuStorage::F32(output), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        scale: &Tensor,
        shift: &Tensor,
        _output: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (eps, detached_std) = (self.eps, self.detached_std);
        let x_grad = if x.track_op() {
            Some(x.apply_op3_no_bwd(scale, &grad, &InputGradient { eps, detached_std })?)
        } else {
            None
        };
        let scale_grad = if scale.track_op() {
            Some(column_sums(
                &x.apply_op2_no_bwd(&grad, &GradTimesNormalised { eps })?,
            )?)
        } else {
            None
        };
        let shift_grad = if shift.track_op() {
            Some(column_sums(&grad)?)
        } else {
            None
        };
        Ok((x_grad, scale_grad, shift_grad))
    }
}

struct InputGradient {
    eps: f32,
    detached_std: bool,
}

impl CustomOp3 for InputGradient {
    fn name(&self) -> &'static str {
        "genolens-layer-norm-input-gradient"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, self.name())?;
        let scale = contiguous_f32(s2, l2, self.name())?;
        let grad = contiguous_f32(s3, l3, self.name())?;
        let output = new_row_blocks(x.len(), scale.len(), |start, out| {
            let rows = start..start + out.len();
            input_gradient_rows(
                out,
                &x[rows.clone()],
                &grad[rows],
                scale,
                self.eps,
                self.detached_std,
            )
        });
        Ok((CpuStorage::F32(output), l1.shape().clone()))
    }
}

struct GradTimesNormalised {
    eps: f32,
}

impl CustomOp2 for GradTimesNormalised {
    fn name(&self) -> &'static str {
        "genolens-layer-norm-grad-times-normalised"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, self.name())?;
        let grad = contiguous_f32(s2, l2, self.name())?;
        let width = l1.dims()[l1.dims().len() - 1];
        let output = new_row_blocks(x.len(), width, |start, out| {
            let rows = start..start + out.len();
            grad_times_normalised_rows(out, &x[rows.clone()], &grad[rows], width, self.eps)
        });
        Ok((CpuStorage::F32(output), l1.shape().clone()))
    }
}

/// γ ⊙ (x − μ)/√(σ² + ε) + β over the last axis: one fused op on CPU f32, candle's fused kernel
/// with a grafted gradient on CUDA, composed elsewhere.
pub fn layer_norm(x: &Tensor, scale: &Tensor, shift: &Tensor, eps: f64) -> Result<Tensor> {
    if fused(x) && fused(scale) && fused(shift) && scale.rank() == 1 && shift.rank() == 1 {
        x.contiguous()?.apply_op3(
            &scale.contiguous()?,
            &shift.contiguous()?,
            AffineLayerNorm {
                eps: eps as f32,
                detached_std: false,
            },
        )
    } else if graft::applies(x) {
        graft::layer_norm(x, scale, shift, eps)
    } else {
        let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
        let variance = centred.sqr()?.mean_keepdim(D::Minus1)?;
        centred
            .broadcast_div(&(variance + eps)?.sqrt()?)?
            .broadcast_mul(scale)?
            .broadcast_add(shift)
    }
}

/// LayerNorm whose backward treats σ as a constant (the mean stays in the graph): one fused op
/// on CPU f32, `None` elsewhere (the caller composes it with `detach`).
pub fn layer_norm_detached_std(
    x: &Tensor,
    scale: &Tensor,
    shift: &Tensor,
    eps: f64,
) -> Result<Option<Tensor>> {
    if !(fused(x) && fused(scale) && fused(shift) && scale.rank() == 1 && shift.rank() == 1) {
        return Ok(None);
    }
    Ok(Some(x.contiguous()?.apply_op3(
        &scale.contiguous()?,
        &shift.contiguous()?,
        AffineLayerNorm {
            eps: eps as f32,
            detached_std: true,
        },
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::kernels::test_support::{max_difference, normal};
    use candle_core::{DType, Var};

    #[test]
    fn layer_norm_of_a_sum_equals_the_add_then_the_norm_bit_for_bit() {
        let (a, r) = (normal(&[3, 41, 24], 1, 1.0), normal(&[3, 41, 24], 2, 1.0));
        let (scale, shift) = (normal(&[24], 3, 1.0), normal(&[24], 4, 1.0));
        let fused = layer_norm_of_sum(&a, &r, &scale, &shift, 1e-12)
            .unwrap()
            .unwrap();
        let composed = layer_norm(&(&a + &r).unwrap(), &scale, &shift, 1e-12).unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(flat(&fused), flat(&composed));
    }

    /// Value and the three gradients against the composed f64 reference: the fused CPU op and the
    /// CUDA graft (run here on candle's CPU kernel).
    #[test]
    fn matches_composed_layer_norm_in_value_and_all_gradients() {
        check_against_composed(layer_norm);
        check_against_composed(graft::layer_norm);
    }

    fn check_against_composed(ours: impl Fn(&Tensor, &Tensor, &Tensor, f64) -> Result<Tensor>) {
        let x = (normal(&[4, 6, 37], 1, 1.0) * 3.0).unwrap();
        let scale = (normal(&[37], 2, 0.3) + 1.0).unwrap();
        let shift = normal(&[37], 3, 0.5);
        let probe = normal(&[4, 6, 37], 4, 1.0);
        let run =
            |dtype: DType,
             layer_norm: &dyn Fn(&Tensor, &Tensor, &Tensor, f64) -> Result<Tensor>| {
                let vars: Vec<Var> = [&x, &scale, &shift]
                    .iter()
                    .map(|t| Var::from_tensor(&t.to_dtype(dtype).unwrap()).unwrap())
                    .collect();
                let y = layer_norm(
                    vars[0].as_tensor(),
                    vars[1].as_tensor(),
                    vars[2].as_tensor(),
                    1e-12,
                )
                .unwrap();
                let grads = (&y * probe.to_dtype(dtype).unwrap())
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                let mut out = vec![y.to_dtype(DType::F32).unwrap()];
                for var in &vars {
                    out.push(
                        grads
                            .get(var.as_tensor())
                            .unwrap()
                            .to_dtype(DType::F32)
                            .unwrap(),
                    );
                }
                out
            };
        let ours = run(DType::F32, &ours);
        let reference = run(DType::F64, &super::layer_norm);
        for (name, (a, b)) in ["value", "dx", "dγ", "dβ"]
            .iter()
            .zip(ours.iter().zip(&reference))
        {
            let difference = max_difference(a, b);
            assert!(difference < 2e-5, "{name} differs by {difference}");
        }
    }
}
