//! The hookable DNABERT model: config, loading, forward pass, hooks and heads.

pub mod batch;
pub mod bert;
pub mod checkpoint;
pub mod config;
pub mod heads;
pub mod hooks;
pub mod load;
pub mod rows;
pub mod source;
pub mod weights;

pub use batch::Batch;
pub use bert::{HookedModel, Output};
pub use config::{Activation, GenolensRecord, ModelConfig, TrainingData};
pub use heads::HeadKind;
pub use hooks::{
    ActivationCache, BlockSite, HookPattern, HookPoint, Hooks, Intervention, RelevanceRules,
};
pub use load::{load, load_dir, LoadOptions, LoadedModel, ModelSource};
