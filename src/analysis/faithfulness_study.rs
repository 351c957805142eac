//! The faithfulness study (experiments `faithfulness-*`): attributions of each sequence's own
//! class by every chosen method, then seed 000's top-n protocol and seed 001's MIF/LIF curves on
//! them ([`crate::analysis::faithfulness`]), the tables, the figures and a report in seed 000's
//! Table 1 layout.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::analysis::attribution_study::{attribute_examples, AttributionStudy, Method};
use crate::analysis::explain_metrics::{continuous_jaccard, entropy, gini, scale_to_unit};
use crate::analysis::faithfulness::{
    aopc, perturbation_curve_protocol, top_n_protocol, variant_count, Classifier, CurveSettings,
    Explained, FaithfulnessRow, TopNSettings,
};
use crate::experiment::{ExperimentContext, ReduceContext};
use crate::model::HeadKind;
use crate::report::figures::{box_plot, line_plot, BoxPlot, LinePlot, Series};
use crate::report::html::cell;
use crate::report::{HtmlTable, ParquetTable};
use crate::stats::summary::mean_with_ci;

/// One dataset of a faithfulness run: a name (the tables' `dataset` column), a classifier and
/// its labelled table.
#[derive(Debug, Clone)]
pub struct FaithfulnessDataset {
    /// Short name (`promoters`, `tf`).
    pub name: String,
    /// Model folder or hub id.
    pub model: String,
    /// Labelled sequence table.
    pub data: PathBuf,
}

/// What a faithfulness run does.
#[derive(Debug, Clone)]
pub struct FaithfulnessStudy {
    /// The datasets, each with its classifier (`--model`/`--data` replace them with the user's
    /// one, named `custom`).
    pub datasets: Vec<FaithfulnessDataset>,
    /// The attribution settings (methods, IG steps, …); the target is each sequence's label.
    pub attribution: AttributionStudy,
    /// Sequences per class at most (seed 000: 500), the first of each class in the data's order
    /// (`--limit` lowers it).
    pub per_class: usize,
    /// Seed 000's protocol (None: skipped).
    pub top_n: Option<TopNSettings>,
    /// Seed 001's protocol (None: skipped).
    pub curves: Option<CurveSettings>,
    /// Variants per forward pass.
    pub batch_size: usize,
}

impl FaithfulnessStudy {
    /// Every method, both protocols with the seeds' settings, on `datasets`.
    pub fn new(datasets: Vec<FaithfulnessDataset>) -> Self {
        let first = datasets
            .first()
            .cloned()
            .expect("a faithfulness study needs a dataset");
        let mut attribution = AttributionStudy::new(&first.model, first.data);
        attribution.target_label = true;
        attribution.logos = 0;
        FaithfulnessStudy {
            datasets,
            attribution,
            per_class: 500,
            top_n: Some(TopNSettings::default()),
            curves: Some(CurveSettings::default()),
            batch_size: 64,
        }
    }
}

crate::table_row! {
    /// Seed 000's Table 1 cell: accuracy of a class after changing the top n nucleotides by a
    /// method (random: mean over repeats with a t 95 % CI; `none`: unchanged, n = 0).
    /// (The t interval is clipped to [0, 1].)
    pub struct FaithfulnessSummaryRow {
        pub dataset: String,
        pub method: String,
        pub class: i64,
        pub n: i64,
        pub repeats: u64,
        pub sequences: u64,
        pub accuracy: f64,
        pub accuracy_low: Option<f64>,
        pub accuracy_high: Option<f64>,
    }
}

crate::table_row! {
    /// Seed 001's AOPC: the mean over k of the mean drop of the class's probability.
    pub struct AopcRow {
        pub dataset: String,
        pub protocol: String,
        pub method: String,
        pub perturbation: String,
        pub class: i64,
        pub aopc: f64,
    }
}

/// The map step: per dataset, attributions of each sequence's class, then the protocols
/// (`faithfulness`) and the explanation metrics (`explain_metrics`).
pub fn run_faithfulness(
    context: &mut ExperimentContext,
    study: &FaithfulnessStudy,
) -> anyhow::Result<()> {
    if context.is_shard() {
        bail!("faithfulness compares whole classes: run it unsharded");
    }
    // --limit is sequences per class here (the first of each class in the data's order).
    let per_class = match context.take_limit() {
        Some(limit) => limit,
        None => study.per_class,
    };
    context.set_config("per_class", per_class);
    let datasets = if context.overrides_model_or_data() {
        let first = &study.datasets[0];
        vec![FaithfulnessDataset {
            name: "custom".into(),
            ..first.clone()
        }]
    } else {
        study.datasets.clone()
    };
    context.set_config(
        "datasets",
        datasets.iter().map(|d| d.name.clone()).collect::<Vec<_>>(),
    );
    let mut faithfulness = context.table::<FaithfulnessRow>("faithfulness")?;
    let mut metrics = context.table::<ExplainMetricRow>("explain_metrics")?;
    for dataset in &datasets {
        let mut attribution = study.attribution.clone();
        attribution.default_model = dataset.model.clone();
        attribution.default_data = dataset.data.clone();
        if datasets.len() > 1 {
            attribution.table_suffix = format!("_{}", dataset.name);
        }
        let rows = run_dataset(context, study, &attribution, per_class, &dataset.name)?;
        for mut row in rows {
            row.dataset = dataset.name.clone();
            faithfulness.write(&row)?;
        }
        for row in explain_metric_rows(context, &attribution, &dataset.name)? {
            metrics.write(&row)?;
        }
    }
    faithfulness.finish()?;
    metrics.finish()?;
    Ok(())
}

/// The study's classifier (an error for any other head) and the first `per_class` sequences of
/// each class in the data's order; a sequence without a label is an error naming it. `study`
/// names the caller in errors.
pub(crate) fn classifier_and_examples(
    context: &mut ExperimentContext,
    attribution: &AttributionStudy,
    per_class: usize,
    study: &str,
) -> anyhow::Result<(crate::model::LoadedModel, Vec<crate::data::Example>)> {
    let loaded = context.load_model(&attribution.default_model)?;
    if !matches!(
        loaded.model.head_kind(),
        HeadKind::SequenceClassification { .. }
    ) {
        bail!(
            "{study} needs a sequence classifier, and {} is a {}",
            loaded.source.id,
            loaded.model.head_kind().hf_class()
        );
    }
    let taken = std::cell::RefCell::new(BTreeMap::<String, usize>::new());
    let examples = context.sequences_where(&attribution.default_data, |e| {
        let Some(label) = &e.label else {
            return true; // reported below
        };
        let mut taken = taken.borrow_mut();
        let count = taken.entry(label.clone()).or_default();
        *count += 1;
        *count <= per_class
    })?;
    if let Some(e) = examples.iter().find(|e| e.label.is_none()) {
        bail!(
            "{}: {study} needs each sequence's class (a table with a label column)",
            e.id
        );
    }
    Ok((loaded, examples))
}

/// One dataset: its sequences, attributions and both protocols.
fn run_dataset(
    context: &mut ExperimentContext,
    study: &FaithfulnessStudy,
    attribution: &AttributionStudy,
    per_class: usize,
    name: &str,
) -> anyhow::Result<Vec<FaithfulnessRow>> {
    let (loaded, examples) =
        classifier_and_examples(context, attribution, per_class, "faithfulness")?;
    if examples.is_empty() {
        bail!("{name}: no labelled sequences in the split");
    }
    tracing::info!("{name}: {} sequences", examples.len());
    attribute_examples(context, attribution, &loaded, examples.clone())?;

    // Each sequence's nucleotide scores per method (ISM by its per-position `ism_centred`).
    let table = ParquetTable::read(&context.out_dir.join(format!(
        "nucleotide_attributions{}.parquet",
        attribution.table_suffix
    )))?;
    let ids = table.strings("sequence_id")?;
    let methods_column = table.strings("method")?;
    let positions = table.integers("position")?;
    let scores = table.f64s("score")?;
    let mut by_sequence: BTreeMap<&str, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
    for i in 0..table.rows() {
        if methods_column[i] == "ism" {
            continue;
        }
        let values = by_sequence
            .entry(ids[i].as_str())
            .or_default()
            .entry(methods_column[i].clone())
            .or_default();
        if positions[i] as usize != values.len() {
            bail!(
                "nucleotide_attributions: {} {} rows out of order at position {}",
                ids[i],
                methods_column[i],
                positions[i]
            );
        }
        values.push(scores[i]);
    }
    let methods = method_columns(&attribution.methods);
    let items: Vec<Explained> = examples
        .iter()
        .map(|e| {
            Ok(Explained {
                id: e.id.clone(),
                sequence: e.sequence.to_ascii_uppercase().into_bytes(),
                label: e
                    .label
                    .as_deref()
                    .unwrap_or_default()
                    .parse()
                    .with_context(|| format!("{}: the label is not a class id", e.id))?,
                scores: by_sequence.remove(e.id.as_str()).unwrap_or_default(),
            })
        })
        .collect::<anyhow::Result<_>>()?;

    let classifier = Classifier::new(&loaded, study.batch_size)?;
    let seed = context.seed;
    let top_n = study.top_n.clone().map(|s| TopNSettings { seed, ..s });
    let curves = study.curves.clone().map(|s| CurveSettings { seed, ..s });
    let total = variant_count(items.len(), methods.len(), top_n.as_ref(), curves.as_ref());
    let bar = crate::progress::bar(
        total,
        &format!("faithfulness ({name}): perturbed sequences"),
    );
    let started = std::time::Instant::now();
    let mut rows: Vec<FaithfulnessRow> = Vec::new();
    if let Some(settings) = &top_n {
        context.set_config(
            "top_n",
            settings.sizes.iter().map(|s| s.label()).collect::<Vec<_>>(),
        );
        context.set_config("random_repeats", settings.repeats);
        rows.extend(top_n_protocol(
            &classifier,
            &items,
            &methods,
            settings,
            |n| bar.inc(n),
        )?);
    }
    if let Some(settings) = &curves {
        context.set_config("k_percent", settings.percents.clone());
        context.set_config(
            "perturbations",
            settings
                .perturbations
                .iter()
                .map(|p| p.name())
                .collect::<Vec<_>>(),
        );
        context.set_config("curve_random_repeats", settings.repeats);
        rows.extend(perturbation_curve_protocol(
            &classifier,
            &items,
            &methods,
            settings,
            |n| bar.inc(n),
        )?);
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    context.set_config(
        &format!("{name}_perturbed_sequences"),
        serde_json::json!({
            "sequences": total,
            "seconds": seconds,
            "per_second": total as f64 / seconds.max(1e-9),
            "batch_size": study.batch_size,
        }),
    );
    Ok(rows)
}

/// The per-position score names of `methods` in the nucleotide table (ISM: `ism_centred`).
pub(crate) fn method_columns(methods: &[Method]) -> Vec<String> {
    methods
        .iter()
        .map(|m| match m {
            Method::Ism => "ism_centred".to_string(),
            other => other.name().to_string(),
        })
        .collect()
}

crate::table_row! {
    /// One explanation metric of one sequence's attribution (methods.md §9): `gini` and
    /// `entropy` of a method's scores, `continuous_jaccard` between `method` and
    /// `other_method`; `level` is `token` ([CLS]/[SEP] dropped, scaled to [−1, 1] as seed 001
    /// does) or `nucleotide` (`score_scaled`).
    pub struct ExplainMetricRow {
        pub dataset: String,
        pub sequence_id: String,
        pub level: String,
        pub method: String,
        pub other_method: Option<String>,
        pub metric: String,
        pub value: Option<f64>,
    }
}

/// (sequence, method) → scores in table order.
pub(crate) type Scores = BTreeMap<(String, String), Vec<f64>>;

/// Column `column` of an attribution table grouped by (sequence, method), ISM's per-base rows
/// (`ism`) left out.
pub(crate) fn scores_by_sequence(path: &std::path::Path, column: &str) -> anyhow::Result<Scores> {
    let table = ParquetTable::read(path)?;
    let (ids, methods, scores) = (
        table.strings("sequence_id")?,
        table.strings("method")?,
        table.f64s(column)?,
    );
    let mut by_key = Scores::new();
    for i in 0..table.rows() {
        if methods[i] == "ism" {
            continue;
        }
        by_key
            .entry((ids[i].clone(), methods[i].clone()))
            .or_default()
            .push(scores[i]);
    }
    Ok(by_key)
}

/// Gini, entropy and pairwise continuous Jaccard of every sequence's attributions, at token and
/// nucleotide level, from the run's attribution tables.
fn explain_metric_rows(
    context: &ExperimentContext,
    attribution: &AttributionStudy,
    dataset: &str,
) -> anyhow::Result<Vec<ExplainMetricRow>> {
    let suffix = &attribution.table_suffix;
    let mut levels: Vec<(&str, Scores)> = Vec::new();
    let mut tokens = scores_by_sequence(
        &context
            .out_dir
            .join(format!("token_attributions{suffix}.parquet")),
        "score",
    )?;
    for values in tokens.values_mut() {
        // [CLS] and [SEP] out, then scaled to [−1, 1] (seed 001).
        let inner = if values.len() > 2 {
            values[1..values.len() - 1].to_vec()
        } else {
            Vec::new()
        };
        *values = scale_to_unit(&inner);
    }
    levels.push(("token", tokens));
    let by_key = scores_by_sequence(
        &context
            .out_dir
            .join(format!("nucleotide_attributions{suffix}.parquet")),
        "score_scaled",
    )?;
    levels.push(("nucleotide", by_key));

    let mut rows = Vec::new();
    for (level, by_key) in &levels {
        let mut by_sequence: BTreeMap<&str, Vec<(&str, &Vec<f64>)>> = BTreeMap::new();
        for ((id, method), values) in by_key {
            if !values.is_empty() {
                by_sequence.entry(id).or_default().push((method, values));
            }
        }
        for (id, entries) in by_sequence {
            let row = |method: &str, other: Option<&str>, metric: &str, value: Option<f64>| {
                ExplainMetricRow {
                    dataset: dataset.to_string(),
                    sequence_id: id.to_string(),
                    level: level.to_string(),
                    method: method.to_string(),
                    other_method: other.map(str::to_string),
                    metric: metric.to_string(),
                    value,
                }
            };
            for &(method, values) in &entries {
                rows.push(row(method, None, "gini", Some(gini(values)?)));
                rows.push(row(method, None, "entropy", entropy(values)?));
            }
            for (i, &(a, va)) in entries.iter().enumerate() {
                for &(b, vb) in &entries[i + 1..] {
                    if va.len() == vb.len() {
                        rows.push(row(
                            a,
                            Some(b),
                            "continuous_jaccard",
                            continuous_jaccard(va, vb)?,
                        ));
                    }
                }
            }
        }
    }
    Ok(rows)
}

/// Mean and t 95 % CI of `values` ([`mean_with_ci`]; the CI is None for fewer than two
/// values).
fn mean_t_ci(values: &[f64]) -> (f64, Option<f64>, Option<f64>) {
    let estimate = mean_with_ci(values, 0.95);
    let known = |v: f64| (!v.is_nan()).then_some(v);
    (estimate.mean, known(estimate.low), known(estimate.high))
}

/// Reads `faithfulness.parquet` back into rows.
fn read_rows(table: &ParquetTable) -> anyhow::Result<Vec<FaithfulnessRow>> {
    let dataset = table.strings("dataset")?;
    let protocol = table.strings("protocol")?;
    let method = table.strings("method")?;
    let class = table.integers("class")?;
    let n = table.integers("n")?;
    let k = table.optional_f64s("k_percent")?;
    let perturbation = table.strings("perturbation")?;
    let repeat = table.integers("repeat")?;
    let sequences = table.integers("sequences")?;
    let accuracy = table.optional_f64s("accuracy")?;
    let probability = table.f64s("probability")?;
    let drop = table.optional_f64s("probability_drop")?;
    Ok((0..table.rows())
        .map(|i| FaithfulnessRow {
            protocol: protocol[i].clone(),
            dataset: dataset[i].clone(),
            method: method[i].clone(),
            class: class[i],
            n: n[i],
            k_percent: k[i],
            perturbation: perturbation[i].clone(),
            repeat: repeat[i],
            sequences: sequences[i] as u64,
            accuracy: accuracy[i],
            probability: probability[i],
            probability_drop: drop[i],
        })
        .collect())
}

/// The reduce step: Table 1 (`faithfulness_summary`), AOPC (`aopc`), accuracy-vs-n and MIF/LIF
/// figures, the Gini/entropy table, the report.
pub fn reduce_faithfulness(context: &mut ReduceContext) -> anyhow::Result<()> {
    let rows = read_rows(&context.read_table("faithfulness")?)?;
    // Table 1: per (dataset, method, class, n), the accuracy (mean over repeats).
    type CellKey = (String, String, i64, i64);
    let mut cells: BTreeMap<CellKey, (u64, Vec<f64>)> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.protocol == "top_n") {
        let entry = cells
            .entry((row.dataset.clone(), row.method.clone(), row.class, row.n))
            .or_default();
        entry.0 = row.sequences;
        entry.1.push(row.accuracy.unwrap_or(f64::NAN));
    }
    let mut summary = Vec::new();
    for ((dataset, method, class, n), (sequences, values)) in &cells {
        let (accuracy, low, high) = mean_t_ci(values);
        // An accuracy's interval stays inside [0, 1].
        let (low, high) = (low.map(|v| v.max(0.0)), high.map(|v| v.min(1.0)));
        summary.push(FaithfulnessSummaryRow {
            dataset: dataset.clone(),
            method: method.clone(),
            class: *class,
            n: *n,
            repeats: values.len() as u64,
            sequences: *sequences,
            accuracy,
            accuracy_low: low,
            accuracy_high: high,
        });
    }
    let mut table = context.table::<FaithfulnessSummaryRow>("faithfulness_summary")?;
    for row in &summary {
        table.write(row)?;
    }
    table.finish()?;
    let aopc_rows: Vec<AopcRow> = aopc(&rows)
        .into_iter()
        .map(
            |((dataset, protocol, method, perturbation, class), aopc)| AopcRow {
                dataset,
                protocol,
                method,
                perturbation,
                class,
                aopc,
            },
        )
        .collect();
    let mut table = context.table::<AopcRow>("aopc")?;
    for row in &aopc_rows {
        table.write(row)?;
    }
    table.finish()?;
    context.set_title(
        "Faithfulness",
        "Does changing the nucleotides an attribution ranks highest break the prediction more \
         than changing random ones? Seed 000's protocol (accuracy after the top n nucleotides \
         change), seed 001's MIF/LIF curves and AOPC, and the explanations' sparseness.",
    );

    let datasets: Vec<String> = context
        .config("datasets")
        .and_then(|v| v.as_array())
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let throughput: Vec<String> = datasets
        .iter()
        .filter_map(|name| {
            let value = context.config(&format!("{name}_perturbed_sequences"))?;
            Some(format!(
                "{name}: {} perturbed sequences classified in {:.0} s ({:.0} per second, {} per \
                 forward pass)",
                value["sequences"],
                value["seconds"].as_f64().unwrap_or(f64::NAN),
                value["per_second"].as_f64().unwrap_or(f64::NAN),
                value["batch_size"]
            ))
        })
        .collect();
    if !throughput.is_empty() {
        context.report().paragraph(&throughput.join("; "));
    }
    let mut groups: Vec<(String, i64)> = summary
        .iter()
        .map(|r| (r.dataset.clone(), r.class))
        .chain(rows.iter().map(|r| (r.dataset.clone(), r.class)))
        .collect();
    groups.sort();
    groups.dedup();
    let methods: Vec<String> = {
        let mut m: Vec<String> = summary
            .iter()
            .map(|r| r.method.clone())
            .filter(|m| m != "none")
            .collect();
        m.sort();
        m.dedup();
        // The baseline last.
        m.sort_by_key(|m| m == "random");
        m
    };
    let sizes: Vec<i64> = {
        let mut n: Vec<i64> = summary.iter().map(|r| r.n).filter(|&n| n > 0).collect();
        n.sort();
        n.dedup();
        if summary.iter().any(|r| r.n == -1) {
            n.push(-1);
        }
        n
    };
    let longest = sizes.iter().copied().filter(|&n| n > 0).max().unwrap_or(20);
    // "all" drawn one step past the largest n.
    let all_x = longest + 5;
    let x_of = |n: i64| if n == -1 { all_x as f64 } else { n as f64 };
    let n_label = |n: i64| {
        if n == -1 {
            "all".to_string()
        } else {
            n.to_string()
        }
    };
    for (dataset, class) in &groups {
        let find = |method: &str, n: i64| {
            summary.iter().find(|r| {
                &r.dataset == dataset && r.method == method && r.class == *class && r.n == n
            })
        };
        let Some(base) = find("none", 0).map(|r| r.accuracy) else {
            continue;
        };
        let mut series = Vec::new();
        for method in &methods {
            let mut line = Series::banded(method.clone());
            line.push_banded(0.0, base, base, base);
            for &n in &sizes {
                if let Some(r) = find(method, n) {
                    line.push_banded(
                        x_of(n),
                        r.accuracy,
                        r.accuracy_low.unwrap_or(r.accuracy),
                        r.accuracy_high.unwrap_or(r.accuracy),
                    );
                }
            }
            if method != "random" {
                line.band = None;
            }
            series.push(line);
        }
        let file = format!("accuracy_vs_n_{dataset}_class{class}.svg");
        let svg = line_plot(&LinePlot {
            name: file.clone(),
            title: format!(
                "{dataset}, class {class}: accuracy after changing the top n nucleotides"
            ),
            x_label: format!("n nucleotides changed ({all_x} = all)"),
            y_label: "accuracy".into(),
            series,
        })?;
        context.figure(
            &file,
            &svg,
            &format!(
                "{dataset}, class {class}: accuracy after each method's top-n nucleotides are \
                 replaced by a random other base (seed 000 Fig. 1); random = n random positions, \
                 mean of the repeats with a t 95 % CI band; n = 0 is the unchanged accuracy."
            ),
        )?;
        // Table 1 layout: rows = methods, columns = n.
        let mut header = vec!["method".to_string(), "0".to_string()];
        header.extend(sizes.iter().map(|&n| n_label(n)));
        let mut html = HtmlTable::new(
            &format!(
                "{dataset}, class {class}: accuracy after changing the top n nucleotides (seed \
                 000 Table 1 layout; random: mean of the repeats with a t 95 % CI)"
            ),
            &header.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        for method in &methods {
            let mut cells = vec![method.clone(), format!("{base:.3}")];
            for &n in &sizes {
                cells.push(
                    find(method, n)
                        .map(|r| match (r.accuracy_low, r.accuracy_high) {
                            (Some(l), Some(h)) => format!("{:.3} ({l:.3}–{h:.3})", r.accuracy),
                            _ => format!("{:.3}", r.accuracy),
                        })
                        .unwrap_or_default(),
                );
            }
            html.row(cells);
        }
        context.report().table(html);
    }

    // MIF/LIF curves: per dataset, perturbation and class, the mean drop vs k.
    let mut perturbations: Vec<String> = rows
        .iter()
        .filter(|r| r.k_percent.is_some())
        .map(|r| r.perturbation.clone())
        .collect();
    perturbations.sort();
    perturbations.dedup();
    // One figure for MIF and one for LIF (with the random baseline in both): a dozen curves
    // each, where one figure with both had two dozen.
    for (dataset, class) in &groups {
        for perturbation in &perturbations {
            for protocol in ["mif", "lif"] {
                let mut lines: BTreeMap<String, BTreeMap<u64, (f64, Vec<f64>)>> = BTreeMap::new();
                for r in rows.iter().filter(|r| {
                    &r.dataset == dataset
                        && &r.perturbation == perturbation
                        && r.class == *class
                        && r.k_percent.is_some()
                        && (r.protocol == protocol || r.method == "random")
                }) {
                    let k = r.k_percent.unwrap_or_default();
                    lines
                        .entry(r.method.clone())
                        .or_default()
                        .entry(k.to_bits())
                        .or_insert((k, Vec::new()))
                        .1
                        .push(r.probability_drop.unwrap_or(f64::NAN));
                }
                if lines.len() <= 1 {
                    continue;
                }
                let series = lines
                    .into_iter()
                    .map(|(name, points)| {
                        let mut line = Series::banded(name);
                        for (k, drops) in points.values() {
                            let (mean, low, high) = mean_t_ci(drops);
                            line.push_banded(*k, mean, low.unwrap_or(mean), high.unwrap_or(mean));
                        }
                        if line.name != "random" {
                            line.band = None;
                        }
                        line
                    })
                    .collect();
                let (which, reading) = match protocol {
                    "mif" => ("most", "a faithful method's curve rises well above random"),
                    _ => (
                        "least",
                        "a faithful method's curve stays at or below random",
                    ),
                };
                let file = format!("{protocol}_{dataset}_{perturbation}_class{class}.svg");
                let svg = line_plot(&LinePlot {
                    name: file.clone(),
                    title: format!(
                        "{dataset}, class {class}, {perturbation}: {} probability drop",
                        protocol.to_uppercase()
                    ),
                    x_label: "k (% of nucleotides changed)".into(),
                    y_label: "mean drop of the class's probability".into(),
                    series,
                })?;
                context.figure(
                    &file,
                    &svg,
                    &format!(
                        "{dataset}, class {class}: the drop of the class's probability when the \
                         {which} important k % of nucleotides are changed ({perturbation}; \
                         {}; seed 001 Fig. 3): {reading}. random = random positions, with a t \
                         95 % CI band.",
                        protocol.to_uppercase()
                    ),
                )?;
            }
        }
    }
    if !aopc_rows.is_empty() {
        let mut html = HtmlTable::new(
            "AOPC: the mean drop of the class's probability over k (seed 001); random = random \
             positions",
            &[
                "dataset",
                "protocol",
                "method",
                "perturbation",
                "class",
                "AOPC",
            ],
        );
        for r in &aopc_rows {
            html.row(vec![
                r.dataset.clone(),
                r.protocol.clone(),
                r.method.clone(),
                r.perturbation.clone(),
                r.class.to_string(),
                cell(r.aopc),
            ]);
        }
        context.report().table(html);
    }
    metrics_table(context)?;
    jaccard_figures(context)?;
    Ok(())
}

/// Seed 001's Fig. 2 for this project: per dataset and level, the distribution over sequences of
/// each method's continuous Jaccard similarity with a reference method (ISM at nucleotide level,
/// the one method that reads the model without a relevance rule; AttnLRP at token level).
fn jaccard_figures(context: &mut ReduceContext) -> anyhow::Result<()> {
    let table = context.read_table("explain_metrics")?;
    let (dataset, level, method, other, metric, value) = (
        table.strings("dataset")?,
        table.strings("level")?,
        table.strings("method")?,
        table.optional_strings("other_method")?,
        table.strings("metric")?,
        table.optional_f64s("value")?,
    );
    // (dataset, level) → (method, other) → values.
    type Pairs = BTreeMap<(String, String), Vec<f64>>;
    let mut groups: BTreeMap<(String, String), Pairs> = BTreeMap::new();
    for i in 0..table.rows() {
        let (Some(o), Some(v)) = (&other[i], value[i]) else {
            continue;
        };
        if metric[i] != "continuous_jaccard" {
            continue;
        }
        groups
            .entry((dataset[i].clone(), level[i].clone()))
            .or_default()
            .entry((method[i].clone(), o.clone()))
            .or_default()
            .push(v);
    }
    for ((dataset, level), pairs) in groups {
        let has = |m: &str| pairs.keys().any(|(a, b)| a == m || b == m);
        let Some(reference) = ["ism_centred", "attnlrp"]
            .into_iter()
            .find(|m| has(m))
            .map(str::to_string)
            .or_else(|| pairs.keys().next().map(|(a, _)| a.clone()))
        else {
            continue;
        };
        let mut categories = Vec::new();
        let mut values = Vec::new();
        for ((a, b), v) in &pairs {
            let partner = if *a == reference {
                b
            } else if *b == reference {
                a
            } else {
                continue;
            };
            categories.push(partner.clone());
            values.push(v.clone());
        }
        if categories.is_empty() {
            continue;
        }
        let file = format!("cj_{dataset}_{level}.svg");
        let svg = box_plot(&BoxPlot {
            name: file.clone(),
            title: format!("{dataset}, {level} level: continuous Jaccard with {reference}"),
            x_label: "method".into(),
            y_label: format!("CJ with {reference}"),
            categories,
            values,
        })?;
        context.figure(
            &file,
            &svg,
            &format!(
                "{dataset}: the continuous Jaccard similarity of each method's {level}-level \
                 attribution (scaled to [−1, 1]) with {reference}'s, per sequence (seed 001 \
                 Fig. 2): box = quartiles, line = median, dot = mean, whiskers = 5th–95th \
                 percentiles. 1 = the same relevance, 0 = none shared, negative = opposite signs."
            ),
        )?;
    }
    Ok(())
}

/// Seed 001's Table 1: mean Gini and entropy per dataset, level and method.
fn metrics_table(context: &mut ReduceContext) -> anyhow::Result<()> {
    let table = context.read_table("explain_metrics")?;
    let (dataset, level, method, metric, value) = (
        table.strings("dataset")?,
        table.strings("level")?,
        table.strings("method")?,
        table.strings("metric")?,
        table.optional_f64s("value")?,
    );
    let mut sums: BTreeMap<(String, String, String), [(f64, u64); 2]> = BTreeMap::new();
    for i in 0..table.rows() {
        let slot = match metric[i].as_str() {
            "gini" => 0,
            "entropy" => 1,
            _ => continue,
        };
        if let Some(v) = value[i] {
            let entry = sums
                .entry((dataset[i].clone(), level[i].clone(), method[i].clone()))
                .or_default();
            entry[slot].0 += v;
            entry[slot].1 += 1;
        }
    }
    if sums.is_empty() {
        return Ok(());
    }
    let mut html = HtmlTable::new(
        "Sparseness (Gini, higher = sparser) and complexity (entropy in nats, lower = simpler) of \
         the attributions, mean over sequences (seed 001 Table 1; Quantus's definitions)",
        &["dataset", "level", "method", "Gini", "entropy"],
    );
    for ((d, l, m), [(g, gn), (e, en)]) in &sums {
        let mean = |s: f64, n: u64| if n > 0 { s / n as f64 } else { f64::NAN };
        html.row(vec![
            d.clone(),
            l.clone(),
            m.clone(),
            cell(mean(*g, *gn)),
            cell(mean(*e, *en)),
        ]);
    }
    context.report().table(html);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_interval_of_known_values() {
        let (mean, low, high) = mean_t_ci(&[1.0, 2.0, 3.0]);
        assert_eq!(mean, 2.0);
        // t(0.975, 2) = 4.302653; sd/√n = 1/√3.
        let half = 4.302_652_729_911_275 / 3f64.sqrt();
        assert!((low.unwrap() - (2.0 - half)).abs() < 1e-9);
        assert!((high.unwrap() - (2.0 + half)).abs() < 1e-9);
        assert_eq!(mean_t_ci(&[0.5]), (0.5, None, None));
    }
}
