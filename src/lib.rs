//! genolens: a mechanistic-interpretability harness for genomic language models (DNABERT first).
//!
//! Data flows one way: files → [`data`] → [`tokenize`] → [`model::Batch`] →
//! [`model::HookedModel::forward`] (captures + interventions) → analyses → [`report`] (Parquet).

pub mod analysis;
pub mod baselines;
pub mod bench;
pub mod bench_pieces;
pub mod cli;
pub mod commands;
pub mod data;
pub mod datasets;
pub mod defaults;
pub mod device;
pub mod error;
pub mod experiment;
pub mod interrupt;
pub mod memory;
pub mod model;
pub mod motif;
pub(crate) mod ops;
pub mod progress;
pub mod report;
pub mod stats;
pub mod tokenize;
pub mod train;

pub use error::{GenolensError, Result};
