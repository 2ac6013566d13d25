//! The file store: round trips, reopening, concurrent handles, and the
//! errors for files that are not usable caches.

mod common;

use std::sync::{Arc, Barrier};

use common::{assert_bit_exact, bits, record, scores, scratch};
use whence_cache::{CacheError, RecordKey, ScoreCache};
use whence_core::ByteSpan;
use whence_score::TokenLogprobs;

const MODEL: &str = "sha256:teacher";

/// The hint of every unusable-file error.
const START_OVER: &str =
    "the file holds only cached scores (computed again when missing): delete it to start over, or give another cache file with --cache PATH";

fn key(n: usize) -> RecordKey {
    RecordKey::of(&record(&format!("r{n}"), "What is 2+2?", &format!("response {n}")))
}

#[test]
fn round_trip_is_bit_exact_through_the_file() {
    let dir = scratch("round-trip");
    let path = dir.join("scores.sqlite");
    let special = [-0.0, -5e-324, -f64::MIN_POSITIVE / 3.0, -1e-300, -1e300, -f64::MAX, 0.0, -0.1, -2.0f64.ln()];
    let mut tricky = TokenLogprobs { spans: (0..special.len()).map(|i| ByteSpan::new(i, i + 1)).collect(), logprobs: special.to_vec() };
    tricky.spans.push(ByteSpan::new(0, 0));
    tricky.logprobs.push(-0.0);
    let many = scores(7, 200_000);
    {
        let cache = ScoreCache::open(&path).unwrap();
        cache.put(MODEL, &key(1), &tricky).unwrap();
        cache.put(MODEL, &key(2), &many).unwrap();
        cache.put(MODEL, &key(3), &TokenLogprobs::default()).unwrap();
        assert_bit_exact(&cache.get(MODEL, &key(1)).unwrap().unwrap(), &tricky);
    }
    let cache = ScoreCache::open(&path).unwrap();
    let read = cache.get(MODEL, &key(1)).unwrap().unwrap();
    assert_bit_exact(&read, &tricky);
    assert_eq!(bits(&read)[0], (-0.0f64).to_bits());
    assert_eq!(bits(&read)[1], 1u64 | (1 << 63), "the smallest negative subnormal");
    assert_bit_exact(&cache.get(MODEL, &key(2)).unwrap().unwrap(), &many);
    assert_eq!(cache.get(MODEL, &key(3)).unwrap().unwrap(), TokenLogprobs::default());
}

#[test]
fn missing_entries_are_none_and_models_do_not_collide() {
    let dir = scratch("models");
    let path = dir.join("scores.sqlite");
    let cache = ScoreCache::open(&path).unwrap();
    assert_eq!(cache.get(MODEL, &key(1)).unwrap(), None);
    cache.put("sha256:teacher", &key(1), &scores(1, 10)).unwrap();
    cache.put("sha256:student", &key(1), &scores(2, 10)).unwrap();
    cache.put("sha256:student", &key(2), &scores(3, 4)).unwrap();
    assert_bit_exact(&cache.get("sha256:teacher", &key(1)).unwrap().unwrap(), &scores(1, 10));
    assert_bit_exact(&cache.get("sha256:student", &key(1)).unwrap().unwrap(), &scores(2, 10));
    assert_eq!(cache.get("sha256:teacher", &key(2)).unwrap(), None);
    assert_eq!(cache.get("sha256:distilled", &key(1)).unwrap(), None);
    assert_eq!(cache.len(None).unwrap(), 3);
    assert_eq!(cache.len(Some("sha256:teacher")).unwrap(), 1);
    assert_eq!(cache.len(Some("sha256:student")).unwrap(), 2);
    assert_eq!(cache.len(Some("sha256:distilled")).unwrap(), 0);
}

#[test]
fn reopening_sees_earlier_puts_and_creates_parent_directories() {
    let dir = scratch("reopen");
    let path = dir.join("a").join("b").join("scores.sqlite");
    {
        let cache = ScoreCache::open(&path).unwrap();
        cache.put(MODEL, &key(1), &scores(1, 5)).unwrap();
        cache.put_many(MODEL, &(2..12).map(|n| (key(n), scores(n as u64, n))).collect::<Vec<_>>()).unwrap();
    }
    assert!(path.is_file());
    let cache = ScoreCache::open(&path).unwrap();
    assert_eq!(cache.len(Some(MODEL)).unwrap(), 11);
    for n in 2..12 {
        assert_bit_exact(&cache.get(MODEL, &key(n)).unwrap().unwrap(), &scores(n as u64, n));
    }
    assert_eq!(cache.path(), path.display().to_string());
}

#[test]
fn two_handles_on_one_file_write_concurrently() {
    let dir = scratch("concurrent");
    let path = dir.join("scores.sqlite");
    let barrier = Arc::new(Barrier::new(2));
    let writers: Vec<_> = (0..2usize)
        .map(|writer| {
            let path = path.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                // Both open the new file at the same time, then write.
                barrier.wait();
                let cache = ScoreCache::open(&path).unwrap();
                let model = format!("sha256:model{writer}");
                for n in 0..150 {
                    if n % 3 == 0 {
                        let batch: Vec<_> = (0..5).map(|i| (key(1_000_000 + 1000 * n + i), scores((n + i) as u64, 300))).collect();
                        cache.put_many(&model, &batch).unwrap();
                    } else {
                        cache.put(&model, &key(n), &scores(n as u64, 300)).unwrap();
                    }
                    assert!(cache.get(&model, &key(n)).is_ok());
                    cache.len(None).unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let cache = ScoreCache::open(&path).unwrap();
    assert_eq!(cache.len(Some("sha256:model0")).unwrap(), 50 * 5 + 100);
    assert_eq!(cache.len(Some("sha256:model1")).unwrap(), 50 * 5 + 100);
}

#[test]
fn one_shared_handle_serves_many_threads() {
    let cache = Arc::new(ScoreCache::in_memory().unwrap());
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let cache = &cache;
            scope.spawn(move || {
                for n in 0..50 {
                    cache.put(MODEL, &key(100 * thread + n), &scores(n as u64, 20)).unwrap();
                }
            });
        }
    });
    assert_eq!(cache.len(None).unwrap(), 200);
}

#[test]
fn a_file_that_is_not_a_database_is_a_clear_error() {
    let dir = scratch("garbage");
    let path = dir.join("scores.sqlite");
    std::fs::write(&path, "this is not an SQLite database, just some text that is long enough to have a header".repeat(20)).unwrap();
    let error = ScoreCache::open(&path).unwrap_err();
    assert!(matches!(error, CacheError::Corrupt { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!("score cache `{}` is corrupt or not an SQLite database (file is not a database)\nhint: {START_OVER}", path.display())
    );
}

#[test]
fn another_sqlite_database_is_not_taken_for_a_cache() {
    let dir = scratch("foreign");
    let path = dir.join("other.sqlite");
    rusqlite::Connection::open(&path).unwrap().execute_batch("CREATE TABLE users (name TEXT); CREATE TABLE orders (id INTEGER);").unwrap();
    let error = ScoreCache::open(&path).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "`{}` is an SQLite database but not a whence score cache (it has tables `orders`, `users`); it was left as it is\nhint: give a cache file of its own with --cache PATH",
            path.display()
        )
    );
    // Nothing was added to it.
    let tables: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table'", [], |row| row.get(0))
        .unwrap();
    assert_eq!(tables, 2);
}

#[test]
fn another_schema_version_is_refused() {
    let dir = scratch("version");
    let path = dir.join("scores.sqlite");
    ScoreCache::open(&path).unwrap().put(MODEL, &key(1), &scores(1, 3)).unwrap();
    rusqlite::Connection::open(&path).unwrap().execute("UPDATE whence_cache SET value = '99' WHERE name = 'schema_version'", []).unwrap();
    let error = ScoreCache::open(&path).unwrap_err();
    assert!(matches!(error, CacheError::IncompatibleVersion { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "score cache `{}` has schema version `99` and this whence reads version 1: another version of whence made it\nhint: give another cache file with --cache PATH (and keep this one for the whence that made it), or delete it to start over (it holds only cached scores)",
            path.display()
        )
    );
}

#[test]
fn a_corrupt_entry_is_an_error_naming_model_and_key() {
    let dir = scratch("corrupt-entry");
    let path = dir.join("scores.sqlite");
    let cache = ScoreCache::open(&path).unwrap();
    cache.put(MODEL, &key(1), &scores(1, 3)).unwrap();
    cache.put(MODEL, &key(2), &scores(2, 3)).unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute("UPDATE scores SET scores = substr(scores, 1, 20) WHERE record = ?1", [key(1).as_str()]).unwrap();
    raw.execute("UPDATE scores SET scores = 'text' WHERE record = ?1", [key(2).as_str()]).unwrap();
    drop(raw);

    let error = cache.get(MODEL, &key(1)).unwrap_err();
    assert!(matches!(error, CacheError::CorruptEntry { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "score cache `{}`: the entry for model `{MODEL}`, record `{}` is corrupt: the stored value is 20 bytes long but its token count `3` needs 81 bytes\nhint: {START_OVER}",
            path.display(),
            key(1)
        )
    );
    let error = cache.get(MODEL, &key(2)).unwrap_err();
    assert!(error.to_string().contains("the stored value is TEXT, not a BLOB"), "{error}");
    // The other entries and writes are unaffected.
    cache.put(MODEL, &key(3), &scores(3, 3)).unwrap();
    assert_bit_exact(&cache.get(MODEL, &key(3)).unwrap().unwrap(), &scores(3, 3));
}

#[test]
fn a_directory_is_not_a_cache_file() {
    let dir = scratch("directory");
    let error = ScoreCache::open(dir.path()).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("score cache `{}` is a directory; give the path of a file (it is created if missing)", dir.path().display())
    );
}

#[test]
fn an_uncreatable_parent_is_an_error_naming_the_file() {
    let dir = scratch("parent");
    let blocker = dir.join("file");
    std::fs::write(&blocker, "").unwrap();
    let path = blocker.join("sub").join("scores.sqlite");
    let error = ScoreCache::open(&path).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, CacheError::CreateDir { .. }), "{error:?}");
    assert!(
        message.starts_with(&format!("cannot create directory `{}` for score cache `{}`: ", blocker.join("sub").display(), path.display())),
        "{message}"
    );
}

/// A cache of `entries` entries of 500 tokens, closed (its write-ahead log
/// folded into the file), and the file's bytes.
fn filled_cache(path: &std::path::Path, entries: usize) -> Vec<u8> {
    let cache = ScoreCache::open(path).unwrap();
    cache.put_many(MODEL, &(0..entries).map(|n| (key(n), scores(n as u64, 500))).collect::<Vec<_>>()).unwrap();
    drop(cache);
    assert!(!path.with_extension("sqlite-wal").exists(), "the last handle closed folds the log into the file");
    std::fs::read(path).unwrap()
}

#[test]
fn a_truncated_cache_is_a_clear_error_naming_the_file() {
    let dir = scratch("truncated");
    let path = dir.join("scores.sqlite");
    let whole = filled_cache(&path, 200);
    assert!(whole.len() > 500_000, "{} bytes", whole.len());
    for keep in [whole.len() / 2, whole.len() - 4096, 4096 + 100, 60] {
        std::fs::write(&path, &whole[..keep]).unwrap();
        let error = ScoreCache::open(&path).unwrap_err();
        assert!(matches!(error, CacheError::Corrupt { .. }), "kept {keep} bytes: {error:?}");
        assert!(error.is_unusable_file());
        let message = error.to_string();
        assert!(message.starts_with(&format!("score cache `{}` is corrupt", path.display())), "{message}");
        assert!(message.ends_with(&format!("\nhint: {START_OVER}")), "{message}");
    }
    // Deleting it starts over.
    std::fs::remove_file(&path).unwrap();
    assert_eq!(ScoreCache::open(&path).unwrap().len(None).unwrap(), 0);
}

#[test]
fn random_bytes_are_a_clear_error_even_behind_an_sqlite_header() {
    let dir = scratch("random");
    let path = dir.join("scores.sqlite");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let random: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    // Plain random bytes, and random bytes after a real cache's first 100
    // bytes (the SQLite header: magic string, page size, page count).
    let header = filled_cache(&path, 20)[..100].to_vec();
    for (what, bytes) in [("random", random.clone()), ("header + random", [header, random[100..].to_vec()].concat())] {
        std::fs::write(&path, &bytes).unwrap();
        let error = ScoreCache::open(&path).unwrap_err();
        assert!(matches!(error, CacheError::Corrupt { .. }), "{what}: {error:?}");
        assert!(error.to_string().contains(&format!("`{}`", path.display())), "{what}: {error}");
        assert!(error.to_string().ends_with(START_OVER), "{what}: {error}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{what}: the file was changed");
    }
}

#[test]
fn the_cache_uses_the_write_ahead_log() {
    let dir = scratch("wal");
    let path = dir.join("scores.sqlite");
    let cache = ScoreCache::open(&path).unwrap();
    let mode: String = rusqlite::Connection::open(&path).unwrap().query_row("PRAGMA journal_mode", [], |row| row.get(0)).unwrap();
    assert_eq!(mode, "wal");
    // A second handle on a file already in WAL mode opens beside the first.
    let second = ScoreCache::open(&path).unwrap();
    cache.put(MODEL, &key(1), &scores(1, 3)).unwrap();
    assert_bit_exact(&second.get(MODEL, &key(1)).unwrap().unwrap(), &scores(1, 3));
}

/// Switching the journal mode is a write that SQLite does not wait for under
/// the busy timeout; opening must wait for it all the same.
#[test]
fn opening_waits_for_a_writer_before_switching_to_the_write_ahead_log() {
    let dir = scratch("wait-for-writer");
    let path = dir.join("scores.sqlite");
    ScoreCache::open(&path).unwrap().put(MODEL, &key(1), &scores(1, 3)).unwrap();
    // Back in the rollback journal (as a fresh file is), with another
    // connection in the middle of a write transaction.
    let other = rusqlite::Connection::open(&path).unwrap();
    let mode: String = other.query_row("PRAGMA journal_mode = DELETE", [], |row| row.get(0)).unwrap();
    assert_eq!(mode, "delete");
    other.execute_batch("BEGIN IMMEDIATE; DELETE FROM scores;").unwrap();
    let hold = std::time::Duration::from_millis(300);
    let writer = std::thread::spawn(move || {
        std::thread::sleep(hold);
        other.execute_batch("COMMIT").unwrap();
    });
    let started = std::time::Instant::now();
    let cache = ScoreCache::open(&path).unwrap();
    assert!(started.elapsed() >= hold - std::time::Duration::from_millis(50), "opened after {:?}", started.elapsed());
    writer.join().unwrap();
    assert_eq!(cache.len(None).unwrap(), 0, "the writer's transaction was committed first");
    let mode: String = rusqlite::Connection::open(&path).unwrap().query_row("PRAGMA journal_mode", [], |row| row.get(0)).unwrap();
    assert_eq!(mode, "wal");
}
