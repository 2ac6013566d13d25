//! Segmentation and alignment: input `FLAGS TEXT\0TOKENS`. TEXT (invalid
//! UTF-8 replaced) is cut into actions (with a segmenter FLAGS chooses),
//! checked against the rules the segmenter documents (the default sentence
//! pattern is also cut by the regex engine and must give the same actions),
//! then TOKENS, 9 bytes a token (start u32 LE, end u32 LE, log-probability
//! −byte/16), are aligned to the actions as arbitrary byte spans: past the
//! end, reversed, `usize::MAX`, off char boundaries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use whence_core::segment::{DEFAULT_SENTENCE_PATTERN, DEFAULT_SPECIAL_PATTERN};
use whence_core::{AlignedResponse, ByteSpan, Segmenter, SegmenterConfig};
use whence_fuzz::{split_nul, text};

fn segmenter(flags: u8) -> Segmenter {
    static SEGMENTERS: std::sync::OnceLock<Vec<Segmenter>> = std::sync::OnceLock::new();
    let all = SEGMENTERS.get_or_init(|| {
        let config = |tokens: &[&str], patterns: &[&str], sentence: &str| SegmenterConfig {
            special_tokens: tokens.iter().map(|s| s.to_string()).collect(),
            special_patterns: patterns.iter().map(|s| s.to_string()).collect(),
            sentence_pattern: sentence.to_string(),
        };
        [
            config(&["<think>", "</think>"], &[DEFAULT_SPECIAL_PATTERN], DEFAULT_SENTENCE_PATTERN),
            config(&[], &[], r"[.?!]\s+"),
            config(&["<think>", "<th", "\n\n", "</think>"], &[DEFAULT_SPECIAL_PATTERN, r"\[\d+\]"], r"(\.)(\s)"),
            config(&[], &[r"\\boxed\{[^}]*\}"], DEFAULT_SENTENCE_PATTERN),
        ]
        .iter()
        .map(|c| Segmenter::new(c).expect("valid patterns"))
        .collect()
    });
    all[usize::from(flags) % all.len()].clone()
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let parts = split_nul(rest, 2);
    let response = text(parts[0]);
    let tokens = parts.get(1).copied().unwrap_or(b"");
    let chosen = segmenter(flags);
    let actions = chosen.segment(&response);

    // The documented rules: the actions tile the response (a blank one has
    // none, unless a special token of the configuration is blank itself).
    if response.chars().all(char::is_whitespace) && !actions.iter().any(|a| a.special) {
        assert!(actions.is_empty(), "a blank response has actions: {actions:?}");
    } else {
        let mut at = 0;
        for action in &actions {
            assert_eq!(action.span.start, at, "actions do not tile the response: {actions:?}");
            assert!(action.span.start < action.span.end, "an empty action: {actions:?}");
            let piece = action.span.slice(&response).expect("an action off char boundaries");
            assert!(action.special || !piece.chars().all(char::is_whitespace), "a blank action {piece:?}");
            at = action.span.end;
        }
        assert_eq!(at, response.len(), "the actions stop before the end: {actions:?}");
    }
    // The hand-written scan of the default sentence pattern is the regex's.
    if usize::from(flags) % 4 == 0 || usize::from(flags) % 4 == 3 {
        let by_regex = chosen.clone().without_fast_path().segment(&response);
        assert_eq!(actions, by_regex, "the fast path and the regex cut {response:?} differently");
    }

    let huge = flags & 0x80 != 0;
    let offset = |bytes: &[u8]| -> usize {
        let value = u32::from_le_bytes(bytes.try_into().unwrap());
        match value {
            u32::MAX => usize::MAX,
            v if huge => v as usize,
            v => v as usize % (response.len() + 3),
        }
    };
    let mut spans = Vec::new();
    let mut logprobs = Vec::new();
    for chunk in tokens.chunks_exact(9) {
        // Built directly, so that `start > end` reaches the aligner too.
        spans.push(ByteSpan { start: offset(&chunk[0..4]), end: offset(&chunk[4..8]) });
        logprobs.push(-f64::from(chunk[8]) / 16.0);
    }
    let aligned = AlignedResponse::new(&response, &actions);
    let scores = aligned.score(&spans, &logprobs);
    assert_eq!(scores.tokens.len(), actions.len());
    let first: u64 = scores.first_tokens.iter().map(|&c| u64::from(c)).sum();
    assert!(first <= spans.len() as u64, "{first} first tokens from {} tokens", spans.len());
    let lowest = logprobs.iter().copied().fold(0.0, f64::min);
    for (i, (&count, logprob)) in scores.tokens.iter().zip(&scores.logprob).enumerate() {
        assert!(scores.first_tokens[i] <= count);
        match logprob {
            None => assert_eq!(count, 0),
            Some(lp) => assert!(count > 0 && *lp <= 1e-12 && *lp >= lowest - 1e-9, "action {i}: mean {lp} outside [{lowest}, 0]"),
        }
    }
});
