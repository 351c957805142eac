//! Overlapping k-mer tokenisation (stride 1), DNABERT's scheme: `[CLS] t_0 … t_{L-k} [SEP]`.

use std::ops::Range;

use crate::error::{GenolensError, Result};
use crate::tokenize::vocab::KmerVocab;

/// IUPAC ambiguity codes (and N): accepted, counted, and tokenised as [UNK] on purpose.
const AMBIGUOUS: &[u8] = b"NRYKMSWBDHV";

/// A tokenised sequence with its token ↔ nucleotide map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokenized {
    /// Token ids including [CLS] and [SEP].
    pub ids: Vec<u32>,
    /// Nucleotide span [start, end) of each token; `None` for [CLS]/[SEP].
    pub spans: Vec<Option<Range<usize>>>,
    /// Length of the (upper-cased) DNA sequence in nucleotides.
    pub sequence_length: usize,
    /// Count of non-ACGT bases (N and IUPAC codes).
    pub ambiguous_bases: usize,
    /// Count of k-mers that became [UNK] because they contain such a base.
    pub unknown_tokens: usize,
}

impl Tokenized {
    /// Number of sequence tokens (those with a nucleotide span: not [CLS]/[SEP]).
    pub fn kmer_count(&self) -> usize {
        self.spans.iter().filter(|span| span.is_some()).count()
    }
}

/// Upper-cases and checks a DNA sequence: ACGT plus IUPAC codes; anything else is an error
/// naming the sequence, 0-based position and character.
pub fn normalise_dna(sequence_id: &str, sequence: &str) -> Result<Vec<u8>> {
    let mut bases = Vec::with_capacity(sequence.len());
    for (position, character) in sequence.chars().enumerate() {
        let upper = character.to_ascii_uppercase();
        if upper.is_ascii()
            && (b"ACGT".contains(&(upper as u8)) || AMBIGUOUS.contains(&(upper as u8)))
        {
            bases.push(upper as u8);
        } else {
            return Err(GenolensError::Sequence {
                sequence: sequence_id.to_string(),
                message: format!(
                    "character {character:?} at position {position} (0-based) is not a DNA base \
                     (expected A, C, G, T or an IUPAC code such as N)"
                ),
            });
        }
    }
    Ok(bases)
}

/// DNABERT's k-mer tokenizer over a vocab.txt.
#[derive(Debug, Clone)]
pub struct KmerTokenizer {
    /// The vocabulary (its k and special ids).
    pub vocab: KmerVocab,
    /// Maximum tokens per input including [CLS]/[SEP] (the model's position count).
    pub max_tokens: usize,
}

impl KmerTokenizer {
    /// A tokenizer for `vocab` and a model with `max_tokens` positions.
    pub fn new(vocab: KmerVocab, max_tokens: usize) -> Self {
        KmerTokenizer { vocab, max_tokens }
    }

    /// k.
    pub fn k(&self) -> usize {
        self.vocab.k
    }

    /// Longest sequence (nt) that fits: (max_tokens − 2) k-mers.
    pub fn max_sequence_length(&self) -> usize {
        self.max_tokens.saturating_sub(2) + self.k() - 1
    }

    /// Upper-cases and checks a DNA sequence (see [`normalise_dna`]).
    pub fn normalise(&self, sequence_id: &str, sequence: &str) -> Result<Vec<u8>> {
        normalise_dna(sequence_id, sequence)
    }

    /// Tokenises one sequence; too short (< k) or too long (> max_sequence_length) is an error.
    pub fn tokenize(&self, sequence_id: &str, sequence: &str) -> Result<Tokenized> {
        let bases = self.normalise(sequence_id, sequence)?;
        let k = self.k();
        if bases.len() < k {
            return Err(GenolensError::Sequence {
                sequence: sequence_id.to_string(),
                message: format!("{} nt is shorter than one {k}-mer", bases.len()),
            });
        }
        if bases.len() > self.max_sequence_length() {
            return Err(GenolensError::Sequence {
                sequence: sequence_id.to_string(),
                message: format!(
                    "{} nt exceeds the model's window of {} nt ({} {k}-mers); crop around the region of \
                     interest (tokenize::crop_window) or tile it",
                    bases.len(),
                    self.max_sequence_length(),
                    self.max_tokens - 2
                ),
            });
        }
        let special = self.vocab.special;
        let kmer_count = bases.len() - k + 1;
        let mut ids = Vec::with_capacity(kmer_count + 2);
        let mut spans = Vec::with_capacity(kmer_count + 2);
        ids.push(special.cls);
        spans.push(None);
        let mut unknown_tokens = 0;
        for start in 0..kmer_count {
            let kmer = std::str::from_utf8(&bases[start..start + k]).expect("ASCII bases");
            let id = match self.vocab.id(kmer) {
                Some(id) => id,
                None => {
                    unknown_tokens += 1;
                    special.unk
                }
            };
            ids.push(id);
            spans.push(Some(start..start + k));
        }
        ids.push(special.sep);
        spans.push(None);
        let ambiguous_bases = bases.iter().filter(|b| !b"ACGT".contains(b)).count();
        Ok(Tokenized {
            ids,
            spans,
            sequence_length: bases.len(),
            ambiguous_bases,
            unknown_tokens,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer(k: usize) -> KmerTokenizer {
        KmerTokenizer::new(KmerVocab::dnabert(k), 512)
    }

    #[test]
    fn matches_dnabert_golden_vectors() {
        // models.md §2.5 (verified against the real vocab files).
        let six = tokenizer(6).tokenize("s", "ACGTAGCATCGGATCTA").unwrap();
        assert_eq!(
            six.ids,
            vec![2, 728, 2899, 3389, 1254, 907, 3616, 2164, 449, 1782, 3019, 3870, 3177, 3]
        );
        let three = tokenizer(3).tokenize("s", "ACGTAGCATCGGATCTA").unwrap();
        assert_eq!(
            three.ids,
            vec![2, 16, 50, 57, 24, 19, 61, 38, 11, 32, 52, 65, 54, 11, 30, 41, 3]
        );
    }

    #[test]
    fn lowercase_is_uppercased() {
        let t = tokenizer(6);
        assert_eq!(
            t.tokenize("a", "acgtagcatcgg").unwrap(),
            t.tokenize("b", "ACGTAGCATCGG").unwrap()
        );
    }

    #[test]
    fn n_becomes_unk_and_is_counted() {
        let tokens = tokenizer(3).tokenize("s", "ACNGTA").unwrap();
        // k-mers: ACN CNG NGT GTA -> three contain N.
        assert_eq!(tokens.unknown_tokens, 3);
        assert_eq!(tokens.ambiguous_bases, 1);
        assert_eq!(&tokens.ids[1..4], &[1, 1, 1]);
    }

    #[test]
    fn spans_cover_k_nucleotides() {
        let tokens = tokenizer(4).tokenize("s", "ACGTACG").unwrap();
        assert_eq!(tokens.spans[0], None);
        assert_eq!(tokens.spans[1], Some(0..4));
        assert_eq!(tokens.spans[4], Some(3..7));
        assert_eq!(tokens.spans[5], None);
        assert_eq!(tokens.kmer_count(), 4);
    }

    #[test]
    fn bad_characters_name_sequence_and_position() {
        let err = tokenizer(6)
            .tokenize("chr1:100", "ACGTXACGT")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("chr1:100") && err.contains("position 4") && err.contains("'X'"),
            "{err}"
        );
    }

    #[test]
    fn too_long_and_too_short_are_errors() {
        let t = KmerTokenizer::new(KmerVocab::dnabert(6), 12);
        assert_eq!(t.max_sequence_length(), 15);
        assert!(t.tokenize("s", &"A".repeat(15)).is_ok());
        assert!(t
            .tokenize("s", &"A".repeat(16))
            .unwrap_err()
            .to_string()
            .contains("exceeds"));
        assert!(t
            .tokenize("s", "ACG")
            .unwrap_err()
            .to_string()
            .contains("shorter"));
    }
}
