//! BED interval files (plain or gzip): reader with file:line errors, deterministic gzip writer,
//! and per-nucleotide tracks over a window (what attributions are compared with).

use std::io::{BufRead, Write};
use std::path::Path;

use crate::error::{GenolensError, Result};

/// One BED line (0-based half-open); columns beyond the sixth are kept as text.
#[derive(Debug, Clone, PartialEq)]
pub struct BedRecord {
    /// Chromosome.
    pub chrom: String,
    /// First base.
    pub start: i64,
    /// One past the last base.
    pub end: i64,
    /// Column 4 (`.` reads as `None`).
    pub name: Option<String>,
    /// Column 5.
    pub score: Option<f64>,
    /// Column 6 (`+`, `-`; `.` reads as `None`).
    pub strand: Option<char>,
    /// Columns 7 onwards.
    pub extra: Vec<String>,
}

impl BedRecord {
    /// A BED3 record.
    pub fn new(chrom: &str, start: i64, end: i64) -> Self {
        BedRecord {
            chrom: chrom.to_string(),
            start,
            end,
            name: None,
            score: None,
            strand: None,
            extra: Vec::new(),
        }
    }
}

/// Reads every record; `track`, `browser` and `#` lines are skipped.
pub fn read_bed(path: &Path) -> Result<Vec<BedRecord>> {
    let reader = crate::data::open_text(path)?;
    let mut records = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| GenolensError::io(path, e))?;
        if line.trim().is_empty()
            || ["track", "browser", "#"]
                .iter()
                .any(|p| line.starts_with(p))
        {
            continue;
        }
        records.push(parse_line(&line).map_err(|message| GenolensError::Data {
            path: path.to_path_buf(),
            line: index + 1,
            message,
        })?);
    }
    Ok(records)
}

fn parse_line(line: &str) -> std::result::Result<BedRecord, String> {
    let fields: Vec<&str> = line.split('\t').collect();
    if fields.len() < 3 {
        return Err(format!(
            "expected at least 3 tab-separated columns (chrom, start, end), found {}",
            fields.len()
        ));
    }
    let coordinate = |i: usize, what: &str| {
        fields[i]
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("{what} {:?} is not an integer", fields[i]))
    };
    let (start, end) = (coordinate(1, "start")?, coordinate(2, "end")?);
    if start < 0 || end < start {
        return Err(format!(
            "interval {start}..{end} is not a valid 0-based half-open range"
        ));
    }
    let score = match fields.get(4).map(|s| s.trim()) {
        None | Some(".") | Some("") => None,
        Some(s) => Some(
            s.parse::<f64>()
                .map_err(|_| format!("score {s:?} is not a number"))?,
        ),
    };
    let strand = match fields.get(5).map(|s| s.trim()) {
        None | Some(".") | Some("") => None,
        Some("+") => Some('+'),
        Some("-") => Some('-'),
        Some(s) => return Err(format!("strand {s:?} is not +, - or .")),
    };
    Ok(BedRecord {
        chrom: fields[0].to_string(),
        start,
        end,
        name: fields.get(3).filter(|s| **s != ".").map(|s| s.to_string()),
        score,
        strand,
        extra: fields.iter().skip(6).map(|s| s.to_string()).collect(),
    })
}

/// Writes records as gzipped BED (mtime 0 in the header, so equal records give equal bytes).
/// Columns are written up to the last one any record has.
pub fn write_bed_gz(path: &Path, records: &[BedRecord]) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| GenolensError::io(path, e))?;
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(std::io::BufWriter::new(file), flate2::Compression::new(9));
    let io = |e| GenolensError::io(path, e);
    for r in records {
        let mut line = format!("{}\t{}\t{}", r.chrom, r.start, r.end);
        let wide =
            r.name.is_some() || r.score.is_some() || r.strand.is_some() || !r.extra.is_empty();
        if wide {
            let score = r.score.map_or(".".to_string(), |s| format!("{s}"));
            let strand = r.strand.map_or('.', |s| s);
            line.push_str(&format!(
                "\t{}\t{score}\t{strand}",
                r.name.as_deref().unwrap_or(".")
            ));
            for extra in &r.extra {
                line.push('\t');
                line.push_str(extra);
            }
        }
        line.push('\n');
        gz.write_all(line.as_bytes()).map_err(io)?;
    }
    gz.finish().map_err(io)?.flush().map_err(io)
}

/// Per-nucleotide coverage of [start, end) on `chrom`: 1.0 where any record covers the base.
pub fn coverage_track(records: &[BedRecord], chrom: &str, start: i64, end: i64) -> Vec<f32> {
    let mut track = vec![0.0f32; (end - start).max(0) as usize];
    for r in records
        .iter()
        .filter(|r| r.chrom == chrom && r.start < end && r.end > start)
    {
        let from = (r.start.max(start) - start) as usize;
        let to = (r.end.min(end) - start) as usize;
        track[from..to].fill(1.0);
    }
    track
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tracks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.bed.gz");
        let mut site = BedRecord::new("chr20", 5, 8);
        site.name = Some("MA0139.2_CTCF".into());
        site.score = Some(12.5);
        site.strand = Some('-');
        site.extra = vec!["1e-5".into()];
        let records = vec![BedRecord::new("chr20", 0, 2), site];
        write_bed_gz(&path, &records).unwrap();
        let back = read_bed(&path).unwrap();
        assert_eq!(back[1], records[1]);
        // A BED3 record in a BED6+ file reads back with its missing columns as None.
        assert_eq!(back[0], records[0]);
        assert_eq!(
            coverage_track(&back, "chr20", 1, 7),
            vec![1.0, 0.0, 0.0, 0.0, 1.0, 1.0]
        );
        let bytes = std::fs::read(&path).unwrap();
        write_bed_gz(&path, &records).unwrap();
        assert_eq!(
            bytes,
            std::fs::read(&path).unwrap(),
            "same records, same bytes"
        );
    }

    #[test]
    fn errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.bed");
        std::fs::write(&path, "track name=x\nchr1\t10\t20\nchr1\t30\tx\n").unwrap();
        let err = read_bed(&path).unwrap_err().to_string();
        assert!(
            err.contains("bad.bed:3") && err.contains("end \"x\""),
            "{err}"
        );
        std::fs::write(&path, "chr1\t30\t20\n").unwrap();
        let err = read_bed(&path).unwrap_err().to_string();
        assert!(err.contains("bad.bed:1") && err.contains("30..20"), "{err}");
    }
}
