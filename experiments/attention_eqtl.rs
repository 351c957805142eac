//! Which attention heads treat functional-proxy variants differently from matched background
//! SNVs? Seed 004 §2.2 done right: the pretrained mini-dnabert6 encoder on the eqtl-proxy REF
//! windows (256 bp around the variant, the window the model was pretrained on), per sequence ×
//! layer × head the [CLS] entropy, mean row entropy, max and variance of the [CLS] row,
//! [CLS]→variant attention over the tokens that really cover the variant (overlapping 6-mers:
//! six tokens, not seed 004's `1 + bp // 6`), special-token mass; classes compared per head with
//! Welch and Student t, Cohen's d, Hedges' g, Mann–Whitney U and BH q over heads; [CLS]
//! profiles around the variant per class with bootstrap CIs.
//!
//! Map: `head_stats.parquet`, `cls_variant_profile.parquet` (shardable). Reduce:
//! `head_tests.parquet`, `variant_profiles.parquet`, `head_summaries.parquet`, figures and
//! report. The study is `genolens::analysis::attention_study`.

use genolens::analysis::attention_study::{reduce_attention, run_attention, AttentionStudy};
use genolens::experiment::{ExperimentContext, ReduceContext};

/// Shown by `genolens experiment --list`.
pub const DESCRIPTION: &str =
    "attention-head statistics of eqtl-proxy variants: entropy, [CLS]->variant attention, class tests, profiles";

/// The map step.
pub fn run(context: &mut ExperimentContext) -> anyhow::Result<()> {
    run_attention(
        context,
        &AttentionStudy {
            default_model: genolens::defaults::PRETRAINED_MODEL.into(),
            default_data: genolens::analysis::patching_study::DEFAULT_DATA.into(),
            // Seed 004 §2.2 has no annotation correlation; without it the study can be sharded.
            correlate: false,
            // The window mini-dnabert6 was pretrained on (256 bp): positions past it were never
            // trained, and its [CLS] keeps attending where [SEP] stood in training.
            context_nt: 256,
            ..AttentionStudy::default()
        },
    )
}

/// The reduce step.
pub fn reduce(context: &mut ReduceContext) -> anyhow::Result<()> {
    reduce_attention(context)
}
