//! The baseline a pretrained MLM must beat: for each masked k-mer, the k-mer most frequent in the
//! training corpus among those consistent with every base the unmasked neighbours reveal.
//! (With span masking the neighbours reveal most of a masked k-mer's bases; this baseline knows
//! exactly as much as the visible tokens spell out, and only corpus statistics beyond that.)

use crate::tokenize::vocab::{acgt_index, KmerVocab};
use crate::train::corpus::Corpus;
use crate::train::masking::MaskedBatch;

/// Counts of every k-mer id (vocab ids) over a corpus, both strands (training samples both).
pub fn kmer_counts(corpus: &Corpus, vocab: &KmerVocab) -> Vec<u64> {
    let k = vocab.k;
    // Vocab id of every k-mer by its base-4 ACGT index (ids are read from the vocabulary).
    let id_of: Vec<u32> = (0..4usize.pow(k as u32))
        .map(|index| {
            let text: String = (0..k)
                .map(|j| b"ACGT"[(index >> (2 * (k - 1 - j))) & 3] as char)
                .collect();
            vocab
                .id(&text)
                .expect("every k-mer is in a k-mer vocabulary")
        })
        .collect();
    let mask = 4usize.pow(k as u32) - 1;
    let mut counts = vec![0u64; vocab.len()];
    for record in corpus.records() {
        let (mut forward, mut reverse, mut valid) = (0usize, 0usize, 0usize);
        for &base in record {
            match acgt_index(base) {
                Some(c) => {
                    forward = ((forward << 2) | c) & mask;
                    // The reverse complement reads the complement (3 − c) from the other end.
                    reverse = (reverse >> 2) | ((3 - c) << (2 * (k - 1)));
                    valid += 1;
                }
                None => valid = 0,
            }
            if valid >= k {
                counts[id_of[forward] as usize] += 1;
                counts[id_of[reverse] as usize] += 1;
            }
        }
    }
    counts
}

/// Accuracy of the conditional-frequency guess over every masked token of `batches`.
pub fn conditional_frequency_accuracy(
    batches: &[MaskedBatch],
    vocab: &KmerVocab,
    counts: &[u64],
) -> f64 {
    let k = vocab.k;
    let kmer_ids = vocab.kmer_ids();
    let (mut correct, mut total) = (0usize, 0usize);
    for batch in batches {
        for (row, ids) in batch.ids.iter().enumerate() {
            let masked: std::collections::HashSet<usize> = batch
                .positions
                .iter()
                .filter(|p| p.0 == row)
                .map(|p| p.1)
                .collect();
            // Bases revealed by unmasked k-mer tokens: token q covers bases q−1 .. q−1+k.
            let length = ids.len();
            let mut known: Vec<Option<u8>> = vec![None; length + k];
            for (q, &id) in ids.iter().enumerate() {
                if q == 0 || masked.contains(&q) {
                    continue;
                }
                let Some(token) = vocab
                    .token(id)
                    .filter(|t| t.len() == k && !t.starts_with('['))
                else {
                    continue;
                };
                for (j, base) in token.bytes().enumerate() {
                    known[q - 1 + j] = Some(base);
                }
            }
            for (&(r, p), &label) in batch
                .positions
                .iter()
                .zip(&batch.labels)
                .filter(|(pos, _)| pos.0 == row)
            {
                debug_assert_eq!(r, row);
                let guess = kmer_ids
                    .iter()
                    .copied()
                    .filter(|&id| {
                        let token = vocab.token(id).expect("k-mer id").as_bytes();
                        (0..k).all(|j| known[p - 1 + j].is_none_or(|b| b == token[j]))
                    })
                    .max_by_key(|&id| (counts[id as usize], std::cmp::Reverse(id)));
                correct += (guess == Some(label)) as usize;
                total += 1;
            }
        }
    }
    correct as f64 / total.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_both_strands_and_guesses_from_visible_bases() {
        let vocab = KmerVocab::dnabert(3);
        let corpus = Corpus::from_records(vec![b"AACGTNAAC".to_vec()], 3).unwrap();
        let counts = kmer_counts(&corpus, &vocab);
        // AAC twice on +; GTT (its reverse complement) twice on −.
        assert_eq!(counts[vocab.id("AAC").unwrap() as usize], 2);
        assert_eq!(counts[vocab.id("GTT").unwrap() as usize], 2);
        assert_eq!(
            counts[vocab.id("CGT").unwrap() as usize],
            1 + 1,
            "ACG's complement is CGT"
        );
        assert_eq!(counts.iter().sum::<u64>(), 2 * 4);
        // [CLS] AAC ACG? CGT [SEP] with the middle masked: visible AAC and CGT spell ACG exactly.
        let ids = vec![vec![
            2,
            vocab.id("AAC").unwrap(),
            4,
            vocab.id("CGT").unwrap(),
            3,
        ]];
        let batch = MaskedBatch {
            ids,
            positions: vec![(0, 2)],
            labels: vec![vocab.id("ACG").unwrap()],
        };
        assert_eq!(
            conditional_frequency_accuracy(&[batch], &vocab, &counts),
            1.0
        );
    }
}
