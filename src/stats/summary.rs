//! Mean with a Student-t confidence interval (the summary every per-head and per-layer table
//! reports).

use statrs::distribution::{ContinuousCDF, StudentsT};

/// Mean of `n` values, their sample standard deviation and a two-sided t-interval for the mean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanEstimate {
    /// Number of values.
    pub n: usize,
    /// Mean (NaN when n = 0).
    pub mean: f64,
    /// Sample standard deviation (n − 1 denominator; NaN when n < 2).
    pub sd: f64,
    /// Lower end of the interval (NaN when n < 2).
    pub low: f64,
    /// Upper end of the interval (NaN when n < 2).
    pub high: f64,
}

/// Mean and a two-sided `level` (e.g. 0.95) Student-t interval: mean ± t(1 − (1 − level)/2, n − 1)
/// · sd / √n. Fewer than two values give NaN for what cannot be estimated.
pub fn mean_with_ci(values: &[f64], level: f64) -> MeanEstimate {
    let n = values.len();
    let mean = if n == 0 {
        f64::NAN
    } else {
        values.iter().sum::<f64>() / n as f64
    };
    if n < 2 {
        return MeanEstimate {
            n,
            mean,
            sd: f64::NAN,
            low: f64::NAN,
            high: f64::NAN,
        };
    }
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let sd = variance.sqrt();
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64)
        .expect("degrees of freedom > 0")
        .inverse_cdf(1.0 - (1.0 - level) / 2.0);
    let half = t * sd / (n as f64).sqrt();
    MeanEstimate {
        n,
        mean,
        sd,
        low: mean - half,
        high: mean + half,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_textbook_t_interval() {
        // scipy.stats.t.interval(0.95, 4, loc=3, scale=stdev([1..5])/sqrt(5)) = (1.0367, 4.9633).
        let estimate = mean_with_ci(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.95);
        assert_eq!(estimate.n, 5);
        assert!((estimate.mean - 3.0).abs() < 1e-12);
        assert!((estimate.sd - 2.5f64.sqrt()).abs() < 1e-12);
        assert!((estimate.low - 1.036_757).abs() < 1e-5, "{estimate:?}");
        assert!((estimate.high - 4.963_243).abs() < 1e-5, "{estimate:?}");
    }

    #[test]
    fn too_few_values_give_nan_not_a_panic() {
        assert!(mean_with_ci(&[], 0.95).mean.is_nan());
        let one = mean_with_ci(&[2.0], 0.95);
        assert_eq!(one.mean, 2.0);
        assert!(one.low.is_nan() && one.sd.is_nan());
    }
}

/// Mean of `values` with a seeded percentile-bootstrap interval (`resamples` draws with
/// replacement; methods.md §11 uses B = 1000): (mean, low, high). NaN values are dropped first;
/// no values give NaN.
pub fn bootstrap_mean_ci(
    values: &[f64],
    resamples: usize,
    seed: u64,
    level: f64,
) -> (f64, f64, f64) {
    let values: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if values.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mean =
        |indices: &[usize]| indices.iter().map(|&i| values[i]).sum::<f64>() / indices.len() as f64;
    let all: Vec<usize> = (0..values.len()).collect();
    let value = mean(&all);
    let draws = crate::stats::auroc::bootstrap(values.len(), resamples, seed, |i| Some(mean(i)));
    let interval = crate::stats::auroc::percentile_interval(value, &draws, level);
    (interval.value, interval.low, interval.high)
}

#[cfg(test)]
mod bootstrap_tests {
    use super::*;

    #[test]
    fn the_bootstrap_interval_holds_the_mean_and_is_reproducible() {
        let values: Vec<f64> = (0..50).map(|i| (i % 7) as f64).collect();
        let (mean, low, high) = bootstrap_mean_ci(&values, 1000, 3, 0.95);
        assert!((mean - values.iter().sum::<f64>() / 50.0).abs() < 1e-12);
        assert!(low < mean && mean < high);
        assert_eq!(bootstrap_mean_ci(&values, 1000, 3, 0.95), (mean, low, high));
        let constant = bootstrap_mean_ci(&[2.0, 2.0, f64::NAN], 100, 0, 0.95);
        assert_eq!(constant, (2.0, 2.0, 2.0));
    }
}
