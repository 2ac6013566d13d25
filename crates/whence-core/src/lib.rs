//! The method of `whence` on token log-probabilities, with no ML dependency.
//!
//! The pipeline stages, one module each:
//! - [`segment`]: cut a response into actions (sentences and special tokens);
//! - [`align`]: map any model's tokens to the actions by byte spans, and
//!   average their log-probabilities (geometric-mean action probability);
//! - [`label`]: classify actions as `teacher`, `student`, `shared`, `boosted`
//!   (after distillation) or `teacher`, `student`, `common` (before training);
//! - [`beta`]: choose β by the paper's histogram-overlap search;
//! - [`profile`]: label fractions by action position, split by correctness;
//! - [`select`]: keep one response per question for distillation;
//! - [`attribute`]: rank candidate teachers of a distilled model.
//!
//! [`record`] and [`role`] hold the data model shared with the scorers and the
//! IO crate; [`span`], [`tally`] and [`hash`] are small utilities.

pub mod align;
pub mod attribute;
pub mod beta;
pub mod hash;
pub mod label;
pub mod profile;
pub mod record;
pub mod role;
pub mod segment;
pub mod select;
pub mod span;
pub mod tally;

pub use align::{ActionScores, AlignedResponse};
pub use beta::{search_beta, BetaSearch, BetaSearchSettings, BetaStep, Stage};
pub use label::{ActionProbabilities, Label, Threshold};
pub use record::{ChatMessage, Prompt, Record, SourceLocation};
pub use role::Role;
pub use segment::{Action, Segmenter, SegmenterConfig};
pub use select::{CandidateCounts, Strategy};
pub use span::ByteSpan;
pub use tally::LabelCounts;
