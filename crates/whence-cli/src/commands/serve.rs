//! `whence serve`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::args::parse_dtype;

/// What `whence serve --help` says after the options (the one-line
/// description is the subcommand's, in main.rs).
const SERVE_HELP: &str = "\
Endpoints: POST /v1/completions (vLLM's request fields and answers; prompts as text or token ids, or a list of either), GET /v1/models, GET /health.

Scoring: `prompt_logprobs` k (vLLM's shape: per prompt token its log-probability, rank and top k), or `echo` with `logprobs` k and `max_tokens` 0 or 1 (the OpenAI legacy shape, as lm-evaluation-harness asks). Point scoring runs at it with --teacher vllm+http://HOST:PORT/v1 --tokenizer teacher=DIR.

Sampling: `max_tokens` (default 16), `n` (default 1), `temperature` (default 1; 0: greedy), `top_p`, `top_k`, `seed`, `stop` (a string or a list), `stop_token_ids`, `ignore_eos`, `skip_special_tokens` (default true), `include_stop_str_in_output`, `logprobs` k (of the generated tokens: the plain softmax's, temperature 1, and the top k), `return_token_ids`. The n choices of a prompt are decoded together; choice i draws from a stream of the seed and i, as in-process generation draws it, so `whence generate vllm+http://HOST:PORT/v1 --tokenizer DIR` writes what `whence generate DIR` writes with the same seed. The model's EOS and end-of-turn tokens end a choice (unless `ignore_eos`); a stop token stays in `token_ids` and out of `text`.

Refused with a 400 naming the field: values out of range (negative temperature, top_p outside (0, 1], n 0, logprobs over 20, prompt + max_tokens over the context), and what whence serve does not do (penalties, min_p, logit_bias, best_of > n, beam search, streaming). The server keeps serving.

Requests are answered one at a time, each holding the model from its first forward pass to its answer (the model uses every core); concurrent ones wait in line. Logs one line per request on stderr.

Limits: at most --max-connections open connections (more wait to be accepted); a request head must arrive within --header-timeout of the connection's opening or the previous answer (so a keep-alive connection idle that long is closed) and its body within --body-timeout (else 408), at most --max-body-bytes (else 413); at most --max-concurrent-requests requests whose body has arrived are handled at once (more wait), so idle or slow clients never hold up the others.

Shutdown: on SIGTERM or SIGINT the requests in flight finish (at most --shutdown-timeout), new ones get a 503, then the server exits 0; a second signal stops at once (exit 1).";

/// Serve a local checkpoint behind a vLLM-compatible API, so that a GPU
/// node can be a scorer or a generator without vLLM (what it answers: `SERVE_HELP`).
#[derive(Debug, Args)]
#[command(after_long_help = SERVE_HELP)]
pub struct ServeArgs {
    /// Checkpoint directory (config.json, tokenizer.json, safetensors)
    pub checkpoint: PathBuf,
    /// Address to listen on; 127.0.0.1 unless told otherwise (0.0.0.0: every interface)
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to listen on (0: any free port, printed at start)
    #[arg(long, default_value = "8000")]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` on every request but /health
    #[arg(long, env = "WHENCE_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Model name in /v1/models and answers [default: the checkpoint directory's name]
    #[arg(long, value_name = "NAME")]
    pub served_model_name: Option<String>,
    /// Largest request body accepted, in bytes
    #[arg(long, default_value = "67108864", value_name = "BYTES")]
    pub max_body_bytes: usize,
    /// Open connections at once (more wait to be accepted)
    #[arg(long, default_value = "2048", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Requests handled at once once their body has arrived (more wait in line)
    #[arg(long, default_value = "64", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_requests: u32,
    /// Seconds a request head may take to arrive, from the connection's opening or the previous answer (so also how long a keep-alive connection may sit idle)
    #[arg(long, default_value = "30", value_name = "SECONDS", value_parser = parse_seconds)]
    pub header_timeout: Duration,
    /// Seconds a request body may take to arrive
    #[arg(long, default_value = "60", value_name = "SECONDS", value_parser = parse_seconds)]
    pub body_timeout: Duration,
    /// Seconds the requests in flight may take to finish after SIGTERM/SIGINT
    #[arg(long, default_value = "300", value_name = "SECONDS", value_parser = parse_seconds)]
    pub shutdown_timeout: Duration,
    /// Compute dtype: f32 (exact), bf16 (weights in bf16, half the memory; on the CPU products of bf16 with f32 sums, everything else f32), f16
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    pub dtype: candle_core::DType,
    /// Tokens one scoring pass may hold: scoring requests that arrive while the model is busy are packed into one pass of up to N tokens [default: 8192 on a GPU; 1 on the CPU, one request per pass]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_tokens: Option<u64>,
    /// Device: cpu, cuda, cuda:N, metal (cuda/metal need the cargo feature)
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// CPU threads [default: all cores]
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    if let Some(threads) = args.threads {
        if threads == 0 {
            return Err(crate::errors::UsageError("--threads must be at least 1".into()).into());
        }
        // SAFETY: set once at start-up, before any thread is spawned.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
    let device = whence_checkpoint::device(&args.device).map_err(|e| crate::errors::UsageError(e.to_string()))?;
    let checkpoint = whence_checkpoint::CheckpointOptions {
        dtype: args.dtype,
        device,
        batch_tokens: args.batch_tokens.map(|n| n as usize),
        ..Default::default()
    };
    let options = whence_serve::ServeOptions {
        addr: SocketAddr::new(args.host, args.port),
        api_key: args.api_key,
        model_name: args.served_model_name,
        max_body_bytes: args.max_body_bytes,
        max_connections: args.max_connections as usize,
        max_concurrent_requests: args.max_concurrent_requests as usize,
        header_timeout: args.header_timeout,
        body_timeout: args.body_timeout,
        shutdown_timeout: args.shutdown_timeout,
    };
    let server = whence_serve::Server::bind(&args.checkpoint, checkpoint, options)
        .map_err(|e| match e {
            whence_serve::ServeError::Checkpoint(e) => anyhow::Error::from(crate::errors::UsageError(e.to_string())),
            other => other.into(),
        })
        .with_context(|| format!("serving {}", args.checkpoint.display()))?;
    // Tests and scripts read this line for the port.
    eprintln!("whence serve: `{}` listening on http://{}/v1", server.model().name(), server.local_addr());
    match server.run()? {
        whence_serve::http::Stopped::Drained => {
            eprintln!("whence serve: every request answered; stopped");
            Ok(())
        }
        whence_serve::http::Stopped::TimedOut { in_flight } => {
            anyhow::bail!("stopped with {in_flight} request(s) unanswered after --shutdown-timeout")
        }
        whence_serve::http::Stopped::Interrupted { in_flight } => {
            anyhow::bail!("stopped by a second signal with {in_flight} request(s) unanswered")
        }
    }
}

/// A positive number of seconds (fractions allowed: `0.5`).
fn parse_seconds(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds.is_finite() && seconds <= 1e9 => Ok(Duration::from_secs_f64(seconds)),
        _ => Err(format!("`{text}` is not a positive number of seconds (e.g. 30 or 0.5)")),
    }
}
