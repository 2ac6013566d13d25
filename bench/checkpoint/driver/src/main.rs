//! Times `Decoder::token_logprobs(&ids, 1)` of whence-checkpoint on one
//! sequence of token ids, the way `whence score` runs a checkpoint (CPU).
//!
//! Usage: whence-bench-checkpoint [--dtype f32|bf16] MODEL_DIR IDS_FILE [RUNS] [WARMUPS] [DTYPE]
//!
//! The compute dtype (the `DType` given to `weights::open_weights`, as
//! `whence score --dtype`) is `--dtype`, else the 5th positional argument,
//! else the environment variable WHENCE_BENCH_DTYPE, else f32.
//!
//! WHENCE_BENCH_LOGPROBS=FILE writes the first pass's log-probabilities
//! there, one per line (for bench/checkpoint/parity.py).
//!
//! IDS_FILE holds whitespace-separated token ids (bench/checkpoint/run.py
//! writes the same file for both engines). Prints one JSON line: load time,
//! each timed run, tokens/s of the best run, and memory: VmHWM (peak RSS)
//! after loading, and VmHWM over the scoring runs alone (reset through
//! /proc/self/clear_refs after loading), VmRSS after loading. Like the
//! `whence` binary, it calls `whence_checkpoint::tune_allocator()` first
//! (unless WHENCE_BENCH_NO_TUNE is set).

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device};
use whence_checkpoint::{weights, Config, Decoder};

/// A field of /proc/self/status in bytes (`VmHWM`, `VmRSS`).
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':').map(str::trim).map(str::to_string))
        .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// `f32` or `bf16` (also `f16`), as `whence --dtype` spells them.
fn parse_dtype(s: &str) -> DType {
    match s {
        "f32" => DType::F32,
        "bf16" => DType::BF16,
        "f16" => DType::F16,
        other => {
            eprintln!("unknown dtype `{other}`; valid: f32, bf16, f16");
            std::process::exit(2);
        }
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    let mut dtype_arg = None;
    if let Some(at) = args.iter().position(|a| a == "--dtype") {
        if at + 1 >= args.len() {
            eprintln!("--dtype needs a value: f32, bf16");
            std::process::exit(2);
        }
        dtype_arg = Some(args.remove(at + 1));
        args.remove(at);
    } else if let Some(at) = args.iter().position(|a| a.starts_with("--dtype=")) {
        dtype_arg = Some(args.remove(at)["--dtype=".len()..].to_string());
    }
    if args.len() < 3 || args.len() > 6 {
        eprintln!("usage: {} [--dtype f32|bf16] MODEL_DIR IDS_FILE [RUNS] [WARMUPS] [DTYPE]", args[0]);
        std::process::exit(2);
    }
    let dtype_name = dtype_arg
        .or_else(|| args.get(5).cloned())
        .or_else(|| std::env::var("WHENCE_BENCH_DTYPE").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "f32".to_string());
    let dtype = parse_dtype(&dtype_name);
    let dir = PathBuf::from(&args[1]);
    let ids: Vec<u32> = std::fs::read_to_string(&args[2])
        .expect("read ids")
        .split_whitespace()
        .map(|s| s.parse().expect("token id"))
        .collect();
    let runs: usize = args.get(3).map_or(3, |s| s.parse().expect("RUNS"));
    let warmups: usize = args.get(4).map_or(1, |s| s.parse().expect("WARMUPS"));
    let device = Device::Cpu;
    // As `whence` does at startup (crates/whence-cli/src/main.rs): glibc keeps
    // large freed blocks for reuse. WHENCE_BENCH_NO_TUNE=1 measures without it.
    let tuned = std::env::var_os("WHENCE_BENCH_NO_TUNE").is_none();
    if tuned {
        whence_checkpoint::tune_allocator();
    }

    let start = Instant::now();
    let config = Config::from_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    let vb = weights::open_weights(&dir, dtype, &device).unwrap_or_else(|e| panic!("{e}"));
    let decoder = Decoder::load(&config, vb).expect("load decoder");
    let load_s = start.elapsed().as_secs_f64();
    let hwm_load = status_bytes("VmHWM");
    let rss_loaded = status_bytes("VmRSS");
    // Reset VmHWM to the current RSS so that the scoring peak is seen alone.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();

    let mut times = Vec::with_capacity(runs);
    let mut checksum = 0f64;
    let mut scored = 0;
    for i in 0..warmups + runs {
        let start = Instant::now();
        let logprobs = decoder.token_logprobs(&ids, 1).expect("token_logprobs");
        let elapsed = start.elapsed().as_secs_f64();
        scored = logprobs.len();
        checksum = logprobs.iter().map(|&x| x as f64).sum::<f64>();
        if let Some(path) = std::env::var_os("WHENCE_BENCH_LOGPROBS").filter(|_| i == 0) {
            let text: Vec<String> = logprobs.iter().map(|v| v.to_string()).collect();
            std::fs::write(&path, text.join("\n") + "\n").expect("write WHENCE_BENCH_LOGPROBS");
        }
        if i >= warmups {
            times.push(elapsed);
        }
    }
    let best = times.iter().cloned().fold(f64::INFINITY, f64::min);
    let hwm_score = status_bytes("VmHWM");
    let threads = candle_core::utils::get_num_threads();
    println!(
        "{{\"engine\":\"whence\",\"dtype\":\"{}\",\"length\":{},\"scored\":{},\"threads\":{},\"load_s\":{:.3},\"runs_s\":[{}],\"best_s\":{:.4},\
\"tokens_per_s\":{:.1},\"rss_after_load\":{},\"peak_rss_load\":{},\"peak_rss_score\":{},\"peak_rss\":{},\"hwm_reset\":{},\"tuned_allocator\":{},\"logprob_sum\":{:.4}}}",
        dtype_name,
        ids.len(),
        scored,
        threads,
        load_s,
        times.iter().map(|t| format!("{t:.4}")).collect::<Vec<_>>().join(","),
        best,
        ids.len() as f64 / best,
        rss_loaded,
        hwm_load,
        hwm_score,
        hwm_load.max(hwm_score),
        reset,
        tuned,
        checksum,
    );
}
