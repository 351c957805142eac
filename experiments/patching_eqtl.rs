//! Where does a variant's effect live? Activation patching between the REF (clean) and ALT
//! (corrupt) windows of the eqtl-proxy variants, with the pretrained mini-dnabert6 encoder and
//! its final [CLS] vector: layer sweep (resid_pre, attn_out, mlp_out, normalized_resid_post),
//! layer × position sweep of resid_pre around the variant, layer × head sweep of z, and a
//! random-pair null (REF of one variant, ALT of another). Every later layer is recomputed after
//! the patch, unlike seed 004's code, whose "final-layer bottleneck" came from swapping stored
//! hidden states without re-running the model.
//!
//! Map: `patching.parquet` (one row per pair × sweep × site × layer × position × head).
//! Reduce: `patching_by_layer.parquet`, `patching_by_position.parquet`,
//! `patching_by_head.parquet` (means with bootstrap 95 % CIs over pairs), figures and report.
//! The study itself is `genolens::analysis::patching_study`.

use genolens::analysis::patching_study::{reduce_patching, run_patching, PatchingStudy};
use genolens::experiment::{ExperimentContext, ReduceContext};

/// Shown by `genolens experiment --list`.
pub const DESCRIPTION: &str =
    "activation patching REF -> ALT of eqtl-proxy variants: layer, position and head sweeps with a random-pair null";

/// The map step.
pub fn run(context: &mut ExperimentContext) -> anyhow::Result<()> {
    run_patching(context, &PatchingStudy::default())
}

/// The reduce step.
pub fn reduce(context: &mut ReduceContext) -> anyhow::Result<()> {
    reduce_patching(context)
}
