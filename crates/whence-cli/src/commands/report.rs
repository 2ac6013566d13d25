//! `whence report`.

use std::path::PathBuf;

use clap::Args;
use whence_report::{write_report, ReportOptions};

use crate::errors::UsageError;

/// Write the HTML report and the paper figures of a whence run.
///
/// PATH is the output directory of `whence trace` or `whence attribute`, or
/// the output file of `whence select` (or a directory holding its
/// FILE.summary.json); everything found there is reported. Writes
/// report/index.html — one self-contained page (inline SVG, CSS and a little
/// JavaScript; no network) with the figures, tables, the behaviour
/// categories and a browser of every trajectory with its text highlighted by
/// label — and every figure as report/figures/NAME.svg and NAME.png.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Output directory of `whence trace` / `attribute`, or `whence select`'s output file
    #[arg(value_name = "PATH")]
    pub path: PathBuf,

    /// Report directory [default: PATH/report, or report/ beside a file]
    #[arg(long, short)]
    pub out: Option<PathBuf>,

    /// Width of the position profile's moving window, in action positions (1: none)
    #[arg(long, default_value = "5", value_name = "POSITIONS", value_parser = clap::value_parser!(u64).range(1..=1001))]
    pub window: u64,
    /// End the position profile's axis where fewer responses than this remain
    #[arg(long, default_value = "10", value_name = "RESPONSES")]
    pub min_count: usize,
    /// Also draw this trajectory as its own figure file (repeatable) [default: the first]
    #[arg(long = "trajectory", value_name = "ID")]
    pub trajectories: Vec<String>,
    /// Megabytes of per-trajectory data (texts and probabilities) embedded for the trajectory browser
    #[arg(long, default_value = "20", value_name = "MB", value_parser = clap::value_parser!(u64).range(1..=2000))]
    pub embed_limit_mb: u64,
    /// Size of the PNG figures relative to the SVG ones
    #[arg(long, default_value = "2", value_name = "FACTOR", value_parser = parse_scale)]
    pub png_scale: f64,
}

fn parse_scale(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(x) if (0.5..=8.0).contains(&x) => Ok(x),
        _ => Err(format!("invalid scale `{text}`; it must be a number from 0.5 to 8")),
    }
}

pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let options = ReportOptions {
        out: args.out,
        window: args.window as usize,
        min_count: args.min_count,
        trajectories: args.trajectories,
        embed_limit: (args.embed_limit_mb as usize) * 1_000_000,
        png_scale: args.png_scale,
    };
    let written = write_report(&args.path, &options).map_err(|error| {
        if error.is_input_error() {
            anyhow::Error::new(UsageError(error.to_string()))
        } else {
            anyhow::Error::new(error)
        }
    })?;
    if written.trajectories_embedded < written.trajectories_total {
        tracing::warn!(
            "the trajectory browser holds {} of {} trajectories (--embed-limit-mb {})",
            written.trajectories_embedded,
            written.trajectories_total,
            args.embed_limit_mb
        );
    }
    tracing::info!(
        "wrote {} ({:.1} MB) and {} figure files in {}",
        written.index.display(),
        written.index_bytes as f64 / 1e6,
        written.files.len() - 1,
        written.dir.join("figures").display()
    );
    println!("{}", written.index.display());
    Ok(())
}
