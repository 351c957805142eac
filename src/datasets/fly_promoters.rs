//! `fly-core-promoters`: dm3 upstream regions, TSS-proximal (−250..−1) vs distal (−2000..−1751).

use std::collections::BTreeSet;
use std::path::Path;

use crate::data::fasta::FastaReader;
use crate::datasets::baseline::classification_summary;
use crate::datasets::genome::is_acgt;
use crate::datasets::intervals::{Interval, IntervalSet};
use crate::datasets::rows::{write_rows, SequenceRow};
use crate::datasets::{Built, RawInputs};
use crate::error::{GenolensError, Result};

/// Dataset name.
pub const NAME: &str = "fly-core-promoters";
/// Window length.
pub const WINDOW: usize = 250;
/// Held-out chromosome.
pub const TEST_CHROM: &str = "chr3R";
/// Validation chromosome.
pub const VALID_CHROM: &str = "chrX";

/// One upstream-2000 record: header fields and sequence in transcription orientation.
struct Upstream {
    refseq: String,
    chrom: String,
    /// 1-based genomic position of the record's lowest base.
    first: i64,
    reverse: bool,
    sequence: Vec<u8>,
}

/// `>NM_078863_up_2000_chr2L_16764737_f chr2L:16764737-16766736`.
fn parse_header(path: &Path, line: usize, id: &str, sequence: String) -> Result<Upstream> {
    let bad = || GenolensError::Data {
        path: path.to_path_buf(),
        line,
        message: format!("header {id:?}: expected NAME_up_2000_CHROM_START_[fr]"),
    };
    let (refseq, rest) = id.split_once("_up_").ok_or_else(bad)?;
    let mut fields: Vec<&str> = rest.split('_').collect();
    let strand = fields.pop().ok_or_else(bad)?;
    let start: i64 = fields.pop().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    // fields now: ["2000", chrom parts...] (a chrom name may itself hold '_').
    if fields.len() < 2 {
        return Err(bad());
    }
    let chrom = fields[1..].join("_");
    let reverse = match strand {
        "f" => false,
        "r" => true,
        _ => return Err(bad()),
    };
    let sequence = sequence.into_bytes().to_ascii_uppercase();
    Ok(Upstream {
        refseq: refseq.to_string(),
        chrom,
        first: start,
        reverse,
        sequence,
    })
}

impl Upstream {
    /// 0-based half-open genomic interval of sequence positions [from, to).
    fn genomic(&self, from: usize, to: usize) -> (i64, i64) {
        let zero_start = self.first - 1;
        if self.reverse {
            let end = zero_start + (self.sequence.len() - from) as i64;
            (end - (to - from) as i64, end)
        } else {
            (zero_start + from as i64, zero_start + to as i64)
        }
    }

    fn row(&self, from: usize, label: i64) -> Option<SequenceRow> {
        let to = from + WINDOW;
        let bases = self.sequence.get(from..to)?;
        if !is_acgt(bases) {
            return None;
        }
        let (start, end) = self.genomic(from, to);
        let split = match self.chrom.as_str() {
            TEST_CHROM => "test",
            VALID_CHROM => "valid",
            _ => "train",
        };
        let strand = if self.reverse { "-" } else { "+" };
        let kind = if label == 1 { "proximal" } else { "distal" };
        Some(SequenceRow {
            id: format!(
                "{}|{kind}|{}:{start}-{end}({strand})",
                self.refseq, self.chrom
            ),
            sequence: String::from_utf8(bases.to_vec()).expect("ACGT is UTF-8"),
            label,
            label_name: kind.into(),
            split: split.into(),
            chrom: self.chrom.clone(),
            start,
            end,
            strand: strand.into(),
        })
    }
}

/// Builds `out/fly-core-promoters.parquet`.
pub fn build(raw: &RawInputs, out: &Path) -> Result<Built> {
    let path = raw.path("dm3_upstream2000.fa.gz");
    let mut records = Vec::new();
    let mut seen = BTreeSet::new();
    let mut total = 0usize;
    for (index, record) in FastaReader::open(&path)?.enumerate() {
        let record = record?;
        total += 1;
        let upstream = parse_header(&path, index + 1, &record.id, record.sequence)?;
        // Alternative transcripts share a TSS: one record per (chrom, start, strand).
        if seen.insert((upstream.chrom.clone(), upstream.first, upstream.reverse)) {
            records.push(upstream);
        }
    }
    let proximal: Vec<SequenceRow> = records
        .iter()
        .filter_map(|r| r.row(r.sequence.len().checked_sub(WINDOW)?, 1))
        .collect();
    // A distal window inside any proximal window's locus would teach the model nothing real.
    let mut proximal_loci: std::collections::BTreeMap<&str, Vec<Interval>> = Default::default();
    for r in &records {
        if let Some(from) = r.sequence.len().checked_sub(WINDOW) {
            let (start, end) = r.genomic(from, r.sequence.len());
            proximal_loci
                .entry(&r.chrom)
                .or_default()
                .push(Interval::new(start, end));
        }
    }
    let proximal_loci: std::collections::BTreeMap<&str, IntervalSet> = proximal_loci
        .into_iter()
        .map(|(chrom, intervals)| (chrom, IntervalSet::new(intervals)))
        .collect();
    let mut overlapping = 0usize;
    let distal: Vec<SequenceRow> = records
        .iter()
        .filter_map(|r| r.row(0, 0))
        .filter(|row| {
            let clash = proximal_loci
                .get(row.chrom.as_str())
                .is_some_and(|set| set.overlaps(row.start, row.end));
            overlapping += clash as usize;
            !clash
        })
        .collect();
    let mut rows = proximal;
    rows.extend(distal);
    rows.sort_by(|a, b| {
        (&a.chrom, a.start, &a.strand, a.label).cmp(&(&b.chrom, b.start, &b.strand, b.label))
    });
    let target = out.join(format!("{NAME}.parquet"));
    write_rows(
        &target,
        &rows,
        &raw.provenance(0, &["dm3_upstream2000.fa.gz"])?,
    )?;
    let text = format!(
        "Core promoter vs upstream background, fly (dm3). Source: r-bioc-biostrings 2.66.0 \
         `extdata/dm3_upstream2000.fa.gz` (UCSC dm3 upstream2000: 2 kb upstream of RefSeq TSSs, \
         already in transcription orientation, last base at −1). {total} records, deduplicated \
         by locus (chrom, start, strand) to {} (alternative transcripts share TSSs). Positives: \
         the last 250 bp (−250..−1); negatives: the first 250 bp (−2000..−1751), dropping \
         {overlapping} distal windows whose genomic interval overlaps any proximal window. Windows \
         with N dropped; sequence upper-cased. Coordinates: 0-based half-open dm3, the `-` strand \
         rows are the reverse complement of chrom[start, end). Split: test = {TEST_CHROM}, valid = \
         {VALID_CHROM}, train = the rest.\n\n{}",
        records.len(),
        classification_summary(&rows)?
    );
    Ok(Built::table(NAME, rows.len(), text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genomic_coordinates_follow_the_strand() {
        let forward = Upstream {
            refseq: "NM_1".into(),
            chrom: "chr2L".into(),
            first: 1001,
            reverse: false,
            sequence: vec![b'A'; 2000],
        };
        // 1-based 1001..3000 is 0-based [1000, 3000); its last 250 bases are [2750, 3000).
        assert_eq!(forward.genomic(1750, 2000), (2750, 3000));
        let reverse = Upstream {
            reverse: true,
            ..forward
        };
        // On the minus strand the sequence's end (−1) is the locus's lowest coordinate.
        assert_eq!(reverse.genomic(1750, 2000), (1000, 1250));
        assert_eq!(reverse.genomic(0, 250), (2750, 3000));
        let parsed = parse_header(
            Path::new("x.fa"),
            1,
            "NM_078863_up_2000_chr2L_16764737_f",
            "acgt".into(),
        )
        .unwrap();
        assert_eq!((parsed.chrom.as_str(), parsed.first), ("chr2L", 16764737));
        assert_eq!(parsed.sequence, b"ACGT");
    }
}
