//! Token scores → nucleotide scores (methods.md §1, §7), and back. For DNABERT's overlapping
//! k-mers (token i covers bases [i, i + k)), a base's score is the mean (DNABERT's convention)
//! or the sum of the scores of the tokens that cover it; [CLS] and [SEP] are left out. For
//! non-overlapping tokens (DNABERT-2's BPE, NT's 6-mers) seed 001's four strategies: token →
//! nucleotide (c) passed on (each base gets its token's score: `mean`, which is `sum` there) and
//! (d) equally distributed (score / token length: `equal`); nucleotide → token (a) sum and
//! (b) mean ([`nucleotide_scores_to_tokens`]). Seed 001 then scales each sequence to [−1, 1] by
//! its largest |score|; genolens keeps the raw values beside the scaled.

use std::ops::Range;

use crate::error::{GenolensError, Result};
use crate::tokenize::covering_kmers;

/// How the tokens covering a base combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spread {
    /// Mean over the covering tokens (seed 001's "passed on" for non-overlapping tokens).
    Mean,
    /// Sum over the covering tokens.
    Sum,
    /// Σ over the covering tokens of score / token length (seed 001's "equally distributed":
    /// the bases' total equals the tokens' total).
    Equal,
}

impl Spread {
    /// The name on the command line and in run.json.
    pub fn name(self) -> &'static str {
        match self {
            Spread::Mean => "mean",
            Spread::Sum => "sum",
            Spread::Equal => "equal",
        }
    }
}

/// Per-base scores of a `length`-nt sequence from its token scores (one per model position,
/// special tokens included) and each token's nucleotide span (`None` for special tokens), for
/// any tokenizer. A base no token covers scores 0.
pub fn token_scores_to_nucleotides(
    token_scores: &[f32],
    spans: &[Option<Range<usize>>],
    length: usize,
    spread: Spread,
) -> Result<Vec<f32>> {
    if token_scores.len() != spans.len() {
        return Err(GenolensError::argument(
            "token scores",
            format!("{} scores for {} tokens", token_scores.len(), spans.len()),
        ));
    }
    let mut total = vec![0f64; length];
    let mut count = vec![0usize; length];
    for (&score, span) in token_scores.iter().zip(spans) {
        let Some(span) = span else { continue };
        let width = span.len() as f64;
        for base in span.clone().filter(|&b| b < length) {
            total[base] += match spread {
                Spread::Equal => f64::from(score) / width,
                Spread::Mean | Spread::Sum => f64::from(score),
            };
            count[base] += 1;
        }
    }
    Ok(total
        .iter()
        .zip(&count)
        .map(|(&t, &c)| match spread {
            Spread::Mean if c > 0 => (t / c as f64) as f32,
            _ => t as f32,
        })
        .collect())
}

/// Per-token scores (one per model position; special tokens 0) from per-base scores: seed
/// 001's (a) sum (`Spread::Sum`) or (b) mean (`Spread::Mean`) of the token's bases.
pub fn nucleotide_scores_to_tokens(
    base_scores: &[f64],
    spans: &[Option<Range<usize>>],
    spread: Spread,
) -> Vec<f64> {
    spans
        .iter()
        .map(|span| match span {
            Some(span) if !span.is_empty() => {
                let sum: f64 = span.clone().filter_map(|b| base_scores.get(b)).sum();
                match spread {
                    Spread::Mean => sum / span.len() as f64,
                    Spread::Sum | Spread::Equal => sum,
                }
            }
            _ => 0.0,
        })
        .collect()
}

/// Per-base scores of a `length`-nt sequence from its token scores `[CLS], t_0 … t_{L−k}, [SEP]`
/// (`length − k + 3` values).
pub fn kmer_scores_to_nucleotides(
    token_scores: &[f32],
    length: usize,
    k: usize,
    spread: Spread,
) -> Result<Vec<f32>> {
    if k == 0 || length < k || token_scores.len() != length - k + 3 {
        return Err(GenolensError::argument(
            "token scores",
            format!(
                "{} scores for a {length} nt sequence of {k}-mers: expected [CLS], {} k-mers and [SEP]",
                token_scores.len(),
                length.saturating_sub(k) + 1
            ),
        ));
    }
    let kmers = &token_scores[1..token_scores.len() - 1];
    Ok((0..length)
        .map(|position| {
            let covering = covering_kmers(position, length, k);
            let count = covering.len() as f64;
            let total: f64 = kmers[covering].iter().map(|&s| f64::from(s)).sum();
            match spread {
                Spread::Mean => (total / count) as f32,
                Spread::Sum => total as f32,
                Spread::Equal => (total / k as f64) as f32,
            }
        })
        .collect())
}

/// Seed 001's scaling: each value divided by the largest |value| (all zeros stay zero).
pub fn scale_to_unit(values: &[f32]) -> Vec<f32> {
    let largest = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if largest == 0.0 || !largest.is_finite() {
        return values.to_vec();
    }
    values.iter().map(|v| v / largest).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_kmers_spread_by_mean_or_sum() {
        // 5 nt, k = 3: three k-mers (bases 0-2, 1-3, 2-4) between [CLS] and [SEP].
        let tokens = [9.0, 3.0, 6.0, 9.0, -9.0];
        let mean = kmer_scores_to_nucleotides(&tokens, 5, 3, Spread::Mean).unwrap();
        assert_eq!(mean, vec![3.0, 4.5, 6.0, 7.5, 9.0]);
        let sum = kmer_scores_to_nucleotides(&tokens, 5, 3, Spread::Sum).unwrap();
        assert_eq!(sum, vec![3.0, 9.0, 18.0, 15.0, 9.0]);
        assert!(kmer_scores_to_nucleotides(&tokens, 6, 3, Spread::Mean).is_err());
        assert_eq!(scale_to_unit(&[2.0, -4.0, 1.0]), vec![0.5, -1.0, 0.25]);
        assert_eq!(scale_to_unit(&[0.0, 0.0]), vec![0.0, 0.0]);
    }

    #[test]
    fn spans_give_the_kmer_spread_and_seed_001s_strategies() {
        // Overlapping 3-mers of 5 nt as spans: the same as the k-mer formula.
        let tokens = [9.0, 3.0, 6.0, 9.0, -9.0];
        let spans = vec![None, Some(0..3), Some(1..4), Some(2..5), None];
        for spread in [Spread::Mean, Spread::Sum, Spread::Equal] {
            assert_eq!(
                token_scores_to_nucleotides(&tokens, &spans, 5, spread).unwrap(),
                kmer_scores_to_nucleotides(&tokens, 5, 3, spread).unwrap()
            );
        }
        // Non-overlapping tokens (BPE-like: 2 + 1 + 3 nt): passed on, equally distributed.
        let tokens = [5.0, 4.0, -1.0, 6.0, 5.0];
        let spans = vec![None, Some(0..2), Some(2..3), Some(3..6), None];
        let passed = token_scores_to_nucleotides(&tokens, &spans, 6, Spread::Mean).unwrap();
        assert_eq!(passed, vec![4.0, 4.0, -1.0, 6.0, 6.0, 6.0]);
        let equal = token_scores_to_nucleotides(&tokens, &spans, 6, Spread::Equal).unwrap();
        assert_eq!(equal, vec![2.0, 2.0, -1.0, 2.0, 2.0, 2.0]);
        // (d) conserves the tokens' total; (a) sum and (b) mean go back to tokens.
        assert_eq!(equal.iter().sum::<f32>(), 9.0);
        let bases: Vec<f64> = equal.iter().map(|&v| f64::from(v)).collect();
        assert_eq!(
            nucleotide_scores_to_tokens(&bases, &spans, Spread::Sum),
            vec![0.0, 4.0, -1.0, 6.0, 0.0]
        );
        assert_eq!(
            nucleotide_scores_to_tokens(&bases, &spans, Spread::Mean),
            vec![0.0, 2.0, -1.0, 2.0, 0.0]
        );
    }
}
