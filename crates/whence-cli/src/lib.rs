//! `whence`: provenance tracing for LLM reasoning distillation.
//!
//! A thin command line over the workspace crates: it parses flags, opens
//! inputs and scorers, shows progress on stderr, and maps errors to exit
//! codes (0 success, 1 failure, 2 usage or input error).
//!
//! The command line is a library ([`main`]) as well as the `whence`
//! binary, so that the Python package (`crates/whence-py`) puts the very
//! same command on the PATH, and opens scorers ([`args::ScorerFactory`]) and
//! classifies errors ([`errors`]) exactly as the command line does.

pub mod args;
mod commands;
pub mod errors;
pub mod progress;
pub mod shard;

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
    /// Train a small distillation world here (teacher, student, distilled) and run the whole method on it, against known sentence origins
    Demo(commands::demo::DemoArgs),
    /// Label every action of distilled-model responses (teacher, student, shared, boosted)
    Trace(commands::trace::TraceArgs),
    /// Keep one teacher response per question for distillation
    Select(commands::select::SelectArgs),
    /// Rank candidate teachers of a distilled model
    Attribute(commands::attribute::AttributeArgs),
    /// Sample responses to questions from a checkpoint or inference servers (several per question)
    Generate(commands::generate::GenerateArgs),
    /// Write a model's token log-probabilities for every record (the file: scorer format)
    Score(commands::score::ScoreArgs),
    /// Print the actions (sentences and special tokens) of each response as JSONL
    Segment(commands::segment::SegmentArgs),
    /// Grade responses against reference answers; print one JSON line per record
    Grade(commands::grade::GradeArgs),
    /// Serve a checkpoint behind a vLLM-compatible /v1/completions (scoring and sampling)
    Serve(commands::serve::ServeArgs),
    /// Combine the shards of a `--shard K/N` run into what one unsharded run writes
    Merge(commands::merge::MergeArgs),
    /// Write the HTML report and the paper figures (SVG, PNG) of a trace, select or attribute run
    Report(commands::report::ReportArgs),
}

/// Runs the command line `argv` (the program name first), as the `whence`
/// binary does.
pub fn main<I, T>(argv: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    ExitCode::from(run(argv))
}

/// Runs the command line `argv` and returns its exit code: 0 success, 1
/// failure, 2 usage or input error. `--help`, `--version` and flags that do
/// not parse print and exit the process, as clap does.
pub fn run<I, T>(argv: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let argv: Vec<std::ffi::OsString> = argv.into_iter().map(Into::into).collect();
    shard::remember_argv(argv.iter().skip(1).map(|a| a.to_string_lossy().into_owned()).collect());
    let cli = Cli::parse_from(argv);
    whence_checkpoint::tune_allocator();
    let verbosity = progress::Verbosity::new(cli.verbose, cli.quiet);
    progress::init_logging(verbosity);
    let result = match cli.command {
        Command::Demo(args) => commands::demo::run(args, verbosity),
        Command::Trace(args) => commands::trace::run(args, verbosity, None),
        Command::Select(args) => commands::select::run(args, verbosity, None),
        Command::Attribute(args) => commands::attribute::run(args, verbosity, None),
        Command::Generate(args) => commands::generate::run(args, verbosity),
        Command::Score(args) => commands::score::run(args, verbosity, None),
        Command::Segment(args) => commands::segment::run(args),
        Command::Grade(args) => commands::grade::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Merge(args) => merge(args, verbosity),
        Command::Report(args) => commands::report::run(args),
    };
    match result {
        Ok(()) => 0,
        Err(error) => errors::report(&error),
    }
}

/// `whence merge`: the shards' command line, run once more on their scores.
fn merge(args: commands::merge::MergeArgs, verbosity: progress::Verbosity) -> anyhow::Result<()> {
    let replay = shard::load(&args.shards)?;
    let mut argv = replay.argv.clone();
    argv.extend(["--out".to_string(), args.out.display().to_string()]);
    let cli = Cli::try_parse_from(&argv)
        .map_err(|e| errors::UsageError(format!("the shards' command line `{}` does not parse: {e}", argv[1..].join(" "))))?;
    tracing::info!("merging {} shards of `whence {}`", args.shards.len(), argv[1..].join(" "));
    match cli.command {
        Command::Trace(run) => commands::trace::run(run, verbosity, Some(replay)),
        Command::Select(run) => commands::select::run(run, verbosity, Some(replay)),
        Command::Score(run) => commands::score::run(run, verbosity, Some(replay)),
        Command::Attribute(run) => commands::attribute::run(run, verbosity, Some(replay)),
        _ => Err(errors::UsageError("whence merge combines shards of trace, select, attribute and score".into()).into()),
    }
}
