//! Activation patching against HF transformers with forward hooks (fixtures from
//! tests/reference/make_patching_fixtures.py: one full forward per patch, the TransformerLens way),
//! and the seed-004 artifact: swapping a stacked hidden-state tensor without re-running the
//! later layers is not patching.

mod common;

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use common::fixture_model;
use genolens::analysis::patching::{PairRuns, Patch, PatchSite, PatchSource};
use genolens::analysis::tokenize_batch;
use genolens::model::{load_dir, BlockSite, HeadKind, HookPoint, Hooks, LoadOptions, LoadedModel};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/patching")
}

fn cases() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("cases.json")).unwrap()).unwrap()
}

fn load(name: &str) -> LoadedModel {
    let head = if name.contains("mlm") {
        Some(HeadKind::Encoder { pooler: false })
    } else {
        None
    };
    let options = LoadOptions {
        head,
        ..LoadOptions::default()
    };
    load_dir(&fixture_model(name), name, &options).unwrap()
}

fn pair(loaded: &LoadedModel, clean: &str, corrupt: &str) -> (PairRuns, Vec<u32>, Vec<u32>) {
    let batch = |s: &str| {
        tokenize_batch(&loaded.tokenizer, [("x", s)], loaded.model.device())
            .unwrap()
            .0
    };
    let (clean, corrupt) = (batch(clean), batch(corrupt));
    let ids = |b: &genolens::model::Batch| -> Vec<u32> {
        b.ids.flatten_all().unwrap().to_vec1().unwrap()
    };
    let (a, b) = (ids(&clean), ids(&corrupt));
    (
        PairRuns::new(&loaded.model, &clean, &corrupt).unwrap(),
        a,
        b,
    )
}

fn rows(tensor: &Tensor) -> Vec<Vec<f32>> {
    tensor.to_vec2().unwrap()
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn every_patch_matches_hf_transformers_with_a_forward_hook_within_1e_5() {
    let cases = cases();
    let (clean, corrupt) = (
        cases["clean"].as_str().unwrap(),
        cases["corrupt"].as_str().unwrap(),
    );
    for name in ["tiny-cls-k6", "tiny-mlm-k3"] {
        let loaded = load(name);
        let reference = candle_core::safetensors::load(
            fixtures().join(format!("{name}.safetensors")),
            &Device::Cpu,
        )
        .unwrap();
        let (runs, clean_ids, corrupt_ids) = pair(&loaded, clean, corrupt);
        let reference_ids = |key: &str| -> Vec<u32> {
            reference[key]
                .to_vec1::<i64>()
                .unwrap()
                .into_iter()
                .map(|x| x as u32)
                .collect()
        };
        assert_eq!(
            clean_ids,
            reference_ids("clean_ids"),
            "{name}: clean tokens"
        );
        assert_eq!(
            corrupt_ids,
            reference_ids("corrupt_ids"),
            "{name}: corrupt tokens"
        );
        let option = |v: &serde_json::Value| -> Option<usize> {
            let v = v.as_i64().unwrap();
            (v >= 0).then_some(v as usize)
        };
        let patches: Vec<Patch> = cases["models"][name]["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|case| Patch {
                site: case["site"].as_str().unwrap().parse::<PatchSite>().unwrap(),
                layer: case["layer"].as_u64().unwrap() as usize,
                position: option(&case["position"]),
                head: option(&case["head"]),
            })
            .collect();
        let ours = runs
            .patch(&loaded.model, &patches, PatchSource::Clean, 32)
            .unwrap();
        let expected_cls = rows(&reference["cls"]);
        let expected_logits = reference.get("logits").map(rows);
        assert_eq!(ours.len(), expected_cls.len());
        let mut worst = 0f32;
        for (i, patched) in ours.iter().enumerate() {
            let error = max_abs(&patched.cls, &expected_cls[i]);
            assert!(
                error < 1e-5,
                "{name} {:?}: final [CLS] differs from HF by {error}",
                patches[i]
            );
            worst = worst.max(error);
            if let Some(expected) = &expected_logits {
                let error = max_abs(patched.logits.as_ref().unwrap(), &expected[i]);
                assert!(
                    error < 1e-5,
                    "{name} {:?}: logits differ by {error}",
                    patches[i]
                );
            }
        }
        assert!(
            max_abs(
                &runs.clean_cls().unwrap(),
                &reference["clean_cls"].to_vec1().unwrap()
            ) < 1e-5
        );
        eprintln!("{name}: {} patches, worst |Δ| {worst:e}", ours.len());
    }
}

/// Seed 004's public code stacked the hidden states of the REF and ALT runs
/// ([embeddings, block 0 output, ..., last block output]), swapped entry L's slice and read the
/// last entry's [CLS] without re-running the blocks after L: the output then "restores" only when L
/// is the last entry (the "final-layer bottleneck", an artifact). Real patching recomputes every
/// later block from the patched one.
#[test]
fn swapping_stacked_hidden_states_without_rerunning_is_not_patching() {
    let cases = cases();
    let loaded = load("tiny-mlm-k3");
    let batch = |s: &str| {
        tokenize_batch(&loaded.tokenizer, [("x", s)], loaded.model.device())
            .unwrap()
            .0
    };
    let (clean_batch, corrupt_batch) = (
        batch(cases["clean"].as_str().unwrap()),
        batch(cases["corrupt"].as_str().unwrap()),
    );
    let layers = loaded.model.config().num_hidden_layers;
    let hooks = Hooks::none().capture("blocks.*.hook_resid_pre").unwrap();
    let stack = |b: &genolens::model::Batch| -> Tensor {
        let output = loaded.model.forward(b, &hooks).unwrap();
        let mut entries: Vec<Tensor> = (0..layers)
            .map(|l| {
                output
                    .cache
                    .get_point(HookPoint::block(l, BlockSite::ResidPre))
                    .unwrap()
                    .clone()
            })
            .collect();
        entries.push(output.last_hidden_state.clone());
        Tensor::stack(&entries, 0).unwrap()
    };
    let (clean_stack, corrupt_stack) = (stack(&clean_batch), stack(&corrupt_batch));
    let cls_of = |stack: &Tensor| -> Vec<f32> {
        stack
            .get(layers)
            .unwrap()
            .get(0)
            .unwrap()
            .get(0)
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    let (clean, corrupt) = (cls_of(&clean_stack), cls_of(&corrupt_stack));
    let full = max_abs(&clean, &corrupt);
    assert!(full > 1e-3, "the SNV moves the final [CLS]");
    // The seed's swap: whole entry `entry` of the corrupt stack replaced by the clean one.
    let swapped = |entry: usize| -> Vec<f32> {
        let mut entries: Vec<Tensor> = (0..=layers)
            .map(|e| corrupt_stack.get(e).unwrap())
            .collect();
        entries[entry] = clean_stack.get(entry).unwrap();
        cls_of(&Tensor::stack(&entries, 0).unwrap())
    };
    let (runs, _, _) = pair(
        &loaded,
        cases["clean"].as_str().unwrap(),
        cases["corrupt"].as_str().unwrap(),
    );
    let patches: Vec<Patch> = (0..layers)
        .map(|layer| Patch {
            site: PatchSite::ResidPre,
            layer,
            position: None,
            head: None,
        })
        .collect();
    let real = runs
        .patch(&loaded.model, &patches, PatchSource::Clean, 8)
        .unwrap();
    // The pair's reference outputs evaluate the last block's [CLS] row alone: the same values
    // as the full forward, up to the order of summation.
    let reference = runs.clean_cls().unwrap();
    assert!(max_abs(&reference, &clean) < 1e-5);
    for (layer, patched) in real.iter().enumerate() {
        // The swap of block L's input leaves the output at the corrupt run; the real patch of the
        // whole block input restores the clean output exactly.
        assert_eq!(
            swapped(layer),
            corrupt,
            "layer {layer}: the swap changes nothing"
        );
        assert_eq!(
            patched.cls, reference,
            "layer {layer}: real patching restores"
        );
    }
    // The artifact "restores" only at the last entry: a bottleneck by construction.
    assert_eq!(swapped(layers), clean);
    // One token covering the SNV (nt 11: 3-mers 9..=11 are tokens 10..=12) at the first layer:
    // real patching moves the output, the swap cannot.
    let one = runs
        .patch(
            &loaded.model,
            &[Patch {
                site: PatchSite::ResidPre,
                layer: 0,
                position: Some(11),
                head: None,
            }],
            PatchSource::Clean,
            1,
        )
        .unwrap();
    assert!(max_abs(&one[0].cls, &corrupt) > 1e-4);
}
