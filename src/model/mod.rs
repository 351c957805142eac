//! The hookable models (DNABERT, DNABERT-2, Nucleotide Transformer): config, loading, forward pass, hooks and heads.

pub mod batch;
pub mod bert;
pub mod checkpoint;
pub mod config;
pub mod dnabert2;
pub mod esm;
pub mod heads;
pub mod hooks;
pub mod load;
pub mod rows;
pub mod source;
pub mod weights;

pub use batch::Batch;
pub use bert::{HookedModel, Output};
pub use config::{Activation, Architecture, GenolensRecord, ModelConfig, TrainingData};
pub use heads::HeadKind;
pub use hooks::{
    ActivationCache, BlockSite, HookLayout, HookPattern, HookPoint, Hooks, Intervention,
    RelevanceRules,
};
pub use load::{load, load_dir, LoadOptions, LoadedModel, ModelSource};
