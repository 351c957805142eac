//! Input data: sequence records from FASTA / CSV / TSV / Parquet files, streamed.

pub mod arrow_values;
pub mod bed;
pub mod fasta;
pub mod guard;
pub mod parquet_pages;
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

/// What a sequence file holds, by its extension (case-insensitive, looking through `.gz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// .fa / .fasta / .fna / .fas
    Fasta,
    /// .csv
    Csv,
    /// .tsv / .txt
    Tsv,
    /// .parquet
    Parquet,
    /// Anything else.
    Other,
}

/// The kind of `path` by extension.
pub fn file_kind(path: &Path) -> FileKind {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let stem = name.strip_suffix(".gz").unwrap_or(&name);
    let ends = |extensions: &[&str]| extensions.iter().any(|e| stem.ends_with(e));
    if ends(&[".fa", ".fasta", ".fna", ".fas"]) {
        FileKind::Fasta
    } else if ends(&[".csv"]) {
        FileKind::Csv
    } else if ends(&[".tsv", ".txt"]) {
        FileKind::Tsv
    } else if ends(&[".parquet"]) {
        FileKind::Parquet
    } else {
        FileKind::Other
    }
}

/// Opens a text file for reading, decompressing `.gz` / `.bgz` (multi-member, so bgzip works).
pub fn open_text(path: &Path) -> Result<Box<dyn std::io::BufRead>> {
    use std::io::BufReader;
    let file = std::fs::File::open(path).map_err(|e| GenolensError::io(path, e))?;
    Ok(if is_gzip(path) {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    })
}

/// True when `path` is read through the gzip decoder (`.gz` / `.bgz`, as [`open_text`] does).
pub fn is_gzip(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz" || e == "bgz")
}

/// For a gzip / bgzip file, the error of decompressing it whole when its stream is corrupt
/// (a flipped byte, a truncated copy); `None` for intact or uncompressed files.
///
/// A gzip member's checksum is only checked at its end, so a reader parsing the text sees the
/// garbage first and would blame it on the content (a bad nucleotide, an unreadable record).
pub fn corrupt_gzip(path: &Path) -> Option<GenolensError> {
    if !is_gzip(path) {
        return None;
    }
    let file = std::fs::File::open(path).ok()?;
    let mut decoder = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file));
    match std::io::copy(&mut decoder, &mut std::io::sink()) {
        Ok(_) => None,
        Err(e) => Some(GenolensError::Data {
            path: path.to_path_buf(),
            line: 0,
            message: format!(
                "the gzip/bgzip stream is corrupt ({e}): the file is damaged or truncated; \
                 download or compress it again (`gzip -t` checks a file)"
            ),
        }),
    }
}

/// `error`, unless `path` is a corrupt gzip / bgzip file: then the corruption, which is the
/// real cause of whatever the reader found wrong in the decompressed text.
pub fn blame_compression(path: &Path, error: GenolensError) -> GenolensError {
    corrupt_gzip(path).unwrap_or(error)
}

/// Opens a sequence file by extension: .fa/.fasta/.fna (optionally .gz), .csv, .tsv, .parquet.
/// Ids must be unique (a repeated id is an error naming both rows) and labels non-empty.
pub fn open_sequences(path: &Path, columns: &TableColumns) -> Result<ExampleStream> {
    let kind = file_kind(path);
    if kind == FileKind::Fasta {
        if columns.label.is_some() {
            return Err(GenolensError::Data {
                path: path.to_path_buf(),
                line: 0,
                message: "FASTA files have no label column; use a CSV/TSV/Parquet table".into(),
            });
        }
        return Ok(Box::new(fasta::FastaReader::open(path)?.unique_ids()));
    }
    match kind {
        FileKind::Csv => return table::read_delimited(path, b',', columns),
        FileKind::Tsv => return table::read_delimited(path, b'\t', columns),
        FileKind::Parquet => return table::read_parquet(path, columns),
        FileKind::Fasta | FileKind::Other => {}
    }
    Err(GenolensError::Data {
        path: path.to_path_buf(),
        line: 0,
        message:
            "unknown sequence file type; expected .fa/.fasta/.fna[.gz], .csv, .tsv or .parquet"
                .into(),
    })
}
