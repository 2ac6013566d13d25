//! CPU kernels for the places where candle's generic ops do needless work
//! when scoring: [`row_logsumexp`] / [`row_max_and_sum`] give, per position,
//! only the log-sum-exp of its logits (and the target's logit), not a `[rows
//! × vocabulary]` log-softmax; [`silu_mul`] is the MLP's `silu(gate)·up` in
//! one pass.
//!
//! [`exp_nonpositive`] is a branch-free `exp` for `x ≤ 0` that the compiler
//! vectorises (relative error below 3e-7, about 2 ulp); the attention kernel
//! ([`crate::attention`]) uses it too. Other devices use the generic candle
//! path.

use rayon::prelude::*;

/// `e^x` for `x ≤ 0` (after subtracting a row maximum), 0 below −87.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let keep = f32::from(u8::from(x >= -87.0));
    let x = x.max(-87.0);
    // Round to nearest (even) by adding and removing 1.5·2²³: plain float
    // adds that vectorise everywhere (`f32::round` is a libm call below SSE4.1).
    const SHIFTER: f32 = 12_582_912.0;
    let n = (x * LOG2E + SHIFTER) - SHIFTER;
    let r = x - n * LN2_HI - n * LN2_LO;
    // e^r on |r| ≤ ln2/2: degree-6 Taylor polynomial (Horner).
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let bits = ((n as i32 + 127).max(0) as u32) << 23;
    p * f32::from_bits(bits) * keep
}

/// `max` and `ln Σ e^(x − max)` of `row`.
pub fn row_logsumexp(row: &[f32]) -> (f32, f32) {
    let (max, total) = row_max_and_sum(row);
    if !max.is_finite() {
        return (max, 0.0);
    }
    (max, total.ln() as f32)
}

/// `max` and `Σ e^(x − max)` of `row` (the sum is 0 when the max is not finite).
pub fn row_max_and_sum(row: &[f32]) -> (f32, f64) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F.
        return unsafe { avx512::row_max_and_sum(row) };
    }
    row_max_and_sum_portable(row)
}

fn row_max_and_sum_portable(row: &[f32]) -> (f32, f64) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return (max, 0.0);
    }
    let mut total = 0f64;
    for block in row.chunks(512) {
        let mut lanes = [0f32; 16];
        let mut parts = block.chunks_exact(16);
        for part in &mut parts {
            for (lane, &x) in lanes.iter_mut().zip(part) {
                *lane += exp_nonpositive(x - max);
            }
        }
        let rest: f32 = parts.remainder().iter().map(|&x| exp_nonpositive(x - max)).sum();
        total += f64::from(lanes.iter().sum::<f32>() + rest);
    }
    (max, total)
}

/// `out[r][i] = silu(gate_up[r][i]) · gate_up[r][width + i]` for each row `r`
/// of `gate_up` (`[rows, 2·width]`, gate then up), `silu(x) = x·σ(x)`;
/// rows in parallel on rayon's pool.
pub fn silu_mul(gate_up: &[f32], width: usize, out: &mut [f32]) {
    if width == 0 {
        return;
    }
    let rows_per_task = (16_384 / width).max(1);
    out.par_chunks_mut(width * rows_per_task).zip(gate_up.par_chunks(2 * width * rows_per_task)).for_each(|(out, gate_up)| {
        for (out, row) in out.chunks_exact_mut(width).zip(gate_up.chunks_exact(2 * width)) {
            let (gate, up) = row.split_at(width);
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F.
                unsafe { avx512::silu_mul(gate, up, out) };
                continue;
            }
            for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
                *o = silu(g) * u;
            }
        }
    });
}

/// `x·σ(x)`, with the exponential taken of `−|x|` only (no overflow).
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    let e = exp_nonpositive(-x.abs());
    let sigmoid = if x >= 0.0 { 1.0 / (1.0 + e) } else { e / (1.0 + e) };
    x * sigmoid
}

/// 512-bit versions of the kernels above (used when the CPU has AVX-512F).
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    /// [`super::exp_nonpositive`] lane by lane: `e^x` for `x ≤ 0`, 0 below −87 (and for −∞, NaN).
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn exp_nonpositive(x: __m512) -> __m512 {
        let floor = _mm512_set1_ps(-87.0);
        let keep = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, floor);
        let x = _mm512_max_ps(x, floor);
        let n = _mm512_roundscale_ps::<0x08>(_mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)));
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm512_set1_ps(1.0 / 720.0);
        for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        // n ∈ [−126, 0] here, so the biased exponent is a normal one.
        let bits = _mm512_slli_epi32::<23>(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)));
        _mm512_maskz_mul_ps(keep, p, _mm512_castsi512_ps(bits))
    }

    /// One row of [`super::silu_mul`]: `out = silu(gate)·up`.
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn silu_mul(gate: &[f32], up: &[f32], out: &mut [f32]) {
        let n = out.len().min(gate.len()).min(up.len());
        let one = _mm512_set1_ps(1.0);
        let mut i = 0;
        while i < n {
            let mask: __mmask16 = if n - i >= 16 { 0xffff } else { ((1u32 << (n - i)) - 1) as __mmask16 };
            let g = _mm512_maskz_loadu_ps(mask, gate.as_ptr().add(i));
            let u = _mm512_maskz_loadu_ps(mask, up.as_ptr().add(i));
            // e = e^(−|g|); σ(g) = 1/(1+e) for g ≥ 0, e/(1+e) below.
            let e = exp_nonpositive(_mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(g), _mm512_set1_epi32(i32::MIN))));
            let negative = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(g, _mm512_setzero_ps());
            let numerator = _mm512_mask_blend_ps(negative, one, e);
            let sigmoid = _mm512_div_ps(numerator, _mm512_add_ps(one, e));
            _mm512_mask_storeu_ps(out.as_mut_ptr().add(i), mask, _mm512_mul_ps(_mm512_mul_ps(g, sigmoid), u));
            i += 16;
        }
    }

    /// [`super::row_max_and_sum`].
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn row_max_and_sum(row: &[f32]) -> (f32, f64) {
        let (chunks, rest) = (row.chunks_exact(16), row.len() % 16);
        let tail = &row[row.len() - rest..];
        let tail_mask: __mmask16 = ((1u32 << rest) - 1) as __mmask16;
        let minus_infinity = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut maxima = minus_infinity;
        for chunk in chunks.clone() {
            maxima = _mm512_max_ps(maxima, _mm512_loadu_ps(chunk.as_ptr()));
        }
        maxima = _mm512_max_ps(maxima, _mm512_mask_loadu_ps(minus_infinity, tail_mask, tail.as_ptr()));
        let max = _mm512_reduce_max_ps(maxima);
        if !max.is_finite() {
            return (max, 0.0);
        }
        let shift = _mm512_set1_ps(max);
        let mut total = 0f64;
        // f32 lanes over 512 values at a time, then f64.
        for block in row.chunks(512) {
            let mut lanes = _mm512_setzero_ps();
            let mut parts = block.chunks_exact(16);
            for part in &mut parts {
                lanes = _mm512_add_ps(lanes, exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(part.as_ptr()), shift)));
            }
            let rest = parts.remainder();
            let mask: __mmask16 = ((1u32 << rest.len()) - 1) as __mmask16;
            let x = _mm512_mask_loadu_ps(minus_infinity, mask, rest.as_ptr());
            lanes = _mm512_add_ps(lanes, exp_nonpositive(_mm512_sub_ps(x, shift)));
            total += f64::from(_mm512_reduce_add_ps(lanes));
        }
        (max, total)
    }
}

/// Log-probabilities of `targets[i]` under row `i` of a contiguous
/// `[rows × width]` logits buffer.
pub fn target_logprobs(logits: &[f32], width: usize, targets: &[u32]) -> Vec<f32> {
    logits
        .chunks_exact(width)
        .zip(targets)
        .map(|(row, &target)| {
            let (max, log_sum) = row_logsumexp(row);
            row[target as usize] - max - log_sum
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silu_mul_matches_the_formula() {
        for width in [1, 15, 16, 17, 100] {
            let rows = 5;
            let gate_up: Vec<f32> = (0..rows * 2 * width).map(|i| ((i * 7919) % 4001) as f32 / 40.0 - 50.0).collect();
            let mut out = vec![f32::NAN; rows * width];
            silu_mul(&gate_up, width, &mut out);
            for r in 0..rows {
                for i in 0..width {
                    let (g, u) = (f64::from(gate_up[r * 2 * width + i]), f64::from(gate_up[r * 2 * width + width + i]));
                    let want = g / (1.0 + (-g).exp()) * u;
                    let got = f64::from(out[r * width + i]);
                    assert!((got - want).abs() <= 1e-6 * want.abs().max(1.0), "width {width} [{r}][{i}]: {got} vs {want}");
                    assert!((f64::from(silu(g as f32)) * u - want).abs() <= 1e-6 * want.abs().max(1.0));
                }
            }
        }
    }

    #[test]
    fn exp_is_accurate_on_its_domain() {
        let mut worst = 0f64;
        let mut x = 0f32;
        while x > -87.0 {
            let exact = f64::from(x).exp();
            let relative = ((f64::from(exp_nonpositive(x)) - exact) / exact).abs();
            worst = worst.max(relative);
            x -= 0.001_37;
        }
        assert!(worst < 3e-7, "worst relative error {worst:e}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-1000.0), 0.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn target_logprobs_match_a_plain_log_softmax() {
        let width = 1000;
        let logits: Vec<f32> = (0..3 * width).map(|i| ((i * 7919) % 1013) as f32 / 37.0 - 13.0).collect();
        let targets = [5u32, 999, 0];
        let got = target_logprobs(&logits, width, &targets);
        for (i, row) in logits.chunks(width).enumerate() {
            let max = row.iter().copied().fold(f64::NEG_INFINITY, |a, b| a.max(f64::from(b)));
            let lse = max + row.iter().map(|&x| (f64::from(x) - max).exp()).sum::<f64>().ln();
            let want = f64::from(row[targets[i] as usize]) - lse;
            assert!((f64::from(got[i]) - want).abs() < 1e-5, "{} vs {want}", got[i]);
        }
    }
}
