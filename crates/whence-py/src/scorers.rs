//! Scorers as the Python API takes them: what the command line takes (a
//! checkpoint directory, `vllm+URL`, `file:PATH`, opened by the command
//! line's own factory), a table of precomputed scores, or a Python callable;
//! and the wrapper that lets Ctrl-C stop a run between records.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use arrow_array::RecordBatch;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use whence_cli::args::ScorerFactory;
use whence_core::{ByteSpan, Prompt, Record};
use whence_score::{FileScorer, ModelInfo, ScoreError, Scorer, ScorerSpec, TokenLogprobs};

/// A scorer as given from Python.
pub enum ScorerArg {
    /// A scorer spec string, as on the command line.
    Spec(String),
    /// Precomputed scores: `id`, `logprobs`, and `offsets` or `token_ids`.
    Table { batch: RecordBatch, name: String },
    /// The Python layer's wrapper of a user's callable: `(prompts,
    /// responses) -> [(offsets, logprobs)]`, each a bytes object of
    /// little-endian u64 pairs / f64s.
    Callable { function: Py<PyAny>, name: String },
}

impl ScorerArg {
    /// From the Python layer's `(kind, value, name)`: `("spec", str, _)`,
    /// `("table", arrow stream, name)` or `("callable", function, name)`.
    pub fn extract(given: &Bound<'_, PyAny>) -> PyResult<Self> {
        let (kind, value, name): (String, Bound<'_, PyAny>, String) = given.extract()?;
        match kind.as_str() {
            "spec" => Ok(ScorerArg::Spec(value.extract()?)),
            "table" => Ok(ScorerArg::Table { batch: crate::records::one_batch(&value, &name)?, name }),
            "callable" => Ok(ScorerArg::Callable { function: value.unbind(), name }),
            other => Err(crate::errors::input(format!("unknown scorer kind `{other}`"))),
        }
    }

    /// Whether a run over it should check for Ctrl-C after every record (a
    /// checkpoint scored one record per pass, where a record may take
    /// seconds) rather than after every batch the pipeline hands it.
    fn per_record(&self, one_record_per_pass: bool) -> bool {
        match self {
            ScorerArg::Spec(spec) => one_record_per_pass && matches!(spec.parse::<ScorerSpec>(), Ok(ScorerSpec::Checkpoint(_))),
            _ => false,
        }
    }

    /// Opens the scorer for `role`.
    pub fn open(
        self,
        role: &str,
        factory: &mut ScorerFactory,
        job: &JobControl,
        one_record_per_pass: bool,
    ) -> anyhow::Result<Box<dyn Scorer>> {
        let step = if self.per_record(one_record_per_pass) { 1 } else { usize::MAX };
        let scorer: Box<dyn Scorer> = match self {
            ScorerArg::Spec(text) => {
                let spec: ScorerSpec =
                    text.parse().map_err(|e: whence_score::ScorerSpecError| whence_cli::errors::UsageError(e.to_string()))?;
                factory.open(role, &spec)?
            }
            ScorerArg::Table { batch, name } => {
                Box::new(FileScorer::from_batch(&batch, &name).with_context(|| format!("{role} scorer {name}"))?)
            }
            ScorerArg::Callable { function, name } => Box::new(CallableScorer::new(function, name, job.raised.clone())),
        };
        Ok(Box::new(Interruptible { inner: scorer, interrupted: job.interrupted.clone(), step }))
    }
}

/// What a job's worker shares with the thread that waits for it.
#[derive(Clone, Default)]
pub struct JobControl {
    /// Set by the waiting thread on Ctrl-C; scorers stop at the next record
    /// or batch.
    pub interrupted: Arc<AtomicBool>,
    /// The exception a Python scorer raised, re-raised as the cause.
    pub raised: Arc<Mutex<Option<PyErr>>>,
}

const INTERRUPTED: &str = "interrupted (KeyboardInterrupt)";

/// Delivers an error for every record once Ctrl-C was pressed, and checks
/// for it every `step` records.
struct Interruptible {
    inner: Box<dyn Scorer>,
    interrupted: Arc<AtomicBool>,
    step: usize,
}

impl Scorer for Interruptible {
    fn info(&self) -> &ModelInfo {
        self.inner.info()
    }

    fn score(&mut self, record: &Record) -> Result<TokenLogprobs, ScoreError> {
        if self.interrupted.load(Ordering::Relaxed) {
            return Err(ScoreError::Failed(INTERRUPTED.into()));
        }
        self.inner.score(record)
    }

    fn score_each(&mut self, records: &[&Record], deliver: &mut dyn FnMut(usize, Result<TokenLogprobs, ScoreError>)) {
        let mut start = 0;
        for part in records.chunks(self.step.max(1)) {
            if self.interrupted.load(Ordering::Relaxed) {
                for index in start..records.len() {
                    deliver(index, Err(ScoreError::Failed(INTERRUPTED.into())));
                }
                return;
            }
            self.inner.score_each(part, &mut |index, result| deliver(start + index, result));
            start += part.len();
        }
    }

    fn release(&mut self) {
        self.inner.release()
    }
}

/// A Python callable scoring a batch of records at a time.
struct CallableScorer {
    function: Py<PyAny>,
    info: ModelInfo,
    raised: Arc<Mutex<Option<PyErr>>>,
}

impl CallableScorer {
    fn new(function: Py<PyAny>, name: String, raised: Arc<Mutex<Option<PyErr>>>) -> Self {
        // Not a content fingerprint: a callable's results cannot be hashed
        // before it runs, so such scores are never cached.
        let fingerprint = format!("python:{name}");
        CallableScorer { function, info: ModelInfo { kind: "python".into(), source: name, fingerprint }, raised }
    }

    fn location(&self, record: &Record) -> String {
        format!("python scorer {}, record `{}` ({})", self.info.source, record.id, record.source)
    }

    /// Calls the function on `records`; one result per record.
    fn call(&self, py: Python<'_>, records: &[&Record]) -> Result<Vec<Result<TokenLogprobs, ScoreError>>, PyErr> {
        let prompts = PyList::empty(py);
        for record in records {
            match &record.prompt {
                Prompt::Text(text) => prompts.append(text)?,
                Prompt::Chat(turns) => {
                    let messages = PyList::empty(py);
                    for turn in turns {
                        let message = PyDict::new(py);
                        message.set_item("role", &turn.role)?;
                        message.set_item("content", &turn.content)?;
                        messages.append(message)?;
                    }
                    prompts.append(messages)?
                }
            }
        }
        let responses = PyList::new(py, records.iter().map(|r| r.response.as_str()))?;
        let results = self.function.bind(py).call1((prompts, responses))?;
        let results: Vec<(Bound<'_, PyBytes>, Bound<'_, PyBytes>)> = results.extract()?;
        Ok(records
            .iter()
            .zip(results)
            .map(|(record, (offsets, logprobs))| {
                let location = self.location(record);
                let offsets = offsets.as_bytes();
                let logprobs = logprobs.as_bytes();
                let word = |chunk: &[u8]| u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
                let spans: Vec<ByteSpan> = offsets
                    .chunks_exact(16)
                    .map(|pair| ByteSpan { start: word(&pair[..8]) as usize, end: word(&pair[8..]) as usize })
                    .collect();
                let logprobs: Vec<f64> = logprobs.chunks_exact(8).map(|x| f64::from_bits(word(x))).collect();
                let scores = TokenLogprobs { spans, logprobs };
                whence_score::validate(&scores, &record.response, &location)?;
                Ok(scores)
            })
            .collect())
    }
}

impl Scorer for CallableScorer {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn score(&mut self, record: &Record) -> Result<TokenLogprobs, ScoreError> {
        let mut result = None;
        self.score_each(&[record], &mut |_, r| result = Some(r));
        result.unwrap_or_else(|| Err(ScoreError::Failed("the python scorer returned no result".into())))
    }

    fn score_each(&mut self, records: &[&Record], deliver: &mut dyn FnMut(usize, Result<TokenLogprobs, ScoreError>)) {
        let outcome = Python::attach(|py| {
            self.call(py, records).map_err(|error| {
                // The Python layer raises InputError for results of the
                // wrong shape; anything else is the callable's own failure.
                let input = error.is_instance_of::<crate::errors::InputError>(py);
                let message = error.value(py).to_string();
                *self.raised.lock().expect("not poisoned") = Some(error);
                if input {
                    ScoreError::InvalidSource(format!("python scorer {}: {message}", self.info.source))
                } else {
                    ScoreError::Failed(format!("python scorer {} raised: {message}", self.info.source))
                }
            })
        });
        match outcome {
            Ok(results) => {
                for (index, result) in results.into_iter().enumerate() {
                    deliver(index, result);
                }
            }
            Err(error) => {
                let message = error.to_string();
                let input = error.is_input_error();
                for index in 0..records.len() {
                    let copy = if input { ScoreError::InvalidSource(message.clone()) } else { ScoreError::Failed(message.clone()) };
                    deliver(index, Err(copy));
                }
            }
        }
    }
}
