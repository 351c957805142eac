//! The attention study (map and reduce), shared by `genolens attention` and the experiments
//! `attention-eqtl` (seed 004 §2.2) and `attention-annotations` (seed 003).
//!
//! Map: one forward pass per batch capturing every layer's attention pattern; per sequence ×
//! layer × head the statistics of [`crate::analysis::attention::head_stats`]
//! (`head_stats.parquet`), the [CLS] row around the variant (`cls_variant_profile.parquet`), and,
//! pooled over the run, the per-token scores correlated with annotation features under a
//! block-permutation null (`head_annotation.parquet`). Patterns are reduced batch by batch: no
//! more than one batch's attention maps are ever held.
//!
//! Reduce: class tests per layer × head and statistic (`head_tests.parquet`), mean [CLS]
//! profiles around the variant per class with bootstrap CIs (`variant_profiles.parquet`), a
//! one-line summary per head (`head_summaries.parquet`), figures and report.html.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::analysis::attention::{
    head_stats, read_tracks, token_features, token_scores, AnnotationCorrelation,
    AnnotationCorrelator, HeadStats, Locus, NullSettings, Track, SEQUENCE_FEATURES,
};
use crate::analysis::{run_forward, PreparedBatch};
use crate::data::Example;
use crate::experiment::{ExperimentContext, ReduceContext};
use crate::model::{BlockSite, HeadKind, HookPoint, Hooks, Output};
use crate::report::figures::{heatmap, line_plot, signed_heatmap, Heatmap, LinePlot, Series};
use crate::report::html::cell;
use crate::report::{HtmlTable, ParquetTable};
use crate::stats::bootstrap_mean_ci;
use crate::stats::hypothesis::{
    benjamini_hochberg, cohens_d, hedges_g, mann_whitney_u, mean, student_t, welch_t,
};
use crate::tokenize::{covering_positions, crop_window};

const BOOTSTRAP: usize = 1000;

/// What the attention study runs.
#[derive(Debug, Clone)]
pub struct AttentionStudy {
    /// Model when `--model` is not given.
    pub default_model: String,
    /// Data when `--data` is not given.
    pub default_data: PathBuf,
    /// Folder of BED tracks to correlate with (None: only the sequence features, or none at
    /// all when `correlate` is false).
    pub annotations: Option<PathBuf>,
    /// Whether to run the annotation correlation at all.
    pub correlate: bool,
    /// Block-permutation null settings (the seed is the run's).
    pub permutations: usize,
    /// Nucleotides each side of the variant in the [CLS] profile.
    pub profile_window_nt: usize,
    /// Sequences when `--limit` is not given (`None` = all of the split).
    pub default_sequences: Option<usize>,
    /// Bases kept around each variant (at most the model's window); sequences without a variant
    /// must fit it.
    pub context_nt: usize,
}

impl Default for AttentionStudy {
    fn default() -> Self {
        AttentionStudy {
            default_model: crate::defaults::MODEL.into(),
            default_data: crate::defaults::DATA.into(),
            annotations: None,
            correlate: true,
            permutations: 100,
            profile_window_nt: 50,
            default_sequences: None,
            context_nt: usize::MAX,
        }
    }
}

/// One sequence as the study reads it.
#[derive(Debug, Clone)]
pub struct AttentionInput {
    /// The sequence (cropped to the model's window around its variant).
    pub example: Example,
    /// The table's integer label.
    pub label: Option<i64>,
    /// Class name (`label_name`, else the label).
    pub class: Option<String>,
    /// Variant position (0-based) in the cropped sequence.
    pub variant_offset: Option<usize>,
    /// Genome locus of the cropped sequence.
    pub locus: Option<Locus>,
    /// The table's `split`, when it has one.
    pub split: Option<String>,
}

impl AttentionInput {
    /// A sequence without label or locus, with an optional variant position.
    pub fn new(id: &str, sequence: &str, variant_offset: Option<usize>) -> Self {
        AttentionInput {
            example: Example {
                id: id.into(),
                sequence: sequence.into(),
                label: None,
            },
            label: None,
            class: None,
            variant_offset,
            locus: None,
            split: None,
        }
    }
}

/// One sequence's head statistics (layer-major: `layer × heads + head`) and each head's token
/// scores ([`token_scores`](crate::analysis::attention::token_scores)).
pub type SequenceAttention = (Vec<HeadStats>, Vec<[Vec<f32>; 3]>);

/// Per input, in input order: each head's statistics (layer-major) and its token scores, from
/// one forward pass per batch. What the map step computes, for callers and tests.
pub fn attention_statistics(
    loaded: &crate::model::LoadedModel,
    inputs: &[AttentionInput],
    options: &crate::analysis::BatchOptions,
) -> anyhow::Result<Vec<SequenceAttention>> {
    let by_id: BTreeMap<&str, &AttentionInput> =
        inputs.iter().map(|i| (i.example.id.as_str(), i)).collect();
    let layers = loaded.model.config().num_hidden_layers;
    let hooks = Hooks::none().capture("blocks.*.attn.hook_pattern")?;
    let examples: Vec<Example> = inputs.iter().map(|i| i.example.clone()).collect();
    let results = crate::analysis::collect_forward(loaded, &examples, &hooks, options, |p, o| {
        analyse_batch(p, o, layers, &by_id, 0, true)
    })?;
    Ok(results.into_iter().map(|r| (r.stats, r.scores)).collect())
}

/// Reads the study's sequences from a Parquet table (columns `id`, `sequence`, optional
/// `label`, `label_name`, `split`, `variant_offset`, and a locus as `chrom` + `start` [+ `end`,
/// `strand`] or `chrom` + `pos` + `variant_offset`, else from an id `chrom:start-end(strand)`),
/// or from FASTA / CSV / TSV (loci from the ids). Sequences longer than `max_nt` are cropped to
/// a window around their variant; without a variant that is an error naming the row.
pub fn read_inputs(path: &Path, max_nt: usize) -> anyhow::Result<Vec<AttentionInput>> {
    let mut inputs = Vec::new();
    if crate::data::file_kind(path) == crate::data::FileKind::Parquet {
        let table = ParquetTable::read(path)?;
        let columns = table.column_names();
        let has = |name: &str| columns.iter().any(|c| c == name);
        if !has("sequence") {
            bail!(
                "{}: no column \"sequence\" (it has {})",
                path.display(),
                columns.join(", ")
            );
        }
        let sequences = table.strings("sequence")?;
        let n = sequences.len();
        let ids = if has("id") {
            table.strings("id")?
        } else {
            (1..=n).map(|i| i.to_string()).collect()
        };
        let strings = |name: &str| -> anyhow::Result<Option<Vec<String>>> {
            Ok(if has(name) {
                Some(table.strings(name)?)
            } else {
                None
            })
        };
        let integers = |name: &str| -> anyhow::Result<Option<Vec<i64>>> {
            Ok(if has(name) {
                Some(table.integers(name)?)
            } else {
                None
            })
        };
        let labels = integers("label")?;
        let names = strings("label_name")?;
        let splits = strings("split")?;
        let offsets = integers("variant_offset")?;
        let chroms = strings("chrom")?;
        let starts = integers("start")?;
        let positions = integers("pos")?;
        let strands = strings("strand")?;
        for row in 0..n {
            let sequence = &sequences[row];
            let variant = match &offsets {
                Some(o) => Some(
                    usize::try_from(o[row])
                        .ok()
                        .filter(|&v| v < sequence.len())
                        .with_context(|| {
                            format!(
                        "{} row {} (id {}): variant_offset {} is outside the {} nt sequence",
                        path.display(),
                        row + 1,
                        ids[row],
                        o[row],
                        sequence.len()
                    )
                        })?,
                ),
                None => None,
            };
            let length = sequence.len() as i64;
            let locus = match (&chroms, &starts, &positions, &variant) {
                (Some(c), Some(s), _, _) => Some(Locus {
                    chrom: c[row].clone(),
                    start: s[row],
                    end: s[row] + length,
                    minus: strands.as_ref().is_some_and(|s| s[row] == "-"),
                }),
                (Some(c), None, Some(p), Some(v)) => Some(Locus {
                    chrom: c[row].clone(),
                    start: p[row] - *v as i64,
                    end: p[row] - *v as i64 + length,
                    minus: false,
                }),
                _ => Locus::parse_id(&ids[row]),
            };
            let class = match (&names, &labels) {
                (Some(names), _) => Some(names[row].clone()),
                (None, Some(labels)) => Some(labels[row].to_string()),
                _ => None,
            };
            inputs.push(crop_input(
                path,
                row,
                AttentionInput {
                    example: Example {
                        id: ids[row].clone(),
                        sequence: sequence.clone(),
                        label: class.clone(),
                    },
                    label: labels.as_ref().map(|l| l[row]),
                    class,
                    variant_offset: variant,
                    locus,
                    split: splits.as_ref().map(|s| s[row].clone()),
                },
                max_nt,
            )?);
        }
    } else {
        let has_label =
            crate::data::table::column_names(path)?.is_some_and(|c| c.iter().any(|c| c == "label"));
        let columns = crate::data::TableColumns {
            label: has_label.then(|| "label".to_string()),
            ..Default::default()
        };
        for (row, example) in crate::data::open_sequences(path, &columns)?.enumerate() {
            let example = example?;
            let locus = Locus::parse_id(&example.id);
            let label = example.label.as_deref().and_then(|l| l.parse().ok());
            let input = AttentionInput {
                class: example.label.clone(),
                example,
                label,
                variant_offset: None,
                locus,
                split: None,
            };
            inputs.push(crop_input(path, row, input, max_nt)?);
        }
    }
    Ok(inputs)
}

fn crop_input(
    path: &Path,
    row: usize,
    mut input: AttentionInput,
    max_nt: usize,
) -> anyhow::Result<AttentionInput> {
    let length = input.example.sequence.len();
    if length <= max_nt {
        return Ok(input);
    }
    let Some(variant) = input.variant_offset else {
        bail!(
            "{} row {} (id {}): {length} nt is longer than the model's window of {max_nt} nt; \
             give shorter windows, or a variant_offset column to crop around",
            path.display(),
            row + 1,
            input.example.id
        );
    };
    let window = crop_window(variant, length, max_nt);
    input.example.sequence = input.example.sequence[window.clone()].to_string();
    input.variant_offset = Some(variant - window.start);
    input.locus = input.locus.map(|l| l.crop(window));
    Ok(input)
}

crate::table_row! {
    /// One head on one sequence (methods.md §2).
    pub struct HeadStatsRow {
        pub sequence_id: String,
        pub label: Option<i64>,
        pub class: Option<String>,
        pub layer: u32,
        pub head: u32,
        pub valid_keys: u32,
        pub cls_entropy_nats: f64,
        pub cls_entropy_normalised: f64,
        pub mean_entropy_nats: f64,
        pub mean_entropy_normalised: f64,
        pub cls_max_attention: f64,
        pub cls_variance: f64,
        pub cls_to_variant_sum: Option<f64>,
        pub cls_to_variant_mean: Option<f64>,
        pub mass_on_cls: f64,
        pub mass_on_sep: f64,
        pub degenerate: bool,
    }
}

crate::table_row! {
    /// The [CLS] row's attention on one token near the variant.
    pub struct ProfileRow {
        pub sequence_id: String,
        pub class: Option<String>,
        pub layer: u32,
        pub head: u32,
        pub offset_nt: i64,
        pub attention: f64,
    }
}

crate::table_row! {
    /// Spearman's ρ of a head's token score and an annotation feature (methods.md §3).
    pub struct HeadAnnotationRow {
        pub layer: u32,
        pub head: u32,
        pub score: String,
        pub feature: String,
        pub subset: String,
        pub tokens: u64,
        pub sequences: u64,
        pub sequences_with_feature: u64,
        pub rho: f64,
        pub p_parametric: f64,
        pub null_mean: f64,
        pub null_sd: f64,
        pub z: f64,
        pub p_empirical: f64,
        pub q: f64,
        pub permutations: u64,
    }
}

impl From<&AnnotationCorrelation> for HeadAnnotationRow {
    fn from(c: &AnnotationCorrelation) -> Self {
        HeadAnnotationRow {
            layer: c.layer as u32,
            head: c.head as u32,
            score: c.score.into(),
            feature: c.feature.clone(),
            subset: c.subset.clone(),
            tokens: c.tokens as u64,
            sequences: c.sequences as u64,
            sequences_with_feature: c.sequences_with_feature as u64,
            rho: c.rho,
            p_parametric: c.p_parametric,
            null_mean: c.null_mean,
            null_sd: c.null_sd,
            z: c.z,
            p_empirical: c.p_empirical,
            q: c.q,
            permutations: c.permutations as u64,
        }
    }
}

/// What one sequence's forward pass gives the study.
struct SequenceResult {
    stats: Vec<HeadStats>,
    scores: Vec<[Vec<f32>; 3]>,
    profile: Vec<(usize, usize, i64, f64)>,
}

/// The per-sequence results of one batch: statistics, token scores (when `scores`) and the
/// [CLS] profile around each variant.
fn analyse_batch(
    prepared: &PreparedBatch,
    output: &Output,
    layers: usize,
    inputs: &BTreeMap<&str, &AttentionInput>,
    window_nt: i64,
    scores: bool,
) -> crate::error::Result<Vec<SequenceResult>> {
    let mut results: Vec<SequenceResult> = (0..prepared.len())
        .map(|_| SequenceResult {
            stats: Vec::new(),
            scores: Vec::new(),
            profile: Vec::new(),
        })
        .collect();
    for layer in 0..layers {
        let pattern = output
            .cache
            .get_point(HookPoint::block(layer, BlockSite::Pattern))
            .expect("hook_pattern is captured");
        let (_, heads, padded, _) = pattern.dims4()?;
        let values: Vec<f32> = pattern
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        for (row, result) in results.iter_mut().enumerate() {
            let valid = prepared.batch.lengths[row];
            let input = inputs[prepared.examples[row].id.as_str()];
            let spans = &prepared.tokens[row].spans;
            let variant = input.variant_offset.map(|v| covering_positions(spans, v));
            // Sequence tokens lie between the special tokens ([CLS] … [SEP], or <cls> …).
            let first = spans.iter().position(Option::is_some).unwrap_or(1);
            let end = spans
                .iter()
                .rposition(Option::is_some)
                .map_or(first, |p| p + 1);
            let sep = (end < valid).then_some(valid - 1);
            for head in 0..heads {
                let start = (row * heads + head) * padded * padded;
                let matrix = &values[start..start + padded * padded];
                result.stats.push(head_stats(
                    layer,
                    head,
                    matrix,
                    padded,
                    valid,
                    variant.clone(),
                    sep,
                ));
                if scores {
                    result
                        .scores
                        .push(token_scores(matrix, padded, valid, first..end));
                }
                if let Some(v) = input.variant_offset {
                    // Each token's [CLS] attention by where its span starts.
                    for (m, &attention) in matrix.iter().enumerate().take(end).skip(first) {
                        let Some(span) = &spans[m] else { continue };
                        let offset = span.start as i64 - v as i64;
                        if offset.abs() <= window_nt {
                            result
                                .profile
                                .push((layer, head, offset, f64::from(attention)));
                        }
                    }
                }
            }
        }
    }
    Ok(results)
}

/// The map step.
pub fn run_attention(
    context: &mut ExperimentContext,
    study: &AttentionStudy,
) -> anyhow::Result<()> {
    // An MLM's vocabulary head is not read: load it as an encoder.
    let mut loaded = context.load_model(&study.default_model)?;
    if loaded.model.head_kind() == HeadKind::MaskedLm {
        loaded = context.load_model_with_head(
            &study.default_model,
            Some(HeadKind::Encoder { pooler: false }),
        )?;
    }
    let path = context.data_file(&study.default_data)?;
    let window = study.context_nt.min(loaded.tokenizer.max_sequence_length());
    context.set_config("context_nt", window);
    let mut inputs = read_inputs(&path, window)?;
    let mut split = context.split();
    if inputs.iter().any(|i| i.split.is_some()) {
        if split != "all" {
            inputs.retain(|i| i.split.as_deref() == Some(split.as_str()));
            if inputs.is_empty() {
                bail!("{}: no rows in split {split:?}", path.display());
            }
        }
    } else {
        split = "all".into();
    }
    context.set_config("split", split);
    if let (None, Some(default)) = (context.limit(), study.default_sequences) {
        inputs.truncate(default);
        context.set_config("default_sequences", default);
    }
    let options = context.batch_options("attention statistics");
    let inputs = context.take_part(inputs, options.batch_size * options.read_ahead);
    if inputs.is_empty() && !context.is_shard() {
        bail!("{}: no sequences to analyse", path.display());
    }
    let tracks: Vec<Track> = match &study.annotations {
        Some(dir) if study.correlate => read_tracks(dir)?,
        _ => Vec::new(),
    };
    if !tracks.is_empty() {
        if let Some(bad) = inputs.iter().find(|i| i.locus.is_none()) {
            bail!(
                "--annotations needs each sequence's genome locus: give the table chrom and start \
                 (or chrom, pos and variant_offset) columns, or ids like chr20:1000-1250(+); \
                 sequence {:?} has none",
                bad.example.id
            );
        }
    }
    if study.correlate && study.permutations < 2 {
        bail!(
            "--permutations {}: the null needs at least 2 permutations (100 by default); use \
             --no-correlation to skip the annotation correlation",
            study.permutations
        );
    }
    if study.correlate && context.is_shard() {
        bail!(
            "the annotation correlation pools tokens over every sequence of the run, so it cannot \
             be sharded; run unsharded, or without the correlation"
        );
    }
    let config = loaded.model.config().clone();
    let (layers, heads) = (config.num_hidden_layers, config.num_attention_heads);
    context.set_config("tokenizer", loaded.tokenizer.name());
    if let Some(kmer) = loaded.tokenizer.as_kmer() {
        context.set_config("k", kmer.k());
    }
    context.set_config("profile_window_nt", study.profile_window_nt);
    context.set_config("permutations", study.permutations);
    context.set_config("block_tokens", 10);
    if let Some(dir) = &study.annotations {
        context.set_config("annotations", dir.display().to_string());
    }
    let mut feature_names: Vec<String> = tracks.iter().map(|t| t.name.clone()).collect();
    feature_names.extend(SEQUENCE_FEATURES.iter().map(|s| s.to_string()));
    let mut correlator = AnnotationCorrelator::new(layers, heads, feature_names);
    let by_id: BTreeMap<&str, &AttentionInput> =
        inputs.iter().map(|i| (i.example.id.as_str(), i)).collect();
    if by_id.len() != inputs.len() {
        bail!("{}: sequence ids are not unique", path.display());
    }
    let hooks = Hooks::none().capture("blocks.*.attn.hook_pattern")?;
    let mut stats_table = context.table::<HeadStatsRow>("head_stats")?;
    let mut profile_table = context.table::<ProfileRow>("cls_variant_profile")?;
    let window = study.profile_window_nt as i64;
    let examples: Vec<Example> = inputs.iter().map(|i| i.example.clone()).collect();
    let correlate = study.correlate;
    let counts = run_forward(
        &loaded,
        examples.into_iter().map(Ok),
        &hooks,
        &options,
        |prepared, output| analyse_batch(prepared, output, layers, &by_id, window, correlate),
        |example, result| {
            let input = by_id[example.id.as_str()];
            for s in &result.stats {
                stats_table.write(&HeadStatsRow {
                    sequence_id: example.id.clone(),
                    label: input.label,
                    class: input.class.clone(),
                    layer: s.layer as u32,
                    head: s.head as u32,
                    valid_keys: s.valid_keys as u32,
                    cls_entropy_nats: s.cls_entropy_nats,
                    cls_entropy_normalised: s.cls_entropy_normalised,
                    mean_entropy_nats: s.mean_entropy_nats,
                    mean_entropy_normalised: s.mean_entropy_normalised,
                    cls_max_attention: s.cls_max_attention,
                    cls_variance: s.cls_variance,
                    cls_to_variant_sum: s.cls_to_variant_sum,
                    cls_to_variant_mean: s.cls_to_variant_mean,
                    mass_on_cls: s.mass_on_cls,
                    mass_on_sep: s.mass_on_sep,
                    degenerate: s.degenerate,
                })?;
            }
            for &(layer, head, offset, attention) in &result.profile {
                profile_table.write(&ProfileRow {
                    sequence_id: example.id.clone(),
                    class: input.class.clone(),
                    layer: layer as u32,
                    head: head as u32,
                    offset_nt: offset,
                    attention,
                })?;
            }
            if correlate {
                let tokenized = loaded.tokenizer.tokenize(&example.id, &example.sequence)?;
                let spans: Vec<std::ops::Range<usize>> =
                    tokenized.spans.iter().flatten().cloned().collect();
                let features =
                    token_features(&example.sequence, &spans, &tracks, input.locus.as_ref());
                correlator.add(&result.scores, &features, input.class.clone())?;
            }
            Ok(())
        },
    )?;
    counts.warn_if_unknown();
    stats_table.finish()?;
    profile_table.finish()?;
    if correlate {
        let settings = NullSettings {
            permutations: study.permutations,
            seed: context.seed,
            ..NullSettings::default()
        };
        let progress = crate::progress::spinner("annotation correlation (permutation null)");
        let (rows, dropped) = correlator.correlate(&settings)?;
        progress.finish_and_clear();
        context.set_config("features_dropped", dropped.join(","));
        let mut table = context.table::<HeadAnnotationRow>("head_annotation")?;
        for row in &rows {
            table.write(&HeadAnnotationRow::from(row))?;
        }
        table.finish()?;
    }
    Ok(())
}

crate::table_row! {
    /// A class comparison of one statistic for one head (methods.md §2, §11).
    pub struct HeadTestRow {
        pub layer: u32,
        pub head: u32,
        pub statistic: String,
        pub class_a: String,
        pub class_b: String,
        pub n_a: u64,
        pub n_b: u64,
        pub mean_a: f64,
        pub mean_b: f64,
        pub difference_ci_low: f64,
        pub difference_ci_high: f64,
        pub welch_t: f64,
        pub welch_df: f64,
        pub welch_p: f64,
        pub student_t: f64,
        pub student_p: f64,
        pub cohens_d: f64,
        pub hedges_g: f64,
        pub mann_whitney_u: f64,
        pub mann_whitney_p: f64,
        pub q: f64,
    }
}

crate::table_row! {
    /// Mean [CLS] attention at one offset from the variant, per head and class.
    pub struct VariantProfileRow {
        pub layer: u32,
        pub head: u32,
        pub class: String,
        pub offset_nt: i64,
        pub sequences: u64,
        pub mean_attention: f64,
        pub ci_low: f64,
        pub ci_high: f64,
    }
}

crate::table_row! {
    /// One head in one sentence.
    pub struct HeadSummaryRow {
        pub layer: u32,
        pub head: u32,
        pub summary: String,
    }
}

/// The statistics compared between classes, in report order.
const TESTED: [&str; 8] = [
    "cls_to_variant_mean",
    "cls_to_variant_sum",
    "cls_entropy_nats",
    "mean_entropy_nats",
    "cls_max_attention",
    "cls_variance",
    "mass_on_cls",
    "mass_on_sep",
];

/// Mean of each head's statistic, `[layer][head]`.
type Grid = Vec<Vec<f64>>;

/// The reduce step: class tests, profiles, summaries, figures and the report.
pub fn reduce_attention(context: &mut ReduceContext) -> anyhow::Result<()> {
    let stats = context.read_table("head_stats")?;
    let layer = stats.integers("layer")?;
    let head = stats.integers("head")?;
    let classes = stats.optional_strings("class")?;
    let labels = stats.optional_integers("label")?;
    let layers = (*layer.iter().max().context("no head_stats rows")? + 1) as usize;
    let heads = (*head.iter().max().context("no head_stats rows")? + 1) as usize;
    let sequences = stats.rows() / (layers * heads);
    let seed = context.provenance.seed;
    let index = |i: usize| layer[i] as usize * heads + head[i] as usize;

    // Classes ordered by label, the higher one first ("a": promoter, functional_proxy).
    let mut class_labels: BTreeMap<String, i64> = BTreeMap::new();
    for (c, l) in classes.iter().zip(&labels) {
        if let Some(c) = c {
            class_labels.entry(c.clone()).or_insert(l.unwrap_or(0));
        }
    }
    let mut class_order: Vec<(i64, String)> =
        class_labels.iter().map(|(c, l)| (*l, c.clone())).collect();
    class_order.sort_by(|a, b| b.cmp(a));
    let pair =
        (class_order.len() == 2).then(|| (class_order[0].1.clone(), class_order[1].1.clone()));

    let mut means: BTreeMap<&str, Grid> = BTreeMap::new();
    let mut tests: Vec<HeadTestRow> = Vec::new();
    for statistic in TESTED {
        let values = stats.optional_f64s(statistic)?;
        if values.iter().all(Option::is_none) {
            continue;
        }
        let mut sums = vec![(0.0, 0usize); layers * heads];
        let mut groups: Vec<[Vec<f64>; 2]> = vec![Default::default(); layers * heads];
        for i in 0..stats.rows() {
            let Some(v) = values[i] else { continue };
            let cell = &mut sums[index(i)];
            cell.0 += v;
            cell.1 += 1;
            if let (Some((a, b)), Some(c)) = (&pair, &classes[i]) {
                let g = &mut groups[index(i)];
                if c == a {
                    g[0].push(v);
                } else if c == b {
                    g[1].push(v);
                }
            }
        }
        means.insert(
            statistic,
            (0..layers)
                .map(|l| {
                    (0..heads)
                        .map(|h| sums[l * heads + h].0 / sums[l * heads + h].1 as f64)
                        .collect()
                })
                .collect(),
        );
        let Some((a, b)) = &pair else { continue };
        let first = tests.len();
        for l in 0..layers {
            for h in 0..heads {
                let [ga, gb] = &groups[l * heads + h];
                let welch = welch_t(ga, gb);
                let student = student_t(ga, gb);
                let mw = mann_whitney_u(ga, gb);
                tests.push(HeadTestRow {
                    layer: l as u32,
                    head: h as u32,
                    statistic: statistic.into(),
                    class_a: a.clone(),
                    class_b: b.clone(),
                    n_a: ga.len() as u64,
                    n_b: gb.len() as u64,
                    mean_a: mean(ga),
                    mean_b: mean(gb),
                    difference_ci_low: welch.ci_low,
                    difference_ci_high: welch.ci_high,
                    welch_t: welch.t,
                    welch_df: welch.df,
                    welch_p: welch.p,
                    student_t: student.t,
                    student_p: student.p,
                    cohens_d: cohens_d(ga, gb),
                    hedges_g: hedges_g(ga, gb),
                    mann_whitney_u: mw.u,
                    mann_whitney_p: mw.p,
                    q: f64::NAN,
                });
            }
        }
        let p: Vec<f64> = tests[first..].iter().map(|t| t.welch_p).collect();
        for (t, q) in tests[first..].iter_mut().zip(benjamini_hochberg(&p)) {
            t.q = q;
        }
    }
    let mut degenerate = vec![0usize; layers * heads];
    for (i, d) in stats.booleans("degenerate")?.iter().enumerate() {
        degenerate[index(i)] += usize::from(*d);
    }
    if !tests.is_empty() {
        let mut table = context.table::<HeadTestRow>("head_tests")?;
        table.write_all(&tests)?;
        table.finish()?;
    }
    // The statistic the class figures show: [CLS]→variant attention when there is a variant.
    let primary = TESTED
        .iter()
        .copied()
        .find(|s| tests.iter().any(|t| t.statistic == *s))
        .unwrap_or("cls_entropy_nats");

    // Profiles around the variant.
    let profile_rows = context.read_table("cls_variant_profile")?;
    let mut profiles: BTreeMap<(i64, i64, String, i64), Vec<f64>> = BTreeMap::new();
    if profile_rows.rows() > 0 {
        let pl = profile_rows.integers("layer")?;
        let ph = profile_rows.integers("head")?;
        let pc = profile_rows.optional_strings("class")?;
        let po = profile_rows.integers("offset_nt")?;
        let pa = profile_rows.f64s("attention")?;
        for i in 0..profile_rows.rows() {
            let class = pc[i].clone().unwrap_or_else(|| "all".into());
            profiles
                .entry((pl[i], ph[i], class, po[i]))
                .or_default()
                .push(pa[i]);
        }
    }
    let mut profile_summary: BTreeMap<(i64, i64, String), Series> = BTreeMap::new();
    if !profiles.is_empty() {
        let mut table = context.table::<VariantProfileRow>("variant_profiles")?;
        for ((l, h, class, offset), values) in &profiles {
            let (m, low, high) = bootstrap_mean_ci(values, BOOTSTRAP, seed, 0.95);
            table.write(&VariantProfileRow {
                layer: *l as u32,
                head: *h as u32,
                class: class.clone(),
                offset_nt: *offset,
                sequences: values.len() as u64,
                mean_attention: m,
                ci_low: low,
                ci_high: high,
            })?;
            let series = profile_summary
                .entry((*l, *h, class.clone()))
                .or_insert_with(|| Series::banded(class.clone()));
            series.push_banded(*offset as f64, m, low, high);
        }
        table.finish()?;
    }

    // Annotation correlations (written by the map step).
    let annotation_path = context.out_dir.join("head_annotation.parquet");
    let annotation = if annotation_path.exists() {
        Some(ParquetTable::read(&annotation_path)?)
    } else {
        None
    };
    let mut best_feature: BTreeMap<(i64, i64), (String, f64, f64, f64)> = BTreeMap::new();
    let mut z_grid: BTreeMap<(i64, i64, String), f64> = BTreeMap::new();
    let mut top_pairs: Vec<(f64, String, String, f64, f64, f64)> = Vec::new();
    let mut features: Vec<String> = Vec::new();
    if let Some(a) = &annotation {
        let al = a.integers("layer")?;
        let ah = a.integers("head")?;
        let score = a.strings("score")?;
        let feature = a.strings("feature")?;
        let subset = a.strings("subset")?;
        let rho = a.f64s("rho")?;
        let z = a.f64s("z")?;
        let q = a.f64s("q")?;
        for i in 0..a.rows() {
            // Position is a control (seed 003 left it out of the z-scores): kept in the table,
            // left out of the figure and summaries, where its large |z| would drown the rest.
            if score[i] != "received_mean"
                || subset[i] != "all"
                || feature[i] == "relative_position"
            {
                continue;
            }
            if !features.contains(&feature[i]) {
                features.push(feature[i].clone());
            }
            z_grid.insert((al[i], ah[i], feature[i].clone()), z[i]);
            let best = best_feature.entry((al[i], ah[i])).or_insert((
                String::new(),
                f64::NAN,
                f64::INFINITY,
                0.0,
            ));
            // The strongest correlation (|ρ|) among the significant ones; else the lowest q.
            let significant = q[i] < 0.05;
            let better = if significant && best.2 < 0.05 {
                rho[i].abs() > best.1.abs()
            } else {
                q[i] < best.2
            };
            if better {
                *best = (feature[i].clone(), rho[i], q[i], z[i]);
            }
            top_pairs.push((
                z[i].abs(),
                format!("L{}H{}", al[i], ah[i]),
                feature[i].clone(),
                rho[i],
                z[i],
                q[i],
            ));
        }
        top_pairs.sort_by(|x, y| y.0.total_cmp(&x.0));
    }

    // One sentence per head.
    let normalised = {
        let values = stats.f64s("cls_entropy_normalised")?;
        let mut sums = vec![0.0; layers * heads];
        for (i, v) in values.iter().enumerate() {
            sums[index(i)] += v;
        }
        sums.iter()
            .map(|s| s / sequences as f64)
            .collect::<Vec<f64>>()
    };
    let mut summaries = Vec::new();
    for l in 0..layers {
        for h in 0..heads {
            let cell = l * heads + h;
            let mut parts = Vec::new();
            // Judged on the value as printed.
            let n = (normalised[cell] * 100.0).round() / 100.0;
            parts.push(if n < 0.5 {
                format!("low entropy ([CLS] row at {n:.2} of uniform)")
            } else if n > 0.9 {
                format!("broad, near-uniform attention ({n:.2} of uniform)")
            } else {
                format!("moderate entropy ({n:.2} of uniform)")
            });
            if degenerate[cell] * 2 > sequences {
                parts.push("degenerate (over 80 % of its attention on [CLS]/[SEP])".into());
            }
            if let Some((feature, rho, q, _)) = best_feature.get(&(l as i64, h as i64)) {
                if *q < 0.05 {
                    let verb = if *rho > 0.0 { "attends to" } else { "avoids" };
                    parts.push(format!(
                        "{verb} {} (ρ = {:.2}, q = {})",
                        feature.replace('_', " "),
                        rho,
                        format_q(*q)
                    ));
                }
            }
            if let Some(t) = tests
                .iter()
                .filter(|t| t.layer as usize == l && t.head as usize == h && t.q < 0.05)
                .min_by(|x, y| x.q.total_cmp(&y.q))
            {
                let (stronger, d) = if t.cohens_d > 0.0 {
                    (&t.class_a, t.cohens_d)
                } else {
                    (&t.class_b, -t.cohens_d)
                };
                parts.push(format!(
                    "{} higher in {stronger} (d = {d:.2}, q = {})",
                    readable(&t.statistic),
                    format_q(t.q)
                ));
            }
            summaries.push(HeadSummaryRow {
                layer: l as u32,
                head: h as u32,
                summary: format!("L{l}H{h}: {}", parts.join("; ")),
            });
        }
    }
    let mut table = context.table::<HeadSummaryRow>("head_summaries")?;
    table.write_all(&summaries)?;
    table.finish()?;

    // Report.
    let class_note = match &pair {
        Some((a, b)) => {
            let count = |c: &str| {
                classes.iter().filter(|x| x.as_deref() == Some(c)).count() / (layers * heads)
            };
            format!("{} {a} and {} {b} sequences.", count(a), count(b))
        }
        None => format!("{sequences} sequences."),
    };
    let proxy = context
        .config("data")
        .and_then(|d| d.as_str())
        .is_some_and(|d| d.contains("eqtl-proxy"));
    context.set_title(
        "Attention heads: structure, class differences and biology",
        &format!(
            "For each sequence, layer and head: the entropy of the [CLS] query's attention and the \
             mean entropy of every query row (over valid tokens only; padding never enters), the \
             max and variance of the [CLS] row, its attention on the tokens covering the variant, \
             and the share of attention on [CLS]/[SEP]. Classes are compared per head (Welch t, \
             Cohen's d, Mann–Whitney U, BH q over heads).{} {class_note}{}",
            if annotation.is_some() {
                " Per-token attention is correlated with annotation features (Spearman ρ against \
                 a null that shuffles 10-token blocks within each sequence)."
            } else {
                ""
            },
            if proxy {
                " The labels of eqtl-proxy are a motif-disruption proxy, not measured eQTLs."
            } else {
                ""
            }
        ),
    );
    if let Some((a, b)) = &pair {
        let significant: Vec<String> = TESTED
            .iter()
            .filter_map(|statistic| {
                let hits = tests
                    .iter()
                    .filter(|t| t.statistic == *statistic && t.q < 0.05)
                    .count();
                let tested = tests.iter().any(|t| t.statistic == *statistic);
                tested.then(|| format!("{} {hits}", readable(statistic)))
            })
            .collect();
        let text = format!(
            "Heads (of {}) whose statistic differs between {a} and {b} at BH q < 0.05: {}.",
            layers * heads,
            significant.join(", ")
        );
        context.report().paragraph(&text);
    }
    let layer_names: Vec<String> = (0..layers).map(|l| l.to_string()).collect();
    let head_names: Vec<String> = (0..heads).map(|h| h.to_string()).collect();
    let layer_head = |name: &str, title: &str, values: Grid, label: &str| Heatmap {
        name: name.into(),
        title: title.into(),
        x_label: "head".into(),
        y_label: "layer".into(),
        columns: head_names.clone(),
        rows: layer_names.clone(),
        values,
        value_label: label.into(),
    };
    for (statistic, file, title, label, caption) in [
        (
            "cls_entropy_nats",
            "entropy_heatmap.svg",
            "Mean [CLS] attention entropy",
            "entropy (nats)",
            "Mean entropy of the [CLS] row per layer (rows, 0 = first) and head. Dark = focused.",
        ),
        (
            "cls_variance",
            "variance_heatmap.svg",
            "Mean variance of the [CLS] row",
            "variance",
            "Mean variance of the [CLS] row over valid keys: high = a few keys take most weight.",
        ),
        (
            "cls_max_attention",
            "max_attention_heatmap.svg",
            "Mean max [CLS] attention",
            "max attention",
            "Mean of the largest weight in the [CLS] row.",
        ),
    ] {
        if let Some(values) = means.get(statistic) {
            let svg = heatmap(&layer_head(file, title, values.clone(), label))?;
            context.figure(file, &svg, caption)?;
        }
    }
    if let Some((a, b)) = &pair {
        let grid = |f: &dyn Fn(&HeadTestRow) -> f64| -> Grid {
            let mut g = vec![vec![f64::NAN; heads]; layers];
            for t in tests.iter().filter(|t| t.statistic == primary) {
                let v = f(t);
                // A missing test (constant values) is a grey cell.
                g[t.layer as usize][t.head as usize] = if v.is_finite() { v } else { f64::NAN };
            }
            g
        };
        let svg = heatmap(&layer_head(
            "class_q_heatmap.svg",
            &format!("−log10 q: {}", readable(primary)),
            // q can underflow to 0 with thousands of sequences: shown at the smallest double.
            grid(&|t| -t.q.max(f64::MIN_POSITIVE).log10()),
            "−log10 q (BH, Welch)",
        ))?;
        context.figure(
            "class_q_heatmap.svg",
            &svg,
            &format!(
                "Per head: −log10 of the BH q of Welch's t test of {primary} between {a} and {b} \
                 (q = 0.05 is 1.3)."
            ),
        )?;
        let svg = signed_heatmap(&layer_head(
            "class_d_heatmap.svg",
            &format!("Cohen's d: {}", readable(primary)),
            grid(&|t| t.cohens_d),
            "Cohen's d (a − b)",
        ))?;
        context.figure(
            "class_d_heatmap.svg",
            &svg,
            &format!("Per head: Cohen's d (pooled SD) of {primary}, {a} minus {b}."),
        )?;
        let mut ranked: Vec<&HeadTestRow> =
            tests.iter().filter(|t| t.statistic == primary).collect();
        ranked.sort_by(|x, y| x.welch_p.total_cmp(&y.welch_p));
        let mut table = HtmlTable::new(
            &format!(
                "Heads whose {} ({primary}) differs most between {a} and {b}",
                readable(primary)
            ),
            &[
                "head", "n a / b", "mean a", "mean b", "d", "Welch p", "U p", "q",
            ],
        );
        for t in ranked.iter().take(10) {
            table.row(vec![
                format!("L{}H{}", t.layer, t.head),
                format!("{} / {}", t.n_a, t.n_b),
                cell(t.mean_a),
                cell(t.mean_b),
                cell(t.cohens_d),
                cell(t.welch_p),
                cell(t.mann_whitney_p),
                cell(t.q),
            ]);
        }
        context.report().table(table);
        // Profiles for the top heads.
        for t in ranked.iter().take(3) {
            let series: Vec<Series> = profile_summary
                .iter()
                .filter(|((l, h, _), _)| *l == t.layer as i64 && *h == t.head as i64)
                .map(|(_, s)| s.clone())
                .collect();
            if series.is_empty() {
                continue;
            }
            let file = format!("variant_profile_L{}H{}.svg", t.layer, t.head);
            let svg = line_plot(&LinePlot {
                name: file.clone(),
                title: format!(
                    "L{}H{}: [CLS] attention around the variant",
                    t.layer, t.head
                ),
                x_label: "token start − variant position (nt)".into(),
                y_label: "[CLS] attention".into(),
                series,
            })?;
            context.figure(
                &file,
                &svg,
                &format!(
                    "Mean [CLS] attention on each token by where it starts relative to the \
                     variant, per class, with bootstrap 95 % CIs (L{}H{}, q = {} for {primary}).{}",
                    t.layer,
                    t.head,
                    format_q(t.q),
                    match context.config("k").and_then(|k| k.as_i64()) {
                        Some(k) => format!(
                            " Tokens starting {}..0 nt from the variant contain it.",
                            -(k - 1)
                        ),
                        None => String::new(),
                    }
                ),
            )?;
        }
    }
    if !features.is_empty() {
        let rows: Vec<String> = (0..layers)
            .flat_map(|l| (0..heads).map(move |h| format!("L{l}H{h}")))
            .collect();
        let values: Grid = (0..layers)
            .flat_map(|l| (0..heads).map(move |h| (l, h)))
            .map(|(l, h)| {
                features
                    .iter()
                    .map(|f| {
                        z_grid
                            .get(&(l as i64, h as i64, f.clone()))
                            .copied()
                            .filter(|z| z.is_finite())
                            .unwrap_or(f64::NAN)
                    })
                    .collect()
            })
            .collect();
        let svg = signed_heatmap(&Heatmap {
            name: "annotation_z_heatmap.svg".into(),
            title: "Head × feature: z of Spearman ρ (received_mean)".into(),
            x_label: "feature".into(),
            y_label: "head".into(),
            columns: features.clone(),
            rows,
            values,
            value_label: "z vs block-permutation null".into(),
        })?;
        context.figure(
            "annotation_z_heatmap.svg",
            &svg,
            "Per head and feature: z of Spearman's ρ between the attention a token receives \
             (mean over queries) and the feature, against the null of 10-token blocks shuffled \
             within each sequence, tokens of all sequences pooled (relative_position, a control, \
             is in head_annotation.parquet only).",
        )?;
        let mut table = HtmlTable::new(
            "Strongest head–feature correlations (received_mean, all tokens)",
            &["head", "feature", "ρ", "z", "q"],
        );
        for (_, name, feature, rho, z, q) in top_pairs.iter().take(12) {
            table.row(vec![
                name.clone(),
                feature.clone(),
                cell(*rho),
                cell(*z),
                cell(*q),
            ]);
        }
        context.report().table(table);
        if let Some(dropped) = context.config("features_dropped").and_then(|d| d.as_str()) {
            if !dropped.is_empty() {
                let text = format!(
                    "Features present in fewer than 5 % of the sequences were dropped: {dropped}."
                );
                context.report().paragraph(&text);
            }
        }
    }
    let mut table = HtmlTable::new("One line per head", &["head", "summary"]);
    for s in &summaries {
        let (name, text) = s.summary.split_once(": ").unwrap_or(("", &s.summary));
        table.row(vec![name.to_string(), crate::report::html::escape(text)]);
    }
    context.report().table(table);
    Ok(())
}

/// How a statistic reads in a sentence.
fn readable(statistic: &str) -> &'static str {
    match statistic {
        "cls_to_variant_mean" => "[CLS]→variant attention",
        "cls_to_variant_sum" => "[CLS]→variant attention (sum)",
        "cls_entropy_nats" => "[CLS] entropy",
        "mean_entropy_nats" => "mean row entropy",
        "cls_max_attention" => "max [CLS] attention",
        "cls_variance" => "[CLS] variance",
        "mass_on_cls" => "mass on [CLS]",
        "mass_on_sep" => "mass on [SEP]",
        _ => "statistic",
    }
}

fn format_q(q: f64) -> String {
    if q < 1e-3 {
        format!("{q:.0e}")
    } else {
        format!("{q:.3}")
    }
}
