//! Integration tests: the built `whence` binary run on files.

mod attribute;
mod bad_input;
mod cache;
mod checkpoint;
mod demo;
mod generate;
mod inputs_and_help;
mod real_data;
mod remote_checks;
mod report;
mod select;
mod serve_load;
mod serve_sampling;
mod server;
mod shard;
mod trace;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The shipped example: 48 synthetic trajectories with three scorer files.
pub fn example(name: &str) -> PathBuf {
    root().join("examples/synthetic").join(name)
}

/// `../shared/data/…`, or `None` (the test then skips, saying so).
pub fn shared_data(relative: &str) -> Option<PathBuf> {
    let path = root().join("../shared/data").join(relative);
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipping: {} not found", path.display());
        None
    }
}

/// A fresh, empty directory under the target dir, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("whence-cli-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Scratch(path)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    /// File names in the directory, sorted.
    pub fn listing(&self, sub: &str) -> Vec<String> {
        let mut names: Vec<String> = match std::fs::read_dir(self.join(sub)) {
            Ok(entries) => entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => vec![],
        };
        names.sort();
        names
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `whence ARGS` quietly and returns its output.
pub fn whence<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_whence")).args(args).env_remove("RUST_LOG").output().unwrap()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Asserts success and returns stdout.
pub fn ok(output: Output) -> String {
    assert!(output.status.success(), "whence failed ({:?}):\n{}", output.status.code(), stderr(&output));
    stdout(&output)
}

pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The example's three scorer flags for `trace`.
pub fn example_scorers() -> Vec<String> {
    vec![
        "--teacher".into(),
        format!("file:{}", example("teacher.jsonl").display()),
        "--student".into(),
        format!("file:{}", example("student.jsonl").display()),
        "--distilled".into(),
        format!("file:{}", example("distilled.jsonl").display()),
    ]
}

/// `attribute` on the example, without `--out`: the example's student file
/// stands in for a spurious candidate teacher beside the true one.
pub fn example_attribution() -> Vec<String> {
    let file = |name: &str| format!("file:{}", example(name).display());
    vec![
        "attribute".into(),
        example("records.jsonl").display().to_string(),
        "--distilled".into(),
        file("distilled.jsonl"),
        "--student".into(),
        file("student.jsonl"),
        "--candidate".into(),
        format!("spurious={}", file("student.jsonl")),
        "--candidate".into(),
        format!("true={}", file("teacher.jsonl")),
    ]
}

#[test]
fn help_snapshots() {
    insta::assert_snapshot!("help", stdout(&whence(["--help"])));
    insta::assert_snapshot!("help_trace", stdout(&whence(["trace", "--help"])));
    insta::assert_snapshot!("help_select", stdout(&whence(["select", "--help"])));
    insta::assert_snapshot!("help_demo", stdout(&whence(["demo", "--help"])));
}

#[test]
fn usage_errors_exit_2() {
    let output = whence(["trace"]);
    assert_eq!(output.status.code(), Some(2));
    let output = whence(["trace", "x.jsonl", "--teacher", "hf:foo", "--student", "file:a", "--distilled", "file:b", "--out", "o"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("unknown scorer `hf:foo`; valid forms: file:PATH"), "{}", stderr(&output));
    let output = whence(["select", "x.jsonl", "--teacher", "file:a", "--student", "file:b", "--out", "o", "--strategy", "best"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("valid strategies: teacher-count, teacher-ratio, longest, min-teacher-count, random, grape"));
}
