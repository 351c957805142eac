//! Motifs the TF classifier reads, checked against JASPAR (seed 001's TF-MoDISco → TOMTOM step):
//! ISM and AttnLRP explain each of 300 test peaks per class of tf-oct4-mafk with
//! mini-dnabert6-tf; positive seqlets (tangermeme's recursive caller, p 0.01, 4–25 bp) are
//! clustered per method and class into PWMs/CWMs (≥ 20 seqlets, trimmed at 0.6 bits) and
//! compared with every JASPAR 2024 CORE vertebrate motif by TOMTOM (Pearson columns, both
//! strands, overlap ≥ 5; q over the database). Oct4 peaks should give POU/SOX-family motifs
//! (the octamer ATGCAAAT, Sox-Oct composite) and MafK peaks MAF-family MAREs (TGCTGAsTCAGCA).
//!
//! `--limit N` = N sequences per class. `--model`/`--data` run another classifier and table.
//!
//! Map: the attribution tables, `seqlets.parquet`, `motifs.parquet`, `motif_matches.parquet`,
//! `motif_columns.parquet`, `motifs.meme`. Reduce: logos beside the best match, report.

use genolens::analysis::motifs_study::{reduce_motifs, run_motifs, ExpectedFamily, MotifStudy};
use genolens::experiment::{ExperimentContext, ReduceContext};

/// Shown by `genolens experiment --list`.
pub const DESCRIPTION: &str =
    "motifs from ISM/AttnLRP seqlets of tf-oct4-mafk (mini-dnabert6-tf), matched to JASPAR vertebrates by TOMTOM";

/// The study: 300 test peaks per class; the report says whether the MAF family (class 0, MafK)
/// and the POU and SOX families (class 1, Oct4) were found, and where their sites are.
pub fn study() -> MotifStudy {
    let mut study = MotifStudy::new(
        genolens::defaults::TF_MODEL,
        concat!(env!("CARGO_MANIFEST_DIR"), "/data/tf-oct4-mafk.parquet"),
    );
    let family = |class: i64, family: &str, prefixes: &[&str], site: &str| ExpectedFamily {
        class,
        family: family.into(),
        name_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
        site: site.into(),
    };
    study.expected = vec![
        // The MARE half site (TGCTGAC of TGCTGAC(G)TCAGCA).
        family(0, "MAF", &["MAF", "NRL", "Bach", "NFE2"], "TGCTGA"),
        // The octamer and the SOX core of the Sox2–Oct4 composite.
        family(1, "POU", &["POU", "Pou"], "ATGCAAAT"),
        family(1, "SOX", &["SOX", "Sox", "Sry"], "ACAAAG"),
    ];
    study
}

/// The map step.
pub fn run(context: &mut ExperimentContext) -> anyhow::Result<()> {
    run_motifs(context, &study())
}

/// The reduce step.
pub fn reduce(context: &mut ReduceContext) -> anyhow::Result<()> {
    reduce_motifs(context)
}
