//! DNABERT's masking for k-mer MLM: contiguous spans of k tokens, so the overlapping k-mers around
//! a masked token cannot spell out its bases.

use rand::Rng;

use crate::tokenize::vocab::SpecialTokens;

/// The masked copy of a batch and what the loss must predict.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskedBatch {
    /// Input ids with masked tokens replaced (80 % [MASK], 10 % a random k-mer, 10 % unchanged).
    pub ids: Vec<Vec<u32>>,
    /// (row, position) of every masked token, row-major.
    pub positions: Vec<(usize, usize)>,
    /// The original id at each masked position.
    pub labels: Vec<u32>,
}

/// Offsets of a span around its centre: k tokens, as in DNABERT (k = 6: −2..+3).
pub fn span_offsets(k: usize) -> std::ops::RangeInclusive<i64> {
    let before = (k as i64 - 1) / 2;
    -before..=(k as i64 - 1 - before)
}

/// Masks about `rate` of the k-mer tokens of each row in spans of k. Centres are drawn with
/// probability 1 − (1 − rate)^(1/k), so a token is left uncovered with probability (1 − rate),
/// i.e. `rate` of the tokens are masked in expectation (less at the edges). [CLS], [SEP] and
/// padding are never masked; `lengths[row]` counts [CLS] and [SEP]. Every row gets at least one
/// masked span. Random replacements are drawn from `kmer_ids`.
pub fn mask_spans(
    ids: &[Vec<u32>],
    lengths: &[usize],
    k: usize,
    rate: f64,
    special: &SpecialTokens,
    kmer_ids: &[u32],
    rng: &mut impl Rng,
) -> MaskedBatch {
    let centre_probability = 1.0 - (1.0 - rate).powf(1.0 / k as f64);
    let mut masked = ids.to_vec();
    let mut positions = Vec::new();
    let mut labels = Vec::new();
    for (row, row_ids) in ids.iter().enumerate() {
        let length = lengths[row];
        // k-mer tokens are positions 1..length-1 ([CLS] at 0, [SEP] at length-1).
        let (first, last) = (1usize, length.saturating_sub(2));
        if last < first {
            continue;
        }
        let mut chosen = vec![false; length];
        let mut any = false;
        for centre in first..=last {
            if rng.random_bool(centre_probability) {
                any = true;
                for offset in span_offsets(k) {
                    let position = centre as i64 + offset;
                    if position >= first as i64 && position <= last as i64 {
                        chosen[position as usize] = true;
                    }
                }
            }
        }
        if !any {
            let centre = rng.random_range(first..=last);
            for offset in span_offsets(k) {
                let position = centre as i64 + offset;
                if position >= first as i64 && position <= last as i64 {
                    chosen[position as usize] = true;
                }
            }
        }
        for (position, &is_masked) in chosen.iter().enumerate() {
            if !is_masked {
                continue;
            }
            let original = row_ids[position];
            debug_assert!(original != special.cls && original != special.sep);
            positions.push((row, position));
            labels.push(original);
            let roll: f64 = rng.random();
            masked[row][position] = if roll < 0.8 {
                special.mask
            } else if roll < 0.9 {
                kmer_ids[rng.random_range(0..kmer_ids.len())]
            } else {
                original
            };
        }
    }
    MaskedBatch {
        ids: masked,
        positions,
        labels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenize::vocab::KmerVocab;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn spans_are_k_long_and_cover_about_the_rate() {
        assert_eq!(span_offsets(6), -2..=3);
        assert_eq!(span_offsets(3), -1..=1);
        let vocab = KmerVocab::dnabert(6);
        let special = vocab.special;
        let rows = 200;
        let length = 252;
        let ids: Vec<Vec<u32>> = (0..rows)
            .map(|_| {
                let mut row = vec![special.cls];
                row.extend((0..length - 2).map(|i| 5 + (i as u32 % 4096)));
                row.push(special.sep);
                row
            })
            .collect();
        let lengths = vec![length; rows];
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let masked = mask_spans(
            &ids,
            &lengths,
            6,
            0.15,
            &special,
            &vocab.kmer_ids(),
            &mut rng,
        );
        let fraction = masked.positions.len() as f64 / (rows * (length - 2)) as f64;
        assert!((0.13..0.16).contains(&fraction), "{fraction}");
        assert!(masked
            .positions
            .iter()
            .all(|&(_, p)| p >= 1 && p <= length - 2));
        // Masked tokens come in runs of at least k (spans may merge).
        let row0: Vec<usize> = masked
            .positions
            .iter()
            .filter(|p| p.0 == 0)
            .map(|p| p.1)
            .collect();
        let mut run = 1;
        for pair in row0.windows(2) {
            if pair[1] == pair[0] + 1 {
                run += 1;
            } else {
                assert!(
                    run >= 6 || pair[0] >= length - 4 || pair[0] < 4,
                    "run {run} ending at {}",
                    pair[0]
                );
                run = 1;
            }
        }
        let mask_share = masked
            .positions
            .iter()
            .filter(|&&(r, p)| masked.ids[r][p] == special.mask)
            .count() as f64
            / masked.positions.len() as f64;
        assert!((0.77..0.83).contains(&mask_share), "{mask_share}");
        assert_eq!(
            masked.labels[0],
            ids[masked.positions[0].0][masked.positions[0].1]
        );
    }
}
