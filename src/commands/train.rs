//! `genolens train mlm|classify`: run training, then write the model card (MODEL.md).

use candle_core::Device;

use crate::datasets::baseline::compare_with_baseline;
use crate::datasets::rows::read_sequence_rows;
use crate::error::Result;
use crate::model::load::sha256_file;
use crate::model::{load_dir, LoadOptions};
use crate::train::card::{classifier_card, machine_description, mlm_card, MlmFacts};
use crate::train::classify::{train_classifier, ClassifyReport, ClassifySettings};
use crate::train::kmer_baseline::{conditional_frequency_accuracy, kmer_counts};
use crate::train::mlm::{train_mlm_on, MlmInputs, MlmReport, MlmSettings};

fn name_of(path: &std::path::Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("model")
        .to_string()
}

/// Pretrains (or resumes); when the run is complete, writes `out/MODEL.md`.
pub fn run_train_mlm(settings: &MlmSettings, device: &Device) -> Result<MlmReport> {
    let inputs = MlmInputs::load(settings)?;
    let report = train_mlm_on(&inputs, settings, device)?;
    if report.step < settings.steps {
        return Ok(report);
    }
    let counts = kmer_counts(&inputs.corpus, &inputs.vocab);
    let baseline =
        conditional_frequency_accuracy(inputs.validation.batches(), &inputs.vocab, &counts);
    let loaded = load_dir(
        &settings.out,
        &settings.out.display().to_string(),
        &LoadOptions::default(),
    )?;
    let facts = MlmFacts {
        baseline_accuracy: baseline,
        corpus_sha256: &sha256_file(&settings.corpus)?,
        corpus_bases: inputs.corpus.bases(),
        machine: &machine_description(device),
    };
    let card = mlm_card(
        &name_of(&settings.out),
        &loaded.model,
        settings,
        &report,
        &facts,
    );
    crate::report::write_atomic(&settings.out.join("MODEL.md"), card.as_bytes())?;
    Ok(report)
}

/// Fine-tunes, evaluates against the k-mer baseline, writes `out/MODEL.md`.
pub fn run_train_classify(settings: &ClassifySettings, device: &Device) -> Result<ClassifyReport> {
    let report = train_classifier(settings, device)?;
    let baseline =
        compare_with_baseline(&read_sequence_rows(&settings.data)?, &report.test.scores)?;
    let loaded = load_dir(
        &settings.out,
        &settings.out.display().to_string(),
        &LoadOptions::default(),
    )?;
    let card = classifier_card(
        &name_of(&settings.out),
        &loaded.model,
        settings,
        &report,
        &sha256_file(&settings.data)?,
        &baseline,
        &machine_description(device),
    );
    crate::report::write_atomic(&settings.out.join("MODEL.md"), card.as_bytes())?;
    Ok(report)
}
