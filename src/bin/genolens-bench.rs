//! Benchmark worker: makes the shared weights/inputs, or times one case and prints a JSON line.
//! Driven by tests/reference/bench.py (`just bench`), which alternates it with PyTorch.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use genolens::bench::{make_inputs, peak_rss_bytes, run_case, Case};
use genolens::bench_pieces::{table, time_pieces, PieceShape};

#[derive(Parser)]
#[command(name = "genolens-bench", about = "genolens side of `just bench`")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write seeded random weights (HF layout) and FASTA inputs shared with the PyTorch side.
    MakeInputs {
        /// Folder for weights and inputs.
        #[arg(long, default_value = "target/bench")]
        root: PathBuf,
        /// Seed of the random weights.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Time one case (after a warm-up) and print {"case", "seconds", "peak_rss_bytes"} as JSON.
    Run {
        /// Folder made by make-inputs.
        #[arg(long, default_value = "target/bench")]
        root: PathBuf,
        /// Case id, e.g. forward:bert-base:16x200.
        #[arg(long)]
        case: String,
    },
    /// Time each piece of an MLM training step of the mini model alone (forward, forward +
    /// backward, device synchronised) and print a table: where a GPU step's time goes.
    Pieces {
        /// cpu or cuda.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Windows per step.
        #[arg(long, default_value_t = 128)]
        batch: usize,
        /// Tokens per window.
        #[arg(long, default_value_t = 253)]
        tokens: usize,
        /// Timed repetitions of each piece (median reported).
        #[arg(long, default_value_t = 10)]
        repeats: usize,
    },
}

fn main() -> anyhow::Result<()> {
    genolens::memory::settle_candle_pool();
    genolens::memory::keep_freed_memory();
    let backend = genolens::device::cpu_matmul_backend()?;
    match Cli::parse().command {
        Command::MakeInputs { root, seed } => make_inputs(&root, seed)?,
        Command::Run { root, case } => {
            let seconds = run_case(&Case::parse(&case)?, &root)?;
            let line = serde_json::json!({ "case": case, "seconds": seconds, "peak_rss_bytes": peak_rss_bytes(), "matmul": backend });
            println!("{line}");
        }
        Command::Pieces {
            device,
            batch,
            tokens,
            repeats,
        } => {
            let device = genolens::device::parse_device(&device)?;
            eprintln!("CPU matrix products: {backend}");
            let times = time_pieces(PieceShape { batch, tokens }, &device, repeats)?;
            println!("{}", table(&times));
        }
    }
    Ok(())
}
