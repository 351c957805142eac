//! vocab.txt as a DNABERT k-mer vocabulary and as a Nucleotide Transformer vocabulary.
#![no_main]
#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = common::file("vocab.txt", data);
    if let Ok(vocab) = genolens::tokenize::KmerVocab::from_file(&path) {
        let tokenizer = genolens::tokenize::KmerTokenizer::new(vocab, 64);
        let _ = tokenizer.tokenize("fuzz", "ACGTNACGTTGCA");
    }
    // The model's vocab_size: the file's line count (NT v2), or two less (NT v1 lists <eos>
    // <bos> past it).
    let lines = data.split(|&b| b == b'\n').count();
    let vocab_size = lines.saturating_sub(usize::from(data.first() == Some(&b'<')) * 2);
    if let Ok(tokenizer) = genolens::tokenize::NtTokenizer::from_file(&path, vocab_size, 64) {
        let _ = tokenizer.tokenize("fuzz", "ACGTNACGTTGCAAC");
    }
});
