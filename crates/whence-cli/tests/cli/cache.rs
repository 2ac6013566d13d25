//! The score cache through the `whence` binary: workers that share one
//! fresh cache, cache files that cannot be used, and work kept as it is
//! done (a run killed in the middle of what used to be one commit of 64
//! records keeps every record it finished).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use whence_cache::{RecordKey, ScoreCache};
use whence_score::TokenLogprobs;

use crate::*;

fn fixture(name: &str) -> String {
    root().join("tests/reference/fixtures").join(name).display().to_string()
}

/// `n` records made from the example's responses, each different (ids and
/// responses numbered from `first`), written to `name`.
fn records(scratch: &Scratch, name: &str, first: usize, n: usize) -> PathBuf {
    let source = read_jsonl(&example("records.jsonl"));
    let mut lines = String::new();
    for i in first..first + n {
        let mut record = source[i % source.len()].clone();
        record["id"] = serde_json::json!(format!("r{i:04}"));
        let response = record["response"].as_str().unwrap().to_string();
        record["response"] = serde_json::json!(format!("{response} Check {i}."));
        lines.push_str(&record.to_string());
        lines.push('\n');
    }
    scratch.write(name, &lines)
}

/// The cache keys of the records of `input`, in input order.
fn keys(input: &Path) -> Vec<RecordKey> {
    let set = whence_io::read_records(input, &Default::default()).unwrap();
    set.records.iter().map(RecordKey::of).collect()
}

fn score_args(model: &str, input: &Path, out: &Path, cache: &Path) -> Vec<String> {
    ["-q", "score", "--model", &fixture(model), "--input"]
        .iter()
        .map(|arg| arg.to_string())
        .chain([input.display().to_string(), "--out".into(), out.display().to_string(), "--cache".into(), cache.display().to_string()])
        .collect()
}

fn spawn(args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_whence"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The lines of a `whence score` output, as the scores they hold.
fn score_file(path: &Path) -> Vec<(String, TokenLogprobs)> {
    read_jsonl(path)
        .into_iter()
        .map(|line| {
            let spans = line["offsets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|pair| whence_core::ByteSpan::new(pair[0].as_u64().unwrap() as usize, pair[1].as_u64().unwrap() as usize))
                .collect();
            let logprobs = line["logprobs"].as_array().unwrap().iter().map(|value| value.as_f64().unwrap()).collect();
            (line["id"].as_str().unwrap().to_string(), TokenLogprobs { spans, logprobs })
        })
        .collect()
}

fn bits(scores: &TokenLogprobs) -> Vec<u64> {
    scores.logprobs.iter().map(|logprob| logprob.to_bits()).collect()
}

#[test]
fn eight_workers_share_one_fresh_cache_twenty_times_over() {
    const WORKERS: usize = 8;
    const ROUNDS: usize = 20;
    const RECORDS: usize = 2;
    let scratch = Scratch::new("cache-shared");
    let inputs: Vec<PathBuf> = (0..WORKERS).map(|w| records(&scratch, &format!("in{w}.jsonl"), w * RECORDS, RECORDS)).collect();
    let started = Instant::now();
    for round in 0..ROUNDS {
        let dir = scratch.join(&format!("round{round}"));
        std::fs::create_dir_all(&dir).unwrap();
        let cache = dir.join("scores.sqlite");
        let outs: Vec<PathBuf> = (0..WORKERS).map(|w| dir.join(format!("out{w}.jsonl"))).collect();
        // All eight start together on a cache that does not exist yet.
        let workers: Vec<Child> = (0..WORKERS).map(|w| spawn(&score_args("tiny-qwen2", &inputs[w], &outs[w], &cache))).collect();
        for (w, worker) in workers.into_iter().enumerate() {
            let output = worker.wait_with_output().unwrap();
            assert!(output.status.success(), "round {round}, worker {w} failed ({:?}):\n{}", output.status.code(), stderr(&output));
        }
        // Every worker's scores are in the shared cache, readable and
        // exactly what the worker wrote.
        let shared = ScoreCache::open(&cache).unwrap();
        let models = shared.models().unwrap();
        assert_eq!(models.len(), 1, "{models:?}");
        assert_eq!(shared.len(None).unwrap(), (WORKERS * RECORDS) as u64, "round {round}");
        for w in 0..WORKERS {
            let written = score_file(&outs[w]);
            assert_eq!(written.len(), RECORDS);
            for (key, (id, scores)) in keys(&inputs[w]).iter().zip(&written) {
                let cached = shared.get(&models[0], key).unwrap().unwrap_or_else(|| panic!("round {round}: record {id} is not cached"));
                assert_eq!(cached.spans, scores.spans, "round {round}, record {id}");
                assert_eq!(bits(&cached), bits(scores), "round {round}, record {id}");
            }
        }
    }
    eprintln!("{ROUNDS} rounds of {WORKERS} workers in {:.1} s", started.elapsed().as_secs_f64());
}

/// A real cache of a few records' scores, closed, as bytes.
fn real_cache(scratch: &Scratch) -> Vec<u8> {
    let input = records(scratch, "made.jsonl", 0, 12);
    let path = scratch.join("made.sqlite");
    ok(whence(score_args("tiny-qwen2", &input, &scratch.join("made.out.jsonl"), &path)));
    assert!(!scratch.join("made.sqlite-wal").exists(), "the run's write-ahead log is folded into the file when it ends");
    std::fs::read(path).unwrap()
}

/// `whence score` on a cache file holding `bytes`: exit code 2, a message
/// naming the file, `expected` and how to go on; nothing written.
fn refused(scratch: &Scratch, what: &str, bytes: &[u8], expected: &str, how: &[&str]) {
    let input = records(scratch, "in.jsonl", 100, 2);
    let cache = scratch.join(&format!("{what}.sqlite"));
    std::fs::write(&cache, bytes).unwrap();
    let out = scratch.join(&format!("{what}.out.jsonl"));
    let output = whence(score_args("tiny-qwen2", &input, &out, &cache));
    let message = stderr(&output);
    assert!(!message.contains("panicked"), "{what}:\n{message}");
    assert!(message.contains(&format!("score cache `{}`", cache.display())), "{what}: the file is not named:\n{message}");
    assert!(message.contains(expected), "{what}: `{expected}` is not said:\n{message}");
    for how in how {
        assert!(message.contains(how), "{what}: `{how}` is not said:\n{message}");
    }
    assert!(!out.exists(), "{what}: an output was written");
    assert_eq!(std::fs::read(&cache).unwrap(), bytes, "{what}: the cache file was changed");
    assert_eq!(output.status.code(), Some(2), "{what}: a usage error (the file the user gave):\n{message}");
}

#[test]
fn corrupt_and_truncated_cache_files_are_usage_errors_saying_how_to_start_over() {
    let scratch = Scratch::new("cache-corrupt");
    let whole = real_cache(&scratch);
    assert!(whole.len() >= 4 * 4096, "{} bytes", whole.len());
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let random: Vec<u8> = (0..32 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect();
    let start_over = ["delete it to start over", "--cache PATH"];
    refused(&scratch, "random", &random, "is corrupt or not an SQLite database", &start_over);
    refused(&scratch, "header-then-random", &[&whole[..100], &random[100..]].concat(), "is corrupt", &start_over);
    refused(&scratch, "truncated", &whole[..whole.len() / 2], "is corrupt", &start_over);
    refused(&scratch, "truncated-to-a-page", &whole[..4096], "is corrupt", &start_over);
}

#[test]
fn a_cache_of_another_schema_version_is_a_usage_error_saying_how_to_go_on() {
    let scratch = Scratch::new("cache-version");
    let mut bytes = real_cache(&scratch);
    // The `schema_version` row's value, `1`, stored as text right after its
    // name: made `7` in place, a cache of another (future) version.
    let row = b"schema_version1";
    let at: Vec<usize> = bytes.windows(row.len()).enumerate().filter(|(_, w)| w == row).map(|(i, _)| i).collect();
    assert_eq!(at.len(), 1, "the version row is stored once");
    bytes[at[0] + row.len() - 1] = b'7';
    refused(
        &scratch,
        "version",
        &bytes,
        "has schema version `7` and this whence reads version 1",
        &["--cache PATH", "delete it to start over"],
    );
}

fn trace_args(input: &Path, out: &Path, cache: &Path) -> Vec<String> {
    let mut args: Vec<String> = vec!["-q".into(), "trace".into(), input.display().to_string()];
    for (role, checkpoint) in [("teacher", "tiny-qwen3"), ("student", "tiny-qwen2"), ("distilled", "tiny-llama3")] {
        args.extend([format!("--{role}"), fixture(checkpoint)]);
    }
    args.extend(["--format", "jsonl", "--out"].map(String::from));
    args.extend([out.display().to_string(), "--cache".into(), cache.display().to_string()]);
    args
}

fn outputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    ["actions.jsonl", "trajectories.jsonl", "positions.jsonl", "summary.json"]
        .iter()
        .map(|name| (name.to_string(), std::fs::read(dir.join(name)).unwrap()))
        .collect()
}

/// Records are handed to the scorers 64 at a time; before each record was
/// committed on its own, a batch was committed whole.
const OLD_BATCH: u64 = 64;

#[test]
fn a_run_killed_in_the_middle_of_a_batch_keeps_every_record_it_finished() {
    let scratch = Scratch::new("cache-kill");
    let n = 100;
    let input = records(&scratch, "records.jsonl", 0, n);
    let keys = keys(&input);

    // The reference: one uninterrupted run on a fresh cache.
    let reference_cache = scratch.join("reference.sqlite");
    let started = Instant::now();
    ok(whence(trace_args(&input, &scratch.join("reference"), &reference_cache)));
    eprintln!("uninterrupted trace of {n} records with three checkpoints: {:.2} s", started.elapsed().as_secs_f64());
    let reference = ScoreCache::open(&reference_cache).unwrap();
    assert_eq!(reference.len(None).unwrap(), 3 * n as u64);

    // A run killed (SIGKILL: no destructor, no rollback) while the first
    // model has scored some, but not all, of the first batch's records.
    let cache = scratch.join("killed.sqlite");
    let observer = ScoreCache::open(&cache).unwrap();
    let mut child = spawn(&trace_args(&input, &scratch.join("resumed"), &cache));
    let started = Instant::now();
    let seen = loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before it could be killed; give it more work");
        }
        let stored = observer.len(None).unwrap();
        if stored >= 8 {
            break stored;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "nothing was cached in two minutes");
        std::thread::sleep(Duration::from_millis(2));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(scratch.listing("resumed").is_empty(), "a killed run wrote outputs: {:?}", scratch.listing("resumed"));

    let kept = observer.len(None).unwrap();
    assert!(kept >= seen, "{seen} records were cached before the kill and {kept} after");
    assert!(kept < OLD_BATCH, "killed after the first batch ({kept} records cached); kill it sooner");
    // Every record kept is complete and exactly what the uninterrupted run
    // cached, and they are the first `kept` records in input order (scored
    // one after another, each committed when done).
    let models = observer.models().unwrap();
    assert_eq!(models.len(), 1, "{models:?}");
    let present: Vec<bool> = keys
        .iter()
        .map(|key| match observer.get(&models[0], key).unwrap() {
            Some(scores) => {
                let expected = reference.get(&models[0], key).unwrap().expect("the reference cached every record");
                assert_eq!((&scores.spans, bits(&scores)), (&expected.spans, bits(&expected)));
                true
            }
            None => false,
        })
        .collect();
    assert!(present.iter().take(kept as usize).all(|&p| p) && present.iter().skip(kept as usize).all(|&p| !p), "{present:?}");
    eprintln!("killed with {kept} of {} records cached ({seen} seen before the kill)", 3 * n);

    // The rerun continues from what was kept and gives the same outputs.
    ok(whence(trace_args(&input, &scratch.join("resumed"), &cache)));
    assert_eq!(observer.len(None).unwrap(), 3 * n as u64);
    assert!(outputs(&scratch.join("resumed")) == outputs(&scratch.join("reference")), "resumed outputs differ from an uninterrupted run");
}
