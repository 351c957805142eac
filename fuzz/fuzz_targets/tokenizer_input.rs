//! Arbitrary bytes as a DNA sequence through every tokenizer: DNABERT k-mers (k = 3, 6), the
//! Nucleotide Transformer's 6-mers and a DNABERT-2-style BPE (the committed fixtures').
#![no_main]
#[path = "common.rs"]
mod common;

use std::sync::OnceLock;

use genolens::tokenize::{BpeTokenizer, KmerTokenizer, KmerVocab, NtTokenizer};
use libfuzzer_sys::fuzz_target;

struct Tokenizers {
    kmer3: KmerTokenizer,
    kmer6: KmerTokenizer,
    nt: NtTokenizer,
    bpe: BpeTokenizer,
}

fn tokenizers() -> &'static Tokenizers {
    static TOKENIZERS: OnceLock<Tokenizers> = OnceLock::new();
    TOKENIZERS.get_or_init(|| Tokenizers {
        kmer3: KmerTokenizer::new(KmerVocab::dnabert(3), 512),
        kmer6: KmerTokenizer::new(KmerVocab::dnabert(6), 512),
        nt: NtTokenizer::from_file(
            &common::repo_file("tests/fixtures/families/nt-v2-mlm/vocab.txt"),
            4107,
            2048,
        )
        .expect("NT fixture vocabulary"),
        bpe: BpeTokenizer::from_file(
            &common::repo_file("tests/fixtures/families/dnabert2-mlm/tokenizer.json"),
            4096,
            512,
        )
        .expect("BPE fixture tokenizer"),
    })
}

fuzz_target!(|data: &[u8]| {
    let sequence = String::from_utf8_lossy(data);
    let all = tokenizers();
    for result in [
        all.kmer3.tokenize("fuzz", &sequence),
        all.kmer6.tokenize("fuzz", &sequence),
        all.nt.tokenize("fuzz", &sequence),
        all.bpe.tokenize("fuzz", &sequence),
    ] {
        if let Ok(tokenized) = result {
            // Spans stay inside the sequence.
            for span in tokenized.spans.iter().flatten() {
                assert!(span.start <= span.end && span.end <= data.len().max(sequence.len()));
            }
        }
    }
});
