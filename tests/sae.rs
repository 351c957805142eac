//! SAEs on a planted-motif model: a tiny classifier fine-tuned here (seconds) to find GGGACTTTCC
//! in 36-nt random sequences. An SAE trained on its final [CLS] must give a feature whose firing
//! separates motif from background sequences (q < 0.01) and whose top sequences are enriched for
//! the planted motif; `sae analyze` on the saved SAE must reproduce the held-out metrics; the CLI
//! refuses bad input with the key named.

mod common;

use std::path::Path;

use genolens::analysis::attribution::planted::PLANTED_MOTIF;
use genolens::analysis::sae::study::{reduce_sae, run_sae, run_sae_analyze, SaeStudy};
use genolens::experiment::{ExperimentContext, RunSettings};
use genolens::report::ParquetTable;

fn settings(model: &Path, data: &Path, out: &Path) -> RunSettings {
    let mut settings = RunSettings::new(out.parent().unwrap());
    settings.model = Some(model.display().to_string());
    settings.data = Some(data.to_path_buf());
    settings.out_dir = Some(out.to_path_buf());
    settings.seed = 3;
    settings
}

#[test]
fn a_planted_motif_gives_a_separating_feature_whose_top_sequences_carry_it() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, table, model) = common::planted_classifier(dir.path(), 160);
    let out = std::env::var("SAE_TEST_OUT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("run"));
    let mut study = SaeStudy::new(model.to_str().unwrap(), table.clone());
    let mut context = ExperimentContext::new("sae", settings(&model, &table, &out)).unwrap();
    run_sae(&mut context, &study).unwrap();
    let out_dir = context.finish(Some(reduce_sae)).unwrap();

    // A feature separates the classes ...
    let features = ParquetTable::read(&out_dir.join("sae_features.parquet")).unwrap();
    let (ids, q) = (
        features.integers("feature").unwrap(),
        features.f64s("q_value").unwrap(),
    );
    let auroc = features.f64s("auroc").unwrap();
    let best = (0..features.rows())
        .min_by(|&a, &b| q[a].total_cmp(&q[b]))
        .unwrap();
    assert!(q[best] < 0.01, "best feature {} q {}", ids[best], q[best]);
    // ... and a motif-side feature's top sequences carry the planted site and are enriched for
    // JASPAR's NF-κB motifs (GGGACTTTCC is a κB site) against the other held-out sequences.
    let enrichment = ParquetTable::read(&out_dir.join("sae_motif_enrichment.parquet")).unwrap();
    let (feature, name, eq) = (
        enrichment.integers("feature").unwrap(),
        enrichment.strings("jaspar_name").unwrap(),
        enrichment.f64s("q_value").unwrap(),
    );
    let motif_side: Vec<i64> = (0..features.rows())
        .filter(|&i| q[i] < 0.01 && auroc[i] > 0.5)
        .map(|i| ids[i])
        .collect();
    assert!(
        !motif_side.is_empty(),
        "no feature fires more on motif sequences"
    );
    let kappa_b = |n: &str| n.starts_with("REL") || n.starts_with("NFKB");
    let enriched: Vec<i64> = (0..enrichment.rows())
        .filter(|&i| kappa_b(&name[i]) && eq[i] < 0.01 && motif_side.contains(&feature[i]))
        .map(|i| feature[i])
        .collect();
    assert!(
        !enriched.is_empty(),
        "no motif-side feature's top sequences are enriched for an NF-κB motif"
    );
    let top = ParquetTable::read(&out_dir.join("sae_top_sequences.parquet")).unwrap();
    let (top_feature, top_id) = (
        top.integers("feature").unwrap(),
        top.strings("sequence_id").unwrap(),
    );
    let with_site: std::collections::HashSet<&str> = rows
        .iter()
        .filter(|r| r.sequence.contains(PLANTED_MOTIF) || r.sequence.contains("GGAAAGTCCC"))
        .map(|r| r.id.as_str())
        .collect();
    let first: Vec<&String> = (0..top.rows())
        .filter(|&i| top_feature[i] == enriched[0])
        .map(|i| &top_id[i])
        .collect();
    let carrying = first
        .iter()
        .filter(|id| with_site.contains(id.as_str()))
        .count();
    assert!(
        carrying * 10 >= first.len() * 9,
        "feature {}: {carrying} of its {} top sequences carry the planted site",
        enriched[0],
        first.len()
    );
    for file in ["report.html", "sae/cfg.json", "sae/sae_weights.safetensors"] {
        assert!(out_dir.join(file).is_file(), "{file} missing");
    }

    // `sae analyze` on the saved SAE reads the same held-out activations: same metrics.
    let again = dir.path().join("analyze");
    let mut context =
        ExperimentContext::new("sae-analyze", settings(&model, &table, &again)).unwrap();
    study.motifs = None;
    run_sae_analyze(&mut context, &study, &out_dir.join("sae")).unwrap();
    let again = context.finish(Some(reduce_sae)).unwrap();
    let metric = |dir: &Path| {
        let t = ParquetTable::read(&dir.join("sae_metrics.parquet")).unwrap();
        let split = t.strings("split").unwrap();
        let i = split.iter().position(|s| s == "test").unwrap();
        (
            t.f64s("l0").unwrap()[i],
            t.f64s("explained_variance").unwrap()[i],
        )
    };
    let (a, b) = (metric(&out_dir), metric(&again));
    assert!(
        (a.0 - b.0).abs() < 1e-9 && (a.1 - b.1).abs() < 1e-6,
        "{a:?} vs {b:?}"
    );
}

#[test]
fn the_cli_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let out = out.to_str().unwrap();
    let output = common::genolens(&["sae", "train", "--architecture", "gated", "--out", out]);
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("gated") && err.contains("topk"), "{err}");
    let output = common::genolens(&["sae", "train", "--preset", "seed-5", "--out", out]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("seed-004"));
    let output = common::genolens(&["sae", "analyze", "--sae", dir.path().to_str().unwrap()]);
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("cfg.json"), "{err}");
    let output = common::genolens(&[
        "sae", "train", "--hook", "hook_cls", "--rows", "tokens", "--limit", "2", "--out", out,
    ]);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && err.contains("hook_cls"),
        "{err}"
    );
}

/// tests/fixtures/sae: SAEs written by genolens in SAELens's layout (standard = relu-l1, topk,
/// jumprelu = batchtopk), the inputs, and the encodings sae-lens 6.18.0 computes for them
/// (tests/reference/check_saelens.py, `just saelens-check`). genolens must load each SAE and
/// encode and decode the inputs as sae-lens does. `GENOLENS_WRITE_SAE_FIXTURES=1` rewrites the
/// SAEs and inputs (then rerun the script).
#[test]
fn saved_saes_encode_as_sae_lens_does() {
    use candle_core::{Device, Tensor};
    use genolens::analysis::sae::layout::{load, save};
    use genolens::analysis::sae::model::{Architecture, Sae};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sae");
    let cases = [
        ("standard", Architecture::ReluL1 { l1: 0.2 }),
        ("topk", Architecture::TopK { k: 4 }),
        ("jumprelu", Architecture::BatchTopK { k: 4 }),
    ];
    if std::env::var("GENOLENS_WRITE_SAE_FIXTURES").is_ok() {
        let x = Tensor::randn(0f32, 1.0, (20, 16), &Device::Cpu).unwrap();
        std::fs::create_dir_all(&root).unwrap();
        candle_core::safetensors::save(
            &[("x".to_string(), x)].into_iter().collect(),
            root.join("inputs.safetensors"),
        )
        .unwrap();
        for (i, (name, architecture)) in cases.iter().enumerate() {
            let mut sae = Sae::new(16, 32, *architecture, 10 + i as u64).unwrap();
            let b_enc = Tensor::randn(-0.2f32, 0.3, 32, &Device::Cpu).unwrap();
            let b_dec = Tensor::randn(0f32, 0.5, 16, &Device::Cpu).unwrap();
            sae.b_enc.set(&b_enc).unwrap();
            sae.b_dec.set(&b_dec).unwrap();
            if let Architecture::BatchTopK { .. } = architecture {
                sae.threshold = Some(Tensor::rand(0f32, 0.6, 32, &Device::Cpu).unwrap());
            }
            sae.fold_input_scale(0.7).unwrap();
            save(
                &sae,
                &root.join(name),
                "blocks.3.hook_resid_post",
                serde_json::json!({"rows": "tokens"}),
            )
            .unwrap();
        }
    }
    let inputs =
        candle_core::safetensors::load(root.join("inputs.safetensors"), &Device::Cpu).unwrap();
    let x = &inputs["x"];
    for (name, architecture) in cases {
        let dir = root.join(name);
        let (sae, hook, _) = load(&dir).unwrap();
        assert_eq!(hook, "blocks.3.hook_resid_post");
        assert_eq!(sae.architecture.name(), architecture.name());
        let reference =
            candle_core::safetensors::load(dir.join("saelens_encodings.safetensors"), &Device::Cpu)
                .unwrap_or_else(|e| panic!("{name}: run tests/reference/check_saelens.py ({e})"));
        let f = sae.encode(x).unwrap();
        let out = sae.decode(&f).unwrap();
        for (ours, key) in [(&f, "feature_acts"), (&out, "sae_out")] {
            let diff = (ours - &reference[key])
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                diff < 1e-5,
                "{name} {key}: max |genolens − sae-lens| = {diff}"
            );
        }
        let active = f
            .gt(0.0)
            .unwrap()
            .to_dtype(candle_core::DType::F32)
            .unwrap();
        let l0 = active.sum_all().unwrap().to_scalar::<f32>().unwrap() / 20.0;
        assert!(
            l0 > 0.5 && l0 < 31.0,
            "{name}: L0 {l0}: the fixture should keep some latents, not all"
        );
    }
}

#[test]
fn an_sae_trains_on_an_embeddings_table_and_probes_run_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::fixture_model("tiny-mlm-k6");
    let embed = dir.path().join("embed");
    let output = common::genolens(&[
        "embed",
        "--model",
        model.to_str().unwrap(),
        "--data",
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sequences.fa"),
        "--hook",
        "blocks.1.hook_resid_post",
        "--pooling",
        "mean",
        "--out",
        embed.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out = dir.path().join("sae");
    let output = common::genolens(&[
        "sae",
        "train",
        "--embeddings",
        embed.join("embeddings.parquet").to_str().unwrap(),
        "--latents",
        "24",
        "--architecture",
        "topk",
        "--k",
        "3",
        "--epochs",
        "5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metrics = ParquetTable::read(&out.join("sae_metrics.parquet")).unwrap();
    assert_eq!(metrics.strings("split").unwrap(), vec!["all".to_string()]);
    assert!((metrics.f64s("l0").unwrap()[0] - 3.0).abs() < 1e-9);
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sae/cfg.json")).unwrap()).unwrap();
    assert_eq!(cfg["metadata"]["hook_name"], "blocks.1.hook_resid_post");
    assert_eq!(
        (cfg["architecture"].as_str(), cfg["k"].as_u64()),
        (Some("topk"), Some(3))
    );
    assert_eq!(cfg["genolens"]["rows"], "mean");
    assert!(out.join("report.html").is_file());

    let probe = dir.path().join("probe");
    let output = common::genolens(&["probe", "--limit", "24", "--out", probe.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let probes = ParquetTable::read(&probe.join("probes.parquet")).unwrap();
    // Embeddings + 6 blocks, [CLS] and mean each.
    assert_eq!(probes.rows(), 14);
    let auroc = probes.f64s("auroc").unwrap();
    let low = probes.f64s("auroc_low").unwrap();
    let high = probes.f64s("auroc_high").unwrap();
    for i in 0..probes.rows() {
        assert!(low[i] <= auroc[i] && auroc[i] <= high[i]);
    }
}
