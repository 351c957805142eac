//! Build script: records the git commit, and registers every experiments/*.rs file
//! (so a new experiment needs no edits elsewhere).

use std::fmt::Write;
use std::path::Path;

fn main() {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let dirty = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .is_some_and(|o| o.status.success() && !o.stdout.is_empty());
    let suffix = if dirty && commit != "unknown" {
        "-dirty"
    } else {
        ""
    };
    println!("cargo:rustc-env=GENOLENS_GIT_COMMIT={commit}{suffix}");
    // Re-run when the commit or the tracked sources change, so the recorded commit is exact.
    for path in [
        ".git/HEAD",
        ".git/refs/heads",
        ".git/index",
        "src",
        "experiments",
    ] {
        if Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }

    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let experiments_dir = Path::new(&manifest_dir).join("experiments");
    let mut files: Vec<_> = std::fs::read_dir(&experiments_dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "rs"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut code = String::new();
    let mut registry = String::from("/// Every experiment in experiments/, by name.\npub const EXPERIMENTS: &[genolens::experiment::Experiment] = &[\n");
    for file in &files {
        let module = file.file_stem().unwrap().to_string_lossy().to_string();
        let name = module.replace('_', "-");
        writeln!(
            code,
            "#[path = {:?}]\nmod {module};",
            file.display().to_string()
        )
        .unwrap();
        // A study with a reduce step (statistics, figures, report from its per-observation tables)
        // declares `pub fn reduce(context: &mut ReduceContext) -> anyhow::Result<()>`.
        let source = std::fs::read_to_string(file).unwrap_or_default();
        let reduce = if source.contains("pub fn reduce(") {
            format!("Some({module}::reduce)")
        } else {
            "None".to_string()
        };
        writeln!(
            registry,
            "    genolens::experiment::Experiment {{ name: {name:?}, description: {module}::DESCRIPTION, run: {module}::run, reduce: {reduce} }},"
        )
        .unwrap();
    }
    registry.push_str("];\n");
    let out =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("experiments.rs");
    std::fs::write(out, code + &registry).expect("write experiments registry");
}
