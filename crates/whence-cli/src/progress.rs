//! Logs and progress bars, both on stderr.

use std::cell::RefCell;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing_subscriber::EnvFilter;
use whence_pipeline::Progress;

#[derive(Debug, Clone, Copy)]
pub struct Verbosity {
    pub level: i8,
}

impl Verbosity {
    pub fn new(verbose: u8, quiet: bool) -> Self {
        Verbosity { level: if quiet { -1 } else { verbose.min(2) as i8 } }
    }

    pub fn quiet(self) -> bool {
        self.level < 0
    }
}

/// Logs to stderr at `warn` (-q: `error`), `info` for whence's own crates
/// by default, `debug` with -v and `trace` with -vv; RUST_LOG overrides.
pub fn init_logging(verbosity: Verbosity) {
    let own = match verbosity.level {
        -1 => "error",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let default = format!("{},whence={own},whence_cli={own},whence_pipeline={own}", if verbosity.level < 0 { "error" } else { "warn" });
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .try_init()
        // Already set: a second command line in one process (the Python
        // package's `whence._whence.cli`) logs through the first one's.
        .ok();
}

/// A progress bar per step (records, tokens/s, ETA), drawn on stderr only
/// when it is a terminal and not `-q`.
pub struct Bars {
    hidden: bool,
    current: RefCell<Option<(ProgressBar, u64)>>,
}

impl Bars {
    pub fn new(verbosity: Verbosity) -> Self {
        Bars { hidden: verbosity.quiet(), current: RefCell::new(None) }
    }
}

impl Progress for Bars {
    fn start(&self, step: &str, total: u64) {
        let target = if self.hidden { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        // "generating" is a step of its own; other steps are scorers' roles.
        let (prefix, unit) = if step == "generating" { (step.to_string(), "questions") } else { (format!("scoring {step}"), "records") };
        bar.set_style(
            ProgressStyle::with_template(&format!("{{prefix:>12}} [{{bar:30}}] {{pos}}/{{len}} {unit}  {{msg}}  eta {{eta}}"))
                .expect("the template is valid")
                .progress_chars("=> "),
        );
        bar.set_prefix(prefix);
        bar.enable_steady_tick(Duration::from_millis(200));
        tracing::debug!("{step}: {total} {unit}");
        *self.current.borrow_mut() = Some((bar, 0));
    }

    fn advance(&self, done: u64, tokens: u64) {
        if let Some((bar, total_tokens)) = self.current.borrow_mut().as_mut() {
            *total_tokens += tokens;
            let seconds = bar.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("{:.0} tokens/s", *total_tokens as f64 / seconds));
            bar.inc(done);
        }
    }

    fn finish(&self) {
        if let Some((bar, tokens)) = self.current.borrow_mut().take() {
            bar.finish_and_clear();
            tracing::debug!("scored {} tokens in {:.2} s", tokens, bar.elapsed().as_secs_f64());
        }
    }
}
