//! From a response's token ids to each token's byte span in the response,
//! for `file:` scorer lines that give `token_ids` instead of `offsets`.
//!
//! The ids are the response's tokens only (as a generation engine returns
//! them, e.g. vLLM's `output.token_ids`), never the prompt's. They are decoded
//! in order with the tokenizer's own streaming decoder
//! ([`tokenizers::DecodeStream`], the one inference servers use), and each
//! decoded piece must be the response's next bytes.
//!
//! **Tokens that split a character.** A byte-level BPE token may hold part
//! of a UTF-8 character (e.g. `é`, two bytes, as two one-byte tokens). Such
//! a token decodes to nothing on its own; the run of tokens that together
//! decode to whole characters is a *group*. Each token of a group spans its
//! own bytes widened to whole characters, so a token holding part of a
//! character spans all of it (as Hugging Face's offsets do, and so as the
//! checkpoint and server scorers see it). When a group's tokens do not tell
//! their bytes (neither byte-level nor `<0xNN>` byte-fallback pieces), each
//! gets the whole group's span. Either way no token's log-probability is
//! dropped (an empty span would leave it out of every action's mean) and
//! none is merged into another (which would change the token count the
//! means divide by): a token counts toward every action its characters
//! belong to, as a token that straddles an action boundary does.
//!
//! **Special tokens the response does not spell out** (an added token marked
//! special, e.g. the `<|im_end|>` that vLLM returns among a response's ids
//! but leaves out of its text) get an empty span where they stand, like the
//! `[0, 0]` of a BOS in an offsets line: they count toward no action.

use std::collections::HashSet;

use tokenizers::Tokenizer;
use whence_core::ByteSpan;

/// A tokenizer that turns a response's token ids into byte spans.
pub struct IdDecoder {
    tokenizer: Tokenizer,
    /// Where the tokenizer came from, for messages (a directory).
    source: String,
    /// `sha256:…` (or any digest) of what decides the decoding.
    digest: String,
    special: HashSet<u32>,
    /// Every added token (special or not): their pieces are not bytes.
    added: HashSet<u32>,
}

impl std::fmt::Debug for IdDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdDecoder").field("source", &self.source).field("digest", &self.digest).finish()
    }
}

/// Why a response's ids do not give its byte spans.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpanError {
    #[error("id {id} is not in the tokenizer's vocabulary")]
    UnknownId { index: usize, id: u32 },
    /// The decoded text and the response first differ at byte `offset`.
    #[error("the ids do not decode to the response: first difference at byte {offset}: response {expected}, decoded ids {found}")]
    Mismatch {
        /// The first token of the group whose text differs.
        index: usize,
        offset: usize,
        /// A quoted excerpt of the response from the character holding
        /// `offset`, or `ends here`.
        expected: String,
        /// A quoted excerpt of the decoded text from there, or `end here`.
        found: String,
    },
    #[error("the tokenizer cannot decode them: {message}")]
    Tokenizer { index: usize, message: String },
}

impl SpanError {
    /// The index of the token at fault.
    pub fn index(&self) -> usize {
        match self {
            SpanError::UnknownId { index, .. } | SpanError::Mismatch { index, .. } | SpanError::Tokenizer { index, .. } => *index,
        }
    }
}

/// Up to 24 bytes of `text` from the character holding byte `at`, quoted.
fn excerpt(text: &str, at: usize) -> String {
    let mut start = at.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (start + 24).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let more = if end < text.len() { "…" } else { "" };
    format!("{:?}{more}", &text[start..end])
}

impl IdDecoder {
    /// `source` names where the tokenizer came from (its directory) and
    /// `digest` what decides its decoding (e.g. the sha256 of its
    /// tokenizer.json), for the scorer's fingerprint.
    pub fn new(tokenizer: Tokenizer, source: impl Into<String>, digest: impl Into<String>) -> Self {
        let added_tokens = tokenizer.get_added_tokens_decoder();
        let special = added_tokens.iter().filter(|(_, token)| token.special).map(|(&id, _)| id).collect();
        let added = added_tokens.keys().copied().collect();
        IdDecoder { tokenizer, source: source.into(), digest: digest.into(), special, added }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Each id's byte span in `response` (see the module's notes for tokens
    /// that split a character and for special tokens).
    pub fn spans(&self, ids: &[u32], response: &str) -> Result<Vec<ByteSpan>, SpanError> {
        let mut spans = Vec::with_capacity(ids.len());
        let mut position = 0usize;
        let mut group_start = 0usize;
        // The decoder skips unknown ids silently: check them all first.
        if let Some((index, &id)) = ids.iter().enumerate().find(|&(_, &id)| self.tokenizer.id_to_token(id).is_none()) {
            return Err(SpanError::UnknownId { index, id });
        }
        let mut stream = self.tokenizer.decode_stream(false);
        for (index, &id) in ids.iter().enumerate() {
            let piece = stream.step(id).map_err(|e| SpanError::Tokenizer { index, message: e.to_string() })?;
            if let Some(piece) = piece {
                self.place(&piece, &ids[group_start..=index], group_start, response, &mut position, &mut spans)?;
                group_start = index + 1;
            }
        }
        if group_start < ids.len() {
            // The last tokens end inside a character (or in U+FFFD): what
            // they decode to on their own is compared, replacement and all.
            let rest = self
                .tokenizer
                .decode(&ids[group_start..], false)
                .map_err(|e| SpanError::Tokenizer { index: group_start, message: e.to_string() })?;
            self.place(&rest, &ids[group_start..], group_start, response, &mut position, &mut spans)?;
        }
        if position < response.len() {
            return Err(SpanError::Mismatch {
                index: ids.len(),
                offset: position,
                expected: excerpt(response, position),
                found: "end here".into(),
            });
        }
        Ok(spans)
    }

    /// Gives the group `group` (starting at id index `first`), which decodes
    /// to `piece`, its span at `position`.
    fn place(
        &self,
        piece: &str,
        group: &[u32],
        first: usize,
        response: &str,
        position: &mut usize,
        spans: &mut Vec<ByteSpan>,
    ) -> Result<(), SpanError> {
        let rest = &response.as_bytes()[*position..];
        if rest.starts_with(piece.as_bytes()) {
            let lengths = self.byte_lengths(group).filter(|lengths| lengths.iter().sum::<usize>() == piece.len());
            match lengths {
                Some(lengths) if group.len() > 1 => {
                    let mut start = *position;
                    for length in lengths {
                        let end = start + length;
                        spans.push(ByteSpan::new(floor_char_boundary(response, start), ceil_char_boundary(response, end)));
                        start = end;
                    }
                }
                _ => spans.extend(std::iter::repeat_n(ByteSpan::new(*position, *position + piece.len()), group.len())),
            }
            *position += piece.len();
            return Ok(());
        }
        if let [id] = group {
            if self.special.contains(id) {
                spans.push(ByteSpan::new(*position, *position));
                return Ok(());
            }
        }
        let common = rest.iter().zip(piece.as_bytes()).take_while(|(a, b)| a == b).count();
        let offset = *position + common;
        let expected = if offset >= response.len() { "ends here".to_string() } else { excerpt(response, offset) };
        // `piece` and the response agree up to `common`, so the character
        // holding the differing byte starts at the same place in both.
        let found = excerpt(piece, common);
        Err(SpanError::Mismatch { index: first, offset, expected, found })
    }
}

impl IdDecoder {
    /// How many bytes of text each token of a group holds, when its pieces
    /// tell: a byte-fallback piece `<0xNN>` one, a byte-level piece one per
    /// character; `None` for added tokens or unknown ids.
    fn byte_lengths(&self, group: &[u32]) -> Option<Vec<usize>> {
        group
            .iter()
            .map(|id| {
                if self.added.contains(id) {
                    return None;
                }
                let piece = self.tokenizer.id_to_token(*id)?;
                let byte_fallback = piece.len() == 6
                    && piece.starts_with("<0x")
                    && piece.ends_with('>')
                    && piece[3..5].bytes().all(|b| b.is_ascii_hexdigit());
                Some(if byte_fallback { 1 } else { piece.chars().count() })
            })
            .collect()
    }
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn ceil_char_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Tokenizer {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/fixtures").join(name).join("tokenizer.json");
        Tokenizer::from_file(&path).unwrap()
    }

    fn decoder(name: &str) -> IdDecoder {
        IdDecoder::new(fixture(name), name, "test")
    }

    /// The ids `tokenizer(text)` gives, without special tokens.
    fn ids(decoder: &IdDecoder, text: &str) -> Vec<u32> {
        decoder.tokenizer.encode(text, false).unwrap().get_ids().to_vec()
    }

    #[test]
    fn ascii_tokens_get_their_own_bytes() {
        for name in ["tiny-qwen2", "tiny-llama3", "tiny-mistral"] {
            let decoder = decoder(name);
            let response = "So the answer is 42.\n\nCheck: 6 * 7 = 42.";
            let ids = ids(&decoder, response);
            let spans = decoder.spans(&ids, response).unwrap();
            assert_eq!(spans.len(), ids.len());
            // Contiguous, non-empty, covering the response, and each token's
            // span is what that token decodes to.
            assert_eq!(spans.first().unwrap().start, 0);
            assert_eq!(spans.last().unwrap().end, response.len());
            for (i, pair) in spans.windows(2).enumerate() {
                assert_eq!(pair[0].end, pair[1].start, "{name}: token {i}");
            }
            for (span, &id) in spans.iter().zip(&ids) {
                let alone = decoder.tokenizer.decode(&[id], false).unwrap();
                assert_eq!(&response[span.start..span.end], alone, "{name}");
            }
        }
    }

    #[test]
    fn tokens_that_split_a_character_share_its_span() {
        let decoder = decoder("tiny-qwen2");
        let response = "Café 🙂 done";
        let ids = ids(&decoder, response);
        let spans = decoder.spans(&ids, response).unwrap();
        assert_eq!(spans.len(), ids.len());
        let emoji = response.find('🙂').unwrap();
        let on_emoji: Vec<&ByteSpan> = spans.iter().filter(|s| s.start <= emoji && emoji < s.end).collect();
        // The emoji's four bytes come from several tokens, each spanning
        // the whole emoji (never an empty span, never part of a character).
        assert!(on_emoji.len() >= 2, "{spans:?}");
        assert!(on_emoji.iter().all(|s| s.end >= emoji + 4), "{on_emoji:?}");
        for span in &spans {
            assert!(!span.is_empty());
            assert!(response.is_char_boundary(span.start) && response.is_char_boundary(span.end));
        }
        // Every byte is covered, in order.
        assert_eq!((spans[0].start, spans.last().unwrap().end), (0, response.len()));
        assert!(spans.windows(2).all(|w| w[1].start <= w[0].end && w[0].end <= w[1].end), "{spans:?}");
        // As the tokenizer's own offsets have them.
        let encoding = decoder.tokenizer.encode(response, false).unwrap();
        let offsets: Vec<ByteSpan> = encoding.get_offsets().iter().map(|&(s, e)| ByteSpan::new(s, e)).collect();
        assert_eq!(spans, offsets);
    }

    #[test]
    fn unspelled_special_tokens_get_an_empty_span() {
        let decoder = decoder("tiny-qwen2");
        let response = "Done.";
        let mut ids = ids(&decoder, response);
        let im_end = decoder.tokenizer.token_to_id("<|im_end|>").unwrap();
        ids.push(im_end);
        let spans = decoder.spans(&ids, response).unwrap();
        assert_eq!(*spans.last().unwrap(), ByteSpan::new(5, 5));
        // Spelled out in the response, it takes its bytes.
        let spelled = "Done.<|im_end|>";
        let spans = decoder.spans(&ids, spelled).unwrap();
        assert_eq!(*spans.last().unwrap(), ByteSpan::new(5, spelled.len()));
    }

    #[test]
    fn a_different_text_names_the_first_differing_byte() {
        let decoder = decoder("tiny-qwen2");
        let ids = ids(&decoder, "The cat sat.");
        let error = decoder.spans(&ids, "The cot sat.").unwrap_err();
        let SpanError::Mismatch { offset, ref expected, ref found, .. } = error else { panic!("{error:?}") };
        assert_eq!(offset, 5);
        assert_eq!(expected, "\"ot sat.\"");
        assert!(found.starts_with("\"at"), "{found}");
        // Ids that stop short, or run past the end.
        let error = decoder.spans(&ids[..2], "The cat sat.").unwrap_err();
        assert!(error.to_string().contains(", decoded ids end here"), "{error}");
        let error = decoder.spans(&ids, "The cat").unwrap_err();
        assert!(error.to_string().contains("at byte 7: response ends here, decoded ids \" s"), "{error}");
        // A character that differs in its second byte: é (C3 A9) vs è (C3 A8).
        let ids = self::ids(&decoder, "café");
        let error = decoder.spans(&ids, "cafè").unwrap_err();
        let SpanError::Mismatch { offset, expected, found, .. } = error else { panic!() };
        assert_eq!((offset, expected.as_str(), found.as_str()), (4, "\"è\"", "\"é\""));
    }

    #[test]
    fn ids_outside_the_vocabulary_are_named() {
        let decoder = decoder("tiny-qwen2");
        let error = decoder.spans(&[1, 5_000_000], "x").unwrap_err();
        assert_eq!(error, SpanError::UnknownId { index: 1, id: 5_000_000 });
    }
}
