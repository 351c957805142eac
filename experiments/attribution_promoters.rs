//! Every attribution method on 100 human-promoters test promoters (label 1) with the fine-tuned
//! mini-dnabert6-promoters, explaining the promoter logit: gradient × input, integrated
//! gradients, ISM, DNABERT's attention score, rollout, GradCAM, Chefer LRP (lrp, lrp_last,
//! full_lrp), AttnLRP and CP-LRP, with conservation checks and logos of the most confident
//! windows. `--limit N` changes the count, `--model`/`--data` the classifier and table.
//!
//! Map: `token_attributions.parquet`, `nucleotide_attributions.parquet`,
//! `attribution_checks.parquet`. Reduce: per-method checks, logos, report.

use genolens::analysis::attribution_study::{
    reduce_attribution, run_attribution, AttributionStudy,
};
use genolens::experiment::{ExperimentContext, ReduceContext};

/// Shown by `genolens experiment --list`.
pub const DESCRIPTION: &str =
    "every attribution method on 100 human promoters (promoter logit): token and nucleotide tables, conservation checks, logos";

/// The map step.
pub fn run(context: &mut ExperimentContext) -> anyhow::Result<()> {
    let mut study = AttributionStudy::new(genolens::defaults::MODEL, genolens::defaults::DATA);
    study.only_label = Some("1".into());
    study.target = Some(1);
    study.default_sequences = Some(100);
    run_attribution(context, &study)
}

/// The reduce step.
pub fn reduce(context: &mut ReduceContext) -> anyhow::Result<()> {
    reduce_attribution(context)
}
