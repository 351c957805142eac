//! The row-broadcast bias add and the softmax backward as fused, multi-threaded CPU custom ops.
//! candle's `broadcast_add` runs a single-threaded strided reduction over all rows for the bias
//! gradient (17 % of an MLM training step); here it is a column sum done as one GEMM
//! (ones[1,n] · G[n,d]), and the forward is one parallel pass. (A fused γ/β op for LayerNorm
//! built as a three-input custom op kept 3.5× the memory in candle's backward; LayerNorm uses
//! `broadcast_mul` and this bias add instead.)

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::model::kernels::{contiguous_f32, fused, rows_per_task};

/// Σ over rows of a [.., d] tensor → [d], as a matrix product (parallel, cache-friendly).
pub fn column_sums(x: &Tensor) -> Result<Tensor> {
    let width = x.dim(candle_core::D::Minus1)?;
    let rows = x.elem_count() / width.max(1);
    let ones = Tensor::ones((1, rows), x.dtype(), x.device())?;
    ones.matmul(&x.reshape((rows, width))?.contiguous()?)?
        .reshape(width)
}

fn for_each_row_block(output: &mut [f32], width: usize, body: impl Fn(usize, &mut [f32]) + Sync) {
    let block = width * rows_per_task(width);
    output
        .par_chunks_mut(block)
        .enumerate()
        .for_each(|(index, rows)| body(index * block, rows));
}

/// `combine(x[r, j], row[j])` for every row r of `x` [.., d] and `row` [d], in one parallel pass.
fn row_broadcast(
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    op: &str,
    combine: impl Fn(f32, f32) -> f32 + Sync,
) -> Result<(CpuStorage, Shape)> {
    let x = contiguous_f32(s1, l1, op)?;
    let row = contiguous_f32(s2, l2, op)?;
    let width = row.len();
    let mut output = vec![0f32; x.len()];
    for_each_row_block(&mut output, width, |start, rows| {
        let input = &x[start..start + rows.len()];
        for (out, values) in rows.chunks_mut(width).zip(input.chunks(width)) {
            for ((o, &v), &r) in out.iter_mut().zip(values).zip(row) {
                *o = combine(v, r);
            }
        }
    });
    Ok((CpuStorage::F32(output), l1.shape().clone()))
}

struct AddRowBias;

impl CustomOp2 for AddRowBias {
    fn name(&self) -> &'static str {
        "genolens-add-row-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        row_broadcast(s1, l1, s2, l2, self.name(), |v, b| v + b)
    }

    fn bwd(
        &self,
        _x: &Tensor,
        bias: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let bias_grad = if bias.track_op() {
            Some(column_sums(grad)?)
        } else {
            None
        };
        Ok((Some(grad.clone()), bias_grad))
    }
}

/// `x ⊙ scale` with `scale` [d] broadcast over the rows of `x` [.., d] (LayerNorm's γ).
struct MulRowScale;

impl CustomOp2 for MulRowScale {
    fn name(&self) -> &'static str {
        "genolens-mul-row-scale"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        row_broadcast(s1, l1, s2, l2, self.name(), |v, g| v * g)
    }

    /// dx = grad ⊙ scale (the same parallel pass); dscale = Σ_rows grad ⊙ x as one GEMM, and only
    /// when the scale is trained (candle's broadcast_mul always reduced it, single-threaded).
    fn bwd(
        &self,
        x: &Tensor,
        scale: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let x_grad = if x.track_op() {
            Some(
                grad.contiguous()?
                    .apply_op2_no_bwd(&scale.contiguous()?, &MulRowScale)?,
            )
        } else {
            None
        };
        let scale_grad = if scale.track_op() {
            Some(column_sums(&(grad * x)?)?)
        } else {
            None
        };
        Ok((x_grad, scale_grad))
    }
}

/// `x ⊙ scale` with `scale` [d] broadcast over the rows of `x` [.., d].
pub fn mul_row_scale(x: &Tensor, scale: &Tensor) -> Result<Tensor> {
    if fused(x) && fused(scale) && scale.rank() == 1 {
        x.contiguous()?.apply_op2(&scale.contiguous()?, MulRowScale)
    } else {
        x.broadcast_mul(scale)
    }
}

/// `x + bias` with `bias` [d] broadcast over the rows of `x` [.., d].
pub fn add_row_bias(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if fused(x) && bias.rank() == 1 {
        x.contiguous()?.apply_op2(&bias.contiguous()?, AddRowBias)
    } else {
        x.broadcast_add(bias)
    }
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
    use crate::model::kernels::test_support::{max_difference, normal};
    use candle_core::{DType, Var};

    fn sample(shape: &[usize], seed: u64) -> Tensor {
        normal(shape, seed, 1.0)
    }

    /// A fused row op agrees with its broadcasting composition in value and in both gradients,
    /// and gives a frozen row vector no gradient.
    fn check_row_op(
        fused_op: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
        composed: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
    ) {
        let x = Var::from_tensor(&sample(&[3, 7, 33], 1)).unwrap();
        let row = Var::from_tensor(&sample(&[33], 3)).unwrap();
        let weights = sample(&[3, 7, 33], 4);
        let fused_out = fused_op(x.as_tensor(), row.as_tensor()).unwrap();
        let composed_out = composed(x.as_tensor(), row.as_tensor()).unwrap();
        assert!(max_difference(&fused_out, &composed_out) < 1e-6);
        let loss = |y: Tensor| (y * &weights).unwrap().sum_all().unwrap();
        let ours = loss(fused_out).backward().unwrap();
        let theirs = loss(composed_out).backward().unwrap();
        for var in [&x, &row] {
            let difference = max_difference(
                ours.get(var.as_tensor()).unwrap(),
                theirs.get(var.as_tensor()).unwrap(),
            );
            assert!(difference < 1e-4, "gradient differs by {difference}");
        }
        let frozen = row.as_tensor().detach();
        let grads = loss(fused_op(x.as_tensor(), &frozen).unwrap())
            .backward()
            .unwrap();
        assert!(grads.get(&frozen).is_none());
        assert!(grads.get(x.as_tensor()).is_some());
    }

    #[test]
    fn fused_bias_add_matches_broadcasting_in_value_and_gradient() {
        check_row_op(add_row_bias, |x, b| x.broadcast_add(b));
    }

    #[test]
    fn fused_row_scale_matches_broadcasting_in_value_and_gradient() {
        check_row_op(mul_row_scale, |x, g| x.broadcast_mul(g));
    }

    #[test]
    fn softmax_backward_matches_the_formula() {
        let y = crate::model::kernels::softmax_last_dim(&sample(&[4, 9], 5)).unwrap();
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
