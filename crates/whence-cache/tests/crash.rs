//! Crash safety: a writer process killed with SIGKILL in the middle of its
//! work leaves a cache that opens, holds only complete entries (and whole
//! `put_many` batches), and lets a rerun write the rest.
//!
//! The writer is this test binary itself, re-run on the `crash_child_writer`
//! test with `WHENCE_CACHE_CRASH_CHILD` naming the cache file.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_bit_exact, record, scores};
use whence_cache::{RecordKey, ScoreCache};
use whence_score::TokenLogprobs;

const CHILD_ENV: &str = "WHENCE_CACHE_CRASH_CHILD";
const MODEL: &str = "sha256:crash-test-model";
const BATCHES: usize = 400;

/// The planned work: batches of 1 entry (written with `put`) and of 7
/// (written with `put_many`), entries of 50 to 1550 tokens.
fn plan() -> Vec<Vec<usize>> {
    let mut next = 0;
    (0..BATCHES)
        .map(|batch| {
            let size = if batch % 2 == 0 { 1 } else { 7 };
            next += size;
            (next - size..next).collect()
        })
        .collect()
}

fn key(entry: usize) -> RecordKey {
    RecordKey::of(&record(&format!("r{entry}"), "Solve the problem.", &format!("entry {entry}")))
}

fn expected(entry: usize) -> TokenLogprobs {
    scores(entry as u64, 50 + (entry * 37) % 1500)
}

/// Writes every planned batch that is not there yet, in order: what a
/// resumed `whence` run does.
fn write_missing(cache: &ScoreCache) {
    for batch in plan() {
        if cache.get(MODEL, &key(batch[0])).unwrap().is_some() {
            continue;
        }
        if let [entry] = batch[..] {
            cache.put(MODEL, &key(entry), &expected(entry)).unwrap();
        } else {
            let entries: Vec<_> = batch.iter().map(|&entry| (key(entry), expected(entry))).collect();
            cache.put_many(MODEL, &entries).unwrap();
        }
    }
}

/// Checks that every entry present is complete and right, that batches are
/// whole, and that the present batches are a prefix of the plan; returns
/// how many batches are present.
fn check(path: &Path) -> usize {
    let cache = ScoreCache::open(path).expect("the cache opens after the kill");
    let mut present_batches = 0;
    let mut present_entries = 0;
    for (index, batch) in plan().iter().enumerate() {
        let found: Vec<bool> = batch
            .iter()
            .map(|&entry| match cache.get(MODEL, &key(entry)).expect("every entry present is valid") {
                Some(scores) => {
                    assert_bit_exact(&scores, &expected(entry));
                    true
                }
                None => false,
            })
            .collect();
        assert!(found.iter().all(|&f| f) || found.iter().all(|&f| !f), "batch {index} is partly written: {found:?}");
        if found[0] {
            assert_eq!(present_batches, index, "batch {index} is present but an earlier one is missing");
            present_batches += 1;
            present_entries += batch.len() as u64;
        }
    }
    assert_eq!(cache.len(None).unwrap(), present_entries, "the cache holds entries outside the plan");
    present_batches
}

#[test]
fn crash_child_writer() {
    // Only does something when re-run by `killed_writers_lose_nothing_committed`.
    let Some(path) = std::env::var_os(CHILD_ENV) else { return };
    let cache = ScoreCache::open(Path::new(&path)).unwrap();
    write_missing(&cache);
}

#[test]
fn killed_writers_lose_nothing_committed() {
    let dir = common::scratch("crash");
    let path = dir.join("scores.sqlite");
    let total_entries: u64 = plan().iter().map(|batch| batch.len() as u64).sum();
    let observer = ScoreCache::open(&path).unwrap();
    let mut progress = Vec::new();
    for threshold in [20, 100, 200, 300, 400] {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child_writer", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while observer.len(None).unwrap() < threshold {
            assert!(child.try_wait().unwrap().is_none(), "the writer exited before it was killed");
            assert!(started.elapsed() < Duration::from_secs(120), "the writer made no progress");
            std::thread::sleep(Duration::from_millis(1));
        }
        // `Child::kill` is SIGKILL on Unix: no destructor, no rollback, no
        // checkpoint of the write-ahead log.
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "the writer finished before it was killed");
        let batches = check(&path);
        assert!(batches < BATCHES, "the writer finished its work before it was killed");
        progress.push(batches);
        eprintln!("killed at threshold {threshold}: {batches} batches present");
    }
    assert!(progress.windows(2).all(|pair| pair[0] <= pair[1]), "{progress:?}");

    // The rerun writes the rest, and the result is what an uninterrupted run gives.
    write_missing(&ScoreCache::open(&path).unwrap());
    assert_eq!(check(&path), BATCHES);
    assert_eq!(observer.len(Some(MODEL)).unwrap(), total_entries);

    let uninterrupted = ScoreCache::in_memory().unwrap();
    write_missing(&uninterrupted);
    let resumed = ScoreCache::open(&path).unwrap();
    for entry in 0..total_entries as usize {
        assert_bit_exact(&resumed.get(MODEL, &key(entry)).unwrap().unwrap(), &uninterrupted.get(MODEL, &key(entry)).unwrap().unwrap());
    }
}
