//! A dense layer `x Wᵀ + b` as one CPU custom op whose backward computes only the gradients
//! that are wanted. candle's matmul backward always computes both operands' gradients, so an
//! attribution through a frozen model (gradient × input, integrated gradients) paid for a weight
//! gradient of every layer that nobody reads: a third of the backward's matrix products. The
//! bias is the GEMM's starting value, so it costs no pass and no autograd node of its own.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::ops::kernels::{contiguous_f32, fused};
use crate::ops::matmul::{self, Threads, View, ViewMut};
use crate::ops::row_ops::column_sums;

struct DenseLayer {
    /// Apply the erf GELU to the output in place (inference only: no backward).
    gelu: bool,
}

impl CustomOp3 for DenseLayer {
    fn name(&self) -> &'static str {
        "genolens-dense-layer"
    }

    /// `x [n, in] · W [out, in]ᵀ + b → [n, out]` with the GEMM candle itself uses (same blocking,
    /// same threads), accumulating onto rows initialised to b.
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
        let w = contiguous_f32(s2, l2, self.name())?;
        let bias = contiguous_f32(s3, l3, self.name())?;
        let (rows, inner) = l1.shape().dims2()?;
        let (outputs, w_inner) = l2.shape().dims2()?;
        if inner != w_inner || bias.len() != outputs {
            candle_core::bail!(
                "{}: x has {inner} columns, W is {outputs} × {w_inner}, b has {} values",
                self.name(),
                bias.len()
            );
        }
        // The bias rows, written in parallel (a single-threaded `repeat` was a visible memmove);
        // a layer without bias (exact zeros: DNABERT-2's and NT v2's MLPs) starts from a fresh
        // zeroed buffer the GEMM does not read.
        let zero_bias = bias.iter().all(|&b| b == 0.0);
        let mut out = if zero_bias {
            vec![0f32; rows * outputs]
        } else {
            crate::ops::row_ops::repeated_rows(bias, rows)
        };
        // SAFETY: every pointer covers the extent its strides describe: out is rows × outputs
        // (row stride outputs), x is rows × inner (row stride inner), and Wᵀ is read from W's
        // outputs × inner buffer as inner × outputs (column stride inner, row stride 1).
        // out = out + x Wᵀ (the bias rows are the starting value).
        unsafe {
            matmul::product(
                rows,
                outputs,
                inner,
                ViewMut::rows(out.as_mut_ptr(), outputs),
                !zero_bias,
                View::rows(x.as_ptr(), inner),
                View::transposed(w.as_ptr(), inner),
                1.0,
                Threads::Pool,
            );
        }
        if self.gelu {
            let block = outputs * crate::ops::kernels::rows_per_task(outputs);
            out.par_chunks_mut(block)
                .for_each(crate::ops::kernels::gelu_in_place);
        }
        Ok((CpuStorage::F32(out), Shape::from((rows, outputs))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        if self.gelu {
            candle_core::bail!("{}: the fused GELU has no backward", self.name());
        }
        let dx = if x.track_op() {
            Some(matmul::matmul_no_grad(grad, w)?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(matmul::matmul_no_grad(&grad.t()?, x)?)
        } else {
            None
        };
        let db = if bias.track_op() {
            Some(column_sums(grad)?)
        } else {
            None
        };
        Ok((dx, dw, db))
    }
}

/// `x [n, in] · W [out, in]ᵀ + b [out]`: the fused op on CPU f32, candle's matmul and a
/// broadcast add elsewhere.
pub fn dense_layer(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    if fused(x) && fused(w) && fused(b) && x.rank() == 2 && w.rank() == 2 && b.rank() == 1 {
        x.contiguous()?.apply_op3(
            &w.contiguous()?,
            &b.contiguous()?,
            DenseLayer { gelu: false },
        )
    } else {
        x.matmul(&w.t()?)?.broadcast_add(b)
    }
}

/// `gelu(x Wᵀ + b)` (erf GELU) as one pass over the output, when nothing needs the gradient or
/// the value before the GELU; `None` where it does not apply (then compose the two).
pub fn dense_gelu(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Option<Tensor>> {
    let applies = [x, w, b].iter().all(|t| fused(t) && !t.track_op())
        && x.rank() == 2
        && w.rank() == 2
        && b.rank() == 1;
    if !applies {
        return Ok(None);
    }
    Ok(Some(x.contiguous()?.apply_op3(
        &w.contiguous()?,
        &b.contiguous()?,
        DenseLayer { gelu: true },
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::kernels::test_support::{max_difference, normal};
    use candle_core::Var;

    /// Value and all three gradients agree with candle's matmul and broadcast add; frozen
    /// parameters get no gradient.
    #[test]
    fn matches_matmul_plus_bias_and_skips_frozen_parameters() {
        let x = Var::from_tensor(&normal(&[7, 33], 1, 1.0)).unwrap();
        let w = Var::from_tensor(&normal(&[19, 33], 2, 1.0)).unwrap();
        let b = Var::from_tensor(&normal(&[19], 4, 1.0)).unwrap();
        let probe = normal(&[7, 19], 3, 1.0);
        let ours = dense_layer(x.as_tensor(), w.as_tensor(), b.as_tensor()).unwrap();
        let theirs = x
            .as_tensor()
            .matmul(&w.as_tensor().t().unwrap())
            .unwrap()
            .broadcast_add(b.as_tensor())
            .unwrap();
        assert!(max_difference(&ours, &theirs) < 1e-5);
        let loss = |y: &Tensor| (y * &probe).unwrap().sum_all().unwrap();
        let g_ours = loss(&ours).backward().unwrap();
        let g_theirs = loss(&theirs).backward().unwrap();
        for var in [&x, &w, &b] {
            let a = g_ours.get(var.as_tensor()).unwrap();
            let b = g_theirs.get(var.as_tensor()).unwrap();
            assert!(max_difference(a, b) < 1e-4, "{}", max_difference(a, b));
        }

        let frozen = w.as_tensor().detach();
        let frozen_bias = b.as_tensor().detach();
        let grads = loss(&dense_layer(x.as_tensor(), &frozen, &frozen_bias).unwrap())
            .backward()
            .unwrap();
        assert!(grads.get(&frozen).is_none());
        assert!(grads.get(&frozen_bias).is_none());
        assert!(grads.get(x.as_tensor()).is_some());
    }

    #[test]
    fn fused_gelu_equals_the_dense_layer_then_the_gelu_bit_for_bit() {
        let x = normal(&[37, 24], 1, 1.0);
        let w = normal(&[50, 24], 2, 0.3);
        let b = normal(&[50], 3, 0.1);
        let fused = dense_gelu(&x, &w, &b).unwrap().unwrap();
        let composed = crate::ops::gelu_erf(&dense_layer(&x, &w, &b).unwrap()).unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(flat(&fused), flat(&composed));
        // A trainable input has no fused path (the op has no backward).
        let trainable = Var::from_tensor(&x).unwrap();
        assert!(dense_gelu(trainable.as_tensor(), &w, &b).unwrap().is_none());
    }
}
