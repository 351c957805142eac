//! Statistics shared by studies and model cards.

pub mod auroc;
pub mod summary;

pub use auroc::{auroc, auroc_difference_with_ci, auroc_with_ci, AurocEstimate};
pub use summary::{bootstrap_mean_ci, mean_with_ci, MeanEstimate};
