//! The jobs of `whence`, joining records, scorers and the core method:
//!
//! - [`trace`]: label every action of distilled-model responses with the
//!   teacher, student and distilled scorers, and write `actions`,
//!   `trajectories`, `positions` and `summary.json` (SPEC §9);
//! - [`select`]: keep one teacher response per question before training;
//! - [`attribute`]: rank candidate teachers of a distilled model.
//!
//! Scoring runs model by model over all records ([`scoring`]), so that a
//! model-backed scorer holds one model in memory at a time. Everything is
//! computed before anything is written, and every file is written atomically.

pub mod attribute;
pub mod correctness;
pub mod error;
pub mod progress;
pub mod scoring;
pub mod select;
pub mod trace;

pub use error::PipelineError;
pub use progress::{NoProgress, Progress};
pub use scoring::score_with_progress;
pub use trace::MethodSettings;

use serde::Serialize;
use whence_core::Threshold;

/// This build's version, written into every summary.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// β given, or chosen by the search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BetaChoice {
    Auto,
    Fixed(Threshold),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid β `{0}`; give `auto` or a number from 0 to 1")]
pub struct BetaChoiceError(pub String);

impl std::str::FromStr for BetaChoice {
    type Err = BetaChoiceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "auto" {
            Ok(BetaChoice::Auto)
        } else {
            s.parse().map(BetaChoice::Fixed).map_err(|_| BetaChoiceError(s.to_string()))
        }
    }
}

impl std::fmt::Display for BetaChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BetaChoice::Auto => f.write_str("auto"),
            BetaChoice::Fixed(beta) => write!(f, "{beta}"),
        }
    }
}

/// The segmentation settings as written in summaries.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentationSummary {
    pub special_tokens: Vec<String>,
    pub special_patterns: Vec<String>,
    pub sentence_pattern: String,
}

impl From<&whence_core::SegmenterConfig> for SegmentationSummary {
    fn from(config: &whence_core::SegmenterConfig) -> Self {
        SegmentationSummary {
            special_tokens: config.special_tokens.clone(),
            special_patterns: config.special_patterns.clone(),
            sentence_pattern: config.sentence_pattern.clone(),
        }
    }
}
