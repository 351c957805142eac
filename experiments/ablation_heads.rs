//! Which attention heads does a TATA-promoter classifier need? Seed 003 ablated DNABERT's "TATA
//! heads" by zeroing a slice of the residual stream after the output projection; here each head's
//! z = A·V is zeroed before W_O, on `mini-dnabert6-fly-core` (fly core promoters −250..−1, where a
//! TATA box sits near −30, vs upstream background). Heads are ranked by their importance on the
//! valid split (drop in the true-class logit when ablated alone); the top p % (5..50 %) are
//! ablated together on the test split and compared with a layer-matched control set and 20 random
//! sets.
//!
//! Map: `head_importance.parquet`, `set_ablation.parquet`.
//! Reduce: `set_ablation_summary.parquet`, ablation curves, importance heatmaps, report.
//! The study itself is `genolens::analysis::ablation_study`.

use genolens::analysis::ablation_study::{reduce_ablation, run_ablation, AblationStudy};
use genolens::experiment::{ExperimentContext, ReduceContext};

/// Shown by `genolens experiment --list`.
pub const DESCRIPTION: &str =
    "head ablation on the fly core-promoter classifier: per-head importance, top p % vs layer-matched control vs random sets";

/// The map step.
pub fn run(context: &mut ExperimentContext) -> anyhow::Result<()> {
    run_ablation(context, &AblationStudy::default())
}

/// The reduce step.
pub fn reduce(context: &mut ReduceContext) -> anyhow::Result<()> {
    reduce_ablation(context)
}
