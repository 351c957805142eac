//! Fused, multi-threaded CPU kernels for the element-wise parts of the forward pass (softmax,
//! the masked softmax of attention, erf GELU), as candle custom ops with hand-written backward
//! passes (LayerNorm: `layer_norm.rs`).
//! candle's own fused kernels have no gradient and its composed ones make several single-threaded
//! passes with a fresh allocation each; these make one parallel pass. On CUDA, the softmaxes use
//! candle's fused kernel with a grafted gradient (`graft.rs`); other devices and dtypes use the
//! composed (differentiable) ops.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor, D};

use crate::ops::graft;
use crate::ops::row_ops::{new_in_parallel, new_row_blocks};
use crate::ops::vector_math as vm;

/// Rows handed to one rayon task at least (keeps scheduling overhead small for narrow rows).
const MIN_ELEMENTS_PER_TASK: usize = 16 * 1024;

pub(crate) fn contiguous_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<&'a [f32]> {
    let data = match storage {
        CpuStorage::F32(data) => data,
        _ => candle_core::bail!("{op}: expected f32"),
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: expected a contiguous tensor"),
    }
}

pub(crate) fn rows_per_task(row_length: usize) -> usize {
    (MIN_ELEMENTS_PER_TASK / row_length.max(1)).max(1)
}

/// Whether the fused CPU path applies.
pub(crate) fn fused(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

struct SoftmaxLastDim;

impl CustomOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "genolens-softmax-last-dim"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let input = contiguous_f32(storage, layout, self.name())?;
        let width = layout.dims()[layout.dims().len() - 1];
        let output = new_row_blocks(input.len(), width, |start, out| {
            softmax_rows(out, &input[start..start + out.len()], width)
        });
        Ok((CpuStorage::F32(output), layout.shape().clone()))
    }

    fn bwd(&self, _input: &Tensor, output: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        // dx = y ⊙ (g − Σ_j g_j y_j), one fused parallel pass.
        Ok(Some(crate::ops::row_ops::softmax_backward(output, grad)?))
    }
}

/// Softmax over the last axis.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if fused(x) {
        x.contiguous()?.apply_op1(SoftmaxLastDim)
    } else if graft::applies(x) {
        graft::softmax_last_dim(x)
    } else {
        candle_nn::ops::softmax(x, D::Minus1)
    }
}

struct MaskedSoftmax;

impl candle_core::CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "genolens-masked-softmax"
    }

    /// softmax(scores + mask) with scores [b, ..., t_k] and mask [b, 1, .., t_k]: each batch
    /// item's mask row is added to all of its rows (heads × queries) inside the softmax pass.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let scores = contiguous_f32(s1, l1, self.name())?;
        let mask = contiguous_f32(s2, l2, self.name())?;
        let width = l1.dims()[l1.dims().len() - 1];
        let items = l1.dims()[0];
        if l2.dims()[0] != items || mask.len() != items * width {
            candle_core::bail!(
                "{}: mask {:?} does not fit scores {:?}",
                self.name(),
                l2.dims(),
                l1.dims()
            );
        }
        let rows_per_item = scores.len() / width / items.max(1);
        let output = new_row_blocks(scores.len(), width, |start, out| {
            let rows = &scores[start..start + out.len()];
            masked_softmax_rows(out, rows, mask, start / width, rows_per_item, width)
        });
        Ok((CpuStorage::F32(output), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _scores: &Tensor,
        _mask: &Tensor,
        output: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // The mask is a constant: only the scores get a gradient.
        Ok((
            Some(crate::ops::row_ops::softmax_backward(output, grad)?),
            None,
        ))
    }
}

/// softmax(scores + mask) over the last axis, with an additive key mask [b, 1, 1, t_k] for
/// scores [b, h, t_q, t_k]. On the CPU one fused pass (no [b, h, t_q, t_k] sum is stored or
/// differentiated); on CUDA candle's fused softmax with a grafted gradient; elsewhere the
/// broadcast add and [`softmax_last_dim`].
pub fn masked_softmax(scores: &Tensor, mask: &Tensor) -> Result<Tensor> {
    if fused(scores)
        && fused(mask)
        && scores.rank() == 4
        && mask.rank() == 4
        && mask.dims()[1..3] == [1, 1]
    {
        scores
            .contiguous()?
            .apply_op2(&mask.contiguous()?, MaskedSoftmax)
    } else if graft::applies(scores) {
        graft::masked_softmax(scores, mask)
    } else {
        softmax_last_dim(&scores.broadcast_add(mask)?)
    }
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1/√(2π).
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

pub(crate) fn map_parallel(input: &[f32], slice_function: fn(&mut [f32], &[f32])) -> Vec<f32> {
    new_in_parallel(input.len(), MIN_ELEMENTS_PER_TASK, |start, out| {
        slice_function(out, &input[start..start + out.len()])
    })
}

crate::simd_dispatch! {
    /// Softmax of each `width`-long row.
    pub(crate) fn softmax_rows(output: &mut [f32], input: &[f32], width: usize) {
        for (out, row) in output.chunks_mut(width).zip(input.chunks(width)) {
            let max = vm::max(row);
            out.copy_from_slice(row);
            let inverse = 1.0 / vm::exp_in_place_and_sum(out, max);
            out.iter_mut().for_each(|o| *o *= inverse);
        }
    }
}

crate::simd_dispatch! {
    /// softmax(row + mask row) of each `width`-long row; row r (counted from `first_row`) takes
    /// mask row r / rows_per_item.
    pub(crate) fn masked_softmax_rows(
        output: &mut [f32],
        input: &[f32],
        mask: &[f32],
        first_row: usize,
        rows_per_item: usize,
        width: usize,
    ) {
        for (offset, (out, row)) in output.chunks_mut(width).zip(input.chunks(width)).enumerate() {
            let item = (first_row + offset) / rows_per_item;
            let mask_row = &mask[item * width..(item + 1) * width];
            for ((o, &x), &m) in out.iter_mut().zip(row).zip(mask_row) {
                *o = x + m;
            }
            let max = vm::max(out);
            let inverse = 1.0 / vm::exp_in_place_and_sum(out, max);
            out.iter_mut().for_each(|o| *o *= inverse);
        }
    }
}

/// x·Φ(x). A named `inline(always)` function rather than a closure: the compiler declined to
/// inline the larger derivative closure into the vectorised loop (perf showed it called per
/// element, 7.5 % of an MLM training step).
#[inline(always)]
pub(crate) fn gelu_value(x: f32) -> f32 {
    0.5 * x * (1.0 + vm::erf(x * FRAC_1_SQRT_2))
}

/// Φ(x) + x·φ(x).
#[inline(always)]
fn gelu_derivative_value(x: f32) -> f32 {
    0.5 * (1.0 + vm::erf(x * FRAC_1_SQRT_2)) + x * FRAC_1_SQRT_2PI * vm::exp(-0.5 * x * x)
}

crate::simd_dispatch! {
    /// x·Φ(x) of every element.
    pub(crate) fn gelu_slice(output: &mut [f32], input: &[f32]) {
        for (o, &x) in output.iter_mut().zip(input) {
            *o = gelu_value(x);
        }
    }
}

crate::simd_dispatch! {
    /// x·Φ(x) of every element, in place.
    pub(crate) fn gelu_in_place(values: &mut [f32]) {
        for v in values.iter_mut() {
            *v = gelu_value(*v);
        }
    }
}

crate::simd_dispatch! {
    /// Φ(x) + x·φ(x) of every element.
    fn gelu_derivative_slice(output: &mut [f32], input: &[f32]) {
        for (o, &x) in output.iter_mut().zip(input) {
            *o = gelu_derivative_value(x);
        }
    }
}

struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "genolens-gelu-erf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let input = contiguous_f32(storage, layout, self.name())?;
        let output = map_parallel(input, gelu_slice);
        Ok((CpuStorage::F32(output), layout.shape().clone()))
    }

    fn bwd(&self, input: &Tensor, _output: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some((grad * input.apply_op1_no_bwd(&GeluErfDerivative)?)?))
    }
}

/// d/dx [x Φ(x)] = Φ(x) + x φ(x).
struct GeluErfDerivative;

impl CustomOp1 for GeluErfDerivative {
    fn name(&self) -> &'static str {
        "genolens-gelu-erf-derivative"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let input = contiguous_f32(storage, layout, self.name())?;
        let output = map_parallel(input, gelu_derivative_slice);
        Ok((CpuStorage::F32(output), layout.shape().clone()))
    }
}

/// Exact (erf) GELU, HF's `gelu`.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if fused(x) {
        x.contiguous()?.apply_op1(GeluErf)
    } else {
        x.gelu_erf()
    }
}

/// Helpers shared by the kernel unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use candle_core::{Device, Tensor};

    /// Seeded N(0, std²) values.
    pub fn normal(shape: &[usize], seed: u64, std: f32) -> Tensor {
        use rand::SeedableRng;
        use rand_distr::Distribution;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let normal = rand_distr::Normal::new(0.0f32, std).expect("finite std");
        let count: usize = shape.iter().product();
        let values: Vec<f32> = (0..count).map(|_| normal.sample(&mut rng)).collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    /// Largest |a − b|.
    pub fn max_difference(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::max_difference;
    use super::*;
    use candle_core::{Device, Var};

    fn sample(shape: &[usize], seed: u64) -> Tensor {
        (super::test_support::normal(shape, seed, 1.0) * 2.0).unwrap()
    }

    /// The fused op and its composed reference agree in value and in gradient (f64 reference).
    fn check(
        fused_op: impl Fn(&Tensor) -> Result<Tensor>,
        composed: impl Fn(&Tensor) -> Result<Tensor>,
    ) {
        let x = sample(&[3, 5, 37], 1);
        let weights = sample(&[3, 5, 37], 2);
        let variable = Var::from_tensor(&x).unwrap();
        let ours = fused_op(variable.as_tensor()).unwrap();
        let reference_input = x.to_dtype(DType::F64).unwrap();
        let reference_variable = Var::from_tensor(&reference_input).unwrap();
        let reference = composed(reference_variable.as_tensor()).unwrap();
        assert!(max_difference(&ours, &reference.to_dtype(DType::F32).unwrap()) < 1e-6);
        let grad = (ours * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let reference_weights = weights.to_dtype(DType::F64).unwrap();
        let reference_grad = (reference * reference_weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let ours = grad.get(variable.as_tensor()).unwrap();
        let theirs = reference_grad
            .get(reference_variable.as_tensor())
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        assert!(
            max_difference(ours, &theirs) < 1e-5,
            "gradient differs by {}",
            max_difference(ours, &theirs)
        );
    }

    #[test]
    fn softmax_matches_composed_in_value_and_gradient() {
        check(softmax_last_dim, |x| candle_nn::ops::softmax(x, D::Minus1));
    }

    #[test]
    fn grafted_softmax_matches_composed_in_value_and_gradient() {
        // The CUDA path, run on candle's CPU kernel (the graft is device-independent).
        check(graft::softmax_last_dim, |x| {
            candle_nn::ops::softmax(x, D::Minus1)
        });
    }

    #[test]
    fn gelu_matches_candle_erf_gelu_in_value_and_gradient() {
        check(gelu_erf, |x| x.gelu_erf());
    }

    #[test]
    fn masked_softmax_matches_add_then_softmax_in_value_and_gradient() {
        // Batch item 1 has its last two keys padded (f32::MIN), as HF's eager mask does.
        let mut mask = vec![0f32; 2 * 37];
        mask[37 + 35] = f32::MIN;
        mask[37 + 36] = f32::MIN;
        let mask = Tensor::from_vec(mask, (2, 1, 1, 37), &Device::Cpu).unwrap();
        let x = sample(&[2, 3, 5, 37], 1);
        let weights = sample(&[2, 3, 5, 37], 2);
        // 0: the fused CPU op, 1: the CUDA graft (run on candle's CPU kernel), 2: the reference.
        let gradient = |path: usize| {
            let variable = Var::from_tensor(&x).unwrap();
            let y = match path {
                0 => masked_softmax(variable.as_tensor(), &mask).unwrap(),
                1 => graft::masked_softmax(variable.as_tensor(), &mask).unwrap(),
                _ => softmax_last_dim(&variable.as_tensor().broadcast_add(&mask).unwrap()).unwrap(),
            };
            let grads = (&y * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            (y, grads.get(variable.as_tensor()).unwrap().clone())
        };
        let (reference, reference_grad) = gradient(2);
        let (grafted, grafted_grad) = gradient(1);
        assert!(max_difference(&grafted, &reference) < 1e-6);
        assert!(max_difference(&grafted_grad, &reference_grad) < 1e-6);
        let (ours, our_grad) = gradient(0);
        assert!(max_difference(&ours, &reference) < 1e-7);
        assert!(max_difference(&our_grad, &reference_grad) < 1e-6);
        let padded: Vec<f32> = ours
            .get(1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(padded
            .chunks(37)
            .all(|row| row[35] == 0.0 && row[36] == 0.0));
    }

    #[test]
    fn softmax_handles_masked_scores() {
        let scores = Tensor::new(&[[0.5f32, f32::MIN, 1.0, f32::MIN]], &Device::Cpu).unwrap();
        let probabilities: Vec<Vec<f32>> = softmax_last_dim(&scores).unwrap().to_vec2().unwrap();
        assert_eq!(probabilities[0][1], 0.0);
        assert_eq!(probabilities[0][3], 0.0);
        assert!((probabilities[0][0] + probabilities[0][2] - 1.0).abs() < 1e-6);
    }
}
