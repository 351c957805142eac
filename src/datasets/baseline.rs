//! The k-mer logistic baseline of a classification dataset, as stated in data/README.md.

use crate::baselines::KmerLogistic;
use crate::datasets::rows::SequenceRow;
use crate::error::Result;
use crate::stats::{auroc_difference_with_ci, auroc_with_ci, AurocEstimate};

/// k of the baseline's k-mers (4 was best on the fly set in data-sources.md; 256 features).
pub const BASELINE_K: usize = 4;
/// L2 penalty per training example on z-scored features (fixed a priori, not tuned on any split;
/// linfa's penalty multiplies a sum over examples, so its alpha is this times the train size).
pub const BASELINE_LAMBDA: f64 = 0.05;
/// Bootstrap resamples for the interval.
pub const BOOTSTRAP_RESAMPLES: usize = 1000;

/// The baseline's P(label 1) for each test-split row (in table order), fitted on the train split.
pub fn baseline_test_scores(rows: &[SequenceRow]) -> Result<Vec<f64>> {
    let pick = |split: &str| -> (Vec<&str>, Vec<i64>) {
        rows.iter()
            .filter(|r| r.split == split)
            .map(|r| (r.sequence.as_str(), r.label))
            .unzip()
    };
    let (train_x, train_y) = pick("train");
    let (test_x, _) = pick("test");
    let alpha = BASELINE_LAMBDA * train_x.len() as f64;
    let model = KmerLogistic::fit(&train_x, &train_y, BASELINE_K, alpha)?;
    Ok(model.predict(&test_x))
}

/// Whether each test-split row (in table order) is a positive (label 1).
fn test_labels(rows: &[SequenceRow]) -> Vec<bool> {
    rows.iter()
        .filter(|r| r.split == "test")
        .map(|r| r.label == 1)
        .collect()
}

/// Test-split AUROC (95 % bootstrap CI) of the baseline trained on the train split.
pub fn baseline_test_auroc(rows: &[SequenceRow]) -> Result<(f64, f64, f64)> {
    let scores = baseline_test_scores(rows)?;
    let labels = test_labels(rows);
    let estimate = auroc_with_ci(&scores, &labels, BOOTSTRAP_RESAMPLES, 0.95, 0)
        .expect("the test split has both classes");
    Ok((estimate.value, estimate.low, estimate.high))
}

/// A model's test-split scores against the baseline's on the same rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BaselineComparison {
    /// The baseline's AUROC with its bootstrap interval.
    pub baseline: AurocEstimate,
    /// Model AUROC − baseline AUROC, with a paired bootstrap interval.
    pub difference: AurocEstimate,
    /// Test rows compared.
    pub test_rows: usize,
}

/// Compares `model_scores` (P(label 1) for each test-split row, in table order) with the k-mer
/// baseline: both bootstraps use the same seed and resamples, the difference's resamples pair
/// the two models on the same rows.
pub fn compare_with_baseline(
    rows: &[SequenceRow],
    model_scores: &[f64],
) -> Result<BaselineComparison> {
    let labels = test_labels(rows);
    if labels.len() != model_scores.len() {
        return Err(crate::error::GenolensError::Data {
            path: "<baseline comparison>".into(),
            line: 0,
            message: format!(
                "{} model scores for {} test rows",
                model_scores.len(),
                labels.len()
            ),
        });
    }
    let scores = baseline_test_scores(rows)?;
    let both_classes = || crate::error::GenolensError::Data {
        path: "<baseline comparison>".into(),
        line: 0,
        message: "the test split needs both classes".into(),
    };
    let baseline =
        auroc_with_ci(&scores, &labels, BOOTSTRAP_RESAMPLES, 0.95, 0).ok_or_else(both_classes)?;
    let difference =
        auroc_difference_with_ci(model_scores, &scores, &labels, BOOTSTRAP_RESAMPLES, 0.95, 0)
            .ok_or_else(both_classes)?;
    Ok(BaselineComparison {
        baseline,
        difference,
        test_rows: labels.len(),
    })
}

impl BaselineComparison {
    /// The model-card paragraph.
    pub fn sentence(&self) -> String {
        let (b, d) = (self.baseline, self.difference);
        let verdict = if d.low > 0.0 {
            "the model is better"
        } else if d.high < 0.0 {
            "the baseline is better"
        } else {
            "the interval includes 0: not a clear difference"
        };
        format!(
            "k-mer logistic baseline (data/README.md) on the same {} test rows: AUROC {:.3} (95 % CI {:.3}–{:.3}). \
             Difference {:+.3} AUROC, paired bootstrap 95 % CI {:+.3} to {:+.3} ({BOOTSTRAP_RESAMPLES} resamples of the test rows, both models scored on each): {verdict}.",
            self.test_rows, b.value, b.low, b.high, d.value, d.low, d.high
        )
    }
}

/// One README sentence with the baseline's test AUROC.
pub fn baseline_sentence(rows: &[SequenceRow]) -> Result<String> {
    let (value, low, high) = baseline_test_auroc(rows)?;
    Ok(format!(
        "Baseline: logistic regression (linfa; z-scored {BASELINE_K}-mer frequencies; L2 \
         penalty {BASELINE_LAMBDA} per training example, fixed a priori), fitted on train, reaches test AUROC **{value:.3}** (95 % bootstrap CI \
         {low:.3}–{high:.3}, {BOOTSTRAP_RESAMPLES} resamples, seed 0); `tests/data.rs` checks it."
    ))
}

/// The README summary of a classification table: class balance per split, then the baseline.
pub fn classification_summary(rows: &[SequenceRow]) -> Result<String> {
    Ok(format!(
        "{}\n\n{}",
        crate::datasets::rows::balance_table(rows),
        baseline_sentence(rows)?
    ))
}
