//! The k-mer logistic-regression baseline every classifier is compared with: k-mer frequency
//! vectors (overlapping, k-mers holding N or other letters skipped) and an L2-regularised
//! logistic regression fitted by linfa.

use linfa::prelude::*;
use linfa_logistic::{FittedLogisticRegression, LogisticRegression};
use ndarray::{Array1, Array2};

use crate::error::{GenolensError, Result};

/// A fitted baseline.
pub struct KmerLogistic {
    k: usize,
    /// Per-feature mean and standard deviation on the training set (features are z-scored, which
    /// lets the optimiser converge in a few dozen iterations instead of hundreds).
    mean: Array1<f64>,
    scale: Array1<f64>,
    model: FittedLogisticRegression<f64, usize>,
}

/// Index of a k-mer of A/C/G/T in 0..4^k, `None` if it holds any other letter.
fn kmer_index(kmer: &[u8]) -> Option<usize> {
    kmer.iter().try_fold(0usize, |index, b| {
        let code = match b.to_ascii_uppercase() {
            b'A' => 0,
            b'C' => 1,
            b'G' => 2,
            b'T' => 3,
            _ => return None,
        };
        Some(index * 4 + code)
    })
}

/// Frequencies of every k-mer (sum 1 over counted k-mers) of one sequence.
pub fn kmer_frequencies(sequence: &[u8], k: usize) -> Vec<f64> {
    let mut counts = vec![0.0; 4usize.pow(k as u32)];
    let mut total = 0.0;
    for kmer in sequence.windows(k) {
        if let Some(index) = kmer_index(kmer) {
            counts[index] += 1.0;
            total += 1.0;
        }
    }
    if total > 0.0 {
        counts.iter_mut().for_each(|c| *c /= total);
    }
    counts
}

fn features(sequences: &[&str], k: usize) -> Array2<f64> {
    let width = 4usize.pow(k as u32);
    let mut matrix = Array2::zeros((sequences.len(), width));
    for (row, sequence) in sequences.iter().enumerate() {
        for (column, value) in kmer_frequencies(sequence.as_bytes(), k)
            .into_iter()
            .enumerate()
        {
            // Scaled so a typical frequency is O(1) for the optimiser.
            matrix[[row, column]] = value * width as f64;
        }
    }
    matrix
}

impl KmerLogistic {
    /// Fits on sequences with 0/1 labels. `alpha` is the L2 penalty.
    pub fn fit(sequences: &[&str], labels: &[i64], k: usize, alpha: f64) -> Result<Self> {
        let targets: Array1<usize> = labels.iter().map(|&l| (l != 0) as usize).collect();
        let raw = features(sequences, k);
        let mean = raw
            .mean_axis(ndarray::Axis(0))
            .expect("at least one sequence");
        let scale = raw
            .std_axis(ndarray::Axis(0), 0.0)
            .mapv(|s| if s > 0.0 { s } else { 1.0 });
        let dataset = Dataset::new((raw - &mean) / &scale, targets);
        let model = LogisticRegression::default()
            .alpha(alpha)
            .max_iterations(100)
            .fit(&dataset)
            .map_err(|e| GenolensError::Data {
                path: "k-mer baseline".into(),
                line: 0,
                message: format!("logistic regression did not fit: {e}"),
            })?;
        Ok(KmerLogistic {
            k,
            mean,
            scale,
            model,
        })
    }

    /// Probability of label 1 for each sequence.
    pub fn predict(&self, sequences: &[&str]) -> Vec<f64> {
        let x = (features(sequences, self.k) - &self.mean) / &self.scale;
        let p = self.model.predict_probabilities(&x);
        // linfa reports the probability of the class that was more frequent in training.
        if self.model.labels().pos.class == 1 {
            p.to_vec()
        } else {
            p.iter().map(|p| 1.0 - p).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequencies_skip_ambiguous_kmers() {
        let f = kmer_frequencies(b"ACGNAC", 2);
        // AC twice, CG once; GN and NA skipped.
        assert_eq!(f[1], 2.0 / 3.0);
        assert_eq!(f[6], 1.0 / 3.0);
    }

    #[test]
    fn learns_a_planted_gc_signal() {
        let gc = ["GCGCGGCCGC", "GGCCGCGCGG", "CGCGCCGGCG", "GCCGGCGCGC"];
        let at = ["ATATTAATAT", "TTAATATATA", "AATTATATAT", "TATAATTATA"];
        let sequences: Vec<&str> = gc.iter().chain(at.iter()).copied().collect();
        // Either class may be the more frequent one: the probability is always of label 1.
        for drop in [0, 4] {
            let mut sequences = sequences.clone();
            let mut labels = vec![1, 1, 1, 1, 0, 0, 0, 0];
            sequences.remove(drop);
            labels.remove(drop);
            let model = KmerLogistic::fit(&sequences, &labels, 2, 0.1).unwrap();
            let p = model.predict(&["GCGCGCGCCG", "ATATATTATA"]);
            assert!(p[0] > 0.8 && p[1] < 0.2, "{p:?}");
        }
    }
}
