//! Behaviour categories of actions (paper A.3.2, after SEAL): **execution**
//! (steps that advance the solution), **reflection** (verifying, checking or
//! questioning what was done) and **transition** (deliberately changing
//! direction or strategy).
//!
//! The paper classifies with SEAL; `whence` uses a keyword lexicon, so that
//! the report needs no model. The rule, in order:
//!
//! 1. a special token (`<think>`, `<|im_end|>`, …) has no behaviour and is
//!    left out of the statistics, like in the paper;
//! 2. the action's text is lower-cased and its first [`WINDOW_WORDS`] words
//!    are taken (words are runs of letters, digits, `'` and `-`);
//! 3. if a [`TRANSITION`] phrase occurs among them as whole words, the action
//!    is a transition;
//! 4. else if a [`REFLECTION`] phrase does, it is a reflection;
//! 5. else it is execution.
//!
//! Transitions are checked first because they often also contain reflection
//! words ("Wait, alternatively …").

/// How many leading words of an action are searched for lexicon phrases.
pub const WINDOW_WORDS: usize = 6;

/// Phrases that mark a transition: a change of approach.
pub const TRANSITION: &[&str] = &[
    "alternatively",
    "another approach",
    "another way",
    "another method",
    "another idea",
    "a different approach",
    "different approach",
    "instead",
    "let me try",
    "let's try",
    "let us try",
    "try another",
    "try a different",
    "on the other hand",
    "switch to",
    "what if",
];

/// Phrases that mark a reflection: checking or questioning the reasoning.
pub const REFLECTION: &[&str] = &[
    "wait",
    "hmm",
    "hold on",
    "let me check",
    "let's check",
    "let me verify",
    "let's verify",
    "let me double-check",
    "let me double check",
    "let me confirm",
    "let me recheck",
    "let me re-check",
    "let me make sure",
    "let me see if",
    "double-check",
    "double check",
    "check",
    "verify",
    "verifying",
    "confirm",
    "recheck",
    "re-examine",
    "reconsider",
    "is that right",
    "is this right",
    "is that correct",
    "is this correct",
    "that doesn't seem right",
    "that can't be right",
    "mistake",
    "actually",
    "but wait",
    "make sure",
    "sanity check",
];

/// A behaviour category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Behaviour {
    Execution,
    Reflection,
    Transition,
}

impl Behaviour {
    pub const ALL: [Behaviour; 3] = [Behaviour::Execution, Behaviour::Reflection, Behaviour::Transition];

    pub fn as_str(self) -> &'static str {
        match self {
            Behaviour::Execution => "execution",
            Behaviour::Reflection => "reflection",
            Behaviour::Transition => "transition",
        }
    }

    /// One letter, for the report's compact data.
    pub fn code(self) -> char {
        match self {
            Behaviour::Execution => 'e',
            Behaviour::Reflection => 'r',
            Behaviour::Transition => 'x',
        }
    }
}

fn words(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    lower
        .split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '’' || c == '-'))
        .filter(|w| !w.is_empty())
        .take(WINDOW_WORDS)
        .map(|w| w.replace('’', "'"))
        .collect()
}

fn contains_phrase(window: &[String], phrase: &str) -> bool {
    let parts: Vec<&str> = phrase.split(' ').collect();
    window.windows(parts.len()).any(|w| w.iter().zip(&parts).all(|(a, b)| a == b))
}

/// The behaviour of an action's text; `None` for a special token.
pub fn classify(text: &str, special: bool) -> Option<Behaviour> {
    if special {
        return None;
    }
    let window = words(text);
    if TRANSITION.iter().any(|p| contains_phrase(&window, p)) {
        Some(Behaviour::Transition)
    } else if REFLECTION.iter().any(|p| contains_phrase(&window, p)) {
        Some(Behaviour::Reflection)
    } else {
        Some(Behaviour::Execution)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexicon_classifies_leading_phrases() {
        assert_eq!(classify("\nWait, that is not right.", false), Some(Behaviour::Reflection));
        assert_eq!(classify("Let me check the sum again. ", false), Some(Behaviour::Reflection));
        assert_eq!(classify("Alternatively, use the formula. ", false), Some(Behaviour::Transition));
        assert_eq!(classify("Hmm, alternatively we factor. ", false), Some(Behaviour::Transition));
        assert_eq!(classify("So the area is 12. ", false), Some(Behaviour::Execution));
        assert_eq!(classify("Let me try another substitution. ", false), Some(Behaviour::Transition));
        assert_eq!(classify("<think>", true), None);
    }

    #[test]
    fn only_whole_words_in_the_window_count() {
        // "checkers" is not "check"; "wait" beyond the sixth word is ignored.
        assert_eq!(classify("Count the checkers on the board. ", false), Some(Behaviour::Execution));
        assert_eq!(classify("one two three four five six wait", false), Some(Behaviour::Execution));
        assert_eq!(classify("one two three four five wait", false), Some(Behaviour::Reflection));
        assert_eq!(classify("Let’s try x = 2. ", false), Some(Behaviour::Transition));
    }
}
