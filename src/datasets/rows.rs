//! Row types of the derived datasets, and the summary lines data/README.md shows for them.

use std::collections::BTreeMap;
use std::path::Path;

use crate::datasets::genome::gc_fraction;
use crate::error::Result;
use crate::report::{Provenance, TableWriter};

crate::table_row! {
    /// One labelled sequence window (0-based half-open genomic coordinates; `sequence` is read on
    /// `strand`, so a `-` window is the reverse complement of chrom[start, end)).
    pub struct SequenceRow {
        pub id: String,
        pub sequence: String,
        pub label: i64,
        pub label_name: String,
        pub split: String,
        pub chrom: String,
        pub start: i64,
        pub end: i64,
        pub strand: String,
    }
}

crate::table_row! {
    /// One SNV with reference context: `sequence` (= reference) and `alt_sequence` are
    /// chrom[pos − offset, pos − offset + length) with the variant at `variant_offset`; `pos` is
    /// 0-based.
    pub struct VariantRow {
        pub id: String,
        pub sequence: String,
        pub alt_sequence: String,
        pub label: i64,
        pub label_name: String,
        pub split: String,
        pub chrom: String,
        pub pos: i64,
        pub r#ref: String,
        pub alt: String,
        pub variant_offset: i64,
        pub annotation: String,
        pub best_motif: String,
        pub motif_delta_bits: f64,
        pub gc: f64,
        pub tss_distance: i64,
    }
}

/// Writes rows to a Parquet file with dataset provenance.
pub fn write_rows<R: crate::report::TableRow>(
    path: &Path,
    rows: &[R],
    provenance: &Provenance,
) -> Result<()> {
    let mut writer = TableWriter::<R>::create(path, provenance)?;
    writer.write_all(rows)?;
    writer.finish()?;
    Ok(())
}

/// Markdown table: rows per split and class, with mean GC and length.
pub fn balance_table(rows: &[SequenceRow]) -> String {
    // (split order, label) → (count, gc sum, length sum)
    let split_order = |s: &str| match s {
        "train" => 0,
        "valid" => 1,
        "test" => 2,
        _ => 3,
    };
    // (split order, split, label, class) → (rows, GC sum, length sum)
    type Group = (u8, String, i64, String);
    let mut groups: BTreeMap<Group, (usize, f64, usize)> = BTreeMap::new();
    for row in rows {
        let key = (
            split_order(&row.split),
            row.split.clone(),
            row.label,
            row.label_name.clone(),
        );
        let entry = groups.entry(key).or_default();
        entry.0 += 1;
        entry.1 += gc_fraction(row.sequence.as_bytes());
        entry.2 += row.sequence.len();
    }
    let mut text = String::from(
        "| split | label | class | rows | mean GC | mean length |\n|---|---|---|---|---|---|\n",
    );
    for ((_, split, label, name), (count, gc, length)) in &groups {
        text.push_str(&format!(
            "| {split} | {label} | {name} | {count} | {:.3} | {:.0} |\n",
            gc / *count as f64,
            *length as f64 / *count as f64
        ));
    }
    text
}

/// Reads a sequence table written by [`write_rows`] (or any Parquet with the same columns).
pub fn read_sequence_rows(path: &Path) -> Result<Vec<SequenceRow>> {
    use crate::data::arrow_values::{integer_values, text_values};
    use crate::error::GenolensError;
    let error = |message: String| GenolensError::Data {
        path: path.to_path_buf(),
        line: 0,
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| GenolensError::io(path, e))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| error(format!("not a readable Parquet file: {e}")))?
        .build()
        .map_err(|e| error(e.to_string()))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| error(e.to_string()))?;
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| error(format!("no column {name:?}")))
        };
        let text = |name: &str| -> Result<Vec<String>> {
            let values = text_values(column(name)?)
                .ok_or_else(|| error(format!("column {name:?} is not text")))?;
            Ok(values.into_iter().map(Option::unwrap_or_default).collect())
        };
        let integer = |name: &str| -> Result<Vec<i64>> {
            let values = integer_values(column(name)?)
                .ok_or_else(|| error(format!("column {name:?} is not integer")))?;
            Ok(values.into_iter().map(Option::unwrap_or_default).collect())
        };
        let (ids, sequences, labels, names, splits) = (
            text("id")?,
            text("sequence")?,
            integer("label")?,
            text("label_name")?,
            text("split")?,
        );
        let (chroms, starts, ends, strands) = (
            text("chrom")?,
            integer("start")?,
            integer("end")?,
            text("strand")?,
        );
        for i in 0..batch.num_rows() {
            rows.push(SequenceRow {
                id: ids[i].clone(),
                sequence: sequences[i].clone(),
                label: labels[i],
                label_name: names[i].clone(),
                split: splits[i].clone(),
                chrom: chroms[i].clone(),
                start: starts[i],
                end: ends[i],
                strand: strands[i].clone(),
            });
        }
    }
    Ok(rows)
}
