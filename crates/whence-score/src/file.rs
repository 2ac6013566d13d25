//! The `file:` scorer: token log-probabilities computed elsewhere (captured
//! while sampling, by `whence score`, or released with a dataset), one
//! record per JSONL line or Parquet row, in either of two shapes:
//!
//! - `{"id": "…", "offsets": [[start, end], …], "logprobs": [ … ]}`: byte
//!   offsets into the response and natural-log probabilities;
//! - `{"id": "…", "token_ids": [ … ], "logprobs": [ … ]}`: the response's
//!   token ids (the response's only, not the prompt's: the shape of vLLM's
//!   generation output and of released teacher-logprob datasets), turned into
//!   byte spans with the model's tokenizer ([`FileScorer::with_decoder`];
//!   see [`crate::IdDecoder`] for how).
//!
//! A Parquet file has an `id` column, a `logprobs` list column and an
//! `offsets` or `token_ids` list column; it is read one row group at a time.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use serde::de::IgnoredAny;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use whence_core::{ByteSpan, Record};

use crate::token_ids::{IdDecoder, SpanError};
use crate::{validate, ModelInfo, ScoreError, Scorer, TokenLogprobs};

/// Where one record's line sits in a JSONL file.
#[derive(Debug, Clone, Copy)]
struct LineEntry {
    offset: u64,
    length: usize,
    line: usize,
}

/// Where one record's row sits in a Parquet file.
#[derive(Debug, Clone, Copy)]
struct RowEntry {
    group: usize,
    row_in_group: usize,
    /// 0-based over the file, as `whence` names Parquet rows elsewhere.
    row: usize,
}

/// The row group last read, as one JSON line per row.
#[derive(Debug)]
struct LoadedGroup {
    group: usize,
    json: Vec<u8>,
    rows: Vec<Range<usize>>,
}

struct ParquetRows {
    file: File,
    metadata: ArrowReaderMetadata,
    index: HashMap<String, RowEntry>,
    /// The root columns scoring reads (`offsets`/`token_ids`, `logprobs`).
    columns: Vec<usize>,
    loaded: Option<LoadedGroup>,
}

enum Rows {
    Jsonl {
        file: File,
        index: HashMap<String, LineEntry>,
    },
    Parquet(Box<ParquetRows>),
    /// An Arrow table handed over in memory, as one JSON line per row (the
    /// form a Parquet row group is read in), and each id's row.
    Memory {
        json: Vec<u8>,
        rows: Vec<Range<usize>>,
        index: HashMap<String, usize>,
    },
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rows::Jsonl { index, .. } => write!(f, "Jsonl({} records)", index.len()),
            Rows::Parquet(rows) => write!(f, "Parquet({} records)", rows.index.len()),
            Rows::Memory { index, .. } => write!(f, "Memory({} records)", index.len()),
        }
    }
}

/// Reads precomputed token log-probabilities from a JSONL or Parquet file.
///
/// Opening indexes the file (id → line or row) and fingerprints its
/// content; each record's scores are parsed and checked against its
/// response when it is scored, so memory stays small for large files.
#[derive(Debug)]
pub struct FileScorer {
    path: PathBuf,
    rows: Rows,
    info: ModelInfo,
    buffer: Vec<u8>,
    /// Hex sha256 of the file's bytes.
    content_digest: String,
    /// Where the file first gives token ids, if it does.
    token_ids_at: Option<String>,
    decoder: Option<IdDecoder>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: Option<serde_json::Value>,
    token_ids: Option<IgnoredAny>,
}

/// How a line places its tokens in the response.
#[derive(Deserialize)]
struct ScoreLine {
    #[serde(default)]
    offsets: Option<Vec<(usize, usize)>>,
    #[serde(default)]
    token_ids: Option<Vec<u32>>,
    logprobs: Vec<f64>,
}

fn id_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

/// The record id of one line or row; `location` names it for errors.
fn parse_id(content: &[u8], location: &str) -> Result<(String, bool), ScoreError> {
    let parsed: IdOnly = serde_json::from_slice(content)
        .map_err(|e| ScoreError::InvalidSource(format!("{location}: line {}", json_problem(content, &e))))?;
    let id = match parsed.id.as_ref() {
        None => return Err(ScoreError::InvalidSource(format!("{location}: field `id` is missing"))),
        Some(value) => id_text(value)
            .ok_or_else(|| ScoreError::InvalidSource(format!("{location}: field `id`: `{value}` is not a string or an integer")))?,
    };
    Ok((id, parsed.token_ids.is_some()))
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

const NO_TOKENIZER_HINT: &str = "hint: pass --tokenizer ROLE=DIR (ROLE: teacher, student, distilled, model, or a candidate's name), DIR being the scoring model's checkpoint or a directory with its tokenizer.json: the ids are decoded to find each token's bytes in the response";

/// JSON lines of `batch`, one per row (a row whose columns are all null is `{}`).
fn batch_json(batch: &arrow_array::RecordBatch, json: &mut Vec<u8>) -> Result<(), String> {
    let mut writer = arrow_json::LineDelimitedWriter::new(json);
    writer.write(batch).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())
}

fn line_ranges(json: &[u8]) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    for (i, &b) in json.iter().enumerate() {
        if b == b'\n' {
            ranges.push(start..i);
            start = i + 1;
        }
    }
    if start < json.len() {
        ranges.push(start..json.len());
    }
    ranges
}

impl ParquetRows {
    fn open(file: File, display: &str) -> Result<(Self, bool), ScoreError> {
        let invalid = |message: String| ScoreError::InvalidSource(format!("{display}: {message}"));
        let metadata = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
            .map_err(|e| invalid(format!("not a readable Parquet file: {e}")))?;
        let names: Vec<String> = metadata.schema().fields().iter().map(|f| f.name().clone()).collect();
        let column = |name: &str| names.iter().position(|n| n == name);
        let listing = names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
        let id = column("id").ok_or_else(|| invalid(format!("column `id` is missing (columns: {listing})")))?;
        let logprobs = column("logprobs").ok_or_else(|| invalid(format!("column `logprobs` is missing (columns: {listing})")))?;
        let positions = match (column("offsets"), column("token_ids")) {
            (Some(_), Some(_)) => return Err(invalid("has both an `offsets` and a `token_ids` column; give one".into())),
            (None, None) => {
                return Err(invalid(format!("has neither an `offsets` column (byte spans) nor a `token_ids` column (columns: {listing})")))
            }
            (Some(offsets), None) => offsets,
            (None, Some(token_ids)) => token_ids,
        };
        let holds_token_ids = column("token_ids").is_some();
        let decode = |e: parquet::errors::ParquetError| invalid(format!("cannot decode Parquet data: {e}"));
        let reader =
            ParquetRecordBatchReaderBuilder::new_with_metadata(file.try_clone().map_err(|e| invalid(e.to_string()))?, metadata.clone())
                .with_projection(ProjectionMask::roots(metadata.parquet_schema(), [id]))
                .build()
                .map_err(decode)?;
        let group_sizes: Vec<usize> = metadata.metadata().row_groups().iter().map(|g| g.num_rows() as usize).collect();
        let (mut group, mut row_in_group) = (0usize, 0usize);
        let mut index: HashMap<String, RowEntry> = HashMap::new();
        let mut row = 0usize;
        let mut json = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| invalid(format!("cannot decode Parquet data: {e}")))?;
            json.clear();
            batch_json(&batch, &mut json).map_err(|e| invalid(format!("cannot convert rows to JSON: {e}")))?;
            for range in line_ranges(&json) {
                while group < group_sizes.len() && row_in_group >= group_sizes[group] {
                    group += 1;
                    row_in_group = 0;
                }
                let location = format!("{display} row {row}");
                let (record_id, _) = parse_id(&json[range], &location)?;
                if let Some(previous) = index.insert(record_id.clone(), RowEntry { group, row_in_group, row }) {
                    return Err(ScoreError::InvalidSource(format!(
                        "{location}: field `id`: duplicate id `{record_id}`, first seen at row {}",
                        previous.row
                    )));
                }
                row += 1;
                row_in_group += 1;
            }
        }
        let rows = ParquetRows { file, metadata, index, columns: vec![positions, logprobs], loaded: None };
        Ok((rows, holds_token_ids))
    }

    /// Reads row group `group` (unless it is the one already read).
    fn load(&mut self, group: usize, display: &str) -> Result<&LoadedGroup, ScoreError> {
        if self.loaded.as_ref().is_none_or(|loaded| loaded.group != group) {
            let invalid = |message: String| ScoreError::InvalidSource(format!("{display}: {message}"));
            let file =
                self.file.try_clone().map_err(|source| ScoreError::Io { context: format!("cannot read scorer file {display}"), source })?;
            let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.metadata.clone())
                .with_projection(ProjectionMask::roots(self.metadata.parquet_schema(), self.columns.iter().copied()))
                .with_row_groups(vec![group])
                .build()
                .map_err(|e| invalid(format!("cannot decode Parquet data: {e}")))?;
            let mut json = Vec::new();
            for batch in reader {
                let batch = batch.map_err(|e| invalid(format!("cannot decode Parquet data: {e}")))?;
                batch_json(&batch, &mut json).map_err(|e| invalid(format!("cannot convert rows to JSON: {e}")))?;
            }
            let rows = line_ranges(&json);
            self.loaded = Some(LoadedGroup { group, json, rows });
        }
        Ok(self.loaded.as_ref().expect("just loaded"))
    }
}

impl FileScorer {
    /// Opens and indexes `path`: Parquet when it starts with Parquet's magic
    /// bytes, JSONL otherwise.
    pub fn open(path: &Path) -> Result<Self, ScoreError> {
        let display = path.display().to_string();
        let io_error = |source| ScoreError::Io { context: format!("cannot read scorer file {display}"), source };
        let mut file = File::open(path).map_err(io_error)?;
        let mut hasher = Sha256::new();
        let mut magic = [0u8; 4];
        let is_parquet = file.read_exact(&mut magic).is_ok() && &magic == b"PAR1";
        file.seek(SeekFrom::Start(0)).map_err(io_error)?;
        let (rows, token_ids_at) = if is_parquet {
            std::io::copy(&mut file, &mut hasher).map_err(io_error)?;
            let (rows, holds_token_ids) = ParquetRows::open(file, &display)?;
            (Rows::Parquet(Box::new(rows)), holds_token_ids.then(|| format!("{display} (column `token_ids`)")))
        } else {
            Self::index_jsonl(file, &display, &mut hasher)?
        };
        let content_digest = format!("{:x}", hasher.finalize());
        Ok(FileScorer {
            path: path.to_path_buf(),
            rows,
            info: ModelInfo { kind: "file".into(), source: display, fingerprint: format!("sha256:{content_digest}") },
            buffer: Vec::new(),
            content_digest,
            token_ids_at,
            decoder: None,
        })
    }

    /// Scores given as an Arrow table in memory (the Python API's
    /// precomputed log-probabilities), with the columns of a Parquet scorer
    /// file: `id`, `logprobs`, and `offsets` or `token_ids`. `source` names
    /// the table in errors (`SOURCE row N`) and in the summary; the
    /// fingerprint is the sha256 of the rows' content, so the same numbers
    /// give the same fingerprint wherever they come from.
    pub fn from_batch(batch: &arrow_array::RecordBatch, source: &str) -> Result<Self, ScoreError> {
        let invalid = |message: String| ScoreError::InvalidSource(format!("{source}: {message}"));
        let schema = batch.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let listing = names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
        let has = |name: &str| names.contains(&name);
        for name in ["id", "logprobs"] {
            if !has(name) {
                return Err(invalid(format!("column `{name}` is missing (columns: {listing})")));
            }
        }
        match (has("offsets"), has("token_ids")) {
            (true, true) => return Err(invalid("has both an `offsets` and a `token_ids` column; give one".into())),
            (false, false) => {
                return Err(invalid(format!("has neither an `offsets` column (byte spans) nor a `token_ids` column (columns: {listing})")))
            }
            _ => {}
        }
        let keep: Vec<usize> =
            ["id", "offsets", "token_ids", "logprobs"].iter().filter_map(|name| names.iter().position(|n| n == name)).collect();
        let projected = batch.project(&keep).map_err(|e| invalid(e.to_string()))?;
        let mut json = Vec::new();
        batch_json(&projected, &mut json).map_err(|e| invalid(format!("cannot convert rows to JSON: {e}")))?;
        let rows = line_ranges(&json);
        let mut index = HashMap::with_capacity(rows.len());
        for (row, range) in rows.iter().enumerate() {
            let location = format!("{source} row {row}");
            let (id, _) = parse_id(&json[range.clone()], &location)?;
            if let Some(previous) = index.insert(id.clone(), row) {
                return Err(ScoreError::InvalidSource(format!(
                    "{location}: field `id`: duplicate id `{id}`, first seen at row {previous}"
                )));
            }
        }
        let content_digest = format!("{:x}", Sha256::digest(&json));
        let token_ids_at = has("token_ids").then(|| format!("{source} (column `token_ids`)"));
        Ok(FileScorer {
            path: PathBuf::from(source),
            rows: Rows::Memory { json, rows, index },
            info: ModelInfo { kind: "table".into(), source: source.to_string(), fingerprint: format!("sha256:{content_digest}") },
            buffer: Vec::new(),
            content_digest,
            token_ids_at,
            decoder: None,
        })
    }

    fn index_jsonl(file: File, display: &str, hasher: &mut Sha256) -> Result<(Rows, Option<String>), ScoreError> {
        let io_error = |source| ScoreError::Io { context: format!("cannot read scorer file {display}"), source };
        let mut reader = BufReader::with_capacity(1 << 20, file.try_clone().map_err(io_error)?);
        let mut index: HashMap<String, LineEntry> = HashMap::new();
        let mut token_ids_at = None;
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
            let (id, has_token_ids) = parse_id(content, &location)?;
            if has_token_ids && token_ids_at.is_none() {
                token_ids_at = Some(location.clone());
            }
            let entry = LineEntry { offset: start, length: read, line: number };
            if let Some(previous) = index.insert(id.clone(), entry) {
                return Err(ScoreError::InvalidSource(format!(
                    "{location}: field `id`: duplicate id `{id}`, first seen at line {}",
                    previous.line
                )));
            }
        }
        Ok((Rows::Jsonl { file, index }, token_ids_at))
    }

    /// How many records the file holds.
    pub fn len(&self) -> usize {
        match &self.rows {
            Rows::Jsonl { index, .. } => index.len(),
            Rows::Parquet(rows) => rows.index.len(),
            Rows::Memory { index, .. } => index.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the file first gives `token_ids` (`FILE:LINE`, or the Parquet
    /// column), if it does: it then needs [`FileScorer::with_decoder`].
    pub fn token_ids_at(&self) -> Option<&str> {
        self.token_ids_at.as_deref()
    }

    /// Turns `token_ids` into byte spans with `decoder`. When the file holds
    /// token ids, the fingerprint then covers the tokenizer too (the same
    /// ids under another tokenizer are other scores); otherwise the decoder
    /// is not used and nothing changes.
    pub fn with_decoder(mut self, decoder: IdDecoder) -> Self {
        if self.token_ids_at.is_some() {
            let mut hasher = Sha256::new();
            hasher.update(self.content_digest.as_bytes());
            hasher.update(b"\0tokenizer:");
            hasher.update(decoder.digest().as_bytes());
            self.info.fingerprint = format!("sha256:{:x}", hasher.finalize());
        }
        self.decoder = Some(decoder);
        self
    }

    /// Reads the record's line or row into `self.buffer`; returns where it is.
    fn read_entry(&mut self, record: &Record) -> Result<String, ScoreError> {
        let what = if matches!(self.rows, Rows::Memory { .. }) { "scorer table" } else { "scorer file" };
        let missing = || ScoreError::MissingRecord {
            scorer: format!("{what} {}", self.info.source),
            id: record.id.clone(),
            input: record.source.to_string(),
        };
        let source = &self.info.source;
        match &mut self.rows {
            Rows::Jsonl { file, index } => {
                let entry = *index.get(&record.id).ok_or_else(missing)?;
                let io = |source_error| ScoreError::Io { context: format!("cannot read scorer file {source}"), source: source_error };
                self.buffer.resize(entry.length, 0);
                file.seek(SeekFrom::Start(entry.offset)).map_err(io)?;
                file.read_exact(&mut self.buffer).map_err(io)?;
                Ok(format!("{source}:{}", entry.line))
            }
            Rows::Parquet(rows) => {
                let entry = *rows.index.get(&record.id).ok_or_else(missing)?;
                let loaded = rows.load(entry.group, source)?;
                let range = loaded.rows.get(entry.row_in_group).cloned().ok_or_else(|| {
                    ScoreError::InvalidSource(format!("{source}: row group {} holds fewer rows than its metadata says", entry.group))
                })?;
                self.buffer.clear();
                self.buffer.extend_from_slice(&loaded.json[range]);
                Ok(format!("{source} row {}", entry.row))
            }
            Rows::Memory { json, rows, index } => {
                let row = *index.get(&record.id).ok_or_else(missing)?;
                self.buffer.clear();
                self.buffer.extend_from_slice(&json[rows[row].clone()]);
                Ok(format!("{source} row {row}"))
            }
        }
    }

    fn parse(&self, location: &str) -> Result<ScoreLine, ScoreError> {
        let content = self.buffer.trim_ascii();
        serde_json::from_slice::<ScoreLine>(content).map_err(|error| diagnose(content, &error, location))
    }

    /// The byte spans of a line's `token_ids` in `record`'s response.
    fn token_spans(&self, ids: &[u32], logprobs: usize, record: &Record, location: &str) -> Result<Vec<ByteSpan>, ScoreError> {
        let invalid = |field: String, message: String| ScoreError::InvalidRecord { location: location.to_string(), field, message };
        let decoder = self.decoder.as_ref().ok_or_else(|| {
            ScoreError::InvalidSource(format!(
                "{location}: field `token_ids`: the scorer file gives token ids, and no tokenizer is given to decode them\n{NO_TOKENIZER_HINT}"
            ))
        })?;
        if ids.len() != logprobs {
            return Err(invalid(
                "logprobs".into(),
                format!("{logprobs} log-probabilities for {} token ids; there must be one per token id", ids.len()),
            ));
        }
        decoder.spans(ids, &record.response).map_err(|error| {
            let hint = match error {
                SpanError::Mismatch { .. } => "\nhint: `token_ids` must be the response's tokens only (not the prompt's), from the tokenizer of the model that gave the log-probabilities (--tokenizer ROLE=DIR)",
                _ => "",
            };
            invalid(format!("token_ids[{}]", error.index()), format!("record `{}`: {error} (tokenizer {}){hint}", record.id, decoder.source()))
        })
    }
}

/// Names the field at fault in a line that does not parse as a score line.
fn diagnose(content: &[u8], error: &serde_json::Error, location: &str) -> ScoreError {
    let invalid = |field: String, message: String| ScoreError::InvalidRecord { location: location.to_string(), field, message };
    let value: serde_json::Value = match serde_json::from_slice(content) {
        Ok(value) => value,
        Err(e) => return invalid("(line)".into(), json_problem(content, &e)),
    };
    let positions = match (value.get("offsets"), value.get("token_ids")) {
        (None, None) => return invalid(
            "offsets".into(),
            "is missing; a line gives `offsets` (byte spans in the response) or `token_ids` (the response's token ids, with --tokenizer)"
                .into(),
        ),
        (Some(_), None) => "offsets",
        _ => "token_ids",
    };
    for field in [positions, "logprobs"] {
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
    if let Some(items) = value["token_ids"].as_array() {
        for (i, item) in items.iter().enumerate() {
            if item.as_u64().is_none_or(|id| id > u64::from(u32::MAX)) {
                return invalid(format!("token_ids[{i}]"), format!("`{item}` is not a token id (an integer from 0 to {})", u32::MAX));
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
        let location = self.read_entry(record)?;
        let line = self.parse(&location)?;
        let spans = match (line.offsets, line.token_ids) {
            (Some(_), Some(_)) => {
                return Err(ScoreError::InvalidRecord {
                    location,
                    field: "token_ids".into(),
                    message: "a line gives `offsets` or `token_ids`, not both".into(),
                })
            }
            (Some(offsets), None) => offsets.iter().map(|&(s, e)| ByteSpan { start: s, end: e }).collect(),
            (None, Some(ids)) => self.token_spans(&ids, line.logprobs.len(), record, &location)?,
            (None, None) => {
                let error = <serde_json::Error as serde::de::Error>::custom("no `offsets` or `token_ids`");
                return Err(diagnose(self.buffer.trim_ascii(), &error, &location));
            }
        };
        let scores = TokenLogprobs { spans, logprobs: line.logprobs };
        validate(&scores, &record.response, &location)?;
        Ok(scores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use whence_core::{Prompt, SourceLocation};

    /// `id`, `offsets` (list of [start, end]) and `logprobs` columns.
    fn score_batch(rows: &[(&str, &[(u64, u64)], &[f64])]) -> arrow_array::RecordBatch {
        use arrow_array::builder::{Float64Builder, ListBuilder, UInt64Builder};
        use arrow_array::{ArrayRef, StringArray};
        let ids = StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>());
        let mut offsets = ListBuilder::new(ListBuilder::new(UInt64Builder::new()));
        let mut logprobs = ListBuilder::new(Float64Builder::new());
        for (_, spans, lps) in rows {
            for &(start, end) in spans.iter() {
                offsets.values().values().append_value(start);
                offsets.values().values().append_value(end);
                offsets.values().append(true);
            }
            offsets.append(true);
            logprobs.values().append_slice(lps);
            logprobs.append(true);
        }
        let columns: Vec<(&str, ArrayRef)> =
            vec![("id", Arc::new(ids)), ("offsets", Arc::new(offsets.finish())), ("logprobs", Arc::new(logprobs.finish()))];
        arrow_array::RecordBatch::try_from_iter(columns).unwrap()
    }

    use std::sync::Arc;

    #[test]
    fn a_table_in_memory_scores_as_the_same_rows_in_a_file() {
        let batch = score_batch(&[("a", &[(0, 3), (3, 7)], &[-0.5, -1.25]), ("b", &[(0, 2)], &[-2.0])]);
        let mut table = FileScorer::from_batch(&batch, "scores").unwrap();
        let (_dir, file) = scorer_for(
            "{\"id\":\"a\",\"offsets\":[[0,3],[3,7]],\"logprobs\":[-0.5,-1.25]}\n{\"id\":\"b\",\"offsets\":[[0,2]],\"logprobs\":[-2.0]}\n",
        );
        let mut file = file.unwrap();
        for (id, response) in [("a", "abc defg"), ("b", "xy")] {
            assert_eq!(table.score(&record(id, response)).unwrap(), file.score(&record(id, response)).unwrap());
        }
        assert_eq!(table.info().kind, "table");
        let again = FileScorer::from_batch(&batch, "elsewhere").unwrap();
        assert_eq!(again.info().fingerprint, table.info().fingerprint);
        let error = table.score(&record("c", "zz")).unwrap_err().to_string();
        assert!(error.contains("scorer table scores has no scores for record `c`"), "{error}");
        let error = table.score(&record("b", "x")).unwrap_err().to_string();
        assert_eq!(error, "scores row 1: field `offsets[0]`: span [0, 2) ends past the response, which is 1 bytes long");
    }

    #[test]
    fn a_table_without_the_columns_says_which_it_has() {
        let batch = score_batch(&[("a", &[(0, 1)], &[-0.5])]);
        let no_logprobs = batch.project(&[0, 1]).unwrap();
        let error = FileScorer::from_batch(&no_logprobs, "t").unwrap_err().to_string();
        assert_eq!(error, "t: column `logprobs` is missing (columns: `id`, `offsets`)");
        let twice = score_batch(&[("a", &[(0, 1)], &[-0.5]), ("a", &[(0, 1)], &[-0.5])]);
        let error = FileScorer::from_batch(&twice, "t").unwrap_err().to_string();
        assert_eq!(error, "t row 1: field `id`: duplicate id `a`, first seen at row 0");
    }

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

    fn tiny_decoder() -> IdDecoder {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/fixtures/tiny-qwen2");
        let tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
        IdDecoder::new(tokenizer, dir.display().to_string(), "tiny-qwen2")
    }

    /// The response's ids and their byte offsets as the tokenizer's own
    /// encoding gives them.
    fn encoded(decoder: &IdDecoder, response: &str) -> (Vec<u32>, Vec<(usize, usize)>) {
        let dir = std::path::PathBuf::from(decoder.source());
        let tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
        let encoding = tokenizer.encode(response, false).unwrap();
        (encoding.get_ids().to_vec(), encoding.get_offsets().to_vec())
    }

    fn logprobs(n: usize) -> Vec<f64> {
        (0..n).map(|i| -0.05 - (i % 7) as f64 * 0.3).collect()
    }

    #[test]
    fn token_ids_give_the_spans_of_the_tokenizers_offsets() {
        let decoder = tiny_decoder();
        let response = "So 6 * 7 = 42.\n\nThe answer is \\boxed{42}.";
        let (ids, offsets) = encoded(&decoder, response);
        let lp = logprobs(ids.len());
        let content = format!(
            "{}\n{}\n",
            serde_json::json!({"id": "by-ids", "token_ids": ids, "logprobs": lp}),
            serde_json::json!({"id": "by-offsets", "offsets": offsets, "logprobs": lp}),
        );
        let (_dir, scorer) = scorer_for(&content);
        let scorer = scorer.unwrap();
        assert_eq!(scorer.token_ids_at().unwrap(), format!("{}:1", scorer.path().display()));
        let plain = scorer.info().fingerprint.clone();
        let mut scorer = scorer.with_decoder(decoder);
        assert_ne!(scorer.info().fingerprint, plain, "the fingerprint covers the tokenizer");
        let by_ids = scorer.score(&record("by-ids", response)).unwrap();
        let by_offsets = scorer.score(&record("by-offsets", response)).unwrap();
        assert_eq!(by_ids, by_offsets);
        assert_eq!(by_ids.spans.len(), ids.len());
    }

    #[test]
    fn offsets_files_keep_their_fingerprint_with_a_decoder() {
        let content = "{\"id\": \"a\", \"offsets\": [[0, 1]], \"logprobs\": [-0.5]}\n";
        let (_dir, scorer) = scorer_for(content);
        let scorer = scorer.unwrap();
        assert_eq!(scorer.token_ids_at(), None);
        let expected = format!("sha256:{:x}", Sha256::digest(content.as_bytes()));
        assert_eq!(scorer.info().fingerprint, expected);
        assert_eq!(scorer.with_decoder(tiny_decoder()).info().fingerprint, expected);
    }

    #[test]
    fn token_ids_without_a_tokenizer_are_a_usage_problem() {
        let (_dir, scorer) = scorer_for("{\"id\": \"a\", \"token_ids\": [1, 2], \"logprobs\": [-1, -1]}\n");
        let error = scorer.unwrap().score(&record("a", "xy")).unwrap_err();
        let message = error.to_string();
        assert!(!error.is_record_specific(), "{message}");
        assert!(message.contains("lp.jsonl:1: field `token_ids`: the scorer file gives token ids, and no tokenizer is given"), "{message}");
        assert!(message.contains("hint: pass --tokenizer ROLE=DIR"), "{message}");
    }

    #[test]
    fn token_ids_that_spell_another_text_name_the_record_and_byte() {
        let decoder = tiny_decoder();
        let (ids, _) = encoded(&decoder, "The cat sat.");
        let lp = logprobs(ids.len());
        let content = format!("{}\n", serde_json::json!({"id": "r7", "token_ids": ids, "logprobs": lp}));
        let (_dir, scorer) = scorer_for(&content);
        let mut scorer = scorer.unwrap().with_decoder(decoder);
        let error = scorer.score(&record("r7", "The cot sat.")).unwrap_err();
        let message = error.to_string();
        assert!(error.is_record_specific(), "{message}");
        assert!(message.contains("lp.jsonl:1: field `token_ids["), "{message}");
        assert!(
            message.contains(
                "record `r7`: the ids do not decode to the response: first difference at byte 5: response \"ot sat.\", decoded ids \"at"
            ),
            "{message}"
        );
        assert!(message.contains("(tokenizer ") && message.contains("tiny-qwen2)"), "{message}");
        assert!(message.contains("hint: `token_ids` must be the response's tokens only"), "{message}");
        // One log-probability too few, and an id that is no id.
        let cases = [
            (serde_json::json!({"id": "a", "token_ids": ids, "logprobs": lp[1..]}), "field `logprobs`: "),
            (serde_json::json!({"id": "a", "token_ids": [1, -2], "logprobs": [-1, -1]}), "field `token_ids[1]`: `-2` is not a token id"),
            (
                serde_json::json!({"id": "a", "token_ids": [1, 9_000_000], "logprobs": [-1, -1]}),
                "field `token_ids[1]`: record `a`: id 9000000 is not in the tokenizer's vocabulary",
            ),
            (
                serde_json::json!({"id": "a", "token_ids": [1], "offsets": [[0, 1]], "logprobs": [-1]}),
                "field `token_ids`: a line gives `offsets` or `token_ids`, not both",
            ),
            (serde_json::json!({"id": "a", "logprobs": [-1]}), "field `offsets`: is missing; a line gives `offsets`"),
        ];
        for (line, expected) in cases {
            let (_dir, scorer) = scorer_for(&line.to_string());
            let mut scorer = scorer.unwrap().with_decoder(tiny_decoder());
            let message = scorer.score(&record("a", "The cat sat.")).unwrap_err().to_string();
            assert!(message.contains(expected), "{line}\n  gave: {message}\n  want: {expected}");
        }
    }

    /// Writes a Parquet file: `id`, the list column `column`, `logprobs`;
    /// row groups of two rows.
    fn write_parquet(path: &Path, ids: &[&str], column: &str, positions: arrow_array::ArrayRef, logprobs: &[Vec<f64>]) {
        use arrow_array::{types::Float64Type, ArrayRef, ListArray, RecordBatch, StringArray};
        use std::sync::Arc;
        let logprobs = ListArray::from_iter_primitive::<Float64Type, _, _>(logprobs.iter().map(|l| Some(l.iter().map(|&x| Some(x)))));
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(StringArray::from(ids.to_vec())) as ArrayRef),
            (column, positions),
            ("logprobs", Arc::new(logprobs) as ArrayRef),
        ])
        .unwrap();
        let properties = parquet::file::properties::WriterProperties::builder().set_max_row_group_row_count(Some(2)).build();
        let mut writer = parquet::arrow::ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), Some(properties)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }

    fn id_lists<T: arrow_array::ArrowPrimitiveType>(lists: &[Vec<u32>], convert: impl Fn(u32) -> T::Native) -> arrow_array::ArrayRef {
        std::sync::Arc::new(arrow_array::ListArray::from_iter_primitive::<T, _, _>(
            lists.iter().map(|ids| Some(ids.iter().map(|&id| Some(convert(id))).collect::<Vec<_>>())),
        ))
    }

    #[test]
    fn parquet_files_give_the_same_scores_as_jsonl() {
        use arrow_array::builder::{Int64Builder, ListBuilder};
        use arrow_array::types::{Int64Type, UInt32Type};
        let decoder = tiny_decoder();
        let responses = ["One step.", "Two steps, then 42.", "Three: a, b and c.", "Four é and 🙂."];
        let names = ["a", "b", "c", "d"];
        let encoded: Vec<(Vec<u32>, Vec<(usize, usize)>)> = responses.iter().map(|r| encoded(&decoder, r)).collect();
        let lp: Vec<Vec<f64>> = encoded.iter().map(|(ids, _)| logprobs(ids.len())).collect();
        let dir = tempdir::Dir::new();
        // Token ids as int64 (what pyarrow writes for Python ints) in one
        // file, as uint32 in another; offsets as lists of int64 pairs.
        let ids: Vec<Vec<u32>> = encoded.iter().map(|(ids, _)| ids.clone()).collect();
        let as_i64 = id_lists::<Int64Type>(&ids, i64::from);
        let as_u32 = id_lists::<UInt32Type>(&ids, |id| id);
        let mut pairs = ListBuilder::new(ListBuilder::new(Int64Builder::new()));
        for (_, offsets) in &encoded {
            for &(start, end) in offsets {
                pairs.values().values().append_value(start as i64);
                pairs.values().values().append_value(end as i64);
                pairs.values().append(true);
            }
            pairs.append(true);
        }
        let pairs: arrow_array::ArrayRef = std::sync::Arc::new(pairs.finish());
        let paths = [dir.path().join("i64.parquet"), dir.path().join("u32.parquet"), dir.path().join("offsets.parquet")];
        write_parquet(&paths[0], &names, "token_ids", as_i64, &lp);
        write_parquet(&paths[1], &names, "token_ids", as_u32, &lp);
        write_parquet(&paths[2], &names, "offsets", pairs, &lp);
        let mut scorers: Vec<FileScorer> = paths.iter().map(|p| FileScorer::open(p).unwrap().with_decoder(tiny_decoder())).collect();
        assert_eq!(scorers[0].token_ids_at().unwrap(), format!("{} (column `token_ids`)", paths[0].display()));
        assert_eq!(scorers[2].token_ids_at(), None);
        let bytes = std::fs::read(&paths[2]).unwrap();
        assert_eq!(scorers[2].info().fingerprint, format!("sha256:{:x}", Sha256::digest(&bytes)));
        // Out of order, so that row groups are read again.
        for i in [3, 0, 2, 1, 3] {
            let record = record(names[i], responses[i]);
            let expected: Vec<ByteSpan> = encoded[i].1.iter().map(|&(s, e)| ByteSpan::new(s, e)).collect();
            let from_offsets = scorers[2].score(&record).unwrap();
            assert_eq!(from_offsets.logprobs, lp[i]);
            assert_eq!(from_offsets.spans, expected);
            for scorer in &mut scorers[..2] {
                let scores = scorer.score(&record).unwrap();
                assert_eq!(scores.logprobs, lp[i]);
                assert_eq!(scores.spans, expected, "{}", responses[i]);
            }
        }
        let message = scorers[0].score(&record("zz", "x")).unwrap_err().to_string();
        assert!(message.contains("has no scores for record `zz`"), "{message}");
    }

    #[test]
    fn parquet_files_name_what_is_missing() {
        use arrow_array::types::Int64Type;
        let dir = tempdir::Dir::new();
        let path = dir.path().join("bad.parquet");
        write_parquet(&path, &["a"], "positions", id_lists::<Int64Type>(&[vec![1]], i64::from), &[vec![-1.0]]);
        let message = FileScorer::open(&path).unwrap_err().to_string();
        assert!(
            message.contains("bad.parquet: has neither an `offsets` column (byte spans) nor a `token_ids` column (columns: `id`, `positions`, `logprobs`)"),
            "{message}"
        );
        write_parquet(&path, &["a", "a"], "token_ids", id_lists::<Int64Type>(&[vec![1], vec![1]], i64::from), &[vec![-1.0], vec![-1.0]]);
        let message = FileScorer::open(&path).unwrap_err().to_string();
        assert!(message.contains("bad.parquet row 1: field `id`: duplicate id `a`, first seen at row 0"), "{message}");
    }
}
