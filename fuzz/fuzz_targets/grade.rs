//! The answer extractor and grader: input `RESPONSE\0REFERENCE`; every
//! answer kind and fallback is tried, then the whole grade.
#![no_main]

use libfuzzer_sys::fuzz_target;
use whence_fuzz::{split_nul, text};
use whence_grade::{answers_match, extract_answer, grade, AnswerKind, Fallback};

fuzz_target!(|data: &[u8]| {
    let parts = split_nul(data, 2);
    let response = text(parts[0]);
    let reference = text(parts.get(1).copied().unwrap_or(b""));
    for kind in [AnswerKind::Math, AnswerKind::MultipleChoice] {
        for fallback in [Fallback::None, Fallback::AnswerIs, Fallback::AnswerIsThenLastNumber] {
            let _ = extract_answer(&response, kind, fallback);
        }
    }
    let graded = grade(&response, &reference, Fallback::AnswerIsThenLastNumber);
    assert!(!graded.correct || graded.extracted.is_some(), "correct without an extracted answer");
    let _ = answers_match(&response, &reference);
    let _ = AnswerKind::of_reference(&reference);
});
