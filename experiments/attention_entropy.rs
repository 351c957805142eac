//! How focused is each head's [CLS] attention? Entropy of the [CLS] row per layer, head and
//! sequence (valid keys only), plus the mass the row puts on [CLS]/[SEP] (degenerate heads).
//! By default: the committed promoter classifier on the human-promoters test split.
//!
//! Map (`run`, what a shard runs): one row per sequence × layer × head in
//! `cls_attention_entropy.parquet`. Reduce: `cls_entropy_by_head.parquet` (mean, sd and 95 %
//! t-interval per layer and head), a layer × head heatmap of mean entropy and one of the mass on
//! special tokens, and report.html.

use std::path::Path;

use anyhow::Context;
use genolens::analysis::run_forward;
use genolens::experiment::{ExperimentContext, ReduceContext};
use genolens::model::{BlockSite, HookPoint, Hooks};
use genolens::report::figures::{heatmap, Heatmap};
use genolens::report::html::cell;
use genolens::report::HtmlTable;
use genolens::stats::{mean_with_ci, MeanEstimate};

/// Shown by `genolens experiment --list`.
pub const DESCRIPTION: &str =
    "[CLS]-row attention entropy and special-token mass per layer/head/sequence";

const DEFAULT_MODEL: &str = genolens::defaults::MODEL;
const DEFAULT_DATA: &str = genolens::defaults::DATA;

genolens::table_row! {
    /// One head's [CLS] attention row on one sequence.
    pub struct ClsEntropyRow {
        pub sequence_id: String,
        pub layer: u32,
        pub head: u32,
        pub valid_keys: u32,
        pub cls_entropy_nats: f64,
        pub cls_entropy_normalised: f64,
        pub cls_mass_on_special: f64,
    }
}

genolens::table_row! {
    /// One head's [CLS] entropy over all sequences of the run.
    pub struct HeadSummaryRow {
        pub layer: u32,
        pub head: u32,
        pub sequences: u64,
        pub mean_cls_entropy_nats: f64,
        pub sd_cls_entropy_nats: f64,
        pub ci_low_cls_entropy_nats: f64,
        pub ci_high_cls_entropy_nats: f64,
        pub mean_cls_entropy_normalised: f64,
        pub mean_cls_mass_on_special: f64,
    }
}

/// Entropy (nats) of one attention row over its valid keys.
fn entropy(row: &[f32]) -> f64 {
    row.iter()
        .filter(|&&p| p > 0.0)
        .map(|&p| -(p as f64) * (p as f64).ln())
        .sum()
}

/// The map step: one row per sequence, layer and head.
pub fn run(context: &mut ExperimentContext) -> anyhow::Result<()> {
    let loaded = context.load_model(DEFAULT_MODEL)?;
    let examples = context.sequences(Path::new(DEFAULT_DATA))?;
    let layers = loaded.model.config().num_hidden_layers;
    let hooks = Hooks::none().capture("blocks.*.attn.hook_pattern")?;
    let mut table = context.table::<ClsEntropyRow>("cls_attention_entropy")?;
    let options = context.batch_options("attention entropy");
    let counts = run_forward(
        &loaded,
        examples.into_iter().map(Ok),
        &hooks,
        &options,
        |prepared, output| {
            // Per layer: [b,h,q,k] -> the [CLS] query row [b,h,k].
            let cls_rows = (0..layers)
                .map(|layer| {
                    let pattern = output
                        .cache
                        .get_point(HookPoint::block(layer, BlockSite::Pattern))
                        .expect("hook_pattern is captured");
                    pattern.narrow(2, 0, 1)?.squeeze(2)?.to_vec3::<f32>()
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            // Per sequence: rows (layer, head, valid keys, entropy, special mass).
            Ok((0..prepared.len())
                .map(|index| {
                    let valid = prepared.batch.lengths[index];
                    let mut rows = Vec::new();
                    for (layer, by_sequence) in cls_rows.iter().enumerate() {
                        for (head, row) in by_sequence[index].iter().enumerate() {
                            let row = &row[..valid];
                            let special = f64::from(row[0] + row[valid - 1]);
                            rows.push((layer, head, valid, entropy(row), special));
                        }
                    }
                    rows
                })
                .collect())
        },
        |example, rows| {
            for (layer, head, valid, entropy, special) in rows {
                table.write(&ClsEntropyRow {
                    sequence_id: example.id.clone(),
                    layer: layer as u32,
                    head: head as u32,
                    valid_keys: valid as u32,
                    cls_entropy_nats: entropy,
                    cls_entropy_normalised: entropy / (valid as f64).ln(),
                    cls_mass_on_special: special,
                })?;
            }
            Ok(())
        },
    )?;
    counts.warn_if_unknown();
    table.finish()?;
    Ok(())
}

/// The reduce step: per-head summaries, heatmaps and the report.
pub fn reduce(context: &mut ReduceContext) -> anyhow::Result<()> {
    let rows = context.read_table("cls_attention_entropy")?;
    let layer = rows.integers("layer")?;
    let head = rows.integers("head")?;
    let entropy = rows.f64s("cls_entropy_nats")?;
    let normalised = rows.f64s("cls_entropy_normalised")?;
    let special = rows.f64s("cls_mass_on_special")?;
    let layers = layer.iter().max().context("no rows to summarise")? + 1;
    let heads = head.iter().max().context("no rows to summarise")? + 1;
    let cell_index = |l: i64, h: i64| (l * heads + h) as usize;
    let mut groups: Vec<[Vec<f64>; 3]> = (0..layers * heads).map(|_| Default::default()).collect();
    for i in 0..rows.rows() {
        let group = &mut groups[cell_index(layer[i], head[i])];
        group[0].push(entropy[i]);
        group[1].push(normalised[i]);
        group[2].push(special[i]);
    }
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len().max(1) as f64;
    let estimates: Vec<MeanEstimate> = groups.iter().map(|g| mean_with_ci(&g[0], 0.95)).collect();

    let mut summary = context.table::<HeadSummaryRow>("cls_entropy_by_head")?;
    for l in 0..layers {
        for h in 0..heads {
            let index = cell_index(l, h);
            let estimate = &estimates[index];
            summary.write(&HeadSummaryRow {
                layer: l as u32,
                head: h as u32,
                sequences: estimate.n as u64,
                mean_cls_entropy_nats: estimate.mean,
                sd_cls_entropy_nats: estimate.sd,
                ci_low_cls_entropy_nats: estimate.low,
                ci_high_cls_entropy_nats: estimate.high,
                mean_cls_entropy_normalised: mean(&groups[index][1]),
                mean_cls_mass_on_special: mean(&groups[index][2]),
            })?;
        }
    }
    summary.finish()?;

    let sequences = estimates.first().map_or(0, |e| e.n);
    context.set_title(
        "[CLS] attention entropy per head",
        &format!(
            "How spread out is each head's attention from [CLS]? For every sequence, layer and \
             head: the entropy (nats) of the [CLS] query's attention over the valid keys, and \
             the mass it puts on [CLS] and [SEP]. Low entropy = a focused head; mass near 1 on \
             special tokens = a head that attends nowhere in particular (a 'no-op' head). \
             {sequences} sequences."
        ),
    );
    let grid = |values: &dyn Fn(usize) -> f64| -> Vec<Vec<f64>> {
        (0..layers)
            .map(|l| (0..heads).map(|h| values(cell_index(l, h))).collect())
            .collect()
    };
    let layer_names: Vec<String> = (0..layers).map(|l| l.to_string()).collect();
    let head_names: Vec<String> = (0..heads).map(|h| h.to_string()).collect();
    let entropy_map = Heatmap {
        name: "cls_entropy_heatmap.svg".into(),
        title: "Mean [CLS] attention entropy".into(),
        x_label: "head".into(),
        y_label: "layer".into(),
        columns: head_names.clone(),
        rows: layer_names.clone(),
        values: grid(&|i| estimates[i].mean),
        value_label: "entropy (nats)".into(),
    };
    context.figure(
        "cls_entropy_heatmap.svg",
        &heatmap(&entropy_map)?,
        "Mean entropy of the [CLS] attention row per layer (rows, 0 = first) and head \
         (columns). Darker = more focused.",
    )?;
    let special_map = Heatmap {
        name: "cls_special_mass_heatmap.svg".into(),
        title: "Mean [CLS] attention on [CLS] + [SEP]".into(),
        value_label: "attention mass".into(),
        values: grid(&|i| mean(&groups[i][2])),
        ..entropy_map
    };
    context.figure(
        "cls_special_mass_heatmap.svg",
        &heatmap(&special_map)?,
        "Mean attention mass the [CLS] row puts on the special tokens [CLS] and [SEP]; near 1 \
         marks heads that park their attention.",
    )?;

    let mut table = HtmlTable::new(
        "Per layer: the most and least focused head (mean entropy, 95 % t-interval)",
        &[
            "layer",
            "most focused head",
            "entropy (nats)",
            "least focused head",
            "entropy (nats)",
            "mean mass on special",
        ],
    );
    let interval =
        |e: &MeanEstimate| format!("{} ({}–{})", cell(e.mean), cell(e.low), cell(e.high));
    for l in 0..layers {
        let in_layer: Vec<usize> = (0..heads).map(|h| cell_index(l, h)).collect();
        let by_mean = |a: &&usize, b: &&usize| estimates[**a].mean.total_cmp(&estimates[**b].mean);
        let low = *in_layer.iter().min_by(by_mean).expect("heads > 0");
        let high = *in_layer.iter().max_by(by_mean).expect("heads > 0");
        let special_mean =
            in_layer.iter().map(|&i| mean(&groups[i][2])).sum::<f64>() / heads as f64;
        table.row(vec![
            l.to_string(),
            (low as i64 - l * heads).to_string(),
            interval(&estimates[low]),
            (high as i64 - l * heads).to_string(),
            interval(&estimates[high]),
            cell(special_mean),
        ]);
    }
    context.report().heading("Per layer");
    context.report().table(table);
    context.report().paragraph(
        "Every head's summary is in cls_entropy_by_head.parquet; every sequence's value in \
         cls_attention_entropy.parquet.",
    );
    Ok(())
}
