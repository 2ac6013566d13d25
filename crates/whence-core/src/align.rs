//! Token-to-action alignment and action log-probabilities (SPEC §3).
//!
//! A token counts toward every action with which it shares at least one
//! non-whitespace byte; a token made only of whitespace counts toward the
//! action that holds its first byte; a zero-width token (a BOS, say) counts
//! toward nothing. Each model has its own tokenization, so alignment runs once
//! per model against the same actions. An action's log-probability is the mean
//! of its tokens' log-probabilities; an action with no token is unscored.

use crate::segment::Action;
use crate::span::ByteSpan;

/// A response with its actions, ready to align any model's tokens to.
#[derive(Debug, Clone, Copy)]
pub struct AlignedResponse<'a> {
    text: &'a [u8],
    actions: &'a [Action],
}

/// One model's scores aligned to the actions of a response.
#[derive(Debug, Clone, Default)]
pub struct ActionScores {
    /// Per action: how many tokens count toward it.
    pub tokens: Vec<u32>,
    /// Per action: the mean token log-probability, `None` when unscored.
    pub logprob: Vec<Option<f64>>,
    /// Per action: how many tokens count toward it and toward no earlier
    /// action, so that a running sum gives the tokens written so far.
    pub first_tokens: Vec<u32>,
    /// Scratch: per-action sums while aligning.
    sums: Vec<f64>,
}

impl PartialEq for ActionScores {
    fn eq(&self, other: &Self) -> bool {
        // The scratch buffer is not part of the value.
        self.tokens == other.tokens && self.logprob == other.logprob && self.first_tokens == other.first_tokens
    }
}

impl ActionScores {
    /// The action's probability `exp(mean log p)`, `None` when unscored.
    pub fn probability(&self, action: usize) -> Option<f64> {
        self.logprob[action].map(f64::exp)
    }
}

/// Whether the char that starts at `text[at]` is whitespace (`at` on a char
/// boundary of valid UTF-8).
fn char_at_is_whitespace(text: &[u8], at: usize) -> bool {
    let width = match text[at] {
        b if b < 0x80 => return (b as char).is_whitespace(),
        b if b >= 0xf0 => 4,
        b if b >= 0xe0 => 3,
        _ => 2,
    };
    let end = (at + width).min(text.len());
    std::str::from_utf8(&text[at..end]).ok().and_then(|s| s.chars().next()).is_some_and(char::is_whitespace)
}

/// Whether `text[start..end]` holds a byte of a non-whitespace character.
/// Spans need not fall on char boundaries: a byte belongs to the character
/// whose encoding holds it.
fn has_non_blank(text: &[u8], start: usize, end: usize) -> bool {
    let mut i = start;
    while i < end {
        let byte = text[i];
        if byte < 0x80 {
            if !(byte as char).is_ascii_whitespace() && byte != 0x0b {
                // ASCII: whitespace is \t \n \x0b \x0c \r and space.
                return true;
            }
            i += 1;
            continue;
        }
        // The start of the character holding byte i.
        let mut char_start = i;
        while char_start > 0 && text[char_start] & 0xc0 == 0x80 {
            char_start -= 1;
        }
        if !char_at_is_whitespace(text, char_start) {
            return true;
        }
        // Skip to the next character.
        i += 1;
        while i < end && text[i] & 0xc0 == 0x80 {
            i += 1;
        }
    }
    false
}

impl<'a> AlignedResponse<'a> {
    /// Prepares `text` (the response) whose actions are `actions`.
    pub fn new(text: &'a str, actions: &'a [Action]) -> Self {
        AlignedResponse { text: text.as_bytes(), actions }
    }

    /// The index of the action holding byte `at`, starting the search at
    /// `hint` (tokens mostly come in order).
    fn holder(&self, at: usize, hint: usize) -> Option<usize> {
        let actions = self.actions;
        if let Some(action) = actions.get(hint) {
            if action.span.start <= at && at < action.span.end {
                return Some(hint);
            }
            if let Some(next) = actions.get(hint + 1) {
                if next.span.start <= at && at < next.span.end {
                    return Some(hint + 1);
                }
            }
        }
        let i = actions.partition_point(|a| a.span.end <= at);
        (i < actions.len() && actions[i].span.start <= at).then_some(i)
    }

    /// The actions (indices) a token counts toward, as a range.
    fn actions_of(&self, token: ByteSpan, hint: usize) -> std::ops::Range<usize> {
        let end = token.end.min(self.text.len());
        let start = token.start.min(end);
        if start == end {
            return 0..0;
        }
        let Some(first) = self.holder(start, hint) else { return 0..0 };
        let holder = &self.actions[first];
        if end <= holder.span.end {
            // Inside one action: it counts there whether blank or not.
            return first..first + 1;
        }
        if !has_non_blank(self.text, start, end) {
            // Whitespace only: the action that holds the first byte.
            return first..first + 1;
        }
        let mut from = None;
        let mut to = first;
        for (i, action) in self.actions.iter().enumerate().skip(first) {
            if action.span.start >= end {
                break;
            }
            let shared_start = start.max(action.span.start);
            let shared_end = end.min(action.span.end);
            if has_non_blank(self.text, shared_start, shared_end) {
                from.get_or_insert(i);
                to = i + 1;
            }
        }
        // Actions tile the text, so every action between the first and the
        // last shared one is shared too (each holds a non-blank byte).
        from.map_or(0..0, |from| from..to)
    }

    /// Aligns one model's tokens (`spans`, byte spans in the response, with
    /// their `logprobs`) to the actions.
    pub fn score(&self, spans: &[ByteSpan], logprobs: &[f64]) -> ActionScores {
        let mut scores = ActionScores::default();
        self.score_into(spans, logprobs, &mut scores);
        scores
    }

    /// Like [`AlignedResponse::score`], into `scores` (overwritten), so that a
    /// loop over many responses reuses its buffers.
    pub fn score_into(&self, spans: &[ByteSpan], logprobs: &[f64], scores: &mut ActionScores) {
        let n = self.actions.len();
        let ActionScores { tokens, logprob, first_tokens, sums } = scores;
        tokens.clear();
        tokens.resize(n, 0);
        first_tokens.clear();
        first_tokens.resize(n, 0);
        sums.clear();
        sums.resize(n, 0.0);
        let mut hint = 0;
        for (&span, &token_logprob) in spans.iter().zip(logprobs) {
            // The common case: a token inside the action of the previous one.
            if let Some(action) = self.actions.get(hint) {
                if action.span.start <= span.start && span.end <= action.span.end && span.start < span.end {
                    tokens[hint] += 1;
                    first_tokens[hint] += 1;
                    sums[hint] += token_logprob;
                    continue;
                }
            }
            let range = self.actions_of(span, hint);
            if range.is_empty() {
                continue;
            }
            hint = range.start;
            first_tokens[range.start] += 1;
            for action in range {
                tokens[action] += 1;
                sums[action] += token_logprob;
            }
        }
        logprob.clear();
        logprob.extend(tokens.iter().zip(sums.iter()).map(|(&count, &sum)| (count > 0).then(|| sum / f64::from(count))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::segment;

    fn spans(list: &[(usize, usize)]) -> Vec<ByteSpan> {
        list.iter().map(|&(s, e)| ByteSpan::new(s, e)).collect()
    }

    #[test]
    fn token_straddling_two_actions_counts_toward_both() {
        let text = "Hi. There";
        let actions = segment(text); // "Hi. " [0,4), "There" [4,9)
        let response = AlignedResponse::new(text, &actions);
        // ". T" straddles: shares '.' with the first and 'T' with the second.
        let scores = response.score(&spans(&[(0, 2), (2, 5), (5, 9)]), &[-1.0, -2.0, -3.0]);
        assert_eq!(scores.tokens, vec![2, 2]);
        assert_eq!(scores.logprob, vec![Some(-1.5), Some(-2.5)]);
        assert_eq!(scores.first_tokens, vec![2, 1]);
    }

    #[test]
    fn token_sharing_only_whitespace_with_an_action_does_not_count_there() {
        let text = "Hi. There";
        let actions = segment(text);
        let response = AlignedResponse::new(text, &actions);
        // " There" shares only the space with "Hi. ".
        let scores = response.score(&spans(&[(0, 3), (3, 9)]), &[-1.0, -2.0]);
        assert_eq!(scores.tokens, vec![1, 1]);
    }

    #[test]
    fn whitespace_token_counts_toward_the_holder_of_its_first_byte() {
        let text = "Hi.\n\nThere";
        let actions = segment(text); // "Hi.\n\n", "There"
        let response = AlignedResponse::new(text, &actions);
        let scores = response.score(&spans(&[(0, 3), (3, 5), (5, 10)]), &[-1.0, -3.0, -2.0]);
        assert_eq!(scores.tokens, vec![2, 1]);
        assert_eq!(scores.logprob, vec![Some(-2.0), Some(-2.0)]);
    }

    #[test]
    fn zero_width_tokens_count_toward_nothing_and_actions_may_be_unscored() {
        let text = "A. B";
        let actions = segment(text);
        let response = AlignedResponse::new(text, &actions);
        let scores = response.score(&spans(&[(0, 0), (0, 3)]), &[-9.0, -1.0]);
        assert_eq!(scores.tokens, vec![1, 0]);
        assert_eq!(scores.logprob, vec![Some(-1.0), None]);
        assert_eq!(scores.probability(1), None);
    }

    #[test]
    fn overlapping_multibyte_pieces_each_count() {
        // Byte-level BPE pieces of one character carry the whole character's span.
        let text = "é. Ok";
        let actions = segment(text);
        let response = AlignedResponse::new(text, &actions);
        let scores = response.score(&spans(&[(0, 2), (0, 2), (2, 4), (4, 6)]), &[-1.0, -1.0, -1.0, -4.0]);
        assert_eq!(scores.tokens, vec![3, 1]);
    }
}
