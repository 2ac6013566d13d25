//! The HTTP API: routing, request checks, and answers in vLLM's shapes.
//!
//! `POST /v1/completions` takes vLLM's request fields (see [`Settings`] for
//! each one's meaning and default) and answers in vLLM's shape:
//!
//! ```json
//! {"id", "object": "text_completion", "created", "model",
//!  "choices": [{"index", "text", "logprobs", "finish_reason", "stop_reason",
//!               "token_ids", "prompt_token_ids", "prompt_logprobs"}],
//!  "usage": {"prompt_tokens", "total_tokens", "completion_tokens"}}
//! ```
//!
//! Choice `p·n + i` is choice `i` of prompt `p`. `text` is the completion
//! (after the prompt's text with `echo`); `finish_reason` is `stop` (a stop
//! token or stop string) or `length`; `stop_reason` the stop string or
//! requested stop token id, `null` for the model's EOS; `token_ids` (with
//! `return_token_ids`) the generated tokens, a final stop token included;
//! `prompt_token_ids` always. `logprobs` (with `logprobs: k`) is the OpenAI
//! legacy shape, `{"tokens", "token_logprobs", "top_logprobs",
//! "text_offset"}`, one entry per generated token (with `echo`, per prompt
//! token first, the first `null`): the token's log-probability under the
//! plain softmax (temperature 1, before any top-k/top-p cut), and a map of
//! its own and the k most likely tokens' texts to their log-probabilities.
//! `prompt_logprobs` is vLLM's: `null`, then per prompt token a map from
//! token ids (strings) to `{logprob, rank, decoded_token}`.
//!
//! A request that cannot be answered as asked is refused with a 400 naming
//! the field and its value (fields whose effect is not implemented, such
//! as penalties, `min_p`, `logit_bias`, `best_of` > `n` or `stream`, are
//! refused unless they hold their no-op value); a failure inside the model
//! is a 500.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Map, Value};
use whence_checkpoint::{Continuation, NextToken};
use whence_sample::{SamplingParams, Temperature, TopK, TopP};

use crate::sampling::{self, Legacy, Policy, TextRules};
use crate::{ApiRequest, ApiResponse, Model};

/// The most top tokens per position a request may ask for (vLLM's default
/// `max_logprobs`).
pub const MAX_TOP: usize = 20;

/// An error answer, OpenAI's shape.
pub fn error(status: u16, message: &str) -> ApiResponse {
    let kind = match status {
        400 | 413 | 422 => "BadRequestError",
        401 => "AuthenticationError",
        404 => "NotFoundError",
        405 => "MethodNotAllowedError",
        _ => "InternalServerError",
    };
    ApiResponse { status, body: json!({"error": {"message": message, "type": kind, "param": null, "code": status}}).to_string() }
}

fn ok(body: Value) -> ApiResponse {
    ApiResponse { status: 200, body: body.to_string() }
}

/// Answers one request.
pub fn handle(request: &ApiRequest, model: &Model, api_key: Option<&str>) -> ApiResponse {
    if let Some(key) = api_key {
        let given = request.authorization.and_then(|h| h.strip_prefix("Bearer ")).map(str::trim);
        if given != Some(key) && request.path != "/health" {
            return error(401, "missing or wrong API key; send `Authorization: Bearer KEY`");
        }
    }
    match (request.method, request.path) {
        ("GET", "/health") => ApiResponse { status: 200, body: String::new() },
        ("GET", "/v1/models") => ok(json!({
            "object": "list",
            "data": [{"id": model.name(), "object": "model", "created": model.created(), "owned_by": "whence", "max_model_len": model.max_len()}],
        })),
        ("POST", "/v1/completions") => completions(request.body, model).unwrap_or_else(|message| error(400, &message)),
        (_, "/health" | "/v1/models" | "/v1/completions") => error(405, &format!("{} is not allowed on {}", request.method, request.path)),
        (_, path) => error(404, &format!("no route {path}; this server has POST /v1/completions, GET /v1/models and GET /health")),
    }
}

/// The most choices per prompt (`n`): each is a row of the decoding batch
/// with its own KV cache.
pub const MAX_N: usize = 1024;

/// A prompt of a request: its token ids, and its text when it was sent as text.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub ids: Vec<u32>,
    pub text: Option<String>,
}

/// The prompts of a request: text, token ids, or a list of either.
fn prompts(value: Option<&Value>, model: &Model) -> Result<Vec<Prompt>, String> {
    let ids = |list: &[Value]| -> Result<Prompt, String> {
        let ids = list
            .iter()
            .map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| format!("`prompt` holds {v}, not a token id")))
            .collect::<Result<_, _>>()?;
        Ok(Prompt { ids, text: None })
    };
    let text = |text: &str| -> Result<Prompt, String> { Ok(Prompt { ids: model.tokenize(text)?, text: Some(text.to_string()) }) };
    match value {
        Some(Value::String(s)) => Ok(vec![text(s)?]),
        Some(Value::Array(list)) if list.is_empty() => Err("`prompt` is empty".into()),
        Some(Value::Array(list)) if list[0].is_number() => Ok(vec![ids(list)?]),
        Some(Value::Array(list)) => list
            .iter()
            .map(|item| match item {
                Value::String(s) => text(s),
                Value::Array(inner) => ids(inner),
                other => Err(format!("`prompt` holds {other}; give text, token ids, or a list of either")),
            })
            .collect(),
        Some(other) => Err(format!("`prompt` is {other}; give text, token ids, or a list of either")),
        None => Err("the request has no `prompt`".into()),
    }
}

/// What a completions request asks for, besides its prompts (vLLM's fields
/// and defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Tokens to generate per choice (default 16); 0 only scores.
    pub max_tokens: usize,
    /// Choices per prompt (default 1), decoded together.
    pub n: usize,
    /// `temperature` (default 1; 0 greedy), `top_p` (default 1), `top_k` (default −1: all).
    pub params: SamplingParams,
    /// The request's seed; choice i draws from `choice_seed(seed, i)`.
    /// Without one, a fresh seed per request.
    pub seed: Option<u64>,
    /// Strings that end a choice.
    pub stop: Vec<String>,
    /// Tokens that end a choice, besides the model's EOS.
    pub stop_token_ids: Vec<u32>,
    /// The model's EOS does not end a choice.
    pub ignore_eos: bool,
    /// Special tokens are left out of `text` (default true).
    pub skip_special_tokens: bool,
    /// The stop string (or stop token's text) stays in `text` (default false).
    pub include_stop_str_in_output: bool,
    /// Log-probabilities of the generated tokens (and with `echo` the
    /// prompt's), with the k most likely tokens at each.
    pub logprobs: Option<usize>,
    /// The prompt goes before the completion in `text` and `logprobs`.
    pub echo: bool,
    /// Each choice has `token_ids` (the generated tokens, a final stop token included).
    pub return_token_ids: bool,
    /// vLLM's `prompt_logprobs`: per prompt token after the first, its
    /// log-probability, rank and the k most likely tokens.
    pub prompt_logprobs: Option<usize>,
}

fn integer(body: &Map<String, Value>, field: &str, default: u64) -> Result<u64, String> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(value) => value.as_u64().ok_or_else(|| format!("`{field}` is {value}; it must be a non-negative integer")),
    }
}

fn number(body: &Map<String, Value>, field: &str, default: f64) -> Result<f64, String> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(value) => value.as_f64().ok_or_else(|| format!("`{field}` is {value}; it must be a number")),
    }
}

fn boolean(body: &Map<String, Value>, field: &str, default: bool) -> Result<bool, String> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(value) => value.as_bool().ok_or_else(|| format!("`{field}` is {value}; it must be true or false")),
    }
}

fn top_count(body: &Map<String, Value>, field: &str) -> Result<Option<usize>, String> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_u64() {
            Some(k) if k as usize <= MAX_TOP => Ok(Some(k as usize)),
            _ => Err(format!("`{field}` is {value}; it must be an integer from 0 to {MAX_TOP}")),
        },
    }
}

fn sampling(field: &str, value: Option<&Value>, error: whence_sample::SamplingError) -> String {
    let shown = value.map_or(error.value.clone(), Value::to_string);
    format!("`{field}` is {shown}; it {}", error.expected)
}

/// Fields whose effect whence serve does not implement: refused unless
/// they hold their no-op value, so that no answer silently ignores what
/// was asked.
fn unsupported(body: &Map<String, Value>, n: usize) -> Result<(), String> {
    let numeric = |field: &str, neutral: f64| -> Result<(), String> {
        match body.get(field) {
            None | Some(Value::Null) => Ok(()),
            Some(v) if v.as_f64() == Some(neutral) => Ok(()),
            Some(v) => Err(format!("`{field}` is {v}; whence serve does not support it (leave it out, or send {neutral})")),
        }
    };
    numeric("frequency_penalty", 0.0)?;
    numeric("presence_penalty", 0.0)?;
    numeric("repetition_penalty", 1.0)?;
    numeric("min_p", 0.0)?;
    numeric("min_tokens", 0.0)?;
    if let Some(best_of) = body.get("best_of").filter(|v| !v.is_null()) {
        if best_of.as_u64() != Some(n as u64) {
            return Err(format!("`best_of` is {best_of}; whence serve does not support it (leave it out, or send `n`)"));
        }
    }
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        return Err("`stream` is not supported: whence serve answers in one response".into());
    }
    if body.get("use_beam_search").and_then(Value::as_bool) == Some(true) {
        return Err("`use_beam_search` is not supported: whence serve samples".into());
    }
    for field in [
        "logit_bias",
        "allowed_token_ids",
        "bad_words",
        "guided_json",
        "guided_regex",
        "guided_choice",
        "guided_grammar",
        "response_format",
        "prompt_embeds",
    ] {
        match body.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) if map.is_empty() => {}
            Some(Value::Array(list)) if list.is_empty() => {}
            Some(v) => return Err(format!("`{field}` is {v}; whence serve does not support it")),
        }
    }
    if let Some(suffix) = body.get("suffix").filter(|v| !v.is_null() && v.as_str() != Some("")) {
        return Err(format!("`suffix` is {suffix}; whence serve does not support it"));
    }
    Ok(())
}

/// The settings of a completions request body, checked (its prompts and
/// the limits that need the model are checked when the request is answered).
pub fn settings(body: &Map<String, Value>) -> Result<Settings, String> {
    let max_tokens = integer(body, "max_tokens", 16)?;
    let max_tokens = usize::try_from(max_tokens).map_err(|_| format!("`max_tokens` is {max_tokens}; it is too large"))?;
    let n = integer(body, "n", 1)?;
    if n == 0 || n > MAX_N as u64 {
        return Err(format!("`n` is {n}; it must be from 1 to {MAX_N}"));
    }
    let n = n as usize;
    unsupported(body, n)?;
    let temperature =
        Temperature::new(number(body, "temperature", 1.0)?).map_err(|e| sampling("temperature", body.get("temperature"), e))?;
    let top_p = TopP::new(number(body, "top_p", 1.0)?).map_err(|e| sampling("top_p", body.get("top_p"), e))?;
    let top_k = match body.get("top_k") {
        None | Some(Value::Null) => TopK::ALL,
        Some(value) => {
            let k = value.as_i64().ok_or_else(|| format!("`top_k` is {value}; it must be an integer (-1 or 0: every token)"))?;
            TopK::new(k).map_err(|e| sampling("top_k", Some(value), e))?
        }
    };
    let seed = match body.get("seed") {
        None | Some(Value::Null) => None,
        // A negative seed (vLLM takes any 64-bit integer) as its bits.
        Some(value) => Some(
            value
                .as_u64()
                .or_else(|| value.as_i64().map(|s| s as u64))
                .ok_or_else(|| format!("`seed` is {value}; it must be an integer"))?,
        ),
    };
    let stop = match body.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| format!("`stop` holds {v}; it must be a string or a list of strings")))
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("`stop` is {other}; it must be a string or a list of strings")),
    };
    let stop_token_ids = match body.get("stop_token_ids") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| format!("`stop_token_ids` holds {v}, not a token id")))
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("`stop_token_ids` is {other}; it must be a list of token ids")),
    };
    Ok(Settings {
        max_tokens,
        n,
        params: SamplingParams { temperature, top_p, top_k },
        seed,
        stop,
        stop_token_ids,
        ignore_eos: boolean(body, "ignore_eos", false)?,
        skip_special_tokens: boolean(body, "skip_special_tokens", true)?,
        include_stop_str_in_output: boolean(body, "include_stop_str_in_output", false)?,
        logprobs: top_count(body, "logprobs")?,
        echo: boolean(body, "echo", false)?,
        return_token_ids: boolean(body, "return_token_ids", false)?,
        prompt_logprobs: top_count(body, "prompt_logprobs")?,
    })
}

/// A seed for a request that brings none.
fn fresh_seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now())
}

/// `None` when `n` continuations of `tokens` tokens (prompt and completion)
/// fit in `available` bytes of KV cache, else why not.
pub fn kv_budget(per_token: usize, n: usize, tokens: usize, available: Option<u64>) -> Option<String> {
    let need = per_token as f64 * n as f64 * tokens as f64;
    let available = available? as f64;
    (need > available).then(|| {
        format!(
            "`n` {n} × {tokens} tokens (prompt and `max_tokens`) need a KV cache of {:.1} MB, more than the {:.1} MB of memory available; lower `n` or `max_tokens`",
            need / 1e6,
            available / 1e6
        )
    })
}

/// Answers `POST /v1/completions`: `Ok` with the answer (an internal
/// failure is a 500), `Err` with why the request is refused (a 400).
fn completions(body: &[u8], model: &Model) -> Result<ApiResponse, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("the request body is not JSON: {e}"))?;
    let body = value.as_object().ok_or("the request body is not a JSON object")?;
    if let Some(name) = body.get("model").and_then(Value::as_str) {
        if !name.is_empty() && name != model.name() {
            return Ok(error(404, &format!("The model `{name}` does not exist; this server serves `{}`", model.name())));
        }
    }
    let settings = settings(body)?;
    let prompts = prompts(body.get("prompt"), model)?;
    let max_tokens = settings.max_tokens;
    for (index, prompt) in prompts.iter().enumerate() {
        let ids = &prompt.ids;
        if ids.is_empty() {
            return Err(format!("prompt {index} has no tokens"));
        }
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= model.vocab_size()) {
            return Err(format!("prompt {index}: token id {bad} is outside the vocabulary of {} tokens", model.vocab_size()));
        }
        if ids.len().saturating_add(max_tokens) > model.max_len() {
            return Err(format!(
                "This model's maximum context length is {} tokens. However, you requested {} tokens ({} in the messages, {max_tokens} in the completion); lower `max_tokens` (it is {max_tokens}) or shorten the prompt",
                model.max_len(),
                ids.len().saturating_add(max_tokens),
                ids.len()
            ));
        }
    }
    if let Some(&bad) = settings.stop_token_ids.iter().find(|&&id| id as usize >= model.vocab_size()) {
        return Err(format!("`stop_token_ids` holds {bad}, outside the vocabulary of {} tokens", model.vocab_size()));
    }
    let stop_token_ids = sampling::stop_set(&settings.stop_token_ids, model.stop_token_ids(), settings.ignore_eos);
    let rules = TextRules {
        stop_token_ids: &stop_token_ids,
        model_eos: model.stop_token_ids(),
        ignore_eos: settings.ignore_eos,
        request_stop_token_ids: &settings.stop_token_ids,
        stop: &settings.stop,
        skip_special_tokens: settings.skip_special_tokens,
        include_stop_str_in_output: settings.include_stop_str_in_output,
    };
    let seed = settings.seed.unwrap_or_else(fresh_seed);
    let logprobs_top = settings.logprobs.unwrap_or(0);
    // Prompt positions are scored when asked for (`prompt_logprobs`, or
    // `logprobs` with `echo`), with the most top tokens either asks for.
    let echo_top = settings.logprobs.filter(|_| settings.echo);
    let score_top = match (settings.prompt_logprobs, echo_top) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0).max(b.unwrap_or(0))),
    };
    // The scoring client's request (one greedy token beside the prompt's
    // log-probabilities): the scoring pass gives that token too, so the
    // prompt is run once, not twice.
    let greedy_from_scoring = score_top.is_some() && max_tokens == 1 && settings.params.temperature.is_greedy() && logprobs_top <= 1;
    let decode = |context: &[u32], ids: &[u32], skip: bool| model.text_after(context, ids, skip);
    // The most likely tokens of a step, less the drawn one, each with the
    // text it would add after `context`.
    let alternatives = |context: &[u32], top: &[(u32, f32)], drawn: u32| -> Vec<(String, f32)> {
        top.iter().filter(|&&(id, _)| id != drawn).map(|&(id, x)| (model.alternative_text(context, id), x)).collect()
    };

    if max_tokens > 0 {
        let session = model.session();
        if session.on_cpu() {
            let longest = prompts.iter().map(|p| p.ids.len()).max().unwrap_or(0) + max_tokens;
            let bytes = session.kv_bytes_per_token();
            drop(session);
            if let Some(message) = kv_budget(bytes, settings.n, longest, whence_checkpoint::generate::kv_cache_memory()) {
                return Err(message);
            }
        }
    }
    let mut choices = Vec::with_capacity(prompts.len().saturating_mul(settings.n).min(4096));
    let (mut prompt_tokens, mut completion_tokens) = (0, 0);
    for prompt in &prompts {
        let ids = &prompt.ids;
        prompt_tokens += ids.len();
        let scores = match score_top {
            // Scoring is packed with other requests' (Model::score).
            Some(top) => match model.score(ids, top, greedy_from_scoring) {
                Ok(scores) => Some(scores),
                Err(message) => return Ok(error(500, &message)),
            },
            None => None,
        };
        let mut policy = Policy::new(
            settings.params,
            seed,
            settings.n,
            ids,
            &stop_token_ids,
            &settings.stop,
            model,
            settings.skip_special_tokens,
            logprobs_top,
        );
        let continuations: Vec<Continuation> = if max_tokens == 0 {
            vec![Continuation { tokens: vec![], logprobs: vec![], stopped: false }; settings.n]
        } else if let Some((token, logprob)) = scores.as_ref().and_then(|s| s.next).filter(|_| greedy_from_scoring) {
            let stopped = policy.finished(0, &[token]);
            if logprobs_top > 0 {
                policy.tops = vec![vec![vec![(token, logprob)]]; settings.n];
            }
            vec![Continuation { tokens: vec![token], logprobs: vec![logprob], stopped }; settings.n]
        } else {
            match model.session().generate(ids, settings.n, max_tokens, &mut policy) {
                Ok(continuations) => continuations,
                Err(message) => return Ok(error(500, &message)),
            }
        };
        // Each prompt token's text in the context of those before it.
        let prompt_texts = if settings.prompt_logprobs.is_some() || echo_top.is_some() { model.token_texts(&[], ids) } else { Vec::new() };
        let prompt_logprobs = settings
            .prompt_logprobs
            .map(|k| prompt_logprobs_json(model, ids, &prompt_texts, scores.as_ref().map_or(&[][..], |s| &s.positions), k));
        let prompt_text = if settings.echo {
            match &prompt.text {
                Some(text) => text.clone(),
                None => model.text_after(&[], ids, settings.skip_special_tokens).map_err(|e| format!("prompt: {e}"))?,
            }
        } else {
            String::new()
        };
        for (i, continuation) in continuations.into_iter().enumerate() {
            completion_tokens += continuation.tokens.len();
            let finished = match sampling::finish(&decode, ids, &continuation.tokens, continuation.stopped, &rules) {
                Ok(finished) => finished,
                Err(message) => return Ok(error(500, &message)),
            };
            let logprobs = settings.logprobs.map(|k| {
                // Texts in context (SPEC §10): they join to the choice's text.
                let mut legacy = Legacy::default();
                if settings.echo {
                    legacy.push(prompt_texts[0].clone(), None);
                    for (p, position) in scores.as_ref().map_or(&[][..], |s| &s.positions).iter().enumerate().take(ids.len() - 1) {
                        let top = &position.top[..k.min(position.top.len())];
                        legacy.push(prompt_texts[p + 1].clone(), Some((position.logprob, alternatives(&ids[..=p], top, ids[p + 1]))));
                    }
                }
                let tops = policy.tops.get(i);
                let texts = model.token_texts(ids, &continuation.tokens);
                let mut context: Vec<u32> = ids[ids.len().saturating_sub(crate::model::ALTERNATIVE_CONTEXT)..].to_vec();
                for (step, (&token, &logprob)) in continuation.tokens.iter().zip(&continuation.logprobs).enumerate() {
                    let top = tops.and_then(|t| t.get(step)).map_or(&[][..], |t| &t[..k.min(t.len())]);
                    legacy.push(texts[step].clone(), Some((logprob, alternatives(&context, top, token))));
                    context.push(token);
                }
                legacy.into_json()
            });
            choices.push(json!({
                "index": choices.len(),
                "text": format!("{prompt_text}{}", finished.text),
                "logprobs": logprobs,
                "finish_reason": finished.finish_reason,
                "stop_reason": finished.stop_reason,
                "token_ids": if settings.return_token_ids { json!(continuation.tokens) } else { Value::Null },
                "prompt_token_ids": ids,
                "prompt_logprobs": prompt_logprobs,
            }));
        }
    }
    static REQUESTS: AtomicU64 = AtomicU64::new(0);
    Ok(ok(json!({
        "id": format!("cmpl-{}-{}", model.created(), REQUESTS.fetch_add(1, Ordering::Relaxed)),
        "object": "text_completion",
        "created": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "model": model.name(),
        "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + completion_tokens, "completion_tokens": completion_tokens},
    })))
}

/// vLLM's `prompt_logprobs`: `null` for the first token, then per token a
/// map from token ids (as strings) to `{logprob, rank, decoded_token}`: the
/// actual token's entry (its text in context, `texts`), then the `k` most
/// likely (each with the text it would add there).
fn prompt_logprobs_json(
    model: &Model,
    ids: &[u32],
    texts: &[String],
    positions: &[whence_checkpoint::ranks::PositionLogprobs],
    k: usize,
) -> Value {
    let mut entries = vec![Value::Null];
    for (p, (position, &id)) in positions.iter().zip(&ids[1..]).enumerate() {
        let mut entry = Map::new();
        let item = |logprob: f32, rank: u32, text: String| json!({"logprob": f64::from(logprob), "rank": rank, "decoded_token": text});
        entry.insert(id.to_string(), item(position.logprob, position.rank, texts[p + 1].clone()));
        for (place, &(token, logprob)) in position.top.iter().take(k).enumerate() {
            entry.entry(token.to_string()).or_insert_with(|| item(logprob, place as u32 + 1, model.alternative_text(&ids[..=p], token)));
        }
        entries.push(Value::Object(entry));
    }
    Value::Array(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: Value) -> Result<Settings, String> {
        settings(body.as_object().unwrap())
    }

    #[test]
    fn settings_default_as_vllm() {
        let s = parse(json!({"prompt": [1]})).unwrap();
        assert_eq!(
            s,
            Settings {
                max_tokens: 16,
                n: 1,
                params: SamplingParams::default(),
                seed: None,
                stop: vec![],
                stop_token_ids: vec![],
                ignore_eos: false,
                skip_special_tokens: true,
                include_stop_str_in_output: false,
                logprobs: None,
                echo: false,
                return_token_ids: false,
                prompt_logprobs: None,
            }
        );
        // null is the default too (clients send it for unset fields).
        assert_eq!(parse(json!({"temperature": null, "n": null, "stop": null, "logprobs": null})).unwrap(), s);
    }

    #[test]
    fn settings_as_whence_generate_sends_them() {
        let s = parse(json!({
            "model": "m", "prompt": [1, 2], "n": 3, "temperature": 0.7, "top_p": 0.9, "top_k": 40, "seed": 6,
            "max_tokens": 12, "stop": ["\n\n", "END"], "stop_token_ids": [2], "logprobs": 0,
            "skip_special_tokens": false, "include_stop_str_in_output": false, "return_token_ids": true,
        }))
        .unwrap();
        assert_eq!((s.n, s.max_tokens, s.seed, s.logprobs), (3, 12, Some(6), Some(0)));
        assert_eq!(
            s.params,
            SamplingParams { temperature: Temperature::new(0.7).unwrap(), top_p: TopP::new(0.9).unwrap(), top_k: TopK::new(40).unwrap() }
        );
        assert_eq!((s.stop.len(), s.stop_token_ids.as_slice()), (2, &[2u32][..]));
        assert!(!s.skip_special_tokens && s.return_token_ids);
        // One stop string; top_k -1 and 0 keep all; a negative seed is its bits.
        let s = parse(json!({"stop": "x", "top_k": -1, "seed": -1, "echo": true, "ignore_eos": true, "best_of": 2, "n": 2})).unwrap();
        assert_eq!((s.stop, s.params.top_k, s.seed, s.echo, s.ignore_eos), (vec!["x".to_string()], TopK::ALL, Some(u64::MAX), true, true));
        assert_eq!(
            parse(json!({"top_k": 0, "frequency_penalty": 0, "repetition_penalty": 1.0, "logit_bias": {}})).unwrap().params.top_k,
            TopK::ALL
        );
    }

    #[test]
    fn bad_settings_name_the_field_and_value() {
        for (body, want) in [
            (json!({"temperature": -1}), "`temperature` is -1; it must be a finite number ≥ 0"),
            (json!({"temperature": "hot"}), "`temperature` is \"hot\"; it must be a number"),
            (json!({"top_p": 1.5}), "`top_p` is 1.5; it must be in (0, 1]"),
            (json!({"top_p": 0}), "`top_p` is 0; it must be in (0, 1]"),
            (json!({"top_k": -3}), "`top_k` is -3; it must be ≥ 1, or 0 or -1"),
            (json!({"top_k": 2.5}), "`top_k` is 2.5; it must be an integer"),
            (json!({"n": 0}), "`n` is 0; it must be from 1 to 1024"),
            (json!({"n": 5000}), "`n` is 5000"),
            (json!({"n": -1}), "`n` is -1; it must be a non-negative integer"),
            (json!({"max_tokens": -1}), "`max_tokens` is -1"),
            (json!({"logprobs": 21}), "`logprobs` is 21; it must be an integer from 0 to 20"),
            (json!({"logprobs": true}), "`logprobs` is true"),
            (json!({"prompt_logprobs": 99}), "`prompt_logprobs` is 99; it must be an integer from 0 to 20"),
            (json!({"seed": "x"}), "`seed` is \"x\"; it must be an integer"),
            (json!({"stop": 5}), "`stop` is 5; it must be a string or a list of strings"),
            (json!({"stop": ["a", 1]}), "`stop` holds 1"),
            (json!({"stop_token_ids": [-1]}), "`stop_token_ids` holds -1, not a token id"),
            (json!({"echo": "yes"}), "`echo` is \"yes\"; it must be true or false"),
            (json!({"skip_special_tokens": 1}), "`skip_special_tokens` is 1"),
            (json!({"frequency_penalty": 0.5}), "`frequency_penalty` is 0.5; whence serve does not support it"),
            (json!({"min_p": 0.1}), "`min_p` is 0.1"),
            (json!({"best_of": 3}), "`best_of` is 3"),
            (json!({"logit_bias": {"5": 100}}), "`logit_bias`"),
            (json!({"stream": true}), "`stream` is not supported"),
        ] {
            let message = parse(body.clone()).unwrap_err();
            assert!(message.contains(want), "{body}: {message:?} should say {want:?}");
        }
    }

    #[test]
    fn kv_budget_refuses_what_does_not_fit() {
        assert_eq!(kv_budget(1000, 4, 100, Some(400_000)), None);
        let message = kv_budget(1000, 4, 100, Some(399_999)).unwrap();
        assert!(message.contains("`n` 4 × 100 tokens") && message.contains("0.4 MB"), "{message}");
        assert_eq!(kv_budget(1000, 4, 100, None), None);
    }

    // ---- answers of the tiny reference checkpoint ----------------------

    fn model() -> &'static Model {
        static MODEL: std::sync::OnceLock<Model> = std::sync::OnceLock::new();
        MODEL.get_or_init(|| {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/fixtures/tiny-qwen2");
            Model::load(&dir, Default::default(), "tiny".into()).unwrap()
        })
    }

    fn post(body: Value) -> (u16, Value) {
        let body = body.to_string();
        let request = ApiRequest { method: "POST", path: "/v1/completions", authorization: None, body: body.as_bytes() };
        let answer = handle(&request, model(), None);
        (answer.status, serde_json::from_str(&answer.body).unwrap())
    }

    fn answer(body: Value) -> Value {
        let (status, value) = post(body.clone());
        assert_eq!(status, 200, "{body}: {value}");
        value
    }

    fn ids(value: &Value) -> Vec<u32> {
        value.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect()
    }

    const PROMPT: [u32; 6] = [17, 300, 42, 9, 511, 77];

    fn logprobs_tokens(logprobs: &Value) -> Vec<String> {
        logprobs["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn sampled_choices_have_vllms_shape_and_follow_the_seed() {
        let body = json!({"prompt": PROMPT, "n": 3, "seed": 5, "max_tokens": 10, "logprobs": 2, "return_token_ids": true,
                          "skip_special_tokens": false, "top_k": 50, "top_p": 0.95});
        let value = answer(body.clone());
        assert_eq!(value["object"], "text_completion");
        let choices = value["choices"].as_array().unwrap();
        assert_eq!(choices.len(), 3);
        let mut generated = 0;
        for (i, choice) in choices.iter().enumerate() {
            assert_eq!(choice["index"], i);
            let tokens = ids(&choice["token_ids"]);
            generated += tokens.len();
            assert!(!tokens.is_empty() && tokens.len() <= 10);
            assert_eq!(ids(&choice["prompt_token_ids"]), PROMPT);
            let finish = choice["finish_reason"].as_str().unwrap();
            assert!(finish == "length" && tokens.len() == 10 || finish == "stop", "{choice}");
            // The text is the text of the tokens after the prompt, a final EOS left out.
            let kept = if finish == "stop" { &tokens[..tokens.len() - 1] } else { &tokens[..] };
            assert_eq!(choice["text"], model().text_after(&PROMPT, kept, false).unwrap());
            // The tokens' texts join to it (decoded in context).
            let texts: String = logprobs_tokens(&choice["logprobs"]).concat();
            assert!(texts.starts_with(choice["text"].as_str().unwrap()), "{texts:?}");
            let logprobs = &choice["logprobs"];
            let lps = logprobs["token_logprobs"].as_array().unwrap();
            assert_eq!(lps.len(), tokens.len());
            assert_eq!(logprobs["tokens"].as_array().unwrap().len(), tokens.len());
            assert_eq!(logprobs["text_offset"][0], 0);
            for (step, top) in logprobs["top_logprobs"].as_array().unwrap().iter().enumerate() {
                let top = top.as_object().unwrap();
                assert!((1..=3).contains(&top.len()), "{top:?}");
                let (first, value) = top.iter().next().unwrap();
                assert_eq!(first, &logprobs["tokens"][step]);
                assert_eq!(value, &lps[step]);
                assert!(lps[step].as_f64().unwrap() <= 0.0);
            }
        }
        assert_eq!(value["usage"], json!({"prompt_tokens": 6, "total_tokens": 6 + generated, "completion_tokens": generated}));
        // The same seed, the same choices; another seed, others.
        assert_eq!(answer(body.clone())["choices"], value["choices"]);
        let mut other = body.clone();
        other["seed"] = json!(6);
        assert_ne!(answer(other)["choices"], value["choices"]);
        // Choice i is drawn from choice_seed(seed, i), whatever n is (its
        // tokens; the log-probabilities of a batch of 1 and of 3 rows may
        // differ in the last bits).
        let mut one = body;
        one["n"] = json!(1);
        let alone = answer(one);
        let (alone, beside) = (&alone["choices"][0], &value["choices"][0]);
        assert_eq!((&alone["token_ids"], &alone["text"]), (&beside["token_ids"], &beside["text"]));
        for (a, b) in
            alone["logprobs"]["token_logprobs"].as_array().unwrap().iter().zip(beside["logprobs"]["token_logprobs"].as_array().unwrap())
        {
            assert!((a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn choice_i_is_the_decoders_continuation_with_stream_choice_seed_i() {
        use whence_sample::{choice_seed, TokenSampler};
        struct Plain(Vec<TokenSampler>, Vec<u32>);
        impl NextToken for Plain {
            fn choose(&mut self, s: usize, logits: &[f32]) -> u32 {
                self.0[s].sample(logits)
            }
            fn finished(&mut self, _: usize, tokens: &[u32]) -> bool {
                self.1.contains(tokens.last().unwrap())
            }
        }
        let params = SamplingParams { temperature: Temperature::new(0.8).unwrap(), ..Default::default() };
        let mut plain = Plain((0..2).map(|i| TokenSampler::new(params, choice_seed(9, i))).collect(), model().stop_token_ids().to_vec());
        let expected = model().session().generate(&PROMPT, 2, 12, &mut plain).unwrap();
        let value = answer(
            json!({"prompt": PROMPT, "n": 2, "seed": 9, "temperature": 0.8, "max_tokens": 12, "logprobs": 0, "return_token_ids": true}),
        );
        for (choice, continuation) in value["choices"].as_array().unwrap().iter().zip(expected) {
            assert_eq!(ids(&choice["token_ids"]), continuation.tokens);
            let lps: Vec<f32> =
                choice["logprobs"]["token_logprobs"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
            assert_eq!(lps, continuation.logprobs);
        }
    }

    #[test]
    fn greedy_one_token_is_the_same_with_or_without_scoring() {
        let plain = answer(json!({"prompt": PROMPT, "max_tokens": 1, "temperature": 0, "return_token_ids": true, "logprobs": 1}));
        let scored = answer(
            json!({"prompt": PROMPT, "max_tokens": 1, "temperature": 0, "return_token_ids": true, "logprobs": 1, "prompt_logprobs": 1}),
        );
        assert_eq!(plain["choices"][0]["token_ids"], scored["choices"][0]["token_ids"]);
        assert_eq!(plain["choices"][0]["text"], scored["choices"][0]["text"]);
        let (a, b) = (&plain["choices"][0]["logprobs"]["token_logprobs"][0], &scored["choices"][0]["logprobs"]["token_logprobs"][0]);
        assert!((a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-5, "{a} vs {b}");
        assert_eq!(scored["choices"][0]["prompt_logprobs"].as_array().unwrap().len(), PROMPT.len());
        assert!(plain["choices"][0]["prompt_logprobs"].is_null());
    }

    #[test]
    fn echo_with_logprobs_scores_the_prompt_as_lm_eval_asks() {
        let text = "The quick brown fox";
        let value = answer(json!({"prompt": text, "max_tokens": 0, "echo": true, "logprobs": 3, "prompt_logprobs": 0, "temperature": 0}));
        let choice = &value["choices"][0];
        assert_eq!(choice["text"], text);
        let prompt = ids(&choice["prompt_token_ids"]);
        let logprobs = &choice["logprobs"];
        let lps = logprobs["token_logprobs"].as_array().unwrap();
        assert_eq!(lps.len(), prompt.len());
        assert!(lps[0].is_null() && logprobs["top_logprobs"][0].is_null());
        for (i, &id) in prompt.iter().enumerate().skip(1) {
            // The same numbers as vLLM's prompt_logprobs.
            assert_eq!(lps[i], choice["prompt_logprobs"][i][id.to_string()]["logprob"]);
            assert!((1..=4).contains(&logprobs["top_logprobs"][i].as_object().unwrap().len()));
        }
        assert_eq!(choice["finish_reason"], "length");
        assert_eq!(value["usage"]["completion_tokens"], 0);
        // With one greedy token (lm-eval's newer request) the token follows the prompt's.
        let value = answer(json!({"prompt": text, "max_tokens": 1, "echo": true, "logprobs": 1, "temperature": 0}));
        let choice = &value["choices"][0];
        assert_eq!(choice["logprobs"]["token_logprobs"].as_array().unwrap().len(), prompt.len() + 1);
        assert!(choice["text"].as_str().unwrap().starts_with(text));
    }

    /// On a SentencePiece-style tokenizer (its decoder strips a leading
    /// space), every token's text is decoded in context: the BOS reads
    /// `<s>`, later words keep their space, and the texts join to the text.
    #[test]
    fn token_texts_are_decoded_in_context_on_a_sentencepiece_tokenizer() {
        static LLAMA2: std::sync::OnceLock<Model> = std::sync::OnceLock::new();
        let model = LLAMA2.get_or_init(|| {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/fixtures/tiny-llama2");
            Model::load(&dir, Default::default(), "tiny-llama2".into()).unwrap()
        });
        let text = "Once upon a time";
        let body = json!({"prompt": text, "max_tokens": 6, "echo": true, "logprobs": 2, "temperature": 0, "ignore_eos": true}).to_string();
        let request = ApiRequest { method: "POST", path: "/v1/completions", authorization: None, body: body.as_bytes() };
        let answer = handle(&request, model, None);
        assert_eq!(answer.status, 200, "{}", answer.body);
        let value: Value = serde_json::from_str(&answer.body).unwrap();
        let choice = &value["choices"][0];
        let prompt = ids(&choice["prompt_token_ids"]);
        let tokens = logprobs_tokens(&choice["logprobs"]);
        assert_eq!(tokens.len(), prompt.len() + 6);
        assert_eq!(tokens[0], "<s>");
        // Decoded alone, `▁u` would read "u": in context it keeps its space.
        assert_eq!(tokens[1..prompt.len()].concat(), format!(" {text}"), "{tokens:?}");
        assert!(tokens.iter().any(|t| t == " u"), "{tokens:?}");
        // After the BOS the texts join to the echoed prompt and the completion.
        assert_eq!(tokens[1..].concat().trim_start(), choice["text"].as_str().unwrap());
        // text_offset: each the previous plus the previous token's length.
        let offsets: Vec<u64> = choice["logprobs"]["text_offset"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        for i in 1..tokens.len() {
            assert_eq!(offsets[i], offsets[i - 1] + tokens[i - 1].chars().count() as u64);
        }
    }

    #[test]
    fn stop_strings_and_stop_tokens_end_a_choice() {
        let free = answer(
            json!({"prompt": PROMPT, "max_tokens": 24, "temperature": 0, "return_token_ids": true, "skip_special_tokens": false, "ignore_eos": true}),
        );
        let free = &free["choices"][0];
        let (text, tokens) = (free["text"].as_str().unwrap().to_string(), ids(&free["token_ids"]));
        assert_eq!(tokens.len(), 24);
        // A stop string from the middle of the text: cut before it (or after, when included).
        let chars: Vec<char> = text.chars().collect();
        let stop: String = chars[chars.len() / 2..chars.len() / 2 + 2].iter().collect();
        let cut = text.find(&stop).unwrap();
        let stopped = answer(
            json!({"prompt": PROMPT, "max_tokens": 24, "temperature": 0, "stop": stop, "skip_special_tokens": false, "ignore_eos": true}),
        );
        let choice = &stopped["choices"][0];
        assert_eq!((choice["text"].as_str().unwrap(), choice["finish_reason"].as_str().unwrap()), (&text[..cut], "stop"));
        assert_eq!(choice["stop_reason"], json!(stop));
        let included = answer(
            json!({"prompt": PROMPT, "max_tokens": 24, "temperature": 0, "stop": [stop], "skip_special_tokens": false, "ignore_eos": true, "include_stop_str_in_output": true}),
        );
        assert_eq!(included["choices"][0]["text"].as_str().unwrap(), &text[..cut + stop.len()]);
        // A stop token: kept in token_ids, out of the text, the stop reason.
        let at = tokens[3];
        let first = tokens.iter().position(|&t| t == at).unwrap();
        let value = answer(
            json!({"prompt": PROMPT, "max_tokens": 24, "temperature": 0, "stop_token_ids": [at], "return_token_ids": true, "skip_special_tokens": false, "ignore_eos": true}),
        );
        let choice = &value["choices"][0];
        assert_eq!(ids(&choice["token_ids"]), tokens[..=first]);
        assert_eq!(choice["text"], model().text_after(&PROMPT, &tokens[..first], false).unwrap());
        assert_eq!((choice["finish_reason"].as_str().unwrap(), &choice["stop_reason"]), ("stop", &json!(at)));
    }

    #[test]
    fn requests_the_model_cannot_take_are_refused() {
        for (body, want) in [
            (json!({"prompt": PROMPT, "max_tokens": 510}), "maximum context length is 512 tokens"),
            (json!({"prompt": PROMPT, "max_tokens": 510}), "`max_tokens` (it is 510)"),
            (json!({"prompt": PROMPT, "stop_token_ids": [5000]}), "`stop_token_ids` holds 5000, outside the vocabulary"),
            (json!({"prompt": [1, 99999]}), "outside the vocabulary"),
            (json!({"prompt": PROMPT, "temperature": -0.5}), "`temperature` is -0.5"),
        ] {
            let (status, value) = post(body.clone());
            assert_eq!(status, 400, "{body}: {value}");
            let message = value["error"]["message"].as_str().unwrap();
            assert!(message.contains(want), "{body}: {message}");
        }
    }
}
