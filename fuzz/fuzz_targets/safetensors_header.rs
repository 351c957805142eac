//! safetensors files (header and data offsets) through the checkpoint reader.
#![no_main]
#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = common::file("model.safetensors", data);
    let _ = genolens::model::checkpoint::read_tensors(&path);
});
