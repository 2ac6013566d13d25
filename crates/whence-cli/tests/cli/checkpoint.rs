//! `trace` on real (tiny) checkpoints: scoring in-process, the score cache,
//! and resuming after SIGKILL with byte-identical outputs.

use std::time::{Duration, Instant};

use crate::*;

fn fixture(name: &str) -> String {
    root().join("tests/reference/fixtures").join(name).display().to_string()
}

/// `n` records made from the example's responses, each a little different.
fn records(scratch: &Scratch, n: usize) -> PathBuf {
    let source = read_jsonl(&example("records.jsonl"));
    let mut lines = String::new();
    for i in 0..n {
        let mut record = source[i % source.len()].clone();
        record["id"] = serde_json::json!(format!("r{i:04}"));
        let response = record["response"].as_str().unwrap().to_string();
        record["response"] = serde_json::json!(format!("{response} Check {i}."));
        lines.push_str(&record.to_string());
        lines.push('\n');
    }
    scratch.write("records.jsonl", &lines)
}

fn trace_args(input: &Path, out: &Path, cache: Option<&Path>) -> Vec<String> {
    let mut args = vec![
        "-q".to_string(),
        "trace".into(),
        input.display().to_string(),
        "--teacher".into(),
        fixture("tiny-qwen3"),
        "--student".into(),
        fixture("tiny-qwen2"),
        "--distilled".into(),
        fixture("tiny-llama3"),
        "--format".into(),
        "jsonl".into(),
        "--out".into(),
        out.display().to_string(),
    ];
    match cache {
        Some(path) => args.extend(["--cache".into(), path.display().to_string()]),
        None => args.push("--no-cache".into()),
    }
    args
}

fn outputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    ["actions.jsonl", "trajectories.jsonl", "positions.jsonl", "summary.json"]
        .iter()
        .map(|name| (name.to_string(), std::fs::read(dir.join(name)).unwrap()))
        .collect()
}

#[test]
fn killed_run_resumes_from_the_cache_with_identical_outputs() {
    let scratch = Scratch::new("resume");
    let n = 90;
    let input = records(&scratch, n);
    let cache = scratch.join("cache.sqlite");

    // The reference: one uninterrupted run without a cache.
    ok(whence(trace_args(&input, &scratch.join("reference"), None)));

    // A run killed (SIGKILL) while it is scoring.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_whence"))
        .args(trace_args(&input, &scratch.join("resumed"), Some(&cache)))
        .spawn()
        .unwrap();
    let started = Instant::now();
    let stored = loop {
        std::thread::sleep(Duration::from_millis(20));
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before it could be killed; give it more work");
        }
        let stored = whence_cache::ScoreCache::open(&cache).ok().and_then(|c| c.len(None).ok()).unwrap_or(0);
        if stored >= 30 {
            break stored;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "nothing was cached in two minutes");
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let after_kill = whence_cache::ScoreCache::open(&cache).unwrap().len(None).unwrap();
    assert!(after_kill >= stored && after_kill < 3 * n as u64, "killed with {after_kill} of {} scores cached", 3 * n);
    assert!(scratch.listing("resumed").is_empty(), "a killed run wrote outputs: {:?}", scratch.listing("resumed"));

    // The rerun continues: everything cached is reused, the rest is scored.
    ok(whence(trace_args(&input, &scratch.join("resumed"), Some(&cache))));
    assert_eq!(whence_cache::ScoreCache::open(&cache).unwrap().len(None).unwrap(), 3 * n as u64);
    assert!(outputs(&scratch.join("resumed")) == outputs(&scratch.join("reference")), "resumed outputs differ from an uninterrupted run");
}

#[test]
fn score_writes_the_file_format_that_trace_reads_back() {
    let scratch = Scratch::new("score");
    let input = records(&scratch, 6);
    let mut file_args = Vec::new();
    for (role, checkpoint) in [("teacher", "tiny-qwen3"), ("student", "tiny-qwen2"), ("distilled", "tiny-mistral")] {
        let out = scratch.join(&format!("{role}.jsonl"));
        ok(whence([
            "-q",
            "score",
            "--model",
            &fixture(checkpoint),
            "--input",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--no-cache",
        ]));
        file_args.extend([format!("--{role}"), format!("file:{}", out.display())]);
    }
    // Tracing from the files gives the same labels as tracing the checkpoints.
    let mut from_files = vec!["-q".to_string(), "trace".into(), input.display().to_string(), "--format".into(), "jsonl".into()];
    from_files.extend(file_args);
    from_files.extend(["--out".into(), scratch.join("files").display().to_string()]);
    ok(whence(&from_files));
    let mut direct = trace_args(&input, &scratch.join("direct"), None);
    let distilled = direct.iter().position(|a| a == "--distilled").unwrap();
    direct[distilled + 1] = fixture("tiny-mistral");
    ok(whence(&direct));
    let strip = |dir: &str| -> Vec<serde_json::Value> { read_jsonl(&scratch.join(&format!("{dir}/actions.jsonl"))) };
    let (files, direct) = (strip("files"), strip("direct"));
    assert_eq!(files.len(), direct.len());
    for (a, b) in files.iter().zip(&direct) {
        assert!(a == b, "from files:\n{a}\ndirect:\n{b}");
    }
}

/// `score`'s records, in order, as (id, token log-probabilities).
fn scored(path: &Path) -> Vec<(String, Vec<f64>)> {
    read_jsonl(path)
        .iter()
        .map(|r| {
            let logprobs = r["logprobs"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            (r["id"].as_str().unwrap().to_string(), logprobs)
        })
        .collect()
}

fn assert_close(a: &[(String, Vec<f64>)], b: &[(String, Vec<f64>)], what: &str) {
    assert_eq!(a.iter().map(|r| &r.0).collect::<Vec<_>>(), b.iter().map(|r| &r.0).collect::<Vec<_>>(), "{what}: ids");
    for ((id, x), (_, y)) in a.iter().zip(b) {
        assert_eq!(x.len(), y.len(), "{what}: {id}");
        let max = x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max);
        assert!(max <= 1e-5, "{what}: {id} differs by {max}");
    }
}

#[test]
fn packed_scoring_equals_one_record_per_pass_with_the_cache_and_shards() {
    let scratch = Scratch::new("packed");
    let input = records(&scratch, 12);
    let score = |out: &Path, extra: &[&str]| {
        let mut args = vec!["-q", "score", "--model", "MODEL", "--input", input.to_str().unwrap(), "--out", out.to_str().unwrap()];
        let model = fixture("tiny-qwen3");
        args[3] = &model;
        args.extend(extra);
        ok(whence(&args));
    };
    let unpacked = scratch.join("unpacked.jsonl");
    score(&unpacked, &["--no-cache"]);
    let reference = scored(&unpacked);

    // 12 records of ~100-250 tokens: passes of up to 700 tokens hold several.
    let packed = scratch.join("packed.jsonl");
    let cache = scratch.join("cache.sqlite");
    let cache_arg = cache.to_str().unwrap().to_string();
    score(&packed, &["--batch-tokens", "700", "--cache", &cache_arg]);
    assert_close(&scored(&packed), &reference, "packed");
    // Records that share a pass are multiplied in other blocks, which moves
    // the last bits of some values: these inputs were packed.
    assert!(std::fs::read(&packed).unwrap() != std::fs::read(&unpacked).unwrap(), "--batch-tokens 700 packed nothing");
    assert_eq!(whence_cache::ScoreCache::open(&cache).unwrap().len(None).unwrap(), 12);

    // A rerun reads every record from the cache the packed run filled.
    let again = scratch.join("again.jsonl");
    score(&again, &["--batch-tokens", "700", "--cache", &cache_arg]);
    assert!(std::fs::read(&again).unwrap() == std::fs::read(&packed).unwrap(), "the cached rerun differs");

    // Shards pack their own records; merged, they give the same scores.
    let mut shards = Vec::new();
    for k in 1..=2 {
        let dir = scratch.join(&format!("shard{k}"));
        score(&dir, &["--batch-tokens", "700", "--no-cache", "--shard", &format!("{k}/2")]);
        shards.push(dir.display().to_string());
    }
    let merged = scratch.join("merged.jsonl");
    let mut merge = vec!["-q".to_string(), "merge".into()];
    merge.extend(shards);
    merge.extend(["--out".into(), merged.display().to_string()]);
    ok(whence(&merge));
    assert_close(&scored(&merged), &reference, "merged shards");

    // --batch-tokens 0 is a usage error that names the flag.
    let bad = whence(["score", "--model", &fixture("tiny-qwen3"), "--input", input.to_str().unwrap(), "--batch-tokens", "0"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("--batch-tokens"), "{}", stderr(&bad));
}
