//! The logic behind each CLI subcommand (main.rs only parses arguments).

pub mod convert;
pub mod data_info;
pub mod embed;
pub mod evaluate;
pub mod inspect;
pub mod motif_scan;
pub mod tokenize;
pub mod train;
pub mod variant_windows;
