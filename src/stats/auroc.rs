//! Area under the ROC curve (Mann–Whitney, ties counted half) and its bootstrap interval.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// AUROC of `scores` for binary `labels` (true = positive): the probability that a random
/// positive scores above a random negative, ties counting ½. `None` without both classes.
pub fn auroc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Average ranks over ties (1-based).
    let mut ranks = vec![0.0; scores.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &index in &order[i..=j] {
            ranks[index] = rank;
        }
        i = j + 1;
    }
    let positives = labels.iter().filter(|&&l| l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let rank_sum: f64 = ranks
        .iter()
        .zip(labels)
        .filter(|(_, &l)| l)
        .map(|(r, _)| r)
        .sum();
    let u = rank_sum - (positives * (positives + 1)) as f64 / 2.0;
    Some(u / (positives as f64 * negatives as f64))
}

/// AUROC with a percentile bootstrap interval (`resamples` draws with replacement, seeded).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AurocEstimate {
    /// AUROC on the full sample.
    pub value: f64,
    /// Lower bound of the interval.
    pub low: f64,
    /// Upper bound of the interval.
    pub high: f64,
}

/// `statistic` on `resamples` bootstrap draws of `n` indices with replacement (seeded); draws where
/// it is undefined (one class only) are skipped. Sorted.
pub(crate) fn bootstrap(
    n: usize,
    resamples: usize,
    seed: u64,
    statistic: impl Fn(&[usize]) -> Option<f64>,
) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut draws = Vec::with_capacity(resamples);
    let mut indices = vec![0usize; n];
    for _ in 0..resamples {
        for index in indices.iter_mut() {
            *index = rng.random_range(0..n);
        }
        if let Some(value) = statistic(&indices) {
            draws.push(value);
        }
    }
    draws.sort_by(f64::total_cmp);
    draws
}

/// The central `level` percentile interval of sorted draws (`value` itself when there are none).
pub(crate) fn percentile_interval(value: f64, draws: &[f64], level: f64) -> AurocEstimate {
    if draws.is_empty() {
        return AurocEstimate {
            value,
            low: value,
            high: value,
        };
    }
    let quantile =
        |q: f64| draws[((q * (draws.len() - 1) as f64).round() as usize).min(draws.len() - 1)];
    let tail = (1.0 - level) / 2.0;
    AurocEstimate {
        value,
        low: quantile(tail),
        high: quantile(1.0 - tail),
    }
}

fn auroc_of(scores: &[f64], labels: &[bool], indices: &[usize]) -> Option<f64> {
    let s: Vec<f64> = indices.iter().map(|&i| scores[i]).collect();
    let l: Vec<bool> = indices.iter().map(|&i| labels[i]).collect();
    auroc(&s, &l)
}

/// AUROC and its `level` (e.g. 0.95) percentile bootstrap interval.
pub fn auroc_with_ci(
    scores: &[f64],
    labels: &[bool],
    resamples: usize,
    level: f64,
    seed: u64,
) -> Option<AurocEstimate> {
    let value = auroc(scores, labels)?;
    let draws = bootstrap(scores.len(), resamples, seed, |indices| {
        auroc_of(scores, labels, indices)
    });
    Some(percentile_interval(value, &draws, level))
}

/// AUROC(`a`) − AUROC(`b`) on the same examples, with a paired percentile bootstrap interval
/// (each draw resamples examples once and scores both): the fair way to ask whether one model
/// beats another on one test set, since their errors are correlated.
pub fn auroc_difference_with_ci(
    a: &[f64],
    b: &[f64],
    labels: &[bool],
    resamples: usize,
    level: f64,
    seed: u64,
) -> Option<AurocEstimate> {
    let value = auroc(a, labels)? - auroc(b, labels)?;
    let draws = bootstrap(labels.len(), resamples, seed, |indices| {
        Some(auroc_of(a, labels, indices)? - auroc_of(b, labels, indices)?)
    });
    Some(percentile_interval(value, &draws, level))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_random_and_tied_scores() {
        assert_eq!(
            auroc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]),
            Some(1.0)
        );
        assert_eq!(
            auroc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]),
            Some(0.0)
        );
        assert_eq!(auroc(&[0.5; 4], &[false, true, false, true]), Some(0.5));
        // 1 positive above 2 of 3 negatives, tied with the third: (2 + 0.5) / 3.
        let a = auroc(&[0.3, 0.1, 0.2, 0.3], &[true, false, false, false]).unwrap();
        assert!((a - 2.5 / 3.0).abs() < 1e-12);
        assert_eq!(auroc(&[1.0], &[true]), None);
    }

    #[test]
    fn bootstrap_interval_brackets_the_estimate() {
        let scores: Vec<f64> = (0..200)
            .map(|i| (i % 17) as f64 + if i % 2 == 0 { 3.0 } else { 0.0 })
            .collect();
        let labels: Vec<bool> = (0..200).map(|i| i % 2 == 0).collect();
        let e = auroc_with_ci(&scores, &labels, 200, 0.95, 1).unwrap();
        assert!(
            e.low <= e.value && e.value <= e.high && e.high - e.low < 0.2,
            "{e:?}"
        );
        assert_eq!(
            Some(e),
            auroc_with_ci(&scores, &labels, 200, 0.95, 1),
            "seeded"
        );
    }

    #[test]
    fn paired_difference_is_zero_against_itself_and_signed() {
        let labels: Vec<bool> = (0..300).map(|i| i % 3 == 0).collect();
        let good: Vec<f64> = (0..300)
            .map(|i| if labels[i] { 1.0 } else { 0.0 } + (i % 7) as f64 * 0.2)
            .collect();
        let noise: Vec<f64> = (0..300).map(|i| ((i * 37) % 11) as f64).collect();
        let same = auroc_difference_with_ci(&good, &good, &labels, 200, 0.95, 1).unwrap();
        assert_eq!((same.value, same.low, same.high), (0.0, 0.0, 0.0));
        let better = auroc_difference_with_ci(&good, &noise, &labels, 200, 0.95, 1).unwrap();
        assert!(
            better.low > 0.0 && better.value <= better.high,
            "{better:?}"
        );
        let worse = auroc_difference_with_ci(&noise, &good, &labels, 200, 0.95, 1).unwrap();
        assert!((worse.value + better.value).abs() < 1e-12 && worse.high < 0.0);
    }
}
