//! `whence score`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use whence_core::Record;
use whence_pipeline::Progress;
use whence_score::ScorerSpec;

use crate::args::{parse_scorer, FieldArgs, ModelArgs, ScorerFactory};
use crate::progress::{Bars, Verbosity};

/// Write a model's token log-probabilities for every record, in the `file:`
/// scorer format (JSONL: id, offsets, logprobs), so that scoring can run
/// elsewhere (a GPU node) and analyses reuse it with `--teacher file:OUT`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// The model: a checkpoint DIR (or file:PATH, to re-check a scorer file)
    #[arg(long, value_parser = parse_scorer)]
    pub model: ScorerSpec,
    /// Records: JSONL or Parquet
    #[arg(long, short)]
    pub input: PathBuf,
    /// Output JSONL file
    #[arg(long, short)]
    pub out: PathBuf,
    /// Skip records that cannot be scored (listed on stderr) instead of failing
    #[arg(long)]
    pub skip_invalid: bool,
    #[command(flatten)]
    pub fields: FieldArgs,
    #[command(flatten)]
    pub models: ModelArgs,
}

#[derive(serde::Serialize)]
struct ScoreLine<'a> {
    id: &'a str,
    offsets: Vec<[usize; 2]>,
    logprobs: &'a [f64],
}

pub fn run(args: ScoreArgs, verbosity: Verbosity) -> anyhow::Result<()> {
    let set = args.fields.read(&args.input, args.skip_invalid, false)?;
    let mut factory = ScorerFactory::new(&args.models)?;
    let mut scorer = factory.open("model", &args.model)?;
    let bars = Bars::new(verbosity);
    let records: Vec<&Record> = set.records.iter().collect();
    bars.start("model", records.len() as u64);
    let mut lines = Vec::with_capacity(records.len());
    let mut skipped = 0usize;
    for chunk in records.chunks(16) {
        let mut tokens = 0;
        for (record, result) in chunk.iter().zip(scorer.score_batch(chunk)) {
            match result {
                Ok(scores) => {
                    tokens += scores.spans.len() as u64;
                    let line = ScoreLine {
                        id: &record.id,
                        offsets: scores.spans.iter().map(|s| [s.start, s.end]).collect(),
                        logprobs: &scores.logprobs,
                    };
                    lines.push(serde_json::to_string(&line)?);
                }
                Err(error) if args.skip_invalid && error.is_record_specific() => {
                    tracing::warn!("skipped {}: {error}", record.source);
                    skipped += 1;
                }
                Err(error) => return Err(error).with_context(|| format!("scoring {}", record.source)),
            }
        }
        bars.advance(chunk.len() as u64, tokens);
    }
    bars.finish();
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
