//! The `file:` scorer's parser: input `RESPONSE\0FILE`; FILE is written to a
//! `.jsonl` file and opened with `FileScorer::open`, and every id the file
//! names (up to 16) is scored against a record whose response is RESPONSE.
#![no_main]

use libfuzzer_sys::fuzz_target;
use whence_core::{Prompt, Record, SourceLocation};
use whence_fuzz::{scratch, split_nul, text};
use whence_score::{FileScorer, Scorer};

fuzz_target!(|data: &[u8]| {
    let parts = split_nul(data, 2);
    let [response, content] = parts[..] else { return };
    let response = text(response);
    let path = scratch("scores.jsonl");
    std::fs::write(&path, content).unwrap();
    let Ok(mut scorer) = FileScorer::open(&path) else { return };
    let ids: Vec<String> = content
        .split(|&b| b == b'\n')
        .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
        .filter_map(|value| match value.get("id")? {
            serde_json::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        })
        .take(16)
        .collect();
    for id in ids {
        let record = Record {
            id,
            question_id: "q".into(),
            prompt: Prompt::Text("p".into()),
            response: response.clone(),
            correct: None,
            answer: None,
            source: SourceLocation { file: "input.jsonl".into(), line: Some(1), row: None },
        };
        if let Ok(scores) = scorer.score(&record) {
            assert_eq!(scores.spans.len(), scores.logprobs.len(), "spans and log-probabilities differ in number");
            for span in &scores.spans {
                assert!(span.start <= span.end && span.end <= record.response.len(), "span {span} outside the response");
            }
        }
    }
});
