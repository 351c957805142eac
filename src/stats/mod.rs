//! Statistics shared by studies and model cards.

pub mod auroc;
pub mod hypothesis;
pub mod summary;

pub use auroc::{auroc, auroc_difference_with_ci, auroc_with_ci, AurocEstimate};
pub use hypothesis::{
    average_ranks, benjamini_hochberg, cohens_d, hedges_g, mann_whitney_u, pearson, permutation_p,
    spearman, student_t, welch_t, Correlation, MannWhitney, MannWhitneyMethod, TTest,
};
pub use summary::{bootstrap_mean_ci, mean_with_ci, MeanEstimate};
