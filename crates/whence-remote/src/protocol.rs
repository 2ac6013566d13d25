//! The two wire protocols: request bodies, and the parsing and checking of
//! the prompt log-probabilities that come back.
//!
//! Both return one entry per prompt token, the first empty (`null`: the
//! first token has no context). Every entry is checked against the id that
//! was sent: a server that scored other tokens, or fewer, or gave a
//! non-finite or positive log-probability, is an error, never used. A
//! log-probability ≤ −9999 is vLLM's stand-in for −∞ (it clamps `-inf` to
//! `-9999.0` so that the answer is valid JSON): the model gives that token
//! no probability at all, which no score can stand for, so it is an error
//! too ([`ProtocolError::NoProbability`]).
//!
//! vLLM is asked for `"prompt_logprobs": 0` and `"return_token_ids": true`:
//! with 0, vLLM returns per position only the prompt token's own
//! log-probability (and its rank), not the top-k besides, and its
//! `--max-logprobs` limit does not apply (it only checks a non-zero count);
//! with `return_token_ids`, vLLM (≥ 0.10.2) echoes the prompt's ids in
//! `choices[0].prompt_token_ids`, which are checked one by one. Servers that
//! do not echo them are checked by the entries' keys, as before.

use serde_json::{json, Value};
use whence_score::Protocol;

/// vLLM writes `-inf` log-probabilities as this value.
pub const VLLM_NEGATIVE_INFINITY: f64 = -9999.0;

/// What is wrong with a server's answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtocolError {
    /// Not the answer that was asked for: not JSON, other ids, other
    /// lengths, missing fields, NaN or positive numbers.
    #[error("{0}")]
    Malformed(String),
    /// A token's log-probability is −∞ (≤ −9999, vLLM's stand-in): the
    /// model gives the token no probability.
    #[error("log-probability `{logprob}` of token {position} (token id {id}) is −∞ (vLLM writes -9999 for −∞): the model gives this token no probability, so it has no score")]
    NoProbability { position: usize, id: u32, logprob: f64 },
}

fn bad(message: impl Into<String>) -> ProtocolError {
    ProtocolError::Malformed(message.into())
}

/// The request body asking for the log-probability of every token of `ids`.
pub fn request_body(protocol: Protocol, model: Option<&str>, ids: &[u32]) -> Value {
    match protocol {
        Protocol::Vllm => json!({
            "model": model.unwrap_or_default(),
            "prompt": ids,
            "max_tokens": 1,
            "temperature": 0,
            "prompt_logprobs": 0,
            "return_token_ids": true,
        }),
        Protocol::Sglang => json!({
            "input_ids": ids,
            "return_logprob": true,
            "logprob_start_len": 0,
            "sampling_params": {"max_new_tokens": 0},
        }),
    }
}

/// The log-probability of `ids[i]` given `ids[..i]` for every `i ≥ 1`, from
/// a response body, checked against the ids sent.
pub fn parse_logprobs(protocol: Protocol, body: &[u8], ids: &[u32]) -> Result<Vec<f64>, ProtocolError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| bad(format!("the response is not JSON ({e}): {}", excerpt(body))))?;
    match protocol {
        Protocol::Vllm => parse_vllm(&value, ids),
        Protocol::Sglang => parse_sglang(&value, ids),
    }
}

/// The start of a body, for messages.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    let mut text = text.replace('\n', " ");
    if body.len() > 300 {
        text.push('…');
    }
    text
}

fn check_length(what: &str, got: usize, ids: &[u32]) -> Result<(), ProtocolError> {
    if got != ids.len() {
        return Err(bad(format!("{what} has {got} entries for the {} tokens sent", ids.len())));
    }
    Ok(())
}

fn check_logprob(position: usize, id: u32, logprob: f64) -> Result<f64, ProtocolError> {
    if logprob <= VLLM_NEGATIVE_INFINITY {
        return Err(ProtocolError::NoProbability { position, id, logprob });
    }
    if !logprob.is_finite() || logprob > 0.0 {
        return Err(bad(format!("log-probability `{logprob}` of token {position} is not a finite number ≤ 0")));
    }
    Ok(logprob)
}

fn parse_vllm(value: &Value, ids: &[u32]) -> Result<Vec<f64>, ProtocolError> {
    let choice = value
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| bad(format!("no `choices[0]` in the response: {}", excerpt(value.to_string().as_bytes()))))?;
    if let Some(sent_back) = choice.get("prompt_token_ids").filter(|v| !v.is_null()) {
        let sent_back = sent_back.as_array().ok_or_else(|| bad("`prompt_token_ids` is not a list"))?;
        check_length("`prompt_token_ids`", sent_back.len(), ids)?;
        for (position, (got, &sent)) in sent_back.iter().zip(ids).enumerate() {
            if got.as_u64() != Some(u64::from(sent)) {
                return Err(bad(format!("`prompt_token_ids[{position}]` is {got}, but token id {sent} was sent")));
            }
        }
    }
    let entries = choice
        .get("prompt_logprobs")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no `prompt_logprobs` list in `choices[0]`; does the server support prompt_logprobs?"))?;
    check_length("`prompt_logprobs`", entries.len(), ids)?;
    let mut out = Vec::with_capacity(ids.len().saturating_sub(1));
    for (position, (entry, &id)) in entries.iter().zip(ids).enumerate().skip(1) {
        let map = entry.as_object().ok_or_else(|| bad(format!("`prompt_logprobs[{position}]` is {entry}, not an object")))?;
        let key = id.to_string();
        let chosen = map.get(&key).ok_or_else(|| {
            let keys: Vec<&str> = map.keys().map(String::as_str).collect();
            bad(format!("`prompt_logprobs[{position}]` has no entry for the token id {id} that was sent (it has {})", keys.join(", ")))
        })?;
        let logprob = chosen
            .get("logprob")
            .and_then(Value::as_f64)
            .ok_or_else(|| bad(format!("`prompt_logprobs[{position}][\"{key}\"]` has no numeric `logprob`")))?;
        out.push(check_logprob(position, id, logprob)?);
    }
    if let Some(counted) = value.pointer("/usage/prompt_tokens").and_then(Value::as_u64) {
        if counted != ids.len() as u64 {
            return Err(bad(format!("`usage.prompt_tokens` is {counted} for the {} tokens sent", ids.len())));
        }
    }
    Ok(out)
}

fn parse_sglang(value: &Value, ids: &[u32]) -> Result<Vec<f64>, ProtocolError> {
    // A batch answer is a list; a single request gets an object.
    let value = value.as_array().and_then(|list| list.first()).unwrap_or(value);
    let entries = value.get("meta_info").and_then(|m| m.get("input_token_logprobs")).and_then(Value::as_array).ok_or_else(|| {
        bad(format!("no `meta_info.input_token_logprobs` list in the response: {}", excerpt(value.to_string().as_bytes())))
    })?;
    check_length("`meta_info.input_token_logprobs`", entries.len(), ids)?;
    let mut out = Vec::with_capacity(ids.len().saturating_sub(1));
    for (position, (entry, &id)) in entries.iter().zip(ids).enumerate() {
        let triple = entry
            .as_array()
            .filter(|t| t.len() >= 2)
            .ok_or_else(|| bad(format!("`input_token_logprobs[{position}]` is {entry}, not [logprob, token_id, text]")))?;
        if triple[1].as_u64() != Some(u64::from(id)) {
            return Err(bad(format!("`input_token_logprobs[{position}]` is for token id {}, but token id {id} was sent", triple[1])));
        }
        if position == 0 {
            continue;
        }
        let logprob =
            triple[0].as_f64().ok_or_else(|| bad(format!("`input_token_logprobs[{position}]` has log-probability {}", triple[0])))?;
        out.push(check_logprob(position, id, logprob)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shape vLLM returns for prompt_logprobs=1: a null first entry, then
    // per position the actual token and (when it is not the top token) the
    // top-1 token, keyed by id as a string.
    const VLLM: &str = r#"{"id":"cmpl-9","object":"text_completion","created":1700000000,"model":"qwq",
      "choices":[{"index":0,"text":" the","logprobs":null,"finish_reason":"length","stop_reason":null,
        "prompt_token_ids":[151644,872,198],
        "prompt_logprobs":[null,
          {"872":{"logprob":-3.25,"rank":4,"decoded_token":"user"},"77091":{"logprob":-0.5,"rank":1,"decoded_token":"assistant"}},
          {"198":{"logprob":-0.0001,"rank":1,"decoded_token":"\n"}}]}],
      "usage":{"prompt_tokens":3,"total_tokens":4,"completion_tokens":1}}"#;

    const SGLANG: &str = r#"{"text":"","meta_info":{"id":"a1","prompt_tokens":3,"completion_tokens":0,
      "input_token_logprobs":[[null,151644,null],[-3.25,872,null],[-0.0001,198,null]],"output_token_logprobs":[]}}"#;

    #[test]
    fn vllm_picks_the_sent_token_among_the_top_entries() {
        let logprobs = parse_logprobs(Protocol::Vllm, VLLM.as_bytes(), &[151644, 872, 198]).unwrap();
        assert_eq!(logprobs, vec![-3.25, -0.0001]);
    }

    #[test]
    fn vllm_without_prompt_token_ids_checks_the_entry_keys() {
        let body = VLLM.replace(r#""prompt_token_ids":[151644,872,198],"#, "");
        assert_eq!(parse_logprobs(Protocol::Vllm, body.as_bytes(), &[151644, 872, 198]).unwrap(), vec![-3.25, -0.0001]);
        let message = parse_logprobs(Protocol::Vllm, body.as_bytes(), &[151644, 873, 198]).unwrap_err().to_string();
        assert!(message.contains("no entry for the token id 873"), "{message}");
    }

    #[test]
    fn vllm_rejects_other_ids_lengths_and_values() {
        let message = parse_logprobs(Protocol::Vllm, VLLM.as_bytes(), &[151644, 872, 199]).unwrap_err().to_string();
        assert_eq!(message, "`prompt_token_ids[2]` is 198, but token id 199 was sent");
        let message = parse_logprobs(Protocol::Vllm, VLLM.as_bytes(), &[151644, 872]).unwrap_err().to_string();
        assert_eq!(message, "`prompt_token_ids` has 3 entries for the 2 tokens sent");
        let positive = VLLM.replace("-0.0001", "0.25");
        let message = parse_logprobs(Protocol::Vllm, positive.as_bytes(), &[151644, 872, 198]).unwrap_err().to_string();
        assert_eq!(message, "log-probability `0.25` of token 2 is not a finite number ≤ 0");
        let missing = VLLM.replace("prompt_logprobs", "logprobs_of_prompt");
        assert!(parse_logprobs(Protocol::Vllm, missing.as_bytes(), &[151644, 872, 198])
            .unwrap_err()
            .to_string()
            .contains("no `prompt_logprobs`"));
        assert!(parse_logprobs(Protocol::Vllm, b"<html>502</html>", &[1, 2])
            .unwrap_err()
            .to_string()
            .starts_with("the response is not JSON"));
    }

    #[test]
    fn sglang_checks_ids_and_skips_the_null_first_entry() {
        assert_eq!(parse_logprobs(Protocol::Sglang, SGLANG.as_bytes(), &[151644, 872, 198]).unwrap(), vec![-3.25, -0.0001]);
        let list = format!("[{SGLANG}]");
        assert_eq!(parse_logprobs(Protocol::Sglang, list.as_bytes(), &[151644, 872, 198]).unwrap(), vec![-3.25, -0.0001]);
        let message = parse_logprobs(Protocol::Sglang, SGLANG.as_bytes(), &[151644, 872, 197]).unwrap_err().to_string();
        assert_eq!(message, "`input_token_logprobs[2]` is for token id 198, but token id 197 was sent");
        let message = parse_logprobs(Protocol::Sglang, SGLANG.as_bytes(), &[151644, 872, 198, 5]).unwrap_err().to_string();
        assert_eq!(message, "`meta_info.input_token_logprobs` has 3 entries for the 4 tokens sent");
        let nan = SGLANG.replace("-3.25", "null");
        assert!(parse_logprobs(Protocol::Sglang, nan.as_bytes(), &[151644, 872, 198])
            .unwrap_err()
            .to_string()
            .contains("has log-probability null"));
    }

    #[test]
    fn request_bodies_have_the_documented_shape() {
        let vllm = request_body(Protocol::Vllm, Some("qwq"), &[1, 2]);
        assert_eq!(
            vllm.to_string(),
            r#"{"model":"qwq","prompt":[1,2],"max_tokens":1,"temperature":0,"prompt_logprobs":0,"return_token_ids":true}"#
        );
        let sglang = request_body(Protocol::Sglang, None, &[1, 2]);
        assert_eq!(
            sglang.to_string(),
            r#"{"input_ids":[1,2],"return_logprob":true,"logprob_start_len":0,"sampling_params":{"max_new_tokens":0}}"#
        );
    }

    /// vLLM's answer to `prompt_logprobs: 0`: per position only the prompt
    /// token, with its rank.
    const VLLM_ZERO: &str = r#"{"id":"cmpl-1","object":"text_completion","model":"qwq",
      "choices":[{"index":0,"text":"!","logprobs":null,"finish_reason":"length","stop_reason":null,"token_ids":[0],
        "prompt_token_ids":[151644,872,198],
        "prompt_logprobs":[null,{"872":{"logprob":-3.25,"rank":4,"decoded_token":"user"}},{"198":{"logprob":-0.0001,"rank":1,"decoded_token":"\n"}}]}],
      "usage":{"prompt_tokens":3,"total_tokens":4,"completion_tokens":1}}"#;

    const IDS: [u32; 3] = [151644, 872, 198];

    #[test]
    fn vllm_answers_to_prompt_logprobs_zero_are_read() {
        assert_eq!(parse_logprobs(Protocol::Vllm, VLLM_ZERO.as_bytes(), &IDS).unwrap(), vec![-3.25, -0.0001]);
    }

    #[test]
    fn minus_9999_is_vllms_minus_infinity_and_no_score() {
        for stand_in in ["-9999.0", "-9999", "-10000.5", "-1e300"] {
            let body = VLLM_ZERO.replace("-3.25", stand_in);
            let error = parse_logprobs(Protocol::Vllm, body.as_bytes(), &IDS).unwrap_err();
            let ProtocolError::NoProbability { position, id, logprob } = error else { panic!("{stand_in}: {error}") };
            assert_eq!((position, id), (1, 872), "{stand_in}");
            assert_eq!(logprob, stand_in.parse::<f64>().unwrap());
            assert!(error.to_string().contains("vLLM writes -9999 for −∞"), "{error}");
        }
        // Just above the stand-in is a (very unlikely) score.
        let body = VLLM_ZERO.replace("-3.25", "-9998.5");
        assert_eq!(parse_logprobs(Protocol::Vllm, body.as_bytes(), &IDS).unwrap(), vec![-9998.5, -0.0001]);
        let sglang = SGLANG.replace("-0.0001", "-9999.0");
        let error = parse_logprobs(Protocol::Sglang, sglang.as_bytes(), &IDS).unwrap_err();
        assert!(matches!(error, ProtocolError::NoProbability { position: 2, id: 198, .. }), "{error}");
    }

    #[test]
    fn non_finite_log_probabilities_are_errors() {
        // Python's json writes NaN and ±Infinity bare, which is not JSON;
        // pydantic writes them as null.
        for (written, needle) in [
            ("NaN", "not JSON"),
            ("Infinity", "not JSON"),
            ("-Infinity", "not JSON"),
            ("null", "no numeric `logprob`"),
            ("\"-inf\"", "no numeric `logprob`"),
        ] {
            let body = VLLM_ZERO.replace("-0.0001", written);
            let error = parse_logprobs(Protocol::Vllm, body.as_bytes(), &IDS).unwrap_err();
            assert!(matches!(error, ProtocolError::Malformed(_)), "{written}: {error}");
            assert!(error.to_string().contains(needle), "{written}: {error}");
        }
        assert_eq!(check_logprob(3, 7, f64::NAN).unwrap_err().to_string(), "log-probability `NaN` of token 3 is not a finite number ≤ 0");
        assert_eq!(
            check_logprob(3, 7, f64::NEG_INFINITY).unwrap_err(),
            ProtocolError::NoProbability { position: 3, id: 7, logprob: f64::NEG_INFINITY }
        );
    }

    #[test]
    fn echoed_prompt_ids_are_checked_one_by_one() {
        let swapped = VLLM_ZERO.replace("[151644,872,198]", "[151644,198,872]");
        let message = parse_logprobs(Protocol::Vllm, swapped.as_bytes(), &IDS).unwrap_err().to_string();
        assert_eq!(message, "`prompt_token_ids[1]` is 198, but token id 872 was sent");
        let strings = VLLM_ZERO.replace("[151644,872,198]", r#"["151644","872","198"]"#);
        let message = parse_logprobs(Protocol::Vllm, strings.as_bytes(), &IDS).unwrap_err().to_string();
        assert_eq!(message, r#"`prompt_token_ids[0]` is "151644", but token id 151644 was sent"#);
        let not_a_list = VLLM_ZERO.replace("[151644,872,198]", "3");
        assert_eq!(
            parse_logprobs(Protocol::Vllm, not_a_list.as_bytes(), &IDS).unwrap_err().to_string(),
            "`prompt_token_ids` is not a list"
        );
        // Echoed ids right, but an entry for another token: still an error.
        let other_entry = VLLM_ZERO.replace(r#"{"198":{"#, r#"{"199":{"#);
        let message = parse_logprobs(Protocol::Vllm, other_entry.as_bytes(), &IDS).unwrap_err().to_string();
        assert_eq!(message, "`prompt_logprobs[2]` has no entry for the token id 198 that was sent (it has 199)");
        // A null echo (a server that ignores return_token_ids) falls back to the keys.
        let null_echo = VLLM_ZERO.replace("[151644,872,198]", "null");
        assert_eq!(parse_logprobs(Protocol::Vllm, null_echo.as_bytes(), &IDS).unwrap(), vec![-3.25, -0.0001]);
    }

    #[test]
    fn the_counted_prompt_tokens_must_match() {
        let body = VLLM_ZERO.replace(r#""prompt_tokens":3"#, r#""prompt_tokens":2"#);
        let message = parse_logprobs(Protocol::Vllm, body.as_bytes(), &IDS).unwrap_err().to_string();
        assert_eq!(message, "`usage.prompt_tokens` is 2 for the 3 tokens sent");
    }
}
