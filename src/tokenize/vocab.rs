//! DNABERT `vocab.txt`: five special tokens, then every k-mer (ids read from the file, never assumed).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{GenolensError, Result};

/// Ids of DNABERT's special tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialTokens {
    /// `[PAD]`.
    pub pad: u32,
    /// `[UNK]`.
    pub unk: u32,
    /// `[CLS]`.
    pub cls: u32,
    /// `[SEP]`.
    pub sep: u32,
    /// `[MASK]`.
    pub mask: u32,
}

/// A k-mer vocabulary.
#[derive(Debug, Clone)]
pub struct KmerVocab {
    /// k (3..=6 for DNABERT).
    pub k: usize,
    /// Special token ids.
    pub special: SpecialTokens,
    ids: HashMap<String, u32>,
    tokens: Vec<String>,
    /// Where it was read from (or `<generated>`).
    pub path: PathBuf,
}

const BASES: [char; 4] = ['A', 'T', 'C', 'G'];

/// A, C, G, T → 0, 1, 2, 3 (alphabetical, as base-4 k-mer indices use); anything else → None.
pub fn acgt_index(base: u8) -> Option<usize> {
    match base {
        b'A' => Some(0),
        b'C' => Some(1),
        b'G' => Some(2),
        b'T' => Some(3),
        _ => None,
    }
}

impl KmerVocab {
    /// Reads and checks a `vocab.txt` (one token per line, id = line index).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| GenolensError::io(path, e))?;
        let tokens: Vec<String> = text
            .lines()
            .map(|line| line.trim_end_matches('\r').to_string())
            .collect();
        Self::from_tokens(tokens, path)
    }

    /// DNABERT's own vocabulary for k: specials, then k-mers in `itertools.product('ATCG', repeat=k)` order.
    pub fn dnabert(k: usize) -> Self {
        let mut tokens: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
            .map(String::from)
            .to_vec();
        for index in 0..4usize.pow(k as u32) {
            let kmer: String = (0..k)
                .map(|position| BASES[(index / 4usize.pow((k - 1 - position) as u32)) % 4])
                .collect();
            tokens.push(kmer);
        }
        Self::from_tokens(tokens, Path::new("<generated>")).expect("generated vocab is valid")
    }

    fn from_tokens(tokens: Vec<String>, path: &Path) -> Result<Self> {
        let fail = |message: String| GenolensError::Vocab {
            path: path.to_path_buf(),
            message,
        };
        let ids = one_to_one_ids(&tokens).map_err(fail)?;
        let special_id = |name: &str| {
            ids.get(name).copied().ok_or_else(|| {
                fail(format!(
                    "special token {name} not found (expected a DNABERT vocab.txt)"
                ))
            })
        };
        let special = SpecialTokens {
            pad: special_id("[PAD]")?,
            unk: special_id("[UNK]")?,
            cls: special_id("[CLS]")?,
            sep: special_id("[SEP]")?,
            mask: special_id("[MASK]")?,
        };
        let kmers: Vec<&String> = tokens
            .iter()
            .filter(|t| !t.starts_with('[') && !t.is_empty())
            .collect();
        let k = kmers
            .first()
            .map(|t| t.len())
            .ok_or_else(|| fail("no k-mer tokens".into()))?;
        if let Some((line, bad)) = tokens.iter().enumerate().find(|(_, t)| {
            !t.starts_with('[')
                && !t.is_empty()
                && (t.len() != k || !t.chars().all(|c| BASES.contains(&c)))
        }) {
            return Err(fail(format!(
                "line {}: token {bad:?} is not an upper-case {k}-mer over ACGT",
                line + 1
            )));
        }
        // DNABERT uses k = 3 to 6; past 12 the 4^k k-mers would not fit in memory (and past 31
        // in a usize), so such a file cannot be a complete vocabulary.
        const MAX_K: usize = 12;
        if k > MAX_K {
            return Err(fail(format!(
                "{k}-mer tokens (the first is {:?}): a complete vocabulary of 4^{k} k-mers is \
                 not possible; expected k from 1 to {MAX_K} (DNABERT uses 3 to 6)",
                kmers[0]
            )));
        }
        let expected = 4usize.pow(k as u32);
        if kmers.len() != expected {
            return Err(fail(format!(
                "{} distinct {k}-mers, expected all {expected}",
                kmers.len()
            )));
        }
        Ok(KmerVocab {
            k,
            special,
            ids,
            tokens,
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

    /// Ids of every k-mer token (not the specials), ascending.
    pub fn kmer_ids(&self) -> Vec<u32> {
        self.tokens
            .iter()
            .enumerate()
            .filter(|(_, t)| !t.starts_with('[') && !t.is_empty())
            .map(|(i, _)| i as u32)
            .collect()
    }

    /// Number of tokens (the model's vocab_size).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True for an empty vocabulary (never, once constructed).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The file contents (one token per line, trailing newline).
    pub fn to_file_text(&self) -> String {
        let mut text = self.tokens.join("\n");
        text.push('\n');
        text
    }
}

/// The id of every token (its line index), refusing a token listed twice: a vocabulary must map
/// ids one to one. The error names both 1-based lines.
pub(crate) fn one_to_one_ids(
    tokens: &[String],
) -> std::result::Result<HashMap<String, u32>, String> {
    let mut ids = HashMap::with_capacity(tokens.len());
    for (line, token) in tokens.iter().enumerate() {
        if let Some(first) = ids.insert(token.clone(), line as u32) {
            return Err(format!(
                "line {}: token {token:?} repeats line {} (a vocabulary must map ids one to one)",
                line + 1,
                first + 1
            ));
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_vocab_matches_dnabert_ids() {
        let vocab = KmerVocab::dnabert(6);
        assert_eq!(vocab.len(), 4101);
        assert_eq!(vocab.id("ACGTAG"), Some(728));
        assert_eq!(vocab.id("AAAAAA"), Some(5));
        assert_eq!(KmerVocab::dnabert(3).len(), 69);
    }

    /// Fuzzing regression (fuzz/vocab): one 35-mer after the specials overflowed 4^k (a panic
    /// where overflow checks are on, a wrong expected size where they are not).
    #[test]
    fn refuses_kmers_too_long_for_a_complete_vocabulary() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/fuzz/vocab-35-mer.txt");
        let err = KmerVocab::from_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("vocab-35-mer.txt")
                && err.contains("35-mer tokens")
                && err.contains("3 to 6"),
            "{err}"
        );
    }

    #[test]
    fn rejects_a_wordpiece_vocab() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vocab.txt");
        std::fs::write(&path, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n##ing\n").unwrap();
        let err = KmerVocab::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("vocab.txt") && err.contains("line 6"), "{err}");
    }
}
