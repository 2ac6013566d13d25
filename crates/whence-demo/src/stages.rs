//! The pipeline's stages on the world's models: questions, sampling,
//! grading, and the scorers the method runs with.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use whence_cache::{CachedScorer, ScoreCache};
use whence_checkpoint::{CheckpointOptions, CheckpointScorer};
use whence_core::{Prompt, Record, SourceLocation};
use whence_generate::{CheckpointGenerator, GenerateOptions, SamplingParams, Temperature, TopK, TopP};
use whence_io::{read_records, ReadOptions, RecordSet};
use whence_world::summary::Accuracy;
use whence_world::Problem;

use crate::plan::SamplingPlan;
use crate::{DemoError, DemoProgress};

/// A problem as a question record (`id`, `prompt`, `answer`).
pub fn question(problem: &Problem, file: &str) -> Record {
    Record {
        id: problem.id.clone(),
        question_id: problem.id.clone(),
        prompt: Prompt::Text(problem.question()),
        response: String::new(),
        correct: None,
        answer: Some(problem.answer.to_string()),
        source: SourceLocation { file: file.to_string(), line: None, row: None },
    }
}

/// Writes questions as JSONL (`id`, `prompt`, `answer`), as a user's input would be.
pub fn write_questions(path: &Path, problems: &[Problem]) -> Result<(), DemoError> {
    let lines: Vec<String> = problems
        .iter()
        .map(|p| serde_json::json!({"id": p.id, "prompt": p.question(), "answer": p.answer.to_string()}).to_string())
        .collect();
    write_lines(path, &lines)
}

pub fn write_lines(path: &Path, lines: &[String]) -> Result<(), DemoError> {
    whence_io::write_lines_atomic(path, lines).map_err(|e| DemoError::io(path, e))
}

/// Samples in flight at once when the demo samples its models: consecutive
/// questions are decoded together up to this many rows
/// ([`CheckpointGenerator::with_batch_rows`]); the world's models are so
/// small that a step costs about the same for 1 row as for dozens.
pub const BATCH_ROWS: usize = 64;

/// Samples `samples` responses to each question from the checkpoint at
/// `model` (through the score cache, so a rerun reads them back) and writes
/// them to `out` with `out.summary.json`; returns them read back as records.
#[allow(clippy::too_many_arguments)]
pub fn sample(
    model: &Path,
    questions: &[Record],
    questions_path: &Path,
    samples: usize,
    seed: u64,
    plan: &SamplingPlan,
    cache: &ScoreCache,
    out: &Path,
    progress: &dyn DemoProgress,
) -> Result<RecordSet, DemoError> {
    let mut generator = CheckpointGenerator::open(model, CheckpointOptions::default())?.with_batch_rows(BATCH_ROWS);
    let options = GenerateOptions {
        samples,
        params: SamplingParams {
            temperature: Temperature::new(plan.temperature).map_err(|e| DemoError::Model(e.to_string()))?,
            top_p: TopP::ALL,
            top_k: TopK::ALL,
        },
        seed,
        max_new_tokens: plan.max_new_tokens,
        stop: Vec::new(),
        skip_invalid: true,
        memory_limit: whence_checkpoint::generate::kv_cache_memory(),
    };
    let command = format!("whence demo (sampling {})", model.display());
    let outcome = whence_generate::generate_all(
        questions,
        &mut generator,
        &options,
        Some(cache),
        progress,
        &questions_path.display().to_string(),
        command,
    )?;
    write_lines(out, &outcome.responses)?;
    let summary = PathBuf::from(format!("{}.summary.json", out.display()));
    whence_io::write_json_atomic(&summary, &outcome.summary).map_err(|e| DemoError::io(&summary, e))?;
    read_records(out, &ReadOptions { skip_invalid: true, ..ReadOptions::default() }).map_err(|e| DemoError::Model(e.to_string()))
}

/// Whether `record`'s response states its `answer` (graded as `trace` grades; false without one).
pub fn is_correct(record: &Record) -> bool {
    record.answer.as_deref().is_some_and(|a| whence_grade::grade(&record.response, a, whence_grade::Fallback::default()).correct)
}

/// The share of `responses` whose answer is right (graded as `trace` grades).
pub fn accuracy(model: &str, responses: &RecordSet) -> Accuracy {
    let mut questions: Vec<&str> = responses.records.iter().map(|r| r.question_id.as_str()).collect();
    questions.sort_unstable();
    questions.dedup();
    let correct = responses.records.iter().filter(|r| is_correct(r)).count();
    let samples = responses.records.len();
    Accuracy {
        model: model.to_string(),
        questions: questions.len(),
        samples,
        correct,
        accuracy: if samples == 0 { 0.0 } else { correct as f64 / samples as f64 },
    }
}

/// The in-process scorer of a checkpoint, through the score cache.
pub fn scorer(dir: &Path, cache: &Arc<ScoreCache>) -> Result<CachedScorer<CheckpointScorer>, DemoError> {
    let scorer =
        CheckpointScorer::open(dir, CheckpointOptions::default()).map_err(|e| DemoError::Model(format!("{}: {e}", dir.display())))?;
    Ok(CachedScorer::new(scorer, cache.clone()))
}
