//! Token scores → nucleotide scores (methods.md §1, §7). For DNABERT's overlapping k-mers (token
//! i covers bases [i, i + k)), a base's score is the mean (DNABERT's convention) or the sum of the
//! scores of the tokens that cover it; [CLS] and [SEP] are left out. Seed 001 then scales each
//! sequence to [−1, 1] by its largest |score|; genolens keeps the raw values beside the scaled.

use crate::error::{GenolensError, Result};
use crate::tokenize::covering_kmers;

/// How the k tokens covering a base combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spread {
    /// Mean over the covering tokens.
    Mean,
    /// Sum over the covering tokens.
    Sum,
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
}
