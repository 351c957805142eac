//! `genolens attribute`: every attribution method of [`crate::analysis::attribution`] over a set
//! of sequences, batched, into token and nucleotide tables, per-sequence checks (LRP
//! conservation, the integrated-gradients completeness gap), logos and a report.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::Tensor;

use crate::analysis::attribution::{
    argmax_rows, attention_maps, chefer_relevance, integrated_gradients, ism, lrp,
    nucleotide_scores_to_tokens, scale_to_unit, token_scores_to_nucleotides, Baseline, IgSettings,
    Quadrature, Spread, TargetKind,
};
use crate::analysis::{run_batches, PreparedBatch};
use crate::data::Example;
use crate::experiment::{ExperimentContext, ReduceContext};
use crate::model::{Batch, HeadKind, LoadedModel, RelevanceRules};
use crate::report::figures::{stacked_logos, SequenceLogo};
use crate::report::html::cell;
use crate::report::HtmlTable;

/// An attribution method, named as `--method` and the tables' `method` column name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    /// Gradient × input at the word embeddings.
    GradXInput,
    /// Integrated gradients (adaptive steps, completeness gap < 1 %).
    IntegratedGradients,
    /// In-silico mutagenesis, every position × base.
    Ism,
    /// DNABERT's attention score: last layer, [CLS] row, summed over heads.
    Attention,
    /// Attention rollout (Abnar & Zuidema).
    Rollout,
    /// GradCAM on the last layer's attention.
    GradCam,
    /// Chefer et al.'s relevance × gradient rollout from layer 0 (seed 000's `LRP`).
    Lrp,
    /// Chefer's last-layer attention relevance (seed 000's `LRP_last`).
    LrpLast,
    /// Chefer's full LRP: relevance at the encoder input (seed 000's `full_LRP`).
    FullLrp,
    /// AttnLRP (LXT's efficient rules).
    AttnLrp,
    /// CP-LRP.
    CpLrp,
}

impl Method {
    /// Every method, in table order.
    pub const ALL: [Method; 11] = [
        Method::GradXInput,
        Method::IntegratedGradients,
        Method::Ism,
        Method::Attention,
        Method::Rollout,
        Method::GradCam,
        Method::Lrp,
        Method::LrpLast,
        Method::FullLrp,
        Method::AttnLrp,
        Method::CpLrp,
    ];

    /// The name `--method` takes and the tables write.
    pub fn name(self) -> &'static str {
        match self {
            Method::GradXInput => "grad_x_input",
            Method::IntegratedGradients => "integrated_gradients",
            Method::Ism => "ism",
            Method::Attention => "attention",
            Method::Rollout => "rollout",
            Method::GradCam => "gradcam",
            Method::Lrp => "lrp",
            Method::LrpLast => "lrp_last",
            Method::FullLrp => "full_lrp",
            Method::AttnLrp => "attnlrp",
            Method::CpLrp => "cp-lrp",
        }
    }

    /// Parses one `--method` name (`all` is handled by [`parse_methods`]).
    pub fn parse(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// `--method` values: a comma-separated list of method names, or `all`.
pub fn parse_methods(values: &[String]) -> anyhow::Result<Vec<Method>> {
    let mut methods = Vec::new();
    for value in values.iter().flat_map(|v| v.split(',')) {
        let value = value.trim();
        if value == "all" {
            methods.extend(Method::ALL);
        } else {
            match Method::parse(value) {
                Some(m) => methods.push(m),
                None => bail!(
                    "--method {value:?} is not a method: use all or any of {}",
                    Method::ALL.map(Method::name).join(", ")
                ),
            }
        }
    }
    if methods.is_empty() {
        methods.extend(Method::ALL);
    }
    methods.sort();
    methods.dedup();
    Ok(methods)
}

/// What `genolens attribute` (and experiments) run.
#[derive(Debug, Clone)]
pub struct AttributionStudy {
    /// Model when `--model` is not given.
    pub default_model: String,
    /// Data when `--data` is not given.
    pub default_data: PathBuf,
    /// Methods to run.
    pub methods: Vec<Method>,
    /// The class explained (None: each sequence's predicted class, or its label with
    /// `target_label`).
    pub target: Option<usize>,
    /// Explain each sequence's own class, read from its `label` column (faithfulness asks
    /// whether changing what supports the true class breaks the prediction).
    pub target_label: bool,
    /// Logit or log-probability of the class (gradient methods and ISM; Chefer's methods and
    /// GradCAM explain the logit, as their code does).
    pub target_kind: TargetKind,
    /// Integrated-gradients baseline.
    pub baseline: Baseline,
    /// Integrated-gradients steps to start from (doubled, up to 8×, for sequences whose
    /// completeness gap exceeds 1 % of |f(x) − f(baseline)|).
    pub ig_steps: usize,
    /// How overlapping k-mers spread a token's score over its bases.
    pub spread: Spread,
    /// ISM variants per forward pass.
    pub ism_batch_size: usize,
    /// Sequences drawn as logos in the report (the most confident predictions of their target).
    pub logos: usize,
    /// Nucleotides shown per logo, centred on the strongest ISM (or first method) window.
    pub logo_window_nt: usize,
    /// Sequences when `--limit` is not given (`None` = all of the split).
    pub default_sequences: Option<usize>,
    /// Only the sequences whose `label` is this (a table's label column, as text).
    pub only_label: Option<String>,
    /// Appended to the three tables' names (a study attributing several datasets in one run
    /// names each: `nucleotide_attributions_tf`).
    pub table_suffix: String,
}

impl AttributionStudy {
    /// Every method with the defaults, on `model` and `data`.
    pub fn new(model: &str, data: impl Into<PathBuf>) -> Self {
        AttributionStudy {
            default_model: model.to_string(),
            default_data: data.into(),
            methods: Method::ALL.to_vec(),
            target: None,
            target_label: false,
            target_kind: TargetKind::Logit,
            baseline: Baseline::Zero,
            ig_steps: 50,
            spread: Spread::Mean,
            ism_batch_size: 128,
            logos: 3,
            logo_window_nt: 60,
            default_sequences: None,
            only_label: None,
            table_suffix: String::new(),
        }
    }
}

crate::table_row! {
    /// One token's score by one method (token_index 0 = [CLS]).
    pub struct TokenAttributionRow {
        pub sequence_id: String,
        pub token_index: u32,
        pub token: String,
        pub method: String,
        pub target: u32,
        pub score: f64,
    }
}

crate::table_row! {
    /// One nucleotide's score by one method: token methods spread over the k-mers covering the
    /// base, [CLS]/[SEP] left out; `score_scaled` divides by the sequence's largest |score|.
    /// ISM (`ism`) has a row per position and base (Δ, 0 for the observed base); `ism_centred`
    /// one per position at the observed base.
    pub struct NucleotideAttributionRow {
        pub sequence_id: String,
        pub position: u32,
        pub base: String,
        pub method: String,
        pub target: u32,
        pub score: f64,
        pub score_scaled: f64,
    }
}

crate::table_row! {
    /// Per sequence and method, the sums that check an attribution: the explained target, the
    /// relevance summed over tokens, what reached the position and token-type embeddings, the
    /// conservation error (Σ relevance − target; for integrated gradients the completeness gap
    /// Σ attribution − (f(x) − f(baseline)); for full_lrp Σ relevance − 1, its one-hot start).
    pub struct AttributionCheckRow {
        pub sequence_id: String,
        pub label: Option<String>,
        pub method: String,
        pub target: u32,
        pub predicted: u32,
        pub target_value: f64,
        pub target_probability: f64,
        pub relevance_sum: f64,
        pub positional_relevance: Option<f64>,
        pub conservation_error: f64,
        pub ig_steps: Option<u32>,
    }
}

/// One sequence's results.
struct SequenceAttribution {
    target: usize,
    predicted: usize,
    target_value: f64,
    target_probability: f64,
    tokens: Vec<(Method, Vec<f32>)>,
    ism: Option<crate::analysis::attribution::IsmResult>,
    checks: Vec<Check>,
}

/// One method's sums for one sequence (see [`AttributionCheckRow`]).
#[derive(Clone, Copy)]
struct Check {
    method: Method,
    sum: f64,
    positional: Option<f64>,
    error: f64,
    steps: Option<u32>,
}

/// The rows `rows` of `batch` as a batch of their own.
fn select_rows(batch: &Batch, rows: &[usize]) -> anyhow::Result<Batch> {
    let index = Tensor::new(
        rows.iter().map(|&r| r as u32).collect::<Vec<_>>(),
        batch.ids.device(),
    )?;
    Ok(Batch {
        ids: batch.ids.index_select(&index, 0)?,
        attention_mask: batch.attention_mask.index_select(&index, 0)?,
        lengths: rows.iter().map(|&r| batch.lengths[r]).collect(),
        ends_with_special: batch.ends_with_special,
    })
}

/// Integrated gradients with enough steps: sequences whose |completeness gap| exceeds 1 % of
/// |f(x) − f(baseline)| are rerun with twice the steps, up to 8× `settings.steps`, as long as
/// doubling at least halves their gap (a classifier that jumps along the path, as saturated ones
/// do, has a gap no step count closes: the gap is reported, not chased).
fn adaptive_ig(
    loaded: &LoadedModel,
    batch: &Batch,
    targets: &[usize],
    settings: &IgSettings,
) -> anyhow::Result<Vec<(crate::analysis::attribution::IgResult, usize)>> {
    let special = &loaded.tokenizer.special();
    let ids = [special.cls, special.sep, special.pad];
    let run = |batch: &Batch, targets: &[usize], steps: usize| {
        let settings = IgSettings { steps, ..*settings };
        integrated_gradients(&loaded.model, batch, targets, &settings, special.mask, &ids)
    };
    let mut results: Vec<_> = run(batch, targets, settings.steps)?
        .into_iter()
        .map(|r| (r, settings.steps))
        .collect();
    let converged = |r: &crate::analysis::attribution::IgResult| {
        r.completeness_gap.abs() <= 0.01 * (r.target_at_input - r.target_at_baseline).abs()
    };
    let mut open: Vec<usize> = (0..results.len())
        .filter(|&i| !converged(&results[i].0))
        .collect();
    let mut steps = settings.steps;
    while steps < 8 * settings.steps && !open.is_empty() {
        steps *= 2;
        let sub_targets: Vec<usize> = open.iter().map(|&i| targets[i]).collect();
        let rerun = run(&select_rows(batch, &open)?, &sub_targets, steps)?;
        let mut still_open = Vec::new();
        for (i, r) in open.into_iter().zip(rerun) {
            let improving = r.completeness_gap.abs() <= 0.5 * results[i].0.completeness_gap.abs();
            if improving {
                results[i] = (r, steps);
                if !converged(&results[i].0) {
                    still_open.push(i);
                }
            }
        }
        open = still_open;
    }
    Ok(results)
}

/// Every selected method on one batch.
fn attribute_batch(
    loaded: &LoadedModel,
    prepared: &PreparedBatch,
    study: &AttributionStudy,
    seconds: &mut BTreeMap<&'static str, f64>,
) -> anyhow::Result<Vec<SequenceAttribution>> {
    let model = &loaded.model;
    let batch = &prepared.batch;
    let rows = batch.size();
    // One forward gives the predicted classes (the default targets) and the targets' values.
    let logits: Vec<Vec<f32>> = model
        .classifier_logits(batch)?
        .context("a classifier's logits")?
        .to_dtype(candle_core::DType::F32)?
        .to_vec2()?;
    let predicted = argmax_rows(&logits);
    let targets: Vec<usize> = match study.target {
        Some(t) => vec![t; rows],
        None if study.target_label => prepared
            .examples
            .iter()
            .map(|e| {
                let label = e.label.as_deref().with_context(|| {
                    format!(
                        "{}: no label to explain (the data has no label column)",
                        e.id
                    )
                })?;
                let class: usize = label.parse().with_context(|| {
                    format!("{}: label {label:?} is not a class id (0, 1, …)", e.id)
                })?;
                if class >= logits[0].len() {
                    bail!(
                        "{}: label {class} is not a class of this {}-class classifier",
                        e.id,
                        logits[0].len()
                    );
                }
                Ok(class)
            })
            .collect::<anyhow::Result<_>>()?,
        None => predicted.clone(),
    };
    let mut out: Vec<SequenceAttribution> = (0..rows)
        .map(|row| {
            let l = &logits[row];
            let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let norm: f64 = l.iter().map(|&v| f64::from(v - max).exp()).sum();
            let t = targets[row];
            SequenceAttribution {
                target: t,
                predicted: predicted[row],
                target_value: f64::from(l[t]),
                target_probability: f64::from(l[t] - max).exp() / norm,
                tokens: Vec::new(),
                ism: None,
                checks: Vec::new(),
            }
        })
        .collect();
    let mut timed = |method: Method, started: Instant| {
        *seconds.entry(method.name()).or_default() += started.elapsed().as_secs_f64();
    };
    let kind = study.target_kind;
    for &method in &study.methods {
        let started = Instant::now();
        match method {
            Method::GradXInput | Method::AttnLrp | Method::CpLrp => {
                let rules = match method {
                    Method::AttnLrp => Some(RelevanceRules::AttnLrp),
                    Method::CpLrp => Some(RelevanceRules::CpLrp),
                    _ => None,
                };
                for (row, r) in lrp(model, batch, &targets, kind, rules)?
                    .into_iter()
                    .enumerate()
                {
                    let sum = r.scores.iter().map(|&v| f64::from(v)).sum();
                    out[row].checks.push(Check {
                        method,
                        sum,
                        positional: Some(r.positional),
                        error: r.conservation_error,
                        steps: None,
                    });
                    out[row].tokens.push((method, r.scores));
                }
            }
            Method::IntegratedGradients => {
                let settings = IgSettings {
                    steps: study.ig_steps,
                    quadrature: Quadrature::GaussLegendre,
                    baseline: study.baseline,
                    points_per_pass: 8,
                    target_kind: kind,
                };
                for (row, (r, steps)) in adaptive_ig(loaded, batch, &targets, &settings)?
                    .into_iter()
                    .enumerate()
                {
                    let sum = r.scores.iter().map(|&v| f64::from(v)).sum();
                    out[row].checks.push(Check {
                        method,
                        sum,
                        positional: None,
                        error: r.completeness_gap,
                        steps: Some(steps as u32),
                    });
                    out[row].tokens.push((method, r.scores));
                }
            }
            Method::Ism => {
                for (row, example) in prepared.examples.iter().enumerate() {
                    let result = ism(
                        loaded,
                        &example.id,
                        &example.sequence,
                        targets[row],
                        kind,
                        study.ism_batch_size,
                    )?;
                    out[row].ism = Some(result);
                }
            }
            Method::Attention | Method::Rollout | Method::GradCam => {
                // One pass gives all three; computed once, at the first of them.
                if out[0].tokens.iter().any(|(m, _)| {
                    matches!(m, Method::Attention | Method::Rollout | Method::GradCam)
                }) {
                    continue;
                }
                let maps = attention_maps(model, batch, &targets)?;
                for (row, m) in maps.into_iter().enumerate() {
                    for (which, scores) in [
                        (Method::Attention, m.attention),
                        (Method::Rollout, m.rollout),
                        (Method::GradCam, m.gradcam),
                    ] {
                        if study.methods.contains(&which) {
                            out[row].tokens.push((which, scores));
                        }
                    }
                }
            }
            Method::Lrp | Method::LrpLast | Method::FullLrp => {
                if out[0]
                    .tokens
                    .iter()
                    .any(|(m, _)| matches!(m, Method::Lrp | Method::LrpLast | Method::FullLrp))
                {
                    continue;
                }
                let relevance = chefer_relevance(model, batch, &targets)?;
                let sums = relevance.input_sums()?;
                let mut read = Vec::new();
                if study.methods.contains(&Method::Lrp) {
                    read.push((Method::Lrp, relevance.rollout(0)?));
                }
                if study.methods.contains(&Method::LrpLast) {
                    read.push((Method::LrpLast, relevance.last_layer()?));
                }
                if study.methods.contains(&Method::FullLrp) {
                    read.push((Method::FullLrp, relevance.full()?));
                    for (row, s) in sums.iter().enumerate() {
                        let total: f64 = s.iter().map(|&v| f64::from(v)).sum();
                        out[row].checks.push(Check {
                            method: Method::FullLrp,
                            sum: total,
                            positional: None,
                            error: total - 1.0,
                            steps: None,
                        });
                    }
                }
                for (method, scores) in read {
                    for (row, s) in scores.into_iter().enumerate() {
                        out[row].tokens.push((method, s));
                    }
                }
            }
        }
        timed(method, started);
    }
    Ok(out)
}

/// The map step: attributions of every sequence into the three tables.
pub fn run_attribution(
    context: &mut ExperimentContext,
    study: &AttributionStudy,
) -> anyhow::Result<()> {
    let loaded = context.load_model(&study.default_model)?;
    if !matches!(
        loaded.model.head_kind(),
        HeadKind::SequenceClassification { .. }
    ) {
        bail!(
            "attribution explains a class of a sequence classifier, and {} is a {} (fine-tune one \
             with `genolens train`, or give --model a classifier)",
            loaded.source.id,
            loaded.model.head_kind().hf_class()
        );
    }
    if let Some(target) = study.target {
        let classes = loaded.model.config().num_labels.unwrap_or(2);
        if target >= classes {
            bail!(
                "--target {target}: the classifier has {classes} classes (0 to {})",
                classes - 1
            );
        }
    }
    if study.ig_steps == 0 || study.ism_batch_size == 0 {
        bail!("--ig-steps and --ism-batch-size must be at least 1");
    }
    if let Some(default) = study.default_sequences {
        context.set_default_limit(default);
    }
    let examples = match &study.only_label {
        None => context.sequences(&study.default_data)?,
        Some(label) => {
            let examples = context.sequences_where(&study.default_data, |e| {
                e.label.as_deref() == Some(label.as_str())
            })?;
            if examples.is_empty() && !context.is_shard() {
                bail!(
                    "--label {label}: no sequence of the data (in this split) has this label; \
                     the label column's values are the classes' ids (0, 1, …)"
                );
            }
            context.set_config("only_label", label.clone());
            examples
        }
    };
    if examples.is_empty() && !context.is_shard() {
        bail!("no sequences to attribute");
    }
    attribute_examples(context, study, &loaded, examples)
}

/// Every method of `study` on `examples` with `loaded` (a sequence classifier): writes
/// `token_attributions`, `nucleotide_attributions` and `attribution_checks` into the run.
pub fn attribute_examples(
    context: &mut ExperimentContext,
    study: &AttributionStudy,
    loaded: &LoadedModel,
    examples: Vec<Example>,
) -> anyhow::Result<()> {
    if study.ig_steps == 0 || study.ism_batch_size == 0 {
        bail!("--ig-steps and --ism-batch-size must be at least 1");
    }
    // Chefer et al.'s LRP propagates through BERT's own layers (post-LN, dense GELU MLP): on
    // DNABERT-2 and the NT the relevance methods are AttnLRP and CP-LRP (seed 001's rules).
    let chefer = [Method::Lrp, Method::LrpLast, Method::FullLrp];
    let architecture = loaded.model.config().architecture;
    let filtered;
    let study = if architecture != crate::model::Architecture::Bert
        && study.methods.iter().any(|m| chefer.contains(m))
    {
        let mut kept = study.clone();
        kept.methods.retain(|m| !chefer.contains(m));
        if kept.methods.is_empty() {
            bail!(
                "--method lrp/lrp_last/full_lrp: Chefer et al.'s LRP is written for BERT's blocks; \
                 on this {} model use attnlrp or cp_lrp",
                architecture.name()
            );
        }
        let skipped: Vec<&str> = study
            .methods
            .iter()
            .filter(|m| chefer.contains(m))
            .map(|m| m.name())
            .collect();
        tracing::warn!(
            "{} skipped: Chefer et al.'s LRP is written for BERT's blocks (AttnLRP and CP-LRP run on {} models)",
            skipped.join(", "),
            architecture.name()
        );
        context.set_config("methods_skipped", skipped);
        filtered = kept;
        &filtered
    } else {
        study
    };
    context.set_config("tokenizer", loaded.tokenizer.name());
    if let Some(kmer) = loaded.tokenizer.as_kmer() {
        context.set_config("k", kmer.k());
    }
    if loaded.model.config().rotary()
        && study.baseline == Baseline::Zero
        && study.methods.contains(&Method::IntegratedGradients)
    {
        // Nothing is added to the word embeddings before the first LayerNorm, which is scale
        // invariant: f(αx) = f(x) for every α > 0, and the whole difference sits at α = 0.
        tracing::warn!(
            "integrated gradients from a zero baseline on a model without position embeddings \
             (NT v2): the path is flat until α = 0, so completeness cannot be reached; use \
             --baseline mask"
        );
    }
    context.set_config(
        "methods",
        study.methods.iter().map(|m| m.name()).collect::<Vec<_>>(),
    );
    context.set_config(
        "target",
        match (study.target, study.target_label) {
            (Some(t), _) => t.to_string(),
            (None, true) => "label".into(),
            (None, false) => "predicted".into(),
        },
    );
    context.set_config(
        "target_kind",
        match study.target_kind {
            TargetKind::Logit => "logit",
            TargetKind::LogProbability => "log_probability",
        },
    );
    context.set_config(
        "baseline",
        match study.baseline {
            Baseline::Zero => "zero",
            Baseline::Mask => "mask",
        },
    );
    context.set_config("ig_steps", study.ig_steps);
    context.set_config("spread", study.spread.name());
    context.set_config("logos", study.logos);
    context.set_config("logo_window_nt", study.logo_window_nt);
    let suffix = &study.table_suffix;
    let mut token_table =
        context.table::<TokenAttributionRow>(&format!("token_attributions{suffix}"))?;
    let mut nucleotide_table =
        context.table::<NucleotideAttributionRow>(&format!("nucleotide_attributions{suffix}"))?;
    let mut check_table =
        context.table::<AttributionCheckRow>(&format!("attribution_checks{suffix}"))?;
    let options = context.batch_options("attribution");
    let mut seconds: BTreeMap<&'static str, f64> = BTreeMap::new();
    let counts = run_batches(
        &loaded.tokenizer,
        loaded.model.device(),
        examples.into_iter().map(Ok),
        &options,
        |prepared| {
            attribute_batch(loaded, prepared, study, &mut seconds)
                .map_err(|e| crate::error::GenolensError::argument("attribution", format!("{e:#}")))
        },
        |example: &Example, result: SequenceAttribution| {
            let tokenized = loaded.tokenizer.tokenize(&example.id, &example.sequence)?;
            let upper = example.sequence.to_ascii_uppercase();
            let bases: Vec<String> = upper.chars().map(|c| c.to_string()).collect();
            let length = bases.len();
            let target = result.target as u32;
            for (method, scores) in &result.tokens {
                for (index, (&score, &id)) in scores.iter().zip(&tokenized.ids).enumerate() {
                    token_table.write(&TokenAttributionRow {
                        sequence_id: example.id.clone(),
                        token_index: index as u32,
                        token: loaded.tokenizer.token(id).unwrap_or_else(|| "[UNK]".into()),
                        method: method.name().into(),
                        target,
                        score: f64::from(score),
                    })?;
                }
                let raw =
                    token_scores_to_nucleotides(scores, &tokenized.spans, length, study.spread)?;
                let scaled = scale_to_unit(&raw);
                for (position, (r, s)) in raw.iter().zip(&scaled).enumerate() {
                    nucleotide_table.write(&NucleotideAttributionRow {
                        sequence_id: example.id.clone(),
                        position: position as u32,
                        base: bases[position].clone(),
                        method: method.name().into(),
                        target,
                        score: f64::from(*r),
                        score_scaled: f64::from(*s),
                    })?;
                }
            }
            if let Some(ism) = &result.ism {
                let largest = ism
                    .deltas
                    .iter()
                    .flatten()
                    .fold(0f64, |m, v| m.max(v.abs()));
                let scale = |v: f64| if largest > 0.0 { v / largest } else { v };
                for (position, deltas) in ism.deltas.iter().enumerate() {
                    for (column, &delta) in deltas.iter().enumerate() {
                        nucleotide_table.write(&NucleotideAttributionRow {
                            sequence_id: example.id.clone(),
                            position: position as u32,
                            base: (crate::analysis::attribution::ism::BASES[column] as char)
                                .to_string(),
                            method: "ism".into(),
                            target,
                            score: delta,
                            score_scaled: scale(delta),
                        })?;
                    }
                }
                let centred = ism.centred(&upper);
                // Nucleotide → token (seed 001's aggregation (a) sum and (b) mean), so ISM can
                // be compared with the token methods token by token.
                for spread in [Spread::Sum, Spread::Mean] {
                    let per_token = nucleotide_scores_to_tokens(&centred, &tokenized.spans, spread);
                    for (index, (&score, &id)) in per_token.iter().zip(&tokenized.ids).enumerate() {
                        token_table.write(&TokenAttributionRow {
                            sequence_id: example.id.clone(),
                            token_index: index as u32,
                            token: loaded.tokenizer.token(id).unwrap_or_else(|| "[UNK]".into()),
                            method: format!("ism_centred_{}", spread.name()),
                            target,
                            score,
                        })?;
                    }
                }
                let largest = centred
                    .iter()
                    .filter(|v| v.is_finite())
                    .fold(0f64, |m, v| m.max(v.abs()));
                for (position, &value) in centred.iter().enumerate() {
                    nucleotide_table.write(&NucleotideAttributionRow {
                        sequence_id: example.id.clone(),
                        position: position as u32,
                        base: bases[position].clone(),
                        method: "ism_centred".into(),
                        target,
                        score: value,
                        score_scaled: if largest > 0.0 {
                            value / largest
                        } else {
                            value
                        },
                    })?;
                }
                let check = Check {
                    method: Method::Ism,
                    sum: ism.reference,
                    positional: None,
                    error: 0.0,
                    steps: None,
                };
                result_check(&mut check_table, example, &result, check)?;
            }
            for &check in &result.checks {
                result_check(&mut check_table, example, &result, check)?;
            }
            Ok(())
        },
    )?;
    counts.warn_if_unknown();
    token_table.finish()?;
    nucleotide_table.finish()?;
    check_table.finish()?;
    context.set_config(
        "seconds_per_method",
        serde_json::to_value(&seconds).unwrap_or_default(),
    );
    Ok(())
}

fn result_check(
    table: &mut crate::report::TableWriter<AttributionCheckRow>,
    example: &Example,
    result: &SequenceAttribution,
    check: Check,
) -> crate::error::Result<()> {
    let Check {
        method,
        sum,
        positional,
        error,
        steps,
    } = check;
    table.write(&AttributionCheckRow {
        sequence_id: example.id.clone(),
        label: example.label.clone(),
        method: method.name().into(),
        target: result.target as u32,
        predicted: result.predicted as u32,
        target_value: result.target_value,
        target_probability: result.target_probability,
        relevance_sum: sum,
        positional_relevance: positional,
        conservation_error: error,
        ig_steps: steps,
    })
}

/// The reduce step: per-method checks, logos of the most confident sequences, the report.
pub fn reduce_attribution(context: &mut ReduceContext) -> anyhow::Result<()> {
    let checks = context.read_table("attribution_checks")?;
    let methods_run: Vec<String> = context
        .config("methods")
        .and_then(|m| m.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|m| m.as_str().map(str::to_string))
        .collect();
    let sequences_total = context
        .config("sequences_total")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    context.set_title(
        "Attribution",
        &format!(
            "{} method(s) on {} sequence(s): token and nucleotide relevance for each sequence's \
             target class, checked by conservation and completeness.",
            methods_run.len(),
            sequences_total
        ),
    );
    // Per-method checks.
    let check_ids = checks.strings("sequence_id")?;
    let check_methods = checks.strings("method")?;
    let errors = checks.f64s("conservation_error")?;
    let targets = checks.f64s("target_value")?;
    let probabilities = checks.f64s("target_probability")?;
    let steps = checks.optional_integers("ig_steps")?;
    let seconds = context.config("seconds_per_method").cloned();
    let mut table = HtmlTable::new(
        "Per-method checks: conservation error is Σ relevance − target (AttnLRP, CP-LRP, \
         gradient × input), the completeness gap Σ attribution − (f(x) − f(baseline)) for \
         integrated gradients, Σ relevance − 1 for full LRP (it starts from a one-hot). Median \
         |error| relative to |target| over sequences.",
        &[
            "method",
            "sequences",
            "median |error|",
            "median |error| / |target|",
            "max IG steps",
            "seconds (one pass serves attention, rollout and GradCAM; one lrp, lrp_last and full_lrp)",
        ],
    );
    let mut by_method: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, m) in check_methods.iter().enumerate() {
        by_method.entry(m.as_str()).or_default().push(i);
    }
    let median = |mut v: Vec<f64>| -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for method in &methods_run {
        let seconds = seconds
            .as_ref()
            .and_then(|s| s.get(method.as_str()))
            .and_then(|v| v.as_f64());
        let Some(rows) = by_method.get(method.as_str()) else {
            table.row(vec![
                method.clone(),
                "—".into(),
                "—".into(),
                "—".into(),
                "—".into(),
                seconds.map(cell).unwrap_or_else(|| "shared".into()),
            ]);
            continue;
        };
        let relevant = method != "ism";
        table.row(vec![
            method.clone(),
            rows.len().to_string(),
            if relevant {
                cell(median(rows.iter().map(|&i| errors[i].abs()).collect()))
            } else {
                "—".into()
            },
            if relevant && method != "full_lrp" {
                cell(median(
                    rows.iter()
                        .map(|&i| errors[i].abs() / targets[i].abs().max(1e-12))
                        .collect(),
                ))
            } else {
                "—".into()
            },
            rows.iter()
                .filter_map(|&i| steps[i])
                .max()
                .map(|s| s.to_string())
                .unwrap_or_else(|| "—".into()),
            seconds.map(cell).unwrap_or_else(|| "shared".into()),
        ]);
    }
    context.report().table(table);

    // Logos: the most confident sequences.
    let logos = context
        .config("logos")
        .and_then(|v| v.as_u64())
        .unwrap_or(3) as usize;
    let window = context
        .config("logo_window_nt")
        .and_then(|v| v.as_u64())
        .unwrap_or(60) as usize;
    let mut confidence: BTreeMap<&str, f64> = BTreeMap::new();
    for (id, p) in check_ids.iter().zip(&probabilities) {
        confidence.insert(id.as_str(), *p);
    }
    let mut ranked: Vec<(&str, f64)> = confidence.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    let chosen: Vec<String> = ranked
        .iter()
        .take(logos)
        .map(|(id, _)| id.to_string())
        .collect();
    if chosen.is_empty() {
        return Ok(());
    }
    let nucleotides = context.read_table("nucleotide_attributions")?;
    let ids = nucleotides.strings("sequence_id")?;
    let positions = nucleotides.integers("position")?;
    let bases = nucleotides.strings("base")?;
    let methods = nucleotides.strings("method")?;
    let scaled = nucleotides.f64s("score_scaled")?;
    context
        .report()
        .heading("Logos of the most confident sequences");
    context.report().paragraph(
        "Each panel is one method, letters scaled by the sequence's attribution (divided by its \
         largest |score|, seed 001's scaling) at the observed base; the ISM panel shows Δ of \
         every substitution (below the axis: the base lowers the target). The window is centred \
         on the strongest 10-nt stretch of ISM (or of the first method when ISM was not run).",
    );
    for (number, id) in chosen.iter().enumerate() {
        // method → position → [A, C, G, T].
        let mut panels: BTreeMap<String, BTreeMap<i64, [f64; 4]>> = BTreeMap::new();
        for i in 0..ids.len() {
            if ids[i] != *id {
                continue;
            }
            let Some(column) = bases[i]
                .bytes()
                .next()
                .and_then(crate::tokenize::vocab::acgt_index)
            else {
                continue;
            };
            let value = if scaled[i].is_finite() {
                scaled[i]
            } else {
                0.0
            };
            panels
                .entry(methods[i].clone())
                .or_default()
                .entry(positions[i])
                .or_insert([0.0; 4])[column] += value;
        }
        let anchor = panels
            .get("ism_centred")
            .or_else(|| panels.values().next())
            .map(|p| strongest_window(p, 10))
            .unwrap_or(0);
        let length = panels
            .values()
            .flat_map(|p| p.keys().copied())
            .max()
            .unwrap_or(0)
            + 1;
        let start = (anchor - window as i64 / 2).clamp(0, (length - window as i64).max(0));
        let end = (start + window as i64).min(length);
        let order: Vec<String> = methods_run
            .iter()
            .flat_map(|m| {
                if m == "ism" {
                    vec!["ism".to_string(), "ism_centred".to_string()]
                } else {
                    vec![m.clone()]
                }
            })
            .filter(|m| panels.contains_key(m))
            .collect();
        let specs: Vec<SequenceLogo> = order
            .iter()
            .map(|method| SequenceLogo {
                name: format!("logo_{}.svg", number + 1),
                title: method.clone(),
                y_label: "scaled score".into(),
                heights: (start..end)
                    .map(|p| panels[method].get(&p).copied().unwrap_or([0.0; 4]))
                    .collect(),
                first_position: start,
            })
            .collect();
        let svg = stacked_logos(&format!("logo_{}.svg", number + 1), &specs)?;
        context.figure(
            &format!("logo_{}.svg", number + 1),
            &svg,
            &format!(
                "{id}: positions {start}–{} (0-based) by every method, target probability {}",
                end - 1,
                cell(
                    ranked
                        .iter()
                        .find(|(i, _)| i == id)
                        .map(|(_, p)| *p)
                        .unwrap_or(f64::NAN)
                )
            ),
        )?;
    }
    Ok(())
}

/// The centre of the `width`-long stretch with the largest Σ |score|.
fn strongest_window(panel: &BTreeMap<i64, [f64; 4]>, width: i64) -> i64 {
    let totals: Vec<(i64, f64)> = panel
        .iter()
        .map(|(&p, v)| (p, v.iter().map(|x| x.abs()).sum()))
        .collect();
    let mut best = (0i64, f64::NEG_INFINITY);
    for start in 0..totals.len() {
        let sum: f64 = totals[start..(start + width as usize).min(totals.len())]
            .iter()
            .map(|(_, v)| v)
            .sum();
        if sum > best.1 {
            best = (totals[start].0 + width / 2, sum);
        }
    }
    best.0
}
