//! The feed-forward block `gelu(x W₁ᵀ + b₁) W₂ᵀ + b₂` (erf GELU) for inference as one CPU op, in
//! blocks of rows: each task runs both products for its rows with the [rows, d_ff] hidden
//! activations in its own buffer, which stays in cache. The two-op path writes the hidden
//! activations for the whole batch ([b·t, d_ff], 26 MB at 32 × 200 tokens × 1024) to memory and
//! reads them back twice (the GELU, then the second product). Used when no hook reads the
//! pre- or post-activation and no gradient is wanted (the op has no backward).

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use crate::ops::kernels::{contiguous_f32, fused, gelu_in_place};
use crate::ops::matmul::{self, Threads, View, ViewMut};

/// Rows per task: the hidden block (rows × d_ff floats) fits in L2 next to the weights.
const BLOCK_ROWS: usize = 256;
/// Largest weight matrix (values) the blocked op takes.
const MAX_WEIGHTS: usize = 512 * 1024;
/// Blocks are padded to at least this many rows (see `cpu_fwd`).
const MIN_ROWS: usize = 32;

struct FeedForward {
    intermediate_bias: Vec<f32>,
    output_bias: Vec<f32>,
}

/// W [outputs, inner] as Wᵀ [inner, outputs], row-major. The GEMM packs its right operand per
/// call; read as a strided view of W it packed one value at a time (10 % of a patching sweep,
/// once per block), from Wᵀ it copies whole rows. The copy goes in 16 × 16 tiles, so each written
/// cache line is filled while it is in cache (a row at a time, every write had touched a new line:
/// 2.4 % of a default-shape forward).
fn transposed(w: &[f32], inner: usize) -> Vec<f32> {
    const TILE: usize = 16;
    let outputs = w.len() / inner;
    let mut t = vec![0f32; w.len()];
    for j0 in (0..outputs).step_by(TILE) {
        for k0 in (0..inner).step_by(TILE) {
            for j in j0..(j0 + TILE).min(outputs) {
                let row = &w[j * inner..(j + 1) * inner];
                for k in k0..(k0 + TILE).min(inner) {
                    t[k * outputs + j] = row[k];
                }
            }
        }
    }
    t
}

/// `out = bias rows + x · W` for a block: x [rows, inner] (row stride `inner`), W = `w_t`
/// [inner, outputs] row-major, out [rows, outputs].
fn dense_block(out: &mut [f32], x: &[f32], w_t: &[f32], bias: &[f32], inner: usize) {
    let outputs = bias.len();
    let rows = out.len() / outputs;
    for row in out.chunks_mut(outputs) {
        row.copy_from_slice(bias);
    }
    // SAFETY: out is rows × outputs (row stride outputs), x is rows × inner (row stride inner),
    // w_t is inner × outputs (row stride outputs); out = out + x · w_t.
    unsafe {
        matmul::product(
            rows,
            outputs,
            inner,
            ViewMut::rows(out.as_mut_ptr(), outputs),
            true,
            View::rows(x.as_ptr(), inner),
            View::rows(w_t.as_ptr(), outputs),
            1.0,
            Threads::Caller,
        );
    }
}

impl CustomOp3 for FeedForward {
    fn name(&self) -> &'static str {
        "genolens-feed-forward"
    }

    /// x [n, d], W₁ [d_ff, d], W₂ [d, d_ff] → [n, d].
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
        let w1 = contiguous_f32(s2, l2, self.name())?;
        let w2 = contiguous_f32(s3, l3, self.name())?;
        let (rows, width) = l1.shape().dims2()?;
        let (hidden, w1_inner) = l2.shape().dims2()?;
        let (w2_outputs, w2_inner) = l3.shape().dims2()?;
        if w1_inner != width
            || w2_outputs != width
            || w2_inner != hidden
            || self.intermediate_bias.len() != hidden
            || self.output_bias.len() != width
        {
            candle_core::bail!(
                "{}: x {:?}, W1 {:?}, W2 {:?} do not fit",
                self.name(),
                l1.dims(),
                l2.dims(),
                l3.dims()
            );
        }
        // At most BLOCK_ROWS rows a block, and a block count that the threads share evenly.
        let threads = rayon::current_num_threads().max(1);
        let blocks = rows
            .div_ceil(BLOCK_ROWS)
            .max(threads)
            .next_multiple_of(threads);
        let block_rows = rows.div_ceil(blocks).max(MIN_ROWS);
        let (w1, w2) = (transposed(w1, width), transposed(w2, hidden));
        // Both products for a block's rows, the hidden activations in a block-sized buffer.
        let run = |inputs: &[f32], out: &mut [f32]| {
            let mut activations = vec![0f32; inputs.len() / width * hidden];
            dense_block(
                &mut activations,
                inputs,
                &w1,
                &self.intermediate_bias,
                width,
            );
            gelu_in_place(&mut activations);
            dense_block(out, &activations, &w2, &self.output_bias, hidden);
        };
        let output =
            crate::ops::row_ops::new_in_parallel(rows * width, block_rows * width, |first, out| {
                let inputs = &x[first..first + out.len()];
                if out.len() >= MIN_ROWS * width {
                    return run(inputs, out);
                }
                // The GEMM rounds differently for a handful of rows (seen up to 9): pad the
                // block with copies of its last row so that a row's value never depends on
                // where the blocks fall.
                let mut padded = inputs.to_vec();
                while padded.len() < MIN_ROWS * width {
                    padded.extend_from_slice(&inputs[inputs.len() - width..]);
                }
                let mut result = vec![0f32; padded.len()];
                run(&padded, &mut result);
                out.copy_from_slice(&result[..out.len()]);
            });
        Ok((CpuStorage::F32(output), l1.shape().clone()))
    }
}

/// `gelu(x W₁ᵀ + b₁) W₂ᵀ + b₂` for x [n, d] where it applies (CPU f32, no gradient wanted);
/// `None` otherwise.
pub(crate) fn feed_forward_gelu(
    x: &Tensor,
    w1: &Tensor,
    b1: &Tensor,
    w2: &Tensor,
    b2: &Tensor,
) -> Result<Option<Tensor>> {
    // With wide layers (BERT-base: 768 × 3072) each block would re-pack 19 MB of weights for
    // 256 rows: the unblocked path is faster there.
    let applies = [x, w1, b1, w2, b2]
        .iter()
        .all(|t| fused(t) && !t.track_op())
        && x.rank() == 2
        && w1.elem_count() <= MAX_WEIGHTS;
    if !applies {
        return Ok(None);
    }
    let op = FeedForward {
        intermediate_bias: b1.to_vec1()?,
        output_bias: b2.to_vec1()?,
    };
    Ok(Some(x.contiguous()?.apply_op3(
        &w1.contiguous()?,
        &w2.contiguous()?,
        op,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::kernels::test_support::normal;

    #[test]
    fn the_tiled_transpose_moves_every_value_once() {
        for (outputs, inner) in [(37, 21), (16, 16), (1, 40), (40, 1), (33, 64)] {
            let w: Vec<f32> = (0..outputs * inner).map(|i| i as f32).collect();
            let t = transposed(&w, inner);
            for j in 0..outputs {
                for k in 0..inner {
                    assert_eq!(t[k * outputs + j], w[j * inner + k], "{outputs} × {inner}");
                }
            }
        }
    }

    #[test]
    fn equals_the_dense_gelu_dense_composition() {
        // 300 rows: two full blocks and a partial one.
        let x = normal(&[300, 24], 1, 1.0);
        let (w1, b1) = (normal(&[96, 24], 2, 0.3), normal(&[96], 3, 0.1));
        let (w2, b2) = (normal(&[24, 96], 4, 0.3), normal(&[24], 5, 0.1));
        let fused = feed_forward_gelu(&x, &w1, &b1, &w2, &b2).unwrap().unwrap();
        let hidden =
            crate::ops::gelu_erf(&crate::ops::dense::dense_layer(&x, &w1, &b1).unwrap()).unwrap();
        let composed = crate::ops::dense::dense_layer(&hidden, &w2, &b2).unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let worst = flat(&fused)
            .iter()
            .zip(flat(&composed))
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "{worst}");
        // A row's value does not depend on the rows beside it (nor on a block of one row).
        for (first, rows) in [(200, 1), (200, 2), (201, 4), (7, 129), (0, 257), (3, 140)] {
            let part = feed_forward_gelu(&x.narrow(0, first, rows).unwrap(), &w1, &b1, &w2, &b2)
                .unwrap()
                .unwrap();
            assert_eq!(
                flat(&part),
                flat(&fused.narrow(0, first, rows).unwrap()),
                "rows {first}..{}",
                first + rows
            );
        }
    }
}

/// The gate of a gated MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// erf GELU (DNABERT-2's GEGLU).
    GeluErf,
    /// x·σ(x) (NT v2's SwiGLU).
    Silu,
}

crate::simd_dispatch! {
    /// `out[j] = gelu(gate[j]) · linear[j]`.
    fn geglu_slice(output: &mut [f32], gate: &[f32], linear: &[f32]) {
        for ((o, &g), &l) in output.iter_mut().zip(gate).zip(linear) {
            *o = crate::ops::kernels::gelu_value(g) * l;
        }
    }
}

crate::simd_dispatch! {
    /// `out[j] = silu(gate[j]) · linear[j]`.
    fn swiglu_slice(output: &mut [f32], gate: &[f32], linear: &[f32]) {
        for ((o, &g), &l) in output.iter_mut().zip(gate).zip(linear) {
            *o = g / (1.0 + crate::ops::vector_math::exp(-g)) * l;
        }
    }
}

struct GatedProduct(Gate);

impl candle_core::CustomOp1 for GatedProduct {
    fn name(&self) -> &'static str {
        "genolens-gated-product"
    }

    /// [rows, 2w] (gate columns first) → [rows, w].
    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let input = contiguous_f32(storage, layout, self.name())?;
        let dims = layout.dims();
        let both = dims[dims.len() - 1];
        if both % 2 != 0 {
            candle_core::bail!("{}: {both} columns are not two halves", self.name());
        }
        let width = both / 2;
        let rows = input.len() / both.max(1);
        let output = crate::ops::row_ops::new_row_blocks(rows * width, width, |start, out| {
            let first = start / width;
            for (r, row) in out.chunks_mut(width).enumerate() {
                let source = &input[(first + r) * both..][..both];
                let (gate, linear) = source.split_at(width);
                match self.0 {
                    Gate::GeluErf => geglu_slice(row, gate, linear),
                    Gate::Silu => swiglu_slice(row, gate, linear),
                }
            }
        });
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("non-empty dims") = width;
        Ok((CpuStorage::F32(output), Shape::from(out_dims)))
    }
}

/// `act(x[.., :w]) ⊙ x[.., w:]` of a gated MLP's projection `x` [.., 2w] in one parallel pass,
/// when it applies (CPU f32, no gradient wanted); `None` otherwise (then compose the ops).
pub(crate) fn gated_product(both: &Tensor, gate: Gate) -> Result<Option<Tensor>> {
    if !fused(both) || both.track_op() {
        return Ok(None);
    }
    Ok(Some(both.contiguous()?.apply_op1(GatedProduct(gate))?))
}
