//! `whence demo --preset tiny`: the whole world end to end, byte-identical
//! from the same seed, and a rerun from the caches.

use std::path::Path;

use crate::{ok, read_json, stdout, whence, Scratch};

/// Every file under `dir` (relative path → bytes), except the two that
/// record wall times: `timings.json` and the samples' `*.summary.json`
/// (their `generation_seconds` and `tokens_per_second`).
fn artefacts(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            let timed = name == "timings.json" || (name.starts_with("samples/") && name.ends_with(".summary.json"));
            if !timed {
                files.push((name, std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

fn same(a: &Path, b: &Path) {
    let (a, b) = (artefacts(a), artefacts(b));
    let names = |files: &[(String, Vec<u8>)]| files.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b));
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{name} differs");
    }
}

fn demo(scratch: &Scratch, out: &str, cache: &str) -> String {
    let out = scratch.join(out);
    let cache = scratch.join(cache);
    ok(whence(["demo", "--preset", "tiny", "--seed", "3", "--out", out.to_str().unwrap(), "--cache-dir", cache.to_str().unwrap(), "-q"]))
}

#[test]
fn tiny_world_runs_end_to_end_reproducibly_and_from_the_cache() {
    let scratch = Scratch::new("demo");
    // Runs write into one `run` directory (paths are part of the summaries),
    // moved aside after each run to compare.
    let run = scratch.join("run");
    let keep = |name: &str| std::fs::rename(&run, scratch.join(name)).unwrap();
    let printed = demo(&scratch, "run", "cache-a");
    for needle in ["held-out accuracy", "ground truth", "teacher-only", "student-only", "attribution", "report:"] {
        assert!(printed.contains(needle), "`{needle}` missing from:\n{printed}");
    }
    let a = run.clone();
    for file in [
        "demo.json",
        "plan.json",
        "summary.json",
        "actions.parquet",
        "attribution.json",
        "selected.jsonl",
        "report/index.html",
        "questions-heldout.jsonl",
        "samples/distilled-heldout.jsonl",
        "controls/student/summary.json",
    ] {
        assert!(a.join(file).is_file(), "{file} missing");
    }
    // The summary's tables are consistent with the trace and each other.
    let summary = read_json(&a.join("demo.json"));
    let trace = read_json(&a.join("summary.json"));
    let sources = summary["ground_truth_by_source"].as_array().unwrap();
    assert_eq!(sources.iter().map(|s| s["source"].as_str().unwrap()).collect::<Vec<_>>(), ["distilled", "teacher", "student"]);
    let distilled = &sources[0]["truth"];
    let rows: u64 = distilled["by_origin"].as_array().unwrap().iter().map(|r| r["sentences"].as_u64().unwrap()).sum();
    assert_eq!(rows, distilled["sentences"].as_u64().unwrap());
    assert!(rows > 0 && rows <= trace["actions"].as_u64().unwrap());
    let all: u64 = sources.iter().map(|s| s["truth"]["sentences"].as_u64().unwrap()).sum();
    assert_eq!(summary["ground_truth"]["sentences"].as_u64().unwrap(), all);
    assert_eq!(summary["labels"], trace["label_counts"]);
    assert_eq!(summary["models"].as_array().unwrap().len(), 4);
    let ranking: Vec<&str> = summary["attribution"].as_array().unwrap().iter().map(|c| c["candidate"].as_str().unwrap()).collect();
    assert_eq!(ranking.len(), 2);
    assert!(ranking.contains(&"teacher") && ranking.contains(&"spurious"));
    let page = std::fs::read_to_string(a.join("report/index.html")).unwrap();
    assert!(page.contains("id=\"demo-ground-truth\""));
    keep("first");

    // The world made again from nothing (an emptied cache at the same
    // path, since model paths are part of the summaries) is the same, byte
    // for byte.
    std::fs::remove_dir_all(scratch.join("cache-a")).unwrap();
    demo(&scratch, "run", "cache-a");
    same(&scratch.join("first"), &run);
    keep("second");
    // A rerun finds every model in the cache and writes the same again.
    demo(&scratch, "run", "cache-a");
    same(&scratch.join("first"), &run);
    let timings = read_json(&run.join("timings.json"));
    let trained: Vec<_> = timings.as_array().unwrap().iter().filter(|t| t["cached"].is_boolean()).collect();
    assert_eq!(trained.len(), 4, "{timings}");
    assert!(trained.iter().all(|t| t["cached"] == true), "{timings}");
}

#[test]
fn demo_usage_errors_exit_2() {
    let output = whence(["demo", "--preset", "huge"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(crate::stderr(&output).contains("valid: standard, tiny"), "{}", crate::stderr(&output));
    assert!(stdout(&whence(["demo", "--help"])).contains("--experiment"));
}
