//! Acceptance test on real trajectories: our verdicts against the source's.
//!
//! Each line of the data files has `response`, `reference_answer` and
//! `correct` (the source's own verdict). The data lives outside the crate, in
//! the shared data folder; when it is absent the tests say so and pass.

use std::fs;

use serde_json::Value;
use whence_grade::{grade, Fallback};

const SKYTHOUGHT_AMC23: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/trajectories/skythought_amc23.jsonl");
const THOUGHT_ANCHORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/trajectories/thought_anchors.jsonl");

/// How often our verdict agrees with the source's, and where it does not.
struct Agreement {
    lines: usize,
    agreeing: usize,
    disagreements: Vec<String>,
}

impl Agreement {
    fn rate(&self) -> f64 {
        self.agreeing as f64 / self.lines.max(1) as f64
    }

    fn report(&self, path: &str) {
        println!("{path}: agreement {}/{} = {:.2}%", self.agreeing, self.lines, 100.0 * self.rate());
        for disagreement in &self.disagreements {
            println!("  {disagreement}");
        }
    }
}

fn text_field<'a>(record: &'a Value, name: &str) -> &'a str {
    record.get(name).and_then(Value::as_str).unwrap_or("")
}

/// Grades every line of `path`; `None` (after saying so) when the file is absent.
fn agreement_with_source(path: &str) -> Option<Agreement> {
    let Ok(contents) = fs::read_to_string(path) else {
        println!("skipping: {path} not found");
        return None;
    };
    let mut agreement = Agreement { lines: 0, agreeing: 0, disagreements: Vec::new() };
    for (index, line) in contents.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
        let record: Value = serde_json::from_str(line).unwrap_or_else(|error| panic!("{path}:{}: {error}", index + 1));
        let reference = text_field(&record, "reference_answer");
        let source_verdict = record.get("correct").and_then(Value::as_bool).unwrap_or(false);
        let graded = grade(text_field(&record, "response"), reference, Fallback::AnswerIsThenLastNumber);
        agreement.lines += 1;
        if graded.correct == source_verdict {
            agreement.agreeing += 1;
            continue;
        }
        let extracted = graded.extracted.map_or_else(|| "nothing".to_string(), |found| format!("{:?} ({})", found.text, found.method));
        agreement.disagreements.push(format!(
            "line {} id={} model={}: reference {reference:?}, extracted {extracted}, source says {source_verdict}, we say {}",
            index + 1,
            text_field(&record, "question_id"),
            text_field(&record, "model"),
            graded.correct,
        ));
    }
    Some(agreement)
}

#[test]
fn skythought_amc23_agrees_with_the_source_on_99_percent() {
    let Some(agreement) = agreement_with_source(SKYTHOUGHT_AMC23) else {
        return;
    };
    agreement.report(SKYTHOUGHT_AMC23);
    assert_eq!(agreement.lines, 560, "expected 560 lines");
    assert!(agreement.rate() >= 0.99, "agreement {:.4} is below 0.99", agreement.rate());
}

#[test]
fn thought_anchors_agrees_with_the_source() {
    let Some(agreement) = agreement_with_source(THOUGHT_ANCHORS) else {
        return;
    };
    agreement.report(THOUGHT_ANCHORS);
    assert_eq!(agreement.lines, 40, "expected 40 lines");
    assert!(agreement.rate() >= 0.99, "agreement {:.4} is below 0.99", agreement.rate());
}
