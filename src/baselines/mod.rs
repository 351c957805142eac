//! Baselines trained models must beat.

pub mod kmer_logistic;

pub use kmer_logistic::{kmer_frequencies, KmerLogistic};
