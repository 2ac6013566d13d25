//! Sampling responses, so that the pipeline starts from questions: several
//! samples per question from a checkpoint in-process ([`local`], decoding
//! with `whence-checkpoint`'s KV cache) or from inference servers
//! ([`remote`]: vLLM `/v1/completions`, SGLang `/generate`, or `whence
//! serve`), written in whence's own input format by the [`job`].
//!
//! - A [`Request`] is what one question asks for: how many samples, the
//!   [`SamplingParams`], the question's stream seed, the token budget and
//!   the stops. Sample `k` draws from the stream
//!   [`choice_seed`]`(request_seed, k)`, so it is the same whatever is
//!   decoded beside it.
//! - A [`Generator`] turns a prompt's token ids into [`Sample`]s: the tokens
//!   as drawn, each one's plain log-probability (temperature 1, no cut), and
//!   why it ended.
//! - [`text::Response`] is a sample made a response: its text (stop token
//!   and stop string removed), the byte span of each kept token, and whether
//!   the tokenizer's own tokenization of that text gives the same tokens (a
//!   sampled sequence need not be canonical; see [`text`]).

pub mod job;
pub mod local;
pub mod remote;
pub mod text;

pub use job::{generate_all, GenerateOptions, GenerateOutcome, GenerateSummary};
pub use local::CheckpointGenerator;
pub use remote::ServerGenerator;
pub use whence_sample::{choice_seed, request_seed, SamplingError, SamplingParams, Temperature, TopK, TopP};

use whence_encode::Encoder;
use whence_score::ModelInfo;

/// What one question asks of a generator.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Samples to draw (≥ 1).
    pub samples: usize,
    pub params: SamplingParams,
    /// The question's stream seed ([`request_seed`] of the run's seed and the question id).
    pub request_seed: u64,
    /// Most tokens drawn per sample, a stop token included.
    pub max_new_tokens: usize,
    /// Strings that end a sample (not written into the response).
    pub stop: Vec<String>,
    /// Tokens that end a sample (the model's end-of-turn and EOS tokens).
    pub stop_token_ids: Vec<u32>,
}

/// Why a sample ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// A stop token or a stop string.
    Stop,
    /// `max_new_tokens` were drawn.
    Length,
}

impl FinishReason {
    pub fn name(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// One sample as drawn.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// The tokens drawn, a final stop token included.
    pub tokens: Vec<u32>,
    /// Per token, its natural log-probability under the model's plain
    /// softmax (temperature 1, before any top-k/top-p cut).
    pub logprobs: Vec<f32>,
    pub finish_reason: FinishReason,
}

/// What goes wrong while generating.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The question cannot be generated for (prompt too long, template
    /// fails): the record's error, skippable with `--skip-invalid`.
    #[error("{location}: {message}")]
    InvalidRecord { location: String, message: String },
    /// The settings or the model cannot work (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The model or server failed (exit 1).
    #[error("{0}")]
    Failed(String),
}

impl GenerateError {
    pub fn is_record_specific(&self) -> bool {
        matches!(self, GenerateError::InvalidRecord { .. })
    }

    pub fn is_input_error(&self) -> bool {
        matches!(self, GenerateError::InvalidRecord { .. } | GenerateError::Usage(_))
    }
}

impl From<whence_score::ScoreError> for GenerateError {
    fn from(error: whence_score::ScoreError) -> Self {
        use whence_score::ScoreError;
        match error {
            ScoreError::InvalidRecord { location, field, message } => {
                GenerateError::InvalidRecord { location, message: format!("field `{field}`: {message}") }
            }
            other if other.is_input_error() => GenerateError::Usage(other.to_string()),
            other => GenerateError::Failed(other.to_string()),
        }
    }
}

/// One question's work: its prompt's token ids, the request, and where
/// the question is (for errors).
#[derive(Debug, Clone)]
pub struct Job {
    pub prompt: Vec<u32>,
    pub request: Request,
    pub location: String,
}

/// The outcome of one job.
pub type JobResult = Result<Vec<Sample>, GenerateError>;

/// A model that samples continuations of prompts.
pub trait Generator {
    /// What the model is (kind, source, fingerprint), for the summary and
    /// the cache key.
    fn info(&self) -> &ModelInfo;
    /// The tokenizer and chat template prompts are rendered with.
    fn encoder(&self) -> &Encoder;
    /// The longest prompt + generation the model takes, when known here.
    fn context_length(&self) -> Option<usize>;
    /// `request.samples` samples continuing `prompt` (token ids); `location`
    /// names the question in errors.
    fn generate(&mut self, prompt: &[u32], request: &Request, location: &str) -> Result<Vec<Sample>, GenerateError>;
    /// Runs `jobs`, handing each outcome to `done(index, result)` on the
    /// calling thread as soon as it is ready (so that it can be committed
    /// to the cache at once). In-process generators run them one after the
    /// other; server generators keep up to `--max-in-flight` requests going.
    fn generate_many(&mut self, jobs: &[Job], done: &mut dyn FnMut(usize, JobResult)) {
        for (index, job) in jobs.iter().enumerate() {
            let result = self.generate(&job.prompt, &job.request, &job.location);
            done(index, result);
        }
    }
    /// Frees the model (in-process) once all questions are done.
    fn release(&mut self) {}
    /// What the KV cache takes per token of one sample, when decoding here.
    fn kv_bytes_per_token(&mut self) -> Result<Option<usize>, GenerateError> {
        Ok(None)
    }
}
