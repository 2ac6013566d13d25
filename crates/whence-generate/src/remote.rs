//! Generation through inference servers: vLLM's `/v1/completions` (also
//! `whence serve`) and SGLang's `/generate`, with the scoring client's load
//! spreading, in-flight bound, timeouts and retries.
//!
//! Prompts are rendered and tokenized here and sent as token ids. One
//! request per question asks for all its samples:
//!
//! - vLLM: `{"model", "prompt": [ids], "n", "temperature", "top_p",
//!   "top_k", "seed", "max_tokens", "stop", "stop_token_ids", "logprobs": 0,
//!   "skip_special_tokens": false, "include_stop_str_in_output": false,
//!   "return_token_ids": true}`; each choice's `token_ids` (vLLM ≥ 0.10.2
//!   returns them when asked) and `logprobs.token_logprobs` are read.
//! - SGLang: `{"input_ids", "return_logprob": true, "sampling_params":
//!   {"n", "temperature", "top_p", "top_k", "max_new_tokens", "stop",
//!   "stop_token_ids", "skip_special_tokens": false, "sampling_seed"}}`;
//!   each answer's `output_ids` and `meta_info.output_token_logprobs`.
//!
//! Every answer is checked: one choice per sample, one finite log-probability ≤ 0 per token (vLLM writes −9999
//! for −∞: an error), a known finish reason, no more tokens than asked, and
//! the server's text equal to the text of its token ids (as
//! [`crate::text`] makes it). Anything else is an error naming the question
//! and the server, never a sample.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use whence_encode::Encoder;
use whence_remote::client::Client;
use whence_remote::{ClientOptions, Protocol, RequestError, ServerSpec};
use whence_score::ModelInfo;

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{FinishReason, GenerateError, Generator, Job, JobResult, Request, Sample};

/// A model behind inference-server endpoints, generating.
pub struct ServerGenerator {
    spec: ServerSpec,
    encoder: Encoder,
    client: Client,
    model: String,
    info: ModelInfo,
}

impl ServerGenerator {
    /// Connects: asks the server which model it serves unless the spec names it.
    pub fn open(spec: &ServerSpec, encoder: Encoder, options: ClientOptions) -> Result<Self, GenerateError> {
        if spec.endpoints.iter().any(|e| e.starts_with("https://")) && !cfg!(feature = "tls") {
            return Err(GenerateError::Usage(format!(
                "{spec}: https endpoints need whence built with the `tls` feature; plain http works as is"
            )));
        }
        let client = Client::new(&spec.endpoints, options);
        let model = match &spec.model {
            Some(model) => model.clone(),
            None => whence_remote::served_model(spec, &client)?,
        };
        let mut hasher = Sha256::new();
        hasher.update(b"whence-remote-generate-v1\0");
        hasher.update(format!("{}\0{model}\0encoder:{}\0", spec.protocol.name(), encoder.digest()).as_bytes());
        let info = ModelInfo {
            kind: "server".into(),
            source: format!("{spec} (model {model})"),
            fingerprint: format!("sha256:{:x}", hasher.finalize()),
        };
        Ok(ServerGenerator { spec: spec.clone(), encoder, client, model, info })
    }
}

/// The request body asking for `request.samples` samples continuing `prompt`.
pub fn request_body(protocol: Protocol, model: &str, prompt: &[u32], request: &Request) -> Value {
    let p = &request.params;
    // A 63-bit request seed (see `request_seed`): `whence serve` draws
    // choice k from `choice_seed(seed, k)`, as in-process generation does.
    let seed = request.request_seed;
    let top_k = p.top_k.value().map_or(-1, |k| k as i64);
    match protocol {
        Protocol::Vllm => json!({
            "model": model,
            "prompt": prompt,
            "n": request.samples,
            "temperature": p.temperature.value(),
            "top_p": p.top_p.value(),
            "top_k": top_k,
            "seed": seed,
            "max_tokens": request.max_new_tokens,
            "stop": request.stop,
            "stop_token_ids": request.stop_token_ids,
            "logprobs": 0,
            "skip_special_tokens": false,
            "include_stop_str_in_output": false,
            "return_token_ids": true,
        }),
        Protocol::Sglang => json!({
            "input_ids": prompt,
            "return_logprob": true,
            "sampling_params": {
                "n": request.samples,
                "temperature": p.temperature.value(),
                "top_p": p.top_p.value(),
                "top_k": top_k,
                "max_new_tokens": request.max_new_tokens,
                "stop": request.stop,
                "stop_token_ids": request.stop_token_ids,
                "skip_special_tokens": false,
                "sampling_seed": seed,
            },
        }),
    }
}

/// A sample as a server answered it, before the text check.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered {
    pub sample: Sample,
    pub text: String,
}

fn logprob_of(value: &Value, what: &str) -> Result<f32, String> {
    let x = value.as_f64().ok_or_else(|| format!("{what} is {value}, not a number"))?;
    if !x.is_finite() || x > 0.0 || x <= -9999.0 {
        return Err(format!("{what} is {x}: not a finite log-probability ≤ 0 (vLLM writes -9999 for −∞)"));
    }
    Ok(x as f32)
}

fn finish_of(value: Option<&Value>) -> Result<FinishReason, String> {
    let name = value.and_then(|v| v.as_str().or_else(|| v.get("type").and_then(Value::as_str)));
    match name {
        Some("stop") => Ok(FinishReason::Stop),
        Some("length") => Ok(FinishReason::Length),
        other => Err(format!("finish reason {} is not `stop` or `length`", other.map_or("(none)".into(), |s| format!("`{s}`")))),
    }
}

fn ids_of(value: Option<&Value>, what: &str) -> Result<Vec<u32>, String> {
    let list = value.and_then(Value::as_array).ok_or_else(|| format!("no `{what}` list"))?;
    list.iter()
        .map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| format!("`{what}` holds {v}, not a token id")))
        .collect()
}

/// The samples in a server's answer to [`request_body`].
pub fn parse_answer(protocol: Protocol, body: &[u8], request: &Request) -> Result<Vec<Answered>, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON ({e}): {}", whence_remote::protocol::excerpt(body)))?;
    let items: Vec<&Value> = match protocol {
        Protocol::Vllm => {
            let choices = value.get("choices").and_then(Value::as_array).ok_or_else(|| "no `choices` list".to_string())?;
            let mut choices: Vec<&Value> = choices.iter().collect();
            choices.sort_by_key(|c| c.get("index").and_then(Value::as_u64).unwrap_or(u64::MAX));
            choices
        }
        Protocol::Sglang => match &value {
            Value::Array(list) => list.iter().collect(),
            one => vec![one],
        },
    };
    if items.len() != request.samples {
        return Err(format!("{} samples in the answer, {} asked for", items.len(), request.samples));
    }
    let mut out = Vec::with_capacity(items.len());
    for (k, item) in items.into_iter().enumerate() {
        let at = |m: String| format!("sample {k}: {m}");
        let (tokens, logprobs, finish, text) = match protocol {
            Protocol::Vllm => {
                let tokens = ids_of(item.get("token_ids"), "token_ids")
                    .map_err(|m| at(format!("{m}; the server must return the sampled token ids (`return_token_ids`, vLLM ≥ 0.10.2)")))?;
                let logprobs = item
                    .pointer("/logprobs/token_logprobs")
                    .and_then(Value::as_array)
                    .ok_or_else(|| at("no `logprobs.token_logprobs` list (asked with `logprobs: 0`)".into()))?;
                let logprobs: Vec<f32> = logprobs
                    .iter()
                    .enumerate()
                    .map(|(i, v)| logprob_of(v, &format!("`token_logprobs[{i}]`")))
                    .collect::<Result<_, _>>()
                    .map_err(at)?;
                let text = item.get("text").and_then(Value::as_str).ok_or_else(|| at("no `text`".into()))?.to_string();
                (tokens, logprobs, finish_of(item.get("finish_reason")).map_err(at)?, text)
            }
            Protocol::Sglang => {
                let meta = item.get("meta_info").ok_or_else(|| at("no `meta_info`".into()))?;
                let entries = meta
                    .get("output_token_logprobs")
                    .and_then(Value::as_array)
                    .ok_or_else(|| at("no `meta_info.output_token_logprobs` list".into()))?;
                let mut tokens = Vec::with_capacity(entries.len());
                let mut logprobs = Vec::with_capacity(entries.len());
                for (i, entry) in entries.iter().enumerate() {
                    let triple =
                        entry.as_array().filter(|t| t.len() >= 2).ok_or_else(|| at(format!("`output_token_logprobs[{i}]` is {entry}")))?;
                    logprobs.push(logprob_of(&triple[0], &format!("`output_token_logprobs[{i}]`")).map_err(at)?);
                    tokens.push(
                        triple[1]
                            .as_u64()
                            .and_then(|n| u32::try_from(n).ok())
                            .ok_or_else(|| at(format!("`output_token_logprobs[{i}]` has token {}", triple[1])))?,
                    );
                }
                if let Some(ids) = item.get("output_ids").filter(|v| !v.is_null()) {
                    if ids_of(Some(ids), "output_ids").map_err(at)? != tokens {
                        return Err(at("`output_ids` differ from the ids of `output_token_logprobs`".into()));
                    }
                }
                let text = item.get("text").and_then(Value::as_str).ok_or_else(|| at("no `text`".into()))?.to_string();
                (tokens, logprobs, finish_of(meta.get("finish_reason")).map_err(at)?, text)
            }
        };
        if tokens.len() != logprobs.len() {
            return Err(at(format!("{} token ids but {} log-probabilities", tokens.len(), logprobs.len())));
        }
        if tokens.len() > request.max_new_tokens {
            return Err(at(format!("{} tokens, more than the {} asked for", tokens.len(), request.max_new_tokens)));
        }
        out.push(Answered { sample: Sample { tokens, logprobs, finish_reason: finish }, text });
    }
    Ok(out)
}

impl Generator for ServerGenerator {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    fn context_length(&self) -> Option<usize> {
        None
    }

    fn generate(&mut self, prompt: &[u32], request: &Request, location: &str) -> Result<Vec<Sample>, GenerateError> {
        self.generate_one(prompt, request, location)
    }

    /// Up to `max_in_flight` questions at once; each outcome reaches `done`
    /// on this thread as it arrives.
    fn generate_many(&mut self, jobs: &[Job], done: &mut dyn FnMut(usize, JobResult)) {
        let workers = self.client.options().max_in_flight.clamp(1, jobs.len().max(1));
        let next = AtomicUsize::new(0);
        let this = &*self;
        std::thread::scope(|scope| {
            let (sender, receiver) = std::sync::mpsc::channel();
            for _ in 0..workers {
                let sender = sender.clone();
                let next = &next;
                scope.spawn(move || loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(index) else { break };
                    let result = this.generate_one(&job.prompt, &job.request, &job.location);
                    if sender.send((index, result)).is_err() {
                        break;
                    }
                });
            }
            drop(sender);
            for (index, result) in receiver {
                done(index, result);
            }
        });
    }
}

impl ServerGenerator {
    fn generate_one(&self, prompt: &[u32], request: &Request, location: &str) -> Result<Vec<Sample>, GenerateError> {
        let body = request_body(self.spec.protocol, &self.model, prompt, request);
        let path = match self.spec.protocol {
            Protocol::Vllm => "/completions",
            Protocol::Sglang => "/generate",
        };
        let answer = self.client.request(path, Some(body.to_string().as_bytes())).map_err(|error| match error {
            RequestError::Refused { status: 400 | 413 | 422, .. } => {
                GenerateError::InvalidRecord { location: location.to_string(), message: format!("the server refused it: {error}") }
            }
            RequestError::Refused { .. } => GenerateError::Usage(format!("{}: {error}", self.spec)),
            RequestError::Unavailable { .. } => GenerateError::Failed(format!("{}: {location}: {error}", self.spec)),
        })?;
        let unusable = |m: String| GenerateError::Failed(format!("{}: {location}: the server's answer is unusable: {m}", self.spec));
        let answered = parse_answer(self.spec.protocol, &answer, request).map_err(unusable)?;
        // An answer whose text is not the text of its ids is this question's
        // error (skippable), not the run's: the server may still be sound.
        checked_texts(&self.encoder, prompt, answered, request).map_err(|message| GenerateError::InvalidRecord {
            location: location.to_string(),
            message: format!("{}: the server's answer is unusable: {message}", self.spec),
        })
    }
}

/// The samples of `answered`, once each one's text is checked to be the text
/// of its token ids: decoded here in the context of the prompt's ids (SPEC
/// §10), a final stop token dropped, cut before the first stop string, a
/// trailing incomplete UTF-8 character left out as vLLM's detokenizer
/// leaves it out.
pub fn checked_texts(encoder: &Encoder, prompt: &[u32], answered: Vec<Answered>, request: &Request) -> Result<Vec<Sample>, String> {
    // No bound on the ids here: a model's vocabulary is often padded
    // beyond its tokenizer's (Qwen2.5: 151,936 rows for 151,665 tokens),
    // and a drawn padding id is the model's own; its text is checked below.
    let mut samples = Vec::with_capacity(answered.len());
    for (k, Answered { sample, text }) in answered.into_iter().enumerate() {
        let mut tokens = sample.tokens.clone();
        if sample.finish_reason == FinishReason::Stop && tokens.last().is_some_and(|t| request.stop_token_ids.contains(t)) {
            tokens.pop();
        }
        let mut stream = encoder.text_stream(prompt)?;
        stream.extend(&tokens)?;
        let decoded = stream.text();
        let expected = &decoded[..crate::text::first_stop(decoded, &request.stop).unwrap_or(decoded.len())];
        if expected != text {
            return Err(format!("sample {k}: its text {:?} is not the text of its token ids {:?}", excerpt(&text), excerpt(expected)));
        }
        samples.push(sample);
    }
    Ok(samples)
}

fn excerpt(text: &str) -> String {
    let mut end = text.len().min(120);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end < text.len() {
        format!("{}…", &text[..end])
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SamplingParams;

    fn request(samples: usize) -> Request {
        Request {
            samples,
            params: SamplingParams::default(),
            request_seed: 6,
            max_new_tokens: 4,
            stop: vec!["\n\n".into()],
            stop_token_ids: vec![2],
        }
    }

    const VLLM: &str = r#"{"id":"cmpl-1","object":"text_completion","model":"m","choices":[
        {"index":1,"text":" b","token_ids":[7,2],"finish_reason":"stop","stop_reason":null,
         "logprobs":{"tokens":[" b","</s>"],"token_logprobs":[-0.5,-0.25],"top_logprobs":null,"text_offset":[0,2]}},
        {"index":0,"text":" a c","token_ids":[5,6,8,9],"finish_reason":"length","stop_reason":null,
         "logprobs":{"tokens":[" a"," c","",""],"token_logprobs":[-1.0,-2.0,-0.125,-3.5],"top_logprobs":null,"text_offset":[0,2,4,4]}}]}"#;

    const SGLANG: &str = r#"[{"text":" a","output_ids":[5,2],"meta_info":{"finish_reason":{"type":"stop","matched":2},
        "output_token_logprobs":[[-1.0,5,null],[-0.5,2,null]]}}]"#;

    #[test]
    fn vllm_choices_in_index_order() {
        let answered = parse_answer(Protocol::Vllm, VLLM.as_bytes(), &request(2)).unwrap();
        assert_eq!(answered[0].sample.tokens, vec![5, 6, 8, 9]);
        assert_eq!(answered[0].sample.finish_reason, FinishReason::Length);
        assert_eq!(answered[1].sample.logprobs, vec![-0.5, -0.25]);
        assert_eq!(answered[1].text, " b");
    }

    #[test]
    fn vllm_answers_that_must_not_become_samples() {
        let r = request(2);
        let cases = [
            (VLLM.replace("-0.25", "-9999.0"), "-9999"),
            (VLLM.replace("-0.25", "0.5"), "not a finite log-probability"),
            (VLLM.replace(r#""token_ids":[7,2],"#, ""), "return_token_ids"),
            (VLLM.replace(r#""finish_reason":"stop""#, r#""finish_reason":"abort""#), "`abort`"),
            (VLLM.replace("[-1.0,-2.0,-0.125,-3.5]", "[-1.0,-2.0]"), "4 token ids but 2 log-probabilities"),
        ];
        for (body, want) in cases {
            let message = parse_answer(Protocol::Vllm, body.as_bytes(), &r).unwrap_err();
            assert!(message.contains(want), "{message} should say {want}");
        }
        assert!(parse_answer(Protocol::Vllm, VLLM.as_bytes(), &request(3)).unwrap_err().contains("2 samples in the answer, 3 asked for"));
        assert!(parse_answer(Protocol::Vllm, VLLM.as_bytes(), &Request { max_new_tokens: 3, ..request(2) })
            .unwrap_err()
            .contains("more than the 3"));
    }

    #[test]
    fn sglang_answers() {
        let answered = parse_answer(Protocol::Sglang, SGLANG.as_bytes(), &request(1)).unwrap();
        assert_eq!(answered[0].sample, Sample { tokens: vec![5, 2], logprobs: vec![-1.0, -0.5], finish_reason: FinishReason::Stop });
        let other = SGLANG.replace(r#""output_ids":[5,2]"#, r#""output_ids":[5,3]"#);
        assert!(parse_answer(Protocol::Sglang, other.as_bytes(), &request(1)).unwrap_err().contains("`output_ids` differ"));
    }

    #[test]
    fn a_text_that_is_not_the_text_of_the_ids_is_refused() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/fixtures/tiny-qwen2");
        let encoder = Encoder::open(&dir, &whence_encode::TemplateMode::Auto).unwrap();
        let ids = encoder.tokenizer().encode("Hello world.\n\nMore", false).unwrap().get_ids().to_vec();
        let eos = 1002;
        let sample = |tokens: Vec<u32>, finish| Sample { logprobs: vec![-1.0; tokens.len()], tokens, finish_reason: finish };
        let request = Request { stop_token_ids: vec![eos], ..request(1) };
        // Stopped by the stop string: the text ends before it.
        let ok = Answered { sample: sample(ids.clone(), FinishReason::Stop), text: "Hello world.".into() };
        assert_eq!(checked_texts(&encoder, &[], vec![ok], &request).unwrap().len(), 1);
        // Stopped by EOS: the EOS token is in the ids, not in the text.
        let mut with_eos = encoder.tokenizer().encode("Hi.", false).unwrap().get_ids().to_vec();
        with_eos.push(eos);
        let ok = Answered { sample: sample(with_eos, FinishReason::Stop), text: "Hi.".into() };
        assert!(checked_texts(&encoder, &[], vec![ok], &request).is_ok());
        // Cut by the length limit inside a character (`é` is bytes C3 A9, the
        // byte-level token `Ã` is C3 alone): vLLM holds the partial character
        // back, and so does the check.
        let prompt = encoder.tokenizer().encode("Say it.", false).unwrap().get_ids().to_vec();
        let mut cut = encoder.tokenizer().encode(" caf", false).unwrap().get_ids().to_vec();
        cut.push(encoder.tokenizer().token_to_id("Ã").unwrap());
        let ok = Answered { sample: sample(cut, FinishReason::Length), text: " caf".into() };
        assert!(checked_texts(&encoder, &prompt, vec![ok], &request).is_ok());
        // Another text than the ids'.
        let wrong = Answered { sample: sample(ids, FinishReason::Length), text: "Hello there.".into() };
        let message = checked_texts(&encoder, &[], vec![wrong], &request).unwrap_err();
        assert!(message.contains("is not the text of its token ids"), "{message}");
    }

    #[test]
    fn request_bodies() {
        let body = request_body(Protocol::Vllm, "m", &[1, 2], &request(3));
        assert_eq!(
            body.to_string(),
            r#"{"model":"m","prompt":[1,2],"n":3,"temperature":1.0,"top_p":1.0,"top_k":-1,"seed":6,"max_tokens":4,"stop":["\n\n"],"stop_token_ids":[2],"logprobs":0,"skip_special_tokens":false,"include_stop_str_in_output":false,"return_token_ids":true}"#
        );
        let body = request_body(Protocol::Sglang, "m", &[1, 2], &request(1));
        assert_eq!(body["sampling_params"]["n"], 1);
        assert_eq!(body["input_ids"], json!([1, 2]));
    }
}
