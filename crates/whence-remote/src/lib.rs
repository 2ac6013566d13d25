//! Scoring through inference servers: vLLM's OpenAI-compatible
//! `/v1/completions` (also served by `whence serve`) and SGLang's
//! `/generate`.
//!
//! The tokenizer and chat template are local ([`whence_encode::Encoder`],
//! the same code as the in-process scorer): prompt + response go to the
//! server as **token ids**, so the server scores exactly the tokens whose
//! byte spans are known here, and every log-probability that comes back is
//! checked against the id it belongs to ([`protocol`]). The [`client`]
//! spreads requests over several endpoints, bounds those in flight, and
//! retries what can be retried; the score cache (`whence-cache`) sits on top,
//! so a run that loses its server resumes where it stopped.

pub mod client;
pub mod protocol;

pub use client::{ClientOptions, RequestError};
pub use whence_score::{Protocol, ServerSpec};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use whence_core::Record;
use whence_encode::Encoder;
use whence_score::{ModelInfo, ScoreError, Scorer, TokenLogprobs};

use client::Client;

/// One model behind one or more inference-server endpoints, as a [`Scorer`].
pub struct ServerScorer {
    spec: ServerSpec,
    encoder: Encoder,
    client: Client,
    /// The served model name (vLLM's `model` field).
    model: String,
    info: ModelInfo,
}

impl std::fmt::Debug for ServerScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerScorer").field("spec", &self.spec.to_string()).field("model", &self.model).finish()
    }
}

impl ServerScorer {
    /// Connects: asks the server which model it serves (unless the spec
    /// names it, `?model=NAME`), retrying while it starts up.
    pub fn open(spec: &ServerSpec, encoder: Encoder, options: ClientOptions) -> Result<Self, ScoreError> {
        if spec.endpoints.iter().any(|e| e.starts_with("https://")) && !cfg!(feature = "tls") {
            return Err(ScoreError::InvalidSource(format!(
                "{spec}: https endpoints need whence built with the `tls` feature (cargo install … --features tls); plain http works as is"
            )));
        }
        if spec.endpoints.is_empty() {
            return Err(ScoreError::InvalidSource(format!("{spec}: no endpoint given")));
        }
        let client = Client::new(&spec.endpoints, options);
        let model = match &spec.model {
            Some(model) => model.clone(),
            None => served_model(spec, &client)?,
        };
        let mut hasher = Sha256::new();
        hasher.update(b"whence-remote-v1\0");
        hasher.update(format!("{}\0{model}\0encoder:{}\0", spec.protocol.name(), encoder.digest()).as_bytes());
        if client.options().truncate {
            hasher.update(format!("truncate:{}\0", client.options().max_request_tokens).as_bytes());
        }
        let info = ModelInfo {
            kind: "server".into(),
            source: format!("{spec} (model {model})"),
            fingerprint: format!("sha256:{:x}", hasher.finalize()),
        };
        tracing::debug!("{}: serving `{model}`; tokenizer {}", spec, encoder.dir().display());
        Ok(ServerScorer { spec: spec.clone(), encoder, client, model, info })
    }

    /// The served model name.
    pub fn model(&self) -> &str {
        &self.model
    }

    fn score_one(&self, record: &Record) -> Result<TokenLogprobs, ScoreError> {
        let mut encoded = self.encoder.encode(record)?;
        let options = self.client.options();
        if encoded.ids.len() > options.max_request_tokens {
            if !options.truncate {
                return Err(ScoreError::InvalidRecord {
                    location: record.source.to_string(),
                    field: "response".into(),
                    message: format!(
                        "{} tokens exceed --max-request-tokens {}; raise it (up to the server's context) or pass --truncate to score the first {}",
                        encoded.ids.len(),
                        options.max_request_tokens,
                        options.max_request_tokens
                    ),
                });
            }
            encoded.truncate(options.max_request_tokens);
        }
        let body = protocol::request_body(self.spec.protocol, Some(&self.model), &encoded.ids);
        let path = match self.spec.protocol {
            Protocol::Vllm => "/completions",
            Protocol::Sglang => "/generate",
        };
        let answer = self.client.request(path, Some(body.to_string().as_bytes())).map_err(|error| match error {
            RequestError::Refused { status: 400 | 413 | 422, .. } => ScoreError::InvalidRecord {
                location: record.source.to_string(),
                field: "response".into(),
                message: format!("the server refused it: {error}"),
            },
            RequestError::Refused { .. } => ScoreError::InvalidSource(format!("{}: {error}", self.spec)),
            RequestError::Unavailable { .. } => ScoreError::Failed(format!("{}: record `{}`: {error}", self.spec, record.id)),
        })?;
        let logprobs = protocol::parse_logprobs(self.spec.protocol, &answer, &encoded.ids).map_err(|error| {
            ScoreError::Failed(format!(
                "{}: record `{}` ({}): the server's answer is unusable: {error}",
                self.spec, record.id, record.source
            ))
        })?;
        // logprobs[i] is token i + 1's; keep the response's tokens.
        let logprobs = logprobs[encoded.first_scored.saturating_sub(1).min(logprobs.len())..].to_vec();
        let mut spans = encoded.spans;
        spans.truncate(logprobs.len());
        Ok(TokenLogprobs { spans, logprobs })
    }
}

/// The model a server serves: vLLM's `GET /models` (the first id), SGLang's
/// `GET /get_model_info` (`model_path`).
pub fn served_model(spec: &ServerSpec, client: &Client) -> Result<String, ScoreError> {
    let (path, pointer) = match spec.protocol {
        Protocol::Vllm => ("/models", "/data"),
        Protocol::Sglang => ("/get_model_info", "/model_path"),
    };
    let hint = format!("name the model in the URL instead: {}+URL?model=NAME", spec.protocol.name());
    let answer = client.request(path, None).map_err(|error| match error {
        RequestError::Refused { .. } => ScoreError::InvalidSource(format!("{spec}: asking which model it serves: {error}; {hint}")),
        RequestError::Unavailable { .. } => ScoreError::Failed(format!("{spec}: asking which model it serves: {error}")),
    })?;
    let value: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
    let found = match value.pointer(pointer) {
        Some(serde_json::Value::Array(models)) => {
            let ids: Vec<&str> = models.iter().filter_map(|m| m.get("id").and_then(|id| id.as_str())).collect();
            match ids.as_slice() {
                [one] => Some(one.to_string()),
                [] => None,
                several => {
                    return Err(ScoreError::InvalidSource(format!(
                        "{spec} serves several models ({}); name one in the URL: {}+URL?model=NAME",
                        several.join(", "),
                        spec.protocol.name()
                    )))
                }
            }
        }
        Some(serde_json::Value::String(path)) => Some(path.clone()),
        _ => None,
    };
    found.ok_or_else(|| {
        ScoreError::InvalidSource(format!("{spec}: `GET {path}` did not say which model it serves: {}; {hint}", protocol::excerpt(&answer)))
    })
}

impl Scorer for ServerScorer {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn score(&mut self, record: &Record) -> Result<TokenLogprobs, ScoreError> {
        self.score_one(record)
    }

    /// Up to `max_in_flight` requests at once; results in input order.
    fn score_batch(&mut self, records: &[&Record]) -> Vec<Result<TokenLogprobs, ScoreError>> {
        let workers = self.client.options().max_in_flight.clamp(1, records.len().max(1));
        if workers == 1 {
            return records.iter().map(|record| self.score_one(record)).collect();
        }
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Result<TokenLogprobs, ScoreError>>>> = Mutex::new((0..records.len()).map(|_| None).collect());
        let this = &*self;
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(record) = records.get(index) else { break };
                    let result = this.score_one(record);
                    results.lock().unwrap_or_else(|poisoned| poisoned.into_inner())[index] = Some(result);
                });
            }
        });
        results
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .into_iter()
            .map(|result| result.unwrap_or_else(|| Err(ScoreError::Failed("a scoring thread stopped without a result".into()))))
            .collect()
    }
}
