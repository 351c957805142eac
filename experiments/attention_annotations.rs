//! Which attention heads track annotated biology? Seed 003 done right: the fine-tuned promoter
//! classifier on the human-promoters test windows, each token's received attention (max and
//! mean over queries, and the [CLS] row) correlated (Spearman, tokens of all sequences pooled,
//! and per class) with the chr20 annotations (TSS, exons, CpG islands, repeats, CTCF peaks, TF
//! sites, JASPAR hits), the TATA-box k-mer, GC and position, against a null that shuffles
//! 10-token blocks within each sequence (100 permutations, seeded); z, empirical p, BH q.
//! Also every head statistic and the promoter vs background tests.
//!
//! Map: `head_stats.parquet`, `head_annotation.parquet`. Reduce: `head_tests.parquet`,
//! `head_summaries.parquet`, figures (head × feature z heatmap) and report.

use genolens::analysis::attention_study::{reduce_attention, run_attention, AttentionStudy};
use genolens::experiment::{ExperimentContext, ReduceContext};

/// Shown by `genolens experiment --list`.
pub const DESCRIPTION: &str =
    "attention vs chr20 annotations on human promoters: Spearman per head and feature, block-permutation null";

/// The committed annotation tracks.
const ANNOTATIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/annotations-chr20");

/// The map step.
pub fn run(context: &mut ExperimentContext) -> anyhow::Result<()> {
    run_attention(
        context,
        &AttentionStudy {
            default_model: genolens::defaults::PROMOTER_MODEL.into(),
            default_data: genolens::defaults::DATA.into(),
            annotations: Some(ANNOTATIONS.into()),
            ..AttentionStudy::default()
        },
    )
}

/// The reduce step.
pub fn reduce(context: &mut ReduceContext) -> anyhow::Result<()> {
    reduce_attention(context)
}
