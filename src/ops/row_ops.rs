//! Row helpers shared by the fused ops: column sums as one GEMM (candle's `broadcast_add` gradient
//! is a single-threaded strided reduction over all rows, once 17 % of an MLM training step), the
//! softmax backward as one parallel pass, and the row-block split they run on.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::ops::kernels::{contiguous_f32, fused, rows_per_task};

/// Σ over rows of a [.., d] tensor → [d], as a matrix product (parallel, cache-friendly).
pub fn column_sums(x: &Tensor) -> Result<Tensor> {
    let width = x.dim(candle_core::D::Minus1)?;
    let rows = x.elem_count() / width.max(1);
    let ones = Tensor::ones((1, rows), x.dtype(), x.device())?;
    ones.matmul(&x.reshape((rows, width))?.contiguous()?)?
        .reshape(width)
}

/// Runs `body(offset of the block's first element, the block)` over blocks of whole
/// `width`-long rows of `output`, in parallel.
pub(crate) fn for_each_row_block(
    output: &mut [f32],
    width: usize,
    body: impl Fn(usize, &mut [f32]) + Sync,
) {
    let block = width * rows_per_task(width);
    output
        .par_chunks_mut(block)
        .enumerate()
        .for_each(|(index, rows)| body(index * block, rows));
}

struct SoftmaxBackward;

impl CustomOp2 for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "genolens-softmax-backward"
    }

    /// dx = y ⊙ (g − Σ_j g_j y_j), row by row in one pass.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = contiguous_f32(s1, l1, self.name())?;
        let g = contiguous_f32(s2, l2, self.name())?;
        let width = l1.dims()[l1.dims().len() - 1];
        let mut output = vec![0f32; y.len()];
        for_each_row_block(&mut output, width, |start, rows| {
            let (ys, gs) = (&y[start..start + rows.len()], &g[start..start + rows.len()]);
            for ((out, yr), gr) in rows
                .chunks_mut(width)
                .zip(ys.chunks(width))
                .zip(gs.chunks(width))
            {
                let dot: f32 = yr.iter().zip(gr).map(|(a, b)| a * b).sum();
                for ((o, &a), &b) in out.iter_mut().zip(yr).zip(gr) {
                    *o = a * (b - dot);
                }
            }
        });
        Ok((CpuStorage::F32(output), l1.shape().clone()))
    }
}

/// The input gradient of a last-axis softmax with output `y` and output gradient `grad`.
pub fn softmax_backward(y: &Tensor, grad: &Tensor) -> Result<Tensor> {
    if fused(y) && grad.dtype() == y.dtype() && grad.device().is_cpu() {
        y.contiguous()?
            .apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxBackward)
    } else {
        let dot = (grad * y)?.sum_keepdim(candle_core::D::Minus1)?;
        y * grad.broadcast_sub(&dot)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::kernels::test_support::{max_difference, normal};
    use candle_core::DType;

    fn sample(shape: &[usize], seed: u64) -> Tensor {
        normal(shape, seed, 1.0)
    }

    #[test]
    fn softmax_backward_matches_the_formula() {
        let y = crate::ops::kernels::softmax_last_dim(&sample(&[4, 9], 5)).unwrap();
        let g = sample(&[4, 9], 6);
        let reference = {
            let y = y.to_dtype(DType::F64).unwrap();
            let g = g.to_dtype(DType::F64).unwrap();
            let dot = (&g * &y).unwrap().sum_keepdim(1).unwrap();
            (&y * g.broadcast_sub(&dot).unwrap())
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
        };
        assert!(max_difference(&softmax_backward(&y, &g).unwrap(), &reference) < 1e-6);
    }
}
