//! Where does the promoter classifier read "promoter"? Each human-promoters test window (TSS at
//! base 200) is paired with the unused background window of the closest GC content, and the
//! fine-tuned mini-dnabert6-promoters runs on the background window with one activation taken
//! from the promoter window (layer sweep at resid_pre, attn_out, mlp_out and
//! normalized_resid_post; every token position of resid_pre; every head's z), every later layer
//! recomputed. Metric: the logit difference (promoter − background) and its fraction restored.
//! Null: each promoter patched into another pair's background window.
//!
//! Map: `patching.parquet`, `promoter_pairs.parquet` (the GC matching).
//! Reduce: `patching_by_layer.parquet`, `patching_by_position.parquet` (offsets from the TSS),
//! `patching_by_head.parquet`, figures, report.

use genolens::analysis::patching_study::reduce_patching;
use genolens::analysis::promoter_patching::{run_promoter_patching, PromoterPatching};
use genolens::experiment::{ExperimentContext, ReduceContext};

/// Shown by `genolens experiment --list`.
pub const DESCRIPTION: &str =
    "activation patching promoter -> GC-matched background on the promoter classifier: logit difference by layer, token (from the TSS) and head";

/// The map step.
pub fn run(context: &mut ExperimentContext) -> anyhow::Result<()> {
    run_promoter_patching(context, &PromoterPatching::default())
}

/// The reduce step.
pub fn reduce(context: &mut ReduceContext) -> anyhow::Result<()> {
    reduce_patching(context)
}
