//! FASTA (plain or gzip) through the sequence reader and the unique-id check.
#![no_main]
#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = common::file(
        if common::gzip(data) {
            "in.fa.gz"
        } else {
            "in.fa"
        },
        data,
    );
    if let Ok(reader) = genolens::data::fasta::FastaReader::open(&path) {
        for record in reader.unique_ids() {
            if record.is_err() {
                break;
            }
        }
    }
    let columns = genolens::data::TableColumns::default();
    if let Ok(examples) = genolens::data::open_sequences(&path, &columns) {
        examples.take_while(Result::is_ok).for_each(drop);
    }
});
