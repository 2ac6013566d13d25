//! Many processes opening one fresh cache at the same moment (the workers
//! of `--shard 1/8 … 8/8` on one node, sharing the default cache): each
//! creates or joins the file, writes its own entries, and none fails.
//!
//! The processes are this test binary itself, re-run on the
//! `concurrent_child_writer` test with `WHENCE_CACHE_CONCURRENT_CHILD`
//! naming the cache file and the child's number.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use common::{assert_bit_exact, record, scores};
use whence_cache::{RecordKey, ScoreCache};

const CHILD_ENV: &str = "WHENCE_CACHE_CONCURRENT_CHILD";
/// When the children start, in milliseconds since the epoch: all at once.
const START_ENV: &str = "WHENCE_CACHE_CONCURRENT_START";
const PROCESSES: usize = 8;
const ROUNDS: usize = 20;
const ENTRIES: usize = 5;

fn model(child: usize) -> String {
    format!("sha256:worker{child}")
}

fn key(child: usize, entry: usize) -> RecordKey {
    RecordKey::of(&record(&format!("w{child}-r{entry}"), "Solve the problem.", &format!("worker {child}, entry {entry}")))
}

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()
}

#[test]
fn concurrent_child_writer() {
    // Only does something when re-run by `processes_opening_one_fresh_cache_at_once_all_succeed`.
    let Some(spec) = std::env::var_os(CHILD_ENV) else { return };
    let spec = spec.into_string().unwrap();
    let (child, path) = spec.split_once(':').unwrap();
    let child: usize = child.parse().unwrap();
    let start: u128 = std::env::var(START_ENV).unwrap().parse().unwrap();
    while now_ms() < start {
        std::hint::spin_loop();
    }
    let cache = ScoreCache::open(Path::new(path)).unwrap_or_else(|error| panic!("worker {child}: {error}"));
    for entry in 0..ENTRIES {
        cache.put(&model(child), &key(child, entry), &scores((child * 100 + entry) as u64, 40)).unwrap();
    }
}

#[test]
fn processes_opening_one_fresh_cache_at_once_all_succeed() {
    let dir = common::scratch("concurrent-open");
    let started = Instant::now();
    for round in 0..ROUNDS {
        let path = dir.join(&format!("round{round}/scores.sqlite"));
        // Far enough ahead that every child is running and spinning.
        let start = now_ms() + 150;
        let children: Vec<_> = (0..PROCESSES)
            .map(|child| {
                Command::new(std::env::current_exe().unwrap())
                    .args(["--exact", "concurrent_child_writer", "--nocapture", "--test-threads=1"])
                    .env(CHILD_ENV, format!("{child}:{}", path.display()))
                    .env(START_ENV, start.to_string())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for (child, process) in children.into_iter().enumerate() {
            let output = process.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "round {round}: worker {child} failed: {}",
                String::from_utf8_lossy(&output.stderr).lines().filter(|line| line.contains("worker")).collect::<Vec<_>>().join("\n")
            );
        }
        let cache = ScoreCache::open(&path).unwrap();
        assert_eq!(cache.len(None).unwrap(), (PROCESSES * ENTRIES) as u64, "round {round}");
        for child in 0..PROCESSES {
            for entry in 0..ENTRIES {
                let stored = cache.get(&model(child), &key(child, entry)).unwrap().expect("every entry is there");
                assert_bit_exact(&stored, &scores((child * 100 + entry) as u64, 40));
            }
        }
    }
    eprintln!("{ROUNDS} rounds of {PROCESSES} processes in {:.1} s", started.elapsed().as_secs_f64());
}
