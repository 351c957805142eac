//! Reading genolens Parquet tables back: whole tables for a study's reduce step, and the
//! concatenation of shard parts that `genolens merge` performs.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::data::arrow_values::{integer_values, text_values};
use crate::error::{GenolensError, Result};
use crate::report::atomic::temp_path;

fn parquet_error(path: &Path, error: impl std::fmt::Display) -> GenolensError {
    GenolensError::ParquetRead {
        path: path.to_path_buf(),
        message: error.to_string(),
    }
}

fn parquet_write_error(path: &Path, error: impl std::fmt::Display) -> GenolensError {
    GenolensError::Parquet {
        path: path.to_path_buf(),
        message: error.to_string(),
    }
}

/// A Parquet table held in memory, with typed column access whose errors name the file and
/// column.
pub struct ParquetTable {
    path: PathBuf,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    metadata: Vec<(String, String)>,
}

impl ParquetTable {
    /// Reads the whole file.
    pub fn read(path: &Path) -> Result<Self> {
        crate::data::guard::parquet_guarded(path, || Self::read_unguarded(path))
    }

    fn read_unguarded(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| GenolensError::io(path, e))?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_error(path, e))?;
        let metadata = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .map(|pairs| {
                pairs
                    .iter()
                    .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        let schema = builder.schema().clone();
        crate::data::parquet_pages::check_pages(path, builder.metadata())?;
        let reader = builder.build().map_err(|e| parquet_error(path, e))?;
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| parquet_error(path, e))?;
        Ok(ParquetTable {
            path: path.to_path_buf(),
            schema,
            batches,
            metadata,
        })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// Column names, in order.
    pub fn column_names(&self) -> Vec<String> {
        self.schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    /// The file's key-value metadata (provenance).
    pub fn metadata(&self) -> &[(String, String)] {
        &self.metadata
    }

    fn column(&self, name: &str) -> Result<Vec<&ArrayRef>> {
        let index = self.schema.index_of(name).map_err(|_| {
            let names: Vec<&str> = self
                .schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            parquet_error(
                &self.path,
                format!("no column {name:?} (columns: {})", names.join(", ")),
            )
        })?;
        Ok(self.batches.iter().map(|b| b.column(index)).collect())
    }

    fn no_nulls<T>(&self, name: &str, values: Vec<Option<T>>) -> Result<Vec<T>> {
        values
            .into_iter()
            .enumerate()
            .map(|(row, v)| {
                v.ok_or_else(|| {
                    parquet_error(&self.path, format!("column {name:?} is null at row {row}"))
                })
            })
            .collect()
    }

    /// A float or integer column as f64.
    pub fn f64s(&self, name: &str) -> Result<Vec<f64>> {
        let mut values = Vec::with_capacity(self.rows());
        for array in self.column(name)? {
            match array.data_type() {
                DataType::Float64 => values.extend(array.as_primitive::<Float64Type>().iter()),
                DataType::Float32 => values.extend(
                    array
                        .as_primitive::<Float32Type>()
                        .iter()
                        .map(|v| v.map(f64::from)),
                ),
                other => {
                    let integers = integer_values(array).ok_or_else(|| {
                        parquet_error(
                            &self.path,
                            format!("column {name:?} is {other}, expected numbers"),
                        )
                    })?;
                    values.extend(integers.into_iter().map(|v| v.map(|v| v as f64)));
                }
            }
        }
        self.no_nulls(name, values)
    }

    /// An integer column.
    pub fn integers(&self, name: &str) -> Result<Vec<i64>> {
        let mut values = Vec::with_capacity(self.rows());
        for array in self.column(name)? {
            values.extend(integer_values(array).ok_or_else(|| {
                parquet_error(
                    &self.path,
                    format!(
                        "column {name:?} is {}, expected integers",
                        array.data_type()
                    ),
                )
            })?);
        }
        self.no_nulls(name, values)
    }

    /// A float column that may hold nulls (an all-null optional column included).
    pub fn optional_f64s(&self, name: &str) -> Result<Vec<Option<f64>>> {
        let mut values = Vec::with_capacity(self.rows());
        for array in self.column(name)? {
            match array.data_type() {
                DataType::Float64 => values.extend(array.as_primitive::<Float64Type>().iter()),
                DataType::Float32 => values.extend(
                    array
                        .as_primitive::<Float32Type>()
                        .iter()
                        .map(|v| v.map(f64::from)),
                ),
                other => {
                    return Err(parquet_error(
                        &self.path,
                        format!("column {name:?} is {other}, expected floats"),
                    ))
                }
            }
        }
        Ok(values)
    }

    /// An integer column that may hold nulls.
    pub fn optional_integers(&self, name: &str) -> Result<Vec<Option<i64>>> {
        let mut values = Vec::with_capacity(self.rows());
        for array in self.column(name)? {
            values.extend(integer_values(array).ok_or_else(|| {
                parquet_error(
                    &self.path,
                    format!(
                        "column {name:?} is {}, expected integers",
                        array.data_type()
                    ),
                )
            })?);
        }
        Ok(values)
    }

    /// A text column that may hold nulls (integers as decimal text).
    pub fn optional_strings(&self, name: &str) -> Result<Vec<Option<String>>> {
        let mut values = Vec::with_capacity(self.rows());
        for array in self.column(name)? {
            values.extend(text_values(array).ok_or_else(|| {
                parquet_error(
                    &self.path,
                    format!("column {name:?} is {}, expected text", array.data_type()),
                )
            })?);
        }
        Ok(values)
    }

    /// A boolean column.
    pub fn booleans(&self, name: &str) -> Result<Vec<bool>> {
        let mut values = Vec::with_capacity(self.rows());
        for array in self.column(name)? {
            let booleans = array.as_boolean_opt().ok_or_else(|| {
                parquet_error(
                    &self.path,
                    format!(
                        "column {name:?} is {}, expected booleans",
                        array.data_type()
                    ),
                )
            })?;
            values.extend(booleans.iter());
        }
        self.no_nulls(name, values)
    }

    /// A text column (integers as decimal text).
    pub fn strings(&self, name: &str) -> Result<Vec<String>> {
        let values = self.optional_strings(name)?;
        self.no_nulls(name, values)
    }
}

/// Concatenates Parquet files of one schema into `out` in the order given (atomically: `out`
/// appears only when complete). The first part's key-value metadata is kept, except keys in
/// `drop_keys`. Returns the number of rows.
pub fn concatenate_parquet(parts: &[PathBuf], out: &Path, drop_keys: &[&str]) -> Result<usize> {
    let first = parts
        .first()
        .ok_or_else(|| parquet_write_error(out, "no parts to concatenate"))?;
    let open = |path: &Path| -> Result<ParquetRecordBatchReaderBuilder<File>> {
        let file = File::open(path).map_err(|e| GenolensError::io(path, e))?;
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_error(path, e))
    };
    let head = open(first)?;
    let schema = head.schema().clone();
    let metadata: Vec<KeyValue> = head
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|pairs| {
            pairs
                .iter()
                .filter(|kv| !drop_keys.contains(&kv.key.as_str()) && kv.key != "ARROW:schema")
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    drop(head);
    let temp = temp_path(out);
    let result = (|| -> Result<usize> {
        let file = File::create(&temp).map_err(|e| GenolensError::io(&temp, e))?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_key_value_metadata(Some(metadata))
            .set_created_by(format!("genolens {}", env!("CARGO_PKG_VERSION")))
            .build();
        let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(properties))
            .map_err(|e| parquet_write_error(out, e))?;
        let mut rows = 0;
        for part in parts {
            let builder = open(part)?;
            if builder.schema().fields() != schema.fields() {
                return Err(parquet_error(
                    part,
                    format!(
                        "columns differ from {}'s; parts of one table must come from one study",
                        first.display()
                    ),
                ));
            }
            for batch in builder.build().map_err(|e| parquet_error(part, e))? {
                let batch = batch.map_err(|e| parquet_error(part, e))?;
                rows += batch.num_rows();
                writer
                    .write(&batch)
                    .map_err(|e| parquet_write_error(out, e))?;
            }
        }
        writer.close().map_err(|e| parquet_write_error(out, e))?;
        Ok(rows)
    })();
    match result {
        Ok(rows) => {
            std::fs::rename(&temp, out).map_err(|e| GenolensError::io(out, e))?;
            Ok(rows)
        }
        Err(error) => {
            let _ = std::fs::remove_file(&temp);
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Provenance, TableWriter};

    crate::table_row! {
        struct Row { id: String, layer: u32, value: f64 }
    }

    fn write(path: &Path, rows: std::ops::Range<u32>) {
        let mut writer = TableWriter::<Row>::create(path, &Provenance::current(3)).unwrap();
        for i in rows {
            writer
                .write(&Row {
                    id: format!("s{i}"),
                    layer: i % 2,
                    value: i as f64 / 4.0,
                })
                .unwrap();
        }
        writer.finish().unwrap();
    }

    #[test]
    fn parts_concatenate_in_order_and_read_back_typed() {
        let dir = tempfile::tempdir().unwrap();
        let parts: Vec<PathBuf> = (0..3)
            .map(|i| dir.path().join(format!("part-{i}-of-3.parquet")))
            .collect();
        write(&parts[0], 0..5);
        write(&parts[1], 5..5);
        write(&parts[2], 5..9);
        let out = dir.path().join("table.parquet");
        assert_eq!(concatenate_parquet(&parts, &out, &[]).unwrap(), 9);
        let table = ParquetTable::read(&out).unwrap();
        assert_eq!(table.rows(), 9);
        assert_eq!(table.strings("id").unwrap()[8], "s8");
        assert_eq!(table.integers("layer").unwrap()[3], 1);
        assert_eq!(table.f64s("value").unwrap()[6], 1.5);
        assert!(table
            .metadata()
            .iter()
            .any(|(k, v)| k == "genolens.seed" && v == "3"));
        let error = table.f64s("nothing").unwrap_err().to_string();
        assert!(
            error.contains("nothing") && error.contains("layer"),
            "{error}"
        );
        assert!(table.f64s("id").is_err());
    }
}
