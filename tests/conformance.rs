//! Conformance with HF transformers: same weights, same inputs → same hidden states, attention
//! patterns and logits (fixtures from tests/reference/make_fixtures.py, torch 2.15 / transformers 5.23).

mod common;

use candle_core::{DType, Device, Tensor};
use common::{conformance_errors, failures, fixture_model, fixture_sequences, reference};
use genolens::model::{load_dir, HeadKind, LoadOptions};
use genolens::GenolensError;

const MODELS: [&str; 4] = ["tiny-mlm-k3", "tiny-mlm-k6", "tiny-cls-k3", "tiny-cls-k6"];

#[test]
fn safetensors_and_zip_bin_checkpoints_match_hf() {
    for name in MODELS {
        let reference = reference(name);
        for folder in [name.to_string(), format!("{name}-bin")] {
            let loaded =
                load_dir(&fixture_model(&folder), &folder, &LoadOptions::default()).unwrap();
            let errors = conformance_errors(&loaded, &reference);
            assert!(errors.len() >= 6, "{folder}: compared {errors:?}");
            let failed = failures(&errors);
            assert!(failed.is_empty(), "{folder} differs from HF: {failed:?}");
            eprintln!(
                "{folder}: {}",
                errors
                    .iter()
                    .map(|(n, e, _)| format!("{n} {e:.1e}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
}

#[test]
fn heads_are_detected_from_the_checkpoint() {
    let mlm = load_dir(&fixture_model("tiny-mlm-k6"), "m", &LoadOptions::default()).unwrap();
    assert_eq!(mlm.model.head_kind(), HeadKind::MaskedLm);
    assert!(
        mlm.notes
            .iter()
            .any(|n| n.contains("tied cls.predictions.decoder.weight")),
        "{:?}",
        mlm.notes
    );
    let classifier = load_dir(
        &fixture_model("tiny-cls-k6-bin"),
        "c",
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(
        classifier.model.head_kind(),
        HeadKind::SequenceClassification { num_labels: 2 }
    );
}

#[test]
fn our_tokenizer_reproduces_the_hf_reference_ids() {
    for name in MODELS {
        let loaded = load_dir(&fixture_model(name), name, &LoadOptions::default()).unwrap();
        let reference_ids = reference(name)["input_ids"].to_vec2::<i64>().unwrap();
        for ((id, sequence), expected) in fixture_sequences().iter().zip(&reference_ids) {
            let tokens = loaded.tokenizer.tokenize(id, sequence).unwrap();
            let expected: Vec<u32> = expected[..tokens.ids.len()]
                .iter()
                .map(|&v| v as u32)
                .collect();
            assert_eq!(tokens.ids, expected, "{name} {id}");
        }
    }
}

/// Copies a fixture folder with its weights replaced by `tensors` (safetensors).
fn folder_with(
    name: &str,
    tensors: &std::collections::HashMap<String, Tensor>,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "vocab.txt"] {
        std::fs::copy(fixture_model(name).join(file), dir.path().join(file)).unwrap();
    }
    candle_core::safetensors::save(tensors, dir.path().join("model.safetensors")).unwrap();
    dir
}

fn fixture_tensors(name: &str) -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture_model(name).join("model.safetensors"), &Device::Cpu)
        .unwrap()
}

/// Adds `delta` to one element (row `row`, column 0) of a tensor.
fn perturb(tensor: &Tensor, row: usize, delta: f32) -> Tensor {
    let dims = tensor.dims().to_vec();
    let mut values: Vec<f32> = tensor.flatten_all().unwrap().to_vec1().unwrap();
    let columns = if dims.len() > 1 {
        dims[1..].iter().product()
    } else {
        1
    };
    values[row * columns] += delta;
    Tensor::from_vec(values, dims, &Device::Cpu).unwrap()
}

#[test]
fn perturbing_any_single_weight_by_1e_3_breaks_conformance() {
    for name in ["tiny-cls-k3", "tiny-mlm-k3"] {
        let reference = reference(name);
        let used_token = reference["input_ids"].to_vec2::<i64>().unwrap()[0][1] as usize;
        let tensors = fixture_tensors(name);
        let mut checked = 0;
        for tensor_name in tensors.keys() {
            let key_bias = tensor_name.ends_with("attention.self.key.bias");
            let mut perturbed = tensors.clone();
            // Perturb a row the inputs actually use (an unused vocab row cannot change anything).
            let row = if tensor_name.ends_with("word_embeddings.weight") {
                used_token
            } else {
                0
            };
            perturbed.insert(
                tensor_name.clone(),
                perturb(&tensors[tensor_name], row, 1e-3),
            );
            let dir = folder_with(name, &perturbed);
            let loaded = load_dir(dir.path(), name, &LoadOptions::default()).unwrap();
            let failed = failures(&conformance_errors(&loaded, &reference));
            if key_bias {
                // q·(k + b) = q·k + q·b is constant over keys, so softmax cancels the key bias
                // exactly: no test can see it, and the model must not change (an invariant).
                assert!(
                    failed.is_empty(),
                    "{name}: the key bias cannot matter, yet {failed:?}"
                );
            } else {
                assert!(
                    !failed.is_empty(),
                    "{name}: perturbing {tensor_name} by 1e-3 went unnoticed"
                );
            }
            checked += 1;
        }
        assert!(checked > 30, "{name}: only {checked} tensors");
        // And the unperturbed copy still passes (the test can tell the two apart).
        let dir = folder_with(name, &tensors);
        let loaded = load_dir(dir.path(), name, &LoadOptions::default()).unwrap();
        assert!(failures(&conformance_errors(&loaded, &reference)).is_empty());
    }
}

#[test]
fn a_missing_tensor_fails_the_load_and_is_named() {
    let mut tensors = fixture_tensors("tiny-cls-k3");
    tensors
        .remove("bert.encoder.layer.1.attention.self.key.bias")
        .unwrap();
    tensors.insert(
        "bert.encoder.layer.9.extra.weight".into(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    );
    let wrong = Tensor::zeros((5, 32), DType::F32, &Device::Cpu).unwrap();
    tensors.insert("classifier.weight".into(), wrong);
    let dir = folder_with("tiny-cls-k3", &tensors);
    let error = load_dir(dir.path(), "broken", &LoadOptions::default())
        .err()
        .expect("load must fail");
    let text = error.to_string();
    match error {
        GenolensError::Weights {
            missing,
            unexpected,
            wrong_shape,
            ..
        } => {
            assert_eq!(
                missing,
                vec!["bert.encoder.layer.1.attention.self.key.bias".to_string()]
            );
            assert_eq!(
                unexpected,
                vec!["bert.encoder.layer.9.extra.weight".to_string()]
            );
            assert_eq!(wrong_shape.len(), 1);
            assert_eq!(wrong_shape[0].name, "classifier.weight");
        }
        other => panic!("wrong error {other}"),
    }
    assert!(
        text.contains("missing:     bert.encoder.layer.1.attention.self.key.bias"),
        "{text}"
    );
    assert!(
        text.contains("no tensor is ever randomly initialised"),
        "{text}"
    );
}

#[test]
fn legacy_names_stale_position_ids_and_bare_prefixes_load_identically() {
    let name = "tiny-cls-k3";
    let original = fixture_tensors(name);
    let mut legacy = std::collections::HashMap::new();
    for (key, tensor) in &original {
        let key = key
            .replace("LayerNorm.weight", "LayerNorm.gamma")
            .replace("LayerNorm.bias", "LayerNorm.beta");
        let key = key.strip_prefix("bert.").map(str::to_string).unwrap_or(key);
        legacy.insert(key, tensor.clone());
    }
    let position_ids = Tensor::arange(0i64, 40, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    legacy.insert("embeddings.position_ids".into(), position_ids);
    let dir = folder_with(name, &legacy);
    let loaded = load_dir(dir.path(), name, &LoadOptions::default()).unwrap();
    assert!(
        loaded.notes.iter().any(|n| n.contains("LayerNorm.gamma")),
        "{:?}",
        loaded.notes
    );
    assert!(failures(&conformance_errors(&loaded, &reference(name))).is_empty());
}

#[test]
fn legacy_pickle_gets_a_conversion_hint() {
    let error = load_dir(
        &fixture_model("legacy-pickle"),
        "legacy",
        &LoadOptions::default(),
    )
    .err()
    .unwrap();
    assert!(
        matches!(error, GenolensError::LegacyPickle { .. }),
        "{error}"
    );
    let text = error.to_string();
    assert!(
        text.contains("pre-1.6") && text.contains("save_file"),
        "{text}"
    );
}

#[test]
fn missing_files_and_vocab_mismatch_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture_model("tiny-mlm-k3").join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let text = load_dir(dir.path(), "x", &LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(text.contains("missing vocab.txt"), "{text}");
    std::fs::copy(
        fixture_model("tiny-mlm-k6").join("vocab.txt"),
        dir.path().join("vocab.txt"),
    )
    .unwrap();
    let text = load_dir(dir.path(), "x", &LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        text.contains("4101 tokens but config.json says vocab_size 69"),
        "{text}"
    );
    std::fs::copy(
        fixture_model("tiny-mlm-k3").join("vocab.txt"),
        dir.path().join("vocab.txt"),
    )
    .unwrap();
    let text = load_dir(dir.path(), "x", &LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        text.contains("model.safetensors or pytorch_model.bin"),
        "{text}"
    );
}

#[test]
fn legacy_double_bias_adds_the_output_bias_again() {
    let name = "tiny-mlm-k3";
    let modern = load_dir(&fixture_model(name), name, &LoadOptions::default()).unwrap();
    let legacy = load_dir(
        &fixture_model(name),
        name,
        &LoadOptions {
            legacy_double_bias: true,
            ..Default::default()
        },
    )
    .unwrap();
    let reference = reference(name);
    let batch = genolens::model::Batch::from_ids(
        &[reference["input_ids"].to_vec2::<i64>().unwrap()[3][..7]
            .iter()
            .map(|&v| v as u32)
            .collect()],
        0,
        &Device::Cpu,
    )
    .unwrap();
    let hooks = genolens::model::Hooks::none();
    let a = modern
        .model
        .forward(&batch, &hooks)
        .unwrap()
        .logits
        .unwrap();
    let b = legacy
        .model
        .forward(&batch, &hooks)
        .unwrap()
        .logits
        .unwrap();
    let bias = &modern.model.named_parameters()["cls.predictions.bias"];
    let difference = common::max_abs_difference(&(b - a).unwrap(), bias);
    assert!(difference < 1e-6, "{difference}");
}
