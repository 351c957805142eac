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

/// A new buffer of `len` values made block by block in parallel: each `block`-long piece (the last
/// may be shorter) is zeroed and handed to `body(offset of its first element, piece)` by the same
/// task. A large output was otherwise zeroed by one thread before the parallel pass (glibc reuses
/// freed heap memory, so `vec![0.0; n]` is a single-threaded memset: 8 % of a patching sweep), and
/// the zeroing now happens in cache just before the writes.
pub(crate) fn new_in_parallel(
    len: usize,
    block: usize,
    body: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    let block = block.max(1);
    let mut output: Vec<f32> = Vec::with_capacity(len);
    output.spare_capacity_mut()[..len]
        .par_chunks_mut(block)
        .enumerate()
        .for_each(|(index, piece)| {
            for value in piece.iter_mut() {
                value.write(0.0);
            }
            // SAFETY: every element of `piece` was just initialised, and MaybeUninit<f32> has
            // f32's layout.
            let piece = unsafe {
                std::slice::from_raw_parts_mut(piece.as_mut_ptr().cast::<f32>(), piece.len())
            };
            body(index * block, piece);
        });
    // SAFETY: the chunks cover `..len` and each was initialised above.
    unsafe { output.set_len(len) };
    output
}

/// Rows of `row`, `rows` times, written in parallel (no zeroing first: every element is written
/// once).
pub(crate) fn repeated_rows(row: &[f32], rows: usize) -> Vec<f32> {
    let width = row.len();
    let len = rows * width;
    let mut output: Vec<f32> = Vec::with_capacity(len);
    if width > 0 {
        output.spare_capacity_mut()[..len]
            .par_chunks_mut(width * rows_per_task(width))
            .for_each(|piece| {
                for chunk in piece.chunks_mut(width) {
                    for (slot, &value) in chunk.iter_mut().zip(row) {
                        slot.write(value);
                    }
                }
            });
    }
    // SAFETY: the pieces cover `..len` in whole rows and every element was written above.
    unsafe { output.set_len(len) };
    output
}

/// [`new_in_parallel`] in blocks of whole `width`-long rows.
pub(crate) fn new_row_blocks(
    len: usize,
    width: usize,
    body: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    new_in_parallel(len, width * rows_per_task(width), body)
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
        let output = new_row_blocks(y.len(), width, |start, rows| {
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
