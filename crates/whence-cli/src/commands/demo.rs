//! `whence demo`.

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use whence_demo::{DemoOptions, DemoProgress, Preset};
use whence_pipeline::Progress;
use whence_train::StepReport;

use crate::progress::{Bars, Verbosity};

/// Train a small distillation world on this machine and run the whole
/// method on it, where every sentence's true origin is known.
///
/// Arithmetic word problems are solved in sentence families of known
/// origin: a teacher, a student and a spurious second teacher are trained
/// from scratch (each with its own tokenizer), the teacher's samples distil
/// a copy of the student, and the three models answer held-out questions.
/// Then trace (β auto), select, attribute and the report run on it, and the
/// labels are checked against the sentences' origins. Models, samples and
/// scores are cached, so a second run starts at once. Prints what it found;
/// everything is under --out (demo.json, the trace, attribution and
/// selection files, report/index.html).
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory of the artefacts
    #[arg(long, short, default_value = "whence-demo")]
    pub out: PathBuf,
    /// Seed of the world: its questions, solutions, models and samples
    #[arg(long, default_value = "0")]
    pub seed: u64,
    /// Also distil with each selection strategy (random, grape, teacher-count, longest, min-teacher-count; three seeds each) and compare held-out accuracy
    #[arg(long)]
    pub experiment: bool,
    /// Size of the world: `standard` (the demo), `tiny` (seconds; for tests)
    #[arg(long, default_value = "standard", value_parser = parse_preset)]
    pub preset: Preset,
    /// Where trained models and the demo's score cache are kept [default: $XDG_CACHE_HOME/whence/demo or ~/.cache/whence/demo]
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// CPU threads [default: all cores]
    #[arg(long)]
    pub threads: Option<usize>,
}

fn parse_preset(s: &str) -> Result<Preset, String> {
    s.parse()
}

/// Stage lines, a training bar, and the pipeline's bars.
struct DemoBars {
    bars: Bars,
    quiet: bool,
    training: RefCell<Option<ProgressBar>>,
}

impl Progress for DemoBars {
    fn start(&self, step: &str, total: u64) {
        self.bars.start(step, total)
    }
    fn advance(&self, done: u64, tokens: u64) {
        self.bars.advance(done, tokens)
    }
    fn finish(&self) {
        self.bars.finish()
    }
}

impl DemoProgress for DemoBars {
    fn stage(&self, text: &str) {
        if !self.quiet {
            eprintln!("• {text}");
        }
    }

    fn training_start(&self, what: &str, steps: usize) {
        let target = if self.quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() };
        let bar = ProgressBar::with_draw_target(Some(steps as u64), target);
        bar.set_style(
            ProgressStyle::with_template("{prefix:>12} [{bar:30}] step {pos}/{len}  {msg}  eta {eta}")
                .expect("the template is valid")
                .progress_chars("=> "),
        );
        bar.set_prefix("training");
        bar.enable_steady_tick(Duration::from_millis(200));
        tracing::debug!("{what}: {steps} steps");
        *self.training.borrow_mut() = Some(bar);
        if !self.quiet {
            eprintln!("  {what}");
        }
    }

    fn training_step(&self, step: &StepReport) {
        if let Some(bar) = self.training.borrow().as_ref() {
            bar.set_message(format!("loss {:.3}  {:.0} tokens/s", step.loss, step.tokens_per_second));
            bar.set_position(step.step as u64);
        }
    }

    fn training_finish(&self) {
        if let Some(bar) = self.training.borrow_mut().take() {
            bar.finish_and_clear();
        }
    }
}

pub fn run(args: DemoArgs, verbosity: Verbosity) -> anyhow::Result<()> {
    if let Some(threads) = args.threads {
        if threads == 0 {
            return Err(crate::errors::UsageError("--threads must be at least 1".into()).into());
        }
        // SAFETY: set before any thread pool starts (nothing has run yet).
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
    let options = DemoOptions {
        out: args.out.clone(),
        cache: args.cache_dir.clone().unwrap_or_else(|| crate::args::user_cache_dir().join("demo")),
        seed: args.seed,
        preset: args.preset,
        experiment: args.experiment,
    };
    let progress = DemoBars { bars: Bars::new(verbosity), quiet: verbosity.quiet(), training: RefCell::new(None) };
    let outcome = whence_demo::run(&options, &progress).with_context(|| format!("whence demo (artefacts in {})", args.out.display()))?;
    let total: f64 = outcome.timings.iter().map(|t| t.seconds).sum();
    print!("{}", whence_demo::findings::findings(&outcome.summary, &args.out, &outcome.report));
    println!("time:      {total:.0} s (per stage in {})", args.out.join("timings.json").display());
    Ok(())
}
