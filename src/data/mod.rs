//! Input data: sequence records from FASTA / CSV / TSV / Parquet files, streamed.

pub mod arrow_values;
pub mod bed;
pub mod fasta;
pub mod table;
pub mod variants;

use std::path::Path;

use crate::error::{GenolensError, Result};

/// One input sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// Identifier (FASTA header up to the first space, or the table's id column / row number).
    pub id: String,
    /// DNA as given (case and N preserved; the tokenizer upper-cases).
    pub sequence: String,
    /// Class label, when the source has one.
    pub label: Option<String>,
}

/// Which columns of a table hold the sequence, id and label.
#[derive(Debug, Clone)]
pub struct TableColumns {
    /// Sequence column (default `sequence`).
    pub sequence: String,
    /// Id column (default `id`; row numbers if absent).
    pub id: String,
    /// Label column, if one is required.
    pub label: Option<String>,
}

impl Default for TableColumns {
    fn default() -> Self {
        TableColumns {
            sequence: "sequence".into(),
            id: "id".into(),
            label: None,
        }
    }
}

/// A stream of examples from a file.
pub type ExampleStream = Box<dyn Iterator<Item = Result<Example>>>;

/// Opens a sequence file by extension: .fa/.fasta/.fna (optionally .gz), .csv, .tsv, .parquet.
pub fn open_sequences(path: &Path, columns: &TableColumns) -> Result<ExampleStream> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let stem = name.strip_suffix(".gz").unwrap_or(&name);
    if [".fa", ".fasta", ".fna", ".fas"]
        .iter()
        .any(|e| stem.ends_with(e))
    {
        if columns.label.is_some() {
            return Err(GenolensError::Data {
                path: path.to_path_buf(),
                line: 0,
                message: "FASTA files have no label column; use a CSV/TSV/Parquet table".into(),
            });
        }
        return Ok(Box::new(fasta::FastaReader::open(path)?));
    }
    if stem.ends_with(".csv") {
        return table::read_delimited(path, b',', columns);
    }
    if stem.ends_with(".tsv") || stem.ends_with(".txt") {
        return table::read_delimited(path, b'\t', columns);
    }
    if stem.ends_with(".parquet") {
        return table::read_parquet(path, columns);
    }
    Err(GenolensError::Data {
        path: path.to_path_buf(),
        line: 0,
        message:
            "unknown sequence file type; expected .fa/.fasta/.fna[.gz], .csv, .tsv or .parquet"
                .into(),
    })
}
