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

/// A response with its actions and what alignment needs to know of its bytes.
#[derive(Debug, Clone)]
pub struct AlignedResponse<'a> {
    actions: &'a [Action],
    /// `non_blank_before[i]`: how many bytes of `text[..i]` belong to
    /// non-whitespace characters.
    non_blank_before: Vec<u32>,
}

/// One model's scores aligned to the actions of a response.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ActionScores {
    /// Per action: how many tokens count toward it.
    pub tokens: Vec<u32>,
    /// Per action: the mean token log-probability, `None` when unscored.
    pub logprob: Vec<Option<f64>>,
    /// Per action: how many tokens count toward it and toward no earlier
    /// action, so that a running sum gives the tokens written so far.
    pub first_tokens: Vec<u32>,
}

impl ActionScores {
    /// The action's probability `exp(mean log p)`, `None` when unscored.
    pub fn probability(&self, action: usize) -> Option<f64> {
        self.logprob[action].map(f64::exp)
    }
}

impl<'a> AlignedResponse<'a> {
    /// Prepares `text` (the response) whose actions are `actions`.
    pub fn new(text: &str, actions: &'a [Action]) -> Self {
        let mut non_blank_before = Vec::with_capacity(text.len() + 1);
        let mut count = 0u32;
        non_blank_before.push(0);
        for c in text.chars() {
            let width = c.len_utf8();
            let add = u32::from(!c.is_whitespace());
            for _ in 0..width {
                count += add;
                non_blank_before.push(count);
            }
        }
        AlignedResponse { actions, non_blank_before }
    }

    fn text_len(&self) -> usize {
        self.non_blank_before.len() - 1
    }

    fn has_non_blank(&self, start: usize, end: usize) -> bool {
        self.non_blank_before[end] > self.non_blank_before[start]
    }

    /// The actions (indices) a token counts toward, as a range.
    fn actions_of(&self, token: ByteSpan) -> std::ops::Range<usize> {
        let end = token.end.min(self.text_len());
        let start = token.start.min(end);
        if start == end || self.actions.is_empty() {
            return 0..0;
        }
        if !self.has_non_blank(start, end) {
            // Whitespace only: the action that holds the first byte.
            let holder = self.actions.partition_point(|a| a.span.start <= start);
            return match holder.checked_sub(1) {
                Some(i) if self.actions[i].span.end > start => i..i + 1,
                _ => 0..0,
            };
        }
        let first_candidate = self.actions.partition_point(|a| a.span.end <= start);
        let mut first = None;
        let mut last = first_candidate;
        for (i, action) in self.actions.iter().enumerate().skip(first_candidate) {
            if action.span.start >= end {
                break;
            }
            let shared_start = start.max(action.span.start);
            let shared_end = end.min(action.span.end);
            if self.has_non_blank(shared_start, shared_end) {
                first.get_or_insert(i);
                last = i + 1;
            }
        }
        match first {
            // Actions tile the text, so every action between the first and
            // the last shared one is shared too (each holds a non-blank byte).
            Some(first) => first..last,
            None => 0..0,
        }
    }

    /// Aligns one model's tokens (`spans`, byte spans in the response, with
    /// their `logprobs`) to the actions.
    pub fn score(&self, spans: &[ByteSpan], logprobs: &[f64]) -> ActionScores {
        let n = self.actions.len();
        let mut tokens = vec![0u32; n];
        let mut sums = vec![0f64; n];
        let mut first_tokens = vec![0u32; n];
        for (&span, &logprob) in spans.iter().zip(logprobs) {
            let range = self.actions_of(span);
            if range.is_empty() {
                continue;
            }
            first_tokens[range.start] += 1;
            for action in range {
                tokens[action] += 1;
                sums[action] += logprob;
            }
        }
        let logprob = tokens
            .iter()
            .zip(&sums)
            .map(|(&count, &sum)| (count > 0).then(|| sum / f64::from(count)))
            .collect();
        ActionScores { tokens, logprob, first_tokens }
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
