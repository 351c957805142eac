//! In-silico mutagenesis (methods.md §7): for every position p and base b ≠ x_p, Δ = f(x^{p→b})
//! − f(x), each variant re-tokenised (one base changes up to k overlapping k-mers), the variants
//! of a sequence run as batches of equal-length rows. The identity substitution is 0 and is not
//! computed. A position holding N (or another non-ACGT code) gets all four bases.

use super::{class_scores, TargetKind};
use crate::error::{GenolensError, Result};
use crate::model::{Batch, Hooks, LoadedModel};

/// The four bases, in the column order of [`IsmResult::deltas`].
pub const BASES: [u8; 4] = *b"ACGT";

/// ISM of one sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct IsmResult {
    /// f(x): the target score of the unmutated sequence.
    pub reference: f64,
    /// Per position, Δ for A, C, G, T (0 for the observed base).
    pub deltas: Vec<[f64; 4]>,
}

impl IsmResult {
    /// tangermeme's per-position attribution: Δ − mean over the four bases of Δ, at the observed
    /// base (`ism_centred`); 0 where the observed base is not A, C, G or T (its one-hot is all
    /// zeros, so tangermeme's projection gives 0 there too).
    pub fn centred(&self, sequence: &str) -> Vec<f64> {
        sequence
            .bytes()
            .zip(&self.deltas)
            .map(|(base, deltas)| {
                let mean = deltas.iter().sum::<f64>() / 4.0;
                match BASES.iter().position(|&b| b == base.to_ascii_uppercase()) {
                    Some(observed) => deltas[observed] - mean,
                    None => 0.0,
                }
            })
            .collect()
    }
}

/// ISM of `sequence` for the logit (or log-probability, per `kind`) of class `target`,
/// `batch_size` variants per forward pass.
pub fn ism(
    loaded: &LoadedModel,
    id: &str,
    sequence: &str,
    target: usize,
    kind: TargetKind,
    batch_size: usize,
) -> Result<IsmResult> {
    let upper = sequence.to_ascii_uppercase();
    let bases = upper.as_bytes();
    // (position, base column) of every substitution, then its sequence.
    let mut substitutions = Vec::with_capacity(bases.len() * 3);
    for (p, &observed) in bases.iter().enumerate() {
        for (column, &base) in BASES.iter().enumerate() {
            if base != observed {
                substitutions.push((p, column));
            }
        }
    }
    let logit = |sequences: &[Vec<u8>]| -> Result<Vec<f64>> {
        let ids = sequences
            .iter()
            .map(|s| {
                let text = std::str::from_utf8(s).expect("ASCII bases");
                Ok(loaded.tokenizer.tokenize(id, text)?.ids)
            })
            .collect::<Result<Vec<_>>>()?;
        let batch = Batch::from_ids(&ids, loaded.tokenizer.special().pad, loaded.model.device())?;
        // The last block for [CLS] alone: the head reads nothing else.
        let logits = match loaded.model.classifier_logits(&batch)? {
            Some(logits) => match kind {
                TargetKind::Logit => logits,
                TargetKind::LogProbability => {
                    candle_nn::ops::log_softmax(&logits, candle_core::D::Minus1)?
                }
            },
            None => class_scores(&loaded.model, &batch, &Hooks::none(), kind, "ISM")?,
        };
        let classes = logits.dim(1)?;
        if target >= classes {
            return Err(GenolensError::argument(
                "target",
                format!("class {target} is out of range: the classifier has {classes} classes"),
            ));
        }
        let logits: Vec<Vec<f32>> = logits.to_dtype(candle_core::DType::F32)?.to_vec2()?;
        Ok(logits.iter().map(|row| f64::from(row[target])).collect())
    };
    let reference = logit(&[bases.to_vec()])?[0];
    let mut deltas = vec![[0.0f64; 4]; bases.len()];
    for chunk in substitutions.chunks(batch_size.max(1)) {
        let variants: Vec<Vec<u8>> = chunk
            .iter()
            .map(|&(p, column)| {
                let mut variant = bases.to_vec();
                variant[p] = BASES[column];
                variant
            })
            .collect();
        for (&(p, column), value) in chunk.iter().zip(logit(&variants)?) {
            deltas[p][column] = value - reference;
        }
    }
    Ok(IsmResult { reference, deltas })
}
