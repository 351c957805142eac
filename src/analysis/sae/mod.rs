//! Sparse autoencoders on any hook's activations (work in progress on branch sae-wip: the model
//! and its training; caching, metrics, meaning, SAELens layout and probes follow).

pub mod layout;
pub mod metrics;
pub mod model;
