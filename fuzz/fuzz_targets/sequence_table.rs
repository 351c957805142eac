//! CSV / TSV sequence tables (a tab in the first line makes it TSV), with and without a label
//! column.
#![no_main]
#[path = "common.rs"]
mod common;

use genolens::data::{open_sequences, TableColumns};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let first_line = data.split(|&b| b == b'\n').next().unwrap_or_default();
    let name = if first_line.contains(&b'\t') {
        "in.tsv"
    } else {
        "in.csv"
    };
    let path = common::file(name, data);
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
