//! Shared helpers for the integration tests: fixture paths and tolerance comparisons on valid tokens.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor, D};
use genolens::data::{open_sequences, TableColumns};
use genolens::model::{Batch, BlockSite, HookPoint, HookedModel, Hooks, LoadedModel};

/// Runs the genolens binary the tests were built with.
pub fn genolens(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_genolens"))
        .args(args)
        .output()
        .unwrap()
}

/// tests/fixtures/models/<name>.
pub fn fixture_model(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
}

/// The raw fixture sequences (tests/fixtures/sequences.fa).
pub fn fixture_sequences() -> Vec<(String, String)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sequences.fa");
    open_sequences(&path, &TableColumns::default())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.id, e.sequence)
        })
        .collect()
}

/// Reference tensors saved by tests/reference/make_fixtures.py.
pub fn reference(name: &str) -> HashMap<String, Tensor> {
    let path = fixture_model(&format!("{name}.reference.safetensors"));
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

/// Largest |a − b| over valid tokens. `token_axes` lists the axes indexed by token position
/// (rows beyond a sequence's length are skipped on those axes).
pub fn max_error_on_valid(
    ours: &Tensor,
    theirs: &Tensor,
    lengths: &[usize],
    token_axes: &[usize],
) -> f32 {
    assert_eq!(ours.dims(), theirs.dims(), "shape");
    let dims = ours.dims().to_vec();
    let ours: Vec<f32> = ours.flatten_all().unwrap().to_vec1().unwrap();
    let theirs: Vec<f32> = theirs
        .to_dtype(candle_core::DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let strides: Vec<usize> = (0..dims.len())
        .map(|a| dims[a + 1..].iter().product())
        .collect();
    let mut worst = 0f32;
    for (flat, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        let sequence = flat / strides[0];
        let valid = token_axes
            .iter()
            .all(|&axis| (flat / strides[axis]) % dims[axis] < lengths[sequence]);
        if valid {
            worst = worst.max((a - b).abs());
        }
    }
    worst
}

/// Per-tensor (name, error, tolerance) of a loaded model against its HF reference.
pub fn conformance_errors(
    loaded: &LoadedModel,
    reference: &HashMap<String, Tensor>,
) -> Vec<(String, f32, f32)> {
    let ids = reference["input_ids"]
        .to_dtype(candle_core::DType::U32)
        .unwrap();
    let mask = reference["attention_mask"]
        .to_dtype(candle_core::DType::U32)
        .unwrap();
    let lengths: Vec<usize> = mask
        .to_vec2::<u32>()
        .unwrap()
        .iter()
        .map(|row| row.iter().filter(|&&m| m == 1).count())
        .collect();
    let batch = Batch {
        ids,
        attention_mask: mask,
        lengths: lengths.clone(),
        ends_with_special: true,
    };
    let hooks = Hooks::none()
        .capture("blocks.0.hook_resid_pre")
        .unwrap()
        .capture("blocks.*.hook_resid_post")
        .unwrap()
        .capture("blocks.*.ln2.hook_normalized")
        .unwrap()
        .capture("blocks.*.hook_normalized_resid_post")
        .unwrap()
        .capture("blocks.*.attn.hook_pattern")
        .unwrap();
    let output = loaded.model.forward(&batch, &hooks).unwrap();
    let layers = loaded.model.config().num_hidden_layers;
    let mut errors = Vec::new();
    let hidden0 = output
        .cache
        .get_point(HookPoint::block(0, BlockSite::ResidPre))
        .unwrap();
    errors.push((
        "hidden_states.0".into(),
        max_error_on_valid(hidden0, &reference["hidden_states.0"], &lengths, &[1]),
        1e-5,
    ));
    for layer in 0..layers {
        let at = |site| {
            output
                .cache
                .get_point(HookPoint::block(layer, site))
                .unwrap()
        };
        let name = format!("hidden_states.{}", layer + 1);
        // TransformerLens BERT names: the block output is hook_normalized_resid_post (and
        // ln2.hook_normalized inside the LayerNorm); hook_resid_post is the sum before that LN.
        for (label, hidden) in [
            (
                "hook_normalized_resid_post",
                at(BlockSite::NormalizedResidPost).clone(),
            ),
            ("ln2.hook_normalized", at(BlockSite::Ln2Normalized).clone()),
            (
                "LN(hook_resid_post)",
                output_layer_norm(&loaded.model, layer, at(BlockSite::ResidPost)),
            ),
        ] {
            errors.push((
                format!("{name} as {label}"),
                max_error_on_valid(&hidden, &reference[&name], &lengths, &[1]),
                1e-5,
            ));
        }
        let pattern = output
            .cache
            .get_point(HookPoint::block(layer, BlockSite::Pattern))
            .unwrap();
        let name = format!("attentions.{layer}");
        // Valid query rows, every key column (pad keys must be ~0 in both).
        errors.push((
            name.clone(),
            max_error_on_valid(pattern, &reference[&name], &lengths, &[2]),
            1e-5,
        ));
    }
    let logits = output.logits.as_ref().unwrap();
    let token_axes: &[usize] = if logits.rank() == 3 { &[1] } else { &[] };
    errors.push((
        "logits".into(),
        max_error_on_valid(logits, &reference["logits"], &lengths, token_axes),
        1e-4,
    ));
    if let Some(pooled) = reference.get("pooled") {
        errors.push((
            "pooled".into(),
            max_error_on_valid(output.pooled.as_ref().unwrap(), pooled, &lengths, &[]),
            1e-5,
        ));
    }
    errors
}

/// Layer `layer`'s output LayerNorm applied in the test, from the checkpoint's γ and β (HF's
/// definition: biased variance, eps inside the square root), computed in f64.
pub fn output_layer_norm(model: &HookedModel, layer: usize, x: &Tensor) -> Tensor {
    let parameter = |name: &str| {
        model.named_parameters()[&format!("bert.encoder.layer.{layer}.output.LayerNorm.{name}")]
            .to_dtype(DType::F64)
            .unwrap()
    };
    let eps = model.config().layer_norm_eps;
    let x = x.to_dtype(DType::F64).unwrap();
    let centred = x
        .broadcast_sub(&x.mean_keepdim(D::Minus1).unwrap())
        .unwrap();
    let variance = centred.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
    let normalised = centred
        .broadcast_div(&(variance + eps).unwrap().sqrt().unwrap())
        .unwrap();
    normalised
        .broadcast_mul(&parameter("weight"))
        .unwrap()
        .broadcast_add(&parameter("bias"))
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
}

/// Names of tensors outside tolerance.
pub fn failures(errors: &[(String, f32, f32)]) -> Vec<String> {
    errors
        .iter()
        .filter(|(_, e, tol)| e.is_nan() || e > tol)
        .map(|(n, e, tol)| format!("{n}: {e:e} > {tol:e}"))
        .collect()
}

/// Largest |a − b| over all elements (b broadcast to a's shape).
pub fn max_abs_difference(a: &Tensor, b: &Tensor) -> f32 {
    a.broadcast_sub(b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// A tiny classifier fine-tuned here (seconds) on planted-motif sequences (GGGACTTTCC in 36-nt
/// random sequences, 1600 training and `test` test sequences, seed 5), written into `dir`:
/// returns the rows, the table's path and the model folder. Panics unless the model learnt the
/// motif (test accuracy > 0.8): checks built on it would mean nothing.
pub fn planted_classifier(
    dir: &std::path::Path,
    test: usize,
) -> (
    Vec<genolens::analysis::attribution::planted::PlantedRow>,
    PathBuf,
    PathBuf,
) {
    use genolens::analysis::attribution::planted::{planted_rows, PlantedSizes};
    let sizes = PlantedSizes {
        train: 1600,
        valid: 100,
        test,
        length: 36,
    };
    let rows = planted_rows(5, sizes);
    let table = dir.join("planted.parquet");
    genolens::datasets::rows::write_rows(&table, &rows, &genolens::report::Provenance::current(5))
        .unwrap();
    let settings = genolens::train::classify::ClassifySettings {
        data: table.clone(),
        init: fixture_model("tiny-mlm-k6"),
        out: dir.join("model"),
        epochs: 8,
        batch_size: 32,
        learning_rate: 3e-3,
        warmup_fraction: 0.1,
        adamw: genolens::train::adamw::AdamWSettings::with_weight_decay(0.01),
        seed: 5,
        dropout: 0.0,
    };
    let report = genolens::train::classify::train_classifier(&settings, &Device::Cpu).unwrap();
    assert!(
        report.test.accuracy > 0.8,
        "the tiny model did not learn the motif (test accuracy {}): checks on it would mean nothing",
        report.test.accuracy
    );
    (rows, table, settings.out)
}
