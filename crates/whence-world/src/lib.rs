//! The world of `whence demo`: seeded multi-step arithmetic word problems,
//! solutions to them written in sentence families of known origin, and the
//! matcher that maps any sentence back to its family.
//!
//! - [`problems`]: the problems of a [`Split`], deterministic from
//!   [`WorldSettings::seed`];
//! - [`solve`] and [`corpus`]: solutions in a [`Style`] (the true teacher, the
//!   original student, a spurious second teacher), each [`Sentence`] tagged
//!   with its [`Family`];
//! - [`Family::origin`]: which of the compared pair (teacher, student) writes
//!   a family, as an [`Origin`];
//! - [`Matcher`]: a sentence's family from its wording alone, so the origin
//!   of every sentence a trained model writes is known.
//!
//! No ML here: another crate trains language models on these texts.

mod family;
mod matcher;
mod problem;
mod random;
mod solution;
mod template;

pub mod summary;

pub use family::{Family, Origin, Style};
pub use matcher::Matcher;
pub use problem::{problems, Operation, Problem, Split, WorldSettings, ITEMS, MAX_TOTAL, NAMES};
pub use solution::{corpus, solve, student_expression, Sentence, Solution};
