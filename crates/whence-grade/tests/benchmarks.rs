//! Generalisation test on benchmark answers: every reference answer of
//! MATH-500, AIME 2024 and AIME 2025, boxed in a response, must grade correct
//! against itself and against obvious equivalent rewritings, and incorrect
//! against clearly different answers.
//!
//! The data lives outside the crate, in the shared data folder; when a file
//! is absent the test says so and passes.

use std::fs;

use serde_json::Value;
use whence_grade::{answers_match, grade, normalize, AnswerKind, Fallback};

const BENCHMARKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/benchmarks/");

/// The `answer` of every line of a benchmark file, as text (AIME 2025 stores
/// numbers such as `70.0`).
fn benchmark_answers(file: &str) -> Option<Vec<String>> {
    let path = format!("{BENCHMARKS}{file}");
    let Ok(contents) = fs::read_to_string(&path) else {
        println!("skipping: {path} not found");
        return None;
    };
    let answers = contents
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap_or_else(|error| panic!("{path}: {error}"));
            match record.get("answer") {
                Some(Value::String(text)) => text.clone(),
                Some(other) => other.to_string(),
                None => panic!("{path}: a line without `answer`"),
            }
        })
        .collect();
    Some(answers)
}

/// Responses that end with `answer` boxed in the usual ways.
fn responses_boxing(answer: &str) -> Vec<String> {
    vec![
        format!(r"The final answer is $\boxed{{{answer}}}$."),
        format!("Some work first: 2 + 2 = 4.\n\n\\[\n\\boxed{{{answer}}}\n\\]"),
        format!(r"<think>I guess \boxed{{12345}}</think>So the answer is \boxed{{{answer}}}"),
        format!("<|begin_of_thought|>\ntry 999\n<|end_of_thought|>\n<|begin_of_solution|>\n\\(\\boxed{{{answer}}}\\)\n<|end_of_solution|>"),
    ]
}

static THOUSANDS: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"^\d{1,3}(?:,(?:\\!)?\s?\d{3})+$").unwrap());
static COMMAND_BEFORE_LETTER: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"\\[a-zA-Z]+\s+[a-zA-Z]").unwrap());
/// `{5}`: braces LaTeX does not need around one digit (`\frac{1}{2}` → `\frac12`).
static SINGLE_DIGIT_GROUP: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| regex::Regex::new(r"\{(\d)\}").unwrap());
static SIMPLE_FRACTION: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"^(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}$").unwrap());

/// Obvious equivalent spellings of `answer`.
fn rewritings(answer: &str) -> Vec<String> {
    let answer = answer.trim();
    let mut forms = vec![
        format!("  {answer} "),
        format!("${answer}$"),
        format!("{answer}."),
        answer.replace(r"\frac", r"\dfrac"),
        answer.replace(r"\dfrac", r"\frac"),
        answer.replace(',', ", "),
        answer.replace("pmatrix", "bmatrix"),
        answer.replace(r"^\circ", r"^{\circ}"),
        answer.replace(r"\text", r"\mbox"),
    ];
    if SINGLE_DIGIT_GROUP.is_match(answer) {
        forms.push(SINGLE_DIGIT_GROUP.replace_all(answer, "$1").into_owned());
    }
    if answer.contains(r"\$") {
        forms.push(answer.replace(r"\$", ""));
    }
    if !COMMAND_BEFORE_LETTER.is_match(answer) {
        forms.push(answer.split_whitespace().collect());
    }
    if !answer.contains(r"\left") {
        forms.push(answer.replace('(', r"\left(").replace(')', r"\right)"));
    }
    if let Ok(number) = answer.parse::<f64>() {
        forms.push(if answer.contains('.') { format!("{answer}00") } else { format!("{answer}.0") });
        forms.push(format!("x = {answer}"));
        forms.push(format!(r"\frac{{{}}}{{2}}", number * 2.0));
        if number.fract() == 0.0 && number >= 1000.0 {
            forms.push(with_thousands_separators(answer));
        }
    }
    if let Some(parts) = SIMPLE_FRACTION.captures(answer) {
        forms.push(format!("{}{}/{}", &parts[1], &parts[2], &parts[3]));
        let value = parts[2].parse::<f64>().unwrap() / parts[3].parse::<f64>().unwrap();
        let sign = if &parts[1] == "-" { -1.0 } else { 1.0 };
        forms.push(format!("{:.10}", sign * value));
    }
    let is_plain_list = answer.contains(',') && !answer.contains(['(', '[', '{', '\\']) && !THOUSANDS.is_match(answer);
    if is_plain_list {
        let mut items: Vec<&str> = answer.split(',').map(str::trim).collect();
        items.reverse();
        forms.push(items.join(", "));
    }
    if let Some(words) = answer.strip_prefix(r"\text{").and_then(|rest| rest.strip_suffix('}')) {
        forms.push(words.to_string());
        if words.chars().filter(|c| c.is_alphabetic()).count() > 1 {
            forms.push(words.to_lowercase());
        }
    }
    if let Some(degrees) = answer.strip_suffix(r"^\circ") {
        forms.push(degrees.to_string());
        forms.push(format!("{degrees}°"));
    }
    forms
}

/// Other spellings of a choice letter such as `\text{(C)}`.
fn choice_rewritings(answer: &str) -> Vec<String> {
    let letter: String = answer.chars().filter(char::is_ascii_uppercase).collect();
    vec![letter.clone(), format!("({letter})"), format!(r"\textbf{{({letter})}}"), format!("{letter}) because")]
}

fn with_thousands_separators(digits: &str) -> String {
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// `answer` with the digit at byte `at` incremented (9 becomes 0).
fn with_digit_changed(answer: &str, at: usize, digit: char) -> String {
    let changed = char::from_digit((digit.to_digit(10).unwrap() + 1) % 10, 10).unwrap();
    let mut other = answer.to_string();
    other.replace_range(at..at + 1, &changed.to_string());
    other
}

/// Clearly different answers: the first or the last digit changed (the last
/// only when no unit follows, since units are ignored), or an interval's
/// closing bracket flipped.
fn different_answers(answer: &str) -> Vec<String> {
    let mut others = Vec::new();
    let digits: Vec<(usize, char)> = answer.char_indices().filter(|(_, c)| c.is_ascii_digit()).collect();
    if let Some(&(at, digit)) = digits.first() {
        others.push(with_digit_changed(answer, at, digit));
    }
    let has_unit = answer.contains(r"\mbox") || answer.contains(r"\text");
    if let (Some(&(at, digit)), false) = (digits.last(), has_unit) {
        others.push(with_digit_changed(answer, at, digit));
    }
    for (from, to) in [("]", ")"), (")", "]")] {
        if answer.ends_with(from) && !answer.ends_with(r"\right)") {
            others.push(format!("{}{to}", &answer[..answer.len() - 1]));
        }
    }
    others
}

/// Checks every answer of one benchmark; returns the failures.
fn failures_for(answers: &[String]) -> Vec<String> {
    let mut failures = Vec::new();
    for answer in answers {
        for response in responses_boxing(answer) {
            if !grade(&response, answer, Fallback::default()).correct {
                failures.push(format!("{answer:?}: boxed in {response:?} does not grade correct"));
            }
        }
        let is_choice = AnswerKind::of_reference(answer) == AnswerKind::MultipleChoice;
        let forms = if is_choice { choice_rewritings(answer) } else { rewritings(answer) };
        for form in forms {
            if !is_choice && !answers_match(&form, answer) {
                failures.push(format!("{answer:?}: equivalent {form:?} does not match"));
            }
            let response = format!(r"Thus $\boxed{{{form}}}$");
            if !grade(&response, answer, Fallback::default()).correct {
                failures.push(format!("{answer:?}: equivalent {form:?} boxed does not grade correct"));
            }
        }
        for other in different_answers(answer) {
            let response = format!(r"Thus $\boxed{{{other}}}$");
            if grade(&response, answer, Fallback::default()).correct {
                failures.push(format!("{answer:?}: different {other:?} grades correct"));
            }
        }
    }
    failures
}

/// Neighbouring answers that normalise differently must not match, unless
/// they are the same value written differently (listed by hand).
fn neighbour_failures(answers: &[String]) -> Vec<String> {
    let mut failures = Vec::new();
    for pair in answers.windows(2) {
        let (first, second) = (&pair[0], &pair[1]);
        if normalize(first) != normalize(second) && answers_match(first, second) {
            failures.push(format!("{first:?} and {second:?} differ but match"));
        }
    }
    failures
}

fn check_benchmark(file: &str) {
    let Some(answers) = benchmark_answers(file) else {
        return;
    };
    let mut failures = failures_for(&answers);
    failures.extend(neighbour_failures(&answers));
    println!("{file}: {} answers, {} failures", answers.len(), failures.len());
    for failure in &failures {
        println!("  {failure}");
    }
    assert!(failures.is_empty(), "{file}: {} failures", failures.len());
}

#[test]
fn math500_answers_grade_against_themselves_and_rewritings() {
    check_benchmark("math500.jsonl");
}

#[test]
fn aime24_answers_grade_against_themselves_and_rewritings() {
    check_benchmark("aime24.jsonl");
}

#[test]
fn aime25_answers_grade_against_themselves_and_rewritings() {
    check_benchmark("aime25.jsonl");
}

#[test]
fn aime25_float_answers_equal_integers() {
    assert!(grade(r"\boxed{70}", "70.0", Fallback::default()).correct);
    assert!(grade(r"\boxed{70.0}", "70", Fallback::default()).correct);
    assert!(!grade(r"\boxed{71}", "70.0", Fallback::default()).correct);
}
