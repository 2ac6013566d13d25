//! Progress reporting, implemented by the CLI with progress bars.

/// Receives progress of long steps; the pipeline never prints.
pub trait Progress {
    /// A step begins, with `total` units (records).
    fn start(&self, step: &str, total: u64);
    /// `done` more units are finished; `tokens` more tokens were scored.
    fn advance(&self, done: u64, tokens: u64);
    /// The step ends.
    fn finish(&self);
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64, _: u64) {}
    fn finish(&self) {}
}
