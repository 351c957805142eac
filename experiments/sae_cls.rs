//! What do sparse autoencoders find in a DNA LM's [CLS]? Seed 004 trained a ReLU SAE on the
//! final [CLS] of DNABERT-6 and found nothing clear; this asks the same of the committed models,
//! and whether the answer means something: on human-promoters (mini-dnabert6-promoters) and on
//! eqtl-proxy (the pretrained mini-dnabert6, contexts cropped around the variant), an SAE on
//! `hook_cls` trained on the train split (ReLU-L1, λ 0.2, 8 × d latents) and measured on the test
//! split: reconstruction, fidelity (classifier or MLM loss recovered), per-feature class tests
//! (Mann–Whitney, BH), top sequences and their JASPAR enrichment (Fisher, BH); a sparsity sweep
//! (ReLU-L1 λ 0.05–0.8, TopK k 4–32) for L0 vs explained variance; and linear probes by layer on
//! [CLS] and the k-mer mean (where the label becomes linearly decodable). Then a token-level SAE
//! on block 3's output (300 promoter windows per split): InterPLM's concept F1 of each feature
//! against the chr20 annotations (TSS, exons, CpG islands, repeats, CTCF peaks, TF sites, 20
//! JASPAR motifs' hits).
//!
//! `--limit N` = at most N sequences per split. `--model`/`--data` run one model and table.
//!
//! Map: `sae_*_<dataset>.parquet`, `probes_<dataset>.parquet`, `sae_<dataset>/` (SAELens
//! layout). Reduce: figures and report.

use genolens::analysis::sae::study::{reduce_sae, run_sae, SaeStudy};
use genolens::experiment::{ExperimentContext, ReduceContext};

/// The committed annotation tracks (for the token-level SAE's concept F1).
const ANNOTATIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/annotations-chr20");

/// Shown by `genolens experiment --list`.
pub const DESCRIPTION: &str =
    "SAEs on the final [CLS] of the promoter classifier and the pretrained model (human-promoters, eqtl-proxy): features, motifs, fidelity, sparsity sweep, probes by layer";

/// The map step.
pub fn run(context: &mut ExperimentContext) -> anyhow::Result<()> {
    let datasets: Vec<(&str, &str, &str)> = if context.overrides_model_or_data() {
        vec![(
            "custom",
            genolens::defaults::MODEL,
            genolens::defaults::DATA,
        )]
    } else {
        vec![
            (
                "human-promoters",
                genolens::defaults::PROMOTER_MODEL,
                genolens::defaults::DATA,
            ),
            (
                "eqtl-proxy",
                genolens::defaults::PRETRAINED_MODEL,
                genolens::analysis::patching_study::DEFAULT_DATA,
            ),
        ]
    };
    let mut names: Vec<&str> = datasets.iter().map(|d| d.0).collect();
    if !context.overrides_model_or_data() {
        names.push("human-promoters-tokens");
    }
    context.set_config("datasets", names);
    let custom = context.overrides_model_or_data();
    for (name, model, data) in datasets {
        let mut study = SaeStudy::new(model, data);
        study.name = Some(name.into());
        study.sweep = SaeStudy::default_sweep();
        study.probes = true;
        run_sae(context, &study)?;
    }
    if !custom {
        // Per-token features of a middle layer, scored against the chr20 annotations.
        let mut study = SaeStudy::new(genolens::defaults::PROMOTER_MODEL, genolens::defaults::DATA);
        study.name = Some("human-promoters-tokens".into());
        study.hook = "blocks.2.hook_resid_post".into();
        study.rows = genolens::analysis::sae::cache::RowKind::Tokens;
        study.annotations = Some(ANNOTATIONS.into());
        study.default_limit = Some(300);
        study.train.batch_size = 256;
        study.train.epochs = 10;
        study.motifs = None;
        study.attribution_features = 0;
        run_sae(context, &study)?;
    }
    Ok(())
}

/// The reduce step.
pub fn reduce(context: &mut ReduceContext) -> anyhow::Result<()> {
    reduce_sae(context)
}
