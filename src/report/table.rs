//! Streaming Parquet writer for typed rows: bounded memory, provenance metadata, atomic finish.

use std::fs::File;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::ArrayBuilder;
use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::error::{GenolensError, Result};
use crate::report::atomic::temp_path;
use crate::report::columns::TableRow;
use crate::report::provenance::Provenance;

/// Rows buffered before they are flushed as one record batch.
const ROWS_PER_BATCH: usize = 65_536;

/// Writes rows of type `R` to a Parquet file; the file appears only when [`finish`](Self::finish) succeeds.
pub struct TableWriter<R: TableRow> {
    path: PathBuf,
    temp: PathBuf,
    schema: SchemaRef,
    writer: Option<ArrowWriter<File>>,
    builders: Vec<Box<dyn ArrayBuilder>>,
    buffered: usize,
    written: usize,
    _rows: PhantomData<R>,
}

impl<R: TableRow> TableWriter<R> {
    /// Starts `path` (parent folders are created) with provenance as key-value metadata.
    pub fn create(path: &Path, provenance: &Provenance) -> Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| GenolensError::io(parent, e))?;
        }
        let temp = temp_path(path);
        let file = File::create(&temp).map_err(|e| GenolensError::io(&temp, e))?;
        crate::interrupt::register(&temp);
        let schema: SchemaRef = Arc::new(Schema::new(R::fields()));
        let metadata = provenance
            .key_values()
            .into_iter()
            .map(|(key, value)| KeyValue::new(key, value))
            .collect();
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_key_value_metadata(Some(metadata))
            .set_created_by(format!("genolens {}", env!("CARGO_PKG_VERSION")))
            .build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(properties))
            .map_err(|e| parquet_error(path, e))?;
        Ok(TableWriter {
            path: path.to_path_buf(),
            temp,
            schema,
            writer: Some(writer),
            builders: R::builders(),
            buffered: 0,
            written: 0,
            _rows: PhantomData,
        })
    }

    /// Appends one row.
    pub fn write(&mut self, row: &R) -> Result<()> {
        row.append(&mut self.builders);
        self.buffered += 1;
        if self.buffered >= ROWS_PER_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Appends many rows.
    pub fn write_all<'a>(&mut self, rows: impl IntoIterator<Item = &'a R>) -> Result<()>
    where
        R: 'a,
    {
        for row in rows {
            self.write(row)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.buffered == 0 {
            return Ok(());
        }
        let columns = self.builders.iter_mut().map(|b| b.finish()).collect();
        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| parquet_error(&self.path, e))?;
        let writer = self.writer.as_mut().expect("writer open until finish");
        writer
            .write(&batch)
            .map_err(|e| parquet_error(&self.path, e))?;
        self.written += self.buffered;
        self.buffered = 0;
        Ok(())
    }

    /// Flushes, closes and atomically renames into place. Returns the number of rows.
    pub fn finish(mut self) -> Result<usize> {
        self.flush()?;
        let writer = self.writer.take().expect("writer open until finish");
        writer.close().map_err(|e| parquet_error(&self.path, e))?;
        crate::interrupt::commit(&self.temp, &self.path)?;
        Ok(self.written)
    }
}

impl<R: TableRow> Drop for TableWriter<R> {
    fn drop(&mut self) {
        if self.writer.is_some() {
            // Not finished (error or interruption): leave no half-written table behind.
            let _ = std::fs::remove_file(&self.temp);
            crate::interrupt::unregister(&self.temp);
        }
    }
}

fn parquet_error(path: &Path, error: impl std::fmt::Display) -> GenolensError {
    GenolensError::Parquet {
        path: path.to_path_buf(),
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    crate::table_row! {
        struct TestRow { name: String, layer: u32, value: f64, note: Option<String> }
    }

    fn rows(count: usize) -> Vec<TestRow> {
        (0..count)
            .map(|i| TestRow {
                name: format!("s{i}"),
                layer: (i % 3) as u32,
                value: i as f64 * 0.5,
                note: None,
            })
            .collect()
    }

    #[test]
    fn writes_rows_and_provenance_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/table.parquet");
        let provenance = Provenance::current(7);
        let mut writer = TableWriter::<TestRow>::create(&path, &provenance).unwrap();
        writer.write_all(&rows(70_000)).unwrap();
        assert!(!path.exists(), "the table must not appear before finish");
        assert_eq!(writer.finish().unwrap(), 70_000);
        let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        let metadata = reader.metadata().file_metadata();
        assert_eq!(metadata.num_rows(), 70_000);
        let kv = metadata.key_value_metadata().unwrap();
        assert!(kv
            .iter()
            .any(|k| k.key == "genolens.seed" && k.value.as_deref() == Some("7")));
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp files left");
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("table.parquet");
        {
            let mut writer =
                TableWriter::<TestRow>::create(&path, &Provenance::current(0)).unwrap();
            writer.write_all(&rows(10)).unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn same_rows_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str| {
            let path = dir.path().join(name);
            let mut writer =
                TableWriter::<TestRow>::create(&path, &Provenance::current(1)).unwrap();
            writer.write_all(&rows(1000)).unwrap();
            writer.finish().unwrap();
            std::fs::read(path).unwrap()
        };
        assert_eq!(write("a.parquet"), write("b.parquet"));
    }
}
