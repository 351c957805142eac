//! Pretraining text: FASTA records held in memory, sampled as random windows. The windows of
//! step s depend only on (seed, s), so a run resumed at step s sees exactly the batches an
//! uninterrupted run would.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::fasta::FastaReader;
use crate::datasets::genome::reverse_complement;
use crate::error::{GenolensError, Result};

/// Records of one corpus file, upper case.
pub struct Corpus {
    records: Vec<Vec<u8>>,
    /// Cumulative count of window starts per record, for length-weighted sampling.
    starts: Vec<u64>,
    window: usize,
}

impl Corpus {
    /// Reads a FASTA (plain or gzip); records shorter than `window` are skipped.
    pub fn read(path: &Path, window: usize) -> Result<Self> {
        let mut records = Vec::new();
        for record in FastaReader::open(path)? {
            let sequence = record?.sequence.into_bytes().to_ascii_uppercase();
            if sequence.len() >= window {
                records.push(sequence);
            }
        }
        Corpus::from_records(records, window).map_err(|message| GenolensError::Data {
            path: path.to_path_buf(),
            line: 0,
            message,
        })
    }

    /// A corpus from in-memory records.
    pub fn from_records(records: Vec<Vec<u8>>, window: usize) -> std::result::Result<Self, String> {
        let mut starts = Vec::with_capacity(records.len());
        let mut total = 0u64;
        for record in &records {
            total += (record.len() + 1 - window) as u64;
            starts.push(total);
        }
        if total == 0 {
            return Err(format!("no record is at least {window} bp long"));
        }
        Ok(Corpus {
            records,
            starts,
            window,
        })
    }

    /// The records.
    pub fn records(&self) -> &[Vec<u8>] {
        &self.records
    }

    /// Bases in the corpus.
    pub fn bases(&self) -> usize {
        self.records.iter().map(Vec::len).sum()
    }

    /// One window drawn uniformly over all window positions, reverse-complemented half the time.
    pub fn sample(&self, rng: &mut impl Rng) -> Vec<u8> {
        let total = *self.starts.last().expect("non-empty corpus");
        let pick = rng.random_range(0..total);
        let record = self.starts.partition_point(|&s| s <= pick);
        let offset = pick
            - if record == 0 {
                0
            } else {
                self.starts[record - 1]
            };
        let window = &self.records[record][offset as usize..offset as usize + self.window];
        if rng.random_bool(0.5) {
            reverse_complement(window)
        } else {
            window.to_vec()
        }
    }

    /// The windows of training step `step`.
    pub fn batch(&self, seed: u64, step: usize, size: usize) -> (Vec<Vec<u8>>, ChaCha8Rng) {
        let mut rng = step_rng(seed, step);
        let windows = (0..size).map(|_| self.sample(&mut rng)).collect();
        (windows, rng)
    }
}

/// The random stream of one step: independent of every other step.
pub fn step_rng(seed: u64, step: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(step as u64 + 1);
    rng
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_depend_only_on_seed_and_step() {
        let corpus = Corpus::from_records(
            vec![b"ACGTACGTAC".to_vec(), b"GGGGCCCCAAAATTTT".to_vec()],
            4,
        )
        .unwrap();
        let (a, _) = corpus.batch(1, 5, 8);
        let (b, _) = corpus.batch(1, 5, 8);
        let (c, _) = corpus.batch(1, 6, 8);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|w| w.len() == 4));
        assert!(Corpus::from_records(vec![b"ACG".to_vec()], 4).is_err());
    }
}
