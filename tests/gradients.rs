//! Backward passes against torch autograd on the same weights and inputs (fixtures from
//! tests/reference/make_fixtures.py): the gradient × input gradient of a classifier at the word
//! embeddings, and the gradient of an MLM loss at every parameter. These run through every fused
//! backward on the CPU path (batched attention products, masked softmax, dense layers with bias,
//! LayerNorm, GELU, embeddings with the tied decoder).

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use common::{fixture_model, max_error_on_valid, reference};
use genolens::analysis::embedding_gradient;
use genolens::model::checkpoint::{normalise, read_tensors};
use genolens::model::source::VarSource;
use genolens::model::weights::WeightTaker;
use genolens::model::{load_dir, Batch, HeadKind, HookedModel, Hooks, LoadOptions, ModelConfig};

fn reference_batch(reference: &HashMap<String, Tensor>) -> Batch {
    let ids = reference["input_ids"].to_dtype(DType::U32).unwrap();
    let attention_mask = reference["attention_mask"].to_dtype(DType::U32).unwrap();
    let lengths = attention_mask
        .to_vec2::<u32>()
        .unwrap()
        .iter()
        .map(|row| row.iter().filter(|&&m| m == 1).count())
        .collect();
    Batch {
        ids,
        attention_mask,
        lengths,
        ends_with_special: true,
    }
}

fn largest_magnitude(tensor: &Tensor) -> f32 {
    tensor
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[test]
fn classifier_gradient_at_the_word_embeddings_matches_torch() {
    for name in ["tiny-cls-k3", "tiny-cls-k6"] {
        let reference = reference(name);
        let batch = reference_batch(&reference);
        let loaded = load_dir(&fixture_model(name), name, &LoadOptions::default()).unwrap();
        let (gradient, _) = embedding_gradient(&loaded.model, &batch, 1).unwrap();
        let ours = &gradient;
        let theirs = &reference["embedding_gradient"];
        let error = max_error_on_valid(ours, theirs, &batch.lengths, &[1]);
        let scale = largest_magnitude(theirs);
        eprintln!("{name}: embedding gradient max error {error:.2e} (largest value {scale:.2e})");
        assert!(scale > 1e-3, "{name}: the reference gradient is degenerate");
        // README: worst 1.5e-7 measured (values up to 0.49); 1e-6 leaves room for another
        // machine's summation order.
        assert!(
            error <= 1e-6,
            "{name}: embedding gradient differs from torch by {error:e}"
        );
    }
}

/// The fixture model with every parameter a trainable variable (as the trainer builds it).
fn trainable(name: &str) -> (HookedModel, Vec<(String, Var)>) {
    let dir = fixture_model(name);
    let config = ModelConfig::from_file(&dir.join("config.json")).unwrap();
    let weights = dir.join("model.safetensors");
    let normalised = normalise(
        read_tensors(&weights).unwrap(),
        Some(HeadKind::MaskedLm),
        &config,
    )
    .unwrap();
    let mut taker = WeightTaker::new(&weights, normalised.tensors, &Device::Cpu);
    let mut vars = VarSource::new(&mut taker);
    let model = HookedModel::build(&config, HeadKind::MaskedLm, &mut vars, &Device::Cpu).unwrap();
    let vars = vars.vars;
    (model, vars)
}

#[test]
fn mlm_loss_gradient_at_every_parameter_matches_torch() {
    for name in ["tiny-mlm-k3", "tiny-mlm-k6"] {
        let reference = reference(name);
        let batch = reference_batch(&reference);
        let (model, vars) = trainable(name);
        let logits = model
            .forward(&batch, &Hooks::none())
            .unwrap()
            .logits
            .unwrap();
        let (rows, tokens, vocab) = logits.dims3().unwrap();
        // Every real token predicts its own id (the fixture script's loss).
        let real: Vec<u32> = (0..rows)
            .flat_map(|r| (0..batch.lengths[r]).map(move |t| (r * tokens + t) as u32))
            .collect();
        let index = Tensor::new(real.as_slice(), &Device::Cpu).unwrap();
        let labels = batch
            .ids
            .flatten_all()
            .unwrap()
            .index_select(&index, 0)
            .unwrap();
        let selected = logits
            .reshape((rows * tokens, vocab))
            .unwrap()
            .index_select(&index, 0)
            .unwrap();
        let loss = candle_nn::loss::cross_entropy(&selected, &labels).unwrap();
        let expected: Vec<f32> = reference["mlm_loss"].to_vec1().unwrap();
        let got: f32 = loss.to_scalar().unwrap();
        assert!(
            (got - expected[0]).abs() < 1e-5,
            "{name}: loss {got} vs {}",
            expected[0]
        );

        let gradients = loss.backward().unwrap();
        let mut compared = 0;
        let mut worst = (String::new(), 0f32);
        for (parameter, var) in &vars {
            let Some(theirs) = reference.get(&format!("grad.{parameter}")) else {
                continue;
            };
            let ours = gradients
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no gradient for {parameter}"));
            assert_eq!(ours.dims(), theirs.dims(), "{name}: {parameter}");
            let error = common::max_abs_difference(ours, theirs);
            let relative = error / (1e-6 + largest_magnitude(theirs));
            assert!(
                error <= 1e-6 + 1e-4 * largest_magnitude(theirs),
                "{name}: gradient of {parameter} differs from torch by {error:e}"
            );
            if relative > worst.1 {
                worst = (parameter.clone(), relative);
            }
            compared += 1;
        }
        eprintln!(
            "{name}: {compared} parameter gradients; largest relative error {:.1e} ({})",
            worst.1, worst.0
        );
        assert_eq!(compared, 42, "{name}: gradients compared");
    }
}
