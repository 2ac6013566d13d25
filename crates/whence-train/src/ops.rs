//! Fused CPU ops with hand-written backward passes, for the training step:
//! each replaces a chain of generic candle ops (one allocation and one pass
//! over memory per op, most of them single-threaded) by one pass, computing
//! the same formula as the chain it replaces (the tests below compare both,
//! values and gradients).
//!
//! - [`rms_norm`]: `x / sqrt(mean(x²) + eps) * w` over the last dimension;
//! - [`attention`]: RoPE on q and k, causal softmax attention, from the
//!   fused `[rows, 3·hidden]` q/k/v projection to `[rows, hidden]`;
//! - [`silu_mul`]: `silu(gate) · up` from the fused `[rows, 2·intermediate]`
//!   gate/up projection;
//! - [`masked_nll`]: the mean negative log-softmax probability of the
//!   targets where the mask is 1.
//!
//! Work is split over rows (or over sequence×head) with rayon; every value
//! is computed by one thread in a fixed order (the per-head matrix products
//! by gemm on the calling thread) and sums over rows are taken in fixed
//! blocks added in order, so results do not depend on the number of threads.

use std::sync::Mutex;

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, Device, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;

/// Rows per rayon task in row-wise ops.
const ROWS_PER_TASK: usize = 16;

fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else { bail!("whence-train ops take f32 tensors") };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("whence-train ops take contiguous tensors"),
    }
}

/// The f32 values of `t`, contiguous.
fn values(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// Runs `f` on the values of `t` (made contiguous first) without copying them.
fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => f(contiguous(cpu, layout)?),
        _ => bail!("whence-train ops run on the CPU"),
    }
}

fn tensor(data: Vec<f32>, shape: &Shape) -> Result<Tensor> {
    Tensor::from_vec(data, shape.clone(), &Device::Cpu)
}

/// Whether the AVX2 copies of the kernels can run (they compute the same
/// values: no FMA contraction, no reordered sums, only wider vectors).
fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines `$name` running `$generic` compiled for AVX2 where the CPU has it.
macro_rules! dispatch {
    ($name:ident, $avx:ident, $generic:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        unsafe fn $avx($($arg: $ty),*) -> $ret {
            $generic($($arg),*)
        }

        fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            if avx2() {
                // SAFETY: the CPU has AVX2.
                return unsafe { $avx($($arg),*) };
            }
            $generic($($arg),*)
        }
    };
}

// ---------------------------------------------------------------- RMS norm

struct RmsNorm {
    eps: f32,
}

/// `sqrt(mean(x²) + eps)` of a row (the generic chain divides by it, rather
/// than multiplying by its inverse; so does this).
#[inline(always)]
fn rms(row: &[f32], eps: f32) -> f32 {
    let mut sum = 0f32;
    for x in row {
        sum += x * x;
    }
    (sum * (1.0 / row.len() as f64) as f32 + eps).sqrt()
}

#[inline(always)]
fn rms_norm_rows_generic(x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) {
    let h = w.len();
    for (x, y) in x.chunks_exact(h).zip(y.chunks_exact_mut(h)) {
        let s = rms(x, eps);
        for ((y, x), w) in y.iter_mut().zip(x).zip(w) {
            *y = (x / s) * w;
        }
    }
}
dispatch!(rms_norm_rows, rms_norm_rows_avx2, rms_norm_rows_generic, (x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) -> ());

/// Gradient of x for `rows` rows, and the rows' share of the gradient of w
/// (added into `gw`).
#[inline(always)]
fn rms_norm_bwd_rows_generic(x: &[f32], w: &[f32], g: &[f32], eps: f32, gx: &mut [f32], gw: &mut [f32]) {
    let h = w.len();
    let mut xhat = vec![0f32; h];
    for ((x, g), gx) in x.chunks_exact(h).zip(g.chunks_exact(h)).zip(gx.chunks_exact_mut(h)) {
        let s = rms(x, eps);
        let mut dot = 0f32;
        for j in 0..h {
            xhat[j] = x[j] / s;
            dot += g[j] * w[j] * xhat[j];
        }
        let mean = dot / h as f32;
        for j in 0..h {
            gx[j] = (g[j] * w[j] - xhat[j] * mean) / s;
            gw[j] += g[j] * xhat[j];
        }
    }
}
dispatch!(rms_norm_bwd_rows, rms_norm_bwd_rows_avx2, rms_norm_bwd_rows_generic,
    (x: &[f32], w: &[f32], g: &[f32], eps: f32, gx: &mut [f32], gw: &mut [f32]) -> ());

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "whence-rms-norm"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (contiguous(s1, l1)?, contiguous(s2, l2)?);
        let h = w.len();
        if l1.dims().last() != Some(&h) {
            bail!("rms_norm: x {:?} and weight {:?} disagree", l1.dims(), l2.dims());
        }
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(h * ROWS_PER_TASK).zip(x.par_chunks(h * ROWS_PER_TASK)).for_each(|(y, x)| rms_norm_rows(x, w, self.eps, y));
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let h = w.elem_count();
        let (gx, gw) = with_values(x, |x| {
            with_values(w, |w| {
                with_values(grad, |g| {
                    let mut gx = vec![0f32; x.len()];
                    let blocks: Vec<Vec<f32>> = gx
                        .par_chunks_mut(h * ROWS_PER_TASK)
                        .zip(x.par_chunks(h * ROWS_PER_TASK).zip(g.par_chunks(h * ROWS_PER_TASK)))
                        .map(|(gx, (x, g))| {
                            let mut gw = vec![0f32; h];
                            rms_norm_bwd_rows(x, w, g, self.eps, gx, &mut gw);
                            gw
                        })
                        .collect();
                    let mut gw = vec![0f32; h];
                    for block in blocks {
                        for (a, b) in gw.iter_mut().zip(block) {
                            *a += b;
                        }
                    }
                    Ok((gx, gw))
                })
            })
        })?;
        Ok((Some(tensor(gx, x.shape())?), Some(tensor(gw, w.shape())?)))
    }
}

/// RMS norm of `x` over its last dimension, scaled by `weight`.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&weight.contiguous()?, RmsNorm { eps: eps as f32 })
}

// ---------------------------------------------------------- SiLU · up

struct SiluMul;

impl CustomOp1 for SiluMul {
    fn name(&self) -> &'static str {
        "whence-silu-mul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let gu = contiguous(storage, layout)?;
        let (rows, double) = layout.shape().dims2()?;
        let width = double / 2;
        let mut y = vec![0f32; rows * width];
        y.par_chunks_mut(width * ROWS_PER_TASK).zip(gu.par_chunks(double * ROWS_PER_TASK)).for_each(|(y, gu)| silu_mul_rows(gu, y, width));
        Ok((CpuStorage::F32(y), Shape::from((rows, width))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (_, double) = arg.dims2()?;
        let width = double / 2;
        let out = with_values(arg, |gu| {
            with_values(grad, |d| {
                let mut out = vec![0f32; gu.len()];
                out.par_chunks_mut(double * ROWS_PER_TASK)
                    .zip(gu.par_chunks(double * ROWS_PER_TASK).zip(d.par_chunks(width * ROWS_PER_TASK)))
                    .for_each(|(out, (gu, d))| silu_mul_bwd_rows(gu, d, out, width));
                Ok(out)
            })
        })?;
        Ok(Some(tensor(out, arg.shape())?))
    }
}

#[inline(always)]
fn silu_mul_rows_w(gu: &[f32], y: &mut [f32], width: usize) {
    for (gu, y) in gu.chunks_exact(2 * width).zip(y.chunks_exact_mut(width)) {
        let (g, u) = gu.split_at(width);
        for ((y, g), u) in y.iter_mut().zip(g).zip(u) {
            *y = (g / (1.0 + (-g).exp())) * u;
        }
    }
}
dispatch!(silu_mul_rows, silu_mul_rows_avx2, silu_mul_rows_w, (gu: &[f32], y: &mut [f32], width: usize) -> ());

#[inline(always)]
fn silu_mul_bwd_rows_w(gu: &[f32], d: &[f32], out: &mut [f32], width: usize) {
    for ((gu, d), out) in gu.chunks_exact(2 * width).zip(d.chunks_exact(width)).zip(out.chunks_exact_mut(2 * width)) {
        let (g, u) = gu.split_at(width);
        let (dg, du) = out.split_at_mut(width);
        for j in 0..width {
            let e = (-g[j]).exp();
            let s = 1.0 / (1.0 + e);
            du[j] = d[j] * (g[j] / (1.0 + e));
            dg[j] = d[j] * u[j] * (s * (1.0 + g[j] * (1.0 - s)));
        }
    }
}
dispatch!(silu_mul_bwd_rows, silu_mul_bwd_rows_avx2, silu_mul_bwd_rows_w, (gu: &[f32], d: &[f32], out: &mut [f32], width: usize) -> ());

/// `silu(gate) · up` of `[rows, 2·width]` holding gate then up in each row.
pub fn silu_mul(gate_up: &Tensor) -> Result<Tensor> {
    gate_up.contiguous()?.apply_op1(SiluMul)
}

// ---------------------------------------------------------------- attention

/// What backward needs of one (sequence, head): roped q and k `[time, d]`,
/// and the attention weights `[time, time]` (lower triangle).
struct Saved {
    q: Vec<f32>,
    k: Vec<f32>,
    p: Vec<f32>,
}

struct Attention {
    batch: usize,
    time: usize,
    heads: usize,
    head_dim: usize,
    scale: f32,
    /// RoPE tables `[time, head_dim]`.
    cos: Vec<f32>,
    sin: Vec<f32>,
    saved: Mutex<Vec<Saved>>,
}

/// `x·cos + rotate_half(x)·sin`.
#[inline(always)]
fn rope(x: &[f32], cos: &[f32], sin: &[f32], y: &mut [f32]) {
    let half = x.len() / 2;
    for j in 0..x.len() {
        let rotated = if j < half { -x[j + half] } else { x[j - half] };
        y[j] = x[j] * cos[j] + rotated * sin[j];
    }
}

/// The gradient of [`rope`]'s input: RoPE with the sine negated.
#[inline(always)]
fn rope_bwd(g: &[f32], cos: &[f32], sin: &[f32], y: &mut [f32]) {
    let half = g.len() / 2;
    for m in 0..g.len() {
        let other = if m < half { g[m + half] * sin[m + half] } else { -(g[m - half] * sin[m - half]) };
        y[m] = g[m] * cos[m] + other;
    }
}

struct Dims {
    time: usize,
    heads: usize,
    d: usize,
    scale: f32,
}

impl Dims {
    fn hidden(&self) -> usize {
        self.heads * self.d
    }
}

/// `c = a·b` (or `c += a·b` when `accumulate`), `c` row-major `[m, n]`,
/// `a` `[m, k]` and `b` `[k, n]` given by their row and column strides; on
/// the calling thread (the jobs already run in parallel), so the sums are
/// taken in the same order whatever the number of threads.
#[allow(clippy::too_many_arguments)]
fn matmul(
    m: usize,
    n: usize,
    k: usize,
    c: &mut [f32],
    a: &[f32],
    (a_rs, a_cs): (usize, usize),
    b: &[f32],
    (b_rs, b_cs): (usize, usize),
    accumulate: bool,
) {
    assert!(c.len() >= m * n);
    assert!(m == 0 || k == 0 || (m - 1) * a_rs + (k - 1) * a_cs < a.len());
    assert!(k == 0 || n == 0 || (k - 1) * b_rs + (n - 1) * b_cs < b.len());
    // SAFETY: the bounds of every matrix are checked above.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// q (roped), k (roped) and v `[time, d]` of one (sequence, head).
#[inline(always)]
fn gather_qkv(qkv: &[f32], bias: &[f32], dims: &Dims, b: usize, h: usize, cos: &[f32], sin: &[f32]) -> [Vec<f32>; 3] {
    let (t_len, d, hidden) = (dims.time, dims.d, dims.hidden());
    let row = 3 * hidden;
    let mut q = vec![0f32; t_len * d];
    let mut k = vec![0f32; t_len * d];
    let mut v = vec![0f32; t_len * d];
    let (mut q_in, mut k_in) = (vec![0f32; d], vec![0f32; d]);
    for t in 0..t_len {
        let base = (b * t_len + t) * row + h * d;
        let (c, s) = (&cos[t * d..(t + 1) * d], &sin[t * d..(t + 1) * d]);
        if bias.is_empty() {
            q_in.copy_from_slice(&qkv[base..base + d]);
            k_in.copy_from_slice(&qkv[base + hidden..base + hidden + d]);
            v[t * d..(t + 1) * d].copy_from_slice(&qkv[base + 2 * hidden..base + 2 * hidden + d]);
        } else {
            let at = h * d;
            for j in 0..d {
                q_in[j] = qkv[base + j] + bias[at + j];
                k_in[j] = qkv[base + hidden + j] + bias[hidden + at + j];
                v[t * d + j] = qkv[base + 2 * hidden + j] + bias[2 * hidden + at + j];
            }
        }
        rope(&q_in, c, s, &mut q[t * d..(t + 1) * d]);
        rope(&k_in, c, s, &mut k[t * d..(t + 1) * d]);
    }
    [q, k, v]
}

/// One (sequence, head) forward: returns the output `[time, d]` and what
/// backward needs. The products are full `[time, time]` ones (the masked
/// half computed and thrown away, or multiplied by zero weights), which
/// costs less than skipping it outside an optimised kernel.
#[inline(always)]
fn attention_fwd_job_generic(qkv: &[f32], bias: &[f32], dims: &Dims, b: usize, h: usize, cos: &[f32], sin: &[f32]) -> (Vec<f32>, Saved) {
    let (t_len, d) = (dims.time, dims.d);
    let [q, k, v] = gather_qkv(qkv, bias, dims, b, h, cos, sin);
    let mut p = vec![0f32; t_len * t_len];
    matmul(t_len, t_len, d, &mut p, &q, (d, 1), &k, (1, d), false);
    for i in 0..t_len {
        let row = &mut p[i * t_len..(i + 1) * t_len];
        let (s, masked) = row.split_at_mut(i + 1);
        masked.fill(0.0);
        let mut max = f32::NEG_INFINITY;
        for x in s.iter_mut() {
            *x *= dims.scale;
            max = max.max(*x);
        }
        let mut sum = 0f32;
        for x in s.iter_mut() {
            *x = (*x - max).exp();
            sum += *x;
        }
        for x in s.iter_mut() {
            *x /= sum;
        }
    }
    let mut out = vec![0f32; t_len * d];
    matmul(t_len, d, t_len, &mut out, &p, (t_len, 1), &v, (d, 1), false);
    (out, Saved { q, k, p })
}
dispatch!(attention_fwd_job, attention_fwd_job_avx2, attention_fwd_job_generic,
    (qkv: &[f32], bias: &[f32], dims: &Dims, b: usize, h: usize, cos: &[f32], sin: &[f32]) -> (Vec<f32>, Saved));

/// One (sequence, head) backward: the gradients of q, k, v (before RoPE),
/// each `[time, d]`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn attention_bwd_job_generic(
    qkv: &[f32],
    bias: &[f32],
    grad: &[f32],
    saved: &Saved,
    dims: &Dims,
    b: usize,
    h: usize,
    cos: &[f32],
    sin: &[f32],
) -> [Vec<f32>; 3] {
    let (t_len, d, hidden) = (dims.time, dims.d, dims.hidden());
    let mut go = vec![0f32; t_len * d];
    let mut v = vec![0f32; t_len * d];
    for t in 0..t_len {
        let g = (b * t_len + t) * hidden + h * d;
        go[t * d..(t + 1) * d].copy_from_slice(&grad[g..g + d]);
        let base = (b * t_len + t) * 3 * hidden + 2 * hidden + h * d;
        for j in 0..d {
            v[t * d + j] = if bias.is_empty() { qkv[base + j] } else { qkv[base + j] + bias[2 * hidden + h * d + j] };
        }
    }
    let (q, k, p) = (&saved.q, &saved.k, &saved.p);
    // dV = Pᵀ·dO, dP = dO·Vᵀ.
    let mut dv = vec![0f32; t_len * d];
    matmul(t_len, d, t_len, &mut dv, p, (1, t_len), &go, (d, 1), false);
    let mut ds = vec![0f32; t_len * t_len];
    matmul(t_len, t_len, d, &mut ds, &go, (d, 1), &v, (1, d), false);
    // dS = P ∘ (dP − Σ P∘dP), times the scale of the scores.
    for i in 0..t_len {
        let pr = &p[i * t_len..i * t_len + i + 1];
        let row = &mut ds[i * t_len..(i + 1) * t_len];
        let (dp, masked) = row.split_at_mut(i + 1);
        masked.fill(0.0);
        let mut dot = 0f32;
        for (a, b) in pr.iter().zip(dp.iter()) {
            dot += a * b;
        }
        for (x, p) in dp.iter_mut().zip(pr) {
            *x = p * (*x - dot) * dims.scale;
        }
    }
    // dQ = dS·K, dK = dSᵀ·Q.
    let mut dq = vec![0f32; t_len * d];
    matmul(t_len, d, t_len, &mut dq, &ds, (t_len, 1), k, (d, 1), false);
    let mut dk = vec![0f32; t_len * d];
    matmul(t_len, d, t_len, &mut dk, &ds, (1, t_len), q, (d, 1), false);
    let mut gq = vec![0f32; t_len * d];
    let mut gk = vec![0f32; t_len * d];
    for t in 0..t_len {
        let (c, s) = (&cos[t * d..(t + 1) * d], &sin[t * d..(t + 1) * d]);
        rope_bwd(&dq[t * d..(t + 1) * d], c, s, &mut gq[t * d..(t + 1) * d]);
        rope_bwd(&dk[t * d..(t + 1) * d], c, s, &mut gk[t * d..(t + 1) * d]);
    }
    [gq, gk, dv]
}
dispatch!(attention_bwd_job, attention_bwd_job_avx2, attention_bwd_job_generic,
    (qkv: &[f32], bias: &[f32], grad: &[f32], saved: &Saved, dims: &Dims, b: usize, h: usize, cos: &[f32], sin: &[f32]) -> [Vec<f32>; 3]);
impl Attention {
    fn dims(&self) -> Dims {
        Dims { time: self.time, heads: self.heads, d: self.head_dim, scale: self.scale }
    }

    /// `bias` is empty or `[3·hidden]`.
    fn forward(&self, qkv: &[f32], bias: &[f32]) -> (Vec<f32>, Vec<Saved>) {
        let dims = self.dims();
        let (t_len, d, hidden) = (self.time, self.head_dim, dims.hidden());
        let jobs: Vec<(Vec<f32>, Saved)> = (0..self.batch * self.heads)
            .into_par_iter()
            .map(|job| attention_fwd_job(qkv, bias, &dims, job / self.heads, job % self.heads, &self.cos, &self.sin))
            .collect();
        let mut out = vec![0f32; self.batch * t_len * hidden];
        let mut saved = Vec::with_capacity(jobs.len());
        for (job, (o, s)) in jobs.into_iter().enumerate() {
            let (b, h) = (job / self.heads, job % self.heads);
            for t in 0..t_len {
                let at = (b * t_len + t) * hidden + h * d;
                out[at..at + d].copy_from_slice(&o[t * d..(t + 1) * d]);
            }
            saved.push(s);
        }
        (out, saved)
    }
}

impl Attention {
    fn cpu_forward(&self, qkv: &[f32], layout: &Layout, bias: &[f32]) -> Result<(CpuStorage, Shape)> {
        let hidden = self.heads * self.head_dim;
        if layout.dims() != [self.batch * self.time, 3 * hidden] || !(bias.is_empty() || bias.len() == 3 * hidden) {
            bail!("attention: q/k/v {:?} is not [{} rows, {}]", layout.dims(), self.batch * self.time, 3 * hidden);
        }
        let (out, saved) = self.forward(qkv, bias);
        *self.saved.lock().unwrap() = saved;
        Ok((CpuStorage::F32(out), Shape::from((self.batch * self.time, hidden))))
    }

    /// The gradient of q/k/v `[rows, 3·hidden]` (that of the bias is its
    /// column sums).
    fn backward(&self, qkv: &[f32], bias: &[f32], grad: &[f32]) -> Vec<f32> {
        let dims = self.dims();
        let (t_len, d, hidden) = (self.time, self.head_dim, dims.hidden());
        let mut saved = self.saved.lock().unwrap();
        if saved.len() != self.batch * self.heads {
            *saved = self.forward(qkv, bias).1;
        }
        let jobs: Vec<[Vec<f32>; 3]> = saved
            .par_iter()
            .enumerate()
            .map(|(job, s)| attention_bwd_job(qkv, bias, grad, s, &dims, job / self.heads, job % self.heads, &self.cos, &self.sin))
            .collect();
        let mut out = vec![0f32; qkv.len()];
        for (job, parts) in jobs.iter().enumerate() {
            let (b, h) = (job / self.heads, job % self.heads);
            for (which, part) in parts.iter().enumerate() {
                for t in 0..t_len {
                    let at = (b * t_len + t) * 3 * hidden + which * hidden + h * d;
                    out[at..at + d].copy_from_slice(&part[t * d..(t + 1) * d]);
                }
            }
        }
        out
    }
}

impl CustomOp1 for Attention {
    fn name(&self) -> &'static str {
        "whence-causal-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        self.cpu_forward(contiguous(storage, layout)?, layout, &[])
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let out = with_values(arg, |qkv| with_values(grad, |grad| Ok(self.backward(qkv, &[], grad))))?;
        Ok(Some(tensor(out, arg.shape())?))
    }
}

impl CustomOp2 for Attention {
    fn name(&self) -> &'static str {
        "whence-causal-attention-bias"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        self.cpu_forward(contiguous(s1, l1)?, l1, contiguous(s2, l2)?)
    }

    fn bwd(&self, qkv: &Tensor, bias: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let width = bias.elem_count();
        let (dqkv, dbias) = with_values(qkv, |x| {
            with_values(bias, |b| {
                with_values(grad, |g| {
                    let dqkv = self.backward(x, b, g);
                    // Column sums, row after row (the same order whatever the threads).
                    let mut dbias = vec![0f32; width];
                    for row in dqkv.chunks_exact(width) {
                        for (a, r) in dbias.iter_mut().zip(row) {
                            *a += r;
                        }
                    }
                    Ok((dqkv, dbias))
                })
            })
        })?;
        Ok((Some(tensor(dqkv, qkv.shape())?), Some(tensor(dbias, bias.shape())?)))
    }
}

/// Causal softmax attention with rotate-half RoPE on q and k: `qkv` is
/// `[batch·time, 3·hidden]` (q, k, v of each position side by side, heads
/// of `hidden / heads` within each), `cos` and `sin` are `[≥time, head_dim]`;
/// the result is `[batch·time, hidden]`, the heads side by side. `bias`
/// (`[3·hidden]`, Qwen2's q/k/v biases) is added to each row of `qkv` first.
pub fn attention(
    qkv: &Tensor,
    bias: Option<&Tensor>,
    batch: usize,
    time: usize,
    heads: usize,
    cos: &Tensor,
    sin: &Tensor,
) -> Result<Tensor> {
    let (_, width) = qkv.dims2()?;
    let head_dim = width / 3 / heads;
    let table = |t: &Tensor| values(&t.narrow(0, 0, time)?);
    let op = Attention {
        batch,
        time,
        heads,
        head_dim,
        scale: (1.0 / (head_dim as f64).sqrt()) as f32,
        cos: table(cos)?,
        sin: table(sin)?,
        saved: Mutex::new(Vec::new()),
    };
    match bias {
        Some(bias) => qkv.contiguous()?.apply_op2(&bias.contiguous()?, op),
        None => qkv.contiguous()?.apply_op1(op),
    }
}

// ---------------------------------------------------------------- the loss

struct MaskedNll {
    /// Per row, `max` and `ln Σ exp(x - max)`.
    saved: Mutex<Vec<(f32, f32)>>,
}

fn u32s<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [u32]> {
    let CpuStorage::U32(data) = storage else { bail!("masked_nll: targets must be u32") };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("masked_nll: targets must be contiguous"),
    }
}

#[inline(always)]
fn log_sum_exp_generic(row: &[f32]) -> (f32, f32) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for x in row {
        sum += (x - max).exp();
    }
    (max, sum.ln())
}
dispatch!(log_sum_exp, log_sum_exp_avx2, log_sum_exp_generic, (row: &[f32]) -> (f32, f32));

#[inline(always)]
fn nll_bwd_row_generic(x: &[f32], max: f32, log_sum: f32, target: usize, scale: f32, out: &mut [f32]) {
    for (o, x) in out.iter_mut().zip(x) {
        *o = ((x - max) - log_sum).exp() * scale;
    }
    out[target] -= scale;
}
dispatch!(nll_bwd_row, nll_bwd_row_avx2, nll_bwd_row_generic,
    (x: &[f32], max: f32, log_sum: f32, target: usize, scale: f32, out: &mut [f32]) -> ());

impl CustomOp3 for MaskedNll {
    fn name(&self) -> &'static str {
        "whence-masked-nll"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let logits = contiguous(s1, l1)?;
        let (targets, mask) = (u32s(s2, l2)?, contiguous(s3, l3)?);
        let (rows, vocab) = l1.shape().dims2()?;
        if targets.len() != rows || mask.len() != rows {
            bail!("masked_nll: {rows} rows of logits, {} targets, {} mask values", targets.len(), mask.len());
        }
        if let Some(t) = targets.iter().find(|&&t| t as usize >= vocab) {
            bail!("masked_nll: target {t} is outside the vocabulary of {vocab}");
        }
        let stats: Vec<(f32, f32)> = logits.par_chunks(vocab).map(log_sum_exp).collect();
        let mut total = 0f32;
        let mut count = 0f32;
        for (n, &(max, log_sum)) in stats.iter().enumerate() {
            let picked = (logits[n * vocab + targets[n] as usize] - max) - log_sum;
            total += picked * mask[n];
            count += mask[n];
        }
        *self.saved.lock().unwrap() = stats;
        Ok((CpuStorage::F32(vec![-total / count]), Shape::from(())))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        mask: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = grad.to_scalar::<f32>()?;
        let targets = targets.flatten_all()?.to_vec1::<u32>()?;
        let mask = values(mask)?;
        let (_, vocab) = logits.dims2()?;
        let count: f32 = mask.iter().sum();
        let out = with_values(logits, |x| {
            let mut saved = self.saved.lock().unwrap();
            if saved.len() != targets.len() {
                *saved = x.par_chunks(vocab).map(log_sum_exp).collect();
            }
            let mut out = vec![0f32; x.len()];
            out.par_chunks_mut(vocab).zip(x.par_chunks(vocab)).enumerate().for_each(|(n, (out, x))| {
                if mask[n] != 0.0 {
                    let (max, log_sum) = saved[n];
                    nll_bwd_row(x, max, log_sum, targets[n] as usize, g * mask[n] / count, out);
                }
            });
            Ok(out)
        })?;
        Ok((Some(tensor(out, logits.shape())?), None, None))
    }
}

/// `-Σ mask·log_softmax(logits)[target] / Σ mask` for `logits [rows, vocab]`,
/// `targets [rows]` (u32) and `mask [rows]` (f32); differentiable in the logits.
pub fn masked_nll(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> Result<Tensor> {
    logits.contiguous()?.apply_op3(&targets.flatten_all()?, &mask.flatten_all()?, MaskedNll { saved: Mutex::new(Vec::new()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Var, D};
    use rand_chacha::ChaCha8Rng;
    use rand_core::{RngCore, SeedableRng};

    fn random(rng: &mut ChaCha8Rng, shape: &[usize], spread: f32) -> Vec<f32> {
        let n: usize = shape.iter().product();
        (0..n).map(|_| ((rng.next_u32() as f64 / u32::MAX as f64) as f32 * 2.0 - 1.0) * spread).collect()
    }

    fn var(rng: &mut ChaCha8Rng, shape: &[usize], spread: f32) -> Var {
        Var::from_vec(random(rng, shape, spread), shape, &Device::Cpu).unwrap()
    }

    /// Asserts `a ≈ b` within `tol` of the larger magnitude of b.
    fn close(what: &str, a: &Tensor, b: &Tensor, tol: f32) {
        assert_eq!(a.dims(), b.dims(), "{what}");
        let (a, b) = (values(a).unwrap(), values(b).unwrap());
        let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-30);
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(worst <= tol * scale, "{what}: max |Δ| {worst} vs max |b| {scale}");
    }

    /// Values and gradients (of `Σ out·r` for random `r`) of `fused` and
    /// `composed` on the same inputs.
    fn compare(what: &str, inputs: &[Var], fused: impl Fn() -> Tensor, composed: impl Fn() -> Tensor, tol: f32) {
        let mut rng = ChaCha8Rng::seed_from_u64(99);
        let (a, b) = (fused(), composed());
        close(&format!("{what} forward"), &a, &b, tol);
        let r = Tensor::from_vec(random(&mut rng, a.dims(), 1.0), a.dims(), &Device::Cpu).unwrap();
        let ga = (a * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (b * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for (i, v) in inputs.iter().enumerate() {
            close(&format!("{what} gradient {i}"), ga.get(v).unwrap(), gb.get(v).unwrap(), tol);
        }
    }

    #[test]
    fn rms_norm_matches_the_composed_ops() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let x = var(&mut rng, &[37, 24], 2.0);
        let w = var(&mut rng, &[24], 1.5);
        let composed = || {
            let variance = x.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
            x.broadcast_div(&(variance + 1e-6).unwrap().sqrt().unwrap()).unwrap().broadcast_mul(&w).unwrap()
        };
        compare("rms_norm", &[x.clone(), w.clone()], || rms_norm(&x, &w, 1e-6).unwrap(), composed, 1e-5);
    }

    #[test]
    fn silu_mul_matches_the_composed_ops() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let gu = var(&mut rng, &[19, 2 * 40], 4.0);
        let composed = || (gu.narrow(1, 0, 40).unwrap().silu().unwrap() * gu.narrow(1, 40, 40).unwrap()).unwrap();
        compare("silu_mul", &[gu.clone()], || silu_mul(&gu).unwrap(), composed, 1e-5);
    }

    fn rope_tables(time: usize, d: usize) -> (Tensor, Tensor) {
        let mut cos = Vec::new();
        let mut sin = Vec::new();
        for t in 0..time {
            for j in 0..d {
                let f = 1.0 / 10_000f64.powf(2.0 * (j % (d / 2)) as f64 / d as f64);
                cos.push((t as f64 * f).cos() as f32);
                sin.push((t as f64 * f).sin() as f32);
            }
        }
        (Tensor::from_vec(cos, (time, d), &Device::Cpu).unwrap(), Tensor::from_vec(sin, (time, d), &Device::Cpu).unwrap())
    }

    #[test]
    fn attention_matches_the_composed_ops() {
        let (batch, time, heads, d) = (3, 11, 2, 8);
        let hidden = heads * d;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let qkv = var(&mut rng, &[batch * time, 3 * hidden], 1.5);
        let bias = var(&mut rng, &[3 * hidden], 0.5);
        let (cos, sin) = rope_tables(time + 5, d);
        let composed = || {
            let cos = cos.narrow(0, 0, time).unwrap();
            let sin = sin.narrow(0, 0, time).unwrap();
            let mask: Vec<f32> = (0..time).flat_map(|i| (0..time).map(move |j| if j <= i { 0.0 } else { -1e9 })).collect();
            let mask = Tensor::from_vec(mask, (time, time), &Device::Cpu).unwrap();
            let qkv = qkv.broadcast_add(&bias).unwrap();
            let split = |i: usize| {
                qkv.narrow(1, i * hidden, hidden)
                    .unwrap()
                    .reshape((batch, time, heads, d))
                    .unwrap()
                    .transpose(1, 2)
                    .unwrap()
                    .contiguous()
                    .unwrap()
            };
            let rotate_half = |x: &Tensor| {
                let first = x.narrow(D::Minus1, 0, d / 2).unwrap();
                let second = x.narrow(D::Minus1, d / 2, d / 2).unwrap();
                Tensor::cat(&[&second.neg().unwrap(), &first], D::Minus1).unwrap()
            };
            let rope = |t: &Tensor| t.broadcast_mul(&cos).unwrap().add(&rotate_half(t).broadcast_mul(&sin).unwrap()).unwrap();
            let (q, k, v) = (rope(&split(0)), rope(&split(1)), split(2));
            let scores = (q.matmul(&k.t().unwrap().contiguous().unwrap()).unwrap() * (1.0 / (d as f64).sqrt()))
                .unwrap()
                .broadcast_add(&mask)
                .unwrap();
            let weights = candle_nn::ops::softmax(&scores, D::Minus1).unwrap();
            weights.matmul(&v).unwrap().transpose(1, 2).unwrap().reshape((batch * time, hidden)).unwrap()
        };
        let fused = || attention(&qkv, Some(&bias), batch, time, heads, &cos, &sin).unwrap();
        compare("attention with bias", &[qkv.clone(), bias.clone()], fused, &composed, 1e-5);
        bias.set(&bias.zeros_like().unwrap()).unwrap();
        let fused = || attention(&qkv, None, batch, time, heads, &cos, &sin).unwrap();
        compare("attention", &[qkv.clone()], fused, &composed, 1e-5);
    }

    #[test]
    fn masked_nll_matches_the_composed_ops() {
        let (rows, vocab) = (23, 50);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let logits = var(&mut rng, &[rows, vocab], 5.0);
        let targets: Vec<u32> = (0..rows).map(|_| rng.next_u32() % vocab as u32).collect();
        let mask: Vec<f32> = (0..rows).map(|i| if i % 3 == 0 { 0.0 } else { 1.0 }).collect();
        let targets = Tensor::from_vec(targets, rows, &Device::Cpu).unwrap();
        let mask = Tensor::from_vec(mask, rows, &Device::Cpu).unwrap();
        let composed = || {
            let logprobs = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap();
            let picked = logprobs.gather(&targets.unsqueeze(1).unwrap(), 1).unwrap().squeeze(1).unwrap();
            (picked * &mask).unwrap().sum_all().unwrap().neg().unwrap().div(&mask.sum_all().unwrap()).unwrap()
        };
        compare("masked_nll", &[logits.clone()], || masked_nll(&logits, &targets, &mask).unwrap(), composed, 1e-5);
    }
}
