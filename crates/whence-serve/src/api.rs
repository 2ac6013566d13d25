//! The HTTP API: routing, request checks, and answers in vLLM's shapes.

use serde_json::{json, Map, Value};

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

/// One prompt of a request, as token ids.
fn prompts(value: Option<&Value>, model: &Model) -> Result<Vec<Vec<u32>>, String> {
    let ids = |list: &[Value]| -> Result<Vec<u32>, String> {
        list.iter()
            .map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| format!("`prompt` holds {v}, not a token id")))
            .collect()
    };
    match value {
        Some(Value::String(text)) => Ok(vec![model.tokenize(text)?]),
        Some(Value::Array(list)) if list.is_empty() => Err("`prompt` is empty".into()),
        Some(Value::Array(list)) if list[0].is_number() => Ok(vec![ids(list)?]),
        Some(Value::Array(list)) => list
            .iter()
            .map(|item| match item {
                Value::String(text) => model.tokenize(text),
                Value::Array(inner) => ids(inner),
                other => Err(format!("`prompt` holds {other}; give text, token ids, or a list of either")),
            })
            .collect(),
        Some(other) => Err(format!("`prompt` is {other}; give text, token ids, or a list of either")),
        None => Err("the request has no `prompt`".into()),
    }
}

fn integer(body: &Map<String, Value>, field: &str, default: u64) -> Result<u64, String> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(value) => value.as_u64().ok_or_else(|| format!("`{field}` is {value}; it must be a non-negative integer")),
    }
}

fn completions(body: &[u8], model: &Model) -> Result<ApiResponse, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("the request body is not JSON: {e}"))?;
    let body = value.as_object().ok_or("the request body is not a JSON object")?;
    if let Some(name) = body.get("model").and_then(Value::as_str) {
        if !name.is_empty() && name != model.name() {
            return Ok(error(404, &format!("The model `{name}` does not exist; this server serves `{}`", model.name())));
        }
    }
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        return Err("`stream` is not supported: whence serve answers in one response".into());
    }
    if body.get("logprobs").is_some_and(|v| !v.is_null()) {
        return Err("`logprobs` (of generated tokens) is not supported; ask for `prompt_logprobs`".into());
    }
    let max_tokens = integer(body, "max_tokens", 16)?;
    if max_tokens > 1 {
        return Err(format!("`max_tokens` is {max_tokens}; whence serve scores prompts and generates at most 1 token (greedy)"));
    }
    let temperature = body.get("temperature").map_or(Some(1.0), |v| if v.is_null() { Some(1.0) } else { v.as_f64() });
    if max_tokens == 1 && temperature != Some(0.0) {
        return Err("whence serve generates greedily only: send `temperature: 0` (or `max_tokens: 0`)".into());
    }
    let top = match body.get("prompt_logprobs") {
        None | Some(Value::Null) => None,
        Some(value) => match value.as_u64() {
            Some(k) if k as usize <= MAX_TOP => Some(k as usize),
            _ => return Err(format!("`prompt_logprobs` is {value}; it must be an integer from 0 to {MAX_TOP}")),
        },
    };
    let prompts = prompts(body.get("prompt"), model)?;
    for (index, ids) in prompts.iter().enumerate() {
        if ids.is_empty() {
            return Err(format!("prompt {index} has no tokens"));
        }
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= model.vocab_size()) {
            return Err(format!("prompt {index}: token id {bad} is outside the vocabulary of {} tokens", model.vocab_size()));
        }
        if ids.len() + max_tokens as usize > model.max_len() {
            return Err(format!(
                "This model's maximum context length is {} tokens. However, you requested {} tokens ({} in the messages, {max_tokens} in the completion)",
                model.max_len(),
                ids.len() + max_tokens as usize,
                ids.len()
            ));
        }
    }
    let mut choices = Vec::with_capacity(prompts.len());
    let mut prompt_tokens = 0;
    for (index, ids) in prompts.iter().enumerate() {
        prompt_tokens += ids.len();
        let scores = model.score(ids, top.unwrap_or(0), max_tokens == 1)?;
        let prompt_logprobs = top.map(|_| {
            let mut entries = vec![Value::Null];
            for (position, &id) in scores.positions.iter().zip(&ids[1..]) {
                let mut entry = Map::new();
                let item = |logprob: f32, rank: u32, token: u32| {
                    json!({"logprob": f64::from(logprob), "rank": rank, "decoded_token": model.token_text(token)})
                };
                entry.insert(id.to_string(), item(position.logprob, position.rank, id));
                for (place, &(token, logprob)) in position.top.iter().enumerate() {
                    entry.entry(token.to_string()).or_insert_with(|| item(logprob, place as u32 + 1, token));
                }
                entries.push(Value::Object(entry));
            }
            Value::Array(entries)
        });
        let text = scores.next.map_or_else(String::new, |(token, _)| model.token_text(token));
        choices.push(json!({
            "index": index,
            "text": text,
            "logprobs": null,
            "finish_reason": "length",
            "stop_reason": null,
            "prompt_token_ids": ids,
            "prompt_logprobs": prompt_logprobs,
        }));
    }
    let completion_tokens = max_tokens as usize * prompts.len();
    Ok(ok(json!({
        "id": format!("cmpl-{}", model.created()),
        "object": "text_completion",
        "created": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "model": model.name(),
        "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + completion_tokens, "completion_tokens": completion_tokens},
    })))
}
