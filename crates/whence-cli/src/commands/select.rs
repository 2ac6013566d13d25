//! `whence select`.

use std::path::PathBuf;

use clap::Args;
use whence_core::Strategy;
use whence_pipeline::select::{run_select, SelectOutput, SelectSettings};
use whence_pipeline::BetaChoice;
use whence_score::ScorerSpec;

use crate::args::{parse_beta, parse_scorer, InputArgs, ModelArgs, ScorerFactory, SegmentationArgs};
use crate::progress::{Bars, Verbosity};

/// Keep one teacher response per question for distillation.
///
/// Candidates are grouped by question id; their actions are labelled
/// teacher / student / common by teacher-vs-student probability (β chosen by
/// the histogram-overlap search over 0.05 … 1.0 unless given). Writes the kept
/// records to FILE in the input's own format with every field, and
/// FILE.summary.json.
#[derive(Debug, Args)]
pub struct SelectArgs {
    #[command(flatten)]
    pub input: InputArgs,

    /// Teacher scorer: a checkpoint DIR, vllm+URL[,URL…] or sglang+URL[,URL…] (inference servers; see --tokenizer), or file:PATH of precomputed log-probabilities
    #[arg(long, value_parser = parse_scorer, help_heading = "Models")]
    pub teacher: ScorerSpec,
    /// Student scorer (the model to be distilled)
    #[arg(long, value_parser = parse_scorer, help_heading = "Models")]
    pub student: ScorerSpec,

    /// Output file for the kept records (same format as the input); with --shard, a directory
    #[arg(long, short)]
    pub out: PathBuf,
    /// Score only shard K of N (1-based; records split by id) into the --out directory; `whence merge` combines the shards
    #[arg(long, value_name = "K/N")]
    pub shard: Option<crate::shard::Shard>,

    /// Which response to keep per question
    #[arg(long, default_value = "teacher-count", value_parser = parse_strategy, help_heading = "Method",
          long_help = "Which response to keep per question:\n  teacher-count      the most teacher actions (the paper's method)\n  teacher-ratio      the highest teacher / scored actions\n  longest            the most actions\n  min-teacher-count  the fewest teacher actions\n  random             a uniformly random one (the paper's \"Vanilla\"), reproducible from --seed\n  grape              the highest mean token log-probability under the student (GRAPE)\nTies go to the candidate that comes first in the input")]
    pub strategy: Strategy,
    /// Seed of the `random` strategy
    #[arg(long, default_value = "0", help_heading = "Method")]
    pub seed: u64,
    /// β: `auto` (histogram-overlap search over 0.05 … 1.0) or a number
    #[arg(long, default_value = "auto", value_parser = parse_beta, help_heading = "Method")]
    pub beta: BetaChoice,

    #[command(flatten)]
    pub models: ModelArgs,
    #[command(flatten)]
    pub segmentation: SegmentationArgs,
}

fn parse_strategy(s: &str) -> Result<Strategy, String> {
    s.parse().map_err(|e: whence_core::select::UnknownStrategy| e.to_string())
}

pub fn run(args: SelectArgs, verbosity: Verbosity, replay: Option<crate::shard::Replay>) -> anyhow::Result<()> {
    let settings = SelectSettings {
        strategy: args.strategy,
        seed: args.seed,
        beta: args.beta,
        segmentation: args.segmentation.config()?,
        skip_invalid: args.input.skip_invalid,
    };
    let input = args.input.read(false)?;
    let mut factory = ScorerFactory::new(&args.models)?.replaying(replay);
    let mut teacher = factory.open("teacher", &args.teacher)?;
    let mut student = factory.open("student", &args.student)?;
    if let Some(shard) = args.shard {
        let roles = vec![("teacher", teacher), ("student", student)];
        let bars = Bars::new(verbosity);
        return crate::shard::write_shard(
            "select",
            shard,
            &args.input.input,
            &input.records,
            roles,
            args.input.skip_invalid,
            &args.out,
            &bars,
        );
    }
    let output: SelectOutput = run_select(input, teacher.as_mut(), student.as_mut(), &settings, &Bars::new(verbosity))?;
    let [records, summary] = output.write(&args.out)?;
    let s = &output.summary;
    tracing::info!(
        "kept {} of {} responses ({} questions; strategy {}, β = {} {})",
        s.kept,
        s.records,
        s.questions,
        s.strategy,
        s.beta,
        s.beta_mode
    );
    tracing::info!("wrote {} and {}", records.display(), summary.display());
    Ok(())
}
