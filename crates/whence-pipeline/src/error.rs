//! The jobs' errors.

use whence_core::beta::BetaSearchError;
use whence_io::InputError;
use whence_score::ScoreError;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("{role} scorer: {source}")]
    Score {
        role: String,
        #[source]
        source: ScoreError,
    },
    #[error(transparent)]
    Beta(#[from] BetaSearchError),
    #[error("no record left to analyse: {reason}")]
    NoRecords { reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl PipelineError {
    /// Whether the user's input is at fault (exit code 2) rather than a
    /// failure while running (exit code 1).
    pub fn is_input_error(&self) -> bool {
        match self {
            PipelineError::Input(_) | PipelineError::Beta(_) | PipelineError::NoRecords { .. } => true,
            PipelineError::Score { source, .. } => source.is_input_error(),
            PipelineError::Write { .. } => false,
        }
    }

    pub(crate) fn write(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> PipelineError + '_ {
        move |source| PipelineError::Write { path: path.display().to_string(), source }
    }
}
