//! `CachedScorer` over a counting fake scorer.

mod common;

use std::sync::{Arc, Mutex};

use common::{assert_bit_exact, record, scores, scratch};
use whence_cache::{CachedScorer, DerefScorer, RecordKey, ScoreCache};
use whence_core::Record;
use whence_score::{ModelInfo, ScoreError, Scorer, TokenLogprobs};

/// What the fake was asked: one entry per `score` or `score_batch` call, the
/// ids in order.
type Calls = Arc<Mutex<Vec<Vec<String>>>>;

/// Scores a record from its response (deterministic); fails on responses
/// containing `FAIL` (a record-specific error) while `failing` is set.
/// Of kind `fake` (scored one record at a time, as a checkpoint is) or
/// `server` (given whole batches).
struct Counting {
    info: ModelInfo,
    calls: Calls,
    failing: bool,
    released: Arc<std::sync::atomic::AtomicUsize>,
    /// When set, each record scored checks that the cache already holds
    /// this many entries (every record scored before it), then one more.
    committed_before: Option<(Arc<ScoreCache>, u64)>,
}

impl Counting {
    fn new(fingerprint: &str) -> (Self, Calls) {
        Counting::of_kind("fake", fingerprint)
    }

    fn server(fingerprint: &str) -> (Self, Calls) {
        Counting::of_kind("server", fingerprint)
    }

    fn of_kind(kind: &str, fingerprint: &str) -> (Self, Calls) {
        let calls = Calls::default();
        let info = ModelInfo { kind: kind.into(), source: "counting".into(), fingerprint: fingerprint.into() };
        (Counting { info, calls: calls.clone(), failing: true, released: Default::default(), committed_before: None }, calls)
    }

    fn scores_of(record: &Record) -> TokenLogprobs {
        let seed = record.response.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
        scores(seed, record.response.len() / 2)
    }

    fn compute(&mut self, record: &Record) -> Result<TokenLogprobs, ScoreError> {
        if let Some((cache, expected)) = &mut self.committed_before {
            assert_eq!(cache.len(None).unwrap(), *expected, "scoring {}: the records scored before it are not all committed", record.id);
            *expected += 1;
        }
        if self.failing && record.response.contains("FAIL") {
            return Err(ScoreError::MissingRecord { scorer: "counting".into(), id: record.id.clone(), input: "in.jsonl".into() });
        }
        Ok(Counting::scores_of(record))
    }
}

impl Scorer for Counting {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn score(&mut self, record: &Record) -> Result<TokenLogprobs, ScoreError> {
        self.calls.lock().unwrap().push(vec![record.id.clone()]);
        self.compute(record)
    }

    /// A server scorer (kind `server`) takes the batch in one call, as its
    /// requests run concurrently, and delivers the answers out of order (last
    /// first); any other scores one record after another.
    fn score_each(&mut self, records: &[&Record], deliver: &mut dyn FnMut(usize, Result<TokenLogprobs, ScoreError>)) {
        if self.info.kind != "server" {
            for (index, record) in records.iter().enumerate() {
                let result = self.score(record);
                deliver(index, result);
            }
            return;
        }
        self.calls.lock().unwrap().push(records.iter().map(|record| record.id.clone()).collect());
        for (index, record) in records.iter().enumerate().rev() {
            deliver(index, self.compute(record));
        }
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
    assert_eq!(calls.lock().unwrap().len(), 20, "one call per record");
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
    assert_eq!(calls.lock().unwrap().len(), 4);
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

/// Scores 12 records given in reverse order, every third one already
/// cached; returns the batch and what the inner scorer was asked.
fn mixed_batch(inner: (Counting, Calls)) -> (Vec<String>, Vec<Vec<String>>) {
    let cache = Arc::new(ScoreCache::in_memory().unwrap());
    let records = records(12);
    // Warm the cache with every third record.
    let (warmer, _) = Counting::new("sha256:m");
    let warm: Vec<&Record> = records.iter().step_by(3).collect();
    CachedScorer::new(warmer, cache.clone()).score_batch(&warm);

    let (inner, calls) = inner;
    let mut scorer = CachedScorer::new(inner, cache.clone());
    let mut batch = refs(&records);
    batch.reverse();
    let results = scorer.score_batch(&batch);
    assert_eq!(results.len(), 12);
    for (record, result) in batch.iter().zip(&results) {
        assert_bit_exact(result.as_ref().unwrap(), &Counting::scores_of(record));
    }
    assert_eq!((scorer.hits(), scorer.misses()), (4, 8));
    assert_eq!(cache.len(None).unwrap(), 12);
    let calls = calls.lock().unwrap().clone();
    (ids(&batch), calls)
}

fn misses_in_order(batch: &[String]) -> Vec<String> {
    batch.iter().filter(|id| id[1..].parse::<usize>().unwrap() % 3 != 0).cloned().collect()
}

#[test]
fn batch_order_is_kept_with_hits_and_misses_mixed() {
    // One record at a time, the misses only, in the batch's order.
    let (batch, calls) = mixed_batch(Counting::new("sha256:m"));
    assert_eq!(calls, misses_in_order(&batch).into_iter().map(|id| vec![id]).collect::<Vec<_>>());

    // A server scorer: one inner call with all the misses, in the batch's order.
    let (batch, calls) = mixed_batch(Counting::server("sha256:m"));
    assert_eq!(calls, vec![misses_in_order(&batch)]);
}

#[test]
fn each_record_is_committed_before_the_next_is_scored() {
    let dir = scratch("per-record");
    let cache = Arc::new(ScoreCache::open(&dir.join("scores.sqlite")).unwrap());
    let records = records(10);
    let (mut inner, calls) = Counting::new("sha256:m");
    inner.committed_before = Some((cache.clone(), 0));
    let mut scorer = CachedScorer::new(inner, cache.clone());
    let results = scorer.score_batch(&refs(&records));
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(calls.lock().unwrap().len(), 10);
    // Committed: another handle on the file (another process) sees them all.
    assert_eq!(ScoreCache::open(&dir.join("scores.sqlite")).unwrap().len(Some("sha256:m")).unwrap(), 10);
}

#[test]
fn a_server_batch_is_committed_record_by_record() {
    let dir = scratch("per-answer");
    let path = dir.join("scores.sqlite");
    let cache = Arc::new(ScoreCache::open(&path).unwrap());
    let records = vec![record("a", "p", "fine response"), record("b", "p", "this one will FAIL"), record("c", "p", "another fine one")];
    let (inner, calls) = Counting::server("sha256:m");
    let mut scorer = CachedScorer::new(inner, cache.clone());
    let results = scorer.score_batch(&refs(&records));
    assert_eq!(calls.lock().unwrap().len(), 1, "the server scorer gets the batch whole");
    assert!(results[0].is_ok() && results[1].is_err() && results[2].is_ok());
    // The failed record does not keep the others from being stored.
    let reopened = ScoreCache::open(&path).unwrap();
    assert_eq!(reopened.len(Some("sha256:m")).unwrap(), 2);
    assert_eq!(reopened.get("sha256:m", &RecordKey::of(&records[1])).unwrap(), None);
    assert_bit_exact(&reopened.get("sha256:m", &RecordKey::of(&records[2])).unwrap().unwrap(), results[2].as_ref().unwrap());
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
    assert_eq!(calls.lock().unwrap().len(), 3, "the second pass is all hits");

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
