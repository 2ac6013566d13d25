//! Fused causal attention on the CPU, flash-attention style: the scores of
//! a block of queries are computed one tile of keys at a time, softmaxed
//! online (a running maximum and sum per query, f32) and multiplied into the
//! values while the tile is still in cache, so nothing larger than one
//! `[4 × TILE]` block of scores ever exists.
//!
//! A work item is one block of [`TILE`] queries and one key/value head: the
//! `heads / kv_heads` query heads that share that KV head are processed
//! together, so each key and value tile is loaded once for all of them.
//! Items run on rayon's global pool (the threads candle's matmul uses),
//! largest (latest) blocks first. Keys are visible to query `q` when
//! `q − window < key ≤ q` (`window` only for sliding-window layers) and,
//! when several records are packed into one sequence
//! ([`causal_attention_packed`]), when the key belongs to `q`'s own record.
//!
//! With AVX-512 the tile products and the exponentials use 512-bit
//! intrinsics; elsewhere the same algorithm runs as plain loops that the
//! compiler vectorises (compiled for AVX2 and FMA too, chosen at run time).
//! Each is checked against a direct implementation in the tests below.

use rayon::prelude::*;

use crate::kernels::exp_nonpositive;
use crate::parallel::SharedOut;

/// Queries per block and keys per tile.
pub const TILE: usize = 64;
/// Query rows computed together by the micro-kernels.
const ROWS: usize = 4;

/// The shape of one attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionShape {
    /// Sequence length (queries = keys).
    pub tokens: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Sliding window: query `q` sees keys `q − window < key ≤ q`.
    pub window: Option<usize>,
}

/// Bad arguments to [`causal_attention`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AttentionError {
    #[error("attention needs at least one head and head_dim > 0 (heads {heads}, kv heads {kv_heads}, head_dim {head_dim})")]
    Empty { heads: usize, kv_heads: usize, head_dim: usize },
    #[error("{heads} query heads cannot share {kv_heads} key/value heads evenly")]
    Grouping { heads: usize, kv_heads: usize },
    #[error("a sliding window of 0 keys leaves queries nothing to attend to")]
    ZeroWindow,
    #[error("attention {what} has {got} values, expected {expected}")]
    Length { what: &'static str, got: usize, expected: usize },
    #[error("{starts} record starts are not increasing from 0 within {tokens} tokens")]
    Records { starts: usize, tokens: usize },
}

impl AttentionShape {
    fn check(&self, q: usize, k: usize, v: usize, out: usize) -> Result<(), AttentionError> {
        let &AttentionShape { tokens, heads, kv_heads, head_dim, window } = self;
        if heads == 0 || kv_heads == 0 || head_dim == 0 {
            return Err(AttentionError::Empty { heads, kv_heads, head_dim });
        }
        if !heads.is_multiple_of(kv_heads) {
            return Err(AttentionError::Grouping { heads, kv_heads });
        }
        if window == Some(0) {
            return Err(AttentionError::ZeroWindow);
        }
        let q_len = tokens * heads * head_dim;
        let kv_len = tokens * kv_heads * head_dim;
        for (what, got, expected) in [("queries", q, q_len), ("keys", k, kv_len), ("values", v, kv_len), ("output", out, q_len)] {
            if got != expected {
                return Err(AttentionError::Length { what, got, expected });
            }
        }
        Ok(())
    }
}

/// `softmax(q·kᵀ·scale + causal mask)·v` for every query of every head.
///
/// `q` is `[heads, tokens, head_dim]`, `k` and `v` are `[kv_heads, tokens,
/// head_dim]` (query head `h` uses KV head `h / (heads / kv_heads)`, as
/// transformers' `repeat_kv`), and `out` receives `[tokens, heads,
/// head_dim]`, the layout the output projection reads.
pub fn causal_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    shape: &AttentionShape,
    scale: f32,
    out: &mut [f32],
) -> Result<(), AttentionError> {
    causal_attention_packed(q, k, v, shape, &[], scale, out)
}

/// [`causal_attention`] over several records packed one after another into
/// the `tokens` of `shape`: record `i` starts at token `starts[i]`
/// (increasing from 0; empty means one record), and a query sees only the
/// keys of its own record, as if each record ran alone.
pub fn causal_attention_packed(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    shape: &AttentionShape,
    starts: &[usize],
    scale: f32,
    out: &mut [f32],
) -> Result<(), AttentionError> {
    shape.check(q.len(), k.len(), v.len(), out.len())?;
    let first_keys = first_keys(starts, shape.tokens)?;
    if shape.tokens == 0 {
        return Ok(());
    }
    run(q, k, v, shape, &first_keys, scale, out, available_kernels()[0]);
    Ok(())
}

/// Per token, the first token of its record (empty for a single record).
fn first_keys(starts: &[usize], tokens: usize) -> Result<Vec<u32>, AttentionError> {
    if starts.len() <= 1 && starts.first().is_none_or(|&s| s == 0) {
        return Ok(Vec::new());
    }
    let ordered = starts.first() == Some(&0) && starts.windows(2).all(|w| w[0] < w[1]) && starts.last().is_some_and(|&s| s < tokens);
    if !ordered {
        return Err(AttentionError::Records { starts: starts.len(), tokens });
    }
    let mut first = vec![0u32; tokens];
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(tokens);
        first[start..end].fill(start as u32);
    }
    Ok(first)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    /// 512-bit intrinsics.
    Avx512,
    /// The portable loops compiled for AVX2 and FMA.
    Avx2,
    /// The portable loops for the build's target.
    Portable,
}

/// The kernels this CPU can run, fastest first.
fn available_kernels() -> Vec<Kernel> {
    let mut kernels = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            kernels.push(Kernel::Avx512);
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            kernels.push(Kernel::Avx2);
        }
    }
    kernels.push(Kernel::Portable);
    kernels
}

/// Keys and values repacked for the tiles: keys transposed per tile
/// (`[kv_heads, tiles, head_dim, TILE]`, so a tile is one contiguous run with
/// the keys along the vector lanes) and values padded (`[kv_heads, tiles ·
/// TILE, padded_dim]`, `padded_dim` a multiple of 16); padding is zero.
struct Packed {
    keys: Vec<f32>,
    values: Vec<f32>,
    tiles: usize,
    padded_dim: usize,
}

fn pack(k: &[f32], v: &[f32], shape: &AttentionShape) -> Packed {
    let (t, hd) = (shape.tokens, shape.head_dim);
    let tiles = t.div_ceil(TILE);
    let padded_dim = hd.next_multiple_of(16);
    let mut keys = vec![0f32; shape.kv_heads * tiles * hd * TILE];
    let mut values = vec![0f32; shape.kv_heads * tiles * TILE * padded_dim];
    keys.par_chunks_mut(tiles * hd * TILE).zip(values.par_chunks_mut(tiles * TILE * padded_dim)).enumerate().for_each(
        |(j, (keys, values))| {
            let k = &k[j * t * hd..(j + 1) * t * hd];
            let v = &v[j * t * hd..(j + 1) * t * hd];
            for (n, (k_row, v_row)) in k.chunks_exact(hd).zip(v.chunks_exact(hd)).enumerate() {
                let (tile, lane) = (n / TILE, n % TILE);
                let base = tile * hd * TILE + lane;
                for (d, &x) in k_row.iter().enumerate() {
                    keys[base + d * TILE] = x;
                }
                values[n * padded_dim..n * padded_dim + hd].copy_from_slice(v_row);
            }
        },
    );
    Packed { keys, values, tiles, padded_dim }
}

#[allow(clippy::too_many_arguments)]
fn run(q: &[f32], k: &[f32], v: &[f32], shape: &AttentionShape, first_keys: &[u32], scale: f32, out: &mut [f32], kernel: Kernel) {
    let packed = pack(k, v, shape);
    let blocks = shape.tokens.div_ceil(TILE);
    let shared = SharedOut(out.as_mut_ptr());
    let shared = &shared;
    let packed = &packed;
    (0..blocks * shape.kv_heads).into_par_iter().for_each(move |item| {
        // Latest blocks (most keys) first, so the short ones fill the gaps at the end.
        let block = blocks - 1 - item / shape.kv_heads;
        let kv_head = item % shape.kv_heads;
        let mut item_out = Item::new(q, packed, shape, first_keys, scale, block, kv_head);
        item_out.compute(kernel);
        // SAFETY: the cells written are those of queries of `block` and
        // heads of `kv_head`, which no other item writes; `out` has
        // `tokens · heads · head_dim` values (checked) and outlives the loop.
        unsafe { item_out.write(shared.0) };
    });
}

/// One (query block, KV head) work item and its accumulators.
struct Item<'a> {
    q: &'a [f32],
    packed: &'a Packed,
    shape: &'a AttentionShape,
    /// Per query, the first key of its record (empty: all 0).
    first_keys: &'a [u32],
    scale: f32,
    first_query: usize,
    queries: usize,
    kv_head: usize,
    /// Rows (group head × query), rounded up to a multiple of [`ROWS`].
    rows: usize,
    /// `[rows, padded_dim]` unnormalised outputs.
    acc: Vec<f32>,
    max: Vec<f32>,
    sum: Vec<f32>,
}

impl<'a> Item<'a> {
    fn new(
        q: &'a [f32],
        packed: &'a Packed,
        shape: &'a AttentionShape,
        first_keys: &'a [u32],
        scale: f32,
        block: usize,
        kv_head: usize,
    ) -> Self {
        let first_query = block * TILE;
        let queries = TILE.min(shape.tokens - first_query);
        let group = shape.heads / shape.kv_heads;
        let rows = (group * queries).next_multiple_of(ROWS);
        Item {
            q,
            packed,
            shape,
            first_keys,
            scale,
            first_query,
            queries,
            kv_head,
            rows,
            acc: vec![0f32; rows * packed.padded_dim],
            max: vec![f32::NEG_INFINITY; rows],
            sum: vec![0f32; rows],
        }
    }

    /// Query index and query row (`head_dim` values) of item row `r`;
    /// padding rows repeat the last real row.
    fn row(&self, r: usize) -> (usize, &'a [f32]) {
        let group = self.shape.heads / self.shape.kv_heads;
        let r = r.min(group * self.queries - 1);
        let (g, i) = (r / self.queries, r % self.queries);
        let head = self.kv_head * group + g;
        let query = self.first_query + i;
        let hd = self.shape.head_dim;
        let start = (head * self.shape.tokens + query) * hd;
        (query, &self.q[start..start + hd])
    }

    /// The visible keys of `query` within the tile starting at key `tile_start`,
    /// as lanes `lo..=hi`; `None` when there are none.
    fn visible(&self, query: usize, tile_start: usize) -> Option<(usize, usize)> {
        let first = self.first_key(query).max(tile_start);
        let last = query.min(tile_start + TILE - 1);
        (first <= last).then(|| (first - tile_start, last - tile_start))
    }

    fn tile_range(&self) -> std::ops::RangeInclusive<usize> {
        // First keys never decrease with the query.
        self.first_key(self.first_query) / TILE..=(self.first_query + self.queries - 1) / TILE
    }

    /// The first key `query` sees: its window's and its record's.
    fn first_key(&self, query: usize) -> usize {
        let window = self.shape.window.map_or(0, |w| (query + 1).saturating_sub(w));
        let record = self.first_keys.get(query).map_or(0, |&k| k as usize);
        window.max(record)
    }

    fn compute(&mut self, kernel: Kernel) {
        match kernel {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Kernel::Avx512 is chosen only when the CPU has AVX-512F.
            Kernel::Avx512 => unsafe { avx512::compute(self) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Kernel::Avx2 is chosen only when the CPU has AVX2 and FMA.
            Kernel::Avx2 => unsafe { self.compute_avx2() },
            _ => self.compute_portable(),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn compute_avx2(&mut self) {
        self.compute_portable();
    }

    #[inline(always)]
    fn compute_portable(&mut self) {
        let (hd, pd) = (self.shape.head_dim, self.packed.padded_dim);
        let tiles = self.packed.tiles;
        for tile in self.tile_range() {
            let tile_start = tile * TILE;
            let keys_base = (self.kv_head * tiles + tile) * hd * TILE;
            let keys = &self.packed.keys[keys_base..keys_base + hd * TILE];
            let values_base = (self.kv_head * tiles + tile) * TILE * pd;
            let values = &self.packed.values[values_base..values_base + TILE * pd];
            for r0 in (0..self.rows).step_by(ROWS) {
                let mut probabilities = [[0f32; TILE]; ROWS];
                let mut rescale = [1f32; ROWS];
                for (r, (p, alpha)) in probabilities.iter_mut().zip(&mut rescale).enumerate() {
                    let (query, q_row) = self.row(r0 + r);
                    let Some((lo, hi)) = self.visible(query, tile_start) else { continue };
                    let mut scores = [0f32; TILE];
                    for (d, &x) in q_row.iter().enumerate() {
                        for (s, &key) in scores.iter_mut().zip(&keys[d * TILE..(d + 1) * TILE]) {
                            *s += x * key;
                        }
                    }
                    let visible = &scores[lo..=hi];
                    let tile_max = visible.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s * self.scale));
                    let old = self.max[r0 + r];
                    let new = old.max(tile_max);
                    *alpha = exp_nonpositive(old - new);
                    let mut total = 0f32;
                    for (p, &s) in p[lo..=hi].iter_mut().zip(visible) {
                        *p = exp_nonpositive(s * self.scale - new);
                        total += *p;
                    }
                    self.max[r0 + r] = new;
                    self.sum[r0 + r] = self.sum[r0 + r] * *alpha + total;
                }
                for (r, (p, &alpha)) in probabilities.iter().zip(&rescale).enumerate() {
                    let acc = &mut self.acc[(r0 + r) * pd..(r0 + r + 1) * pd];
                    acc.iter_mut().for_each(|a| *a *= alpha);
                    for (&p, value) in p.iter().zip(values.chunks_exact(pd)) {
                        for (a, &x) in acc.iter_mut().zip(value) {
                            *a += p * x;
                        }
                    }
                }
            }
        }
    }

    /// Writes the normalised outputs of the real rows into `out` (`[tokens, heads, head_dim]`).
    ///
    /// # Safety
    /// `out` must point to `tokens · heads · head_dim` writable values that
    /// no one else reads or writes at the cells of this item.
    unsafe fn write(&self, out: *mut f32) {
        let (hd, pd) = (self.shape.head_dim, self.packed.padded_dim);
        let group = self.shape.heads / self.shape.kv_heads;
        for r in 0..group * self.queries {
            let (g, i) = (r / self.queries, r % self.queries);
            let head = self.kv_head * group + g;
            let query = self.first_query + i;
            let inverse = 1.0 / self.sum[r];
            let source = &self.acc[r * pd..r * pd + hd];
            // SAFETY: in bounds (query < tokens, head < heads) and exclusive to this item (caller).
            let target = unsafe { std::slice::from_raw_parts_mut(out.add((query * self.shape.heads + head) * hd), hd) };
            for (t, &a) in target.iter_mut().zip(source) {
                *t = a * inverse;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Item, ROWS, TILE};
    use crate::kernels::avx512::exp_nonpositive;

    const VECTORS: usize = TILE / 16;

    /// Lanes `lo..=hi` of a tile as four 16-lane masks.
    fn lane_masks(lo: usize, hi: usize) -> [__mmask16; VECTORS] {
        let upto = if hi + 1 >= 64 { u64::MAX } else { (1u64 << (hi + 1)) - 1 };
        let bits = upto & !((1u64 << lo) - 1);
        std::array::from_fn(|c| (bits >> (16 * c)) as __mmask16)
    }

    /// `out[r][·] = alpha[r]·out[r][·] + Σ_n p[r][n]·values[n][·]` for `N` vectors
    /// of 16 columns from `column`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::needless_range_loop)]
    unsafe fn accumulate<const N: usize>(
        acc: *mut f32,
        padded_dim: usize,
        column: usize,
        alpha: &[f32; ROWS],
        p: &[[f32; TILE]; ROWS],
        values: *const f32,
        keys: usize,
    ) {
        let mut sums = [[_mm512_setzero_ps(); N]; ROWS];
        for (r, row) in sums.iter_mut().enumerate() {
            let a = _mm512_set1_ps(alpha[r]);
            for (c, s) in row.iter_mut().enumerate() {
                *s = _mm512_mul_ps(a, _mm512_loadu_ps(acc.add(r * padded_dim + column + 16 * c)));
            }
        }
        for n in 0..keys {
            // `n` indexes both the value rows (through a pointer) and each row of `p`.
            let value = values.add(n * padded_dim + column);
            let v: [__m512; N] = std::array::from_fn(|c| _mm512_loadu_ps(value.add(16 * c)));
            for (r, row) in sums.iter_mut().enumerate() {
                let weight = _mm512_set1_ps(p[r][n]);
                for (s, &v) in row.iter_mut().zip(&v) {
                    *s = _mm512_fmadd_ps(weight, v, *s);
                }
            }
        }
        for (r, row) in sums.iter().enumerate() {
            for (c, &s) in row.iter().enumerate() {
                _mm512_storeu_ps(acc.add(r * padded_dim + column + 16 * c), s);
            }
        }
    }

    /// [`Item::compute_portable`] with 512-bit vectors.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn compute(item: &mut Item) {
        let (hd, pd) = (item.shape.head_dim, item.packed.padded_dim);
        let tiles = item.packed.tiles;
        let scale = _mm512_set1_ps(item.scale);
        for tile in item.tile_range() {
            let tile_start = tile * TILE;
            let keys = item.packed.keys.as_ptr().add((item.kv_head * tiles + tile) * hd * TILE);
            let values = item.packed.values.as_ptr().add((item.kv_head * tiles + tile) * TILE * pd);
            // Keys of this tile that exist (the rest is zero padding).
            let real_keys = TILE.min(item.shape.tokens - tile_start);
            for r0 in (0..item.rows).step_by(ROWS) {
                let rows: [(usize, &[f32]); ROWS] = std::array::from_fn(|r| item.row(r0 + r));
                // Scores of ROWS queries × TILE keys, in registers.
                let mut scores = [[_mm512_setzero_ps(); VECTORS]; ROWS];
                for d in 0..hd {
                    let key_row = keys.add(d * TILE);
                    let k: [__m512; VECTORS] = std::array::from_fn(|c| _mm512_loadu_ps(key_row.add(16 * c)));
                    for (r, s) in scores.iter_mut().enumerate() {
                        let x = _mm512_set1_ps(*rows[r].1.get_unchecked(d));
                        for (s, &k) in s.iter_mut().zip(&k) {
                            *s = _mm512_fmadd_ps(x, k, *s);
                        }
                    }
                }
                let mut p = [[0f32; TILE]; ROWS];
                let mut alpha = [1f32; ROWS];
                for r in 0..ROWS {
                    let Some((lo, hi)) = item.visible(rows[r].0, tile_start) else { continue };
                    let masks = lane_masks(lo, hi);
                    let minus_infinity = _mm512_set1_ps(f32::NEG_INFINITY);
                    let s: [__m512; VECTORS] =
                        std::array::from_fn(|c| _mm512_mask_blend_ps(masks[c], minus_infinity, _mm512_mul_ps(scores[r][c], scale)));
                    let tile_max = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(s[0], s[1]), _mm512_max_ps(s[2], s[3])));
                    let old = item.max[r0 + r];
                    let new = old.max(tile_max);
                    alpha[r] = crate::kernels::exp_nonpositive(old - new);
                    let shift = _mm512_set1_ps(new);
                    let mut total = _mm512_setzero_ps();
                    for (s, p) in s.iter().zip(p[r].chunks_exact_mut(16)) {
                        let e = exp_nonpositive(_mm512_sub_ps(*s, shift));
                        total = _mm512_add_ps(total, e);
                        _mm512_storeu_ps(p.as_mut_ptr(), e);
                    }
                    item.max[r0 + r] = new;
                    item.sum[r0 + r] = item.sum[r0 + r] * alpha[r] + _mm512_reduce_add_ps(total);
                }
                let acc = item.acc.as_mut_ptr().add(r0 * pd);
                let mut column = 0;
                while column < pd {
                    match (pd - column) / 16 {
                        1 => accumulate::<1>(acc, pd, column, &alpha, &p, values, real_keys),
                        2 => accumulate::<2>(acc, pd, column, &alpha, &p, values, real_keys),
                        3 => accumulate::<3>(acc, pd, column, &alpha, &p, values, real_keys),
                        _ => accumulate::<4>(acc, pd, column, &alpha, &p, values, real_keys),
                    }
                    column += 64;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random numbers (xorshift64*).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        /// Uniform in [−1, 1).
        fn unit(&mut self) -> f32 {
            (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Direct attention in f64, query by query.
    fn reference(q: &[f32], k: &[f32], v: &[f32], shape: &AttentionShape, starts: &[usize], scale: f32) -> Vec<f32> {
        let AttentionShape { tokens: t, heads, kv_heads, head_dim: hd, window } = *shape;
        let group = heads / kv_heads;
        let mut out = vec![0f32; t * heads * hd];
        for h in 0..heads {
            let j = h / group;
            for query in 0..t {
                let q_row = &q[(h * t + query) * hd..][..hd];
                let record = starts.iter().copied().filter(|&s| s <= query).max().unwrap_or(0);
                let first = window.map_or(0, |w| (query + 1).saturating_sub(w)).max(record);
                let scores: Vec<f64> = (first..=query)
                    .map(|key| {
                        let k_row = &k[(j * t + key) * hd..][..hd];
                        q_row.iter().zip(k_row).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum::<f64>() * f64::from(scale)
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = weights.iter().sum();
                for d in 0..hd {
                    let value: f64 = (first..=query).zip(&weights).map(|(key, w)| w * f64::from(v[(j * t + key) * hd + d])).sum();
                    out[(query * heads + h) * hd + d] = (value / total) as f32;
                }
            }
        }
        out
    }

    fn random(rng: &mut Rng, n: usize, amplitude: f32) -> Vec<f32> {
        (0..n).map(|_| rng.unit() * amplitude).collect()
    }

    /// Max |difference| of both kernels from the reference on random inputs.
    fn worst_difference(shape: AttentionShape, amplitude: f32, seed: u64) -> f32 {
        worst_difference_packed(shape, &[], amplitude, seed)
    }

    /// [`worst_difference`] with records packed at `starts`.
    fn worst_difference_packed(shape: AttentionShape, starts: &[usize], amplitude: f32, seed: u64) -> f32 {
        let mut rng = Rng(seed | 1);
        let (t, hd) = (shape.tokens, shape.head_dim);
        let q = random(&mut rng, t * shape.heads * hd, amplitude);
        let k = random(&mut rng, t * shape.kv_heads * hd, amplitude);
        let v = random(&mut rng, t * shape.kv_heads * hd, 1.0);
        let scale = 1.0 / (hd as f32).sqrt();
        let want = reference(&q, &k, &v, &shape, starts, scale);
        let first_keys = first_keys(starts, t).unwrap();
        let mut worst = 0f32;
        for kernel in available_kernels() {
            let mut got = vec![f32::NAN; want.len()];
            run(&q, &k, &v, &shape, &first_keys, scale, &mut got, kernel);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let difference = (g - w).abs();
                assert!(difference.is_finite(), "{kernel:?} {shape:?}: value {i} is {g}, want {w}");
                worst = worst.max(difference);
            }
        }
        worst
    }

    fn shape(tokens: usize, heads: usize, kv_heads: usize, head_dim: usize, window: Option<usize>) -> AttentionShape {
        AttentionShape { tokens, heads, kv_heads, head_dim, window }
    }

    #[test]
    fn matches_direct_attention_causal_gqa_and_windows() {
        let mut cases = Vec::new();
        for &tokens in &[1, 2, 63, 64, 65, 130] {
            for &(heads, kv_heads) in &[(2, 2), (4, 2), (14, 2), (7, 1)] {
                for &window in &[None, Some(1), Some(3), Some(64), Some(70)] {
                    cases.push(shape(tokens, heads, kv_heads, 64, window));
                }
            }
        }
        for (i, case) in cases.into_iter().enumerate() {
            let worst = worst_difference(case, 1.0, 17 + i as u64);
            assert!(worst < 2e-6, "{case:?}: max difference {worst:e}");
        }
    }

    #[test]
    fn head_dims_that_are_not_multiples_of_the_vector_width() {
        for (i, &head_dim) in [1, 8, 24, 32, 48, 80, 96, 128, 136].iter().enumerate() {
            for window in [None, Some(17)] {
                let case = shape(77, 6, 3, head_dim, window);
                let worst = worst_difference(case, 1.0, 1000 + i as u64);
                assert!(worst < 2e-6, "{case:?}: max difference {worst:e}");
            }
        }
    }

    #[test]
    fn peaked_scores_rescale_the_running_sums() {
        // Large scores make each tile's maximum jump: the online rescaling must be exact.
        for (i, tokens) in [70, 300].into_iter().enumerate() {
            let worst = worst_difference(shape(tokens, 4, 2, 32, None), 6.0, 99 + i as u64);
            assert!(worst < 1e-5, "max difference {worst:e}");
        }
    }

    #[test]
    fn random_shapes() {
        // Property-style: random lengths, groupings, head dims and windows.
        let mut rng = Rng(0x5eed);
        for case in 0..30 {
            let kv_heads = 1 + rng.below(3);
            let group = [1, 2, 3, 7][rng.below(4)];
            let head_dim = [4, 16, 40, 64][rng.below(4)];
            let tokens = 1 + rng.below(260);
            let window = if rng.below(2) == 0 { None } else { Some(1 + rng.below(tokens + 10)) };
            let s = shape(tokens, kv_heads * group, kv_heads, head_dim, window);
            let worst = worst_difference(s, 2.0, 7 + case);
            assert!(worst < 5e-6, "{s:?}: max difference {worst:e}");
        }
    }

    #[test]
    fn packed_records_see_only_their_own_keys() {
        // Records shorter and longer than a tile, starting inside tiles, with windows.
        let mut rng = Rng(0xbeef);
        for case in 0..20 {
            let tokens = 2 + rng.below(300);
            let mut starts = vec![0];
            while let Some(&last) = starts.last() {
                let next = last + 1 + rng.below(90);
                if next >= tokens {
                    break;
                }
                starts.push(next);
            }
            let window = if rng.below(3) == 0 { Some(1 + rng.below(80)) } else { None };
            let s = shape(tokens, 4, 2, [16, 40][rng.below(2)], window);
            let worst = worst_difference_packed(s, &starts, 2.0, 100 + case);
            assert!(worst < 5e-6, "{s:?} starts {starts:?}: max difference {worst:e}");
        }
        let data = vec![0f32; 4 * 2 * 2];
        let mut out = vec![0f32; 4 * 2 * 2];
        for bad in [&[1usize][..], &[0, 0], &[0, 4], &[0, 3, 2]] {
            let err = causal_attention_packed(&data, &data, &data, &shape(4, 2, 2, 2, None), bad, 1.0, &mut out).unwrap_err();
            assert!(matches!(err, AttentionError::Records { .. }), "{bad:?}");
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let mut out = vec![0f32; 8];
        let data = vec![0f32; 8];
        let err = |s: AttentionShape, q: &[f32], out: &mut [f32]| causal_attention(q, &data, &data, &s, 1.0, out).unwrap_err();
        assert!(matches!(err(shape(2, 3, 2, 2, None), &data, &mut out), AttentionError::Grouping { .. }));
        assert!(matches!(err(shape(2, 2, 2, 0, None), &data, &mut out), AttentionError::Empty { .. }));
        assert!(matches!(err(shape(2, 2, 2, 2, Some(0)), &data, &mut out), AttentionError::ZeroWindow));
        assert!(matches!(err(shape(2, 2, 2, 2, None), &data[..7], &mut out), AttentionError::Length { what: "queries", .. }));
        assert!(matches!(err(shape(2, 4, 2, 2, None), &[0f32; 16], &mut out), AttentionError::Length { what: "output", .. }));
        // Zero tokens: nothing to do.
        causal_attention(&[], &[], &[], &shape(0, 2, 1, 4, None), 1.0, &mut []).unwrap();
    }
}
