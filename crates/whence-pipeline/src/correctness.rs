//! Correctness of records: given (`correct`), computed from a reference
//! `answer` (SPEC §8), or unknown.

use serde::Serialize;
use whence_core::Record;
use whence_grade::Fallback;

/// How correctness was settled across the records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CorrectnessCounts {
    pub correct: usize,
    pub incorrect: usize,
    pub unknown: usize,
    /// Records whose verdict was computed from their `answer`.
    pub graded_from_answer: usize,
}

/// Fills in `correct` from `answer` where it is not given, and counts.
pub fn settle_correctness(records: &mut [Record], fallback: Fallback) -> CorrectnessCounts {
    let mut counts = CorrectnessCounts::default();
    for record in records.iter_mut() {
        if record.correct.is_none() {
            if let Some(answer) = &record.answer {
                record.correct = Some(whence_grade::grade(&record.response, answer, fallback).correct);
                counts.graded_from_answer += 1;
            }
        }
        match record.correct {
            Some(true) => counts.correct += 1,
            Some(false) => counts.incorrect += 1,
            None => counts.unknown += 1,
        }
    }
    counts
}
