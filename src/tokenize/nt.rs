//! The Nucleotide Transformer's tokenizer (v1 and v2 `vocab.txt`): non-overlapping 6-mers from
//! the left, `<cls>` first, no end token. A base run shorter than 6 (at the end, or before a
//! break) becomes single-base tokens; `N` is a token of its own and restarts the 6-mer frame.
//! Other IUPAC codes have no token: each run of them becomes one `<unk>` (as HF's
//! `EsmTokenizer` does with unmatched text) and also restarts the frame.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{GenolensError, Result};
use crate::tokenize::kmer::{normalise_dna, Tokenized};
use crate::tokenize::vocab::SpecialTokens;

/// Length of an NT k-mer token.
pub const NT_K: usize = 6;

/// The NT tokenizer over a `vocab.txt`.
#[derive(Debug, Clone)]
pub struct NtTokenizer {
    ids: HashMap<String, u32>,
    tokens: Vec<String>,
    /// Special ids. NT has no separator: `sep` repeats `<cls>`'s id, so code that excludes
    /// special tokens by id stays right.
    pub special: SpecialTokens,
    /// Most tokens per input, `<cls>` included (1000 for v1, 2048 for v2).
    pub max_tokens: usize,
    /// Where the vocabulary was read from.
    pub path: PathBuf,
}

impl NtTokenizer {
    /// Reads `vocab.txt` (id = line index). Every 6-mer over ACGT, the single bases A, C, G, T,
    /// N and `<unk> <pad> <mask> <cls>` must be present once, with ids below the model's
    /// `vocab_size` (v1's file lists `<eos> <bos>` after the model's 4 105 ids; they are never
    /// emitted).
    pub fn from_file(path: &Path, vocab_size: usize, max_tokens: usize) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| GenolensError::io(path, e))?;
        let tokens: Vec<String> = text
            .lines()
            .map(|line| line.trim_end_matches('\r').to_string())
            .collect();
        Self::from_tokens(tokens, path, vocab_size, max_tokens)
    }

    fn from_tokens(
        tokens: Vec<String>,
        path: &Path,
        vocab_size: usize,
        max_tokens: usize,
    ) -> Result<Self> {
        let fail = |message: String| GenolensError::Vocab {
            path: path.to_path_buf(),
            message,
        };
        let ids = crate::tokenize::vocab::one_to_one_ids(&tokens).map_err(fail)?;
        let id = |token: &str| -> Result<u32> {
            let id = *ids.get(token).ok_or_else(|| {
                fail(format!(
                    "token {token:?} not found (expected a Nucleotide Transformer vocab.txt)"
                ))
            })?;
            if id as usize >= vocab_size {
                return Err(fail(format!(
                    "token {token:?} has id {id}, outside the model's vocab_size {vocab_size}"
                )));
            }
            Ok(id)
        };
        let cls = id("<cls>")?;
        let special = SpecialTokens {
            pad: id("<pad>")?,
            unk: id("<unk>")?,
            cls,
            sep: cls,
            mask: id("<mask>")?,
        };
        for base in ["A", "C", "G", "T", "N"] {
            id(base)?;
        }
        let mut kmer = [b'A'; NT_K];
        for index in 0..4usize.pow(NT_K as u32) {
            for (position, base) in kmer.iter_mut().enumerate() {
                *base = b"ACGT"[(index >> (2 * (NT_K - 1 - position))) & 3];
            }
            id(std::str::from_utf8(&kmer).expect("ASCII"))?;
        }
        Ok(NtTokenizer {
            ids,
            tokens,
            special,
            max_tokens,
            path: path.to_path_buf(),
        })
    }

    /// Id of a token, if in the vocabulary.
    pub fn id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// Token text of an id.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// Lines of the vocabulary file.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Never true once constructed.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Longest sequence that always fits: (max_tokens − 1) 6-mers.
    pub fn max_sequence_length(&self) -> usize {
        self.max_tokens.saturating_sub(1) * NT_K
    }

    /// Tokenises one sequence (upper-cased first); more than `max_tokens` tokens is an error.
    pub fn tokenize(&self, sequence_id: &str, sequence: &str) -> Result<Tokenized> {
        let bases = normalise_dna(sequence_id, sequence)?;
        if bases.is_empty() {
            return Err(GenolensError::Sequence {
                sequence: sequence_id.to_string(),
                message: "empty sequence".into(),
            });
        }
        let mut ids = vec![self.special.cls];
        let mut spans = vec![None];
        let mut unknown_tokens = 0;
        let mut start = 0;
        while start < bases.len() {
            let base = bases[start];
            if b"ACGT".contains(&base) {
                let run = bases[start..]
                    .iter()
                    .take_while(|b| b"ACGT".contains(b))
                    .count();
                let mut offset = start;
                let end = start + run;
                while offset < end {
                    let width = if end - offset >= NT_K { NT_K } else { 1 };
                    let text = std::str::from_utf8(&bases[offset..offset + width]).expect("ASCII");
                    ids.push(self.ids[text]);
                    spans.push(Some(offset..offset + width));
                    offset += width;
                }
                start = end;
            } else if base == b'N' {
                ids.push(self.ids["N"]);
                spans.push(Some(start..start + 1));
                start += 1;
            } else {
                let run = bases[start..]
                    .iter()
                    .take_while(|b| !b"ACGTN".contains(b))
                    .count();
                ids.push(self.special.unk);
                spans.push(Some(start..start + run));
                unknown_tokens += 1;
                start += run;
            }
        }
        if ids.len() > self.max_tokens {
            return Err(GenolensError::Sequence {
                sequence: sequence_id.to_string(),
                message: format!(
                    "{} nt make {} tokens, over the model's {} (<cls> included); crop around the \
                     region of interest or tile it",
                    bases.len(),
                    ids.len(),
                    self.max_tokens
                ),
            });
        }
        Ok(Tokenized {
            ids,
            spans,
            sequence_length: bases.len(),
            ambiguous_bases: bases.iter().filter(|b| !b"ACGT".contains(b)).count(),
            unknown_tokens,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2() -> NtTokenizer {
        let mut tokens: Vec<String> = ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>"]
            .map(String::from)
            .to_vec();
        for index in 0..4096usize {
            tokens.push(
                (0..6)
                    .map(|p| ['A', 'T', 'C', 'G'][(index >> (2 * (5 - p))) & 3])
                    .collect(),
            );
        }
        tokens.extend(["A", "T", "C", "G", "N"].map(String::from));
        NtTokenizer::from_tokens(tokens, Path::new("<v2>"), 4107, 2048).unwrap()
    }

    #[test]
    fn six_mers_from_the_left_singles_and_n() {
        let tokenizer = v2();
        // A T C G → 0 1 2 3; id = 6 + base-4 index: ACGTAG = 0,2,3,1,0,3 → 723.
        let t = tokenizer.tokenize("s", "ACGTAGcatT").unwrap();
        assert_eq!(t.ids[1], 6 + 723);
        assert_eq!(tokenizer.token(t.ids[1]), Some("ACGTAG"));
        assert_eq!(
            t.ids[2..]
                .iter()
                .map(|&i| tokenizer.token(i).unwrap())
                .collect::<Vec<_>>(),
            ["C", "A", "T", "T"]
        );
        let t = tokenizer
            .tokenize("s", "TTGACNGTACGATCGATTACAGGCT")
            .unwrap();
        assert_eq!(
            t.ids,
            [3, 4103, 4103, 4105, 4102, 4104, 4106, 3378, 1739, 580, 4103]
        );
        assert_eq!(t.spans[6], Some(5..6));
        assert_eq!(t.spans[7], Some(6..12));
        assert_eq!(t.kmer_count(), 10);
    }

    #[test]
    fn other_iupac_runs_become_one_unk() {
        let tokenizer = v2();
        let t = tokenizer.tokenize("s", "ACRYNACGTAC").unwrap();
        let texts: Vec<_> = t.ids.iter().map(|&i| tokenizer.token(i).unwrap()).collect();
        assert_eq!(texts, ["<cls>", "A", "C", "<unk>", "N", "ACGTAC"]);
        assert_eq!(t.spans[3], Some(2..4));
        assert_eq!(t.unknown_tokens, 1);
    }

    #[test]
    fn duplicate_or_missing_tokens_are_refused() {
        let mut tokens: Vec<String> = ["<unk>", "<pad>", "<mask>", "<cls>", "<pad>"]
            .map(String::from)
            .to_vec();
        let err = NtTokenizer::from_tokens(tokens.clone(), Path::new("v.txt"), 10, 10)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 5") && err.contains("repeats line 2"),
            "{err}"
        );
        tokens.pop();
        let err = NtTokenizer::from_tokens(tokens, Path::new("v.txt"), 10, 10)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"A\" not found"), "{err}");
    }
}
