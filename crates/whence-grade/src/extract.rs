//! Finding the final answer in a response: `\boxed{…}`, "the answer is …",
//! the last number, and choice letters for multiple choice.

use std::sync::LazyLock;

use regex::Regex;

use crate::latex::split_braced;
use crate::normalize::normalize;
use crate::{AnswerKind, Extracted, ExtractionMethod, Fallback};

const THINK_END: &str = "</think>";
const BOX_COMMANDS: [&str; 2] = [r"\boxed", r"\fbox"];
/// How many boxes, from the last, may be tried before giving up (each
/// unclosed one costs a scan to the end of the text).
const MAX_BOXES_TRIED: usize = 16;
/// How many lines after "the answer is" may hold the answer itself.
const ANSWER_PHRASE_LINES: usize = 3;

/// "answer is" or "answer:" (any case), the phrase before a stated answer.
static ANSWER_PHRASE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)\banswer(?:\s+is\b|\s*:)").expect("valid regex"));

/// A number as models write it: `-12`, `1,234`, `3.5`, `.25`, `7/8`.
static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"-?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?(?:/[0-9]+)?|-?\.[0-9]+").expect("valid regex"));

/// "Answer: B", "the answer is (C)", "answer is **option D**", "answer is \text{(E)}".
static ANSWER_LETTER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i:\banswer)(?:\s+(?i:is))?\s*:?[\s*$({\[]*(?:\\text(?:bf)?\{)?[\s(]*(?:(?i:option|choice)\s*)?\(?([A-J])\b")
        .expect("valid regex")
});

/// A capital choice letter standing alone.
static STANDALONE_LETTER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b([A-J])\b").expect("valid regex"));

/// The part of a response that may hold the final answer: the text after the
/// last `</think>` when there is one, else the whole response.
pub(crate) fn answer_region(response: &str) -> &str {
    match response.rfind(THINK_END) {
        Some(at) => &response[at + THINK_END.len()..],
        None => response,
    }
}

pub(crate) fn extract(response: &str, kind: AnswerKind, fallback: Fallback) -> Option<Extracted> {
    let region = answer_region(response);
    match kind {
        AnswerKind::Math => extract_math(region, fallback),
        AnswerKind::MultipleChoice => extract_choice(region, fallback),
    }
}

fn extract_math(region: &str, fallback: Fallback) -> Option<Extracted> {
    if let Some(boxed) = last_boxed(region) {
        return Some(Extracted::new(boxed, ExtractionMethod::Boxed));
    }
    if fallback.allows_answer_phrase() {
        if let Some(stated) = last_stated_answer(region) {
            return Some(Extracted::new(stated, ExtractionMethod::AnswerIs));
        }
    }
    if fallback.allows_last_number() {
        if let Some(number) = NUMBER.find_iter(region).last() {
            return Some(Extracted::new(number.as_str(), ExtractionMethod::LastNumber));
        }
    }
    None
}

fn extract_choice(region: &str, fallback: Fallback) -> Option<Extracted> {
    if let Some(letter) = last_boxed(region).and_then(leading_choice_letter) {
        return Some(Extracted::new(letter.to_string(), ExtractionMethod::Boxed));
    }
    if fallback.allows_answer_phrase() {
        if let Some(letter) = last_capture(&ANSWER_LETTER, region) {
            return Some(Extracted::new(letter, ExtractionMethod::AnswerIs));
        }
    }
    if fallback.allows_last_number() {
        let final_line = region.lines().rev().find(|line| !line.trim().is_empty())?;
        if let Some(letter) = last_capture(&STANDALONE_LETTER, final_line) {
            return Some(Extracted::new(letter, ExtractionMethod::ChoiceLetter));
        }
    }
    None
}

fn last_capture<'a>(pattern: &Regex, text: &'a str) -> Option<&'a str> {
    pattern.captures_iter(text).last().and_then(|captures| captures.get(1)).map(|letter| letter.as_str())
}

/// The content of the last non-empty `\boxed{…}`, `\fbox{…}` or `\boxed …`
/// in `text`. Boxes with unbalanced braces are skipped (among the last
/// [`MAX_BOXES_TRIED`]).
pub(crate) fn last_boxed(text: &str) -> Option<&str> {
    let mut starts: Vec<(usize, &str)> = BOX_COMMANDS.iter().flat_map(|command| text.match_indices(command)).collect();
    starts.sort_unstable_by_key(|&(at, _)| std::cmp::Reverse(at));
    starts
        .into_iter()
        .take(MAX_BOXES_TRIED)
        .filter_map(|(at, command)| box_argument(&text[at + command.len()..]))
        .find(|content| !content.trim().is_empty())
}

/// The argument of a box command, given the text right after the command
/// name: a braced group, or (for `\boxed 5`) the next whitespace-free word.
fn box_argument(after_command: &str) -> Option<&str> {
    let rest = after_command.trim_start();
    if let Some(inside) = rest.strip_prefix('{') {
        return split_braced(inside).map(|(content, _)| content);
    }
    let separated_by_space = rest.len() < after_command.len();
    if !separated_by_space {
        return None; // `\boxedx` is another command, `\boxed` at the end is nothing
    }
    let end = rest.find(|c: char| c.is_whitespace() || c == '$').unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The answer stated after the last "the answer is" / "answer:" that has one.
fn last_stated_answer(text: &str) -> Option<&str> {
    let phrases: Vec<_> = ANSWER_PHRASE.find_iter(text).collect();
    phrases.iter().rev().find_map(|phrase| stated_answer(&text[phrase.end()..]))
}

/// The answer right after an answer phrase: the rest of its sentence, or the
/// next non-empty line when the phrase ends its line (as before a display
/// formula).
fn stated_answer(after_phrase: &str) -> Option<&str> {
    after_phrase
        .split('\n')
        .take(ANSWER_PHRASE_LINES)
        .map(|line| trim_answer_decoration(until_sentence_end(line)))
        .find(|candidate| !normalize(candidate).is_empty())
}

/// The text before the first full stop that ends a sentence (a `.` followed by
/// whitespace or the end), so that `3.5` survives.
fn until_sentence_end(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, &byte) in bytes.iter().enumerate() {
        let ends_sentence = byte == b'.' && bytes.get(i + 1).is_none_or(|next| next.is_ascii_whitespace());
        if ends_sentence {
            return &line[..i];
        }
    }
    line
}

fn trim_answer_decoration(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || c == '*' || c == ':')
}

/// The choice letter at the start of a box or answer, as in `B`, `(B)`,
/// `\text{(B)}`, `B) 42` or `B. 42`.
pub(crate) fn leading_choice_letter(text: &str) -> Option<char> {
    let plain = without_text_commands(text);
    let rest = plain.trim_start_matches(|c: char| c.is_whitespace() || "${([*".contains(c));
    let mut chars = rest.chars();
    let letter = chars.next().filter(char::is_ascii_uppercase).filter(|c| is_choice_letter(*c))?;
    let stands_alone = chars.next().is_none_or(|next| !next.is_alphanumeric());
    stands_alone.then_some(letter)
}

/// The choice letter a reference consists of, as in `B`, `(B)`, `\text{(B)}`.
pub(crate) fn reference_choice_letter(reference: &str) -> Option<char> {
    let plain = without_text_commands(reference);
    let core = plain.trim_matches(|c: char| c.is_whitespace() || "${}()[]*.".contains(c));
    let mut chars = core.chars();
    match (chars.next(), chars.next()) {
        (Some(letter), None) if is_choice_letter(letter) => Some(letter),
        _ => None,
    }
}

fn is_choice_letter(c: char) -> bool {
    ('A'..='J').contains(&c)
}

fn without_text_commands(text: &str) -> String {
    [r"\textbf", r"\text", r"\mathrm", r"\mathbf", r"\mbox"].iter().fold(text.to_string(), |acc, command| acc.replace(command, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn math(response: &str) -> Option<(String, &'static str)> {
        extract(response, AnswerKind::Math, Fallback::AnswerIsThenLastNumber).map(|found| (found.text, found.method.as_str()))
    }

    fn choice(response: &str) -> Option<(String, &'static str)> {
        extract(response, AnswerKind::MultipleChoice, Fallback::AnswerIsThenLastNumber).map(|found| (found.text, found.method.as_str()))
    }

    fn found(text: &str, method: &'static str) -> Option<(String, &'static str)> {
        Some((text.to_string(), method))
    }

    #[test]
    fn takes_the_last_boxed_answer() {
        assert_eq!(math(r"first \boxed{1} then \boxed{2}."), found("2", "boxed"));
        assert_eq!(math(r"so $\boxed{\frac{1}{2}}$"), found(r"\frac{1}{2}", "boxed"));
    }

    #[test]
    fn boxed_content_keeps_nested_braces() {
        assert_eq!(math(r"\boxed{\left( 3, \frac{\pi}{2} \right)}"), found(r"\left( 3, \frac{\pi}{2} \right)", "boxed"));
        assert_eq!(math(r"\boxed{\{1,2\}}"), found(r"\{1,2\}", "boxed"));
    }

    #[test]
    fn fbox_and_unbraced_boxed_count() {
        assert_eq!(math(r"\fbox{7}"), found("7", "boxed"));
        assert_eq!(math(r"answer $\boxed 5$."), found("5", "boxed"));
        assert_eq!(math(r"\boxed {9}"), found("9", "boxed"));
    }

    #[test]
    fn unbalanced_or_empty_boxes_are_skipped() {
        assert_eq!(math(r"\boxed{3} and later \boxed{4"), found("3", "boxed"));
        assert_eq!(math(r"\boxed{8} then \boxed{}"), found("8", "boxed"));
        assert_eq!(math(r"\boxedanswer 12"), found("12", "last-number"));
    }

    #[test]
    fn only_text_after_the_last_think_end_is_searched() {
        let response = r"<think>maybe \boxed{1}</think> so it is 2</think>The answer is 3.";
        assert_eq!(math(response), found("3", "answer-is"));
        assert_eq!(math(r"<think>\boxed{1}</think>"), None);
    }

    #[test]
    fn skythought_solution_blocks_are_searched() {
        let response = "<|begin_of_thought|>try 4<|end_of_thought|>\n<|begin_of_solution|>So \\boxed{5}<|end_of_solution|>";
        assert_eq!(math(response), found("5", "boxed"));
    }

    #[test]
    fn answer_is_fallback() {
        assert_eq!(math("Thus the answer is 3.5."), found("3.5", "answer-is"));
        assert_eq!(math("The final answer is $\\frac{3}{4}$. I hope it is correct."), found("$\\frac{3}{4}$", "answer-is"));
        assert_eq!(math("**Answer:** 42"), found("42", "answer-is"));
        assert_eq!(math("The answer is:\n\\[\n 17 \n\\]"), found("17", "answer-is"));
    }

    #[test]
    fn last_number_fallback() {
        assert_eq!(math("we get 12 apples, then 1,234 more"), found("1,234", "last-number"));
        assert_eq!(math("so x = -7."), found("-7", "last-number"));
        assert_eq!(math("a ratio of 3/4"), found("3/4", "last-number"));
        assert_eq!(math("about .25 left"), found(".25", "last-number"));
        assert_eq!(math("no digits here"), None);
    }

    #[test]
    fn fallback_policy_is_respected() {
        let text = "the answer is 5, or maybe 6";
        let with = |fallback| extract(text, AnswerKind::Math, fallback).map(|found| found.text);
        assert_eq!(with(Fallback::None), None);
        assert_eq!(with(Fallback::AnswerIs).as_deref(), Some("5, or maybe 6"));
        assert_eq!(extract("just 6", AnswerKind::Math, Fallback::AnswerIs), None);
        assert_eq!(extract("just 6", AnswerKind::Math, Fallback::AnswerIsThenLastNumber).map(|f| f.text).as_deref(), Some("6"));
    }

    #[test]
    fn choice_letters() {
        assert_eq!(choice(r"so \boxed{D}"), found("D", "boxed"));
        assert_eq!(choice(r"so \boxed{\text{(B)}}"), found("B", "boxed"));
        assert_eq!(choice("Answer: B"), found("B", "answer-is"));
        assert_eq!(choice("Therefore the answer is (C)."), found("C", "answer-is"));
        assert_eq!(choice("**Answer:** **D**"), found("D", "answer-is"));
        assert_eq!(choice("The correct answer is option E"), found("E", "answer-is"));
        assert_eq!(choice("Hmm.\nIt must be (A) here"), found("A", "choice-letter"));
        assert_eq!(choice("all of this\nI pick B, not C"), found("C", "choice-letter"));
        assert_eq!(choice("The answer is Because"), None);
        assert_eq!(choice("nothing here"), None);
    }

    #[test]
    fn choice_box_that_is_not_a_letter_falls_back() {
        assert_eq!(choice("\\boxed{42}\nAnswer: C"), found("C", "answer-is"));
    }

    #[test]
    fn leading_choice_letter_cases() {
        assert_eq!(leading_choice_letter("B"), Some('B'));
        assert_eq!(leading_choice_letter("(B) 42"), Some('B'));
        assert_eq!(leading_choice_letter(r"\textbf{(C)}"), Some('C'));
        assert_eq!(leading_choice_letter("Bob"), None);
        assert_eq!(leading_choice_letter("K"), None);
        assert_eq!(leading_choice_letter("b"), None);
        assert_eq!(leading_choice_letter(""), None);
    }

    #[test]
    fn reference_choice_letter_cases() {
        assert_eq!(reference_choice_letter("B"), Some('B'));
        assert_eq!(reference_choice_letter(" (J) "), Some('J'));
        assert_eq!(reference_choice_letter(r"\text{(C)}"), Some('C'));
        assert_eq!(reference_choice_letter("K"), None);
        assert_eq!(reference_choice_letter("AB"), None);
        assert_eq!(reference_choice_letter("5"), None);
    }
}
