//! Chefer et al. (2021) "Transformer Interpretability Beyond Attention Visualization" on the
//! hooked model (methods.md §7), with the relevance rules of their BERT code
//! (`BERT_explainability/modules`): linear layers by the z⁺ rule (α = 1, β = 0, no bias),
//! GELU, tanh, softmax, LayerNorm and dropout pass relevance unchanged, residual sums split by
//! each input's share and rescaled to conserve relevance, both attention products by the
//! bilinear rule with each input's relevance halved, the [CLS] pooling by selection. The
//! backward pass starts from the one-hot target (relevance 1 at the class).
//!
//! Three read-outs, as their `ExplanationGenerator`:
//! - `lrp` (their method, seed 000's `LRP`): Ā_l = mean_h (∂y/∂A_l ⊙ R_{A_l})⁺, Â_l = (Ā_l + I)
//!   row-normalised, chained from `start_layer` to the last layer; the [CLS] row, its own entry
//!   set to the row minimum.
//! - `lrp_last` (`generate_LRP_last_layer`): mean_h (R_{A_{L−1}})⁺, [CLS] row, own entry 0.
//! - `full_lrp` (`generate_full_lrp`): relevance at the encoder input (the embedding
//!   LayerNorm's output) summed over hidden dims, [CLS] set to 0.
//!
//! Sequences of a batch are propagated together; every sum their code takes over the whole
//! tensor (the residual rescaling) is taken per sequence, which is the same as their
//! one-sequence-at-a-time runs. Padding receives no relevance.

use candle_core::{DType, Tensor, Var, D};

use crate::error::{GenolensError, Result};
use crate::model::{Batch, BlockSite, HookPoint, HookedModel, Hooks, Intervention};

/// Chefer's `safe_divide`: a / (b + 1e-9) where b ≠ 0, else 0 (broadcasting `b`).
fn safe_divide(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let denominator = (b + 1e-9)?;
    let nonzero = b.ne(0f64)?.to_dtype(a.dtype())?;
    Ok(a.broadcast_div(&denominator)?.broadcast_mul(&nonzero)?)
}

/// `x @ wᵀ` for x [.., in] and w [out, in].
fn apply_weight(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let flat = x.reshape(((), dims[dims.len() - 1]))?;
    let out = flat.matmul(&w.t()?)?;
    let mut out_dims = dims;
    *out_dims.last_mut().expect("rank ≥ 1") = w.dim(0)?;
    Ok(out.reshape(out_dims)?)
}

/// `s @ w` for s [.., out] and w [out, in].
fn apply_transposed(s: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = s.dims().to_vec();
    let flat = s.reshape(((), dims[dims.len() - 1]))?;
    let out = flat.matmul(w)?;
    let mut out_dims = dims;
    *out_dims.last_mut().expect("rank ≥ 1") = w.dim(1)?;
    Ok(out.reshape(out_dims)?)
}

/// The z⁺ rule of their `Linear.relprop` with α = 1: relevance `r` [.., out] of `x @ wᵀ`
/// (bias ignored) back to `x` [.., in].
fn linear_relprop(r: &Tensor, x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let px = x.relu()?;
    let nx = (x - &px)?;
    let pw = w.relu()?;
    let nw = (w - &pw)?;
    let z = (apply_weight(&px, &pw)? + apply_weight(&nx, &nw)?)?;
    let s = safe_divide(r, &z)?;
    Ok(((px * apply_transposed(&s, &pw)?)? + (nx * apply_transposed(&s, &nw)?)?)?)
}

/// Per-sequence sum of a [b, ..] tensor as [b, 1, .., 1] (keeps the rank for broadcasting).
fn per_sequence_sum(x: &Tensor) -> Result<Tensor> {
    let rank = x.rank();
    let flat = x.flatten_from(1)?.sum_keepdim(1)?;
    let mut shape = vec![x.dim(0)?];
    shape.extend(std::iter::repeat_n(1, rank - 1));
    Ok(flat.reshape(shape)?)
}

/// Their `Add.relprop`: relevance `r` of `x0 + x1` split by x_i·r/z, then each part rescaled
/// so the parts' totals are ΣR in proportion to |Σ part| (per sequence).
fn add_relprop(r: &Tensor, x0: &Tensor, x1: &Tensor) -> Result<(Tensor, Tensor)> {
    let z = (x0 + x1)?;
    let s = safe_divide(r, &z)?;
    let a = (x0 * &s)?;
    let b = (x1 * &s)?;
    let (a_sum, b_sum) = (per_sequence_sum(&a)?, per_sequence_sum(&b)?);
    let r_sum = per_sequence_sum(r)?;
    let total = (a_sum.abs()? + b_sum.abs()?)?;
    let a_fact = (safe_divide(&a_sum.abs()?, &total)? * &r_sum)?;
    let b_fact = (safe_divide(&b_sum.abs()?, &total)? * &r_sum)?;
    let a = a.broadcast_mul(&safe_divide(&a_fact, &a_sum)?)?;
    let b = b.broadcast_mul(&safe_divide(&b_fact, &b_sum)?)?;
    Ok((a, b))
}

/// Their `Clone.relprop`: the branches' relevances summed (through x·Σ rᵢ/x).
fn clone_relprop(x: &Tensor, parts: &[Tensor]) -> Result<Tensor> {
    let mut c = safe_divide(&parts[0], x)?;
    for part in &parts[1..] {
        c = (c + safe_divide(part, x)?)?;
    }
    Ok((x * c)?)
}

/// Their `MatMul.relprop` (bilinear, both inputs get x_i ⊙ ∂z/∂x_i · r/z): relevance `r` of
/// `x0 @ x1` (batched over the leading dims) back to both inputs.
fn matmul_relprop(r: &Tensor, x0: &Tensor, x1: &Tensor) -> Result<(Tensor, Tensor)> {
    let z = x0.matmul(x1)?;
    let s = safe_divide(r, &z)?;
    let c0 = s.matmul(&x1.t()?.contiguous()?)?;
    let c1 = x0.t()?.contiguous()?.matmul(&s)?;
    Ok(((x0 * c0)?, (x1 * c1)?))
}

/// What one relevance pass leaves behind.
pub struct CheferRelevance {
    /// Per layer, R_{A_l} [b, h, t, t] (their `attn_cam`: the relevance of the attention
    /// probabilities, halved by the A·V rule).
    pub attention_relevance: Vec<Tensor>,
    /// Per layer, ∂y/∂A_l [b, h, t, t] (their `attn_gradients`).
    pub attention_gradients: Vec<Tensor>,
    /// Relevance at the encoder input [b, t, d] (their `model.relprop` output).
    pub input_relevance: Tensor,
    /// Valid tokens per sequence.
    pub lengths: Vec<usize>,
}

/// One forward (capturing every activation the rules need and the attention gradients), one
/// backward for ∂y/∂A, and the relevance pass, for the logit of `targets[row]`.
pub fn chefer_relevance(
    model: &HookedModel,
    batch: &Batch,
    targets: &[usize],
) -> Result<CheferRelevance> {
    let config = model.config();
    let (layers, heads, head_dim) = (
        config.num_hidden_layers,
        config.num_attention_heads,
        config.head_dim(),
    );
    let rows = batch.size();
    if targets.len() != rows {
        return Err(GenolensError::argument(
            "lrp",
            format!("{} targets for {rows} sequences", targets.len()),
        ));
    }
    let tokens = batch.ids.dim(1)?;
    let device = model.device().clone();
    let dtype = model.word_embeddings(&batch.ids.narrow(1, 0, 1)?)?.dtype();
    // Zero-valued probes added to every pattern: their gradients are ∂y/∂A_l.
    let probes: Vec<Var> = (0..layers)
        .map(|_| Var::zeros((rows, heads, tokens, tokens), dtype, &device))
        .collect::<candle_core::Result<_>>()?;
    let mut hooks = Hooks::none();
    for (layer, probe) in probes.iter().enumerate() {
        let probe = probe.as_tensor().clone();
        hooks = hooks.intervene(
            HookPoint::block(layer, BlockSite::Pattern),
            Intervention::Custom(std::sync::Arc::new(move |a: &Tensor| a + &probe)),
        );
        for site in [
            BlockSite::ResidPre,
            BlockSite::Q,
            BlockSite::K,
            BlockSite::V,
            BlockSite::Pattern,
            BlockSite::Z,
            BlockSite::AttnOut,
            BlockSite::Ln1Normalized,
            BlockSite::MlpPost,
            BlockSite::MlpOut,
        ] {
            hooks = hooks.capture_point(HookPoint::block(layer, site));
        }
    }
    let output = model.forward(batch, &hooks)?;
    let logits = output
        .logits
        .clone()
        .filter(|l| l.rank() == 2)
        .ok_or_else(|| {
            GenolensError::hook(
                "hook_logits",
                format!(
                    "Chefer LRP needs a sequence classifier, and this model is a {}",
                    model.head_kind().hf_class()
                ),
            )
        })?;
    let one_hot = super::one_hot_targets(targets, logits.dim(1)?, &device, DType::F32)?;
    let gradients = (logits * one_hot.to_dtype(dtype)?)?.sum_all()?.backward()?;
    let attention_gradients = probes
        .iter()
        .map(|p| {
            gradients
                .get(p.as_tensor())
                .map(|g| g.to_dtype(DType::F32))
                .transpose()?
                .ok_or_else(|| GenolensError::hook("hook_pattern", "no gradient reached it"))
        })
        .collect::<Result<Vec<_>>>()?;

    let f32_of = |t: &Tensor| -> Result<Tensor> { Ok(t.detach().to_dtype(DType::F32)?) };
    let get = |layer: usize, site: BlockSite| -> Result<Tensor> {
        f32_of(
            output
                .cache
                .get_point(HookPoint::block(layer, site))
                .expect("captured"),
        )
    };
    let parameters = model.named_parameters();
    let weight = |name: &str| -> Result<Tensor> {
        let tensor = parameters.get(name).ok_or_else(|| {
            GenolensError::hook(name, "Chefer LRP needs this weight and the model has none")
        })?;
        Ok(tensor.to_dtype(DType::F32)?)
    };
    let pooled = output
        .pooled
        .as_ref()
        .ok_or_else(|| GenolensError::hook("hook_pooled", "Chefer LRP needs the pooler"))?;

    // Head: classifier (z⁺), tanh (identity), pooler dense (z⁺), [CLS] selection.
    let r = linear_relprop(&one_hot, &f32_of(pooled)?, &weight("classifier.weight")?)?;
    let cls = f32_of(&output.cls)?;
    let r_cls = linear_relprop(&r, &cls, &weight("bert.pooler.dense.weight")?)?;
    let r_cls = (&cls * safe_divide(&r_cls, &cls)?)?;
    let hidden = config.hidden_size;
    let mut relevance = Tensor::cat(
        &[
            r_cls.unsqueeze(1)?,
            Tensor::zeros((rows, tokens - 1, hidden), DType::F32, &device)?,
        ],
        1,
    )?;

    let by_head = |x: Tensor| -> Result<Tensor> { Ok(x.transpose(1, 2)?.contiguous()?) };
    let merge = |x: Tensor| -> Result<Tensor> {
        Ok(x.transpose(1, 2)?
            .contiguous()?
            .reshape((rows, tokens, hidden))?)
    };
    let mut attention_relevance = vec![None; layers];
    for layer in (0..layers).rev() {
        let prefix = format!("bert.encoder.layer.{layer}");
        let w = |name: &str| weight(&format!("{prefix}.{name}.weight"));
        let resid_pre = get(layer, BlockSite::ResidPre)?;
        let normalized_mid = get(layer, BlockSite::Ln1Normalized)?;
        // Output LayerNorm (identity), residual sum, MLP.
        let (r_mlp, r_res) =
            add_relprop(&relevance, &get(layer, BlockSite::MlpOut)?, &normalized_mid)?;
        let r_post = linear_relprop(
            &r_mlp,
            &get(layer, BlockSite::MlpPost)?,
            &w("output.dense")?,
        )?;
        let r_mid = linear_relprop(&r_post, &normalized_mid, &w("intermediate.dense")?)?;
        let r_mid = clone_relprop(&normalized_mid, &[r_mid, r_res])?;
        // Attention LayerNorm (identity), residual sum, output projection.
        let (r_attn, r_skip) = add_relprop(&r_mid, &get(layer, BlockSite::AttnOut)?, &resid_pre)?;
        let z = get(layer, BlockSite::Z)?.reshape((rows, tokens, hidden))?;
        let r_z = linear_relprop(&r_attn, &z, &w("attention.output.dense")?)?;
        let r_z = by_head(r_z.reshape((rows, tokens, heads, head_dim))?)?;
        // A·V, each input's relevance halved.
        let pattern = get(layer, BlockSite::Pattern)?;
        let v = by_head(get(layer, BlockSite::V)?)?;
        let (r_a, r_v) = matmul_relprop(&r_z, &pattern, &v)?;
        let (r_a, r_v) = ((r_a / 2.0)?, (r_v / 2.0)?);
        attention_relevance[layer] = Some(r_a.clone());
        // Softmax (identity), the mask sum (the mask is 0 at every key that gets relevance),
        // then QKᵀ with each input's relevance halved.
        let q = by_head(get(layer, BlockSite::Q)?)?;
        let k_t = by_head(get(layer, BlockSite::K)?)?.t()?.contiguous()?;
        let scores = (q.matmul(&k_t)? * (head_dim as f64).powf(-0.5))?;
        let (r_scores, _) = add_relprop(&r_a, &scores, &scores.zeros_like()?)?;
        let (r_q, r_k_t) = matmul_relprop(&r_scores, &q, &k_t)?;
        let r_q = merge((r_q / 2.0)?)?;
        let r_k = merge((r_k_t / 2.0)?.t()?)?;
        let r_v = merge(r_v)?;
        let r_q = linear_relprop(&r_q, &resid_pre, &w("attention.self.query")?)?;
        let r_k = linear_relprop(&r_k, &resid_pre, &w("attention.self.key")?)?;
        let r_v = linear_relprop(&r_v, &resid_pre, &w("attention.self.value")?)?;
        let r_self = clone_relprop(&resid_pre, &[r_q, r_k, r_v])?;
        relevance = clone_relprop(&resid_pre, &[r_self, r_skip])?;
    }
    Ok(CheferRelevance {
        attention_relevance: attention_relevance
            .into_iter()
            .map(|r| r.expect("every layer visited"))
            .collect(),
        attention_gradients,
        input_relevance: relevance,
        lengths: batch.lengths.clone(),
    })
}

impl CheferRelevance {
    /// Chefer's method from `start_layer` (seed 000's `LRP` = 0): per sequence, one score per
    /// valid token, [CLS]'s own entry set to the row minimum.
    pub fn rollout(&self, start_layer: usize) -> Result<Vec<Vec<f32>>> {
        let layers = self.attention_relevance.len();
        if start_layer >= layers {
            return Err(GenolensError::argument(
                "start_layer",
                format!("{start_layer} is out of range: the model has {layers} layers"),
            ));
        }
        let (rows, _, tokens, _) = self.attention_relevance[0].dims4()?;
        let device = self.attention_relevance[0].device();
        let eye = Tensor::eye(tokens, DType::F32, device)?.unsqueeze(0)?;
        let normalised = |layer: usize| -> Result<Tensor> {
            let weighted = (&self.attention_gradients[layer] * &self.attention_relevance[layer])?
                .relu()?
                .mean(1)?;
            let with_self = weighted.broadcast_add(&eye)?;
            Ok(with_self.broadcast_div(&with_self.sum_keepdim(D::Minus1)?)?)
        };
        // The [CLS] row of Â_{L−1} ⋯ Â_start, from the left: vector × matrix per layer.
        let mut row = normalised(layers - 1)?.narrow(1, 0, 1)?;
        for layer in (start_layer..layers - 1).rev() {
            row = row.matmul(&normalised(layer)?)?;
        }
        let rows_out: Vec<Vec<f32>> = row.reshape((rows, tokens))?.to_vec2()?;
        Ok(self.cls_rows(rows_out, |scores| {
            scores.iter().copied().fold(f32::INFINITY, f32::min)
        }))
    }

    /// `lrp_last`: mean over heads of the last layer's (R_A)⁺, [CLS] row, own entry 0.
    pub fn last_layer(&self) -> Result<Vec<Vec<f32>>> {
        let last = self.attention_relevance.last().expect("at least one layer");
        let (rows, _, tokens, _) = last.dims4()?;
        let row = last
            .relu()?
            .mean(1)?
            .narrow(1, 0, 1)?
            .reshape((rows, tokens))?;
        Ok(self.cls_rows(row.to_vec2()?, |_| 0.0))
    }

    /// `full_lrp`: relevance at the encoder input summed over hidden dims, [CLS] set to 0.
    pub fn full(&self) -> Result<Vec<Vec<f32>>> {
        Ok(self.cls_rows(self.input_sums()?, |_| 0.0))
    }

    /// Σ over hidden dims of the input relevance, [CLS] kept (conservation: the total is 1 up
    /// to rounding and the rules' 1e-9 stabilisers).
    pub fn input_sums(&self) -> Result<Vec<Vec<f32>>> {
        let mut sums: Vec<Vec<f32>> = self.input_relevance.sum(D::Minus1)?.to_vec2()?;
        for (row, n) in sums.iter_mut().zip(&self.lengths) {
            row.truncate(*n);
        }
        Ok(sums)
    }

    fn cls_rows(&self, rows: Vec<Vec<f32>>, cls: impl Fn(&[f32]) -> f32) -> Vec<Vec<f32>> {
        rows.into_iter()
            .zip(&self.lengths)
            .map(|(mut row, &n)| {
                row.truncate(n);
                row[0] = cls(&row);
                row
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn rules_conserve_relevance() -> Result<()> {
        let device = Device::Cpu;
        let x = Tensor::new(&[[[0.5f32, -1.0, 2.0], [1.5, 0.25, -0.75]]], &device)?;
        let w = Tensor::new(&[[0.3f32, -0.2, 0.5], [-0.4, 0.1, 0.2]], &device)?;
        let r = Tensor::new(&[[[0.7f32, 0.3], [0.0, 0.0]]], &device)?;
        let total = |t: &Tensor| -> Result<f32> { Ok(t.sum_all()?.to_scalar::<f32>()?) };
        let back = linear_relprop(&r, &x, &w)?;
        assert!((total(&back)? - 1.0).abs() < 1e-6);
        let (a, b) = add_relprop(&back, &x, &(&x * 0.5)?)?;
        assert!((total(&a)? + total(&b)? - 1.0).abs() < 1e-6);
        let (p, q) = matmul_relprop(&r, &x, &w.t()?.contiguous()?.unsqueeze(0)?)?;
        assert!((total(&p)? - 1.0).abs() < 1e-5 && (total(&q)? - 1.0).abs() < 1e-5);
        let summed = clone_relprop(&x, &[a, b])?;
        assert!((total(&summed)? - 1.0).abs() < 1e-6);
        Ok(())
    }
}
