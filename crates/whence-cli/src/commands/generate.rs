//! `whence generate`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use whence_generate::{CheckpointGenerator, GenerateOptions, Generator, SamplingParams, ServerGenerator, Temperature, TopK, TopP};
use whence_score::ScorerSpec;

use crate::args::{parse_scorer, FieldArgs, ModelArgs, ScorerFactory};
use crate::errors::UsageError;
use crate::progress::{Bars, Verbosity};

/// Sample responses to questions: several per question, from a checkpoint
/// in-process (KV-cache decoding) or from inference servers.
///
/// Writes one record per sample in whence's input format (`id` QID#k,
/// `question_id`, the prompt, `response`, `answer`, `finish_reason`,
/// `tokens`), ready for `whence trace` and `whence select`, and the settings,
/// counts and speed in OUT.summary.json. The chat template is applied as
/// scoring applies it, so re-scoring a response sees the same prompt tokens.
/// The same model, settings and seed give byte-identical output in-process,
/// whatever the thread count; with a cache, an interrupted run resumes.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The model: a checkpoint DIR (in-process), or vllm+URL[,URL…] / sglang+URL[,URL…] (inference servers, with --tokenizer DIR)
    #[arg(value_parser = parse_scorer)]
    pub model: ScorerSpec,
    /// Questions: JSONL or Parquet records with a prompt (`prompt`, `messages` or `conversations`)
    #[arg(long, short)]
    pub input: PathBuf,
    /// Output JSONL file of responses
    #[arg(long, short)]
    pub out: PathBuf,
    /// Also write the sampled tokens' log-probabilities (temperature 1, no cut) to FILE in the file: scorer format
    #[arg(long, value_name = "FILE")]
    pub logprobs: Option<PathBuf>,
    /// Skip questions that cannot be generated for (listed in the summary) instead of failing
    #[arg(long)]
    pub skip_invalid: bool,

    /// Samples per question
    #[arg(long, default_value = "1", value_name = "N", help_heading = "Sampling")]
    pub samples: usize,
    /// Softmax temperature; 0 is greedy decoding
    #[arg(long, default_value = "1.0", value_parser = parse_temperature, allow_negative_numbers = true, help_heading = "Sampling")]
    pub temperature: Temperature,
    /// Nucleus sampling: keep the most likely tokens up to this probability mass (1: all)
    #[arg(long, default_value = "1.0", value_parser = parse_top_p, allow_negative_numbers = true, help_heading = "Sampling")]
    pub top_p: TopP,
    /// Keep the K most likely tokens (0 or -1: all)
    #[arg(long, default_value = "0", value_parser = parse_top_k, allow_negative_numbers = true, help_heading = "Sampling")]
    pub top_k: TopK,
    /// Seed of the random streams (sample k of question Q draws from a stream of seed, Q and k)
    #[arg(long, default_value = "0", help_heading = "Sampling")]
    pub seed: u64,
    /// Most tokens per sample, its stop token included
    #[arg(long, default_value = "2048", value_name = "TOKENS", help_heading = "Sampling")]
    pub max_new_tokens: usize,
    /// A string that ends a sample (not written into the response); repeatable. The model's EOS and end-of-turn tokens always end one
    #[arg(long = "stop", value_name = "STRING", help_heading = "Sampling")]
    pub stop: Vec<String>,

    /// In-process on the CPU: decode consecutive questions together, up to N samples in all per step (1: one question at a time). The same N and question order give the same output; a run resumed from the cache may batch the rest otherwise, which can move a logit in its last bits
    #[arg(long, default_value = "1", value_name = "N", help_heading = "Sampling")]
    pub batch_rows: usize,

    #[command(flatten)]
    pub fields: FieldArgs,
    #[command(flatten)]
    pub models: ModelArgs,
}

fn parse_temperature(s: &str) -> Result<Temperature, String> {
    s.parse().map_err(|e: whence_generate::SamplingError| e.to_string())
}

fn parse_top_p(s: &str) -> Result<TopP, String> {
    s.parse().map_err(|e: whence_generate::SamplingError| e.to_string())
}

fn parse_top_k(s: &str) -> Result<TopK, String> {
    s.parse().map_err(|e: whence_generate::SamplingError| e.to_string())
}

fn write_lines(path: &Path, lines: &[String]) -> anyhow::Result<()> {
    whence_io::write_lines_atomic(path, lines).with_context(|| format!("writing {}", path.display()))
}

pub fn run(args: GenerateArgs, verbosity: Verbosity) -> anyhow::Result<()> {
    if args.samples == 0 {
        return Err(UsageError("--samples 0: ask for at least 1 sample per question".into()).into());
    }
    if args.batch_rows == 0 {
        return Err(UsageError("--batch-rows 0: give at least 1 (one question at a time)".into()).into());
    }
    if args.max_new_tokens == 0 {
        return Err(UsageError("--max-new-tokens 0: ask for at least 1 token per sample".into()).into());
    }
    if args.logprobs.as_deref() == Some(args.out.as_path()) {
        return Err(UsageError(format!("--logprobs and --out are the same file `{}`", args.out.display())).into());
    }
    let questions = args.fields.read_questions(&args.input, args.skip_invalid)?;
    let mut factory = ScorerFactory::new(&args.models)?;
    let mut generator: Box<dyn Generator> = match &args.model {
        ScorerSpec::File(path) => {
            return Err(UsageError(format!(
                "`file:{}` holds precomputed scores and cannot generate\nhint: give a checkpoint directory, or vllm+URL / sglang+URL with --tokenizer DIR",
                path.display()
            ))
            .into())
        }
        ScorerSpec::Checkpoint(dir) => Box::new(
            CheckpointGenerator::open(dir, factory.checkpoint_options()?)
                .with_context(|| format!("model {}", dir.display()))?
                .with_batch_rows(args.batch_rows),
        ),
        ScorerSpec::Server(server) => {
            let encoder = factory.server_encoder("model", "model", &args.model)?;
            Box::new(
                ServerGenerator::open(server, encoder, factory.client_options().clone()).with_context(|| format!("model {}", args.model))?,
            )
        }
    };
    let cache = factory.cache()?;
    let options = GenerateOptions {
        samples: args.samples,
        params: SamplingParams { temperature: args.temperature, top_p: args.top_p, top_k: args.top_k },
        seed: args.seed,
        max_new_tokens: args.max_new_tokens,
        stop: args.stop.clone(),
        skip_invalid: args.skip_invalid,
        memory_limit: whence_checkpoint::generate::kv_cache_memory(),
    };
    let command = std::iter::once("whence".to_string()).chain(std::env::args().skip(1)).collect::<Vec<_>>().join(" ");
    let mut outcome = whence_generate::generate_all(
        &questions.records,
        generator.as_mut(),
        &options,
        cache.as_deref(),
        &Bars::new(verbosity),
        &args.input.display().to_string(),
        command,
    )?;
    for skipped in &questions.skipped {
        outcome.summary.skipped_questions += 1;
        outcome.summary.skipped.push(skipped.clone());
    }
    write_lines(&args.out, &outcome.responses)?;
    if let Some(path) = &args.logprobs {
        write_lines(path, &outcome.logprobs)?;
    }
    let summary_path = PathBuf::from(format!("{}.summary.json", args.out.display()));
    whence_io::write_json_atomic(&summary_path, &outcome.summary).with_context(|| format!("writing {}", summary_path.display()))?;
    let s = &outcome.summary;
    tracing::info!(
        "{} samples of {} questions ({} skipped, {} from the cache): {} stopped, {} hit --max-new-tokens; {} tokens at {:.1} tokens/s",
        s.samples,
        s.questions,
        s.skipped_questions,
        s.cached_questions,
        s.finish_reasons.stop,
        s.finish_reasons.length,
        s.generated_tokens,
        s.tokens_per_second
    );
    if s.non_canonical_responses > 0 {
        tracing::info!(
            "{} of {} responses are not the tokenizer's own tokenization of their text (see the README's Sampling section)",
            s.non_canonical_responses,
            s.samples
        );
    }
    if s.empty_responses > 0 {
        tracing::warn!(
            "{} responses are empty (the model stopped at once); trace and select refuse them unless --skip-invalid",
            s.empty_responses
        );
    }
    tracing::info!("wrote {} and {}", args.out.display(), summary_path.display());
    Ok(())
}
