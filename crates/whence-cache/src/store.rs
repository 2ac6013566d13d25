//! The SQLite store.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};
use whence_score::TokenLogprobs;

use crate::blob;
use crate::key::RecordKey;

/// The schema this crate reads and writes (the `schema_version` row of the
/// `whence_cache` table).
pub const SCHEMA_VERSION: u32 = 1;

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// How to go on when the cache file is unusable.
const START_OVER: &str =
    "the file holds only cached scores (computed again when missing): delete it to start over, or give another cache file with --cache PATH";

/// What `ScoreCache::open` names an in-memory cache in messages.
const IN_MEMORY: &str = ":memory:";

/// Why the cache could not be opened, read or written. Every message names
/// the cache file.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot create directory `{dir}` for score cache `{path}`: {source}")]
    CreateDir {
        dir: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("score cache `{path}` is a directory; give the path of a file (it is created if missing)")]
    IsDirectory { path: String },
    #[error("score cache `{path}` is corrupt or not an SQLite database ({reason})\nhint: {START_OVER}")]
    Corrupt { path: String, reason: rusqlite::Error },
    #[error(
        "`{path}` is an SQLite database but not a whence score cache (it has tables {tables}); it was left as it is\nhint: give a cache file of its own with --cache PATH"
    )]
    NotACache { path: String, tables: String },
    #[error(
        "score cache `{path}` has schema version `{found}` and this whence reads version {SCHEMA_VERSION}: another version of whence made it\nhint: give another cache file with --cache PATH (and keep this one for the whence that made it), or delete it to start over (it holds only cached scores)"
    )]
    IncompatibleVersion { path: String, found: String },
    #[error("score cache `{path}`: the entry for model `{model}`, record `{key}` is corrupt: {message}\nhint: {START_OVER}")]
    CorruptEntry { path: String, model: String, key: String, message: String },
    #[error("score cache `{path}`: cannot store scores for model `{model}`, record `{key}`: {message}")]
    Unstorable { path: String, model: String, key: String, message: String },
    #[error("score cache `{path}`: cannot {operation}: {source}")]
    Sqlite {
        path: String,
        operation: &'static str,
        #[source]
        source: rusqlite::Error,
    },
}

impl CacheError {
    /// Whether the cache file itself is unusable (corrupt, foreign or of
    /// another schema) rather than a failure while using it: the user must
    /// remove it or give another path.
    pub fn is_unusable_file(&self) -> bool {
        matches!(
            self,
            CacheError::Corrupt { .. }
                | CacheError::NotACache { .. }
                | CacheError::IncompatibleVersion { .. }
                | CacheError::CorruptEntry { .. }
                | CacheError::IsDirectory { .. }
        )
    }
}

/// Token log-probabilities per (model fingerprint, [`RecordKey`]) in an
/// SQLite file; see the crate docs for the guarantees and the layout.
///
/// One connection behind a mutex: a `ScoreCache` may be shared between
/// threads (`Arc<ScoreCache>`), and several handles (in one process or
/// several) may use the same file at once.
pub struct ScoreCache {
    connection: Mutex<Connection>,
    path: String,
}

impl std::fmt::Debug for ScoreCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScoreCache").field("path", &self.path).finish_non_exhaustive()
    }
}

impl ScoreCache {
    /// Opens the cache file at `path`, creating it and its parent directories
    /// if needed: WAL journal, `synchronous = NORMAL`, a 60 s busy timeout so
    /// that several processes can share it. A file that is not an SQLite
    /// database, a database of something else, or a cache of another schema
    /// version is an error naming the path.
    pub fn open(path: &Path) -> Result<Self, CacheError> {
        let shown = path.display().to_string();
        if path.is_dir() {
            return Err(CacheError::IsDirectory { path: shown });
        }
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| CacheError::CreateDir {
                dir: dir.display().to_string(),
                path: shown.clone(),
                source,
            })?;
        }
        let connection = Connection::open(path).map_err(|source| classify(&shown, "open the file", source))?;
        Self::init(connection, shown)
    }

    /// A cache that lives in memory only, for tests.
    pub fn in_memory() -> Result<Self, CacheError> {
        let connection = Connection::open_in_memory().map_err(|source| classify(IN_MEMORY, "open the database", source))?;
        Self::init(connection, IN_MEMORY.to_string())
    }

    fn init(mut connection: Connection, path: String) -> Result<Self, CacheError> {
        let fail = |operation| {
            let path = path.clone();
            move |source| classify(&path, operation, source)
        };
        // First of all, so that every later pragma and statement waits for
        // other connections (processes creating or using the same file).
        connection.busy_timeout(BUSY_TIMEOUT).map_err(fail("set the busy timeout"))?;
        use_write_ahead_log(&connection).map_err(fail("switch to the WAL journal"))?;
        connection.pragma_update(None, "synchronous", "NORMAL").map_err(fail("set synchronous = NORMAL"))?;

        // An immediate transaction: two processes creating the file at once
        // take turns, and the second sees the first's schema.
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(fail("start a transaction"))?;
        let tables: Vec<String> = transaction
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .and_then(|mut statement| statement.query_map([], |row| row.get(0))?.collect())
            .map_err(fail("read the schema"))?;
        if tables.is_empty() {
            transaction
                .execute_batch(&format!(
                    "CREATE TABLE whence_cache (name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) WITHOUT ROWID;
                     INSERT INTO whence_cache (name, value) VALUES ('schema_version', '{SCHEMA_VERSION}');
                     CREATE TABLE scores (
                         model TEXT NOT NULL,
                         record TEXT NOT NULL,
                         scores BLOB NOT NULL,
                         PRIMARY KEY (model, record)
                     ) WITHOUT ROWID;"
                ))
                .map_err(fail("create the tables"))?;
        } else if tables.iter().any(|table| table == "whence_cache") {
            let found: Option<String> = transaction
                .query_row("SELECT CAST(value AS TEXT) FROM whence_cache WHERE name = 'schema_version'", [], |row| row.get(0))
                .optional()
                .map_err(fail("read the schema version"))?;
            let found = found.unwrap_or_else(|| "(none)".into());
            if found != SCHEMA_VERSION.to_string() {
                return Err(CacheError::IncompatibleVersion { path, found });
            }
            if !tables.iter().any(|table| table == "scores") {
                return Err(CacheError::NotACache { path, tables: quoted(&tables) });
            }
        } else {
            return Err(CacheError::NotACache { path, tables: quoted(&tables) });
        }
        // Generated samples (`whence generate`), added beside the scores:
        // a cache made before it gains the table, and older versions of
        // whence, which only read `scores`, still open the file.
        transaction
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS generations (
                     model TEXT NOT NULL,
                     sample TEXT NOT NULL,
                     value BLOB NOT NULL,
                     PRIMARY KEY (model, sample)
                 ) WITHOUT ROWID;",
            )
            .map_err(fail("create the generations table"))?;
        transaction.commit().map_err(fail("commit the schema"))?;
        Ok(ScoreCache { connection: Mutex::new(connection), path })
    }

    /// The cached scores of `key` under `model`, `None` when there are none.
    pub fn get(&self, model: &str, key: &RecordKey) -> Result<Option<TokenLogprobs>, CacheError> {
        let connection = self.connection();
        let value = connection
            .prepare_cached("SELECT scores FROM scores WHERE model = ?1 AND record = ?2")
            .and_then(|mut statement| {
                statement
                    .query_row(params![model, key.as_str()], |row| {
                        Ok(match row.get_ref(0)? {
                            ValueRef::Blob(bytes) => Ok(bytes.to_vec()),
                            ValueRef::Null => Err("the stored value is NULL, not a BLOB".to_string()),
                            ValueRef::Integer(_) => Err("the stored value is an INTEGER, not a BLOB".to_string()),
                            ValueRef::Real(_) => Err("the stored value is a REAL, not a BLOB".to_string()),
                            ValueRef::Text(_) => Err("the stored value is TEXT, not a BLOB".to_string()),
                        })
                    })
                    .optional()
            })
            .map_err(|source| classify(&self.path, "read", source))?;
        drop(connection);
        match value {
            None => Ok(None),
            Some(value) => {
                value.and_then(|bytes| blob::decode(&bytes)).map(Some).map_err(|message| self.corrupt_entry(model, key, message))
            }
        }
    }

    /// Stores the scores of `key` under `model`, replacing any earlier ones;
    /// committed (it survives the process being killed) when this returns.
    pub fn put(&self, model: &str, key: &RecordKey, scores: &TokenLogprobs) -> Result<(), CacheError> {
        self.put_refs(model, &[(key, scores)])
    }

    /// Stores several entries in one transaction: after a crash either all
    /// of them are there or none is.
    pub fn put_many(&self, model: &str, entries: &[(RecordKey, TokenLogprobs)]) -> Result<(), CacheError> {
        let entries: Vec<(&RecordKey, &TokenLogprobs)> = entries.iter().map(|(key, scores)| (key, scores)).collect();
        self.put_refs(model, &entries)
    }

    pub(crate) fn put_refs(&self, model: &str, entries: &[(&RecordKey, &TokenLogprobs)]) -> Result<(), CacheError> {
        let values = entries
            .iter()
            .map(|&(key, scores)| {
                blob::encode(scores).map(|value| (key, value)).map_err(|message| CacheError::Unstorable {
                    path: self.path.clone(),
                    model: model.to_string(),
                    key: key.to_string(),
                    message,
                })
            })
            .collect::<Result<Vec<_>, CacheError>>()?;
        let rows: Vec<(&str, &[u8])> = values.iter().map(|(key, value)| (key.as_str(), value.as_slice())).collect();
        self.upsert(
            "INSERT INTO scores (model, record, scores) VALUES (?1, ?2, ?3)
             ON CONFLICT (model, record) DO UPDATE SET scores = excluded.scores",
            model,
            &rows,
        )
    }

    /// Runs `statement` (an upsert of `(model, key, value)`) for every row in
    /// one transaction: all or nothing, committed when this returns.
    fn upsert(&self, statement: &str, model: &str, rows: &[(&str, &[u8])]) -> Result<(), CacheError> {
        if rows.is_empty() {
            return Ok(());
        }
        let fail = |source| classify(&self.path, "write", source);
        let mut connection = self.connection();
        // Immediate: take the write lock up front (waiting for it under the
        // busy timeout) rather than failing to upgrade a read lock later.
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(fail)?;
        {
            let mut statement = transaction.prepare_cached(statement).map_err(fail)?;
            for (key, value) in rows {
                statement.execute(params![model, key, value]).map_err(fail)?;
            }
        }
        transaction.commit().map_err(fail)
    }

    /// A generated sample stored under (model, sample key), as stored.
    pub fn generation(&self, model: &str, sample: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let connection = self.connection();
        connection
            .prepare_cached("SELECT value FROM generations WHERE model = ?1 AND sample = ?2")
            .and_then(|mut statement| statement.query_row(params![model, sample], |row| row.get::<_, Vec<u8>>(0)).optional())
            .map_err(|source| classify(&self.path, "read", source))
    }

    /// Stores generated samples in one transaction (all or nothing),
    /// committed when this returns.
    pub fn put_generations(&self, model: &str, entries: &[(String, Vec<u8>)]) -> Result<(), CacheError> {
        let rows: Vec<(&str, &[u8])> = entries.iter().map(|(sample, value)| (sample.as_str(), value.as_slice())).collect();
        self.upsert(
            "INSERT INTO generations (model, sample, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (model, sample) DO UPDATE SET value = excluded.value",
            model,
            &rows,
        )
    }

    /// How many entries the cache holds, for one model or for all.
    pub fn len(&self, model: Option<&str>) -> Result<u64, CacheError> {
        let connection = self.connection();
        let count: i64 = match model {
            Some(model) => connection.query_row("SELECT COUNT(*) FROM scores WHERE model = ?1", [model], |row| row.get(0)),
            None => connection.query_row("SELECT COUNT(*) FROM scores", [], |row| row.get(0)),
        }
        .map_err(|source| classify(&self.path, "count the entries", source))?;
        Ok(count as u64)
    }

    /// The model fingerprints the cache holds scores of, sorted.
    pub fn models(&self) -> Result<Vec<String>, CacheError> {
        let connection = self.connection();
        connection
            .prepare_cached("SELECT DISTINCT model FROM scores ORDER BY model")
            .and_then(|mut statement| statement.query_map([], |row| row.get(0))?.collect())
            .map_err(|source| classify(&self.path, "list the models", source))
    }

    /// The file (as given to [`ScoreCache::open`]) or `:memory:`.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn connection(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no half-done transaction
        // (dropping one rolls it back), so the connection stays usable.
        self.connection.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn corrupt_entry(&self, model: &str, key: &RecordKey, message: String) -> CacheError {
        CacheError::CorruptEntry { path: self.path.clone(), model: model.to_string(), key: key.to_string(), message }
    }
}

/// Switches the file to SQLite's write-ahead log, once: a file already in
/// WAL mode (made by an earlier run, or by a process that opened it a moment
/// ago) is left as it is.
///
/// The switch writes the file's header, and SQLite takes that write lock
/// while the pragma already holds a read lock; waiting there could deadlock,
/// so SQLite does not wait under the busy timeout but answers `SQLITE_BUSY`
/// at once whenever another connection holds a lock (several processes
/// opening one fresh file together: `database is locked`). So a busy answer
/// is retried here, with a short growing pause, until the busy timeout has
/// passed; each try reads the mode first, as another process may have
/// switched the file in the meantime.
///
/// An in-memory database answers `memory`, and a file system without shared
/// memory keeps the rollback journal: both give the same guarantees with
/// less concurrency, and are accepted.
fn use_write_ahead_log(connection: &Connection) -> Result<(), rusqlite::Error> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        let attempt = connection.query_row("PRAGMA journal_mode", [], |row| row.get::<_, String>(0)).and_then(|mode| {
            if mode.eq_ignore_ascii_case("wal") {
                return Ok(());
            }
            connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get::<_, String>(0)).map(drop)
        });
        match attempt {
            Err(error) if is_busy(&error) && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(error.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

fn classify(path: &str, operation: &'static str, source: rusqlite::Error) -> CacheError {
    match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => CacheError::Corrupt { path: path.to_string(), reason: source },
        _ => CacheError::Sqlite { path: path.to_string(), operation, source },
    }
}

fn quoted(names: &[String]) -> String {
    names.iter().map(|name| format!("`{name}`")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use whence_core::ByteSpan;

    fn key(n: u32) -> RecordKey {
        use whence_core::{Prompt, Record, SourceLocation};
        RecordKey::of(&Record {
            id: format!("r{n}"),
            question_id: "q".into(),
            prompt: Prompt::Text("p".into()),
            response: format!("response {n}"),
            correct: None,
            answer: None,
            source: SourceLocation { file: "in.jsonl".into(), line: Some(1), row: None },
        })
    }

    fn scores(n: usize) -> TokenLogprobs {
        TokenLogprobs { spans: (0..n).map(|i| ByteSpan::new(i, i + 1)).collect(), logprobs: (0..n).map(|i| -(i as f64) / 7.0).collect() }
    }

    #[test]
    fn in_memory_round_trip() {
        let cache = ScoreCache::in_memory().unwrap();
        assert_eq!(cache.get("m", &key(1)).unwrap(), None);
        cache.put("m", &key(1), &scores(3)).unwrap();
        assert_eq!(cache.get("m", &key(1)).unwrap(), Some(scores(3)));
        assert_eq!(cache.get("other", &key(1)).unwrap(), None);
        cache.put("m", &key(1), &scores(5)).unwrap();
        assert_eq!(cache.get("m", &key(1)).unwrap(), Some(scores(5)), "a put replaces");
        assert_eq!(cache.len(None).unwrap(), 1);
        assert_eq!(cache.models().unwrap(), ["m"]);
        cache.put("a", &key(2), &scores(1)).unwrap();
        assert_eq!(cache.models().unwrap(), ["a", "m"]);
    }

    #[test]
    fn put_many_is_all_or_nothing() {
        let cache = ScoreCache::in_memory().unwrap();
        let mut bad = scores(2);
        bad.logprobs.pop();
        let entries = vec![(key(1), scores(1)), (key(2), bad)];
        let error = cache.put_many("m", &entries).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "score cache `:memory:`: cannot store scores for model `m`, record `{}`: 1 log-probabilities for 2 spans; there must be one per span",
                key(2)
            )
        );
        assert_eq!(cache.len(None).unwrap(), 0);
        cache.put_many("m", &[]).unwrap();
        cache.put_many("m", &entries[..1]).unwrap();
        assert_eq!(cache.len(Some("m")).unwrap(), 1);
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<ScoreCache>();
    }

    #[test]
    fn a_poisoned_lock_is_recovered() {
        let cache = std::sync::Arc::new(ScoreCache::in_memory().unwrap());
        let shared = cache.clone();
        let _ = std::thread::spawn(move || {
            let _guard = shared.connection.lock().unwrap();
            panic!("poison the lock");
        })
        .join();
        assert!(cache.connection.is_poisoned());
        cache.put("m", &key(1), &scores(1)).unwrap();
        assert_eq!(cache.len(None).unwrap(), 1);
    }
}
