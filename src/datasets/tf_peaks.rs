//! `tf-oct4-mafk`: Oct4 vs MafK ChIP-seq peak sequences (200 bp, hg19) from janggu's examples.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::data::fasta::FastaReader;
use crate::datasets::baseline::classification_summary;
use crate::datasets::genome::{is_acgt, Chromosome};
use crate::datasets::motif_panel::{fraction_with_hit, jaspar, select};
use crate::datasets::rows::{write_rows, SequenceRow};
use crate::datasets::{Built, RawInputs, JASPAR_FILES};
use crate::error::{GenolensError, Result};
use crate::motif::{MotifScanner, ScanOptions};

/// Dataset name.
pub const NAME: &str = "tf-oct4-mafk";
/// Held-out chromosomes.
pub const TEST_CHROMS: [&str; 3] = ["chr1", "chr8", "chr9"];
/// Validation chromosome.
pub const VALID_CHROMS: [&str; 1] = ["chr2"];

/// Split of a peak by chromosome.
pub fn split_by_chrom(chrom: &str) -> &'static str {
    if TEST_CHROMS.contains(&chrom) {
        "test"
    } else if VALID_CHROMS.contains(&chrom) {
        "valid"
    } else {
        "train"
    }
}

/// `chr1:15710957-15711157` → (chrom, start, end), 0-based half-open as janggu writes them.
fn parse_region(path: &Path, id: &str) -> Result<(String, i64, i64)> {
    let bad = || GenolensError::Data {
        path: path.to_path_buf(),
        line: 0,
        message: format!("record {id:?}: expected a header like chr1:15710957-15711157"),
    };
    let (chrom, range) = id.split_once(':').ok_or_else(bad)?;
    let (start, end) = range.split_once('-').ok_or_else(bad)?;
    Ok((
        chrom.to_string(),
        start.parse().map_err(|_| bad())?,
        end.parse().map_err(|_| bad())?,
    ))
}

/// Builds `out/tf-oct4-mafk.parquet`.
pub fn build(chr20: &Chromosome, raw: &RawInputs, out: &Path) -> Result<Built> {
    let classes = [
        ("janggu_oct4_peaks.fa", 1i64, "Oct4"),
        ("janggu_mafk_peaks.fa", 0i64, "MafK"),
    ];
    // (chrom, start, end) → rows; a region listed in both classes is ambiguous and dropped.
    let mut by_region: BTreeMap<(String, i64, i64), Vec<SequenceRow>> = BTreeMap::new();
    let mut with_n = 0usize;
    for (file, label, class) in classes {
        let path = raw.path(file);
        for record in FastaReader::open(&path)? {
            let record = record?;
            let (chrom, start, end) = parse_region(&path, &record.id)?;
            let sequence = record.sequence.to_ascii_uppercase();
            if !is_acgt(sequence.as_bytes()) {
                with_n += 1;
                continue;
            }
            by_region
                .entry((chrom.clone(), start, end))
                .or_default()
                .push(SequenceRow {
                    id: format!("{class}|{chrom}:{start}-{end}"),
                    sequence,
                    label,
                    label_name: class.into(),
                    split: split_by_chrom(&chrom).into(),
                    chrom,
                    start,
                    end,
                    strand: "+".into(),
                });
        }
    }
    let mut rows = Vec::new();
    let mut ambiguous = 0usize;
    for (_, mut group) in by_region {
        let labels: BTreeSet<i64> = group.iter().map(|r| r.label).collect();
        if labels.len() > 1 {
            ambiguous += group.len();
            continue;
        }
        // Exact duplicates within a class are one peak.
        group.truncate(1);
        rows.extend(group);
    }
    // The chr20 records are checked against the vt-examples chr20, as a test of the coordinates.
    let on_chr20: Vec<&SequenceRow> = rows.iter().filter(|r| r.chrom == "chr20").collect();
    let matching = on_chr20
        .iter()
        .filter(|r| chr20.slice(r.start, r.end) == Some(r.sequence.as_bytes()))
        .count();
    // Motif grounding: how often each factor's own JASPAR motif occurs in each class.
    let vertebrates = out.join(JASPAR_FILES[0]);
    let panel = select(
        &jaspar(out, JASPAR_FILES[0])?,
        &["Pou5f1::Sox2", "MAFK"],
        &vertebrates,
    )?;
    let panel_ids: Vec<String> = panel
        .iter()
        .map(|m| format!("{} {}", m.id, m.name))
        .collect();
    let scanner = MotifScanner::new(panel, ScanOptions::default());
    let of_class = |label: i64| {
        rows.iter()
            .filter(move |r| r.label == label)
            .map(|r| r.sequence.as_str())
    };
    let grounding: Vec<String> = (0..2)
        .map(|m| {
            format!(
                "{} hits {:.1} % of Oct4 vs {:.1} % of MafK peaks",
                panel_ids[m],
                100.0 * fraction_with_hit(&scanner, m, of_class(1)),
                100.0 * fraction_with_hit(&scanner, m, of_class(0))
            )
        })
        .collect();
    let path = out.join(format!("{NAME}.parquet"));
    let provenance = raw.provenance(0, &["janggu_oct4_peaks.fa", "janggu_mafk_peaks.fa"])?;
    write_rows(&path, &rows, &provenance)?;
    let text = format!(
        "Oct4 (label 1) vs MafK (label 0) ChIP-seq peaks, human hg19, 200 bp each: janggu 0.10.2's \
         `resources/sample.fa` (Oct4) and `sample2.fa` (MafK), headers `chrom:start-end` (0-based \
         half-open). Sequences are upper-cased; {with_n} records with N dropped, {ambiguous} records \
         whose exact region appears in both classes dropped, duplicates within a class kept once. \
         Coordinates checked: {matching} of the {} chr20 peaks equal hg19 chr20 from vt-examples \
         base for base. Split by chromosome: test = {}, valid = {}, train = the rest. Motif \
         grounding (genolens scan, JASPAR 2024, p < 1e-4, both strands): {}.\n\n{}",
        on_chr20.len(),
        TEST_CHROMS.join(", "),
        VALID_CHROMS.join(", "),
        grounding.join("; "),
        classification_summary(&rows)?
    );
    Ok(Built::table(NAME, rows.len(), text))
}
