//! The committed default models and dataset: what every command uses when `--model` / `--data`
//! is omitted, so a fresh clone runs real studies. Trained by `just train-defaults`; each model
//! folder's MODEL.md states its data, settings, machine and held-out results.

/// DNABERT-6 architecture, 6 layers × 128, 4 heads, MLM-pretrained on hg19 chr20 < 45 Mb.
pub const PRETRAINED_MODEL: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/data/models/mini-dnabert6");
/// [`PRETRAINED_MODEL`] fine-tuned on `human-promoters` (promoter vs GC-matched background).
pub const PROMOTER_MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/models/mini-dnabert6-promoters"
);
/// [`PRETRAINED_MODEL`] fine-tuned on `tf-oct4-mafk` (Oct4 vs MafK ChIP-seq peaks).
pub const TF_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/models/mini-dnabert6-tf");
/// [`PRETRAINED_MODEL`] fine-tuned on `fly-core-promoters` (fly core promoter −250..−1 vs
/// upstream background, where a TATA box sits near −30): the model of the head-ablation study.
pub const FLY_CORE_MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/models/mini-dnabert6-fly-core"
);
/// The model a command uses when `--model` is omitted.
pub const MODEL: &str = PROMOTER_MODEL;
/// The dataset a study uses when `--data` is omitted (its `test` split by default).
pub const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/human-promoters.parquet");
/// The split a study reads from a table with a `split` column when `--split` is omitted.
pub const SPLIT: &str = "test";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_committed() {
        for model in [PRETRAINED_MODEL, PROMOTER_MODEL, TF_MODEL] {
            for file in ["config.json", "vocab.txt", "model.safetensors", "MODEL.md"] {
                let path = std::path::Path::new(model).join(file);
                assert!(path.is_file(), "{} is missing", path.display());
            }
        }
        assert!(std::path::Path::new(DATA).is_file());
    }
}
