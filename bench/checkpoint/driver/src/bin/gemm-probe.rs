//! GFLOP/s of the matrix products of a Qwen2.5-0.5B layer and its output
//! head (a 16,384-entry slice of it) for `M` rows (default 512):
//! - `candle`: candle's matmul (`x · wᵀ`, what `candle_nn::Linear` does, gemm's own threading);
//! - `whence`: `whence_checkpoint::linear::linear` (blocks of output features as rayon tasks);
//! - `1-thread`, `1-thread-wT`: one single-threaded gemm, the weight as stored
//!   (`[out, in]`) or pre-transposed (`[in, out]`).
//!
//! Wall time and the process's CPU time (utime + stime from /proc/self/stat),
//! so that a loaded machine shows as CPU time < threads × wall. Threads:
//! RAYON_NUM_THREADS.
//!
//! Usage: gemm-probe [M] [REPEATS]

use std::time::Instant;

use candle_core::{Device, Tensor};

/// utime + stime of this process, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 =
        fields.get(11).and_then(|s| s.parse().ok()).unwrap_or(0.0) + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn main() -> candle_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let m: usize = args.get(1).map_or(512, |s| s.parse().expect("M"));
    let repeats: usize = args.get(2).map_or(5, |s| s.parse().expect("REPEATS"));
    let device = Device::Cpu;
    let shapes = [("qkv", 896, 1152), ("o", 896, 896), ("gate_up", 896, 9728), ("down", 4864, 896), ("head", 896, 16_384)];
    println!("threads {} rows {m}", candle_core::utils::get_num_threads());
    for (name, k, n) in shapes {
        let x = Tensor::randn(0f32, 1.0, (m, k), &device)?;
        let w = Tensor::randn(0f32, 0.02, (n, k), &device)?;
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let ws = w.flatten_all()?.to_vec1::<f32>()?;
        let flops = 2.0 * (m * k * n) as f64;
        let wt = w.t()?;
        let mut out = vec![0f32; m * n];
        // [inputs, outputs]: each output feature's weights strided, 64 features contiguous.
        let wts = wt.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        for engine in ["candle", "whence", "1-thread", "1-thread-wT"] {
            let mut run = || -> candle_core::Result<()> {
                if engine == "candle" {
                    drop(x.matmul(&wt)?);
                } else if engine == "whence" {
                    whence_checkpoint::linear::linear(&xs, &ws, None, m, k, n, &mut out).map_err(candle_core::Error::wrap)?;
                } else {
                    // One single-threaded gemm, weights as stored or transposed.
                    let (w, lhs_cs, lhs_rs) = if engine == "1-thread" { (&ws, 1, k as isize) } else { (&wts, n as isize, 1) };
                    unsafe {
                        gemm_f32::gemm::f32::get_gemm_fn()(
                            n,
                            m,
                            k,
                            out.as_mut_ptr(),
                            n as isize,
                            1,
                            false,
                            w.as_ptr(),
                            lhs_cs,
                            lhs_rs,
                            xs.as_ptr(),
                            k as isize,
                            1,
                            0.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm_common::Parallelism::None,
                        )
                    };
                }
                Ok(())
            };
            run()?;
            let (mut best, mut cpu_of_best) = (f64::INFINITY, 0.0);
            for _ in 0..repeats {
                let (start, cpu) = (Instant::now(), cpu_seconds());
                run()?;
                let wall = start.elapsed().as_secs_f64();
                if wall < best {
                    best = wall;
                    cpu_of_best = cpu_seconds() - cpu;
                }
            }
            println!(
                "{name:8} {m}×{k}×{n} {engine:6}: {:8.2} ms  {:6.1} GFLOP/s  (cpu {:6.2} s, {:6.1} GFLOP per cpu-s)",
                best * 1e3,
                flops / best / 1e9,
                cpu_of_best,
                flops / cpu_of_best.max(1e-9) / 1e9
            );
        }
    }
    Ok(())
}
