//! The command line: clap argument structs, their conversion into each command's settings, and
//! what each command prints (a result type with `Display`). `main.rs` parses and dispatches.

use std::fmt;
use std::path::PathBuf;

use anyhow::{bail, Context};
use candle_core::Device;
use clap::{Args, Parser, Subcommand};

use crate::commands::embed::{default_out, run_embed, EmbedSettings, Pooling};
use crate::data::TableColumns;
use crate::experiment::{Experiment, ExperimentContext, RunSettings};
use crate::model::{load, LoadOptions, LoadedModel};
use crate::train::adamw::AdamWSettings;

/// Mechanistic interpretability for genomic language models (DNABERT).
#[derive(Parser)]
#[command(name = "genolens", version, about)]
pub struct Cli {
    /// More logging (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Where to compute: cpu, cuda or cuda:N (cuda needs a build with --features cuda).
    #[arg(long, default_value = "cpu", global = true)]
    pub device: String,
    /// Seed for every random choice (same seed, same inputs -> identical tables).
    #[arg(long, default_value_t = 0, global = true)]
    pub seed: u64,
    /// Reproduce DNABERT's pretraining-time MLM logits (its transformers 2.5 fork added the
    /// output bias twice): applies to every model a command loads.
    #[arg(long, global = true)]
    pub legacy_double_bias: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Describe a model: config, parameter count, hook names, tokenizer facts.
    Inspect(InspectArgs),
    /// Write one pooled vector per sequence from any hook to Parquet (long format).
    Embed(EmbedArgs),
    /// Each sequence's tokens with the nucleotide span of each (tokens.parquet), for any model.
    Tokenize(TokenizeArgs),
    /// Datasets: describe a sequence file, scan motifs, rebuild data/ from the raw sources.
    #[command(subcommand)]
    Data(DataCommand),
    /// A classifier's test AUROC and per-class accuracy, compared with the k-mer baseline (paired bootstrap).
    Evaluate(EvaluateArgs),
    /// Store a model folder's weights as another type (f16 for committing), measuring the change.
    Convert(ConvertArgs),
    /// Train k-mer BERTs: MLM pretraining, then classification fine-tuning (writes MODEL.md).
    #[command(subcommand)]
    Train(TrainCommand),
    /// Run a study from experiments/ end to end (or list them).
    Experiment(ExperimentArgs),
    /// Activation patching REF -> ALT of a variant table (id, sequence, alt_sequence): layer,
    /// position and head sweeps, random-pair null, figures and report.
    Patch(PatchArgs),
    /// Head ablation on a classifier: per-head importance, then the top p % of heads vs a
    /// layer-matched control vs random sets (ablated on z, before W_O).
    Ablate(AblateArgs),
    /// Attention-head statistics (entropy, [CLS]->variant attention, special-token mass), class
    /// tests per head, and per-token attention vs annotation features with a block-permutation null.
    Attention(AttentionArgs),
    /// Attribution of each sequence's class to its tokens and nucleotides by every method
    /// (gradient x input, integrated gradients, ISM, attention, rollout, GradCAM, Chefer LRP,
    /// AttnLRP, CP-LRP), with conservation checks, logos and a report.
    Attribute(AttributeArgs),
    /// Motifs a classifier reads: attributions of each class's sequences, seqlets (tangermeme's
    /// recursive caller), clusters into PWMs/CWMs, and TOMTOM against a MEME database (JASPAR).
    Motifs(MotifsArgs),
    /// Sparse autoencoders on any hook: train one (ReLU-L1, TopK, BatchTopK; SAELens layout) and
    /// ask what its features mean (class statistics, top sequences, JASPAR enrichment, fidelity).
    #[command(subcommand)]
    Sae(SaeCommand),
    /// Linear probes by layer ([CLS] and k-mer mean): where the label becomes linearly decodable.
    Probe(ProbeArgs),
    /// Concatenate the shards of a sharded experiment run and write its statistics, figures and report.
    Merge(MergeArgs),
}

#[derive(Subcommand)]
pub enum SaeCommand {
    /// Cache a hook's activations (or read an embeddings.parquet), train an SAE on the training
    /// split, then measure it on held-out sequences.
    Train(SaeTrainArgs),
    /// A saved SAE (SAELens layout, from `sae train`) on held-out sequences: metrics, fidelity,
    /// class statistics, top sequences, JASPAR enrichment.
    Analyze(SaeAnalyzeArgs),
}

#[derive(Subcommand)]
pub enum DataCommand {
    /// Counts, length distribution, GC, N content and class balance of a sequence file.
    Info(DataInfoArgs),
    /// Motif hits (FIMO-style: log-odds, exact p-values, both strands) of a MEME file, to Parquet.
    Scan(DataScanArgs),
    /// REF/ALT windows centred on each SNV of a VCF or GTEx-style QTL table, to Parquet.
    Variants(DataVariantsArgs),
    /// Rebuild every derived dataset under --out from the raw inputs (run by `just data`).
    Build(DataBuildArgs),
}

#[derive(Subcommand)]
pub enum TrainCommand {
    /// MLM pretraining (DNABERT span masking); rerunning the same command resumes from out/checkpoint.
    /// The defaults are the committed mini-dnabert6's settings.
    Mlm(TrainMlmArgs),
    /// Fine-tune a pretrained model on a dataset table (sequence, label, split).
    Classify(TrainClassifyArgs),
}

/// Arguments of `genolens inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// Model folder (config.json, vocab.txt, weights) or Hugging Face hub id (default: the
    /// committed mini-dnabert6-promoters).
    #[arg(long, default_value = crate::defaults::MODEL)]
    pub model: String,
}

/// Arguments of `genolens embed`.
#[derive(Args)]
pub struct EmbedArgs {
    /// Model folder or hub id (default: the committed mini-dnabert6-promoters).
    #[arg(long, default_value = crate::defaults::MODEL)]
    pub model: String,
    /// Sequences: FASTA (.fa/.fasta[.gz]), CSV, TSV or Parquet table.
    #[arg(long)]
    pub data: PathBuf,
    /// Hook to read, e.g. blocks.5.hook_normalized_resid_post (a block output) or hook_cls.
    #[arg(long, default_value = "hook_cls")]
    pub hook: String,
    /// Pooling over positions for per-token hooks.
    #[arg(long, value_enum, default_value = "cls")]
    pub pooling: Pooling,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Output folder (default reports/embed/<data stem>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Sequence column of a table.
    #[arg(long, default_value = "sequence")]
    pub sequence_column: String,
    /// Id column of a table (row numbers when absent).
    #[arg(long, default_value = "id")]
    pub id_column: String,
    /// Label column of a table, copied into the output.
    #[arg(long)]
    pub label_column: Option<String>,
}

/// Arguments of `genolens tokenize`.
#[derive(Args)]
pub struct TokenizeArgs {
    /// Model folder or hub id whose tokenizer to use (default: the committed
    /// mini-dnabert6-promoters).
    #[arg(long, default_value = crate::defaults::MODEL)]
    pub model: String,
    /// Sequences: FASTA (.fa/.fasta[.gz]), CSV, TSV or Parquet table.
    #[arg(long)]
    pub data: PathBuf,
    /// Output folder (default reports/tokenize/<data stem>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Sequence column of a table.
    #[arg(long, default_value = "sequence")]
    pub sequence_column: String,
    /// Id column of a table (row numbers when absent).
    #[arg(long, default_value = "id")]
    pub id_column: String,
}

impl TokenizeArgs {
    /// Tokenizes the sequences into tokens.parquet.
    pub fn run(self, globals: &Globals) -> anyhow::Result<crate::commands::tokenize::Tokenized> {
        let loaded = load_model(&self.model, globals.load_options())?;
        let out = self
            .out
            .unwrap_or_else(|| crate::commands::tokenize::default_out(&self.data));
        let columns = TableColumns {
            sequence: self.sequence_column,
            id: self.id_column,
            label: None,
        };
        Ok(crate::commands::tokenize::run_tokenize(
            &loaded,
            &self.data,
            &columns,
            &out,
            globals.seed,
        )?)
    }
}

/// Arguments of `genolens evaluate`.
#[derive(Args)]
pub struct EvaluateArgs {
    /// Classifier folder or hub id (default: the committed mini-dnabert6-promoters).
    #[arg(long, default_value = crate::defaults::MODEL)]
    pub model: String,
    /// Dataset table with sequence, label and split columns (default: the dataset the model was
    /// fine-tuned on, recorded in its config.json).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Append the result to the model folder's MODEL.md.
    #[arg(long)]
    pub append_to_card: bool,
}

/// Arguments of `genolens convert`.
#[derive(Args)]
pub struct ConvertArgs {
    /// Model folder to read (f32).
    #[arg(long)]
    pub model: PathBuf,
    /// New folder to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Stored type: f16, bf16 or f32.
    #[arg(long, default_value = "f16")]
    pub dtype: String,
    /// Sequences to compare the two models on.
    #[arg(long, default_value = "data/human-promoters.parquet")]
    pub check_data: PathBuf,
    /// How many of them.
    #[arg(long, default_value_t = 64)]
    pub check_sequences: usize,
}

/// Arguments of `genolens experiment`.
#[derive(Args)]
pub struct ExperimentArgs {
    /// Experiment name (see --list).
    pub name: Option<String>,
    /// List the experiments.
    #[arg(long)]
    pub list: bool,
    /// Model override, folder or hub id (default: the experiment's; most use the committed
    /// mini-dnabert6-promoters).
    #[arg(long)]
    pub model: Option<String>,
    /// Data override (default: the experiment's; most use data/human-promoters.parquet).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Rows of a table with a `split` column to use: train, valid, test (default) or all.
    #[arg(long)]
    pub split: Option<String>,
    /// Use only the first N sequences.
    #[arg(long, value_parser = parse_limit)]
    pub limit: Option<usize>,
    /// Output root.
    #[arg(long, default_value = "reports")]
    pub reports: PathBuf,
    /// Run id (default: UTC start time and seed; required with --shard).
    #[arg(long)]
    pub run_id: Option<String>,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Run only part i of n (0-based), e.g. --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT;
    /// then `genolens merge RUN_DIR`.
    #[arg(long)]
    pub shard: Option<crate::experiment::Shard>,
}

/// Arguments of `genolens merge`.
#[derive(Args)]
pub struct MergeArgs {
    /// The run folder (reports/<experiment>/<run-id>).
    pub run_dir: PathBuf,
}

/// Arguments of `genolens data info`.
#[derive(Args)]
pub struct DataInfoArgs {
    /// FASTA (.fa/.fasta[.gz]), CSV, TSV or Parquet table.
    pub file: PathBuf,
    /// Label column of a table (default: `label` when the table has one).
    #[arg(long)]
    pub label_column: Option<String>,
}

/// Arguments of `genolens data scan`.
#[derive(Args)]
pub struct DataScanArgs {
    /// Motifs in MEME format (e.g. data/jaspar/JASPAR2024_CORE_vertebrates.meme).
    #[arg(long)]
    pub motifs: PathBuf,
    /// Sequences: FASTA, CSV, TSV or Parquet.
    #[arg(long)]
    pub sequences: PathBuf,
    /// Report windows with p below this (strictly between 0 and 1).
    #[arg(
        long,
        default_value_t = 1e-4,
        value_parser = parse_p_threshold,
        allow_negative_numbers = true
    )]
    pub p_threshold: f64,
    /// Scan the given strand only.
    #[arg(long)]
    pub forward_only: bool,
    /// Output Parquet (default reports/motif-scan/<stem>.parquet).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Arguments of `genolens data variants`.
#[derive(Args)]
pub struct DataVariantsArgs {
    /// Reference FASTA (plain or gzip) of the same genome build.
    #[arg(long)]
    pub reference: PathBuf,
    /// VCF (plain or bgzip).
    #[arg(
        long,
        conflicts_with = "qtl_table",
        required_unless_present = "qtl_table"
    )]
    pub vcf: Option<PathBuf>,
    /// GTEx/GV-Rep-style table: chr, variant_pos (1-based), ref, alt, slope, pval_nominal, pval_nominal_threshold.
    #[arg(long)]
    pub qtl_table: Option<PathBuf>,
    /// How a QTL table's rows become labels (required with --qtl-table).
    #[arg(long, value_enum)]
    pub label_rule: Option<crate::data::variants::QtlLabelRule>,
    /// Window length (at least 1); the variant sits at length / 2.
    #[arg(long, default_value_t = 1024, value_parser = parse_window_length)]
    pub length: usize,
    /// Output Parquet.
    #[arg(long)]
    pub out: PathBuf,
}

/// Arguments of `genolens data build`.
#[derive(Args)]
pub struct DataBuildArgs {
    /// Raw inputs extracted by scripts/data.sh.
    #[arg(long, default_value = "data/cache/raw")]
    pub raw: PathBuf,
    /// Where the committed datasets go.
    #[arg(long, default_value = "data")]
    pub out: PathBuf,
    /// Where the (uncommitted) pretraining corpus goes.
    #[arg(long, default_value = "data/cache")]
    pub cache: PathBuf,
}

/// Arguments of `genolens train mlm`.
#[derive(Args)]
pub struct TrainMlmArgs {
    /// Training FASTA.
    #[arg(long, default_value = "data/cache/pretrain-corpus.fa.gz")]
    pub corpus: PathBuf,
    /// Held-out FASTA for validation.
    #[arg(long, default_value = "data/cache/pretrain-heldout.fa.gz")]
    pub heldout: PathBuf,
    /// Output model folder.
    #[arg(long, default_value = "data/models/mini-dnabert6")]
    pub out: PathBuf,
    /// k of the k-mer vocabulary.
    #[arg(long, default_value_t = 6)]
    pub k: usize,
    /// Encoder layers.
    #[arg(long, default_value_t = 6)]
    pub layers: usize,
    /// Hidden size.
    #[arg(long, default_value_t = 128)]
    pub hidden: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    /// MLP width.
    #[arg(long, default_value_t = 512)]
    pub intermediate: usize,
    /// Position embeddings (longest input in tokens).
    #[arg(long, default_value_t = 512)]
    pub max_positions: usize,
    /// Window length in bases.
    #[arg(long, default_value_t = 256)]
    pub window: usize,
    /// Windows per step.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Optimiser steps.
    #[arg(long, default_value_t = 2400)]
    pub steps: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Warm-up fraction of the steps.
    #[arg(long, default_value_t = 0.05)]
    pub warmup: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Fraction of k-mer tokens masked.
    #[arg(long, default_value_t = 0.15)]
    pub mask_rate: f64,
    /// Validate every N steps.
    #[arg(long, default_value_t = 300)]
    pub eval_every: usize,
    /// Held-out windows to validate on.
    #[arg(long, default_value_t = 256)]
    pub eval_windows: usize,
    /// Save a resumable checkpoint every N steps.
    #[arg(long, default_value_t = 300)]
    pub checkpoint_every: usize,
    /// Stop after N steps of this invocation (resume later with the same command).
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// Embedding init of a fresh run: kmer (k-mer rows composed per offset and base,
    /// sinusoidal positions; breaks the k-mer MLM plateau) or bert (HF BERT's i.i.d. N(0, 0.02)).
    #[arg(long, default_value = "kmer")]
    pub init: crate::train::kmer_init::InitScheme,
    /// Continue pretraining a finished MLM (a model folder): its weights and architecture
    /// (config.json; the shape options above must match it), a fresh optimiser and schedule.
    /// Use a new --seed so the windows and masks differ from the first run's.
    #[arg(long)]
    pub from: Option<PathBuf>,
}

/// Arguments of `genolens train classify`.
#[derive(Args)]
pub struct TrainClassifyArgs {
    /// Dataset table.
    #[arg(long)]
    pub data: PathBuf,
    /// Pretrained MLM folder.
    #[arg(long, default_value = "data/models/mini-dnabert6")]
    pub init: PathBuf,
    /// Output model folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Epochs.
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Sequences per step.
    #[arg(long, default_value_t = 48)]
    pub batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f64,
    /// Warm-up fraction.
    #[arg(long, default_value_t = 0.1)]
    pub warmup: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Dropout while training, at HF BERT's sites (BERT's and DNABERT's 0.1; 0 = none).
    #[arg(long, default_value_t = 0.1)]
    pub dropout: f64,
}

/// Settings every command shares.
pub struct Globals {
    /// Seed for every random choice.
    pub seed: u64,
    /// Where to compute.
    pub device: Device,
    /// `--legacy-double-bias`: DNABERT's pretraining-time MLM logits.
    pub legacy_double_bias: bool,
}

impl Globals {
    /// Load options for every model a command loads.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            device: self.device.clone(),
            legacy_double_bias: self.legacy_double_bias,
            ..Default::default()
        }
    }
}

impl Cli {
    /// Sets up logging to stderr at the `-v` level (or `RUST_LOG`).
    pub fn init_logging(&self) {
        let level = match self.verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        };
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| level.into()),
            )
            .with_writer(std::io::stderr)
            .init();
    }

    /// The global options, the device parsed.
    pub fn globals(&self) -> anyhow::Result<Globals> {
        let backend = crate::device::cpu_matmul_backend()?;
        tracing::info!("CPU matrix products: {backend}");
        Ok(Globals {
            seed: self.seed,
            device: crate::device::parse_device(&self.device)?,
            legacy_double_bias: self.legacy_double_bias,
        })
    }
}

fn load_model(model: &str, options: LoadOptions) -> anyhow::Result<LoadedModel> {
    load(model, &options).with_context(|| format!("loading model {model}"))
}

impl InspectArgs {
    /// The model's description (config, head, hooks, tokenizer).
    pub fn run(self, globals: &Globals) -> anyhow::Result<String> {
        let loaded = load_model(&self.model, globals.load_options())?;
        Ok(crate::commands::inspect::describe(&loaded))
    }
}

impl EmbedArgs {
    /// The settings of `run_embed`.
    pub fn settings(self, globals: &Globals) -> EmbedSettings {
        EmbedSettings {
            out: self.out.unwrap_or_else(|| default_out(&self.data)),
            data: self.data,
            hook: self.hook,
            pooling: self.pooling,
            batch_size: self.batch_size,
            columns: TableColumns {
                sequence: self.sequence_column,
                id: self.id_column,
                label: self.label_column,
            },
            seed: globals.seed,
        }
    }

    /// Embeds the sequences.
    pub fn run(self, globals: &Globals) -> anyhow::Result<Embedded> {
        let loaded = load_model(&self.model, globals.load_options())?;
        let settings = self.settings(globals);
        let counts = run_embed(&loaded, &settings)?;
        Ok(Embedded {
            counts,
            table: settings.out.join("embeddings.parquet"),
        })
    }
}

/// What `embed` wrote.
pub struct Embedded {
    /// What the tokenizer counted.
    pub counts: crate::analysis::TokenizationCounts,
    /// The table.
    pub table: PathBuf,
}

impl fmt::Display for Embedded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        write!(
            f,
            "embedded {} sequences ({} with N/IUPAC bases, {} of {} k-mers -> [UNK]) -> {}",
            c.sequences,
            c.sequences_with_ambiguous_bases,
            c.unknown_tokens,
            c.kmer_tokens,
            self.table.display()
        )
    }
}

impl EvaluateArgs {
    /// Evaluates the classifier (and appends the result to its card when asked).
    pub fn run(self, globals: &Globals) -> anyhow::Result<Evaluated> {
        let loaded = load_model(&self.model, globals.load_options())?;
        let data = crate::commands::evaluate::resolve_data(&loaded, self.data.as_deref())?;
        let evaluation = crate::commands::evaluate::run_evaluate(&loaded, &data, self.batch_size)?;
        let markdown = evaluation.markdown(&data);
        if self.append_to_card {
            crate::train::card::append_to_card(
                &loaded.source.dir,
                &format!("\n## Evaluated with `genolens evaluate`\n\n{markdown}"),
            )?;
        }
        Ok(Evaluated { markdown })
    }
}

/// `evaluate`'s result as markdown.
pub struct Evaluated {
    /// The tables.
    pub markdown: String,
}

impl fmt::Display for Evaluated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.markdown)
    }
}

impl ConvertArgs {
    /// Converts and checks the model.
    pub fn run(self) -> anyhow::Result<Converted> {
        let dtype = crate::commands::convert::parse_dtype(&self.dtype)?;
        let check = crate::commands::convert::run_convert(
            &self.model,
            &self.out,
            dtype,
            &self.check_data,
            self.check_sequences,
        )?;
        Ok(Converted {
            model: self.model,
            out: self.out,
            check,
        })
    }
}

/// What `convert` wrote and measured.
pub struct Converted {
    /// The input folder.
    pub model: PathBuf,
    /// The new folder.
    pub out: PathBuf,
    /// The measured change.
    pub check: crate::commands::convert::ConversionCheck,
}

impl fmt::Display for Converted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let check = &self.check;
        write!(
            f,
            "{} -> {} ({}): on {} sequences, max |Δ logits| {:.2e}, max |Δ last hidden| {:.2e}",
            self.model.display(),
            self.out.display(),
            check.dtype,
            check.sequences,
            check.max_logit_difference,
            check.max_hidden_difference,
        )?;
        if let Some(p) = check.max_probability_difference {
            write!(f, ", max |Δ P(label 1)| {p:.2e}")?;
        }
        Ok(())
    }
}

impl ExperimentArgs {
    /// The runner's settings.
    pub fn settings(self, globals: &Globals) -> RunSettings {
        RunSettings {
            reports_root: self.reports,
            run_id: self.run_id,
            seed: globals.seed,
            device: globals.device.clone(),
            legacy_double_bias: globals.legacy_double_bias,
            model: self.model,
            data: self.data,
            split: self.split,
            limit: self.limit,
            batch_size: self.batch_size,
            shard: self.shard,
            out_dir: None,
            command: None,
        }
    }

    /// Lists the experiments, or runs one (map step, then reduce unless sharded).
    pub fn run(
        self,
        globals: &Globals,
        experiments: &'static [Experiment],
    ) -> anyhow::Result<ExperimentOutcome> {
        let Some(name) = self.name.clone().filter(|_| !self.list) else {
            return Ok(ExperimentOutcome::Listed(experiments));
        };
        let Some(experiment) = experiments.iter().find(|e| e.name == name) else {
            let names: Vec<_> = experiments.iter().map(|e| e.name).collect();
            bail!("no experiment {name:?}; available: {}", names.join(", "));
        };
        let shard = self.shard;
        let mut context = ExperimentContext::new(experiment.name, self.settings(globals))?;
        (experiment.run)(&mut context).with_context(|| format!("experiment {name}"))?;
        let out_dir = context.finish(experiment.reduce)?;
        Ok(ExperimentOutcome::Finished {
            name,
            out_dir,
            shard,
        })
    }
}

/// What `experiment` did.
pub enum ExperimentOutcome {
    /// `--list` (or no name): every experiment.
    Listed(&'static [Experiment]),
    /// A run (or one shard of one) finished.
    Finished {
        /// Experiment name.
        name: String,
        /// Its run folder.
        out_dir: PathBuf,
        /// The shard, if one.
        shard: Option<crate::experiment::Shard>,
    },
}

impl fmt::Display for ExperimentOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExperimentOutcome::Listed(experiments) => {
                for (index, experiment) in experiments.iter().enumerate() {
                    if index > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{:<28} {}", experiment.name, experiment.description)?;
                }
                Ok(())
            }
            ExperimentOutcome::Finished {
                name,
                out_dir,
                shard: None,
            } => write!(
                f,
                "experiment {name} finished -> {} (report: {})",
                out_dir.display(),
                out_dir.join("report.html").display()
            ),
            ExperimentOutcome::Finished {
                name,
                out_dir,
                shard: Some(shard),
            } => write!(
                f,
                "experiment {name} shard {shard} finished -> {} (merge the shards with `genolens merge {}`)",
                out_dir.display(),
                out_dir.display()
            ),
        }
    }
}

impl MergeArgs {
    /// Merges the shards and runs the reduce step.
    pub fn run(self, experiments: &[Experiment]) -> anyhow::Result<Merged> {
        let name = crate::experiment::merge(&self.run_dir, experiments)?;
        Ok(Merged {
            name,
            run_dir: self.run_dir,
        })
    }
}

/// What `merge` did.
pub struct Merged {
    /// Experiment name.
    pub name: String,
    /// The run folder.
    pub run_dir: PathBuf,
}

impl fmt::Display for Merged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "merged experiment {} -> {}",
            self.name,
            self.run_dir.join("report.html").display()
        )
    }
}

impl DataInfoArgs {
    /// The file's summary.
    pub fn run(self) -> anyhow::Result<String> {
        let summary =
            crate::commands::data_info::summarise(&self.file, self.label_column.as_deref())?;
        Ok(summary.render(&self.file))
    }
}

impl DataScanArgs {
    /// The scan's settings.
    pub fn settings(self, globals: &Globals) -> crate::commands::motif_scan::ScanSettings {
        crate::commands::motif_scan::ScanSettings {
            out: self
                .out
                .unwrap_or_else(|| crate::commands::motif_scan::default_scan_out(&self.sequences)),
            motifs: self.motifs,
            sequences: self.sequences,
            options: crate::motif::ScanOptions {
                p_threshold: self.p_threshold,
                both_strands: !self.forward_only,
                ..Default::default()
            },
            seed: globals.seed,
        }
    }

    /// Scans.
    pub fn run(self, globals: &Globals) -> anyhow::Result<Counted> {
        let settings = self.settings(globals);
        let (sequences, hits) = crate::commands::motif_scan::run_scan(&settings)?;
        Ok(Counted(format!(
            "{hits} hits in {sequences} sequences -> {}",
            settings.out.display()
        )))
    }
}

/// A one-line summary of what a command wrote.
pub struct Counted(pub String);

impl fmt::Display for Counted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl DataVariantsArgs {
    /// Writes the variant windows.
    pub fn run(self, globals: &Globals) -> anyhow::Result<Counted> {
        use crate::commands::variant_windows::{run_variant_windows, VariantSource};
        let source = match (self.vcf, self.qtl_table) {
            (Some(vcf), _) => VariantSource::Vcf(vcf),
            (None, Some(table)) => {
                let Some(rule) = self.label_rule else {
                    bail!("--qtl-table needs --label-rule significance|slope-sign (GV-Rep's slope sign is not a functional label; choose explicitly)");
                };
                VariantSource::Qtl(table, rule)
            }
            (None, None) => bail!("give --vcf or --qtl-table"),
        };
        let (written, skipped) = run_variant_windows(
            &source,
            &self.reference,
            self.length,
            &self.out,
            globals.seed,
        )?;
        Ok(Counted(format!(
            "{written} SNV windows ({skipped} non-SNV records skipped) -> {}",
            self.out.display()
        )))
    }
}

impl DataBuildArgs {
    /// Rebuilds every dataset.
    pub fn run(self) -> anyhow::Result<Counted> {
        let built = crate::datasets::build_all(&self.raw, &self.out, &self.cache)?;
        let lines: Vec<String> = built
            .iter()
            .map(|b| format!("{:<22} {:>9} rows  {}", b.name, b.rows, b.files.join(" ")))
            .collect();
        Ok(Counted(lines.join("\n")))
    }
}

impl TrainMlmArgs {
    /// The trainer's settings.
    pub fn settings(self, globals: &Globals) -> crate::train::mlm::MlmSettings {
        let vocab = 4usize.pow(self.k as u32) + 5;
        let config = crate::model::ModelConfig::bert(
            vocab,
            self.layers,
            self.hidden,
            self.heads,
            self.intermediate,
            self.max_positions,
        );
        crate::train::mlm::MlmSettings {
            corpus: self.corpus,
            heldout: self.heldout,
            out: self.out,
            config,
            window: self.window,
            batch_size: self.batch_size,
            steps: self.steps,
            learning_rate: self.lr,
            warmup_fraction: self.warmup,
            adamw: AdamWSettings::with_weight_decay(self.weight_decay),
            mask_rate: self.mask_rate,
            seed: globals.seed,
            eval_every: self.eval_every,
            eval_windows: self.eval_windows,
            checkpoint_every: self.checkpoint_every,
            stop_after: self.stop_after,
            init: self.init,
            from: self.from,
        }
    }

    /// Trains (or resumes).
    pub fn run(self, globals: &Globals) -> anyhow::Result<Counted> {
        let settings = self.settings(globals);
        let report = crate::commands::train::run_train_mlm(&settings, &globals.device)?;
        Ok(Counted(format!(
            "step {}/{}: held-out MLM loss {:.4}, accuracy {:.4} -> {}",
            report.step,
            settings.steps,
            report.heldout.loss,
            report.heldout.accuracy,
            settings.out.display()
        )))
    }
}

impl TrainClassifyArgs {
    /// The trainer's settings.
    pub fn settings(self, globals: &Globals) -> crate::train::classify::ClassifySettings {
        crate::train::classify::ClassifySettings {
            data: self.data,
            init: self.init,
            out: self.out,
            epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.lr,
            warmup_fraction: self.warmup,
            adamw: AdamWSettings::with_weight_decay(self.weight_decay),
            seed: globals.seed,
            dropout: self.dropout,
        }
    }

    /// Fine-tunes and evaluates.
    pub fn run(self, globals: &Globals) -> anyhow::Result<Counted> {
        let settings = self.settings(globals);
        let report = crate::commands::train::run_train_classify(&settings, &globals.device)?;
        Ok(Counted(format!(
            "test AUROC {:.4} ({:.4}-{:.4}), accuracy {:.4} -> {}",
            report.test.auroc.value,
            report.test.auroc.low,
            report.test.auroc.high,
            report.test.accuracy,
            settings.out.display()
        )))
    }
}

/// Arguments of `genolens patch`.
#[derive(Args)]
pub struct PatchArgs {
    /// Model folder or hub id (default: the committed pretrained mini-dnabert6; read as an
    /// encoder, its final [CLS] vector compared).
    #[arg(long, default_value = crate::defaults::PRETRAINED_MODEL)]
    pub model: String,
    /// Variant table (Parquet): id, sequence (REF, the clean run), alt_sequence (ALT, the
    /// corrupt run), optionally variant_offset, label, split; `genolens data variants` writes one.
    #[arg(long)]
    pub data: PathBuf,
    /// Sites of the layer × position sweep (repeat or comma-separate): resid_pre,
    /// normalized_resid_post, attn_out, mlp_out. The layer sweep always covers all four and the
    /// head sweep patches z.
    #[arg(long, value_delimiter = ',', default_value = "resid_pre")]
    pub site: Vec<crate::analysis::patching::PatchSite>,
    /// Positions of the position sweep: window:W (W tokens each side of the variant's tokens,
    /// plus [CLS] and [SEP]) or all.
    #[arg(long, default_value = "window:10")]
    pub positions: crate::analysis::variant_pairs::Positions,
    /// Bases of context kept around each variant (default: the model's whole window).
    #[arg(long)]
    pub context_nt: Option<usize>,
    /// Rows of a table with a `split` column: train, valid, test (default) or all.
    #[arg(long)]
    pub split: Option<String>,
    /// Use only the first N pairs.
    #[arg(long, value_parser = parse_limit)]
    pub limit: Option<usize>,
    /// Output folder (default reports/patch/<data stem>).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl PatchArgs {
    /// Runs the patching study into the output folder.
    pub fn run(self, globals: &Globals) -> anyhow::Result<StudyRun> {
        use crate::analysis::patching::PatchSite;
        use crate::analysis::patching_study::{reduce_patching, run_patching, PatchingStudy};
        if self.site.contains(&PatchSite::Z) {
            bail!("--site z: heads are swept by the head sweep (z at every layer and head); choose resid_pre, normalized_resid_post, attn_out or mlp_out for the position sweep");
        }
        let stem = self
            .data
            .file_stem()
            .map(|s| s.to_string_lossy().trim_end_matches(".parquet").to_string())
            .unwrap_or_else(|| "pairs".into());
        let out = self
            .out
            .unwrap_or_else(|| PathBuf::from("reports/patch").join(stem));
        let study = PatchingStudy {
            default_model: self.model.clone(),
            default_data: self.data.clone(),
            position_sites: self.site,
            positions: self.positions,
            context_nt: self.context_nt.unwrap_or(usize::MAX),
            default_pairs: None,
        };
        let mut settings = command_settings(globals, "patch", self.model, Some(self.data), out);
        settings.split = self.split;
        settings.limit = self.limit;
        let mut context = ExperimentContext::new("patch", settings)?;
        run_patching(&mut context, &study)?;
        let out_dir = context.finish(Some(reduce_patching))?;
        Ok(StudyRun::new("patching", out_dir, "patching.parquet"))
    }
}

/// Arguments of `genolens ablate`.
#[derive(Args)]
pub struct AblateArgs {
    /// Sequence classifier (default: the committed mini-dnabert6-fly-core).
    #[arg(long, default_value = crate::defaults::FLY_CORE_MODEL)]
    pub model: String,
    /// Labelled table (sequence, label, split); default: the dataset the model was fine-tuned on.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// zero (z = 0) or mean (z = its per-position mean over the ranking split's sequences).
    #[arg(long, default_value = "zero")]
    pub ablation: crate::analysis::ablation::AblationKind,
    /// Percentages of all heads ablated together (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "5,10,20,30,40,50")]
    pub percents: Vec<f64>,
    /// Random head sets per percentage.
    #[arg(long, default_value_t = 20)]
    pub random_sets: usize,
    /// Split that ranks the heads (and supplies the means for mean ablation).
    #[arg(long, default_value = "valid")]
    pub rank_split: String,
    /// Split the sets are scored on.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Sequences per class drawn (seeded) from each split; 0 = every row.
    #[arg(long, default_value_t = 250)]
    pub per_class: usize,
    /// Rank heads by |score| from this table (columns layer, head and --score-column, e.g. the
    /// attention study's head × feature z-scores) instead of by importance on --rank-split.
    #[arg(long)]
    pub head_scores: Option<PathBuf>,
    /// Score column of --head-scores.
    #[arg(long, default_value = "z")]
    pub score_column: String,
    /// Keep only the rows of --head-scores where COLUMN equals VALUE (repeat to combine), e.g.
    /// `--score-filter feature=tata_kmer --score-filter score=received_max --score-filter
    /// subset=all` for the attention study's head_annotation.parquet.
    #[arg(long, value_name = "COLUMN=VALUE", value_parser = parse_filter)]
    pub score_filter: Vec<(String, String)>,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Output folder (default reports/ablate/<model name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl AblateArgs {
    /// Runs the ablation study into the output folder.
    pub fn run(self, globals: &Globals) -> anyhow::Result<StudyRun> {
        use crate::analysis::ablation_study::{reduce_ablation, run_ablation, AblationStudy};
        let name = std::path::Path::new(&self.model)
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "model".into());
        let out = self
            .out
            .unwrap_or_else(|| PathBuf::from("reports/ablate").join(name));
        let study = AblationStudy {
            default_model: self.model.clone(),
            default_data: self
                .data
                .clone()
                .unwrap_or_else(|| PathBuf::from(crate::defaults::DATA)),
            kind: self.ablation,
            percents: self.percents,
            random_sets: self.random_sets,
            rank_split: self.rank_split,
            per_class: (self.per_class > 0).then_some(self.per_class),
            head_scores: self.head_scores.map(|p| (p, self.score_column)),
            head_score_filters: self.score_filter,
        };
        let mut settings = command_settings(globals, "ablate", self.model, self.data, out);
        settings.split = Some(self.split);
        settings.batch_size = self.batch_size;
        let mut context = ExperimentContext::new("ablate", settings)?;
        run_ablation(&mut context, &study)?;
        let out_dir = context.finish(Some(reduce_ablation))?;
        Ok(StudyRun::new("ablation", out_dir, "set_ablation.parquet"))
    }
}

/// Arguments of `genolens attention`.
#[derive(Args)]
pub struct AttentionArgs {
    /// Model folder or hub id (default: the committed promoter classifier).
    #[arg(long, default_value = crate::defaults::MODEL)]
    pub model: String,
    /// Sequences: Parquet (id, sequence, optional label, label_name, split, variant_offset, and
    /// chrom + start [+ strand] or chrom + pos for --annotations), FASTA, CSV or TSV (loci from
    /// ids like chr20:1000-1250(+)).
    #[arg(long)]
    pub data: PathBuf,
    /// Folder of BED tracks (*.bed, *.bed.gz) to correlate per-token attention with, each a
    /// feature named by its file stem (e.g. data/annotations-chr20). The TATA k-mer, GC and
    /// position features are always correlated.
    #[arg(long)]
    pub annotations: Option<PathBuf>,
    /// Permutations of the block-shuffle null.
    #[arg(long, default_value_t = 100)]
    pub permutations: usize,
    /// Skip the per-token annotation correlation (head statistics and class tests only).
    #[arg(long)]
    pub no_correlation: bool,
    /// Bases each side of the variant in the [CLS] profiles.
    #[arg(long, default_value_t = 50)]
    pub profile_window: usize,
    /// Bases of context kept around each variant (default: the model's whole window; use the
    /// window the model was trained on, e.g. 256 for the committed mini-dnabert6).
    #[arg(long)]
    pub context_nt: Option<usize>,
    /// Rows of a table with a `split` column: train, valid, test (default) or all.
    #[arg(long)]
    pub split: Option<String>,
    /// Use only the first N sequences.
    #[arg(long, value_parser = parse_limit)]
    pub limit: Option<usize>,
    /// Sequences per forward pass (each holds every layer's attention maps).
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Output folder (default reports/attention/<data stem>).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl AttentionArgs {
    /// Runs the attention study into the output folder.
    pub fn run(self, globals: &Globals) -> anyhow::Result<StudyRun> {
        use crate::analysis::attention_study::{reduce_attention, run_attention, AttentionStudy};
        let stem = data_stem(&self.data);
        let out = self
            .out
            .unwrap_or_else(|| PathBuf::from("reports/attention").join(stem));
        let study = AttentionStudy {
            default_model: self.model.clone(),
            default_data: self.data.clone(),
            annotations: self.annotations,
            correlate: !self.no_correlation,
            permutations: self.permutations,
            profile_window_nt: self.profile_window,
            default_sequences: None,
            context_nt: self.context_nt.unwrap_or(usize::MAX),
        };
        let mut settings = command_settings(globals, "attention", self.model, Some(self.data), out);
        settings.split = self.split;
        settings.limit = self.limit;
        settings.batch_size = self.batch_size;
        let mut context = ExperimentContext::new("attention", settings)?;
        run_attention(&mut context, &study)?;
        let out_dir = context.finish(Some(reduce_attention))?;
        Ok(StudyRun::new("attention", out_dir, "head_stats.parquet"))
    }
}

/// Arguments of `genolens attribute`.
#[derive(Args)]
pub struct AttributeArgs {
    /// Model folder or hub id: a sequence classifier (default: the committed promoter classifier).
    #[arg(long, default_value = crate::defaults::MODEL)]
    pub model: String,
    /// Sequences: FASTA, CSV/TSV or Parquet (id, sequence[, label, split]).
    #[arg(long)]
    pub data: PathBuf,
    /// Methods, comma-separated or repeated: grad_x_input, integrated_gradients, ism, attention,
    /// rollout, gradcam, lrp, lrp_last, full_lrp, attnlrp, cp-lrp, or all.
    #[arg(long, default_value = "all", value_delimiter = ',')]
    pub method: Vec<String>,
    /// Class to explain (0-based; default: each sequence's predicted class).
    #[arg(long)]
    pub target: Option<usize>,
    /// Explain the class's log-probability instead of its logit (gradient methods and ISM).
    #[arg(long)]
    pub log_probability: bool,
    /// Integrated-gradients baseline: zero (all-zero word embeddings) or mask ([MASK] tokens).
    #[arg(long, default_value = "zero")]
    pub baseline: String,
    /// Integrated-gradients Gauss–Legendre steps to start from; doubled (up to 8×) for sequences
    /// whose completeness gap exceeds 1 % of |f(x) − f(baseline)|.
    #[arg(long, default_value_t = 50)]
    pub ig_steps: usize,
    /// How a token's score spreads over its bases: mean over the tokens covering a base
    /// (DNABERT's convention; for BPE and NT 6-mers seed 001's "passed on"), sum, or equal
    /// (score / token length, seed 001's "equally distributed": conserves the total).
    #[arg(long, default_value = "mean")]
    pub spread: String,
    /// ISM variants per forward pass.
    #[arg(long, default_value_t = 128)]
    pub ism_batch_size: usize,
    /// Sequences drawn as logos in the report (the most confident predictions).
    #[arg(long, default_value_t = 3)]
    pub logos: usize,
    /// Only sequences whose `label` column is this value (e.g. 1 for the promoters of
    /// human-promoters).
    #[arg(long)]
    pub label: Option<String>,
    /// Rows of a table with a `split` column: train, valid, test (default) or all.
    #[arg(long)]
    pub split: Option<String>,
    /// Use only the first N sequences.
    #[arg(long, value_parser = parse_limit)]
    pub limit: Option<usize>,
    /// Sequences per pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Output folder (default reports/attribution/<data stem>).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl AttributeArgs {
    /// Runs the attribution study into the output folder.
    pub fn run(self, globals: &Globals) -> anyhow::Result<StudyRun> {
        use crate::analysis::attribution::{Baseline, Spread, TargetKind};
        use crate::analysis::attribution_study::{
            parse_methods, reduce_attribution, run_attribution, AttributionStudy,
        };
        let stem = data_stem(&self.data);
        let out = self
            .out
            .unwrap_or_else(|| PathBuf::from("reports/attribution").join(stem));
        let mut study = AttributionStudy::new(&self.model, self.data.clone());
        study.methods = parse_methods(&self.method)?;
        study.target = self.target;
        if self.log_probability {
            study.target_kind = TargetKind::LogProbability;
        }
        study.baseline = match self.baseline.as_str() {
            "zero" => Baseline::Zero,
            "mask" => Baseline::Mask,
            other => anyhow::bail!("--baseline {other:?}: use zero or mask"),
        };
        study.spread = match self.spread.as_str() {
            "mean" => Spread::Mean,
            "sum" => Spread::Sum,
            "equal" => Spread::Equal,
            other => anyhow::bail!("--spread {other:?}: use mean, sum or equal"),
        };
        study.ig_steps = self.ig_steps;
        study.ism_batch_size = self.ism_batch_size;
        study.logos = self.logos;
        study.only_label = self.label;
        let mut settings = command_settings(globals, "attribute", self.model, Some(self.data), out);
        settings.split = self.split;
        settings.limit = self.limit;
        settings.batch_size = self.batch_size;
        let mut context = ExperimentContext::new("attribution", settings)?;
        run_attribution(&mut context, &study)?;
        let out_dir = context.finish(Some(reduce_attribution))?;
        Ok(StudyRun::new(
            "attribution",
            out_dir,
            "nucleotide_attributions.parquet",
        ))
    }
}

/// Arguments of `genolens motifs`.
#[derive(Args)]
pub struct MotifsArgs {
    /// Model folder or hub id: a sequence classifier (default: the committed TF classifier).
    #[arg(long, default_value = crate::defaults::TF_MODEL)]
    pub model: String,
    /// Labelled sequences: CSV/TSV or Parquet (id, sequence, label[, split]).
    #[arg(long)]
    pub data: PathBuf,
    /// Attribution methods whose nucleotide scores give the seqlets (see `attribute`).
    #[arg(long, default_value = "ism,attnlrp", value_delimiter = ',')]
    pub method: Vec<String>,
    /// Known motifs to compare with (MEME format).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/data/jaspar/JASPAR2024_CORE_vertebrates.meme"))]
    pub database: PathBuf,
    /// Column similarity of the comparison: pearson (MEME's tomtom) or euclidean (tomtom-lite).
    #[arg(long, default_value = "pearson")]
    pub similarity: String,
    /// Seqlet p-value threshold (the span and every inner span sharing its end).
    #[arg(long, default_value_t = 0.01)]
    pub seqlet_p: f64,
    /// Seqlets a motif needs.
    #[arg(long, default_value_t = 20)]
    pub min_seqlets: usize,
    /// Rows of a table with a `split` column: train, valid, test (default) or all.
    #[arg(long)]
    pub split: Option<String>,
    /// Sequences per class (default 300).
    #[arg(long, value_parser = parse_limit)]
    pub limit: Option<usize>,
    /// Sequences per pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Output folder (default reports/motifs/<data stem>).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl MotifsArgs {
    /// Runs the motif study into the output folder.
    pub fn run(self, globals: &Globals) -> anyhow::Result<StudyRun> {
        use crate::analysis::attribution_study::parse_methods;
        use crate::analysis::motifs_study::{reduce_motifs, run_motifs, MotifStudy};
        let stem = data_stem(&self.data);
        let out = self
            .out
            .unwrap_or_else(|| PathBuf::from("reports/motifs").join(stem));
        let mut study = MotifStudy::new(&self.model, self.data.clone());
        study.attribution.methods = parse_methods(&self.method)?;
        study.database = self.database;
        study.tomtom.similarity = crate::motif::ColumnSimilarity::parse(&self.similarity)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--similarity {:?}: use pearson or euclidean",
                    self.similarity
                )
            })?;
        if !(self.seqlet_p > 0.0 && self.seqlet_p < 1.0) {
            anyhow::bail!("--seqlet-p {} must be between 0 and 1", self.seqlet_p);
        }
        study.seqlets.threshold = self.seqlet_p;
        study.clusters.min_seqlets = self.min_seqlets;
        let mut settings = command_settings(globals, "motifs", self.model, Some(self.data), out);
        settings.split = self.split;
        settings.limit = self.limit;
        settings.batch_size = self.batch_size;
        let mut context = ExperimentContext::new("motifs", settings)?;
        run_motifs(&mut context, &study)?;
        let out_dir = context.finish(Some(reduce_motifs))?;
        Ok(StudyRun::new("motifs", out_dir, "motif_matches.parquet"))
    }
}

/// The file name of `path` up to its first dot ("data" when there is none).
fn data_stem(path: &std::path::Path) -> String {
    path.file_name()
        .map(|s| {
            s.to_string_lossy()
                .split('.')
                .next()
                .unwrap_or("data")
                .to_string()
        })
        .unwrap_or_else(|| "data".into())
}

/// `COLUMN=VALUE` of `--score-filter`.
fn parse_filter(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((column, value)) if !column.is_empty() => Ok((column.to_string(), value.to_string())),
        _ => Err(format!("expected COLUMN=VALUE, got {text:?}")),
    }
}

/// `--limit N`: at least 1 (a run on no sequences would only write empty tables).
fn parse_limit(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1 (leave --limit out to use every sequence)".into()),
        Ok(limit) => Ok(limit),
        Err(_) => Err(format!("expected a whole number ≥ 1, got {text:?}")),
    }
}

/// `data variants --length N`: at least 1 (the window must hold the variant).
fn parse_window_length(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1: the window must hold the variant".into()),
        Ok(length) => Ok(length),
        Err(_) => Err(format!(
            "expected a whole number of bases ≥ 1, got {text:?}"
        )),
    }
}

/// `data scan --p-threshold P`: a p-value strictly between 0 and 1 (at 1 or above every window
/// is a hit; at 0, below it or NaN none is).
fn parse_p_threshold(text: &str) -> Result<f64, String> {
    let p: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("expected a p-value between 0 and 1 such as 1e-4, got {text:?}"))?;
    if p > 0.0 && p < 1.0 {
        return Ok(p);
    }
    let outcome = if p >= 1.0 {
        "every window would be a hit"
    } else {
        "no window could be a hit"
    };
    Err(format!(
        "must be strictly between 0 and 1, such as 1e-4 ({outcome})"
    ))
}

/// The settings every study command starts from: global seed and device, the model and data,
/// the output folder, and the command's name for run.json.
fn command_settings(
    globals: &Globals,
    command: &str,
    model: String,
    data: Option<PathBuf>,
    out: PathBuf,
) -> RunSettings {
    let mut settings = RunSettings::new("reports");
    settings.seed = globals.seed;
    settings.device = globals.device.clone();
    settings.legacy_double_bias = globals.legacy_double_bias;
    settings.model = Some(model);
    settings.data = data;
    settings.out_dir = Some(out);
    settings.command = Some(command.into());
    settings
}

/// What a study command (`patch`, `ablate`, `attention`) wrote.
pub struct StudyRun {
    what: &'static str,
    /// The output folder.
    pub out_dir: PathBuf,
    table: &'static str,
}

impl StudyRun {
    fn new(what: &'static str, out_dir: PathBuf, table: &'static str) -> Self {
        StudyRun {
            what,
            out_dir,
            table,
        }
    }
}

impl fmt::Display for StudyRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} finished -> {} (report: {})",
            self.what,
            self.out_dir.join(self.table).display(),
            self.out_dir.join("report.html").display()
        )
    }
}

/// Options of `sae train` and `sae analyze` about what the features mean.
#[derive(Args, Clone)]
pub struct SaeMeaningArgs {
    /// Top activating sequences kept per feature (and tested for motifs).
    #[arg(long, default_value_t = 20)]
    pub top_k: usize,
    /// JASPAR motifs (MEME format) for the enrichment in top sequences.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/data/jaspar/JASPAR2024_CORE_vertebrates.meme"))]
    pub motifs: PathBuf,
    /// Skip the motif enrichment.
    #[arg(long)]
    pub no_motifs: bool,
    /// Features whose top sequences are tested (most class-specific first).
    #[arg(long, default_value_t = 20)]
    pub enrich_features: usize,
    /// Skip the fidelity check (splicing the reconstruction back in).
    #[arg(long)]
    pub no_fidelity: bool,
    /// Annotation folder for the concept F1 of token-level SAEs (--rows tokens), e.g.
    /// data/annotations-chr20 (BED tracks; jaspar_hits split per matrix). Sequences need loci.
    #[arg(long)]
    pub annotations: Option<PathBuf>,
    /// Features whose top 5 sequences get gradient × input attributions (0 = none).
    #[arg(long, default_value_t = 5)]
    pub attribution_features: usize,
    /// Held-out split the features are measured on (`all` = every row).
    #[arg(long)]
    pub split: Option<String>,
    /// At most N sequences per split.
    #[arg(long, value_parser = parse_limit)]
    pub limit: Option<usize>,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
}

impl SaeMeaningArgs {
    fn apply(&self, study: &mut crate::analysis::sae::study::SaeStudy) {
        study.top_k = self.top_k;
        study.motifs = (!self.no_motifs).then(|| self.motifs.clone());
        study.enrich_features = self.enrich_features;
        study.fidelity = !self.no_fidelity;
        study.annotations = self.annotations.clone();
        study.attribution_features = self.attribution_features;
    }
}

/// Arguments of `genolens sae train`.
#[derive(Args)]
pub struct SaeTrainArgs {
    /// Train on an embeddings.parquet written by `genolens embed` instead of running a model.
    #[arg(long, conflicts_with_all = ["model", "data", "hook", "rows"])]
    pub embeddings: Option<PathBuf>,
    /// Model folder or hub id (default: the committed promoter classifier).
    #[arg(long)]
    pub model: Option<String>,
    /// Sequences: FASTA, CSV, TSV or Parquet (a `split` column selects train and held-out rows).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Hook to model: hook_cls (final [CLS], default), or a token hook such as
    /// blocks.3.hook_resid_post with --rows.
    #[arg(long)]
    pub hook: Option<String>,
    /// Rows of a token hook: cls, mean (over k-mer tokens) or tokens (every k-mer token).
    #[arg(long, value_enum)]
    pub rows: Option<crate::analysis::sae::cache::RowKind>,
    /// Latents (default 8 × the hook's width).
    #[arg(long)]
    pub latents: Option<usize>,
    /// relu-l1 (L1 on f·‖W_dec‖; default), relu-l1-unit (unit-norm decoder), topk (with AuxK)
    /// or batchtopk.
    #[arg(long)]
    pub architecture: Option<String>,
    /// L1 weight λ of the ReLU forms, on rows normalised to unit mean squared norm (default 0.2).
    #[arg(long)]
    pub l1: Option<f64>,
    /// Active latents per row of the TopK forms (default 16).
    #[arg(long)]
    pub k: Option<usize>,
    /// `seed-004`: seed 004's ReLU SAE (2048 latents, lr 1e-3, batch 32, 50 epochs, λ 1e-3);
    /// explicit options still apply on top.
    #[arg(long)]
    pub preset: Option<String>,
    /// Epochs (default 30; 50 with the seed-004 preset).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Rows per training step (default 64; 32 with the seed-004 preset).
    #[arg(long)]
    pub sae_batch_size: Option<usize>,
    /// Adam learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Split the SAE is trained on.
    #[arg(long, default_value = "train")]
    pub train_split: String,
    /// Also train SAEs at other sparsities (ReLU-L1 λ 0.05-0.8, TopK k 4-32) for the L0-vs-EV figure.
    #[arg(long)]
    pub sweep: bool,
    /// Also fit linear probes by layer.
    #[arg(long)]
    pub probes: bool,
    #[command(flatten)]
    pub meaning: SaeMeaningArgs,
    /// Output folder (default reports/sae/<data stem>).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl SaeTrainArgs {
    /// Trains and measures the SAE into the output folder.
    pub fn run(self, globals: &Globals) -> anyhow::Result<StudyRun> {
        use crate::analysis::sae::model::{seed_004_preset, Architecture};
        use crate::analysis::sae::study::{reduce_sae, run_sae, SaeStudy};
        let model = self
            .model
            .unwrap_or_else(|| crate::defaults::MODEL.to_string());
        let data = self
            .data
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::defaults::DATA));
        let mut study = SaeStudy::new(&model, data.clone());
        study.embeddings = self.embeddings.clone();
        if let Some(hook) = self.hook {
            study.hook = hook;
        }
        if let Some(rows) = self.rows {
            study.rows = rows;
        }
        match self.preset.as_deref() {
            None => {}
            Some("seed-004") => {
                let (latents, architecture, train) = seed_004_preset();
                study.latents = Some(latents);
                study.architecture = architecture;
                study.train = train;
            }
            Some(other) => bail!("--preset {other:?}: the one preset is seed-004"),
        }
        if self.architecture.is_some() || self.l1.is_some() || self.k.is_some() {
            let (current_l1, current_k) = match study.architecture {
                Architecture::ReluL1 { l1 } | Architecture::ReluL1UnitNorm { l1 } => (l1, 16),
                Architecture::TopK { k } | Architecture::BatchTopK { k } => (0.2, k),
            };
            let name = self
                .architecture
                .as_deref()
                .unwrap_or(study.architecture.name());
            study.architecture = Architecture::from_name(
                name,
                self.l1.unwrap_or(current_l1),
                self.k.unwrap_or(current_k),
            )?;
        }
        if let Some(latents) = self.latents {
            study.latents = Some(latents);
        }
        if let Some(epochs) = self.epochs {
            study.train.epochs = epochs;
        }
        if let Some(batch) = self.sae_batch_size {
            study.train.batch_size = batch;
        }
        if let Some(lr) = self.lr {
            if !(lr.is_finite() && lr > 0.0) {
                bail!("--lr {lr}: must be > 0");
            }
            study.train.lr = lr;
        }
        study.train_split = self.train_split;
        if self.sweep {
            study.sweep = SaeStudy::default_sweep();
        }
        study.probes = self.probes;
        self.meaning.apply(&mut study);
        let stem = match &self.embeddings {
            Some(e) => data_stem(e),
            None => data_stem(&data),
        };
        let out = self
            .out
            .unwrap_or_else(|| PathBuf::from("reports/sae").join(stem));
        let mut settings = command_settings(globals, "sae train", model, self.data, out);
        settings.split = self.meaning.split.clone();
        settings.limit = self.meaning.limit;
        settings.batch_size = self.meaning.batch_size;
        let mut context = ExperimentContext::new("sae", settings)?;
        run_sae(&mut context, &study)?;
        let out_dir = context.finish(Some(reduce_sae))?;
        Ok(StudyRun::new("sae train", out_dir, "sae_features.parquet"))
    }
}

/// Arguments of `genolens sae analyze`.
#[derive(Args)]
pub struct SaeAnalyzeArgs {
    /// The SAE folder (sae_weights.safetensors + cfg.json), e.g. reports/sae/<data>/sae.
    #[arg(long)]
    pub sae: PathBuf,
    /// Model (default: the one cfg.json records).
    #[arg(long)]
    pub model: Option<String>,
    /// Sequences (default: the table cfg.json records).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub meaning: SaeMeaningArgs,
    /// Output folder (default reports/sae-analyze/<data stem>).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl SaeAnalyzeArgs {
    /// Measures the saved SAE into the output folder.
    pub fn run(self, globals: &Globals) -> anyhow::Result<StudyRun> {
        use crate::analysis::sae::study::{reduce_sae, run_sae_analyze, SaeStudy};
        let mut study = SaeStudy::new(crate::defaults::MODEL, crate::defaults::DATA);
        self.meaning.apply(&mut study);
        let stem = self
            .data
            .as_deref()
            .map(data_stem)
            .unwrap_or_else(|| "data".into());
        let out = self
            .out
            .unwrap_or_else(|| PathBuf::from("reports/sae-analyze").join(stem));
        let model = self.model.clone().unwrap_or_default();
        let mut settings = command_settings(globals, "sae analyze", model, self.data, out);
        settings.model = self.model;
        settings.split = self.meaning.split.clone();
        settings.limit = self.meaning.limit;
        settings.batch_size = self.meaning.batch_size;
        let mut context = ExperimentContext::new("sae-analyze", settings)?;
        run_sae_analyze(&mut context, &study, &self.sae)?;
        let out_dir = context.finish(Some(reduce_sae))?;
        Ok(StudyRun::new(
            "sae analyze",
            out_dir,
            "sae_features.parquet",
        ))
    }
}

/// Arguments of `genolens probe`.
#[derive(Args)]
pub struct ProbeArgs {
    /// Model folder or hub id (default: the committed promoter classifier).
    #[arg(long, default_value = crate::defaults::MODEL)]
    pub model: String,
    /// Labelled sequences (labels 0/1) with a `split` column.
    #[arg(long, default_value = crate::defaults::DATA)]
    pub data: PathBuf,
    /// Split the probes are fitted on.
    #[arg(long, default_value = "train")]
    pub train_split: String,
    /// Held-out split they are scored on.
    #[arg(long)]
    pub split: Option<String>,
    /// At most N sequences per split.
    #[arg(long, value_parser = parse_limit)]
    pub limit: Option<usize>,
    /// L2 penalty of the logistic regression (features z-scored).
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f64,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Output folder (default reports/probe/<data stem>).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl ProbeArgs {
    /// Fits the probes into the output folder.
    pub fn run(self, globals: &Globals) -> anyhow::Result<StudyRun> {
        use crate::analysis::sae::study::{reduce_probes, run_probes};
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            bail!("--alpha {}: must be ≥ 0", self.alpha);
        }
        let out = self
            .out
            .unwrap_or_else(|| PathBuf::from("reports/probe").join(data_stem(&self.data)));
        let mut settings = command_settings(
            globals,
            "probe",
            self.model.clone(),
            Some(self.data.clone()),
            out,
        );
        settings.split = self.split;
        settings.limit = self.limit;
        settings.batch_size = self.batch_size;
        let mut context = ExperimentContext::new("probe", settings)?;
        run_probes(
            &mut context,
            &self.model,
            &self.data,
            &self.train_split,
            self.alpha,
        )?;
        let out_dir = context.finish(Some(reduce_probes))?;
        Ok(StudyRun::new("probe", out_dir, "probes.parquet"))
    }
}
