//! The genolens command line: parses the arguments and dispatches to the library (`genolens::cli`
//! converts arguments into settings; each result prints itself through `Display`). Results that
//! are data go to stdout; what a command wrote and where goes to stderr.

use clap::Parser;
use genolens::cli::{Cli, Command, DataCommand, SaeCommand, TrainCommand};

include!(concat!(env!("OUT_DIR"), "/experiments.rs"));

fn main() -> anyhow::Result<()> {
    genolens::memory::settle_candle_pool();
    genolens::memory::keep_freed_memory();
    genolens::interrupt::install();
    let cli = Cli::parse();
    cli.init_logging();
    let globals = cli.globals()?;
    match cli.command {
        Command::Inspect(args) => print!("{}", args.run(&globals)?),
        Command::Embed(args) => eprintln!("{}", args.run(&globals)?),
        Command::Tokenize(args) => eprintln!("{}", args.run(&globals)?),
        Command::Evaluate(args) => println!("{}", args.run(&globals)?),
        Command::Convert(args) => println!("{}", args.run()?),
        Command::Experiment(args) => match args.run(&globals, EXPERIMENTS)? {
            listed @ genolens::cli::ExperimentOutcome::Listed(_) => println!("{listed}"),
            finished => eprintln!("{finished}"),
        },
        Command::Merge(args) => eprintln!("{}", args.run(EXPERIMENTS)?),
        Command::Patch(args) => eprintln!("{}", args.run(&globals)?),
        Command::Ablate(args) => eprintln!("{}", args.run(&globals)?),
        Command::Attention(args) => eprintln!("{}", args.run(&globals)?),
        Command::Attribute(args) => eprintln!("{}", args.run(&globals)?),
        Command::Motifs(args) => eprintln!("{}", args.run(&globals)?),
        Command::Sae(action) => match action {
            SaeCommand::Train(args) => eprintln!("{}", args.run(&globals)?),
            SaeCommand::Analyze(args) => eprintln!("{}", args.run(&globals)?),
        },
        Command::Probe(args) => eprintln!("{}", args.run(&globals)?),
        Command::Data(action) => match action {
            DataCommand::Info(args) => print!("{}", args.run()?),
            DataCommand::Scan(args) => eprintln!("{}", args.run(&globals)?),
            DataCommand::Variants(args) => eprintln!("{}", args.run(&globals)?),
            DataCommand::Build(args) => eprintln!("{}", args.run()?),
        },
        Command::Train(action) => match action {
            TrainCommand::Mlm(args) => eprintln!("{}", args.run(&globals)?),
            TrainCommand::Classify(args) => eprintln!("{}", args.run(&globals)?),
        },
    }
    Ok(())
}
