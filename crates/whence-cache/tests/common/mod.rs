//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use whence_core::{ByteSpan, ChatMessage, Prompt, Record, SourceLocation};
use whence_score::TokenLogprobs;

/// A fresh, empty directory for one test, under Cargo's per-target temporary
/// directory; removed when dropped unless the test failed (to look into).
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn scratch(name: &str) -> Scratch {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("whence-cache-tests").join(format!(
        "{name}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

pub fn record(id: &str, prompt: &str, response: &str) -> Record {
    Record {
        id: id.into(),
        question_id: "q".into(),
        prompt: Prompt::Chat(vec![
            ChatMessage { role: "system".into(), content: "Think step by step.".into() },
            ChatMessage { role: "user".into(), content: prompt.into() },
        ]),
        response: response.into(),
        correct: None,
        answer: None,
        source: SourceLocation { file: "in.jsonl".into(), line: Some(1), row: None },
    }
}

/// `n` tokens with log-probabilities that depend on `seed`.
pub fn scores(seed: u64, n: usize) -> TokenLogprobs {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut logprobs = Vec::with_capacity(n);
    for _ in 0..n {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        logprobs.push(-((state >> 11) as f64) / (1u64 << 40) as f64);
    }
    TokenLogprobs { spans: (0..n).map(|i| ByteSpan::new(2 * i, 2 * i + 2)).collect(), logprobs }
}

/// The log-probabilities as bits, for bit-exact comparison.
pub fn bits(scores: &TokenLogprobs) -> Vec<u64> {
    scores.logprobs.iter().map(|logprob| logprob.to_bits()).collect()
}

pub fn assert_bit_exact(actual: &TokenLogprobs, expected: &TokenLogprobs) {
    assert_eq!(actual.spans, expected.spans);
    assert_eq!(bits(actual), bits(expected));
}
