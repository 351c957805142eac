//! Statistics shared by studies and model cards.

pub mod auroc;

pub use auroc::{auroc, auroc_difference_with_ci, auroc_with_ci, AurocEstimate};
