//! Server answers checked harder: `whence score` through `whence serve` (a
//! real server on loopback, the tiny checkpoints), with a real HTTP proxy in
//! front of it that turns it into a hostile or misconfigured server for some
//! requests (vLLM's −9999 for −∞, NaN, wrong echoed ids, 5xx, dropped
//! connections, refusals, a short context in `/v1/models`).

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::server::{read_message, Served};
use crate::*;

fn fixture(name: &str) -> String {
    root().join("tests/reference/fixtures").join(name).display().to_string()
}

fn records(scratch: &Scratch, n: usize) -> PathBuf {
    let lines: String = read_jsonl(&example("records.jsonl")).iter().take(n).map(|r| format!("{r}\n")).collect();
    scratch.write("records.jsonl", &lines)
}

/// What the proxy does with a request.
enum Action {
    /// Forward it and return the server's answer.
    Pass,
    /// Forward it and return the server's answer edited (JSON), then
    /// serialized and passed through the string replacement `(from, to)`.
    Edit(fn(&mut Value), Option<(&'static str, &'static str)>),
    /// Answer this instead of forwarding.
    Answer(u16, String),
    /// Read the request and close the connection without an answer.
    Drop,
}

/// A request as the proxy sees it.
struct Seen<'a> {
    /// `GET /v1/models`, `POST /v1/completions`, …
    line: &'a str,
    /// For completions: this body's rank among the distinct completion
    /// bodies any proxy sharing the registry has seen (1-based). With one
    /// request in flight and the same record always sending the same body,
    /// 1 is the start-up probe (the same for every endpoint), 2 the first
    /// record, 3 the second, and so on.
    ordinal: usize,
}

type Rule = dyn Fn(&Seen) -> Action + Send + Sync;

/// Distinct completion bodies in the order first seen, shared by proxies.
#[derive(Clone, Default)]
struct Registry(Arc<Mutex<Vec<Vec<u8>>>>);

impl Registry {
    fn ordinal(&self, body: &[u8]) -> usize {
        let mut bodies = self.0.lock().unwrap();
        match bodies.iter().position(|b| b == body) {
            Some(i) => i + 1,
            None => {
                bodies.push(body.to_vec());
                bodies.len()
            }
        }
    }

    /// Prompt lengths of the bodies seen, by ordinal − 1.
    fn prompt_lengths(&self) -> Vec<usize> {
        self.0.lock().unwrap().iter().map(|b| prompt_tokens(b)).collect()
    }
}

fn prompt_tokens(body: &[u8]) -> usize {
    serde_json::from_slice::<Value>(body).ok().and_then(|v| v["prompt"].as_array().map(Vec::len)).unwrap_or(0)
}

/// An HTTP proxy in front of a `whence serve` that applies a rule to each
/// request.
struct Proxy {
    port: u16,
    /// Completion requests received (the probe included).
    completions: Arc<AtomicUsize>,
    /// Completion requests received, by ordinal.
    by_ordinal: Arc<Mutex<Vec<usize>>>,
}

fn http_answer(status: u16, body: &[u8]) -> Vec<u8> {
    let mut answer =
        format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    answer.extend_from_slice(body);
    answer
}

/// Sends the request to the backend on a fresh connection; the answer's status and body.
fn forward(backend: u16, head: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(("127.0.0.1", backend)).ok()?;
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut reader = BufReader::new(stream);
    let (head, body) = read_message(&mut reader)?;
    Some((head.get(9..12)?.parse().ok()?, body))
}

impl Proxy {
    fn start(backend: u16, registry: &Registry, rule: impl Fn(&Seen) -> Action + Send + Sync + 'static) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let completions = Arc::new(AtomicUsize::new(0));
        let by_ordinal = Arc::new(Mutex::new(Vec::new()));
        let rule: Arc<Rule> = Arc::new(rule);
        let (counter, by, registry) = (Arc::clone(&completions), Arc::clone(&by_ordinal), registry.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let (counter, by, registry, rule) = (Arc::clone(&counter), Arc::clone(&by), registry.clone(), Arc::clone(&rule));
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(client.try_clone().unwrap());
                    let mut client = client;
                    while let Some((head, body)) = read_message(&mut reader) {
                        let line: String = head.lines().next().unwrap_or_default().split(' ').take(2).collect::<Vec<_>>().join(" ");
                        let completion = line == "POST /v1/completions";
                        let ordinal = if completion { registry.ordinal(&body) } else { 0 };
                        if completion {
                            counter.fetch_add(1, Ordering::SeqCst);
                            let mut by = by.lock().unwrap();
                            if by.len() < ordinal {
                                by.resize(ordinal, 0);
                            }
                            by[ordinal - 1] += 1;
                        }
                        let seen = Seen { line: &line, ordinal };
                        let answer = match rule(&seen) {
                            Action::Drop => return,
                            Action::Answer(status, text) => http_answer(status, text.as_bytes()),
                            Action::Pass => {
                                let Some((status, answer)) = forward(backend, &head, &body) else { return };
                                http_answer(status, &answer)
                            }
                            Action::Edit(edit, replace) => {
                                let Some((status, answer)) = forward(backend, &head, &body) else { return };
                                let mut value: Value = serde_json::from_slice(&answer).unwrap();
                                edit(&mut value);
                                let mut text = value.to_string();
                                if let Some((from, to)) = replace {
                                    text = text.replace(from, to);
                                }
                                http_answer(status, text.as_bytes())
                            }
                        };
                        if client.write_all(&answer).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Proxy { port, completions, by_ordinal }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn url(&self) -> String {
        format!("vllm+{}", self.base())
    }

    fn completions(&self) -> usize {
        self.completions.load(Ordering::SeqCst)
    }

    /// Requests received for the body of `ordinal`.
    fn received(&self, ordinal: usize) -> usize {
        self.by_ordinal.lock().unwrap().get(ordinal - 1).copied().unwrap_or(0)
    }
}

/// `whence score` of `input` through `url` (one request in flight, fast
/// retries) into `scratch/out`.
fn score(scratch: &Scratch, input: &Path, url: &str, extra: &[&str]) -> Output {
    let out = scratch.join("out.jsonl");
    let _ = std::fs::remove_file(&out);
    let mut args: Vec<String> =
        ["score", "--input", input.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-cache"].iter().map(|s| s.to_string()).collect();
    args.extend(["--model".into(), url.to_string(), "--tokenizer".into(), format!("model={}", fixture("tiny-qwen3"))]);
    args.extend(["--max-in-flight", "1", "--retry-wait", "0.05", "--request-timeout", "20", "--retries", "4"].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    whence(&args)
}

/// The scored lines of `scratch/out.jsonl`, by id.
fn scored(scratch: &Scratch) -> Vec<(String, Vec<f64>)> {
    read_jsonl(&scratch.join("out.jsonl"))
        .into_iter()
        .map(|line| {
            let logprobs = line["logprobs"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            (line["id"].as_str().unwrap().to_string(), logprobs)
        })
        .collect()
}

fn ids(lines: &[(String, Vec<f64>)]) -> Vec<&str> {
    lines.iter().map(|(id, _)| id.as_str()).collect()
}

/// The last prompt log-probability entry of an answer: a response token.
fn last_entry(value: &mut Value) -> &mut serde_json::Map<String, Value> {
    value["choices"][0]["prompt_logprobs"].as_array_mut().unwrap().last_mut().unwrap().as_object_mut().unwrap()
}

fn minus_9999(value: &mut Value) {
    for entry in last_entry(value).values_mut() {
        entry["logprob"] = serde_json::json!(-9999.0);
    }
}

fn sentinel(value: &mut Value) {
    for entry in last_entry(value).values_mut() {
        entry["logprob"] = serde_json::json!(-1234.5);
    }
}

fn shifted_echo(value: &mut Value) {
    let id = &mut value["choices"][0]["prompt_token_ids"][2];
    *id = serde_json::json!(id.as_u64().unwrap() + 1);
}

/// No echo (a server without `return_token_ids`), and an entry keyed by
/// another token.
fn no_echo_other_key(value: &mut Value) {
    value["choices"][0].as_object_mut().unwrap().remove("prompt_token_ids");
    let entry = last_entry(value);
    let (key, logprob) = entry.iter().next().map(|(k, v)| (k.clone(), v.clone())).unwrap();
    entry.clear();
    entry.insert((key.parse::<u64>().unwrap() + 1).to_string(), logprob);
}

#[test]
fn hostile_answers_are_errors_naming_the_record_and_the_server_never_scores() {
    let scratch = Scratch::new("hostile-answers");
    let input = records(&scratch, 4);
    let served = Served::start_with("tiny-qwen3", 0, &[]);
    // The answer to the second record (t000002, ordinal 3) is tampered with.
    let cases: [(fn(&mut Value), Option<(&str, &str)>, i32, &str); 4] = [
        (minus_9999, None, 2, "is −∞ (vLLM writes -9999 for −∞)"),
        (sentinel, Some(("-1234.5", "NaN")), 1, "the response is not JSON"),
        (shifted_echo, None, 1, "but token id"),
        (no_echo_other_key, None, 1, "that was sent (it has"),
    ];
    for (edit, replace, code, needle) in cases {
        let registry = Registry::default();
        let proxy =
            Proxy::start(served.port, &registry, move |seen| if seen.ordinal == 3 { Action::Edit(edit, replace) } else { Action::Pass });
        let output = score(&scratch, &input, &proxy.url(), &[]);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(code), "{needle}: {message}");
        assert!(message.contains(needle), "{needle}: {message}");
        assert!(message.contains("record `t000002`"), "{needle}: {message}");
        assert!(message.contains(&format!("{}/completions", proxy.base())), "{needle}: the server's URL: {message}");
        assert!(!scratch.join("out.jsonl").exists(), "{needle}: no output after an error");
        assert_eq!(proxy.received(3), 1, "{needle}: a wrong answer is not retried");
    }
    // −∞ is about the record (the model gives one of its tokens no
    // probability): --skip-invalid skips it and scores the rest.
    let registry = Registry::default();
    let proxy = Proxy::start(served.port, &registry, |seen| if seen.ordinal == 3 { Action::Edit(minus_9999, None) } else { Action::Pass });
    let output = score(&scratch, &input, &proxy.url(), &["--skip-invalid"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(ids(&scored(&scratch)), ["t000001", "t000003", "t000004"]);
}

#[test]
fn a_record_that_fails_the_same_way_on_two_endpoints_is_its_error_and_not_sent_to_a_third() {
    let scratch = Scratch::new("poison");
    let input = records(&scratch, 4);
    let served = Served::start_with("tiny-qwen3", 0, &[]);
    // A 500 for the second record (t000002, ordinal 3) on every endpoint,
    // then the connection dropped instead.
    for (drop, needle) in [(false, "answered 500: engine crashed"), (true, "")] {
        let rule = move |seen: &Seen| match (seen.ordinal, drop) {
            (3, true) => Action::Drop,
            (3, false) => Action::Answer(500, r#"{"error":{"message":"engine crashed"}}"#.into()),
            _ => Action::Pass,
        };
        let registry = Registry::default();
        let proxies = [
            Proxy::start(served.port, &registry, rule),
            Proxy::start(served.port, &registry, rule),
            Proxy::start(served.port, &registry, rule),
        ];
        let url = format!("vllm+{},{},{}", proxies[0].base(), proxies[1].base(), proxies[2].base());
        let output = score(&scratch, &input, &url, &[]);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{message}");
        assert!(message.contains("record `t000002`"), "{message}");
        assert!(message.contains("failed the same way on"), "{message}");
        assert!(message.contains(needle), "{message}");
        assert!(message.contains("hint: pass --skip-invalid"), "{message}");
        let tries: usize = proxies.iter().map(|p| p.received(3)).sum();
        assert_eq!(tries, 2, "tried on two endpoints, not on the third: {message}");
        assert!(proxies.iter().all(|p| p.received(1) == 1), "one probe per endpoint");

        let registry = Registry::default();
        let proxies = [Proxy::start(served.port, &registry, rule), Proxy::start(served.port, &registry, rule)];
        let url = format!("vllm+{},{}", proxies[0].base(), proxies[1].base());
        let output = score(&scratch, &input, &url, &["--skip-invalid"]);
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(ids(&scored(&scratch)), ["t000001", "t000003", "t000004"]);
    }
}

#[test]
fn a_failure_on_one_endpoint_is_retried_on_another() {
    let scratch = Scratch::new("one-bad-endpoint");
    let input = records(&scratch, 4);
    let served = Served::start_with("tiny-qwen3", 0, &[]);
    let expected = {
        let output = score(&scratch, &input, &served.url(), &[]);
        assert!(output.status.success(), "{}", stderr(&output));
        scored(&scratch)
    };
    let registry = Registry::default();
    let sick = Proxy::start(served.port, &registry, |seen| if seen.ordinal >= 2 { Action::Drop } else { Action::Pass });
    let well = Proxy::start(served.port, &registry, |_| Action::Pass);
    let output = score(&scratch, &input, &format!("vllm+{},{}", sick.base(), well.base()), &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(scored(&scratch), expected);
    assert!(sick.completions() >= 2, "the sick endpoint was tried");
}

#[test]
fn a_misconfigured_server_is_a_usage_error_at_start_up_before_any_record() {
    let scratch = Scratch::new("misconfigured");
    let input = records(&scratch, 4);
    let served = Served::start_with("tiny-qwen3", 0, &[]);

    // Wrong model name: whence serve's own 404.
    let url = format!("{}?model=nope", served.url());
    let output = score(&scratch, &input, &url, &["--skip-invalid"]);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(message.contains(&format!("http://127.0.0.1:{}/v1 refused the start-up probe request", served.port)), "{message}");
    assert!(message.contains("The model `nope` does not exist"), "{message}");
    assert!(!scratch.join("out.jsonl").exists());

    // vLLM's refusals of a server started with --max-logprobs too low or a
    // context too short, and a server that ignores prompt_logprobs.
    let refusals = [
        r#"{"object":"error","message":"Requested prompt logprobs of 1, which is greater than max allowed: 0","type":"BadRequestError","param":"prompt_logprobs","code":400}"#,
        r#"{"object":"error","message":"This model's maximum context length is 4 tokens. However, your request has 9 input tokens.","type":"BadRequestError","param":null,"code":400}"#,
    ];
    for refusal in refusals {
        let registry = Registry::default();
        let proxy = Proxy::start(served.port, &registry, move |seen| {
            if seen.line == "POST /v1/completions" {
                Action::Answer(400, refusal.to_string())
            } else {
                Action::Pass
            }
        });
        let output = score(&scratch, &input, &proxy.url(), &["--skip-invalid"]);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{message}");
        let said: Value = serde_json::from_str(refusal).unwrap();
        assert!(message.contains(said["message"].as_str().unwrap()), "{message}");
        assert!(message.contains(&format!("{} refused the start-up probe request", proxy.base())), "{message}");
        assert!(message.contains("hint: the probe is a request of the same shape as scoring"), "{message}");
        assert_eq!(proxy.completions(), 1, "only the probe was sent, no record");
        assert!(!scratch.join("out.jsonl").exists());
    }
    fn no_prompt_logprobs(value: &mut Value) {
        value["choices"][0].as_object_mut().unwrap().remove("prompt_logprobs");
    }
    let registry = Registry::default();
    let proxy = Proxy::start(served.port, &registry, |seen| {
        if seen.line == "POST /v1/completions" {
            Action::Edit(no_prompt_logprobs, None)
        } else {
            Action::Pass
        }
    });
    let output = score(&scratch, &input, &proxy.url(), &["--skip-invalid"]);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(message.contains("answered the start-up probe request"), "{message}");
    assert!(message.contains("no `prompt_logprobs` list"), "{message}");
    assert_eq!(proxy.completions(), 1);
}

#[test]
fn requests_longer_than_the_servers_context_are_record_errors_naming_the_lengths() {
    let scratch = Scratch::new("context");
    let input = records(&scratch, 6);
    let served = Served::start_with("tiny-qwen3", 0, &[]);
    // The records' lengths, as a pass-through proxy sees them.
    let registry = Registry::default();
    let proxy = Proxy::start(served.port, &registry, |_| Action::Pass);
    let output = score(&scratch, &input, &proxy.url(), &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let full = scored(&scratch);
    let lengths: Vec<usize> = registry.prompt_lengths()[1..].to_vec();
    assert_eq!(lengths.len(), 6);
    let mut sorted = lengths.clone();
    sorted.sort();
    // A context that the median record fits exactly (max_model_len − 1
    // tokens) and the longer ones do not.
    let fits = sorted[2];
    assert!(sorted[3] > fits, "records of different lengths: {sorted:?}");
    let max_model_len = fits + 1;
    static CONTEXT: AtomicUsize = AtomicUsize::new(0);
    CONTEXT.store(max_model_len, Ordering::SeqCst);
    fn short_context(value: &mut Value) {
        value["data"][0]["max_model_len"] = serde_json::json!(CONTEXT.load(Ordering::SeqCst));
    }
    let rule = |seen: &Seen| if seen.line == "GET /v1/models" { Action::Edit(short_context, None) } else { Action::Pass };
    let too_long: Vec<usize> = (0..6).filter(|&i| lengths[i] > fits).collect();
    let first_too_long = format!("t{:06}", too_long[0] + 1);

    let proxy = Proxy::start(served.port, &Registry::default(), rule);
    let output = score(&scratch, &input, &proxy.url(), &[]);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(message.contains(&format!("record `{first_too_long}`: prompt + response are {} tokens", lengths[too_long[0]])), "{message}");
    assert!(
        message.contains(&format!(
            "{} has max_model_len {max_model_len}, and a request may have at most max_model_len − max_tokens = {max_model_len} − 1 = {fits} tokens",
            proxy.base()
        )),
        "{message}"
    );
    assert!(message.contains("hint: pass --truncate"), "{message}");

    // Skipped: the longer records are never sent.
    let registry = Registry::default();
    let proxy = Proxy::start(served.port, &registry, rule);
    let output = score(&scratch, &input, &proxy.url(), &["--skip-invalid"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let kept: Vec<(String, Vec<f64>)> = full.iter().enumerate().filter(|(i, _)| lengths[*i] <= fits).map(|(_, l)| l.clone()).collect();
    assert_eq!(scored(&scratch), kept, "the records that fit, scored as before");
    assert_eq!(proxy.completions(), 1 + kept.len(), "the probe and the records that fit");
    assert!(registry.prompt_lengths().iter().all(|&n| n <= fits));

    // Truncated: the longer records are scored on their first `fits` tokens.
    let proxy = Proxy::start(served.port, &Registry::default(), rule);
    let output = score(&scratch, &input, &proxy.url(), &["--truncate"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let truncated = scored(&scratch);
    assert_eq!(ids(&truncated), ids(&full));
    for i in 0..6 {
        let (got, all) = (&truncated[i].1, &full[i].1);
        if lengths[i] <= fits {
            assert_eq!(got, all, "{i}: fits, scored whole");
        } else {
            assert_eq!(got.len(), all.len() - (lengths[i] - fits), "{i}: {} tokens cut", lengths[i] - fits);
            for (a, b) in got.iter().zip(all) {
                assert!((a - b).abs() < 1e-4, "{i}: a prefix scores as in the whole: {a} vs {b}");
            }
        }
    }
}
