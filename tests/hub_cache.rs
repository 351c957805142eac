//! Hub ids resolve from the local hf-hub cache (HF_HOME) with no network, and offline misses are clear.
//! One test in its own binary: it sets process environment variables.

mod common;

use genolens::model::{load, HeadKind, LoadOptions};

#[test]
fn hub_ids_resolve_from_the_local_cache_offline() {
    let home = tempfile::tempdir().unwrap();
    let repo = home.path().join("hub/models--genolens-test--tiny-mlm-k3");
    let revision = "0123456789abcdef0123456789abcdef01234567";
    let snapshot = repo.join("snapshots").join(revision);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), revision).unwrap();
    for file in ["config.json", "vocab.txt", "model.safetensors"] {
        std::fs::copy(
            common::fixture_model("tiny-mlm-k3").join(file),
            snapshot.join(file),
        )
        .unwrap();
    }
    // DNABERT-2 and the NT as their hub repositories ship them (tokenizer.json and a zip .bin;
    // vocab.txt and safetensors).
    let families =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/families");
    for (repo_name, fixture) in [
        ("models--zhihan1996--DNABERT-2-117M", "dnabert2-mlm"),
        (
            "models--InstaDeepAI--nucleotide-transformer-v2-50m-multi-species",
            "nt-v2-mlm",
        ),
    ] {
        let repo = home.path().join("hub").join(repo_name);
        let snapshot = repo.join("snapshots").join(revision);
        std::fs::create_dir_all(&snapshot).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), revision).unwrap();
        for entry in std::fs::read_dir(families.join(fixture)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), snapshot.join(entry.file_name())).unwrap();
        }
    }
    std::env::set_var("HF_HOME", home.path());
    std::env::set_var("HF_HUB_OFFLINE", "1");
    for (id, architecture) in [
        (
            "zhihan1996/DNABERT-2-117M",
            genolens::model::Architecture::MosaicBert,
        ),
        (
            "InstaDeepAI/nucleotide-transformer-v2-50m-multi-species",
            genolens::model::Architecture::Esm,
        ),
    ] {
        let loaded = load(id, &LoadOptions::default()).unwrap();
        assert_eq!(loaded.model.config().architecture, architecture, "{id}");
        assert_eq!(loaded.model.head_kind(), HeadKind::MaskedLm, "{id}");
        assert_eq!(loaded.source.id, id);
    }

    let loaded = load("genolens-test/tiny-mlm-k3", &LoadOptions::default()).unwrap();
    assert_eq!(loaded.model.head_kind(), HeadKind::MaskedLm);
    assert_eq!(loaded.source.dir, snapshot);
    assert_eq!(loaded.source.id, "genolens-test/tiny-mlm-k3");

    let error = load("genolens-test/absent", &LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("not in the local Hugging Face cache") && error.contains("HF_HUB_OFFLINE"),
        "{error}"
    );
}
