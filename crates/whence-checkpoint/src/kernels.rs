//! CPU kernels for the two places where candle's generic ops do needless
//! work when scoring:
//!
//! - [`row_logsumexp`]: the output head needs, per position, only the
//!   log-sum-exp of its logits (and the target's logit), not a
//!   `[rows × vocabulary]` log-softmax: one read-only pass per row;
//! - [`CausalSoftmax`]: attention scores are softmaxed in place with each
//!   row's causal (and sliding-window) limit, without building a mask tensor
//!   or exponentiating masked entries.
//!
//! Both use [`exp_nonpositive`], a branch-free `exp` for `x ≤ 0` that the
//! compiler vectorises (relative error below 3e-7, about 2 ulp). Other devices use the
//! generic candle path.

use candle_core::{CpuStorage, Layout, Result, Shape};

/// `e^x` for `x ≤ 0` (after subtracting a row maximum), 0 below −87.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let keep = f32::from(u8::from(x >= -87.0));
    let x = x.max(-87.0);
    let n = (x * LOG2E).round();
    let r = x - n * LN2_HI - n * LN2_LO;
    // e^r on |r| ≤ ln2/2: degree-6 Taylor polynomial (Horner).
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let bits = ((n as i32 + 127).max(0) as u32) << 23;
    p * f32::from_bits(bits) * keep
}

/// `max` and `ln Σ e^(x − max)` of `row`.
pub fn row_logsumexp(row: &[f32]) -> (f32, f32) {
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
    (max, total.ln() as f32)
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

/// In-place softmax of attention scores laid out `[groups, rows, keys]`
/// where row `i` (query `first_query + i`) sees keys `key_start + j` with
/// `query − window < key ≤ query`; invisible entries become 0.
pub struct CausalSoftmax {
    pub rows: usize,
    pub keys: usize,
    pub first_query: usize,
    pub key_start: usize,
    pub window: Option<usize>,
}

impl CausalSoftmax {
    fn visible(&self, row: usize) -> (usize, usize) {
        let query = self.first_query + row;
        let end = (query + 1).saturating_sub(self.key_start).min(self.keys);
        let start = match self.window {
            Some(w) => (query + 1).saturating_sub(w).saturating_sub(self.key_start).min(end),
            None => 0,
        };
        (start, end)
    }

    fn apply(&self, scores: &mut [f32]) {
        for (index, row) in scores.chunks_exact_mut(self.keys).enumerate() {
            let (start, end) = self.visible(index % self.rows);
            let visible = &mut row[start..end];
            let max = visible.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for x in visible.iter_mut() {
                *x = exp_nonpositive(*x - max);
                sum += *x;
            }
            let scale = 1.0 / sum;
            for x in visible.iter_mut() {
                *x *= scale;
            }
            row[..start].fill(0.0);
            row[end..].fill(0.0);
        }
    }
}

impl candle_core::InplaceOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "whence-causal-softmax"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let CpuStorage::F32(values) = storage else {
            candle_core::bail!("causal softmax expects f32 scores");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("causal softmax expects contiguous scores");
        };
        self.apply(&mut values[start..end]);
        Ok(())
    }
}

/// Shape-preserving marker so the op can be named in errors.
pub fn expect_shape(shape: &Shape, groups: usize, rows: usize, keys: usize) -> Result<()> {
    if shape.elem_count() != groups * rows * keys {
        candle_core::bail!("attention scores of shape {shape:?} are not {groups} × {rows} × {keys}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn causal_softmax_sees_only_visible_keys() {
        // 2 rows (queries 3 and 4), keys 2..6 (4 keys), window 2.
        let op = CausalSoftmax { rows: 2, keys: 4, first_query: 3, key_start: 2, window: Some(2) };
        let mut scores = vec![1.0f32; 8];
        op.apply(&mut scores);
        // Query 3 sees keys 2 and 3; query 4 sees keys 3 and 4.
        assert_eq!(scores, vec![0.5, 0.5, 0.0, 0.0, 0.0, 0.5, 0.5, 0.0]);
        let op = CausalSoftmax { rows: 1, keys: 3, first_query: 0, key_start: 0, window: None };
        let mut scores = vec![5.0f32, -1.0, 7.0];
        op.apply(&mut scores);
        assert_eq!(scores, vec![1.0, 0.0, 0.0]);
    }
}
