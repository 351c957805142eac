//! Explanation metrics (methods.md §9): similarity of two attributions (continuous Jaccard, seed
//! 001), sparseness (Gini, Quantus `Sparseness`) and complexity (entropy, Quantus `Complexity`),
//! with Quantus's constants. Computed in f64 on one attribution vector (a sequence's token or
//! nucleotide scores); NaN or infinite scores are an error, not a silent NaN.

use crate::error::{GenolensError, Result};

/// Quantus's offset added to |a| before the Gini index (so an all-zero vector is defined).
pub const GINI_OFFSET: f64 = 1e-7;
/// The offset inside the entropy's logarithm.
pub const ENTROPY_OFFSET: f64 = 1e-12;

fn check_finite(name: &str, values: &[f64]) -> Result<()> {
    if values.is_empty() {
        return Err(GenolensError::argument(name, "an empty attribution vector"));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(GenolensError::argument(
            name,
            format!("score {i} is {} (expected a finite number)", values[i]),
        ));
    }
    Ok(())
}

/// Continuous Jaccard similarity of two attributions of the same positions:
/// CJ(v, w) = Σ sign(vᵢ)·sign(wᵢ)·min(|vᵢ|, |wᵢ|) / Σ max(|vᵢ|, |wᵢ|), in [−1, 1]; 1 for identical
/// vectors, −1 for v = −w. `None` when both are all zero (the ratio is undefined).
pub fn continuous_jaccard(v: &[f64], w: &[f64]) -> Result<Option<f64>> {
    if v.len() != w.len() {
        return Err(GenolensError::argument(
            "continuous Jaccard",
            format!("vectors of {} and {} positions", v.len(), w.len()),
        ));
    }
    check_finite("continuous Jaccard", v)?;
    check_finite("continuous Jaccard", w)?;
    let (mut numerator, mut denominator) = (0.0, 0.0);
    for (&a, &b) in v.iter().zip(w) {
        numerator += sign(a) * sign(b) * a.abs().min(b.abs());
        denominator += a.abs().max(b.abs());
    }
    Ok((denominator > 0.0).then(|| numerator / denominator))
}

/// numpy's sign: −1, 0 or 1.
fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// Gini index of |a| (Quantus `Sparseness`): with aᵢ = |attrᵢ| + 1e-7 sorted ascending,
/// G = Σᵢ (2i − n − 1)·aᵢ / (n·Σ a), i = 1..n. 0 when every position is equally relevant, near 1
/// when one position holds it all.
pub fn gini(attribution: &[f64]) -> Result<f64> {
    check_finite("Gini", attribution)?;
    let mut a: Vec<f64> = attribution.iter().map(|x| x.abs() + GINI_OFFSET).collect();
    a.sort_by(f64::total_cmp);
    let n = a.len() as f64;
    let total: f64 = a.iter().sum();
    let weighted: f64 = a
        .iter()
        .enumerate()
        .map(|(i, &x)| (2.0 * (i + 1) as f64 - n - 1.0) * x)
        .sum();
    Ok(weighted / (n * total))
}

/// Entropy of the relevance distribution (Quantus `Complexity`): p = |a|/Σ|a|,
/// H = −Σ p·ln(p + 1e-12), in nats; ln n for a uniform vector, 0 for one non-zero position.
/// `None` for an all-zero vector (no distribution).
pub fn entropy(attribution: &[f64]) -> Result<Option<f64>> {
    check_finite("entropy", attribution)?;
    let total: f64 = attribution.iter().map(|x| x.abs()).sum();
    if total <= 0.0 {
        return Ok(None);
    }
    Ok(Some(
        -attribution
            .iter()
            .map(|x| {
                let p = x.abs() / total;
                p * (p + ENTROPY_OFFSET).ln()
            })
            .sum::<f64>(),
    ))
}

/// Scales scores to [−1, 1] by the largest |score| (seed 001, before comparing token
/// relevances); an all-zero vector stays zero.
pub fn scale_to_unit(values: &[f64]) -> Vec<f64> {
    let max = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if max > 0.0 {
        values.iter().map(|v| v / max).collect()
    } else {
        values.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_behave_at_their_extremes() {
        let v = [0.5, -1.0, 2.0, 0.0];
        assert!((continuous_jaccard(&v, &v).unwrap().unwrap() - 1.0).abs() < 1e-15);
        let minus: Vec<f64> = v.iter().map(|x| -x).collect();
        assert!((continuous_jaccard(&v, &minus).unwrap().unwrap() + 1.0).abs() < 1e-15);
        assert_eq!(continuous_jaccard(&[0.0; 3], &[0.0; 3]).unwrap(), None);
        assert!(continuous_jaccard(&v, &v[..3]).is_err());
        // Gini: 0 for a uniform vector, (n − 1)/n for one non-zero position (up to the offset).
        assert!(gini(&[1.0; 8]).unwrap().abs() < 1e-12);
        let one_hot = [0.0, 0.0, 0.0, 3.0];
        assert!((gini(&one_hot).unwrap() - 0.75).abs() < 1e-6);
        // Entropy: ln n uniform, 0 one-hot.
        assert!((entropy(&[-2.0; 5]).unwrap().unwrap() - 5f64.ln()).abs() < 1e-9);
        assert!(entropy(&one_hot).unwrap().unwrap().abs() < 1e-9);
        assert_eq!(entropy(&[0.0; 4]).unwrap(), None);
        assert!(gini(&[1.0, f64::NAN]).is_err());
        assert_eq!(scale_to_unit(&[1.0, -4.0]), vec![0.25, -1.0]);
    }
}
