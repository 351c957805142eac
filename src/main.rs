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
        /// Model folder (config.json, vocab.txt, weights) or Hugging Face hub id.
        #[arg(long)]
        model: String,
        /// Reproduce DNABERT's pretraining-time MLM logits (output bias added twice).
        #[arg(long)]
        legacy_double_bias: bool,
    },
    /// Write one pooled vector per sequence from any hook to Parquet (long format).
    Embed {
        /// Model folder or hub id.
        #[arg(long)]
        model: String,
        /// Sequences: FASTA (.fa/.fasta[.gz]), CSV, TSV or Parquet table.
        #[arg(long)]
        data: PathBuf,
        /// Hook to read, e.g. blocks.11.hook_resid_post or hook_cls.
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
    /// Run a study from experiments/ end to end (or list them).
    Experiment {
        /// Experiment name (see --list).
        name: Option<String>,
        /// List the experiments.
        #[arg(long)]
        list: bool,
        /// Model override (folder or hub id).
        #[arg(long)]
        model: Option<String>,
        /// Data override.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Output root.
        #[arg(long, default_value = "reports")]
        reports: PathBuf,
        /// Run id (default: UTC start time and seed).
        #[arg(long)]
        run_id: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
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
        Command::Experiment {
            name,
            list,
            model,
            data,
            reports,
            run_id,
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
            };
            let mut context = ExperimentContext::new(experiment.name, settings)?;
            (experiment.run)(&mut context).with_context(|| format!("experiment {name}"))?;
            let out_dir = context.finish()?;
            eprintln!("experiment {name} finished -> {}", out_dir.display());
        }
    }
    Ok(())
}
