//! Fidelity: splice the SAE's reconstruction back in at its hook and see what the model does.
//!
//! Three forwards per batch: clean, with the hook's rows replaced by decode(encode(x)), and with
//! them set to zero (zero-ablation). Where the rows sit: `hook_cls`/`hook_pooled` as they are;
//! `cls` rows at token 0 of a token hook; `tokens` rows at every k-mer token ([CLS], [SEP] and
//! padding keep their activations); `mean` rows are not a site of the model, so every k-mer token
//! is shifted by x̂ − x̄ (the mean becomes the reconstruction; zero-ablation subtracts the mean).
//!
//! Loss: a classifier's cross-entropy against the labels (against the clean prediction for
//! unlabelled sequences); an MLM's cross-entropy at 15 % of k-mer tokens masked in spans (seeded).
//! Loss recovered = (L_zero − L_sae) / (L_zero − L_clean) (SAELens's CE-loss score).

use std::sync::Arc;

use candle_core::{DType, Device, Tensor, D};
use rand::SeedableRng;

use crate::analysis::sae::cache::RowKind;
use crate::analysis::sae::model::Sae;
use crate::data::Example;
use crate::error::{GenolensError, Result};
use crate::model::hooks::HookFn;
use crate::model::{Batch, HeadKind, HookPoint, Hooks, Intervention, LoadedModel};

/// Replaces the rows of `kind` in `activation` by `rows(x)` ([n, F] → [n, F]).
fn splice(
    activation: &Tensor,
    kind: RowKind,
    lengths: &[usize],
    rows: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> candle_core::Result<Tensor> {
    let dims = activation.dims().to_vec();
    if kind == RowKind::None || dims.len() == 2 {
        return rows(activation);
    }
    let (b, t) = (dims[0], dims[1]);
    let width: usize = dims[2..].iter().product();
    let flat = activation.reshape((b, t, width))?;
    let spliced = match kind {
        RowKind::Cls => {
            let first = rows(&flat.narrow(1, 0, 1)?.squeeze(1)?)?.unsqueeze(1)?;
            Tensor::cat(&[first, flat.narrow(1, 1, t - 1)?], 1)?
        }
        RowKind::Tokens | RowKind::Mean => {
            let mut mask = vec![0f32; b * t];
            for (row, &length) in lengths.iter().enumerate() {
                for p in 1..length.saturating_sub(1) {
                    mask[row * t + p] = 1.0;
                }
            }
            let mask = Tensor::from_vec(mask, (b, t, 1), activation.device())?
                .to_dtype(activation.dtype())?;
            if kind == RowKind::Tokens {
                let all = rows(&flat.reshape((b * t, width))?)?.reshape((b, t, width))?;
                (&flat + (all - &flat)?.broadcast_mul(&mask)?)?
            } else {
                let counts = mask.sum(1)?.clamp(1.0, f64::MAX)?; // [b,1]
                let mean = flat.broadcast_mul(&mask)?.sum(1)?.broadcast_div(&counts)?;
                let shift = (rows(&mean)? - mean)?.unsqueeze(1)?;
                (&flat + shift.broadcast_mul(&mask)?)?
            }
        }
        RowKind::None => unreachable!(),
    };
    spliced.reshape(dims)
}

fn sae_rows(sae: &Sae) -> impl Fn(&Tensor) -> candle_core::Result<Tensor> + Send + Sync + 'static {
    let sae = sae.clone();
    move |x: &Tensor| {
        let dtype = x.dtype();
        sae.reconstruct(&x.to_dtype(DType::F32)?)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?
            .to_dtype(dtype)
    }
}

fn splice_hooks(point: HookPoint, kind: RowKind, lengths: Vec<usize>, rows: HookFn) -> Hooks {
    Hooks::none().intervene(
        point,
        Intervention::Custom(Arc::new(move |activation: &Tensor| {
            splice(activation, kind, &lengths, rows.as_ref())
        })),
    )
}

/// Per-row cross-entropy of `logits` [n, C] against `targets`, as f64.
fn cross_entropy(logits: &Tensor, targets: &[u32]) -> Result<Vec<f64>> {
    let log_p = candle_nn::ops::log_softmax(&logits.to_dtype(DType::F32)?, D::Minus1)?
        .to_device(&Device::Cpu)?
        .to_vec2::<f32>()?;
    Ok(log_p
        .iter()
        .zip(targets)
        .map(|(row, &t)| -(row[t as usize] as f64))
        .collect())
}

crate::table_row! {
    /// What splicing the reconstruction did (`sae_fidelity.parquet`).
    pub struct FidelityRow {
        /// Hook.
        pub hook: String,
        /// Rows spliced: cls, mean, tokens or none.
        pub rows: String,
        /// Sequences.
        pub sequences: u64,
        /// `labels`, `clean prediction` or `masked tokens`.
        pub loss_target: String,
        /// Mean loss of the clean model.
        pub loss_clean: f64,
        /// Mean loss with the reconstruction spliced in.
        pub loss_sae: f64,
        /// Mean loss with the rows zero-ablated.
        pub loss_zero: f64,
        /// (loss_zero − loss_sae) / (loss_zero − loss_clean).
        pub loss_recovered: f64,
        /// Mean |logit_sae − logit_clean| over sequences and classes (classifier) or masked
        /// tokens and vocabulary (MLM).
        pub mean_abs_logit_change: f64,
        /// Mean KL(clean ‖ sae) of the output distributions (nats).
        pub kl_divergence: f64,
        /// Share of predictions (argmax) unchanged by the splice.
        pub agreement: f64,
    }
}

/// Sums over one comparison of clean and spliced logits.
#[derive(Default)]
struct Sums {
    n: usize,
    clean: f64,
    sae: f64,
    zero: f64,
    abs_change: f64,
    abs_count: usize,
    kl: f64,
    agree: usize,
}

impl Sums {
    fn add(&mut self, clean: &Tensor, sae: &Tensor, zero: &Tensor, targets: &[u32]) -> Result<()> {
        let (c, s, z) = (
            cross_entropy(clean, targets)?,
            cross_entropy(sae, targets)?,
            cross_entropy(zero, targets)?,
        );
        self.clean += c.iter().sum::<f64>();
        self.sae += s.iter().sum::<f64>();
        self.zero += z.iter().sum::<f64>();
        self.n += targets.len();
        let clean = clean.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
        let sae = sae.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
        let change = (&sae - &clean)?.abs()?;
        self.abs_change += change.sum_all()?.to_scalar::<f32>()? as f64;
        self.abs_count += change.elem_count();
        let p = candle_nn::ops::softmax(&clean, D::Minus1)?;
        let kl = (&p
            * (candle_nn::ops::log_softmax(&clean, D::Minus1)?
                - candle_nn::ops::log_softmax(&sae, D::Minus1)?)?)?
        .sum_all()?
        .to_scalar::<f32>()? as f64;
        self.kl += kl;
        let a = clean.argmax(D::Minus1)?.to_vec1::<u32>()?;
        let b = sae.argmax(D::Minus1)?.to_vec1::<u32>()?;
        self.agree += a.iter().zip(&b).filter(|(x, y)| x == y).count();
        Ok(())
    }

    fn finish(
        self,
        point: HookPoint,
        kind: RowKind,
        sequences: usize,
        loss_target: &str,
    ) -> FidelityRow {
        let n = self.n.max(1) as f64;
        let (clean, sae, zero) = (self.clean / n, self.sae / n, self.zero / n);
        FidelityRow {
            hook: point.to_string(),
            rows: kind.name().into(),
            sequences: sequences as u64,
            loss_target: loss_target.into(),
            loss_clean: clean,
            loss_sae: sae,
            loss_zero: zero,
            loss_recovered: (zero - sae) / (zero - clean),
            mean_abs_logit_change: self.abs_change / self.abs_count.max(1) as f64,
            kl_divergence: self.kl / n,
            agreement: self.agree as f64 / n,
        }
    }
}

/// Classes of a classifier head (0 for an MLM).
fn logits_width(loaded: &LoadedModel) -> Result<usize> {
    Ok(match loaded.model.head_kind() {
        HeadKind::MaskedLm => 0,
        _ => loaded.model.config().num_labels.unwrap_or(2),
    })
}

/// Fidelity of `sae` (on raw activations, as saved) at `point` with rows of `kind`, over
/// `examples` in batches of `batch_size`. `seed` draws the MLM masks.
pub fn fidelity(
    loaded: &LoadedModel,
    examples: &[Example],
    sae: &Sae,
    point: HookPoint,
    kind: RowKind,
    batch_size: usize,
    seed: u64,
) -> Result<FidelityRow> {
    if examples.is_empty() {
        return Err(GenolensError::argument("fidelity", "no sequences"));
    }
    let model = &loaded.model;
    let head = model.head_kind();
    if matches!(head, HeadKind::Encoder { .. }) {
        return Err(GenolensError::argument(
            "fidelity",
            "the model has no head (neither classifier nor MLM): nothing to measure the splice by",
        ));
    }
    let device = model.device().clone();
    let reconstruct: HookFn = Arc::new(sae_rows(sae));
    let zero: HookFn = Arc::new(|x: &Tensor| x.zeros_like());
    let classes = logits_width(loaded)?;
    let mut sums = Sums::default();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let bar = crate::progress::bar(examples.len() as u64, "fidelity (clean, SAE, zero-ablated)");
    for chunk in examples.chunks(batch_size.max(1)) {
        let tokenized = chunk
            .iter()
            .map(|e| loaded.tokenizer.tokenize(&e.id, &e.sequence))
            .collect::<Result<Vec<_>>>()?;
        let special = &loaded.tokenizer.special();
        let (batch, targets, positions) = if head == HeadKind::MaskedLm {
            let ids: Vec<Vec<u32>> = tokenized.iter().map(|t| t.ids.clone()).collect();
            // mask_spans leaves the last position alone (DNABERT's [SEP]); the NT has none, so
            // its rows count one more.
            let closing = tokenized
                .first()
                .is_none_or(|t| t.spans.last().is_some_and(Option::is_none));
            let lengths: Vec<usize> = ids
                .iter()
                .map(|i| i.len() + usize::from(!closing))
                .collect();
            let masked = crate::train::masking::mask_spans(
                &ids,
                &lengths,
                loaded.tokenizer.mlm_span(),
                0.15,
                special,
                &loaded.tokenizer.sequence_token_ids(),
                &mut rng,
            );
            let mut batch = Batch::from_ids(&masked.ids, special.pad, &device)?;
            batch.ends_with_special = closing;
            (batch, masked.labels.clone(), Some(masked.positions.clone()))
        } else {
            let batch = Batch::from_tokenized(&tokenized, special.pad, &device)?;
            (batch, Vec::new(), None)
        };
        let run = |rows: Option<&HookFn>| -> Result<Tensor> {
            let hooks = match rows {
                Some(r) => splice_hooks(point, kind, batch.lengths.clone(), r.clone()),
                None => Hooks::none(),
            };
            let logits = model.forward(&batch, &hooks)?.logits.expect("a head");
            Ok(match &positions {
                Some(positions) => {
                    let (_, t, v) = logits.dims3()?;
                    let index: Vec<u32> =
                        positions.iter().map(|&(r, p)| (r * t + p) as u32).collect();
                    let index = Tensor::from_vec(index, positions.len(), logits.device())?;
                    logits.reshape(((), v))?.index_select(&index, 0)?
                }
                None => logits,
            })
        };
        let clean = run(None)?;
        let spliced = run(Some(&reconstruct))?;
        let ablated = run(Some(&zero))?;
        let targets = if head == HeadKind::MaskedLm {
            targets
        } else {
            chunk
                .iter()
                .zip(clean.argmax(D::Minus1)?.to_vec1::<u32>()?)
                .map(|(e, predicted)| {
                    e.label
                        .as_deref()
                        .and_then(|l| l.parse::<u32>().ok())
                        .filter(|&c| (c as usize) < classes)
                        .unwrap_or(predicted)
                })
                .collect()
        };
        sums.add(&clean, &spliced, &ablated, &targets)?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let target = match head {
        HeadKind::MaskedLm => "masked tokens",
        _ if examples.iter().all(|e| e.label.is_some()) => "labels",
        _ => "clean prediction",
    };
    Ok(sums.finish(point, kind, examples.len(), target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splicing_the_identity_changes_nothing_and_mean_shifts_the_mean() {
        let x = Tensor::arange(0f32, 24.0, &Device::Cpu)
            .unwrap()
            .reshape((2, 4, 3))
            .unwrap();
        let identity = |t: &Tensor| Ok(t.clone());
        for kind in [RowKind::Cls, RowKind::Tokens, RowKind::Mean] {
            let y = splice(&x, kind, &[4, 3], &identity).unwrap();
            let diff = (y - &x).unwrap().abs().unwrap().max_all().unwrap();
            assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "{kind:?}");
        }
        // Zeroing the mean: k-mer tokens are centred, [CLS]/[SEP]/padding untouched.
        let zero = |t: &Tensor| t.zeros_like();
        let y = splice(&x, RowKind::Mean, &[4, 3], &zero).unwrap();
        let y = y.to_vec3::<f32>().unwrap();
        assert_eq!(y[0][0], vec![0.0, 1.0, 2.0]);
        assert_eq!(y[0][1], vec![-1.5, -1.5, -1.5]);
        assert_eq!(y[0][2], vec![1.5, 1.5, 1.5]);
        assert_eq!(y[1][1], vec![0.0, 0.0, 0.0]);
        assert_eq!(y[1][3], vec![21.0, 22.0, 23.0]);
        let y = splice(&x, RowKind::Cls, &[4, 3], &zero)
            .unwrap()
            .to_vec3::<f32>()
            .unwrap();
        assert_eq!((y[0][0][0], y[0][1][0]), (0.0, 3.0));
    }
}
