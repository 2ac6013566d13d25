//! Printing errors, with hints, and choosing the exit code.

use whence_io::InputError;
use whence_pipeline::PipelineError;
use whence_score::ScoreError;

/// An error in what the user gave (flags, files): exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

pub fn is_input_error(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.is::<UsageError>()
            || cause.is::<InputError>()
            || cause.downcast_ref::<PipelineError>().is_some_and(PipelineError::is_input_error)
            || cause.downcast_ref::<ScoreError>().is_some_and(ScoreError::is_input_error)
            || cause.downcast_ref::<whence_cache::CacheError>().is_some_and(whence_cache::CacheError::is_unusable_file)
            || cause.downcast_ref::<whence_generate::GenerateError>().is_some_and(whence_generate::GenerateError::is_input_error)
    })
}

pub fn hint(error: &anyhow::Error) -> Option<&'static str> {
    let text = format!("{error:#}");
    if text.contains("no prompt: none of the fields") {
        return Some("name the prompt field with --prompt-field (e.g. --prompt-field question)");
    }
    if text.contains("field `response`: is missing") {
        return Some("name the response field with --response-field");
    }
    if text.contains("has no scores for record") {
        return Some("the scorer file's `id`s must match the input's ids; --id-field names the input's id field, and --skip-invalid skips records without scores");
    }
    let record_specific = error.chain().any(|cause| {
        cause.downcast_ref::<InputError>().is_some_and(|e| matches!(e, InputError::Field { .. } | InputError::Record { .. }))
            || cause.downcast_ref::<ScoreError>().is_some_and(ScoreError::is_record_specific)
            || cause.downcast_ref::<whence_generate::GenerateError>().is_some_and(whence_generate::GenerateError::is_record_specific)
    });
    record_specific.then_some("pass --skip-invalid to skip invalid records and count them in the summary")
}

/// Prints `error` (its causes joined by `: `) and a hint, and returns the exit code.
pub fn report(error: &anyhow::Error) -> u8 {
    eprintln!("error: {}", message(error));
    if is_input_error(error) {
        2
    } else {
        1
    }
}

/// What the command line prints after `error: `: the causes joined by
/// `: `, and the `hint:` line when there is one.
pub fn message(error: &anyhow::Error) -> String {
    match hint(error) {
        Some(hint) => format!("{error:#}\nhint: {hint}"),
        None => format!("{error:#}"),
    }
}
