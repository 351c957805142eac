//! `genolens data variants`: a VCF or a GTEx-style QTL table plus a reference FASTA → Parquet of
//! REF/ALT windows centred on each SNV.

use std::path::{Path, PathBuf};

use crate::data::variants::{
    check_window, read_qtl_table, read_vcf, QtlLabelRule, ReferenceGenome, Variant,
};
use crate::error::Result;
use crate::report::{Provenance, TableWriter};

crate::table_row! {
    /// One SNV window: `sequence` = REF window, `alt_sequence` = ALT window; `pos` 0-based.
    pub struct VariantWindowRow {
        pub id: String,
        pub sequence: String,
        pub alt_sequence: String,
        pub label: Option<i64>,
        pub chrom: String,
        pub pos: i64,
        pub r#ref: String,
        pub alt: String,
        pub variant_offset: i64,
        pub source_line: i64,
    }
}

/// Where the variants come from.
#[derive(Debug, Clone)]
pub enum VariantSource {
    /// A VCF (no labels).
    Vcf(PathBuf),
    /// A QTL table with the label rule.
    Qtl(PathBuf, QtlLabelRule),
}

/// Writes the windows; returns (written, skipped non-SNV records). `length` must be ≥ 1 (the
/// window holds the variant at `length / 2`).
pub fn run_variant_windows(
    source: &VariantSource,
    reference: &Path,
    length: usize,
    out: &Path,
    seed: u64,
) -> Result<(usize, usize)> {
    check_window(length, length / 2)?;
    let (path, variants, skipped): (&Path, Vec<(Variant, Option<i64>)>, usize) = match source {
        VariantSource::Vcf(path) => {
            let (variants, skipped) = read_vcf(path)?;
            (
                path,
                variants.into_iter().map(|v| (v, None)).collect(),
                skipped,
            )
        }
        VariantSource::Qtl(path, rule) => {
            let (rows, skipped) = read_qtl_table(path, *rule)?;
            (
                path,
                rows.into_iter()
                    .map(|r| (r.variant, Some(r.label)))
                    .collect(),
                skipped,
            )
        }
    };
    let just_variants: Vec<Variant> = variants.iter().map(|(v, _)| v.clone()).collect();
    let genome = ReferenceGenome::read_for(reference, &just_variants)?;
    let offset = length / 2;
    let provenance = Provenance::current(seed)
        .with_data_file(path)?
        .with_data_file(reference)?;
    let mut writer = TableWriter::<VariantWindowRow>::create(out, &provenance)?;
    let mut seen = std::collections::HashMap::<&str, usize>::new();
    for (variant, label) in &variants {
        let window = genome.window(path, variant, length, offset)?;
        // Ids stay unique (sequence tables refuse repeats): a repeated id (one per ALT of a
        // multi-allelic site, one per gene of a QTL variant) gets `_2`, `_3`, … from its second
        // row on.
        let count = seen.entry(variant.id.as_str()).or_insert(0);
        *count += 1;
        let id = match *count {
            1 => variant.id.clone(),
            n => format!("{}_{n}", variant.id),
        };
        writer.write(&VariantWindowRow {
            id,
            sequence: window.reference_sequence,
            alt_sequence: window.alternative_sequence,
            label: *label,
            chrom: variant.chrom.clone(),
            pos: variant.pos,
            r#ref: variant.reference.clone(),
            alt: variant.alternative.clone(),
            variant_offset: offset as i64,
            source_line: variant.line as i64,
        })?;
    }
    let written = writer.finish()?;
    Ok((written, skipped))
}
