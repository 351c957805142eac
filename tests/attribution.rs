//! Attribution methods against their reference implementations on the tiny fixture classifier
//! (tests/fixtures/attribution/, made by tests/reference/make_attribution_fixtures.py with captum
//! 0.9.0, torch 2.15.0 and transformers 4.46.3): one padded batch, target = logit of class 1.

mod common;

use genolens::analysis::attribution::{
    integrated_gradients, Baseline, IgSettings, Quadrature, TargetKind,
};
use genolens::analysis::{gradient_x_input, tokenize_batch};
use genolens::model::{load, LoadOptions};
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/attribution/tiny-cls-k6.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The tiny k = 6 classifier and the fixture sequences as one padded batch.
fn fixture_batch() -> (genolens::model::LoadedModel, genolens::model::Batch) {
    let loaded = load(
        common::fixture_model("tiny-cls-k6").to_str().unwrap(),
        &LoadOptions::default(),
    )
    .unwrap();
    let sequences = common::fixture_sequences();
    let (batch, _) = tokenize_batch(
        &loaded.tokenizer,
        sequences.iter().map(|(id, s)| (id.as_str(), s.as_str())),
        loaded.model.device(),
    )
    .unwrap();
    (loaded, batch)
}

fn rows(value: &Value) -> Vec<Vec<f64>> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        })
        .collect()
}

fn max_difference(ours: &[Vec<f32>], reference: &[Vec<f64>]) -> f64 {
    assert_eq!(ours.len(), reference.len());
    ours.iter()
        .zip(reference)
        .flat_map(|(a, b)| {
            assert_eq!(a.len(), b.len(), "token counts differ");
            a.iter().zip(b).map(|(x, y)| (f64::from(*x) - y).abs())
        })
        .fold(0.0, f64::max)
}

#[test]
fn gradient_x_input_and_integrated_gradients_match_captum() {
    let reference = fixture();
    let target = reference["target"].as_u64().unwrap() as usize;
    let loaded = load(
        common::fixture_model("tiny-cls-k6").to_str().unwrap(),
        &LoadOptions::default(),
    )
    .unwrap();
    let sequences = common::fixture_sequences();
    let (batch, tokens) = tokenize_batch(
        &loaded.tokenizer,
        sequences.iter().map(|(id, s)| (id.as_str(), s.as_str())),
        loaded.model.device(),
    )
    .unwrap();
    let ids: Vec<Vec<u32>> = tokens.iter().map(|t| t.ids.clone()).collect();
    let expected_ids: Vec<Vec<u32>> = rows(&reference["ids"])
        .iter()
        .map(|r| r.iter().map(|&v| v as u32).collect())
        .collect();
    assert_eq!(ids, expected_ids, "the same tokens as HF's tokenizer");

    let gxi: Vec<Vec<f32>> = gradient_x_input(&loaded.model, &batch, target)
        .unwrap()
        .to_vec2()
        .unwrap();
    let gxi: Vec<Vec<f32>> = gxi
        .into_iter()
        .zip(&batch.lengths)
        .map(|(mut r, &n)| {
            r.truncate(n);
            r
        })
        .collect();
    let worst = max_difference(&gxi, &rows(&reference["grad_x_input"]));
    // README: within 5e-8 per token (measured; values up to 0.07); the test allows 1e-6.
    assert!(worst <= 1e-6, "gradient × input vs captum: {worst:e}");
    eprintln!("gradient × input: worst |genolens − captum| {worst:.2e}");

    let special = loaded.tokenizer.special();
    for case in reference["integrated_gradients"].as_array().unwrap() {
        let settings = IgSettings {
            steps: case["steps"].as_u64().unwrap() as usize,
            quadrature: match case["method"].as_str().unwrap() {
                "gausslegendre" => Quadrature::GaussLegendre,
                _ => Quadrature::RiemannTrapezoid,
            },
            baseline: match case["baseline"].as_str().unwrap() {
                "zero" => Baseline::Zero,
                _ => Baseline::Mask,
            },
            points_per_pass: 7,
            ..IgSettings::default()
        };
        let results = integrated_gradients(
            &loaded.model,
            &batch,
            &vec![target; batch.size()],
            &settings,
            special.mask,
            &[special.cls, special.sep, special.pad],
        )
        .unwrap();
        let scores: Vec<Vec<f32>> = results.iter().map(|r| r.scores.clone()).collect();
        // captum's riemann_trapezoid puts n points on [0, 1] but steps 1/n (ends halved), so its
        // weights sum to 1 − 1/n; genolens steps 1/(n − 1), a true trapezoid. Same points,
        // proportional weights: captum's scores × n/(n − 1) are genolens's.
        let n = settings.steps as f64;
        let scale = match settings.quadrature {
            Quadrature::RiemannTrapezoid => n / (n - 1.0),
            Quadrature::GaussLegendre => 1.0,
        };
        let expected: Vec<Vec<f64>> = rows(&case["scores"])
            .iter()
            .map(|r| r.iter().map(|v| v * scale).collect())
            .collect();
        let worst = max_difference(&scores, &expected);
        let label = format!("{} / {}", case["method"], case["baseline"]);
        // README: within 5e-8 per token (measured; values up to 0.14); the test allows 1e-6.
        assert!(worst <= 1e-6, "IG {label} vs captum: {worst:e}");
        for (row, result) in results.iter().enumerate() {
            let total: f64 = expected[row].iter().sum();
            // captum's convergence delta, Σ attributions − (f(x) − f(x′)), on the same footing.
            let captum_gap = total - (result.target_at_input - result.target_at_baseline);
            assert!(
                (result.completeness_gap - captum_gap).abs() <= 1e-4,
                "IG {label}: gap {} vs {captum_gap}",
                result.completeness_gap
            );
            if settings.quadrature == Quadrature::GaussLegendre {
                let delta = case["convergence_delta"][row].as_f64().unwrap();
                assert!(
                    (result.completeness_gap - delta).abs() <= 1e-4,
                    "IG {label} delta"
                );
            }
        }
        eprintln!("IG {label}: worst |genolens − captum| {worst:.2e}");
    }
}

#[test]
fn ism_matches_a_direct_loop_of_hf_forwards() {
    use genolens::analysis::attribution::ism;
    let reference = fixture();
    let target = reference["target"].as_u64().unwrap() as usize;
    let loaded = load(
        common::fixture_model("tiny-cls-k6").to_str().unwrap(),
        &LoadOptions::default(),
    )
    .unwrap();
    let mut worst = 0.0f64;
    for ((id, sequence), expected) in common::fixture_sequences()
        .iter()
        .zip(reference["ism"].as_array().unwrap())
    {
        let result = ism(&loaded, id, sequence, target, TargetKind::Logit, 16).unwrap();
        assert!((result.reference - expected["reference"].as_f64().unwrap()).abs() < 1e-5);
        let expected = rows(&expected["deltas"]);
        assert_eq!(
            result.deltas.len(),
            expected.len(),
            "{id}: one row per base"
        );
        for (p, (ours, theirs)) in result.deltas.iter().zip(&expected).enumerate() {
            for (b, (x, y)) in ours.iter().zip(theirs).enumerate() {
                worst = worst.max((x - y).abs());
                // README: within 2e-7 (measured); the test allows 2e-6.
                assert!(
                    (x - y).abs() <= 2e-6,
                    "{id} position {p} base {b}: {x} vs {y}"
                );
            }
        }
        // The identity substitution is exactly 0; ism_centred is Δ_observed − mean Δ.
        let centred = result.centred(sequence);
        for (p, base) in sequence.to_ascii_uppercase().bytes().enumerate() {
            if let Some(o) = b"ACGT".iter().position(|&b| b == base) {
                assert_eq!(result.deltas[p][o], 0.0);
                let mean = result.deltas[p].iter().sum::<f64>() / 4.0;
                assert!((centred[p] + mean).abs() < 1e-12);
            } else {
                assert_eq!(centred[p], 0.0, "N has no observed base");
            }
        }
    }
    eprintln!("ISM: worst |genolens − HF loop| {worst:.2e}");
    // Log-probability target: Δ of log p = Δ logit − Δ logsumexp, checked on one sequence.
    let (id, sequence) = &common::fixture_sequences()[0];
    let logit = ism(&loaded, id, sequence, target, TargetKind::Logit, 16).unwrap();
    let log_p = ism(
        &loaded,
        id,
        sequence,
        target,
        TargetKind::LogProbability,
        16,
    )
    .unwrap();
    assert!(log_p.reference < 0.0);
    let changed = logit
        .deltas
        .iter()
        .flatten()
        .zip(log_p.deltas.iter().flatten());
    assert!(changed.clone().any(|(a, b)| (a - b).abs() > 1e-9));
    assert!(changed.clone().all(|(a, b)| (*a == 0.0) == (*b == 0.0)));
}

#[test]
fn attention_score_rollout_and_gradcam_match_the_published_formulas_on_hf_attentions() {
    use genolens::analysis::attribution::attention_maps;
    let reference = fixture();
    let target = reference["target"].as_u64().unwrap() as usize;
    let (loaded, batch) = fixture_batch();
    let maps = attention_maps(&loaded.model, &batch, &vec![target; batch.size()]).unwrap();
    for method in ["attention", "rollout", "gradcam"] {
        let ours: Vec<Vec<f32>> = maps
            .iter()
            .map(|m| match method {
                "attention" => m.attention.clone(),
                "rollout" => m.rollout.clone(),
                _ => m.gradcam.clone(),
            })
            .collect();
        let expected: Vec<Vec<f64>> = reference["attention_maps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                m[method]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect()
            })
            .collect();
        // GradCAM's values are ~1e-5 on this tiny random model: compare relative to the largest.
        let scale = expected
            .iter()
            .flatten()
            .fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "{method}: the reference is all zero");
        let worst = max_difference(&ours, &expected) / scale;
        // README: within 5e-7 of the largest value (measured); the test allows 5e-6.
        assert!(worst <= 5e-6, "{method}: relative {worst:e}");
        eprintln!("{method}: worst |genolens − reference| / max {worst:.2e}");
    }
}

#[test]
fn integrated_gradients_of_the_log_probability_match_captum() {
    let reference = fixture();
    let case = &reference["integrated_gradients_log_probability"];
    let target = reference["target"].as_u64().unwrap() as usize;
    let (loaded, batch) = fixture_batch();
    let special = loaded.tokenizer.special();
    let settings = IgSettings {
        target_kind: TargetKind::LogProbability,
        ..IgSettings::default()
    };
    let results = integrated_gradients(
        &loaded.model,
        &batch,
        &vec![target; batch.size()],
        &settings,
        special.mask,
        &[special.cls, special.sep, special.pad],
    )
    .unwrap();
    let scores: Vec<Vec<f32>> = results.iter().map(|r| r.scores.clone()).collect();
    let worst = max_difference(&scores, &rows(&case["scores"]));
    assert!(
        worst <= 1e-4,
        "IG of the log-probability vs captum: {worst:e}"
    );
    for (result, delta) in results
        .iter()
        .zip(case["convergence_delta"].as_array().unwrap())
    {
        assert!((result.completeness_gap - delta.as_f64().unwrap()).abs() <= 1e-4);
        assert!(result.target_at_input < 0.0, "a log-probability");
    }
}

#[test]
fn the_default_target_is_the_predicted_class() {
    use genolens::analysis::attribution::predicted_classes;
    let reference = fixture();
    let (loaded, batch) = fixture_batch();
    let expected: Vec<usize> = rows(&reference["logits"])
        .iter()
        .map(|r| if r[1] > r[0] { 1 } else { 0 })
        .collect();
    assert_eq!(predicted_classes(&loaded.model, &batch).unwrap(), expected);
}

fn pearson(a: &[f32], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let a: Vec<f64> = a.iter().map(|&v| f64::from(v)).collect();
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

#[test]
fn attnlrp_and_cp_lrp_match_lxt_efficient_bert() {
    use genolens::analysis::attribution::lrp;
    use genolens::model::RelevanceRules;
    let reference = fixture();
    let target = reference["target"].as_u64().unwrap() as usize;
    let (loaded, batch) = fixture_batch();
    let targets = vec![target; batch.size()];
    for (rules, key) in [
        (RelevanceRules::AttnLrp, "attnlrp"),
        (RelevanceRules::CpLrp, "cp_lrp"),
    ] {
        let ours = lrp(
            &loaded.model,
            &batch,
            &targets,
            TargetKind::Logit,
            Some(rules),
        )
        .unwrap();
        let expected = rows(&reference["lxt"][key]["scores"]);
        let scores: Vec<Vec<f32>> = ours.iter().map(|r| r.scores.clone()).collect();
        let difference = max_difference(&scores, &expected);
        eprintln!("{key}: max |ours − LXT| = {difference:.2e}");
        // README: within 3e-8 (AttnLRP) and 6e-8 (CP-LRP) per token measured; 1e-6 allowed.
        assert!(difference <= 1e-6, "{key}: max |ours − LXT| = {difference}");
        for (row, (result, want)) in ours.iter().zip(&expected).enumerate() {
            let r = pearson(&result.scores, want);
            assert!(r >= 0.999, "{key} row {row}: Pearson {r}");
            let lxt_target = reference["lxt"][key]["target"][row].as_f64().unwrap();
            assert!((result.target - lxt_target).abs() < 1e-5);
            let total: f64 = want.iter().sum();
            assert!((result.conservation_error - (total - lxt_target)).abs() < 1e-4);
        }
    }
    // Without rules it is plain gradient × input (captum's), which AttnLRP is not.
    let plain = lrp(&loaded.model, &batch, &targets, TargetKind::Logit, None).unwrap();
    let scores: Vec<Vec<f32>> = plain.iter().map(|r| r.scores.clone()).collect();
    assert!(max_difference(&scores, &rows(&reference["grad_x_input"])) < 1e-5);
    let attn = rows(&reference["lxt"]["attnlrp"]["scores"]);
    assert!((f64::from(plain[0].scores[1]) - attn[0][1]).abs() > 1e-4);
}

#[test]
fn chefer_lrp_conserves_relevance_and_batches_like_single_sequences() {
    use genolens::analysis::attribution::chefer_relevance;
    let (loaded, batch) = fixture_batch();
    let targets = vec![1; batch.size()];
    let relevance = chefer_relevance(&loaded.model, &batch, &targets).unwrap();
    // full LRP: the input relevance of the one-hot target sums to 1 (every rule conserves).
    for sums in relevance.input_sums().unwrap() {
        let total: f64 = sums.iter().map(|&v| f64::from(v)).sum();
        eprintln!("Σ full LRP relevance = {total}");
        // README: within 4e-7 (measured); the test allows 4e-6.
        assert!((total - 1.0).abs() < 4e-6, "Σ R = {total}");
    }
    let lrp = relevance.rollout(0).unwrap();
    let last = relevance.last_layer().unwrap();
    let full = relevance.full().unwrap();
    // Chefer et al.'s own code, one sequence at a time (relative to each map's largest value).
    let reference = fixture();
    for (key, ours) in [("lrp", &lrp), ("lrp_last", &last), ("full_lrp", &full)] {
        for (row, (a, b)) in ours.iter().zip(rows(&reference["chefer"][key])).enumerate() {
            let scale = b.iter().fold(0f64, |m, v| m.max(v.abs()));
            let d = max_difference(std::slice::from_ref(a), std::slice::from_ref(&b)) / scale;
            eprintln!("{key} row {row}: max relative |ours − Chefer| = {d:.1e}");
            assert!(d < 1e-4, "{key} row {row}: relative difference {d}");
            assert!(pearson(a, &b) > 0.9999);
        }
    }
    for ((l, s), f) in lrp.iter().zip(&last).zip(&full) {
        let min = l[1..].iter().copied().fold(f32::INFINITY, f32::min);
        assert!(l[0] <= min + 1e-7 && l.iter().all(|v| v.is_finite() && *v >= 0.0));
        assert_eq!((s[0], f[0]), (0.0, 0.0));
        assert!(s.iter().all(|v| *v >= 0.0));
    }
    // The padded batch gives each sequence what it gets alone.
    let sequences = common::fixture_sequences();
    for (row, (id, sequence)) in sequences.iter().enumerate() {
        let (one, _) = tokenize_batch(
            &loaded.tokenizer,
            [(id.as_str(), sequence.as_str())],
            loaded.model.device(),
        )
        .unwrap();
        let alone = chefer_relevance(&loaded.model, &one, &[1]).unwrap();
        for (a, b) in [
            (&alone.rollout(0).unwrap()[0], &lrp[row]),
            (&alone.full().unwrap()[0], &full[row]),
            (&alone.last_layer().unwrap()[0], &last[row]),
        ] {
            let d = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(d < 1e-5, "row {row}: batched vs alone differ by {d}");
        }
    }
}

fn succeeded(output: &std::process::Output) {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn attribute_command_writes_every_method_and_matches_the_references() {
    use genolens::report::ParquetTable;
    let out = tempfile::tempdir().unwrap();
    let model = common::fixture_model("tiny-cls-k6");
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sequences.fa");
    let dir = out.path().join("run");
    succeeded(&common::genolens(&[
        "attribute",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data,
        "--target",
        "1",
        "--batch-size",
        "3",
        "--out",
        dir.to_str().unwrap(),
    ]));
    let sequences = common::fixture_sequences();
    let reference = fixture();
    let tokens = ParquetTable::read(&dir.join("token_attributions.parquet")).unwrap();
    assert_eq!(
        tokens.column_names(),
        [
            "sequence_id",
            "token_index",
            "token",
            "method",
            "target",
            "score"
        ]
    );
    let methods = tokens.strings("method").unwrap();
    let ids = tokens.strings("sequence_id").unwrap();
    let scores = tokens.f64s("score").unwrap();
    let token_names = tokens.strings("token").unwrap();
    let index = tokens.integers("token_index").unwrap();
    let total_tokens: usize = sequences.iter().map(|(_, s)| s.len() - 6 + 3).sum();
    assert_eq!(
        tokens.rows(),
        total_tokens * 12,
        "ten token methods, and ISM (per base) summed and averaged over each token's bases"
    );
    // Seed 001's (a) sum and (b) mean of ISM over a k-mer's bases.
    let ism_tokens = methods
        .iter()
        .filter(|m| m.starts_with("ism_centred_"))
        .count();
    assert_eq!(ism_tokens, total_tokens * 2);
    // End to end, AttnLRP and gradient × input reproduce LXT and captum.
    for (method, key) in [
        ("attnlrp", &reference["lxt"]["attnlrp"]["scores"]),
        ("grad_x_input", &reference["grad_x_input"]),
    ] {
        for (row, (id, _)) in sequences.iter().enumerate() {
            let ours: Vec<f64> = (0..tokens.rows())
                .filter(|&i| methods[i] == method && ids[i] == *id)
                .map(|i| scores[i])
                .collect();
            let want = &rows(key)[row];
            assert_eq!(ours.len(), want.len());
            let d = ours
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(d < 1e-5, "{method} {id}: {d}");
        }
    }
    let first = (0..tokens.rows()).find(|&i| index[i] == 0).unwrap();
    assert_eq!(token_names[first], "[CLS]");

    let nucleotides = ParquetTable::read(&dir.join("nucleotide_attributions.parquet")).unwrap();
    assert_eq!(
        nucleotides.column_names(),
        [
            "sequence_id",
            "position",
            "base",
            "method",
            "target",
            "score",
            "score_scaled"
        ]
    );
    let n_methods = nucleotides.strings("method").unwrap();
    let scaled = nucleotides.f64s("score_scaled").unwrap();
    let bases: usize = sequences.iter().map(|(_, s)| s.len()).sum();
    let count = |m: &str| n_methods.iter().filter(|x| *x == m).count();
    assert_eq!(count("ism"), 4 * bases);
    assert_eq!(count("ism_centred"), bases);
    assert_eq!(count("attnlrp"), bases);
    let over: Vec<&f64> = scaled
        .iter()
        .filter(|v| v.is_nan() || v.abs() > 1.0 + 1e-6)
        .collect();
    assert!(over.is_empty(), "{over:?}");
    // ISM Δ matches the fixture's direct loop.
    let n_ids = nucleotides.strings("sequence_id").unwrap();
    let n_scores = nucleotides.f64s("score").unwrap();
    let ism: Vec<f64> = (0..nucleotides.rows())
        .filter(|&i| n_methods[i] == "ism" && n_ids[i] == sequences[0].0)
        .map(|i| n_scores[i])
        .collect();
    let want: Vec<f64> = rows(&reference["ism"][0]["deltas"])
        .into_iter()
        .flatten()
        .collect();
    let d = ism
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(d < 1e-5, "ISM vs loop: {d}");

    let checks = ParquetTable::read(&dir.join("attribution_checks.parquet")).unwrap();
    let c_methods = checks.strings("method").unwrap();
    let errors = checks.f64s("conservation_error").unwrap();
    let steps = checks.optional_integers("ig_steps").unwrap();
    for i in 0..checks.rows() {
        match c_methods[i].as_str() {
            "full_lrp" => assert!(errors[i].abs() < 1e-5),
            "integrated_gradients" => assert!(steps[i].unwrap() >= 50),
            _ => {}
        }
    }
    let report = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(report.contains("logo_1.svg") && report.contains("attnlrp"));

    // Clear errors: an unknown method, a model without a classifier, a class out of range.
    for (args, expected) in [
        (vec!["--method", "shap"], "not a method"),
        (vec!["--target", "7"], "classes"),
        (vec!["--baseline", "noise"], "zero or mask"),
    ] {
        let mut all = vec![
            "attribute",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data,
            "--out",
            out.path().join("bad").to_str().unwrap().to_owned().leak(),
        ];
        all.extend(args);
        let output = common::genolens(&all);
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && message.contains(expected),
            "{message}"
        );
    }
    let mlm = common::fixture_model("tiny-mlm-k6");
    let output = common::genolens(&[
        "attribute",
        "--model",
        mlm.to_str().unwrap(),
        "--data",
        data,
        "--out",
        out.path().join("bad-mlm").to_str().unwrap(),
    ]);
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && message.contains("sequence classifier"),
        "{message}"
    );
}

#[test]
fn a_direction_target_explains_any_hook_even_without_a_head() {
    use genolens::analysis::attribution::{lrp, lrp_direction, DirectionTarget};
    use genolens::model::{HookPoint, Hooks, RelevanceRules};
    let (loaded, batch) = fixture_batch();
    // The logit of class 1 as a direction at hook_logits is the class target itself.
    let one_hot = candle_core::Tensor::new(&[0f32, 1.0], loaded.model.device()).unwrap();
    let target = DirectionTarget {
        hook: HookPoint::Logits,
        direction: one_hot,
        position: 0,
    };
    let targets = vec![1; batch.size()];
    for rules in [None, Some(RelevanceRules::AttnLrp)] {
        let a = lrp_direction(&loaded.model, &batch, &target, rules).unwrap();
        let b = lrp(&loaded.model, &batch, &targets, TargetKind::Logit, rules).unwrap();
        // Equal up to float rounding (`lrp` runs the last block for [CLS] alone).
        assert_eq!(a.len(), b.len());
        for (a, b) in a.iter().zip(&b) {
            assert!((a.target - b.target).abs() < 1e-5);
            assert!((a.positional - b.positional).abs() < 1e-5);
            assert_eq!(a.scores.len(), b.scores.len());
            for (x, y) in a.scores.iter().zip(&b.scores) {
                assert!((x - y).abs() < 1e-5, "{x} vs {y}");
            }
        }
    }
    // An encoder without a head: a direction on the final [CLS] vector.
    let mlm = load(
        common::fixture_model("tiny-mlm-k6").to_str().unwrap(),
        &LoadOptions {
            head: Some(genolens::model::HeadKind::Encoder { pooler: false }),
            ..Default::default()
        },
    )
    .unwrap();
    let width = mlm.model.config().hidden_size;
    let direction: Vec<f32> = (0..width)
        .map(|i| ((i * 7 % 5) as f32 - 2.0) / 3.0)
        .collect();
    let direction = candle_core::Tensor::new(direction.as_slice(), mlm.model.device()).unwrap();
    let target = DirectionTarget {
        hook: HookPoint::Cls,
        direction: direction.clone(),
        position: 0,
    };
    let results =
        lrp_direction(&mlm.model, &batch, &target, Some(RelevanceRules::AttnLrp)).unwrap();
    let cls = mlm.model.forward(&batch, &Hooks::none()).unwrap().cls;
    let expected: Vec<f32> = cls
        .broadcast_mul(&direction)
        .unwrap()
        .sum(1)
        .unwrap()
        .to_vec1()
        .unwrap();
    for (r, e) in results.iter().zip(&expected) {
        assert!((r.target - f64::from(*e)).abs() < 1e-5);
        assert!(r.scores.iter().all(|v| v.is_finite()) && r.scores.iter().any(|v| *v != 0.0));
    }
    let bad = DirectionTarget {
        direction: candle_core::Tensor::new(&[1f32, 2.0], mlm.model.device()).unwrap(),
        ..target
    };
    assert!(lrp_direction(&mlm.model, &batch, &bad, None).is_err());
}

#[test]
fn classifier_logits_with_a_cls_only_last_block_equal_the_full_forward() {
    let (loaded, batch) = fixture_batch();
    let full: Vec<Vec<f32>> = loaded
        .model
        .forward(&batch, &genolens::model::Hooks::none())
        .unwrap()
        .logits
        .unwrap()
        .to_vec2()
        .unwrap();
    let fast: Vec<Vec<f32>> = loaded
        .model
        .classifier_logits(&batch)
        .unwrap()
        .unwrap()
        .to_vec2()
        .unwrap();
    for (a, b) in full.iter().flatten().zip(fast.iter().flatten()) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}
