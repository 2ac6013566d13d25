//! `whence._whence`: the native module of the `whence` Python package.
//!
//! Glue only: records and scores cross the boundary as Arrow tables (the C
//! data interface, through `arrow-pyarrow`), the jobs are
//! `whence-pipeline`'s, scorers are opened by the command line's own
//! [`whence_cli::args::ScorerFactory`], and errors are classified and worded
//! as the command line does ([`whence_cli::errors`]). The typed, documented
//! API is the Python layer in `python/whence/`; nothing of the method is
//! implemented twice.
//!
//! - [`records`]: inputs (a path, or any object with `__arrow_c_stream__`);
//! - [`scorers`]: Python scorers (a table of precomputed scores, a callable);
//! - [`jobs`]: trace, select, attribute and score, run on a worker thread
//!   while the caller waits with the GIL released and Ctrl-C is honoured;
//! - [`errors`]: Rust errors as the package's Python exceptions.

mod errors;
mod jobs;
mod progress;
mod records;
mod scorers;
mod small;

use pyo3::prelude::*;

#[pymodule]
fn _whence(m: &Bound<'_, PyModule>) -> PyResult<()> {
    whence_checkpoint::tune_allocator();
    let py = m.py();
    m.add("__version__", whence_pipeline::VERSION)?;
    m.add("WhenceError", py.get_type::<errors::WhenceError>())?;
    m.add("InputError", py.get_type::<errors::InputError>())?;
    m.add("ModelError", py.get_type::<errors::ModelError>())?;
    m.add_function(wrap_pyfunction!(cli, m)?)?;
    m.add_function(wrap_pyfunction!(small::segment, m)?)?;
    m.add_function(wrap_pyfunction!(small::grade, m)?)?;
    m.add_function(wrap_pyfunction!(small::label, m)?)?;
    m.add_function(wrap_pyfunction!(jobs::trace, m)?)?;
    m.add_function(wrap_pyfunction!(jobs::select, m)?)?;
    m.add_function(wrap_pyfunction!(jobs::attribute, m)?)?;
    m.add_function(wrap_pyfunction!(jobs::score, m)?)?;
    m.add_function(wrap_pyfunction!(jobs::report, m)?)?;
    m.add_class::<jobs::TraceRun>()?;
    m.add_class::<jobs::SelectRun>()?;
    m.add_class::<jobs::AttributeRun>()?;
    m.add_class::<jobs::ScoreRun>()?;
    Ok(())
}

/// Runs the `whence` command line in this process (`argv[0]` is the
/// program name) and returns its exit code. The console script
/// `whence._cli:main` calls it with SIGINT's default action restored, so
/// that Ctrl-C ends the process as it ends the cargo-built binary.
#[pyfunction]
fn cli(py: Python<'_>, argv: Vec<String>) -> i32 {
    py.detach(|| i32::from(whence_cli::run(argv)))
}
