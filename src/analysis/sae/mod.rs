//! Sparse autoencoders on any hook's activations (methods.md §6): an on-disk activation cache
//! ([`cache`]), the SAE and its training ([`model`]), reconstruction metrics ([`metrics`]) and
//! SAELens's on-disk layout ([`layout`]).

pub mod cache;
pub mod concepts;
pub mod fidelity;
pub mod fused;
pub mod layout;
pub mod meaning;
pub mod metrics;
pub mod model;
pub mod probes;
pub mod study;
