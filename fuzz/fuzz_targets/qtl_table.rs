//! GTEx-style QTL tables (TSV or CSV, plain or gzip) under both label rules.
#![no_main]
#[path = "common.rs"]
mod common;

use genolens::data::variants::{read_qtl_table, QtlLabelRule};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let first_line = data.split(|&b| b == b'\n').next().unwrap_or_default();
    let name = match (common::gzip(data), first_line.contains(&b',')) {
        (true, _) => "in.tsv.gz",
        (false, true) => "in.csv",
        (false, false) => "in.tsv",
    };
    let path = common::file(name, data);
    for rule in [QtlLabelRule::Significance, QtlLabelRule::SlopeSign] {
        let _ = read_qtl_table(&path, rule);
    }
});
