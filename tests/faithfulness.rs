//! Faithfulness on a planted-motif model: a tiny classifier fine-tuned here (seconds) to find
//! GGGACTTTCC in 36-nt random sequences; changing the two nucleotides AttnLRP or ISM rank
//! highest must break its motif calls far more often than changing two random ones.

mod common;

use std::collections::BTreeMap;

use genolens::analysis::attribution::planted::{planted_rows, PlantedSizes};
use genolens::analysis::attribution::{ism, kmer_scores_to_nucleotides, lrp, Spread, TargetKind};
use genolens::analysis::faithfulness::{
    perturbation_curve_protocol, top_n_protocol, Classifier, CurveSettings, Explained,
    Perturbation, TopN, TopNSettings,
};
use genolens::model::{load, Batch, LoadOptions, RelevanceRules};

#[test]
fn attnlrp_and_ism_beat_random_positions_on_a_planted_motif_model() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = PlantedSizes {
        train: 1600,
        valid: 100,
        test: 120,
        length: 36,
    };
    let rows = planted_rows(5, sizes);
    let table = dir.path().join("planted.parquet");
    genolens::datasets::rows::write_rows(&table, &rows, &genolens::report::Provenance::current(5))
        .unwrap();
    let settings = genolens::train::classify::ClassifySettings {
        data: table.clone(),
        init: common::fixture_model("tiny-mlm-k6"),
        out: dir.path().join("model"),
        epochs: 8,
        batch_size: 32,
        learning_rate: 3e-3,
        warmup_fraction: 0.1,
        adamw: genolens::train::adamw::AdamWSettings::with_weight_decay(0.01),
        seed: 5,
        dropout: 0.0,
    };
    let report =
        genolens::train::classify::train_classifier(&settings, &candle_core::Device::Cpu).unwrap();
    assert!(
        report.test.accuracy > 0.8,
        "the tiny model did not learn the motif (test accuracy {}): the check below would mean nothing",
        report.test.accuracy
    );
    let loaded = load(settings.out.to_str().unwrap(), &LoadOptions::default()).unwrap();
    // The motif-carrying test sequences, explained for class 1 by AttnLRP and ISM.
    let positives: Vec<_> = rows
        .iter()
        .filter(|r| r.split == "test" && r.label == 1)
        .collect();
    let ids: Vec<Vec<u32>> = positives
        .iter()
        .map(|r| loaded.tokenizer.tokenize(&r.id, &r.sequence).unwrap().ids)
        .collect();
    let batch = Batch::from_ids(
        &ids,
        loaded.tokenizer.vocab.special.pad,
        loaded.model.device(),
    )
    .unwrap();
    let targets = vec![1; positives.len()];
    let relevance = lrp(
        &loaded.model,
        &batch,
        &targets,
        TargetKind::Logit,
        Some(RelevanceRules::AttnLrp),
    )
    .unwrap();
    let items: Vec<Explained> = positives
        .iter()
        .zip(&relevance)
        .map(|(row, r)| {
            let attnlrp =
                kmer_scores_to_nucleotides(&r.scores, row.sequence.len(), 6, Spread::Mean)
                    .unwrap()
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect();
            let ism = ism(&loaded, &row.id, &row.sequence, 1, TargetKind::Logit, 64)
                .unwrap()
                .centred(&row.sequence);
            Explained {
                id: row.id.clone(),
                sequence: row.sequence.as_bytes().to_vec(),
                label: 1,
                scores: BTreeMap::from([
                    ("attnlrp".to_string(), attnlrp),
                    ("ism_centred".to_string(), ism),
                ]),
            }
        })
        .collect();
    let methods = vec!["attnlrp".to_string(), "ism_centred".to_string()];
    let classifier = Classifier::new(&loaded, 32).unwrap();
    let settings = TopNSettings {
        sizes: vec![TopN::Count(2)],
        repeats: 10,
        seed: 1,
    };
    let mut classified = 0;
    let rows_out = top_n_protocol(&classifier, &items, &methods, &settings, |n| {
        classified += n
    })
    .unwrap();
    // 1 unchanged + (2 methods + 10 repeats) variant sets.
    assert_eq!(classified, 13 * items.len() as u64);
    let accuracy = |method: &str| -> f64 {
        let values: Vec<f64> = rows_out
            .iter()
            .filter(|r| r.method == method && r.class == 1)
            .map(|r| r.accuracy.unwrap())
            .collect();
        values.iter().sum::<f64>() / values.len() as f64
    };
    let (unchanged, random) = (accuracy("none"), accuracy("random"));
    for method in &methods {
        let after = accuracy(method);
        assert!(
            after < random - 0.3 && after < unchanged,
            "{method}: accuracy {after} after its top 2 changed, random 2: {random}, unchanged {unchanged}"
        );
    }
    // The same seed draws the same variants.
    let again = top_n_protocol(&classifier, &items, &methods, &settings, |_| {}).unwrap();
    assert_eq!(again, rows_out);

    // Seed 001: MIF drops the motif probability more than LIF, for both methods.
    let curves = CurveSettings {
        percents: vec![10.0],
        perturbations: vec![Perturbation::Complement],
        repeats: 2,
        seed: 1,
    };
    let rows_out =
        perturbation_curve_protocol(&classifier, &items, &methods, &curves, |_| {}).unwrap();
    for method in &methods {
        let drop = |protocol: &str| {
            rows_out
                .iter()
                .find(|r| &r.method == method && r.protocol == protocol)
                .and_then(|r| r.probability_drop)
                .unwrap()
        };
        assert!(
            drop("mif") > drop("lif") + 0.2,
            "{method}: MIF {} LIF {}",
            drop("mif"),
            drop("lif")
        );
    }
}

#[test]
fn explain_metrics_match_quantus_and_the_formulas_on_fixtures() {
    use genolens::analysis::explain_metrics::{continuous_jaccard, entropy, gini};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/faithfulness/explain_metrics.json");
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 12);
    let floats = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let close = |a: Option<f64>, b: Option<f64>, what: &str| match (a, b) {
        (Some(a), Some(b)) => assert!(
            (a - b).abs() <= 1e-12 * (1.0 + b.abs()),
            "{what}: {a} vs {b}"
        ),
        (a, b) => assert_eq!(a, b, "{what}"),
    };
    for (i, case) in cases.iter().enumerate() {
        let (v, w) = (floats(&case["v"]), floats(&case["w"]));
        close(
            Some(gini(&v).unwrap()),
            case["gini"].as_f64(),
            &format!("case {i} gini"),
        );
        close(
            entropy(&v).unwrap(),
            case["entropy"].as_f64(),
            &format!("case {i} entropy"),
        );
        close(
            continuous_jaccard(&v, &w).unwrap(),
            case["continuous_jaccard"].as_f64(),
            &format!("case {i} continuous Jaccard"),
        );
    }
}
