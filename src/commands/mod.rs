//! The logic behind each CLI subcommand (main.rs only parses arguments).

pub mod embed;
pub mod inspect;
