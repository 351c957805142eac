//! `genolens data scan`: FIMO-style motif hits of a MEME file over a sequence file, to Parquet.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::data::{open_sequences, Example, TableColumns};
use crate::error::{GenolensError, Result};
use crate::motif::{letter_codes, read_meme, MotifScanner, ScanOptions};
use crate::report::{Provenance, TableWriter};

crate::table_row! {
    /// One motif hit (0-based half-open on the given sequence; `-` = reverse complement read).
    pub struct MotifHitRow {
        pub sequence_id: String,
        pub motif_id: String,
        pub motif_name: String,
        pub start: i64,
        pub end: i64,
        pub strand: String,
        pub score: f64,
        pub p_value: f64,
    }
}

/// What to scan.
#[derive(Debug, Clone)]
pub struct ScanSettings {
    /// MEME motif file.
    pub motifs: PathBuf,
    /// Sequences (FASTA, CSV, TSV or Parquet).
    pub sequences: PathBuf,
    /// Output Parquet file.
    pub out: PathBuf,
    /// Scan options.
    pub options: ScanOptions,
    /// Seed recorded in the provenance (the scan itself is deterministic).
    pub seed: u64,
}

/// Scans every sequence with every motif; returns (sequences, hits). The p-value threshold must
/// lie strictly between 0 and 1 (at 1 every window is a hit, at 0 none is).
pub fn run_scan(settings: &ScanSettings) -> Result<(usize, usize)> {
    let p = settings.options.p_threshold;
    if !(p > 0.0 && p < 1.0) {
        return Err(GenolensError::argument(
            format!("--p-threshold {p}"),
            "must be strictly between 0 and 1, such as 1e-4",
        ));
    }
    let scanner = MotifScanner::new(read_meme(&settings.motifs)?, settings.options);
    let provenance = Provenance::current(settings.seed)
        .with_data_file(&settings.motifs)?
        .with_data_file(&settings.sequences)?;
    let mut writer = TableWriter::<MotifHitRow>::create(&settings.out, &provenance)?;
    let (mut sequences, mut hits) = (0usize, 0usize);
    let mut chunk: Vec<Example> = Vec::new();
    let mut stream = open_sequences(&settings.sequences, &TableColumns::default())?.peekable();
    let progress = crate::progress::spinner("scanning");
    while stream.peek().is_some() {
        chunk.clear();
        for example in stream.by_ref().take(256) {
            chunk.push(example?);
        }
        let rows: Vec<Vec<MotifHitRow>> = chunk.par_iter().map(|e| hit_rows(&scanner, e)).collect();
        for row in rows.iter().flatten() {
            writer.write(row)?;
            hits += 1;
        }
        sequences += chunk.len();
        progress.set_message(format!("{sequences} sequences, {hits} hits"));
    }
    progress.finish_and_clear();
    writer.finish()?;
    Ok((sequences, hits))
}

fn hit_rows(scanner: &MotifScanner, example: &Example) -> Vec<MotifHitRow> {
    scanner
        .scan(&letter_codes(example.sequence.as_bytes()))
        .into_iter()
        .map(|hit| {
            let motif = &scanner.motifs()[hit.motif];
            MotifHitRow {
                sequence_id: example.id.clone(),
                motif_id: motif.id.clone(),
                motif_name: motif.name.clone(),
                start: hit.start as i64,
                end: hit.end as i64,
                strand: hit.strand.symbol().into(),
                score: hit.score,
                p_value: hit.p_value,
            }
        })
        .collect()
}

/// Default output: reports/motif-scan/<sequence file stem>.parquet.
pub fn default_scan_out(sequences: &Path) -> PathBuf {
    let stem = sequences
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.split('.').next().unwrap_or(n).to_string())
        .unwrap_or_else(|| "sequences".into());
    PathBuf::from("reports/motif-scan").join(format!("{stem}.parquet"))
}
