//! Training in candle: MLM pretraining of k-mer BERTs (DNABERT's span masking) and
//! sequence-classification fine-tuning, seeded and resumable, saved in the HF layout.

pub mod adamw;
pub mod card;
pub mod checkpoint;
pub mod classify;
pub mod corpus;
pub mod dropout;
pub mod init;
pub mod kmer_baseline;
pub mod kmer_init;
pub mod masking;
pub mod mlm;
pub mod schedule;
pub mod timing;
