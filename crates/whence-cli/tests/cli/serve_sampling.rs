//! Sampling through `whence serve`: `whence generate` against a real
//! server writes what in-process `whence generate` writes with the same
//! seed, a third-party client (the `openai` Python package) reads its
//! answers, and bad sampling requests are refused while the server keeps
//! serving.

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::server::Served;
use crate::*;

fn fixture(name: &str) -> String {
    root().join("tests/reference/fixtures").join(name).display().to_string()
}

/// POSTs `body` to the server's /v1/completions on a fresh connection: status and body.
fn post(served: &Served, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", served.port)).unwrap();
    let request = format!("POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    (status, answer.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
}

/// Questions with text prompts, and a chat prompt (rendered with the
/// checkpoint's chat template on the client side either way).
fn questions(scratch: &Scratch, n: usize) -> PathBuf {
    let mut lines = String::new();
    for i in 0..n {
        let record = if i % 3 == 2 {
            serde_json::json!({"id": format!("q{i}"), "messages": [{"role": "user", "content": format!("What is {i} times {i}?")}]})
        } else {
            serde_json::json!({"id": format!("q{i}"), "prompt": format!("Problem {i}: what is {i} + {}?", i + 1)})
        };
        lines.push_str(&record.to_string());
        lines.push('\n');
    }
    scratch.write("questions.jsonl", &lines)
}

/// Runs `whence generate MODEL` (with `--tokenizer DIR` for a server) and
/// returns the responses and the `--logprobs` file, as bytes.
fn generate(scratch: &Scratch, name: &str, model: &str, tokenizer: Option<&str>, input: &Path, flags: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let (out, logprobs) = (scratch.join(&format!("{name}.jsonl")), scratch.join(&format!("{name}.logprobs.jsonl")));
    let mut args = vec!["-q".to_string(), "generate".into(), model.into(), "-i".into(), input.display().to_string()];
    args.extend(["-o".into(), out.display().to_string(), "--logprobs".into(), logprobs.display().to_string(), "--no-cache".into()]);
    if let Some(dir) = tokenizer {
        args.extend(["--tokenizer".into(), dir.into()]);
    }
    args.extend(flags.iter().map(|s| s.to_string()));
    ok(whence(&args));
    (std::fs::read(&out).unwrap(), std::fs::read(&logprobs).unwrap())
}

#[test]
fn generate_through_whence_serve_equals_in_process() {
    let scratch = Scratch::new("serve-generate");
    let input = questions(&scratch, 5);
    for model in ["tiny-qwen2", "tiny-llama3"] {
        let served = Served::start_with(model, 0, &[]);
        let dir = fixture(model);
        for (case, flags) in [
            ("top-p-top-k", &["--samples", "3", "--max-new-tokens", "12", "--seed", "5", "--top-p", "0.9", "--top-k", "50"][..]),
            ("plain", &["--samples", "3", "--max-new-tokens", "12", "--seed", "5"][..]),
            ("greedy", &["--samples", "2", "--max-new-tokens", "12", "--temperature", "0"][..]),
            (
                "stop",
                &["--samples", "4", "--max-new-tokens", "16", "--seed", "8", "--temperature", "0.8", "--stop", "e", "--stop", "\n"][..],
            ),
        ] {
            let local = generate(&scratch, &format!("{model}-{case}-local"), &dir, None, &input, flags);
            let remote = generate(&scratch, &format!("{model}-{case}-served"), &served.url(), Some(&dir), &input, flags);
            let lines = |bytes: &[u8]| String::from_utf8_lossy(bytes).lines().count();
            let samples: usize = flags[1].parse().unwrap();
            assert_eq!(lines(&local.0), 5 * samples, "{model} {case}");
            assert!(
                local.0 == remote.0,
                "{model} {case}: responses differ\nin-process:\n{}\nthrough whence serve:\n{}",
                String::from_utf8_lossy(&local.0),
                String::from_utf8_lossy(&remote.0)
            );
            assert!(local.1 == remote.1, "{model} {case}: --logprobs files differ");
            if case == "stop" {
                let records: Vec<serde_json::Value> =
                    String::from_utf8_lossy(&local.0).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
                assert!(records.iter().any(|r| r["finish_reason"] == "stop"), "the stop strings ended some samples");
                assert!(records.iter().all(|r| !r["response"].as_str().unwrap().contains('e')));
            }
        }
        // Another seed gives other samples through the server too.
        let flags = ["--samples", "3", "--max-new-tokens", "12", "--seed", "6"];
        let other = generate(&scratch, &format!("{model}-other"), &served.url(), Some(&dir), &input, &flags);
        let five = generate(
            &scratch,
            &format!("{model}-five"),
            &served.url(),
            Some(&dir),
            &input,
            &["--samples", "3", "--max-new-tokens", "12", "--seed", "5"],
        );
        assert_ne!(other.0, five.0, "{model}: seeds 5 and 6 gave the same samples");
    }
}

/// The Python with the `openai` package (`WHENCE_TEST_PYTHON`, which
/// `.ci/run` sets), or `None` (and a message) when it is unset outside CI.
fn openai_python() -> Option<String> {
    match std::env::var("WHENCE_TEST_PYTHON") {
        Ok(python) if !python.is_empty() => Some(python),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
            assert!(!ci, "CI is set but WHENCE_TEST_PYTHON is not: point it at a python with the `openai` package (.ci/run makes one)");
            eprintln!(
                "skipping the openai client check: set WHENCE_TEST_PYTHON to a python with the `openai` package (python3 -m venv /tmp/oaienv && /tmp/oaienv/bin/pip install openai)"
            );
            None
        }
    }
}

#[test]
fn the_openai_python_client_works_against_whence_serve() {
    let Some(python) = openai_python() else { return };
    let served = Served::start_with("tiny-qwen2", 0, &["--api-key", "sesame", "--served-model-name", "tiny"]);
    let script = root().join("crates/whence-cli/tests/cli/openai_client.py");
    let output = Command::new(&python)
        .arg(&script)
        .args([&format!("http://127.0.0.1:{}/v1", served.port), "sesame", "tiny"])
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let (out, err) = (stdout(&output), stderr(&output));
    assert!(output.status.success(), "{} {} failed:\n{out}\n{err}", python, script.display());
    eprintln!("{out}");
    assert!(out.contains("ok: "), "{out}");
}

#[test]
fn bad_sampling_requests_get_400s_and_the_server_keeps_serving() {
    let served = Served::start_with("tiny-qwen2", 0, &[]);
    for (body, needle) in [
        (r#"{"prompt": [1, 2], "temperature": -1}"#, "`temperature` is -1; it must be a finite number ≥ 0"),
        (r#"{"prompt": [1, 2], "top_p": 0}"#, "`top_p` is 0; it must be in (0, 1]"),
        (r#"{"prompt": [1, 2], "top_p": 1.5}"#, "`top_p` is 1.5"),
        (r#"{"prompt": [1, 2], "top_k": -2}"#, "`top_k` is -2"),
        (r#"{"prompt": [1, 2], "n": 0}"#, "`n` is 0"),
        (r#"{"prompt": [1, 2], "max_tokens": 511}"#, "maximum context length is 512 tokens"),
        (r#"{"prompt": [1, 2], "max_tokens": 511}"#, "`max_tokens` (it is 511)"),
        (r#"{"prompt": [1, 2], "logprobs": 21}"#, "`logprobs` is 21; it must be an integer from 0 to 20"),
        (r#"{"prompt": [1, 2], "seed": "x"}"#, "`seed` is \"x\""),
        (r#"{"prompt": [1, 2], "stop": 3}"#, "`stop` is 3"),
        (r#"{"prompt": [1, 2], "stop_token_ids": [99999]}"#, "`stop_token_ids` holds 99999"),
        (r#"{"prompt": [1, 2], "presence_penalty": 1}"#, "`presence_penalty` is 1; whence serve does not support it"),
        (r#"{"prompt": [1, 2], "stream": true}"#, "`stream` is not supported"),
    ] {
        let (status, answer) = post(&served, body);
        assert_eq!(status, 400, "{body}: {answer}");
        let value: serde_json::Value = serde_json::from_str(&answer).unwrap();
        let message = value["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message:?} should say {needle:?}");
        assert_eq!(value["error"]["type"], "BadRequestError");
    }
    // Still serving: a sampled request right after.
    let (status, answer) = post(&served, r#"{"prompt": [1, 2, 3], "max_tokens": 5, "n": 2, "seed": 1, "return_token_ids": true}"#);
    assert_eq!(status, 200, "{answer}");
    let value: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let choices = value["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    for choice in choices {
        let tokens = choice["token_ids"].as_array().unwrap().len();
        assert!((1..=5).contains(&tokens), "{choice}");
        assert!(choice["finish_reason"] == "length" && tokens == 5 || choice["finish_reason"] == "stop", "{choice}");
    }
}
