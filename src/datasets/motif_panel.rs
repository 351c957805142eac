//! The JASPAR matrices dataset building scans with, picked by TF name.

use std::path::Path;

use crate::error::{GenolensError, Result};
use crate::motif::{letter_codes, read_meme, Motif, MotifScanner};

/// Reads a committed JASPAR export (`data/jaspar/…`).
pub fn jaspar(out: &Path, file: &str) -> Result<Vec<Motif>> {
    read_meme(&out.join(file))
}

/// The motifs named `names` (matched case-insensitively on the MEME alternate name), in that order.
pub fn select(motifs: &[Motif], names: &[&str], source: &Path) -> Result<Vec<Motif>> {
    names
        .iter()
        .map(|name| {
            motifs
                .iter()
                .find(|m| m.name.eq_ignore_ascii_case(name))
                .cloned()
                .ok_or_else(|| GenolensError::Data {
                    path: source.to_path_buf(),
                    line: 0,
                    message: format!("no motif named {name:?}"),
                })
        })
        .collect()
}

/// Fraction of sequences with at least one hit of scanner motif `motif` (either strand).
pub fn fraction_with_hit<'a>(
    scanner: &MotifScanner,
    motif: usize,
    sequences: impl IntoIterator<Item = &'a str>,
) -> f64 {
    let (mut with_hit, mut total) = (0usize, 0usize);
    for sequence in sequences {
        total += 1;
        if !scanner
            .scan_motif(motif, &letter_codes(sequence.as_bytes()))
            .is_empty()
        {
            with_hit += 1;
        }
    }
    with_hit as f64 / total.max(1) as f64
}
