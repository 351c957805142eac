//! Inference attention on the CPU as one op: for each (sequence, head) item, one task computes
//! `softmax(q·kᵀ/√d_head + mask)·v` with the [t, t] scores and pattern in its own scratch buffers,
//! which stay in cache, and writes `z` straight into the [b, t, heads, d_head] layout `hook_z`
//! uses. The unfused path stores the scores and the pattern for the whole batch ([b, heads, t, t],
//! 41 MB at 32 × 8 heads × 200 tokens, each written and read back through memory) and copies `z`
//! out of a transposed view. Same products, same softmax kernel, same order of operations: the
//! values equal the unfused path's. Used when no hook reads the scores or changes the pattern.
//!
//! With a gradient wanted (training, gradient × input, integrated gradients; no relevance rules
//! and no hook at the pattern), the op keeps each item's pattern and its backward computes
//! dv = Pᵀ·dz, dP = dz·vᵀ, dS = P ∘ (dP − rowsum(dP ∘ P)), dq = scale·dS·k and
//! dk = scale·dSᵀ·q item by item in the same way: one node in the graph where the unfused path has
//! four, and no [b, heads, t, t] gradient tensor (each was zero-filled and accumulated by candle).

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::ops::kernels::{contiguous_f32, fused, masked_softmax_rows, softmax_rows};
use crate::ops::matmul::{self, Threads, View, ViewMut};

struct FusedAttention {
    /// Additive key mask, [b, t] (0 or f32::MIN).
    mask: Vec<f32>,
    scale: f32,
    /// ALiBi slopes, one per head (DNABERT-2): −slope·|i − j| is added to the scores before the
    /// mask, as the unfused path adds its bias tensor.
    alibi: Option<Vec<f32>>,
    /// When the pattern is wanted too: where the op leaves it ([b, heads, t, t]).
    pattern: Option<std::sync::Mutex<Vec<f32>>>,
}

/// A pointer the tasks share; each writes its own (sequence, head) columns of `z`.
#[derive(Clone, Copy)]
struct Output(*mut f32);
// SAFETY: tasks write disjoint elements (their own sequence and head columns), and the buffer
// outlives the parallel loop.
unsafe impl Send for Output {}
unsafe impl Sync for Output {}

impl Output {
    /// The pointer (a method, so closures capture the whole `Send` wrapper, not its field).
    fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: callers pass offsets inside the buffer.
        unsafe { self.0.add(offset) }
    }
}

/// A matrix operand of [`product`]: its first element, column stride and row stride.
#[derive(Clone, Copy)]
struct Strided(*const f32, usize, usize);

/// dst = beta · lhs·rhs for lhs m × depth and rhs depth × n, dst m × n with column stride 1 and
/// row stride `dst.1`, on the calling thread (each item is one task).
///
/// # Safety
/// Every operand's strides must stay inside its buffer, and no other task may write `dst`'s
/// elements.
#[allow(clippy::too_many_arguments)]
unsafe fn product(
    m: usize,
    n: usize,
    depth: usize,
    dst: (*mut f32, usize),
    lhs: Strided,
    rhs: Strided,
    beta: f32,
) {
    let view = |operand: Strided| View {
        ptr: operand.0,
        row_stride: operand.2 as isize,
        col_stride: operand.1 as isize,
    };
    // SAFETY: the caller's contract.
    unsafe {
        matmul::product(
            m,
            n,
            depth,
            ViewMut::rows(dst.0, dst.1),
            false,
            view(lhs),
            view(rhs),
            beta,
            Threads::Caller,
        );
    }
}

impl FusedAttention {
    /// The op for an additive key mask [b, 1, 1, t]; `keep_pattern` gives it a slot for the
    /// pattern (returned by the forward, or kept for the backward).
    fn new(
        key_mask: &Tensor,
        scale: f64,
        alibi: Option<&[f32]>,
        keep_pattern: bool,
    ) -> Result<Self> {
        Ok(FusedAttention {
            mask: key_mask.flatten_all()?.to_vec1::<f32>()?,
            scale: scale as f32,
            alibi: alibi.map(<[f32]>::to_vec),
            pattern: keep_pattern.then(|| std::sync::Mutex::new(Vec::new())),
        })
    }
}

impl CustomOp3 for FusedAttention {
    fn name(&self) -> &'static str {
        "genolens-fused-attention"
    }

    /// q, k, v: [b, t, heads, d_head], contiguous. Returns z with the same shape.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let q = contiguous_f32(s1, l1, self.name())?;
        let k = contiguous_f32(s2, l2, self.name())?;
        let v = contiguous_f32(s3, l3, self.name())?;
        let (batch, tokens, heads, head_dim) = l1.shape().dims4()?;
        if l2.dims() != l1.dims() || l3.dims() != l1.dims() || self.mask.len() != batch * tokens {
            candle_core::bail!(
                "{}: q {:?}, k {:?}, v {:?} and a mask of {} values do not fit",
                self.name(),
                l1.dims(),
                l2.dims(),
                l3.dims(),
                self.mask.len()
            );
        }
        let width = heads * head_dim;
        let len = batch * tokens * width;
        let mut z = crate::ops::row_ops::new_in_parallel(len, len.div_ceil(4).max(1), |_, _| {});
        let out = Output(z.as_mut_ptr());
        let t = tokens;
        // One (sequence, head) item: its scaled q and scores in scratch, its pattern into
        // `pattern`, its z columns into `z`.
        let item_work =
            |item: usize, scaled: &mut [f32], scores: &mut [f32], pattern: &mut [f32]| {
                let (b, h) = (item / heads, item % heads);
                let base = b * tokens * width + h * head_dim;
                for (i, row) in scaled.chunks_mut(head_dim).enumerate() {
                    let from = &q[base + i * width..][..head_dim];
                    for (s, &x) in row.iter_mut().zip(from) {
                        *s = x * self.scale;
                    }
                }
                // SAFETY: `scaled` is t × d_head (row stride d_head); k's item is read as
                // kᵀ, d_head × t (row stride 1, column stride `width`) inside k's buffer;
                // `scores` is t × t, this task's scratch.
                unsafe {
                    product(
                        t,
                        t,
                        head_dim,
                        (scores.as_mut_ptr(), t),
                        Strided(scaled.as_ptr(), 1, head_dim),
                        Strided(k.as_ptr().add(base), width, 1),
                        1.0,
                    );
                }
                if let Some(slopes) = &self.alibi {
                    let slope = slopes[h];
                    for (i, row) in scores.chunks_mut(t).enumerate() {
                        for (j, score) in row.iter_mut().enumerate() {
                            *score += slope * -(i.abs_diff(j) as f32);
                        }
                    }
                }
                let mask = &self.mask[b * t..(b + 1) * t];
                if mask.iter().all(|&m| m == 0.0) {
                    // No padding: adding zeros changes no value.
                    softmax_rows(pattern, scores, t);
                } else {
                    masked_softmax_rows(pattern, scores, mask, 0, t, t);
                }
                // SAFETY: `pattern` is t × t; v's item is t × d_head (row stride `width`);
                // z's item is t × d_head at the same offsets (row stride `width`), written
                // by this task only.
                unsafe {
                    product(
                        t,
                        head_dim,
                        t,
                        (out.at(base), width),
                        Strided(pattern.as_ptr(), 1, t),
                        Strided(v.as_ptr().add(base), 1, width),
                        1.0,
                    );
                }
            };
        match &self.pattern {
            None => (0..batch * heads).into_par_iter().for_each_init(
                || {
                    (
                        vec![0f32; t * head_dim],
                        vec![0f32; t * t],
                        vec![0f32; t * t],
                    )
                },
                |(scaled, scores, pattern), item| item_work(item, scaled, scores, pattern),
            ),
            Some(slot) => {
                // The pattern is an output, [b, heads, t, t]: each item's block is made by the
                // task that computes it, with scratch kept per thread.
                thread_local! {
                    static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> =
                        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
                }
                let pattern = crate::ops::row_ops::new_in_parallel(
                    batch * heads * t * t,
                    t * t,
                    |offset, pattern| {
                        SCRATCH.with_borrow_mut(|(scaled, scores)| {
                            scaled.resize(t * head_dim, 0.0);
                            scores.resize(t * t, 0.0);
                            item_work(offset / (t * t), scaled, scores, pattern)
                        })
                    },
                );
                *slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = pattern;
            }
        }
        Ok((CpuStorage::F32(z), l1.shape().clone()))
    }

    /// Gradients of q, k and v from the pattern the forward kept (see the module docs).
    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _z: &Tensor,
        dz: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(slot) = &self.pattern else {
            candle_core::bail!(
                "{}: the forward kept no pattern for a backward",
                self.name()
            );
        };
        let guard = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let pattern: &[f32] = &guard;
        let (batch, tokens, heads, head_dim) = q.dims4()?;
        let t = tokens;
        if pattern.len() != batch * heads * t * t || dz.dims() != q.dims() {
            candle_core::bail!(
                "{}: a pattern of {} values and dz {:?} do not fit q {:?}",
                self.name(),
                pattern.len(),
                dz.dims(),
                q.dims()
            );
        }
        // The inputs' own buffers, read in place (a strided input is made contiguous first).
        let [q, k, v, dz] = [q, k, v, dz].map(|x| x.contiguous());
        let (q, k, v, dz) = (q?, k?, v?, dz?);
        let held = [&q, &k, &v, &dz].map(|x| x.storage_and_layout());
        let name = self.name();
        fn values<'a>(
            storage: &'a candle_core::Storage,
            layout: &Layout,
            name: &str,
        ) -> Result<&'a [f32]> {
            match storage {
                candle_core::Storage::Cpu(cpu) => contiguous_f32(cpu, layout, name),
                _ => candle_core::bail!("{name}: expected tensors on the CPU"),
            }
        }
        let (q_values, k_values, v_values, dz_values) = (
            values(&held[0].0, held[0].1, name)?,
            values(&held[1].0, held[1].1, name)?,
            values(&held[2].0, held[2].1, name)?,
            values(&held[3].0, held[3].1, name)?,
        );
        let width = heads * head_dim;
        let len = batch * t * width;
        let new_output =
            || crate::ops::row_ops::new_in_parallel(len, len.div_ceil(4).max(1), |_, _| {});
        let (mut dq, mut dk, mut dv) = (new_output(), new_output(), new_output());
        let (dq_out, dk_out, dv_out) = (
            Output(dq.as_mut_ptr()),
            Output(dk.as_mut_ptr()),
            Output(dv.as_mut_ptr()),
        );
        let scale = self.scale;
        // One (sequence, head) item; `ds` is t × t scratch.
        let item_work = |item: usize, ds: &mut [f32]| {
            let (b, h) = (item / heads, item % heads);
            let base = b * t * width + h * head_dim;
            let p = &pattern[item * t * t..(item + 1) * t * t];
            let [q_item, k_item, v_item, dz_item] =
                [q_values, k_values, v_values, dz_values].map(|x| x[base..].as_ptr());
            // SAFETY (every product below): q, k, v and dz items are t × d_head with row stride
            // `width` inside their buffers; P and `ds` are t × t (Pᵀ and dSᵀ are read with the
            // strides swapped); the dq, dk and dv items are written by this task only.
            // dv = Pᵀ·dz.
            unsafe {
                product(
                    t,
                    head_dim,
                    t,
                    (dv_out.at(base), width),
                    Strided(p.as_ptr(), t, 1),
                    Strided(dz_item, 1, width),
                    1.0,
                );
            }
            // dP = dz·vᵀ, into `ds`.
            unsafe {
                product(
                    t,
                    t,
                    head_dim,
                    (ds.as_mut_ptr(), t),
                    Strided(dz_item, 1, width),
                    Strided(v_item, width, 1),
                    1.0,
                );
            }
            // dS = P ∘ (dP − Σ_j dP·P), row by row (masked keys have P = 0, so dS = 0 there).
            for (ds_row, p_row) in ds.chunks_mut(t).zip(p.chunks(t)) {
                let total = crate::ops::vector_math::dot(ds_row, p_row);
                for (d, &pv) in ds_row.iter_mut().zip(p_row) {
                    *d = pv * (*d - total);
                }
            }
            // dq = scale·dS·k, dk = scale·dSᵀ·q.
            unsafe {
                product(
                    t,
                    head_dim,
                    t,
                    (dq_out.at(base), width),
                    Strided(ds.as_ptr(), 1, t),
                    Strided(k_item, 1, width),
                    scale,
                );
                product(
                    t,
                    head_dim,
                    t,
                    (dk_out.at(base), width),
                    Strided(ds.as_ptr(), t, 1),
                    Strided(q_item, 1, width),
                    scale,
                );
            }
        };
        (0..batch * heads)
            .into_par_iter()
            .for_each_init(|| vec![0f32; t * t], |ds, item| item_work(item, ds));
        let tensor = |values: Vec<f32>| Tensor::from_vec(values, q.shape(), q.device());
        Ok((Some(tensor(dq)?), Some(tensor(dk)?), Some(tensor(dv)?)))
    }
}

/// Whether [`attention`] applies: f32 on the CPU, no gradient wanted.
pub(crate) fn applies(q: &Tensor, k: &Tensor, v: &Tensor) -> bool {
    [q, k, v].iter().all(|x| fused(x) && !x.track_op())
}

/// Whether [`attention_with_gradient`] applies: f32 on the CPU, a gradient wanted.
pub(crate) fn applies_with_gradient(q: &Tensor, k: &Tensor, v: &Tensor) -> bool {
    [q, k, v].iter().all(|x| fused(x)) && [q, k, v].iter().any(|x| x.track_op())
}

/// [`attention`] as one node of the graph, with its own backward (the module docs): for a
/// forward that wants gradients and reads or changes nothing at the scores or the pattern. Check
/// [`applies_with_gradient`] first.
pub(crate) fn attention_with_gradient(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_mask: &Tensor,
    scale: f64,
    alibi: Option<&[f32]>,
) -> Result<Tensor> {
    // The pattern stays in the op (it lives as long as the graph) for the backward.
    let op = FusedAttention::new(key_mask, scale, alibi, true)?;
    q.contiguous()?
        .apply_op3(&k.contiguous()?, &v.contiguous()?, op)
}

/// z = softmax(q·kᵀ·scale + alibi + mask)·v for q, k, v [b, t, heads, d_head], an additive key
/// mask [b, 1, 1, t] and optional ALiBi slopes (one per head); z is [b, t, heads, d_head]. Check
/// [`applies`] first.
pub(crate) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_mask: &Tensor,
    scale: f64,
    alibi: Option<&[f32]>,
) -> Result<Tensor> {
    Ok(fused_attention(q, k, v, key_mask, scale, alibi, false)?.0)
}

/// [`attention`] that also returns the pattern, [b, heads, t, t] (the values of the unfused
/// path's `hook_pattern`), written by each item's task straight from its scores in cache: for a
/// forward that captures the pattern but changes nothing at the scores or the pattern.
pub(crate) fn attention_with_pattern(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_mask: &Tensor,
    scale: f64,
    alibi: Option<&[f32]>,
) -> Result<(Tensor, Tensor)> {
    let (z, pattern) = fused_attention(q, k, v, key_mask, scale, alibi, true)?;
    let (batch, tokens, heads, _) = q.dims4()?;
    Ok((
        z,
        Tensor::from_vec(pattern, (batch, heads, tokens, tokens), q.device())?,
    ))
}

fn fused_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_mask: &Tensor,
    scale: f64,
    alibi: Option<&[f32]>,
    with_pattern: bool,
) -> Result<(Tensor, Vec<f32>)> {
    let op = FusedAttention::new(key_mask, scale, alibi, with_pattern)?;
    let z = q
        .contiguous()?
        .apply_op3_no_bwd(&k.contiguous()?, &v.contiguous()?, &op)?;
    // Empty when the pattern was not asked for.
    let pattern = op.pattern.map_or_else(Vec::new, |slot| {
        slot.into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    });
    Ok((z, pattern))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::bert::alibi_bias;
    use crate::ops::batched_matmul::batched_matmul;
    use crate::ops::kernels::masked_softmax;
    use candle_core::Device;

    /// The additive key mask of `b` sequences of `t` tokens with the given real lengths.
    fn padded_mask(t: usize, lengths: &[usize]) -> Tensor {
        let valid: Vec<u32> = lengths
            .iter()
            .flat_map(|&length| (0..t).map(move |i| u32::from(i < length)))
            .collect();
        let valid = Tensor::from_vec(valid, (lengths.len(), t), &Device::Cpu).unwrap();
        crate::ops::additive_key_mask(&valid).unwrap()
    }

    #[test]
    fn equals_the_unfused_products_and_softmax_bit_for_bit() {
        let (b, t, h, d) = (3, 37, 4, 8);
        let sample =
            |seed: u64| crate::ops::kernels::test_support::normal(&[b, t, h, d], seed, 1.0);
        let (q, k, v) = (sample(1), sample(2), sample(3));
        // The second sequence has 30 real tokens, the third 5.
        let mask = padded_mask(t, &[t, 30, 5]);
        let scale = (d as f64).powf(-0.5);
        assert!(applies(&q, &k, &v));
        let fused = attention(&q, &k, &v, &mask, scale, None).unwrap();
        let by_head = |x: &Tensor| x.transpose(1, 2).unwrap();
        let product =
            batched_matmul(&(by_head(&q) * scale).unwrap(), &by_head(&k).t().unwrap()).unwrap();
        let pattern = masked_softmax(&product, &mask).unwrap();
        let unfused_z = |pattern: &Tensor| {
            batched_matmul(pattern, &by_head(&v))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let unfused = unfused_z(&pattern);
        let flat = |x: &Tensor| x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(flat(&fused), flat(&unfused));
        // The pattern the fused op can return is the unfused pattern, and z is unchanged.
        let (z, fused_pattern) = attention_with_pattern(&q, &k, &v, &mask, scale, None).unwrap();
        assert_eq!(fused_pattern.dims(), pattern.dims());
        assert_eq!(flat(&fused_pattern), flat(&pattern));
        assert_eq!(flat(&z), flat(&unfused));
        // With ALiBi biases (any head count), against the bias added to the unfused product.
        let slopes = [0.5f32, 0.25, 0.7, 0.125];
        let fused = attention(&q, &k, &v, &mask, scale, Some(&slopes)).unwrap();
        let bias = alibi_bias(&slopes, t, t, &Device::Cpu).unwrap();
        let pattern = masked_softmax(&product.broadcast_add(&bias).unwrap(), &mask).unwrap();
        let unfused = unfused_z(&pattern);
        assert_eq!(flat(&fused), flat(&unfused));
        let (z, fused_pattern) =
            attention_with_pattern(&q, &k, &v, &mask, scale, Some(&slopes)).unwrap();
        assert_eq!(flat(&fused_pattern), flat(&pattern));
        assert_eq!(flat(&z), flat(&unfused));
    }

    #[test]
    fn gradient_equals_the_unfused_graphs() {
        let (b, t, h, d) = (3, 29, 4, 8);
        let sample =
            |seed: u64| crate::ops::kernels::test_support::normal(&[b, t, h, d], seed, 1.0);
        let mask = padded_mask(t, &[t, 20, 3]);
        let scale = (d as f64).powf(-0.5);
        // A weighted sum of z, so that every element of z gets its own gradient.
        let weights = sample(7);
        let slopes = [0.5f32, 0.25, 0.7, 0.125];
        for alibi in [None, Some(&slopes[..])] {
            let vars = [sample(1), sample(2), sample(3)]
                .map(|x| candle_core::Var::from_tensor(&x).unwrap());
            let [q, k, v] = vars.each_ref().map(|x| x.as_tensor().clone());
            assert!(!applies(&q, &k, &v) && applies_with_gradient(&q, &k, &v));
            let fused = attention_with_gradient(&q, &k, &v, &mask, scale, alibi).unwrap();
            let by_head = |x: &Tensor| x.transpose(1, 2).unwrap();
            let mut product =
                batched_matmul(&(by_head(&q) * scale).unwrap(), &by_head(&k).t().unwrap()).unwrap();
            if let Some(slopes) = alibi {
                let bias = alibi_bias(slopes, t, t, &Device::Cpu).unwrap();
                product = product.broadcast_add(&bias).unwrap();
            }
            let pattern = masked_softmax(&product, &mask).unwrap();
            let unfused = batched_matmul(&pattern, &by_head(&v))
                .unwrap()
                .transpose(1, 2)
                .unwrap();
            let flat = |x: &Tensor| x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            // The forward is the inference op's: bit for bit the unfused z.
            assert_eq!(flat(&fused), flat(&unfused.contiguous().unwrap()));
            let gradients = |z: &Tensor| {
                let grads = (z * &weights)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                [&q, &k, &v].map(|x| flat(grads.get(x).unwrap()))
            };
            let (ours, reference) = (gradients(&fused), gradients(&unfused));
            for (name, (a, r)) in ["q", "k", "v"].iter().zip(ours.iter().zip(&reference)) {
                let largest = r.iter().fold(0f32, |m, x| m.max(x.abs()));
                for (x, y) in a.iter().zip(r) {
                    assert!(
                        (x - y).abs() <= 1e-5 * largest.max(1.0),
                        "d{name} with alibi {alibi:?}: {x} vs {y}"
                    );
                }
                assert!(largest > 0.1, "d{name} should not vanish");
            }
        }
    }
}
