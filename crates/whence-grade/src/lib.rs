//! Answer extraction and correctness grading for math and multiple-choice
//! responses.
//!
//! A record may carry a reference `answer`; this crate decides whether a
//! model's response reaches it. [`grade`] does the whole job: it tells the
//! [`AnswerKind`] from the reference, extracts the final answer from the
//! response ([`extract_answer`]) and compares it with the reference
//! ([`answers_match`] for math, the choice letter for multiple choice).
//!
//! ```
//! use whence_grade::{grade, Fallback};
//!
//! let graded = grade(r"… so the area is $\boxed{\dfrac{1}{2}}$.", "0.5", Fallback::default());
//! assert!(graded.correct);
//! assert_eq!(graded.extracted.unwrap().text, r"\dfrac{1}{2}");
//! ```
//!
//! # Where the answer is looked for
//!
//! Only the text after the last `</think>` is searched when the response
//! contains `</think>`; otherwise the whole response is (SkyThought-style
//! `<|begin_of_solution|>…<|end_of_solution|>` blocks come last, so the last
//! answer found is the solution's).
//!
//! For math references, in this order:
//!
//! 1. **boxed**: the content of the last `\boxed{…}` or `\fbox{…}` (braces
//!    balanced; empty or unclosed boxes are skipped), or `\boxed 5` without
//!    braces;
//! 2. **answer-is** (unless [`Fallback::None`]): the rest of the sentence after
//!    the last "answer is" or "answer:" (any case), or the next line when the
//!    phrase ends its line;
//! 3. **last-number** (only with [`Fallback::AnswerIsThenLastNumber`], the
//!    default): the last number in the text, such as `-3`, `1,234`, `2.5`,
//!    `.5` or `7/8`.
//!
//! For multiple-choice references (a single letter A–J, optionally written
//! `(B)` or `\text{(B)}`), in this order:
//!
//! 1. **boxed**: a choice letter leading the last box (`\boxed{D}`,
//!    `\boxed{(D) 42}`);
//! 2. **answer-is**: the letter after the last "Answer: B", "the answer is
//!    (C)", "answer is option D";
//! 3. **choice-letter** (with the default fallback): the last standalone
//!    capital letter A–J of the final non-empty line.
//!
//! # Normalisation
//!
//! [`normalize`] rewrites an answer into a canonical string. It applies these
//! rules in order, and again until the text stops changing (so normalising is
//! idempotent):
//!
//! - `\$`, `\%` and `%` are dropped (`50\%` equals `50`);
//! - `$…$`, `\(…\)`, `\[…\]` wrappers and an enclosing `\boxed{…}` go;
//! - Unicode symbols become commands (`π` → `\pi`, `√` → `\sqrt`, `−` → `-`);
//! - `\left`, `\right` and the `\big` family go;
//! - `\dfrac`, `\tfrac`, `\cfrac` become `\frac`; `\leq`/`\geq` become
//!   `\le`/`\ge`; `\displaystyle` goes;
//! - spacing commands `\!`, `\,`, `\;`, `\:`, `\ `, `\quad`, `~` become spaces;
//! - degree marks `^\circ`, `^{\circ}`, `°`, `\degree` go;
//! - `\text{…}`, `\mbox{…}`, `\mathrm{…}` and friends: an answer made only of
//!   text keeps the words (`\text{Evelyn}`); inside math, `and`/`or` become
//!   commas and unit words go with any power after them
//!   (`864 \mbox{ inches}^2` → `864`);
//! - common unit words written without `\text` go (`27 miles` → `27`);
//! - whitespace goes (a single space stays between a command and a letter:
//!   `\cot x`);
//! - trailing `.`, `,`, `;` and `\\` go;
//! - a leading single-variable assignment goes: `x=5`, `k = 3`, `x \in [-2,7]`;
//! - shorthand arguments get braces: `\frac43` → `\frac{4}{3}`,
//!   `\frac{270}7` → `\frac{270}{7}`, `\sqrt2` → `\sqrt{2}`;
//! - single-character scripts lose braces: `4210_{5}` → `4210_5`;
//! - thousands separators go from whole numbers: `10,\!080` → `10080`;
//! - plain decimals take one spelling: `70.0` → `70`, `.35` → `0.35`.
//!
//! # Equivalence
//!
//! Two normalised answers match when they are equal, or both are words equal
//! up to case, or, by structure:
//!
//! - tuples, points and intervals compare element-wise and keep their
//!   brackets (`(3,4]` ≠ `(3,4)`);
//! - comma lists, `\{…\}` sets and `a \pm b` compare as unordered sets
//!   (`1,-2` = `-2, 1`; `1\pm\sqrt{19}` = `1+\sqrt{19}, 1-\sqrt{19}`);
//! - unions (`\cup`) compare their parts in any order;
//! - matrices compare entry-wise (a one-column matrix equals the tuple of
//!   its entries);
//! - otherwise, when both parse as arithmetic (numbers, `\frac`, `\sqrt`, `^`,
//!   `\pi`, implicit multiplication, mixed numbers such as `1\frac{4}{5}`),
//!   they match when their values agree within a relative 1e-6
//!   (`0.5` = `\frac{1}{2}` = `1/2`; `\sqrt2` = `\sqrt{2}`). Expressions with
//!   single-letter variables match when they agree at several sample points
//!   (`2k+2` = `2(k+1)`). Two different integers never match, however large.
//!
//! There is no computer-algebra engine: `\frac{\sqrt{3}}{3}` equals
//! `\frac{1}{\sqrt{3}}` numerically, but an answer this crate cannot evaluate
//! only matches a reference with the same canonical string.
//!
//! Every function is total: any input, however malformed, gives an answer
//! and never panics.

mod compare;
mod expr;
mod extract;
mod latex;
mod normalize;

use std::fmt;
use std::str::FromStr;

pub use normalize::normalize;

/// How to find an answer when the response has no `\boxed{}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Fallback {
    /// Only boxed answers count.
    None,
    /// Also "the answer is X" / "Answer: X".
    AnswerIs,
    /// Also "the answer is X", then the last number (for multiple choice:
    /// the last standalone letter of the final line).
    #[default]
    AnswerIsThenLastNumber,
}

impl Fallback {
    /// The names [`Fallback::from_str`] accepts, in declaration order.
    pub const NAMES: &'static [&'static str] = &["none", "answer-is", "answer-is-then-last-number"];

    /// The name of this policy, as accepted by [`Fallback::from_str`].
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::None => "none",
            Fallback::AnswerIs => "answer-is",
            Fallback::AnswerIsThenLastNumber => "answer-is-then-last-number",
        }
    }

    fn allows_answer_phrase(self) -> bool {
        self != Fallback::None
    }

    fn allows_last_number(self) -> bool {
        self == Fallback::AnswerIsThenLastNumber
    }
}

impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fallback name that is not one of [`Fallback::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFallback {
    /// The name as given.
    pub name: String,
}

impl fmt::Display for UnknownFallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown fallback {:?}; expected one of: {}", self.name, Fallback::NAMES.join(", "))
    }
}

impl std::error::Error for UnknownFallback {}

impl FromStr for Fallback {
    type Err = UnknownFallback;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "none" => Ok(Fallback::None),
            "answer-is" => Ok(Fallback::AnswerIs),
            "answer-is-then-last-number" => Ok(Fallback::AnswerIsThenLastNumber),
            _ => Err(UnknownFallback { name: name.to_string() }),
        }
    }
}

/// What kind of answer a reference is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnswerKind {
    /// A math answer: a number, expression, tuple, set, matrix, word…
    Math,
    /// A multiple-choice letter A–J.
    MultipleChoice,
}

impl AnswerKind {
    /// `MultipleChoice` when the reference is a single letter A–J, possibly
    /// written `(B)`, `$B$` or `\text{(B)}`; `Math` otherwise.
    pub fn of_reference(reference: &str) -> AnswerKind {
        match extract::reference_choice_letter(reference) {
            Some(_) => AnswerKind::MultipleChoice,
            None => AnswerKind::Math,
        }
    }

    /// `"math"` or `"multiple-choice"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerKind::Math => "math",
            AnswerKind::MultipleChoice => "multiple-choice",
        }
    }
}

impl fmt::Display for AnswerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which rule found the extracted answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExtractionMethod {
    /// The last `\boxed{…}` / `\fbox{…}`.
    Boxed,
    /// "the answer is …" / "Answer: …".
    AnswerIs,
    /// The last number of the response.
    LastNumber,
    /// The last standalone choice letter of the final line.
    ChoiceLetter,
}

impl ExtractionMethod {
    /// `"boxed"`, `"answer-is"`, `"last-number"` or `"choice-letter"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExtractionMethod::Boxed => "boxed",
            ExtractionMethod::AnswerIs => "answer-is",
            ExtractionMethod::LastNumber => "last-number",
            ExtractionMethod::ChoiceLetter => "choice-letter",
        }
    }
}

impl fmt::Display for ExtractionMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An answer found in a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// The answer as written (for multiple choice: the letter alone).
    pub text: String,
    /// Which rule found it.
    pub method: ExtractionMethod,
}

impl Extracted {
    fn new(text: impl Into<String>, method: ExtractionMethod) -> Extracted {
        Extracted { text: text.into(), method }
    }
}

/// The verdict on one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grade {
    /// The answer found, if any.
    pub extracted: Option<Extracted>,
    /// Whether it matches the reference.
    pub correct: bool,
    /// The kind of the reference.
    pub kind: AnswerKind,
}

/// Finds the final answer of `response`; see the crate documentation for the
/// order of rules.
pub fn extract_answer(response: &str, kind: AnswerKind, fallback: Fallback) -> Option<Extracted> {
    extract::extract(response, kind, fallback)
}

/// True when the math answer `candidate` is equivalent to `reference` after
/// normalisation; see the crate documentation.
pub fn answers_match(candidate: &str, reference: &str) -> bool {
    compare::answers_match(candidate, reference)
}

/// Grades `response` against `reference`: extracts the answer and compares.
pub fn grade(response: &str, reference: &str, fallback: Fallback) -> Grade {
    let kind = AnswerKind::of_reference(reference);
    let extracted = extract_answer(response, kind, fallback);
    let correct = extracted.as_ref().is_some_and(|found| match kind {
        AnswerKind::Math => answers_match(&found.text, reference),
        AnswerKind::MultipleChoice => extract::leading_choice_letter(&found.text) == extract::reference_choice_letter(reference),
    });
    Grade { extracted, correct, kind }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_names_round_trip() {
        for name in Fallback::NAMES {
            let fallback: Fallback = name.parse().unwrap();
            assert_eq!(fallback.as_str(), *name);
            assert_eq!(fallback.to_string(), *name);
        }
        assert_eq!(Fallback::default(), Fallback::AnswerIsThenLastNumber);
    }

    #[test]
    fn unknown_fallback_message_quotes_and_lists() {
        let error = "last".parse::<Fallback>().unwrap_err();
        let message = error.to_string();
        assert_eq!(message, r#"unknown fallback "last"; expected one of: none, answer-is, answer-is-then-last-number"#);
        assert!(!message.ends_with('.'));
    }

    #[test]
    fn kind_of_reference() {
        assert_eq!(AnswerKind::of_reference("B"), AnswerKind::MultipleChoice);
        assert_eq!(AnswerKind::of_reference("(C)"), AnswerKind::MultipleChoice);
        assert_eq!(AnswerKind::of_reference(r"\text{(E)}"), AnswerKind::MultipleChoice);
        assert_eq!(AnswerKind::of_reference("42"), AnswerKind::Math);
        assert_eq!(AnswerKind::of_reference("x"), AnswerKind::Math);
        assert_eq!(AnswerKind::of_reference("K"), AnswerKind::Math);
        assert_eq!(AnswerKind::of_reference(""), AnswerKind::Math);
        assert_eq!(AnswerKind::MultipleChoice.to_string(), "multiple-choice");
    }

    #[test]
    fn method_names() {
        let names: Vec<_> =
            [ExtractionMethod::Boxed, ExtractionMethod::AnswerIs, ExtractionMethod::LastNumber, ExtractionMethod::ChoiceLetter]
                .iter()
                .map(|method| method.as_str())
                .collect();
        assert_eq!(names, ["boxed", "answer-is", "last-number", "choice-letter"]);
    }

    #[test]
    fn grades_math() {
        let graded = grade(r"<think>maybe \boxed{3}</think>So $\boxed{\frac{1}{2}}$.", "0.5", Fallback::default());
        assert!(graded.correct);
        assert_eq!(graded.kind, AnswerKind::Math);
        assert_eq!(graded.extracted, Some(Extracted::new(r"\frac{1}{2}", ExtractionMethod::Boxed)));
        assert!(!grade(r"\boxed{3}", "4", Fallback::default()).correct);
        assert!(!grade("no answer at all", "4", Fallback::default()).correct);
        assert!(grade("so we get 4 apples", "4", Fallback::default()).correct);
        assert!(!grade("so we get 4 apples", "4", Fallback::AnswerIs).correct);
    }

    #[test]
    fn grades_multiple_choice() {
        let graded = grade("Thinking…\nAnswer: B", "B", Fallback::default());
        assert!(graded.correct);
        assert_eq!(graded.kind, AnswerKind::MultipleChoice);
        assert!(grade(r"\boxed{\text{(C)}}", r"\text{(C)}", Fallback::default()).correct);
        assert!(grade("the answer is (D).", "(D)", Fallback::default()).correct);
        assert!(!grade("the answer is (D).", "C", Fallback::default()).correct);
        assert!(grade("so overall\nI choose A", "A", Fallback::default()).correct);
        assert!(!grade("so overall\nI choose A", "A", Fallback::AnswerIs).correct);
    }
}
