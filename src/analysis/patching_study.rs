//! The patching study (map and reduce), shared by `genolens experiment patching-eqtl` and
//! `genolens patch`: for each REF/ALT pair, the layer sweep (whole-layer patches at each site),
//! the layer × position sweep around the variant, the layer × head sweep of `z`, and a random-pair
//! null (REF of one variant, ALT of another; layer sweep only). The reduce step summarises over
//! pairs with bootstrap 95 % CIs and draws the figures and report.

use std::collections::BTreeMap;

use anyhow::Context;
use rand::{Rng, SeedableRng};

use crate::analysis::patching::{
    same_token_layout, sweep_pair, PatchSite, PatchingRow, SweepPair, SweepSettings,
};
use crate::analysis::variant_pairs::{read_variant_pairs, Positions};
use crate::experiment::{ExperimentContext, ReduceContext};
use crate::model::HeadKind;
use crate::report::figures::{heatmap, line_plot, Heatmap, LinePlot, Series};
use crate::report::html::cell;
use crate::report::HtmlTable;
use crate::stats::bootstrap_mean_ci;
use crate::tokenize::covering_positions;

/// The eqtl-proxy report's summary (`{pairs}` = the number of pairs).
const EQTL_SUMMARY: &str = "For each variant, the model runs on the ALT window (corrupt) with one \
    activation replaced by the REF window's (clean), and every later layer is recomputed. \
    fraction_restored = 1 − ‖CLS_patched − CLS_REF‖ / ‖CLS_ALT − CLS_REF‖ of the final [CLS] \
    vector: 1 = the patch brings back the REF output entirely, 0 = nothing. {pairs} variants. \
    The labels of eqtl-proxy are a motif-disruption proxy, not measured eQTLs; this study asks \
    where in the model a single-base change is carried, not which variants are causal.";

/// The committed variant table the study reads by default.
pub const DEFAULT_DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/eqtl-proxy.parquet");
const BOOTSTRAP: usize = 1000;

/// What the patching study runs.
#[derive(Debug, Clone)]
pub struct PatchingStudy {
    /// Model when `--model` is not given.
    pub default_model: String,
    /// Pairs table when `--data` is not given.
    pub default_data: std::path::PathBuf,
    /// Sites of the layer × position sweep.
    pub position_sites: Vec<PatchSite>,
    /// Positions of the layer × position sweep.
    pub positions: Positions,
    /// Bases of context kept around each variant (at most the model's window).
    pub context_nt: usize,
    /// Pairs used when `--limit` is not given (`None` = all of the split).
    pub default_pairs: Option<usize>,
}

impl Default for PatchingStudy {
    /// The pretrained mini-dnabert6 encoder on eqtl-proxy, resid_pre position sweep in a window
    /// of 10 tokens each side of the variant, 256 nt of context, 96 pairs.
    fn default() -> Self {
        PatchingStudy {
            default_model: crate::defaults::PRETRAINED_MODEL.to_string(),
            default_data: DEFAULT_DATA.into(),
            position_sites: vec![PatchSite::ResidPre],
            positions: Positions::Window(10),
            context_nt: 256,
            default_pairs: Some(96),
        }
    }
}

/// The map step: every sweep for each pair of this run (or shard), and its null.
pub fn run_patching(context: &mut ExperimentContext, study: &PatchingStudy) -> anyhow::Result<()> {
    // A classifier keeps its head (logit metrics); an MLM's decoder is dropped (only the final
    // [CLS] vector is compared, and decoding every patched row would cost more than the patch).
    let mut loaded = context.load_model(&study.default_model)?;
    if loaded.model.head_kind() == HeadKind::MaskedLm {
        loaded = context.load_model_with_head(
            &study.default_model,
            Some(HeadKind::Encoder { pooler: false }),
        )?;
    }
    let path = context.data_file(&study.default_data)?;
    let window = study.context_nt.min(loaded.tokenizer.max_sequence_length());
    let mut pairs = read_variant_pairs(&path, window)?;
    let mut split = context.split();
    if pairs.iter().any(|p| p.split.is_some()) {
        if split != "all" {
            pairs.retain(|p| p.split.as_deref() == Some(split.as_str()));
        }
    } else {
        // A table without a split column (such as `genolens data variants` output) is used whole.
        split = "all".into();
    }
    if pairs.len() < 2 {
        anyhow::bail!(
            "{}: {} pairs in split {split:?}; patching needs at least two (one for the random-pair null)",
            path.display(),
            pairs.len()
        );
    }
    context.set_config("split", split);
    context.set_config("context_nt", window);
    context.set_config("tokenizer", loaded.tokenizer.name());
    context.set_config("architecture", loaded.model.config().architecture.name());
    if let Some(kmer) = loaded.tokenizer.as_kmer() {
        context.set_config("k", kmer.k());
    }
    context.set_config("positions", study.positions.to_string());
    let position_sites: Vec<&str> = study.position_sites.iter().map(|s| s.name()).collect();
    context.set_config("position_sites", position_sites.join(","));
    if let (None, Some(default)) = (context.limit(), study.default_pairs) {
        pairs.truncate(default);
        context.set_config("default_pairs", default);
    }
    // The null partner of pair i: pair (i + r) mod n, one seeded shift for the whole run, so
    // every shard draws the same partners.
    let total = pairs.len();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(context.seed);
    let shift = rng.random_range(1..total);
    let tasks: Vec<usize> = context.take_part((0..total).collect(), 1);
    let settings = SweepSettings {
        positions: study.positions,
        position_sites: study.position_sites.clone(),
        ..SweepSettings::default()
    };
    let null_settings = settings.null();
    let mut skipped_layout = 0usize;
    let mut table = context.table::<PatchingRow>("patching")?;
    let progress = crate::progress::bar(tasks.len() as u64, "patching pairs");
    for index in tasks {
        let pair = &pairs[index];
        if !same_token_layout(&loaded.tokenizer, &pair.clean, &pair.corrupt)? {
            // BPE can merge the variant's neighbourhood differently on REF and ALT: there is no
            // token-by-token correspondence to patch along.
            skipped_layout += 1;
            progress.inc(1);
            continue;
        }
        let spans = loaded.tokenizer.tokenize(&pair.id, &pair.clean)?.spans;
        let matched = SweepPair {
            id: &pair.id,
            pairing: "matched",
            clean: &pair.clean,
            corrupt: &pair.corrupt,
            covering: Some(covering_positions(&spans, pair.variant_offset)),
            anchor_role: "variant",
            logit_classes: None,
        };
        for row in sweep_pair(&loaded, &matched, &settings)? {
            table.write(&row)?;
        }
        let partner = &pairs[(index + shift) % total];
        if partner.corrupt.len() == pair.clean.len()
            && same_token_layout(&loaded.tokenizer, &pair.clean, &partner.corrupt)?
        {
            let random = SweepPair {
                id: &pair.id,
                pairing: "random",
                clean: &pair.clean,
                corrupt: &partner.corrupt,
                covering: None,
                anchor_role: "variant",
                logit_classes: None,
            };
            for row in sweep_pair(&loaded, &random, &null_settings)? {
                table.write(&row)?;
            }
        }
        crate::interrupt::batch_done();
        progress.inc(1);
    }
    progress.finish_and_clear();
    if skipped_layout > 0 {
        tracing::warn!(
            "{skipped_layout} pairs skipped: REF and ALT tokenize into different token layouts"
        );
    }
    context.set_config("pairs_skipped_token_layout", skipped_layout);
    table.finish()?;
    Ok(())
}

crate::table_row! {
    /// Mean fraction restored over pairs of one pairing × site × layer (whole-layer patches).
    pub struct LayerSummaryRow {
        pub pairing: String,
        pub site: String,
        pub layer: u32,
        pub metric: String,
        pub pairs: u64,
        pub mean_fraction_restored: f64,
        pub ci_low: f64,
        pub ci_high: f64,
        pub mean_delta_cls_l2: f64,
    }
}

crate::table_row! {
    /// Mean fraction restored over pairs of one layer × position (resid_pre, matched pairs).
    pub struct PositionSummaryRow {
        pub site: String,
        pub layer: u32,
        pub position_role: String,
        pub offset_from_variant: Option<i64>,
        pub metric: String,
        pub pairs: u64,
        pub mean_fraction_restored: f64,
        pub ci_low: f64,
        pub ci_high: f64,
    }
}

crate::table_row! {
    /// Mean fraction restored over pairs of one layer × head (z, matched pairs).
    pub struct HeadSummaryRow {
        pub layer: u32,
        pub head: u32,
        pub metric: String,
        pub pairs: u64,
        pub mean_fraction_restored: f64,
        pub ci_low: f64,
        pub ci_high: f64,
    }
}

/// A position's column: [CLS], offsets from the variant's first token, [SEP].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Column {
    Cls,
    Offset(i64),
    Sep,
}

impl Column {
    fn label(&self) -> String {
        match self {
            Column::Cls => "[CLS]".into(),
            Column::Offset(o) => format!("{o:+}"),
            Column::Sep => "[SEP]".into(),
        }
    }
}

/// (pairing, site, layer).
type LayerKey = (String, String, i64);

/// The reduce step: summaries, figures and report from `patching.parquet`.
pub fn reduce_patching(context: &mut ReduceContext) -> anyhow::Result<()> {
    let rows = context.read_table("patching")?;
    let pairing = rows.strings("pairing")?;
    let sweep = rows.strings("sweep")?;
    let site = rows.strings("site")?;
    let layer = rows.integers("layer")?;
    let role = rows.strings("position_role")?;
    let offset = rows.optional_integers("offset_from_variant")?;
    let head = rows.optional_integers("head")?;
    // Classifier runs are summarised by the logit difference's fraction restored, encoders by
    // the final [CLS] vector's.
    let logit_fraction = rows.optional_f64s("logit_diff_fraction_restored")?;
    let (metric, fraction) = if logit_fraction.iter().any(Option::is_some) {
        (
            "logit_diff_fraction_restored",
            logit_fraction
                .iter()
                .map(|v| v.unwrap_or(f64::NAN))
                .collect::<Vec<f64>>(),
        )
    } else {
        ("fraction_restored", rows.f64s("fraction_restored")?)
    };
    let delta = rows.f64s("delta_cls_l2")?;
    let seed = context.provenance.seed;
    let layers = layer.iter().max().context("no patching rows")? + 1;
    let k = context.config("k").and_then(|k| k.as_i64()).unwrap_or(6);

    // Layer sweep.
    let mut by_layer: BTreeMap<LayerKey, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    let mut by_position: BTreeMap<(i64, Column), Vec<f64>> = BTreeMap::new();
    let mut by_head: BTreeMap<(i64, i64), Vec<f64>> = BTreeMap::new();
    for i in 0..rows.rows() {
        if !fraction[i].is_finite() {
            // Clean and corrupt agree on the metric: nothing to restore.
            continue;
        }
        match sweep[i].as_str() {
            "layer" => {
                let entry = by_layer
                    .entry((pairing[i].clone(), site[i].clone(), layer[i]))
                    .or_default();
                entry.0.push(fraction[i]);
                entry.1.push(delta[i]);
            }
            "position" if pairing[i] != "random" => {
                let column = match role[i].as_str() {
                    "cls" => Column::Cls,
                    "sep" => Column::Sep,
                    _ => Column::Offset(offset[i].context("offset_from_variant")?),
                };
                by_position
                    .entry((layer[i], column))
                    .or_default()
                    .push(fraction[i]);
            }
            "head" if pairing[i] != "random" => {
                let h = head[i].context("head")?;
                by_head.entry((layer[i], h)).or_default().push(fraction[i]);
            }
            _ => {}
        }
    }
    let ci = |values: &[f64]| bootstrap_mean_ci(values, BOOTSTRAP, seed, 0.95);
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len().max(1) as f64;

    let mut layer_table = context.table::<LayerSummaryRow>("patching_by_layer")?;
    let mut series: BTreeMap<(String, String), Series> = BTreeMap::new();
    for ((pairing, site, l), (fractions, deltas)) in &by_layer {
        let (m, low, high) = ci(fractions);
        layer_table.write(&LayerSummaryRow {
            pairing: pairing.clone(),
            site: site.clone(),
            layer: *l as u32,
            metric: metric.into(),
            pairs: fractions.len() as u64,
            mean_fraction_restored: m,
            ci_low: low,
            ci_high: high,
            mean_delta_cls_l2: mean(deltas),
        })?;
        let line = series
            .entry((pairing.clone(), site.clone()))
            .or_insert_with(|| Series::banded(format!("{site} ({pairing} pairs)")));
        line.push_banded(*l as f64, m, low, high);
    }
    layer_table.finish()?;

    let mut position_table = context.table::<PositionSummaryRow>("patching_by_position")?;
    let mut columns: Vec<Column> = by_position.keys().map(|(_, c)| c.clone()).collect();
    columns.sort();
    columns.dedup();
    let mut grid = vec![vec![f64::NAN; columns.len()]; layers as usize];
    for ((l, column), fractions) in &by_position {
        let (m, low, high) = ci(fractions);
        position_table.write(&PositionSummaryRow {
            site: "resid_pre".into(),
            layer: *l as u32,
            position_role: match column {
                Column::Cls => "cls".into(),
                Column::Sep => "sep".into(),
                Column::Offset(_) => "window".into(),
            },
            offset_from_variant: match column {
                Column::Offset(o) => Some(*o),
                _ => None,
            },
            metric: metric.into(),
            pairs: fractions.len() as u64,
            mean_fraction_restored: m,
            ci_low: low,
            ci_high: high,
        })?;
        let c = columns.iter().position(|x| x == column).expect("listed");
        grid[*l as usize][c] = m;
    }
    position_table.finish()?;

    let heads = by_head.keys().map(|(_, h)| *h).max().map_or(0, |h| h + 1);
    let mut head_table = context.table::<HeadSummaryRow>("patching_by_head")?;
    let mut head_grid = vec![vec![f64::NAN; heads as usize]; layers as usize];
    for ((l, h), fractions) in &by_head {
        let (m, low, high) = ci(fractions);
        head_table.write(&HeadSummaryRow {
            layer: *l as u32,
            head: *h as u32,
            metric: metric.into(),
            pairs: fractions.len() as u64,
            mean_fraction_restored: m,
            ci_low: low,
            ci_high: high,
        })?;
        head_grid[*l as usize][*h as usize] = m;
    }
    head_table.finish()?;

    let pairs = by_layer.values().next().map_or(0, |v| v.0.len());
    let text = |key: &str| {
        context
            .config(key)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let title = text("report_title")
        .unwrap_or_else(|| "Activation patching: REF → ALT of eqtl-proxy variants".into());
    let summary = text("report_summary").unwrap_or_else(|| EQTL_SUMMARY.into());
    let anchor = text("anchor").unwrap_or_else(|| "variant".into());
    // Runs written before the tokenizer was recorded are DNABERT k-mer runs.
    let kmer = context.config("k").and_then(|k| k.as_u64());
    let offsets = match (kmer, text("tokenizer").as_deref()) {
        (Some(k), _) => format!(
            "Offsets 0 to {} are the {k}-mers that contain the {anchor}'s first base.",
            k - 1
        ),
        (None, None) => {
            format!("Offsets 0 to k − 1 are the k-mers that contain the {anchor}'s first base.")
        }
        (None, Some(_)) => format!("Offset 0 is the token that contains the {anchor}."),
    };
    let output_site = if text("architecture").as_deref() == Some("esm") {
        "resid_post"
    } else {
        "normalized_resid_post"
    };
    let matched = text("pairing").unwrap_or_else(|| "matched".into());
    let clean = text("clean_name").unwrap_or_else(|| "REF".into());
    let corrupt = text("corrupt_name").unwrap_or_else(|| "ALT".into());
    let metric_text = if metric == "fraction_restored" {
        "fraction restored ([CLS])"
    } else {
        "fraction restored (logit difference)"
    };
    context.set_title(&title, &summary.replace("{pairs}", &pairs.to_string()));
    let lines: Vec<Series> = series
        .into_iter()
        .filter(|((_, site), _)| site == "attn_out" || site == "mlp_out")
        .map(|(_, s)| s)
        .collect();
    if !lines.is_empty() {
        let plot = LinePlot {
            name: "fraction_restored_by_layer.svg".into(),
            title: format!("Whole-layer patches: {metric_text}, {clean} → {corrupt}"),
            x_label: "layer".into(),
            y_label: metric_text.into(),
            series: lines,
        };
        context.figure(
            "fraction_restored_by_layer.svg",
            &line_plot(&plot)?,
            &format!(
                "Patching one layer's attention or MLP output (all positions) from the {clean} run \
                 into the {corrupt} run; bands are bootstrap 95 % CIs over pairs. Random pairs \
                 ({clean} of one pair, {corrupt} of another) are the null. Whole-layer resid_pre \
                 and block-output ({output_site}) patches restore exactly 1 at every layer (the \
                 whole stream is replaced) and are in the table."
            ),
        )?;
    }
    if !columns.is_empty() {
        let map = Heatmap {
            name: "fraction_restored_layer_position.svg".into(),
            title: "resid_pre patched at one token".into(),
            x_label: format!("token position (offset from the {anchor}'s first token)"),
            y_label: "layer".into(),
            columns: columns.iter().map(Column::label).collect(),
            rows: (0..layers).map(|l| l.to_string()).collect(),
            values: grid.clone(),
            value_label: metric_text.into(),
        };
        context.figure(
            "fraction_restored_layer_position.svg",
            &heatmap(&map)?,
            &format!(
                "Mean {metric_text} when only one token's block input is patched (grey: no such \
                 position). {offsets}"
            ),
        )?;
    }
    if heads > 0 {
        let map = Heatmap {
            name: "fraction_restored_layer_head.svg".into(),
            title: "One head's z patched (all positions)".into(),
            x_label: "head".into(),
            y_label: "layer".into(),
            columns: (0..heads).map(|h| h.to_string()).collect(),
            rows: (0..layers).map(|l| l.to_string()).collect(),
            values: head_grid,
            value_label: metric_text.into(),
        };
        context.figure(
            "fraction_restored_layer_head.svg",
            &heatmap(&map)?,
            "Mean fraction restored when one head's output (before W_O) is patched at every \
             position.",
        )?;
    }

    // Where does the variant's signal sit, layer by layer? The best single token.
    let mut table = HtmlTable::new(
        "Per layer: the single token whose resid_pre restores most (mean over pairs)",
        &[
            "layer",
            "best token",
            "fraction restored",
            "anchor tokens (mean)",
            "[CLS]",
            "attn_out (all positions)",
            "mlp_out (all positions)",
        ],
    );
    for (l, values) in grid.iter().enumerate() {
        let best = columns
            .iter()
            .enumerate()
            .filter(|(c, _)| !values[*c].is_nan())
            .max_by(|a, b| values[a.0].total_cmp(&values[b.0]));
        let k_tokens: Vec<f64> = columns
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c, Column::Offset(o) if *o >= 0 && *o < k))
            .map(|(c, _)| values[c])
            .collect();
        let cls = columns
            .iter()
            .position(|c| *c == Column::Cls)
            .map_or(f64::NAN, |c| values[c]);
        let whole = |site: &str| {
            by_layer
                .get(&(matched.clone(), site.to_string(), l as i64))
                .map_or(f64::NAN, |v| mean(&v.0))
        };
        table.row(vec![
            l.to_string(),
            best.map_or("–".into(), |(_, c)| c.label()),
            best.map_or("–".into(), |(c, _)| cell(values[c])),
            cell(mean(&k_tokens)),
            cell(cls),
            cell(whole("attn_out")),
            cell(whole("mlp_out")),
        ]);
    }
    context
        .report()
        .heading(&format!("Where the {anchor} signal is carried"));
    context.report().paragraph(
        "Seed 004 reported a 'final-layer bottleneck' from patching stored hidden states without \
         re-running the model: only the last swap could change the output. Here every patch is \
         followed by the real forward pass through the later layers, so a restoration at an \
         early layer shows up as such. Read the table top to bottom: where the anchor's own \
         tokens (the variant's k-mers, or the TSS) stop restoring and [CLS] starts to, the \
         signal has moved to [CLS].",
    );
    context.report().table(table);
    // The bottleneck question, answered from the numbers: does anything restore before the last
    // layer?
    let anchor_tokens = |row: &[f64]| -> f64 {
        let values: Vec<f64> = columns
            .iter()
            .enumerate()
            .filter(|(c, col)| {
                matches!(col, Column::Offset(o) if *o >= 0 && *o < k) && !row[*c].is_nan()
            })
            .map(|(c, _)| row[c])
            .collect();
        mean(&values)
    };
    if let (Some(first), Some(last)) = (grid.first(), grid.last()) {
        let early = anchor_tokens(first);
        let cls_last = columns
            .iter()
            .position(|c| *c == Column::Cls)
            .map_or(f64::NAN, |c| last[c]);
        // The best single token of any layer before the last.
        let best_early = grid[..grid.len().saturating_sub(1)]
            .iter()
            .flat_map(|row| row.iter().copied().filter(|v| v.is_finite()))
            .fold(f64::NAN, f64::max);
        if early.is_finite() && best_early.is_finite() {
            let verdict = if best_early > 0.01 {
                format!(
                    "here single-token patches before the last layer restore up to {}, so no \
                     final-layer bottleneck appears once the later layers are really re-run",
                    cell(best_early)
                )
            } else {
                "here too almost nothing restores before the last layer, even with the forward \
                 re-run"
                    .to_string()
            };
            context.report().paragraph(&format!(
                "Measured here: at layer 0, patching one of the {anchor}'s own tokens restores {} \
                 on average; at the last layer, patching [CLS] alone restores {}. Under the \
                 artifact, every patch before the last layer would restore exactly 0; {verdict}.",
                cell(early),
                cell(cls_last),
            ));
        }
    }
    context.report().paragraph(
        "Every patched run is in patching.parquet (pair_id, pairing, sweep, site, layer, \
         position, head and the metrics); the summaries with bootstrap CIs are in \
         patching_by_layer.parquet, patching_by_position.parquet and patching_by_head.parquet.",
    );
    Ok(())
}
