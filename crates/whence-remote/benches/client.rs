//! Client overhead: `ServerScorer` against a server that answers at once.
//!
//! A loopback server (in this process, a thread per connection) answers
//! every `/v1/completions` with a vLLM-shaped body built from the ids it was
//! sent (log-probability −1 per token), so the time measured is the
//! client's: rendering and tokenizing the prompt, the request, parsing and
//! checking the answer. Prints records/s and CPU (user + system, whole
//! process, server included) per record for 1, 4 and 16 requests in flight.
//!
//! `cargo bench -p whence-remote --bench client [-- RECORDS]`

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Instant;

use whence_core::{Prompt, Record, SourceLocation};
use whence_encode::{Encoder, TemplateMode};
use whence_remote::{ClientOptions, ServerScorer, ServerSpec};
use whence_score::{Protocol, Scorer};

fn answer(ids: &[u64]) -> String {
    let mut logprobs = String::from("[null");
    for id in &ids[1..] {
        logprobs.push_str(&format!(",{{\"{id}\":{{\"logprob\":-1.0,\"rank\":1,\"decoded_token\":\"x\"}}}}"));
    }
    logprobs.push(']');
    let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
    format!(
        "{{\"id\":\"c\",\"object\":\"text_completion\",\"model\":\"m\",\"choices\":[{{\"index\":0,\"text\":\"\",\"prompt_token_ids\":[{}],\"prompt_logprobs\":{logprobs}}}]}}",
        ids.join(",")
    )
}

fn connection(stream: TcpStream) -> Option<()> {
    stream.set_nodelay(true).ok()?;
    let mut writer = stream.try_clone().ok()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0;
        let mut get = false;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if line.starts_with("GET") {
                get = true;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().ok()?;
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        let text = if get {
            r#"{"object":"list","data":[{"id":"m"}]}"#.to_string()
        } else {
            let value: serde_json::Value = serde_json::from_slice(&body).ok()?;
            let ids: Vec<u64> = value["prompt"].as_array()?.iter().filter_map(|v| v.as_u64()).collect();
            answer(&ids)
        };
        let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", text.len());
        writer.write_all(format!("{head}{text}").as_bytes()).ok()?;
    }
}

fn cpu_seconds() -> f64 {
    // utime and stime (fields 14 and 15) of /proc/self/stat, in clock ticks.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(2000);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || connection(stream));
        }
    });
    let text = std::fs::read_to_string(root.join("examples/synthetic/records.jsonl")).unwrap();
    let source: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let records: Vec<Record> = (0..n)
        .map(|i| {
            let r = &source[i % source.len()];
            Record {
                id: format!("r{i}"),
                question_id: format!("q{i}"),
                prompt: Prompt::Text(r["prompt"].as_str().unwrap().to_string()),
                response: format!("{} ({i})", r["response"].as_str().unwrap()),
                correct: None,
                answer: None,
                source: SourceLocation { file: "bench".into(), line: Some(i + 1), row: None },
            }
        })
        .collect();
    let tokens_dir = root.join("tests/reference/fixtures/tiny-qwen2");
    println!("| in flight | records/s | CPU ms per record | tokens per record |");
    println!("|---|---|---|---|");
    for in_flight in [1, 4, 16] {
        let encoder = Encoder::open(&tokens_dir, &TemplateMode::Auto).unwrap();
        let spec = ServerSpec { protocol: Protocol::Vllm, endpoints: vec![format!("http://127.0.0.1:{port}/v1")], model: None };
        let options = ClientOptions { max_in_flight: in_flight, ..Default::default() };
        let mut scorer = ServerScorer::open(&spec, encoder, options).unwrap();
        let refs: Vec<&Record> = records.iter().collect();
        let (cpu, start) = (cpu_seconds(), Instant::now());
        let mut tokens = 0;
        for chunk in refs.chunks(64) {
            for result in scorer.score_batch(chunk) {
                tokens += result.unwrap().logprobs.len();
            }
        }
        let (wall, cpu) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu);
        println!("| {in_flight} | {:.0} | {:.3} | {:.0} |", n as f64 / wall, cpu * 1e3 / n as f64, tokens as f64 / n as f64);
    }
}
