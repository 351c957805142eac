//! Scanning sequences for motif matches on both strands (FIMO's task).

use rayon::prelude::*;

use crate::motif::meme::Motif;
use crate::motif::pwm::{LogOdds, PValueTable, ScanOptions};

/// Strand of a match: `+` reads the motif on the given sequence, `-` on its reverse complement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strand {
    /// The given strand.
    Forward,
    /// The reverse complement.
    Reverse,
}

impl Strand {
    /// `+` or `-`.
    pub fn symbol(self) -> &'static str {
        match self {
            Strand::Forward => "+",
            Strand::Reverse => "-",
        }
    }
}

/// One match of one motif in one sequence (0-based half-open on the given strand's coordinates).
#[derive(Debug, Clone, PartialEq)]
pub struct MotifHit {
    /// Index of the motif in the scanner.
    pub motif: usize,
    /// First base of the window.
    pub start: usize,
    /// One past the last base.
    pub end: usize,
    /// Strand read.
    pub strand: Strand,
    /// Log-odds score (bits).
    pub score: f64,
    /// p-value of the score.
    pub p_value: f64,
}

/// One strand of one motif, ready to scan.
#[derive(Debug, Clone)]
struct StrandMatrix {
    matrix: LogOdds,
    table: PValueTable,
    /// A window is a hit when its score exceeds this.
    threshold: f64,
    /// Per column, the most the rest of the window can still add.
    remaining: Vec<f64>,
}

impl StrandMatrix {
    fn new(matrix: LogOdds, options: &ScanOptions) -> Self {
        let table = PValueTable::new(&matrix, options.bin_size);
        let threshold = table.score_threshold(options.p_threshold);
        let remaining = matrix.remaining_maxima();
        StrandMatrix {
            matrix,
            table,
            threshold,
            remaining,
        }
    }

    /// Score of the window at `start` if it can exceed the threshold, summed 5'→3' exactly as a
    /// full sum would be; `None` once the partial sum plus the best possible rest cannot.
    fn score_if_hit(&self, codes: &[u8], start: usize) -> Option<f64> {
        // The margin only guards against rounding in the bound; survivors get the exact sum.
        let cut = self.threshold - 1e-9 * (1.0 + self.threshold.abs());
        let mut score = 0.0;
        for (j, column) in self.matrix.columns.iter().enumerate() {
            if let Some(value) = column.get(codes[start + j] as usize) {
                score += value;
            }
            if score + self.remaining[j + 1] <= cut {
                return None;
            }
        }
        (score > self.threshold).then_some(score)
    }
}

/// Letter codes for scanning: A C G T (any case) → 0..4, anything else (N, IUPAC) → 4.
pub fn letter_codes(sequence: &[u8]) -> Vec<u8> {
    sequence
        .iter()
        .map(|b| match b.to_ascii_uppercase() {
            b'A' => 0,
            b'C' => 1,
            b'G' => 2,
            b'T' => 3,
            _ => 4,
        })
        .collect()
}

/// A set of motifs prepared for scanning with one set of options.
#[derive(Debug, Clone)]
pub struct MotifScanner {
    motifs: Vec<Motif>,
    strands: Vec<(StrandMatrix, Option<StrandMatrix>)>,
    options: ScanOptions,
}

impl MotifScanner {
    /// Builds log-odds matrices, p-value tables and score thresholds for every motif.
    pub fn new(motifs: Vec<Motif>, options: ScanOptions) -> Self {
        let strands = motifs
            .par_iter()
            .map(|motif| {
                let forward =
                    StrandMatrix::new(LogOdds::from_motif(motif, options.pseudocount), &options);
                let reverse = options.both_strands.then(|| {
                    StrandMatrix::new(
                        LogOdds::reverse_complement_of(motif, options.pseudocount),
                        &options,
                    )
                });
                (forward, reverse)
            })
            .collect();
        MotifScanner {
            motifs,
            strands,
            options,
        }
    }

    /// The motifs, in scanner order.
    pub fn motifs(&self) -> &[Motif] {
        &self.motifs
    }

    /// The options the scanner was built with.
    pub fn options(&self) -> &ScanOptions {
        &self.options
    }

    /// Every hit of every motif in one sequence (letter codes from [`letter_codes`]), ordered by
    /// motif, then strand (+ first), then start.
    pub fn scan(&self, codes: &[u8]) -> Vec<MotifHit> {
        (0..self.motifs.len())
            .flat_map(|m| self.scan_motif(m, codes))
            .collect()
    }

    /// Hits of one motif in one sequence, + strand first, each by start.
    pub fn scan_motif(&self, motif: usize, codes: &[u8]) -> Vec<MotifHit> {
        let (forward, reverse) = &self.strands[motif];
        let mut hits = Vec::new();
        for (strand, matrix) in [
            (Strand::Forward, Some(forward)),
            (Strand::Reverse, reverse.as_ref()),
        ] {
            let Some(matrix) = matrix else { continue };
            let width = matrix.matrix.width();
            if width == 0 || codes.len() < width {
                continue;
            }
            for start in 0..=codes.len() - width {
                if let Some(score) = matrix.score_if_hit(codes, start) {
                    hits.push(MotifHit {
                        motif,
                        start,
                        end: start + width,
                        strand,
                        score,
                        p_value: matrix.table.p_value(score),
                    });
                }
            }
        }
        hits
    }

    /// The best score of a motif over every window (either strand) that overlaps `position`,
    /// with its p-value; `None` if no window fits. Used to ask how a variant changes a site.
    pub fn best_score_over(
        &self,
        motif: usize,
        codes: &[u8],
        position: usize,
    ) -> Option<(f64, f64)> {
        let (forward, reverse) = &self.strands[motif];
        let mut best: Option<(f64, &StrandMatrix)> = None;
        for matrix in std::iter::once(forward).chain(reverse.as_ref()) {
            let width = matrix.matrix.width();
            if width == 0 || codes.len() < width || position >= codes.len() {
                continue;
            }
            let first = position.saturating_sub(width - 1);
            let last = position.min(codes.len() - width);
            for start in first..=last {
                let score = matrix.matrix.score(&codes[start..start + width]);
                if best.is_none_or(|(b, _)| score > b) {
                    best = Some((score, matrix));
                }
            }
        }
        best.map(|(score, matrix)| (score, matrix.table.p_value(score)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanner() -> MotifScanner {
        let tata = Motif {
            id: "TATA".into(),
            name: "TATA".into(),
            columns: vec![
                [0.01, 0.01, 0.01, 0.97],
                [0.97, 0.01, 0.01, 0.01],
                [0.01, 0.01, 0.01, 0.97],
                [0.97, 0.01, 0.01, 0.01],
                [0.97, 0.01, 0.01, 0.01],
                [0.97, 0.01, 0.01, 0.01],
                [0.97, 0.01, 0.01, 0.01],
                [0.01, 0.01, 0.97, 0.01],
            ],
        };
        MotifScanner::new(vec![tata], ScanOptions::default())
    }

    #[test]
    fn finds_a_planted_site_on_both_strands() {
        let background = b"GCGCGCGCGCGCGCGCGCGC";
        let mut sequence = background.to_vec();
        sequence.extend_from_slice(b"TATAAAAG");
        sequence.extend_from_slice(background);
        // Reverse complement of TATAAAAG is CTTTTATA.
        sequence.extend_from_slice(b"CTTTTATA");
        sequence.extend_from_slice(background);
        let hits = scanner().scan(&letter_codes(&sequence));
        assert_eq!(hits.len(), 2, "{hits:?}");
        assert_eq!((hits[0].start, hits[0].strand), (20, Strand::Forward));
        assert_eq!((hits[1].start, hits[1].strand), (48, Strand::Reverse));
        assert_eq!(hits[0].score, hits[1].score);
        assert!(hits[0].p_value < 1e-4);
    }

    #[test]
    fn pruning_never_drops_a_hit() {
        // Every window scored in full and thresholded must give the same hits as the pruned scan.
        let scanner = scanner();
        // Pseudo-random background with a site every 100 bp, some of them mutated once.
        let hash = |i: u64| (i.wrapping_mul(2_654_435_761) >> 7) as usize;
        let mut sequence: Vec<u8> = (0..5000u64).map(|i| b"ACGTN"[hash(i) % 5]).collect();
        for (n, start) in (0..4900).step_by(100).enumerate() {
            sequence[start..start + 8].copy_from_slice(b"TATAAAAG");
            if n % 3 != 0 {
                sequence[start + hash(n as u64) % 8] = b"ACGT"[hash(n as u64 + 7) % 4];
            }
        }
        let codes = letter_codes(&sequence);
        let (forward, _) = &scanner.strands[0];
        let brute: Vec<usize> = (0..=codes.len() - 8)
            .filter(|&s| forward.matrix.score(&codes[s..s + 8]) > forward.threshold)
            .collect();
        let pruned: Vec<usize> = scanner
            .scan_motif(0, &codes)
            .into_iter()
            .filter(|h| h.strand == Strand::Forward)
            .map(|h| h.start)
            .collect();
        assert!(!brute.is_empty());
        assert_eq!(brute, pruned);
    }

    #[test]
    fn best_score_sees_a_variant_break_the_site() {
        let scanner = scanner();
        let reference = letter_codes(b"GCGCGTATAAAAGGCGCG");
        let alternative = letter_codes(b"GCGCGTAGAAAAGGCGCG");
        let (ref_score, ref_p) = scanner.best_score_over(0, &reference, 7).unwrap();
        let (alt_score, alt_p) = scanner.best_score_over(0, &alternative, 7).unwrap();
        assert!(ref_score - alt_score > 5.0, "{ref_score} vs {alt_score}");
        assert!(ref_p < alt_p);
    }
}
