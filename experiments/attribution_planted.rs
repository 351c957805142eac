//! Do the attribution methods find a motif we planted? Random 100-nt sequences, half carrying
//! NF-κB's site GGGACTTTCC at a random place, half of the rest a one-mismatch decoy of it
//! (`planted.parquet`, from the run's seed); the
//! pretrained mini-dnabert6 fine-tuned to tell them apart (`model/`, with its MODEL.md); then
//! every attribution method on 100 motif-carrying test sequences, and per sequence and method
//! the localisation AUROC of the nucleotide scores for the ten planted bases (signed score, and
//! |score|). ISM is scored by `ism_centred`.
//!
//! Map: `planted.parquet`, the attribution tables, `localisation.parquet`.
//! Reduce: the attribution report, `localisation_summary.parquet` (mean AUROC per method with a
//! bootstrap CI), a bar chart.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use genolens::analysis::attribution::planted::{
    localisation_auroc, planted_rows, PlantedSizes, PLANTED_MOTIF,
};
use genolens::analysis::attribution_study::{
    reduce_attribution, run_attribution, AttributionStudy,
};
use genolens::experiment::{ExperimentContext, ReduceContext};
use genolens::report::figures::{bar_chart, BarChart};
use genolens::report::html::cell;
use genolens::report::{HtmlTable, ParquetTable, Provenance};

/// Shown by `genolens experiment --list`.
pub const DESCRIPTION: &str =
    "attribution methods on a planted motif: fine-tune on random sequences with/without GGGACTTTCC (and one-mismatch decoys), localisation AUROC of every method";

genolens::table_row! {
    /// One sequence's localisation AUROC by one method.
    pub struct LocalisationRow {
        pub sequence_id: String,
        pub method: String,
        pub motif_start: i64,
        pub auroc: f64,
        pub auroc_abs: f64,
    }
}

genolens::table_row! {
    /// Mean localisation AUROC of one method with its 95 % bootstrap CI.
    pub struct LocalisationSummaryRow {
        pub method: String,
        pub sequences: u64,
        pub auroc_mean: f64,
        pub auroc_low: f64,
        pub auroc_high: f64,
        pub auroc_abs_mean: f64,
        pub fraction_above_0_9: f64,
    }
}

/// The map step.
pub fn run(context: &mut ExperimentContext) -> anyhow::Result<()> {
    if context.is_shard() {
        bail!("attribution-planted trains its own model: run it unsharded");
    }
    let dir = context.out_dir.clone();
    let rows = planted_rows(context.seed, PlantedSizes::default());
    let table = dir.join("planted.parquet");
    genolens::datasets::rows::write_rows(&table, &rows, &Provenance::current(context.seed))?;
    context.set_config("motif", PLANTED_MOTIF);
    // Fine-tune the pretrained MLM on it.
    let settings = genolens::train::classify::ClassifySettings {
        data: table.clone(),
        init: genolens::defaults::PRETRAINED_MODEL.into(),
        out: dir.join("model"),
        epochs: 6,
        batch_size: 32,
        // At 1e-3 the loss sat at ln 2 for four epochs and the model learned only CTTTCC (one
        // 6-mer); at 2e-4 it separates the validation split perfectly by epoch 4 and reads every
        // base of the motif.
        learning_rate: 2e-4,
        warmup_fraction: 0.1,
        adamw: genolens::train::adamw::AdamWSettings::with_weight_decay(0.01),
        seed: context.seed,
        dropout: 0.1,
    };
    let report = genolens::commands::train::run_train_classify(&settings, &context.device)?;
    context.set_config("classifier_test_auroc", report.test.auroc.value);
    context.set_config("classifier_test_accuracy", report.test.accuracy);
    // The motif-carrying test sequences.
    let positives: Vec<_> = rows
        .iter()
        .filter(|r| r.split == "test" && r.label == 1)
        .cloned()
        .collect();
    let motif_starts: BTreeMap<String, i64> = positives
        .iter()
        .map(|r| (r.id.clone(), r.motif_start))
        .collect();
    let mut study = AttributionStudy::new(
        dir.join("model").to_str().context("a UTF-8 output path")?,
        table,
    );
    study.target = Some(1);
    study.only_label = Some("1".into());
    study.default_sequences = Some(100);
    run_attribution(context, &study)?;

    // Localisation AUROC per sequence and method.
    let nucleotides = ParquetTable::read(&dir.join("nucleotide_attributions.parquet"))?;
    let ids = nucleotides.strings("sequence_id")?;
    let methods = nucleotides.strings("method")?;
    let scores = nucleotides.f64s("score")?;
    let mut by_key: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for i in 0..nucleotides.rows() {
        if methods[i] == "ism" {
            continue; // four rows per position; ism_centred is its per-position score
        }
        by_key
            .entry((ids[i].clone(), methods[i].clone()))
            .or_default()
            .push(scores[i]);
    }
    let mut table = context.table::<LocalisationRow>("localisation")?;
    for ((id, method), values) in &by_key {
        let start = *motif_starts
            .get(id)
            .with_context(|| format!("{id} is not a motif-carrying test sequence"))?
            as usize;
        let planted = start..start + PLANTED_MOTIF.len();
        let absolute: Vec<f64> = values.iter().map(|v| v.abs()).collect();
        table.write(&LocalisationRow {
            sequence_id: id.clone(),
            method: method.clone(),
            motif_start: start as i64,
            auroc: localisation_auroc(values, planted.clone()).unwrap_or(f64::NAN),
            auroc_abs: localisation_auroc(&absolute, planted).unwrap_or(f64::NAN),
        })?;
    }
    table.finish()?;
    Ok(())
}

/// The reduce step.
pub fn reduce(context: &mut ReduceContext) -> anyhow::Result<()> {
    reduce_attribution(context)?;
    let rows = context.read_table("localisation")?;
    let methods = rows.strings("method")?;
    let auroc = rows.f64s("auroc")?;
    let auroc_abs = rows.f64s("auroc_abs")?;
    let mut by_method: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, m) in methods.iter().enumerate() {
        by_method.entry(m.as_str()).or_default().push(i);
    }
    let seed = context.provenance.seed;
    let mut summary = Vec::new();
    for (method, index) in &by_method {
        let values: Vec<f64> = index.iter().map(|&i| auroc[i]).collect();
        let (mean, low, high) = genolens::stats::bootstrap_mean_ci(&values, 2000, seed, 0.95);
        summary.push(LocalisationSummaryRow {
            method: method.to_string(),
            sequences: values.len() as u64,
            auroc_mean: mean,
            auroc_low: low,
            auroc_high: high,
            auroc_abs_mean: index.iter().map(|&i| auroc_abs[i]).sum::<f64>() / values.len() as f64,
            fraction_above_0_9: values.iter().filter(|&&v| v >= 0.9).count() as f64
                / values.len() as f64,
        });
    }
    summary.sort_by(|a, b| b.auroc_mean.total_cmp(&a.auroc_mean));
    let mut table = context.table::<LocalisationSummaryRow>("localisation_summary")?;
    for row in &summary {
        table.write(row)?;
    }
    table.finish()?;
    let accuracy = context
        .config("classifier_test_auroc")
        .and_then(|v| v.as_f64())
        .unwrap_or(f64::NAN);
    context.set_title(
        "Attribution on a planted motif",
        &format!(
            "Random 100-nt sequences, half with {PLANTED_MOTIF} planted; the fine-tuned classifier \
             separates them with test AUROC {}. Which methods put the planted bases on top?",
            cell(accuracy)
        ),
    );
    let svg = bar_chart(&BarChart {
        name: "localisation_auroc.svg".into(),
        title: "Localisation AUROC of the planted bases (mean, 95 % CI)".into(),
        x_label: "method".into(),
        y_label: "AUROC".into(),
        categories: summary.iter().map(|r| r.method.clone()).collect(),
        values: summary.iter().map(|r| r.auroc_mean).collect(),
        errors: Some((
            summary.iter().map(|r| r.auroc_low).collect(),
            summary.iter().map(|r| r.auroc_high).collect(),
        )),
    })?;
    context.figure(
        "localisation_auroc.svg",
        &svg,
        "Per sequence, the AUROC of the method's signed nucleotide score for the ten planted \
         bases against the other 90; mean over sequences with its bootstrap CI. 0.5 = chance.",
    )?;
    let mut html = HtmlTable::new(
        "Localisation AUROC per method (signed score; |score| beside it)",
        &[
            "method",
            "sequences",
            "mean AUROC",
            "95 % CI",
            "mean AUROC of |score|",
            "sequences ≥ 0.9",
        ],
    );
    for r in &summary {
        html.row(vec![
            r.method.clone(),
            r.sequences.to_string(),
            cell(r.auroc_mean),
            format!("{}–{}", cell(r.auroc_low), cell(r.auroc_high)),
            cell(r.auroc_abs_mean),
            format!("{:.0} %", 100.0 * r.fraction_above_0_9),
        ]);
    }
    context.report().table(html);
    Ok(())
}
