//! Scoring through inference servers: `whence serve` on loopback ports with
//! the tiny checkpoints, `trace` and `select` through it (equal to
//! in-process), and faults injected by a proxy between client and server
//! (500s, timeouts, dropped connections, wrong ids, a killed server).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::*;

fn fixture(name: &str) -> String {
    root().join("tests/reference/fixtures").join(name).display().to_string()
}

/// A `whence serve` process; killed on drop. Counts the completions it
/// answered (from its log).
pub(crate) struct Served {
    child: Child,
    pub(crate) port: u16,
    completions: Arc<AtomicUsize>,
    log: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    fn start(model: &str, port: u16) -> Served {
        Served::start_with(model, port, &[])
    }

    /// With further `whence serve` flags.
    pub(crate) fn start_with(model: &str, port: u16, extra: &[&str]) -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_whence"))
            .args(["serve", &fixture(model), "--port", &port.to_string(), "--threads", "1"])
            .args(extra)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let port = loop {
            let line = lines.next().expect("whence serve ended before listening").unwrap();
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.split(['/', ':']).nth(1).unwrap().parse().unwrap();
            }
        };
        let completions = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&completions);
        // Keep reading the log so that the server never blocks on it.
        let log = std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.contains("POST /v1/completions → 200") {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Served { child, port, completions, log: Some(log) }
    }

    pub(crate) fn url(&self) -> String {
        format!("vllm+http://127.0.0.1:{}/v1", self.port)
    }

    /// Sends `signal` (`TERM`, `INT`, …) to the server.
    pub(crate) fn signal(&self, signal: &str) {
        let sent = Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status().unwrap();
        assert!(sent.success(), "kill -{signal} failed");
    }

    /// The server's exit status, if it ends within `within`.
    pub(crate) fn exit_status(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Kills the server; its count of answers is final afterwards.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(log) = self.log.take() {
            let _ = log.join();
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.kill();
    }
}

fn records(scratch: &Scratch, n: usize) -> PathBuf {
    let source = read_jsonl(&example("records.jsonl"));
    let lines: String = source.iter().take(n).map(|r| format!("{r}\n")).collect();
    scratch.write("records.jsonl", &lines)
}

/// `trace` writes a directory of JSONL tables; `select` a directory holding
/// the kept records (and its summary beside them).
fn base_args(command: &str, input: &Path, out: &Path) -> Vec<String> {
    let mut args = vec!["-q".to_string(), command.into(), input.display().to_string(), "--no-cache".into(), "--out".into()];
    if command == "select" {
        std::fs::create_dir_all(out).unwrap();
        args.push(out.join("kept.jsonl").display().to_string());
    } else {
        args.extend([out.display().to_string(), "--format".into(), "jsonl".into()]);
    }
    args
}

fn role(args: &mut Vec<String>, role: &str, scorer: String) {
    args.extend([format!("--{role}"), scorer]);
}

fn tokenizers(args: &mut Vec<String>, pairs: &[(&str, &str)]) {
    for (role, model) in pairs {
        args.extend(["--tokenizer".into(), format!("{role}={}", fixture(model))]);
    }
}

/// Every output file byte-identical, except the scorers' descriptions in
/// summary.json (kind, source and fingerprint name the server).
fn assert_same_outputs(expected: &Path, got: &Path) {
    let mut names: Vec<String> =
        std::fs::read_dir(expected).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert!(names.len() >= 2, "{names:?}");
    for name in names {
        if name.ends_with("summary.json") {
            let mut a = read_json(&expected.join(&name));
            let mut b = read_json(&got.join(&name));
            for summary in [&mut a, &mut b] {
                summary.as_object_mut().unwrap().remove("models");
            }
            assert_eq!(a, b, "summary.json differs");
        } else {
            assert!(std::fs::read(expected.join(&name)).unwrap() == std::fs::read(got.join(&name)).unwrap(), "{name} differs");
        }
    }
}

/// In-process trace of `input` into `scratch/inproc`.
fn trace_in_process(scratch: &Scratch, input: &Path) -> PathBuf {
    let out = scratch.join("inproc");
    let mut args = base_args("trace", input, &out);
    role(&mut args, "teacher", fixture("tiny-qwen3"));
    role(&mut args, "student", fixture("tiny-qwen2"));
    role(&mut args, "distilled", fixture("tiny-llama3"));
    ok(whence(&args));
    out
}

#[test]
fn trace_and_select_through_whence_serve_equal_in_process() {
    let scratch = Scratch::new("served");
    let input = records(&scratch, 12);
    let expected = trace_in_process(&scratch, &input);
    let (teacher, student, distilled) = (Served::start("tiny-qwen3", 0), Served::start("tiny-qwen2", 0), Served::start("tiny-llama3", 0));

    let out = scratch.join("served");
    let mut args = base_args("trace", &input, &out);
    role(&mut args, "teacher", teacher.url());
    role(&mut args, "student", student.url());
    role(&mut args, "distilled", distilled.url());
    tokenizers(&mut args, &[("teacher", "tiny-qwen3"), ("student", "tiny-qwen2"), ("distilled", "tiny-llama3")]);
    ok(whence(&args));
    assert_same_outputs(&expected, &out);
    let summary = read_json(&out.join("summary.json"));
    assert_eq!(summary["models"]["teacher"]["kind"], "server");
    assert!(summary["models"]["teacher"]["source"].as_str().unwrap().contains("(model tiny-qwen3)"));

    let select_expected = scratch.join("select-inproc");
    let mut args = base_args("select", &input, &select_expected);
    role(&mut args, "teacher", fixture("tiny-qwen3"));
    role(&mut args, "student", fixture("tiny-qwen2"));
    ok(whence(&args));
    let select_out = scratch.join("select-served");
    let mut args = base_args("select", &input, &select_out);
    role(&mut args, "teacher", teacher.url());
    role(&mut args, "student", format!("{},http://127.0.0.1:{}/v1", student.url(), student.port));
    tokenizers(&mut args, &[("teacher", "tiny-qwen3"), ("student", "tiny-qwen2")]);
    ok(whence(&args));
    assert_same_outputs(&select_expected, &select_out);
}

#[test]
fn a_server_role_without_a_tokenizer_is_a_usage_error_with_a_hint() {
    let scratch = Scratch::new("no-tokenizer");
    let input = records(&scratch, 2);
    let mut args = base_args("trace", &input, &scratch.join("out"));
    role(&mut args, "teacher", "vllm+http://127.0.0.1:9/v1".into());
    role(&mut args, "student", fixture("tiny-qwen2"));
    role(&mut args, "distilled", fixture("tiny-llama3"));
    let output = whence(&args);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("hint: pass --tokenizer teacher=DIR"), "{}", stderr(&output));
}

// ---- faults -------------------------------------------------------------

/// What the proxy does to the n-th completion request (1-based).
#[derive(Clone, Copy, PartialEq, Debug)]
enum Fault {
    Pass,
    Error500,
    Stall,
    Drop,
    WrongId,
    Refuse400,
}

/// An HTTP proxy in front of a server that injects faults by request number.
struct Proxy {
    port: u16,
    seen: Arc<AtomicUsize>,
}

/// Reads one HTTP message (head and `Content-Length` body) off a stream.
pub(crate) fn read_message(stream: &mut impl BufRead) -> Option<(String, Vec<u8>)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let done = line == "\r\n";
        head.push_str(&line);
        if done {
            break;
        }
    }
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()))
        .unwrap_or(0);
    let mut body = vec![0; length];
    stream.read_exact(&mut body).ok()?;
    Some((head, body))
}

impl Proxy {
    fn start(backend: u16, plan: impl Fn(usize) -> Fault + Send + Sync + 'static) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(AtomicUsize::new(0));
        let (counter, plan) = (Arc::clone(&seen), Arc::new(plan));
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let (counter, plan) = (Arc::clone(&counter), Arc::clone(&plan));
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(client.try_clone().unwrap());
                    let mut client = client;
                    while let Some((head, body)) = read_message(&mut reader) {
                        let fault = if head.starts_with("POST") { plan(counter.fetch_add(1, Ordering::SeqCst) + 1) } else { Fault::Pass };
                        let answer = match fault {
                            Fault::Error500 => http_answer(500, br#"{"error":{"message":"injected failure"}}"#),
                            Fault::Refuse400 => http_answer(400, br#"{"error":{"message":"injected refusal: prompt too long"}}"#),
                            Fault::Stall => {
                                std::thread::sleep(Duration::from_secs(3));
                                return;
                            }
                            Fault::Drop => return,
                            Fault::Pass | Fault::WrongId => {
                                let Some(mut answer) = forward(backend, &head, &body) else { return };
                                if fault == Fault::WrongId {
                                    let mut value: serde_json::Value = serde_json::from_slice(&answer).unwrap();
                                    let ids = &mut value["choices"][0]["prompt_token_ids"][1];
                                    *ids = serde_json::json!(ids.as_u64().unwrap() + 1);
                                    answer = value.to_string().into_bytes();
                                }
                                http_answer(200, &answer)
                            }
                        };
                        if client.write_all(&answer).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Proxy { port, seen }
    }

    fn url(&self) -> String {
        format!("vllm+http://127.0.0.1:{}/v1", self.port)
    }
}

fn http_answer(status: u16, body: &[u8]) -> Vec<u8> {
    let mut answer =
        format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    answer.extend_from_slice(body);
    answer
}

/// Sends the request to the backend on a fresh connection; the answer's body.
fn forward(backend: u16, head: &str, body: &[u8]) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(("127.0.0.1", backend)).ok()?;
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut reader = BufReader::new(stream);
    read_message(&mut reader).map(|(_, body)| body)
}

/// Trace with the teacher behind `teacher` (a spec) and fast retries.
fn trace_with_teacher(dir: &Path, input: &Path, out: &str, teacher: String, extra: &[&str]) -> Output {
    let mut args = base_args("trace", input, &dir.join(out));
    if extra.contains(&"--cache") {
        args.retain(|a| a != "--no-cache");
    }
    role(&mut args, "teacher", teacher);
    role(&mut args, "student", fixture("tiny-qwen2"));
    role(&mut args, "distilled", fixture("tiny-llama3"));
    tokenizers(&mut args, &[("teacher", "tiny-qwen3")]);
    for (flag, default) in [("--retry-wait", "0.05"), ("--request-timeout", "1.5"), ("--max-in-flight", "3")] {
        if !extra.contains(&flag) {
            args.extend([flag.to_string(), default.to_string()]);
        }
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    whence(&args)
}

#[test]
fn retried_faults_end_in_the_right_numbers() {
    let scratch = Scratch::new("faults");
    let input = records(&scratch, 10);
    let expected = trace_in_process(&scratch, &input);
    let teacher = Served::start("tiny-qwen3", 0);
    // Every third request fails in turn: a 500, a stalled answer (past the
    // timeout), a dropped connection.
    let proxy = Proxy::start(teacher.port, |n| match n % 9 {
        1 => Fault::Error500,
        4 => Fault::Stall,
        7 => Fault::Drop,
        _ => Fault::Pass,
    });
    let output = trace_with_teacher(&scratch.0, &input, "faulty", proxy.url(), &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_same_outputs(&expected, &scratch.join("faulty"));
    assert!(proxy.seen.load(Ordering::SeqCst) > 10, "faults were injected and retried");
}

#[test]
fn wrong_ids_from_a_server_are_an_error_naming_the_record() {
    let scratch = Scratch::new("wrong-ids");
    let input = records(&scratch, 4);
    let teacher = Served::start("tiny-qwen3", 0);
    // Request 1 is the start-up probe.
    let proxy = Proxy::start(teacher.port, |n| if n == 3 { Fault::WrongId } else { Fault::Pass });
    let output = trace_with_teacher(&scratch.0, &input, "out", proxy.url(), &["--max-in-flight", "1"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("record `t000002`"), "{message}");
    assert!(message.contains("but token id"), "{message}");
    assert!(!scratch.join("out").join("summary.json").exists(), "no output after an error");
}

#[test]
fn a_refused_record_fails_with_the_servers_message_or_is_skipped() {
    let scratch = Scratch::new("refused");
    let input = records(&scratch, 4);
    let teacher = Served::start("tiny-qwen3", 0);
    let proxy = Proxy::start(teacher.port, |n| if n == 4 { Fault::Refuse400 } else { Fault::Pass });
    let output = trace_with_teacher(&scratch.0, &input, "out", proxy.url(), &["--max-in-flight", "1"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("injected refusal: prompt too long"), "{}", stderr(&output));
    assert_eq!(proxy.seen.load(Ordering::SeqCst), 5, "a 4xx is not retried (the probe and four records)");

    let proxy = Proxy::start(teacher.port, |n| if n == 4 { Fault::Refuse400 } else { Fault::Pass });
    let output = trace_with_teacher(&scratch.0, &input, "skipping", proxy.url(), &["--max-in-flight", "1", "--skip-invalid"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let summary = read_json(&scratch.join("skipping/summary.json"));
    assert_eq!(summary["skipped_records"], 1, "{summary}");
    assert_eq!(summary["trajectories"], 3);
}

#[test]
fn a_killed_server_is_waited_for_or_the_run_resumes_from_the_cache() {
    let scratch = Scratch::new("killed");
    let input = records(&scratch, 10);
    let expected = trace_in_process(&scratch, &input);
    let cache = scratch.join("scores.sqlite");
    let cache_args = ["--cache", cache.to_str().unwrap()];

    // Killed for good after a few records: the run fails (exit 1) with what
    // was scored in the cache.
    let mut teacher = Served::start("tiny-qwen3", 0);
    let port = teacher.port;
    let run = std::thread::spawn({
        let (dir, input, url, cache) = (scratch.0.clone(), input.clone(), teacher.url(), cache.clone());
        move || {
            let extra = ["--cache", cache.to_str().unwrap(), "--max-in-flight", "1", "--retries", "2"];
            trace_with_teacher(&dir, &input, "first", url, &extra)
        }
    });
    wait_for(&teacher.completions, 4, &run);
    teacher.kill();
    let answered = teacher.completions.load(Ordering::SeqCst);
    let first = run.join().unwrap();
    assert_eq!(first.status.code(), Some(1), "{}", stderr(&first));
    assert!(stderr(&first).contains("no answer after 3 attempts"), "{}", stderr(&first));
    assert!(!scratch.join("first").join("summary.json").exists());

    // Restarted on the same port: the rerun scores only what is missing.
    let teacher = Served::start("tiny-qwen3", port);
    let output = trace_with_teacher(&scratch.0, &input, "second", teacher.url(), &cache_args);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_same_outputs(&expected, &scratch.join("second"));
    let rescored = teacher.completions.load(Ordering::SeqCst);
    // Each record answered before the kill was cached (the last answer may
    // have been logged but not received); each run's count includes its
    // start-up probe.
    assert!(
        (10 - answered + 2..=10 - answered + 3).contains(&rescored),
        "the first run got {answered} answers; the rerun asked the server for {rescored} of 10 records"
    );
    drop(teacher);

    // Killed and restarted while a run waits in its retries: it completes.
    let mut teacher = Served::start("tiny-qwen3", port);
    let completions = Arc::clone(&teacher.completions);
    let run = std::thread::spawn({
        let (dir, input, url) = (scratch.0.clone(), input.clone(), teacher.url());
        move || trace_with_teacher(&dir, &input, "third", url, &["--max-in-flight", "1", "--retry-wait", "0.5"])
    });
    wait_for(&completions, 3, &run);
    teacher.kill();
    std::thread::sleep(Duration::from_millis(300));
    let restarted = Served::start("tiny-qwen3", port);
    let third = run.join().unwrap();
    assert!(third.status.success(), "{}", stderr(&third));
    assert_same_outputs(&expected, &scratch.join("third"));
    drop(restarted);
}

/// Waits until the server answered `n` completions (fails if the run ends
/// first, or after a minute).
fn wait_for(completions: &AtomicUsize, n: usize, run: &std::thread::JoinHandle<Output>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while completions.load(Ordering::SeqCst) < n {
        assert!(!run.is_finished(), "the run ended before the server answered {n} requests");
        assert!(
            std::time::Instant::now() < deadline,
            "the server answered only {} requests in a minute",
            completions.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn serve_answers_bad_requests_with_400_and_keeps_serving() {
    let served = Served::start("tiny-qwen2", 0);
    let post = |body: &str, extra: &str| -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", served.port)).unwrap();
        let request =
            format!("POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n{body}", body.len());
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let status = answer[9..12].parse().unwrap();
        (status, answer.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
    };
    for (body, needle) in [
        ("{", "not JSON"),
        (r#"{"prompt": [1, 999999999], "max_tokens": 0}"#, "outside the vocabulary"),
        (r#"{"prompt": [1, 2], "max_tokens": 600}"#, "maximum context length is 512 tokens"),
        (r#"{"prompt": [1, 2], "max_tokens": 5, "temperature": -1}"#, "`temperature` is -1"),
        (r#"{"prompt": [1, 2], "max_tokens": 0, "prompt_logprobs": 99}"#, "from 0 to 20"),
        (r#"{"prompt": [], "max_tokens": 0}"#, "empty"),
        (r#"{"max_tokens": 0}"#, "no `prompt`"),
    ] {
        let (status, answer) = post(body, "");
        assert_eq!(status, 400, "{body}: {answer}");
        let value: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert!(value["error"]["message"].as_str().unwrap().contains(needle), "{body}: {answer}");
    }
    let (status, _) = post(r#"{"prompt": [1, 2], "max_tokens": 0, "model": "other"}"#, "");
    assert_eq!(status, 404);
    // Concurrent requests wait in line; every one is answered.
    let answers: Vec<(u16, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| scope.spawn(move || post(&format!(r#"{{"prompt": [1, 2, {}], "max_tokens": 0, "prompt_logprobs": 0}}"#, 3 + i), "")))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, answer) in answers {
        assert_eq!(status, 200, "{answer}");
        let value: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(value["choices"][0]["prompt_logprobs"].as_array().unwrap().len(), 3);
    }
    let (status, answer) = post(r#"{"prompt": "hello", "max_tokens": 1, "temperature": 0, "prompt_logprobs": 1}"#, "");
    assert_eq!(status, 200, "{answer}");
}

#[test]
fn serve_checks_the_api_key_and_the_body_limit() {
    let served = Served::start_with("tiny-qwen2", 0, &["--api-key", "sesame", "--max-body-bytes", "100"]);
    let port = served.port;
    let post = |body: &str, key: &str| -> u16 {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let request = format!(
            "POST /v1/completions HTTP/1.1\r\nConnection: close\r\nAuthorization: Bearer {key}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer[9..12].parse().unwrap()
    };
    assert_eq!(post(r#"{"prompt": [1, 2], "max_tokens": 0}"#, "wrong"), 401);
    assert_eq!(post(r#"{"prompt": [1, 2], "max_tokens": 0}"#, "sesame"), 200);
    assert_eq!(post(&format!(r#"{{"prompt": [{}1], "max_tokens": 0}}"#, "1, ".repeat(50)), "sesame"), 413);
    assert_eq!(post(r#"{"prompt": [1, 2], "max_tokens": 0}"#, "sesame"), 200);
}
