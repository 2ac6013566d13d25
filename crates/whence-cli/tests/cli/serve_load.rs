//! `whence serve` under hostile load: a thousand idle or slow connections
//! (nothing sent, half a request head, a body trickled a byte a second)
//! while normal requests are answered, the timeouts closing the slow ones;
//! and a graceful shutdown on SIGTERM.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::server::Served;

const SCORE: &str = r#"{"prompt": [1, 2, 3], "max_tokens": 0, "prompt_logprobs": 0}"#;

/// POSTs `body` on a fresh connection; the status and the answer's body.
fn post(port: u16, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let request = format!("POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    stream.write_all(request.as_bytes()).unwrap();
    read_answer(&mut stream)
}

fn read_answer(stream: &mut TcpStream) -> (u16, String) {
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    (status, answer.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
}

/// Whether the server closed `stream` (after an optional answer) within `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("still open".into());
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(_) => continue, // a 408 answer before the close
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => return Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Err("still open".into()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[test]
fn a_thousand_slow_connections_do_not_starve_normal_requests_and_are_closed_by_the_timeouts() {
    let served = Served::start_with("tiny-qwen2", 0, &["--header-timeout", "2", "--body-timeout", "3"]);
    let port = served.port;
    let opened = Instant::now();
    // 1,000 connections: a third send nothing, a third half a head, a third
    // a whole head and then their body one byte a second; and some that ask
    // once and then sit idle, kept alive.
    let mut kept_alive = Vec::new();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .write_all(format!("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{SCORE}", SCORE.len()).as_bytes())
            .unwrap();
        let mut status = [0u8; 12];
        stream.read_exact(&mut status).unwrap();
        assert_eq!(&status[9..12], b"200");
        kept_alive.push(stream);
    }
    let mut silent = Vec::new();
    let mut half_head = Vec::new();
    let mut trickled = Vec::new();
    for i in 0..1000 {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        match i % 3 {
            0 => silent.push(stream),
            1 => {
                stream.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n").unwrap();
                half_head.push(stream);
            }
            _ => {
                stream
                    .write_all(format!("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", SCORE.len()).as_bytes())
                    .unwrap();
                trickled.push(stream);
            }
        }
    }
    let trickle = std::thread::spawn(move || {
        // One byte a second each, for longer than the body timeout.
        for second in 0..6 {
            for stream in &mut trickled {
                let _ = stream.write_all(&SCORE.as_bytes()[second..second + 1]);
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        trickled
    });
    // Normal requests meanwhile: each answered within a second.
    let mut slowest = Duration::ZERO;
    for i in 0..12 {
        let started = Instant::now();
        let (status, answer) = post(port, &format!(r#"{{"prompt": [1, 2, {}], "max_tokens": 0, "prompt_logprobs": 0}}"#, 3 + i));
        let took = started.elapsed();
        assert_eq!(status, 200, "{answer}");
        let value: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(value["choices"][0]["prompt_logprobs"].as_array().unwrap().len(), 3);
        assert!(took < Duration::from_secs(1), "request {i} took {took:?} beside 1,000 slow connections");
        slowest = slowest.max(took);
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!("slowest normal request beside 1,000 slow connections: {slowest:?}");
    let mut trickled = trickle.join().unwrap();
    // By now (over 6 s after they opened) the header timeout (2 s) has closed
    // the silent and half-head connections, and the idle kept-alive
    // ones, and the body timeout (3 s) the trickled ones,
    // with a 408 before the close.
    let mut still_open = 0;
    for stream in silent.iter_mut().chain(&mut half_head).chain(&mut kept_alive) {
        if closed_within(stream, Duration::from_millis(500)).is_err() {
            still_open += 1;
        }
    }
    let mut timed_out = 0;
    for stream in &mut trickled {
        stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        if answer.starts_with(b"HTTP/1.1 408") {
            timed_out += 1;
        } else {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "{still_open} of 1,000 slow connections still open {:?} after they opened", opened.elapsed());
    assert_eq!(timed_out, trickled.len());
    // And the server still serves.
    assert_eq!(post(port, SCORE).0, 200);
}

#[test]
fn sigterm_finishes_the_requests_in_flight_answers_new_ones_503_and_exits_0() {
    let mut served = Served::start_with("tiny-qwen2", 0, &[]);
    let port = served.port;
    // A keep-alive connection left idle must not hold the shutdown up.
    let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    idle.write_all(format!("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{SCORE}", SCORE.len()).as_bytes())
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).unwrap();
    assert_eq!(&first[9..12], b"200");
    // A request in flight: its head and half its body sent.
    let mut in_flight = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (head, rest) = SCORE.split_at(SCORE.len() / 2);
    in_flight
        .write_all(
            format!("POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{head}", SCORE.len())
                .as_bytes(),
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    served.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    let (status, answer) = post(port, SCORE);
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains("shutting down"), "{answer}");
    assert!(served.exit_status(Duration::from_millis(200)).is_none(), "exited with a request in flight");
    // The request in flight finishes and is answered in full.
    in_flight.write_all(rest.as_bytes()).unwrap();
    let (status, answer) = read_answer(&mut in_flight);
    assert_eq!(status, 200, "{answer}");
    let value: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(value["choices"][0]["prompt_logprobs"].as_array().unwrap().len(), 3);
    let status = served.exit_status(Duration::from_secs(5)).expect("whence serve did not exit after draining");
    assert!(status.success(), "{status:?}");
}
