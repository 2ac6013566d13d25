//! Decoding with a KV cache: several continuations of one prompt, sampled
//! together.
//!
//! The prompt is run once (the same fused, memory-bounded pass as scoring,
//! keeping each layer's keys and values); its cache is then copied to every
//! continuation, and each step runs the active continuations as the rows of
//! one batch: the linear layers see `[B, hidden]` (one weight read serves
//! all B), attention reads each row's own cache (`candle_nn`'s
//! [`KvCache`], preallocated to the prompt plus `max_new_tokens`, so a step
//! appends in place), and the head gives a `[B, vocabulary]` block of
//! logits for the caller to draw from. A continuation that finishes leaves
//! the batch (its rows of the caches are dropped).
//!
//! The scoring path ([`Decoder::token_logprobs`]) stays cache-free; this
//! module only adds. What the cache takes per token is
//! [`Decoder::kv_bytes_per_token`] per continuation.

use candle_core::{DType, Module, Tensor};
use candle_nn::kv_cache::KvCache;

use crate::decoder::{forward_linear, Decoder, Layer};

type Result<T> = candle_core::Result<T>;

/// How continuations are drawn and when they end: the caller's side of
/// [`Decoder::generate`].
pub trait NextToken {
    /// The next token of continuation `sequence`, drawn from its logits
    /// (f32, one per vocabulary entry).
    fn choose(&mut self, sequence: usize, logits: &[f32]) -> u32;
    /// Whether continuation `sequence` ends after `tokens` (its tokens so
    /// far, the one just drawn last): a stop token or a stop string.
    fn finished(&mut self, sequence: usize, tokens: &[u32]) -> bool;
}

/// One continuation: its tokens, each token's log-probability under the
/// model's plain softmax (temperature 1, no top-k/top-p cut), and whether it
/// ended by [`NextToken::finished`] (else it reached `max_new_tokens`).
#[derive(Debug, Clone, PartialEq)]
pub struct Continuation {
    pub tokens: Vec<u32>,
    pub logprobs: Vec<f32>,
    pub stopped: bool,
}

/// What a KV cache may take: 80% of the memory available now
/// (`MemAvailable` of /proc/meminfo), `None` where that cannot be read.
/// `whence generate` and `whence serve` refuse work that would need more.
pub fn kv_cache_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024 / 10 * 8)
}

/// `log_softmax(row)[token]` with an f64 sum.
fn logprob_of(row: &[f32], token: u32) -> f32 {
    let (max, sum) = crate::kernels::row_max_and_sum(row);
    if !max.is_finite() {
        return row[token as usize] - max;
    }
    (f64::from(row[token as usize]) - f64::from(max) - sum.ln()) as f32
}

impl Layer {
    /// One decoding step for `B` continuations at the same position: `x` is
    /// `[B, hidden]`, `cos`/`sin` have `B` rows (all that position's), and
    /// `cache` holds `[B, kv_heads, T, head_dim]` keys and values.
    fn step(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let a = &self.attention;
        let rows = x.dim(0)?;
        let (q, k, v) = a.project(&self.input_norm.forward(x)?, cos, sin)?;
        let group = a.heads / a.kv_heads;
        // [heads, B, hd] → [B, kv_heads, group, hd]; k, v → [B, kv_heads, 1, hd].
        let q = q.transpose(0, 1)?.reshape((rows, a.kv_heads, group, a.head_dim))?;
        let k = k.transpose(0, 1)?.unsqueeze(2)?.contiguous()?;
        let v = v.transpose(0, 1)?.unsqueeze(2)?.contiguous()?;
        let (mut keys, mut values) = cache.append(&k, &v)?;
        let total = keys.dim(2)?;
        if let Some(window) = a.window {
            let start = total.saturating_sub(window);
            keys = keys.narrow(2, start, total - start)?;
            values = values.narrow(2, start, total - start)?;
        }
        let (keys, values) = (keys.contiguous()?, values.contiguous()?);
        let scale = 1.0 / (a.head_dim as f64).sqrt();
        let scores = (q.contiguous()?.matmul(&keys.transpose(2, 3)?)? * scale)?.to_dtype(DType::F32)?;
        let probabilities = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(values.dtype())?;
        let out = probabilities.matmul(&values)?.reshape((rows, a.heads * a.head_dim))?;
        let attended = forward_linear(&a.o, &out)?;
        let x = (x + attended)?;
        &x + self.mlp.forward(&self.post_attention_norm.forward(&x)?)?
    }
}

impl Decoder {
    /// Bytes the KV cache takes per token of one continuation (keys and
    /// values of every layer, in the activation dtype).
    pub fn kv_bytes_per_token(&self) -> usize {
        let per_layer: usize = self.layers.iter().map(|l| 2 * l.attention.kv_heads * l.attention.head_dim).sum();
        per_layer * self.activation_dtype().size_in_bytes()
    }

    /// The head's f32 logits of `hidden`'s rows, `[rows × vocabulary]` row-major.
    fn logits(&self, hidden: &Tensor) -> Result<Vec<f32>> {
        self.head_logits(hidden)?.flatten_all()?.to_vec1::<f32>()
    }

    /// Runs the prompt once, keeping every layer's keys and values
    /// (`[1, kv_heads, P, head_dim]` in caches sized for `capacity`
    /// tokens), and returns the caches and the logits after the prompt.
    fn prefill(&self, prompt: &[u32], capacity: usize) -> Result<(Vec<KvCache>, Vec<f32>)> {
        let t = prompt.len();
        if let Some(&bad) = prompt.iter().find(|&&id| id as usize >= self.vocab_size) {
            candle_core::bail!("token id {bad} is outside the model's vocabulary of {}", self.vocab_size);
        }
        let mut x = self.embed(prompt)?;
        let (cos, sin) = self.rope_rows(&(0..t).collect::<Vec<_>>())?;
        let intermediate = self.layers.first().map_or(1, |l| l.mlp.intermediate);
        let mut caches = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let mut kept = None;
            x = layer.forward(&x, &cos, &sin, intermediate, &[], Some(&mut kept))?;
            let (k, v) = kept.ok_or_else(|| candle_core::Error::Msg("attention kept no keys".into()))?;
            let mut cache = KvCache::new(2, capacity.max(t));
            cache.append(&k.unsqueeze(0)?.contiguous()?, &v.unsqueeze(0)?.contiguous()?)?;
            caches.push(cache);
        }
        let last = self.norm.forward(&x.narrow(0, t - 1, 1)?)?;
        Ok((caches, self.logits(&last)?))
    }

    /// `sequences` continuations of `prompt`, each of at most
    /// `max_new_tokens` tokens, drawn by `next` (see the module docs).
    /// Continuations are returned in order; each token's log-probability is
    /// the plain softmax's of the logits it was drawn from.
    pub fn generate(&self, prompt: &[u32], sequences: usize, max_new_tokens: usize, next: &mut dyn NextToken) -> Result<Vec<Continuation>> {
        let mut out: Vec<Continuation> =
            (0..sequences).map(|_| Continuation { tokens: vec![], logprobs: vec![], stopped: false }).collect();
        if prompt.is_empty() {
            candle_core::bail!("the prompt has no tokens; there is nothing to continue");
        }
        if sequences == 0 || max_new_tokens == 0 {
            return Ok(out);
        }
        let p = prompt.len();
        let (prompt_caches, logits) = self.prefill(prompt, p + max_new_tokens)?;
        let mut active: Vec<usize> = Vec::with_capacity(sequences);
        for (s, continuation) in out.iter_mut().enumerate() {
            let token = next.choose(s, &logits);
            continuation.tokens.push(token);
            continuation.logprobs.push(logprob_of(&logits, token));
            continuation.stopped = next.finished(s, &continuation.tokens);
            if !continuation.stopped && max_new_tokens > 1 {
                active.push(s);
            }
        }
        drop(logits);
        if active.is_empty() {
            return Ok(out);
        }
        // Every continuation starts from a copy of the prompt's cache.
        let mut caches = Vec::with_capacity(prompt_caches.len());
        for cache in &prompt_caches {
            let copy = |t: Option<Tensor>| -> Result<Tensor> {
                let t = t.ok_or_else(|| candle_core::Error::Msg("empty prompt cache".into()))?;
                let mut shape = t.dims().to_vec();
                shape[0] = active.len();
                t.broadcast_as(shape)?.contiguous()
            };
            let (k, v) = (copy(cache.k()?)?, copy(cache.v()?)?);
            let mut batch = KvCache::new(2, p + max_new_tokens);
            batch.append(&k, &v)?;
            caches.push(batch);
        }
        drop(prompt_caches);
        for step in 1..max_new_tokens {
            let rows = active.len();
            let inputs: Vec<u32> = active.iter().map(|&s| *out[s].tokens.last().expect("one token drawn")).collect();
            let mut x = self.embed(&inputs)?;
            // The token fed now sits at position p + step − 1.
            let (cos, sin) = self.rope_rows(&vec![p + step - 1; rows])?;
            for (layer, cache) in self.layers.iter().zip(caches.iter_mut()) {
                x = layer.step(&x, &cos, &sin, cache)?;
            }
            let logits = self.logits(&self.norm.forward(&x)?)?;
            let mut still = Vec::with_capacity(rows);
            for (row, &s) in active.iter().enumerate() {
                let values = &logits[row * self.vocab_size..(row + 1) * self.vocab_size];
                let token = next.choose(s, values);
                let continuation = &mut out[s];
                continuation.tokens.push(token);
                continuation.logprobs.push(logprob_of(values, token));
                continuation.stopped = next.finished(s, &continuation.tokens);
                if !continuation.stopped {
                    still.push(row);
                }
            }
            if still.len() < rows {
                if still.is_empty() {
                    break;
                }
                let keep = Tensor::new(still.iter().map(|&r| r as u32).collect::<Vec<_>>().as_slice(), self.device())?;
                for cache in caches.iter_mut() {
                    let (k, v) = (cache.k()?, cache.v()?);
                    let (Some(k), Some(v)) = (k, v) else { continue };
                    let (k, v) = (k.contiguous()?.index_select(&keep, 0)?, v.contiguous()?.index_select(&keep, 0)?);
                    let mut kept = KvCache::new(2, p + max_new_tokens);
                    kept.append(&k, &v)?;
                    *cache = kept;
                }
                active = still.iter().map(|&r| active[r]).collect();
            }
        }
        Ok(out)
    }
}

/// One prompt of [`Decoder::generate_many`]: its token ids, how many
/// continuations it gets and how long each may grow.
#[derive(Debug, Clone, Copy)]
pub struct PromptJob<'a> {
    pub prompt: &'a [u32],
    pub sequences: usize,
    pub max_new_tokens: usize,
}

/// A continuation in flight in [`Decoder::generate_many`]: where it is, and
/// its own keys and values per layer (`[tokens][kv_heads × head_dim]`, f32).
struct Row {
    job: usize,
    sequence: usize,
    /// Where [`NextToken`] knows it: the job's first sequence plus `sequence`.
    global: usize,
    /// The position of the token it feeds next.
    position: usize,
    limit: usize,
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
}

/// `[kv_heads, T, head_dim]` keys or values as `[T][kv_heads × head_dim]` f32.
fn token_major(t: &Tensor) -> Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.transpose(0, 1)?.contiguous()?.flatten_all()?.to_vec1::<f32>()
}

/// Softmax attention of one query head over one row's cache, into `out`.
#[allow(clippy::too_many_arguments)]
fn attend_row(q: &[f32], keys: &[f32], values: &[f32], kv_width: usize, offset: usize, first: usize, scale: f32, out: &mut [f32]) {
    let head_dim = q.len();
    let tokens = keys.len() / kv_width;
    let mut scores: Vec<f32> = (first..tokens)
        .map(|t| {
            let k = &keys[t * kv_width + offset..t * kv_width + offset + head_dim];
            q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale
        })
        .collect();
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    out.fill(0.0);
    for (i, p) in scores.iter().enumerate() {
        let t = first + i;
        let v = &values[t * kv_width + offset..t * kv_width + offset + head_dim];
        let weight = p / sum;
        for (o, x) in out.iter_mut().zip(v) {
            *o += weight * x;
        }
    }
}

impl Layer {
    /// One decoding step for rows at their own positions, each with its own
    /// cache (layer `layer` of `rows[i].keys`/`values`): `x` is `[B, hidden]`
    /// and `cos`/`sin` have one row per row of `x`.
    fn step_rows(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, rows: &mut [Row], layer: usize) -> Result<Tensor> {
        use rayon::prelude::*;
        let a = &self.attention;
        let count = rows.len();
        let (q, k, v) = a.project(&self.input_norm.forward(x)?, cos, sin)?;
        let (q, k, v) = (token_major(&q)?, token_major(&k)?, token_major(&v)?);
        let (q_width, kv_width) = (a.heads * a.head_dim, a.kv_heads * a.head_dim);
        let group = a.heads / a.kv_heads;
        let scale = 1.0 / (a.head_dim as f32).sqrt();
        let mut out = vec![0f32; count * q_width];
        out.par_chunks_mut(q_width).zip(rows.par_iter_mut()).enumerate().for_each(|(r, (out, row))| {
            row.keys[layer].extend_from_slice(&k[r * kv_width..(r + 1) * kv_width]);
            row.values[layer].extend_from_slice(&v[r * kv_width..(r + 1) * kv_width]);
            let tokens = row.keys[layer].len() / kv_width;
            let first = a.window.map_or(0, |window| tokens.saturating_sub(window));
            for h in 0..a.heads {
                let query = &q[r * q_width + h * a.head_dim..r * q_width + (h + 1) * a.head_dim];
                let offset = (h / group) * a.head_dim;
                let slot = &mut out[h * a.head_dim..(h + 1) * a.head_dim];
                attend_row(query, &row.keys[layer], &row.values[layer], kv_width, offset, first, scale, slot);
            }
        });
        let out = Tensor::from_vec(out, (count, q_width), x.device())?.to_dtype(x.dtype())?;
        let attended = forward_linear(&a.o, &out)?;
        let x = (x + attended)?;
        &x + self.mlp.forward(&self.post_attention_norm.forward(&x)?)?
    }
}

impl Decoder {
    /// The continuations of several prompts, decoded together: each prompt
    /// is run once (as [`Decoder::generate`] runs it), then every step runs
    /// all continuations still going, of every prompt, as the rows of one
    /// batch, each row at its own position and with its own cache (f32).
    /// Continuation `k` of job `j` is sequence `Σ_{i<j} sequences_i + k` for
    /// `next`. A job whose prompt cannot be run gets its error; the others go on.
    ///
    /// What a row computes does not depend on the other rows except through
    /// the products' batch size (which can move a logit in its last bits):
    /// the same jobs in the same order give the same continuations.
    pub fn generate_many(&self, jobs: &[PromptJob<'_>], next: &mut dyn NextToken) -> Vec<Result<Vec<Continuation>>> {
        let mut results: Vec<Result<Vec<Continuation>>> = jobs
            .iter()
            .map(|job| Ok((0..job.sequences).map(|_| Continuation { tokens: vec![], logprobs: vec![], stopped: false }).collect()))
            .collect();
        let mut rows: Vec<Row> = Vec::new();
        let mut first_global = 0;
        for (j, job) in jobs.iter().enumerate() {
            let base = first_global;
            first_global += job.sequences;
            if job.prompt.is_empty() {
                results[j] = Err(candle_core::Error::Msg("the prompt has no tokens; there is nothing to continue".into()));
                continue;
            }
            if job.sequences == 0 || job.max_new_tokens == 0 {
                continue;
            }
            let prefilled = self.prefill(job.prompt, job.prompt.len()).and_then(|(caches, logits)| {
                let mut keys = Vec::with_capacity(caches.len());
                let mut values = Vec::with_capacity(caches.len());
                for cache in &caches {
                    let (Some(k), Some(v)) = (cache.k()?, cache.v()?) else {
                        candle_core::bail!("attention kept no keys");
                    };
                    keys.push(token_major(&k.squeeze(0)?)?);
                    values.push(token_major(&v.squeeze(0)?)?);
                }
                Ok((keys, values, logits))
            });
            let (keys, values, logits) = match prefilled {
                Ok(prefilled) => prefilled,
                Err(e) => {
                    results[j] = Err(e);
                    continue;
                }
            };
            let Ok(out) = results[j].as_mut() else { continue };
            for (sequence, continuation) in out.iter_mut().enumerate() {
                let global = base + sequence;
                let token = next.choose(global, &logits);
                continuation.tokens.push(token);
                continuation.logprobs.push(logprob_of(&logits, token));
                continuation.stopped = next.finished(global, &continuation.tokens);
                if !continuation.stopped && job.max_new_tokens > 1 {
                    rows.push(Row {
                        job: j,
                        sequence,
                        global,
                        position: job.prompt.len(),
                        limit: job.max_new_tokens,
                        keys: keys.clone(),
                        values: values.clone(),
                    });
                }
            }
        }
        while !rows.is_empty() {
            let mut step = || -> Result<Vec<f32>> {
                let inputs: Vec<u32> = rows
                    .iter()
                    .map(|row| match &results[row.job] {
                        Ok(out) => *out[row.sequence].tokens.last().expect("one token drawn"),
                        Err(_) => 0,
                    })
                    .collect();
                let positions: Vec<usize> = rows.iter().map(|row| row.position).collect();
                let mut x = self.embed(&inputs)?;
                let (cos, sin) = self.rope_rows(&positions)?;
                for (index, layer) in self.layers.iter().enumerate() {
                    x = layer.step_rows(&x, &cos, &sin, &mut rows, index)?;
                }
                self.logits(&self.norm.forward(&x)?)
            };
            let logits = match step() {
                Ok(logits) => logits,
                Err(e) => {
                    // A failed step fails every job still in flight.
                    let message = e.to_string();
                    for row in &rows {
                        results[row.job] = Err(candle_core::Error::Msg(message.clone()));
                    }
                    break;
                }
            };
            let mut still = Vec::with_capacity(rows.len());
            for (index, mut row) in rows.drain(..).enumerate() {
                let Ok(out) = results[row.job].as_mut() else { continue };
                let values = &logits[index * self.vocab_size..(index + 1) * self.vocab_size];
                let token = next.choose(row.global, values);
                let continuation = &mut out[row.sequence];
                continuation.tokens.push(token);
                continuation.logprobs.push(logprob_of(values, token));
                continuation.stopped = next.finished(row.global, &continuation.tokens);
                row.position += 1;
                if !continuation.stopped && continuation.tokens.len() < row.limit {
                    still.push(row);
                }
            }
            rows = still;
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::{attend_row, logprob_of};

    #[test]
    fn attention_of_one_row_is_the_softmax_weighted_values() {
        // Two kv heads of width 2; the query reads the second; three tokens, the first outside a window of 2.
        let keys = [9.0, 9.0, 1.0, 0.0, 9.0, 9.0, 0.0, 1.0, 9.0, 9.0, 1.0, 1.0];
        let values = [0.0, 0.0, 100.0, 100.0, 0.0, 0.0, 1.0, 2.0, 0.0, 0.0, 3.0, 4.0];
        let q = [0.0f32, 2.0];
        let mut out = [0f32; 2];
        attend_row(&q, &keys, &values, 4, 2, 1, 0.5, &mut out);
        // Scores (scaled): token 1: 1, token 2: 1 — equal weights.
        assert!((out[0] - 2.0).abs() < 1e-6 && (out[1] - 3.0).abs() < 1e-6, "{out:?}");
        attend_row(&q, &keys, &values, 4, 2, 0, 0.5, &mut out);
        let w = [0.0f32.exp(), 1.0f32.exp(), 1.0f32.exp()];
        let total: f32 = w.iter().sum();
        let expected0 = (w[0] * 100.0 + w[1] * 1.0 + w[2] * 3.0) / total;
        assert!((out[0] - expected0).abs() < 1e-4, "{out:?}");
    }

    #[test]
    fn logprob_of_a_row() {
        let row = [0.0f32, (2.0f32).ln(), f32::NEG_INFINITY];
        assert!((logprob_of(&row, 1) - (2.0f32 / 3.0).ln()).abs() < 1e-6);
        assert!((logprob_of(&row, 0) - (1.0f32 / 3.0).ln()).abs() < 1e-6);
    }
}
