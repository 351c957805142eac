//! InterPLM-style concept F1 of a token-level SAE (methods.md §6): does a feature fire on the
//! tokens an annotation marks?
//!
//! Concepts: every BED track of an annotation folder (TSS, exons, CpG islands, repeats, CTCF
//! peaks, TF sites) and, from a `jaspar_hits` track, one concept per JASPAR matrix (its name
//! column). A k-mer token carries a concept when any of its k nucleotides is covered.
//!
//! Per feature, activations are read relative to the feature's largest activation over the
//! analysed tokens; a token is predicted positive when its activation exceeds τ × that maximum,
//! τ ∈ {0, 0.15, 0.5, 0.6, 0.8} (InterPLM's grid). Sequences are split in half (seeded): τ is
//! chosen per (feature, concept) by F1 on the validation half, and precision, recall and F1 are
//! reported on the test half at that τ.

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::analysis::attention::{Locus, Track};
use crate::analysis::sae::meaning::SequenceActivations;
use crate::data::bed::read_bed;
use crate::error::{GenolensError, Result};

/// InterPLM's thresholds, as fractions of each feature's maximum activation.
pub const THRESHOLDS: [f64; 5] = [0.0, 0.15, 0.5, 0.6, 0.8];

crate::table_row! {
    /// One (feature, concept) pair: τ chosen on validation sequences, scored on test ones.
    pub struct ConceptRow {
        /// Feature (latent) index.
        pub feature: u32,
        /// Annotation concept (BED track, or `jaspar:<matrix>`).
        pub concept: String,
        /// Chosen threshold as a fraction of the feature's maximum activation.
        pub threshold: f64,
        /// F1 on the validation sequences at that threshold.
        pub val_f1: f64,
        /// Precision on the test sequences.
        pub test_precision: f64,
        /// Recall on the test sequences.
        pub test_recall: f64,
        /// F1 on the test sequences.
        pub test_f1: f64,
        /// Test tokens carrying the concept.
        pub test_concept_tokens: u64,
        /// Test tokens the feature marks at the threshold.
        pub test_predicted_tokens: u64,
        /// Test tokens both.
        pub test_true_positives: u64,
        /// F1 of a feature that fires on every test token, 2p/(1 + p) with p the concept's share
        /// of tokens: the level a feature has to beat to mean anything.
        pub baseline_f1: f64,
    }
}

/// Reads the concepts of an annotation folder: each track, with `jaspar_hits` split per matrix.
pub fn read_concepts(dir: &std::path::Path) -> Result<Vec<Track>> {
    let mut concepts = Vec::new();
    for track in crate::analysis::attention::read_tracks(dir)? {
        if track.name != "jaspar_hits" {
            concepts.push(track);
        }
    }
    for ext in ["jaspar_hits.bed.gz", "jaspar_hits.bed"] {
        let path = dir.join(ext);
        if path.exists() {
            let mut by_name: BTreeMap<String, Vec<crate::data::bed::BedRecord>> = BTreeMap::new();
            for record in read_bed(&path)? {
                let name = record.name.clone().unwrap_or_else(|| "unnamed".into());
                by_name.entry(name).or_default().push(record);
            }
            for (name, records) in by_name {
                concepts.push(Track::new(&format!("jaspar:{name}"), &records));
            }
            break;
        }
    }
    if concepts.len() > 64 {
        return Err(GenolensError::Data {
            path: dir.to_path_buf(),
            line: 0,
            message: format!("{} concepts: at most 64 are scored at once", concepts.len()),
        });
    }
    Ok(concepts)
}

/// Per sequence, per token (index = model position, 0 = [CLS]), a bit per concept the token's
/// span touches; `None` for special tokens (they are not scored). `spans` are the tokenizer's
/// nucleotide spans, so any tokenizer works.
pub fn token_concepts(
    concepts: &[Track],
    locus: &Locus,
    spans: &[Option<std::ops::Range<usize>>],
) -> Vec<Option<u64>> {
    let mut bits: Vec<Option<u64>> = spans.iter().map(|s| s.as_ref().map(|_| 0)).collect();
    for (c, track) in concepts.iter().enumerate() {
        let coverage = track.coverage(locus);
        for (bit, span) in bits.iter_mut().zip(spans) {
            let (Some(bit), Some(span)) = (bit, span) else {
                continue;
            };
            let end = span.end.min(coverage.len());
            if span.start < end && coverage[span.start..end].iter().any(|&v| v > 0.0) {
                *bit |= 1 << c;
            }
        }
    }
    bits
}

/// Concept F1 of every feature against every concept. `labels[s]` are sequence s's token bits
/// ([`token_concepts`]; `None` = no locus, left out); sequences are split in half by `seed`.
pub fn concept_f1(
    activations: &SequenceActivations,
    concepts: &[Track],
    labels: &[Option<Vec<Option<u64>>>],
    seed: u64,
) -> Result<Vec<ConceptRow>> {
    let Some(tokens) = &activations.token_activations else {
        return Err(GenolensError::argument(
            "concepts",
            "concept F1 needs a token-level SAE (--rows tokens)",
        ));
    };
    let n = activations.sequences.len();
    let (d_sae, n_concepts, n_tau) = (activations.d_sae, concepts.len(), THRESHOLDS.len());
    // Seeded halves: 0 = validation, 1 = test.
    let mut order: Vec<usize> = (0..n).filter(|&s| labels[s].is_some()).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let mut half = vec![2u8; n];
    let cut = order.len() / 2;
    for (i, &s) in order.iter().enumerate() {
        half[s] = u8::from(i >= cut);
    }
    let mut maximum = vec![0f32; d_sae];
    for t in tokens {
        let m = &mut maximum[t.feature as usize];
        *m = m.max(t.value);
    }
    // Concept tokens per half, and the test half's k-mer tokens.
    let mut positives = vec![[0u64; 2]; n_concepts];
    let mut test_tokens = 0u64;
    for (s, bits) in labels.iter().enumerate() {
        if let (Some(bits), h @ 0..=1) = (bits, half[s]) {
            if h == 1 {
                test_tokens += bits.iter().flatten().count() as u64;
            }
            for &b in bits.iter().flatten() {
                for (c, p) in positives.iter_mut().enumerate() {
                    if b >> c & 1 == 1 {
                        p[h as usize] += 1;
                    }
                }
            }
        }
    }
    let mut predicted = vec![0u64; 2 * d_sae * n_tau];
    let mut true_positive = vec![0u64; 2 * d_sae * n_concepts * n_tau];
    for t in tokens {
        let s = t.sequence as usize;
        let h = half[s] as usize;
        if h > 1 {
            continue;
        }
        let Some(bits) = labels[s].as_ref() else {
            continue;
        };
        let b = bits.get(t.token as usize).copied().flatten().unwrap_or(0);
        let f = t.feature as usize;
        let max = maximum[f];
        for (i, tau) in THRESHOLDS.iter().enumerate() {
            if t.value as f64 > tau * max as f64 {
                predicted[(h * d_sae + f) * n_tau + i] += 1;
                let mut rest = b;
                while rest != 0 {
                    let c = rest.trailing_zeros() as usize;
                    rest &= rest - 1;
                    if c < n_concepts {
                        true_positive[((h * d_sae + f) * n_concepts + c) * n_tau + i] += 1;
                    }
                }
            }
        }
    }
    let f1 = |tp: u64, pred: u64, pos: u64| {
        if tp == 0 {
            0.0
        } else {
            2.0 * tp as f64 / (pred + pos) as f64
        }
    };
    let mut rows = Vec::new();
    for f in 0..d_sae {
        for (c, concept) in concepts.iter().enumerate() {
            let tp =
                |h: usize, i: usize| true_positive[((h * d_sae + f) * n_concepts + c) * n_tau + i];
            let pred = |h: usize, i: usize| predicted[(h * d_sae + f) * n_tau + i];
            let best = (0..n_tau)
                .map(|i| (f1(tp(0, i), pred(0, i), positives[c][0]), i))
                .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
            let Some((val_f1, i)) = best.filter(|b| b.0 > 0.0) else {
                continue;
            };
            let (t, p, pos) = (tp(1, i), pred(1, i), positives[c][1]);
            rows.push(ConceptRow {
                feature: f as u32,
                concept: concept.name.clone(),
                threshold: THRESHOLDS[i],
                val_f1,
                test_precision: if p > 0 { t as f64 / p as f64 } else { 0.0 },
                test_recall: if pos > 0 { t as f64 / pos as f64 } else { 0.0 },
                test_f1: f1(t, p, pos),
                test_concept_tokens: pos,
                test_predicted_tokens: p,
                test_true_positives: t,
                baseline_f1: {
                    let total = test_tokens.max(1) as f64;
                    let p = pos as f64 / total;
                    2.0 * p / (1.0 + p)
                },
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::sae::cache::SequenceRow;
    use crate::analysis::sae::meaning::TokenActivation;
    use crate::data::bed::BedRecord;

    #[test]
    fn a_feature_that_fires_on_a_concept_scores_f1_one_and_a_random_one_does_not() {
        // 40 sequences of 20 nt (k = 3: 18 tokens), each at chr1:100s..; the concept covers
        // nucleotides 5..8 of every sequence. Feature 0 fires exactly on the tokens touching it;
        // feature 1 on every third token.
        let (n, length, k) = (40usize, 20usize, 3usize);
        let records: Vec<BedRecord> = (0..n)
            .map(|s| BedRecord::new("chr1", (s * 100 + 5) as i64, (s * 100 + 8) as i64))
            .collect();
        let concepts = vec![Track::new("site", &records)];
        let mut labels = Vec::new();
        let mut tokens = Vec::new();
        for s in 0..n {
            let locus = Locus {
                chrom: "chr1".into(),
                start: (s * 100) as i64,
                end: (s * 100 + length) as i64,
                minus: false,
            };
            let spans: Vec<Option<std::ops::Range<usize>>> = std::iter::once(None)
                .chain((0..=length - k).map(|t| Some(t..t + k)))
                .chain(std::iter::once(None))
                .collect();
            let bits = token_concepts(&concepts, &locus, &spans);
            for (t, b) in bits.iter().enumerate().take(length - k + 2).skip(1) {
                let b = b.unwrap();
                if b & 1 == 1 {
                    tokens.push(TokenActivation {
                        sequence: s as u32,
                        token: t as u32,
                        feature: 0,
                        value: 1.0,
                    });
                }
                if t % 3 == 0 {
                    tokens.push(TokenActivation {
                        sequence: s as u32,
                        token: t as u32,
                        feature: 1,
                        value: 1.0,
                    });
                }
            }
            labels.push(Some(bits));
        }
        // Token t covers nucleotides t−1 .. t+1: tokens 4..=8 touch 5..8.
        assert_eq!(labels[0].as_ref().unwrap()[4..=8], [Some(1); 5]);
        assert_eq!(labels[0].as_ref().unwrap()[3], Some(0));
        let activations = SequenceActivations {
            sequences: (0..n)
                .map(|i| SequenceRow {
                    sequence_index: i as u64,
                    sequence_id: format!("s{i}"),
                    label: None,
                    sequence: None,
                })
                .collect(),
            d_sae: 2,
            values: vec![0.0; n * 2],
            tokens: vec![0; n * 2],
            token_activations: Some(tokens),
        };
        let rows = concept_f1(&activations, &concepts, &labels, 1).unwrap();
        let f0 = rows.iter().find(|r| r.feature == 0).unwrap();
        assert_eq!(
            (f0.test_f1, f0.test_precision, f0.test_recall),
            (1.0, 1.0, 1.0)
        );
        assert_eq!(f0.test_concept_tokens, 20 * 5);
        // 5 of 18 tokens: a feature firing everywhere scores 2p/(1 + p).
        let p = 5.0 / 18.0;
        assert!((f0.baseline_f1 - 2.0 * p / (1.0 + p)).abs() < 1e-12);
        let f1 = rows.iter().find(|r| r.feature == 1).unwrap();
        assert!(f1.test_f1 < 0.5, "{f1:?}");
    }
}
