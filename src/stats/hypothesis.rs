//! Two-sample tests, effect sizes, rank correlation and false-discovery control, with the
//! conventions of scipy.stats (checked against scipy 1.17 on fixed vectors in
//! tests/fixtures/stats.json): Welch's and Student's t, Cohen's d and Hedges' g, the
//! Mann–Whitney U test, Spearman's ρ and Benjamini–Hochberg q. Distributions come from statrs.

use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// Arithmetic mean (NaN for no values).
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Variance with `ddof` degrees of freedom removed (`ddof = 1`: the sample variance).
pub fn variance(values: &[f64], ddof: usize) -> f64 {
    let m = mean(values);
    values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (values.len() as f64 - ddof as f64)
}

/// A t test: statistic, degrees of freedom and two-sided p.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TTest {
    /// t of `a − b`.
    pub t: f64,
    /// Degrees of freedom (Welch–Satterthwaite for Welch's test).
    pub df: f64,
    /// Two-sided p.
    pub p: f64,
    /// Lower bound of the 95 % interval of `mean(a) − mean(b)`.
    pub ci_low: f64,
    /// Upper bound of the 95 % interval of `mean(a) − mean(b)`.
    pub ci_high: f64,
}

fn t_test(difference: f64, standard_error: f64, df: f64) -> TTest {
    let t = difference / standard_error;
    let nan = TTest {
        t,
        df,
        p: f64::NAN,
        ci_low: f64::NAN,
        ci_high: f64::NAN,
    };
    let Ok(distribution) = StudentsT::new(0.0, 1.0, df) else {
        return nan;
    };
    if !t.is_finite() {
        return nan;
    }
    let p = (2.0 * distribution.sf(t.abs())).min(1.0);
    let critical = distribution.inverse_cdf(0.975);
    TTest {
        t,
        df,
        p,
        ci_low: difference - critical * standard_error,
        ci_high: difference + critical * standard_error,
    }
}

/// Welch's unequal-variance t test of `a` vs `b` (scipy `ttest_ind(a, b, equal_var=False)`).
/// Needs two values per group; NaN statistics otherwise (and when both groups are constant).
pub fn welch_t(a: &[f64], b: &[f64]) -> TTest {
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (va, vb) = (variance(a, 1) / na, variance(b, 1) / nb);
    let df = (va + vb).powi(2) / (va * va / (na - 1.0) + vb * vb / (nb - 1.0));
    t_test(mean(a) - mean(b), (va + vb).sqrt(), df)
}

/// Student's equal-variance t test of `a` vs `b` (scipy `ttest_ind(a, b)`).
pub fn student_t(a: &[f64], b: &[f64]) -> TTest {
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let df = na + nb - 2.0;
    let pooled = ((na - 1.0) * variance(a, 1) + (nb - 1.0) * variance(b, 1)) / df;
    t_test(
        mean(a) - mean(b),
        (pooled * (1.0 / na + 1.0 / nb)).sqrt(),
        df,
    )
}

/// Cohen's d of `a − b` with the pooled sample SD (ddof = 1):
/// (mean_a − mean_b) / sqrt(((n_a−1)s_a² + (n_b−1)s_b²) / (n_a+n_b−2)).
pub fn cohens_d(a: &[f64], b: &[f64]) -> f64 {
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let pooled = ((na - 1.0) * variance(a, 1) + (nb - 1.0) * variance(b, 1)) / (na + nb - 2.0);
    (mean(a) - mean(b)) / pooled.sqrt()
}

/// Hedges' g: Cohen's d times the small-sample correction J = 1 − 3 / (4(n_a+n_b) − 9).
pub fn hedges_g(a: &[f64], b: &[f64]) -> f64 {
    let n = (a.len() + b.len()) as f64;
    cohens_d(a, b) * (1.0 - 3.0 / (4.0 * n - 9.0))
}

/// How a Mann–Whitney p was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MannWhitneyMethod {
    /// The exact null distribution of U (no ties, both groups ≤ 20).
    Exact,
    /// Normal approximation with tie and continuity corrections.
    Asymptotic,
}

/// A two-sided Mann–Whitney U test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U of `a` (scipy's statistic): #(a > b) + ½ #(a = b) over all pairs.
    pub u: f64,
    /// Two-sided p.
    pub p: f64,
    /// How p was computed.
    pub method: MannWhitneyMethod,
}

/// Largest group size for the exact distribution (methods.md §11: exact below n = 20).
const EXACT_LIMIT: usize = 20;

/// Two-sided Mann–Whitney U test of `a` vs `b`: exact when there are no ties and both groups
/// have at most 20 values, else the normal approximation with tie correction and continuity
/// correction (scipy `mannwhitneyu(a, b, method=...)` with the same choice). NaN p for an empty
/// group.
pub fn mann_whitney_u(a: &[f64], b: &[f64]) -> MannWhitney {
    let (n1, n2) = (a.len(), b.len());
    let pooled: Vec<f64> = a.iter().chain(b).copied().collect();
    let ranks = average_ranks(&pooled);
    let r1: f64 = ranks[..n1].iter().sum();
    let u1 = r1 - (n1 * (n1 + 1)) as f64 / 2.0;
    let (m1, m2) = (n1 as f64, n2 as f64);
    let u = u1.max(m1 * m2 - u1);
    let ties = tie_counts(&pooled);
    let method = if ties.is_empty() && n1 <= EXACT_LIMIT && n2 <= EXACT_LIMIT {
        MannWhitneyMethod::Exact
    } else {
        MannWhitneyMethod::Asymptotic
    };
    if n1 == 0 || n2 == 0 {
        return MannWhitney {
            u: u1,
            p: f64::NAN,
            method,
        };
    }
    let p = match method {
        MannWhitneyMethod::Exact => 2.0 * exact_u_sf(u.round() as usize, n1, n2),
        MannWhitneyMethod::Asymptotic => {
            let n = m1 + m2;
            let tie_term: f64 = ties.iter().map(|&t| t * t * t - t).sum();
            let sd = (m1 * m2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)))).sqrt();
            let z = (u - m1 * m2 / 2.0 - 0.5) / sd;
            2.0 * Normal::standard().sf(z)
        }
    };
    MannWhitney {
        u: u1,
        p: p.clamp(0.0, 1.0),
        method,
    }
}

/// P(U ≥ u) under the null for groups of `m` and `n` without ties: the number of orderings
/// with each U value, counted by the recursion f(m, n, u) = f(m−1, n, u−n) + f(m, n−1, u).
fn exact_u_sf(u: usize, m: usize, n: usize) -> f64 {
    let max_u = m * n;
    // counts[j][v] = orderings of i (current) × j values with U = v; built up over i.
    let mut previous: Vec<Vec<f64>> = (0..=n)
        .map(|_| {
            let mut row = vec![0.0; max_u + 1];
            row[0] = 1.0;
            row
        })
        .collect();
    for _i in 1..=m {
        let mut current: Vec<Vec<f64>> = vec![vec![0.0; max_u + 1]; n + 1];
        current[0][0] = 1.0;
        for j in 1..=n {
            for v in 0..=max_u {
                let from_a = if v >= j { previous[j][v - j] } else { 0.0 };
                current[j][v] = from_a + current[j - 1][v];
            }
        }
        previous = current;
    }
    let counts = &previous[n];
    let total: f64 = counts.iter().sum();
    counts[u.min(max_u + 1)..].iter().sum::<f64>() / total
}

/// Sizes of the groups of tied values (only groups of two or more).
fn tie_counts(values: &[f64]) -> Vec<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut ties = Vec::new();
    let mut start = 0;
    for i in 1..=sorted.len() {
        if i == sorted.len() || sorted[i] != sorted[start] {
            if i - start > 1 {
                ties.push((i - start) as f64);
            }
            start = i;
        }
    }
    ties
}

/// Ranks 1..=n with ties given their average rank (scipy `rankdata(method="average")`).
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    for i in 1..=order.len() {
        if i == order.len() || values[order[i]] != values[order[start]] {
            // Positions start..i (0-based) share the average of ranks start+1 ..= i.
            let rank = (start + 1 + i) as f64 / 2.0;
            for &index in &order[start..i] {
                ranks[index] = rank;
            }
            start = i;
        }
    }
    ranks
}

/// Pearson's r of two equally long vectors (NaN when either is constant).
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        return f64::NAN;
    }
    (sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0)
}

/// A correlation and its two-sided p.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Correlation {
    /// The coefficient.
    pub r: f64,
    /// Two-sided p from t = r·sqrt((n−2)/(1−r²)) on n − 2 degrees of freedom (scipy's).
    pub p: f64,
}

/// Spearman's ρ (Pearson's r of average ranks) with scipy `spearmanr`'s p.
pub fn spearman(x: &[f64], y: &[f64]) -> Correlation {
    let r = pearson(&average_ranks(x), &average_ranks(y));
    Correlation {
        r,
        p: correlation_p(r, x.len()),
    }
}

/// Two-sided p of a correlation coefficient `r` over `n` pairs (t distribution, n − 2 df).
pub fn correlation_p(r: f64, n: usize) -> f64 {
    if r.is_nan() || n < 3 {
        return f64::NAN;
    }
    let df = n as f64 - 2.0;
    if r.abs() >= 1.0 {
        return 0.0;
    }
    let t = r * (df / ((1.0 - r) * (1.0 + r))).sqrt();
    match StudentsT::new(0.0, 1.0, df) {
        Ok(distribution) => (2.0 * distribution.sf(t.abs())).min(1.0),
        Err(_) => f64::NAN,
    }
}

/// Benjamini–Hochberg q values (scipy `false_discovery_control(p, method="bh")`): q_(i) =
/// min over j ≥ i of p_(j)·m/j, capped at 1. NaN p values are left out of m and get NaN q.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| !p[i].is_nan()).collect();
    order.sort_by(|&i, &j| p[i].total_cmp(&p[j]));
    let m = order.len() as f64;
    let mut q = vec![f64::NAN; p.len()];
    let mut running = 1.0f64;
    for (rank, &index) in order.iter().enumerate().rev() {
        running = running.min(p[index] * m / (rank + 1) as f64);
        q[index] = running.min(1.0);
    }
    q
}

/// Empirical permutation p (methods.md §3): (1 + #{|null| ≥ |observed|}) / (1 + n).
pub fn permutation_p(observed: f64, null: &[f64]) -> f64 {
    let extreme = null.iter().filter(|v| v.abs() >= observed.abs()).count();
    (1 + extreme) as f64 / (1 + null.len()) as f64
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn exact_u_distribution_sums_to_one_and_is_symmetric() {
        // m = 2, n = 2: U ∈ {0,1,2,2,3,4} over the 6 orderings.
        assert!((exact_u_sf(0, 2, 2) - 1.0).abs() < 1e-15);
        assert!((exact_u_sf(2, 2, 2) - 4.0 / 6.0).abs() < 1e-15);
        assert!((exact_u_sf(4, 2, 2) - 1.0 / 6.0).abs() < 1e-15);
        assert!((exact_u_sf(3, 3, 4) - exact_u_sf(3, 4, 3)).abs() < 1e-15);
    }

    #[test]
    fn ranks_average_ties_and_bh_is_monotone() {
        assert_eq!(
            average_ranks(&[3.0, 1.0, 3.0, 2.0]),
            vec![3.5, 1.0, 3.5, 2.0]
        );
        let q = benjamini_hochberg(&[0.01, 0.04, f64::NAN, 0.03]);
        assert!((q[0] - 0.03).abs() < 1e-15 && (q[1] - 0.04).abs() < 1e-15);
        assert!(q[2].is_nan() && (q[3] - 0.04).abs() < 1e-15);
        assert_eq!(permutation_p(0.5, &[0.1, -0.6, 0.2]), 0.5);
    }
}
