//! Parquet sequence tables, with and without a label column.
#![no_main]
#[path = "common.rs"]
mod common;

use genolens::data::{open_sequences, TableColumns};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = common::file("in.parquet", data);
    for label in [None, Some("label".to_string())] {
        let columns = TableColumns {
            label,
            ..TableColumns::default()
        };
        if let Ok(examples) = open_sequences(&path, &columns) {
            examples.take_while(Result::is_ok).for_each(drop);
        }
    }
});
