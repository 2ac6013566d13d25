//! Scorers: what turns a prompt and a response into the log-probability of
//! every response token under one model.
//!
//! Every model backend sits behind the one narrow [`Scorer`] trait: the
//! precomputed-file scorer here ([`FileScorer`], `file:PATH`, with
//! [`IdDecoder`] for files that give token ids), and the
//! in-process checkpoint and inference-server scorers in their own crates.
//! A scorer returns each token's byte span in the response and its natural
//! log-probability; the core aligns those to actions, so models may have
//! different tokenizers.

mod file;
mod spec;
mod token_ids;

pub use file::FileScorer;
pub use spec::{Protocol, ScorerSpec, ScorerSpecError, ServerSpec};
pub use token_ids::{IdDecoder, SpanError};
/// The tokenizer type [`IdDecoder`] takes.
pub use tokenizers::Tokenizer;

use serde::{Deserialize, Serialize};
use whence_core::{ByteSpan, Record};

/// The log-probabilities of a response's tokens under one model.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TokenLogprobs {
    /// Byte spans in the response, one per token, in order (zero-width spans
    /// allowed, e.g. a BOS).
    pub spans: Vec<ByteSpan>,
    /// Natural log-probabilities, one per span, finite and ≤ 0.
    pub logprobs: Vec<f64>,
}

impl TokenLogprobs {
    /// Mean log-probability over the tokens with a non-empty span, `None`
    /// when there is none (the GRAPE statistic).
    pub fn mean_logprob(&self) -> Option<f64> {
        let (sum, n) = self
            .spans
            .iter()
            .zip(&self.logprobs)
            .filter(|(span, _)| !span.is_empty())
            .fold((0.0, 0usize), |(sum, n), (_, lp)| (sum + lp, n + 1));
        (n > 0).then(|| sum / n as f64)
    }
}

/// What a scorer is, for the summary: where it reads from and a fingerprint
/// of the model (or file) so that results can be traced to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// `file`, `checkpoint` or `server`.
    pub kind: String,
    /// A path or an endpoint.
    pub source: String,
    /// `sha256:…` of the scorer's defining content.
    pub fingerprint: String,
}

/// Why a record could not be scored.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// The scores given for one record are unusable; the run may skip the
    /// record (`--skip-invalid`).
    #[error("{location}: field `{field}`: {message}")]
    InvalidRecord { location: String, field: String, message: String },
    /// The scorer has nothing for this record.
    #[error("{scorer} has no scores for record `{id}` (input {input}, field `id`)")]
    MissingRecord { scorer: String, id: String, input: String },
    /// The scorer's own input is unusable (a malformed scorer file, a bad
    /// checkpoint): nothing can be scored until it is fixed.
    #[error("{0}")]
    InvalidSource(String),
    /// A record-specific error as an earlier run recorded it (a shard's
    /// skipped record, replayed by `whence merge`).
    #[error("{0}")]
    Recorded(String),
    /// The scorer failed while working (a model or server error).
    #[error("{0}")]
    Failed(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ScoreError {
    /// Whether the error concerns one record only (and may be skipped).
    pub fn is_record_specific(&self) -> bool {
        matches!(self, ScoreError::InvalidRecord { .. } | ScoreError::MissingRecord { .. } | ScoreError::Recorded(_))
    }

    /// Whether the error comes from what the user gave (exit code 2) rather
    /// than from a failure while running (exit code 1).
    pub fn is_input_error(&self) -> bool {
        !matches!(self, ScoreError::Failed(_))
    }
}

/// A model that scores responses, one record at a time.
///
/// Implementations must be deterministic: the same record gives the same
/// log-probabilities.
pub trait Scorer {
    /// What this scorer is.
    fn info(&self) -> &ModelInfo;

    /// The token log-probabilities of `record.response` given `record.prompt`.
    fn score(&mut self, record: &Record) -> Result<TokenLogprobs, ScoreError>;

    /// Scores several records, handing each record's result to `deliver`
    /// (with its index in `records`) as soon as it exists, so that a caller
    /// can keep it (the score cache commits it) before the rest are done.
    /// Backends that batch or run requests concurrently override this; they
    /// may deliver out of order. The default scores one record after another.
    fn score_each(&mut self, records: &[&Record], deliver: &mut dyn FnMut(usize, Result<TokenLogprobs, ScoreError>)) {
        for (index, record) in records.iter().enumerate() {
            let result = self.score(record);
            deliver(index, result);
        }
    }

    /// Scores several records; results come back in input order.
    fn score_batch(&mut self, records: &[&Record]) -> Vec<Result<TokenLogprobs, ScoreError>> {
        let mut results: Vec<Option<Result<TokenLogprobs, ScoreError>>> = (0..records.len()).map(|_| None).collect();
        self.score_each(records, &mut |index, result| results[index] = Some(result));
        results
            .into_iter()
            .map(|result| result.unwrap_or_else(|| Err(ScoreError::Failed("the scorer returned no result for a record".into()))))
            .collect()
    }

    /// Called when a run is done with this scorer, so that a model-backed
    /// scorer frees its model before the next one loads (runs score model by
    /// model, so peak memory is that of the largest model). Scoring again
    /// afterwards loads it again.
    fn release(&mut self) {}
}

impl<S: Scorer + ?Sized> Scorer for Box<S> {
    fn info(&self) -> &ModelInfo {
        (**self).info()
    }

    fn score(&mut self, record: &Record) -> Result<TokenLogprobs, ScoreError> {
        (**self).score(record)
    }

    fn score_each(&mut self, records: &[&Record], deliver: &mut dyn FnMut(usize, Result<TokenLogprobs, ScoreError>)) {
        (**self).score_each(records, deliver)
    }

    fn score_batch(&mut self, records: &[&Record]) -> Vec<Result<TokenLogprobs, ScoreError>> {
        (**self).score_batch(records)
    }

    fn release(&mut self) {
        (**self).release()
    }
}

/// Checks a scorer's output against the response it scores: as many
/// log-probabilities as spans, spans in order (start ≤ end) inside the
/// response on char boundaries,
/// log-probabilities finite and ≤ 0. `location` names where the scores came
/// from, for the error.
pub fn validate(scores: &TokenLogprobs, response: &str, location: &str) -> Result<(), ScoreError> {
    let invalid = |field: String, message: String| ScoreError::InvalidRecord { location: location.to_string(), field, message };
    if scores.spans.len() != scores.logprobs.len() {
        return Err(invalid(
            "logprobs".into(),
            format!("{} log-probabilities for {} offsets; there must be one per offset", scores.logprobs.len(), scores.spans.len()),
        ));
    }
    for (i, span) in scores.spans.iter().enumerate() {
        if span.start > span.end {
            return Err(invalid(format!("offsets[{i}]"), format!("start {} is after end {}", span.start, span.end)));
        }
        if span.end > response.len() {
            return Err(invalid(
                format!("offsets[{i}]"),
                format!("span {span} ends past the response, which is {} bytes long", response.len()),
            ));
        }
        if !response.is_char_boundary(span.start) || !response.is_char_boundary(span.end) {
            return Err(invalid(
                format!("offsets[{i}]"),
                format!("span {span} does not fall on UTF-8 character boundaries of the response"),
            ));
        }
    }
    for (i, &logprob) in scores.logprobs.iter().enumerate() {
        if !logprob.is_finite() || logprob > 0.0 {
            return Err(invalid(format!("logprobs[{i}]"), format!("log-probability `{logprob}` is not a finite number ≤ 0")));
        }
    }
    Ok(())
}
