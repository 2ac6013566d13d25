//! `whence trace`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use whence_core::{Label, Threshold};
use whence_pipeline::trace::{run_trace, MethodSettings, TraceScorers};
use whence_pipeline::BetaChoice;
use whence_score::ScorerSpec;

use crate::args::{
    parse_beta, parse_scorer, parse_threshold, FormatArg, GradingArgs, InputArgs, ModelArgs, ScorerFactory, SegmentationArgs,
};
use crate::progress::{Bars, Verbosity};

/// Label every action of distilled-model responses.
///
/// Each role is a scorer: a Hugging Face checkpoint directory scored
/// in-process (model by model, through the score cache), inference-server
/// endpoints (`vllm+http://HOST:PORT/v1`, `sglang+http://HOST:PORT`, several
/// separated by commas; with `--tokenizer ROLE=DIR`), or `file:PATH` of
/// precomputed token log-probabilities (JSONL lines `{"id", "offsets",
/// "logprobs"}`). Writes DIR/actions.*, DIR/trajectories.*, DIR/positions.*
/// and DIR/summary.json.
#[derive(Debug, Args)]
pub struct TraceArgs {
    #[command(flatten)]
    pub input: InputArgs,

    /// Teacher scorer (M_T): a checkpoint DIR, vllm+URL[,URL…] or sglang+URL[,URL…] (inference servers; see --tokenizer), or file:PATH of precomputed log-probabilities
    #[arg(long, value_parser = parse_scorer, help_heading = "Models")]
    pub teacher: ScorerSpec,
    /// Original student scorer (M_S, before distillation)
    #[arg(long, value_parser = parse_scorer, help_heading = "Models")]
    pub student: ScorerSpec,
    /// Distilled model scorer (M_D), the one that wrote the responses
    #[arg(long, value_parser = parse_scorer, help_heading = "Models")]
    pub distilled: ScorerSpec,

    /// Output directory
    #[arg(long, short)]
    pub out: PathBuf,
    /// Table format
    #[arg(long, value_enum, default_value = "parquet")]
    pub format: FormatArg,
    /// Score only shard K of N (1-based; records split by id) into the --out directory; `whence merge` combines the shards
    #[arg(long, value_name = "K/N")]
    pub shard: Option<crate::shard::Shard>,

    /// α: all three probabilities within α make an action `shared`
    #[arg(long, default_value = "0.1", value_parser = parse_threshold, help_heading = "Method")]
    pub alpha: Threshold,
    /// β: `auto` (histogram-overlap search over 0.05 … 0.20) or a number
    #[arg(long, default_value = "auto", value_parser = parse_beta, help_heading = "Method")]
    pub beta: BetaChoice,
    /// Spacing of the token markers of the position profile
    #[arg(long, default_value = "4096", value_name = "TOKENS", help_heading = "Method")]
    pub marker_tokens: u64,

    #[command(flatten)]
    pub models: ModelArgs,
    #[command(flatten)]
    pub segmentation: SegmentationArgs,
    #[command(flatten)]
    pub grading: GradingArgs,
}

pub fn run(args: TraceArgs, verbosity: Verbosity, replay: Option<crate::shard::Replay>) -> anyhow::Result<()> {
    let settings = MethodSettings {
        alpha: args.alpha,
        beta: args.beta,
        segmentation: args.segmentation.config()?,
        marker_tokens: args.marker_tokens,
        skip_invalid: args.input.skip_invalid,
        fallback: args.grading.fallback,
    };
    let input = args.input.read(false)?;
    let mut factory = ScorerFactory::new(&args.models)?.replaying(replay);
    let mut teacher = factory.open("teacher", &args.teacher)?;
    let mut student = factory.open("student", &args.student)?;
    let mut distilled = factory.open("distilled", &args.distilled)?;
    if let Some(shard) = args.shard {
        let roles = vec![("teacher", teacher), ("student", student), ("distilled", distilled)];
        let bars = Bars::new(verbosity);
        return crate::shard::write_shard(
            "trace",
            shard,
            &args.input.input,
            &input.records,
            roles,
            args.input.skip_invalid,
            &args.out,
            &bars,
        );
    }
    let scorers = TraceScorers { teacher: teacher.as_mut(), student: student.as_mut(), distilled: distilled.as_mut() };
    let output = run_trace(input, scorers, &settings, &Bars::new(verbosity))?;
    let written = output.write(&args.out, args.format.into()).with_context(|| format!("writing {}", args.out.display()))?;
    let summary = &output.summary;
    let counts = &summary.label_counts;
    let share = |label: Label| counts.share(label).map_or("-".to_string(), |s| format!("{:.1}%", 100.0 * s));
    tracing::info!(
        "traced {} trajectories, {} actions (β = {}, {}; {} unscored, {} records skipped)",
        summary.trajectories,
        summary.actions,
        summary.beta,
        summary.beta_mode,
        summary.unscored_actions,
        summary.skipped_records
    );
    tracing::info!(
        "teacher {}  student {}  shared {}  boosted {}",
        share(Label::Teacher),
        share(Label::Student),
        share(Label::Shared),
        share(Label::Boosted)
    );
    for path in written {
        tracing::info!("wrote {}", path.display());
    }
    Ok(())
}
