//! Real-data checks: the motif scanner against memelite's FIMO, and the committed datasets.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use genolens::data::{open_sequences, TableColumns};
use genolens::motif::{letter_codes, read_meme, MotifScanner, ScanOptions};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// (motif id, sequence, start, strand) → (end, score, p-value), from the reference TSV.
type HitTable = HashMap<(String, String, usize, String), (usize, f64, f64)>;

fn reference_hits(path: &Path) -> HitTable {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            (
                (f[0].into(), f[1].into(), f[2].parse().unwrap(), f[4].into()),
                (
                    f[3].parse().unwrap(),
                    f[5].parse().unwrap(),
                    f[6].parse().unwrap(),
                ),
            )
        })
        .collect()
}

#[test]
fn motif_scan_matches_memelite_fimo() {
    let motifs = read_meme(&root().join("data/jaspar/JASPAR2024_CORE_vertebrates.meme")).unwrap();
    assert_eq!(motifs.len(), 879);
    let scanner = MotifScanner::new(motifs, ScanOptions::default());
    let fixtures = root().join("tests/fixtures/motifs");
    let expected = reference_hits(&fixtures.join("hits.tsv"));
    let mut ours: HitTable = HashMap::new();
    for example in open_sequences(&fixtures.join("sequences.fa"), &TableColumns::default()).unwrap()
    {
        let example = example.unwrap();
        for hit in scanner.scan(&letter_codes(example.sequence.as_bytes())) {
            let motif = &scanner.motifs()[hit.motif];
            let key = (
                motif.id.clone(),
                example.id.clone(),
                hit.start,
                hit.strand.symbol().to_string(),
            );
            ours.insert(key, (hit.end, hit.score, hit.p_value));
        }
    }
    let missing: Vec<_> = expected.keys().filter(|k| !ours.contains_key(*k)).collect();
    let extra: Vec<_> = ours.keys().filter(|k| !expected.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} reference hits missing {:?}…, {} extra {:?}…",
        missing.len(),
        missing.iter().take(3).collect::<Vec<_>>(),
        extra.len(),
        extra.iter().take(3).collect::<Vec<_>>()
    );
    let mut worst_score = 0.0f64;
    for (key, (end, score, p)) in &expected {
        let (our_end, our_score, our_p) = ours[key];
        assert_eq!(our_end, *end, "{key:?}");
        // The README: identical p-values (the same log2-space additions in the same order).
        assert_eq!(our_p, *p, "{key:?}: p-value");
        worst_score = worst_score.max((our_score - score).abs());
    }
    println!(
        "{} hits and p-values identical to memelite; largest score error {worst_score:.2e} bits",
        expected.len()
    );
    assert!(worst_score <= 1e-14, "score error {worst_score:e} bits");
}

fn committed(relative: &str) -> PathBuf {
    root().join("data").join(relative)
}

#[test]
fn committed_datasets_match_their_checksums() {
    let sums = std::fs::read_to_string(committed("SHA256SUMS")).unwrap();
    let mut checked = 0;
    for line in sums.lines() {
        let (sha, file) = line.split_once("  ").unwrap();
        let actual = genolens::model::load::sha256_file(&root().join(file)).unwrap();
        assert_eq!(actual, sha, "{file} differs from data/SHA256SUMS");
        checked += 1;
    }
    assert!(checked >= 8, "{checked} files listed");
}

#[test]
fn tata_boxes_peak_at_minus_30_in_fly_core_promoters() {
    use genolens::datasets::rows::read_sequence_rows;
    let rows = read_sequence_rows(&committed("fly-core-promoters.parquet")).unwrap();
    // TATAWAW on the sense strand; position of its T relative to the TSS (last base = −1).
    let is_tata = |w: &[u8]| {
        w[0] == b'T'
            && w[1] == b'A'
            && w[2] == b'T'
            && w[3] == b'A'
            && matches!(w[4], b'A' | b'T')
            && w[5] == b'A'
            && matches!(w[6], b'A' | b'T')
    };
    let mut bins = std::collections::BTreeMap::<i64, usize>::new();
    let (mut proximal_near, mut distal_near, mut proximal, mut distal) = (0, 0, 0, 0);
    for row in &rows {
        let sequence = row.sequence.as_bytes();
        let mut near = false;
        for (i, window) in sequence.windows(7).enumerate() {
            let position = i as i64 - sequence.len() as i64;
            if is_tata(window) {
                if row.label == 1 && position >= -60 {
                    *bins.entry((position + 60).div_euclid(5)).or_default() += 1;
                }
                near |= (-40..=-20).contains(&position);
            }
        }
        if row.label == 1 {
            proximal += 1;
            proximal_near += near as usize;
        } else {
            distal += 1;
            distal_near += near as usize;
        }
    }
    let (best_bin, best) = bins.iter().max_by_key(|(_, &count)| count).unwrap();
    let from = best_bin * 5 - 60;
    println!(
        "TATAWAW starts per 5-bp bin from -60: {:?}; peak {}..{}; TATA at -40..-20 in {:.2} % of proximal vs {:.2} % of distal windows",
        bins.values().collect::<Vec<_>>(),
        from,
        from + 4,
        100.0 * proximal_near as f64 / proximal as f64,
        100.0 * distal_near as f64 / distal as f64
    );
    assert_eq!((from, from + 4), (-30, -26), "peak bin with {best} hits");
    // The README's figures (counts on committed data: exact).
    assert_eq!(
        (
            format!("{:.1}", 100.0 * proximal_near as f64 / proximal as f64),
            format!("{:.1}", 100.0 * distal_near as f64 / distal as f64)
        ),
        ("7.1".to_string(), "1.9".to_string())
    );
}

#[test]
fn ctcf_motif_hits_are_enriched_in_ctcf_peaks() {
    use genolens::data::bed::read_bed;
    let dir = committed("annotations-chr20");
    let peaks = read_bed(&dir.join("ctcf_peaks.bed.gz")).unwrap();
    let hits: Vec<(i64, i64)> = read_bed(&dir.join("jaspar_hits.bed.gz"))
        .unwrap()
        .into_iter()
        .filter(|h| h.name.as_deref() == Some("MA0139.2_CTCF"))
        .map(|h| (h.start, h.end))
        .collect();
    let has_hit = |start: i64, end: i64| hits.iter().any(|&(s, e)| s >= start && e <= end);
    let in_peaks =
        peaks.iter().filter(|p| has_hit(p.start, p.end)).count() as f64 / peaks.len() as f64;
    // Background: each peak moved 50 kb downstream (same widths, same neighbourhood scale).
    let shifted = peaks
        .iter()
        .filter(|p| has_hit(p.start + 50_000, p.end + 50_000))
        .count() as f64
        / peaks.len() as f64;
    println!(
        "CTCF hit in {:.1} % of {} peaks vs {:.1} % of shifted windows",
        100.0 * in_peaks,
        peaks.len(),
        100.0 * shifted
    );
    assert!(
        peaks.len() > 6000 && in_peaks > 3.0 * shifted,
        "{in_peaks} vs {shifted}"
    );
    // The README's figures, 42 % vs 9 % (counts on committed data: exact).
    assert_eq!(
        (
            format!("{:.0}", 100.0 * in_peaks),
            format!("{:.0}", 100.0 * shifted)
        ),
        ("42".to_string(), "9".to_string())
    );
}

#[test]
fn kmer_baseline_reaches_the_stated_auroc_on_each_test_split() {
    use genolens::datasets::baseline::baseline_test_auroc;
    use genolens::datasets::rows::read_sequence_rows;
    let readme = std::fs::read_to_string(committed("README.md")).unwrap();
    for (name, floor) in [
        ("human-promoters", 0.70),
        ("tf-oct4-mafk", 0.75),
        ("fly-core-promoters", 0.70),
    ] {
        let rows = read_sequence_rows(&committed(&format!("{name}.parquet"))).unwrap();
        let (value, low, high) = baseline_test_auroc(&rows).unwrap();
        println!("{name}: k-mer logistic test AUROC {value:.3} ({low:.3}–{high:.3})");
        assert!(value > floor, "{name}: {value}");
        // data/README.md states the same figure.
        let section = readme.split(&format!("## `{name}`")).nth(1).unwrap();
        assert!(
            section.contains(&format!("**{value:.3}**")),
            "{name}: README does not state {value:.3}"
        );
    }
}

#[test]
fn eqtl_proxy_windows_and_labels_follow_the_stated_rule() {
    let path = committed("eqtl-proxy.parquet");
    let columns = TableColumns {
        label: Some("label".into()),
        ..Default::default()
    };
    let refs: Vec<_> = open_sequences(&path, &columns)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    let alts: Vec<_> = open_sequences(
        &path,
        &TableColumns {
            sequence: "alt_sequence".into(),
            label: Some("annotation".into()),
            ..Default::default()
        },
    )
    .unwrap()
    .map(|e| e.unwrap())
    .collect();
    assert!(refs.len() > 100, "{} rows", refs.len());
    let (mut positives, mut negatives) = (0, 0);
    for (r, a) in refs.iter().zip(&alts) {
        assert_eq!(r.sequence.len(), 1024);
        let differ: Vec<usize> = (0..1024)
            .filter(|&i| r.sequence.as_bytes()[i] != a.sequence.as_bytes()[i])
            .collect();
        assert_eq!(differ, vec![512], "{}", r.id);
        let annotation = a.label.as_deref().unwrap();
        match r.label.as_deref() {
            Some("1") => {
                positives += 1;
                assert!(
                    matches!(annotation, "ctcf_peak" | "tf_site" | "promoter"),
                    "{annotation}"
                );
            }
            Some("0") => {
                negatives += 1;
                assert_eq!(annotation, "none");
            }
            other => panic!("label {other:?}"),
        }
    }
    assert!(
        negatives <= positives && negatives * 10 >= positives * 8,
        "{positives} vs {negatives}"
    );
}

#[test]
fn data_info_counts_a_committed_dataset() {
    use genolens::commands::data_info::summarise;
    let summary = summarise(&committed("tf-oct4-mafk.parquet"), None).unwrap();
    assert_eq!(summary.labels.values().sum::<usize>(), summary.records);
    assert_eq!(summary.lengths.first(), Some(&200));
    assert_eq!(summary.n + summary.other, 0);
    assert!(summary.splits.keys().any(|(split, _)| split == "test"));
    let text = summary.render(Path::new("tf.parquet"));
    assert!(
        text.contains("split × class") && text.contains("median 200"),
        "{text}"
    );
}
