//! A reference FASTA and a VCF (the input split at its first NUL byte: FASTA before, VCF
//! after; either may be gzip), then the REF/ALT windows of every variant at a length taken from
//! the input's last byte (0 included).
#![no_main]
#[path = "common.rs"]
mod common;

use genolens::data::variants::{check_window, read_vcf, ReferenceGenome};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(split) = data.iter().position(|&b| b == 0) else {
        return;
    };
    let (fasta, vcf) = (&data[..split], &data[split + 1..]);
    let length = usize::from(*data.last().unwrap_or(&0)) % 64;
    let reference = common::file(
        if common::gzip(fasta) {
            "ref.fa.gz"
        } else {
            "ref.fa"
        },
        fasta,
    );
    let vcf_path = common::file(
        if common::gzip(vcf) {
            "in.vcf.gz"
        } else {
            "in.vcf"
        },
        vcf,
    );
    let Ok((variants, _skipped)) = read_vcf(&vcf_path) else {
        return;
    };
    let Ok(genome) = ReferenceGenome::read_for(&reference, &variants) else {
        return;
    };
    if check_window(length, length / 2).is_err() {
        return;
    }
    for variant in &variants {
        let _ = genome.window(&vcf_path, variant, length, length / 2);
    }
});
