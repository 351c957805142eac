//! What SAE features mean (methods.md §6): per-feature statistics per class (mean, firing rate,
//! Δ, AUROC, Mann–Whitney p, BH q), the top activating sequences of each feature, and JASPAR
//! motif enrichment in them (one-sided Fisher test against the other sequences, BH over motifs).
//!
//! For token-level SAEs a sequence's activation of a feature is its maximum over tokens (the
//! token is recorded), and the feature fires in a sequence when it fires on any token.

use candle_core::Device;
use statrs::distribution::{DiscreteCDF, Hypergeometric};

use crate::analysis::sae::cache::{ActivationCache, SequenceRow};
use crate::analysis::sae::model::Sae;
use crate::error::{GenolensError, Result};
use crate::motif::meme::Motif;
use crate::motif::pwm::ScanOptions;
use crate::motif::scan::{letter_codes, MotifScanner};
use crate::stats::{benjamini_hochberg, mann_whitney_u};

/// Feature activations of every sequence of a cache.
pub struct SequenceActivations {
    /// The sequences, in cache order.
    pub sequences: Vec<SequenceRow>,
    /// Latents.
    pub d_sae: usize,
    /// [sequence × feature] activation (max over tokens for token rows), row-major.
    pub values: Vec<f32>,
    /// [sequence × feature] token of that activation (0 for per-sequence rows).
    pub tokens: Vec<u32>,
    /// Token-level activations when the cache holds tokens: (sequence, token, feature, value)
    /// for every non-zero activation.
    pub token_activations: Option<Vec<TokenActivation>>,
}

/// One non-zero activation of a token-level SAE.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenActivation {
    /// Sequence index.
    pub sequence: u32,
    /// Token position (1 = first k-mer).
    pub token: u32,
    /// Feature.
    pub feature: u32,
    /// Activation.
    pub value: f32,
}

impl SequenceActivations {
    /// Activation of `feature` in sequence `s`.
    pub fn get(&self, s: usize, feature: usize) -> f32 {
        self.values[s * self.d_sae + feature]
    }

    /// Activations of `feature` over all sequences.
    pub fn column(&self, feature: usize) -> Vec<f32> {
        (0..self.sequences.len())
            .map(|s| self.get(s, feature))
            .collect()
    }
}

/// Encodes every cached row with `sae` (raw activations: the SAE must be folded, as saved).
pub fn encode_cache(sae: &Sae, cache: &ActivationCache) -> Result<SequenceActivations> {
    let sequences = cache.sequences()?;
    let d_sae = sae.d_sae();
    let n = sequences.len();
    let mut values = vec![0f32; n * d_sae];
    let mut tokens = vec![0u32; n * d_sae];
    let per_token = !cache.meta.rows_from.per_sequence();
    let mut token_activations = per_token.then(Vec::new);
    for s in 0..cache.meta.shards.len() {
        let shard = cache.shard_rows(s)?;
        let rows = shard.sequence.len();
        let mut start = 0;
        while start < rows {
            let len = 4096.min(rows - start);
            let x = shard.activations.narrow(0, start, len)?;
            let f = sae
                .encode(&x.to_device(sae.w_enc.as_tensor().device())?)?
                .to_device(&Device::Cpu)?
                .to_vec2::<f32>()?;
            for (i, row) in f.iter().enumerate() {
                let (sequence, token) = (shard.sequence[start + i], shard.token[start + i]);
                let base = sequence as usize * d_sae;
                if sequence as usize >= n {
                    return Err(GenolensError::Data {
                        path: cache.dir.join(&cache.meta.shards[s].file),
                        line: 0,
                        message: format!("row of sequence {sequence}, but the cache lists {n}"),
                    });
                }
                for (feature, &v) in row.iter().enumerate() {
                    if v > 0.0 {
                        if v > values[base + feature] {
                            values[base + feature] = v;
                            tokens[base + feature] = token;
                        }
                        if let Some(list) = token_activations.as_mut() {
                            list.push(TokenActivation {
                                sequence,
                                token,
                                feature: feature as u32,
                                value: v,
                            });
                        }
                    }
                }
            }
            start += len;
        }
    }
    Ok(SequenceActivations {
        sequences,
        d_sae,
        values,
        tokens,
        token_activations,
    })
}

crate::table_row! {
    /// One feature compared between a class and its reference (the other class, or the rest).
    pub struct FeatureClassRow {
        /// Feature (latent) index.
        pub feature: u32,
        /// The class.
        pub class: String,
        /// What it is compared with: the other class of two, or `rest`.
        pub reference: String,
        /// Sequences of the class.
        pub n_class: u32,
        /// Sequences of the reference.
        pub n_reference: u32,
        /// Mean activation in the class.
        pub mean_class: f64,
        /// Mean activation in the reference.
        pub mean_reference: f64,
        /// mean_class − mean_reference.
        pub delta: f64,
        /// Share of the class's sequences where the feature fires.
        pub firing_class: f64,
        /// Share of the reference's sequences where it fires.
        pub firing_reference: f64,
        /// P(activation in class > in reference) + ½ P(tie): U / (n_class n_reference).
        pub auroc: f64,
        /// Two-sided Mann–Whitney p.
        pub p_value: f64,
        /// Benjamini–Hochberg q over the features tested for this class.
        pub q_value: f64,
    }
}

/// The classes of labelled sequences, sorted (numerically when every label is a number).
pub fn classes(sequences: &[SequenceRow]) -> Vec<String> {
    let mut classes: Vec<String> = sequences.iter().filter_map(|s| s.label.clone()).collect();
    classes.sort_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y),
        _ => a.cmp(b),
    });
    classes.dedup();
    classes
}

/// Per-feature class statistics: with two classes, the second against the first; with more,
/// each against the rest. Features that fire in no sequence are left out (nothing to test).
pub fn class_statistics(activations: &SequenceActivations) -> Vec<FeatureClassRow> {
    let classes = classes(&activations.sequences);
    if classes.len() < 2 {
        return Vec::new();
    }
    let comparisons: Vec<(String, Option<String>)> = if classes.len() == 2 {
        vec![(classes[1].clone(), Some(classes[0].clone()))]
    } else {
        classes.iter().map(|c| (c.clone(), None)).collect()
    };
    let labels: Vec<Option<&str>> = activations
        .sequences
        .iter()
        .map(|s| s.label.as_deref())
        .collect();
    let mut out = Vec::new();
    for (class, reference) in comparisons {
        let mut rows = Vec::new();
        for feature in 0..activations.d_sae {
            let column = activations.column(feature);
            if column.iter().all(|&v| v <= 0.0) {
                continue;
            }
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for (v, label) in column.iter().zip(&labels) {
                match (label, &reference) {
                    (Some(l), _) if *l == class => a.push(*v as f64),
                    (Some(l), Some(r)) if l == r => b.push(*v as f64),
                    (Some(_), None) => b.push(*v as f64),
                    _ => {}
                }
            }
            if a.is_empty() || b.is_empty() {
                continue;
            }
            let test = mann_whitney_u(&a, &b);
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let firing = |v: &[f64]| v.iter().filter(|&&x| x > 0.0).count() as f64 / v.len() as f64;
            rows.push(FeatureClassRow {
                feature: feature as u32,
                class: class.clone(),
                reference: reference.clone().unwrap_or_else(|| "rest".into()),
                n_class: a.len() as u32,
                n_reference: b.len() as u32,
                mean_class: mean(&a),
                mean_reference: mean(&b),
                delta: mean(&a) - mean(&b),
                firing_class: firing(&a),
                firing_reference: firing(&b),
                auroc: test.u / (a.len() as f64 * b.len() as f64),
                p_value: test.p,
                q_value: f64::NAN,
            });
        }
        let p: Vec<f64> = rows.iter().map(|r| r.p_value).collect();
        for (row, q) in rows.iter_mut().zip(benjamini_hochberg(&p)) {
            row.q_value = q;
        }
        out.extend(rows);
    }
    out
}

crate::table_row! {
    /// One of a feature's top activating sequences.
    pub struct TopSequenceRow {
        /// Feature (latent) index.
        pub feature: u32,
        /// 1 = the highest activation.
        pub rank: u32,
        /// Sequence index in the cache.
        pub sequence_index: u64,
        /// Sequence id.
        pub sequence_id: String,
        /// Label, when known.
        pub label: Option<String>,
        /// The feature's activation (max over tokens for token-level SAEs).
        pub activation: f64,
        /// Token of that activation (0 for per-sequence rows; token t covers nucleotides t−1 .. t−1+k).
        pub token: u32,
    }
}

/// The `k` highest-activating sequences of every feature that fires (ties by sequence order).
pub fn top_sequences(activations: &SequenceActivations, k: usize) -> Vec<TopSequenceRow> {
    let mut out = Vec::new();
    for feature in 0..activations.d_sae {
        for (rank, s) in top_of(activations, feature, k).into_iter().enumerate() {
            let sequence = &activations.sequences[s];
            out.push(TopSequenceRow {
                feature: feature as u32,
                rank: rank as u32 + 1,
                sequence_index: sequence.sequence_index,
                sequence_id: sequence.sequence_id.clone(),
                label: sequence.label.clone(),
                activation: activations.get(s, feature) as f64,
                token: activations.tokens[s * activations.d_sae + feature],
            });
        }
    }
    out
}

/// Indices of the `k` sequences where `feature` is highest (only those where it fires).
pub fn top_of(activations: &SequenceActivations, feature: usize, k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..activations.sequences.len())
        .filter(|&s| activations.get(s, feature) > 0.0)
        .collect();
    order.sort_by(|&a, &b| {
        activations
            .get(b, feature)
            .total_cmp(&activations.get(a, feature))
            .then(a.cmp(&b))
    });
    order.truncate(k);
    order
}

crate::table_row! {
    /// A JASPAR motif's enrichment among a feature's top sequences.
    pub struct MotifEnrichmentRow {
        /// Feature (latent) index.
        pub feature: u32,
        /// JASPAR matrix id.
        pub jaspar_id: String,
        /// JASPAR name.
        pub jaspar_name: String,
        /// Top sequences with a match (p < 1e-4, either strand).
        pub top_with: u32,
        /// Top sequences.
        pub top_total: u32,
        /// Other sequences with a match.
        pub rest_with: u32,
        /// Other sequences.
        pub rest_total: u32,
        /// (top_with / top_without) / (rest_with / rest_without), with ½ added to every cell.
        pub odds_ratio: f64,
        /// One-sided Fisher exact p (more matches among the top sequences than by chance).
        pub p_value: f64,
        /// Benjamini–Hochberg q over every motif tested for this feature.
        pub q_value: f64,
    }
}

/// Which sequences carry a match of each motif: [motif][sequence]. Sequences without DNA (an
/// embeddings-table cache) are an error naming the way to give it.
pub fn motif_presence(sequences: &[SequenceRow], motifs: &[Motif]) -> Result<Vec<Vec<bool>>> {
    let scanner = MotifScanner::new(motifs.to_vec(), ScanOptions::default());
    let mut presence = vec![vec![false; sequences.len()]; motifs.len()];
    let bar = crate::progress::bar(
        sequences.len() as u64,
        "scanning sequences for JASPAR motifs",
    );
    for (s, row) in sequences.iter().enumerate() {
        let Some(dna) = &row.sequence else {
            return Err(GenolensError::argument(
                "--motifs",
                format!(
                    "sequence {} has no DNA in the cache (built from an embeddings table): give --data to analyse motifs",
                    row.sequence_id
                ),
            ));
        };
        for hit in scanner.scan(&letter_codes(dna.as_bytes())) {
            presence[hit.motif][s] = true;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(presence)
}

/// One-sided Fisher exact p that `top_with` of `top_total` drawn carry a property that
/// `with_total` of `total` carry: P(X ≥ top_with), X hypergeometric.
pub fn fisher_greater(top_with: u64, top_total: u64, with_total: u64, total: u64) -> f64 {
    if top_with == 0 {
        return 1.0;
    }
    match Hypergeometric::new(total, with_total, top_total) {
        Ok(h) => h.sf(top_with - 1).clamp(0.0, 1.0),
        Err(_) => f64::NAN,
    }
}

/// Motif enrichment among each listed feature's top `k` sequences against all other sequences.
/// Rows are written for motifs found in at least one top sequence; q counts every motif.
pub fn motif_enrichment(
    activations: &SequenceActivations,
    features: &[usize],
    k: usize,
    motifs: &[Motif],
    presence: &[Vec<bool>],
) -> Vec<MotifEnrichmentRow> {
    let total = activations.sequences.len() as u64;
    let with_total: Vec<u64> = presence
        .iter()
        .map(|p| p.iter().filter(|&&b| b).count() as u64)
        .collect();
    let mut out = Vec::new();
    for &feature in features {
        let top = top_of(activations, feature, k);
        if top.is_empty() {
            continue;
        }
        let top_total = top.len() as u64;
        let mut rows: Vec<MotifEnrichmentRow> = motifs
            .iter()
            .enumerate()
            .map(|(m, motif)| {
                let top_with = top.iter().filter(|&&s| presence[m][s]).count() as u64;
                let rest_with = with_total[m] - top_with;
                let rest_total = total - top_total;
                let odds_ratio = ((top_with as f64 + 0.5) / ((top_total - top_with) as f64 + 0.5))
                    / ((rest_with as f64 + 0.5) / ((rest_total - rest_with) as f64 + 0.5));
                MotifEnrichmentRow {
                    feature: feature as u32,
                    jaspar_id: motif.id.clone(),
                    jaspar_name: motif.name.clone(),
                    top_with: top_with as u32,
                    top_total: top_total as u32,
                    rest_with: rest_with as u32,
                    rest_total: rest_total as u32,
                    odds_ratio,
                    p_value: fisher_greater(top_with, top_total, with_total[m], total),
                    q_value: f64::NAN,
                }
            })
            .collect();
        let p: Vec<f64> = rows.iter().map(|r| r.p_value).collect();
        for (row, q) in rows.iter_mut().zip(benjamini_hochberg(&p)) {
            row.q_value = q;
        }
        out.extend(rows.into_iter().filter(|r| r.top_with > 0));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequences(labels: &[&str]) -> Vec<SequenceRow> {
        labels
            .iter()
            .enumerate()
            .map(|(i, l)| SequenceRow {
                sequence_index: i as u64,
                sequence_id: format!("s{i}"),
                label: Some(l.to_string()),
                sequence: None,
            })
            .collect()
    }

    #[test]
    fn fisher_matches_scipy() {
        // scipy.stats.fisher_exact([[8, 2], [1, 5]], alternative="greater").pvalue
        // = 0.024475524475524483 (scipy 1.x; table: top 8/10 with, rest 1/6 with).
        let p = fisher_greater(8, 10, 9, 16);
        assert!((p - 0.024475524475524483).abs() < 1e-12, "{p}");
        assert_eq!(fisher_greater(0, 10, 9, 16), 1.0);
    }

    #[test]
    fn a_feature_that_fires_on_one_class_is_found() {
        // Feature 0 fires on class 1 only; feature 1 on both alike; feature 2 never.
        let labels: Vec<&str> = (0..40).map(|i| if i < 20 { "0" } else { "1" }).collect();
        let seqs = sequences(&labels);
        let mut values = vec![0f32; 40 * 3];
        for s in 0..40 {
            values[s * 3] = if s >= 20 { 1.0 + s as f32 / 100.0 } else { 0.0 };
            values[s * 3 + 1] = (s % 5) as f32;
        }
        let acts = SequenceActivations {
            sequences: seqs,
            d_sae: 3,
            values,
            tokens: vec![0; 120],
            token_activations: None,
        };
        let rows = class_statistics(&acts);
        assert_eq!(rows.len(), 2, "the dead feature is left out");
        let f0 = &rows[0];
        assert_eq!(
            (f0.feature, f0.class.as_str(), f0.reference.as_str()),
            (0, "1", "0")
        );
        assert!(f0.q_value < 1e-6 && f0.auroc == 1.0 && f0.firing_class == 1.0);
        assert!(rows[1].p_value > 0.5);
        let top = top_sequences(&acts, 3);
        let f0_top: Vec<u64> = top
            .iter()
            .filter(|r| r.feature == 0)
            .map(|r| r.sequence_index)
            .collect();
        assert_eq!(f0_top, vec![39, 38, 37]);
    }
}
