//! `--shard K/N` and `whence merge`: the merged outputs are byte-identical to
//! an unsharded run's.

use crate::*;

fn fixture(name: &str) -> String {
    root().join("tests/reference/fixtures").join(name).display().to_string()
}

/// Every file of `a` equals the file of the same name in `b`.
fn assert_identical_dirs(a: &Path, b: &Path) {
    let names = |dir: &Path| {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    };
    assert_eq!(names(a), names(b));
    for name in names(a) {
        assert!(std::fs::read(a.join(&name)).unwrap() == std::fs::read(b.join(&name)).unwrap(), "{name} differs");
    }
}

/// Runs `args` unsharded into `full`, as N shards, and merges them into `merged`.
fn run_sharded(scratch: &Scratch, args: &[String], n: usize, out_name: &str) -> (PathBuf, PathBuf) {
    let full = scratch.join("full");
    let merged = scratch.join("merged");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::create_dir_all(&merged).unwrap();
    let target = |dir: &Path| if out_name.is_empty() { dir.to_path_buf() } else { dir.join(out_name) };
    let mut unsharded = args.to_vec();
    unsharded.extend(["--out".into(), target(&full).display().to_string()]);
    ok(whence(&unsharded));
    let mut shards = Vec::new();
    for k in 1..=n {
        let dir = scratch.join(&format!("shard{k}"));
        let mut sharded = args.to_vec();
        sharded.extend(["--shard".into(), format!("{k}/{n}"), "--out".into(), dir.display().to_string()]);
        ok(whence(&sharded));
        shards.push(dir.display().to_string());
    }
    let mut merge = vec!["-q".to_string(), "merge".into()];
    merge.extend(shards);
    merge.extend(["--out".into(), target(&merged).display().to_string()]);
    ok(whence(&merge));
    (full, merged)
}

#[test]
fn sharded_trace_on_checkpoints_merges_into_the_unsharded_outputs() {
    let scratch = Scratch::new("shard-trace");
    let source = read_jsonl(&example("records.jsonl"));
    let lines: String = source.iter().take(14).map(|r| format!("{r}\n")).collect();
    let input = scratch.write("records.jsonl", &lines);
    let args: Vec<String> = [
        "-q",
        "trace",
        input.to_str().unwrap(),
        "--teacher",
        &fixture("tiny-qwen3"),
        "--student",
        &fixture("tiny-qwen2"),
        "--distilled",
        &fixture("tiny-llama3"),
        "--format",
        "jsonl",
        "--no-cache",
    ]
    .map(String::from)
    .to_vec();
    let (full, merged) = run_sharded(&scratch, &args, 3, "");
    assert_identical_dirs(&full, &merged);
    let manifest = read_json(&scratch.join("shard2").join("shard.json"));
    assert_eq!(manifest["shard"], serde_json::json!({"index": 2, "count": 3}));
    assert_eq!(manifest["roles"][0]["model"]["kind"], "checkpoint");
}

#[test]
fn sharded_select_and_score_merge_into_the_unsharded_outputs_with_skipped_records() {
    let scratch = Scratch::new("shard-select");
    // The teacher file lacks two records: with --skip-invalid both runs skip
    // and list them, with the same reasons.
    let teacher: String = std::fs::read_to_string(example("teacher.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.contains("\"t000003\"") && !l.contains("\"t000017\""))
        .map(|l| format!("{l}\n"))
        .collect();
    let teacher = scratch.write("teacher.jsonl", &teacher);
    let args: Vec<String> = [
        "-q",
        "select",
        example("records.jsonl").to_str().unwrap(),
        "--teacher",
        &format!("file:{}", teacher.display()),
        "--student",
        &format!("file:{}", example("student.jsonl").display()),
        "--skip-invalid",
    ]
    .map(String::from)
    .to_vec();
    let (full, merged) = run_sharded(&scratch, &args, 4, "kept.jsonl");
    assert_identical_dirs(&full, &merged);
    let summary = std::fs::read_to_string(full.join("kept.jsonl.summary.json")).unwrap();
    assert!(summary.contains("t000017"), "{summary}");

    let scratch = Scratch::new("shard-score");
    let source = read_jsonl(&example("records.jsonl"));
    let lines: String = source.iter().take(9).map(|r| format!("{r}\n")).collect();
    let input = scratch.write("records.jsonl", &lines);
    let args: Vec<String> =
        ["-q", "score", "--model", &fixture("tiny-qwen2"), "--input", input.to_str().unwrap(), "--no-cache"].map(String::from).to_vec();
    let (full, merged) = run_sharded(&scratch, &args, 2, "scores.jsonl");
    assert_identical_dirs(&full, &merged);
}

#[test]
fn sharded_attribute_merges_into_the_unsharded_outputs() {
    let scratch = Scratch::new("shard-attribute");
    let mut args = vec!["-q".to_string()];
    args.extend(example_attribution());
    let (full, merged) = run_sharded(&scratch, &args, 3, "");
    assert_identical_dirs(&full, &merged);
    let manifest = read_json(&scratch.join("shard1").join("shard.json"));
    let roles: Vec<&str> = manifest["roles"].as_array().unwrap().iter().map(|r| r["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["distilled", "student", "candidate spurious", "candidate true"]);
    assert!(scratch.join("shard1").join("scores").join("candidate-true.jsonl").is_file());
}

#[test]
fn merge_refuses_shards_that_do_not_belong_together() {
    let scratch = Scratch::new("shard-bad");
    let mut base = vec!["-q".to_string(), "trace".into(), example("records.jsonl").display().to_string()];
    base.extend(example_scorers());
    let shard = |k: &str, out: &str, extra: &[&str]| {
        let mut args = base.clone();
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(["--shard".into(), k.into(), "--out".into(), scratch.join(out).display().to_string()]);
        ok(whence(&args));
        scratch.join(out).display().to_string()
    };
    let one = shard("1/2", "a", &[]);
    let two = shard("2/2", "b", &[]);
    let other = shard("2/2", "c", &["--alpha", "0.05"]);
    let merge = |dirs: &[&str]| {
        let mut args = vec!["merge".to_string()];
        args.extend(dirs.iter().map(|s| s.to_string()));
        args.extend(["--out".into(), scratch.join("merged").display().to_string()]);
        whence(&args)
    };
    for (dirs, needle) in [
        (vec![one.as_str()], "shard 2/2 missing"),
        (vec![one.as_str(), one.as_str()], "are both shard 1/2"),
        (vec![one.as_str(), other.as_str()], "shards of different runs: their command lines differ"),
        (vec![one.as_str(), scratch.0.to_str().unwrap()], "is `"),
    ] {
        let output = merge(&dirs);
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(stderr(&output).contains(needle), "{needle}: {}", stderr(&output));
    }
    assert!(!scratch.join("merged").exists());
    let output = merge(&[one.as_str(), two.as_str()]);
    assert!(output.status.success(), "{}", stderr(&output));
}
