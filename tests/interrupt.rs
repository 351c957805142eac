//! Interrupted runs: a child `genolens` killed at a chosen batch (SIGINT, SIGTERM or SIGKILL,
//! sent by the test hook `GENOLENS_TEST_SIGNAL_AFTER_BATCHES`) leaves no half-written table and
//! no run.json; rerunning the same command says it starts clean and finishes the run.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};

use common::{fixture_model, fixture_sequences};

fn run(args: &[&str], signal: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_genolens"));
    command.args(args).env("RUST_BACKTRACE", "0");
    if let Some(signal) = signal {
        command.env("GENOLENS_TEST_SIGNAL_AFTER_BATCHES", signal);
    }
    command.output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

/// Every file under `dir` (relative names), sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

fn temp_files(dir: &Path) -> Vec<String> {
    files(dir)
        .into_iter()
        .filter(|f| f.rsplit('/').next().unwrap().starts_with('.') && f.ends_with(".tmp"))
        .collect()
}

/// The interrupted run left no table, no run.json, and (unless killed outright) no temp file.
fn assert_interrupted(output: &Output, signal: &str, out: &Path, tables: &[&str]) {
    let message = stderr(output);
    match signal {
        "KILL" => assert_eq!(output.status.signal(), Some(9), "{message}"),
        _ => {
            assert_eq!(output.status.code(), Some(130), "{message}");
            assert!(message.contains("interrupted"), "{message}");
            assert!(temp_files(out).is_empty(), "{:?}", files(out));
        }
    }
    for table in tables {
        assert!(!out.join(table).exists(), "{signal}: {table} exists");
    }
    assert!(!out.join("run.json").exists(), "{signal}: run.json exists");
}

/// The rerun said it started clean, finished, and left no temp file.
fn assert_restarted(output: &Output, out: &Path, tables: &[&str]) {
    let message = stderr(output);
    assert!(output.status.success(), "{message}");
    assert!(
        message.contains("holds no finished run") && message.contains("starting clean"),
        "{message}"
    );
    for table in tables {
        assert!(out.join(table).is_file(), "{table} missing");
    }
    assert!(out.join("run.json").is_file());
    assert!(temp_files(out).is_empty(), "{:?}", files(out));
}

#[test]
fn an_interrupted_embed_leaves_no_table_and_a_rerun_starts_clean() {
    let dir = tempfile::tempdir().unwrap();
    let fasta = dir.path().join("many.fa");
    let mut text = String::new();
    for round in 0..4 {
        for (id, sequence) in fixture_sequences() {
            text.push_str(&format!(">{id}_{round}\n{sequence}\n"));
        }
    }
    std::fs::write(&fasta, text).unwrap();
    let model = fixture_model("tiny-cls-k3");
    let out = dir.path().join("embed");
    let args = [
        "embed",
        "--model",
        model.to_str().unwrap(),
        "--data",
        fasta.to_str().unwrap(),
        "--batch-size",
        "1",
        "--out",
        out.to_str().unwrap(),
    ];
    let complete = dir.path().join("complete");
    let mut complete_args = args;
    complete_args[8] = complete.to_str().unwrap();
    assert!(run(&complete_args, None).status.success());
    let expected = genolens::report::ParquetTable::read(&complete.join("embeddings.parquet"))
        .unwrap()
        .f64s("value")
        .unwrap();

    for signal in ["INT", "TERM", "KILL"] {
        let interrupted = run(&args, Some(&format!("{signal}:3")));
        assert_interrupted(&interrupted, signal, &out, &["embeddings.parquet"]);
        if signal == "KILL" {
            // SIGKILL cannot be caught: the hidden temp file stays until the rerun.
            assert_eq!(temp_files(&out).len(), 1, "{:?}", files(&out));
        }
        let rerun = run(&args, None);
        assert_restarted(&rerun, &out, &["embeddings.parquet"]);
        if signal == "KILL" {
            assert!(stderr(&rerun).contains("1 leftover temp file(s) removed"));
        }
        let values = genolens::report::ParquetTable::read(&out.join("embeddings.parquet"))
            .unwrap()
            .f64s("value")
            .unwrap();
        assert_eq!(values, expected, "{signal}: the rerun's table differs");
        // Interrupting a finished folder's rerun: run.json goes first, so it never looks
        // finished with a mix of old and new tables.
        let replaced = run(&args, Some("INT:2"));
        assert!(stderr(&replaced).contains("holds a finished run; replacing it"));
        assert!(!out.join("run.json").exists());
        std::fs::remove_dir_all(&out).unwrap();
    }
}

#[test]
fn an_interrupted_patching_study_leaves_no_table_and_a_rerun_starts_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs.parquet");
    let fixture = |name: &str| root.join("tests/fixtures/qtl").join(name);
    let variants = run(
        &[
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
        ],
        None,
    );
    assert!(variants.status.success(), "{}", stderr(&variants));
    let out = dir.path().join("patch");
    let args = [
        "patch",
        "--data",
        pairs.to_str().unwrap(),
        "--site",
        "resid_pre",
        "--positions",
        "window:1",
        "--limit",
        "3",
        "--out",
        out.to_str().unwrap(),
    ];
    let tables = [
        "patching.parquet",
        "patching_by_layer.parquet",
        "report.html",
    ];
    for signal in ["INT", "KILL"] {
        let interrupted = run(&args, Some(&format!("{signal}:2")));
        assert_interrupted(&interrupted, signal, &out, &tables);
        let rerun = run(&args, None);
        assert_restarted(&rerun, &out, &tables);
        std::fs::remove_dir_all(&out).unwrap();
    }
}
