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

pub use client::{Answer, ClientOptions, RequestError};
pub use protocol::ProtocolError;
pub use whence_score::{Protocol, ServerSpec};

use std::sync::atomic::{AtomicUsize, Ordering};

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
    limit: RequestLimit,
    info: ModelInfo,
}

impl std::fmt::Debug for ServerScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerScorer").field("spec", &self.spec.to_string()).field("model", &self.model).finish()
    }
}

/// The longest request (prompt + response tokens) sent: `--max-request-tokens`,
/// or less where a server's context is shorter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLimit {
    /// Tokens a request may have.
    pub tokens: usize,
    /// Set when a server's context is what limits: the endpoint, and its
    /// `max_model_len` (the limit is `max_model_len − 1`: vLLM counts the
    /// one completion token each request asks for).
    pub server: Option<(String, usize)>,
}

impl RequestLimit {
    /// `--max-request-tokens`, lowered to `max_model_len − 1` of the
    /// endpoint with the shortest context (`(url, max_model_len)`), if any.
    pub fn new(max_request_tokens: usize, contexts: &[(String, usize)]) -> RequestLimit {
        let shortest = contexts.iter().min_by_key(|(_, len)| *len);
        match shortest {
            Some((url, len)) if len.saturating_sub(COMPLETION_TOKENS) < max_request_tokens => {
                RequestLimit { tokens: len.saturating_sub(COMPLETION_TOKENS), server: Some((url.clone(), *len)) }
            }
            _ => RequestLimit { tokens: max_request_tokens, server: None },
        }
    }

    /// What the limit is, for messages.
    fn describe(&self) -> String {
        match &self.server {
            Some((url, len)) => format!(
                "the server's context: {url} has max_model_len {len}, and a request may have at most max_model_len − max_tokens = {len} − {COMPLETION_TOKENS} = {} tokens",
                self.tokens
            ),
            None => format!("--max-request-tokens {}", self.tokens),
        }
    }
}

/// The `max_tokens` of every scoring request: vLLM generates one token
/// (0 is not allowed without `echo`), and counts it against its context.
pub const COMPLETION_TOKENS: usize = 1;

/// What an endpoint says about itself at start-up.
struct Served {
    /// Model ids it lists.
    models: Vec<String>,
    /// `max_model_len` of the model used, when it says.
    max_model_len: Option<usize>,
}

/// The text of the start-up probe request, tokenized with the role's tokenizer.
const PROBE_TEXT: &str = "whence probe: is this server ready to score?";
/// Tokens in the start-up probe request, at most.
const PROBE_TOKENS: usize = 8;

impl ServerScorer {
    /// Connects and checks every endpoint before any record is scored: asks
    /// which model it serves (unless the spec names it, `?model=NAME`) and
    /// its context length, retrying while it starts up, then sends one
    /// short request of the same shape as scoring and checks the answer.
    /// A server that refuses it (wrong model name, prompt log-probabilities
    /// not allowed, context too short) or answers it wrongly is
    /// [`ScoreError::InvalidSource`] naming the endpoint and what the server
    /// said; one that cannot be reached is [`ScoreError::Failed`].
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
        let mut model = spec.model.clone();
        let mut contexts = Vec::new();
        for (index, base) in spec.endpoints.iter().enumerate() {
            let served = served_by(spec, &client, index, model.as_deref())?;
            let here = match (&model, served.models.as_slice()) {
                // A model named in the URL is checked by the probe below, with
                // the server's own words; one found on the first endpoint
                // must be served by the others too.
                (Some(named), listed) if spec.model.is_none() && !listed.is_empty() && !listed.contains(named) => {
                    return Err(ScoreError::InvalidSource(format!(
                        "{spec}: {base} serves {}, not `{named}` (which {} serves)\nhint: give endpoints that serve the same model, or name one in the URL: {}+URL?model=NAME",
                        listed.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
                        spec.endpoints[0],
                        spec.protocol.name(),
                    )))
                }
                (Some(named), _) => named.clone(),
                (None, [one]) => one.clone(),
                (None, []) => {
                    return Err(ScoreError::InvalidSource(format!(
                        "{spec}: {base} did not say which model it serves\nhint: name the model in the URL: {}+URL?model=NAME",
                        spec.protocol.name()
                    )))
                }
                (None, several) => {
                    return Err(ScoreError::InvalidSource(format!(
                        "{spec}: {base} serves several models ({}); name one in the URL: {}+URL?model=NAME",
                        several.join(", "),
                        spec.protocol.name()
                    )))
                }
            };
            model = Some(here);
            if let Some(len) = served.max_model_len {
                contexts.push((base.clone(), len));
            }
        }
        let model = model.expect("at least one endpoint");
        let limit = RequestLimit::new(client.options().max_request_tokens, &contexts);
        let probe = probe_ids(&encoder);
        for index in 0..spec.endpoints.len() {
            probe_endpoint(spec, &client, index, &model, &probe)?;
        }
        let mut hasher = Sha256::new();
        hasher.update(b"whence-remote-v1\0");
        hasher.update(format!("{}\0{model}\0encoder:{}\0", spec.protocol.name(), encoder.digest()).as_bytes());
        if client.options().truncate {
            // Truncated requests keep `limit.tokens` tokens: part of what
            // the scores are.
            hasher.update(format!("truncate:{}\0", limit.tokens).as_bytes());
        }
        let info = ModelInfo {
            kind: "server".into(),
            source: format!("{spec} (model {model})"),
            fingerprint: format!("sha256:{:x}", hasher.finalize()),
        };
        tracing::debug!(
            "{}: serving `{model}`; requests of at most {} tokens ({}); tokenizer {}",
            spec,
            limit.tokens,
            limit.describe(),
            encoder.dir().display()
        );
        Ok(ServerScorer { spec: spec.clone(), encoder, client, model, limit, info })
    }

    /// The served model name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The longest request sent.
    pub fn limit(&self) -> &RequestLimit {
        &self.limit
    }

    fn score_one(&self, record: &Record) -> Result<TokenLogprobs, ScoreError> {
        let mut encoded = self.encoder.encode(record)?;
        let options = self.client.options();
        if encoded.ids.len() > self.limit.tokens {
            if !options.truncate {
                return Err(ScoreError::InvalidRecord {
                    location: record.source.to_string(),
                    field: "response".into(),
                    message: format!(
                        "record `{}`: prompt + response are {} tokens, more than {}\nhint: pass --truncate to score the first {} tokens{}",
                        record.id,
                        encoded.ids.len(),
                        self.limit.describe(),
                        self.limit.tokens,
                        match self.limit.server {
                            Some(_) => ", or serve the model with a longer context (vLLM: --max-model-len)",
                            None => ", or raise --max-request-tokens (up to the server's context)",
                        }
                    ),
                });
            }
            encoded.truncate(self.limit.tokens);
        }
        let body = protocol::request_body(self.spec.protocol, Some(&self.model), &encoded.ids);
        let answer =
            self.client.send(completion_path(self.spec.protocol), Some(body.to_string().as_bytes())).map_err(|error| match error {
                RequestError::Refused { status: 400 | 413 | 422, .. } => ScoreError::InvalidRecord {
                    location: record.source.to_string(),
                    field: "response".into(),
                    message: format!("record `{}`: the server refused it: {error}", record.id),
                },
                RequestError::Refused { .. } => ScoreError::InvalidSource(format!("{}: {error}", self.spec)),
                _ if error.is_request_specific() => ScoreError::InvalidRecord {
                    location: record.source.to_string(),
                    field: "response".into(),
                    message: format!("record `{}`: {error}", record.id),
                },
                RequestError::Unavailable { .. } => ScoreError::Failed(format!("{}: record `{}`: {error}", self.spec, record.id)),
            })?;
        let logprobs = protocol::parse_logprobs(self.spec.protocol, &answer.body, &encoded.ids).map_err(|error| match error {
            ProtocolError::NoProbability { .. } => ScoreError::InvalidRecord {
                location: record.source.to_string(),
                field: "response".into(),
                message: format!("record `{}`: {} answered: {error}", record.id, answer.url),
            },
            ProtocolError::Malformed(_) => ScoreError::Failed(format!(
                "{}: record `{}` ({}): the server's answer is unusable: {error}",
                answer.url, record.id, record.source
            )),
        })?;
        // logprobs[i] is token i + 1's; keep the response's tokens.
        let logprobs = logprobs[encoded.first_scored.saturating_sub(1).min(logprobs.len())..].to_vec();
        let mut spans = encoded.spans;
        spans.truncate(logprobs.len());
        Ok(TokenLogprobs { spans, logprobs })
    }

    /// Scores `records` with up to `max_in_flight` requests at once and hands
    /// each result to `deliver` (with its index in `records`) as soon as its
    /// answer is in, on the calling thread, in the order answers arrive: a
    /// caller can store each record's scores at once, so that a run killed
    /// mid-batch loses only the requests in flight.
    pub fn score_each(&self, records: &[&Record], mut deliver: impl FnMut(usize, Result<TokenLogprobs, ScoreError>)) {
        let workers = self.client.options().max_in_flight.clamp(1, records.len().max(1));
        if workers == 1 {
            for (index, record) in records.iter().enumerate() {
                deliver(index, self.score_one(record));
            }
            return;
        }
        let next = AtomicUsize::new(0);
        let (sender, answers) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            for _ in 0..workers {
                let (sender, next) = (sender.clone(), &next);
                scope.spawn(move || loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(record) = records.get(index) else { break };
                    if sender.send((index, self.score_one(record))).is_err() {
                        break;
                    }
                });
            }
            drop(sender);
            for (index, result) in answers {
                deliver(index, result);
            }
        });
    }
}

fn completion_path(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Vllm => "/completions",
        Protocol::Sglang => "/generate",
    }
}

/// A few token ids of [`PROBE_TEXT`] (ids 0 and 1 if the tokenizer gives
/// fewer than two).
fn probe_ids(encoder: &Encoder) -> Vec<u32> {
    let mut ids = encoder.tokenizer().encode(PROBE_TEXT, false).map(|e| e.get_ids().to_vec()).unwrap_or_default();
    ids.truncate(PROBE_TOKENS);
    if ids.len() < 2 {
        ids = vec![0, 1];
    }
    ids
}

/// Sends the probe request to endpoint `index` and checks its answer.
fn probe_endpoint(spec: &ServerSpec, client: &Client, index: usize, model: &str, ids: &[u32]) -> Result<(), ScoreError> {
    let base = &spec.endpoints[index];
    let body = protocol::request_body(spec.protocol, Some(model), ids);
    let hint = "hint: the probe is a request of the same shape as scoring (prompt token ids, `max_tokens` 1, `prompt_logprobs` 0, `return_token_ids`; SGLang: `return_logprob`, `logprob_start_len` 0); check the server's model name (`?model=NAME` in the URL), that it allows prompt log-probabilities, and its context length (vLLM: --max-model-len)";
    let answer = client.send_to(index, completion_path(spec.protocol), Some(body.to_string().as_bytes())).map_err(|error| match error {
        RequestError::Refused { .. } => ScoreError::InvalidSource(format!(
            "{spec}: {base} refused the start-up probe request ({} tokens, model `{model}`): {error}\n{hint}",
            ids.len()
        )),
        RequestError::Unavailable { .. } => {
            ScoreError::Failed(format!("{spec}: {base}: the start-up probe request got no answer: {error}"))
        }
    })?;
    protocol::parse_logprobs(spec.protocol, &answer.body, ids).map_err(|error| {
        ScoreError::InvalidSource(format!(
            "{spec}: {} answered the start-up probe request ({} tokens, model `{model}`) with an answer that cannot be used: {error}\n{hint}",
            answer.url,
            ids.len()
        ))
    })?;
    Ok(())
}

/// What endpoint `index` serves: vLLM's `GET /models` (ids, and the
/// `max_model_len` of `model` or of the only model), SGLang's
/// `GET /get_model_info` (`model_path`). When `model` is named, a server
/// without that route (a 4xx) is taken as saying nothing.
fn served_by(spec: &ServerSpec, client: &Client, index: usize, model: Option<&str>) -> Result<Served, ScoreError> {
    let (path, pointer) = match spec.protocol {
        Protocol::Vllm => ("/models", "/data"),
        Protocol::Sglang => ("/get_model_info", "/model_path"),
    };
    let base = &spec.endpoints[index];
    let hint = format!("name the model in the URL instead: {}+URL?model=NAME", spec.protocol.name());
    let answer = match client.send_to(index, path, None) {
        Ok(answer) => answer.body,
        Err(RequestError::Refused { .. }) if model.is_some() => return Ok(Served { models: Vec::new(), max_model_len: None }),
        Err(error @ RequestError::Refused { .. }) => {
            return Err(ScoreError::InvalidSource(format!("{spec}: asking {base} which model it serves: {error}; {hint}")))
        }
        Err(error) => return Err(ScoreError::Failed(format!("{spec}: asking {base} which model it serves: {error}"))),
    };
    let value: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
    match value.pointer(pointer) {
        Some(serde_json::Value::Array(listed)) => {
            let models: Vec<String> = listed.iter().filter_map(|m| m.get("id").and_then(|id| id.as_str()).map(str::to_string)).collect();
            let entry = match model {
                Some(model) => listed.iter().find(|m| m.get("id").and_then(|id| id.as_str()) == Some(model)),
                None if listed.len() == 1 => listed.first(),
                None => None,
            };
            let max_model_len = entry
                .and_then(|m| m.get("max_model_len"))
                .and_then(serde_json::Value::as_u64)
                .and_then(|len| usize::try_from(len).ok())
                .filter(|&len| len > 0);
            Ok(Served { models, max_model_len })
        }
        Some(serde_json::Value::String(path)) if model.is_none() => Ok(Served { models: vec![path.clone()], max_model_len: None }),
        _ if model.is_some() => Ok(Served { models: Vec::new(), max_model_len: None }),
        _ => Err(ScoreError::InvalidSource(format!(
            "{spec}: `GET {base}{path}` did not say which model it serves: {}; {hint}",
            protocol::excerpt(&answer)
        ))),
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

    /// Up to `max_in_flight` requests at once; each answer is delivered as
    /// it arrives.
    fn score_each(&mut self, records: &[&Record], deliver: &mut dyn FnMut(usize, Result<TokenLogprobs, ScoreError>)) {
        ServerScorer::score_each(self, records, deliver)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_limit_is_the_shorter_of_the_flag_and_the_servers_context() {
        let flag_only = RequestLimit::new(4096, &[]);
        assert_eq!(flag_only, RequestLimit { tokens: 4096, server: None });
        assert_eq!(flag_only.describe(), "--max-request-tokens 4096");
        let contexts = [("http://a/v1".to_string(), 2048), ("http://b/v1".to_string(), 1024)];
        let server = RequestLimit::new(4096, &contexts);
        assert_eq!(server, RequestLimit { tokens: 1023, server: Some(("http://b/v1".into(), 1024)) });
        assert_eq!(
            server.describe(),
            "the server's context: http://b/v1 has max_model_len 1024, and a request may have at most max_model_len − max_tokens = 1024 − 1 = 1023 tokens"
        );
        assert_eq!(RequestLimit::new(1000, &contexts), RequestLimit { tokens: 1000, server: None });
        assert_eq!(RequestLimit::new(1023, &contexts).server, None, "equal: the flag is what limits");
    }
}
