//! The SAE study behind `genolens sae train`, `genolens sae analyze` and `just experiment
//! sae-cls`: activations of a hook cached for the training split and the held-out split, an SAE
//! trained on the first (saved in SAELens's layout), then on held-out sequences: reconstruction
//! metrics, fidelity (the reconstruction spliced back in), what the features mean (class
//! statistics, top sequences, JASPAR enrichment), a sparsity sweep (L0 vs explained variance)
//! and linear probes by layer.
//!
//! Tables: `sae_training`, `sae_metrics`, `sae_fidelity`, `sae_features`, `sae_top_sequences`,
//! `sae_motif_enrichment`, `sae_sweep`, `probes`; folders `sae/` (SAELens layout) and `cache/`
//! (activations). Reduce: figures and report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::analysis::attention::Locus;
use crate::analysis::attention_study::{read_inputs, AttentionInput};
use crate::analysis::sae::cache::{
    cache_from_embeddings, cache_from_model, ActivationCache, RawRows, RowKind,
};
use crate::analysis::sae::concepts::{concept_f1, read_concepts, token_concepts};
use crate::analysis::sae::fidelity::{fidelity, FidelityRow};
use crate::analysis::sae::layout;
use crate::analysis::sae::meaning::{
    class_statistics, encode_cache, motif_enrichment, motif_presence, top_of, top_sequences,
};
use crate::analysis::sae::metrics::metrics;
use crate::analysis::sae::model::{train, Architecture, Sae, TrainSettings};
use crate::analysis::sae::probes::{probe_layers, ProbeSettings};
use crate::data::Example;
use crate::experiment::{ExperimentContext, ReduceContext};
use crate::model::HookPoint;
use crate::report::figures::{format_number, line_plot, LinePlot, Series};
use crate::report::html::HtmlTable;

/// What an SAE study does.
#[derive(Debug, Clone)]
pub struct SaeStudy {
    /// Model when `--model` is not given.
    pub default_model: String,
    /// Data when `--data` is not given.
    pub default_data: PathBuf,
    /// Train on an `embeddings.parquet` of `genolens embed` instead of running a model.
    pub embeddings: Option<PathBuf>,
    /// Hook whose activations are modelled.
    pub hook: String,
    /// Which rows of a token hook.
    pub rows: RowKind,
    /// Split the SAE and the probes are trained on (`--split` is the held-out one).
    pub train_split: String,
    /// Latents (default 8 × d_in).
    pub latents: Option<usize>,
    /// Architecture.
    pub architecture: Architecture,
    /// Training settings (seed and progress are set from the run).
    pub train: TrainSettings,
    /// Top sequences kept per feature.
    pub top_k: usize,
    /// JASPAR motifs for the enrichment (`None` skips it).
    pub motifs: Option<PathBuf>,
    /// Features whose top sequences are tested for motifs: the most class-specific (smallest
    /// q), or the most often firing when there are no labels.
    pub enrich_features: usize,
    /// Further SAEs for the L0-vs-explained-variance figure.
    pub sweep: Vec<Architecture>,
    /// Fit linear probes by layer.
    pub probes: bool,
    /// The dataset's name in a run of several (tables get `_<name>`).
    pub name: Option<String>,
    /// Sequences per split when the user gives no `--limit` (`None` = all).
    pub default_limit: Option<usize>,
    /// Splice the reconstruction back in and measure the model's loss.
    pub fidelity: bool,
    /// Annotation folder (BED tracks, `jaspar_hits` split per matrix) for the concept F1 of
    /// token-level SAEs.
    pub annotations: Option<PathBuf>,
    /// Features whose top sequences get gradient × input attributions (0 = none).
    pub attribution_features: usize,
    /// Top sequences attributed per feature.
    pub attribution_sequences: usize,
}

/// Names of one dataset's tables, folders, figures and settings in a run that holds several
/// (`sae_features_<name>`, `sae_<name>/`, ...); without a name, the plain names.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// The dataset's name.
    pub name: Option<String>,
}

impl Scope {
    /// `base`, or `base_<name>`.
    pub fn key(&self, base: &str) -> String {
        match &self.name {
            Some(n) => format!("{base}_{n}"),
            None => base.to_string(),
        }
    }

    /// A file name with the dataset before its extension.
    pub fn file(&self, file: &str) -> String {
        match (&self.name, file.rsplit_once('.')) {
            (Some(n), Some((stem, ext))) => format!("{stem}_{n}.{ext}"),
            _ => file.to_string(),
        }
    }
}

impl SaeStudy {
    /// Where this study's outputs go in the run.
    pub fn scope(&self) -> Scope {
        Scope {
            name: self.name.clone(),
        }
    }

    /// Defaults: final [CLS] (`hook_cls`) of `model` on `data`; ReLU-L1 (λ 0.2) with 8 × d_in
    /// latents; train split `train`; top 20 sequences; JASPAR 2024 enrichment for 20 features;
    /// fidelity on; no sweep, no probes.
    pub fn new(model: &str, data: impl Into<PathBuf>) -> Self {
        SaeStudy {
            default_model: model.into(),
            default_data: data.into(),
            embeddings: None,
            hook: "hook_cls".into(),
            rows: RowKind::Cls,
            train_split: "train".into(),
            latents: None,
            architecture: Architecture::default(),
            train: TrainSettings::default(),
            top_k: 20,
            motifs: Some(
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/data/jaspar/JASPAR2024_CORE_vertebrates.meme"
                )
                .into(),
            ),
            enrich_features: 20,
            sweep: Vec::new(),
            probes: false,
            fidelity: true,
            annotations: None,
            attribution_features: 5,
            attribution_sequences: 5,
            name: None,
            default_limit: None,
        }
    }

    /// The sparsity sweep of `sae-cls`: ReLU-L1 at five λ and TopK at four k.
    pub fn default_sweep() -> Vec<Architecture> {
        let mut sweep: Vec<Architecture> = [0.05, 0.1, 0.2, 0.4, 0.8]
            .into_iter()
            .map(|l1| Architecture::ReluL1 { l1 })
            .collect();
        sweep.extend([4, 8, 16, 32].into_iter().map(|k| Architecture::TopK { k }));
        sweep
    }
}

crate::table_row! {
    /// One training epoch.
    pub struct EpochRow {
        /// 1-based epoch.
        pub epoch: u32,
        /// Mean loss.
        pub loss: f64,
        /// Mean squared error per element (normalised rows).
        pub mse: f64,
        /// Mean active latents per row.
        pub l0: f64,
        /// 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖² over the epoch.
        pub explained_variance: f64,
        /// Share of latents silent all epoch.
        pub dead_fraction: f64,
    }
}

crate::table_row! {
    /// Reconstruction metrics of the saved SAE on one split (raw activations).
    pub struct MetricsRow {
        /// `train` or the held-out split.
        pub split: String,
        /// Rows.
        pub rows: u64,
        /// Mean active latents per row.
        pub l0: f64,
        /// Share of latents that never fire on these rows.
        pub dead_fraction: f64,
        /// Mean squared error per element (raw units).
        pub mse: f64,
        /// 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖² (centred over the set; SAELens's `explained_variance`).
        pub explained_variance: f64,
        /// mean over rows of 1 − ‖x − x̂‖² / ‖x‖² (uncentred, per row; what some code calls EV).
        pub explained_variance_uncentred_per_row: f64,
    }
}

crate::table_row! {
    /// One SAE of the sparsity sweep, on the held-out rows.
    pub struct SweepRow {
        /// relu-l1, relu-l1-unit, topk or batchtopk.
        pub architecture: String,
        /// λ (ReLU forms).
        pub l1: Option<f64>,
        /// k (TopK forms).
        pub k: Option<u32>,
        /// Latents.
        pub latents: u32,
        /// Mean active latents per held-out row.
        pub l0: f64,
        /// Explained variance (centred) on held-out rows.
        pub explained_variance: f64,
        /// Share of latents that never fire on held-out rows.
        pub dead_fraction: f64,
        /// The study's own SAE.
        pub is_main: bool,
    }
}

impl MetricsRow {
    fn new(
        split: &str,
        cache: &ActivationCache,
        m: &crate::analysis::sae::metrics::SaeMetrics,
    ) -> Self {
        MetricsRow {
            split: split.to_string(),
            rows: cache.meta.rows as u64,
            l0: m.l0,
            dead_fraction: m.dead_fraction,
            mse: m.mse,
            explained_variance: m.explained_variance,
            explained_variance_uncentred_per_row: m.explained_norm,
        }
    }
}

/// Sequences of one split with numeric labels ("0", "1", ...) as labels.
fn split_examples(inputs: &[AttentionInput], split: &str) -> Vec<Example> {
    inputs
        .iter()
        .filter(|i| split == "all" || i.split.is_none() || i.split.as_deref() == Some(split))
        .map(|i| Example {
            id: i.example.id.clone(),
            sequence: i.example.sequence.clone(),
            label: i.label.map(|l| l.to_string()),
        })
        .collect()
}

/// The map step: caches, training, metrics, fidelity, meaning, sweep, probes.
pub fn run_sae(context: &mut ExperimentContext, study: &SaeStudy) -> anyhow::Result<()> {
    let s = &study.scope();
    if context.is_shard() {
        bail!("an SAE is trained on every sequence at once: run it unsharded");
    }
    let seed = context.seed;
    let mut settings = study.train.clone();
    settings.seed = seed;
    settings.progress = Some("training SAE".into());
    context.set_config(
        &s.key("architecture"),
        serde_json::to_value(study.architecture)?,
    );
    context.set_config(&s.key("train_settings"), serde_json::to_value(&settings)?);
    context.set_config(&s.key("top_k"), study.top_k);
    context.set_config(&s.key("train_split"), study.train_split.clone());
    let held_out = context.split();
    context.set_config(&s.key("held_out_split"), held_out.clone());
    let limit = context.limit().or(study.default_limit);
    context.set_config(&s.key("limit_per_split"), limit);
    let cache_dir = context.out_dir.join(s.key("cache"));

    let mut loci: BTreeMap<String, Locus> = BTreeMap::new();
    let (train_cache, test_cache, loaded, test_examples, train_examples) = match &study.embeddings {
        Some(table) => {
            context.set_config(&s.key("embeddings"), table.display().to_string());
            let cache =
                cache_from_embeddings(table, &cache_dir.join("train"), &context.provenance)?;
            let again = ActivationCache::open(&cache.dir)?;
            (cache, again, None, Vec::new(), Vec::new())
        }
        None => {
            let loaded = context.load_model(&study.default_model)?;
            context.set_config(&s.key("sae_model"), loaded.source.id.clone());
            let path = context.data_file(&study.default_data)?;
            context.set_config(&s.key("sae_data"), path.display().to_string());
            let inputs = read_inputs(&path, loaded.tokenizer.max_sequence_length())?;
            loci = inputs
                .iter()
                .filter_map(|i| Some((i.example.id.clone(), i.locus.clone()?)))
                .collect();
            let mut train_examples = split_examples(&inputs, &study.train_split);
            let mut test_examples = split_examples(&inputs, &held_out);
            if let Some(n) = limit {
                train_examples.truncate(n);
                test_examples.truncate(n);
            }
            if train_examples.is_empty() || test_examples.is_empty() {
                bail!(
                    "{}: {} sequences in split {:?} and {} in {:?}; both are needed",
                    path.display(),
                    train_examples.len(),
                    study.train_split,
                    test_examples.len(),
                    held_out
                );
            }
            let point: HookPoint = study.hook.parse()?;
            context.set_config(&s.key("hook"), study.hook.clone());
            let mut options = context.batch_options("caching activations (train)");
            let train_cache = cache_from_model(
                &loaded,
                train_examples.iter().cloned().map(Ok),
                point,
                study.rows,
                &options,
                &cache_dir.join("train"),
                &context.provenance,
            )?;
            options.progress = Some(format!("caching activations ({held_out})"));
            let test_cache = cache_from_model(
                &loaded,
                test_examples.iter().cloned().map(Ok),
                point,
                study.rows,
                &options,
                &cache_dir.join(&held_out),
                &context.provenance,
            )?;
            (
                train_cache,
                test_cache,
                Some(loaded),
                test_examples,
                train_examples,
            )
        }
    };
    let kind = train_cache.meta.rows_from;
    context.set_config(&s.key("rows"), kind.name());
    context.set_config(&s.key("train_rows"), train_cache.meta.rows);
    context.set_config(&s.key("held_out_rows"), test_cache.meta.rows);
    context.set_config(&s.key("normalisation_factor"), train_cache.meta.scale);
    let d_in = train_cache.meta.d_in;
    let latents = study.latents.unwrap_or(8 * d_in);
    context.set_config(&s.key("latents"), latents);
    context.set_config(&s.key("d_in"), d_in);

    // Train, fold the normalisation back in, save.
    let started = std::time::Instant::now();
    let mut sae = Sae::new(d_in, latents, study.architecture, seed)?;
    let history = train(&mut sae, &train_cache, &settings)?;
    let seconds = started.elapsed().as_secs_f64();
    let steps: usize = history.len() * train_cache.meta.rows.div_ceil(settings.batch_size);
    context.set_config(&s.key("training_seconds"), seconds);
    context.set_config(
        &s.key("training_steps_per_second"),
        steps as f64 / seconds.max(1e-9),
    );
    sae.fold_input_scale(train_cache.meta.scale)?;
    let sae_dir = context.out_dir.join(s.key("sae"));
    layout::save(
        &sae,
        &sae_dir,
        &train_cache.meta.hook,
        serde_json::json!({
            "rows": kind.name(),
            "normalisation_factor_folded": train_cache.meta.scale,
            "model": train_cache.meta.model,
            "data": context.config_value(&s.key("sae_data")),
            "train_split": study.train_split,
            "seed": seed,
        }),
    )?;
    let mut table = context.table::<EpochRow>(&s.key("sae_training"))?;
    for e in &history {
        table.write(&EpochRow {
            epoch: e.epoch as u32,
            loss: e.loss,
            mse: e.mse,
            l0: e.l0,
            explained_variance: e.explained_variance,
            dead_fraction: e.dead_fraction,
        })?;
    }
    table.finish()?;

    let mut table = context.table::<MetricsRow>(&s.key("sae_metrics"))?;
    let splits: Vec<(&str, &ActivationCache)> = if study.embeddings.is_some() {
        vec![("all", &train_cache)]
    } else {
        vec![("train", &train_cache), (held_out.as_str(), &test_cache)]
    };
    // The last split is the held-out one (the sweep's row for the main SAE reuses it).
    let mut held_out_metrics = None;
    for (split, cache) in &splits {
        let m = metrics(&sae, &RawRows(cache))?;
        table.write(&MetricsRow::new(split, cache, &m))?;
        held_out_metrics = Some(m);
    }
    table.finish()?;

    let point: HookPoint = study.hook.parse()?;
    analyse_held_out(
        context,
        study,
        HeldOut {
            sae: &sae,
            kind,
            test_cache: &test_cache,
            model: loaded.as_ref().map(|l| (l, point)),
            test_examples: &test_examples,
            loci,
        },
    )?;

    // Sparsity sweep.
    if !study.sweep.is_empty() {
        let mut table = context.table::<SweepRow>(&s.key("sae_sweep"))?;
        let main = held_out_metrics.expect("at least one split was measured");
        table.write(&sweep_row(study.architecture, latents, &main, true))?;
        let bar = crate::progress::bar(study.sweep.len() as u64, "sparsity sweep");
        for &architecture in &study.sweep {
            let mut other = Sae::new(d_in, latents, architecture, seed)?;
            let mut quiet = settings.clone();
            quiet.progress = None;
            train(&mut other, &train_cache, &quiet)?;
            other.fold_input_scale(train_cache.meta.scale)?;
            let m = metrics(&other, &RawRows(&test_cache))?;
            table.write(&sweep_row(architecture, latents, &m, false))?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        table.finish()?;
    }

    if let (Some(loaded), true) = (&loaded, study.probes) {
        let probe_settings = ProbeSettings {
            seed,
            ..Default::default()
        };
        context.set_config(&s.key("probe_alpha"), probe_settings.alpha);
        let rows = probe_layers(
            loaded,
            &train_examples,
            &test_examples,
            &probe_settings,
            context.batch_options("").batch_size,
        )?;
        let mut table = context.table(&s.key("probes"))?;
        table.write_all(&rows)?;
        table.finish()?;
    }
    Ok(())
}

/// Fidelity and meaning on the held-out sequences (`sae` on raw activations).
/// What the held-out analysis reads.
struct HeldOut<'a> {
    sae: &'a Sae,
    kind: RowKind,
    test_cache: &'a ActivationCache,
    /// The model and the hook, when the rows came from a model (not an embeddings table).
    model: Option<(&'a crate::model::LoadedModel, HookPoint)>,
    test_examples: &'a [Example],
    /// Genome loci by sequence id (for concept F1).
    loci: BTreeMap<String, Locus>,
}

fn analyse_held_out(
    context: &mut ExperimentContext,
    study: &SaeStudy,
    held_out: HeldOut,
) -> anyhow::Result<()> {
    let s = &study.scope();
    let seed = context.seed;
    let HeldOut {
        sae,
        kind,
        test_cache,
        model,
        test_examples,
        loci,
    } = held_out;
    let loaded = model.map(|m| m.0);
    if let (Some((loaded, point)), true) = (model, study.fidelity) {
        let row = fidelity(
            loaded,
            test_examples,
            sae,
            point,
            kind,
            context.batch_options("").batch_size,
            seed,
        )?;
        let mut table = context.table::<FidelityRow>(&s.key("sae_fidelity"))?;
        table.write(&row)?;
        table.finish()?;
    }

    // What the features mean, on held-out sequences.
    let activations = encode_cache(sae, test_cache)?;
    let class_rows = class_statistics(&activations);
    let mut table = context.table(&s.key("sae_features"))?;
    table.write_all(&class_rows)?;
    table.finish()?;
    let mut table = context.table(&s.key("sae_top_sequences"))?;
    table.write_all(&top_sequences(&activations, study.top_k))?;
    table.finish()?;
    let has_dna = activations.sequences.iter().all(|s| s.sequence.is_some());
    if let (Some(motifs_path), true) = (&study.motifs, has_dna) {
        context.set_config(&s.key("motifs"), motifs_path.display().to_string());
        let motifs = crate::motif::meme::read_meme(motifs_path)?;
        let features = enrichment_features(&class_rows, &activations, study.enrich_features);
        context.set_config(&s.key("enriched_features"), features.len());
        let presence = motif_presence(&activations.sequences, &motifs)?;
        let rows = motif_enrichment(&activations, &features, study.top_k, &motifs, &presence);
        let mut table = context.table(&s.key("sae_motif_enrichment"))?;
        table.write_all(&rows)?;
        table.finish()?;
    }

    // Concept F1 of token-level features against the annotations.
    if let (Some(dir), RowKind::Tokens, Some(loaded)) = (&study.annotations, kind, loaded) {
        let concepts = read_concepts(dir)?;
        context.set_config(&s.key("annotations"), dir.display().to_string());
        context.set_config(
            &s.key("concepts"),
            concepts.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
        );
        let labels: Vec<Option<Vec<Option<u64>>>> = activations
            .sequences
            .iter()
            .map(|row| -> anyhow::Result<Option<Vec<Option<u64>>>> {
                let (Some(locus), Some(sequence)) = (loci.get(&row.sequence_id), &row.sequence)
                else {
                    return Ok(None);
                };
                let spans = loaded.tokenizer.tokenize(&row.sequence_id, sequence)?.spans;
                Ok(Some(token_concepts(&concepts, locus, &spans)))
            })
            .collect::<anyhow::Result<_>>()?;
        let located = labels.iter().filter(|l| l.is_some()).count();
        if located < 2 {
            bail!(
                "concept F1 needs each sequence's genome locus (chrom and start columns, or ids like chr20:100-350(+)); {located} of {} have one",
                labels.len()
            );
        }
        let rows = concept_f1(&activations, &concepts, &labels, seed)?;
        let mut table = context.table(&s.key("sae_concepts"))?;
        table.write_all(&rows)?;
        table.finish()?;
    }

    // Gradient × input of the most class-specific features on their top sequences.
    if let (Some((loaded, point)), true) = (model, study.attribution_features > 0) {
        if kind == RowKind::Mean {
            context.set_config(
                &s.key("feature_attributions"),
                "skipped: a masked-mean row is no single position of the model",
            );
        } else {
            let features =
                enrichment_features(&class_rows, &activations, study.attribution_features);
            let rows = feature_attributions(
                loaded,
                sae,
                point,
                &activations,
                &features,
                study.attribution_sequences,
            )?;
            let mut table = context.table(&s.key("sae_feature_attributions"))?;
            table.write_all(&rows)?;
            table.finish()?;
        }
    }
    Ok(())
}

crate::table_row! {
    /// One nucleotide of one of a feature's top sequences: gradient × input of the feature.
    pub struct FeatureAttributionRow {
        /// Feature (latent) index.
        pub feature: u32,
        /// Rank of the sequence among the feature's top sequences.
        pub rank: u32,
        /// Sequence id.
        pub sequence_id: String,
        /// 0-based nucleotide.
        pub position: u32,
        /// The base.
        pub base: String,
        /// Gradient × input of the feature's pre-activation at its token (k-mer scores spread
        /// evenly over their nucleotides).
        pub score: f64,
        /// The feature's activation in this sequence.
        pub activation: f64,
    }
}

/// Gradient × input (summed over hidden dims, spread from k-mers to nucleotides) of each listed
/// feature's pre-activation (x − b_dec)·W_enc[:, f] + b_enc[f] (its activation where it fires),
/// read at the token where it is highest, for its top `per_feature` sequences.
fn feature_attributions(
    loaded: &crate::model::LoadedModel,
    sae: &Sae,
    point: HookPoint,
    activations: &crate::analysis::sae::meaning::SequenceActivations,
    features: &[usize],
    per_feature: usize,
) -> anyhow::Result<Vec<FeatureAttributionRow>> {
    use crate::analysis::attribution::{
        lrp_direction, token_scores_to_nucleotides, DirectionTarget, Spread,
    };
    let w_enc = sae.w_enc.as_tensor().to_device(&candle_core::Device::Cpu)?;
    let mut rows = Vec::new();
    for &feature in features {
        let direction = w_enc.narrow(1, feature, 1)?.squeeze(1)?;
        for (rank, s) in top_of(activations, feature, per_feature)
            .into_iter()
            .enumerate()
        {
            let row = &activations.sequences[s];
            let Some(dna) = &row.sequence else { continue };
            let tokens = loaded.tokenizer.tokenize(&row.sequence_id, dna)?;
            let batch = crate::model::Batch::from_tokenized(
                std::slice::from_ref(&tokens),
                loaded.tokenizer.special().pad,
                loaded.model.device(),
            )?;
            let target = DirectionTarget {
                hook: point,
                direction: direction.to_device(loaded.model.device())?,
                position: activations.tokens[s * activations.d_sae + feature] as usize,
            };
            let result = lrp_direction(&loaded.model, &batch, &target, None)?;
            let scores = token_scores_to_nucleotides(
                &result[0].scores,
                &tokens.spans,
                dna.len(),
                Spread::Mean,
            )?;
            for (position, (score, base)) in scores.iter().zip(dna.bytes()).enumerate() {
                rows.push(FeatureAttributionRow {
                    feature: feature as u32,
                    rank: rank as u32 + 1,
                    sequence_id: row.sequence_id.clone(),
                    position: position as u32,
                    base: (base.to_ascii_uppercase() as char).to_string(),
                    score: *score as f64,
                    activation: activations.get(s, feature) as f64,
                });
            }
        }
    }
    Ok(rows)
}

/// `genolens sae analyze`: a saved SAE (SAELens layout) on held-out sequences: reconstruction
/// metrics, fidelity and meaning, with the hook and rows its cfg.json records.
pub fn run_sae_analyze(
    context: &mut ExperimentContext,
    study: &SaeStudy,
    sae_dir: &Path,
) -> anyhow::Result<()> {
    let s = &study.scope();
    let (sae, hook, cfg) = read_sae(sae_dir)?;
    let ours = &cfg["genolens"];
    let kind = match ours["rows"].as_str() {
        Some("mean") => RowKind::Mean,
        Some("tokens") => RowKind::Tokens,
        Some("none") => RowKind::None,
        _ => RowKind::Cls,
    };
    context.set_config(&s.key("sae"), sae_dir.display().to_string());
    context.set_config(&s.key("hook"), hook.clone());
    context.set_config(&s.key("rows"), kind.name());
    context.set_config(&s.key("latents"), sae.d_sae());
    context.set_config(
        &s.key("architecture"),
        serde_json::to_value(sae.architecture)?,
    );
    let default_model = ours["model"]
        .as_str()
        .unwrap_or(&study.default_model)
        .to_string();
    let default_data = ours["data"]
        .as_str()
        .map(PathBuf::from)
        .unwrap_or_else(|| study.default_data.clone());
    let loaded = context.load_model(&default_model)?;
    let path = context.data_file(&default_data)?;
    let inputs = read_inputs(&path, loaded.tokenizer.max_sequence_length())?;
    let held_out = context.split();
    context.set_config(&s.key("held_out_split"), held_out.clone());
    let mut examples = split_examples(&inputs, &held_out);
    if let Some(n) = context.take_limit() {
        examples.truncate(n);
    }
    if examples.is_empty() {
        bail!("{}: no sequences in split {held_out:?}", path.display());
    }
    let point: HookPoint = hook.parse().with_context(|| {
        format!(
            "{}: metadata.hook_name {hook:?} is not a genolens hook",
            sae_dir.join("cfg.json").display()
        )
    })?;
    let options = context.batch_options(&format!("caching activations ({held_out})"));
    let cache = cache_from_model(
        &loaded,
        examples.iter().cloned().map(Ok),
        point,
        kind,
        &options,
        &context.out_dir.join(s.key("cache")).join(&held_out),
        &context.provenance,
    )?;
    if cache.meta.d_in != sae.d_in() {
        bail!(
            "{} reads {} dims; {hook} of this model has {}",
            sae_dir.display(),
            sae.d_in(),
            cache.meta.d_in
        );
    }
    context.set_config(&s.key("held_out_rows"), cache.meta.rows);
    let m = metrics(&sae, &RawRows(&cache))?;
    let mut table = context.table::<MetricsRow>(&s.key("sae_metrics"))?;
    table.write(&MetricsRow::new(&held_out, &cache, &m))?;
    table.finish()?;
    // The reduce step re-encodes the cache with the SAE in out/sae.
    layout::save(
        &sae,
        &context.out_dir.join(s.key("sae")),
        &hook,
        ours.clone(),
    )?;
    let loci = inputs
        .iter()
        .filter_map(|i| Some((i.example.id.clone(), i.locus.clone()?)))
        .collect();
    analyse_held_out(
        context,
        study,
        HeldOut {
            sae: &sae,
            kind,
            test_cache: &cache,
            model: Some((&loaded, point)),
            test_examples: &examples,
            loci,
        },
    )
}

fn sweep_row(
    architecture: Architecture,
    latents: usize,
    m: &crate::analysis::sae::metrics::SaeMetrics,
    is_main: bool,
) -> SweepRow {
    let (l1, k) = match architecture {
        Architecture::ReluL1 { l1 } | Architecture::ReluL1UnitNorm { l1 } => (Some(l1), None),
        Architecture::TopK { k } | Architecture::BatchTopK { k } => (None, Some(k as u32)),
    };
    SweepRow {
        architecture: architecture.name().into(),
        l1,
        k,
        latents: latents as u32,
        l0: m.l0,
        explained_variance: m.explained_variance,
        dead_fraction: m.dead_fraction,
        is_main,
    }
}

/// The features whose top sequences are scanned: smallest q first (class-specific), then the
/// most often firing, `n` in all.
fn enrichment_features(
    class_rows: &[crate::analysis::sae::meaning::FeatureClassRow],
    activations: &crate::analysis::sae::meaning::SequenceActivations,
    n: usize,
) -> Vec<usize> {
    let mut by_q: Vec<(f64, usize)> = class_rows
        .iter()
        .map(|r| (r.q_value, r.feature as usize))
        .filter(|(q, _)| q.is_finite())
        .collect();
    by_q.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut chosen: Vec<usize> = Vec::new();
    for (_, f) in by_q {
        if chosen.len() >= n {
            break;
        }
        if !chosen.contains(&f) {
            chosen.push(f);
        }
    }
    if chosen.len() < n {
        let mut by_rate: Vec<(usize, usize)> = (0..activations.d_sae)
            .map(|f| {
                let fires = (0..activations.sequences.len())
                    .filter(|&s| activations.get(s, f) > 0.0)
                    .count();
                (fires, f)
            })
            .filter(|&(fires, _)| fires > 0)
            .collect();
        by_rate.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, f) in by_rate {
            if chosen.len() >= n {
                break;
            }
            if !chosen.contains(&f) {
                chosen.push(f);
            }
        }
    }
    chosen
}

/// A histogram of `values` as a line (bin centres, counts / n).
fn density(name: &str, values: &[f64], low: f64, high: f64, bins: usize) -> Series {
    let width = (high - low).max(1e-12) / bins as f64;
    let mut counts = vec![0f64; bins];
    for &v in values {
        let b = (((v - low) / width) as usize).min(bins - 1);
        counts[b] += 1.0;
    }
    let n = values.len().max(1) as f64;
    Series {
        name: name.into(),
        x: (0..bins).map(|b| low + (b as f64 + 0.5) * width).collect(),
        y: counts.into_iter().map(|c| c / n).collect(),
        band: None,
    }
}

/// The reduce step: figures and the report, one section per dataset of the run.
pub fn reduce_sae(context: &mut ReduceContext) -> anyhow::Result<()> {
    let names: Vec<Option<String>> = match context.config("datasets").and_then(|v| v.as_array()) {
        Some(list) => list.iter().map(|v| v.as_str().map(String::from)).collect(),
        None => vec![None],
    };
    let several = names.len() > 1;
    for name in names {
        let s = Scope { name };
        reduce_one(context, &s, several)?;
    }
    Ok(())
}

fn reduce_one(context: &mut ReduceContext, s: &Scope, several: bool) -> anyhow::Result<()> {
    let metrics = context.read_table(&s.key("sae_metrics"))?;
    let (splits, ev) = (
        metrics.strings("split")?,
        metrics.f64s("explained_variance")?,
    );
    let (l0, dead) = (metrics.f64s("l0")?, metrics.f64s("dead_fraction")?);
    let hook = context
        .config(&s.key("hook"))
        .and_then(|v| v.as_str())
        .unwrap_or("embeddings table")
        .to_string();
    let rows = context
        .config(&s.key("rows"))
        .and_then(|v| v.as_str())
        .unwrap_or("?")
        .to_string();
    let latents = context
        .config(&s.key("latents"))
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    let last = splits.len().saturating_sub(1);
    let features = context.read_table(&s.key("sae_features")).ok();
    let significant = features
        .as_ref()
        .map(|t| {
            t.f64s("q_value")
                .map(|q| q.iter().filter(|&&q| q < 0.05).count())
        })
        .transpose()?
        .unwrap_or(0);
    let summary = format!(
        "{latents} latents on {hook} ({rows} rows) of {}. Held-out ({}): L0 {}, explained variance {}, dead {}. {significant} features differ between classes at q < 0.05.",
        context
            .config(&s.key("sae_model"))
            .or_else(|| context.config("model"))
            .and_then(|v| v.as_str())
            .unwrap_or("the model")
            .rsplit('/')
            .next()
            .unwrap_or_default(),
        splits.get(last).cloned().unwrap_or_default(),
        format_number(l0[last]),
        format_number(ev[last]),
        format_number(dead[last]),
    );
    if several {
        context
            .report()
            .heading(s.name.as_deref().unwrap_or_default());
        context.report().paragraph(&summary);
    } else {
        context.set_title("Sparse autoencoder: what the features are", &summary);
    }
    let mut table = HtmlTable::new(
        "Reconstruction (explained variance = 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖², centred over the split; the uncentred per-row form is in sae_metrics.parquet).",
        &["split", "rows", "L0", "explained variance", "dead fraction", "MSE"],
    );
    let mse = metrics.f64s("mse")?;
    let count = metrics.integers("rows")?;
    for i in 0..metrics.rows() {
        table.row(vec![
            splits[i].clone(),
            count[i].to_string(),
            format_number(l0[i]),
            format_number(ev[i]),
            format_number(dead[i]),
            format_number(mse[i]),
        ]);
    }
    context.report().table(table);

    if let Ok(f) = context.read_table(&s.key("sae_fidelity")) {
        let mut table = HtmlTable::new(
            "Fidelity: the reconstruction spliced back in at the hook. Loss recovered = (L_zero − L_SAE) / (L_zero − L_clean); 1 = as good as the model's own activations, 0 = no better than zeros.",
            &["loss target", "clean", "SAE", "zero-ablated", "loss recovered", "mean |Δ logit|", "KL (nats)", "same prediction"],
        );
        let get = |c: &str| f.f64s(c).map(|v| format_number(v[0]));
        table.row(vec![
            f.strings("loss_target")?[0].clone(),
            get("loss_clean")?,
            get("loss_sae")?,
            get("loss_zero")?,
            get("loss_recovered")?,
            get("mean_abs_logit_change")?,
            get("kl_divergence")?,
            get("agreement")?,
        ]);
        context.report().table(table);
        if f.f64s("loss_recovered")?[0].is_nan() {
            context.report().paragraph(
                "Zero-ablating these rows leaves the loss unchanged, so the fraction of loss recovered is undefined: at this hook the rows do not reach the loss (an MLM's final [CLS] feeds no masked-token prediction). Fidelity needs a classifier, or a hook the masked tokens read (an earlier layer, or token rows).",
            );
        }
    }

    if let Ok(training) = context.read_table(&s.key("sae_training")) {
        let epochs: Vec<f64> = training
            .integers("epoch")?
            .iter()
            .map(|&e| e as f64)
            .collect();
        let svg = line_plot(&LinePlot {
            name: s.file("sae_training.svg"),
            title: "Training".into(),
            x_label: "epoch".into(),
            y_label: "explained variance / dead fraction".into(),
            series: vec![
                Series {
                    name: "explained variance".into(),
                    x: epochs.clone(),
                    y: training
                        .f64s("explained_variance")?
                        .into_iter()
                        .map(|v| v.max(-0.5))
                        .collect(),
                    band: None,
                },
                Series {
                    name: "dead fraction".into(),
                    x: epochs,
                    y: training.f64s("dead_fraction")?,
                    band: None,
                },
            ],
        })?;
        context.figure(&s.file("sae_training.svg"), &svg, "Explained variance and share of silent latents per training epoch, over the epoch's batches as the weights moved (values below −0.5 drawn at −0.5; sae_training.parquet has them all).")?;
    }

    if let Some(features) = &features {
        feature_figures(context, s, features)?;
    }
    if let Ok(sweep) = context.read_table(&s.key("sae_sweep")) {
        let arch = sweep.strings("architecture")?;
        let (l0, ev) = (sweep.f64s("l0")?, sweep.f64s("explained_variance")?);
        let mut by_arch: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for i in 0..sweep.rows() {
            by_arch
                .entry(arch[i].clone())
                .or_default()
                .push((l0[i], ev[i]));
        }
        let series = by_arch
            .into_iter()
            .map(|(name, mut points)| {
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                Series {
                    name,
                    x: points.iter().map(|p| p.0).collect(),
                    y: points.iter().map(|p| p.1).collect(),
                    band: None,
                }
            })
            .collect();
        let svg = line_plot(&LinePlot {
            name: s.file("sae_sweep.svg"),
            title: "Sparsity vs reconstruction (held-out)".into(),
            x_label: "L0 (active latents per row)".into(),
            y_label: "explained variance".into(),
            series,
        })?;
        context.figure(&s.file("sae_sweep.svg"), &svg, "Each point one SAE (ReLU-L1 at several λ, TopK at several k), trained alike, measured on held-out rows: the price in reconstruction of each degree of sparsity.")?;
    }
    if let Ok(enrichment) = context.read_table(&s.key("sae_motif_enrichment")) {
        enrichment_table(context, s, &enrichment)?;
    }
    if let Ok(concepts) = context.read_table(&s.key("sae_concepts")) {
        concept_figures(context, s, &concepts)?;
    }
    if let Ok(attributions) = context.read_table(&s.key("sae_feature_attributions")) {
        attribution_logos(context, s, &attributions)?;
    }
    if let Ok(probes) = context.read_table(&s.key("probes")) {
        probe_figure(context, s, &probes)?;
    }
    Ok(())
}

/// The concept-F1 heatmap (concepts × the features that reach the highest test F1) and the
/// best feature per concept.
fn concept_figures(
    context: &mut ReduceContext,
    s: &Scope,
    table: &crate::report::ParquetTable,
) -> anyhow::Result<()> {
    if table.rows() == 0 {
        context.report().paragraph(
            "Concept F1: no feature fires on any annotated token of the validation sequences.",
        );
        return Ok(());
    }
    let feature = table.integers("feature")?;
    let concept = table.strings("concept")?;
    let (f1, precision, recall) = (
        table.f64s("test_f1")?,
        table.f64s("test_precision")?,
        table.f64s("test_recall")?,
    );
    let threshold = table.f64s("threshold")?;
    let baseline = table.f64s("baseline_f1")?;
    let mut best: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..table.rows() {
        let e = best.entry(concept[i].clone()).or_insert(i);
        if f1[i] > f1[*e] {
            *e = i;
        }
    }
    let mut html = HtmlTable::new(
        "Best feature per annotation concept (threshold chosen on validation sequences, scored on test sequences; token-level). A feature means something for a concept only well above the F1 of one that fires on every token.",
        &["concept", "feature", "threshold (× max)", "test F1", "F1 of firing everywhere", "precision", "recall"],
    );
    let mut order: Vec<usize> = best.values().copied().collect();
    order.sort_by(|&a, &b| f1[b].total_cmp(&f1[a]));
    for &i in &order {
        html.row(vec![
            concept[i].clone(),
            feature[i].to_string(),
            format_number(threshold[i]),
            format_number(f1[i]),
            format_number(baseline[i]),
            format_number(precision[i]),
            format_number(recall[i]),
        ]);
    }
    context.report().table(html);
    // Heatmap: concepts × the 20 features with the highest test F1 anywhere.
    let mut top_features: Vec<(f64, i64)> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut by_f1: Vec<usize> = (0..table.rows()).collect();
    by_f1.sort_by(|&a, &b| f1[b].total_cmp(&f1[a]));
    for i in by_f1 {
        if seen.insert(feature[i]) {
            top_features.push((f1[i], feature[i]));
        }
        if top_features.len() == 20 {
            break;
        }
    }
    let concepts: Vec<String> = best.keys().cloned().collect();
    let mut values = vec![vec![0.0; top_features.len()]; concepts.len()];
    for i in 0..table.rows() {
        if let (Some(r), Some(c)) = (
            concepts.iter().position(|c| c == &concept[i]),
            top_features.iter().position(|t| t.1 == feature[i]),
        ) {
            values[r][c] = f1[i];
        }
    }
    let svg = crate::report::figures::heatmap(&crate::report::figures::Heatmap {
        name: s.file("sae_concept_f1.svg"),
        title: "Concept F1 (test tokens)".into(),
        x_label: "feature".into(),
        y_label: "concept".into(),
        columns: top_features.iter().map(|t| t.1.to_string()).collect(),
        rows: concepts
            .iter()
            .map(|c| match c.strip_prefix("jaspar:") {
                Some(m) => format!("{} hits", m.split_once('_').map_or(m, |(_, name)| name)),
                None => c.replace('_', " "),
            })
            .collect(),
        values,
        value_label: "F1".into(),
    })?;
    context.figure(
        &s.file("sae_concept_f1.svg"),
        &svg,
        "Token-level F1 of each feature against each annotation concept (InterPLM's protocol: threshold on validation sequences, F1 on test sequences), for the 20 features that score highest on any concept.",
    )?;
    Ok(())
}

/// Stacked logos of each attributed feature's top sequence (gradient × input).
fn attribution_logos(
    context: &mut ReduceContext,
    s: &Scope,
    table: &crate::report::ParquetTable,
) -> anyhow::Result<()> {
    let feature = table.integers("feature")?;
    let rank = table.integers("rank")?;
    let base = table.strings("base")?;
    let score = table.f64s("score")?;
    let ids = table.strings("sequence_id")?;
    let mut panels: BTreeMap<i64, (String, Vec<[f64; 4]>)> = BTreeMap::new();
    for i in 0..table.rows() {
        if rank[i] != 1 {
            continue;
        }
        let entry = panels
            .entry(feature[i])
            .or_insert_with(|| (ids[i].clone(), Vec::new()));
        let mut column = [0.0; 4];
        if let Some(b) = "ACGT".find(base[i].as_str()) {
            column[b] = score[i];
        }
        entry.1.push(column);
    }
    if panels.is_empty() {
        return Ok(());
    }
    let logos: Vec<crate::report::figures::SequenceLogo> = panels
        .into_iter()
        .take(5)
        .map(|(f, (id, heights))| crate::report::figures::SequenceLogo {
            name: s.file("sae_feature_attributions.svg"),
            title: format!("feature {f}: {id}"),
            y_label: "gradient × input".into(),
            heights,
            first_position: 0,
        })
        .collect();
    let svg =
        crate::report::figures::stacked_logos(&s.file("sae_feature_attributions.svg"), &logos)?;
    context.figure(
        &s.file("sae_feature_attributions.svg"),
        &svg,
        "Which nucleotides drive each class-specific feature: gradient × input of the feature's pre-activation in its top sequence (all top sequences in sae_feature_attributions.parquet).",
    )?;
    Ok(())
}

/// Δ distribution and the top features' activation histograms per class; the top features table.
fn feature_figures(
    context: &mut ReduceContext,
    s: &Scope,
    features: &crate::report::ParquetTable,
) -> anyhow::Result<()> {
    if features.rows() == 0 {
        return Ok(());
    }
    let delta = features.f64s("delta")?;
    let (lo, hi) = delta
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &d| {
            (a.min(d), b.max(d))
        });
    let class = features.strings("class")?;
    let reference = features.strings("reference")?;
    let svg = line_plot(&LinePlot {
        name: s.file("sae_delta_distribution.svg"),
        title: "Class difference of each feature".into(),
        x_label: format!("Δ = mean({}) − mean({})", class[0], reference[0]),
        y_label: "share of live features".into(),
        series: vec![density("features", &delta, lo, hi.max(lo + 1e-9), 40)],
    })?;
    context.figure(&s.file("sae_delta_distribution.svg"), &svg, "Distribution over live features of the difference of mean activation between the classes (held-out sequences). A few features far from 0 carry the class; a narrow peak at 0 means the SAE split the [CLS] into class-blind parts.")?;

    let ids = features.integers("feature")?;
    let q = features.f64s("q_value")?;
    let auroc = features.f64s("auroc")?;
    let (fc, fr) = (
        features.f64s("firing_class")?,
        features.f64s("firing_reference")?,
    );
    let (mc, mr) = (
        features.f64s("mean_class")?,
        features.f64s("mean_reference")?,
    );
    let mut order: Vec<usize> = (0..features.rows()).collect();
    order.sort_by(|&a, &b| q[a].total_cmp(&q[b]).then(ids[a].cmp(&ids[b])));
    let mut table = HtmlTable::new(
        "The most class-specific features (Mann–Whitney on held-out sequences, BH over features).",
        &[
            "feature",
            "class",
            "vs",
            "mean",
            "mean (vs)",
            "fires",
            "fires (vs)",
            "AUROC",
            "q",
        ],
    );
    for &i in order.iter().take(15) {
        table.row(vec![
            ids[i].to_string(),
            class[i].clone(),
            reference[i].clone(),
            format_number(mc[i]),
            format_number(mr[i]),
            format_number(fc[i]),
            format_number(fr[i]),
            format_number(auroc[i]),
            format_number(q[i]),
        ]);
    }
    context.report().table(table);

    // Activation histograms of the top 4 features per class (seed 004 Fig. 4): every held-out
    // sequence's activation, re-encoded from the cache with the saved SAE.
    let cache_dir = context.out_dir.join(s.key("cache"));
    let held_out = context
        .config(&s.key("held_out_split"))
        .and_then(|v| v.as_str())
        .unwrap_or("test")
        .to_string();
    let cache_path = if cache_dir.join(&held_out).join("cache.json").exists() {
        cache_dir.join(&held_out)
    } else {
        cache_dir.join("train")
    };
    let (Ok(cache), Ok((sae, _, _))) = (
        ActivationCache::open(&cache_path),
        layout::load(&context.out_dir.join(s.key("sae"))),
    ) else {
        return Ok(());
    };
    let activations = encode_cache(&sae, &cache)?;
    let significant: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&i| q[i] < 0.05)
        .take(4)
        .collect();
    if significant.is_empty() {
        context.report().paragraph(
            "No feature's activation differs between the classes at q < 0.05, so no per-class histograms are drawn: on these held-out sequences the SAE's features do not carry the label one by one.",
        );
    }
    for &i in &significant {
        let feature = ids[i] as usize;
        let mut by_class: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for (s, row) in activations.sequences.iter().enumerate() {
            if let Some(label) = &row.label {
                by_class
                    .entry(label.clone())
                    .or_default()
                    .push(activations.get(s, feature) as f64);
            }
        }
        let high = by_class
            .values()
            .flatten()
            .fold(0f64, |a, &b| a.max(b))
            .max(1e-9);
        let series = by_class
            .iter()
            .map(|(c, v)| {
                let firing: Vec<f64> = v.iter().copied().filter(|&a| a > 0.0).collect();
                let mut line = density(
                    &format!(
                        "class {c}: fires in {:.0} % of {}",
                        100.0 * firing.len() as f64 / v.len().max(1) as f64,
                        v.len()
                    ),
                    &firing,
                    0.0,
                    high,
                    25,
                );
                // Shares of the whole class, so the areas show the firing rates too.
                let scale = firing.len() as f64 / v.len().max(1) as f64;
                line.y.iter_mut().for_each(|y| *y *= scale);
                line
            })
            .collect();
        let name = s.file(&format!("sae_feature_{feature}_histogram.svg"));
        let svg = line_plot(&LinePlot {
            name: name.clone(),
            title: format!("Feature {feature} (q {})", format_number(q[i])),
            x_label: "activation".into(),
            y_label: "share of the class's sequences".into(),
            series,
        })?;
        context.figure(
            &name,
            &svg,
            &format!("Held-out activations of feature {feature} where it fires, by class (shares of all the class's sequences; the legend gives the firing rates)."),
        )?;
    }
    Ok(())
}

fn enrichment_table(
    context: &mut ReduceContext,
    _s: &Scope,
    table: &crate::report::ParquetTable,
) -> anyhow::Result<()> {
    let feature = table.integers("feature")?;
    let (id, name) = (table.strings("jaspar_id")?, table.strings("jaspar_name")?);
    let (tw, tt) = (table.integers("top_with")?, table.integers("top_total")?);
    let (rw, rt) = (table.integers("rest_with")?, table.integers("rest_total")?);
    let (odds, q) = (table.f64s("odds_ratio")?, table.f64s("q_value")?);
    let mut best: BTreeMap<i64, usize> = BTreeMap::new();
    for i in 0..table.rows() {
        let e = best.entry(feature[i]).or_insert(i);
        if q[i] < q[*e] {
            *e = i;
        }
    }
    let mut rows: Vec<usize> = best.into_values().collect();
    rows.sort_by(|&a, &b| q[a].total_cmp(&q[b]));
    let significant = rows.iter().filter(|&&i| q[i] < 0.05).count();
    context.report().paragraph(&format!(
        "JASPAR enrichment: {significant} of {} features tested have a motif enriched among their top sequences at q < 0.05 (one-sided Fisher test against all other held-out sequences, BH over the database per feature).",
        rows.len()
    ));
    let mut html = HtmlTable::new(
        "Each tested feature's most enriched JASPAR motif among its top sequences.",
        &[
            "feature",
            "motif",
            "top with",
            "rest with",
            "odds ratio",
            "q",
        ],
    );
    for &i in rows.iter().take(20) {
        html.row(vec![
            feature[i].to_string(),
            format!("{} {}", id[i], name[i]),
            format!("{}/{}", tw[i], tt[i]),
            format!("{}/{}", rw[i], rt[i]),
            format_number(odds[i]),
            format_number(q[i]),
        ]);
    }
    context.report().table(html);
    Ok(())
}

/// `genolens probe`: linear probes by layer, fitted on `train_split`, scored on `--split`.
pub fn run_probes(
    context: &mut ExperimentContext,
    model: &str,
    data: &Path,
    train_split: &str,
    alpha: f64,
) -> anyhow::Result<()> {
    let loaded = context.load_model(model)?;
    let path = context.data_file(data)?;
    let inputs = read_inputs(&path, loaded.tokenizer.max_sequence_length())?;
    let held_out = context.split();
    let mut train_examples = split_examples(&inputs, train_split);
    let mut test_examples = split_examples(&inputs, &held_out);
    if let Some(n) = context.take_limit() {
        train_examples.truncate(n);
        test_examples.truncate(n);
        context.set_config("limit_per_split", n);
    }
    context.set_config("train_split", train_split);
    context.set_config("held_out_split", held_out);
    context.set_config("probe_alpha", alpha);
    let settings = ProbeSettings {
        alpha,
        seed: context.seed,
        ..Default::default()
    };
    let rows = probe_layers(
        &loaded,
        &train_examples,
        &test_examples,
        &settings,
        context.batch_options("").batch_size,
    )?;
    let mut table = context.table("probes")?;
    table.write_all(&rows)?;
    table.finish()?;
    Ok(())
}

/// The reduce step of `genolens probe`: the AUROC-by-layer figure and a table.
pub fn reduce_probes(context: &mut ReduceContext) -> anyhow::Result<()> {
    let probes = context.read_table("probes")?;
    let (layer, pooling) = (probes.integers("layer")?, probes.strings("pooling")?);
    let auroc = probes.f64s("auroc")?;
    let s = &Scope::default();
    let best = (0..probes.rows()).max_by(|&a, &b| auroc[a].total_cmp(&auroc[b]));
    context.set_title(
        "Linear probes by layer",
        &match best {
            Some(i) => format!(
                "Best held-out AUROC {} at layer {} ({} pooling).",
                format_number(auroc[i]),
                layer[i],
                pooling[i]
            ),
            None => "No probes.".into(),
        },
    );
    probe_figure(context, s, &probes)?;
    let (low, high, accuracy, train) = (
        probes.f64s("auroc_low")?,
        probes.f64s("auroc_high")?,
        probes.f64s("accuracy")?,
        probes.f64s("train_auroc")?,
    );
    let hook = probes.strings("hook")?;
    let mut table = HtmlTable::new(
        "Probes (held-out AUROC with 95 % bootstrap CI; training AUROC shows overfitting).",
        &[
            "layer",
            "hook",
            "pooling",
            "AUROC",
            "95 % CI",
            "accuracy",
            "train AUROC",
        ],
    );
    for i in 0..probes.rows() {
        table.row(vec![
            layer[i].to_string(),
            hook[i].clone(),
            pooling[i].clone(),
            format_number(auroc[i]),
            format!("{}–{}", format_number(low[i]), format_number(high[i])),
            format_number(accuracy[i]),
            format_number(train[i]),
        ]);
    }
    context.report().table(table);
    Ok(())
}

fn probe_figure(
    context: &mut ReduceContext,
    s: &Scope,
    probes: &crate::report::ParquetTable,
) -> anyhow::Result<()> {
    let (layer, pooling) = (probes.integers("layer")?, probes.strings("pooling")?);
    let (auroc, low, high) = (
        probes.f64s("auroc")?,
        probes.f64s("auroc_low")?,
        probes.f64s("auroc_high")?,
    );
    let mut by_pooling: BTreeMap<String, Series> = BTreeMap::new();
    for i in 0..probes.rows() {
        by_pooling
            .entry(pooling[i].clone())
            .or_insert_with(|| Series::banded(format!("{} pooling", pooling[i])))
            .push_banded(layer[i] as f64, auroc[i], low[i], high[i]);
    }
    let svg = line_plot(&LinePlot {
        name: s.file("probe_auroc_by_layer.svg"),
        title: "Linear probes by layer (held-out AUROC, 95 % bootstrap CI)".into(),
        x_label: "layer (0 = embeddings)".into(),
        y_label: "AUROC".into(),
        series: by_pooling.into_values().collect(),
    })?;
    context.figure(&s.file("probe_auroc_by_layer.svg"), &svg, "Logistic regression on each layer's [CLS] vector and k-mer mean, fitted on training sequences, scored on held-out ones. Where the curve rises is where the label becomes linearly decodable.")?;
    Ok(())
}

/// Reads an SAE folder written by `sae train` (SAELens layout with the genolens block).
pub fn read_sae(dir: &Path) -> anyhow::Result<(Sae, String, serde_json::Value)> {
    layout::load(dir).with_context(|| format!("reading the SAE in {}", dir.display()))
}
