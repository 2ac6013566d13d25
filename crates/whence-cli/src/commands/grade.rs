//! `whence grade`.

use clap::Args;
use serde::Serialize;

use crate::args::{GradingArgs, InputArgs};
use crate::errors::UsageError;

/// Grade responses against reference answers.
///
/// Prints one JSON line per record: id, the reference answer, its kind (math
/// or multiple-choice), the extracted answer and how it was found, the verdict
/// `correct`, and the input's own verdict `given_correct` when it has one
/// (agreement is then reported on stderr).
#[derive(Debug, Args)]
pub struct GradeArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub grading: GradingArgs,
}

#[derive(Serialize)]
struct GradeRow<'a> {
    id: &'a str,
    answer: &'a str,
    kind: &'static str,
    extracted: Option<String>,
    method: Option<&'static str>,
    correct: bool,
    given_correct: Option<bool>,
}

pub fn run(args: GradeArgs) -> anyhow::Result<()> {
    let set = args.input.read(true)?;
    let mut rows = Vec::with_capacity(set.records.len());
    let (mut compared, mut agreed, mut without_answer) = (0usize, 0usize, 0usize);
    for record in &set.records {
        let Some(answer) = record.answer.as_deref() else {
            without_answer += 1;
            continue;
        };
        let grade = whence_grade::grade(&record.response, answer, args.grading.fallback);
        if let Some(given) = record.correct {
            compared += 1;
            agreed += usize::from(given == grade.correct);
        }
        rows.push(GradeRow {
            id: &record.id,
            answer,
            kind: grade.kind.as_str(),
            extracted: grade.extracted.as_ref().map(|e| e.text.clone()),
            method: grade.extracted.as_ref().map(|e| e.method.as_str()),
            correct: grade.correct,
            given_correct: record.correct,
        });
    }
    if rows.is_empty() && without_answer > 0 {
        return Err(UsageError(format!(
            "no record has a reference answer in field `{}`; name it with --answer-field",
            args.input.fields.answer_field
        ))
        .into());
    }
    if without_answer > 0 {
        tracing::warn!("{without_answer} records have no `{}` and were not graded", args.input.fields.answer_field);
    }
    if compared > 0 {
        tracing::info!("agreement with the input's own verdicts: {agreed} of {compared} ({:.2}%)", 100.0 * agreed as f64 / compared as f64);
    }
    super::print_json_lines(rows)
}
