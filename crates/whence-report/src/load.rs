//! Reading what `whence trace`, `select` and `attribute` wrote (SPEC §9).
//!
//! Tables are read from Parquet or JSONL (Parquet rows go through arrow's
//! JSON writer, so both formats share one set of row types); summaries are
//! read into types that hold only the fields the report shows, so that new
//! summary fields do not break old reports.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::ReportError;

/// Everything found at the report's input path.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub trace: Option<TraceRun>,
    pub selects: Vec<SelectRun>,
    pub attribute: Option<AttributeRun>,
    /// `demo.json` of a `whence demo` run.
    pub demo: Option<whence_world::summary::DemoSummary>,
}

#[derive(Debug, Clone)]
pub struct TraceRun {
    pub dir: PathBuf,
    pub summary: TraceSummary,
    pub actions: Vec<ActionRow>,
    pub positions: Vec<PositionRow>,
}

#[derive(Debug, Clone)]
pub struct SelectRun {
    /// The `FILE.summary.json` read.
    pub path: PathBuf,
    pub summary: SelectSummary,
}

#[derive(Debug, Clone)]
pub struct AttributeRun {
    pub dir: PathBuf,
    pub summary: AttributeSummary,
    /// Each candidate's position profile, in the summary's candidate order.
    pub profiles: Vec<(String, Vec<PositionRow>)>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InputJson {
    pub path: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BetaSettingsJson {
    pub stage: String,
    pub steps: usize,
    pub bins: usize,
}

/// A row of the β search table, as `whence-core` writes it.
pub use whence_core::BetaStep as BetaStepJson;

#[derive(Debug, Clone, Deserialize)]
pub struct BetaSearchJson {
    pub beta: f64,
    pub settings: BetaSettingsJson,
    pub trajectories: usize,
    pub steps: Vec<BetaStepJson>,
    pub stopped_early: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CorrectnessJson {
    pub correct: usize,
    pub incorrect: usize,
    pub unknown: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MarkerJson {
    pub tokens: u64,
    pub index: usize,
}

/// `summary.json` of `whence trace`.
#[derive(Debug, Clone, Deserialize)]
pub struct TraceSummary {
    pub whence_version: String,
    pub input: InputJson,
    pub alpha: f64,
    pub beta: f64,
    pub beta_mode: String,
    pub beta_search: Option<BetaSearchJson>,
    pub trajectories: usize,
    pub actions: usize,
    pub scored_actions: usize,
    pub unscored_actions: usize,
    pub label_counts: Map<String, Value>,
    #[serde(default)]
    pub correctness: CorrectnessJson,
    pub skipped_records: usize,
    #[serde(default)]
    pub token_markers: Vec<MarkerJson>,
    #[serde(default)]
    pub models: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CandidateJson {
    pub id: String,
    pub actions: usize,
    pub teacher: usize,
    pub student: usize,
    pub common: usize,
    pub unscored: usize,
    pub student_mean_logprob: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct QuestionJson {
    pub question_id: String,
    pub kept: String,
    pub candidates: Vec<CandidateJson>,
}

/// `FILE.summary.json` of `whence select`.
#[derive(Debug, Clone, Deserialize)]
pub struct SelectSummary {
    pub whence_version: String,
    pub input: InputJson,
    pub strategy: String,
    pub seed: Option<u64>,
    pub beta: f64,
    pub beta_mode: String,
    pub beta_search: Option<BetaSearchJson>,
    pub records: usize,
    pub questions: usize,
    pub kept: usize,
    pub skipped_records: usize,
    #[serde(default)]
    pub models: Map<String, Value>,
    pub per_question: Vec<QuestionJson>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CandidateResultJson {
    pub name: String,
    pub beta: f64,
    pub rank: usize,
    pub teacher_share: Option<f64>,
    pub student_share: Option<f64>,
    pub shared_share: Option<f64>,
    pub boosted_share: Option<f64>,
    pub margin: Option<f64>,
    pub mean_p_candidate_teacher_actions: Option<f64>,
    pub mean_p_distilled_teacher_actions: Option<f64>,
    pub teacher_correct_minus_incorrect_first_400: Option<f64>,
    pub beta_search: Option<BetaSearchJson>,
    #[serde(default)]
    pub model: Value,
}

/// `attribution.json` of `whence attribute`.
#[derive(Debug, Clone, Deserialize)]
pub struct AttributeSummary {
    pub whence_version: String,
    pub input: InputJson,
    pub alpha: f64,
    pub beta_mode: String,
    pub ranking_statistic: String,
    pub ranking: Vec<String>,
    pub trajectories: usize,
    pub candidates: Vec<CandidateResultJson>,
    pub skipped_records: usize,
}

/// One row of `actions.*`.
#[derive(Debug, Clone, Deserialize)]
pub struct ActionRow {
    pub id: String,
    pub correct: Option<bool>,
    pub index: u64,
    #[serde(default)]
    pub special: bool,
    pub text: String,
    pub tokens_teacher: Option<u64>,
    pub tokens_student: Option<u64>,
    pub tokens_distilled: Option<u64>,
    pub p_teacher: Option<f64>,
    pub p_student: Option<f64>,
    pub p_distilled: Option<f64>,
    pub label: String,
}

#[derive(Debug, Clone, Deserialize)]
struct PositionJson {
    index: u64,
    #[serde(default)]
    marker_tokens: Option<u64>,
    n_all: u64,
    n_correct: u64,
    n_incorrect: u64,
    teacher_all: Option<f64>,
    student_all: Option<f64>,
    shared_all: Option<f64>,
    boosted_all: Option<f64>,
    teacher_correct: Option<f64>,
    student_correct: Option<f64>,
    shared_correct: Option<f64>,
    boosted_correct: Option<f64>,
    teacher_incorrect: Option<f64>,
    student_incorrect: Option<f64>,
    shared_incorrect: Option<f64>,
    boosted_incorrect: Option<f64>,
}

/// Group of a position profile: all responses, correct ones, incorrect ones.
pub const GROUPS: [&str; 3] = ["all", "correct", "incorrect"];

/// One row of `positions.*`: per group, the count and the four label
/// fractions (teacher, student, shared, boosted).
#[derive(Debug, Clone, PartialEq)]
pub struct PositionRow {
    pub index: usize,
    pub marker_tokens: Option<u64>,
    pub n: [usize; 3],
    pub fractions: [[Option<f64>; 4]; 3],
}

impl From<PositionJson> for PositionRow {
    fn from(p: PositionJson) -> Self {
        PositionRow {
            index: p.index as usize,
            marker_tokens: p.marker_tokens,
            n: [p.n_all as usize, p.n_correct as usize, p.n_incorrect as usize],
            fractions: [
                [p.teacher_all, p.student_all, p.shared_all, p.boosted_all],
                [p.teacher_correct, p.student_correct, p.shared_correct, p.boosted_correct],
                [p.teacher_incorrect, p.student_incorrect, p.shared_incorrect, p.boosted_incorrect],
            ],
        }
    }
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, ReportError> {
    let text = std::fs::read_to_string(path).map_err(ReportError::read(path))?;
    serde_json::from_str(&text).map_err(|e| ReportError::Parse { path: path.to_path_buf(), line: None, message: e.to_string() })
}

/// The `command` field of a summary, or `None` when it is not a JSON object with one.
fn command_of(path: &Path) -> Result<Option<String>, ReportError> {
    #[derive(Deserialize)]
    struct Head {
        command: Option<String>,
    }
    let head: Head = read_json(path)?;
    Ok(head.command)
}

/// Reads `DIR/NAME.parquet` or, failing that, `DIR/NAME.jsonl`.
pub fn read_table<T: DeserializeOwned>(dir: &Path, name: &str) -> Result<Vec<T>, ReportError> {
    let parquet = dir.join(format!("{name}.parquet"));
    if parquet.is_file() {
        return read_parquet(&parquet);
    }
    let jsonl = dir.join(format!("{name}.jsonl"));
    if jsonl.is_file() {
        return read_jsonl(&jsonl);
    }
    Err(ReportError::MissingTable { dir: dir.to_path_buf(), name: name.to_string() })
}

fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, ReportError> {
    let text = std::fs::read_to_string(path).map_err(ReportError::read(path))?;
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row = serde_json::from_str(line).map_err(|e| ReportError::Parse {
            path: path.to_path_buf(),
            line: Some(n + 1),
            message: e.to_string(),
        })?;
        rows.push(row);
    }
    Ok(rows)
}

fn read_parquet<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, ReportError> {
    let parse = |message: String| ReportError::Parse { path: path.to_path_buf(), line: None, message };
    let file = File::open(path).map_err(ReportError::read(path))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_batch_size(8192).build())
        .map_err(|e| parse(e.to_string()))?;
    let mut rows = Vec::new();
    let mut buffer = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| parse(e.to_string()))?;
        buffer.clear();
        let mut writer = arrow_json::LineDelimitedWriter::new(&mut buffer);
        writer.write(&batch).map_err(|e| parse(e.to_string()))?;
        writer.finish().map_err(|e| parse(e.to_string()))?;
        drop(writer);
        for row in serde_json::Deserializer::from_slice(&buffer).into_iter::<T>() {
            rows.push(row.map_err(|e| parse(e.to_string()))?);
        }
    }
    Ok(rows)
}

fn read_trace(dir: &Path) -> Result<TraceRun, ReportError> {
    let summary: TraceSummary = read_json(&dir.join("summary.json"))?;
    let actions = read_table(dir, "actions")?;
    let positions = read_table::<PositionJson>(dir, "positions")?.into_iter().map(PositionRow::from).collect();
    Ok(TraceRun { dir: dir.to_path_buf(), summary, actions, positions })
}

fn read_attribute(dir: &Path) -> Result<AttributeRun, ReportError> {
    let summary: AttributeSummary = read_json(&dir.join("attribution.json"))?;
    let mut profiles = Vec::new();
    for candidate in &summary.candidates {
        let rows = read_table::<PositionJson>(dir, &format!("positions-{}", candidate.name))?;
        profiles.push((candidate.name.clone(), rows.into_iter().map(PositionRow::from).collect()));
    }
    Ok(AttributeRun { dir: dir.to_path_buf(), summary, profiles })
}

fn read_select(path: &Path) -> Result<SelectRun, ReportError> {
    Ok(SelectRun { path: path.to_path_buf(), summary: read_json(path)? })
}

/// Finds and reads the whence outputs at `path`: a directory (a trace's
/// `summary.json`, an attribution's `attribution.json`, and any select
/// `*.summary.json`), or a single file (a summary, or a select output whose
/// `.summary.json` lies beside it).
pub fn discover(path: &Path) -> Result<Run, ReportError> {
    if !path.exists() {
        return Err(ReportError::Missing { path: path.to_path_buf() });
    }
    let mut run = Run::default();
    if path.is_dir() {
        let summary = path.join("summary.json");
        if summary.is_file() {
            match command_of(&summary)?.as_deref() {
                Some("trace") => run.trace = Some(read_trace(path)?),
                Some(other) => return Err(ReportError::UnknownCommand { path: summary, command: other.to_string() }),
                None => return Err(ReportError::UnknownCommand { path: summary, command: String::new() }),
            }
        }
        if path.join("attribution.json").is_file() {
            run.attribute = Some(read_attribute(path)?);
        }
        if path.join("demo.json").is_file() {
            run.demo = Some(read_json(&path.join("demo.json"))?);
        }
        let mut names: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(ReportError::read(path))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n.to_string_lossy().ends_with(".summary.json")))
            .collect();
        names.sort();
        for name in names {
            if command_of(&name)?.as_deref() == Some("select") {
                run.selects.push(read_select(&name)?);
            }
        }
    } else {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let beside = {
            let mut s = path.as_os_str().to_os_string();
            s.push(".summary.json");
            PathBuf::from(s)
        };
        if name == "summary.json" {
            run.trace = Some(read_trace(parent)?);
        } else if name == "attribution.json" {
            run.attribute = Some(read_attribute(parent)?);
        } else if name.ends_with(".summary.json") {
            match command_of(path)?.as_deref() {
                Some("select") => run.selects.push(read_select(path)?),
                Some(other) => return Err(ReportError::UnknownCommand { path: path.to_path_buf(), command: other.to_string() }),
                None => return Err(ReportError::NothingToReport { path: path.to_path_buf() }),
            }
        } else if beside.is_file() {
            run.selects.push(read_select(&beside)?);
        }
    }
    if run.trace.is_none() && run.attribute.is_none() && run.selects.is_empty() {
        return Err(ReportError::NothingToReport { path: path.to_path_buf() });
    }
    Ok(run)
}

/// Where the report goes by default: `DIR/report`, or `report/` beside a file.
pub fn default_report_dir(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("report")
    } else {
        path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).join("report")
    }
}
