//! DNABERT-2's byte-pair tokenizer, read from its `tokenizer.json` with the `tokenizers` crate
//! (the same library HF's fast tokenizer runs): Whitespace pre-tokenizer, BPE with `[UNK]`,
//! `[CLS] … [SEP]`. genolens upper-cases the sequence first, as everywhere; the real tokenizer
//! has no normaliser, so without that each lower-case base would become one `[UNK]`. `N` and
//! the other IUPAC codes are not in the vocabulary: each such base is one `[UNK]` (counted),
//! and the merges continue around it.

use std::path::{Path, PathBuf};

use crate::error::{GenolensError, Result};
use crate::tokenize::kmer::{normalise_dna, Tokenized};
use crate::tokenize::vocab::SpecialTokens;

/// A `tokenizer.json` BPE tokenizer.
#[derive(Clone)]
pub struct BpeTokenizer {
    inner: tokenizers::Tokenizer,
    /// Special ids (`[PAD]`, `[UNK]`, `[CLS]`, `[SEP]`, `[MASK]`).
    pub special: SpecialTokens,
    /// Most tokens per input, [CLS] and [SEP] included.
    pub max_tokens: usize,
    /// Where it was read from.
    pub path: PathBuf,
}

impl std::fmt::Debug for BpeTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BpeTokenizer")
            .field("path", &self.path)
            .field("vocab", &self.len())
            .field("max_tokens", &self.max_tokens)
            .finish()
    }
}

impl BpeTokenizer {
    /// Reads `tokenizer.json`; its five special tokens must be there and every id below the
    /// model's `vocab_size`.
    pub fn from_file(path: &Path, vocab_size: usize, max_tokens: usize) -> Result<Self> {
        let fail = |message: String| GenolensError::Vocab {
            path: path.to_path_buf(),
            message,
        };
        if !path.is_file() {
            return Err(GenolensError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            ));
        }
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| fail(format!("not a readable tokenizer.json: {e}")))?;
        let id = |token: &str| {
            inner.token_to_id(token).ok_or_else(|| {
                fail(format!(
                    "special token {token} not found (expected DNABERT-2's tokenizer.json)"
                ))
            })
        };
        let special = SpecialTokens {
            pad: id("[PAD]")?,
            unk: id("[UNK]")?,
            cls: id("[CLS]")?,
            sep: id("[SEP]")?,
            mask: id("[MASK]")?,
        };
        let size = inner.get_vocab_size(true);
        if size > vocab_size {
            return Err(fail(format!(
                "{size} tokens but config.json says vocab_size {vocab_size}"
            )));
        }
        Ok(BpeTokenizer {
            inner,
            special,
            max_tokens,
            path: path.to_path_buf(),
        })
    }

    /// Vocabulary size (added tokens included).
    pub fn len(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Never true once constructed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Token text of an id.
    pub fn token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Longest sequence that always fits: every BPE token covers at least one base.
    pub fn max_sequence_length(&self) -> usize {
        self.max_tokens.saturating_sub(2)
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
        let text = std::str::from_utf8(&bases).expect("normalised bases are ASCII");
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|e| GenolensError::Sequence {
                sequence: sequence_id.to_string(),
                message: format!("BPE tokenisation failed: {e}"),
            })?;
        let ids = encoding.get_ids().to_vec();
        let spans = encoding
            .get_special_tokens_mask()
            .iter()
            .zip(encoding.get_offsets())
            .map(|(&special, &(start, end))| (special == 0).then_some(start..end))
            .collect();
        if ids.len() > self.max_tokens {
            return Err(GenolensError::Sequence {
                sequence: sequence_id.to_string(),
                message: format!(
                    "{} nt make {} tokens, over the model's {} ([CLS] and [SEP] included); crop \
                     around the region of interest or tile it",
                    bases.len(),
                    ids.len(),
                    self.max_tokens
                ),
            });
        }
        Ok(Tokenized {
            unknown_tokens: ids.iter().filter(|&&id| id == self.special.unk).count(),
            ids,
            spans,
            sequence_length: bases.len(),
            ambiguous_bases: bases.iter().filter(|b| !b"ACGT".contains(b)).count(),
        })
    }
}
