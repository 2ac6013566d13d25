//! From a sample's tokens to a response: its text, each kept token's byte
//! span in it, and whether the tokenization is the tokenizer's own.
//!
//! The response is the text the drawn tokens add to the prompt, decoded in
//! the prompt's context (SPEC §10; [`whence_encode::TextStream`]), special
//! tokens included (so that re-scoring sees them), without a final stop
//! token and cut before the first stop string (neither is part of the
//! response, as in vLLM); a trailing incomplete UTF-8 character is left out.
//!
//! **Canonical or not.** A model samples token by token, so the sequence it
//! drew is not always the one the tokenizer makes of the same text (a BPE
//! vocabulary can spell `abc` as `ab`+`c` or `a`+`bc`). `whence score`
//! re-tokenizes the response, so it scores the tokenizer's spelling. A
//! response is *canonical* when tokenizing the rendered prompt + response
//! (as scoring does) gives exactly the prompt's tokens followed by the kept
//! sampled tokens; then its spans are the scorer's own and `--logprobs`
//! holds what `whence score` computes. Otherwise each token spans the text
//! it added in the stream, and `--logprobs` holds
//! the log-probabilities of the tokens the model actually drew, which the
//! method aligns to sentences by bytes like any scorer's; re-scoring would
//! give the probabilities of another spelling of the same text.

use whence_core::{ByteSpan, Prompt, Record};
use whence_encode::Encoder;

use crate::{FinishReason, Sample};

/// A sample as a response.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub text: String,
    /// The tokens that make the response (the stop token and anything after
    /// a stop string dropped).
    pub tokens: Vec<u32>,
    /// Per kept token, its byte span in `text`.
    pub spans: Vec<ByteSpan>,
    /// Per kept token, its log-probability.
    pub logprobs: Vec<f32>,
    /// Whether the tokenizer's own tokenization of prompt + text is the
    /// prompt's tokens followed by `tokens`.
    pub canonical: bool,
}

/// Where the first stop string starts in `text`, if any.
pub fn first_stop(text: &str, stop: &[String]) -> Option<usize> {
    whence_sample::first_stop(text, stop).map(|(at, _)| at)
}

/// Makes `sample` a response to `question` (whose rendered prompt encoded to
/// `prompt_ids`).
pub fn response_of(
    encoder: &Encoder,
    question: &Record,
    prompt_ids: &[u32],
    sample: &Sample,
    stop: &[String],
    stop_token_ids: &[u32],
) -> Result<Response, String> {
    let mut tokens = sample.tokens.clone();
    let mut logprobs = sample.logprobs.clone();
    if sample.finish_reason == FinishReason::Stop && tokens.last().is_some_and(|t| stop_token_ids.contains(t)) {
        tokens.pop();
        logprobs.pop();
    }
    // The text the tokens add after the prompt, decoded in its context
    // (SPEC §10): a SentencePiece decoder strips the leading space of ids
    // decoded alone. A trailing incomplete character is left out.
    let mut stream = encoder.text_stream(prompt_ids)?;
    stream.extend(&tokens)?;
    let full = stream.text();
    let cut = first_stop(full, stop).unwrap_or(full.len());
    let text = full[..cut].to_string();

    // The tokenizer's own view of prompt + response, as `whence score` sees it.
    let as_scored = Record { response: text.clone(), ..question.clone() };
    let encoded = encoder.encode(&as_scored).map_err(|e| e.to_string())?;
    let prefix_matches = encoded.ids.len() >= prompt_ids.len() && encoded.ids[..prompt_ids.len()] == *prompt_ids;

    let is_canonical = |tokens: &[u32]| {
        prefix_matches
            && encoded.first_scored == prompt_ids.len()
            && encoded.ids[prompt_ids.len()..] == *tokens
            && encoded.spans.len() == tokens.len()
    };
    if cut == full.len() && is_canonical(&tokens) {
        return Ok(Response { text, tokens, spans: encoded.spans, logprobs, canonical: true });
    }
    // Spans from the stream: each token spans the text it added (a token
    // that ends inside a character, or has no text, such as an id past the
    // tokenizer's vocabulary, gets an empty span and still counts); tokens
    // that start at or after a stop string are dropped.
    let mut spans = Vec::with_capacity(tokens.len());
    let mut start = 0;
    for (i, &end) in stream.ends().iter().enumerate() {
        if cut < full.len() && start >= cut && i > 0 {
            break;
        }
        spans.push(ByteSpan::new(start.min(cut), end.min(cut)));
        start = end;
    }
    tokens.truncate(spans.len());
    logprobs.truncate(spans.len());
    let canonical = is_canonical(&tokens);
    if canonical {
        spans = encoded.spans;
    }
    Ok(Response { text, tokens, spans, logprobs, canonical })
}

/// A question's prompt as the output record writes it: `prompt` (text) or
/// `messages` (OpenAI chat turns).
pub fn prompt_fields(prompt: &Prompt) -> (&'static str, serde_json::Value) {
    match prompt {
        Prompt::Text(text) => ("prompt", serde_json::Value::String(text.clone())),
        Prompt::Chat(turns) => (
            "messages",
            serde_json::Value::Array(turns.iter().map(|t| serde_json::json!({"role": t.role, "content": t.content})).collect()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoder() -> Encoder {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/fixtures/tiny-qwen2");
        Encoder::open(&dir, &whence_encode::TemplateMode::Auto).unwrap()
    }

    fn question() -> Record {
        Record {
            id: "q".into(),
            question_id: "q".into(),
            prompt: Prompt::Text("1 + 1?".into()),
            response: String::new(),
            correct: None,
            answer: None,
            source: whence_core::SourceLocation { file: "q.jsonl".into(), line: Some(1), row: None },
        }
    }

    #[test]
    fn tokens_without_text_keep_their_place() {
        // tiny-qwen2's model has 1,024 rows for a 1,006-token tokenizer: a
        // drawn padding id has no text, and must still count and keep its
        // log-probability (a regression: trailing ones were dropped).
        let encoder = encoder();
        let (_, prompt) = encoder.prompt_ids(&question()).unwrap();
        let mut tokens = encoder.tokenizer().encode("Two.", false).unwrap().get_ids().to_vec();
        tokens.extend([1010, 1011]);
        let sample = Sample { logprobs: vec![-1.0; tokens.len()], tokens: tokens.clone(), finish_reason: FinishReason::Length };
        let response = response_of(&encoder, &question(), &prompt, &sample, &[], &[1002]).unwrap();
        assert_eq!(response.text, "Two.");
        assert_eq!(response.tokens, tokens);
        assert_eq!(response.logprobs.len(), tokens.len());
        assert_eq!(response.spans.last(), Some(&ByteSpan::new(4, 4)));
        assert!(!response.canonical);
        // A stop string drops what follows it.
        let mut tokens = encoder.tokenizer().encode("Two. Three.", false).unwrap().get_ids().to_vec();
        tokens.push(1010);
        let sample = Sample { logprobs: vec![-1.0; tokens.len()], tokens, finish_reason: FinishReason::Stop };
        let response = response_of(&encoder, &question(), &prompt, &sample, &[" Three".into()], &[1002]).unwrap();
        assert_eq!(response.text, "Two.");
        assert!(response.spans.iter().all(|s| s.end <= 4));
    }

    #[test]
    fn first_stop_finds_the_earliest_stop_string() {
        assert_eq!(first_stop("abc STOP def END", &["END".into(), "STOP".into()]), Some(4));
        assert_eq!(first_stop("abc", &["".into()]), None);
    }
}
