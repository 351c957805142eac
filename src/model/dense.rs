//! `x Wᵀ` for a dense layer as a CPU custom op whose backward computes only the gradients that
//! are wanted. candle's matmul backward always computes both operands' gradients, so an
//! attribution through a frozen model (gradient × input, integrated gradients) paid for a weight
//! gradient of every layer that nobody reads: a third of the backward's matrix products.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use crate::model::kernels::{contiguous_f32, fused};

struct DenseProduct;

impl CustomOp2 for DenseProduct {
    fn name(&self) -> &'static str {
        "genolens-dense-product"
    }

    /// `x [n, in] · W [out, in]ᵀ → [n, out]` with the GEMM candle itself uses (same blocking,
    /// same threads, so the same numbers as `x.matmul(&w.t())`).
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, self.name())?;
        let w = contiguous_f32(s2, l2, self.name())?;
        let (rows, inner) = l1.shape().dims2()?;
        let (outputs, w_inner) = l2.shape().dims2()?;
        if inner != w_inner {
            candle_core::bail!("{}: x has {inner} columns but W has {w_inner}", self.name());
        }
        let mut out = vec![0f32; rows * outputs];
        let threads = rayon::current_num_threads();
        let parallelism = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: every pointer covers the extent its strides describe: out is rows × outputs
        // (row stride outputs), x is rows × inner (row stride inner), and Wᵀ is read from W's
        // outputs × inner buffer as inner × outputs (column stride inner, row stride 1).
        unsafe {
            gemm::gemm(
                rows,
                outputs,
                inner,
                out.as_mut_ptr(),
                1,
                outputs as isize,
                false,
                x.as_ptr(),
                1,
                inner as isize,
                w.as_ptr(),
                inner as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
        Ok((CpuStorage::F32(out), Shape::from((rows, outputs))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = if x.track_op() {
            Some(grad.matmul(w)?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(grad.t()?.matmul(x)?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

/// `x [n, in] · W [out, in]ᵀ`: the fused op on CPU f32, candle's matmul elsewhere.
pub fn dense_product(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if fused(x) && fused(w) && x.rank() == 2 && w.rank() == 2 {
        x.contiguous()?.apply_op2(&w.contiguous()?, DenseProduct)
    } else {
        x.matmul(&w.t()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::test_support::{max_difference, normal};
    use candle_core::Var;

    /// Value and both gradients agree with candle's matmul; a frozen weight gets no gradient.
    #[test]
    fn matches_matmul_and_skips_frozen_weights() {
        let x = Var::from_tensor(&normal(&[7, 33], 1, 1.0)).unwrap();
        let w = Var::from_tensor(&normal(&[19, 33], 2, 1.0)).unwrap();
        let probe = normal(&[7, 19], 3, 1.0);
        let ours = dense_product(x.as_tensor(), w.as_tensor()).unwrap();
        let theirs = x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap();
        assert!(max_difference(&ours, &theirs) < 1e-5);
        let loss = |y: &Tensor| (y * &probe).unwrap().sum_all().unwrap();
        let g_ours = loss(&ours).backward().unwrap();
        let g_theirs = loss(&theirs).backward().unwrap();
        for var in [&x, &w] {
            let a = g_ours.get(var.as_tensor()).unwrap();
            let b = g_theirs.get(var.as_tensor()).unwrap();
            assert!(max_difference(a, b) < 1e-4, "{}", max_difference(a, b));
        }

        let frozen = w.as_tensor().detach();
        let grads = loss(&dense_product(x.as_tensor(), &frozen).unwrap())
            .backward()
            .unwrap();
        assert!(grads.get(&frozen).is_none());
        assert!(grads.get(x.as_tensor()).is_some());
    }
}
