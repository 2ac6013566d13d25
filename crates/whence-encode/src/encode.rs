//! Turning a prompt and a response into the token ids a model scores, and
//! each scored token's byte span in the response.
//!
//! The prompt and the response are tokenized as one text, so the boundary is
//! tokenized as the model saw it (as lm-evaluation-harness does); a token that
//! straddles the boundary is scored, with its span clipped to the response
//! (SPEC §3 then counts it toward the actions it shares bytes with).

use tokenizers::Tokenizer;
use whence_core::ByteSpan;

/// A sequence ready to score.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// All token ids, prompt and response.
    pub ids: Vec<u32>,
    /// The first token scored: the first that ends after the prompt (never 0:
    /// the first token has no context to be predicted from).
    pub first_scored: usize,
    /// For each token from `first_scored` on, its byte span in the response.
    pub spans: Vec<ByteSpan>,
    /// How many bytes of the prompt's end were the response's start (e.g. a
    /// generation prompt ending in `<think>\n` and a response starting with
    /// it), and so were written once, as response.
    pub overlap: usize,
}

/// The longest start of `response` that `prompt` ends with, if it holds a
/// non-whitespace character (so a template's final newline is never taken
/// for the response's), bounded to 256 bytes.
pub fn overlap(prompt: &str, response: &str) -> usize {
    let longest = prompt.len().min(response.len()).min(256);
    (1..=longest)
        .rev()
        .filter(|&k| response.is_char_boundary(k))
        .find(|&k| prompt.ends_with(&response[..k]) && response[..k].chars().any(|c| !c.is_whitespace()))
        .unwrap_or(0)
}

/// Tokenizes `prompt + response` (writing an overlap once) and finds the
/// scored tokens' spans. `add_special_tokens` as in `tokenizer(text)`
/// (e.g. Llama's BOS); rendered chat templates emit their own, so false there.
pub fn encode(tokenizer: &Tokenizer, prompt: &str, response: &str, add_special_tokens: bool) -> Result<Encoded, String> {
    let overlap = overlap(prompt, response);
    let prompt_len = prompt.len() - overlap;
    let mut text = String::with_capacity(prompt_len + response.len());
    text.push_str(&prompt[..prompt_len]);
    text.push_str(response);
    let encoding = tokenizer.encode(text.as_str(), add_special_tokens).map_err(|e| format!("tokenizer failed: {e}"))?;
    let ids = encoding.get_ids().to_vec();
    let offsets = encoding.get_offsets();
    let first_scored = offsets.iter().position(|&(_, end)| end > prompt_len).unwrap_or(ids.len()).max(1);
    let spans = offsets[first_scored.min(offsets.len())..]
        .iter()
        .map(|&(start, end)| {
            if end <= start {
                // Zero-width (an appended special token): counts toward nothing.
                let at = start.saturating_sub(prompt_len).min(response.len());
                ByteSpan::new(at, at)
            } else {
                ByteSpan::new(start.saturating_sub(prompt_len), end - prompt_len)
            }
        })
        .collect();
    Ok(Encoded { ids, first_scored, spans, overlap })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_needs_a_non_blank_character() {
        assert_eq!(overlap("<|im_start|>assistant\n<think>\n", "<think>\nSo."), 8);
        assert_eq!(overlap("<|im_start|>assistant\n", "\nSo."), 0);
        assert_eq!(overlap("abc", "xyz"), 0);
        assert_eq!(overlap("", "x"), 0);
        assert_eq!(overlap("é", "é!"), 2);
    }
}
