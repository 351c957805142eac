//! A streaming FASTA reader (plain or gzip, multi-line records) whose errors carry file and line.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use crate::data::Example;
use crate::error::{GenolensError, Result};

/// Iterates the records of a FASTA file.
pub struct FastaReader {
    path: PathBuf,
    lines: Box<dyn BufRead>,
    line_number: usize,
    pending_header: Option<(String, usize)>,
    finished: bool,
    /// With [`FastaReader::unique_ids`]: the header line of every id read so far.
    seen_ids: Option<HashMap<String, usize>>,
}

impl FastaReader {
    /// Opens `path`, decompressing when it ends in `.gz`.
    pub fn open(path: &Path) -> Result<Self> {
        let lines = crate::data::open_text(path)?;
        Ok(FastaReader {
            path: path.to_path_buf(),
            lines,
            line_number: 0,
            pending_header: None,
            finished: false,
            seen_ids: None,
        })
    }

    /// Refuses a record whose id repeats an earlier one (the error names both header lines).
    /// Sequence files need this (ids key every output row); raw inputs of the dataset builders
    /// may list a region twice and are read without it.
    pub fn unique_ids(mut self) -> Self {
        self.seen_ids = Some(HashMap::new());
        self
    }

    /// A data error at `line`, or the corruption of a gzip file when that is the real cause.
    fn error(&self, line: usize, message: impl Into<String>) -> GenolensError {
        crate::data::blame_compression(
            &self.path,
            GenolensError::Data {
                path: self.path.clone(),
                line,
                message: message.into(),
            },
        )
    }

    fn read_record(&mut self) -> Result<Option<Example>> {
        let mut sequence = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            let read = self.lines.read_line(&mut line).map_err(|e| {
                crate::data::blame_compression(&self.path, GenolensError::io(&self.path, e))
            })?;
            if read == 0 {
                self.finished = true;
                return match self.pending_header.take() {
                    Some((id, header_line)) => self.finish(id, header_line, sequence).map(Some),
                    None => Ok(None),
                };
            }
            self.line_number += 1;
            let text = line.trim_end_matches(['\n', '\r']);
            if let Some(header) = text.strip_prefix('>') {
                let id = header.split_whitespace().next().unwrap_or("").to_string();
                if id.is_empty() {
                    return Err(self.error(
                        self.line_number,
                        "empty FASTA header (expected '>name ...')",
                    ));
                }
                if let Some(seen) = &self.seen_ids {
                    if let Some(first) = seen.get(&id) {
                        return Err(self.error(
                            self.line_number,
                            format!(
                                "record id {id:?} repeats the header on line {first} \
                                 (ids must be unique: they key every output row)"
                            ),
                        ));
                    }
                }
                if let Some(seen) = &mut self.seen_ids {
                    seen.insert(id.clone(), self.line_number);
                }
                let previous = self.pending_header.replace((id, self.line_number));
                if let Some((previous_id, header_line)) = previous {
                    return self.finish(previous_id, header_line, sequence).map(Some);
                }
            } else if text.trim().is_empty() || text.starts_with(';') {
                continue;
            } else {
                if self.pending_header.is_none() {
                    return Err(self.error(
                        self.line_number,
                        format!("sequence line before any '>' header: {:?}", truncate(text)),
                    ));
                }
                if let Some(bad) = first_non_base(text.trim_end()) {
                    let id = self
                        .pending_header
                        .as_ref()
                        .map(|(id, _)| id.as_str())
                        .unwrap_or_default();
                    return Err(self.error(
                        self.line_number,
                        format!(
                            "record {id:?}: character {:?} at column {} is not a DNA base \
                             ({})",
                            bad.symbol,
                            bad.position,
                            bad.expected()
                        ),
                    ));
                }
                sequence.push_str(text.trim_end());
            }
        }
    }

    fn finish(&self, id: String, header_line: usize, sequence: String) -> Result<Example> {
        if sequence.is_empty() {
            return Err(self.error(header_line, format!("record {id:?} has no sequence")));
        }
        Ok(Example {
            id,
            sequence,
            label: None,
        })
    }
}

/// The first character of a sequence that is not a DNA base ([`is_nucleotide_symbol`]).
pub struct NonBase {
    /// The character.
    pub symbol: char,
    /// Its 1-based position (character count) in the text searched.
    pub position: usize,
}

impl NonBase {
    /// What was expected instead, with a hint for RNA, alignments and stop codons.
    pub fn expected(&self) -> String {
        let hint = match self.symbol {
            'U' | 'u' => "; RNA? write T for U",
            '-' | '.' => "; an alignment? remove the gaps",
            '*' => "; '*' (a stop or deletion) is not a base",
            _ => "",
        };
        format!(
            "expected A, C, G, T, N or an IUPAC ambiguity code R Y S W K M B D H V, any case{hint}"
        )
    }
}

/// The first non-base character of `text`, if any (FASTA lines and table sequence fields).
pub fn first_non_base(text: &str) -> Option<NonBase> {
    text.chars()
        .enumerate()
        .find(|(_, c)| !is_nucleotide_symbol(*c))
        .map(|(index, symbol)| NonBase {
            symbol,
            position: index + 1,
        })
}

/// A, C, G, T, N and the IUPAC ambiguity codes R Y S W K M B D H V, in either case: the
/// symbols every tokenizer accepts ([`crate::tokenize::normalise_dna`]). RNA's U, gaps `-` and
/// `*` are not DNA bases and are refused where the file is read, not later by the model.
pub fn is_nucleotide_symbol(c: char) -> bool {
    matches!(
        c.to_ascii_uppercase(),
        'A' | 'C' | 'G' | 'T' | 'N' | 'R' | 'Y' | 'S' | 'W' | 'K' | 'M' | 'B' | 'D' | 'H' | 'V'
    )
}

fn truncate(text: &str) -> String {
    text.chars().take(40).collect()
}

impl Iterator for FastaReader {
    type Item = Result<Example>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        match self.read_record() {
            Ok(Some(example)) => Some(Ok(example)),
            Ok(None) => None,
            Err(error) => {
                self.finished = true;
                Some(Err(error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(text: &str, name: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn reads_multiline_records_and_lowercase() {
        let (_dir, path) = write(">a desc\nACGT\nacgt\n\n>b\nNNAC\n", "x.fa");
        let records: Vec<Example> = FastaReader::open(&path)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].id, "a");
        assert_eq!(records[0].sequence, "ACGTacgt");
        assert_eq!(records[1].sequence, "NNAC");
    }

    #[test]
    fn reads_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.fa.gz");
        let mut encoder = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::default(),
        );
        encoder.write_all(b">s\nACGTACGT\n").unwrap();
        encoder.finish().unwrap();
        let records: Vec<Example> = FastaReader::open(&path)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(records[0].sequence, "ACGTACGT");
    }

    /// The first error reading `text` as a FASTA file called `name`.
    fn first_error(text: &str, name: &str) -> String {
        let (_dir, path) = write(text, name);
        FastaReader::open(&path)
            .unwrap()
            .find_map(|r| r.err())
            .expect("an error")
            .to_string()
    }

    #[test]
    fn errors_name_file_and_line() {
        let err = first_error(">a\nACGT\n>\nACGT\n", "bad.fa");
        assert!(
            err.contains("bad.fa:3") && err.contains("empty FASTA header"),
            "{err}"
        );

        let err = first_error("ACGT\n>a\nACGT\n", "nohead.fa");
        assert!(
            err.contains("nohead.fa:1") && err.contains("before any '>'"),
            "{err}"
        );

        let err = first_error(">a\nAC1T\n", "digit.fa");
        assert!(
            err.contains("digit.fa:2") && err.contains("'1'") && err.contains("column 3"),
            "{err}"
        );

        let err = first_error(">a\nACGTRYN\nacgXt\n", "protein.fa");
        assert!(
            err.contains("protein.fa:3") && err.contains("'X'") && err.contains("column 4"),
            "{err}"
        );

        let err = first_error(">a\n>b\nACGT\n", "empty.fa");
        assert!(
            err.contains("empty.fa:1") && err.contains("no sequence"),
            "{err}"
        );
    }
}
