//! Seed 000's mutagenesis faithfulness (its Table 1 layout) and seed 001's MIF/LIF curves on two
//! datasets with their default classifiers: human-promoters (mini-dnabert6-promoters) and
//! tf-oct4-mafk (mini-dnabert6-tf). Every attribution method explains each test sequence's own
//! class; then per method the top n nucleotides (1, 5, 10, 15, 20, all) are replaced by a random
//! other base and the accuracy per class is measured, against n random positions (20 repeats,
//! t 95 % CI); and the most/least important 1–50 % are replaced by N, a random base or the
//! complement (drop of the class's probability, AOPC). Explanation metrics (Gini, entropy,
//! continuous Jaccard between methods) at token and nucleotide level.
//!
//! `--limit N` = N sequences per class (default 100 here; seed 000 used 500: `--limit 500`
//! takes about five times as long). `--model`/`--data` run the user's classifier and table
//! alone (dataset `custom`).
//!
//! Map: the attribution tables (suffixed `_promoters`, `_tf`), `faithfulness.parquet`,
//! `explain_metrics.parquet`. Reduce: `faithfulness_summary.parquet` (Table 1),
//! `aopc.parquet`, figures, report.

use genolens::analysis::faithfulness_study::{
    reduce_faithfulness, run_faithfulness, FaithfulnessDataset, FaithfulnessStudy,
};
use genolens::experiment::{ExperimentContext, ReduceContext};

/// Shown by `genolens experiment --list`.
pub const DESCRIPTION: &str =
    "mutagenesis faithfulness of every attribution method (seed 000 Table 1, seed 001 MIF/LIF, AOPC, Gini/entropy) on human-promoters and tf-oct4-mafk";

/// The study: both datasets, 100 sequences per class.
pub fn study() -> FaithfulnessStudy {
    let mut study = FaithfulnessStudy::new(vec![
        FaithfulnessDataset {
            name: "promoters".into(),
            model: genolens::defaults::PROMOTER_MODEL.into(),
            data: genolens::defaults::DATA.into(),
        },
        FaithfulnessDataset {
            name: "tf".into(),
            model: genolens::defaults::TF_MODEL.into(),
            data: concat!(env!("CARGO_MANIFEST_DIR"), "/data/tf-oct4-mafk.parquet").into(),
        },
    ]);
    study.per_class = 100;
    study
}

/// The map step.
pub fn run(context: &mut ExperimentContext) -> anyhow::Result<()> {
    run_faithfulness(context, &study())
}

/// The reduce step.
pub fn reduce(context: &mut ReduceContext) -> anyhow::Result<()> {
    reduce_faithfulness(context)
}
