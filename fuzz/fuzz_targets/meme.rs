//! MEME motif files, then the motifs' log-odds matrices and p-value tables as `data scan`
//! builds them.
#![no_main]
#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = common::file("in.meme", data);
    if let Ok(motifs) = genolens::motif::read_meme(&path) {
        for motif in motifs.iter().take(4) {
            let matrix = genolens::motif::LogOdds::from_motif(motif, 0.1);
            let _ = matrix.remaining_maxima();
        }
    }
});
