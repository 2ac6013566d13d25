//! Rust errors as the package's Python exceptions, worded as the command
//! line words them (`whence_cli::errors::message`: causes joined by `: `,
//! then a `hint:` line) and split as its exit codes are: what the user gave
//! is at fault ([`InputError`], exit code 2), a model or server failed
//! ([`ModelError`]), or something else failed ([`WhenceError`], exit code 1).

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use whence_pipeline::PipelineError;
use whence_score::ScoreError;

create_exception!(whence, WhenceError, PyException, "A whence job failed (the command line's exit code 1).");
create_exception!(
    whence,
    InputError,
    WhenceError,
    "What was given is unusable: a record, a field, a scorer file or an option (the command line's exit code 2). The message names where: FILE:LINE (or `SOURCE row N` for tables), the field, the valid choices."
);
create_exception!(
    whence,
    ModelError,
    WhenceError,
    "A scorer failed while working: a checkpoint, an inference server, or a Python scorer (its exception is the __cause__)."
);

/// Whether a model or server failed (rather than the input, or writing).
fn is_model_failure(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<ScoreError>().is_some_and(|e| matches!(e, ScoreError::Failed(_)))
            || cause
                .downcast_ref::<PipelineError>()
                .is_some_and(|e| matches!(e, PipelineError::Score { source: ScoreError::Failed(_), .. }))
    })
}

/// The Python exception for `error`.
pub fn to_py(error: &anyhow::Error) -> PyErr {
    let message = whence_cli::errors::message(error);
    if whence_cli::errors::is_input_error(error) {
        InputError::new_err(message)
    } else if is_model_failure(error) {
        ModelError::new_err(message)
    } else {
        WhenceError::new_err(message)
    }
}

/// An input error of the Python API's own (a bad argument value).
pub fn input(message: impl Into<String>) -> PyErr {
    InputError::new_err(message.into())
}
