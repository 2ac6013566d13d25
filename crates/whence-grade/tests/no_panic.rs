//! Grading is total: no input, however malformed, makes it panic.

use proptest::prelude::*;
use whence_grade::{answers_match, extract_answer, grade, normalize, AnswerKind, Fallback};

const FALLBACKS: [Fallback; 3] = [Fallback::None, Fallback::AnswerIs, Fallback::AnswerIsThenLastNumber];

/// Fragments that exercise the extraction and comparison paths.
const FRAGMENTS: &[&str] = &[
    r"\boxed{",
    r"\boxed ",
    r"\fbox{",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    r"\{",
    r"\}",
    r"\frac",
    r"\dfrac",
    r"\sqrt",
    r"\sqrt[",
    r"\left(",
    r"\right]",
    r"\text{",
    r"\mbox{",
    r"\pi",
    r"\pm",
    r"\cup",
    r"\infty",
    r"\begin{pmatrix}",
    r"\end{pmatrix}",
    r"\\",
    "&",
    ",",
    ".",
    "-",
    "+",
    "^",
    "_",
    "=",
    "/",
    "0",
    "7",
    "12",
    "3.5",
    "1,000",
    "x",
    "k",
    "B",
    "(C)",
    "</think>",
    "<|begin_of_solution|>",
    "the answer is ",
    "Answer: ",
    "\n",
    " ",
    "$",
    r"\%",
    r"^\circ",
    "é",
    "π",
    "√",
    "°",
    "−",
    "🙂",
    r"\,",
    r"\!",
    "miles",
    "x=",
    r"\in",
];

fn fragment_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..40).prop_map(|parts| parts.concat())
}

fn exercise(response: &str, reference: &str) {
    for fallback in FALLBACKS {
        let graded = grade(response, reference, fallback);
        if let Some(found) = graded.extracted {
            let _ = answers_match(&found.text, reference);
        }
        let _ = extract_answer(response, AnswerKind::MultipleChoice, fallback);
    }
    let _ = normalize(response);
    let _ = answers_match(response, reference);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn grade_never_panics_on_random_strings(response in any::<String>(), reference in any::<String>()) {
        exercise(&response, &reference);
    }

    #[test]
    fn grade_never_panics_on_latex_soup(response in fragment_soup(), reference in fragment_soup()) {
        exercise(&response, &reference);
    }

    #[test]
    fn normalizing_is_idempotent(answer in fragment_soup()) {
        let once = normalize(&answer);
        prop_assert_eq!(normalize(&once), once);
    }

    #[test]
    fn every_answer_matches_itself_boxed(answer in "[0-9]{1,6}|-?[0-9]{1,3}\\.[0-9]{1,3}|\\\\frac\\{[1-9]\\}\\{[1-9]\\}") {
        let response = format!("so $\\boxed{{{answer}}}$.");
        prop_assert!(grade(&response, &answer, Fallback::default()).correct);
    }
}

#[test]
fn huge_and_deep_inputs_do_not_panic() {
    let deep_braces = format!(r"\boxed{{{}1{}}}", "{".repeat(20_000), "}".repeat(20_000));
    let deep_parens = format!(r"\boxed{{{}1{}}}", "(".repeat(20_000), ")".repeat(20_000));
    let long_sum = format!(r"\boxed{{{}1}}", "1+".repeat(20_000));
    let long_list = format!(r"\boxed{{{}1}}", "1,".repeat(5_000));
    let huge_number = format!(r"\boxed{{{}}}", "9".repeat(5_000));
    let unclosed = r"\boxed{".repeat(10_000);
    let nested_sets = format!(r"\boxed{{{}1{}}}", r"\{".repeat(200), r"\}".repeat(200));
    let nested_fracs = format!(r"\boxed{{{}1{}}}", r"\frac{".repeat(500), "}{2}".repeat(500));
    for response in [deep_braces, deep_parens, long_sum, long_list, huge_number, unclosed, nested_sets, nested_fracs] {
        for reference in ["1", "(1,1)", "1,1", "B", ""] {
            exercise(&response, reference);
            exercise(reference, &response);
        }
    }
}

#[test]
fn huge_numbers_compare_exactly() {
    let big = "9".repeat(400);
    let bigger = format!("{big}8");
    assert!(grade(&format!(r"\boxed{{{big}}}"), &big, Fallback::default()).correct);
    assert!(!grade(&format!(r"\boxed{{{bigger}}}"), &big, Fallback::default()).correct);
    assert!(!answers_match("12345678901234567890", "12345678901234567891"));
}
