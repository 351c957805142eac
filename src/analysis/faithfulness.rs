//! Mutagenesis faithfulness (methods.md §8): does changing the nucleotides an attribution ranks
//! highest change the model's prediction more than changing random ones?
//!
//! - Seed 000's protocol ([`top_n_protocol`]): per method, the top n nucleotides of each sequence
//!   (n ∈ {1, 5, 10, 15, 20} and all) each replaced by a random other base, every variant
//!   re-tokenised and classified; accuracy per class. The baseline replaces n random positions,
//!   R = 20 times.
//! - Seed 001's protocol ([`perturbation_curve_protocol`]): the most (MIF) or least (LIF)
//!   important k % of the nucleotides (k ∈ {1, 5, 10, 20, 50}) replaced by N (→ [UNK] tokens),
//!   a random other base or the complement; the drop of the probability of the sequence's class.
//!   AOPC = the mean drop over k.
//!
//! Every random choice comes from a generator seeded by (seed, protocol, method, n, repeat,
//! sequence id), so a shard of the sequences draws exactly what the whole run draws for them, and
//! the same seed gives the same tables. Variants run through the classifier in batches with the
//! last block for [CLS] only.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{GenolensError, Result};
use crate::model::{Batch, LoadedModel};

/// How a chosen nucleotide is changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Perturbation {
    /// A uniformly random different base (A, C, G, T; any of the four at an N).
    RandomBase,
    /// N: every k-mer covering it becomes [UNK] (seed 001's "N/[UNK]").
    Unknown,
    /// The complementary base (A↔T, C↔G; N stays N).
    Complement,
}

impl Perturbation {
    /// Every perturbation, in table order.
    pub const ALL: [Perturbation; 3] = [
        Perturbation::Unknown,
        Perturbation::RandomBase,
        Perturbation::Complement,
    ];

    /// The name used in tables: `n`, `random_base`, `complement`.
    pub fn name(self) -> &'static str {
        match self {
            Perturbation::RandomBase => "random_base",
            Perturbation::Unknown => "n",
            Perturbation::Complement => "complement",
        }
    }

    /// The perturbation a table name stands for.
    pub fn parse(name: &str) -> Option<Perturbation> {
        Perturbation::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// Which end of the ranking is changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Highest score first (MIF, seed 000's top n).
    MostImportantFirst,
    /// Lowest score first (LIF).
    LeastImportantFirst,
}

/// Positions of `scores` from most to least important (or the reverse): by signed score (a
/// score for the explained class; negative = evidence against it), ties by position. A NaN score
/// is an error naming the position.
pub fn ranked_positions(scores: &[f64], order: Order) -> Result<Vec<usize>> {
    if let Some(i) = scores.iter().position(|s| s.is_nan()) {
        return Err(GenolensError::argument(
            "attribution scores",
            format!("the score at position {i} is NaN"),
        ));
    }
    let mut positions: Vec<usize> = (0..scores.len()).collect();
    positions.sort_by(|&a, &b| {
        let by_score = match order {
            Order::MostImportantFirst => scores[b].total_cmp(&scores[a]),
            Order::LeastImportantFirst => scores[a].total_cmp(&scores[b]),
        };
        by_score.then(a.cmp(&b))
    });
    Ok(positions)
}

/// `sequence` with `positions` changed by `perturbation` (random choices from `rng`).
pub fn perturb(
    sequence: &[u8],
    positions: &[usize],
    perturbation: Perturbation,
    rng: &mut impl Rng,
) -> Vec<u8> {
    let mut variant = sequence.to_vec();
    for &p in positions {
        let base = variant[p].to_ascii_uppercase();
        variant[p] = match perturbation {
            Perturbation::Unknown => b'N',
            Perturbation::Complement => match base {
                b'A' => b'T',
                b'T' => b'A',
                b'C' => b'G',
                b'G' => b'C',
                other => other,
            },
            Perturbation::RandomBase => {
                let others: Vec<u8> = b"ACGT".iter().copied().filter(|&b| b != base).collect();
                others[rng.random_range(0..others.len())]
            }
        };
    }
    variant
}

/// `n` distinct positions of a `length`-nt sequence, uniformly at random.
pub fn random_positions(length: usize, n: usize, rng: &mut impl Rng) -> Vec<usize> {
    rand::seq::index::sample(rng, length, n.min(length)).into_vec()
}

/// The nucleotides k % of a `length`-nt sequence stands for: round(k·length/100), at least 1.
pub fn nucleotides_for_percent(length: usize, k_percent: f64) -> usize {
    ((k_percent / 100.0 * length as f64).round() as usize).clamp(1, length.max(1))
}

/// A generator for one draw, from the run's seed and the draw's coordinates (FNV-1a over the
/// key, stable across platforms and versions).
pub fn draw_rng(seed: u64, key: &str) -> ChaCha8Rng {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    ChaCha8Rng::seed_from_u64(hash)
}

/// Class probabilities of many sequences, `batch_size` per forward pass (the last block for
/// [CLS] only).
pub struct Classifier<'a> {
    loaded: &'a LoadedModel,
    batch_size: usize,
}

impl<'a> Classifier<'a> {
    /// A classifier over `loaded` (which must have a sequence-classification head).
    pub fn new(loaded: &'a LoadedModel, batch_size: usize) -> Result<Self> {
        if matches!(
            loaded.model.head_kind(),
            crate::model::HeadKind::SequenceClassification { .. }
        ) {
            Ok(Classifier {
                loaded,
                batch_size: batch_size.max(1),
            })
        } else {
            Err(GenolensError::hook(
                "hook_logits",
                format!(
                    "faithfulness needs a sequence classifier, and this model is a {}",
                    loaded.model.head_kind().hf_class()
                ),
            ))
        }
    }

    /// Softmax probabilities [sequence][class] of `sequences` (ids name them in errors).
    pub fn probabilities(&self, ids: &[&str], sequences: &[Vec<u8>]) -> Result<Vec<Vec<f64>>> {
        let mut out = Vec::with_capacity(sequences.len());
        for (ids, chunk) in ids
            .chunks(self.batch_size)
            .zip(sequences.chunks(self.batch_size))
        {
            let tokens = ids
                .iter()
                .zip(chunk)
                .map(|(id, s)| {
                    let text = std::str::from_utf8(s).map_err(|_| {
                        GenolensError::argument(id.to_string(), "a sequence that is not ASCII")
                    })?;
                    Ok(self.loaded.tokenizer.tokenize(id, text)?.ids)
                })
                .collect::<Result<Vec<_>>>()?;
            let batch = Batch::from_ids(
                &tokens,
                self.loaded.tokenizer.special().pad,
                self.loaded.model.device(),
            )?;
            let logits = self
                .loaded
                .model
                .classifier_logits(&batch)?
                .expect("checked in Classifier::new");
            let logits: Vec<Vec<f32>> = logits.to_dtype(candle_core::DType::F32)?.to_vec2()?;
            out.extend(logits.iter().map(|row| softmax(row)));
        }
        Ok(out)
    }
}

fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
    let exps: Vec<f64> = logits.iter().map(|&v| (f64::from(v) - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    exps.iter().map(|e| e / total).collect()
}

/// One explained sequence: its nucleotides, its class, and each method's nucleotide scores (one
/// per position, for the sequence's class).
#[derive(Debug, Clone)]
pub struct Explained {
    /// Sequence id.
    pub id: String,
    /// Bases (upper case).
    pub sequence: Vec<u8>,
    /// The class (the label), which the scores explain.
    pub label: usize,
    /// Method → one score per position.
    pub scores: BTreeMap<String, Vec<f64>>,
}

/// How many top nucleotides seed 000's protocol changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopN {
    /// The n highest-scoring nucleotides.
    Count(usize),
    /// Every nucleotide.
    All,
}

impl TopN {
    /// Seed 000's sizes: 1, 5, 10, 15, 20 and all.
    pub const SEED_000: [TopN; 6] = [
        TopN::Count(1),
        TopN::Count(5),
        TopN::Count(10),
        TopN::Count(15),
        TopN::Count(20),
        TopN::All,
    ];

    /// n for a sequence of `length` nt.
    pub fn count(self, length: usize) -> usize {
        match self {
            TopN::Count(n) => n.min(length),
            TopN::All => length,
        }
    }

    /// The table's `n`: the count, −1 for all.
    pub fn code(self) -> i64 {
        match self {
            TopN::Count(n) => n as i64,
            TopN::All => -1,
        }
    }

    /// "5" or "all".
    pub fn label(self) -> String {
        match self {
            TopN::Count(n) => n.to_string(),
            TopN::All => "all".into(),
        }
    }
}

crate::table_row! {
    /// One cell of a faithfulness protocol on one dataset (the study names it): a method (or `random`, or `none` for the unchanged
    /// sequences), a class, how much was changed, one repeat. `protocol` is `top_n` (seed 000:
    /// `accuracy`), `mif` or `lif` (seed 001: `probability_drop`, the mean drop of the class's
    /// probability). `n` = nucleotides changed (−1 = all; for `mif`/`lif` the k % as
    /// `k_percent`, n = −2).
    pub struct FaithfulnessRow {
        pub dataset: String,
        pub protocol: String,
        pub method: String,
        pub class: i64,
        pub n: i64,
        pub k_percent: Option<f64>,
        pub perturbation: String,
        pub repeat: i64,
        pub sequences: u64,
        pub accuracy: Option<f64>,
        pub probability: f64,
        pub probability_drop: Option<f64>,
    }
}

/// Settings of seed 000's protocol.
#[derive(Debug, Clone)]
pub struct TopNSettings {
    /// Sizes.
    pub sizes: Vec<TopN>,
    /// Random-position repeats (R).
    pub repeats: usize,
    /// The run's seed.
    pub seed: u64,
}

impl Default for TopNSettings {
    fn default() -> Self {
        TopNSettings {
            sizes: TopN::SEED_000.to_vec(),
            repeats: 20,
            seed: 0,
        }
    }
}

/// Per class: (sequences, correct, Σ probability of the class).
type ClassTally = BTreeMap<usize, (u64, u64, f64)>;

fn tally(items: &[Explained], probabilities: &[Vec<f64>]) -> ClassTally {
    let mut by_class: ClassTally = BTreeMap::new();
    for (item, p) in items.iter().zip(probabilities) {
        let predicted = crate::analysis::attribution::argmax_rows(&[p
            .iter()
            .map(|&v| v as f32)
            .collect::<Vec<_>>()])[0];
        let entry = by_class.entry(item.label).or_default();
        entry.0 += 1;
        entry.1 += u64::from(predicted == item.label);
        entry.2 += p.get(item.label).copied().unwrap_or(0.0);
    }
    by_class
}

/// Seed 000's protocol over `items` for `methods` (each item must carry every method's scores):
/// rows for the unchanged sequences (`none`, n = 0), each method at each size, and the random
/// baseline (`random`, repeats 0..R). `progress` is told how many variants were classified.
pub fn top_n_protocol(
    classifier: &Classifier,
    items: &[Explained],
    methods: &[String],
    settings: &TopNSettings,
    mut progress: impl FnMut(u64),
) -> Result<Vec<FaithfulnessRow>> {
    check_scores(items, methods)?;
    let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
    let mut rows = Vec::new();
    let mut emit = |method: &str, n: i64, repeat: i64, tallies: ClassTally| {
        for (class, (count, correct, probability)) in tallies {
            rows.push(FaithfulnessRow {
                dataset: String::new(),
                protocol: "top_n".into(),
                method: method.to_string(),
                class: class as i64,
                n,
                k_percent: None,
                perturbation: Perturbation::RandomBase.name().into(),
                repeat,
                sequences: count,
                accuracy: Some(correct as f64 / count as f64),
                probability: probability / count as f64,
                probability_drop: None,
            });
        }
    };
    let originals: Vec<Vec<u8>> = items.iter().map(|i| i.sequence.clone()).collect();
    let reference = classifier.probabilities(&ids, &originals)?;
    progress(items.len() as u64);
    emit("none", 0, 0, tally(items, &reference));
    for &size in &settings.sizes {
        for method in methods {
            let variants = items
                .iter()
                .map(|item| {
                    let n = size.count(item.sequence.len());
                    let ranked = ranked_positions(&item.scores[method], Order::MostImportantFirst)?;
                    let mut rng = draw_rng(
                        settings.seed,
                        &format!("top_n/{method}/{}/0/{}", size.label(), item.id),
                    );
                    Ok(perturb(
                        &item.sequence,
                        &ranked[..n],
                        Perturbation::RandomBase,
                        &mut rng,
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            let p = classifier.probabilities(&ids, &variants)?;
            progress(items.len() as u64);
            emit(method, size.code(), 0, tally(items, &p));
        }
        for repeat in 0..settings.repeats {
            let variants: Vec<Vec<u8>> = items
                .iter()
                .map(|item| {
                    let n = size.count(item.sequence.len());
                    let mut rng = draw_rng(
                        settings.seed,
                        &format!("top_n/random/{}/{repeat}/{}", size.label(), item.id),
                    );
                    let positions = random_positions(item.sequence.len(), n, &mut rng);
                    perturb(
                        &item.sequence,
                        &positions,
                        Perturbation::RandomBase,
                        &mut rng,
                    )
                })
                .collect();
            let p = classifier.probabilities(&ids, &variants)?;
            progress(items.len() as u64);
            emit("random", size.code(), repeat as i64, tally(items, &p));
        }
    }
    Ok(rows)
}

/// Settings of seed 001's protocol.
#[derive(Debug, Clone)]
pub struct CurveSettings {
    /// k, in % of each sequence's nucleotides.
    pub percents: Vec<f64>,
    /// Perturbations.
    pub perturbations: Vec<Perturbation>,
    /// Random-position repeats for the baseline (0: no baseline).
    pub repeats: usize,
    /// The run's seed.
    pub seed: u64,
}

impl Default for CurveSettings {
    fn default() -> Self {
        CurveSettings {
            percents: vec![1.0, 5.0, 10.0, 20.0, 50.0],
            perturbations: Perturbation::ALL.to_vec(),
            repeats: 5,
            seed: 0,
        }
    }
}

/// Seed 001's MIF and LIF curves over `items` for `methods`, plus a random-position baseline
/// (`random`, protocol `mif`): per class, the mean drop of the class's probability.
pub fn perturbation_curve_protocol(
    classifier: &Classifier,
    items: &[Explained],
    methods: &[String],
    settings: &CurveSettings,
    mut progress: impl FnMut(u64),
) -> Result<Vec<FaithfulnessRow>> {
    check_scores(items, methods)?;
    let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
    let originals: Vec<Vec<u8>> = items.iter().map(|i| i.sequence.clone()).collect();
    let reference = classifier.probabilities(&ids, &originals)?;
    progress(items.len() as u64);
    let mut rows = Vec::new();
    let mut emit = |protocol: &str,
                    method: &str,
                    k: f64,
                    perturbation: Perturbation,
                    repeat: usize,
                    p: &[Vec<f64>]| {
        let mut by_class: BTreeMap<usize, (u64, f64, f64)> = BTreeMap::new();
        for ((item, after), before) in items.iter().zip(p).zip(&reference) {
            let entry = by_class.entry(item.label).or_default();
            entry.0 += 1;
            entry.1 += after[item.label];
            entry.2 += before[item.label] - after[item.label];
        }
        for (class, (count, probability, drop)) in by_class {
            rows.push(FaithfulnessRow {
                dataset: String::new(),
                protocol: protocol.into(),
                method: method.into(),
                class: class as i64,
                n: -2,
                k_percent: Some(k),
                perturbation: perturbation.name().into(),
                repeat: repeat as i64,
                sequences: count,
                accuracy: None,
                probability: probability / count as f64,
                probability_drop: Some(drop / count as f64),
            });
        }
    };
    for &perturbation in &settings.perturbations {
        for &k in &settings.percents {
            for method in methods {
                for (protocol, order) in [
                    ("mif", Order::MostImportantFirst),
                    ("lif", Order::LeastImportantFirst),
                ] {
                    let variants = items
                        .iter()
                        .map(|item| {
                            let n = nucleotides_for_percent(item.sequence.len(), k);
                            let ranked = ranked_positions(&item.scores[method], order)?;
                            let mut rng = draw_rng(
                                settings.seed,
                                &format!(
                                    "{protocol}/{method}/{k}/{}/0/{}",
                                    perturbation.name(),
                                    item.id
                                ),
                            );
                            Ok(perturb(
                                &item.sequence,
                                &ranked[..n],
                                perturbation,
                                &mut rng,
                            ))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    let p = classifier.probabilities(&ids, &variants)?;
                    progress(items.len() as u64);
                    emit(protocol, method, k, perturbation, 0, &p);
                }
            }
            for repeat in 0..settings.repeats {
                let variants: Vec<Vec<u8>> = items
                    .iter()
                    .map(|item| {
                        let n = nucleotides_for_percent(item.sequence.len(), k);
                        let mut rng = draw_rng(
                            settings.seed,
                            &format!(
                                "mif/random/{k}/{}/{repeat}/{}",
                                perturbation.name(),
                                item.id
                            ),
                        );
                        let positions = random_positions(item.sequence.len(), n, &mut rng);
                        perturb(&item.sequence, &positions, perturbation, &mut rng)
                    })
                    .collect();
                let p = classifier.probabilities(&ids, &variants)?;
                progress(items.len() as u64);
                emit("mif", "random", k, perturbation, repeat, &p);
            }
        }
    }
    Ok(rows)
}

/// Forward passes (variants) the two protocols will run for `items` sequences and `methods`
/// methods: for a progress bar.
pub fn variant_count(
    items: usize,
    methods: usize,
    top_n: Option<&TopNSettings>,
    curves: Option<&CurveSettings>,
) -> u64 {
    let mut count = 0;
    if let Some(s) = top_n {
        count += 1 + s.sizes.len() * (methods + s.repeats);
    }
    if let Some(s) = curves {
        count += 1 + s.perturbations.len() * s.percents.len() * (2 * methods + s.repeats);
    }
    (count * items) as u64
}

fn check_scores(items: &[Explained], methods: &[String]) -> Result<()> {
    for item in items {
        for method in methods {
            match item.scores.get(method) {
                Some(scores) if scores.len() == item.sequence.len() => {}
                Some(scores) => {
                    return Err(GenolensError::argument(
                        item.id.clone(),
                        format!(
                            "{method} has {} scores for a {}-nt sequence",
                            scores.len(),
                            item.sequence.len()
                        ),
                    ))
                }
                None => {
                    return Err(GenolensError::argument(
                        item.id.clone(),
                        format!("no {method} scores for this sequence"),
                    ))
                }
            }
        }
    }
    Ok(())
}

/// One AOPC value: (dataset, protocol, method, perturbation, class) and the value.
pub type Aopc = ((String, String, String, String, i64), f64);

/// AOPC per (dataset, protocol, method, perturbation, class): the mean over k of the mean
/// probability drop (random: averaged over repeats first).
pub fn aopc(rows: &[FaithfulnessRow]) -> Vec<Aopc> {
    type Key = (String, String, String, String, i64);
    let mut by_key: BTreeMap<Key, BTreeMap<u64, Vec<f64>>> = BTreeMap::new();
    for row in rows {
        let (Some(k), Some(drop)) = (row.k_percent, row.probability_drop) else {
            continue;
        };
        by_key
            .entry((
                row.dataset.clone(),
                row.protocol.clone(),
                row.method.clone(),
                row.perturbation.clone(),
                row.class,
            ))
            .or_default()
            .entry(k.to_bits())
            .or_default()
            .push(drop);
    }
    by_key
        .into_iter()
        .map(|(key, by_k)| {
            let means: Vec<f64> = by_k
                .values()
                .map(|drops| drops.iter().sum::<f64>() / drops.len() as f64)
                .collect();
            (key, means.iter().sum::<f64>() / means.len() as f64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranking_orders_by_signed_score_and_breaks_ties_by_position() {
        let scores = [0.5, -2.0, 3.0, 0.5, 0.0];
        assert_eq!(
            ranked_positions(&scores, Order::MostImportantFirst).unwrap(),
            vec![2, 0, 3, 4, 1]
        );
        assert_eq!(
            ranked_positions(&scores, Order::LeastImportantFirst).unwrap(),
            vec![1, 4, 0, 3, 2]
        );
        assert!(ranked_positions(&[0.0, f64::NAN], Order::MostImportantFirst).is_err());
    }

    #[test]
    fn perturbations_change_exactly_the_chosen_positions() {
        let sequence = b"ACGTNACGTA".to_vec();
        let positions = [0, 3, 4, 9];
        let mut rng = draw_rng(1, "test");
        let random = perturb(&sequence, &positions, Perturbation::RandomBase, &mut rng);
        for (i, (&a, &b)) in sequence.iter().zip(&random).enumerate() {
            if positions.contains(&i) {
                assert_ne!(a, b, "position {i} unchanged");
                assert!(b"ACGT".contains(&b));
            } else {
                assert_eq!(a, b);
            }
        }
        let complement = perturb(&sequence, &positions, Perturbation::Complement, &mut rng);
        assert_eq!(complement, b"TCGANACGTT".to_vec());
        let unknown = perturb(&sequence, &positions, Perturbation::Unknown, &mut rng);
        assert_eq!(unknown, b"NCGNNACGTN".to_vec());
    }

    #[test]
    fn draws_are_reproducible_and_distinct() {
        let a = random_positions(100, 10, &mut draw_rng(7, "top_n/random/5/0/s1"));
        let b = random_positions(100, 10, &mut draw_rng(7, "top_n/random/5/0/s1"));
        let c = random_positions(100, 10, &mut draw_rng(7, "top_n/random/5/1/s1"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut sorted = a.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 10);
        assert_eq!(nucleotides_for_percent(250, 1.0), 3);
        assert_eq!(nucleotides_for_percent(50, 1.0), 1);
        assert_eq!(nucleotides_for_percent(80, 50.0), 40);
        assert_eq!(TopN::All.count(300), 300);
        assert_eq!(TopN::Count(20).count(10), 10);
    }
}
