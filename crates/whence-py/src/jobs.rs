//! The jobs: trace, select, attribute, score and report.
//!
//! A job runs on a worker thread of its own while the calling thread waits
//! with the GIL released, waking every 100 ms to run Python's signal
//! handlers: on Ctrl-C the call raises `KeyboardInterrupt` at once, the
//! scorers stop at the next record (a checkpoint on the CPU) or batch, and
//! nothing is written, since jobs compute everything before any file is
//! written and files are only written by the results' `write` methods.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use arrow_array::builder::{FixedSizeListBuilder, Float64Builder, ListBuilder, StringBuilder, UInt64Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_pyarrow::IntoPyArrow;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use whence_cli::args::{ModelArgs, ScorerFactory};
use whence_core::{Record, Strategy};
use whence_io::{OriginalRow, OutputFormat};
use whence_pipeline::attribute::{run_attribute, valid_candidate_name, AttributeOutput, Candidate};
use whence_pipeline::select::{run_select, SelectOutput, SelectSettings};
use whence_pipeline::trace::{run_trace, MethodSettings, TraceOutput, TraceScorers};
use whence_pipeline::BetaChoice;
use whence_score::TokenLogprobs;

use crate::errors;
use crate::progress::PyProgress;
use crate::records::{Fields, RecordsArg};
use crate::scorers::{JobControl, ScorerArg};

/// Runs `job` on a worker thread; see the module's documentation.
fn run_job<T: Send + 'static>(
    py: Python<'_>,
    control: &JobControl,
    job: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> PyResult<T> {
    let (sender, receiver) = mpsc::channel();
    std::thread::Builder::new()
        .name("whence-job".into())
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            // The waiting thread may be gone (Ctrl-C): the result is dropped.
            let _ = sender.send(outcome);
        })
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start the job's thread: {e}")))?;
    let mut receiver = receiver;
    loop {
        let (back, received) = py.detach(move || {
            let received = receiver.recv_timeout(Duration::from_millis(100));
            (receiver, received)
        });
        receiver = back;
        match received {
            Ok(Ok(Ok(value))) => return Ok(value),
            Ok(Ok(Err(error))) => {
                let raised = errors::to_py(&error);
                if let Some(cause) = control.raised.lock().expect("not poisoned").take() {
                    raised.set_cause(py, Some(cause));
                }
                return Err(raised);
            }
            Ok(Err(panic)) => {
                let reason = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                return Err(PyRuntimeError::new_err(format!("whence failed (a bug; please report it): {reason}")));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Err(interrupt) = py.check_signals() {
                    control.interrupted.store(true, Ordering::Relaxed);
                    return Err(interrupt);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(PyRuntimeError::new_err("whence failed: the job's thread ended without a result"))
            }
        }
    }
}

/// The model options from the Python layer's dict (the command line's
/// "Models" and "Inference servers" flags; missing: their defaults).
fn model_args(given: Option<&Bound<'_, PyDict>>) -> PyResult<ModelArgs> {
    let mut args = ModelArgs {
        dtype: whence_cli::args::parse_dtype("f32").expect("f32 is a dtype"),
        device: "cpu".into(),
        template: whence_encode::TemplateMode::Auto,
        truncate: false,
        batch_tokens: None,
        threads: None,
        cache: None,
        no_cache: false,
        tokenizers: Vec::new(),
        max_in_flight: 8,
        max_request_tokens: 131072,
        request_timeout: 600.0,
        retries: 8,
        retry_wait: 1.0,
        api_key: std::env::var("WHENCE_API_KEY").ok(),
    };
    let Some(given) = given else { return Ok(args) };
    for (key, value) in given.iter() {
        let key: String = key.extract()?;
        if value.is_none() {
            continue;
        }
        let wrong = |what: &str| errors::input(format!("{key}: give {what}, not `{value}`"));
        match key.as_str() {
            "dtype" => {
                let text: String = value.extract().map_err(|_| wrong("a str"))?;
                args.dtype = whence_cli::args::parse_dtype(&text).map_err(|e| errors::input(format!("dtype: {e}")))?;
            }
            "device" => args.device = value.extract().map_err(|_| wrong("a str"))?,
            "template" => {
                let text: PathBuf = value.extract().map_err(|_| wrong("`auto`, `raw` or a template file"))?;
                args.template = text.display().to_string().parse().expect("infallible");
            }
            "truncate" => args.truncate = value.extract().map_err(|_| wrong("a bool"))?,
            "batch_tokens" => {
                let n: u64 = value.extract().map_err(|_| wrong("a positive int"))?;
                if n == 0 {
                    return Err(errors::input("batch_tokens: must be at least 1"));
                }
                args.batch_tokens = Some(n);
            }
            "threads" => set_threads(value.extract().map_err(|_| wrong("a positive int"))?)?,
            "cache" => {
                if let Ok(false) = value.extract::<bool>() {
                    args.no_cache = true;
                } else {
                    args.cache = Some(value.extract().map_err(|_| wrong("a path, or False for no cache"))?);
                }
            }
            "tokenizers" => {
                if let Ok(dir) = value.extract::<PathBuf>() {
                    args.tokenizers.push(dir.display().to_string());
                } else {
                    let map: std::collections::BTreeMap<String, PathBuf> =
                        value.extract().map_err(|_| wrong("a directory, or a dict of role to directory"))?;
                    args.tokenizers.extend(map.into_iter().map(|(role, dir)| format!("{role}={}", dir.display())));
                }
            }
            "max_in_flight" => args.max_in_flight = value.extract().map_err(|_| wrong("a positive int"))?,
            "max_request_tokens" => args.max_request_tokens = value.extract().map_err(|_| wrong("a positive int"))?,
            "request_timeout" => args.request_timeout = value.extract().map_err(|_| wrong("a number of seconds"))?,
            "retries" => args.retries = value.extract().map_err(|_| wrong("an int"))?,
            "retry_wait" => args.retry_wait = value.extract().map_err(|_| wrong("a number of seconds"))?,
            "api_key" => args.api_key = Some(value.extract().map_err(|_| wrong("a str"))?),
            other => return Err(errors::input(format!("unknown model option `{other}`"))),
        }
    }
    Ok(args)
}

/// Sizes the process's CPU thread pool (candle's and whence's kernels run
/// on rayon's global pool). The command line sets RAYON_NUM_THREADS before
/// any thread starts; in a Python process other threads may run, so the
/// pool is built here instead, once: a later, different size is an error.
fn set_threads(threads: usize) -> PyResult<()> {
    if threads == 0 {
        return Err(errors::input("threads: must be at least 1"));
    }
    if rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().is_ok() || rayon::current_num_threads() == threads {
        return Ok(());
    }
    Err(errors::input(format!(
        "threads: this process's CPU thread pool already runs {} threads, and it is sized once\nhint: pass threads={} (or nothing), or give threads= in the first call, or set RAYON_NUM_THREADS before starting Python",
        rayon::current_num_threads(),
        rayon::current_num_threads()
    )))
}

/// Whether checkpoints score one record per pass (the CPU default), so that
/// Ctrl-C is checked after every record.
fn one_record_per_pass(args: &ModelArgs) -> bool {
    args.device == "cpu" && args.batch_tokens.is_none_or(|n| n <= 1)
}

/// What every job takes besides its scorers and settings.
struct JobInput {
    input: RecordsArg,
    fields: Fields,
    models: ModelArgs,
    skip_invalid: bool,
}

impl JobInput {
    fn extract(
        records: &Bound<'_, PyAny>,
        records_name: &str,
        fields: Option<&Bound<'_, PyDict>>,
        models: Option<&Bound<'_, PyDict>>,
        skip_invalid: bool,
    ) -> PyResult<Self> {
        Ok(JobInput {
            input: RecordsArg::extract(records, records_name)?,
            fields: Fields::extract(fields)?,
            models: model_args(models)?,
            skip_invalid,
        })
    }

    /// On the worker: reads the records, and makes the scorer factory.
    fn open(self, control: &JobControl) -> anyhow::Result<(whence_io::RecordSet, Opener)> {
        let records = self.input.read(&self.fields, self.skip_invalid, false)?;
        let factory = ScorerFactory::new(&self.models)?;
        let per_record = one_record_per_pass(&self.models);
        Ok((records, Opener { factory, control: control.clone(), per_record }))
    }
}

/// Opens scorers as the command line does, interruptible.
struct Opener {
    factory: ScorerFactory,
    control: JobControl,
    per_record: bool,
}

impl Opener {
    fn open(&mut self, role: &str, scorer: ScorerArg) -> anyhow::Result<Box<dyn whence_score::Scorer>> {
        scorer.open(role, &mut self.factory, &self.control, self.per_record)
    }
}

/// Writes a run's files into `dir` (made if missing).
fn write_dir(
    dir: PathBuf,
    format: &str,
    write: impl FnOnce(&std::path::Path, OutputFormat) -> Result<Vec<PathBuf>, whence_pipeline::PipelineError>,
) -> PyResult<Vec<String>> {
    let format = output_format(format)?;
    std::fs::create_dir_all(&dir).map_err(|e| errors::to_py(&anyhow::anyhow!("cannot create {}: {e}", dir.display())))?;
    write(&dir, format).map(written).map_err(|e| errors::to_py(&anyhow::Error::from(e)))
}

fn beta_choice(beta: &Bound<'_, PyAny>) -> PyResult<BetaChoice> {
    let text = match beta.extract::<f64>() {
        Ok(number) => number.to_string(),
        Err(_) => beta.extract::<String>().map_err(|_| errors::input(format!("beta: give `auto` or a number, not `{beta}`")))?,
    };
    text.parse().map_err(|e: whence_pipeline::BetaChoiceError| errors::input(format!("beta: {e}")))
}

fn fallback(text: &str) -> PyResult<whence_grade::Fallback> {
    text.parse().map_err(|e: whence_grade::UnknownFallback| errors::input(format!("fallback: {e}")))
}

fn output_format(text: &str) -> PyResult<OutputFormat> {
    match text {
        "parquet" => Ok(OutputFormat::Parquet),
        "jsonl" => Ok(OutputFormat::Jsonl),
        other => Err(errors::input(format!("format: unknown table format `{other}`; valid formats: parquet, jsonl"))),
    }
}

fn to_pyarrow(py: Python<'_>, table: &whence_io::Table) -> PyResult<Py<PyAny>> {
    let batch = table.to_record_batch().map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    batch_to_pyarrow(py, batch)
}

fn batch_to_pyarrow(py: Python<'_>, batch: RecordBatch) -> PyResult<Py<PyAny>> {
    let schema = batch.schema();
    let table = arrow_pyarrow::Table::try_new(vec![batch], schema).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    Ok(table.into_pyarrow(py)?.unbind())
}

fn json(value: &impl serde::Serialize) -> PyResult<String> {
    serde_json::to_string(value).map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

fn written(paths: Vec<PathBuf>) -> Vec<String> {
    paths.into_iter().map(|p| p.display().to_string()).collect()
}

/// A finished `trace`.
#[pyclass(module = "whence._whence", frozen)]
pub struct TraceRun {
    output: TraceOutput,
}

#[pymethods]
impl TraceRun {
    fn actions(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_pyarrow(py, &self.output.actions)
    }
    fn trajectories(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_pyarrow(py, &self.output.trajectories)
    }
    fn positions(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_pyarrow(py, &self.output.positions)
    }
    fn summary_json(&self) -> PyResult<String> {
        json(&self.output.summary)
    }
    /// Writes the files `whence trace` writes into `dir`; returns their paths.
    fn write(&self, dir: PathBuf, format: &str) -> PyResult<Vec<String>> {
        write_dir(dir, format, |dir, format| self.output.write(dir, format))
    }
}

#[pyfunction]
#[pyo3(signature = (records, records_name, teacher, student, distilled, *, alpha, beta, marker_tokens, skip_invalid, fallback, fields=None, models=None, segmentation=None, progress=None))]
#[allow(clippy::too_many_arguments)]
pub fn trace(
    py: Python<'_>,
    records: &Bound<'_, PyAny>,
    records_name: &str,
    teacher: &Bound<'_, PyAny>,
    student: &Bound<'_, PyAny>,
    distilled: &Bound<'_, PyAny>,
    alpha: f64,
    beta: &Bound<'_, PyAny>,
    marker_tokens: u64,
    skip_invalid: bool,
    fallback: &str,
    fields: Option<&Bound<'_, PyDict>>,
    models: Option<&Bound<'_, PyDict>>,
    segmentation: Option<&Bound<'_, PyDict>>,
    progress: Option<Py<PyAny>>,
) -> PyResult<TraceRun> {
    let settings = MethodSettings {
        alpha: crate::small::threshold("alpha", alpha)?,
        beta: beta_choice(beta)?,
        segmentation: crate::small::segmentation(segmentation)?,
        marker_tokens,
        skip_invalid,
        fallback: self::fallback(fallback)?,
    };
    let job = JobInput::extract(records, records_name, fields, models, skip_invalid)?;
    let roles = [ScorerArg::extract(teacher)?, ScorerArg::extract(student)?, ScorerArg::extract(distilled)?];
    let control = JobControl::default();
    let worker = control.clone();
    let output = run_job(py, &control, move || {
        let (input, mut opener) = job.open(&worker)?;
        let [t, s, d] = roles;
        let mut teacher = opener.open("teacher", t)?;
        let mut student = opener.open("student", s)?;
        let mut distilled = opener.open("distilled", d)?;
        let scorers = TraceScorers { teacher: teacher.as_mut(), student: student.as_mut(), distilled: distilled.as_mut() };
        Ok(run_trace(input, scorers, &settings, &PyProgress::new(progress))?)
    })?;
    Ok(TraceRun { output })
}

/// A finished `select`.
#[pyclass(module = "whence._whence", frozen)]
pub struct SelectRun {
    output: SelectOutput,
}

#[pymethods]
impl SelectRun {
    fn summary_json(&self) -> PyResult<String> {
        json(&self.output.summary)
    }
    /// Where each kept record came from, in input order: its row (tables,
    /// Parquet) or its raw JSONL line.
    fn kept_rows(&self, py: Python<'_>) -> PyResult<Vec<Py<PyAny>>> {
        let input = self.output.input();
        self.output
            .kept_indices()
            .into_iter()
            .map(|i| match input.original_row(i) {
                OriginalRow::Row(row) => Ok(row.into_pyobject(py)?.into_any().unbind()),
                OriginalRow::Line(line) => Ok(pyo3::types::PyBytes::new(py, line).into_any().unbind()),
            })
            .collect()
    }
    /// Writes the kept records to `path` in the input's own format (a table
    /// given in memory: Parquet) and the summary beside it.
    fn write(&self, path: PathBuf) -> PyResult<Vec<String>> {
        self.output.write(&path).map(|paths| written(paths.to_vec())).map_err(|e| errors::to_py(&anyhow::Error::from(e)))
    }
}

#[pyfunction]
#[pyo3(signature = (records, records_name, teacher, student, *, strategy, seed, beta, skip_invalid, fields=None, models=None, segmentation=None, progress=None))]
#[allow(clippy::too_many_arguments)]
pub fn select(
    py: Python<'_>,
    records: &Bound<'_, PyAny>,
    records_name: &str,
    teacher: &Bound<'_, PyAny>,
    student: &Bound<'_, PyAny>,
    strategy: &str,
    seed: u64,
    beta: &Bound<'_, PyAny>,
    skip_invalid: bool,
    fields: Option<&Bound<'_, PyDict>>,
    models: Option<&Bound<'_, PyDict>>,
    segmentation: Option<&Bound<'_, PyDict>>,
    progress: Option<Py<PyAny>>,
) -> PyResult<SelectRun> {
    let strategy: Strategy = strategy.parse().map_err(|e: whence_core::select::UnknownStrategy| errors::input(format!("strategy: {e}")))?;
    let settings =
        SelectSettings { strategy, seed, beta: beta_choice(beta)?, segmentation: crate::small::segmentation(segmentation)?, skip_invalid };
    let job = JobInput::extract(records, records_name, fields, models, skip_invalid)?;
    let (t, s) = (ScorerArg::extract(teacher)?, ScorerArg::extract(student)?);
    let control = JobControl::default();
    let worker = control.clone();
    let output = run_job(py, &control, move || {
        let (input, mut opener) = job.open(&worker)?;
        let mut teacher = opener.open("teacher", t)?;
        let mut student = opener.open("student", s)?;
        Ok(run_select(input, teacher.as_mut(), student.as_mut(), &settings, &PyProgress::new(progress))?)
    })?;
    Ok(SelectRun { output })
}

/// A finished `attribute`.
#[pyclass(module = "whence._whence", frozen)]
pub struct AttributeRun {
    output: AttributeOutput,
}

#[pymethods]
impl AttributeRun {
    fn summary_json(&self) -> PyResult<String> {
        json(&self.output.summary)
    }
    fn candidates(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_pyarrow(py, &self.output.candidates_table())
    }
    /// Each candidate's position profile: `(name, table)` pairs.
    fn positions(&self, py: Python<'_>) -> PyResult<Vec<(String, Py<PyAny>)>> {
        self.output
            .profiles
            .iter()
            .map(|(name, profile)| Ok((name.clone(), to_pyarrow(py, &whence_pipeline::trace::positions_table(profile))?)))
            .collect()
    }
    fn write(&self, dir: PathBuf, format: &str) -> PyResult<Vec<String>> {
        write_dir(dir, format, |dir, format| self.output.write(dir, format))
    }
}

#[pyfunction]
#[pyo3(signature = (records, records_name, distilled, student, candidates, *, alpha, beta, marker_tokens, skip_invalid, fallback, fields=None, models=None, segmentation=None, progress=None))]
#[allow(clippy::too_many_arguments)]
pub fn attribute(
    py: Python<'_>,
    records: &Bound<'_, PyAny>,
    records_name: &str,
    distilled: &Bound<'_, PyAny>,
    student: &Bound<'_, PyAny>,
    candidates: Vec<(String, Bound<'_, PyAny>)>,
    alpha: f64,
    beta: &Bound<'_, PyAny>,
    marker_tokens: u64,
    skip_invalid: bool,
    fallback: &str,
    fields: Option<&Bound<'_, PyDict>>,
    models: Option<&Bound<'_, PyDict>>,
    segmentation: Option<&Bound<'_, PyDict>>,
    progress: Option<Py<PyAny>>,
) -> PyResult<AttributeRun> {
    if candidates.len() < 2 {
        return Err(errors::input(format!("attribute needs two or more candidates; got {}", candidates.len())));
    }
    let mut named = Vec::with_capacity(candidates.len());
    for (name, scorer) in &candidates {
        if !valid_candidate_name(name) {
            return Err(errors::input(format!("invalid candidate name `{name}`; use letters, digits, `_`, `-` and `.`")));
        }
        if named.iter().any(|(n, _): &(String, ScorerArg)| n == name) {
            return Err(errors::input(format!("candidate name `{name}` is given twice")));
        }
        named.push((name.clone(), ScorerArg::extract(scorer)?));
    }
    let settings = MethodSettings {
        alpha: crate::small::threshold("alpha", alpha)?,
        beta: beta_choice(beta)?,
        segmentation: crate::small::segmentation(segmentation)?,
        marker_tokens,
        skip_invalid,
        fallback: self::fallback(fallback)?,
    };
    let job = JobInput::extract(records, records_name, fields, models, skip_invalid)?;
    let (d, s) = (ScorerArg::extract(distilled)?, ScorerArg::extract(student)?);
    let control = JobControl::default();
    let worker = control.clone();
    let output = run_job(py, &control, move || {
        let (input, mut opener) = job.open(&worker)?;
        let mut distilled = opener.open("distilled", d)?;
        let mut student = opener.open("student", s)?;
        let mut scorers = Vec::with_capacity(named.len());
        for (name, scorer) in named {
            let opened = opener.open(&format!("candidate {name}"), scorer)?;
            scorers.push((name, opened));
        }
        let candidates = scorers.iter_mut().map(|(name, scorer)| Candidate { name: name.clone(), scorer: scorer.as_mut() }).collect();
        Ok(run_attribute(input, distilled.as_mut(), student.as_mut(), candidates, &settings, &PyProgress::new(progress))?)
    })?;
    Ok(AttributeRun { output })
}

/// A finished `score`: each scored record's token spans and log-probabilities.
#[pyclass(module = "whence._whence", frozen)]
pub struct ScoreRun {
    ids: Vec<String>,
    scores: Vec<TokenLogprobs>,
    /// Records skipped as invalid: `(id, message)`.
    #[pyo3(get)]
    skipped: Vec<(String, String)>,
}

#[pymethods]
impl ScoreRun {
    /// `id`, `offsets` (list of [start, end] byte spans) and `logprobs`:
    /// the `file:` scorer's columns.
    fn table(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let mut ids = StringBuilder::new();
        let mut offsets = ListBuilder::new(FixedSizeListBuilder::new(UInt64Builder::new(), 2));
        let mut logprobs = ListBuilder::new(Float64Builder::new());
        for (id, scores) in self.ids.iter().zip(&self.scores) {
            ids.append_value(id);
            for span in &scores.spans {
                offsets.values().values().append_value(span.start as u64);
                offsets.values().values().append_value(span.end as u64);
                offsets.values().append(true);
            }
            offsets.append(true);
            logprobs.values().append_slice(&scores.logprobs);
            logprobs.append(true);
        }
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("id", std::sync::Arc::new(ids.finish())),
            ("offsets", std::sync::Arc::new(offsets.finish())),
            ("logprobs", std::sync::Arc::new(logprobs.finish())),
        ];
        let batch = RecordBatch::try_from_iter(columns).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        batch_to_pyarrow(py, batch)
    }
    /// Writes the JSONL file `whence score` writes.
    fn write(&self, path: PathBuf) -> PyResult<String> {
        let lines: Vec<String> = self
            .ids
            .iter()
            .zip(&self.scores)
            .map(|(id, scores)| whence_cli::shard::score_line(id, scores))
            .collect::<anyhow::Result<_>>()
            .map_err(|e| errors::to_py(&e))?;
        whence_io::write_lines_atomic(&path, &lines)
            .with_context(|| format!("writing {}", path.display()))
            .map_err(|e| errors::to_py(&e))?;
        Ok(path.display().to_string())
    }
}

#[pyfunction]
#[pyo3(signature = (records, records_name, model, *, skip_invalid, fields=None, models=None, progress=None))]
#[allow(clippy::too_many_arguments)]
pub fn score(
    py: Python<'_>,
    records: &Bound<'_, PyAny>,
    records_name: &str,
    model: &Bound<'_, PyAny>,
    skip_invalid: bool,
    fields: Option<&Bound<'_, PyDict>>,
    models: Option<&Bound<'_, PyDict>>,
    progress: Option<Py<PyAny>>,
) -> PyResult<ScoreRun> {
    let job = JobInput::extract(records, records_name, fields, models, skip_invalid)?;
    let model = ScorerArg::extract(model)?;
    let control = JobControl::default();
    let worker = control.clone();
    run_job(py, &control, move || {
        let (set, mut opener) = job.open(&worker)?;
        let mut scorer = opener.open("model", model)?;
        let records: Vec<&Record> = set.records.iter().collect();
        let progress = PyProgress::new(progress);
        whence_pipeline::Progress::start(&progress, "model", records.len() as u64);
        let mut run = ScoreRun { ids: Vec::new(), scores: Vec::new(), skipped: Vec::new() };
        for chunk in records.chunks(64) {
            for (record, result) in chunk.iter().zip(whence_pipeline::score_with_progress(scorer.as_mut(), chunk, &progress)) {
                match result {
                    Ok(scores) => {
                        run.ids.push(record.id.clone());
                        run.scores.push(scores);
                    }
                    Err(error) if skip_invalid && error.is_record_specific() => run.skipped.push((record.id.clone(), error.to_string())),
                    Err(error) => return Err(error).with_context(|| format!("model scorer, scoring {}", record.source)),
                }
            }
        }
        scorer.release();
        whence_pipeline::Progress::finish(&progress);
        Ok(run)
    })
}

/// `whence report PATH`: the HTML report and figures of a written run;
/// returns the report's index.html.
#[pyfunction]
#[pyo3(signature = (path, *, out=None, window=5, min_count=10, trajectories=Vec::new(), embed_limit_mb=20, png_scale=2.0))]
#[allow(clippy::too_many_arguments)]
pub fn report(
    py: Python<'_>,
    path: PathBuf,
    out: Option<PathBuf>,
    window: usize,
    min_count: usize,
    trajectories: Vec<String>,
    embed_limit_mb: usize,
    png_scale: f64,
) -> PyResult<String> {
    if !(0.5..=8.0).contains(&png_scale) {
        return Err(errors::input(format!("png_scale: invalid scale `{png_scale}`; it must be a number from 0.5 to 8")));
    }
    if !(1..=1001).contains(&window) {
        return Err(errors::input(format!("window: `{window}` must be from 1 to 1001 positions")));
    }
    let options = whence_report::ReportOptions { out, window, min_count, trajectories, embed_limit: embed_limit_mb * 1_000_000, png_scale };
    let control = JobControl::default();
    let written = run_job(py, &control, move || {
        whence_report::write_report(&path, &options).map_err(|error| {
            if error.is_input_error() {
                anyhow::Error::new(whence_cli::errors::UsageError(error.to_string()))
            } else {
                anyhow::Error::new(error)
            }
        })
    })?;
    Ok(written.index.display().to_string())
}
