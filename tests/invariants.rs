//! Invariants on a tiny random model built in Rust (no files): hooks, patching, forward_from, ablation.

mod common;

use candle_core::{Device, Tensor, Var};
use genolens::model::{
    Batch, BlockSite, HeadKind, HookPoint, HookedModel, Hooks, Intervention, ModelConfig,
};
use genolens::tokenize::{KmerTokenizer, KmerVocab};

fn model(head: HeadKind) -> HookedModel {
    HookedModel::random(&ModelConfig::tiny(3), head, 42, &Device::Cpu).unwrap()
}

fn batch(sequences: &[&str]) -> Batch {
    let tokenizer = KmerTokenizer::new(KmerVocab::dnabert(3), 64);
    let tokens: Vec<_> = sequences
        .iter()
        .map(|s| tokenizer.tokenize("s", s).unwrap())
        .collect();
    Batch::from_tokenized(&tokens, 0, &Device::Cpu).unwrap()
}

fn values(tensor: &Tensor) -> Vec<f32> {
    tensor.flatten_all().unwrap().to_vec1().unwrap()
}

const CLEAN: [&str; 3] = [
    "ACGTAGCATCGGATCTAGG",
    "TTGACNGTACGA",
    "GATTACAGATTACACGTACG",
];
const CORRUPT: [&str; 3] = [
    "ACGTAGCATCAGATCTAGG",
    "TTGACNGTTCGA",
    "GATTACAGATTCCACGTACG",
];

#[test]
fn patching_a_run_with_its_own_activations_changes_nothing_bit_for_bit() {
    let model = model(HeadKind::SequenceClassification { num_labels: 2 });
    let batch = batch(&CLEAN);
    let everything = Hooks::none().capture("*").unwrap();
    let clean = model.forward(&batch, &everything).unwrap();
    let baseline = values(clean.logits.as_ref().unwrap());
    assert!(
        clean.cache.len() >= 2 * 13 + 5,
        "captured {}",
        clean.cache.len()
    );
    for (point, activation) in clean.cache.iter() {
        let mut variants = vec![Intervention::Replace {
            value: activation.clone(),
            positions: None,
            heads: None,
        }];
        if activation.rank() >= 3 {
            variants.push(Intervention::Replace {
                value: activation.clone(),
                positions: Some(vec![0, 2]),
                heads: None,
            });
        }
        if matches!(
            point,
            HookPoint::Block {
                site: BlockSite::Z | BlockSite::Pattern | BlockSite::Q,
                ..
            }
        ) {
            variants.push(Intervention::Replace {
                value: activation.clone(),
                positions: None,
                heads: Some(vec![1]),
            });
        }
        for intervention in variants {
            let hooks = Hooks::none().intervene(*point, intervention.clone());
            let patched = model.forward(&batch, &hooks).unwrap();
            assert_eq!(
                values(patched.logits.as_ref().unwrap()),
                baseline,
                "{point} {intervention:?}"
            );
        }
    }
}

#[test]
fn patching_re_runs_the_forward_from_the_patched_layer() {
    let model = model(HeadKind::SequenceClassification { num_labels: 2 });
    let capture = Hooks::none().capture("*").unwrap();
    let clean = model.forward(&batch(&CLEAN), &capture).unwrap();
    let corrupt_batch = batch(&CORRUPT);
    let corrupt = model.forward(&corrupt_batch, &capture).unwrap();
    // Patch layer 1's input at one position with the clean activation.
    let point = HookPoint::block(1, BlockSite::ResidPre);
    let hooks = Hooks::none()
        .intervene(
            point,
            Intervention::Replace {
                value: clean.cache.get_point(point).unwrap().clone(),
                positions: Some(vec![5]),
                heads: None,
            },
        )
        .capture("*")
        .unwrap();
    let patched = model.forward(&corrupt_batch, &hooks).unwrap();
    // Layer 0 is untouched.
    let layer0 = HookPoint::block(0, BlockSite::NormalizedResidPost);
    assert_eq!(
        values(patched.cache.get_point(layer0).unwrap()),
        values(corrupt.cache.get_point(layer0).unwrap())
    );
    // Layer 1's input now carries the clean row at position 5 and the corrupt rows elsewhere.
    let patched_input = patched.cache.get_point(point).unwrap();
    let row = |t: &Tensor, position: usize| values(&t.narrow(1, position, 1).unwrap());
    assert_eq!(
        row(patched_input, 5),
        row(clean.cache.get_point(point).unwrap(), 5)
    );
    assert_eq!(
        row(patched_input, 4),
        row(corrupt.cache.get_point(point).unwrap(), 4)
    );
    // Later layers were recomputed: attention spreads the patch to other positions, so the
    // layer-1 output differs from the corrupt run at a position that was not patched.
    let layer1 = HookPoint::block(1, BlockSite::NormalizedResidPost);
    assert_ne!(
        row(patched.cache.get_point(layer1).unwrap(), 0),
        row(corrupt.cache.get_point(layer1).unwrap(), 0)
    );
    assert_ne!(
        values(patched.logits.as_ref().unwrap()),
        values(corrupt.logits.as_ref().unwrap())
    );
}

#[test]
fn forward_from_a_layer_equals_the_full_forward() {
    for head in [
        HeadKind::MaskedLm,
        HeadKind::SequenceClassification { num_labels: 3 },
        HeadKind::Encoder { pooler: false },
    ] {
        let model = model(head);
        let batch = batch(&CLEAN);
        let full = model
            .forward(
                &batch,
                &Hooks::none().capture("blocks.*.hook_resid_pre").unwrap(),
            )
            .unwrap();
        for layer in 0..model.config().num_hidden_layers {
            let residual = full
                .cache
                .get_point(HookPoint::block(layer, BlockSite::ResidPre))
                .unwrap();
            let resumed = model
                .forward_from(layer, residual, &batch, &Hooks::none())
                .unwrap();
            assert_eq!(
                values(&resumed.last_hidden_state),
                values(&full.last_hidden_state),
                "{head:?} layer {layer}"
            );
            assert_eq!(values(&resumed.cls), values(&full.cls));
            if let Some(logits) = &full.logits {
                assert_eq!(values(resumed.logits.as_ref().unwrap()), values(logits));
            }
        }
        let past_the_end = model
            .forward_from(2, &full.last_hidden_state, &batch, &Hooks::none())
            .unwrap();
        assert_eq!(
            values(&past_the_end.last_hidden_state),
            values(&full.last_hidden_state)
        );
        assert!(model
            .forward_from(3, &full.last_hidden_state, &batch, &Hooks::none())
            .is_err());
    }
}

#[test]
fn zero_ablating_every_head_leaves_exactly_the_output_bias() {
    let model = model(HeadKind::MaskedLm);
    let batch = batch(&CLEAN);
    for layer in 0..2 {
        let hooks = Hooks::none()
            .intervene(
                HookPoint::block(layer, BlockSite::Z),
                Intervention::ZeroHeads {
                    heads: vec![0, 1, 2, 3],
                },
            )
            .capture(&format!("blocks.{layer}.hook_attn_out"))
            .unwrap();
        let output = model.forward(&batch, &hooks).unwrap();
        let attention_out = output
            .cache
            .get_point(HookPoint::block(layer, BlockSite::AttnOut))
            .unwrap();
        let bias = &model.named_parameters()
            [&format!("bert.encoder.layer.{layer}.attention.output.dense.bias")];
        let expected = bias.broadcast_as(attention_out.dims()).unwrap();
        assert_eq!(
            values(attention_out),
            values(&expected.contiguous().unwrap())
        );
    }
}

#[test]
fn ablating_some_heads_touches_only_those_heads() {
    let model = model(HeadKind::MaskedLm);
    let batch = batch(&CLEAN);
    let z = HookPoint::block(0, BlockSite::Z);
    let plain = model
        .forward(&batch, &Hooks::none().capture_point(z))
        .unwrap();
    let mean = plain
        .cache
        .get_point(z)
        .unwrap()
        .mean(0)
        .unwrap()
        .mean(0)
        .unwrap(); // [h, d_head]
    for intervention in [
        Intervention::ZeroHeads { heads: vec![2] },
        Intervention::MeanHeads {
            heads: vec![2],
            mean: mean.clone(),
        },
    ] {
        let hooks = Hooks::none().intervene(z, intervention).capture_point(z);
        let ablated = model.forward(&batch, &hooks).unwrap();
        let head = |t: &Tensor, h: usize| values(&t.narrow(2, h, 1).unwrap());
        let before = plain.cache.get_point(z).unwrap();
        let after = ablated.cache.get_point(z).unwrap();
        for other in [0, 1, 3] {
            assert_eq!(head(after, other), head(before, other));
        }
        assert_ne!(head(after, 2), head(before, 2));
    }
}

#[test]
fn per_head_results_sum_to_the_attention_output() {
    let model = model(HeadKind::MaskedLm);
    let batch = batch(&CLEAN);
    let hooks = Hooks::none()
        .capture("blocks.1.attn.hook_result")
        .unwrap()
        .capture("blocks.1.hook_attn_out")
        .unwrap();
    let output = model.forward(&batch, &hooks).unwrap();
    let result = output.cache.get("blocks.1.attn.hook_result").unwrap();
    assert_eq!(result.dims(), &[3, 20, 4, 16]);
    let bias = &model.named_parameters()["bert.encoder.layer.1.attention.output.dense.bias"];
    let summed = result.sum(2).unwrap().broadcast_add(bias).unwrap();
    let difference = (summed - output.cache.get("blocks.1.hook_attn_out").unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    assert!(difference.to_scalar::<f32>().unwrap() < 1e-5);
    // Intervening on hook_result routes the attention output through the per-head sum.
    let zero_head = Hooks::none()
        .intervene(
            HookPoint::block(1, BlockSite::Result),
            Intervention::ZeroHeads {
                heads: vec![0, 1, 2, 3],
            },
        )
        .capture("blocks.1.hook_attn_out")
        .unwrap();
    let ablated = model.forward(&batch, &zero_head).unwrap();
    let attention_out = ablated.cache.get("blocks.1.hook_attn_out").unwrap();
    // Through hook_result the change is added to the exact output, so this holds up to rounding
    // (zero-ablation on hook_z is the bit-exact route, tested above).
    let difference = common::max_abs_difference(attention_out, bias);
    assert!(difference < 1e-6, "{difference}");
}

#[test]
fn padding_never_changes_a_sequence_s_outputs() {
    let model = model(HeadKind::MaskedLm);
    let alone = model.forward(&batch(&CLEAN[1..2]), &Hooks::none()).unwrap();
    let padded = model
        .forward(
            &batch(&CLEAN),
            &Hooks::none().capture("blocks.*.attn.hook_pattern").unwrap(),
        )
        .unwrap();
    let length = alone.last_hidden_state.dim(1).unwrap();
    let ours = padded
        .last_hidden_state
        .get(1)
        .unwrap()
        .narrow(0, 0, length)
        .unwrap();
    let difference = (ours - alone.last_hidden_state.get(0).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    assert!(difference.to_scalar::<f32>().unwrap() < 1e-5);
    // No attention reaches padding keys.
    let pattern = padded
        .cache
        .get("blocks.0.attn.hook_pattern")
        .unwrap()
        .get(1)
        .unwrap();
    let mass_on_padding = pattern
        .narrow(2, length, 20 - length)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    assert_eq!(mass_on_padding.to_scalar::<f32>().unwrap(), 0.0);
}

#[test]
fn capturing_nothing_and_capturing_everything_give_the_same_outputs() {
    let model = model(HeadKind::MaskedLm);
    let batch = batch(&CLEAN);
    let bare = model.forward(&batch, &Hooks::none()).unwrap();
    let all = model
        .forward(&batch, &Hooks::none().capture("*").unwrap())
        .unwrap();
    assert!(bare.cache.is_empty());
    assert_eq!(
        values(bare.logits.as_ref().unwrap()),
        values(all.logits.as_ref().unwrap())
    );
}

#[test]
fn steering_adds_a_direction_where_asked() {
    let model = model(HeadKind::MaskedLm);
    let batch = batch(&CLEAN);
    let point = HookPoint::block(1, BlockSite::ResidPre);
    let direction = Tensor::ones(16, candle_core::DType::F32, &Device::Cpu).unwrap();
    let hooks = Hooks::none()
        .intervene(
            point,
            Intervention::Add {
                direction: direction.clone(),
                scale: 0.5,
                positions: Some(vec![3]),
            },
        )
        .capture_point(point);
    let plain = model
        .forward(&batch, &Hooks::none().capture_point(point))
        .unwrap();
    let steered = model.forward(&batch, &hooks).unwrap();
    let delta =
        (steered.cache.get_point(point).unwrap() - plain.cache.get_point(point).unwrap()).unwrap();
    let at = |p: usize| values(&delta.narrow(1, p, 1).unwrap());
    assert!(at(3).iter().all(|&v| (v - 0.5).abs() < 1e-6));
    assert!(at(2).iter().all(|&v| v == 0.0));
}

#[test]
fn bad_interventions_are_clear_errors() {
    let model = model(HeadKind::MaskedLm);
    let batch = batch(&CLEAN);
    let cases = [
        (
            Hooks::none().intervene(
                HookPoint::block(5, BlockSite::Z),
                Intervention::ZeroHeads { heads: vec![0] },
            ),
            "layer 5 out of range",
        ),
        (
            Hooks::none().intervene(
                HookPoint::block(0, BlockSite::Z),
                Intervention::ZeroHeads { heads: vec![9] },
            ),
            "head 9 out of range",
        ),
        (
            Hooks::none().intervene(
                HookPoint::block(0, BlockSite::ResidPre),
                Intervention::ZeroHeads { heads: vec![0] },
            ),
            "head-resolved",
        ),
        (
            Hooks::none().intervene(
                HookPoint::block(0, BlockSite::ResidPre),
                Intervention::Replace {
                    value: Tensor::zeros((1, 2, 16), candle_core::DType::F32, &Device::Cpu)
                        .unwrap(),
                    positions: None,
                    heads: None,
                },
            ),
            "does not match activation shape",
        ),
        (
            Hooks::none().capture("blocks.7.hook_resid_pre").unwrap(),
            "matches no hook",
        ),
    ];
    for (hooks, expected) in cases {
        let error = model
            .forward(&batch, &hooks)
            .expect_err("must fail")
            .to_string();
        assert!(error.contains(expected), "{error} lacks {expected}");
    }
}

#[test]
fn gradients_flow_to_the_word_embeddings_and_match_finite_differences() {
    let model = model(HeadKind::SequenceClassification { num_labels: 2 });
    let batch = batch(&CLEAN[..1]);
    let embed = model
        .forward(&batch, &Hooks::none().capture_point(HookPoint::Embed))
        .unwrap();
    let embedding = embed.cache.get_point(HookPoint::Embed).unwrap().clone();
    let logit = |input: &Tensor| -> Tensor {
        let hooks = Hooks::none().intervene(
            HookPoint::Embed,
            Intervention::Replace {
                value: input.clone(),
                positions: None,
                heads: None,
            },
        );
        model
            .forward(&batch, &hooks)
            .unwrap()
            .logits
            .unwrap()
            .get(0)
            .unwrap()
            .get(1)
            .unwrap()
    };
    let variable = Var::from_tensor(&embedding).unwrap();
    let gradients = logit(variable.as_tensor()).backward().unwrap();
    let gradient = values(
        gradients
            .get(variable.as_tensor())
            .expect("gradient reaches hook_embed"),
    );
    let flat = values(&embedding);
    for index in [0usize, 17, 16 * 5 + 3] {
        let epsilon = 1e-2f32;
        let shifted = |sign: f32| {
            let mut v = flat.clone();
            v[index] += sign * epsilon;
            logit(&Tensor::from_vec(v, embedding.dims(), &Device::Cpu).unwrap())
                .to_scalar::<f32>()
                .unwrap()
        };
        let numeric = (shifted(1.0) - shifted(-1.0)) / (2.0 * epsilon);
        assert!(
            (numeric - gradient[index]).abs() < 2e-3 + 0.05 * numeric.abs(),
            "index {index}: {numeric} vs {}",
            gradient[index]
        );
    }
}
