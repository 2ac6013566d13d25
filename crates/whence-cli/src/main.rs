//! `whence`: provenance tracing for LLM reasoning distillation.
//!
//! A thin command line over the workspace crates: it parses flags, opens
//! inputs and scorers, shows progress on stderr, and maps errors to exit
//! codes (0 success, 1 failure, 2 usage or input error).

mod args;
mod commands;
mod errors;
mod progress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Trace where each sentence of a distilled model's reasoning comes from:
/// the teacher, the original student, both, or boosted by distillation.
#[derive(Debug, Parser)]
#[command(name = "whence", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// More detail on stderr (-v debug, -vv trace); RUST_LOG overrides
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    /// Only errors on stderr, no progress bars
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Label every action of distilled-model responses (teacher, student, shared, boosted)
    Trace(commands::trace::TraceArgs),
    /// Keep one teacher response per question for distillation
    Select(commands::select::SelectArgs),
    /// Rank candidate teachers of a distilled model
    Attribute(commands::attribute::AttributeArgs),
    /// Write a model's token log-probabilities for every record (the file: scorer format)
    Score(commands::score::ScoreArgs),
    /// Print the actions (sentences and special tokens) of each response as JSONL
    Segment(commands::segment::SegmentArgs),
    /// Grade responses against reference answers; print one JSON line per record
    Grade(commands::grade::GradeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    whence_checkpoint::tune_allocator();
    let verbosity = progress::Verbosity::new(cli.verbose, cli.quiet);
    progress::init_logging(verbosity);
    let result = match cli.command {
        Command::Trace(args) => commands::trace::run(args, verbosity),
        Command::Select(args) => commands::select::run(args, verbosity),
        Command::Attribute(args) => commands::attribute::run(args, verbosity),
        Command::Score(args) => commands::score::run(args, verbosity),
        Command::Segment(args) => commands::segment::run(args),
        Command::Grade(args) => commands::grade::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => errors::report(&error),
    }
}
