//! BED files (plain or gzip), then a coverage track over what was read.
#![no_main]
#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = common::file(
        if common::gzip(data) {
            "in.bed.gz"
        } else {
            "in.bed"
        },
        data,
    );
    if let Ok(records) = genolens::data::bed::read_bed(&path) {
        if let Some(first) = records.first() {
            let chrom = first.chrom.clone();
            let _ = genolens::data::bed::coverage_track(&records, &chrom, 0, 256);
        }
    }
});
