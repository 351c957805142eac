//! A planted-motif benchmark for attribution methods: random sequences, half of them carrying a
//! known motif at a random place, a classifier fine-tuned to tell them apart, and the
//! localisation AUROC of each method's nucleotide scores for the planted bases (the attribution
//! should rank the motif's bases above the rest of the sequence). Half of the negatives carry a
//! decoy, the motif with one base changed, so a classifier must read every base of the motif
//! (without decoys, a model keys on part of it and single-base ISM sees only that part).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The planted motif: NF-κB's decameric site GGGACTTTCC, absent from every negative (longer
/// than one 6-mer token, so a model must combine overlapping tokens to read all of it).
pub const PLANTED_MOTIF: &str = "GGGACTTTCC";

crate::table_row! {
    /// One synthetic sequence: genolens's sequence-table columns (so `genolens train classify`
    /// reads it) plus where the motif was planted (`motif_start` = −1 in negatives).
    pub struct PlantedRow {
        pub id: String,
        pub sequence: String,
        pub label: i64,
        pub label_name: String,
        pub split: String,
        pub chrom: String,
        pub start: i64,
        pub end: i64,
        pub strand: String,
        pub motif_start: i64,
        pub motif_end: i64,
        pub decoy_start: i64,
    }
}

/// How many sequences each split gets (half of each carry the motif), and their length.
#[derive(Debug, Clone, Copy)]
pub struct PlantedSizes {
    /// Training sequences.
    pub train: usize,
    /// Validation sequences.
    pub valid: usize,
    /// Test sequences.
    pub test: usize,
    /// Length in nucleotides.
    pub length: usize,
}

impl Default for PlantedSizes {
    fn default() -> Self {
        PlantedSizes {
            train: 4000,
            valid: 400,
            test: 400,
            length: 100,
        }
    }
}

/// The benchmark's sequences from `seed`: uniform random bases; in every other sequence the
/// motif replaces the bases at a uniform random offset; every other negative carries a decoy (the
/// motif with one random base changed) the same way. Sequences are redrawn until the motif
/// occurs exactly where planted (nowhere in negatives), on either strand.
pub fn planted_rows(seed: u64, sizes: PlantedSizes) -> Vec<PlantedRow> {
    let motif = PLANTED_MOTIF.as_bytes();
    let reverse: Vec<u8> = crate::datasets::genome::reverse_complement(motif);
    let contains = |s: &[u8], m: &[u8]| s.windows(m.len()).any(|w| w == m);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rows = Vec::new();
    for (split, count) in [
        ("train", sizes.train),
        ("valid", sizes.valid),
        ("test", sizes.test),
    ] {
        for i in 0..count {
            let positive = i % 2 == 0;
            let decoy = !positive && i % 4 == 1;
            let (sequence, start, decoy_start) = loop {
                let mut bases: Vec<u8> = (0..sizes.length)
                    .map(|_| b"ACGT"[rng.random_range(0..4)])
                    .collect();
                if contains(&bases, motif) || contains(&bases, &reverse) {
                    continue;
                }
                let decoy_start = if decoy {
                    let mut copy = motif.to_vec();
                    let changed = rng.random_range(0..copy.len());
                    let others: Vec<u8> = b"ACGT"
                        .iter()
                        .copied()
                        .filter(|&b| b != copy[changed])
                        .collect();
                    copy[changed] = others[rng.random_range(0..3)];
                    let start = rng.random_range(0..=sizes.length - motif.len());
                    bases[start..start + motif.len()].copy_from_slice(&copy);
                    if contains(&bases, motif) || contains(&bases, &reverse) {
                        continue;
                    }
                    start as i64
                } else {
                    -1
                };
                let start = if positive {
                    let start = rng.random_range(0..=sizes.length - motif.len());
                    bases[start..start + motif.len()].copy_from_slice(motif);
                    // Exactly one occurrence (the planted one).
                    // (A palindrome's two strands are one occurrence.)
                    let hits = bases
                        .windows(motif.len())
                        .filter(|w| *w == motif || *w == reverse.as_slice())
                        .count();
                    if hits != 1 {
                        continue;
                    }
                    start as i64
                } else {
                    -1
                };
                break (bases, start, decoy_start);
            };
            let id = format!("{split}-{i:05}");
            rows.push(PlantedRow {
                id,
                sequence: String::from_utf8(sequence).expect("ACGT"),
                label: i64::from(positive),
                label_name: if positive { "motif" } else { "background" }.into(),
                split: split.into(),
                chrom: "synthetic".into(),
                start: 0,
                end: sizes.length as i64,
                strand: "+".into(),
                motif_start: start,
                motif_end: if positive {
                    start + motif.len() as i64
                } else {
                    -1
                },
                decoy_start,
            });
        }
    }
    rows
}

/// AUROC of `scores` separating the positions in `planted` from the others (ties count ½);
/// `None` when either side is empty.
pub fn localisation_auroc(scores: &[f64], planted: std::ops::Range<usize>) -> Option<f64> {
    let labels: Vec<bool> = (0..scores.len()).map(|p| planted.contains(&p)).collect();
    crate::stats::auroc::auroc(scores, &labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positives_carry_the_motif_once_and_negatives_never() {
        let sizes = PlantedSizes {
            train: 40,
            valid: 4,
            test: 6,
            length: 60,
        };
        let rows = planted_rows(3, sizes);
        assert_eq!(rows.len(), 50);
        assert_eq!(rows, planted_rows(3, sizes), "seeded");
        assert!(rows.iter().filter(|r| r.decoy_start >= 0).count() >= 10);
        for row in &rows {
            let hits = row.sequence.matches(PLANTED_MOTIF).count();
            if row.label == 1 {
                assert_eq!(hits, 1);
                let start = row.motif_start as usize;
                assert_eq!(
                    &row.sequence[start..start + PLANTED_MOTIF.len()],
                    PLANTED_MOTIF
                );
            } else {
                assert_eq!((hits, row.motif_start), (0, -1));
                if row.decoy_start >= 0 {
                    let start = row.decoy_start as usize;
                    let decoy = &row.sequence.as_bytes()[start..start + PLANTED_MOTIF.len()];
                    let differences = decoy
                        .iter()
                        .zip(PLANTED_MOTIF.as_bytes())
                        .filter(|(a, b)| a != b)
                        .count();
                    assert_eq!(differences, 1);
                }
            }
        }
        assert_eq!(localisation_auroc(&[0.0, 1.0, 2.0, 0.5], 1..3), Some(1.0));
        assert_eq!(localisation_auroc(&[1.0; 4], 1..3), Some(0.5));
    }
}
