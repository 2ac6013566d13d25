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
/// A batch is looked up first; the misses go to the inner scorer in one
/// `score_batch` call, in input order, and what it returns is committed to
/// the cache in one transaction before the batch's results are returned, so a
/// killed run loses at most the batch in flight. Errors from the inner
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
        if !missed.is_empty() {
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
            let storable: Vec<(&RecordKey, &TokenLogprobs)> = missed
                .iter()
                .zip(&scored)
                .filter_map(|(&index, result)| result.as_ref().ok().map(|scores| (&keys[index], scores)))
                .filter(|(_, scores)| scores.spans.len() == scores.logprobs.len())
                .collect();
            let stored = self.cache.put_refs(&model, &storable);
            drop(storable);
            let stored_error = stored.err().map(|error| (error.is_unusable_file(), error.to_string()));
            for (index, result) in missed.into_iter().zip(scored) {
                results[index] = Some(match (&stored_error, result) {
                    (Some((true, message)), Ok(_)) => Err(ScoreError::InvalidSource(message.clone())),
                    (Some((false, message)), Ok(_)) => Err(ScoreError::Failed(message.clone())),
                    (_, result) => result,
                });
            }
        }
        results.into_iter().map(|result| result.expect("every record answered")).collect()
    }

    /// Releases the inner scorer (its model); the cache stays open.
    fn release(&mut self) {
        self.inner.release()
    }
}
