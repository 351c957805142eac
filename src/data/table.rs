//! Sequence tables: CSV / TSV (header row) and Parquet, with named sequence, id and label columns.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::data::arrow_values::text_values;
use crate::data::{file_kind, open_text, FileKind};
use crate::data::{Example, ExampleStream, TableColumns};
use crate::error::{GenolensError, Result};

fn data_error(path: &Path, line: usize, message: impl Into<String>) -> GenolensError {
    crate::data::blame_compression(
        path,
        GenolensError::Data {
            path: path.to_path_buf(),
            line,
            message: message.into(),
        },
    )
}

fn column_index(path: &Path, headers: &[String], name: &str) -> Result<usize> {
    headers.iter().position(|h| h == name).ok_or_else(|| {
        data_error(
            path,
            1,
            format!(
                "no column {name:?}; the columns are: {}",
                headers.join(", ")
            ),
        )
    })
}

/// The column names of a CSV/TSV/Parquet table (`None` for FASTA and other non-tables).
pub fn column_names(path: &Path) -> Result<Option<Vec<String>>> {
    let delimiter = match file_kind(path) {
        FileKind::Csv => b',',
        FileKind::Tsv => b'\t',
        FileKind::Fasta | FileKind::Other => return Ok(None),
        FileKind::Parquet => {
            return crate::data::guard::parquet_guarded(path, || {
                let file = File::open(path).map_err(|e| GenolensError::io(path, e))?;
                let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| {
                    data_error(path, 0, format!("not a readable Parquet file: {e}"))
                })?;
                Ok(Some(
                    builder
                        .schema()
                        .fields()
                        .iter()
                        .map(|f| f.name().clone())
                        .collect(),
                ))
            });
        }
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .from_reader(open_text(path)?);
    let headers = reader
        .headers()
        .map_err(|e| data_error(path, 1, format!("unreadable header row: {e}")))?;
    Ok(Some(headers.iter().map(str::to_string).collect()))
}

/// Streams a delimited text table with a header row.
pub fn read_delimited(path: &Path, delimiter: u8, columns: &TableColumns) -> Result<ExampleStream> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .from_reader(open_text(path)?);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| data_error(path, 1, format!("unreadable header row: {e}")))?
        .iter()
        .map(str::to_string)
        .collect();
    let sequence_column = column_index(path, &headers, &columns.sequence)?;
    let id_column = headers.iter().position(|h| *h == columns.id);
    let label_column = match &columns.label {
        Some(label) => Some(column_index(path, &headers, label)?),
        None => None,
    };
    let path: PathBuf = path.to_path_buf();
    let (id_name, label_name, sequence_name) = (
        columns.id.clone(),
        columns.label.clone().unwrap_or_default(),
        columns.sequence.clone(),
    );
    // The line of every id read so far: a repeated id is refused, naming both lines.
    let mut seen_ids: HashMap<String, usize> = HashMap::new();
    let records = reader.into_records().enumerate().map(move |(row, record)| {
        let line = row + 2;
        let record = record.map_err(|e| data_error(&path, line, e.to_string()))?;
        let field = |index: usize, what: &str| {
            record
                .get(index)
                .map(str::to_string)
                .ok_or_else(|| data_error(&path, line, format!("row has no {what} field")))
        };
        let sequence = field(sequence_column, "sequence")?;
        if sequence.is_empty() {
            return Err(data_error(&path, line, "empty sequence"));
        }
        if let Some(bad) = crate::data::fasta::first_non_base(&sequence) {
            return Err(data_error(
                &path,
                line,
                format!(
                    "character {:?} at position {} of the sequence (column {:?}) is not a DNA \
                     base ({})",
                    bad.symbol,
                    bad.position,
                    sequence_name,
                    bad.expected()
                ),
            ));
        }
        let id = match id_column {
            Some(index) => field(index, "id")?,
            None => format!("row{}", row + 1),
        };
        if let Some(first) = seen_ids.get(&id) {
            return Err(data_error(
                &path,
                line,
                format!(
                    "id {id:?} in column {id_name:?} repeats line {first} (ids must be unique: \
                     they key every output row)"
                ),
            ));
        }
        seen_ids.insert(id.clone(), line);
        let label = match label_column {
            Some(index) => {
                let label = field(index, "label")?;
                if label.trim().is_empty() {
                    return Err(data_error(
                        &path,
                        line,
                        format!(
                            "empty value in label column {label_name:?} (column {}); every row \
                             needs a class",
                            index + 1
                        ),
                    ));
                }
                Some(label)
            }
            None => None,
        };
        Ok(Example {
            id,
            sequence,
            label,
        })
    });
    Ok(Box::new(records))
}

/// Streams a Parquet table (string sequence column; string or integer id/label columns).
pub fn read_parquet(path: &Path, columns: &TableColumns) -> Result<ExampleStream> {
    crate::data::guard::parquet_guarded(path, || read_parquet_unguarded(path, columns))
}

fn read_parquet_unguarded(path: &Path, columns: &TableColumns) -> Result<ExampleStream> {
    let file = File::open(path).map_err(|e| GenolensError::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| data_error(path, 0, format!("not a readable Parquet file: {e}")))?;
    let headers: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    column_index(path, &headers, &columns.sequence)?;
    if let Some(label) = &columns.label {
        column_index(path, &headers, label)?;
    }
    crate::data::parquet_pages::check_pages(path, builder.metadata())?;
    let reader = builder
        .with_batch_size(4096)
        .build()
        .map_err(|e| data_error(path, 0, e.to_string()))?;
    let path = path.to_path_buf();
    let columns = columns.clone();
    let mut row_offset = 0usize;
    // The row of every id read so far: a repeated id is refused, naming both rows.
    let mut seen_ids: HashMap<String, usize> = HashMap::new();
    // Each batch is decoded under the guard too: a malformed page can panic the decoder.
    let mut reader = reader;
    let guard_path = path.clone();
    let reader = std::iter::from_fn(move || {
        crate::data::guard::parquet_guarded(&guard_path, || Ok(reader.next())).unwrap_or_else(
            |error| {
                Some(Err(arrow_schema::ArrowError::ExternalError(Box::new(
                    error,
                ))))
            },
        )
    });
    let batches = reader.flat_map(move |batch| {
        let examples = batch
            .map_err(|e| data_error(&path, 0, e.to_string()))
            .and_then(|batch| {
                examples_from_batch(&path, &batch, &columns, row_offset, &mut seen_ids)
            });
        if let Ok(examples) = &examples {
            row_offset += examples.len();
        }
        match examples {
            Ok(examples) => examples.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(error) => vec![Err(error)],
        }
    });
    Ok(Box::new(batches))
}

fn strings(path: &Path, batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| data_error(path, 0, format!("no column {name:?}")))?;
    text_values(column).ok_or_else(|| {
        data_error(
            path,
            0,
            format!(
                "column {name:?} has type {}; expected text, categorical or integer",
                column.data_type()
            ),
        )
    })
}

fn examples_from_batch(
    path: &Path,
    batch: &RecordBatch,
    columns: &TableColumns,
    row_offset: usize,
    seen_ids: &mut HashMap<String, usize>,
) -> Result<Vec<Example>> {
    let sequences = strings(path, batch, &columns.sequence)?;
    let ids = match batch.column_by_name(&columns.id) {
        Some(_) => Some(strings(path, batch, &columns.id)?),
        None => None,
    };
    let labels = match &columns.label {
        Some(label) => Some(strings(path, batch, label)?),
        None => None,
    };
    let mut examples = Vec::with_capacity(sequences.len());
    for (index, sequence) in sequences.into_iter().enumerate() {
        let row = row_offset + index + 1;
        let missing = |what: &str| data_error(path, 0, format!("row {row}: {what} is null"));
        let sequence = sequence.ok_or_else(|| missing("sequence"))?;
        if sequence.is_empty() {
            return Err(data_error(path, 0, format!("row {row}: empty sequence")));
        }
        if let Some(bad) = crate::data::fasta::first_non_base(&sequence) {
            return Err(data_error(
                path,
                0,
                format!(
                    "row {row}: character {:?} at position {} of the sequence (column {:?}) is \
                     not a DNA base ({})",
                    bad.symbol,
                    bad.position,
                    columns.sequence,
                    bad.expected()
                ),
            ));
        }
        let id = match &ids {
            Some(ids) => ids[index].clone().ok_or_else(|| missing("id"))?,
            None => format!("row{row}"),
        };
        if let Some(first) = seen_ids.get(&id) {
            return Err(data_error(
                path,
                0,
                format!(
                    "row {row}: id {id:?} in column {:?} repeats row {first} (ids must be unique: \
                     they key every output row)",
                    columns.id
                ),
            ));
        }
        seen_ids.insert(id.clone(), row);
        let label = match (&labels, &columns.label) {
            (Some(labels), Some(name)) => {
                let label = labels[index].clone().ok_or_else(|| missing("label"))?;
                if label.trim().is_empty() {
                    return Err(data_error(
                        path,
                        0,
                        format!(
                            "row {row}: empty value in label column {name:?}; every row needs a \
                             class"
                        ),
                    ));
                }
                Some(label)
            }
            _ => None,
        };
        examples.push(Example {
            id,
            sequence,
            label,
        });
    }
    Ok(examples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_label_and_missing_column_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, "id,sequence,label\na,ACGT,1\nb,GGCC,0\n").unwrap();
        let columns = TableColumns {
            label: Some("label".into()),
            ..Default::default()
        };
        let rows: Vec<Example> = read_delimited(&path, b',', &columns)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(
            rows[1],
            Example {
                id: "b".into(),
                sequence: "GGCC".into(),
                label: Some("0".into())
            }
        );

        let columns = TableColumns {
            label: Some("class".into()),
            ..Default::default()
        };
        let err = read_delimited(&path, b',', &columns)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("t.csv:1")
                && err.contains("\"class\"")
                && err.contains("id, sequence, label"),
            "{err}"
        );
    }

    #[test]
    fn tsv_rows_are_numbered_when_no_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.tsv");
        std::fs::write(&path, "sequence\nACGT\n\"\"\n").unwrap();
        let mut rows = read_delimited(&path, b'\t', &TableColumns::default()).unwrap();
        assert_eq!(rows.next().unwrap().unwrap().id, "row1");
        let err = rows.next().unwrap().unwrap_err().to_string();
        assert!(
            err.contains("t.tsv:3") && err.contains("empty sequence"),
            "{err}"
        );
    }
}
