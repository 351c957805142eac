//! Log-odds scoring matrices and exact p-values of their scores.
//!
//! Conventions follow memelite's FIMO (the reference the tests compare with: identical p-values,
//! scores within 1e-14 bits):
//! score = Σ log2((p + ε) / 0.25) over the window's columns (N and other letters add 0), and the
//! p-value of a score is the exact upper tail of the score distribution under a uniform background
//! once each log-odds is rounded to a grid of `bin_size` bits. A finer grid gives p-values closer
//! to those of the unrounded matrix at a cost linear in the number of bins.

use crate::motif::meme::Motif;

/// Options of a motif scan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScanOptions {
    /// Pseudo-probability ε added to every matrix entry before the log (so a 0 is finite).
    pub pseudocount: f64,
    /// Grid of the score distribution, in bits.
    pub bin_size: f64,
    /// Report windows whose p-value is below this.
    pub p_threshold: f64,
    /// Scan the reverse complement too.
    pub both_strands: bool,
}

impl Default for ScanOptions {
    /// FIMO's and memelite's defaults: ε 1e-4, 0.1-bit grid, p < 1e-4, both strands.
    fn default() -> Self {
        ScanOptions {
            pseudocount: 1e-4,
            bin_size: 0.1,
            p_threshold: 1e-4,
            both_strands: true,
        }
    }
}

/// Per column, the log-odds (bits) of A, C, G, T against a uniform background.
#[derive(Debug, Clone, PartialEq)]
pub struct LogOdds {
    /// Columns 5' to 3'.
    pub columns: Vec<[f64; 4]>,
}

impl LogOdds {
    /// log2(p + ε) − log2(0.25) of every entry.
    pub fn from_motif(motif: &Motif, pseudocount: f64) -> Self {
        LogOdds::from_columns(&motif.columns, pseudocount)
    }

    fn from_columns(columns: &[[f64; 4]], pseudocount: f64) -> Self {
        let background = 0.25f64.log2();
        let columns = columns
            .iter()
            .map(|c| c.map(|p| (p + pseudocount).log2() - background))
            .collect();
        LogOdds { columns }
    }

    /// The matrix of the reverse-complement strand: columns reversed, A↔T and C↔G.
    pub fn reverse_complement_of(motif: &Motif, pseudocount: f64) -> Self {
        let columns: Vec<[f64; 4]> = motif
            .columns
            .iter()
            .rev()
            .map(|c| [c[3], c[2], c[1], c[0]])
            .collect();
        LogOdds::from_columns(&columns, pseudocount)
    }

    /// Number of columns.
    pub fn width(&self) -> usize {
        self.columns.len()
    }

    /// Score of a window of letter codes (0..4 = A, C, G, T; anything else adds 0), summed 5'→3'.
    pub fn score(&self, codes: &[u8]) -> f64 {
        let mut score = 0.0;
        for (column, &code) in self.columns.iter().zip(codes) {
            if let Some(value) = column.get(code as usize) {
                score += value;
            }
        }
        score
    }

    /// Per column, the largest score a window can still gain from that column on (an N adds 0).
    pub fn remaining_maxima(&self) -> Vec<f64> {
        let mut rest = vec![0.0; self.width() + 1];
        for j in (0..self.width()).rev() {
            let best = self.columns[j].iter().cloned().fold(0.0f64, f64::max);
            rest[j] = rest[j + 1] + best;
        }
        rest
    }
}

/// log2 of the upper-tail probability of every score bin of one matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct PValueTable {
    bin_size: f64,
    /// Bin of the table's first entry.
    smallest: i64,
    /// log2 P(score bin ≥ smallest + i), i = 0..
    log2_tail: Vec<f64>,
}

impl PValueTable {
    /// The exact distribution of the rounded score under a uniform background, by dynamic
    /// programming over columns in log2 space (the same additions in the same order as memelite).
    pub fn new(matrix: &LogOdds, bin_size: f64) -> Self {
        let bins: Vec<[i64; 4]> = matrix
            .columns
            .iter()
            .map(|c| c.map(|v| (v / bin_size).round_ties_even() as i64))
            .collect();
        let (smallest, largest) = bin_range(&bins);
        let size = (largest - smallest + 1).max(1) as usize;
        let log_background = 0.25f64.log2();
        let mut current = vec![f64::NEG_INFINITY; size];
        let mut next = vec![f64::NEG_INFINITY; size];
        if let Some(first) = bins.first() {
            for &bin in first {
                accumulate(&mut current[(bin - smallest) as usize], log_background);
            }
        }
        for column in bins.iter().skip(1) {
            next.fill(f64::NEG_INFINITY);
            for (j, &x) in current.iter().enumerate() {
                if x == f64::NEG_INFINITY {
                    continue;
                }
                let y = log_background + x;
                for &bin in column {
                    accumulate(&mut next[(j as i64 + bin) as usize], y);
                }
            }
            std::mem::swap(&mut current, &mut next);
        }
        for i in (0..size.saturating_sub(1)).rev() {
            if current[i] == f64::NEG_INFINITY {
                current[i] = current[i + 1];
            } else if current[i + 1] != f64::NEG_INFINITY {
                current[i] = log_add_exp2(current[i], current[i + 1]);
            }
        }
        PValueTable {
            bin_size,
            smallest,
            log2_tail: current,
        }
    }

    /// The p-value of a score: the tail probability of its bin (scores are binned by truncation).
    pub fn p_value(&self, score: f64) -> f64 {
        let bin = (score / self.bin_size).trunc() as i64 - self.smallest;
        let index = bin.clamp(0, self.log2_tail.len() as i64 - 1) as usize;
        2f64.powf(self.log2_tail[index])
    }

    /// The score a window must exceed to have p < `p_threshold`: the lowest bin whose tail is below
    /// it, as an f32 grid value (memelite keeps thresholds in f32). +∞ if no score reaches it.
    pub fn score_threshold(&self, p_threshold: f64) -> f64 {
        let log_threshold = p_threshold.log2();
        match self.log2_tail.iter().position(|&t| t < log_threshold) {
            Some(first) => (((first as i64 + self.smallest) as f64 * self.bin_size) as f32) as f64,
            None => f64::INFINITY,
        }
    }
}

/// First and last bin a partial sum can reach, with memelite's slack of one bin per column on top.
fn bin_range(bins: &[[i64; 4]]) -> (i64, i64) {
    let (mut smallest, mut largest) = (i64::MAX, i64::MIN);
    let (mut low, mut high) = (0i64, 0i64);
    for column in bins {
        low += column.iter().min().copied().unwrap_or(0);
        high += column.iter().max().copied().unwrap_or(0);
        smallest = smallest.min(low);
        largest = largest.max(high);
    }
    if bins.is_empty() {
        return (0, 0);
    }
    (smallest, largest + bins.len() as i64)
}

fn accumulate(slot: &mut f64, value: f64) {
    *slot = if *slot == f64::NEG_INFINITY {
        value
    } else {
        log_add_exp2(*slot, value)
    };
}

/// log2(2^x + 2^y), stable.
fn log_add_exp2(x: f64, y: f64) -> f64 {
    if x == f64::INFINITY || y == f64::INFINITY {
        return f64::INFINITY;
    }
    let (high, low) = if x >= y { (x, y) } else { (y, x) };
    high + (2f64.powf(low - high) + 1.0).log2()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn motif(columns: Vec<[f64; 4]>) -> Motif {
        Motif {
            id: "m".into(),
            name: "m".into(),
            columns,
        }
    }

    #[test]
    fn tail_probabilities_match_enumeration() {
        // Three columns: enumerate all 64 words and count those whose rounded score bin is ≥ b.
        let m = motif(vec![
            [0.7, 0.1, 0.1, 0.1],
            [0.2, 0.5, 0.2, 0.1],
            [0.05, 0.05, 0.1, 0.8],
        ]);
        let bin_size = 0.1;
        let matrix = LogOdds::from_motif(&m, 1e-4);
        let table = PValueTable::new(&matrix, bin_size);
        let rounded: Vec<[i64; 4]> = matrix
            .columns
            .iter()
            .map(|c| c.map(|v| (v / bin_size).round_ties_even() as i64))
            .collect();
        let mut sums = Vec::new();
        for a in 0..4 {
            for b in 0..4 {
                for c in 0..4 {
                    sums.push(rounded[0][a] + rounded[1][b] + rounded[2][c]);
                }
            }
        }
        for (i, &log_tail) in table.log2_tail.iter().enumerate() {
            let bin = i as i64 + table.smallest;
            let count = sums.iter().filter(|&&s| s >= bin).count();
            let expected = count as f64 / 64.0;
            let got = 2f64.powf(log_tail);
            assert!(
                (got - expected).abs() <= 1e-12 * expected.max(1e-300),
                "bin {bin}: {got} vs {expected}"
            );
        }
    }

    #[test]
    fn reverse_complement_reverses_and_complements() {
        let m = motif(vec![[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]]);
        let forward = LogOdds::from_motif(&m, 0.0);
        let reverse = LogOdds::reverse_complement_of(&m, 0.0);
        // AT read on the other strand is AT again: both matrices score it the same.
        assert_eq!(forward.score(&[0, 3]), reverse.score(&[0, 3]));
        assert_eq!(reverse.columns[0][0], forward.columns[1][3]);
        assert_eq!(forward.score(&[0, 4]), forward.columns[0][0]);
    }

    #[test]
    fn the_best_word_is_rare_and_thresholds_are_monotone() {
        let m = motif(vec![[0.97, 0.01, 0.01, 0.01]; 8]);
        let matrix = LogOdds::from_motif(&m, 1e-4);
        let table = PValueTable::new(&matrix, 0.1);
        let best = matrix.score(&[0; 8]);
        let p = table.p_value(best);
        assert!((p - 0.25f64.powi(8)).abs() < 1e-12, "{p}");
        assert!(table.score_threshold(1e-3) <= table.score_threshold(1e-4));
        // No word is that rare: the threshold lies past every reachable score (as in memelite).
        assert!(table.score_threshold(1e-9) > best);
    }
}
