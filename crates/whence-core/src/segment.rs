//! Cutting a response into actions (SPEC §2).
//!
//! Rules, in order:
//! 1. special tokens (by default `<think>`, `</think>` and anything matching
//!    `<\|[^|<>]*\|>`) are actions of their own;
//! 2. the remaining text is split with the sentence pattern
//!    `([.?!}\]])([\s\n]+)([A-Z])`: the cut falls at the start of the pattern's
//!    last capture group (before the capital letter), so the punctuation and the
//!    whitespace end the earlier sentence;
//! 3. a piece made only of whitespace, which would be an action of its own, is
//!    attached to the preceding action (to the following one at the very start).
//!
//! Only whitespace that would stand alone is moved: text that follows a special
//! token keeps its leading whitespace (`"<think>\nFirst."` gives `"<think>"` and
//! `"\nFirst."`), while `"</think>\n\n<|im_end|>"` gives `"</think>\n\n"` and
//! `"<|im_end|>"`.
//!
//! The result tiles the response: actions are non-empty, sorted, do not
//! overlap, concatenate to the response byte for byte, each holds a
//! non-whitespace character, and every boundary is a char boundary.

use regex::Regex;
use serde::Serialize;

use crate::span::ByteSpan;

/// The special tokens that are actions of their own, by default.
pub const DEFAULT_SPECIAL_TOKENS: &[&str] = &["<think>", "</think>"];
/// The pattern of special tokens of the `<|...|>` family (`<|im_end|>`, `<|end▁of▁sentence|>`).
pub const DEFAULT_SPECIAL_PATTERN: &str = r"<\|[^|<>]*\|>";
/// The paper's sentence boundary pattern.
pub const DEFAULT_SENTENCE_PATTERN: &str = r"([.?!}\]])([\s\n]+)([A-Z])";

/// One action: a span of the response, and whether it is a special token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Action {
    pub span: ByteSpan,
    pub special: bool,
}

/// What makes a special token and where sentences end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmenterConfig {
    /// Literal special tokens.
    pub special_tokens: Vec<String>,
    /// Regular expressions for special tokens.
    pub special_patterns: Vec<String>,
    /// The sentence boundary pattern; the cut is at the start of its last
    /// capture group, or at the end of the match when it has no group.
    pub sentence_pattern: String,
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        SegmenterConfig {
            special_tokens: DEFAULT_SPECIAL_TOKENS.iter().map(|s| s.to_string()).collect(),
            special_patterns: vec![DEFAULT_SPECIAL_PATTERN.to_string()],
            sentence_pattern: DEFAULT_SENTENCE_PATTERN.to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("invalid {what} pattern `{pattern}`: {source}")]
    InvalidPattern {
        what: &'static str,
        pattern: String,
        #[source]
        source: Box<regex::Error>,
    },
    #[error("{what} pattern `{pattern}` matches the empty string; it must match at least one character")]
    MatchesEmpty { what: &'static str, pattern: String },
}

/// Cuts responses into actions; build once, use for every response.
#[derive(Debug, Clone)]
pub struct Segmenter {
    special: Option<Regex>,
    sentence: Regex,
    cut_group: Option<usize>,
    /// The default sentence pattern is scanned by hand (same cuts, several
    /// times faster than the regex engine with capture groups).
    default_sentences: bool,
}

impl Default for Segmenter {
    fn default() -> Self {
        Segmenter::new(&SegmenterConfig::default()).expect("the default patterns are valid")
    }
}

fn compile(what: &'static str, pattern: &str) -> Result<Regex, SegmentError> {
    let regex = Regex::new(pattern).map_err(|source| SegmentError::InvalidPattern {
        what,
        pattern: pattern.to_string(),
        source: Box::new(source),
    })?;
    if regex.is_match("") {
        return Err(SegmentError::MatchesEmpty { what, pattern: pattern.to_string() });
    }
    Ok(regex)
}

impl Segmenter {
    pub fn new(config: &SegmenterConfig) -> Result<Self, SegmentError> {
        // Validate each pattern on its own so that an error names it.
        for pattern in &config.special_patterns {
            compile("special-token", pattern)?;
        }
        let alternatives: Vec<String> = config
            .special_tokens
            .iter()
            .filter(|token| !token.is_empty())
            .map(|token| regex::escape(token))
            .chain(config.special_patterns.iter().cloned())
            .map(|alternative| format!("(?:{alternative})"))
            .collect();
        let special = if alternatives.is_empty() { None } else { Some(compile("special-token", &alternatives.join("|"))?) };
        let sentence = compile("sentence", &config.sentence_pattern)?;
        let groups = sentence.captures_len();
        let cut_group = (groups > 1).then_some(groups - 1);
        let default_sentences = config.sentence_pattern == DEFAULT_SENTENCE_PATTERN;
        Ok(Segmenter { special, sentence, cut_group, default_sentences })
    }

    /// The same segmenter with the regex path for the default sentence
    /// pattern too (for tests comparing the two).
    #[doc(hidden)]
    pub fn without_fast_path(mut self) -> Self {
        self.default_sentences = false;
        self
    }

    /// The actions of `text`, in order; empty when `text` holds no
    /// non-whitespace character.
    pub fn segment(&self, text: &str) -> Vec<Action> {
        let mut actions = Vec::new();
        self.segment_into(text, &mut actions);
        actions
    }

    /// Like [`Segmenter::segment`], into `actions` (cleared first), so that a
    /// loop over many responses reuses one buffer.
    pub fn segment_into(&self, text: &str, actions: &mut Vec<Action>) {
        actions.clear();
        let mut pieces = Pieces { text, actions, pending_start: None };
        let mut position = 0;
        if let Some(special) = &self.special {
            for found in special.find_iter(text) {
                if found.start() > position {
                    self.split_sentences(text, position, found.start(), &mut pieces);
                }
                pieces.push(found.start(), found.end(), true);
                position = found.end();
            }
        }
        if position < text.len() {
            self.split_sentences(text, position, text.len(), &mut pieces);
        }
    }

    fn split_sentences(&self, text: &str, start: usize, end: usize, pieces: &mut Pieces<'_, '_>) {
        let part = &text[start..end];
        let mut cut = start;
        let mut cut_at = |at: usize, pieces: &mut Pieces<'_, '_>| {
            if at > cut {
                pieces.push(cut, at, false);
                cut = at;
            }
        };
        if self.default_sentences {
            for at in DefaultSentenceCuts::new(part.as_bytes()) {
                cut_at(start + at, pieces);
            }
        } else if let Some(group) = self.cut_group {
            // Find matches with the fast engine; resolve the capture group
            // only where a match is (captures_iter is several times slower).
            let mut locations = self.sentence.capture_locations();
            for found in self.sentence.find_iter(part) {
                let at = match self.sentence.captures_read_at(&mut locations, part, found.start()) {
                    Some(_) => locations.get(group).map_or(found.end(), |(s, _)| s),
                    None => found.end(),
                };
                cut_at(start + at, pieces);
            }
        } else {
            for found in self.sentence.find_iter(part) {
                cut_at(start + found.end(), pieces);
            }
        }
        cut_at(end, pieces);
    }
}

/// Collects pieces into actions, attaching a piece made only of whitespace
/// to the preceding action (to the following one at the very start).
struct Pieces<'t, 'a> {
    text: &'t str,
    actions: &'a mut Vec<Action>,
    pending_start: Option<usize>,
}

impl Pieces<'_, '_> {
    fn push(&mut self, start: usize, end: usize, special: bool) {
        if !special && is_blank(&self.text[start..end]) {
            match self.actions.last_mut() {
                Some(previous) => previous.span.end = end,
                None => {
                    self.pending_start.get_or_insert(start);
                }
            }
            return;
        }
        let start = self.pending_start.take().unwrap_or(start);
        self.actions.push(Action { span: ByteSpan::new(start, end), special });
    }
}

/// The cuts of `([.?!}\]])([\s\n]+)([A-Z])` (before the capital), found
/// as the regex finds them: leftmost first, non-overlapping. The whitespace
/// run is greedy and must be followed by the capital, so a match exists at a
/// sentence-ending character exactly when the maximal run of whitespace
/// characters after it is non-empty and followed by an ASCII capital.
struct DefaultSentenceCuts<'a> {
    text: &'a [u8],
    position: usize,
}

impl<'a> DefaultSentenceCuts<'a> {
    fn new(text: &'a [u8]) -> Self {
        DefaultSentenceCuts { text, position: 0 }
    }

    /// The length of the whitespace character at `at`, if there is one.
    fn whitespace_at(&self, at: usize) -> Option<usize> {
        let byte = *self.text.get(at)?;
        if byte < 0x80 {
            return matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r').then_some(1);
        }
        let width = match byte {
            b if b >= 0xf0 => 4,
            b if b >= 0xe0 => 3,
            _ => 2,
        };
        let end = (at + width).min(self.text.len());
        let c = std::str::from_utf8(&self.text[at..end]).ok()?.chars().next()?;
        c.is_whitespace().then_some(width)
    }
}

impl Iterator for DefaultSentenceCuts<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.position < self.text.len() {
            let at = self.position;
            self.position += 1;
            if !matches!(self.text[at], b'.' | b'?' | b'!' | b'}' | b']') {
                continue;
            }
            let mut end = at + 1;
            while let Some(width) = self.whitespace_at(end) {
                end += width;
            }
            if end > at + 1 && self.text.get(end).is_some_and(u8::is_ascii_uppercase) {
                self.position = end + 1;
                return Some(end);
            }
        }
        None
    }
}

fn is_blank(text: &str) -> bool {
    text.chars().all(char::is_whitespace)
}

/// Convenience: the actions of `text` with the default rules (the segmenter
/// is built once per process).
pub fn segment(text: &str) -> Vec<Action> {
    static DEFAULT: std::sync::OnceLock<Segmenter> = std::sync::OnceLock::new();
    DEFAULT.get_or_init(Segmenter::default).segment(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str) -> Vec<&str> {
        segment(text).iter().map(|a| &text[a.span.start..a.span.end]).collect()
    }

    #[test]
    fn splits_sentences_after_the_whitespace_run() {
        assert_eq!(texts("One. Two? Three!\n\nFour"), vec!["One. ", "Two? ", "Three!\n\n", "Four"]);
    }

    #[test]
    fn closing_braces_and_brackets_end_sentences() {
        assert_eq!(texts(r"So $\frac{1}{2}$ is \boxed{5} Then [x] Next"), vec![r"So $\frac{1}{2}$ is \boxed{5} ", "Then [x] ", "Next"]);
    }

    #[test]
    fn no_split_without_capital_or_whitespace() {
        assert_eq!(texts("a. b. 3.14 is pi.Then"), vec!["a. b. 3.14 is pi.Then"]);
    }

    #[test]
    fn special_tokens_are_actions_of_their_own() {
        let text = "<think>\nHello world. This is it.</think>\n\nAnswer: 5.<|im_end|>";
        assert_eq!(texts(text), vec!["<think>", "\nHello world. ", "This is it.", "</think>", "\n\nAnswer: 5.", "<|im_end|>"]);
        let specials: Vec<bool> = segment(text).iter().map(|a| a.special).collect();
        assert_eq!(specials, vec![true, false, false, true, false, true]);
    }

    #[test]
    fn lone_whitespace_attaches_to_the_preceding_action() {
        assert_eq!(texts("Done.</think>\n\n<|im_end|>\n"), vec!["Done.", "</think>\n\n", "<|im_end|>\n"]);
    }

    #[test]
    fn leading_lone_whitespace_attaches_to_the_following_action() {
        assert_eq!(texts("\n \n<think>Go."), vec!["\n \n<think>", "Go."]);
        assert_eq!(texts("  Hello. World"), vec!["  Hello. ", "World"]);
    }

    #[test]
    fn whitespace_only_and_empty_text_give_no_actions() {
        assert!(segment("").is_empty());
        assert!(segment(" \n\t\u{3000}").is_empty());
    }

    #[test]
    fn unicode_specials_of_the_pipe_family() {
        let text = "Fin.<｜end▁of▁sentence｜><|end▁of▁sentence|>";
        // Full-width bars are not `|`: only the ASCII form is special.
        assert_eq!(texts(text), vec!["Fin.<｜end▁of▁sentence｜>", "<|end▁of▁sentence|>"]);
    }

    #[test]
    fn configurable_tokens_and_pattern() {
        let config = SegmenterConfig {
            special_tokens: vec!["<|begin_of_thought|>".into()],
            special_patterns: vec![],
            sentence_pattern: r"\n\n".into(),
        };
        let segmenter = Segmenter::new(&config).unwrap();
        let text = "<|begin_of_thought|>a. B\n\nc<think>";
        let got: Vec<&str> = segmenter.segment(text).iter().map(|a| &text[a.span.start..a.span.end]).collect();
        assert_eq!(got, vec!["<|begin_of_thought|>", "a. B\n\n", "c<think>"]);
    }

    #[test]
    fn bad_patterns_are_errors_naming_the_pattern() {
        let config = SegmenterConfig { sentence_pattern: "(".into(), ..Default::default() };
        let message = Segmenter::new(&config).unwrap_err().to_string();
        assert!(message.contains("`(`"), "{message}");
        let config = SegmenterConfig { special_patterns: vec!["x*".into()], ..Default::default() };
        let message = Segmenter::new(&config).unwrap_err().to_string();
        assert!(message.contains("empty string"), "{message}");
    }
}
