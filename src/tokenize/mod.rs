//! DNA → tokens: DNABERT's overlapping k-mers, DNABERT-2's BPE, the Nucleotide Transformer's
//! non-overlapping 6-mers; token ↔ nucleotide spans, variant coverage and cropping.

pub mod bpe;
pub mod kmer;
pub mod nt;
pub mod spans;
pub mod vocab;

use std::path::Path;

pub use bpe::BpeTokenizer;
pub use kmer::{normalise_dna, KmerTokenizer, Tokenized};
pub use nt::NtTokenizer;
pub use spans::{covering_kmers, covering_positions, covering_token_positions, crop_window};
pub use vocab::{KmerVocab, SpecialTokens};

use crate::error::{GenolensError, Result};

/// A model's tokenizer, whichever family it belongs to. Every kind returns [`Tokenized`] with
/// explicit nucleotide spans (`None` for special tokens), so code that maps tokens to bases
/// works through the spans rather than a fixed layout.
#[derive(Debug, Clone)]
pub enum Tokenizer {
    /// DNABERT-k: overlapping k-mers, stride 1, `[CLS] … [SEP]`.
    Kmer(KmerTokenizer),
    /// DNABERT-2: BPE from `tokenizer.json`, `[CLS] … [SEP]`.
    Bpe(Box<BpeTokenizer>),
    /// Nucleotide Transformer: non-overlapping 6-mers, `<cls>` first, no end token.
    Nt(NtTokenizer),
}

impl From<KmerTokenizer> for Tokenizer {
    fn from(tokenizer: KmerTokenizer) -> Self {
        Tokenizer::Kmer(tokenizer)
    }
}

impl Tokenizer {
    /// Tokenises one sequence (upper-cased first).
    pub fn tokenize(&self, sequence_id: &str, sequence: &str) -> Result<Tokenized> {
        match self {
            Tokenizer::Kmer(t) => t.tokenize(sequence_id, sequence),
            Tokenizer::Bpe(t) => t.tokenize(sequence_id, sequence),
            Tokenizer::Nt(t) => t.tokenize(sequence_id, sequence),
        }
    }

    /// Special token ids (NT has no separator: `sep` repeats `<cls>`).
    pub fn special(&self) -> SpecialTokens {
        match self {
            Tokenizer::Kmer(t) => t.vocab.special,
            Tokenizer::Bpe(t) => t.special,
            Tokenizer::Nt(t) => t.special,
        }
    }

    /// Most tokens per input, special tokens included.
    pub fn max_tokens(&self) -> usize {
        match self {
            Tokenizer::Kmer(t) => t.max_tokens,
            Tokenizer::Bpe(t) => t.max_tokens,
            Tokenizer::Nt(t) => t.max_tokens,
        }
    }

    /// Longest sequence (nt) that always fits the model.
    pub fn max_sequence_length(&self) -> usize {
        match self {
            Tokenizer::Kmer(t) => t.max_sequence_length(),
            Tokenizer::Bpe(t) => t.max_sequence_length(),
            Tokenizer::Nt(t) => t.max_sequence_length(),
        }
    }

    /// Token text of an id.
    pub fn token(&self, id: u32) -> Option<String> {
        match self {
            Tokenizer::Kmer(t) => t.vocab.token(id).map(str::to_string),
            Tokenizer::Bpe(t) => t.token(id),
            Tokenizer::Nt(t) => t.token(id).map(str::to_string),
        }
    }

    /// Number of entries in the vocabulary file.
    pub fn len(&self) -> usize {
        match self {
            Tokenizer::Kmer(t) => t.vocab.len(),
            Tokenizer::Bpe(t) => t.len(),
            Tokenizer::Nt(t) => t.len(),
        }
    }

    /// Never true once constructed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file the vocabulary was read from.
    pub fn path(&self) -> &Path {
        match self {
            Tokenizer::Kmer(t) => &t.vocab.path,
            Tokenizer::Bpe(t) => &t.path,
            Tokenizer::Nt(t) => &t.path,
        }
    }

    /// What kind of tokenizer this is, in words.
    pub fn kind(&self) -> String {
        match self {
            Tokenizer::Kmer(t) => format!("overlapping {}-mers (DNABERT vocab.txt)", t.k()),
            Tokenizer::Bpe(_) => "byte-pair encoding (DNABERT-2 tokenizer.json)".into(),
            Tokenizer::Nt(_) => {
                "non-overlapping 6-mers from the left, N its own token (Nucleotide Transformer vocab.txt)"
                    .into()
            }
        }
    }

    /// Short name: `kmer`, `bpe` or `nt-6mer`.
    pub fn name(&self) -> &'static str {
        match self {
            Tokenizer::Kmer(_) => "kmer",
            Tokenizer::Bpe(_) => "bpe",
            Tokenizer::Nt(_) => "nt-6mer",
        }
    }

    /// Tokens masked together in MLM pretraining: k for DNABERT's span masking (one base is
    /// seen by k overlapping tokens), 1 for BPE and NT 6-mers.
    pub fn mlm_span(&self) -> usize {
        match self {
            Tokenizer::Kmer(t) => t.k(),
            _ => 1,
        }
    }

    /// Ids of every sequence token (not special tokens): MLM's random replacements.
    pub fn sequence_token_ids(&self) -> Vec<u32> {
        match self {
            Tokenizer::Kmer(t) => t.vocab.kmer_ids(),
            Tokenizer::Bpe(t) => {
                let special = t.special;
                let specials = [
                    special.pad,
                    special.unk,
                    special.cls,
                    special.sep,
                    special.mask,
                ];
                (0..t.len() as u32)
                    .filter(|id| !specials.contains(id))
                    .collect()
            }
            Tokenizer::Nt(t) => (0..t.len() as u32)
                .filter(|&id| t.token(id).is_some_and(|tok| !tok.starts_with('<')))
                .collect(),
        }
    }

    /// The overlapping k-mer tokenizer, when this is one.
    pub fn as_kmer(&self) -> Option<&KmerTokenizer> {
        match self {
            Tokenizer::Kmer(t) => Some(t),
            _ => None,
        }
    }

    /// The overlapping k-mer tokenizer, or an error saying that `what` needs one.
    pub fn kmer(&self, what: &str) -> Result<&KmerTokenizer> {
        self.as_kmer().ok_or_else(|| GenolensError::Vocab {
            path: self.path().to_path_buf(),
            message: format!(
                "{what} needs DNABERT's overlapping k-mer tokenizer, and this model's is {}",
                self.kind()
            ),
        })
    }
}
