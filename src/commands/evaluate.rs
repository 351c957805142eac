//! `genolens evaluate`: a classifier's held-out AUROC, per-class accuracy, and a paired bootstrap
//! comparison with the dataset's k-mer logistic baseline (the model-card numbers, for any model).

use std::path::Path;

use crate::datasets::baseline::{compare_with_baseline, BaselineComparison};
use crate::datasets::rows::{read_sequence_rows, SequenceRow};
use crate::error::{GenolensError, Result};
use crate::model::LoadedModel;
use crate::train::card::evaluation_table;
use crate::train::classify::{evaluate_classifier, ClassifierEvaluation};

/// A classifier's test-split evaluation and its comparison with the baseline.
pub struct Evaluation {
    /// AUROC, per-class accuracy and scores on the test split.
    pub test: ClassifierEvaluation,
    /// Against the k-mer logistic baseline on the same rows.
    pub baseline: BaselineComparison,
}

/// The table `evaluate` scores `loaded` on: `given`, else the dataset the model was fine-tuned on
/// (its config.json's `genolens.training_data`); a model that records none needs `--data`.
pub fn resolve_data(loaded: &LoadedModel, given: Option<&Path>) -> Result<std::path::PathBuf> {
    crate::datasets::model_data::data_for_model(loaded, given, None)?.ok_or_else(|| {
        GenolensError::argument(
            "--data",
            format!(
                "{} does not record the dataset it was fine-tuned on; give the table to score it on",
                loaded.source.id
            ),
        )
    })
}

/// Evaluates `loaded` (a sequence classifier) on the test split of the dataset table `data`.
pub fn run_evaluate(loaded: &LoadedModel, data: &Path, batch_size: usize) -> Result<Evaluation> {
    loaded.require_classifier("evaluate")?;
    crate::datasets::model_data::check_class_names(loaded, data)?;
    let rows = read_sequence_rows(data)?;
    let test: Vec<&SequenceRow> = rows.iter().filter(|r| r.split == "test").collect();
    if test.is_empty() {
        return Err(GenolensError::Data {
            path: data.to_path_buf(),
            line: 0,
            message: "no rows with split = test".into(),
        });
    }
    let evaluation = evaluate_classifier(
        &loaded.model,
        &loaded.tokenizer,
        &test,
        batch_size,
        loaded.model.device(),
    )?;
    let baseline = compare_with_baseline(&rows, &evaluation.scores)?;
    Ok(Evaluation {
        test: evaluation,
        baseline,
    })
}

impl Evaluation {
    /// Markdown: the test AUROC, per-class accuracy and the baseline comparison.
    pub fn markdown(&self, data: &Path) -> String {
        let title = format!("Test split of `{}`", data.display());
        format!(
            "{}\n{}\n",
            evaluation_table(&title, &self.test),
            self.baseline.sentence()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{load_dir, LoadOptions};

    #[test]
    fn an_mlm_is_refused_with_its_class_named() {
        let loaded = load_dir(
            Path::new("tests/fixtures/models/tiny-mlm-k6"),
            "tiny-mlm-k6",
            &LoadOptions::default(),
        )
        .unwrap();
        let err = run_evaluate(&loaded, Path::new("data/human-promoters.parquet"), 8)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("BertForMaskedLM"), "{err}");
    }
}
