//! `whence attribute`.

use std::path::PathBuf;

use clap::Args;
use whence_core::Threshold;
use whence_pipeline::attribute::{run_attribute, valid_candidate_name, Candidate};
use whence_pipeline::BetaChoice;
use whence_pipeline::MethodSettings;
use whence_score::ScorerSpec;

use crate::args::{
    parse_beta, parse_scorer, parse_threshold, FormatArg, GradingArgs, InputArgs, ModelArgs, ScorerFactory, SegmentationArgs,
};
use crate::errors::UsageError;
use crate::progress::{Bars, Verbosity};

/// Rank candidate teachers of a distilled model (paper A.4.3).
///
/// Each candidate plays the teacher in a full labelling of the distilled
/// responses with the same student. Candidates are ranked by teacher share
/// minus student share over scored actions: the true teacher explains the most
/// actions and leaves the fewest to the student. Prints the ranking; writes
/// DIR/attribution.json, DIR/candidates.* and DIR/positions-NAME.*.
#[derive(Debug, Args)]
pub struct AttributeArgs {
    #[command(flatten)]
    pub input: InputArgs,

    /// Distilled model scorer (the one that wrote the responses)
    #[arg(long, value_parser = parse_scorer, help_heading = "Models")]
    pub distilled: ScorerSpec,
    /// Original student scorer
    #[arg(long, value_parser = parse_scorer, help_heading = "Models")]
    pub student: ScorerSpec,
    /// A candidate teacher as NAME=SCORER, e.g. r1=file:r1.jsonl; two or more
    #[arg(long = "candidate", value_name = "NAME=SCORER", required = true, num_args = 1, help_heading = "Models")]
    pub candidates: Vec<String>,

    /// Output directory
    #[arg(long, short)]
    pub out: PathBuf,
    /// Score only shard K of N (1-based; records split by id) into the --out directory; `whence merge` combines the shards
    #[arg(long, value_name = "K/N")]
    pub shard: Option<crate::shard::Shard>,
    /// Table format
    #[arg(long, value_enum, default_value = "parquet")]
    pub format: FormatArg,

    /// α: all three probabilities within α make an action `shared`
    #[arg(long, default_value = "0.1", value_parser = parse_threshold, help_heading = "Method")]
    pub alpha: Threshold,
    /// β: `auto` (searched per candidate over 0.05 … 0.20) or a number for all
    #[arg(long, default_value = "auto", value_parser = parse_beta, help_heading = "Method")]
    pub beta: BetaChoice,
    /// Spacing of the token markers of the position profiles
    #[arg(long, default_value = "4096", value_name = "TOKENS", help_heading = "Method")]
    pub marker_tokens: u64,

    #[command(flatten)]
    pub models: ModelArgs,
    #[command(flatten)]
    pub segmentation: SegmentationArgs,
    #[command(flatten)]
    pub grading: GradingArgs,
}

fn parse_candidates(given: &[String]) -> anyhow::Result<Vec<(String, ScorerSpec)>> {
    if given.len() < 2 {
        return Err(UsageError(format!("attribute needs two or more --candidate NAME=SCORER; got {}", given.len())).into());
    }
    let mut candidates: Vec<(String, ScorerSpec)> = Vec::new();
    for text in given {
        let (name, spec) = text
            .split_once('=')
            .ok_or_else(|| UsageError(format!("invalid --candidate `{text}`; expected NAME=SCORER, e.g. r1=file:r1.jsonl")))?;
        if !valid_candidate_name(name) {
            return Err(UsageError(format!(
                "invalid candidate name `{name}` in --candidate `{text}`; use letters, digits, `_`, `-` and `.`"
            ))
            .into());
        }
        if candidates.iter().any(|(n, _)| n == name) {
            return Err(UsageError(format!("candidate name `{name}` is given twice")).into());
        }
        let spec = parse_scorer(spec).map_err(|e| UsageError(format!("--candidate `{text}`: {e}")))?;
        candidates.push((name.to_string(), spec));
    }
    Ok(candidates)
}

pub fn run(args: AttributeArgs, verbosity: Verbosity, replay: Option<crate::shard::Replay>) -> anyhow::Result<()> {
    let specs = parse_candidates(&args.candidates)?;
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
    let mut distilled = factory.open("distilled", &args.distilled)?;
    let mut student = factory.open("student", &args.student)?;
    let roles: Vec<String> = specs.iter().map(|(name, _)| format!("candidate {name}")).collect();
    let mut scorers = Vec::with_capacity(specs.len());
    for ((name, spec), role) in specs.iter().zip(&roles) {
        scorers.push((name.clone(), factory.open(role, spec)?));
    }
    if let Some(shard) = args.shard {
        let mut all = vec![("distilled", distilled), ("student", student)];
        all.extend(roles.iter().map(String::as_str).zip(scorers.into_iter().map(|(_, scorer)| scorer)));
        let bars = Bars::new(verbosity);
        return crate::shard::write_shard(
            "attribute",
            shard,
            &args.input.input,
            &input.records,
            all,
            args.input.skip_invalid,
            &args.out,
            &bars,
        );
    }
    let candidates = scorers.iter_mut().map(|(name, scorer)| Candidate { name: name.clone(), scorer: scorer.as_mut() }).collect();
    let output = run_attribute(input, distilled.as_mut(), student.as_mut(), candidates, &settings, &Bars::new(verbosity))?;
    let written = output.write(&args.out, args.format.into())?;
    let mut ranked: Vec<_> = output.summary.candidates.iter().collect();
    ranked.sort_by_key(|c| c.rank);
    let percent = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{:.1}%", 100.0 * x));
    println!("rank  candidate             margin   teacher   student    shared   boosted  beta");
    for c in ranked {
        let a = &c.attribution;
        println!(
            "{:>4}  {:<18} {:>9} {:>9} {:>9} {:>9} {:>9}  {}",
            c.rank,
            a.name,
            a.margin.map_or("-".to_string(), |m| format!("{:+.3}", m)),
            percent(a.teacher_share),
            percent(a.student_share),
            percent(a.shared_share),
            percent(a.boosted_share),
            a.beta
        );
    }
    println!("ranked by {}", output.summary.ranking_statistic);
    for path in written {
        tracing::info!("wrote {}", path.display());
    }
    Ok(())
}
