//! `pretrain-corpus`: hg19 chr20 sequence for MLM pretraining (not committed; built into the cache).

use std::io::Write;
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};

use crate::datasets::genome::Chromosome;
use crate::datasets::human_promoters::TEST_START;
use crate::datasets::{Built, RawInputs};
use crate::error::{GenolensError, Result};

/// Dataset name.
pub const NAME: &str = "pretrain-corpus";
/// Training part file name (in the cache folder).
pub const TRAIN_FILE: &str = "pretrain-corpus.fa.gz";
/// Held-out part file name: chr20 ≥ 45 Mb, the promoter test region.
pub const HELDOUT_FILE: &str = "pretrain-heldout.fa.gz";
/// Longest record written.
const MAX_RECORD: usize = 100_000;
/// N-free stretches shorter than this are skipped.
const MIN_RECORD: usize = 1_000;

/// Maximal runs of A/C/G/T in [from, to), as (start, end).
fn acgt_runs(sequence: &[u8], from: usize, to: usize) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, &base) in sequence[from..to].iter().enumerate() {
        let position = from + i;
        let good = matches!(base, b'A' | b'C' | b'G' | b'T');
        match (good, start) {
            (true, None) => start = Some(position),
            (false, Some(s)) => {
                runs.push((s, position));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        runs.push((s, to));
    }
    runs
}

/// Writes the runs of [from, to) as FASTA.gz records `chr20:start-end` (0-based half-open).
fn write_part(chr: &Chromosome, from: usize, to: usize, path: &Path) -> Result<(usize, usize)> {
    let file = std::fs::File::create(path).map_err(|e| GenolensError::io(path, e))?;
    // mtime 0 and no file name in the gzip header, so the bytes depend only on the content.
    let mut gz: GzEncoder<_> = GzBuilder::new().mtime(0).write(file, Compression::new(6));
    let (mut records, mut bases) = (0usize, 0usize);
    for (run_start, run_end) in acgt_runs(&chr.sequence, from, to) {
        if run_end - run_start < MIN_RECORD {
            continue;
        }
        for start in (run_start..run_end).step_by(MAX_RECORD) {
            let end = (start + MAX_RECORD).min(run_end);
            writeln!(gz, ">chr20:{start}-{end}").map_err(|e| GenolensError::io(path, e))?;
            for line in chr.sequence[start..end].chunks(80) {
                gz.write_all(line).map_err(|e| GenolensError::io(path, e))?;
                gz.write_all(b"\n")
                    .map_err(|e| GenolensError::io(path, e))?;
            }
            records += 1;
            bases += end - start;
        }
    }
    gz.finish().map_err(|e| GenolensError::io(path, e))?;
    Ok((records, bases))
}

/// Writes the corpus into `cache` (git-ignored).
pub fn build(chr: &Chromosome, _raw: &RawInputs, cache: &Path) -> Result<Built> {
    std::fs::create_dir_all(cache).map_err(|e| GenolensError::io(cache, e))?;
    let split = TEST_START as usize;
    let (train_records, train_bases) = write_part(chr, 0, split, &cache.join(TRAIN_FILE))?;
    let (held_records, held_bases) = write_part(chr, split, chr.len(), &cache.join(HELDOUT_FILE))?;
    let text = format!(
        "MLM pretraining text (not committed; `just data` writes it into the cache, \
         `data/cache/{TRAIN_FILE}` and `data/cache/{HELDOUT_FILE}`). Source: hg19 chr20 from \
         Debian vt-examples 0.57721+ds-3 (`/usr/share/doc/vt/examples/ref/20.fa.gz`, MIT). \
         Training part: chr20 [0, 45 Mb), {train_records} records, {train_bases} bases; held-out \
         part: chr20 [45 Mb, end), {held_records} records, {held_bases} bases (the promoter \
         test region, so no pretraining text overlaps a test window). Records are maximal N-free \
         stretches of at least {MIN_RECORD} bp, cut every {MAX_RECORD} bp, named \
         `chr20:start-end` (0-based half-open), upper case."
    );
    Ok(Built {
        name: NAME,
        files: Vec::new(),
        rows: train_records + held_records,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_skip_every_non_acgt_base() {
        assert_eq!(acgt_runs(b"NNACGTNAC", 0, 9), vec![(2, 6), (7, 9)]);
        assert_eq!(acgt_runs(b"NNACGTNAC", 3, 5), vec![(3, 5)]);
    }
}
