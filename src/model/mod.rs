//! The hookable DNABERT model: config, loading, forward pass, hooks and heads.

pub mod batch;
pub mod batched_matmul;
pub mod bert;
pub mod checkpoint;
pub mod config;
pub mod dense;
pub mod graft;
pub mod heads;
pub mod hook_point;
pub mod hooks;
pub mod kernels;
pub mod layer_norm;
pub mod load;
pub mod ops;
pub mod row_ops;
pub mod source;
pub mod vector_math;
pub mod weights;

pub use batch::Batch;
pub use bert::{mean_over_kmers, HookedModel, Output};
pub use config::{Activation, ModelConfig};
pub use heads::HeadKind;
pub use hooks::{ActivationCache, BlockSite, HookPattern, HookPoint, Hooks, Intervention};
pub use load::{load, load_dir, LoadOptions, LoadedModel, ModelSource};
