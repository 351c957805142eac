//! The committed default models (data/models/) load through the ordinary loader and do what their
//! model cards say on held-out data: a check that the files and the cards stay true.

mod common;

use common::max_abs_difference;
use genolens::datasets::rows::{read_sequence_rows, SequenceRow};
use genolens::defaults;
use genolens::model::{load, LoadOptions};
use genolens::train::classify::evaluate_classifier;
use genolens::train::corpus::Corpus;
use genolens::train::mlm::MlmValidation;

/// The first `n` test rows of a committed dataset.
fn test_rows(dataset: &str, n: usize) -> Vec<SequenceRow> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dataset);
    read_sequence_rows(&path)
        .unwrap()
        .into_iter()
        .filter(|r| r.split == "test")
        .take(n)
        .collect()
}

fn held_out_auroc(model: &str, dataset: &str) -> f64 {
    let loaded = load(model, &LoadOptions::default()).unwrap();
    let rows = test_rows(dataset, 96);
    let refs: Vec<&SequenceRow> = rows.iter().collect();
    let evaluation = evaluate_classifier(
        &loaded.model,
        &loaded.tokenizer,
        &refs,
        32,
        loaded.model.device(),
    )
    .unwrap();
    evaluation.auroc.value
}

#[test]
fn the_promoter_classifier_separates_held_out_promoters() {
    let auroc = held_out_auroc(defaults::PROMOTER_MODEL, "data/human-promoters.parquet");
    // MODEL.md: 0.750 on the whole test split (1 088 windows); chance is 0.5.
    assert!(auroc > 0.65, "AUROC {auroc}");
}

#[test]
fn the_tf_classifier_separates_held_out_oct4_and_mafk_peaks() {
    let auroc = held_out_auroc(defaults::TF_MODEL, "data/tf-oct4-mafk.parquet");
    // MODEL.md: 0.981 on the whole test split (1 374 peaks).
    assert!(auroc > 0.95, "AUROC {auroc}");
}

#[test]
fn the_pretrained_model_is_tied_like_bert() {
    let loaded = load(defaults::PRETRAINED_MODEL, &LoadOptions::default()).unwrap();
    assert_ne!(loaded.model.config().tie_word_embeddings, Some(false));
    assert!(
        loaded.notes.iter().any(|n| n.starts_with("tied ")),
        "BERT and DNABERT tie the MLM decoder to the word embeddings: {:?}",
        loaded.notes
    );
    let parameters = loaded.model.named_parameters();
    let difference = max_abs_difference(
        &parameters["cls.predictions.decoder.weight"],
        &parameters["bert.embeddings.word_embeddings.weight"],
    );
    assert_eq!(difference, 0.0);
}

/// The k-mer frequency baseline's held-out accuracy, as the pretrained model's card states it.
fn card_baseline_accuracy() -> f64 {
    let card = std::fs::read_to_string(format!("{}/MODEL.md", defaults::PRETRAINED_MODEL)).unwrap();
    let row = card
        .lines()
        .find(|l| l.starts_with("| k-mer frequency baseline"))
        .expect("the card has a baseline row");
    row.split('|').nth(2).unwrap().trim().parse().unwrap()
}

#[test]
fn the_pretrained_model_beats_the_kmer_frequency_baseline_on_held_out_chr20() {
    // 16 kb of hg19 chr20 from 45 Mb on: the held-out region, never seen in pretraining.
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/heldout-chr20.fa");
    let loaded = load(defaults::PRETRAINED_MODEL, &LoadOptions::default()).unwrap();
    let corpus = Corpus::read(&fixture, 256).unwrap();
    let validation = MlmValidation::new(
        &corpus,
        loaded.tokenizer.kmer("MLM validation").unwrap(),
        64,
        32,
        0.15,
        5,
    )
    .unwrap();
    let pad = loaded.tokenizer.special().pad;
    let evaluation = validation
        .evaluate(&loaded.model, pad, loaded.model.device())
        .unwrap();
    let baseline = card_baseline_accuracy();
    assert!(
        evaluation.tokens > 1500,
        "{} masked tokens",
        evaluation.tokens
    );
    assert!(
        evaluation.accuracy > baseline + 0.03,
        "masked-token accuracy {:.4} vs the k-mer frequency baseline {baseline:.4}",
        evaluation.accuracy
    );
}

#[test]
fn the_fly_core_classifier_separates_held_out_core_promoters() {
    let auroc = held_out_auroc(defaults::FLY_CORE_MODEL, "data/fly-core-promoters.parquet");
    // MODEL.md: 0.835 on the whole test split (7 896 windows).
    assert!(auroc > 0.7, "AUROC {auroc}");
}
