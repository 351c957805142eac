//! Attention-head statistics (methods.md §2) and attention ↔ annotation correlation (§3).
//!
//! Per sequence, layer and head: the entropy of the [CLS] query row and the mean entropy of all
//! valid query rows (nats, and normalised by ln of the valid key count), the max and variance of
//! the [CLS] row, the [CLS] row's attention on the tokens covering a variant (sum and mean), the
//! mean mass the head puts on [CLS] and on [SEP] and a degenerate-head flag. Padding never
//! enters a statistic: only the first `n` query rows and key columns of a sequence of `n` tokens
//! are read.
//!
//! Per token (without [CLS] and [SEP]) and head, three scores that a correlation with a
//! per-token annotation can use: `received_max` (the most attention any valid query gives the
//! token, seed 003's column max), `received_mean` (the mean over valid queries) and `cls_row`
//! (the [CLS] query's attention on it). [`AnnotationCorrelator`] pools tokens over sequences and
//! gives Spearman's ρ per (layer, head, score, feature) with a block-permutation null.

use std::collections::BTreeMap;
use std::ops::Range;

use candle_core::{DType, Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::data::bed::BedRecord;
use crate::error::{GenolensError, Result};
use crate::stats::hypothesis::{average_ranks, benjamini_hochberg, correlation_p, permutation_p};

/// A head whose [CLS] and [SEP] columns receive more than this share of the attention, averaged
/// over valid query rows, is flagged degenerate (methods.md §2; seed 004's L7H5).
pub const DEGENERATE_SPECIAL_MASS: f64 = 0.8;

/// The three per-token head scores, in the order [`token_scores`] stores them.
pub const SCORES: [&str; 3] = ["received_max", "received_mean", "cls_row"];

/// One head's statistics on one sequence (columns of `head_stats.parquet`).
#[derive(Debug, Clone, PartialEq)]
pub struct HeadStats {
    /// Layer (0-based).
    pub layer: usize,
    /// Head (0-based).
    pub head: usize,
    /// Valid tokens (keys), [CLS] and [SEP] included.
    pub valid_keys: usize,
    /// Entropy (nats) of the [CLS] query row over the valid keys.
    pub cls_entropy_nats: f64,
    /// `cls_entropy_nats / ln(valid_keys)` (1 = uniform).
    pub cls_entropy_normalised: f64,
    /// Mean over valid query rows of each row's entropy over valid keys.
    pub mean_entropy_nats: f64,
    /// `mean_entropy_nats / ln(valid_keys)`.
    pub mean_entropy_normalised: f64,
    /// Max of the [CLS] row over valid keys.
    pub cls_max_attention: f64,
    /// Population variance of the [CLS] row over valid keys.
    pub cls_variance: f64,
    /// Σ of the [CLS] row over the tokens covering the variant (None without a variant).
    pub cls_to_variant_sum: Option<f64>,
    /// Mean of the [CLS] row over the tokens covering the variant.
    pub cls_to_variant_mean: Option<f64>,
    /// Mean over valid query rows of the attention on [CLS].
    pub mass_on_cls: f64,
    /// Mean over valid query rows of the attention on [SEP].
    pub mass_on_sep: f64,
    /// `mass_on_cls + mass_on_sep > 0.8`.
    pub degenerate: bool,
}

/// Entropy (nats) of a probability row; 0·ln 0 = 0.
pub fn entropy_nats(row: &[f32]) -> f64 {
    row.iter()
        .map(|&p| f64::from(p))
        .filter(|&p| p > 0.0)
        .map(|p| -p * p.ln())
        .sum()
}

/// The statistics of one head's pattern on one sequence. `pattern` holds the head's padded
/// `[t, t]` matrix row-major (row = query); `valid` is the sequence's token count (the first
/// `valid` rows and columns); `variant` the model positions of the tokens covering the variant;
/// `sep` the position of the closing special token ([SEP]), `None` for tokenizers without one
/// (the Nucleotide Transformer: `mass_on_sep` is then 0).
pub fn head_stats(
    layer: usize,
    head: usize,
    pattern: &[f32],
    padded: usize,
    valid: usize,
    variant: Option<Range<usize>>,
    sep: Option<usize>,
) -> HeadStats {
    let row = |q: usize| &pattern[q * padded..q * padded + valid];
    let cls = row(0);
    let n = valid as f64;
    let log_n = n.ln();
    let cls_entropy = entropy_nats(cls);
    let mut entropy_sum = 0.0;
    let (mut on_cls, mut on_sep) = (0.0, 0.0);
    for q in 0..valid {
        let r = row(q);
        entropy_sum += entropy_nats(r);
        on_cls += f64::from(r[0]);
        on_sep += sep.map_or(0.0, |sep| f64::from(r[sep]));
    }
    let mean_entropy = entropy_sum / n;
    let cls_mean = cls.iter().map(|&p| f64::from(p)).sum::<f64>() / n;
    let cls_variance = cls
        .iter()
        .map(|&p| (f64::from(p) - cls_mean).powi(2))
        .sum::<f64>()
        / n;
    let cls_max = cls.iter().fold(0.0f32, |m, &p| m.max(p));
    let variant_sum = variant
        .clone()
        .map(|tokens| tokens.map(|k| f64::from(cls[k])).sum::<f64>());
    let variant_mean = variant.zip(variant_sum).map(|(t, s)| s / t.len() as f64);
    let (mass_on_cls, mass_on_sep) = (on_cls / n, on_sep / n);
    HeadStats {
        layer,
        head,
        valid_keys: valid,
        cls_entropy_nats: cls_entropy,
        cls_entropy_normalised: cls_entropy / log_n,
        mean_entropy_nats: mean_entropy,
        mean_entropy_normalised: mean_entropy / log_n,
        cls_max_attention: f64::from(cls_max),
        cls_variance,
        cls_to_variant_sum: variant_sum,
        cls_to_variant_mean: variant_mean,
        mass_on_cls,
        mass_on_sep,
        degenerate: mass_on_cls + mass_on_sep > DEGENERATE_SPECIAL_MASS,
    }
}

/// The three token scores of one head on one sequence, for the sequence tokens at model
/// positions `tokens` (between [CLS] and [SEP], or after `<cls>`): `[score][token]` in the order
/// of [`SCORES`].
pub fn token_scores(
    pattern: &[f32],
    padded: usize,
    valid: usize,
    tokens: Range<usize>,
) -> [Vec<f32>; 3] {
    let first = tokens.start;
    let tokens = tokens.len();
    let mut max = vec![0.0f32; tokens];
    let mut sum = vec![0.0f64; tokens];
    for q in 0..valid {
        let row = &pattern[q * padded + first..q * padded + first + tokens];
        for ((m, s), &p) in max.iter_mut().zip(sum.iter_mut()).zip(row) {
            *m = m.max(p);
            *s += f64::from(p);
        }
    }
    let mean = sum.iter().map(|&s| (s / valid as f64) as f32).collect();
    let cls = pattern[first..first + tokens].to_vec();
    [max, mean, cls]
}

/// Where a sequence lies on the genome: [start, end) on `chrom`, read on the minus strand when
/// `minus` (the sequence is then the reverse complement, so its base j is genome base end−1−j).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locus {
    /// Chromosome as the annotation BED files name it.
    pub chrom: String,
    /// First base (0-based).
    pub start: i64,
    /// One past the last base.
    pub end: i64,
    /// Read on the minus strand.
    pub minus: bool,
}

impl Locus {
    /// Parses `chrom:start-end` or `chrom:start-end(+|-)` (0-based half-open, as genolens'
    /// dataset ids and `bedtools getfasta -s` headers write them).
    pub fn parse_id(id: &str) -> Option<Locus> {
        let (chrom, rest) = id.rsplit_once(':')?;
        let (range, minus) = match rest.strip_suffix(')') {
            Some(r) => {
                let (range, strand) = r.rsplit_once('(')?;
                (range, strand == "-")
            }
            None => (rest, false),
        };
        let (start, end) = range.split_once('-')?;
        let (start, end) = (start.parse().ok()?, end.parse().ok()?);
        (end > start && !chrom.is_empty()).then(|| Locus {
            chrom: chrom.to_string(),
            start,
            end,
            minus,
        })
    }

    /// The part of this locus that bases `range` of the sequence cover.
    pub fn crop(&self, range: Range<usize>) -> Locus {
        let (from, to) = (range.start as i64, range.end as i64);
        let (start, end) = if self.minus {
            (self.end - to, self.end - from)
        } else {
            (self.start + from, self.start + to)
        };
        Locus {
            chrom: self.chrom.clone(),
            start,
            end,
            minus: self.minus,
        }
    }
}

/// One BED annotation, indexed for window lookups.
#[derive(Debug, Clone)]
pub struct Track {
    /// Feature name (the file's stem: `cpg_islands` for cpg_islands.bed.gz).
    pub name: String,
    by_chrom: BTreeMap<String, Vec<(i64, i64)>>,
    longest: i64,
}

impl Track {
    /// Indexes `records` under `name`.
    pub fn new(name: &str, records: &[BedRecord]) -> Track {
        let mut by_chrom: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
        let mut longest = 0;
        for r in records {
            by_chrom
                .entry(r.chrom.clone())
                .or_default()
                .push((r.start, r.end));
            longest = longest.max(r.end - r.start);
        }
        by_chrom.values_mut().for_each(|v| v.sort_unstable());
        Track {
            name: name.to_string(),
            by_chrom,
            longest,
        }
    }

    /// Per-base coverage (1 = inside an interval) of the locus, in sequence order (reversed on
    /// the minus strand).
    pub fn coverage(&self, locus: &Locus) -> Vec<f32> {
        let length = (locus.end - locus.start).max(0) as usize;
        let mut track = vec![0.0f32; length];
        if let Some(intervals) = self.by_chrom.get(&locus.chrom) {
            let first = intervals.partition_point(|&(s, _)| s < locus.start - self.longest);
            for &(s, e) in &intervals[first..] {
                if s >= locus.end {
                    break;
                }
                if e > locus.start {
                    let from = (s.max(locus.start) - locus.start) as usize;
                    let to = (e.min(locus.end) - locus.start) as usize;
                    track[from..to].fill(1.0);
                }
            }
        }
        if locus.minus {
            track.reverse();
        }
        track
    }
}

/// Reads every `*.bed` / `*.bed.gz` file of `dir` as a [`Track`] named by its stem, sorted by
/// name. A folder without BED files is an error naming it.
pub fn read_tracks(dir: &std::path::Path) -> Result<Vec<Track>> {
    let entries = std::fs::read_dir(dir).map_err(|e| GenolensError::Data {
        path: dir.to_path_buf(),
        line: 0,
        message: format!("cannot read the annotation folder: {e}"),
    })?;
    let mut files: Vec<(String, std::path::PathBuf)> = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let stem = name
            .strip_suffix(".bed.gz")
            .or_else(|| name.strip_suffix(".bed"));
        if let Some(stem) = stem {
            files.push((stem.to_string(), path));
        }
    }
    if files.is_empty() {
        return Err(GenolensError::Data {
            path: dir.to_path_buf(),
            line: 0,
            message: "no .bed or .bed.gz files: --annotations takes a folder of BED tracks \
                      (such as data/annotations-chr20)"
                .into(),
        });
    }
    files.sort();
    files
        .iter()
        .map(|(name, path)| Ok(Track::new(name, &crate::data::bed::read_bed(path)?)))
        .collect()
}

/// Names of the features every run has, after the BED tracks: the TATA-box k-mer flag, GC per
/// token and relative position.
pub const SEQUENCE_FEATURES: [&str; 3] = ["tata_kmer", "gc", "relative_position"];

/// Per-token feature values of one sequence (tokens between [CLS] and [SEP]): the mean of each
/// track's per-base coverage over the token's bases, then `tata_kmer` (1 when the token's bases
/// contain TATAWA, the TATA-box core), `gc` (G+C fraction) and `relative_position` (0 at the
/// first token, 1 at the last). `[feature][token]`.
pub fn token_features(
    sequence: &str,
    spans: &[Range<usize>],
    tracks: &[Track],
    locus: Option<&Locus>,
) -> Vec<Vec<f32>> {
    let mut features = Vec::with_capacity(tracks.len() + SEQUENCE_FEATURES.len());
    if let Some(locus) = locus {
        for track in tracks {
            let coverage = track.coverage(locus);
            features.push(
                spans
                    .iter()
                    .map(|s| coverage[s.clone()].iter().sum::<f32>() / s.len() as f32)
                    .collect(),
            );
        }
    }
    let bases = sequence.as_bytes();
    features.push(
        spans
            .iter()
            .map(|s| {
                let kmer = bases[s.clone()].to_ascii_uppercase();
                let tata = kmer
                    .windows(6)
                    .any(|w| &w[..4] == b"TATA" && matches!(w[4], b'A' | b'T') && w[5] == b'A');
                f32::from(u8::from(tata))
            })
            .collect(),
    );
    features.push(
        spans
            .iter()
            .map(|s| {
                let gc = bases[s.clone()]
                    .iter()
                    .filter(|b| matches!(b.to_ascii_uppercase(), b'G' | b'C'))
                    .count();
                gc as f32 / s.len() as f32
            })
            .collect(),
    );
    let last = spans.len().saturating_sub(1).max(1) as f32;
    features.push((0..spans.len()).map(|i| i as f32 / last).collect());
    features
}

/// One (layer, head, score, feature, subset) correlation (a row of `head_annotation.parquet`).
#[derive(Debug, Clone, PartialEq)]
pub struct AnnotationCorrelation {
    /// Layer.
    pub layer: usize,
    /// Head.
    pub head: usize,
    /// Token score (one of [`SCORES`]).
    pub score: &'static str,
    /// Feature name.
    pub feature: String,
    /// `all` or a class name: the tokens pooled.
    pub subset: String,
    /// Tokens pooled.
    pub tokens: usize,
    /// Sequences pooled.
    pub sequences: usize,
    /// Sequences with the feature on at least one token.
    pub sequences_with_feature: usize,
    /// Spearman's ρ of the score and the feature over the pooled tokens.
    pub rho: f64,
    /// scipy's parametric p of ρ (tokens are not independent: read `p_empirical`).
    pub p_parametric: f64,
    /// Mean of ρ under the block-permutation null.
    pub null_mean: f64,
    /// SD of ρ under the null.
    pub null_sd: f64,
    /// (ρ − null_mean) / null_sd.
    pub z: f64,
    /// (1 + #{|ρ_null| ≥ |ρ|}) / (1 + permutations).
    pub p_empirical: f64,
    /// Benjamini–Hochberg q of `p_empirical` over all (layer, head, feature) of this score and
    /// subset.
    pub q: f64,
    /// Null permutations.
    pub permutations: usize,
}

/// Settings of the block-permutation null.
#[derive(Debug, Clone, Copy)]
pub struct NullSettings {
    /// Permutations (methods.md: 100).
    pub permutations: usize,
    /// Tokens per shuffled block (methods.md: 10).
    pub block: usize,
    /// Seed of the shuffles.
    pub seed: u64,
    /// Features present in fewer than this share of sequences are dropped (methods.md: 5 %).
    pub min_sequence_share: f64,
}

impl Default for NullSettings {
    fn default() -> Self {
        NullSettings {
            permutations: 100,
            block: 10,
            seed: 0,
            min_sequence_share: 0.05,
        }
    }
}

/// Pools per-token head scores and features over sequences and correlates them.
#[derive(Debug, Clone)]
pub struct AnnotationCorrelator {
    layers: usize,
    heads: usize,
    features: Vec<String>,
    /// `[(layer·heads + head)·3 + score][token]`.
    scores: Vec<Vec<f32>>,
    /// `[feature][token]`.
    values: Vec<Vec<f32>>,
    /// Token range of each sequence and its class.
    sequences: Vec<(Range<usize>, Option<String>)>,
}

impl AnnotationCorrelator {
    /// An empty pool for a model of `layers` × `heads` and these feature names.
    pub fn new(layers: usize, heads: usize, features: Vec<String>) -> Self {
        AnnotationCorrelator {
            layers,
            heads,
            scores: vec![Vec::new(); layers * heads * SCORES.len()],
            values: vec![Vec::new(); features.len()],
            features,
            sequences: Vec::new(),
        }
    }

    /// Feature names, in column order.
    pub fn features(&self) -> &[String] {
        &self.features
    }

    /// Adds one sequence: `scores[layer·heads + head]` as [`token_scores`] returns them and
    /// `features[feature][token]` as [`token_features`] does.
    pub fn add(
        &mut self,
        scores: &[[Vec<f32>; 3]],
        features: &[Vec<f32>],
        class: Option<String>,
    ) -> Result<()> {
        let tokens = features.first().map_or(0, Vec::len);
        if scores.len() != self.layers * self.heads
            || features.len() != self.features.len()
            || features.iter().any(|f| f.len() != tokens)
            || scores.iter().flatten().any(|s| s.len() != tokens)
        {
            return Err(GenolensError::argument(
                "annotation correlation",
                "scores and features of a sequence differ in shape",
            ));
        }
        let start = self.values[0].len();
        for (pool, head) in self.scores.chunks_mut(SCORES.len()).zip(scores) {
            for (p, s) in pool.iter_mut().zip(head) {
                p.extend_from_slice(s);
            }
        }
        for (pool, f) in self.values.iter_mut().zip(features) {
            pool.extend_from_slice(f);
        }
        self.sequences.push((start..start + tokens, class));
        Ok(())
    }

    /// Sequences added.
    pub fn sequence_count(&self) -> usize {
        self.sequences.len()
    }

    /// Spearman ρ, the block-permutation null, z, empirical p and BH q for every (layer, head,
    /// score, feature) over all tokens (`subset` = `all`) and over each class's tokens. Features
    /// present in fewer than `min_sequence_share` of the sequences are dropped (returned second).
    pub fn correlate(
        &self,
        settings: &NullSettings,
    ) -> Result<(Vec<AnnotationCorrelation>, Vec<String>)> {
        let present = |f: usize, seqs: &[usize]| {
            seqs.iter()
                .filter(|&&s| {
                    self.values[f][self.sequences[s].0.clone()]
                        .iter()
                        .any(|&v| v != 0.0)
                })
                .count()
        };
        let all: Vec<usize> = (0..self.sequences.len()).collect();
        let mut kept = Vec::new();
        let mut dropped = Vec::new();
        for f in 0..self.features.len() {
            let share = present(f, &all) as f64 / all.len().max(1) as f64;
            if share >= settings.min_sequence_share {
                kept.push(f);
            } else {
                dropped.push(self.features[f].clone());
            }
        }
        let mut subsets: Vec<(String, Vec<usize>)> = vec![("all".into(), all)];
        let mut classes: Vec<&String> = self
            .sequences
            .iter()
            .filter_map(|(_, c)| c.as_ref())
            .collect();
        classes.sort();
        classes.dedup();
        if classes.len() > 1 {
            for class in classes {
                let members = (0..self.sequences.len())
                    .filter(|&s| self.sequences[s].1.as_ref() == Some(class))
                    .collect();
                subsets.push((class.clone(), members));
            }
        }
        let mut rows = Vec::new();
        for (subset, members) in &subsets {
            rows.extend(self.correlate_subset(subset, members, &kept, settings, &present)?);
        }
        Ok((rows, dropped))
    }

    fn correlate_subset(
        &self,
        subset: &str,
        members: &[usize],
        kept: &[usize],
        settings: &NullSettings,
        present: &dyn Fn(usize, &[usize]) -> usize,
    ) -> Result<Vec<AnnotationCorrelation>> {
        let token_index: Vec<usize> = members
            .iter()
            .flat_map(|&s| self.sequences[s].0.clone())
            .collect();
        let n = token_index.len();
        // Ranks centred and scaled to unit norm: ρ is then a dot product (NaN rows when constant).
        let standard_ranks = |values: &[f32]| -> Option<Vec<f64>> {
            let picked: Vec<f64> = token_index.iter().map(|&t| f64::from(values[t])).collect();
            let ranks = average_ranks(&picked);
            let mean = (n as f64 + 1.0) / 2.0;
            let centred: Vec<f64> = ranks.iter().map(|r| r - mean).collect();
            let norm = centred.iter().map(|c| c * c).sum::<f64>().sqrt();
            (norm > 0.0).then(|| centred.iter().map(|c| c / norm).collect())
        };
        let score_ranks: Vec<Option<Vec<f64>>> =
            self.scores.iter().map(|s| standard_ranks(s)).collect();
        let feature_ranks: Vec<Option<Vec<f64>>> = kept
            .iter()
            .map(|&f| standard_ranks(&self.values[f]))
            .collect();
        let m = score_ranks.len();
        let f_count = kept.len();
        let observed: Vec<f64> = (0..m * f_count)
            .map(
                |i| match (&score_ranks[i / f_count], &feature_ranks[i % f_count]) {
                    (Some(s), Some(f)) => s
                        .iter()
                        .zip(f)
                        .map(|(a, b)| a * b)
                        .sum::<f64>()
                        .clamp(-1.0, 1.0),
                    _ => f64::NAN,
                },
            )
            .collect();
        // The null: feature ranks permuted in blocks within each sequence; ρ of every score row
        // with every permuted feature as one matrix product per chunk of permutations.
        let device = Device::Cpu;
        let score_matrix: Vec<f32> = score_ranks
            .iter()
            .flat_map(|r| match r {
                Some(r) => r.iter().map(|&v| v as f32).collect::<Vec<_>>(),
                None => vec![0.0; n],
            })
            .collect();
        let score_matrix = Tensor::from_vec(score_matrix, (m, n), &device)?;
        let mut null: Vec<Vec<f64>> = vec![Vec::with_capacity(settings.permutations); m * f_count];
        let chunk = 8usize;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(settings.seed);
        let spans: Vec<Range<usize>> = {
            let mut offset = 0;
            members
                .iter()
                .map(|&s| {
                    let len = self.sequences[s].0.len();
                    offset += len;
                    offset - len..offset
                })
                .collect()
        };
        let mut done = 0;
        while done < settings.permutations && f_count > 0 {
            let count = chunk.min(settings.permutations - done);
            // Columns: permutation-major, feature-minor.
            let mut permuted = vec![0.0f32; n * count * f_count];
            for p in 0..count {
                let order = block_permutation(&spans, settings.block, &mut rng);
                for (fi, ranks) in feature_ranks.iter().enumerate() {
                    let Some(ranks) = ranks else { continue };
                    let column = p * f_count + fi;
                    for (t, &source) in order.iter().enumerate() {
                        permuted[t * count * f_count + column] = ranks[source] as f32;
                    }
                }
            }
            let permuted = Tensor::from_vec(permuted, (n, count * f_count), &device)?;
            let products = score_matrix.matmul(&permuted)?.to_dtype(DType::F64)?;
            let products: Vec<Vec<f64>> = products.to_vec2()?;
            for (row, values) in products.iter().enumerate() {
                for p in 0..count {
                    for fi in 0..f_count {
                        null[row * f_count + fi].push(values[p * f_count + fi]);
                    }
                }
            }
            done += count;
        }
        let mut rows = Vec::with_capacity(m * f_count);
        for (i, &rho) in observed.iter().enumerate() {
            let (row, fi) = (i / f_count, i % f_count);
            let (head_index, score) = (row / SCORES.len(), row % SCORES.len());
            let draws = &null[i];
            let count = draws.len() as f64;
            let null_mean = draws.iter().sum::<f64>() / count;
            let null_sd =
                (draws.iter().map(|d| (d - null_mean).powi(2)).sum::<f64>() / (count - 1.0)).sqrt();
            rows.push(AnnotationCorrelation {
                layer: head_index / self.heads,
                head: head_index % self.heads,
                score: SCORES[score],
                feature: self.features[kept[fi]].clone(),
                subset: subset.to_string(),
                tokens: n,
                sequences: members.len(),
                sequences_with_feature: present(kept[fi], members),
                rho,
                p_parametric: correlation_p(rho, n),
                null_mean,
                null_sd,
                z: (rho - null_mean) / null_sd,
                p_empirical: if rho.is_nan() {
                    f64::NAN
                } else {
                    permutation_p(rho, draws)
                },
                q: f64::NAN,
                permutations: draws.len(),
            });
        }
        // BH over (layer, head, feature) within each score.
        for score in SCORES {
            let indices: Vec<usize> = (0..rows.len())
                .filter(|&i| rows[i].score == score)
                .collect();
            let p: Vec<f64> = indices.iter().map(|&i| rows[i].p_empirical).collect();
            for (&i, q) in indices.iter().zip(benjamini_hochberg(&p)) {
                rows[i].q = q;
            }
        }
        Ok(rows)
    }
}

/// A permutation of the concatenated tokens of `spans` (consecutive ranges, one per sequence):
/// within each sequence, blocks of `block` tokens (the last one shorter) in a shuffled order,
/// each block's tokens kept in order. Entry t is the source index of output token t.
pub fn block_permutation(
    spans: &[Range<usize>],
    block: usize,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> Vec<usize> {
    let block = block.max(1);
    let mut order = Vec::with_capacity(spans.last().map_or(0, |s| s.end));
    for span in spans {
        let mut blocks: Vec<Range<usize>> = (span.start..span.end)
            .step_by(block)
            .map(|s| s..(s + block).min(span.end))
            .collect();
        blocks.shuffle(rng);
        for b in blocks {
            order.extend(b);
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_ignore_padding_and_flag_special_heads() {
        // 3 valid tokens in a padded 4×4 pattern; the padding column and row hold junk.
        let padded = 4;
        let pattern = [
            0.5, 0.25, 0.25, 9.0, //
            0.9, 0.05, 0.05, 9.0, //
            0.1, 0.1, 0.8, 9.0, //
            9.0, 9.0, 9.0, 9.0,
        ];
        let stats = head_stats(2, 1, &pattern, padded, 3, Some(1..2), Some(2));
        let h = |r: &[f64]| -r.iter().map(|p| p * p.ln()).sum::<f64>();
        assert!((stats.cls_entropy_nats - h(&[0.5, 0.25, 0.25])).abs() < 1e-7);
        let mean = (h(&[0.5, 0.25, 0.25]) + h(&[0.9, 0.05, 0.05]) + h(&[0.1, 0.1, 0.8])) / 3.0;
        assert!((stats.mean_entropy_nats - mean).abs() < 1e-7);
        assert!((stats.cls_entropy_normalised - h(&[0.5, 0.25, 0.25]) / 3f64.ln()).abs() < 1e-7);
        assert_eq!(stats.cls_max_attention, 0.5);
        // Deviations 1/6, −1/12, −1/12 from the mean 1/3: variance (1/36 + 2/144) / 3 = 1/72.
        assert!((stats.cls_variance - 1.0 / 72.0).abs() < 1e-7);
        assert_eq!(stats.cls_to_variant_sum, Some(0.25));
        assert!((stats.mass_on_cls - 1.5 / 3.0).abs() < 1e-7);
        assert!((stats.mass_on_sep - 1.1 / 3.0).abs() < 1e-7);
        assert!(stats.degenerate);
        let [max, mean, cls] = token_scores(&pattern, padded, 3, 1..2);
        assert_eq!((max, cls), (vec![0.25], vec![0.25]));
        assert!((mean[0] - 0.4 / 3.0).abs() < 1e-7);
    }

    #[test]
    fn loci_parse_crop_and_read_tracks_on_both_strands() {
        let locus = Locus::parse_id("chr20:100-110(-)").unwrap();
        assert_eq!((locus.start, locus.end, locus.minus), (100, 110, true));
        assert!(!Locus::parse_id("chr1:5-9").unwrap().minus);
        assert!(Locus::parse_id("seq1").is_none() && Locus::parse_id("c:9-5").is_none());
        // Bases 0..4 of a minus-strand sequence are genome 106..110.
        assert_eq!(locus.crop(0..4).start, 106);
        let track = Track::new("t", &[BedRecord::new("chr20", 108, 112)]);
        let plus = Locus {
            minus: false,
            ..locus.clone()
        };
        assert_eq!(track.coverage(&plus)[8..], [1.0, 1.0]);
        assert_eq!(track.coverage(&locus)[..3], [1.0, 1.0, 0.0]);
        let spans: Vec<Range<usize>> = (0..5).map(|i| i..i + 6).collect();
        let features = token_features("GGTATAAACC", &spans, &[track], Some(&locus));
        assert_eq!(features.len(), 4);
        // Tokens GGTATA, GTATAA, TATAAA, ATAAAC, TAAACC: only the third holds TATAWA.
        assert_eq!(features[1], vec![0.0, 0.0, 1.0, 0.0, 0.0]);
        assert_eq!(features[3][4], 1.0);
    }

    #[test]
    fn block_permutations_stay_within_sequences_and_keep_blocks() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let spans = [0..25, 25..31];
        let order = block_permutation(&spans, 10, &mut rng);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..31).collect::<Vec<_>>());
        assert!(order[..25].iter().all(|&i| i < 25));
        assert!(order[..25].windows(2).filter(|w| w[1] != w[0] + 1).count() <= 2);
    }
}
