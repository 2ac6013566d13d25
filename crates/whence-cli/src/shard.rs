//! Sharding: `--shard K/N` on `trace`, `select`, `attribute` and `score` scores a
//! deterministic 1/N of the records, and `whence merge` turns the N shard
//! directories into exactly what one unsharded run writes.
//!
//! A record belongs to shard `K` when FNV-1a 64 of its id is `K − 1` modulo
//! `N`. Scoring is the expensive part and is what is split; the analysis
//! (β search over all trajectories, selection per question, profiles) needs
//! every record, so a shard run writes, in its `--out` directory, each
//! role's token log-probabilities (`scores/ROLE.jsonl`, the `file:` format;
//! an attribution candidate NAME is the role `candidate-NAME`)
//! and `shard.json`: the command line, the input's sha256, the models'
//! descriptions and the records each role could not score. `whence merge`
//! checks that the shards belong together, re-reads the input, and runs the
//! command line once more with every scorer replaced by a replay of the
//! shards' scores: the same code on the same numbers, so the outputs are
//! byte-identical to an unsharded run's.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use whence_core::Record;
use whence_pipeline::Progress;
use whence_score::{FileScorer, ModelInfo, ScoreError, Scorer, TokenLogprobs};

use crate::errors::UsageError;

/// `K/N`: the K-th (1-based) of N shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("invalid shard `{s}`; write K/N with 1 ≤ K ≤ N, e.g. 1/4 … 4/4");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u64, u64) = (k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    pub fn contains(&self, id: &str) -> bool {
        whence_core::hash::fnv1a64(id.as_bytes()) % self.count == self.index - 1
    }
}

static ARGV: OnceLock<Vec<String>> = OnceLock::new();

/// Keeps the command line (from the subcommand on) for `shard.json`.
pub fn remember_argv(argv: Vec<String>) {
    let _ = ARGV.set(argv);
}

/// The command line without `--shard` and `--out` (and their values).
fn argv_without_shard_and_out() -> Vec<String> {
    let argv = ARGV.get().cloned().unwrap_or_default();
    let mut kept = Vec::with_capacity(argv.len());
    let mut skip_next = false;
    for arg in argv {
        if std::mem::take(&mut skip_next) {
            continue;
        }
        match arg.as_str() {
            "--shard" | "--out" | "-o" => skip_next = true,
            a if a.starts_with("--shard=") || a.starts_with("--out=") || (a.starts_with("-o") && a.len() > 2 && !a.starts_with("--")) => {}
            _ => kept.push(arg),
        }
    }
    kept
}

/// The file, under a shard's `scores/`, of a role's scores (`candidate r1`
/// is written `candidate-r1.jsonl`: candidate names are letters, digits,
/// `_`, `-` and `.`).
fn scores_file(role: &str) -> String {
    format!("{}.jsonl", role.replace(' ', "-"))
}

/// One role that could not score a record (kept with `--skip-invalid`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Failure {
    pub id: String,
    pub message: String,
}

/// `shard.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub whence_shard: u32,
    pub whence_version: String,
    pub command: String,
    pub shard: Shard,
    /// The command line from the subcommand on, without --shard and --out.
    pub argv: Vec<String>,
    pub input: InputFingerprint,
    /// How many of the input's records this shard scored.
    pub records: usize,
    /// Per role, in scoring order: the model and the records it failed on.
    pub roles: Vec<RoleScores>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InputFingerprint {
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RoleScores {
    pub role: String,
    pub model: ModelInfo,
    pub failures: Vec<Failure>,
}

const MANIFEST: &str = "shard.json";
const FORMAT_VERSION: u32 = 1;

pub fn file_sha256(path: &Path) -> anyhow::Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

#[derive(Serialize)]
struct ScoreLine<'a> {
    id: &'a str,
    offsets: Vec<[usize; 2]>,
    logprobs: &'a [f64],
}

/// The `file:` format's line for a record's scores.
pub fn score_line(id: &str, scores: &TokenLogprobs) -> anyhow::Result<String> {
    Ok(serde_json::to_string(&ScoreLine {
        id,
        offsets: scores.spans.iter().map(|s| [s.start, s.end]).collect(),
        logprobs: &scores.logprobs,
    })?)
}

/// Scores `records` with `scorer` (playing `role`), in batches, with
/// progress: the `file:` lines of those scored, and the record-specific
/// failures (an error unless `skip_invalid`).
pub fn score_all(
    role: &str,
    scorer: &mut dyn Scorer,
    records: &[&Record],
    skip_invalid: bool,
    progress: &dyn Progress,
) -> anyhow::Result<(Vec<String>, Vec<Failure>)> {
    progress.start(role, records.len() as u64);
    let mut lines = Vec::with_capacity(records.len());
    let mut failures = Vec::new();
    for chunk in records.chunks(64) {
        for (record, result) in chunk.iter().zip(whence_pipeline::score_with_progress(scorer, chunk, progress)) {
            match result {
                Ok(scores) => {
                    lines.push(score_line(&record.id, &scores)?);
                }
                Err(error) if skip_invalid && error.is_record_specific() => {
                    tracing::warn!("{role}: skipped {}: {error}", record.source);
                    failures.push(Failure { id: record.id.clone(), message: error.to_string() });
                }
                Err(error) => return Err(error).with_context(|| format!("{role} scorer, scoring {}", record.source)),
            }
        }
    }
    scorer.release();
    progress.finish();
    Ok((lines, failures))
}

/// Runs the scoring of one shard: the shard's records of `records`, each
/// role in turn, written to `out` (a directory) with `shard.json`.
pub fn write_shard(
    command: &str,
    shard: Shard,
    input: &Path,
    records: &[Record],
    roles: Vec<(&str, Box<dyn Scorer>)>,
    skip_invalid: bool,
    out: &Path,
    progress: &dyn Progress,
) -> anyhow::Result<()> {
    let mine: Vec<&Record> = records.iter().filter(|r| shard.contains(&r.id)).collect();
    tracing::info!("shard {shard}: {} of {} records", mine.len(), records.len());
    let sha256 = file_sha256(input)?;
    std::fs::create_dir_all(out.join("scores")).with_context(|| format!("creating {}", out.display()))?;
    let mut described = Vec::new();
    for (role, mut scorer) in roles {
        let (lines, failures) = score_all(role, scorer.as_mut(), &mine, skip_invalid, progress)?;
        let path = out.join("scores").join(scores_file(role));
        whence_io::write_atomic(&path, |writer| {
            for line in &lines {
                writer.write_all(line.as_bytes())?;
                writer.write_all(b"\n")?;
            }
            Ok(())
        })
        .with_context(|| format!("writing {}", path.display()))?;
        described.push(RoleScores { role: role.to_string(), model: scorer.info().clone(), failures });
    }
    let manifest = Manifest {
        whence_shard: FORMAT_VERSION,
        whence_version: whence_pipeline::VERSION.to_string(),
        command: command.to_string(),
        shard,
        argv: argv_without_shard_and_out(),
        input: InputFingerprint { path: input.display().to_string(), sha256 },
        records: mine.len(),
        roles: described,
    };
    let path = out.join(MANIFEST);
    whence_io::write_atomic(&path, |writer| {
        serde_json::to_writer_pretty(&mut *writer, &manifest)?;
        writer.write_all(b"\n")
    })
    .with_context(|| format!("writing {}", path.display()))?;
    tracing::info!("wrote shard {shard} to {}; combine the shards with `whence merge --out OUT SHARD_DIR…`", out.display());
    Ok(())
}

/// A role's scores replayed from the shards.
pub struct ReplayScorer {
    scores: FileScorer,
    info: ModelInfo,
    failures: HashMap<String, String>,
}

impl Scorer for ReplayScorer {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn score(&mut self, record: &Record) -> Result<TokenLogprobs, ScoreError> {
        match self.failures.get(&record.id) {
            Some(message) => Err(ScoreError::Recorded(message.clone())),
            None => self.scores.score(record),
        }
    }
}

/// What `whence merge` replays: the command line and each role's scores.
pub struct Replay {
    pub argv: Vec<String>,
    scorers: BTreeMap<String, ReplayScorer>,
    /// Holds the combined score files while the command runs.
    _dir: TempDir,
}

impl Replay {
    /// The replayed scorer of `role` (each taken once).
    pub fn take(&mut self, role: &str) -> anyhow::Result<Box<dyn Scorer>> {
        let scorer = self.scorers.remove(role).ok_or_else(|| anyhow::anyhow!("the shards hold no scores for the role `{role}`"))?;
        Ok(Box::new(scorer))
    }
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read_manifest(dir: &Path) -> anyhow::Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| UsageError(format!("{}: {e}; is `{}` the --out directory of a `--shard K/N` run?", path.display(), dir.display())))?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| UsageError(format!("{}: not a whence shard manifest: {e}", path.display())))?;
    if manifest.whence_shard != FORMAT_VERSION {
        return Err(UsageError(format!(
            "{}: shard format {} is not the one this whence reads ({FORMAT_VERSION})",
            path.display(),
            manifest.whence_shard
        ))
        .into());
    }
    Ok(manifest)
}

/// Reads and checks the shards, and prepares their replay.
pub fn load(dirs: &[PathBuf]) -> anyhow::Result<Replay> {
    let usage = |message: String| anyhow::Error::from(UsageError(message));
    let manifests: Vec<Manifest> = dirs.iter().map(|d| read_manifest(d)).collect::<anyhow::Result<_>>()?;
    let first = &manifests[0];
    let count = first.shard.count;
    let mut seen: BTreeMap<u64, &Path> = BTreeMap::new();
    for (manifest, dir) in manifests.iter().zip(dirs) {
        let differs = |what: &str| {
            usage(format!(
                "{} and {} are shards of different runs: their {what} differ; merge the shards of one command line",
                dirs[0].display(),
                dir.display()
            ))
        };
        if manifest.command != first.command || manifest.argv != first.argv {
            return Err(differs("command lines"));
        }
        if manifest.input != first.input {
            return Err(differs("inputs"));
        }
        if manifest.shard.count != count {
            return Err(differs("shard counts"));
        }
        let roles = |m: &Manifest| m.roles.iter().map(|r| (r.role.clone(), r.model.fingerprint.clone())).collect::<Vec<_>>();
        if roles(manifest) != roles(first) {
            return Err(differs("models (fingerprints)"));
        }
        if let Some(other) = seen.insert(manifest.shard.index, dir) {
            return Err(usage(format!("{} and {} are both shard {}", other.display(), dir.display(), manifest.shard)));
        }
    }
    let missing: Vec<String> = (1..=count).filter(|k| !seen.contains_key(k)).map(|k| format!("{k}/{count}")).collect();
    if !missing.is_empty() {
        return Err(usage(format!("shard {} missing: merge needs all {count} shards", missing.join(", "))));
    }
    let input = Path::new(&first.input.path);
    let sha256 = file_sha256(input).map_err(|e| {
        usage(format!(
            "{e:#}; merge re-reads the input `{}` the shards were run on: run it where they ran (or give the same path)",
            input.display()
        ))
    })?;
    if sha256 != first.input.sha256 {
        return Err(usage(format!("the input `{}` changed since the shards were scored (sha256 differs)", input.display())));
    }
    let dir = TempDir(std::env::temp_dir().join(format!("whence-merge-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).with_context(|| format!("creating {}", dir.0.display()))?;
    let mut scorers = BTreeMap::new();
    for role in &first.roles {
        let combined = dir.0.join(scores_file(&role.role));
        let mut file =
            std::io::BufWriter::new(std::fs::File::create(&combined).with_context(|| format!("writing {}", combined.display()))?);
        let mut failures = HashMap::new();
        for (manifest, shard_dir) in manifests.iter().zip(dirs) {
            let path = shard_dir.join("scores").join(scores_file(&role.role));
            let mut part = std::fs::File::open(&path).map_err(|e| usage(format!("{}: {e}", path.display())))?;
            std::io::copy(&mut part, &mut file).with_context(|| format!("reading {}", path.display()))?;
            let entry = manifest.roles.iter().find(|r| r.role == role.role).expect("checked: same roles");
            failures.extend(entry.failures.iter().map(|f| (f.id.clone(), f.message.clone())));
        }
        file.flush()?;
        drop(file);
        let scores = FileScorer::open(&combined).with_context(|| format!("the {} scores of the shards", role.role))?;
        scorers.insert(role.role.clone(), ReplayScorer { scores, info: role.model.clone(), failures });
    }
    let mut argv = vec!["whence".to_string()];
    argv.extend(first.argv.iter().cloned());
    Ok(Replay { argv, scorers, _dir: dir })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_ids() {
        let shards: Vec<Shard> = (1..=4).map(|k| format!("{k}/4").parse().unwrap()).collect();
        for i in 0..1000 {
            let id = format!("record-{i}");
            assert_eq!(shards.iter().filter(|s| s.contains(&id)).count(), 1);
        }
        let sizes: Vec<usize> = shards.iter().map(|s| (0..1000).filter(|i| s.contains(&format!("record-{i}"))).count()).collect();
        assert!(sizes.iter().all(|&n| (200..300).contains(&n)), "{sizes:?}");
        for bad in ["0/4", "5/4", "1", "a/b", "1/0"] {
            assert!(bad.parse::<Shard>().unwrap_err().starts_with(&format!("invalid shard `{bad}`")));
        }
    }
}
