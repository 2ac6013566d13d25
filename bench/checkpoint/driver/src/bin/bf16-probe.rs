//! GFLOP/s of the bf16 products of a Qwen2.5-0.5B layer and a 16,384-entry
//! slice of its head for `M` rows (default 512), against the f32 product:
//! - `f32`: `whence_checkpoint::linear::linear` (gemm-f32 per block of outputs);
//! - `bf16-<kernel>`: `whence_checkpoint::bf16::linear` with each bf16 kernel
//!   this CPU has (`avx512-bf16`: vdpbf16ps; `widened-f32`: the weight widened
//!   to f32 per task, then gemm-f32).
//!
//! Best of REPEATS, wall time (a product takes milliseconds, below the
//! resolution of /proc's CPU-time ticks, so CPU time is not reported). Threads: RAYON_NUM_THREADS.
//! Usage: bf16-probe [M] [REPEATS]

use std::time::Instant;

use whence_checkpoint::bf16::{Bf16Kernel, PackedBf16};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let m: usize = args.get(1).map_or(512, |s| s.parse().expect("M"));
    let repeats: usize = args.get(2).map_or(5, |s| s.parse().expect("REPEATS"));
    let shapes = [("qkv", 896, 1152), ("o", 896, 896), ("gate_up", 896, 9728), ("down", 4864, 896), ("head", 896, 16_384)];
    println!("rows {m}, threads {}", rayon::current_num_threads());
    println!("| product | k × n | engine | GFLOP/s (wall) |");
    println!("|---|---|---|---|");
    for (name, k, n) in shapes {
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 2003) as f32 / 1000.0 - 1.0).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 104_729) % 4001) as f32 / 100_000.0 - 0.02).collect();
        let w_bf16: Vec<half::bf16> = w.iter().map(|&v| half::bf16::from_f32(v)).collect();
        let flops = 2.0 * (m * k * n) as f64;
        let mut out = vec![0f32; m * n];
        let mut engines: Vec<(String, Box<dyn FnMut(&mut [f32])>)> = Vec::new();
        let (xf, wf) = (x.clone(), w.clone());
        engines.push(("f32".into(), Box::new(move |out| whence_checkpoint::linear::linear(&xf, &wf, None, m, k, n, out).unwrap())));
        for kernel in Bf16Kernel::available() {
            let packed = PackedBf16::new(w_bf16.clone(), n, k, kernel).unwrap();
            let xb = x.clone();
            engines.push((
                format!("bf16-{}", kernel.name()),
                Box::new(move |out| whence_checkpoint::bf16::linear(&xb, &packed, None, m, out).unwrap()),
            ));
        }
        for (engine, run) in engines.iter_mut() {
            run(&mut out);
            let mut best = f64::INFINITY;
            for _ in 0..repeats {
                let start = Instant::now();
                run(&mut out);
                best = best.min(start.elapsed().as_secs_f64());
            }
            println!("| {name} | {k} × {n} | {engine} | {:.1} |", flops / best / 1e9);
        }
    }
}
