//! Input records: JSONL or Parquet, one record a line or row (SPEC §9).
//!
//! Fields (names configurable through [`FieldNames`]):
//! - `id`: string or integer; default `FILE:LINE` (JSONL, 1-based lines) or
//!   `FILE:ROW` (Parquet, 0-based rows), FILE being the file name;
//! - `question_id`: string or integer; default `prompt-` and 16 hex digits of
//!   a stable hash (FNV-1a 64) of the prompt;
//! - the prompt: `prompt` (string), else `messages` (OpenAI: `role`,
//!   `content` as a string or a list of text parts), else `conversations`
//!   (ShareGPT: `from`, `value`; `human` → `user`, `gpt` → `assistant`);
//!   a last turn by the assistant is never part of the prompt: it is the
//!   response when there is no `response` field;
//! - `response`: string, with at least one non-whitespace character;
//! - `correct` (bool, optional) and `answer` (string or number, optional).
//!
//! Any problem with a record is an [`InputError`] naming the file, the line
//! (or row) and the field; with `skip_invalid` the record is skipped instead
//! and listed in [`RecordSet::skipped`].

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
#[cfg(test)]
use std::sync::Arc;

use arrow_array::{BooleanArray, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::Serialize;
use serde_json::{Map, Value};
use whence_core::hash::fnv1a64;
use whence_core::{ChatMessage, Prompt, Record, SourceLocation};

/// The input file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    Jsonl,
    Parquet,
    /// An Arrow table handed over in memory (the Python API's DataFrames,
    /// `pyarrow.Table`s, lists of dicts).
    Arrow,
}

impl InputFormat {
    /// From the file's extension: `.jsonl`, `.ndjson`, `.json` or `.parquet`, `.pq`.
    pub fn of_path(path: &Path) -> Result<Self, InputError> {
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match extension.as_str() {
            "jsonl" | "ndjson" | "json" => Ok(InputFormat::Jsonl),
            "parquet" | "pq" => Ok(InputFormat::Parquet),
            _ => Err(InputError::Format {
                path: path.display().to_string(),
                message: format!(
                    "unknown input format `.{extension}`; valid extensions: .jsonl, .ndjson, .json (JSON lines), .parquet, .pq"
                ),
            }),
        }
    }
}

/// The names of the input fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldNames {
    pub id: String,
    pub question_id: String,
    pub prompt: String,
    pub messages: String,
    pub conversations: String,
    pub response: String,
    pub correct: String,
    pub answer: String,
}

impl Default for FieldNames {
    fn default() -> Self {
        FieldNames {
            id: "id".into(),
            question_id: "question_id".into(),
            prompt: "prompt".into(),
            messages: "messages".into(),
            conversations: "conversations".into(),
            response: "response".into(),
            correct: "correct".into(),
            answer: "answer".into(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    pub fields: FieldNames,
    /// Skip invalid records (and list them) instead of failing.
    pub skip_invalid: bool,
    /// Whether a record must have a prompt; commands that only read the
    /// response (`segment`, `grade`) accept records without one.
    pub prompt_optional: bool,
    /// The records are questions to generate responses for (`whence
    /// generate`): no response is read, every chat turn is part of the
    /// prompt, and `question_id` defaults to the record's id.
    pub questions: bool,
}

/// A problem with the input.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{location}: field `{field}`: {message}")]
    Field { location: String, field: String, message: String },
    #[error("{location}: {message}")]
    Record { location: String, message: String },
    #[error("{path}: {message}")]
    Format { path: String, message: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A record left out by `--skip-invalid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// `FILE:LINE` or `FILE row N`.
    pub location: String,
    /// The record's id, when it could be read.
    pub id: Option<String>,
    pub reason: String,
}

/// The original rows, kept to write a subset back in the input's own format.
#[derive(Debug, Clone)]
enum OriginalRows {
    /// The raw line of each record, byte for byte.
    Jsonl(Vec<Vec<u8>>),
    /// All rows in one batch, and each record's row.
    Parquet { batch: RecordBatch, rows: Vec<usize> },
}

/// The records of one input file.
#[derive(Debug, Clone)]
pub struct RecordSet {
    pub path: PathBuf,
    pub format: InputFormat,
    pub records: Vec<Record>,
    pub skipped: Vec<Skipped>,
    original: OriginalRows,
}

/// Where a record came from in its input: the raw JSONL line, byte for
/// byte, or its row of the Parquet file or Arrow batch (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginalRow<'a> {
    Line(&'a [u8]),
    Row(usize),
}

impl RecordSet {
    /// Where `records[index]` came from in the input.
    pub fn original_row(&self, index: usize) -> OriginalRow<'_> {
        match &self.original {
            OriginalRows::Jsonl(lines) => OriginalRow::Line(&lines[index]),
            OriginalRows::Parquet { rows, .. } => OriginalRow::Row(rows[index]),
        }
    }

    /// Drops records (e.g. ones a scorer could not score under
    /// `--skip-invalid`), keeping the original rows in step.
    pub fn retain(&mut self, mut keep: impl FnMut(usize, &Record) -> bool) {
        let flags: Vec<bool> = self.records.iter().enumerate().map(|(i, r)| keep(i, r)).collect();
        let mut flag = flags.iter();
        self.records.retain(|_| *flag.next().unwrap());
        match &mut self.original {
            OriginalRows::Jsonl(lines) => {
                let mut flag = flags.iter();
                lines.retain(|_| *flag.next().unwrap());
            }
            OriginalRows::Parquet { rows, .. } => {
                let mut flag = flags.iter();
                rows.retain(|_| *flag.next().unwrap());
            }
        }
    }

    /// Writes the records at `keep` (indices into `records`, in any order;
    /// written in input order) to `path` in the input's own format, with every
    /// original field, atomically.
    pub fn write_subset(&self, keep: &[usize], path: &Path) -> std::io::Result<()> {
        let mut sorted = keep.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        match &self.original {
            OriginalRows::Jsonl(lines) => crate::atomic::write_atomic(path, |writer| {
                for &i in &sorted {
                    let line = &lines[i];
                    writer.write_all(line)?;
                    if !line.ends_with(b"\n") {
                        writer.write_all(b"\n")?;
                    }
                }
                Ok(())
            }),
            OriginalRows::Parquet { batch, rows } => {
                let mut mask = vec![false; batch.num_rows()];
                for &i in &sorted {
                    mask[rows[i]] = true;
                }
                let filtered =
                    arrow_select::filter::filter_record_batch(batch, &BooleanArray::from(mask)).map_err(std::io::Error::other)?;
                crate::atomic::write_atomic(path, |writer| {
                    let properties = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
                    let mut parquet = ArrowWriter::try_new(writer, filtered.schema(), Some(properties)).map_err(std::io::Error::other)?;
                    parquet.write(&filtered).map_err(std::io::Error::other)?;
                    parquet.close().map_err(std::io::Error::other)?;
                    Ok(())
                })
            }
        }
    }
}

/// Reads every record of `path`.
pub fn read_records(path: &Path, options: &ReadOptions) -> Result<RecordSet, InputError> {
    let format = InputFormat::of_path(path)?;
    let mut reader = Reader::new(path, options);
    let original = match format {
        InputFormat::Jsonl => reader.read_jsonl()?,
        InputFormat::Parquet | InputFormat::Arrow => reader.read_parquet()?,
    };
    Ok(RecordSet { path: path.to_path_buf(), format, records: reader.records, skipped: reader.skipped, original })
}

/// Reads every row of an Arrow batch handed over in memory, as a Parquet
/// file's rows are read. `source` names the table in locations and default
/// ids (`SOURCE row N`, `SOURCE:N`), as a file name does.
pub fn read_batch(batch: RecordBatch, source: &str, options: &ReadOptions) -> Result<RecordSet, InputError> {
    let path = Path::new(source);
    let mut reader = Reader::new(path, options);
    reader.file_name = source.to_string();
    let original = reader.read_rows(batch)?;
    Ok(RecordSet { path: path.to_path_buf(), format: InputFormat::Arrow, records: reader.records, skipped: reader.skipped, original })
}

struct Reader<'a> {
    path: &'a Path,
    display: String,
    file_name: String,
    options: &'a ReadOptions,
    records: Vec<Record>,
    skipped: Vec<Skipped>,
    seen: HashMap<String, String>,
}

impl<'a> Reader<'a> {
    fn new(path: &'a Path, options: &'a ReadOptions) -> Self {
        Reader {
            path,
            display: path.display().to_string(),
            file_name: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            options,
            records: Vec::new(),
            skipped: Vec::new(),
            seen: HashMap::new(),
        }
    }

    fn io_error(&self, source: std::io::Error) -> InputError {
        InputError::Io { path: self.display.clone(), source }
    }

    fn read_jsonl(&mut self) -> Result<OriginalRows, InputError> {
        let file = File::open(self.path).map_err(|e| self.io_error(e))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut lines = Vec::new();
        let mut line = Vec::new();
        let mut number = 0usize;
        loop {
            line.clear();
            let read = reader.read_until(b'\n', &mut line).map_err(|e| self.io_error(e))?;
            if read == 0 {
                break;
            }
            number += 1;
            if line.trim_ascii().is_empty() {
                continue;
            }
            let location = SourceLocation { file: self.display.clone(), line: Some(number), row: None };
            let default_id = format!("{}:{}", self.file_name, number);
            let parsed = serde_json::from_slice::<Value>(&line)
                .map_err(|e| InputError::Record { location: location.to_string(), message: format!("line is not valid JSON: {e}") });
            let accepted = match parsed {
                Ok(value) => self.accept(value, location, default_id)?,
                Err(error) => self.reject(error, None)?,
            };
            if accepted {
                lines.push(line.clone());
            }
        }
        Ok(OriginalRows::Jsonl(lines))
    }

    fn read_parquet(&mut self) -> Result<OriginalRows, InputError> {
        let format_error = |message: String| InputError::Format { path: self.display.clone(), message };
        let file = File::open(self.path).map_err(|e| self.io_error(e))?;
        let batch = read_parquet_file(file).map_err(format_error)?;
        self.read_rows(batch)
    }

    fn read_rows(&mut self, batch: RecordBatch) -> Result<OriginalRows, InputError> {
        let format_error = |message: String| InputError::Format { path: self.display.clone(), message };
        let objects = batch_to_json_objects(&batch).map_err(|e| format_error(format!("cannot convert rows to JSON: {e}")))?;
        let mut rows = Vec::new();
        for (row, object) in objects.into_iter().enumerate() {
            let location = SourceLocation { file: self.display.clone(), line: None, row: Some(row) };
            let default_id = format!("{}:{}", self.file_name, row);
            if self.accept(Value::Object(object), location, default_id)? {
                rows.push(row);
            }
        }
        Ok(OriginalRows::Parquet { batch, rows })
    }

    /// Adds the record, or skips it; returns whether it was added.
    fn accept(&mut self, value: Value, location: SourceLocation, default_id: String) -> Result<bool, InputError> {
        let record = parse_record(value, &location, default_id, self.options).and_then(|record| match self.seen.get(&record.id) {
            Some(first) => Err(InputError::Field {
                location: location.to_string(),
                field: self.options.fields.id.clone(),
                message: format!("duplicate id `{}`, first seen at {first}", record.id),
            }),
            None => Ok(record),
        });
        match record {
            Ok(record) => {
                self.seen.insert(record.id.clone(), location.to_string());
                self.records.push(record);
                Ok(true)
            }
            Err(error) => self.reject(error, None),
        }
    }

    fn reject(&mut self, error: InputError, id: Option<String>) -> Result<bool, InputError> {
        if !self.options.skip_invalid {
            return Err(error);
        }
        let (location, reason) = match &error {
            InputError::Field { location, field, message } => (location.clone(), format!("field `{field}`: {message}")),
            InputError::Record { location, message } => (location.clone(), message.clone()),
            other => return Err(InputError::Format { path: self.display.clone(), message: other.to_string() }),
        };
        self.skipped.push(Skipped { location, id, reason });
        Ok(false)
    }
}

fn batch_to_json_objects(batch: &RecordBatch) -> Result<Vec<Map<String, Value>>, String> {
    let mut buffer = Vec::new();
    {
        let mut writer = arrow_json::LineDelimitedWriter::new(&mut buffer);
        writer.write(batch).map_err(|e| e.to_string())?;
        writer.finish().map_err(|e| e.to_string())?;
    }
    let mut objects = Vec::with_capacity(batch.num_rows());
    for line in buffer.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<Value>(line).map_err(|e| e.to_string())? {
            Value::Object(object) => objects.push(object),
            other => return Err(format!("row is not an object: {other}")),
        }
    }
    // A row whose every column is null is written as `{}` and still counts.
    if objects.len() != batch.num_rows() {
        return Err(format!("expected {} rows, converted {}", batch.num_rows(), objects.len()));
    }
    Ok(objects)
}

fn parse_record(value: Value, location: &SourceLocation, default_id: String, options: &ReadOptions) -> Result<Record, InputError> {
    let fields = &options.fields;
    let field_error =
        |field: &str, message: String| InputError::Field { location: location.to_string(), field: field.to_string(), message };
    let Value::Object(object) = value else {
        return Err(InputError::Record {
            location: location.to_string(),
            message: format!("expected a JSON object, found `{}`", truncate(&value.to_string())),
        });
    };
    let present = |name: &str| object.get(name).filter(|v| !v.is_null());

    let id = match present(&fields.id) {
        None => default_id,
        Some(value) => identifier(value)
            .ok_or_else(|| field_error(&fields.id, format!("`{}` is not a string or an integer", truncate(&value.to_string()))))?,
    };

    let (prompt, response_turn) = if let Some(value) = present(&fields.prompt) {
        let text =
            value.as_str().ok_or_else(|| field_error(&fields.prompt, format!("`{}` is not a string", truncate(&value.to_string()))))?;
        (Prompt::Text(text.to_string()), None)
    } else if let Some(value) = present(&fields.messages) {
        let turns = chat_turns(value, &fields.messages, "role", "content", location)?;
        if options.questions {
            (Prompt::Chat(turns), None)
        } else {
            split_response_turn(turns)
        }
    } else if let Some(value) = present(&fields.conversations) {
        let turns = chat_turns(value, &fields.conversations, "from", "value", location)?;
        if options.questions {
            (Prompt::Chat(turns), None)
        } else {
            split_response_turn(turns)
        }
    } else if options.prompt_optional {
        (Prompt::Text(String::new()), None)
    } else {
        return Err(field_error(
            &fields.prompt,
            format!(
                "no prompt: none of the fields `{}`, `{}`, `{}` is present (present: {})",
                fields.prompt,
                fields.messages,
                fields.conversations,
                field_list(&object)
            ),
        ));
    };

    let response = match (present(&fields.response), response_turn) {
        _ if options.questions => String::new(),
        (Some(value), _) => value
            .as_str()
            .ok_or_else(|| field_error(&fields.response, format!("`{}` is not a string", truncate(&value.to_string()))))?
            .to_string(),
        (None, Some(turn)) => turn,
        (None, None) => {
            return Err(field_error(
                &fields.response,
                format!("is missing, and the prompt does not end with an assistant turn (present: {})", field_list(&object)),
            ))
        }
    };
    if response.trim().is_empty() && !options.questions {
        return Err(field_error(&fields.response, "is empty: there is nothing to trace".into()));
    }

    let question_id = match present(&fields.question_id) {
        None if options.questions => id.clone(),
        None => format!("prompt-{:016x}", fnv1a64(prompt.canonical_text().as_bytes())),
        Some(value) => identifier(value)
            .ok_or_else(|| field_error(&fields.question_id, format!("`{}` is not a string or an integer", truncate(&value.to_string()))))?,
    };
    let correct = match present(&fields.correct) {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(value) => return Err(field_error(&fields.correct, format!("`{}` is not true or false", truncate(&value.to_string())))),
    };
    let answer = match present(&fields.answer) {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(value) => return Err(field_error(&fields.answer, format!("`{}` is not a string or a number", truncate(&value.to_string())))),
    };
    Ok(Record { id, question_id, prompt, response, correct, answer, source: location.clone() })
}

fn identifier(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

fn field_list(object: &Map<String, Value>) -> String {
    let names: Vec<String> = object.keys().map(|k| format!("`{k}`")).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn truncate(text: &str) -> String {
    const LIMIT: usize = 60;
    match text.char_indices().nth(LIMIT) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

fn normalise_role(role: &str) -> String {
    match role {
        "human" | "user" => "user".into(),
        "gpt" | "assistant" | "model" | "chatgpt" | "bing" | "bard" => "assistant".into(),
        other => other.to_string(),
    }
}

fn chat_turns(
    value: &Value,
    field: &str,
    role_key: &str,
    content_key: &str,
    location: &SourceLocation,
) -> Result<Vec<ChatMessage>, InputError> {
    let error = |path: String, message: String| InputError::Field { location: location.to_string(), field: path, message };
    let items =
        value.as_array().ok_or_else(|| error(field.to_string(), format!("`{}` is not a list of turns", truncate(&value.to_string()))))?;
    if items.is_empty() {
        return Err(error(field.to_string(), "is an empty list of turns".into()));
    }
    let mut turns = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let role = item
            .get(role_key)
            .and_then(Value::as_str)
            .ok_or_else(|| error(format!("{field}[{i}].{role_key}"), "is missing or not a string".into()))?;
        let content = match item.get(content_key) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => text_parts(parts).ok_or_else(|| {
                error(
                    format!("{field}[{i}].{content_key}"),
                    "is a list whose parts are not all text (`{\"type\": \"text\", \"text\": …}`)".into(),
                )
            })?,
            Some(Value::Null) | None => String::new(),
            Some(other) => {
                return Err(error(format!("{field}[{i}].{content_key}"), format!("`{}` is not a string", truncate(&other.to_string()))))
            }
        };
        turns.push(ChatMessage { role: normalise_role(role), content });
    }
    Ok(turns)
}

fn text_parts(parts: &[Value]) -> Option<String> {
    let mut text = String::new();
    for part in parts {
        match part {
            Value::String(s) => text.push_str(s),
            Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("text") => text.push_str(o.get("text")?.as_str()?),
            _ => return None,
        }
    }
    Some(text)
}

fn split_response_turn(mut turns: Vec<ChatMessage>) -> (Prompt, Option<String>) {
    if turns.len() > 1 && turns.last().is_some_and(|t| t.role == "assistant") {
        let response = turns.pop().map(|t| t.content);
        (Prompt::Chat(turns), response)
    } else {
        (Prompt::Chat(turns), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, BooleanArray, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("whence-io-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn read_jsonl_text(name: &str, text: &str, options: &ReadOptions) -> Result<RecordSet, InputError> {
        let dir = scratch(name);
        let path = dir.join("in.jsonl");
        std::fs::write(&path, text).unwrap();
        read_records(&path, options)
    }

    #[test]
    fn prompt_shapes_and_defaults() {
        let text = concat!(
            r#"{"prompt": "P", "response": "R."}"#,
            "\n",
            r#"{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": [{"type": "text", "text": "U"}]}, {"role": "assistant", "content": "A."}]}"#,
            "\n\n",
            r#"{"conversations": [{"from": "human", "value": "H"}, {"from": "gpt", "value": "G."}], "question_id": 7, "answer": 3.5}"#,
            "\n"
        );
        let set = read_jsonl_text("shapes", text, &ReadOptions::default()).unwrap();
        let [a, b, c] = &set.records[..] else { panic!("three records") };
        assert_eq!((a.id.as_str(), a.response.as_str()), ("in.jsonl:1", "R."));
        assert_eq!(a.prompt, Prompt::Text("P".into()));
        assert!(a.question_id.starts_with("prompt-") && a.question_id.len() == 23);
        assert_eq!(b.response, "A.");
        assert_eq!(
            b.prompt,
            Prompt::Chat(vec![
                ChatMessage { role: "system".into(), content: "S".into() },
                ChatMessage { role: "user".into(), content: "U".into() }
            ])
        );
        // Blank line 3 is skipped; line numbers stay those of the file.
        assert_eq!(c.id, "in.jsonl:4");
        assert_eq!(c.prompt, Prompt::Chat(vec![ChatMessage { role: "user".into(), content: "H".into() }]));
        assert_eq!((c.question_id.as_str(), c.answer.as_deref()), ("7", Some("3.5")));
    }

    #[test]
    fn same_prompt_same_default_question_id() {
        let text = "{\"prompt\": \"P\", \"response\": \"x\"}\n{\"prompt\": \"P\", \"response\": \"y\"}\n{\"prompt\": \"Q\", \"response\": \"z\"}\n";
        let set = read_jsonl_text("qid", text, &ReadOptions::default()).unwrap();
        assert_eq!(set.records[0].question_id, set.records[1].question_id);
        assert_ne!(set.records[0].question_id, set.records[2].question_id);
    }

    #[test]
    fn renamed_fields_and_skip_invalid() {
        let options = ReadOptions {
            fields: FieldNames { prompt: "question".into(), answer: "reference_answer".into(), ..Default::default() },
            skip_invalid: true,
            prompt_optional: false,
            questions: false,
        };
        let text =
            "{\"question\": \"Q\", \"response\": \"R\", \"reference_answer\": \"5\"}\n{\"question\": 1, \"response\": \"R\"}\nnot json\n";
        let set = read_jsonl_text("renamed", text, &options).unwrap();
        assert_eq!(set.records.len(), 1);
        assert_eq!(set.records[0].answer.as_deref(), Some("5"));
        assert_eq!(set.skipped.len(), 2);
        assert!(set.skipped[0].reason.contains("field `question`: `1` is not a string"), "{:?}", set.skipped);
        assert!(set.skipped[1].location.ends_with("in.jsonl:3"));
    }

    #[test]
    fn parquet_rows_round_trip_through_write_subset() {
        let dir = scratch("parquet");
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("question", DataType::Utf8, false),
            Field::new("response", DataType::Utf8, false),
            Field::new("correct", DataType::Boolean, true),
            Field::new("extra", DataType::Utf8, true),
        ]));
        let column = |v: &[&str]| Arc::new(StringArray::from(v.to_vec())) as ArrayRef;
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                column(&["a", "b", "c"]),
                column(&["Q1", "Q1", "Q2"]),
                column(&["One.", "Two.", "Three."]),
                Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])) as ArrayRef,
                Arc::new(StringArray::from(vec![Some("x"), None, Some("z")])) as ArrayRef,
            ],
        )
        .unwrap();
        let input = dir.join("in.parquet");
        let mut writer = ArrowWriter::try_new(File::create(&input).unwrap(), schema.clone(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();

        let options = ReadOptions { fields: FieldNames { prompt: "question".into(), ..Default::default() }, ..Default::default() };
        let set = read_records(&input, &options).unwrap();
        assert_eq!(set.format, InputFormat::Parquet);
        assert_eq!(set.records.len(), 3);
        assert_eq!(set.records[1].correct, None);
        assert_eq!(set.records[2].source.to_string(), format!("{} row 2", input.display()));

        let output = dir.join("kept.parquet");
        set.write_subset(&[2, 0], &output).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&output).unwrap()).unwrap();
        assert_eq!(reader.schema().fields(), schema.fields());
        let kept: Vec<RecordBatch> = reader.build().unwrap().collect::<Result<_, _>>().unwrap();
        let ids = kept[0].column(0).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(ids.iter().collect::<Vec<_>>(), vec![Some("a"), Some("c")]);
        let extra = kept[0].column(4).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(extra.iter().collect::<Vec<_>>(), vec![Some("x"), Some("z")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Reads a whole Parquet file into one batch. The parquet crate asserts on
/// some malformed metadata (e.g. "column start and length should not be
/// negative", found by the `records_parquet` fuzz target), so a panic while
/// decoding is caught and becomes an error, never a crash.
fn read_parquet_file(file: File) -> Result<RecordBatch, String> {
    let decode = move || -> Result<RecordBatch, String> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| format!("not a readable Parquet file: {e}"))?;
        let schema = builder.schema().clone();
        let batches: Vec<RecordBatch> = builder
            .build()
            .map_err(|e| format!("not a readable Parquet file: {e}"))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("cannot decode Parquet data: {e}"))?;
        arrow_select::concat::concat_batches(&schema, &batches).map_err(|e| format!("cannot decode Parquet data: {e}"))
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).unwrap_or_else(|panic| {
        let reason = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the Parquet decoder failed".into());
        Err(format!("not a readable Parquet file (malformed metadata: {reason})"))
    })
}

#[cfg(test)]
mod parquet_regressions {
    /// Found by the `records_parquet` fuzz target: metadata with a negative
    /// column start made the parquet crate panic; now an input error.
    #[test]
    fn a_parquet_file_with_negative_column_offsets_is_an_error_not_a_panic() {
        let crash =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/records_parquet/regression-negative-column-start");
        let bytes = std::fs::read(&crash).unwrap();
        // The fuzz input is a flags byte, then the file.
        let dir = std::env::temp_dir().join(format!("whence-io-parquet-regression-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.parquet");
        std::fs::write(&path, &bytes[1..]).unwrap();
        let error = super::read_parquet_file(std::fs::File::open(&path).unwrap()).unwrap_err();
        assert!(error.contains("not a readable Parquet file"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
