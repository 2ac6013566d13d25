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
/// A batch is looked up first, and the misses go to the inner scorer's
/// [`Scorer::score_each`]. Each record's new scores are committed (in a
/// transaction of their own) as soon as the inner scorer hands them over, so
/// a killed run loses at most the records in flight: an in-process scorer (a
/// checkpoint) scores the misses one by one, each committed before the next
/// is scored; an inference-server scorer keeps several requests in flight
/// and hands each answer over as it arrives. Errors from the inner
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

    fn score_each(&mut self, records: &[&Record], deliver: &mut dyn FnMut(usize, Result<TokenLogprobs, ScoreError>)) {
        self.0.score_each(records, deliver)
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

    /// Cache hits are delivered first; the misses go to the inner scorer's
    /// `score_each`, and each answer is committed before it is delivered.
    fn score_each(&mut self, records: &[&Record], deliver: &mut dyn FnMut(usize, Result<TokenLogprobs, ScoreError>)) {
        let model = self.inner.info().fingerprint.clone();
        let keys: Vec<RecordKey> = records.iter().map(|record| RecordKey::of(record)).collect();
        let mut missed = Vec::new();
        for (index, key) in keys.iter().enumerate() {
            match self.cache.get(&model, key) {
                Ok(Some(scores)) => {
                    self.hits += 1;
                    deliver(index, Ok(scores));
                }
                Ok(None) => missed.push(index),
                Err(error) => deliver(index, Err(error.into())),
            }
        }
        if missed.is_empty() {
            return;
        }
        let batch: Vec<&Record> = missed.iter().map(|&index| records[index]).collect();
        let mut answered = vec![false; missed.len()];
        let cache = &self.cache;
        self.inner.score_each(&batch, &mut |position, result| {
            let (Some(&index), Some(done)) = (missed.get(position), answered.get_mut(position)) else { return };
            if !std::mem::replace(done, true) {
                deliver(index, keep(cache, &model, &keys[index], result));
            }
        });
        self.misses += missed.len() as u64;
        for (position, done) in answered.into_iter().enumerate() {
            if !done {
                let message = format!("scorer {} returned no result for record {}", self.inner.info().source, records[missed[position]].id);
                deliver(missed[position], Err(ScoreError::Failed(message)));
            }
        }
    }

    /// Releases the inner scorer (its model); the cache stays open.
    fn release(&mut self) {
        self.inner.release()
    }
}

/// Commits one record's new scores (its own transaction) and passes the
/// result on; a record whose scores cannot be stored gets the cache's error
/// instead. Errors and scores with fewer or more log-probabilities than spans
/// pass through uncached.
fn keep(cache: &ScoreCache, model: &str, key: &RecordKey, result: Result<TokenLogprobs, ScoreError>) -> Result<TokenLogprobs, ScoreError> {
    match result {
        Ok(scores) if scores.spans.len() == scores.logprobs.len() => match cache.put(model, key, &scores) {
            Ok(()) => Ok(scores),
            Err(error) => Err(error.into()),
        },
        other => other,
    }
}
