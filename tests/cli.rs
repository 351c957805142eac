//! The commands end to end on the fixture models: embed (streamed Parquet), inspect, experiments.

mod common;

use std::fs::File;

use arrow_array::{Float32Array, StringArray, UInt32Array};
use candle_core::Device;
use common::{fixture_model, genolens};
use genolens::commands::embed::{run_embed, EmbedSettings, Pooling};
use genolens::data::TableColumns;
use genolens::model::{load_dir, Batch, HookPoint, Hooks, LoadOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn fixture_fasta() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sequences.fa")
}

fn read_table(path: &std::path::Path) -> Vec<arrow_array::RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

#[test]
fn embed_writes_one_vector_per_sequence_equal_to_the_forward_pass() {
    let loaded = load_dir(
        &fixture_model("tiny-cls-k6"),
        "tiny-cls-k6",
        &LoadOptions::default(),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    for (hook, pooling, width) in [
        ("hook_cls", Pooling::Cls, 32),
        ("blocks.1.hook_normalized_resid_post", Pooling::Mean, 32),
        ("blocks.0.attn.hook_z", Pooling::Cls, 32),
    ] {
        let settings = EmbedSettings {
            data: fixture_fasta(),
            hook: hook.into(),
            pooling,
            batch_size: 3,
            out: out.path().join(hook),
            columns: TableColumns::default(),
            seed: 0,
        };
        let counts = run_embed(&loaded, &settings).unwrap();
        assert_eq!(
            (
                counts.sequences,
                counts.sequences_with_ambiguous_bases,
                counts.ambiguous_bases
            ),
            (4, 1, 1)
        );
        assert_eq!(counts.unknown_tokens, 6, "one N is covered by six 6-mers");
        let batches = read_table(&settings.out.join("embeddings.parquet"));
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 4 * width, "{hook}");
        assert!(settings.out.join("run.json").is_file());
        if hook == "hook_cls" {
            // Values equal a direct forward pass of sequence 2 alone (batching/padding must not matter).
            let (id, sequence) = &common::fixture_sequences()[2];
            let tokens = loaded.tokenizer.tokenize(id, sequence).unwrap();
            let batch = Batch::from_tokenized(&[tokens], 0, &Device::Cpu).unwrap();
            let direct: Vec<f32> = loaded
                .model
                .forward(&batch, &Hooks::none())
                .unwrap()
                .cls
                .get(0)
                .unwrap()
                .to_vec1()
                .unwrap();
            let batch = &batches[0];
            let ids = batch
                .column_by_name("sequence_id")
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            let dims = batch
                .column_by_name("dim")
                .unwrap()
                .as_any()
                .downcast_ref::<UInt32Array>()
                .unwrap();
            let values = batch
                .column_by_name("value")
                .unwrap()
                .as_any()
                .downcast_ref::<Float32Array>()
                .unwrap();
            for row in 0..batch.num_rows() {
                if ids.value(row) == id {
                    let expected = direct[dims.value(row) as usize];
                    assert!(
                        (values.value(row) - expected).abs() < 1e-5,
                        "dim {}",
                        dims.value(row)
                    );
                }
            }
            assert_eq!(ids.value(0), "seq0", "rows keep input order");
        }
    }
}

#[test]
fn embed_is_deterministic_to_the_byte() {
    let loaded = load_dir(
        &fixture_model("tiny-mlm-k3"),
        "tiny-mlm-k3",
        &LoadOptions::default(),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let run = |name: &str| {
        let settings = EmbedSettings {
            data: fixture_fasta(),
            hook: "blocks.0.hook_mlp_out".into(),
            pooling: Pooling::Mean,
            batch_size: 2,
            out: out.path().join(name),
            columns: TableColumns::default(),
            seed: 3,
        };
        run_embed(&loaded, &settings).unwrap();
        std::fs::read(settings.out.join("embeddings.parquet")).unwrap()
    };
    assert_eq!(run("a"), run("b"));
}

#[test]
fn embed_rejects_attention_maps_and_bad_sequences() {
    let loaded = load_dir(
        &fixture_model("tiny-mlm-k3"),
        "tiny-mlm-k3",
        &LoadOptions::default(),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut settings = EmbedSettings {
        data: fixture_fasta(),
        hook: "blocks.0.attn.hook_pattern".into(),
        pooling: Pooling::Cls,
        batch_size: 2,
        out: out.path().join("x"),
        columns: TableColumns::default(),
        seed: 0,
    };
    let error = run_embed(&loaded, &settings).unwrap_err().to_string();
    assert!(error.contains("not vectors"), "{error}");
    assert!(
        !settings.out.join("embeddings.parquet").exists(),
        "no partial table"
    );
    let bad = out.path().join("bad.fa");
    std::fs::write(&bad, ">ok\nACGTACGT\n>broken\nACGTUACGT\n").unwrap();
    settings.data = bad;
    settings.hook = "hook_cls".into();
    // RNA's U is refused by the FASTA reader, naming the file, line, record and 1-based column.
    let error = run_embed(&loaded, &settings).unwrap_err().to_string();
    assert!(
        error.contains("bad.fa:4")
            && error.contains("broken")
            && error.contains("'U'")
            && error.contains("column 5"),
        "{error}"
    );
}

#[test]
fn inspect_lists_hooks_and_tokenizer_facts() {
    let loaded = load_dir(
        &fixture_model("tiny-mlm-k6"),
        "tiny-mlm-k6",
        &LoadOptions::default(),
    )
    .unwrap();
    let text = genolens::commands::inspect::describe(&loaded);
    for expected in [
        "BertForMaskedLM",
        "overlapping 6-mers",
        "vocab 4101",
        "blocks.{0..1}.attn.hook_pattern",
        "hook_logits",
        "up to 43 nt fit",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    // Parameter count: embeddings + 2 layers + MLM transform + bias, decoder tied (counted once).
    let (v, h, i, p) = (4101, 32, 64, 40);
    let layer = 4 * (h * h + h) + 2 * 2 * h + (h * i + i) + (i * h + h);
    let expected = v * h + p * h + 2 * h + 2 * h + 2 * layer + (h * h + h) + 2 * h + v;
    assert_eq!(loaded.model.parameter_count(), expected);
    assert!(HookPoint::all(2).len() > 30);
}

/// Standard output and error of a finished command, for assertions.
fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_binary_runs_inspect_embed_and_experiments() {
    let model = fixture_model("tiny-cls-k3");
    let model = model.to_str().unwrap();
    let inspect = genolens(&["inspect", "--model", model]);
    assert!(
        inspect.status.success(),
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    assert!(String::from_utf8_lossy(&inspect.stdout).contains("BertForSequenceClassification"));

    let out = tempfile::tempdir().unwrap();
    let embed_dir = out.path().join("embed");
    let fasta = fixture_fasta();
    let embed = genolens(&[
        "embed",
        "--model",
        model,
        "--data",
        fasta.to_str().unwrap(),
        "--hook",
        "hook_pooled",
        "--out",
        embed_dir.to_str().unwrap(),
    ]);
    assert!(
        embed.status.success(),
        "{}",
        String::from_utf8_lossy(&embed.stderr)
    );
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(embed_dir.join("run.json")).unwrap())
            .unwrap();
    assert_eq!(run["model_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(run["data"][0]["sha256"].as_str().unwrap().len(), 64);

    let list = genolens(&["experiment", "--list"]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("attention-entropy"));
    let reports = out.path().join("reports");
    let cls_k6 = fixture_model("tiny-cls-k6");
    let experiment = genolens(&[
        "experiment",
        "attention-entropy",
        "--model",
        cls_k6.to_str().unwrap(),
        "--data",
        fasta.to_str().unwrap(),
        "--reports",
        reports.to_str().unwrap(),
        "--run-id",
        "t",
    ]);
    assert!(
        experiment.status.success(),
        "{}",
        String::from_utf8_lossy(&experiment.stderr)
    );
    let table = reports.join("attention-entropy/t/cls_attention_entropy.parquet");
    let rows: usize = read_table(&table).iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 4 * 2 * 4, "4 sequences x 2 layers x 4 heads");

    let unknown = genolens(&["experiment", "nope"]);
    assert!(!unknown.status.success());
    let listed = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        listed.contains(
            "available: ablation-heads, attention-annotations, attention-entropy, attention-eqtl, attribution-planted, attribution-promoters, faithfulness-promoters, motifs-tf, patching-eqtl"
        ),
        "{listed}"
    );
    let missing = genolens(&["inspect", "--model", "/nonexistent/folder"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no such folder"));
}

#[test]
fn the_binary_runs_the_data_commands_and_names_bad_input() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let info = genolens(&[
        "data",
        "info",
        root.join("data/fly-core-promoters.parquet")
            .to_str()
            .unwrap(),
    ]);
    assert!(info.status.success(), "{}", text(&info));
    assert!(text(&info).contains("proximal") && text(&info).contains("median 250"));

    // A protein letter in a FASTA: the error names the file, line and character, and nothing panics.
    let bad = dir.path().join("bad.fa");
    std::fs::write(&bad, ">ok\nACGT\n>bad\nACGTXACGT\n").unwrap();
    let info = genolens(&["data", "info", bad.to_str().unwrap()]);
    assert!(!info.status.success());
    assert!(
        text(&info).contains("bad.fa:4") && text(&info).contains("'X'"),
        "{}",
        text(&info)
    );

    // A motif scan over the committed motif fixture writes a Parquet of hits.
    let hits = dir.path().join("hits.parquet");
    let scan = genolens(&[
        "data",
        "scan",
        "--motifs",
        root.join("data/jaspar/JASPAR2024_CORE_vertebrates.meme")
            .to_str()
            .unwrap(),
        "--sequences",
        root.join("tests/fixtures/motifs/sequences.fa")
            .to_str()
            .unwrap(),
        "--out",
        hits.to_str().unwrap(),
    ]);
    assert!(scan.status.success(), "{}", text(&scan));
    let rows: usize = read_table(&hits).iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 2500, "the memelite reference has 2 500 hits");

    // A QTL table without an explicit label rule is refused; with one, REF is checked.
    let reference = dir.path().join("ref.fa");
    std::fs::write(&reference, ">chr1\nACGTACGTACGTACGTACGT\n").unwrap();
    let table = dir.path().join("egenes.tsv");
    std::fs::write(
        &table,
        "chr\tvariant_pos\tref\talt\tslope\tpval_nominal\tpval_nominal_threshold\n\
         chr1\t10\tC\tT\t0.5\t1e-9\t1e-5\nchr1\t11\tA\tT\t0.5\t1e-9\t1e-5\n",
    )
    .unwrap();
    let windows = dir.path().join("w.parquet");
    let args = |rule: Option<&'static str>| {
        let mut a = vec![
            "data".to_string(),
            "variants".into(),
            "--reference".into(),
            reference.to_str().unwrap().into(),
            "--qtl-table".into(),
            table.to_str().unwrap().into(),
            "--length".into(),
            "8".into(),
            "--out".into(),
            windows.to_str().unwrap().into(),
        ];
        if let Some(rule) = rule {
            a.extend(["--label-rule".into(), rule.into()]);
        }
        a
    };
    let run = |a: Vec<String>| genolens(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let no_rule = run(args(None));
    assert!(
        !no_rule.status.success() && text(&no_rule).contains("--label-rule"),
        "{}",
        text(&no_rule)
    );
    let mismatch = run(args(Some("significance")));
    assert!(
        !mismatch.status.success()
            && text(&mismatch).contains("egenes.tsv:3")
            && text(&mismatch).contains("\"G\""),
        "{}",
        text(&mismatch)
    );
}

#[test]
fn the_main_study_runs_on_the_committed_default_model_and_data() {
    let out = tempfile::tempdir().unwrap();
    let reports = out.path().join("reports");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "experiment",
            "attention-entropy",
            "--reports",
            reports.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        genolens(&args)
    };
    let experiment = run(&["--limit", "3", "--run-id", "defaults"]);
    assert!(
        experiment.status.success(),
        "{}",
        String::from_utf8_lossy(&experiment.stderr)
    );
    let table = reports.join("attention-entropy/defaults/cls_attention_entropy.parquet");
    let rows: usize = read_table(&table).iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 3 * 6 * 4, "3 test sequences x 6 layers x 4 heads");
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(reports.join("attention-entropy/defaults/run.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["config"]["split"], "test");
    assert!(record["config"]["model"]
        .as_str()
        .unwrap()
        .ends_with("data/models/mini-dnabert6-promoters"));

    let wrong = run(&["--split", "holdout", "--run-id", "wrong"]);
    assert!(!wrong.status.success());
    let message = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        message.contains("holdout") && message.contains("test, train, valid"),
        "{message}"
    );
}

/// A Parquet file's columns, each as text (floats as their exact bits), for row-by-row equality.
fn columns_as_text(path: &std::path::Path) -> Vec<(String, Vec<String>)> {
    let table = genolens::report::ParquetTable::read(path).unwrap();
    table
        .column_names()
        .into_iter()
        .map(|name| {
            let values = table.strings(&name).unwrap_or_else(|_| {
                let floats = table.f64s(&name).unwrap();
                floats
                    .iter()
                    .map(|v| format!("{:016x}", v.to_bits()))
                    .collect()
            });
            (name, values)
        })
        .collect()
}

#[test]
fn a_run_split_into_three_shards_and_merged_equals_the_unsharded_run() {
    let out = tempfile::tempdir().unwrap();
    let reports = out.path().join("reports");
    // The committed default model (the fixtures' windows are too short for promoter windows).
    // 70 test sequences at batch size 2: read-aheads of 32, so 3 blocks (32, 32, 6), one per shard.
    let run = |run_id: &str, shard: Option<&str>| {
        let mut args = vec![
            "experiment",
            "attention-entropy",
            "--limit",
            "70",
            "--batch-size",
            "2",
            "--reports",
            reports.to_str().unwrap(),
            "--run-id",
            run_id,
        ];
        if let Some(shard) = shard {
            args.extend(["--shard", shard]);
        }
        let output = genolens(&args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run("whole", None);
    let sharded = reports.join("attention-entropy/sharded");
    for shard in ["2/3", "0/3"] {
        run("sharded", Some(shard));
    }
    // A missing shard is named, and nothing is merged.
    let early = genolens(&["merge", sharded.to_str().unwrap()]);
    assert!(!early.status.success());
    let message = String::from_utf8_lossy(&early.stderr);
    assert!(message.contains("shards 1 of 3"), "{message}");
    assert!(!sharded.join("report.html").exists());
    run("sharded", Some("1/3"));
    let merge = genolens(&["merge", sharded.to_str().unwrap()]);
    assert!(
        merge.status.success(),
        "{}",
        String::from_utf8_lossy(&merge.stderr)
    );

    let whole = reports.join("attention-entropy/whole");
    for table in [
        "cls_attention_entropy.parquet",
        "cls_entropy_by_head.parquet",
    ] {
        let (a, b) = (
            columns_as_text(&whole.join(table)),
            columns_as_text(&sharded.join(table)),
        );
        assert_eq!(a.len(), b.len(), "{table}");
        for ((name, a), (other, b)) in a.iter().zip(&b) {
            assert_eq!(name, other, "{table}");
            assert_eq!(a.len(), b.len(), "{table} {name}");
            assert!(a == b, "{table}: column {name} differs");
        }
    }
    let rows =
        |path: std::path::PathBuf| genolens::report::ParquetTable::read(&path).unwrap().rows();
    assert_eq!(
        rows(whole.join("cls_attention_entropy.parquet")),
        70 * 6 * 4
    );
    for part in 0..3 {
        let part = sharded.join(format!("cls_attention_entropy/part-{part}-of-3.parquet"));
        assert!(rows(part) > 0, "every shard did work");
    }
    for file in [
        "report.html",
        "figures/cls_entropy_heatmap.svg",
        "figures/cls_special_mass_heatmap.svg",
    ] {
        assert_eq!(
            std::fs::read(whole.join(file)).is_ok(),
            std::fs::read(sharded.join(file)).is_ok(),
            "{file}"
        );
        assert!(sharded.join(file).is_file(), "{file}");
    }
    assert_eq!(
        std::fs::read(whole.join("figures/cls_entropy_heatmap.svg")).unwrap(),
        std::fs::read(sharded.join("figures/cls_entropy_heatmap.svg")).unwrap(),
        "the same rows give the same figure"
    );
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sharded.join("run.json")).unwrap()).unwrap();
    assert_eq!(record["config"]["sequences"], 70);
    assert_eq!(record["config"]["merged_shards"], 3);
    let html = std::fs::read_to_string(sharded.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("cls_entropy_by_head.parquet"));

    // Shards of one run need one folder.
    let no_id = genolens(&["experiment", "attention-entropy", "--shard", "0/2"]);
    assert!(!no_id.status.success());
    assert!(String::from_utf8_lossy(&no_id.stderr).contains("--run-id"));
}

#[test]
fn a_fine_tuned_model_is_scored_on_its_own_task_by_default_and_never_on_another() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tf_model = root.join("data/models/mini-dnabert6-tf");
    let promoters = root.join("data/human-promoters.parquet");
    // evaluate on another task's table: an error naming both sets of classes.
    let wrong = genolens(&[
        "evaluate",
        "--model",
        tf_model.to_str().unwrap(),
        "--data",
        promoters.to_str().unwrap(),
    ]);
    assert!(!wrong.status.success());
    let message = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        message.contains("0: background, 1: promoter")
            && message.contains("0: MafK, 1: Oct4")
            && message.contains("tf-oct4-mafk.parquet"),
        "{message}"
    );
    // A study with the TF model and no --data reads the TF model's own dataset ...
    let out = tempfile::tempdir().unwrap();
    let reports = out.path().join("reports");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "experiment",
            "attention-entropy",
            "--model",
            tf_model.to_str().unwrap(),
            "--limit",
            "2",
            "--reports",
            reports.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        genolens(&args)
    };
    let own = run(&["--run-id", "own"]);
    assert!(
        own.status.success(),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(reports.join("attention-entropy/own/run.json")).unwrap(),
    )
    .unwrap();
    assert!(
        record["config"]["data"]
            .as_str()
            .unwrap()
            .ends_with("data/tf-oct4-mafk.parquet"),
        "{record}"
    );
    // ... and refuses the promoters table.
    let other = run(&["--run-id", "other", "--data", promoters.to_str().unwrap()]);
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("0: MafK, 1: Oct4"));
}

#[test]
fn patching_eqtl_sharded_and_merged_equals_one_run() {
    let out = tempfile::tempdir().unwrap();
    let reports = out.path().join("reports");
    let run = |run_id: &str, shard: Option<&str>| {
        let mut args = vec![
            "experiment",
            "patching-eqtl",
            "--limit",
            "3",
            "--reports",
            reports.to_str().unwrap(),
            "--run-id",
            run_id,
        ];
        if let Some(shard) = shard {
            args.extend(["--shard", shard]);
        }
        let output = genolens(&args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run("whole", None);
    for shard in ["0/2", "1/2"] {
        run("sharded", Some(shard));
    }
    let sharded = reports.join("patching-eqtl/sharded");
    let merge = genolens(&["merge", sharded.to_str().unwrap()]);
    assert!(
        merge.status.success(),
        "{}",
        String::from_utf8_lossy(&merge.stderr)
    );
    let whole = reports.join("patching-eqtl/whole");
    for table in [
        "patching.parquet",
        "patching_by_layer.parquet",
        "patching_by_position.parquet",
        "patching_by_head.parquet",
    ] {
        let (a, b) = (
            columns_as_text_nullable(&whole.join(table)),
            columns_as_text_nullable(&sharded.join(table)),
        );
        assert!(
            a == b,
            "{table} differs between the sharded and the whole run"
        );
    }
    let rows = genolens::report::ParquetTable::read(&whole.join("patching.parquet")).unwrap();
    let sweeps = rows.strings("sweep").unwrap();
    let pairings = rows.strings("pairing").unwrap();
    let fraction = rows.f64s("fraction_restored").unwrap();
    let sites = rows.strings("site").unwrap();
    assert!(sweeps.iter().any(|s| s == "position") && sweeps.iter().any(|s| s == "head"));
    assert!(pairings.iter().any(|p| p == "random"));
    // Replacing the whole block input restores the clean output exactly, at every layer.
    for i in 0..rows.rows() {
        if sweeps[i] == "layer" && sites[i] == "resid_pre" {
            assert_eq!(fraction[i], 1.0);
        }
    }
    for figure in [
        "fraction_restored_by_layer.svg",
        "fraction_restored_layer_position.svg",
        "fraction_restored_layer_head.svg",
    ] {
        assert!(sharded.join("figures").join(figure).is_file(), "{figure}");
    }
}

/// Every column as text, nulls as "null" and floats as exact bits.
fn columns_as_text_nullable(path: &std::path::Path) -> Vec<(String, Vec<String>)> {
    let table = genolens::report::ParquetTable::read(path).unwrap();
    table
        .column_names()
        .into_iter()
        .map(|name| {
            let values = match table.strings(&name) {
                Ok(values) => values,
                Err(_) => match table.optional_f64s(&name) {
                    Ok(floats) => floats
                        .iter()
                        .map(|v| format!("{:?}", v.map(f64::to_bits)))
                        .collect(),
                    Err(_) => table
                        .optional_integers(&name)
                        .unwrap()
                        .iter()
                        .map(|v| format!("{v:?}"))
                        .collect(),
                },
            };
            (name, values)
        })
        .collect()
}

#[test]
fn a_qtl_table_becomes_variant_pairs_and_is_patched_with_clear_errors_on_bad_input() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs.parquet");
    let fixture = |name: &str| root.join("tests/fixtures/qtl").join(name);
    let variants = genolens(&[
        "data",
        "variants",
        "--reference",
        fixture("chr20-excerpt.fa").to_str().unwrap(),
        "--qtl-table",
        fixture("egenes.tsv").to_str().unwrap(),
        "--label-rule",
        "significance",
        "--length",
        "128",
        "--out",
        pairs.to_str().unwrap(),
    ]);
    assert!(variants.status.success(), "{}", text(&variants));
    let out = dir.path().join("patch");
    let patch = genolens(&[
        "patch",
        "--data",
        pairs.to_str().unwrap(),
        "--site",
        "resid_pre,mlp_out",
        "--positions",
        "window:2",
        "--limit",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(patch.status.success(), "{}", text(&patch));
    for file in [
        "patching.parquet",
        "patching_by_layer.parquet",
        "patching_by_position.parquet",
        "patching_by_head.parquet",
        "report.html",
        "run.json",
        "figures/fraction_restored_by_layer.svg",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let rows = genolens::report::ParquetTable::read(&out.join("patching.parquet")).unwrap();
    let ids = rows.strings("pair_id").unwrap();
    let sweeps = rows.strings("sweep").unwrap();
    let sites = rows.strings("site").unwrap();
    let layers = rows.integers("layer").unwrap();
    let fraction = rows.f64s("fraction_restored").unwrap();
    let source: Vec<String> = genolens::report::ParquetTable::read(&pairs)
        .unwrap()
        .strings("id")
        .unwrap();
    let mut seen: Vec<&String> = ids.iter().collect();
    seen.dedup();
    assert_eq!(
        seen,
        source.iter().take(3).collect::<Vec<_>>(),
        "one block of rows per pair, in table order"
    );
    let position_sites: std::collections::BTreeSet<&str> = (0..rows.rows())
        .filter(|&i| sweeps[i] == "position")
        .map(|i| sites[i].as_str())
        .collect();
    assert_eq!(
        position_sites,
        ["mlp_out", "resid_pre"].into_iter().collect()
    );
    for i in 0..rows.rows() {
        if sweeps[i] == "layer" && sites[i] == "resid_pre" && layers[i] == 0 {
            assert_eq!(
                fraction[i], 1.0,
                "whole resid_pre at layer 0 restores exactly"
            );
        }
    }
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(record["command"], "patch");
    assert_eq!(record["config"]["split"], "all");

    // Bad input is named: an unknown site, and a pair whose REF equals its ALT.
    let unknown = genolens(&[
        "patch",
        "--data",
        pairs.to_str().unwrap(),
        "--site",
        "resid_mid",
    ]);
    assert!(
        !unknown.status.success() && text(&unknown).contains("resid_mid"),
        "{}",
        text(&unknown)
    );
    let same = dir.path().join("same.parquet");
    let table = genolens::report::ParquetTable::read(&pairs).unwrap();
    let sequences = table.strings("sequence").unwrap();
    let schema = std::sync::Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("id", arrow_schema::DataType::Utf8, false),
        arrow_schema::Field::new("sequence", arrow_schema::DataType::Utf8, false),
        arrow_schema::Field::new("alt_sequence", arrow_schema::DataType::Utf8, false),
    ]));
    let batch = arrow_array::RecordBatch::try_new(
        schema.clone(),
        vec![
            std::sync::Arc::new(StringArray::from(vec!["a", "b"])),
            std::sync::Arc::new(StringArray::from(vec![
                sequences[0].clone(),
                sequences[1].clone(),
            ])),
            std::sync::Arc::new(StringArray::from(vec![
                sequences[0].clone(),
                sequences[1].clone(),
            ])),
        ],
    )
    .unwrap();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(File::create(&same).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let identical = genolens(&[
        "patch",
        "--data",
        same.to_str().unwrap(),
        "--out",
        dir.path().join("never").to_str().unwrap(),
    ]);
    let message = text(&identical);
    assert!(
        !identical.status.success()
            && message.contains("identical")
            && message.contains("same.parquet"),
        "{message}"
    );
    assert!(
        !dir.path().join("never/patching.parquet").exists(),
        "a failed run leaves no table"
    );
}

#[test]
fn ablate_scores_heads_and_sets_and_names_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ablate");
    let promoters = genolens::defaults::PROMOTER_MODEL;
    let run = |extra: &[&str], out: &std::path::Path| {
        let mut args = vec![
            "ablate",
            "--model",
            promoters,
            "--per-class",
            "6",
            "--percents",
            "10,50",
            "--random-sets",
            "3",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        genolens(&args)
    };
    let zero = run(&[], &out);
    assert!(zero.status.success(), "{}", text(&zero));
    let sets = genolens::report::ParquetTable::read(&out.join("set_ablation.parquet")).unwrap();
    let kinds = sets.strings("set").unwrap();
    let counts = sets.integers("heads_ablated").unwrap();
    assert_eq!(kinds[0], "none");
    // 24 heads: 10 % = 2, 50 % = 12; one top, one control and three random sets each.
    assert_eq!(sets.rows(), 1 + 2 * (1 + 1 + 3));
    assert!(counts[1..].iter().all(|&n| n == 2 || n == 12));
    let heads = sets.strings("heads").unwrap();
    let top_12 = (0..sets.rows())
        .find(|&i| kinds[i] == "top" && counts[i] == 12)
        .unwrap();
    assert_eq!(heads[top_12].split(' ').count(), 12);
    let importance =
        genolens::report::ParquetTable::read(&out.join("head_importance.parquet")).unwrap();
    assert_eq!(importance.rows(), 2 * 24, "valid and test, every head");
    assert_eq!(
        importance.strings("split").unwrap()[0],
        "valid",
        "heads are ranked on their own split"
    );
    for file in [
        "set_ablation_summary.parquet",
        "figures/ablation_accuracy.svg",
        "figures/importance_delta_accuracy.svg",
        "report.html",
    ] {
        assert!(out.join(file).is_file(), "{file}");
    }
    // Mean ablation runs too; the same seed gives the same tables.
    let mean = run(&["--ablation", "mean"], &dir.path().join("mean"));
    assert!(mean.status.success(), "{}", text(&mean));
    let again = run(&[], &dir.path().join("again"));
    assert!(again.status.success());
    assert!(
        columns_as_text(&out.join("set_ablation.parquet"))
            == columns_as_text(&dir.path().join("again/set_ablation.parquet")),
        "same seed, same inputs: identical table"
    );
    // A head score table ranks the heads by |score| (its largest per head).
    let scores = out.join("head_importance.parquet");
    let ranked = run(
        &[
            "--head-scores",
            scores.to_str().unwrap(),
            "--score-column",
            "delta_true_logit",
        ],
        &dir.path().join("ranked"),
    );
    assert!(ranked.status.success(), "{}", text(&ranked));
    let layers = importance.integers("layer").unwrap();
    let head_ids = importance.integers("head").unwrap();
    let deltas = importance.f64s("delta_true_logit").unwrap();
    let mut best: std::collections::BTreeMap<(i64, i64), f64> = Default::default();
    for i in 0..importance.rows() {
        let e = best.entry((layers[i], head_ids[i])).or_insert(0.0);
        *e = e.max(deltas[i].abs());
    }
    let mut order: Vec<((i64, i64), f64)> = best.into_iter().collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let expected: Vec<String> = order[..2]
        .iter()
        .map(|((l, h), _)| format!("L{l}H{h}"))
        .collect();
    let ranked_sets =
        genolens::report::ParquetTable::read(&dir.path().join("ranked/set_ablation.parquet"))
            .unwrap();
    let (kinds, counts, heads) = (
        ranked_sets.strings("set").unwrap(),
        ranked_sets.integers("heads_ablated").unwrap(),
        ranked_sets.strings("heads").unwrap(),
    );
    let top_2 = (0..ranked_sets.rows())
        .find(|&i| kinds[i] == "top" && counts[i] == 2)
        .unwrap();
    assert_eq!(heads[top_2], expected.join(" "));
    let wrong_column = run(
        &[
            "--head-scores",
            scores.to_str().unwrap(),
            "--score-column",
            "zz",
        ],
        &dir.path().join("bad0"),
    );
    assert!(
        !wrong_column.status.success() && text(&wrong_column).contains("no column `zz`"),
        "{}",
        text(&wrong_column)
    );
    // --score-filter keeps only the matching rows (here the ranking split's).
    let filtered = run(
        &[
            "--head-scores",
            scores.to_str().unwrap(),
            "--score-column",
            "delta_true_logit",
            "--score-filter",
            "split=valid",
        ],
        &dir.path().join("filtered"),
    );
    assert!(filtered.status.success(), "{}", text(&filtered));
    let splits = importance.strings("split").unwrap();
    let mut valid: Vec<((i64, i64), f64)> = (0..importance.rows())
        .filter(|&i| splits[i] == "valid")
        .map(|i| ((layers[i], head_ids[i]), deltas[i].abs()))
        .collect();
    valid.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let expected: Vec<String> = valid[..2]
        .iter()
        .map(|((l, h), _)| format!("L{l}H{h}"))
        .collect();
    let filtered_sets =
        genolens::report::ParquetTable::read(&dir.path().join("filtered/set_ablation.parquet"))
            .unwrap();
    let (kinds, counts, heads) = (
        filtered_sets.strings("set").unwrap(),
        filtered_sets.integers("heads_ablated").unwrap(),
        filtered_sets.strings("heads").unwrap(),
    );
    let top_2 = (0..filtered_sets.rows())
        .find(|&i| kinds[i] == "top" && counts[i] == 2)
        .unwrap();
    assert_eq!(heads[top_2], expected.join(" "));
    let no_match = run(
        &[
            "--head-scores",
            scores.to_str().unwrap(),
            "--score-column",
            "delta_true_logit",
            "--score-filter",
            "split=tset",
        ],
        &dir.path().join("bad00"),
    );
    assert!(
        !no_match.status.success() && text(&no_match).contains("no row has split = \"tset\""),
        "{}",
        text(&no_match)
    );
    // Bad input.
    let same_split = run(&["--rank-split", "test"], &dir.path().join("bad1"));
    assert!(
        !same_split.status.success() && text(&same_split).contains("separate split"),
        "{}",
        text(&same_split)
    );
    let kind = run(&["--ablation", "half"], &dir.path().join("bad2"));
    assert!(
        !kind.status.success() && text(&kind).contains("zero or mean"),
        "{}",
        text(&kind)
    );
    let encoder = genolens(&[
        "ablate",
        "--model",
        genolens::defaults::PRETRAINED_MODEL,
        "--data",
        genolens::defaults::DATA,
        "--out",
        dir.path().join("bad3").to_str().unwrap(),
    ]);
    assert!(
        !encoder.status.success() && text(&encoder).contains("sequence classifier"),
        "{}",
        text(&encoder)
    );
}

#[test]
fn patching_promoters_restores_the_logit_difference_with_the_matching_recorded() {
    let out = tempfile::tempdir().unwrap();
    let reports = out.path().join("reports");
    let run = genolens(&[
        "experiment",
        "patching-promoters",
        "--limit",
        "2",
        "--reports",
        reports.to_str().unwrap(),
        "--run-id",
        "t",
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let dir = reports.join("patching-promoters/t");
    let pairs = genolens::report::ParquetTable::read(&dir.join("promoter_pairs.parquet")).unwrap();
    assert_eq!(pairs.rows(), 2);
    for d in pairs.f64s("gc_difference").unwrap() {
        assert!(d.abs() < 0.02, "GC-matched within 2 %: {d}");
    }
    let rows = genolens::report::ParquetTable::read(&dir.join("patching.parquet")).unwrap();
    let sweeps = rows.strings("sweep").unwrap();
    let sites = rows.strings("site").unwrap();
    let roles = rows.strings("position_role").unwrap();
    let logit = rows.optional_f64s("logit_diff_fraction_restored").unwrap();
    assert!(
        logit.iter().all(Option::is_some),
        "a classifier: logit metrics"
    );
    assert!(roles.iter().any(|r| r == "tss"));
    for i in 0..rows.rows() {
        if sweeps[i] == "layer" && sites[i] == "resid_pre" {
            assert_eq!(logit[i], Some(1.0));
        }
    }
    let summary =
        genolens::report::ParquetTable::read(&dir.join("patching_by_layer.parquet")).unwrap();
    assert_eq!(
        summary.strings("metric").unwrap()[0],
        "logit_diff_fraction_restored"
    );
}

#[test]
fn ablation_heads_runs_on_the_committed_fly_core_classifier() {
    let out = tempfile::tempdir().unwrap();
    let reports = out.path().join("reports");
    let run = genolens(&[
        "experiment",
        "ablation-heads",
        "--limit",
        "8",
        "--reports",
        reports.to_str().unwrap(),
        "--run-id",
        "t",
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let dir = reports.join("ablation-heads/t");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    assert!(record["config"]["model"]
        .as_str()
        .unwrap()
        .ends_with("data/models/mini-dnabert6-fly-core"));
    assert_eq!(record["config"]["eval_sequences"], 16, "8 per class");
    let sets = genolens::report::ParquetTable::read(&dir.join("set_ablation.parquet")).unwrap();
    // Intact + 6 percentages x (top + control + 20 random).
    assert_eq!(sets.rows(), 1 + 6 * 22);
    assert!(dir.join("figures/ablation_accuracy.svg").is_file());
}

/// `--legacy-double-bias` reaches every command that produces MLM logits: `embed` at
/// `hook_logits` moves each logit by the decoder bias once more.
#[test]
fn legacy_double_bias_reaches_embedded_logits() {
    let model = fixture_model("tiny-mlm-k3");
    let dir = tempfile::tempdir().unwrap();
    let fasta = dir.path().join("one.fa");
    std::fs::write(&fasta, ">s\nACGTACGTTGCA\n").unwrap();
    let embed = |out: &str, legacy: bool| {
        let out = dir.path().join(out);
        let mut args = vec![
            "embed",
            "--model",
            model.to_str().unwrap(),
            "--data",
            fasta.to_str().unwrap(),
            "--hook",
            "hook_logits",
            "--out",
            out.to_str().unwrap(),
        ];
        if legacy {
            args.push("--legacy-double-bias");
        }
        let run = genolens(&args);
        assert!(run.status.success(), "{}", text(&run));
        genolens::report::ParquetTable::read(&out.join("embeddings.parquet"))
            .unwrap()
            .f64s("value")
            .unwrap()
    };
    let (modern, legacy) = (embed("modern", false), embed("legacy", true));
    let record = std::fs::read_to_string(dir.path().join("legacy/run.json")).unwrap();
    assert!(record.contains("\"legacy_double_bias\": true"), "{record}");
    let loaded = genolens::model::load_dir(
        &model,
        "tiny-mlm-k3",
        &genolens::model::LoadOptions::default(),
    )
    .unwrap();
    let bias: Vec<f32> = loaded.model.named_parameters()["cls.predictions.bias"]
        .to_vec1()
        .unwrap();
    assert_eq!(modern.len(), legacy.len());
    // Pooled logits: per vocabulary entry, the pooled difference is that entry's bias.
    assert_eq!(modern.len() % bias.len(), 0, "{} values", modern.len());
    for (index, (a, b)) in modern.iter().zip(&legacy).enumerate() {
        let expected = f64::from(bias[index % bias.len()]);
        assert!(
            (b - a - expected).abs() < 1e-4,
            "{index}: {a} {b} {expected}"
        );
    }
}

/// `GENOLENS_BLAS`: a name that does not load stops the command before any work, naming the
/// variable; a BLAS that loads (`GENOLENS_TEST_BLAS`, which CI sets, else Debian's OpenBLAS or
/// BLIS when installed) gives the built-in GEMM's embeddings to rounding and is recorded in
/// run.json.
#[test]
fn the_blas_backend_is_checked_recorded_and_agrees_with_the_built_in_gemm() {
    let model = fixture_model("tiny-cls-k3");
    let model = model.to_str().unwrap();
    let with_blas = |blas: &str, args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_genolens"))
            .env("GENOLENS_BLAS", blas)
            .args(args)
            .output()
            .unwrap()
    };
    let wrong = with_blas("/no/such/libopenblas.so", &["inspect", "--model", model]);
    assert!(!wrong.status.success());
    let message = text(&wrong);
    assert!(
        message.contains("GENOLENS_BLAS=/no/such/libopenblas.so")
            && message.contains("cblas_sgemm"),
        "{message}"
    );

    let named = std::env::var("GENOLENS_TEST_BLAS").ok();
    let candidates = match &named {
        Some(name) => vec![name.clone()],
        None => vec!["libopenblas.so.0".to_string(), "libblis.so.4".to_string()],
    };
    let Some(blas) = candidates.into_iter().find(|name| {
        with_blas(name, &["inspect", "--model", model])
            .status
            .success()
    }) else {
        assert!(named.is_none(), "GENOLENS_TEST_BLAS={named:?} did not load");
        eprintln!("no BLAS library found: GENOLENS_BLAS's end-to-end path is not exercised here");
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let fasta = fixture_fasta();
    let embed = |blas: &str, name: &str| {
        let dir = out.path().join(name);
        let args = [
            "embed",
            "--model",
            model,
            "--data",
            fasta.to_str().unwrap(),
            "--hook",
            "blocks.1.hook_resid_post",
            "--out",
            dir.to_str().unwrap(),
        ];
        let output = with_blas(blas, &args);
        assert!(output.status.success(), "{}", text(&output));
        let values: Vec<f32> = read_table(&dir.join("embeddings.parquet"))
            .iter()
            .flat_map(|batch| {
                let column = batch.column_by_name("value").expect("value column");
                let column = column.as_any().downcast_ref::<Float32Array>().unwrap();
                column.values().to_vec()
            })
            .collect();
        let run: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
        (values, run["matmul"].as_str().unwrap().to_string())
    };
    let (built_in, built_in_name) = embed("gemm", "built-in");
    let (loaded, loaded_name) = embed(&blas, "blas");
    assert!(built_in_name.contains("gemm crate"), "{built_in_name}");
    assert!(loaded_name.contains(&blas), "{loaded_name}");
    assert_eq!(built_in.len(), loaded.len());
    assert!(!built_in.is_empty());
    let worst = built_in
        .iter()
        .zip(&loaded)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "largest difference {worst}");
}
