//! The attention study: head statistics against HF transformers' `output_attentions` on a padded
//! batch, a planted head found by the annotation correlation, and the command end to end.

mod common;

use std::path::{Path, PathBuf};

use common::genolens;
use genolens::analysis::attention::{
    token_features, AnnotationCorrelator, NullSettings, SCORES, SEQUENCE_FEATURES,
};
use genolens::analysis::attention_study::{attention_statistics, AttentionInput};
use genolens::analysis::BatchOptions;
use genolens::model::{load, LoadOptions};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read_fasta(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut records = Vec::new();
    let mut id = String::new();
    for line in text.lines() {
        if let Some(header) = line.strip_prefix('>') {
            id = header.split_whitespace().next().unwrap().to_string();
        } else if !line.trim().is_empty() {
            records.push((id.clone(), line.trim().to_string()));
        }
    }
    records
}

#[test]
fn head_stats_equal_hf_output_attentions_on_a_padded_batch() {
    let records = read_fasta(&fixtures().join("sequences.fa"));
    for name in ["tiny-cls-k6", "tiny-mlm-k3"] {
        let reference: Value = serde_json::from_str(
            &std::fs::read_to_string(fixtures().join(format!("attention/{name}.json"))).unwrap(),
        )
        .unwrap();
        let loaded = load(
            fixtures().join("models").join(name).to_str().unwrap(),
            &LoadOptions::default(),
        )
        .unwrap();
        let inputs: Vec<AttentionInput> = records
            .iter()
            .map(|(id, s)| AttentionInput::new(id, s, Some(s.len() / 2)))
            .collect();
        // One batch holds every sequence: lengths differ, so all but the longest are padded.
        let options = BatchOptions {
            batch_size: 8,
            ..Default::default()
        };
        let results = attention_statistics(&loaded, &inputs, &options).unwrap();
        let mut worst = 0.0f64;
        for (sequence, (stats, scores)) in reference["sequences"]
            .as_array()
            .unwrap()
            .iter()
            .zip(&results)
        {
            let heads = sequence["heads"].as_array().unwrap();
            assert_eq!(heads.len(), stats.len());
            for ((expected, ours), token_scores) in heads.iter().zip(stats).zip(scores) {
                let value = |key: &str| expected[key].as_f64().unwrap();
                let n = sequence["valid_tokens"].as_u64().unwrap() as usize;
                assert_eq!(ours.valid_keys, n);
                let pairs = [
                    ("cls_entropy_nats", ours.cls_entropy_nats),
                    ("mean_entropy_nats", ours.mean_entropy_nats),
                    ("cls_max_attention", ours.cls_max_attention),
                    ("cls_variance", ours.cls_variance),
                    ("cls_to_variant_sum", ours.cls_to_variant_sum.unwrap()),
                    ("cls_to_variant_mean", ours.cls_to_variant_mean.unwrap()),
                    ("mass_on_cls", ours.mass_on_cls),
                    ("mass_on_sep", ours.mass_on_sep),
                ];
                for (key, got) in pairs {
                    let difference = (got - value(key)).abs();
                    worst = worst.max(difference);
                    assert!(
                        difference < 1e-5,
                        "{name} {} L{}H{} {key}: genolens {got} vs HF {}",
                        sequence["id"],
                        ours.layer,
                        ours.head,
                        value(key)
                    );
                }
                let normalised = ours.cls_entropy_nats / (n as f64).ln();
                assert!((ours.cls_entropy_normalised - normalised).abs() < 1e-12);
                for (score, got) in SCORES.iter().zip(token_scores) {
                    let expected: Vec<f64> = expected[*score]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_f64().unwrap())
                        .collect();
                    assert_eq!(expected.len(), got.len(), "{name} {score}");
                    for (e, g) in expected.iter().zip(got) {
                        assert!((e - f64::from(*g)).abs() < 1e-5, "{name} {score}");
                    }
                }
            }
        }
        eprintln!("{name}: worst |genolens − HF| over head statistics {worst:.2e}");
    }
}

/// The tiny k = 6 classifier with layer 1 head 0 rebuilt to attend to the TATA-box k-mers
/// (TATAAA, TATATA), every other head left random but blind to token identity:
/// - word embeddings live in hidden dims 0..16, positions and token types in 16..32; every word
///   row has zero mean and the same norm, dims 0 and 1 a ±1 marker (+1/−1 on the TATA k-mers,
///   −1/+1 on every other token) and dims 2..16 the fixture's row, centred and rescaled; the
///   LayerNorms are 1/0 on dims 0..16, so every token's normalised position part is the same;
/// - no query or key reads dims 0..16, except L1H0's key, which reads the marker; L1H0's query is
///   a constant; layer 0 writes nothing into the residual stream.
///
/// The random heads' patterns are then functions of position alone.
fn planted_model(dir: &Path) -> genolens::model::LoadedModel {
    use candle_core::{Device, Tensor};
    use std::collections::HashMap;
    fn edit(
        tensors: &mut HashMap<String, Tensor>,
        name: &str,
        f: &mut dyn FnMut(&mut Vec<Vec<f32>>),
    ) {
        let tensor = &tensors[name];
        let mut rows: Vec<Vec<f32>> = if tensor.rank() == 1 {
            vec![tensor.to_vec1().unwrap()]
        } else {
            tensor.to_vec2().unwrap()
        };
        f(&mut rows);
        let shape = tensor.shape().clone();
        let flat: Vec<f32> = rows.concat();
        tensors.insert(
            name.to_string(),
            Tensor::from_vec(flat, shape, &Device::Cpu).unwrap(),
        );
    }
    const WORD: usize = 16;
    let source = fixtures().join("models/tiny-cls-k6");
    let mut tensors =
        candle_core::safetensors::load(source.join("model.safetensors"), &Device::Cpu).unwrap();
    let vocab = std::fs::read_to_string(source.join("vocab.txt")).unwrap();
    let ids: Vec<usize> = vocab
        .lines()
        .enumerate()
        .filter(|(_, t)| *t == "TATAAA" || *t == "TATATA")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(ids.len(), 2);
    edit(
        &mut tensors,
        "bert.embeddings.word_embeddings.weight",
        &mut |rows| {
            for (i, row) in rows.iter_mut().enumerate() {
                let body = &mut row[2..WORD];
                let mean = body.iter().sum::<f32>() / body.len() as f32;
                body.iter_mut().for_each(|v| *v -= mean);
                let norm = body.iter().map(|v| v * v).sum::<f32>().sqrt();
                body.iter_mut().for_each(|v| *v *= 0.4 / norm);
                let sign = if ids.contains(&i) { 1.0 } else { -1.0 };
                row[0] = sign;
                row[1] = -sign;
                row[WORD..].iter_mut().for_each(|v| *v = 0.0);
            }
        },
    );
    for name in [
        "bert.embeddings.position_embeddings.weight",
        "bert.embeddings.token_type_embeddings.weight",
    ] {
        edit(&mut tensors, name, &mut |rows| {
            rows.iter_mut()
                .for_each(|r| r[..WORD].iter_mut().for_each(|v| *v = 0.0))
        });
    }
    let names: Vec<String> = tensors.keys().cloned().collect();
    for name in &names {
        if name.ends_with("LayerNorm.weight") {
            edit(&mut tensors, name, &mut |rows| {
                rows[0][..WORD].iter_mut().for_each(|v| *v = 1.0)
            });
        } else if name.ends_with("LayerNorm.bias") {
            edit(&mut tensors, name, &mut |rows| {
                rows[0][..WORD].iter_mut().for_each(|v| *v = 0.0)
            });
        } else if name.contains("attention.self.query.weight")
            || name.contains("attention.self.key.weight")
        {
            edit(&mut tensors, name, &mut |rows| {
                rows.iter_mut()
                    .for_each(|r| r[..WORD].iter_mut().for_each(|v| *v = 0.0))
            });
        } else if name.starts_with("bert.encoder.layer.0.")
            && (name.contains("attention.output.dense") || name.contains(".output.dense."))
        {
            edit(&mut tensors, name, &mut |rows| {
                rows.iter_mut()
                    .for_each(|r| r.iter_mut().for_each(|v| *v = 0.0))
            });
        }
    }
    // L1H0 (output dims 0..8): key = 4 × marker, query = a constant.
    let head_dim = 8;
    edit(
        &mut tensors,
        "bert.encoder.layer.1.attention.self.key.weight",
        &mut |rows| {
            for (o, row) in rows.iter_mut().enumerate().take(head_dim) {
                row.iter_mut().for_each(|v| *v = 0.0);
                if o == 0 {
                    row[0] = 4.0;
                }
            }
        },
    );
    edit(
        &mut tensors,
        "bert.encoder.layer.1.attention.self.key.bias",
        &mut |rows| rows[0][..head_dim].iter_mut().for_each(|v| *v = 0.0),
    );
    edit(
        &mut tensors,
        "bert.encoder.layer.1.attention.self.query.weight",
        &mut |rows| {
            rows.iter_mut()
                .take(head_dim)
                .for_each(|r| r.iter_mut().for_each(|v| *v = 0.0))
        },
    );
    edit(
        &mut tensors,
        "bert.encoder.layer.1.attention.self.query.bias",
        &mut |rows| {
            rows[0][..head_dim].iter_mut().for_each(|v| *v = 0.0);
            rows[0][0] = 4.0;
        },
    );
    std::fs::create_dir_all(dir).unwrap();
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    for file in ["config.json", "vocab.txt"] {
        std::fs::copy(source.join(file), dir.join(file)).unwrap();
    }
    load(dir.to_str().unwrap(), &LoadOptions::default()).unwrap()
}

#[test]
fn a_planted_tata_head_is_the_top_head_for_the_tata_feature_and_no_random_head_is() {
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let loaded = planted_model(&dir.path().join("planted"));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(14);
    let inputs: Vec<AttentionInput> = (0..60)
        .map(|i| {
            let mut bases: Vec<u8> = (0..40).map(|_| b"ACGT"[rng.random_range(0..4)]).collect();
            if i % 4 != 3 {
                let at = rng.random_range(0..34);
                bases[at..at + 6].copy_from_slice(b"TATAAA");
            }
            AttentionInput::new(&format!("s{i}"), std::str::from_utf8(&bases).unwrap(), None)
        })
        .collect();
    let results = attention_statistics(&loaded, &inputs, &BatchOptions::default()).unwrap();
    let mut correlator =
        AnnotationCorrelator::new(2, 4, SEQUENCE_FEATURES.map(String::from).to_vec());
    for (input, (_, scores)) in inputs.iter().zip(&results) {
        let tokenized = loaded
            .tokenizer
            .tokenize(&input.example.id, &input.example.sequence)
            .unwrap();
        let spans: Vec<_> = tokenized.spans.iter().flatten().cloned().collect();
        let values = token_features(&input.example.sequence, &spans, &[], None);
        correlator.add(scores, &values, None).unwrap();
    }
    // 4 000 permutations: the smallest possible p (1/4001) times the 24 tests of a score stays
    // under 0.01 after BH.
    let settings = NullSettings {
        permutations: 4000,
        seed: 3,
        ..NullSettings::default()
    };
    let (rows, dropped) = correlator.correlate(&settings).unwrap();
    assert!(dropped.is_empty());
    for score in SCORES {
        let mut tata: Vec<_> = rows
            .iter()
            .filter(|r| r.feature == "tata_kmer" && r.score == score && r.subset == "all")
            .collect();
        tata.sort_by(|a, b| b.z.total_cmp(&a.z));
        let top = tata[0];
        eprintln!(
            "{score}: top L{}H{} rho {:.3} z {:.1} q {:.4}; next L{}H{} rho {:.3} z {:.1} q {:.4}",
            top.layer,
            top.head,
            top.rho,
            top.z,
            top.q,
            tata[1].layer,
            tata[1].head,
            tata[1].rho,
            tata[1].z,
            tata[1].q
        );
        assert_eq!(
            (top.layer, top.head),
            (1, 0),
            "{score}: the planted head is the top head"
        );
        assert!(
            top.rho > 0.0 && top.q < 0.01,
            "{score}: planted head q {}",
            top.q
        );
        for other in &tata[1..] {
            assert!(
                other.q >= 0.01,
                "{score}: random head L{}H{} has q {} for tata_kmer",
                other.layer,
                other.head,
                other.q
            );
        }
    }
}

/// Every float column of two tables equal bit for bit.
fn assert_same_numbers(
    a: &genolens::report::ParquetTable,
    b: &genolens::report::ParquetTable,
    table: &str,
) {
    let bits = |v: Vec<Option<f64>>| {
        v.into_iter()
            .map(|x| x.map(f64::to_bits))
            .collect::<Vec<_>>()
    };
    for column in a.column_names() {
        if let Ok(values) = a.optional_f64s(&column) {
            assert_eq!(
                bits(values),
                bits(b.optional_f64s(&column).unwrap()),
                "{table}.{column}"
            );
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
fn the_attention_command_writes_every_table_and_figure_reproducibly_and_names_bad_input() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("data/human-promoters.parquet");
    let annotations = root.join("data/annotations-chr20");
    let out = tempfile::tempdir().unwrap();
    let run = |name: &str| {
        let dir = out.path().join(name);
        succeeded(&genolens(&[
            "attention",
            "--data",
            data.to_str().unwrap(),
            "--annotations",
            annotations.to_str().unwrap(),
            "--limit",
            "16",
            "--permutations",
            "20",
            "--out",
            dir.to_str().unwrap(),
        ]));
        dir
    };
    let first = run("a");
    let stats = genolens::report::ParquetTable::read(&first.join("head_stats.parquet")).unwrap();
    assert_eq!(stats.rows(), 16 * 6 * 4);
    for column in [
        "sequence_id",
        "class",
        "layer",
        "head",
        "valid_keys",
        "cls_entropy_nats",
        "cls_entropy_normalised",
        "mean_entropy_nats",
        "mean_entropy_normalised",
        "cls_max_attention",
        "cls_variance",
        "cls_to_variant_sum",
        "cls_to_variant_mean",
        "mass_on_cls",
        "mass_on_sep",
        "degenerate",
    ] {
        assert!(stats.column_names().iter().any(|c| c == column), "{column}");
    }
    let tests = genolens::report::ParquetTable::read(&first.join("head_tests.parquet")).unwrap();
    let statistics = tests.strings("statistic").unwrap();
    assert!(statistics.iter().any(|s| s == "cls_entropy_nats"));
    assert_eq!(tests.strings("class_a").unwrap()[0], "promoter");
    let annotation =
        genolens::report::ParquetTable::read(&first.join("head_annotation.parquet")).unwrap();
    let features = annotation.strings("feature").unwrap();
    for feature in ["tss", "cpg_islands", "gc", "relative_position"] {
        assert!(features.iter().any(|f| f == feature), "feature {feature}");
    }
    let subsets = annotation.strings("subset").unwrap();
    assert!(subsets.iter().any(|s| s == "promoter") && subsets.iter().any(|s| s == "all"));
    let summaries =
        genolens::report::ParquetTable::read(&first.join("head_summaries.parquet")).unwrap();
    assert!(summaries.strings("summary").unwrap()[0].starts_with("L0H0: "));
    for figure in [
        "entropy_heatmap.svg",
        "variance_heatmap.svg",
        "max_attention_heatmap.svg",
        "class_q_heatmap.svg",
        "class_d_heatmap.svg",
        "annotation_z_heatmap.svg",
    ] {
        assert!(first.join("figures").join(figure).is_file(), "{figure}");
    }
    let report = std::fs::read_to_string(first.join("report.html")).unwrap();
    assert!(report.contains("One line per head"));
    // Same seed, same inputs: the same values, bit for bit.
    let second = run("b");
    for table in ["head_stats", "head_annotation", "head_tests"] {
        let file = format!("{table}.parquet");
        let (a, b) = (
            genolens::report::ParquetTable::read(&first.join(&file)).unwrap(),
            genolens::report::ParquetTable::read(&second.join(&file)).unwrap(),
        );
        assert_same_numbers(&a, &b, table);
    }

    // Bad input: no loci for --annotations; a sequence longer than the window without a variant.
    let fasta = out.path().join("plain.fa");
    std::fs::write(&fasta, ">seq1\nACGTACGTACGTAGCTAGCTAGCATCGATCGA\n").unwrap();
    let output = genolens(&[
        "attention",
        "--data",
        fasta.to_str().unwrap(),
        "--annotations",
        annotations.to_str().unwrap(),
        "--out",
        out.path().join("bad").to_str().unwrap(),
    ]);
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && message.contains("genome locus"),
        "{message}"
    );
    let long = out.path().join("long.fa");
    std::fs::write(&long, format!(">chr20:0-700\n{}\n", "ACGT".repeat(175))).unwrap();
    let output = genolens(&[
        "attention",
        "--data",
        long.to_str().unwrap(),
        "--out",
        out.path().join("bad2").to_str().unwrap(),
    ]);
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && message.contains("longer than the model's window"),
        "{message}"
    );
}

#[test]
fn attention_eqtl_sharded_and_merged_equals_one_run() {
    let out = tempfile::tempdir().unwrap();
    let reports = out.path().join("reports");
    let run = |run_id: &str, shard: Option<&str>| {
        let mut args = vec![
            "experiment",
            "attention-eqtl",
            "--limit",
            "20",
            "--batch-size",
            "1",
            "--reports",
            reports.to_str().unwrap(),
            "--run-id",
            run_id,
        ];
        if let Some(shard) = shard {
            args.extend(["--shard", shard]);
        }
        succeeded(&genolens(&args));
    };
    run("whole", None);
    for shard in ["0/2", "1/2"] {
        run("sharded", Some(shard));
    }
    let sharded = reports.join("attention-eqtl/sharded");
    succeeded(&genolens(&["merge", sharded.to_str().unwrap()]));
    let whole = reports.join("attention-eqtl/whole");
    for table in [
        "head_stats",
        "head_tests",
        "variant_profiles",
        "head_summaries",
    ] {
        let file = format!("{table}.parquet");
        let (a, b) = (
            genolens::report::ParquetTable::read(&whole.join(&file)).unwrap(),
            genolens::report::ParquetTable::read(&sharded.join(&file)).unwrap(),
        );
        assert_eq!(a.rows(), b.rows(), "{table}");
        assert_same_numbers(&a, &b, table);
    }
    // [CLS] -> variant attention is over the six 6-mers that cover the variant.
    let stats = genolens::report::ParquetTable::read(&whole.join("head_stats.parquet")).unwrap();
    let sum = stats.optional_f64s("cls_to_variant_sum").unwrap();
    let mean = stats.optional_f64s("cls_to_variant_mean").unwrap();
    for (s, m) in sum.iter().zip(&mean) {
        assert!((s.unwrap() / 6.0 - m.unwrap()).abs() < 1e-12);
    }
    assert!(whole.join("figures/class_q_heatmap.svg").is_file());
}
