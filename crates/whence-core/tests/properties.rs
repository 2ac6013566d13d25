//! Property tests of the invariants of SPEC §2 and §3 on random Unicode text
//! and random tokenizations.

use proptest::prelude::*;
use whence_core::segment::{segment, Action};
use whence_core::{AlignedResponse, ByteSpan, Segmenter};

/// Text built from pieces that exercise the rules: sentence ends, capitals,
/// whitespace runs, special tokens, multi-byte characters.
fn reasoning_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just(". ".to_string()),
        Just("? ".to_string()),
        Just("!\n\n".to_string()),
        Just("} ".to_string()),
        Just("] ".to_string()),
        Just(" ".to_string()),
        Just("\n".to_string()),
        Just("\u{3000}".to_string()),
        Just("\u{a0}\u{85}\u{2029}".to_string()),
        Just("\u{1c}\u{0b}\u{0c}\r\t".to_string()),
        Just(".\n\n".to_string()),
        Just("?".to_string()),
        Just("<think>".to_string()),
        Just("</think>".to_string()),
        Just("<|im_end|>".to_string()),
        Just("<|end▁of▁sentence|>".to_string()),
        Just("<|".to_string()),
        "[A-Z]",
        "[a-z]{1,6}",
        "[0-9.]{1,4}",
        "\\PC{1,3}",
        "[é中文😀–]",
    ];
    prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

fn check_tiling(text: &str, actions: &[Action]) -> Result<(), TestCaseError> {
    let mut position = 0;
    for action in actions {
        prop_assert_eq!(action.span.start, position, "actions must be contiguous");
        prop_assert!(action.span.end > action.span.start, "actions must be non-empty");
        prop_assert!(text.is_char_boundary(action.span.start) && text.is_char_boundary(action.span.end));
        let piece = &text[action.span.start..action.span.end];
        prop_assert!(piece.chars().any(|c| !c.is_whitespace()), "action {:?} is blank", piece);
        position = action.span.end;
    }
    if text.chars().any(|c| !c.is_whitespace()) {
        prop_assert_eq!(position, text.len(), "actions must cover the whole text");
    } else {
        prop_assert!(actions.is_empty());
    }
    let joined: String = actions.iter().map(|a| &text[a.span.start..a.span.end]).collect();
    if !actions.is_empty() {
        prop_assert_eq!(joined, text);
    }
    Ok(())
}

/// A random tokenization: cut points on char boundaries, plus some
/// zero-width tokens and some duplicated (overlapping) spans.
fn tokenization(text: &str, cuts: &[usize], extras: &[(usize, u8)]) -> Vec<ByteSpan> {
    let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
    let mut points: Vec<usize> = cuts.iter().map(|&c| boundaries[c % boundaries.len()]).collect();
    points.push(0);
    points.push(text.len());
    points.sort_unstable();
    points.dedup();
    let mut spans: Vec<ByteSpan> = points.windows(2).map(|w| ByteSpan::new(w[0], w[1])).collect();
    for &(at, kind) in extras {
        let at = boundaries[at % boundaries.len()];
        match kind % 3 {
            0 => spans.push(ByteSpan::new(at, at)),
            1 => {
                if let Some(span) = spans.iter().find(|s| s.start <= at && at < s.end).copied() {
                    spans.push(span);
                }
            }
            _ => {}
        }
    }
    spans
}

/// The rule of SPEC §3, written the slow and obvious way.
fn brute_force_actions(text: &str, actions: &[Action], token: ByteSpan) -> Vec<usize> {
    if token.is_empty() {
        return vec![];
    }
    let blank_byte = |i: usize| {
        let start = (0..=i).rev().find(|&s| text.is_char_boundary(s)).unwrap();
        text[start..].chars().next().unwrap().is_whitespace()
    };
    let token_is_blank = (token.start..token.end).all(blank_byte);
    if token_is_blank {
        return actions.iter().position(|a| a.span.start <= token.start && token.start < a.span.end).into_iter().collect();
    }
    actions
        .iter()
        .enumerate()
        .filter(|(_, a)| (token.start.max(a.span.start)..token.end.min(a.span.end)).any(|i| !blank_byte(i)))
        .map(|(i, _)| i)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn actions_tile_structured_text(text in reasoning_text()) {
        check_tiling(&text, &segment(&text))?;
    }

    #[test]
    fn the_default_pattern_fast_path_cuts_where_the_regex_does(text in reasoning_text()) {
        let fast = Segmenter::default();
        let regex = Segmenter::default().without_fast_path();
        prop_assert_eq!(fast.segment(&text), regex.segment(&text));
    }

    #[test]
    fn actions_tile_arbitrary_unicode(text in "\\PC{0,80}|[\\s\\S]{0,80}") {
        check_tiling(&text, &segment(&text))?;
    }

    #[test]
    fn alignment_matches_the_brute_force_rule(
        text in reasoning_text(),
        cuts in prop::collection::vec(any::<usize>(), 0..30),
        extras in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        seed in any::<u64>(),
    ) {
        let actions = segment(&text);
        let spans = tokenization(&text, &cuts, &extras);
        let logprobs: Vec<f64> = (0..spans.len()).map(|i| -(((seed >> (i % 60)) & 0xff) as f64) / 16.0).collect();
        let scores = AlignedResponse::new(&text, &actions).score(&spans, &logprobs);
        let mut expected_tokens = vec![0u32; actions.len()];
        let mut expected_sums = vec![0f64; actions.len()];
        for (span, logprob) in spans.iter().zip(&logprobs) {
            let counted = brute_force_actions(&text, &actions, *span);
            if !span.is_empty() && !actions.is_empty() {
                prop_assert!(!counted.is_empty(), "token {} counts toward no action", span);
            }
            for action in counted {
                expected_tokens[action] += 1;
                expected_sums[action] += logprob;
            }
        }
        prop_assert_eq!(&scores.tokens, &expected_tokens);
        for (i, mean) in scores.logprob.iter().enumerate() {
            match mean {
                None => prop_assert_eq!(expected_tokens[i], 0),
                Some(mean) => prop_assert!((mean - expected_sums[i] / f64::from(expected_tokens[i])).abs() < 1e-12),
            }
        }
        let distinct: u32 = scores.first_tokens.iter().sum();
        let counted = spans.iter().filter(|s| !s.is_empty()).count() as u32;
        prop_assert_eq!(distinct, if actions.is_empty() { 0 } else { counted });
    }
}
