//! A scorer whose results are cached.

use std::ops::DerefMut;
use std::sync::Arc;

use whence_core::Record;
use whence_score::{ModelInfo, ScoreError, Scorer, TokenLogprobs};

use crate::key::RecordKey;
use crate::store::{CacheError, ScoreCache};

impl From<CacheError> for ScoreError {
    /// An unusable cache file is the user's to fix ([`ScoreError::InvalidSource`],
    /// an input error); a failure while reading or writing it is
    /// [`ScoreError::Failed`].
    fn from(error: CacheError) -> Self {
        if error.is_unusable_file() {
            ScoreError::InvalidSource(error.to_string())
        } else {
            ScoreError::Failed(error.to_string())
        }
    }
}

/// A scorer whose results are cached in a [`ScoreCache`] under the inner
/// scorer's `info().fingerprint` and each record's [`RecordKey`].
///
/// A batch is looked up first, and the misses are scored in input order.
/// Each record's new scores are committed (in a transaction of their own) as
/// soon as the inner scorer hands them over, so a killed run loses at most
/// the records in flight: an in-process scorer (a checkpoint) is given the
/// misses one by one, and each is committed before the next is scored; an
/// inference-server scorer is given all the misses in one `score_batch`
/// call, which keeps several requests in flight and hands the answers over
/// when the batch is done, and each is then committed. Errors from the inner
/// scorer are returned and never cached; a record whose scores the inner
/// scorer gives with fewer or more log-probabilities than spans is returned
/// uncached (the caller's validation reports it). A failure of the cache
/// itself is the error of the records it concerns.
pub struct CachedScorer<S> {
    inner: S,
    cache: Arc<ScoreCache>,
    hits: u64,
    misses: u64,
}

impl<S: Scorer> CachedScorer<S> {
    pub fn new(inner: S, cache: Arc<ScoreCache>) -> Self {
        CachedScorer { inner, cache, hits: 0, misses: 0 }
    }

    /// Records answered from the cache so far.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Records given to the inner scorer so far.
    pub fn misses(&self) -> u64 {
        self.misses
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    pub fn cache(&self) -> &Arc<ScoreCache> {
        &self.cache
    }

    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The scorer a pointer points to, as a [`Scorer`], for caching a borrowed
/// trait object: `CachedScorer::new(DerefScorer(scorer), cache)` with
/// `scorer: &mut dyn Scorer` (as the pipeline passes scorers). A
/// `Box<dyn Scorer>` is a `Scorer` itself and needs no wrapper.
pub struct DerefScorer<P>(pub P);

impl<P> Scorer for DerefScorer<P>
where
    P: DerefMut,
    P::Target: Scorer,
{
    fn info(&self) -> &ModelInfo {
        self.0.info()
    }

    fn score(&mut self, record: &Record) -> Result<TokenLogprobs, ScoreError> {
        self.0.score(record)
    }

    fn score_batch(&mut self, records: &[&Record]) -> Vec<Result<TokenLogprobs, ScoreError>> {
        self.0.score_batch(records)
    }

    fn release(&mut self) {
        self.0.release()
    }
}

impl<S: Scorer> Scorer for CachedScorer<S> {
    fn info(&self) -> &ModelInfo {
        self.inner.info()
    }

    fn score(&mut self, record: &Record) -> Result<TokenLogprobs, ScoreError> {
        self.score_batch(&[record]).pop().expect("one result per record")
    }

    fn score_batch(&mut self, records: &[&Record]) -> Vec<Result<TokenLogprobs, ScoreError>> {
        let model = self.inner.info().fingerprint.clone();
        let keys: Vec<RecordKey> = records.iter().map(|record| RecordKey::of(record)).collect();
        let mut results: Vec<Option<Result<TokenLogprobs, ScoreError>>> = Vec::with_capacity(records.len());
        let mut missed = Vec::new();
        for (index, key) in keys.iter().enumerate() {
            results.push(match self.cache.get(&model, key) {
                Ok(Some(scores)) => {
                    self.hits += 1;
                    Some(Ok(scores))
                }
                Ok(None) => {
                    missed.push(index);
                    None
                }
                Err(error) => Some(Err(error.into())),
            });
        }
        if !missed.is_empty() && scores_records_together(self.inner.info()) {
            let batch: Vec<&Record> = missed.iter().map(|&index| records[index]).collect();
            let mut scored = self.inner.score_batch(&batch);
            self.misses += missed.len() as u64;
            if scored.len() != missed.len() {
                let message = format!(
                    "scorer {} returned {} results for a batch of {} records",
                    self.inner.info().source,
                    scored.len(),
                    missed.len()
                );
                scored.truncate(missed.len());
                scored.resize_with(missed.len(), || Err(ScoreError::Failed(message.clone())));
            }
            for (index, result) in missed.into_iter().zip(scored) {
                results[index] = Some(self.keep(&model, &keys[index], result));
            }
        } else {
            for index in missed {
                let result = self.inner.score(records[index]);
                self.misses += 1;
                results[index] = Some(self.keep(&model, &keys[index], result));
            }
        }
        results.into_iter().map(|result| result.expect("every record answered")).collect()
    }

    /// Releases the inner scorer (its model); the cache stays open.
    fn release(&mut self) {
        self.inner.release()
    }
}

impl<S: Scorer> CachedScorer<S> {
    /// Commits one record's new scores (its own transaction) and passes the
    /// result on; a record whose scores cannot be stored gets the cache's
    /// error instead. Errors and scores with fewer or more log-probabilities
    /// than spans pass through uncached.
    fn keep(&self, model: &str, key: &RecordKey, result: Result<TokenLogprobs, ScoreError>) -> Result<TokenLogprobs, ScoreError> {
        match result {
            Ok(scores) if scores.spans.len() == scores.logprobs.len() => match self.cache.put(model, key, &scores) {
                Ok(()) => Ok(scores),
                Err(error) => Err(error.into()),
            },
            other => other,
        }
    }
}

/// Whether the scorer gains from being given several records at once:
/// inference-server scorers (`kind` `server`) keep several requests in
/// flight, and their answers come back together when the batch returns.
/// Every other scorer scores one record after another, so it is given one
/// record at a time and each record's scores are committed as soon as they
/// exist.
fn scores_records_together(info: &ModelInfo) -> bool {
    info.kind == "server"
}
