//! DNA → tokens: overlapping k-mers, token ↔ nucleotide spans, variant coverage and cropping.

pub mod kmer;
pub mod spans;
pub mod vocab;

pub use kmer::{KmerTokenizer, Tokenized};
pub use spans::{covering_kmers, covering_token_positions, crop_window};
pub use vocab::{KmerVocab, SpecialTokens};
