//! Statistics shared by studies and model cards.

pub mod auroc;

pub use auroc::{auroc, auroc_with_ci, AurocEstimate};
