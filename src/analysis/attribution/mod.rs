//! Attribution methods on the hooked model (methods.md §7), batched: relevance of each token's
//! word-embedding input (summed over hidden dims, the LXT/captum convention).

pub mod attention_maps;
pub mod integrated_gradients;
pub mod ism;
pub mod nucleotides;

pub use attention_maps::{attention_maps, AttentionMaps};
pub use integrated_gradients::{
    integrated_gradients, path_points, Baseline, IgResult, IgSettings, Quadrature, TargetKind,
};
pub use ism::{ism, IsmResult};
pub use nucleotides::{kmer_scores_to_nucleotides, scale_to_unit, Spread};
