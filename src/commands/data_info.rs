//! `genolens data info FILE`: what is in a sequence file, before a study runs on it.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use crate::data::{open_sequences, table::column_names, TableColumns};
use crate::error::Result;

/// Counts over one sequence file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataSummary {
    /// Records read.
    pub records: usize,
    /// Sequence lengths, sorted.
    pub lengths: Vec<usize>,
    /// Bases that are A/C/G/T in either case.
    pub acgt: usize,
    /// G or C.
    pub gc: usize,
    /// N or n.
    pub n: usize,
    /// Other letters (IUPAC ambiguity codes and anything else).
    pub other: usize,
    /// Lower-case letters (soft-masked repeats in many genomes).
    pub lowercase: usize,
    /// Records containing at least one non-ACGT base.
    pub records_with_ambiguous: usize,
    /// Records per label (when the file has a label column).
    pub labels: BTreeMap<String, usize>,
    /// Records per split × label (when the file has a `split` column).
    pub splits: BTreeMap<(String, String), usize>,
    /// Class name of each label (when the file has a `label_name` column, as genolens datasets do).
    pub label_names: BTreeMap<String, String>,
}

/// Reads every record of `path` (FASTA, CSV, TSV or Parquet). The label column is `label_column`
/// or, for tables that have one, `label`.
pub fn summarise(path: &Path, label_column: Option<&str>) -> Result<DataSummary> {
    let names = column_names(path)?.unwrap_or_default();
    let label = label_column.map(str::to_string).or_else(|| {
        names
            .iter()
            .any(|n| n == "label")
            .then(|| "label".to_string())
    });
    let columns = TableColumns {
        label: label.clone(),
        ..Default::default()
    };
    let mut summary = DataSummary::default();
    let mut labels_in_order = Vec::new();
    for example in open_sequences(path, &columns)? {
        let example = example?;
        summary.records += 1;
        summary.lengths.push(example.sequence.len());
        let mut ambiguous = false;
        for b in example.sequence.bytes() {
            if b.is_ascii_lowercase() {
                summary.lowercase += 1;
            }
            match b.to_ascii_uppercase() {
                b'A' | b'T' => summary.acgt += 1,
                b'C' | b'G' => {
                    summary.acgt += 1;
                    summary.gc += 1;
                }
                b'N' => {
                    summary.n += 1;
                    ambiguous = true;
                }
                _ => {
                    summary.other += 1;
                    ambiguous = true;
                }
            }
        }
        summary.records_with_ambiguous += ambiguous as usize;
        if let Some(label) = example.label {
            *summary.labels.entry(label.clone()).or_default() += 1;
            labels_in_order.push(label);
        }
    }
    summary.lengths.sort_unstable();
    let column_pass = |column: &str| -> Result<Vec<String>> {
        let columns = TableColumns {
            label: Some(column.into()),
            ..Default::default()
        };
        open_sequences(path, &columns)?
            .map(|e| e.map(|e| e.label.unwrap_or_default()))
            .collect()
    };
    if names.iter().any(|n| n == "label_name") && !labels_in_order.is_empty() {
        for (label, name) in labels_in_order.iter().zip(column_pass("label_name")?) {
            summary.label_names.entry(label.clone()).or_insert(name);
        }
    }
    if names.iter().any(|n| n == "split") {
        for (index, split) in column_pass("split")?.into_iter().enumerate() {
            let label = labels_in_order.get(index).cloned().unwrap_or_default();
            *summary.splits.entry((split, label)).or_default() += 1;
        }
    }
    Ok(summary)
}

impl DataSummary {
    fn display_label(&self, label: &str) -> String {
        match self.label_names.get(label) {
            Some(name) if name != label => format!("{label} ({name})"),
            _ => label.to_string(),
        }
    }

    /// Human-readable report.
    pub fn render(&self, path: &Path) -> String {
        let mut text = String::new();
        let total: usize = self.lengths.iter().sum();
        let _ = writeln!(text, "{}", path.display());
        let _ = writeln!(text, "records         {}", self.records);
        if let (Some(min), Some(max)) = (self.lengths.first(), self.lengths.last()) {
            let median = self.lengths[self.lengths.len() / 2];
            let _ = writeln!(
                text,
                "length          min {min}  median {median}  mean {:.1}  max {max}  (total {total} bp)",
                total as f64 / self.records as f64
            );
        }
        let share = |n: usize| 100.0 * n as f64 / total.max(1) as f64;
        let _ = writeln!(
            text,
            "GC              {:.2} % of A/C/G/T",
            100.0 * self.gc as f64 / self.acgt.max(1) as f64
        );
        let _ = writeln!(
            text,
            "N               {} bp ({:.3} %); other IUPAC/unknown {} bp ({:.3} %); {} records with any",
            self.n,
            share(self.n),
            self.other,
            share(self.other),
            self.records_with_ambiguous
        );
        let _ = writeln!(
            text,
            "lower case      {} bp ({:.2} %)",
            self.lowercase,
            share(self.lowercase)
        );
        if !self.labels.is_empty() {
            let _ = writeln!(text, "classes");
            for (label, count) in &self.labels {
                let label = self.display_label(label);
                let _ = writeln!(
                    text,
                    "  {label:<22} {count} ({:.1} %)",
                    100.0 * *count as f64 / self.records.max(1) as f64
                );
            }
        }
        if !self.splits.is_empty() {
            let _ = writeln!(text, "split × class");
            for ((split, label), count) in &self.splits {
                let label = self.display_label(label);
                let _ = writeln!(text, "  {split:<6} {label:<22} {count}");
            }
        }
        text
    }
}
