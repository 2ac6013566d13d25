//! `whence serve`: a local checkpoint behind a vLLM-compatible HTTP API, so
//! that a GPU node can be a scorer or a generator without vLLM, and so that
//! the server clients (`whence-remote`, `whence-generate`) are tested
//! against a real server.
//!
//! Endpoints:
//! - `POST /v1/completions`: vLLM's body. `prompt` is text, token ids, or a
//!   list of either. Scoring: `prompt_logprobs` k ≤ 20 (per prompt token
//!   its log-probability, rank and the top k, vLLM's shape), or `echo` with
//!   `logprobs` k (the OpenAI legacy shape, as lm-evaluation-harness asks
//!   for it, with `max_tokens` 0 or 1). Sampling: `max_tokens` (default
//!   16), `n` (default 1; the choices of a prompt are decoded together, in
//!   one batch), `temperature` (default 1; 0 greedy), `top_p`, `top_k`,
//!   `seed`, `stop` (a string or a list), `stop_token_ids`, `ignore_eos`,
//!   `skip_special_tokens` (default true), `include_stop_str_in_output`
//!   (default false), `logprobs` k ≤ 20 of the generated tokens,
//!   `return_token_ids`. Answers have vLLM's shape (see [`api`]).
//! - `GET /v1/models`, `GET /health`.
//!
//! Scores come from the same decoder as the in-process scorer, so they are
//! the in-process numbers exactly. Samples come from the same KV-cache
//! decoding and token sampler as in-process `whence generate`: choice `i`
//! of a request with seed `s` draws from the stream `choice_seed(s, i)` and
//! stops as in-process generation stops (a stop token: the model's EOS and
//! end-of-turn tokens unless `ignore_eos`, and `stop_token_ids`; or a stop
//! string in the text of its tokens so far), so `whence generate
//! vllm+http://…` against `whence serve DIR` writes what `whence generate
//! DIR` writes with the same seed. A request without a seed gets a fresh
//! one. A stop token stays in `token_ids` and out of `text`; a stop string
//! is cut from `text` (both kept with `include_stop_str_in_output`).
//!
//! HTTP is hyper's, on tokio, with bounds on open connections and on
//! requests handled at once, header and body timeouts, and a graceful
//! shutdown on SIGTERM/SIGINT (see [`http`]). A request holds the model from
//! its first forward pass to its answer, so requests are answered one at a
//! time (the model uses every core) and concurrent ones wait in line. A bad
//! request gets a 400 JSON error (`{"error": {"message", "type", "code"}}`,
//! the message naming the field and its value) and the server keeps
//! serving.

pub mod api;
pub mod http;
mod model;
pub mod sampling;

pub use api::{handle, Settings};
pub use model::{Model, PromptScores, Session};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use whence_checkpoint::CheckpointOptions;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where to listen; 127.0.0.1 unless told otherwise.
    pub addr: SocketAddr,
    /// Required as `Authorization: Bearer KEY` when set.
    pub api_key: Option<String>,
    /// The model name in `/v1/models` and answers [default: the directory's name].
    pub model_name: Option<String>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Open connections at once; further connections wait to be accepted.
    pub max_connections: usize,
    /// Requests handled at once (their body read, waiting for or using the
    /// model); further ones wait, holding only their connection.
    pub max_concurrent_requests: usize,
    /// How long a request head may take to arrive (from the connection's
    /// opening or the previous answer: also how long a keep-alive connection
    /// may sit idle).
    pub header_timeout: Duration,
    /// How long a request body may take to arrive.
    pub body_timeout: Duration,
    /// How long requests in flight may take to finish after SIGTERM/SIGINT.
    pub shutdown_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            api_key: None,
            model_name: None,
            max_body_bytes: 64 << 20,
            max_connections: 2048,
            max_concurrent_requests: 64,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(300),
        }
    }
}

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Checkpoint(#[from] whence_checkpoint::CheckpointError),
    #[error("cannot listen on {addr}: {message}")]
    Bind { addr: SocketAddr, message: String },
    #[error("serving on {addr}: {message}")]
    Serve { addr: SocketAddr, message: String },
}

/// A bound server with its model loaded.
pub struct Server {
    listener: std::net::TcpListener,
    model: Arc<Model>,
    options: ServeOptions,
}

impl Server {
    /// Loads the checkpoint and binds the address.
    pub fn bind(dir: &Path, checkpoint: CheckpointOptions, options: ServeOptions) -> Result<Self, ServeError> {
        let name = options.model_name.clone().unwrap_or_else(|| {
            dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()).file_name().map_or("model".into(), |n| n.to_string_lossy().into())
        });
        let model = Model::load(dir, checkpoint, name)?;
        let listener = http::bind(options.addr).map_err(|e| ServeError::Bind { addr: options.addr, message: e.to_string() })?;
        Ok(Server { listener, model: Arc::new(model), options })
    }

    /// The address actually bound (port 0 picks a free one).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.options.addr)
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Serves until SIGTERM or SIGINT, then finishes the requests in flight.
    pub fn run(self) -> Result<http::Stopped, ServeError> {
        let options = &self.options;
        let limits = http::HttpLimits {
            max_body_bytes: options.max_body_bytes,
            max_header_bytes: 64 << 10,
            max_connections: options.max_connections,
            max_concurrent_requests: options.max_concurrent_requests,
            header_timeout: options.header_timeout,
            body_timeout: options.body_timeout,
            shutdown_timeout: options.shutdown_timeout,
        };
        http::raise_open_file_limit(options.max_connections);
        let addr = self.local_addr();
        let model = Arc::clone(&self.model);
        let api_key = options.api_key.clone();
        let handler: http::Handler = Arc::new(move |request: &ApiRequest| handle(request, &model, api_key.as_deref()));
        http::serve(self.listener, limits, handler).map_err(|e| ServeError::Serve { addr, message: e.to_string() })
    }
}

/// An HTTP request as the API sees it.
#[derive(Debug)]
pub struct ApiRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub authorization: Option<&'a str>,
    pub body: &'a [u8],
}

/// An answer: status and JSON body.
#[derive(Debug)]
pub struct ApiResponse {
    pub status: u16,
    pub body: String,
}
