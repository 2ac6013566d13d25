//! Progress of a job, handed to a Python object with `start(step, total)`,
//! `advance(done, tokens)` and `finish()` (the Python layer's tqdm bar or
//! stderr lines), from the worker thread.

use pyo3::prelude::*;
use whence_pipeline::Progress;

pub struct PyProgress {
    target: Option<Py<PyAny>>,
}

impl PyProgress {
    pub fn new(target: Option<Py<PyAny>>) -> Self {
        PyProgress { target }
    }

    /// Runs `call` on the target, if any, with the GIL; a failing progress
    /// bar prints its exception and never fails the job.
    fn with_target(&self, call: impl for<'py> FnOnce(&Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>>) {
        if let Some(target) = &self.target {
            Python::attach(|py| {
                if let Err(error) = call(target.bind(py)) {
                    error.print(py);
                }
            });
        }
    }
}

impl Progress for PyProgress {
    fn start(&self, step: &str, total: u64) {
        self.with_target(|target| target.call_method1("start", (step, total)));
    }

    fn advance(&self, done: u64, tokens: u64) {
        self.with_target(|target| target.call_method1("advance", (done, tokens)));
    }

    fn finish(&self) {
        self.with_target(|target| target.call_method0("finish"));
    }
}
