//! The k-mer logistic baseline of a classification dataset, as stated in data/README.md.

use crate::baselines::KmerLogistic;
use crate::datasets::rows::SequenceRow;
use crate::error::Result;
use crate::stats::auroc_with_ci;

/// k of the baseline's k-mers (4 was best on the fly set in data-sources.md; 256 features).
pub const BASELINE_K: usize = 4;
/// L2 penalty per training example on z-scored features (fixed a priori, not tuned on any split;
/// linfa's penalty multiplies a sum over examples, so its alpha is this times the train size).
pub const BASELINE_LAMBDA: f64 = 0.05;
/// Bootstrap resamples for the interval.
pub const BOOTSTRAP_RESAMPLES: usize = 1000;

/// Test-split AUROC (95 % bootstrap CI) of the baseline trained on the train split.
pub fn baseline_test_auroc(rows: &[SequenceRow]) -> Result<(f64, f64, f64)> {
    let pick = |split: &str| -> (Vec<&str>, Vec<i64>) {
        rows.iter()
            .filter(|r| r.split == split)
            .map(|r| (r.sequence.as_str(), r.label))
            .unzip()
    };
    let (train_x, train_y) = pick("train");
    let (test_x, test_y) = pick("test");
    let alpha = BASELINE_LAMBDA * train_x.len() as f64;
    let model = KmerLogistic::fit(&train_x, &train_y, BASELINE_K, alpha)?;
    let scores = model.predict(&test_x);
    let labels: Vec<bool> = test_y.iter().map(|&l| l == 1).collect();
    let estimate = auroc_with_ci(&scores, &labels, BOOTSTRAP_RESAMPLES, 0.95, 0)
        .expect("the test split has both classes");
    Ok((estimate.value, estimate.low, estimate.high))
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
