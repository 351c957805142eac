//! The genolens command line (argument parsing only; the logic lives in the library).

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use genolens::commands::embed::{default_out, run_embed, EmbedSettings, Pooling};
use genolens::data::TableColumns;
use genolens::experiment::{ExperimentContext, RunSettings};
use genolens::model::{load, LoadOptions};

include!(concat!(env!("OUT_DIR"), "/experiments.rs"));

/// Mechanistic interpretability for genomic language models (DNABERT).
#[derive(Parser)]
#[command(name = "genolens", version, about)]
struct Cli {
    /// More logging (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Where to compute: cpu, cuda or cuda:N (cuda needs a build with --features cuda).
    #[arg(long, default_value = "cpu", global = true)]
    device: String,
    /// Seed for every random choice (same seed, same inputs -> identical tables).
    #[arg(long, default_value_t = 0, global = true)]
    seed: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Describe a model: config, parameter count, hook names, tokenizer facts.
    Inspect {
        /// Model folder (config.json, vocab.txt, weights) or Hugging Face hub id (default: the
        /// committed mini-dnabert6-promoters).
        #[arg(long, default_value = genolens::defaults::MODEL)]
        model: String,
        /// Reproduce DNABERT's pretraining-time MLM logits (output bias added twice).
        #[arg(long)]
        legacy_double_bias: bool,
    },
    /// Write one pooled vector per sequence from any hook to Parquet (long format).
    Embed {
        /// Model folder or hub id (default: the committed mini-dnabert6-promoters).
        #[arg(long, default_value = genolens::defaults::MODEL)]
        model: String,
        /// Sequences: FASTA (.fa/.fasta[.gz]), CSV, TSV or Parquet table.
        #[arg(long)]
        data: PathBuf,
        /// Hook to read, e.g. blocks.5.hook_normalized_resid_post (a block output) or hook_cls.
        #[arg(long, default_value = "hook_cls")]
        hook: String,
        /// Pooling over positions for per-token hooks.
        #[arg(long, value_enum, default_value = "cls")]
        pooling: Pooling,
        /// Sequences per forward pass.
        #[arg(long, default_value_t = 16)]
        batch_size: usize,
        /// Output folder (default reports/embed/<data stem>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Sequence column of a table.
        #[arg(long, default_value = "sequence")]
        sequence_column: String,
        /// Id column of a table (row numbers when absent).
        #[arg(long, default_value = "id")]
        id_column: String,
        /// Label column of a table, copied into the output.
        #[arg(long)]
        label_column: Option<String>,
    },
    /// Datasets: describe a sequence file, scan motifs, rebuild data/ from the raw sources.
    Data {
        #[command(subcommand)]
        action: DataCommand,
    },
    /// A classifier's test AUROC and per-class accuracy, compared with the k-mer baseline (paired bootstrap).
    Evaluate {
        /// Classifier folder or hub id (default: the committed mini-dnabert6-promoters).
        #[arg(long, default_value = genolens::defaults::MODEL)]
        model: String,
        /// Dataset table with sequence, label and split columns.
        #[arg(long, default_value = genolens::defaults::DATA)]
        data: PathBuf,
        /// Sequences per forward pass.
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        /// Append the result to the model folder's MODEL.md.
        #[arg(long)]
        append_to_card: bool,
    },
    /// Store a model folder's weights as another type (f16 for committing), measuring the change.
    Convert {
        /// Model folder to read (f32).
        #[arg(long)]
        model: PathBuf,
        /// New folder to write.
        #[arg(long)]
        out: PathBuf,
        /// Stored type: f16, bf16 or f32.
        #[arg(long, default_value = "f16")]
        dtype: String,
        /// Sequences to compare the two models on.
        #[arg(long, default_value = "data/human-promoters.parquet")]
        check_data: PathBuf,
        /// How many of them.
        #[arg(long, default_value_t = 64)]
        check_sequences: usize,
    },
    /// Train k-mer BERTs: MLM pretraining, then classification fine-tuning (writes MODEL.md).
    Train {
        #[command(subcommand)]
        action: TrainCommand,
    },
    /// Run a study from experiments/ end to end (or list them).
    Experiment {
        /// Experiment name (see --list).
        name: Option<String>,
        /// List the experiments.
        #[arg(long)]
        list: bool,
        /// Model override, folder or hub id (default: the experiment's; most use the committed
        /// mini-dnabert6-promoters).
        #[arg(long)]
        model: Option<String>,
        /// Data override (default: the experiment's; most use data/human-promoters.parquet).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Rows of a table with a `split` column to use: train, valid, test (default) or all.
        #[arg(long)]
        split: Option<String>,
        /// Use only the first N sequences.
        #[arg(long)]
        limit: Option<usize>,
        /// Output root.
        #[arg(long, default_value = "reports")]
        reports: PathBuf,
        /// Run id (default: UTC start time and seed; required with --shard).
        #[arg(long)]
        run_id: Option<String>,
        /// Sequences per forward pass.
        #[arg(long, default_value_t = 16)]
        batch_size: usize,
        /// Run only part i of n (0-based), e.g. --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT;
        /// then `genolens merge RUN_DIR`.
        #[arg(long)]
        shard: Option<genolens::experiment::Shard>,
    },
    /// Concatenate the shards of a sharded experiment run and write its statistics, figures and report.
    Merge {
        /// The run folder (reports/<experiment>/<run-id>).
        run_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Counts, length distribution, GC, N content and class balance of a sequence file.
    Info {
        /// FASTA (.fa/.fasta[.gz]), CSV, TSV or Parquet table.
        file: PathBuf,
        /// Label column of a table (default: `label` when the table has one).
        #[arg(long)]
        label_column: Option<String>,
    },
    /// Motif hits (FIMO-style: log-odds, exact p-values, both strands) of a MEME file, to Parquet.
    Scan {
        /// Motifs in MEME format (e.g. data/jaspar/JASPAR2024_CORE_vertebrates.meme).
        #[arg(long)]
        motifs: PathBuf,
        /// Sequences: FASTA, CSV, TSV or Parquet.
        #[arg(long)]
        sequences: PathBuf,
        /// Report windows with p below this.
        #[arg(long, default_value_t = 1e-4)]
        p_threshold: f64,
        /// Scan the given strand only.
        #[arg(long)]
        forward_only: bool,
        /// Output Parquet (default reports/motif-scan/<stem>.parquet).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// REF/ALT windows centred on each SNV of a VCF or GTEx-style QTL table, to Parquet.
    Variants {
        /// Reference FASTA (plain or gzip) of the same genome build.
        #[arg(long)]
        reference: PathBuf,
        /// VCF (plain or bgzip).
        #[arg(
            long,
            conflicts_with = "qtl_table",
            required_unless_present = "qtl_table"
        )]
        vcf: Option<PathBuf>,
        /// GTEx/GV-Rep-style table: chr, variant_pos (1-based), ref, alt, slope, pval_nominal, pval_nominal_threshold.
        #[arg(long)]
        qtl_table: Option<PathBuf>,
        /// How a QTL table's rows become labels (required with --qtl-table).
        #[arg(long, value_enum)]
        label_rule: Option<genolens::data::variants::QtlLabelRule>,
        /// Window length; the variant sits at length / 2.
        #[arg(long, default_value_t = 1024)]
        length: usize,
        /// Output Parquet.
        #[arg(long)]
        out: PathBuf,
    },
    /// Rebuild every derived dataset under --out from the raw inputs (run by `just data`).
    Build {
        /// Raw inputs extracted by scripts/data.sh.
        #[arg(long, default_value = "data/cache/raw")]
        raw: PathBuf,
        /// Where the committed datasets go.
        #[arg(long, default_value = "data")]
        out: PathBuf,
        /// Where the (uncommitted) pretraining corpus goes.
        #[arg(long, default_value = "data/cache")]
        cache: PathBuf,
    },
}

#[derive(Subcommand)]
enum TrainCommand {
    /// MLM pretraining (DNABERT span masking); rerunning the same command resumes from out/checkpoint.
    /// The defaults are the committed mini-dnabert6's settings.
    Mlm {
        /// Training FASTA.
        #[arg(long, default_value = "data/cache/pretrain-corpus.fa.gz")]
        corpus: PathBuf,
        /// Held-out FASTA for validation.
        #[arg(long, default_value = "data/cache/pretrain-heldout.fa.gz")]
        heldout: PathBuf,
        /// Output model folder.
        #[arg(long, default_value = "data/models/mini-dnabert6")]
        out: PathBuf,
        /// k of the k-mer vocabulary.
        #[arg(long, default_value_t = 6)]
        k: usize,
        /// Encoder layers.
        #[arg(long, default_value_t = 6)]
        layers: usize,
        /// Hidden size.
        #[arg(long, default_value_t = 128)]
        hidden: usize,
        /// Attention heads.
        #[arg(long, default_value_t = 4)]
        heads: usize,
        /// MLP width.
        #[arg(long, default_value_t = 512)]
        intermediate: usize,
        /// Position embeddings (longest input in tokens).
        #[arg(long, default_value_t = 512)]
        max_positions: usize,
        /// Window length in bases.
        #[arg(long, default_value_t = 256)]
        window: usize,
        /// Windows per step.
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        /// Optimiser steps.
        #[arg(long, default_value_t = 2400)]
        steps: usize,
        /// Peak learning rate.
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        /// Warm-up fraction of the steps.
        #[arg(long, default_value_t = 0.05)]
        warmup: f64,
        /// AdamW weight decay.
        #[arg(long, default_value_t = 0.01)]
        weight_decay: f64,
        /// Fraction of k-mer tokens masked.
        #[arg(long, default_value_t = 0.15)]
        mask_rate: f64,
        /// Validate every N steps.
        #[arg(long, default_value_t = 300)]
        eval_every: usize,
        /// Held-out windows to validate on.
        #[arg(long, default_value_t = 256)]
        eval_windows: usize,
        /// Save a resumable checkpoint every N steps.
        #[arg(long, default_value_t = 300)]
        checkpoint_every: usize,
        /// Stop after N steps of this invocation (resume later with the same command).
        #[arg(long)]
        stop_after: Option<usize>,
        /// Embedding init of a fresh run: kmer (k-mer rows composed per offset and base,
        /// sinusoidal positions; breaks the k-mer MLM plateau) or bert (HF BERT's i.i.d. N(0, 0.02)).
        #[arg(long, default_value = "kmer")]
        init: genolens::train::kmer_init::InitScheme,
        /// Continue pretraining a finished MLM (a model folder): its weights and architecture
        /// (config.json; the shape options above must match it), a fresh optimiser and schedule.
        /// Use a new --seed so the windows and masks differ from the first run's.
        #[arg(long)]
        from: Option<PathBuf>,
    },
    /// Fine-tune a pretrained model on a dataset table (sequence, label, split).
    Classify {
        /// Dataset table.
        #[arg(long)]
        data: PathBuf,
        /// Pretrained MLM folder.
        #[arg(long, default_value = "data/models/mini-dnabert6")]
        init: PathBuf,
        /// Output model folder.
        #[arg(long)]
        out: PathBuf,
        /// Epochs.
        #[arg(long, default_value_t = 5)]
        epochs: usize,
        /// Sequences per step.
        #[arg(long, default_value_t = 48)]
        batch_size: usize,
        /// Peak learning rate.
        #[arg(long, default_value_t = 2e-4)]
        lr: f64,
        /// Warm-up fraction.
        #[arg(long, default_value_t = 0.1)]
        warmup: f64,
        /// AdamW weight decay.
        #[arg(long, default_value_t = 0.01)]
        weight_decay: f64,
        /// Dropout while training, at HF BERT's sites (BERT's and DNABERT's 0.1; 0 = none).
        #[arg(long, default_value_t = 0.1)]
        dropout: f64,
    },
}

fn run_train(action: TrainCommand, seed: u64, device: &candle_core::Device) -> anyhow::Result<()> {
    use genolens::train::adamw::AdamWSettings;
    match action {
        TrainCommand::Mlm {
            corpus,
            heldout,
            out,
            k,
            layers,
            hidden,
            heads,
            intermediate,
            max_positions,
            window,
            batch_size,
            steps,
            lr,
            warmup,
            weight_decay,
            mask_rate,
            eval_every,
            eval_windows,
            checkpoint_every,
            stop_after,
            init,
            from,
        } => {
            let vocab = 4usize.pow(k as u32) + 5;
            let config = genolens::model::ModelConfig::bert(
                vocab,
                layers,
                hidden,
                heads,
                intermediate,
                max_positions,
            );
            let settings = genolens::train::mlm::MlmSettings {
                corpus,
                heldout,
                out,
                config,
                window,
                batch_size,
                steps,
                learning_rate: lr,
                warmup_fraction: warmup,
                adamw: AdamWSettings::with_weight_decay(weight_decay),
                mask_rate,
                seed,
                eval_every,
                eval_windows,
                checkpoint_every,
                stop_after,
                init,
                from,
            };
            let report = genolens::commands::train::run_train_mlm(&settings, device)?;
            eprintln!(
                "step {}/{}: held-out MLM loss {:.4}, accuracy {:.4} -> {}",
                report.step,
                settings.steps,
                report.heldout.loss,
                report.heldout.accuracy,
                settings.out.display()
            );
        }
        TrainCommand::Classify {
            data,
            init,
            out,
            epochs,
            batch_size,
            lr,
            warmup,
            weight_decay,
            dropout,
        } => {
            let settings = genolens::train::classify::ClassifySettings {
                data,
                init,
                out,
                epochs,
                batch_size,
                learning_rate: lr,
                warmup_fraction: warmup,
                adamw: AdamWSettings::with_weight_decay(weight_decay),
                seed,
                dropout,
            };
            let report = genolens::commands::train::run_train_classify(&settings, device)?;
            eprintln!(
                "test AUROC {:.4} ({:.4}-{:.4}), accuracy {:.4} -> {}",
                report.test.auroc.value,
                report.test.auroc.low,
                report.test.auroc.high,
                report.test.accuracy,
                settings.out.display()
            );
        }
    }
    Ok(())
}

fn run_data(action: DataCommand, seed: u64) -> anyhow::Result<()> {
    match action {
        DataCommand::Info { file, label_column } => {
            let summary = genolens::commands::data_info::summarise(&file, label_column.as_deref())?;
            print!("{}", summary.render(&file));
        }
        DataCommand::Scan {
            motifs,
            sequences,
            p_threshold,
            forward_only,
            out,
        } => {
            let settings = genolens::commands::motif_scan::ScanSettings {
                out: out.unwrap_or_else(|| {
                    genolens::commands::motif_scan::default_scan_out(&sequences)
                }),
                motifs,
                sequences,
                options: genolens::motif::ScanOptions {
                    p_threshold,
                    both_strands: !forward_only,
                    ..Default::default()
                },
                seed,
            };
            let (sequences, hits) = genolens::commands::motif_scan::run_scan(&settings)?;
            eprintln!(
                "{hits} hits in {sequences} sequences -> {}",
                settings.out.display()
            );
        }
        DataCommand::Variants {
            reference,
            vcf,
            qtl_table,
            label_rule,
            length,
            out,
        } => {
            use genolens::commands::variant_windows::{run_variant_windows, VariantSource};
            let source = match (vcf, qtl_table) {
                (Some(vcf), _) => VariantSource::Vcf(vcf),
                (None, Some(table)) => {
                    let Some(rule) = label_rule else {
                        bail!("--qtl-table needs --label-rule significance|slope-sign (GV-Rep's slope sign is not a functional label; choose explicitly)");
                    };
                    VariantSource::Qtl(table, rule)
                }
                (None, None) => bail!("give --vcf or --qtl-table"),
            };
            let (written, skipped) = run_variant_windows(&source, &reference, length, &out, seed)?;
            eprintln!(
                "{written} SNV windows ({skipped} non-SNV records skipped) -> {}",
                out.display()
            );
        }
        DataCommand::Build { raw, out, cache } => {
            let built = genolens::datasets::build_all(&raw, &out, &cache)?;
            for b in &built {
                eprintln!("{:<22} {:>9} rows  {}", b.name, b.rows, b.files.join(" "));
            }
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    genolens::memory::keep_freed_memory();
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let device = genolens::device::parse_device(&cli.device)?;
    match cli.command {
        Command::Inspect {
            model,
            legacy_double_bias,
        } => {
            let options = LoadOptions {
                legacy_double_bias,
                device,
                ..Default::default()
            };
            let loaded =
                load(&model, &options).with_context(|| format!("loading model {model}"))?;
            print!("{}", genolens::commands::inspect::describe(&loaded));
        }
        Command::Embed {
            model,
            data,
            hook,
            pooling,
            batch_size,
            out,
            sequence_column,
            id_column,
            label_column,
        } => {
            let options = LoadOptions {
                device,
                ..Default::default()
            };
            let loaded =
                load(&model, &options).with_context(|| format!("loading model {model}"))?;
            let settings = EmbedSettings {
                out: out.unwrap_or_else(|| default_out(&data)),
                data,
                hook,
                pooling,
                batch_size,
                columns: TableColumns {
                    sequence: sequence_column,
                    id: id_column,
                    label: label_column,
                },
                seed: cli.seed,
            };
            let counts = run_embed(&loaded, &settings)?;
            eprintln!(
                "embedded {} sequences ({} with N/IUPAC bases, {} of {} k-mers -> [UNK]) -> {}",
                counts.sequences,
                counts.sequences_with_ambiguous_bases,
                counts.unknown_tokens,
                counts.kmer_tokens,
                settings.out.join("embeddings.parquet").display()
            );
        }
        Command::Data { action } => run_data(action, cli.seed)?,
        Command::Train { action } => run_train(action, cli.seed, &device)?,
        Command::Evaluate {
            model,
            data,
            batch_size,
            append_to_card,
        } => {
            let options = LoadOptions {
                device: device.clone(),
                ..Default::default()
            };
            let loaded =
                load(&model, &options).with_context(|| format!("loading model {model}"))?;
            let evaluation =
                genolens::commands::evaluate::run_evaluate(&loaded, &data, batch_size)?;
            let text = evaluation.markdown(&data);
            println!("{text}");
            if append_to_card {
                genolens::train::card::append_to_card(
                    &loaded.source.dir,
                    &format!("\n## Evaluated with `genolens evaluate`\n\n{text}"),
                )?;
            }
        }
        Command::Convert {
            model,
            out,
            dtype,
            check_data,
            check_sequences,
        } => {
            let dtype = genolens::commands::convert::parse_dtype(&dtype)?;
            let check = genolens::commands::convert::run_convert(
                &model,
                &out,
                dtype,
                &check_data,
                check_sequences,
            )?;
            println!(
                "{} -> {} ({}): on {} sequences, max |Δ logits| {:.2e}, max |Δ last hidden| {:.2e}{}",
                model.display(),
                out.display(),
                check.dtype,
                check.sequences,
                check.max_logit_difference,
                check.max_hidden_difference,
                check
                    .max_probability_difference
                    .map(|p| format!(", max |Δ P(label 1)| {p:.2e}"))
                    .unwrap_or_default()
            );
        }
        Command::Experiment {
            name,
            list,
            model,
            data,
            split,
            limit,
            reports,
            run_id,
            batch_size,
            shard,
        } => {
            if list || name.is_none() {
                for experiment in EXPERIMENTS {
                    println!("{:<28} {}", experiment.name, experiment.description);
                }
                return Ok(());
            }
            let name = name.expect("checked above");
            let Some(experiment) = EXPERIMENTS.iter().find(|e| e.name == name) else {
                let names: Vec<_> = EXPERIMENTS.iter().map(|e| e.name).collect();
                bail!("no experiment {name:?}; available: {}", names.join(", "));
            };
            let settings = RunSettings {
                reports_root: reports,
                run_id,
                seed: cli.seed,
                device,
                model,
                data,
                split,
                limit,
                batch_size,
                shard,
            };
            let mut context = ExperimentContext::new(experiment.name, settings)?;
            (experiment.run)(&mut context).with_context(|| format!("experiment {name}"))?;
            let out_dir = context.finish(experiment.reduce)?;
            eprintln!("experiment {name} finished -> {}", out_dir.display());
        }
        Command::Merge { run_dir } => {
            let name = genolens::experiment::merge(&run_dir, EXPERIMENTS)?;
            eprintln!(
                "merged experiment {name} -> {}",
                run_dir.join("report.html").display()
            );
        }
    }
    Ok(())
}
