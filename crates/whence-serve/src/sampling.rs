//! Sampled completions: how tokens are drawn and where a choice stops
//! ([`Policy`], the server's side of [`Decoder::generate`]), what its text
//! is ([`finish`]), and log-probabilities in the OpenAI legacy shape
//! ([`Legacy`]).
//!
//! Choice `i` of a prompt draws from
//! `TokenSampler::new(params, choice_seed(seed, i))` and stops exactly as
//! `whence generate` in-process does (a stop token, or a stop string in the
//! text of every token so far), so that `whence generate` through `whence
//! serve` writes what it writes in-process with the same seed.
//!
//! [`Decoder::generate`]: whence_checkpoint::Decoder::generate

use serde_json::{json, Map, Value};
use whence_checkpoint::NextToken;
use whence_sample::{choice_seed, first_stop, SamplingParams, TokenSampler};

use whence_encode::TextStream;

use crate::Model;

/// The tokens that end a choice: the request's `stop_token_ids`, and the
/// model's EOS and end-of-turn tokens unless `ignore_eos`.
pub fn stop_set(request: &[u32], model_eos: &[u32], ignore_eos: bool) -> Vec<u32> {
    let mut ids = request.to_vec();
    if !ignore_eos {
        ids.extend_from_slice(model_eos);
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Draws each choice from its own seeded stream and ends it at a stop token
/// or stop string (found in its text decoded in the prompt's context, as
/// the choice's text is made); keeps the `top` most likely tokens of every
/// step when the request asked for `logprobs` ≥ 1.
pub struct Policy<'a> {
    samplers: Vec<TokenSampler>,
    stop_token_ids: &'a [u32],
    stop: &'a [String],
    /// Per choice, its text so far (only with stop strings).
    texts: Vec<Option<TextStream<'a>>>,
    top: usize,
    /// Per choice, per step: the most likely tokens and their log-probabilities.
    pub tops: Vec<Vec<Vec<(u32, f32)>>>,
}

impl<'a> Policy<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        params: SamplingParams,
        seed: u64,
        choices: usize,
        prompt: &[u32],
        stop_token_ids: &'a [u32],
        stop: &'a [String],
        model: &'a Model,
        skip_special_tokens: bool,
        top: usize,
    ) -> Self {
        // A prompt the stream cannot decode only means no stop string is
        // found; the choice's text reports the error.
        let text = || if stop.is_empty() { None } else { model.text_stream(prompt, skip_special_tokens).ok() };
        Policy {
            samplers: (0..choices).map(|i| TokenSampler::new(params, choice_seed(seed, i))).collect(),
            stop_token_ids,
            stop,
            texts: (0..choices).map(|_| text()).collect(),
            top,
            tops: vec![Vec::new(); choices],
        }
    }
}

impl NextToken for Policy<'_> {
    fn choose(&mut self, sequence: usize, logits: &[f32]) -> u32 {
        if self.top > 0 {
            self.tops[sequence].push(whence_checkpoint::ranks::top_tokens(logits, self.top));
        }
        self.samplers[sequence].sample(logits)
    }

    fn finished(&mut self, sequence: usize, tokens: &[u32]) -> bool {
        let Some(&token) = tokens.last() else { return false };
        if self.stop_token_ids.contains(&token) {
            return true;
        }
        let Some(Some(text)) = self.texts.get_mut(sequence) else { return false };
        text.push(token).is_ok() && first_stop(text.text(), self.stop).is_some()
    }
}

/// How a choice's text is made from its tokens.
#[derive(Debug, Clone, Copy)]
pub struct TextRules<'a> {
    pub stop_token_ids: &'a [u32],
    pub model_eos: &'a [u32],
    pub ignore_eos: bool,
    pub request_stop_token_ids: &'a [u32],
    pub stop: &'a [String],
    pub skip_special_tokens: bool,
    pub include_stop_str_in_output: bool,
}

/// A choice's text and why it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub text: String,
    pub finish_reason: &'static str,
    /// The stop string or stop token id that ended it (`null` for the
    /// model's own EOS, and when it ran out of tokens), as vLLM reports it.
    pub stop_reason: Value,
}

/// A detokenizer: the text token ids add after a context (a prompt's ids),
/// special tokens skipped or not ([`Model::text_after`]).
pub type Decode<'a> = dyn Fn(&[u32], &[u32], bool) -> Result<String, String> + 'a;

/// The text of a choice: its tokens without a final stop token, decoded in
/// the context of `prompt` (SPEC §10), cut before the first stop string
/// (with `include_stop_str_in_output`, both kept and cut after the stop
/// string), as vLLM makes it.
pub fn finish(decode: &Decode, prompt: &[u32], tokens: &[u32], stopped: bool, rules: &TextRules) -> Result<Finished, String> {
    let last = tokens.last().copied();
    let stop_token = last.filter(|t| stopped && rules.stop_token_ids.contains(t));
    let kept = match stop_token {
        Some(_) if !rules.include_stop_str_in_output => &tokens[..tokens.len() - 1],
        _ => tokens,
    };
    let full = decode(prompt, kept, rules.skip_special_tokens)?;
    let finish_reason = if stopped { "stop" } else { "length" };
    if let Some((at, stop)) = first_stop(&full, rules.stop) {
        let end = if rules.include_stop_str_in_output { at + stop.len() } else { at };
        return Ok(Finished { text: full[..end].to_string(), finish_reason, stop_reason: json!(stop) });
    }
    let stop_reason = match stop_token {
        // The model's EOS is vLLM's `eos_token_id`: no stop reason.
        Some(t) if !rules.ignore_eos && rules.model_eos.contains(&t) && !rules.request_stop_token_ids.contains(&t) => Value::Null,
        Some(t) => json!(t),
        None => Value::Null,
    };
    Ok(Finished { text: full, finish_reason, stop_reason })
}

/// A log-probability as JSON: −∞ (and NaN) as −9999, as vLLM writes them.
pub fn logprob_value(x: f32) -> Value {
    let x = f64::from(x);
    json!(if x.is_nan() { -9999.0 } else { x.max(-9999.0) })
}

/// Log-probabilities in the OpenAI legacy completions shape: `tokens`,
/// `token_logprobs`, `top_logprobs` (per token a map of token text to
/// log-probability: the token's own, then the most likely) and
/// `text_offset` (character offsets, each the previous plus the length of
/// the previous token's text).
#[derive(Debug, Default)]
pub struct Legacy {
    tokens: Vec<String>,
    token_logprobs: Vec<Value>,
    top_logprobs: Vec<Value>,
    text_offset: Vec<usize>,
    next_offset: usize,
}

impl Legacy {
    /// Adds a token with its text. `scored` is its log-probability and the
    /// most likely tokens there with their texts; `None` for the first
    /// prompt token (no context).
    pub fn push(&mut self, text: String, scored: Option<(f32, Vec<(String, f32)>)>) {
        self.text_offset.push(self.next_offset);
        self.next_offset += text.chars().count();
        match scored {
            None => {
                self.token_logprobs.push(Value::Null);
                self.top_logprobs.push(Value::Null);
            }
            Some((logprob, top)) => {
                self.token_logprobs.push(logprob_value(logprob));
                let mut map = Map::new();
                map.insert(text.clone(), logprob_value(logprob));
                for (other, x) in top {
                    map.entry(other).or_insert_with(|| logprob_value(x));
                }
                self.top_logprobs.push(Value::Object(map));
            }
        }
        self.tokens.push(text);
    }

    pub fn into_json(self) -> Value {
        json!({
            "tokens": self.tokens,
            "token_logprobs": self.token_logprobs,
            "top_logprobs": self.top_logprobs,
            "text_offset": self.text_offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy detokenizer: token t is the letter `a` + t; 9 is a special
    /// `<e>` (dropped when skipping special tokens).
    fn decode(_context: &[u32], ids: &[u32], skip: bool) -> Result<String, String> {
        Ok(ids
            .iter()
            .filter(|&&t| !(skip && t == 9))
            .map(|&t| if t == 9 { "<e>".to_string() } else { char::from(b'a' + t as u8).to_string() })
            .collect())
    }

    fn rules<'a>(stop: &'a [String], request: &'a [u32], include: bool, skip: bool) -> TextRules<'a> {
        TextRules {
            stop_token_ids: &[3, 9],
            model_eos: &[9],
            ignore_eos: false,
            request_stop_token_ids: request,
            stop,
            skip_special_tokens: skip,
            include_stop_str_in_output: include,
        }
    }

    #[test]
    fn stop_strings_earliest_first() {
        let stop = ["cd".to_string(), "b".to_string(), String::new()];
        assert_eq!(first_stop("abcd", &stop), Some((1, "b")));
        assert_eq!(first_stop("xyz", &stop), None);
        let same = ["bc".to_string(), "b".to_string()];
        assert_eq!(first_stop("abc", &same), Some((1, "bc")));
        assert_eq!(stop_set(&[5, 3], &[9, 3], false), vec![3, 5, 9]);
        assert_eq!(stop_set(&[5], &[9], true), vec![5]);
    }

    #[test]
    fn text_without_the_stop_token_and_before_the_stop_string() {
        let none: [String; 0] = [];
        // Ended by the model's EOS: dropped from the text, no stop reason.
        let done = finish(&decode, &[], &[0, 1, 9], true, &rules(&none, &[], false, false)).unwrap();
        assert_eq!(done, Finished { text: "ab".into(), finish_reason: "stop", stop_reason: Value::Null });
        // Kept (as text) with include_stop_str_in_output, unless special tokens are skipped.
        assert_eq!(finish(&decode, &[], &[0, 1, 9], true, &rules(&none, &[], true, false)).unwrap().text, "ab<e>");
        assert_eq!(finish(&decode, &[], &[0, 1, 9], true, &rules(&none, &[], true, true)).unwrap().text, "ab");
        // A requested stop token is the stop reason.
        let done = finish(&decode, &[], &[0, 3], true, &rules(&none, &[3], false, false)).unwrap();
        assert_eq!((done.text.as_str(), done.stop_reason), ("a", json!(3)));
        // A stop string: cut before it, or after it when included.
        let stop = ["bc".to_string()];
        let done = finish(&decode, &[], &[0, 1, 2], true, &rules(&stop, &[], false, false)).unwrap();
        assert_eq!((done.text.as_str(), done.stop_reason), ("a", json!("bc")));
        assert_eq!(finish(&decode, &[], &[0, 1, 2], true, &rules(&stop, &[], true, false)).unwrap().text, "abc");
        // Out of tokens: everything, finish `length`; a last token 3 not
        // drawn as a stop stays.
        let done = finish(&decode, &[], &[0, 3], false, &rules(&none, &[3], false, false)).unwrap();
        assert_eq!(done, Finished { text: "ad".into(), finish_reason: "length", stop_reason: Value::Null });
    }

    #[test]
    fn legacy_logprobs_shape() {
        let text = |t: u32| ["A", "bc", "d"][t as usize].to_string();
        let mut legacy = Legacy::default();
        legacy.push(text(0), None);
        legacy.push(text(1), Some((-0.5, vec![(text(2), -0.25), (text(1), -0.75)])));
        legacy.push(text(2), Some((f32::NEG_INFINITY, vec![])));
        let value = legacy.into_json();
        assert_eq!(
            value,
            json!({
                "tokens": ["A", "bc", "d"],
                "token_logprobs": [null, -0.5, -9999.0],
                "top_logprobs": [null, {"bc": -0.5, "d": -0.25}, {"d": -9999.0}],
                "text_offset": [0, 1, 3],
            })
        );
        // The token's own entry comes first.
        assert_eq!(value["top_logprobs"][1].as_object().unwrap().keys().next().unwrap(), "bc");
    }
}
