//! The head-ablation study (map and reduce), shared by `genolens experiment ablation-heads` and
//! `genolens ablate`: per-head importance (every head ablated alone) on a ranking split and on
//! the evaluation split, then set ablation of the top p % of heads (by a given head score table,
//! else by importance on the ranking split) against a layer-matched control set and random sets,
//! for p in 5..50 %. Heads are ablated on `attn.hook_z`, before W_O (methods.md §5).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::analysis::ablation::{
    all_heads, head_sets, heads_for_percent, rank_heads, score_conditions, Ablation, AblationKind,
    ClassifierScores, Head, HeadMeans, Scored,
};
use crate::datasets::rows::{read_sequence_rows, SequenceRow};
use crate::experiment::{ExperimentContext, ReduceContext};
use crate::report::figures::{heatmap, line_plot, Heatmap, LinePlot, Series};
use crate::report::html::cell;
use crate::report::HtmlTable;
use crate::stats::mean_with_ci;

/// What the ablation study runs.
#[derive(Debug, Clone)]
pub struct AblationStudy {
    /// Model when `--model` is not given (a sequence classifier).
    pub default_model: String,
    /// Labelled table when `--data` is not given (and the model records none).
    pub default_data: PathBuf,
    /// Zero or mean ablation.
    pub kind: AblationKind,
    /// Percentages of all heads ablated in the set curves.
    pub percents: Vec<f64>,
    /// Random sets per percentage.
    pub random_sets: usize,
    /// Split that ranks the heads (and, for mean ablation, supplies the means).
    pub rank_split: String,
    /// Sequences per class drawn (seeded) from each split; `None` = every row.
    pub per_class: Option<usize>,
    /// A head score table (columns `layer`, `head` and `score_column`): heads are ranked by
    /// |score| (e.g. the attention study's head × feature z) instead of by importance.
    pub head_scores: Option<(PathBuf, String)>,
    /// Rows of the head score table kept: `(column, value)` pairs that must all match (e.g.
    /// `feature` = `tata_kmer`, `score` = `received_max`, `subset` = `all` in the attention
    /// study's head_annotation.parquet).
    pub head_score_filters: Vec<(String, String)>,
}

impl Default for AblationStudy {
    fn default() -> Self {
        AblationStudy {
            default_model: crate::defaults::FLY_CORE_MODEL.to_string(),
            default_data: PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/data/fly-core-promoters.parquet"
            )),
            kind: AblationKind::Zero,
            percents: vec![5.0, 10.0, 20.0, 30.0, 40.0, 50.0],
            random_sets: 20,
            rank_split: "valid".into(),
            per_class: Some(250),
            head_scores: None,
            head_score_filters: Vec::new(),
        }
    }
}

crate::table_row! {
    /// One head ablated alone, scored on one split.
    pub struct HeadImportanceRow {
        pub split: String,
        pub ablation: String,
        pub layer: u32,
        pub head: u32,
        pub sequences: u64,
        pub accuracy: f64,
        pub roc_auc: f64,
        pub mean_true_logit: f64,
        pub delta_accuracy: f64,
        pub delta_roc_auc: f64,
        pub delta_true_logit: f64,
    }
}

crate::table_row! {
    /// One set of heads ablated together on the evaluation split (`set` = none, top, control or
    /// random; `draw` numbers the random sets).
    pub struct SetAblationRow {
        pub split: String,
        pub ablation: String,
        pub percent: f64,
        pub heads_ablated: u32,
        pub set: String,
        pub draw: u32,
        pub heads: String,
        pub sequences: u64,
        pub accuracy: f64,
        pub roc_auc: f64,
        pub mean_true_logit: f64,
        pub delta_accuracy: f64,
        pub delta_roc_auc: f64,
        pub delta_true_logit: f64,
    }
}

crate::table_row! {
    /// Set ablation summarised per percentage and set: for random sets the mean over draws with
    /// a Student-t 95 % CI; for top and control the one value (no CI).
    pub struct SetSummaryRow {
        pub percent: f64,
        pub heads_ablated: u32,
        pub set: String,
        pub draws: u32,
        pub accuracy: f64,
        pub accuracy_ci_low: Option<f64>,
        pub accuracy_ci_high: Option<f64>,
        pub roc_auc: f64,
        pub roc_auc_ci_low: Option<f64>,
        pub roc_auc_ci_high: Option<f64>,
    }
}

/// (percent, accuracies, ROC-AUCs) of one set kind at one percentage.
type SetScores = (f64, Vec<f64>, Vec<f64>);

/// Rows of one split, at most `per_class` of each class (a seeded draw, kept in table order).
fn sample(rows: &[SequenceRow], split: &str, per_class: Option<usize>, seed: u64) -> Vec<usize> {
    let mut by_class: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        if row.split == split {
            by_class.entry(row.label).or_default().push(i);
        }
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut chosen = Vec::new();
    for indices in by_class.values_mut() {
        if let Some(n) = per_class {
            if indices.len() > n {
                indices.shuffle(&mut rng);
                indices.truncate(n);
            }
        }
        chosen.extend(indices.iter().copied());
    }
    chosen.sort();
    chosen
}

fn heads_text(heads: &[Head]) -> String {
    heads
        .iter()
        .map(Head::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads a head score table: (head, |score|) for every row that matches every filter.
fn read_head_scores(
    path: &std::path::Path,
    column: &str,
    filters: &[(String, String)],
) -> anyhow::Result<Vec<(Head, f64)>> {
    let table = crate::report::ParquetTable::read(path)?;
    let names = table.column_names();
    let mut keep = vec![true; table.rows()];
    for (name, value) in filters {
        if !names.iter().any(|n| n == name) {
            bail!(
                "{}: --score-filter {name}={value}: no column `{name}` (it has {})",
                path.display(),
                names.join(", ")
            );
        }
        let values = table.strings(name)?;
        if !values.iter().any(|v| v == value) {
            let mut present: Vec<&String> = values.iter().collect();
            present.sort();
            present.dedup();
            let present: Vec<&str> = present.iter().take(20).map(|s| s.as_str()).collect();
            bail!(
                "{}: --score-filter {name}={value}: no row has {name} = {value:?} (values: {})",
                path.display(),
                present.join(", ")
            );
        }
        for (k, v) in keep.iter_mut().zip(&values) {
            *k &= v == value;
        }
    }
    for needed in ["layer", "head", column] {
        if !names.iter().any(|n| n == needed) {
            bail!(
                "{}: no column `{needed}` (the head score table needs layer, head and {column}; it has {})",
                path.display(),
                names.join(", ")
            );
        }
    }
    let layers = table.integers("layer")?;
    let heads = table.integers("head")?;
    let scores = table.f64s(column)?;
    // Several rows per head (one per feature): keep each head's largest |score|.
    let mut best: BTreeMap<Head, f64> = BTreeMap::new();
    for i in (0..table.rows()).filter(|&i| keep[i]) {
        let head = Head {
            layer: usize::try_from(layers[i]).context("negative layer")?,
            head: usize::try_from(heads[i]).context("negative head")?,
        };
        let score = scores[i].abs();
        if score.is_finite() {
            let entry = best.entry(head).or_insert(score);
            *entry = entry.max(score);
        }
    }
    Ok(best.into_iter().collect())
}

/// The map step: importance on both splits, set ablation on the evaluation split.
pub fn run_ablation(context: &mut ExperimentContext, study: &AblationStudy) -> anyhow::Result<()> {
    let loaded = context.load_model(&study.default_model)?;
    let path = context.data_file(&study.default_data)?;
    let rows = read_sequence_rows(&path)?;
    let eval_split = context.split();
    let per_class = match context.limit() {
        Some(limit) => Some(limit),
        None => study.per_class,
    };
    let seed = context.seed;
    let rank_rows = sample(&rows, &study.rank_split, per_class, seed);
    let eval_rows = sample(&rows, &eval_split, per_class, seed.wrapping_add(1));
    if study.rank_split == eval_split {
        bail!("the ranking split and the evaluation split are both {eval_split:?}: rank heads on a separate split (--rank-split)");
    }
    for (name, chosen) in [(&study.rank_split, &rank_rows), (&eval_split, &eval_rows)] {
        if chosen.is_empty() {
            let mut splits: Vec<&str> = rows.iter().map(|r| r.split.as_str()).collect();
            splits.sort();
            splits.dedup();
            bail!(
                "{}: no rows in split {name:?} (the table has: {})",
                path.display(),
                splits.join(", ")
            );
        }
    }
    let classes = loaded.model.config().num_labels.unwrap_or(2);
    let scored = |indices: &[usize]| -> anyhow::Result<Vec<Scored<'_>>> {
        indices
            .iter()
            .map(|&i| {
                let row = &rows[i];
                let label = usize::try_from(row.label)
                    .ok()
                    .filter(|l| *l < classes)
                    .with_context(|| {
                        format!(
                            "{}: row {i} ({}) has label {}, the model has {classes} classes",
                            path.display(),
                            row.id,
                            row.label
                        )
                    })?;
                Ok(Scored {
                    id: &row.id,
                    sequence: &row.sequence,
                    label,
                })
            })
            .collect()
    };
    let (rank_set, eval_set) = (scored(&rank_rows)?, scored(&eval_rows)?);
    let config = loaded.model.config();
    let every = all_heads(config.num_hidden_layers, config.num_attention_heads);
    context.set_config("ablation", study.kind.name());
    context.set_config("rank_split", study.rank_split.clone());
    context.set_config("split", eval_split.clone());
    context.set_config("per_class", per_class);
    context.set_config("rank_sequences", rank_set.len());
    context.set_config("eval_sequences", eval_set.len());
    context.set_config("random_sets", study.random_sets);
    context.set_config("percents", study.percents.clone());
    let batch_size = context.batch_options("").batch_size;

    let means = match study.kind {
        AblationKind::Zero => None,
        AblationKind::Mean => {
            let reference: Vec<(&str, &str)> =
                rank_set.iter().map(|s| (s.id, s.sequence)).collect();
            Some(HeadMeans::compute(&loaded, &reference, batch_size)?)
        }
    };
    let ablation = Ablation {
        kind: study.kind,
        means: means.as_ref(),
    };

    // Importance: the intact model and every head alone, on the ranking split.
    let mut singles: Vec<Vec<Head>> = vec![Vec::new()];
    singles.extend(every.iter().map(|h| vec![*h]));
    let bar = crate::progress::bar(rank_set.len() as u64, "head importance (ranking split)");
    let rank_scores = score_conditions(
        &loaded,
        &rank_set,
        &singles,
        &ablation,
        batch_size,
        Some(&bar),
    )?;
    bar.finish_and_clear();

    // The ranking.
    let ranking = match &study.head_scores {
        Some((path, column)) => {
            let scores = read_head_scores(path, column, &study.head_score_filters)?;
            let listed: std::collections::HashSet<Head> = scores.iter().map(|(h, _)| *h).collect();
            if let Some(missing) = every.iter().find(|h| !listed.contains(h)) {
                bail!(
                    "{}: no score for head {missing} (layer {}, head {})",
                    path.display(),
                    missing.layer,
                    missing.head
                );
            }
            let filters: Vec<String> = study
                .head_score_filters
                .iter()
                .map(|(c, v)| format!("{c}={v}"))
                .collect();
            context.set_config(
                "ranking",
                format!(
                    "|{column}| from {} [{}]",
                    path.display(),
                    filters.join(", ")
                ),
            );
            rank_heads(
                &scores
                    .into_iter()
                    .filter(|(h, _)| every.contains(h))
                    .collect::<Vec<_>>(),
            )
        }
        None => {
            context.set_config(
                "ranking",
                format!(
                    "importance on {}: drop in mean true-class logit",
                    study.rank_split
                ),
            );
            let scores: Vec<(Head, f64)> = every
                .iter()
                .zip(&rank_scores[1..])
                .map(|(h, s)| (*h, rank_scores[0].mean_true_logit - s.mean_true_logit))
                .collect();
            rank_heads(&scores)
        }
    };

    // Evaluation conditions: intact, every head alone, then per percentage top, control, random.
    let mut conditions = singles.clone();
    let mut labels: Vec<(f64, usize, &'static str, u32)> = Vec::new();
    for (p_index, &percent) in study.percents.iter().enumerate() {
        if !(0.0..=100.0).contains(&percent) || percent == 0.0 {
            bail!("--percents {percent}: a percentage of heads must be in (0, 100]");
        }
        let n = heads_for_percent(percent, every.len());
        let sets = head_sets(
            &ranking,
            n,
            study.random_sets,
            seed.wrapping_add(100 + p_index as u64),
        );
        conditions.push(sets.top);
        labels.push((percent, n, "top", 0));
        conditions.push(sets.control);
        labels.push((percent, n, "control", 0));
        for (draw, set) in sets.random.into_iter().enumerate() {
            conditions.push(set);
            labels.push((percent, n, "random", draw as u32));
        }
    }
    let bar = crate::progress::bar(eval_set.len() as u64, "set ablation (evaluation split)");
    let eval_scores = score_conditions(
        &loaded,
        &eval_set,
        &conditions,
        &ablation,
        batch_size,
        Some(&bar),
    )?;
    bar.finish_and_clear();

    let mut importance = context.table::<HeadImportanceRow>("head_importance")?;
    for (split, scores, n) in [
        (&study.rank_split, &rank_scores, rank_set.len()),
        (&eval_split, &eval_scores, eval_set.len()),
    ] {
        let intact = scores[0];
        for (head, s) in every.iter().zip(&scores[1..=every.len()]) {
            importance.write(&HeadImportanceRow {
                split: split.clone(),
                ablation: study.kind.name().into(),
                layer: head.layer as u32,
                head: head.head as u32,
                sequences: n as u64,
                accuracy: s.accuracy,
                roc_auc: s.roc_auc,
                mean_true_logit: s.mean_true_logit,
                delta_accuracy: s.accuracy - intact.accuracy,
                delta_roc_auc: s.roc_auc - intact.roc_auc,
                delta_true_logit: s.mean_true_logit - intact.mean_true_logit,
            })?;
        }
    }
    importance.finish()?;

    let intact = eval_scores[0];
    let mut sets = context.table::<SetAblationRow>("set_ablation")?;
    let row =
        |percent: f64, n: usize, set: &str, draw: u32, heads: &[Head], s: &ClassifierScores| {
            SetAblationRow {
                split: eval_split.clone(),
                ablation: study.kind.name().into(),
                percent,
                heads_ablated: n as u32,
                set: set.into(),
                draw,
                heads: heads_text(heads),
                sequences: eval_set.len() as u64,
                accuracy: s.accuracy,
                roc_auc: s.roc_auc,
                mean_true_logit: s.mean_true_logit,
                delta_accuracy: s.accuracy - intact.accuracy,
                delta_roc_auc: s.roc_auc - intact.roc_auc,
                delta_true_logit: s.mean_true_logit - intact.mean_true_logit,
            }
        };
    sets.write(&row(0.0, 0, "none", 0, &[], &intact))?;
    let offset = 1 + every.len();
    for (i, (percent, n, set, draw)) in labels.iter().enumerate() {
        let c = offset + i;
        sets.write(&row(
            *percent,
            *n,
            set,
            *draw,
            &conditions[c],
            &eval_scores[c],
        ))?;
    }
    sets.finish()?;
    Ok(())
}

/// The reduce step: set summaries, the ablation curves, the importance heatmap and the report.
pub fn reduce_ablation(context: &mut ReduceContext) -> anyhow::Result<()> {
    let rows = context.read_table("set_ablation")?;
    let percent = rows.f64s("percent")?;
    let n = rows.integers("heads_ablated")?;
    let set = rows.strings("set")?;
    let accuracy = rows.f64s("accuracy")?;
    let roc_auc = rows.f64s("roc_auc")?;
    let mut groups: BTreeMap<(String, i64), SetScores> = BTreeMap::new();
    let mut intact = (f64::NAN, f64::NAN);
    for i in 0..rows.rows() {
        if set[i] == "none" {
            intact = (accuracy[i], roc_auc[i]);
            continue;
        }
        let key = (set[i].clone(), (percent[i] * 1000.0).round() as i64);
        let entry = groups
            .entry(key)
            .or_insert((percent[i], Vec::new(), Vec::new()));
        entry.1.push(accuracy[i]);
        entry.2.push(roc_auc[i]);
    }
    let heads_at: BTreeMap<i64, i64> = (0..rows.rows())
        .map(|i| ((percent[i] * 1000.0).round() as i64, n[i]))
        .collect();
    let mut summary = context.table::<SetSummaryRow>("set_ablation_summary")?;
    let mut curves: BTreeMap<String, (Series, Series)> = BTreeMap::new();
    for ((name, key), (p, accuracies, aucs)) in &groups {
        let (a, r) = (mean_with_ci(accuracies, 0.95), mean_with_ci(aucs, 0.95));
        let random = name == "random";
        let ci = |v: f64| (random && v.is_finite()).then_some(v);
        summary.write(&SetSummaryRow {
            percent: *p,
            heads_ablated: heads_at[key] as u32,
            set: name.clone(),
            draws: accuracies.len() as u32,
            accuracy: a.mean,
            accuracy_ci_low: ci(a.low),
            accuracy_ci_high: ci(a.high),
            roc_auc: r.mean,
            roc_auc_ci_low: ci(r.low),
            roc_auc_ci_high: ci(r.high),
        })?;
        let label = match name.as_str() {
            "top" => "top heads".to_string(),
            "control" => "layer-matched control".to_string(),
            _ => format!("random sets (mean, 95 % CI of {})", accuracies.len()),
        };
        let (acc_line, auc_line) = curves.entry(name.clone()).or_insert_with(|| {
            let start = |y: f64| Series {
                name: label.clone(),
                x: vec![0.0],
                y: vec![y],
                band: random.then(|| (vec![y], vec![y])),
            };
            (start(intact.0), start(intact.1))
        });
        for (line, estimate) in [(acc_line, a), (auc_line, r)] {
            line.x.push(*p);
            line.y.push(estimate.mean);
            if let Some((low, high)) = &mut line.band {
                low.push(if estimate.low.is_finite() {
                    estimate.low
                } else {
                    estimate.mean
                });
                high.push(if estimate.high.is_finite() {
                    estimate.high
                } else {
                    estimate.mean
                });
            }
        }
    }
    summary.finish()?;

    let ablation = context
        .config("ablation")
        .and_then(|v| v.as_str())
        .unwrap_or("zero")
        .to_string();
    let split = context
        .config("split")
        .and_then(|v| v.as_str())
        .unwrap_or("test")
        .to_string();
    let ranking = context
        .config("ranking")
        .and_then(|v| v.as_str())
        .unwrap_or("importance")
        .to_string();
    let sequences = context
        .config("eval_sequences")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    context.set_title(
        "Head ablation: which attention heads does the classifier need?",
        &format!(
            "Each head's context vector z = A·V is set to {} before the output projection W_O \
             (not a slice of the residual stream after it, as in seed 003's code). Heads are \
             ranked by {ranking}; the top p % are ablated together and compared with a \
             layer-matched control of the same size (each top head's weakest same-layer peer) and \
             with random sets. Scored on {sequences} sequences of the {split} split; intact \
             accuracy {}, ROC-AUC {}.",
            if ablation == "zero" {
                "zero"
            } else {
                "its mean over the ranking split (per position)"
            },
            cell(intact.0),
            cell(intact.1),
        ),
    );
    for (metric, pick, file) in [
        ("accuracy", 0usize, "ablation_accuracy.svg"),
        ("ROC-AUC", 1, "ablation_roc_auc.svg"),
    ] {
        let series: Vec<Series> = ["top", "control", "random"]
            .iter()
            .filter_map(|name| curves.get(*name))
            .map(|(a, r)| if pick == 0 { a.clone() } else { r.clone() })
            .collect();
        if series.is_empty() {
            continue;
        }
        let plot = LinePlot {
            name: file.into(),
            title: format!("{metric} as heads are ablated ({ablation} ablation on z)"),
            x_label: "% of all heads ablated".into(),
            y_label: metric.into(),
            series,
        };
        context.figure(
            file,
            &line_plot(&plot)?,
            &format!(
                "{metric} on the {split} split with the top-ranked heads, a layer-matched control \
                 set and random sets ablated (band: Student-t 95 % CI over the random draws); 0 % \
                 is the intact model."
            ),
        )?;
    }

    let importance = context.read_table("head_importance")?;
    let splits = importance.strings("split")?;
    let layers = importance.integers("layer")?;
    let heads = importance.integers("head")?;
    let delta = importance.f64s("delta_accuracy")?;
    let delta_logit = importance.f64s("delta_true_logit")?;
    let layer_count = layers.iter().max().map_or(0, |l| l + 1) as usize;
    let head_count = heads.iter().max().map_or(0, |h| h + 1) as usize;
    let mut grid = vec![vec![f64::NAN; head_count]; layer_count];
    let mut logit_grid = grid.clone();
    for i in 0..importance.rows() {
        if splits[i] == split {
            grid[layers[i] as usize][heads[i] as usize] = delta[i];
            logit_grid[layers[i] as usize][heads[i] as usize] = delta_logit[i];
        }
    }
    for (values, file, label, caption) in [
        (
            grid,
            "importance_delta_accuracy.svg",
            "Δ accuracy",
            "Change in accuracy when one head is ablated alone (evaluation split).",
        ),
        (
            logit_grid,
            "importance_delta_true_logit.svg",
            "Δ true-class logit",
            "Change in the mean true-class logit when one head is ablated alone (evaluation split).",
        ),
    ] {
        let map = Heatmap {
            name: file.into(),
            title: format!("One head ablated: {label}"),
            x_label: "head".into(),
            y_label: "layer".into(),
            columns: (0..head_count).map(|h| h.to_string()).collect(),
            rows: (0..layer_count).map(|l| l.to_string()).collect(),
            values,
            value_label: label.into(),
        };
        context.figure(file, &heatmap(&map)?, caption)?;
    }

    let mut table = HtmlTable::new(
        "Accuracy with p % of heads ablated",
        &[
            "% heads",
            "heads",
            "top",
            "control",
            "random (mean [95 % CI])",
        ],
    );
    let value = |name: &str, key: i64| groups.get(&(name.to_string(), key)).map(|g| g.1.clone());
    for (key, count) in &heads_at {
        if *key == 0 {
            continue;
        }
        let one = |name: &str| value(name, *key).map_or("–".into(), |v| cell(v[0]));
        let random = value("random", *key).map_or("–".into(), |v| {
            let e = mean_with_ci(&v, 0.95);
            format!("{} [{}, {}]", cell(e.mean), cell(e.low), cell(e.high))
        });
        table.row(vec![
            format!("{}", *key as f64 / 1000.0),
            count.to_string(),
            one("top"),
            one("control"),
            random,
        ]);
    }
    context.report().heading("Set ablation");
    context.report().table(table);
    context.report().paragraph(
        "For comparison, seed 003 reported DNABERT's accuracy on its TATA task falling from 0.986 \
         to 0.50 with the top 20 % of its 'TATA heads' ablated, but its code zeroed a slice of the \
         post-LayerNorm residual stream after W_O (not the heads), had no random-set band, and its \
         control lists shrank after de-duplication. Here the control is exactly as large as the \
         top set, and the random band says how much any set of that size costs.",
    );
    context.report().paragraph(
        "Tables: head_importance.parquet (one row per split × head: accuracy, roc_auc, \
         mean_true_logit and their change from the intact model), set_ablation.parquet (one row \
         per ablated set, heads listed as L<layer>H<head>), set_ablation_summary.parquet.",
    );
    Ok(())
}
