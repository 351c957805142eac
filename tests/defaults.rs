//! The committed default models (data/models/) load through the ordinary loader and do what their
//! model cards say on held-out data: a check that the files and the cards stay true.

use genolens::datasets::rows::{read_sequence_rows, SequenceRow};
use genolens::defaults;
use genolens::model::{load, LoadOptions};
use genolens::train::classify::evaluate_classifier;

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
    // MODEL.md: 0.754 on the whole test split (1 088 windows); chance is 0.5.
    assert!(auroc > 0.65, "AUROC {auroc}");
}

#[test]
fn the_tf_classifier_separates_held_out_oct4_and_mafk_peaks() {
    let auroc = held_out_auroc(defaults::TF_MODEL, "data/tf-oct4-mafk.parquet");
    // MODEL.md: 0.994 on the whole test split (1 374 peaks).
    assert!(auroc > 0.95, "AUROC {auroc}");
}

#[test]
fn the_pretrained_model_loads_with_its_own_decoder() {
    let loaded = load(defaults::PRETRAINED_MODEL, &LoadOptions::default()).unwrap();
    assert_eq!(loaded.model.config().tie_word_embeddings, Some(false));
    let parameters = loaded.model.named_parameters();
    assert_ne!(
        parameters["cls.predictions.decoder.weight"].id(),
        parameters["bert.embeddings.word_embeddings.weight"].id(),
        "the committed MLM was trained with an untied decoder and its config says so"
    );
    assert!(
        loaded.notes.iter().any(|n| n.contains("loaded untied")),
        "{:?}",
        loaded.notes
    );
}
