//! What can go wrong while building a report.

use std::path::{Path, PathBuf};

/// A report error; messages quote the bad value and where it came from.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The input path holds no output of `whence trace`, `select` or `attribute`.
    #[error(
        "no whence output found in `{}`; expected summary.json (from `whence trace`), attribution.json (from `whence attribute`) or FILE.summary.json (from `whence select`)",
        path.display()
    )]
    NothingToReport { path: PathBuf },
    /// The input path does not exist.
    #[error("`{}` does not exist; give the output directory of `whence trace` or `whence attribute`, or the output file of `whence select`", path.display())]
    Missing { path: PathBuf },
    /// A file could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// A JSON file or JSONL line does not have the expected shape.
    #[error("`{}`{}: {message}", path.display(), line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Parse { path: PathBuf, line: Option<usize>, message: String },
    /// A summary comes from a command the report does not know.
    #[error("`{}`: unknown command `{command}`; valid commands: trace, select, attribute", path.display())]
    UnknownCommand { path: PathBuf, command: String },
    /// A table is neither Parquet nor JSONL, or is missing.
    #[error("`{}`: no `{name}.parquet` or `{name}.jsonl` beside it", dir.display())]
    MissingTable { dir: PathBuf, name: String },
    /// A requested trajectory is not in the run.
    #[error("trajectory `{id}` is not in `{}`", path.display())]
    UnknownTrajectory { id: String, path: PathBuf },
    /// A figure could not be drawn.
    #[error("drawing figure `{figure}`: {message}")]
    Draw { figure: String, message: String },
    /// An output could not be written.
    #[error("cannot write `{}`: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

impl ReportError {
    /// Whether the error is in what the user gave (exit code 2) rather than a failure.
    pub fn is_input_error(&self) -> bool {
        !matches!(self, ReportError::Draw { .. } | ReportError::Write { .. })
    }

    pub(crate) fn read(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
        move |source| ReportError::Read { path: path.to_path_buf(), source }
    }

    pub(crate) fn write(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
        move |source| ReportError::Write { path: path.to_path_buf(), source }
    }
}
