//! Variants → covering tokens, and cropping long inputs around a position (methods.md §1).

use std::ops::Range;

/// k-mer indices (0-based, before the [CLS] offset) of the tokens covering nucleotide `position`
/// in a sequence of `length` nt: max(0, p−k+1) ..= min(p, L−k).
pub fn covering_kmers(position: usize, length: usize, k: usize) -> Range<usize> {
    assert!(
        position < length && k <= length,
        "position {position} / k {k} outside a {length} nt sequence"
    );
    let first = position.saturating_sub(k - 1);
    let last = position.min(length - k);
    first..last + 1
}

/// Model positions (with [CLS] at 0) of the tokens covering nucleotide `position`.
pub fn covering_token_positions(position: usize, length: usize, k: usize) -> Range<usize> {
    let kmers = covering_kmers(position, length, k);
    kmers.start + 1..kmers.end + 1
}

/// Model positions of the tokens whose nucleotide span contains `position` (special tokens have
/// none), for any tokenizer: overlapping k-mers give up to k positions, BPE and NT 6-mers one.
/// An empty range when no token covers it (a position past the sequence).
pub fn covering_positions(spans: &[Option<Range<usize>>], position: usize) -> Range<usize> {
    let covering: Vec<usize> = spans
        .iter()
        .enumerate()
        .filter(|(_, span)| span.as_ref().is_some_and(|s| s.contains(&position)))
        .map(|(index, _)| index)
        .collect();
    match (covering.first(), covering.last()) {
        (Some(&first), Some(&last)) => first..last + 1,
        _ => 0..0,
    }
}

/// A window of at most `window` nt inside a `length` nt sequence that contains `position`,
/// centred on it where the sequence allows. Returns [start, end) in sequence coordinates.
pub fn crop_window(position: usize, length: usize, window: usize) -> Range<usize> {
    assert!(
        position < length,
        "position {position} outside a {length} nt sequence"
    );
    if length <= window {
        return 0..length;
    }
    let half = window / 2;
    let start = position.saturating_sub(half).min(length - window);
    start..start + window
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covering_tokens_for_all_k_at_edges() {
        for k in 3..=6 {
            let length = 20;
            // First nucleotide: only k-mer 0 covers it.
            assert_eq!(covering_kmers(0, length, k), 0..1);
            // Last nucleotide: only the last k-mer covers it.
            assert_eq!(
                covering_kmers(length - 1, length, k),
                length - k..length - k + 1
            );
            // Interior: exactly k tokens.
            assert_eq!(covering_kmers(10, length, k).len(), k);
            assert_eq!(covering_kmers(10, length, k), 10 - k + 1..11);
            // Near the start: position p < k-1 is covered by p+1 tokens.
            assert_eq!(covering_kmers(1, length, k), 0..2);
            // Brute force: token i covers [i, i+k).
            for position in 0..length {
                let expected: Vec<usize> = (0..=length - k)
                    .filter(|&i| i <= position && position < i + k)
                    .collect();
                assert_eq!(
                    covering_kmers(position, length, k).collect::<Vec<_>>(),
                    expected,
                    "k={k} p={position}"
                );
            }
            assert_eq!(covering_token_positions(0, length, k), 1..2);
        }
    }

    #[test]
    fn covering_positions_from_spans_equal_the_kmer_formula() {
        for k in [3, 6] {
            let tokenizer =
                crate::tokenize::KmerTokenizer::new(crate::tokenize::KmerVocab::dnabert(k), 64);
            let sequence = "ACGTAGCATCGGATCTAGGCTAC";
            let spans = tokenizer.tokenize("s", sequence).unwrap().spans;
            for position in 0..sequence.len() {
                assert_eq!(
                    covering_positions(&spans, position),
                    covering_token_positions(position, sequence.len(), k)
                );
            }
        }
        let spans = vec![None, Some(0..4), Some(4..5), Some(5..11), None];
        assert_eq!(covering_positions(&spans, 4), 2..3);
        assert_eq!(covering_positions(&spans, 10), 3..4);
        assert_eq!(covering_positions(&spans, 11), 0..0);
    }

    #[test]
    fn crop_keeps_the_position_and_centres_it() {
        assert_eq!(crop_window(512, 1024, 515), 255..770);
        assert!(crop_window(512, 1024, 515).contains(&512));
        assert_eq!(crop_window(3, 1024, 515), 0..515);
        assert_eq!(crop_window(1020, 1024, 515), 509..1024);
        assert_eq!(crop_window(5, 100, 515), 0..100);
        for position in 0..1024 {
            let window = crop_window(position, 1024, 515);
            assert!(window.contains(&position) && window.len() == 515);
        }
    }
}
