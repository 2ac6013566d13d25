//! The text of tokens drawn after a context, decoded in that context
//! (SPEC §10): what decoding context + drawn ids adds to the decoding of
//! the context alone, never the drawn ids decoded on their own.
//!
//! Decoding ids on their own is wrong for SentencePiece-style tokenizers
//! (Llama 2, Mistral v0.x, Gemma): their decoder strips one leading space
//! of whatever it decodes, so the `▁He` that follows "ball." would read
//! "He" and the record would glue "ball.He". The stream here is the
//! `tokenizers` crate's own [`DecodeStream`] (what vLLM's and transformers'
//! incremental detokenizers do): it keeps a few ids of context, decodes them
//! with each new id and hands out only the text the new id adds. A token
//! that ends inside a UTF-8 character adds nothing until a later token
//! completes it; a character still incomplete at the end is left out of the
//! text, as vLLM's detokenizer leaves it out (its token still counts).

use tokenizers::{DecoderWrapper, ModelWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper, Tokenizer};

type Stream<'a> = tokenizers::DecodeStream<'a, ModelWrapper, NormalizerWrapper, PreTokenizerWrapper, PostProcessorWrapper, DecoderWrapper>;

/// How many ids of context a stream keeps for decoding by whole sequences
/// (see [`TextStream`]).
const CONTEXT_TAIL: usize = 16;

/// Decodes tokens one at a time in the context of the ids before them.
///
/// Decoding is not always local: a byte-fallback decoder turns a run of byte
/// pieces into text only when the whole run is valid UTF-8, so a later byte
/// can turn the `Ă` two bytes made into `���`, and the `tokenizers` stream
/// then refuses the token. From there on the stream decodes the whole
/// sequence (the last [`CONTEXT_TAIL`] ids of context and every token) at
/// each token, and text already handed out may change: [`TextStream::ends`]
/// is cut back to what still stands.
pub struct TextStream<'a> {
    tokenizer: &'a Tokenizer,
    skip_special_tokens: bool,
    /// `None` once decoding by whole sequences.
    stream: Option<Stream<'a>>,
    context_tail: Vec<u32>,
    ids: Vec<u32>,
    text: String,
    /// Per pushed token, the byte range of `text` it added.
    ends: Vec<usize>,
}

impl std::fmt::Debug for TextStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextStream").field("text", &self.text).field("tokens", &self.ends.len()).finish()
    }
}

impl<'a> TextStream<'a> {
    /// A stream whose text starts after `context` (a prompt's ids; empty
    /// for text from the start). Special tokens are decoded as text unless
    /// `skip_special_tokens`.
    pub fn new(tokenizer: &'a Tokenizer, context: &[u32], skip_special_tokens: bool) -> Result<Self, String> {
        let mut stream = Some(tokenizer.decode_stream(skip_special_tokens));
        for &id in context {
            if let Some(primed) = &mut stream {
                if primed.step(id).is_err() {
                    stream = None;
                }
            }
        }
        let context_tail = context[context.len().saturating_sub(CONTEXT_TAIL)..].to_vec();
        Ok(TextStream { tokenizer, skip_special_tokens, stream, context_tail, ids: Vec::new(), text: String::new(), ends: Vec::new() })
    }

    /// Adds the next token; returns the text it adds (empty while the text
    /// ends inside a character, or for a token that decodes to nothing).
    pub fn push(&mut self, id: u32) -> Result<&str, String> {
        self.ids.push(id);
        let stepped = match &mut self.stream {
            Some(stream) => stream.step(id).ok(),
            None => None,
        };
        match stepped {
            Some(piece) => self.text.push_str(piece.as_deref().unwrap_or("")),
            None => {
                self.stream = None;
                self.decode_whole()?;
            }
        }
        // From where the text stood before this token (cut back if the
        // text handed out changed).
        let start = self.ends.last().copied().unwrap_or(0);
        self.ends.push(self.text.len());
        Ok(&self.text[start..])
    }

    /// The text of context tail + tokens less that of the context tail, a
    /// trailing U+FFFD (an incomplete or invalid character) held back.
    fn decode_whole(&mut self) -> Result<(), String> {
        let decode = |ids: &[u32]| self.tokenizer.decode(ids, self.skip_special_tokens).map_err(|e| format!("cannot decode tokens: {e}"));
        let base = decode(&self.context_tail)?;
        let all = decode(&[&self.context_tail[..], &self.ids[..]].concat())?;
        let text = all[common_prefix(&all, &base)..].trim_end_matches('\u{fffd}');
        let kept = common_prefix(text, &self.text);
        for end in &mut self.ends {
            *end = (*end).min(kept);
        }
        self.text = text.to_string();
        Ok(())
    }

    /// Adds every token of `ids`.
    pub fn extend(&mut self, ids: &[u32]) -> Result<(), String> {
        for &id in ids {
            self.push(id)?;
        }
        Ok(())
    }

    /// The text the pushed tokens add after the context.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Per pushed token, the end of the text once it was pushed: token `i`
    /// added `text[ends[i - 1]..ends[i]]` (from 0 for the first).
    pub fn ends(&self) -> &[usize] {
        &self.ends
    }

    /// The stream's text.
    pub fn into_text(self) -> String {
        self.text
    }
}

/// The length of the longest start of `text` that `other` shares, cut back
/// to a character boundary of `text`.
fn common_prefix(text: &str, other: &str) -> usize {
    let mut n = text.bytes().zip(other.bytes()).take_while(|(a, b)| a == b).count();
    while !text.is_char_boundary(n) {
        n -= 1;
    }
    n
}

/// The text `ids` add after `context`, decoded in context (see the module).
pub fn text_after(tokenizer: &Tokenizer, context: &[u32], ids: &[u32], skip_special_tokens: bool) -> Result<String, String> {
    let mut stream = TextStream::new(tokenizer, context, skip_special_tokens)?;
    stream.extend(ids)?;
    Ok(stream.into_text())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn tokenizer(name: &str) -> Tokenizer {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/fixtures").join(name).join("tokenizer.json");
        Tokenizer::from_file(path).unwrap()
    }

    /// A SentencePiece-style tokenizer: `▁` for spaces, byte fallback, a
    /// decoder that strips one leading space (Llama 2's tokenizer.json).
    fn sentencepiece() -> Tokenizer {
        let json = serde_json::json!({
            "version": "1.0",
            "added_tokens": [{"id": 0, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
            "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
            "pre_tokenizer": null,
            "post_processor": null,
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                {"type": "ByteFallback"}, {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                "vocab": {"<s>": 0, "<0xE2>": 1, "<0x82>": 2, "<0xAC>": 3, "▁ball": 4, ".": 5, "▁He": 6, "▁ran": 7, "▁": 8},
                "merges": []}
        });
        Tokenizer::from_bytes(json.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_leading_space_is_kept_after_the_context() {
        let tokenizer = sentencepiece();
        // Alone, the decoder strips the space the drawn `▁He` carries.
        assert_eq!(tokenizer.decode(&[6, 7], false).unwrap(), "He ran");
        assert_eq!(text_after(&tokenizer, &[0, 4, 5], &[6, 7], false).unwrap(), " He ran");
        // From the start, the first space is the decoder's to strip.
        assert_eq!(text_after(&tokenizer, &[], &[4, 5, 6], false).unwrap(), "ball. He");
        // The whole decoding agrees: context text + text after = all text.
        let all = tokenizer.decode(&[0, 4, 5, 6, 7], false).unwrap();
        let context = tokenizer.decode(&[0, 4, 5], false).unwrap();
        assert_eq!(format!("{context}{}", text_after(&tokenizer, &[0, 4, 5], &[6, 7], false).unwrap()), all);
    }

    #[test]
    fn an_incomplete_character_waits_for_its_last_byte_and_is_left_out_at_the_end() {
        let tokenizer = sentencepiece();
        let mut stream = TextStream::new(&tokenizer, &[4, 5], false).unwrap();
        assert_eq!(stream.push(8).unwrap(), " ");
        assert_eq!(stream.push(1).unwrap(), "");
        assert_eq!(stream.push(2).unwrap(), "");
        assert_eq!(stream.push(3).unwrap(), "€");
        assert_eq!(stream.ends(), &[1, 1, 1, 4]);
        assert_eq!(stream.text(), " €");
        // A sample cut after two of the euro sign's three bytes.
        assert_eq!(text_after(&tokenizer, &[4, 5], &[6, 8, 1, 2], false).unwrap(), " He ");
    }

    #[test]
    fn a_byte_that_spoils_a_character_before_it_is_decoded_as_the_whole_run() {
        let tokenizer = sentencepiece();
        // A stray E2 after the euro sign's bytes makes the run invalid.
        let mut stream = TextStream::new(&tokenizer, &[4, 5], false).unwrap();
        assert_eq!(stream.push(1).unwrap(), "");
        assert_eq!(stream.push(2).unwrap(), "");
        assert_eq!(stream.push(3).unwrap(), "€");
        // E2 82 AC E2: the euro sign, then a lone E2 held back.
        stream.push(1).unwrap();
        assert_eq!(stream.text(), "€");
        // Then a word: the run E2 82 AC E2 is invalid as a whole, so the
        // decoder gives U+FFFD for each of its bytes, the euro sign's too
        // (as decoding the whole sequence does); the text handed out changes.
        stream.push(6).unwrap();
        assert_eq!(stream.text(), "\u{fffd}\u{fffd}\u{fffd}\u{fffd} He");
        assert_eq!(stream.text(), tokenizer.decode(&[4, 5, 1, 2, 3, 1, 6], false).unwrap().strip_prefix("ball.").unwrap());
        assert!(stream.ends().windows(2).all(|w| w[0] <= w[1]) && *stream.ends().last().unwrap() == stream.text().len());
    }

    #[test]
    fn byte_level_tokenizers_give_what_decoding_alone_gives() {
        let tokenizer = tokenizer("tiny-qwen2");
        let ids = tokenizer.encode("So the answer is 42, I think.", false).unwrap().get_ids().to_vec();
        let (context, drawn) = ids.split_at(3);
        let alone = tokenizer.decode(drawn, false).unwrap();
        assert_eq!(text_after(&tokenizer, context, drawn, false).unwrap(), alone);
    }
}
