//! Clean/corrupt pairs for patching from a variant table: `id`, `sequence` (clean = REF) and
//! `alt_sequence` (corrupt = ALT), the layout of data/eqtl-proxy.parquet and of
//! `genolens data variants`. Pairs longer than the model's window are cropped to a window around
//! the variant (never away from it), and the crop is recorded.

use std::ops::Range;
use std::path::Path;

use crate::error::{GenolensError, Result};
use crate::report::ParquetTable;
use crate::tokenize::{covering_token_positions, crop_window};

/// One REF/ALT pair, cropped to the model's window.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantPair {
    /// The row's id.
    pub id: String,
    /// REF window (the clean run).
    pub clean: String,
    /// ALT window (the corrupt run).
    pub corrupt: String,
    /// The variant's 0-based offset in the (cropped) windows.
    pub variant_offset: usize,
    /// Where the cropped window starts in the table's sequence (0 when not cropped).
    pub crop_start: usize,
    /// The table's `label`, when it has one.
    pub label: Option<i64>,
    /// The table's `split`, when it has one.
    pub split: Option<String>,
}

impl VariantPair {
    /// Model positions ([CLS] = 0) of the tokens covering the variant, for k-mers of size `k`.
    pub fn covering_tokens(&self, k: usize) -> Range<usize> {
        covering_token_positions(self.variant_offset, self.clean.len(), k)
    }
}

/// Reads the pairs of a Parquet variant table, cropping each to at most `max_nt` nucleotides
/// around its variant. The variant is the table's `variant_offset` when present (checked against
/// where REF and ALT differ), else the first base where they differ. Errors name the file and
/// row: REF and ALT of different lengths, identical REF and ALT, an offset where they agree.
pub fn read_variant_pairs(path: &Path, max_nt: usize) -> Result<Vec<VariantPair>> {
    let table = ParquetTable::read(path)?;
    let columns = table.column_names();
    let has = |name: &str| columns.iter().any(|c| c == name);
    for required in ["id", "sequence", "alt_sequence"] {
        if !has(required) {
            return Err(GenolensError::Data {
                path: path.to_path_buf(),
                line: 0,
                message: format!(
                    "no column {required:?}: a patching table needs id, sequence (REF, the clean \
                     run) and alt_sequence (ALT, the corrupt run); it has {}",
                    columns.join(", ")
                ),
            });
        }
    }
    let ids = table.strings("id")?;
    let clean = table.strings("sequence")?;
    let corrupt = table.strings("alt_sequence")?;
    let offsets = if has("variant_offset") {
        Some(table.integers("variant_offset")?)
    } else {
        None
    };
    let labels = if has("label") {
        Some(table.integers("label")?)
    } else {
        None
    };
    let splits = if has("split") {
        Some(table.strings("split")?)
    } else {
        None
    };
    let mut pairs = Vec::with_capacity(ids.len());
    for row in 0..ids.len() {
        let bad = |message: String| GenolensError::Data {
            path: path.to_path_buf(),
            line: row + 1,
            message: format!("row {} (id {}): {message}", row + 1, ids[row]),
        };
        let (reference, alternative) = (clean[row].as_bytes(), corrupt[row].as_bytes());
        if reference.len() != alternative.len() {
            return Err(bad(format!(
                "REF and ALT windows differ in length ({} vs {} nt); patching needs the same \
                 token count, so only SNVs (or equal-length substitutions) can be paired",
                reference.len(),
                alternative.len()
            )));
        }
        let first_difference = reference
            .iter()
            .zip(alternative)
            .position(|(a, b)| !a.eq_ignore_ascii_case(b))
            .ok_or_else(|| bad("REF and ALT windows are identical".into()))?;
        let offset = match &offsets {
            Some(offsets) => {
                let offset = offsets[row];
                let valid = usize::try_from(offset)
                    .ok()
                    .filter(|&o| o < reference.len())
                    .filter(|&o| !reference[o].eq_ignore_ascii_case(&alternative[o]));
                valid.ok_or_else(|| {
                    bad(format!(
                        "variant_offset {offset} is not where REF and ALT differ (first \
                         difference at {first_difference})"
                    ))
                })?
            }
            None => first_difference,
        };
        let window = crop_window(offset, reference.len(), max_nt);
        pairs.push(VariantPair {
            id: ids[row].clone(),
            clean: clean[row][window.clone()].to_string(),
            corrupt: corrupt[row][window.clone()].to_string(),
            variant_offset: offset - window.start,
            crop_start: window.start,
            label: labels.as_ref().map(|l| l[row]),
            split: splits.as_ref().map(|s| s[row].clone()),
        });
    }
    Ok(pairs)
}

/// Which token positions a position sweep patches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positions {
    /// The tokens covering the variant and `W` tokens on each side, plus [CLS] and [SEP].
    Window(usize),
    /// Every token.
    All,
}

impl std::str::FromStr for Positions {
    type Err = GenolensError;

    fn from_str(text: &str) -> Result<Self> {
        if text == "all" {
            return Ok(Positions::All);
        }
        text.strip_prefix("window:")
            .and_then(|w| w.parse().ok())
            .map(Positions::Window)
            .ok_or_else(|| {
                GenolensError::argument(
                    format!("--positions {text}"),
                    "expected window:W (W tokens each side of the variant's tokens) or all",
                )
            })
    }
}

impl std::fmt::Display for Positions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Positions::Window(w) => write!(f, "window:{w}"),
            Positions::All => f.write_str("all"),
        }
    }
}

impl Positions {
    /// The positions to patch in a sequence of `tokens` tokens ([CLS] and [SEP] included) whose
    /// variant is covered by `covering`; ascending, [CLS] first and [SEP] last.
    pub fn select(self, tokens: usize, covering: Range<usize>) -> Vec<usize> {
        match self {
            Positions::All => (0..tokens).collect(),
            Positions::Window(w) => {
                let first = covering.start.saturating_sub(w).max(1);
                let last = (covering.end - 1 + w).min(tokens - 2);
                std::iter::once(0)
                    .chain(first..=last)
                    .chain(std::iter::once(tokens - 1))
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Provenance;

    crate::table_row! {
        struct Row {
            id: String,
            sequence: String,
            alt_sequence: String,
            variant_offset: i64,
        }
    }

    fn write(rows: &[(&str, &str, &str, i64)]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pairs.parquet");
        let mut writer =
            crate::report::TableWriter::<Row>::create(&path, &Provenance::current(0)).unwrap();
        for (id, r, a, o) in rows {
            writer
                .write(&Row {
                    id: id.to_string(),
                    sequence: r.to_string(),
                    alt_sequence: a.to_string(),
                    variant_offset: *o,
                })
                .unwrap();
        }
        writer.finish().unwrap();
        (dir, path)
    }

    #[test]
    fn pairs_are_cropped_around_the_variant_and_bad_rows_named() {
        let reference = "ACGT".repeat(10);
        let mut alternative = reference.clone().into_bytes();
        alternative[33] = b'A';
        let alternative = String::from_utf8(alternative).unwrap();
        let (_dir, path) = write(&[("v1", &reference, &alternative, 33)]);
        let pairs = read_variant_pairs(&path, 20).unwrap();
        assert_eq!(pairs[0].clean.len(), 20);
        assert_eq!(pairs[0].crop_start, 20);
        assert_eq!(pairs[0].variant_offset, 13);
        assert_eq!(
            pairs[0].clean.as_bytes()[13],
            reference.as_bytes()[33],
            "the variant stays in the window"
        );
        assert_ne!(pairs[0].clean, pairs[0].corrupt);

        for (rows, expected) in [
            (
                vec![("same", reference.as_str(), reference.as_str(), 3)],
                "identical",
            ),
            (vec![("short", "ACGTA", "ACGT", 1)], "differ in length"),
            (
                vec![("off", reference.as_str(), alternative.as_str(), 5)],
                "variant_offset 5",
            ),
        ] {
            let (_dir, path) = write(&rows);
            let error = read_variant_pairs(&path, 100).unwrap_err().to_string();
            assert!(
                error.contains(expected) && error.contains("row 1"),
                "{error}"
            );
        }
    }

    #[test]
    fn a_position_window_holds_the_variant_tokens_the_flanks_and_the_specials() {
        let positions = Positions::Window(2).select(30, 10..16);
        assert_eq!(positions, vec![0, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 29]);
        let edge = Positions::Window(10).select(12, 1..4);
        assert_eq!(edge, (0..12).collect::<Vec<_>>());
        assert_eq!(Positions::All.select(5, 1..2), vec![0, 1, 2, 3, 4]);
        assert_eq!(
            "window:10".parse::<Positions>().unwrap(),
            Positions::Window(10)
        );
        assert!("window:x".parse::<Positions>().is_err());
    }
}
