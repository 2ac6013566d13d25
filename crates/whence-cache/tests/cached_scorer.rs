//! `CachedScorer` over a counting fake scorer.

mod common;

use std::sync::{Arc, Mutex};

use common::{assert_bit_exact, record, scores, scratch};
use whence_cache::{CachedScorer, DerefScorer, RecordKey, ScoreCache};
use whence_core::Record;
use whence_score::{ModelInfo, ScoreError, Scorer, TokenLogprobs};

/// What the fake was asked: one entry per `score_batch` call, the ids in order.
type Calls = Arc<Mutex<Vec<Vec<String>>>>;

/// Scores a record from its response (deterministic); fails on responses
/// containing `FAIL` (a record-specific error) while `failing` is set.
struct Counting {
    info: ModelInfo,
    calls: Calls,
    failing: bool,
    released: Arc<std::sync::atomic::AtomicUsize>,
}

impl Counting {
    fn new(fingerprint: &str) -> (Self, Calls) {
        let calls = Calls::default();
        let info = ModelInfo { kind: "fake".into(), source: "counting".into(), fingerprint: fingerprint.into() };
        (Counting { info, calls: calls.clone(), failing: true, released: Default::default() }, calls)
    }

    fn scores_of(record: &Record) -> TokenLogprobs {
        let seed = record.response.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
        scores(seed, record.response.len() / 2)
    }
}

impl Scorer for Counting {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn score(&mut self, record: &Record) -> Result<TokenLogprobs, ScoreError> {
        if self.failing && record.response.contains("FAIL") {
            return Err(ScoreError::MissingRecord { scorer: "counting".into(), id: record.id.clone(), input: "in.jsonl".into() });
        }
        Ok(Counting::scores_of(record))
    }

    fn score_batch(&mut self, records: &[&Record]) -> Vec<Result<TokenLogprobs, ScoreError>> {
        self.calls.lock().unwrap().push(records.iter().map(|record| record.id.clone()).collect());
        records.iter().map(|record| self.score(record)).collect()
    }

    fn release(&mut self) {
        self.released.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn records(n: usize) -> Vec<Record> {
    (0..n).map(|i| record(&format!("r{i}"), &format!("question {}", i % 3), &format!("response number {i} ....."))).collect()
}

fn refs(records: &[Record]) -> Vec<&Record> {
    records.iter().collect()
}

fn ids(records: &[&Record]) -> Vec<String> {
    records.iter().map(|record| record.id.clone()).collect()
}

#[test]
fn the_second_pass_does_not_call_the_inner_scorer() {
    let cache = Arc::new(ScoreCache::in_memory().unwrap());
    let records = records(20);
    let (inner, calls) = Counting::new("sha256:m");
    let mut scorer = CachedScorer::new(inner, cache.clone());
    let first: Vec<_> = refs(&records).chunks(8).flat_map(|batch| scorer.score_batch(batch)).collect();
    assert_eq!(calls.lock().unwrap().len(), 3);
    assert_eq!((scorer.hits(), scorer.misses()), (0, 20));
    assert_eq!(cache.len(Some("sha256:m")).unwrap(), 20);

    // A new scorer (a rerun) over the same cache: all hits, bit-exact.
    let (inner, calls) = Counting::new("sha256:m");
    let mut scorer = CachedScorer::new(inner, cache.clone());
    let second: Vec<_> = refs(&records).chunks(5).flat_map(|batch| scorer.score_batch(batch)).collect();
    let single = scorer.score(&records[3]).unwrap();
    assert!(calls.lock().unwrap().is_empty(), "the inner scorer was called: {:?}", calls.lock().unwrap());
    assert_eq!((scorer.hits(), scorer.misses()), (21, 0));
    for (a, b) in first.iter().zip(&second) {
        assert_bit_exact(a.as_ref().unwrap(), b.as_ref().unwrap());
    }
    assert_bit_exact(&single, first[3].as_ref().unwrap());
}

#[test]
fn the_key_is_the_content_and_the_model_fingerprint() {
    let cache = Arc::new(ScoreCache::in_memory().unwrap());
    let records = records(4);
    let (inner, _) = Counting::new("sha256:teacher");
    CachedScorer::new(inner, cache.clone()).score_batch(&refs(&records));

    // Same content under other ids: hits.
    let renamed: Vec<Record> =
        records.iter().map(|record| Record { id: format!("other-{}", record.id), correct: Some(true), ..record.clone() }).collect();
    let (inner, calls) = Counting::new("sha256:teacher");
    let mut scorer = CachedScorer::new(inner, cache.clone());
    scorer.score_batch(&refs(&renamed));
    assert_eq!((scorer.hits(), scorer.misses()), (4, 0));
    assert!(calls.lock().unwrap().is_empty());

    // Another model: misses.
    let (inner, calls) = Counting::new("sha256:student");
    let mut scorer = CachedScorer::new(inner, cache.clone());
    scorer.score_batch(&refs(&records));
    assert_eq!((scorer.hits(), scorer.misses()), (0, 4));
    assert_eq!(calls.lock().unwrap().len(), 1);
    assert_eq!(cache.len(None).unwrap(), 8);
}

#[test]
fn errors_are_returned_and_not_cached() {
    let cache = Arc::new(ScoreCache::in_memory().unwrap());
    let records = vec![record("a", "p", "fine response"), record("b", "p", "this one will FAIL"), record("c", "p", "another fine one")];
    let (inner, calls) = Counting::new("sha256:m");
    let mut scorer = CachedScorer::new(inner, cache.clone());
    let results = scorer.score_batch(&refs(&records));
    assert!(results[0].is_ok() && results[2].is_ok());
    let error = results[1].as_ref().unwrap_err();
    assert!(matches!(error, ScoreError::MissingRecord { id, .. } if id == "b"), "{error:?}");
    assert_eq!(cache.len(None).unwrap(), 2);
    assert_eq!(cache.get("sha256:m", &RecordKey::of(&records[1])).unwrap(), None);

    // The failure is retried on the next pass (and still fails).
    let again = scorer.score_batch(&refs(&records));
    assert!(again[1].is_err());
    assert_eq!(calls.lock().unwrap().last().unwrap(), &["b".to_string()]);

    // Once the inner scorer succeeds, the result is cached.
    let (mut inner, calls) = Counting::new("sha256:m");
    inner.failing = false;
    let mut scorer = CachedScorer::new(inner, cache.clone());
    assert!(scorer.score(&records[1]).is_ok());
    assert_eq!(calls.lock().unwrap().len(), 1);
    assert_eq!(cache.len(None).unwrap(), 3);
}

#[test]
fn batch_order_is_kept_with_hits_and_misses_mixed() {
    let cache = Arc::new(ScoreCache::in_memory().unwrap());
    let records = records(12);
    // Warm the cache with every third record.
    let (inner, _) = Counting::new("sha256:m");
    let warm: Vec<&Record> = records.iter().step_by(3).collect();
    CachedScorer::new(inner, cache.clone()).score_batch(&warm);

    let (inner, calls) = Counting::new("sha256:m");
    let mut scorer = CachedScorer::new(inner, cache.clone());
    let mut batch = refs(&records);
    batch.reverse();
    let results = scorer.score_batch(&batch);
    assert_eq!(results.len(), 12);
    for (record, result) in batch.iter().zip(&results) {
        assert_bit_exact(result.as_ref().unwrap(), &Counting::scores_of(record));
    }
    // One inner call, with the misses only, in the batch's order.
    let expected: Vec<String> = ids(&batch).into_iter().filter(|id| id[1..].parse::<usize>().unwrap() % 3 != 0).collect();
    assert_eq!(*calls.lock().unwrap(), vec![expected]);
    assert_eq!((scorer.hits(), scorer.misses()), (4, 8));
}

#[test]
fn a_boxed_scorer_can_be_cached_and_boxed_again() {
    let cache = Arc::new(ScoreCache::in_memory().unwrap());
    let records = records(3);
    let (inner, calls) = Counting::new("sha256:boxed");
    let boxed: Box<dyn Scorer> = Box::new(inner);
    let mut scorer: Box<dyn Scorer> = Box::new(CachedScorer::new(boxed, cache.clone()));
    assert_eq!(scorer.info().fingerprint, "sha256:boxed");
    scorer.score_batch(&refs(&records));
    scorer.score_batch(&refs(&records));
    assert_eq!(calls.lock().unwrap().len(), 1);

    // And through a borrowed trait object, as the pipeline passes scorers.
    let (mut inner, calls) = Counting::new("sha256:boxed");
    let borrowed: &mut dyn Scorer = &mut inner;
    let mut scorer = CachedScorer::new(DerefScorer(borrowed), cache.clone());
    assert!(scorer.score(&records[0]).is_ok());
    assert_eq!(scorer.hits(), 1);
    assert!(calls.lock().unwrap().is_empty());
}

#[test]
fn an_unstorable_result_is_returned_uncached() {
    struct Mismatched(ModelInfo);
    impl Scorer for Mismatched {
        fn info(&self) -> &ModelInfo {
            &self.0
        }
        fn score(&mut self, _: &Record) -> Result<TokenLogprobs, ScoreError> {
            let mut scores = scores(1, 3);
            scores.logprobs.pop();
            Ok(scores)
        }
    }
    let cache = Arc::new(ScoreCache::in_memory().unwrap());
    let info = ModelInfo { kind: "fake".into(), source: "x".into(), fingerprint: "sha256:x".into() };
    let mut scorer = CachedScorer::new(Mismatched(info), cache.clone());
    let result = scorer.score(&record("a", "p", "r")).unwrap();
    assert_eq!(result.logprobs.len(), 2);
    assert_eq!(cache.len(None).unwrap(), 0);
}

#[test]
fn a_corrupt_cache_entry_is_the_records_error() {
    let dir = scratch("scorer-corrupt");
    let path = dir.join("scores.sqlite");
    let cache = Arc::new(ScoreCache::open(&path).unwrap());
    let records = records(2);
    let (inner, _) = Counting::new("sha256:m");
    CachedScorer::new(inner, cache.clone()).score_batch(&refs(&records));
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("UPDATE scores SET scores = x'02' WHERE record = ?1", [RecordKey::of(&records[0]).as_str()])
        .unwrap();
    let (inner, calls) = Counting::new("sha256:m");
    let mut scorer = CachedScorer::new(inner, cache.clone());
    let results = scorer.score_batch(&refs(&records));
    let error = results[0].as_ref().unwrap_err();
    assert!(matches!(error, ScoreError::InvalidSource(_)), "{error:?}");
    assert!(error.to_string().contains("format version `2`"), "{error}");
    assert!(results[1].is_ok());
    assert!(calls.lock().unwrap().is_empty());
}

#[test]
fn release_reaches_the_inner_scorer() {
    let cache = Arc::new(ScoreCache::in_memory().unwrap());
    let (inner, _) = Counting::new("sha256:m");
    let released = inner.released.clone();
    let mut scorer = CachedScorer::new(inner, cache.clone());
    scorer.release();
    let mut borrowed_inner = Counting::new("sha256:m").0;
    borrowed_inner.released = released.clone();
    let mut scorer = CachedScorer::new(DerefScorer(&mut borrowed_inner as &mut dyn Scorer), cache);
    scorer.release();
    assert_eq!(released.load(std::sync::atomic::Ordering::Relaxed), 2);
}
