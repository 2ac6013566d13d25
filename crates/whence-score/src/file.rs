//! The `file:` scorer: token log-probabilities computed elsewhere (captured
//! while sampling, or by `whence score`), one JSONL line per record:
//! `{"id": "…", "offsets": [[start, end], …], "logprobs": [ … ]}` with byte
//! offsets into the response and natural-log probabilities.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use whence_core::{ByteSpan, Record};

use crate::{validate, ModelInfo, ScoreError, Scorer, TokenLogprobs};

/// Where one record's line sits in the file.
#[derive(Debug, Clone, Copy)]
struct LineEntry {
    offset: u64,
    length: usize,
    line: usize,
}

/// Reads precomputed token log-probabilities from a JSONL file.
///
/// Opening indexes the file (id → line) and fingerprints its content; each
/// record's line is parsed and checked against its response when it is
/// scored, so memory stays small for large files.
#[derive(Debug)]
pub struct FileScorer {
    path: PathBuf,
    file: File,
    index: HashMap<String, LineEntry>,
    info: ModelInfo,
    buffer: Vec<u8>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ScoreLine {
    offsets: Vec<(usize, usize)>,
    logprobs: Vec<f64>,
}

fn id_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

/// A clearer message than serde's for the non-JSON numbers Python writes.
fn json_problem(line: &[u8], error: &serde_json::Error) -> String {
    let text = String::from_utf8_lossy(line);
    for bad in ["NaN", "-Infinity", "Infinity"] {
        if text.contains(bad) {
            return format!("holds `{bad}`, which is not JSON and not a valid log-probability (they must be finite numbers ≤ 0)");
        }
    }
    format!("is not valid JSON: {error}")
}

impl FileScorer {
    /// Opens and indexes `path`.
    pub fn open(path: &Path) -> Result<Self, ScoreError> {
        let display = path.display().to_string();
        let io_error = |source| ScoreError::Io { context: format!("cannot read scorer file {display}"), source };
        let file = File::open(path).map_err(io_error)?;
        let mut reader = BufReader::with_capacity(1 << 20, file.try_clone().map_err(io_error)?);
        let mut hasher = Sha256::new();
        let mut index: HashMap<String, LineEntry> = HashMap::new();
        let mut line = Vec::new();
        let mut offset = 0u64;
        let mut number = 0usize;
        loop {
            line.clear();
            let read = reader.read_until(b'\n', &mut line).map_err(io_error)?;
            if read == 0 {
                break;
            }
            number += 1;
            hasher.update(&line);
            let start = offset;
            offset += read as u64;
            let content = line.trim_ascii();
            if content.is_empty() {
                continue;
            }
            let location = format!("{display}:{number}");
            let parsed: IdOnly = serde_json::from_slice(content)
                .map_err(|e| ScoreError::InvalidSource(format!("{location}: line {}", json_problem(content, &e))))?;
            let id = match parsed.id.as_ref() {
                None => return Err(ScoreError::InvalidSource(format!("{location}: field `id` is missing"))),
                Some(value) => id_text(value)
                    .ok_or_else(|| ScoreError::InvalidSource(format!("{location}: field `id`: `{value}` is not a string or an integer")))?,
            };
            let entry = LineEntry { offset: start, length: read, line: number };
            if let Some(previous) = index.insert(id.clone(), entry) {
                return Err(ScoreError::InvalidSource(format!(
                    "{location}: field `id`: duplicate id `{id}`, first seen at line {}",
                    previous.line
                )));
            }
        }
        let fingerprint = format!("sha256:{:x}", hasher.finalize());
        Ok(FileScorer {
            path: path.to_path_buf(),
            file,
            index,
            info: ModelInfo { kind: "file".into(), source: display, fingerprint },
            buffer: Vec::new(),
        })
    }

    /// How many records the file holds.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_line(&mut self, entry: LineEntry) -> Result<(), ScoreError> {
        let context = || format!("cannot read scorer file {}", self.info.source);
        self.buffer.resize(entry.length, 0);
        self.file.seek(SeekFrom::Start(entry.offset)).map_err(|source| ScoreError::Io { context: context(), source })?;
        self.file.read_exact(&mut self.buffer).map_err(|source| ScoreError::Io { context: context(), source })?;
        Ok(())
    }

    fn parse(&self, location: &str) -> Result<TokenLogprobs, ScoreError> {
        let content = self.buffer.trim_ascii();
        match serde_json::from_slice::<ScoreLine>(content) {
            Ok(line) => Ok(TokenLogprobs {
                spans: line.offsets.iter().map(|&(s, e)| ByteSpan { start: s, end: e }).collect(),
                logprobs: line.logprobs,
            }),
            Err(error) => Err(diagnose(content, &error, location)),
        }
    }
}

/// Names the field at fault in a line that does not parse as a score line.
fn diagnose(content: &[u8], error: &serde_json::Error, location: &str) -> ScoreError {
    let invalid = |field: String, message: String| ScoreError::InvalidRecord { location: location.to_string(), field, message };
    let value: serde_json::Value = match serde_json::from_slice(content) {
        Ok(value) => value,
        Err(e) => return invalid("(line)".into(), json_problem(content, &e)),
    };
    for field in ["offsets", "logprobs"] {
        match value.get(field) {
            None => return invalid(field.into(), "is missing".into()),
            Some(serde_json::Value::Array(_)) => {}
            Some(other) => return invalid(field.into(), format!("`{other}` is not a list")),
        }
    }
    if let Some(items) = value["offsets"].as_array() {
        for (i, item) in items.iter().enumerate() {
            let pair = item.as_array().filter(|p| p.len() == 2 && p.iter().all(|x| x.as_u64().is_some()));
            if pair.is_none() {
                return invalid(format!("offsets[{i}]"), format!("`{item}` is not a pair of non-negative integer byte offsets"));
            }
        }
    }
    if let Some(items) = value["logprobs"].as_array() {
        for (i, item) in items.iter().enumerate() {
            if item.as_f64().is_none() {
                return invalid(format!("logprobs[{i}]"), format!("`{item}` is not a number"));
            }
        }
    }
    invalid("(line)".into(), format!("cannot be read as a score line: {error}"))
}

impl Scorer for FileScorer {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn score(&mut self, record: &Record) -> Result<TokenLogprobs, ScoreError> {
        let entry = *self.index.get(&record.id).ok_or_else(|| ScoreError::MissingRecord {
            scorer: format!("scorer file {}", self.info.source),
            id: record.id.clone(),
            input: record.source.to_string(),
        })?;
        self.read_line(entry)?;
        let location = format!("{}:{}", self.info.source, entry.line);
        let scores = self.parse(&location)?;
        for (i, span) in scores.spans.iter().enumerate() {
            if span.start > span.end {
                return Err(ScoreError::InvalidRecord {
                    location,
                    field: format!("offsets[{i}]"),
                    message: format!("start {} is after end {}", span.start, span.end),
                });
            }
        }
        validate(&scores, &record.response, &location)?;
        Ok(scores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use whence_core::{Prompt, SourceLocation};

    fn record(id: &str, response: &str) -> Record {
        Record {
            id: id.into(),
            question_id: "q".into(),
            prompt: Prompt::Text("p".into()),
            response: response.into(),
            correct: None,
            answer: None,
            source: SourceLocation { file: "in.jsonl".into(), line: Some(1), row: None },
        }
    }

    fn scorer_for(content: &str) -> (tempdir::Dir, Result<FileScorer, ScoreError>) {
        let dir = tempdir::Dir::new();
        let path = dir.path().join("lp.jsonl");
        std::fs::write(&path, content).unwrap();
        let scorer = FileScorer::open(&path);
        (dir, scorer)
    }

    /// A minimal self-cleaning temporary directory (no extra dependency).
    mod tempdir {
        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                use std::sync::atomic::{AtomicUsize, Ordering};
                static COUNTER: AtomicUsize = AtomicUsize::new(0);
                let n = COUNTER.fetch_add(1, Ordering::SeqCst);
                let path = std::env::temp_dir().join(format!("whence-score-test-{}-{n}", std::process::id()));
                std::fs::create_dir_all(&path).unwrap();
                Dir(path)
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn reads_scores_by_id_in_any_order() {
        let (_dir, scorer) = scorer_for(
            "{\"id\": \"b\", \"offsets\": [[0, 1]], \"logprobs\": [-0.5]}\n\n{\"id\": \"a\", \"offsets\": [[0, 0], [0, 3]], \"logprobs\": [0.0, -1.0]}\n",
        );
        let mut scorer = scorer.unwrap();
        assert_eq!(scorer.len(), 2);
        let scores = scorer.score(&record("a", "abc")).unwrap();
        assert_eq!(scores.spans, vec![ByteSpan::new(0, 0), ByteSpan::new(0, 3)]);
        assert_eq!(scores.mean_logprob(), Some(-1.0));
        assert_eq!(scorer.score(&record("b", "hé")).unwrap().logprobs, vec![-0.5]);
        assert!(scorer.info().fingerprint.starts_with("sha256:"));
    }

    #[test]
    fn bad_lines_name_file_line_and_field() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "{\"id\": \"a\", \"offsets\": [[0, 9]], \"logprobs\": [-1]}",
                "abc",
                "lp.jsonl:1: field `offsets[0]`: span [0, 9) ends past the response",
            ),
            ("{\"id\": \"a\", \"offsets\": [[0, 1]], \"logprobs\": [-1]}", "é", "field `offsets[0]`: span [0, 1) does not fall on UTF-8"),
            (
                "{\"id\": \"a\", \"offsets\": [[0, 1]], \"logprobs\": [0.5]}",
                "abc",
                "field `logprobs[0]`: log-probability `0.5` is not a finite number ≤ 0",
            ),
            ("{\"id\": \"a\", \"offsets\": [[0, 1]], \"logprobs\": [null]}", "abc", "field `logprobs[0]`: `null` is not a number"),
            (
                "{\"id\": \"a\", \"offsets\": [[0, 1], [1, 2]], \"logprobs\": [-1]}",
                "abc",
                "field `logprobs`: 1 log-probabilities for 2 offsets",
            ),
            ("{\"id\": \"a\", \"offsets\": [[-1, 1]], \"logprobs\": [-1]}", "abc", "field `offsets[0]`: `[-1,1]` is not a pair"),
            ("{\"id\": \"a\", \"offsets\": [[2, 1]], \"logprobs\": [-1]}", "abc", "field `offsets[0]`: start 2 is after end 1"),
            ("{\"id\": \"a\", \"logprobs\": [-1]}", "abc", "field `offsets`: is missing"),
        ];
        for (line, response, expected) in cases {
            let (_dir, scorer) = scorer_for(line);
            let mut scorer = scorer.unwrap();
            let error = scorer.score(&record("a", response)).unwrap_err();
            let message = error.to_string();
            assert!(message.contains(expected), "{line}\n  gave: {message}\n  want: {expected}");
            assert!(error.is_record_specific(), "{message}");
        }
    }

    #[test]
    fn file_level_problems_are_fatal() {
        let (_dir, scorer) =
            scorer_for("{\"id\": \"a\", \"offsets\": [], \"logprobs\": []}\n{\"id\": \"a\", \"offsets\": [], \"logprobs\": []}\n");
        assert!(scorer.unwrap_err().to_string().contains("lp.jsonl:2: field `id`: duplicate id `a`, first seen at line 1"));
        let (_dir, scorer) = scorer_for("{\"offsets\": []}\n");
        assert!(scorer.unwrap_err().to_string().contains("lp.jsonl:1: field `id` is missing"));
        let (_dir, scorer) = scorer_for("{\"id\": \"a\", \"offsets\": [[0, 1]], \"logprobs\": [NaN]}");
        assert!(scorer.unwrap_err().to_string().contains("lp.jsonl:1: line holds `NaN`, which is not JSON"));
        let (_dir, scorer) = scorer_for("{\"id\": \"a\", ");
        assert!(scorer.unwrap_err().to_string().contains("lp.jsonl:1: line is not valid JSON"));
    }

    #[test]
    fn missing_record_names_the_input_location() {
        let (_dir, scorer) = scorer_for("{\"id\": \"a\", \"offsets\": [], \"logprobs\": []}\n");
        let message = scorer.unwrap().score(&record("zz", "x")).unwrap_err().to_string();
        assert!(message.contains("has no scores for record `zz` (input in.jsonl:1, field `id`)"), "{message}");
    }
}
