//! A crash-safe cache of token log-probabilities, so that a rerun does not
//! score a response twice and an interrupted run continues where it stopped.
//!
//! Scoring a response with a real model is expensive (a forward pass of a
//! multi-gigabyte model, or a request to an inference server).
//! [`CachedScorer`] wraps any [`Scorer`](whence_score::Scorer): it answers
//! what the [`ScoreCache`] holds and gives only the misses to the model.
//!
//! # What is cached, under which key
//!
//! The [`TokenLogprobs`](whence_score::TokenLogprobs) of one record under one
//! model: every token's byte span in the response and its natural
//! log-probability, exactly as the scorer returned them (bit for bit, so a
//! rerun from the cache gives byte-identical outputs).
//!
//! The key is the pair (model, record):
//!
//! - the model is the scorer's `info().fingerprint` (`sha256:…`), which must
//!   cover everything the scores depend on: weights, tokenizer, chat
//!   template, precision, and anything else that changes a log-probability;
//! - the record is its [`RecordKey`]: the sha256 of the prompt (every chat
//!   turn's role and content, unambiguously framed) and the response. The
//!   record's id, question id, verdict and reference answer are not part of
//!   it, so a response seen in another input file (or under another id) is a
//!   hit.
//!
//! Because the key is the content and not the id, a scorer whose results
//! depend on the id rather than the content (the precomputed `file:` scorer,
//! which looks records up by id) should not be cached: it is cheap anyway,
//! and two records with the same content would share the first one's scores.
//!
//! # Durability
//!
//! [`ScoreCache::put`] and [`ScoreCache::put_many`] return once their
//! transaction is committed; [`CachedScorer`] commits each record's new
//! scores on their own as soon as the scorer hands them over (a checkpoint
//! scorer record by record; an inference-server scorer when its batch of
//! concurrent requests returns), so a killed run loses at most the records
//! in flight. A process killed at any moment (even `SIGKILL`)
//! leaves a file that opens cleanly and holds every committed entry, each
//! complete; a `put_many` is all or nothing. The journal is SQLite's
//! write-ahead log with `synchronous = NORMAL`: committed entries survive the
//! process dying; the last few commits before an operating-system crash or a
//! power cut may be lost (never corrupting the file), and are then scored
//! again on the next run.
//!
//! Several handles and processes may share a file (two `whence` runs on one
//! cache, or the workers of `--shard 1/8 … 8/8` on one node), also one that
//! does not exist yet: opening sets the 60 s busy timeout before anything
//! else, switches a file to the write-ahead log only when it is not in it
//! already (retrying while another process holds a lock, which SQLite does
//! not wait for there), and creates or checks the tables inside an immediate
//! transaction, so that processes creating one file take turns and the later
//! ones find the first one's tables. Writers take turns, waiting up to 60 s
//! for one another. A commit costs little in WAL mode with
//! `synchronous = NORMAL` (no `fsync` per commit).
//!
//! # File layout
//!
//! An SQLite database (conventionally `*.sqlite`) with three tables:
//!
//! ```sql
//! CREATE TABLE whence_cache (name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) WITHOUT ROWID;
//!     -- one row: ('schema_version', '1')
//! CREATE TABLE scores (
//!     model TEXT NOT NULL,    -- the scorer's fingerprint, `sha256:…`
//!     record TEXT NOT NULL,   -- the RecordKey, 64 lowercase hex digits
//!     scores BLOB NOT NULL,   -- the layout below
//!     PRIMARY KEY (model, record)
//! ) WITHOUT ROWID;
//! CREATE TABLE generations (  -- samples of `whence generate`, for resuming
//!     model TEXT NOT NULL,    -- the generator's fingerprint
//!     sample TEXT NOT NULL,   -- sha256 of prompt, settings, seed and sample index
//!     value BLOB NOT NULL,    -- JSON: token ids, log-probabilities, finish reason
//!     PRIMARY KEY (model, sample)
//! ) WITHOUT ROWID;           -- created when missing, so older caches gain it
//! ```
//!
//! A `scores` value for `n` tokens is `9 + 24 n` bytes, all integers
//! little-endian:
//!
//! | bytes | content |
//! |---|---|
//! | 1 | format version, `1` |
//! | 8 | `n`, u64 |
//! | 16 `n` | per token: span start and end, u64 byte offsets into the response |
//! | 8 `n` | per token: the log-probability, the raw bits of an IEEE 754 f64 |
//!
//! A value whose length disagrees with its count, or of an unknown format
//! version, is reported as a corrupt entry naming the model and record.
//! Opening a file that is not an SQLite database (random bytes, a truncated
//! cache), a database without these tables, or a cache of another schema
//! version is an error naming the file and saying how to go on: another
//! file (`--cache PATH`), or deleting it to start over (it holds only
//! cached scores).

mod blob;
mod key;
mod scorer;
mod store;

pub use key::RecordKey;
pub use scorer::{CachedScorer, DerefScorer};
pub use store::{CacheError, ScoreCache, SCHEMA_VERSION};

/// The format version byte written at the start of every stored value.
pub const VALUE_FORMAT_VERSION: u8 = blob::FORMAT_VERSION;
