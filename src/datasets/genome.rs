//! Reference sequence held in memory, with the few operations dataset building needs.

use std::path::Path;

use crate::data::fasta::FastaReader;
use crate::error::{GenolensError, Result};

/// One chromosome's sequence, upper case, as read from a FASTA file.
#[derive(Debug, Clone)]
pub struct Chromosome {
    /// Name as in the FASTA header (e.g. `20`).
    pub name: String,
    /// Bases, upper case.
    pub sequence: Vec<u8>,
}

impl Chromosome {
    /// Reads the record named `name` (plain or gzipped FASTA, multi-member gzip included).
    pub fn read(path: &Path, name: &str) -> Result<Self> {
        for record in FastaReader::open(path)? {
            let record = record?;
            if record.id == name {
                return Ok(Chromosome {
                    name: record.id,
                    sequence: record.sequence.into_bytes().to_ascii_uppercase(),
                });
            }
        }
        Err(GenolensError::Data {
            path: path.to_path_buf(),
            line: 0,
            message: format!("no record named {name:?}"),
        })
    }

    /// Bases [start, end) if the range lies inside the chromosome.
    pub fn slice(&self, start: i64, end: i64) -> Option<&[u8]> {
        (start >= 0 && start <= end && end as usize <= self.sequence.len())
            .then(|| &self.sequence[start as usize..end as usize])
    }

    /// Length in bases.
    pub fn len(&self) -> usize {
        self.sequence.len()
    }

    /// Whether the sequence is empty.
    pub fn is_empty(&self) -> bool {
        self.sequence.is_empty()
    }
}

/// Reverse complement (A↔T, C↔G; other letters kept, case kept).
pub fn reverse_complement(sequence: &[u8]) -> Vec<u8> {
    sequence
        .iter()
        .rev()
        .map(|&b| match b {
            b'A' => b'T',
            b'T' => b'A',
            b'C' => b'G',
            b'G' => b'C',
            b'a' => b't',
            b't' => b'a',
            b'c' => b'g',
            b'g' => b'c',
            other => other,
        })
        .collect()
}

/// Fraction of G and C among all bases.
pub fn gc_fraction(sequence: &[u8]) -> f64 {
    if sequence.is_empty() {
        return 0.0;
    }
    let gc = sequence
        .iter()
        .filter(|b| matches!(b, b'G' | b'C' | b'g' | b'c'))
        .count();
    gc as f64 / sequence.len() as f64
}

/// Whether every base is one of A, C, G, T (upper case).
pub fn is_acgt(sequence: &[u8]) -> bool {
    sequence
        .iter()
        .all(|b| matches!(b, b'A' | b'C' | b'G' | b'T'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_complement_and_gc() {
        assert_eq!(reverse_complement(b"AACGTN"), b"NACGTT");
        assert_eq!(gc_fraction(b"GGAT"), 0.5);
        assert!(is_acgt(b"ACGT") && !is_acgt(b"ACNT") && !is_acgt(b"acgt"));
    }
}
