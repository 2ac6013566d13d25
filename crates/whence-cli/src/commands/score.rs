//! `whence score`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use whence_core::Record;
use whence_score::ScorerSpec;

use crate::args::{parse_scorer, FieldArgs, ModelArgs, ScorerFactory};
use crate::progress::{Bars, Verbosity};

/// Write a model's token log-probabilities for every record, in the `file:`
/// scorer format (JSONL: id, offsets, logprobs), so that scoring can run
/// elsewhere (a GPU node) and analyses reuse it with `--teacher file:OUT`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// The model: a checkpoint DIR, vllm+URL or sglang+URL (inference servers, with --tokenizer DIR), or file:PATH (to re-check a scorer file, or to turn its token ids into byte offsets with --tokenizer model=DIR)
    #[arg(long, value_parser = parse_scorer)]
    pub model: ScorerSpec,
    /// Records: JSONL or Parquet (`--input INPUT` is accepted too)
    #[arg(value_name = "INPUT", required_unless_present = "input_flag")]
    pub input: Option<PathBuf>,
    /// The records as a flag, the spelling of earlier versions
    #[arg(long = "input", short = 'i', value_name = "INPUT", hide = true, conflicts_with = "input")]
    pub input_flag: Option<PathBuf>,
    /// Output JSONL file; with --shard, a directory
    #[arg(long, short)]
    pub out: PathBuf,
    /// Score only shard K of N (1-based; records split by id) into the --out directory; `whence merge` combines the shards
    #[arg(long, value_name = "K/N")]
    pub shard: Option<crate::shard::Shard>,
    /// Skip records that cannot be scored (listed on stderr) instead of failing
    #[arg(long)]
    pub skip_invalid: bool,
    #[command(flatten)]
    pub fields: FieldArgs,
    #[command(flatten)]
    pub models: ModelArgs,
}

impl ScoreArgs {
    /// INPUT, given as the positional argument or as `--input`.
    pub fn input(&self) -> &Path {
        self.input.as_deref().or(self.input_flag.as_deref()).expect("clap requires INPUT or --input")
    }
}

pub fn run(args: ScoreArgs, verbosity: Verbosity, replay: Option<crate::shard::Replay>) -> anyhow::Result<()> {
    let set = args.fields.read(args.input(), args.skip_invalid, false)?;
    let mut factory = ScorerFactory::new(&args.models)?.replaying(replay);
    let scorer = factory.open("model", &args.model)?;
    let bars = Bars::new(verbosity);
    if let Some(shard) = args.shard {
        return crate::shard::write_shard(
            "score",
            shard,
            args.input(),
            &set.records,
            vec![("model", scorer)],
            args.skip_invalid,
            &args.out,
            &bars,
        );
    }
    let mut scorer = scorer;
    let records: Vec<&Record> = set.records.iter().collect();
    let (lines, failures) = crate::shard::score_all("model", scorer.as_mut(), &records, args.skip_invalid, &bars)?;
    let skipped = failures.len();
    whence_io::write_atomic(&args.out, |writer| {
        for line in &lines {
            writer.write_all(line.as_bytes())?;
            writer.write_all(b"\n")?;
        }
        Ok(())
    })
    .with_context(|| format!("writing {}", args.out.display()))?;
    tracing::info!("scored {} records ({} skipped); wrote {}", lines.len(), skipped, args.out.display());
    Ok(())
}
