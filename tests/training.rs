//! Training on a tiny config: the loss falls, and a run stopped at a checkpoint and resumed ends
//! with exactly the weights of an uninterrupted run. The corpus is 10 kb of real hg19 chr20.

mod common;

use std::path::{Path, PathBuf};

use candle_core::Device;
use common::max_abs_difference;
use genolens::model::{load_dir, LoadOptions, ModelConfig};
use genolens::train::adamw::AdamWSettings;
use genolens::train::kmer_init::InitScheme;
use genolens::train::mlm::{train_mlm, MlmSettings};

/// The largest |difference| of every tensor between the models saved in two run folders (both
/// must hold the same tensors).
fn weight_differences(a: &Path, b: &Path) -> Vec<(String, f32)> {
    let load = |dir: &Path| {
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap()
    };
    let (a, b) = (load(a), load(b));
    assert_eq!(a.len(), b.len());
    a.iter()
        .map(|(name, tensor)| (name.clone(), max_abs_difference(tensor, &b[name])))
        .collect()
}

fn chr20_fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/motifs/sequences.fa")
}

fn settings(out: &Path, steps: usize) -> MlmSettings {
    MlmSettings {
        corpus: chr20_fixture(),
        heldout: chr20_fixture(),
        out: out.to_path_buf(),
        config: ModelConfig::bert(69, 2, 32, 4, 64, 64),
        window: 40,
        batch_size: 8,
        steps,
        learning_rate: 3e-3,
        warmup_fraction: 0.1,
        adamw: AdamWSettings::default(),
        mask_rate: 0.15,
        seed: 11,
        eval_every: steps,
        eval_windows: 32,
        checkpoint_every: 5,
        stop_after: None,
        init: InitScheme::Kmer,
        from: None,
    }
}

#[test]
fn a_few_mlm_steps_lower_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let report = train_mlm(&settings(dir.path(), 120), &Device::Cpu).unwrap();
    let log = std::fs::read_to_string(dir.path().join("log.tsv")).unwrap();
    let losses: Vec<f64> = log
        .lines()
        .skip(1)
        .map(|l| l.split('\t').nth(1).unwrap().parse().unwrap())
        .collect();
    let first: f64 = losses[..10].iter().sum::<f64>() / 10.0;
    let last: f64 = losses[losses.len() - 10..].iter().sum::<f64>() / 10.0;
    println!(
        "train loss {first:.3} -> {last:.3}; held-out {:?}",
        report.heldout
    );
    // ln(64) = 4.16 is the loss of a uniform guess over the 3-mers.
    assert!(first > 3.9 && last < first - 0.1, "{first} -> {last}");
    assert!(report.heldout.loss < 64f64.ln(), "{:?}", report.heldout);
    // The saved folder loads back through the foundation loader as an MLM.
    let loaded = load_dir(dir.path(), "trained", &LoadOptions::default()).unwrap();
    assert_eq!(loaded.model.head_kind().hf_class(), "BertForMaskedLM");
}

#[test]
fn a_resumed_run_ends_with_the_same_weights() {
    let straight = tempfile::tempdir().unwrap();
    train_mlm(&settings(straight.path(), 12), &Device::Cpu).unwrap();
    let resumed = tempfile::tempdir().unwrap();
    let mut first_part = settings(resumed.path(), 12);
    first_part.stop_after = Some(5);
    let partial = train_mlm(&first_part, &Device::Cpu).unwrap();
    assert_eq!(partial.step, 5);
    assert!(
        !resumed.path().join("model.safetensors").exists(),
        "no final model before the end"
    );
    let finished = train_mlm(&settings(resumed.path(), 12), &Device::Cpu).unwrap();
    assert_eq!(finished.step, 12);
    for (name, difference) in weight_differences(straight.path(), resumed.path()) {
        assert!(difference == 0.0, "{name} differs after resuming");
    }
    let log = std::fs::read_to_string(resumed.path().join("log.tsv")).unwrap();
    assert_eq!(
        log.lines().count(),
        13,
        "one header and one row per step, none repeated"
    );
}

#[test]
fn a_continued_run_starts_from_the_first_runs_weights() {
    let first = tempfile::tempdir().unwrap();
    train_mlm(&settings(first.path(), 20), &Device::Cpu).unwrap();
    // Two steps at a negligible learning rate: the continued model must still be the first one
    // (a fresh init, whatever its seed, differs everywhere by about its 0.02 scale).
    let continued = tempfile::tempdir().unwrap();
    let mut second = settings(continued.path(), 2);
    second.from = Some(first.path().to_path_buf());
    second.seed = 12;
    second.learning_rate = 1e-9;
    train_mlm(&second, &Device::Cpu).unwrap();
    for (name, largest) in weight_differences(first.path(), continued.path()) {
        assert!(largest < 1e-6, "{name} moved by {largest}");
    }

    // Another shape is refused, naming the key.
    let refused = tempfile::tempdir().unwrap();
    let mut other_shape = settings(refused.path(), 5);
    other_shape.config = ModelConfig::bert(69, 3, 32, 4, 64, 64);
    other_shape.from = Some(first.path().to_path_buf());
    let message = match train_mlm(&other_shape, &Device::Cpu) {
        Ok(_) => panic!("continued with another shape"),
        Err(e) => e.to_string(),
    };
    assert!(
        message.contains("num_hidden_layers is 2 there but 3 here"),
        "{message}"
    );
}

#[test]
fn fine_tuning_a_pretrained_model_writes_a_loadable_classifier_and_card() {
    use genolens::datasets::rows::{read_sequence_rows, write_rows};
    use genolens::report::Provenance;
    use genolens::train::classify::ClassifySettings;
    let pretrained = tempfile::tempdir().unwrap();
    let mut pretraining = settings(pretrained.path(), 5);
    pretraining.config = ModelConfig::bert(69, 2, 32, 4, 64, 256);
    train_mlm(&pretraining, &Device::Cpu).unwrap();

    // A small slice of the real Oct4/MafK task: 96 training and 48 test peaks, both classes.
    let rows = read_sequence_rows(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/tf-oct4-mafk.parquet"),
    )
    .unwrap();
    let pick = |split: &'static str, label: i64, n: usize| -> Vec<_> {
        rows.iter()
            .filter(|r| r.split == split && r.label == label)
            .take(n)
            .cloned()
            .collect()
    };
    let small: Vec<_> = [
        pick("train", 0, 48),
        pick("train", 1, 48),
        pick("test", 0, 24),
        pick("test", 1, 24),
    ]
    .concat();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("small.parquet");
    write_rows(&data, &small, &Provenance::for_dataset(0, Vec::new())).unwrap();
    let out = work.path().join("classifier");
    let settings = ClassifySettings {
        data,
        init: pretrained.path().to_path_buf(),
        out: out.clone(),
        epochs: 2,
        batch_size: 16,
        learning_rate: 1e-3,
        warmup_fraction: 0.1,
        adamw: AdamWSettings::default(),
        seed: 3,
        dropout: 0.1,
    };
    let report = genolens::commands::train::run_train_classify(&settings, &Device::Cpu).unwrap();
    assert_eq!(report.steps, 12);
    assert_eq!(
        report.initialised,
        vec![
            "bert.pooler.dense.weight",
            "bert.pooler.dense.bias",
            "classifier.weight",
            "classifier.bias"
        ]
    );
    assert_eq!(report.test.per_class.iter().map(|c| c.3).sum::<usize>(), 48);
    let loaded = load_dir(&out, "classifier", &LoadOptions::default()).unwrap();
    assert_eq!(
        loaded.model.head_kind().hf_class(),
        "BertForSequenceClassification"
    );
    // The model knows what it was trained on: class names both ways, and the dataset's sha256.
    let config = loaded.model.config();
    assert_eq!(
        config.class_names().unwrap(),
        vec!["MafK".to_string(), "Oct4".to_string()]
    );
    assert_eq!(config.label2id.as_ref().unwrap()["Oct4"], 1);
    let recorded = config.training_data().unwrap();
    assert_eq!(recorded.path, settings.data.display().to_string());
    assert_eq!(
        recorded.sha256,
        genolens::model::load::sha256_file(&settings.data).unwrap()
    );
    assert_eq!(
        genolens::commands::evaluate::resolve_data(&loaded, None).unwrap(),
        settings.data
    );
    let card = std::fs::read_to_string(out.join("MODEL.md")).unwrap();
    assert!(
        card.contains("Test split: AUROC")
            && card.contains("k-mer logistic baseline")
            && card.contains("| 1 (Oct4) |"),
        "{card}"
    );
}
