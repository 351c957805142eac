//! Head ablation (methods.md §5): a head's context vector z = A·V is replaced **before** the
//! output projection W_O (seed 003 zeroed a slice of the post-LayerNorm residual stream after
//! it, which is not a head ablation), by zero or by its mean over a reference set. Every
//! condition (one head, a set of heads) is scored on a labelled set as accuracy, ROC-AUC and the
//! mean true-class logit. Each batch runs the intact model once, keeping the block inputs; each
//! condition then starts at its first ablated layer (`forward_from`), so a head in the last layer
//! costs one block, not the whole model.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};
use rand::seq::IndexedRandom;
use rand::SeedableRng;

use crate::analysis::tokenize_batch;
use crate::error::{GenolensError, Result};
use crate::model::{BlockSite, HookPoint, Hooks, Intervention, LoadedModel};

/// One attention head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Head {
    /// 0-based layer.
    pub layer: usize,
    /// 0-based head within the layer.
    pub head: usize,
}

impl std::fmt::Display for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "L{}H{}", self.layer, self.head)
    }
}

/// What an ablated head's z becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AblationKind {
    /// Zero (the head contributes only W_O's bias share: nothing).
    Zero,
    /// The head's mean z over the reference set, at each token position.
    Mean,
}

impl AblationKind {
    /// `zero` or `mean`.
    pub fn name(self) -> &'static str {
        match self {
            AblationKind::Zero => "zero",
            AblationKind::Mean => "mean",
        }
    }
}

impl std::str::FromStr for AblationKind {
    type Err = GenolensError;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "zero" => Ok(AblationKind::Zero),
            "mean" => Ok(AblationKind::Mean),
            other => Err(GenolensError::argument(
                format!("--ablation {other}"),
                "expected zero or mean",
            )),
        }
    }
}

impl std::fmt::Display for AblationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Mean z of every head over a reference set, per token position: `per_layer[l]` is
/// [positions, heads, d_head], the mean over the reference sequences that have that position (a
/// TransformerLens-style mean ablation for inputs of one length; with one reference sequence it
/// is that sequence's own z, so mean-ablating it changes nothing). Positions beyond the longest
/// reference sequence take the mean over every valid reference token.
#[derive(Debug, Clone)]
pub struct HeadMeans {
    per_layer: Vec<Tensor>,
    token_mean: Vec<Tensor>,
    /// Sequences averaged.
    pub sequences: usize,
}

impl HeadMeans {
    /// Averages z over `sequences` (id, DNA), `batch_size` at a time.
    pub fn compute(
        loaded: &LoadedModel,
        sequences: &[(&str, &str)],
        batch_size: usize,
    ) -> Result<Self> {
        if sequences.is_empty() {
            return Err(GenolensError::argument(
                "mean ablation",
                "the reference set for the head means is empty",
            ));
        }
        let config = loaded.model.config();
        let layers = config.num_hidden_layers;
        let hooks = Hooks::none().capture("blocks.*.attn.hook_z")?;
        // Sums in f64 so that the mean does not depend on batching; counts per position.
        let mut sums: Vec<Vec<f64>> = vec![Vec::new(); layers];
        let mut counts: Vec<usize> = Vec::new();
        let mut width = 0;
        for chunk in sequences.chunks(batch_size.max(1)) {
            let (batch, _) = tokenize_batch(
                &loaded.tokenizer,
                chunk.iter().copied(),
                loaded.model.device(),
            )?;
            let output = loaded.model.forward(&batch, &hooks)?;
            let tokens = batch.padded_len();
            if tokens > counts.len() {
                counts.resize(tokens, 0);
            }
            for length in &batch.lengths {
                counts[..*length].iter_mut().for_each(|c| *c += 1);
            }
            for (layer, sum) in sums.iter_mut().enumerate() {
                let z = output
                    .cache
                    .get_point(HookPoint::block(layer, BlockSite::Z))
                    .ok_or_else(|| {
                        GenolensError::hook(format!("blocks.{layer}.attn.hook_z"), "not captured")
                    })?;
                let (_, t, h, d) = z.dims4()?;
                width = h * d;
                if sum.len() < t * width {
                    sum.resize(t * width, 0.0);
                }
                let values: Vec<Vec<f32>> = z
                    .to_dtype(DType::F32)?
                    .reshape((batch.size(), t * width))?
                    .to_vec2()?;
                for (row, length) in values.iter().zip(&batch.lengths) {
                    for (s, v) in sum.iter_mut().zip(&row[..length * width]) {
                        *s += f64::from(*v);
                    }
                }
            }
        }
        let config_heads = config.num_attention_heads;
        let d_head = width / config_heads;
        let device = loaded.model.device();
        let positions = counts.len();
        let total: usize = counts.iter().sum();
        let mut per_layer = Vec::with_capacity(layers);
        let mut token_mean = Vec::with_capacity(layers);
        for sum in &sums {
            let mut mean = vec![0f32; positions * width];
            let mut overall = vec![0f64; width];
            for (p, &count) in counts.iter().enumerate() {
                for j in 0..width {
                    let s = sum[p * width + j];
                    overall[j] += s;
                    mean[p * width + j] = (s / count as f64) as f32;
                }
            }
            let overall: Vec<f32> = overall.iter().map(|s| (s / total as f64) as f32).collect();
            per_layer.push(Tensor::from_vec(
                mean,
                (positions, config_heads, d_head),
                device,
            )?);
            token_mean.push(Tensor::from_vec(
                overall,
                (1, config_heads, d_head),
                device,
            )?);
        }
        Ok(HeadMeans {
            per_layer,
            token_mean,
            sequences: sequences.len(),
        })
    }

    /// The mean for a batch of `tokens` positions: [tokens, heads, d_head].
    fn for_length(&self, layer: usize, tokens: usize) -> Result<Tensor> {
        let mean = &self.per_layer[layer];
        let known = mean.dim(0)?;
        if tokens <= known {
            return Ok(mean.narrow(0, 0, tokens)?);
        }
        let (_, h, d) = self.token_mean[layer].dims3()?;
        let rest = self.token_mean[layer].broadcast_as((tokens - known, h, d))?;
        Ok(Tensor::cat(&[mean, &rest.contiguous()?], 0)?)
    }
}

/// How a set of heads is ablated.
#[derive(Debug, Clone)]
pub struct Ablation<'a> {
    /// Zero or mean.
    pub kind: AblationKind,
    /// Reference means (required for [`AblationKind::Mean`]).
    pub means: Option<&'a HeadMeans>,
}

impl Ablation<'_> {
    /// Hooks that ablate `heads` on `attn.hook_z` for a batch of `tokens` positions.
    pub fn hooks(&self, heads: &[Head], tokens: usize) -> Result<Hooks> {
        let mut by_layer: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for head in heads {
            by_layer.entry(head.layer).or_default().push(head.head);
        }
        let mut hooks = Hooks::none();
        for (layer, heads) in by_layer {
            let intervention = match self.kind {
                AblationKind::Zero => Intervention::ZeroHeads { heads },
                AblationKind::Mean => {
                    let means = self.means.ok_or_else(|| {
                        GenolensError::argument("mean ablation", "no reference means were computed")
                    })?;
                    Intervention::MeanHeads {
                        heads,
                        mean: means.for_length(layer, tokens)?,
                    }
                }
            };
            hooks = hooks.intervene(HookPoint::block(layer, BlockSite::Z), intervention);
        }
        Ok(hooks)
    }
}

/// A labelled sequence for scoring a classifier.
#[derive(Debug, Clone)]
pub struct Scored<'a> {
    /// Identifier.
    pub id: &'a str,
    /// DNA.
    pub sequence: &'a str,
    /// True class index.
    pub label: usize,
}

/// Classifier scores of one condition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassifierScores {
    /// Fraction of sequences whose arg-max class is the true one.
    pub accuracy: f64,
    /// ROC-AUC of P(class 1) for two classes; the mean one-vs-rest AUROC for more.
    pub roc_auc: f64,
    /// Mean logit of the true class.
    pub mean_true_logit: f64,
}

impl ClassifierScores {
    /// Scores from per-sequence logits.
    pub fn from_logits(logits: &[Vec<f32>], labels: &[usize]) -> Self {
        let n = logits.len().max(1) as f64;
        let argmax = |row: &[f32]| {
            row.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i)
        };
        let accuracy = logits
            .iter()
            .zip(labels)
            .filter(|(row, &label)| argmax(row) == label)
            .count() as f64
            / n;
        let mean_true_logit = logits
            .iter()
            .zip(labels)
            .map(|(row, &label)| f64::from(row[label]))
            .sum::<f64>()
            / n;
        let classes = logits.first().map_or(0, Vec::len);
        let probability = |row: &[f32], class: usize| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let total: f64 = row.iter().map(|v| f64::from(v - max).exp()).sum();
            f64::from(row[class] - max).exp() / total
        };
        let one_vs_rest = |class: usize| {
            let scores: Vec<f64> = logits.iter().map(|row| probability(row, class)).collect();
            let positive: Vec<bool> = labels.iter().map(|&l| l == class).collect();
            crate::stats::auroc(&scores, &positive)
        };
        let roc_auc = if classes == 2 {
            one_vs_rest(1).unwrap_or(f64::NAN)
        } else {
            let values: Vec<f64> = (0..classes).filter_map(one_vs_rest).collect();
            values.iter().sum::<f64>() / values.len().max(1) as f64
        };
        ClassifierScores {
            accuracy,
            roc_auc,
            mean_true_logit,
        }
    }
}

/// Logits of every sequence under every condition (`conditions[c]` = the heads ablated; an empty
/// set is the intact model): `result[c][i]` = logits of `sequences[i]`. Each batch runs the
/// intact model once and each condition from its first ablated layer.
pub fn condition_logits(
    loaded: &LoadedModel,
    sequences: &[Scored],
    conditions: &[Vec<Head>],
    ablation: &Ablation,
    batch_size: usize,
    progress: Option<&indicatif::ProgressBar>,
) -> Result<Vec<Vec<Vec<f32>>>> {
    loaded.require_classifier("head ablation")?;
    let config = loaded.model.config();
    for heads in conditions {
        for head in heads {
            if head.layer >= config.num_hidden_layers || head.head >= config.num_attention_heads {
                return Err(GenolensError::argument(
                    format!("head {head}"),
                    format!(
                        "the model has {} layers of {} heads",
                        config.num_hidden_layers, config.num_attention_heads
                    ),
                ));
            }
        }
    }
    let mut result: Vec<Vec<Vec<f32>>> =
        vec![Vec::with_capacity(sequences.len()); conditions.len()];
    let capture = Hooks::none().capture("blocks.*.hook_resid_pre")?;
    for chunk in sequences.chunks(batch_size.max(1)) {
        let (batch, _) = tokenize_batch(
            &loaded.tokenizer,
            chunk.iter().map(|s| (s.id, s.sequence)),
            loaded.model.device(),
        )?;
        let intact = loaded.model.forward(&batch, &capture)?;
        let tokens = batch.padded_len();
        for (c, heads) in conditions.iter().enumerate() {
            let logits = match heads.iter().map(|h| h.layer).min() {
                None => intact.logits.clone(),
                Some(first) => {
                    let residual = intact
                        .cache
                        .get_point(HookPoint::block(first, BlockSite::ResidPre))
                        .ok_or_else(|| {
                            GenolensError::hook(
                                format!("blocks.{first}.hook_resid_pre"),
                                "not captured",
                            )
                        })?;
                    let hooks = ablation.hooks(heads, tokens)?;
                    loaded
                        .model
                        .forward_from(first, residual, &batch, &hooks)?
                        .logits
                }
            };
            let logits = logits.ok_or_else(|| {
                GenolensError::argument("head ablation", "the model returned no logits")
            })?;
            let rows: Vec<Vec<f32>> = logits.to_dtype(DType::F32)?.to_vec2()?;
            result[c].extend(rows);
        }
        if let Some(bar) = progress {
            bar.inc(chunk.len() as u64);
        }
    }
    Ok(result)
}

/// Scores of every condition (see [`condition_logits`]).
pub fn score_conditions(
    loaded: &LoadedModel,
    sequences: &[Scored],
    conditions: &[Vec<Head>],
    ablation: &Ablation,
    batch_size: usize,
    progress: Option<&indicatif::ProgressBar>,
) -> Result<Vec<ClassifierScores>> {
    let labels: Vec<usize> = sequences.iter().map(|s| s.label).collect();
    Ok(condition_logits(
        loaded, sequences, conditions, ablation, batch_size, progress,
    )?
    .iter()
    .map(|logits| ClassifierScores::from_logits(logits, &labels))
    .collect())
}

/// The sets of one ablation size: the top heads of a ranking, a layer-matched control and
/// random draws.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadSets {
    /// The first `n` heads of the ranking.
    pub top: Vec<Head>,
    /// For each top head, the lowest-ranked head of the same layer that is neither in the top
    /// set nor already chosen; when a layer has none left, the lowest-ranked unused head of any
    /// layer (counted in `control_unmatched`).
    pub control: Vec<Head>,
    /// Control heads that could not be layer-matched.
    pub control_unmatched: usize,
    /// `draws` sets of `n` heads drawn uniformly without replacement.
    pub random: Vec<Vec<Head>>,
}

/// Number of heads in `percent` % of `total` (rounded, at least 1).
pub fn heads_for_percent(percent: f64, total: usize) -> usize {
    ((percent * total as f64 / 100.0).round() as usize).clamp(1, total)
}

/// The sets for ablating `n` heads, from `ranking` (most important first, every head once).
pub fn head_sets(ranking: &[Head], n: usize, draws: usize, seed: u64) -> HeadSets {
    let n = n.min(ranking.len());
    let top: Vec<Head> = ranking[..n].to_vec();
    let mut used: std::collections::HashSet<Head> = top.iter().copied().collect();
    let mut control = Vec::with_capacity(n);
    let mut control_unmatched = 0;
    for head in &top {
        let matched = ranking
            .iter()
            .rev()
            .find(|h| h.layer == head.layer && !used.contains(h))
            .copied();
        let chosen = matched.or_else(|| ranking.iter().rev().find(|h| !used.contains(h)).copied());
        if let Some(chosen) = chosen {
            if matched.is_none() {
                control_unmatched += 1;
            }
            used.insert(chosen);
            control.push(chosen);
        }
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut all: Vec<Head> = ranking.to_vec();
    all.sort();
    let random = (0..draws)
        .map(|_| {
            let mut draw: Vec<Head> = all.choose_multiple(&mut rng, n).copied().collect();
            draw.sort();
            draw
        })
        .collect();
    HeadSets {
        top,
        control,
        control_unmatched,
        random,
    }
}

/// Every head of a model, layer-major.
pub fn all_heads(layers: usize, heads: usize) -> Vec<Head> {
    (0..layers)
        .flat_map(|layer| (0..heads).map(move |head| Head { layer, head }))
        .collect()
}

/// A ranking from per-head scores (larger = more important; ties broken by layer, then head).
pub fn rank_heads(scores: &[(Head, f64)]) -> Vec<Head> {
    let mut order: Vec<(Head, f64)> = scores.to_vec();
    order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    order.into_iter().map(|(h, _)| h).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HeadKind, HookedModel, ModelConfig};
    use crate::tokenize::{KmerTokenizer, KmerVocab};
    use candle_core::Device;

    fn classifier() -> LoadedModel {
        let config = ModelConfig::bert(69, 3, 32, 4, 64, 64);
        let model = HookedModel::random(
            &config,
            HeadKind::SequenceClassification { num_labels: 2 },
            11,
            &Device::Cpu,
        )
        .unwrap();
        LoadedModel::in_memory(model, KmerTokenizer::new(KmerVocab::dnabert(3), 64))
    }

    const SEQUENCES: [&str; 4] = [
        "ACGTTGCATGCAAATCGGCTAGCT",
        "TTTATAAAGGCGCGCATATAAACG",
        "GGGCCCAATTTACGATCGATCGAA",
        "CATCATCATGGGTATAAAAGGCAT",
    ];

    #[test]
    fn ablating_a_head_changes_only_that_head_s_result() {
        let loaded = classifier();
        let (batch, _) = tokenize_batch(
            &loaded.tokenizer,
            SEQUENCES.iter().map(|s| ("x", *s)),
            &Device::Cpu,
        )
        .unwrap();
        let point = HookPoint::block(1, BlockSite::Result);
        let intact = loaded
            .model
            .forward(&batch, &Hooks::none().capture_point(point))
            .unwrap();
        let ablation = Ablation {
            kind: AblationKind::Zero,
            means: None,
        };
        let hooks = ablation
            .hooks(&[Head { layer: 1, head: 2 }], batch.padded_len())
            .unwrap()
            .capture_point(point);
        let ablated = loaded.model.forward(&batch, &hooks).unwrap();
        let before = intact.cache.get_point(point).unwrap();
        let after = ablated.cache.get_point(point).unwrap();
        let head = |t: &Tensor, h: usize| -> Vec<f32> {
            t.narrow(2, h, 1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        for other in [0, 1, 3] {
            assert_eq!(head(after, other), head(before, other), "head {other}");
        }
        assert!(
            head(after, 2).iter().all(|v| *v == 0.0),
            "z = 0 gives result 0"
        );
        assert!(head(before, 2).iter().any(|v| *v != 0.0));
    }

    #[test]
    fn mean_ablation_with_one_sequence_s_own_mean_reproduces_it_exactly() {
        let loaded = classifier();
        let sequence = [("s", SEQUENCES[1])];
        let means = HeadMeans::compute(&loaded, &sequence, 4).unwrap();
        let scored = [Scored {
            id: "s",
            sequence: SEQUENCES[1],
            label: 1,
        }];
        let every: Vec<Head> = all_heads(3, 4);
        let conditions = vec![Vec::new(), every.clone(), vec![every[5]]];
        let ablation = Ablation {
            kind: AblationKind::Mean,
            means: Some(&means),
        };
        let logits = condition_logits(&loaded, &scored, &conditions, &ablation, 4, None).unwrap();
        assert_eq!(
            logits[1], logits[0],
            "every head at its own mean: unchanged"
        );
        assert_eq!(logits[2], logits[0]);
        // Another sequence's mean does change it.
        let other = HeadMeans::compute(&loaded, &[("o", SEQUENCES[2])], 4).unwrap();
        let ablation = Ablation {
            kind: AblationKind::Mean,
            means: Some(&other),
        };
        let changed = condition_logits(&loaded, &scored, &conditions, &ablation, 4, None).unwrap();
        assert_ne!(changed[1], logits[0]);
    }

    #[test]
    fn starting_at_the_first_ablated_layer_equals_the_full_forward() {
        let loaded = classifier();
        let scored: Vec<Scored> = SEQUENCES
            .iter()
            .enumerate()
            .map(|(i, s)| Scored {
                id: "x",
                sequence: s,
                label: i % 2,
            })
            .collect();
        let heads = vec![Head { layer: 2, head: 1 }, Head { layer: 1, head: 3 }];
        let ablation = Ablation {
            kind: AblationKind::Zero,
            means: None,
        };
        let fast = condition_logits(
            &loaded,
            &scored,
            std::slice::from_ref(&heads),
            &ablation,
            2,
            None,
        )
        .unwrap();
        let (batch, _) = tokenize_batch(
            &loaded.tokenizer,
            SEQUENCES.iter().map(|s| ("x", *s)),
            &Device::Cpu,
        )
        .unwrap();
        // Batches of two have the same padding as the pairs above only when lengths agree; all
        // four sequences have 24 nt, so one batch of four pads identically.
        let full = loaded
            .model
            .forward(&batch, &ablation.hooks(&heads, batch.padded_len()).unwrap())
            .unwrap()
            .logits
            .unwrap();
        let full: Vec<Vec<f32>> = full.to_vec2().unwrap();
        assert_eq!(fast[0], full);
    }

    #[test]
    fn scores_follow_their_definitions() {
        let logits = vec![
            vec![2.0, 0.0],
            vec![0.0, 1.0],
            vec![0.5, 0.0],
            vec![0.0, 3.0],
        ];
        let labels = [0, 1, 1, 0];
        let scores = ClassifierScores::from_logits(&logits, &labels);
        assert_eq!(scores.accuracy, 0.5);
        assert_eq!(scores.mean_true_logit, (2.0 + 1.0 + 0.0 + 0.0) / 4.0);
        let expected = crate::stats::auroc(
            &logits
                .iter()
                .map(|r| 1.0 / (1.0 + f64::from(r[0] - r[1]).exp()))
                .collect::<Vec<_>>(),
            &[false, true, true, false],
        )
        .unwrap();
        assert!((scores.roc_auc - expected).abs() < 1e-12);
    }

    #[test]
    fn head_sets_are_top_layer_matched_control_and_seeded_random() {
        let ranking = rank_heads(
            &all_heads(3, 4)
                .into_iter()
                .enumerate()
                .map(|(i, h)| (h, (i * 7 % 12) as f64))
                .collect::<Vec<_>>(),
        );
        let sets = head_sets(&ranking, 3, 20, 5);
        assert_eq!(sets.top, ranking[..3].to_vec());
        assert_eq!(sets.control.len(), 3);
        for (top, control) in sets.top.iter().zip(&sets.control) {
            assert!(!sets.top.contains(control));
            if sets.control_unmatched == 0 {
                assert_eq!(top.layer, control.layer);
            }
        }
        assert_eq!(sets.random.len(), 20);
        assert!(sets.random.iter().all(|d| d.len() == 3));
        assert_eq!(sets, head_sets(&ranking, 3, 20, 5), "same seed, same sets");
        assert_ne!(sets.random, head_sets(&ranking, 3, 20, 6).random);
        assert_eq!(heads_for_percent(5.0, 24), 1);
        assert_eq!(heads_for_percent(50.0, 144), 72);
        assert_eq!(heads_for_percent(20.0, 144), 29);
    }
}
