//! Bad input: an error naming file, line and field, exit code 2, and no
//! output file left behind; or, with --skip-invalid, a skip counted in the summary.

use crate::*;

const GOOD: &str = r#"{"id": "a", "prompt": "Q?", "response": "First. Second."}"#;
const GOOD_SCORES: &str = r#"{"id": "a", "offsets": [[0, 6], [6, 14]], "logprobs": [-0.5, -1.0]}"#;

struct Case {
    name: &'static str,
    input: String,
    scores: String,
    expected: &'static str,
}

fn cases() -> Vec<Case> {
    let with_good = |line: &str| format!("{GOOD}\n{line}\n");
    let scores_with = |line: &str| format!("{GOOD_SCORES}\n{line}\n");
    vec![
        Case {
            name: "malformed json",
            input: with_good(r#"{"id": "b", "prompt": "#),
            scores: GOOD_SCORES.into(),
            expected: "in.jsonl:2: line is not valid JSON",
        },
        Case {
            name: "missing response",
            input: with_good(r#"{"id": "b", "prompt": "Q"}"#),
            scores: GOOD_SCORES.into(),
            expected: "in.jsonl:2: field `response`: is missing",
        },
        Case {
            name: "mistyped response",
            input: with_good(r#"{"id": "b", "prompt": "Q", "response": 5}"#),
            scores: GOOD_SCORES.into(),
            expected: "in.jsonl:2: field `response`: `5` is not a string",
        },
        Case {
            name: "mistyped correct",
            input: with_good(r#"{"id": "b", "prompt": "Q", "response": "R.", "correct": "yes"}"#),
            scores: GOOD_SCORES.into(),
            expected: "in.jsonl:2: field `correct`: `\"yes\"` is not true or false",
        },
        Case {
            name: "missing prompt",
            input: with_good(r#"{"id": "b", "question": "Q", "response": "R."}"#),
            scores: GOOD_SCORES.into(),
            expected: "in.jsonl:2: field `prompt`: no prompt",
        },
        Case {
            name: "empty response",
            input: with_good(r#"{"id": "b", "prompt": "Q", "response": " \n"}"#),
            scores: GOOD_SCORES.into(),
            expected: "in.jsonl:2: field `response`: is empty",
        },
        Case {
            name: "duplicate id",
            input: with_good(r#"{"id": "a", "prompt": "Q", "response": "R."}"#),
            scores: GOOD_SCORES.into(),
            expected: "in.jsonl:2: field `id`: duplicate id `a`, first seen at",
        },
        Case {
            name: "id missing from scorer",
            input: with_good(r#"{"id": "b", "prompt": "Q", "response": "R."}"#),
            scores: GOOD_SCORES.into(),
            expected: "has no scores for record `b`",
        },
        Case {
            name: "offset out of range",
            input: with_good(r#"{"id": "b", "prompt": "Q", "response": "R."}"#),
            scores: scores_with(r#"{"id": "b", "offsets": [[0, 3]], "logprobs": [-1]}"#),
            expected: "lp.jsonl:2: field `offsets[0]`: span [0, 3) ends past the response",
        },
        Case {
            name: "offset inside a char",
            input: with_good(r#"{"id": "b", "prompt": "Q", "response": "é."}"#),
            scores: scores_with(r#"{"id": "b", "offsets": [[0, 1]], "logprobs": [-1]}"#),
            expected: "lp.jsonl:2: field `offsets[0]`: span [0, 1) does not fall on UTF-8 character boundaries",
        },
        Case {
            name: "positive logprob",
            input: with_good(r#"{"id": "b", "prompt": "Q", "response": "R."}"#),
            scores: scores_with(r#"{"id": "b", "offsets": [[0, 2]], "logprobs": [0.25]}"#),
            expected: "lp.jsonl:2: field `logprobs[0]`: log-probability `0.25` is not a finite number ≤ 0",
        },
        Case {
            name: "count mismatch",
            input: with_good(r#"{"id": "b", "prompt": "Q", "response": "R."}"#),
            scores: scores_with(r#"{"id": "b", "offsets": [[0, 1], [1, 2]], "logprobs": [-1]}"#),
            expected: "lp.jsonl:2: field `logprobs`: 1 log-probabilities for 2 offsets",
        },
    ]
}

fn trace(scratch: &Scratch, case: &Case, skip: bool) -> std::process::Output {
    let input = scratch.write("in.jsonl", &case.input);
    let scores = scratch.write("lp.jsonl", &case.scores);
    let spec = format!("file:{}", scores.display());
    let mut args = vec![
        "trace".to_string(),
        input.display().to_string(),
        "--teacher".into(),
        spec.clone(),
        "--student".into(),
        spec.clone(),
        "--distilled".into(),
        spec,
        "--out".into(),
        scratch.join("out").display().to_string(),
        "--format".into(),
        "jsonl".into(),
    ];
    if skip {
        args.push("--skip-invalid".into());
    }
    whence(&args)
}

#[test]
fn each_bad_record_is_an_input_error_naming_where() {
    for case in cases() {
        let scratch = Scratch::new("bad");
        let output = trace(&scratch, &case, false);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{}: {message}", case.name);
        assert!(message.contains(case.expected), "{}:\n  got: {message}\n want: {}", case.name, case.expected);
        assert!(message.contains("hint: "), "{}: no hint in {message}", case.name);
        assert!(!message.contains("panicked"), "{}: {message}", case.name);
        assert!(scratch.listing("out").is_empty(), "{}: output left behind: {:?}", case.name, scratch.listing("out"));
    }
}

#[test]
fn skip_invalid_skips_and_counts_each_bad_record() {
    for case in cases() {
        let scratch = Scratch::new("skip");
        let output = trace(&scratch, &case, true);
        assert!(output.status.success(), "{}: {}", case.name, stderr(&output));
        let summary = read_json(&scratch.join("out/summary.json"));
        assert_eq!(summary["trajectories"], 1, "{}", case.name);
        assert_eq!(summary["skipped_records"], 1, "{}", case.name);
        let reason = summary["skipped"][0]["reason"].as_str().unwrap();
        let location = summary["skipped"][0]["location"].as_str().unwrap();
        assert!(location.ends_with("in.jsonl:2"), "{}: {location}", case.name);
        assert!(!reason.is_empty());
    }
}

#[test]
fn file_level_scorer_problems_are_input_errors_even_when_skipping() {
    let scratch = Scratch::new("bad-file");
    let case = Case {
        name: "nan",
        input: format!("{GOOD}\n"),
        scores: r#"{"id": "a", "offsets": [[0, 6]], "logprobs": [NaN]}"#.into(),
        expected: "lp.jsonl:1: line holds `NaN`, which is not JSON and not a valid log-probability",
    };
    for skip in [false, true] {
        let output = trace(&scratch, &case, skip);
        assert_eq!(output.status.code(), Some(2));
        assert!(stderr(&output).contains(case.expected), "{}", stderr(&output));
    }
    let output = whence(["segment", "missing.jsonl"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("cannot read missing.jsonl"), "{}", stderr(&output));
    let output = whence(["segment", "data.csv"]);
    assert!(stderr(&output).contains("unknown input format `.csv`; valid extensions"), "{}", stderr(&output));
}

#[test]
fn all_records_invalid_is_an_error_not_an_empty_output() {
    let scratch = Scratch::new("all-bad");
    let case = Case { name: "all bad", input: r#"{"id": "b", "prompt": "Q"}"#.into(), scores: GOOD_SCORES.into(), expected: "" };
    let output = trace(&scratch, &case, true);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("no record left to analyse: all"), "{}", stderr(&output));
}
