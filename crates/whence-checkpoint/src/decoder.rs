//! One decoder for Qwen2, Qwen3, Llama and Mistral, made for scoring: a
//! teacher-forced pass over all positions, no KV cache, and bounded memory
//! (decoding with a KV cache is [`crate::generate`]'s).
//!
//! Nothing of size `[sequence × vocabulary]` or `[heads × sequence ×
//! sequence]` is ever built: attention runs over blocks of queries, the MLP
//! over blocks of positions, and the output head over blocks of positions,
//! each block sized to stay within [`BLOCK_BYTES`]. RoPE tables are computed
//! in f64 and applied in f32 whatever the compute dtype.
//!
//! On the CPU the heavy parts are whence-checkpoint's own kernels on rayon's
//! pool: the linear layers ([`crate::linear`]), fused attention with an
//! online softmax ([`crate::attention`]), `silu(gate)·up`
//! ([`crate::kernels::silu_mul`]), and an output head that keeps only a
//! running log-sum-exp per position over tiles of the vocabulary
//! (`head_logprobs_tiled`). Other devices use candle's ops.

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Embedding, Linear, RmsNorm, VarBuilder};
use rayon::prelude::*;

use crate::bf16::{Bf16Kernel, Bf16Rows, PackedBf16};

use crate::config::Config;

/// The values of a contiguous f32 CPU tensor, borrowed.
pub(crate) struct CpuF32<'a> {
    storage: candle_core::StorageRef<'a>,
    start: usize,
    end: usize,
}

impl CpuF32<'_> {
    pub(crate) fn values(&self) -> &[f32] {
        match &*self.storage {
            candle_core::Storage::Cpu(candle_core::CpuStorage::F32(values)) => &values[self.start..self.end],
            _ => &[],
        }
    }
}

pub(crate) fn cpu_f32(tensor: &Tensor) -> Result<CpuF32<'_>> {
    let (storage, layout) = tensor.storage_and_layout();
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("expected a contiguous tensor, got layout {layout:?}");
    };
    if !matches!(&*storage, candle_core::Storage::Cpu(candle_core::CpuStorage::F32(_))) {
        candle_core::bail!("expected an f32 CPU tensor, got {:?} on {:?}", tensor.dtype(), tensor.device().location());
    }
    Ok(CpuF32 { storage, start, end })
}

/// The memory one block of attention scores or head logits may take.
pub const BLOCK_BYTES: usize = 64 << 20;

/// Vocabulary entries and rows per tile of the CPU output head (see
/// `head_logprobs_cpu`): 8 MB of logits per thread.
const HEAD_COLUMNS: usize = 1024;
const HEAD_ROWS: usize = 2048;

/// A row's log-sum-exp over the tiles of logits seen so far, and its target's logit.
#[derive(Clone, Copy)]
struct RunningLogsumexp {
    max: f32,
    /// Σ e^(x − max).
    sum: f64,
    target: f32,
}

impl Default for RunningLogsumexp {
    fn default() -> Self {
        RunningLogsumexp { max: f32::NEG_INFINITY, sum: 0.0, target: f32::NAN }
    }
}

impl RunningLogsumexp {
    /// Adds a tile's `(max, Σ e^(x − max))` and, if it holds it, the target's logit.
    fn add(&mut self, (max, sum): (f32, f64), target: Option<f32>) {
        if let Some(target) = target {
            self.target = target;
        }
        if max == f32::NEG_INFINITY {
            return;
        }
        if max > self.max || max.is_nan() {
            self.sum = self.sum * (f64::from(self.max) - f64::from(max)).exp() + sum;
            self.max = max;
        } else {
            self.sum += sum * (f64::from(max) - f64::from(self.max)).exp();
        }
    }

    fn logprob(&self) -> f32 {
        if !self.max.is_finite() {
            return self.target - self.max;
        }
        self.target - self.max - self.sum.ln() as f32
    }
}

type Result<T> = candle_core::Result<T>;

pub(crate) struct Attention {
    /// q, k and v projections fused into one (rows: q, then k, then v).
    qkv: Projection,
    pub(crate) o: Projection,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    pub(crate) heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) window: Option<usize>,
    ops: Ops,
}

pub(crate) struct Mlp {
    /// gate and up projections fused into one (rows: gate, then up).
    gate_up: Projection,
    pub(crate) intermediate: usize,
    down: Projection,
    ops: Ops,
}

/// Which implementation runs the decoder's heavy operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ops {
    /// whence's own CPU kernels (linear layers, fused attention, bf16
    /// products, tiled output head); the default on the CPU.
    Fused,
    /// candle's device-generic ops, which CUDA and Metal run; on the CPU only
    /// so that tests run that path too (a GPU must not be the first place it executes).
    Generic,
}

impl Ops {
    /// [`Ops::Fused`] on the CPU, [`Ops::Generic`] elsewhere.
    pub fn for_device(device: &Device) -> Ops {
        if device.is_cpu() {
            Ops::Fused
        } else {
            Ops::Generic
        }
    }
}

/// A linear layer `y = x·wᵀ (+ b)` in the form its path computes it.
pub(crate) enum Projection {
    /// candle's `Linear` forward (generic ops, or a dtype without a CPU kernel).
    Candle(Linear),
    /// f32 weights for [`crate::linear::linear`].
    F32(Linear),
    /// bf16 weights for [`crate::bf16::linear`], bias in f32.
    Bf16 { weight: PackedBf16, bias: Option<Vec<f32>> },
}

/// How the layers' weights are held, from the ops and the dtype.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Storage {
    Candle,
    F32,
    Bf16(Bf16Kernel),
}

impl Storage {
    fn of(ops: Ops, dtype: DType) -> Storage {
        match (ops, dtype) {
            (Ops::Fused, DType::F32) => Storage::F32,
            (Ops::Fused, DType::BF16) => Storage::Bf16(Bf16Kernel::detected()),
            _ => Storage::Candle,
        }
    }

    /// The dtype of the activations between layers: f32 for whence's bf16
    /// kernels (bf16 weights, f32 everything else), else the weights' dtype.
    fn activation(self, dtype: DType) -> DType {
        match self {
            Storage::Bf16(_) => DType::F32,
            _ => dtype,
        }
    }
}

/// `tensor` (`[outputs, inputs]`, converted to bf16 if it is not) packed
/// for `kernel`, read in place from its CPU storage: loading holds the
/// tensor and its packed copy, never a third.
fn pack_bf16(tensor: &Tensor, kernel: Bf16Kernel) -> Result<PackedBf16> {
    let (outputs, inputs) = tensor.dims2()?;
    let tensor = tensor.to_dtype(DType::BF16)?.to_device(&Device::Cpu)?.contiguous()?;
    let (storage, layout) = tensor.storage_and_layout();
    let (start, end) = layout.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("a contiguous weight".into()))?;
    match &*storage {
        candle_core::Storage::Cpu(candle_core::CpuStorage::BF16(values)) => {
            PackedBf16::from_slice(&values[start..end], outputs, inputs, kernel).map_err(candle_core::Error::wrap)
        }
        _ => candle_core::bail!("expected a bf16 CPU tensor"),
    }
}

impl Projection {
    /// One projection whose outputs are those of `parts` one after another
    /// (so that one GEMM does the work of several).
    fn fused(parts: Vec<Linear>, storage: Storage) -> Result<Projection> {
        let linear = if parts.len() == 1 { parts.into_iter().next().expect("one part") } else { fuse(&parts)? };
        Ok(match storage {
            Storage::Candle => Projection::Candle(linear),
            Storage::F32 => Projection::F32(linear),
            Storage::Bf16(kernel) => {
                let weight = pack_bf16(linear.weight(), kernel)?;
                let bias = linear.bias().map(|b| b.to_dtype(DType::F32)?.to_vec1::<f32>()).transpose()?;
                Projection::Bf16 { weight, bias }
            }
        })
    }
}

/// `x·wᵀ (+ b)` of a projection, `x` `[rows, inputs]`.
pub(crate) fn forward_linear(projection: &Projection, x: &Tensor) -> Result<Tensor> {
    let layer = match projection {
        Projection::Candle(layer) => return layer.forward(x),
        Projection::Bf16 { weight, bias } => {
            let rows = x.dim(0)?;
            let x = x.to_dtype(DType::F32)?.contiguous()?;
            let out = crate::bf16::linear_to_vec(cpu_f32(&x)?.values(), weight, bias.as_deref(), rows).map_err(candle_core::Error::wrap)?;
            return Tensor::from_vec(out, (rows, weight.outputs()), x.device());
        }
        Projection::F32(layer) => layer,
    };
    let w = layer.weight();
    let f32_cpu = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
    if !(f32_cpu(x) && f32_cpu(w) && layer.bias().is_none_or(f32_cpu) && x.rank() == 2) {
        return layer.forward(x);
    }
    let (rows, inputs) = x.dims2()?;
    let (outputs, _) = w.dims2()?;
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    let bias = layer.bias().map(Tensor::contiguous).transpose()?;
    let mut out = vec![0f32; rows * outputs];
    {
        let (xs, ws) = (cpu_f32(&x)?, cpu_f32(&w)?);
        let bs = bias.as_ref().map(cpu_f32).transpose()?;
        crate::linear::linear(xs.values(), ws.values(), bs.as_ref().map(CpuF32::values), rows, inputs, outputs, &mut out)
            .map_err(candle_core::Error::wrap)?;
    }
    Tensor::from_vec(out, (rows, outputs), x.device())
}

/// Concatenates linear layers along their outputs, so that one GEMM does
/// the work of several.
fn fuse(parts: &[Linear]) -> Result<Linear> {
    let weights: Vec<&Tensor> = parts.iter().map(|p| p.weight()).collect();
    let weight = Tensor::cat(&weights, 0)?;
    let biases: Option<Vec<&Tensor>> = parts.iter().map(|p| p.bias()).collect();
    let bias = match biases {
        Some(biases) => Some(Tensor::cat(&biases, 0)?),
        None => None,
    };
    Ok(Linear::new(weight, bias))
}

pub(crate) struct Layer {
    pub(crate) input_norm: RmsNorm,
    pub(crate) attention: Attention,
    pub(crate) post_attention_norm: RmsNorm,
    pub(crate) mlp: Mlp,
}

/// A loaded model, ready to score token sequences.
pub struct Decoder {
    embed: Embed,
    pub(crate) layers: Vec<Layer>,
    pub(crate) norm: RmsNorm,
    pub(crate) head: Head,
    inverse_frequencies: Vec<f64>,
    dtype: DType,
    /// The dtype of the hidden states (f32 with whence's bf16 kernels).
    activation: DType,
    ops: Ops,
    device: Device,
    pub(crate) vocab_size: usize,
}

/// The token embeddings.
enum Embed {
    Table(Embedding),
    /// Rows of the bf16 output head it is tied to (held once).
    TiedHead,
}

/// The output head's weight, `[vocabulary, hidden]`.
pub(crate) enum Head {
    Tensor(Tensor),
    Bf16(PackedBf16),
}

impl Attention {
    fn load(config: &Config, layer: usize, vb: VarBuilder, ops: Ops, storage: Storage) -> Result<Self> {
        let (h, nh, nkv, hd) = (config.hidden_size, config.num_attention_heads, config.num_key_value_heads, config.head_dim);
        let norms = vb.to_dtype(storage.activation(vb.dtype()));
        let norm = |name: &str| candle_nn::rms_norm(hd, config.rms_norm_eps, norms.pp(name));
        let q = candle_nn::linear_b(h, nh * hd, config.qkv_bias, vb.pp("q_proj"))?;
        let k = candle_nn::linear_b(h, nkv * hd, config.qkv_bias, vb.pp("k_proj"))?;
        let v = candle_nn::linear_b(h, nkv * hd, config.qkv_bias, vb.pp("v_proj"))?;
        Ok(Attention {
            qkv: Projection::fused(vec![q, k, v], storage)?,
            o: Projection::fused(vec![candle_nn::linear_b(nh * hd, h, config.o_bias, vb.pp("o_proj"))?], storage)?,
            q_norm: if config.qk_norm { Some(norm("q_norm")?) } else { None },
            k_norm: if config.qk_norm { Some(norm("k_norm")?) } else { None },
            heads: nh,
            kv_heads: nkv,
            head_dim: hd,
            window: config.sliding_window[layer],
            ops,
        })
    }

    /// `[T, heads·head_dim]` columns to `[heads, T, head_dim]`, normed and rotated.
    fn heads_of(&self, y: Tensor, norm: Option<&RmsNorm>, heads: usize, rope: Option<(&Tensor, &Tensor)>) -> Result<Tensor> {
        let t = y.dim(0)?;
        let mut y = y.reshape((t, heads, self.head_dim))?;
        if let Some(norm) = norm {
            y = norm.forward(&y.contiguous()?)?;
        }
        let y = y.transpose(0, 1)?.contiguous()?;
        match rope {
            None => Ok(y),
            Some((cos, sin)) => {
                let dtype = y.dtype();
                let rotated = candle_nn::rotary_emb::rope(&y.to_dtype(DType::F32)?.unsqueeze(0)?, cos, sin)?;
                rotated.squeeze(0)?.to_dtype(dtype)
            }
        }
    }

    /// q `[heads, T, head_dim]`, k and v `[kv_heads, T, head_dim]` of the
    /// rows of `x`, normed and rotated (row `i` at the position of `cos`/`sin` row `i`).
    pub(crate) fn project(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let (q_width, kv_width) = (self.heads * self.head_dim, self.kv_heads * self.head_dim);
        let qkv = forward_linear(&self.qkv, x)?;
        let q = self.heads_of(qkv.narrow(1, 0, q_width)?, self.q_norm.as_ref(), self.heads, Some((cos, sin)))?;
        let k = self.heads_of(qkv.narrow(1, q_width, kv_width)?, self.k_norm.as_ref(), self.kv_heads, Some((cos, sin)))?;
        let v = self.heads_of(qkv.narrow(1, q_width + kv_width, kv_width)?, None, self.kv_heads, None)?;
        Ok((q, k, v))
    }

    /// Self-attention over all rows of `x`, records packed at `starts` (see
    /// [`Decoder::token_logprobs_packed`]; empty: one record); with `keep`,
    /// the rows' keys and values (`[kv_heads, T, head_dim]`) are handed out for a KV cache.
    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        starts: &[usize],
        keep: Option<&mut Option<(Tensor, Tensor)>>,
    ) -> Result<Tensor> {
        let t = x.dim(0)?;
        let (q, k, v) = self.project(x, cos, sin)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        if let Some(keep) = keep {
            *keep = Some((k.clone(), v.clone()));
        }
        if self.ops == Ops::Fused {
            let out = self.fused(&q, &k, &v, t, starts, scale as f32)?.to_dtype(x.dtype())?;
            return forward_linear(&self.o, &out);
        }
        let group = self.heads / self.kv_heads;
        // Heads h = j·group + i share kv head j (transformers' repeat_kv).
        let q = q.reshape((self.kv_heads, group, t, self.head_dim))?;
        let block = (BLOCK_BYTES / (4 * self.heads * t.max(1))).clamp(1, 512);
        let record_starts = record_start_of_each_token(starts, t);
        let mut outputs = Vec::with_capacity(t.div_ceil(block));
        let mut start = 0;
        while start < t {
            let len = block.min(t - start);
            let end = start + len;
            let window_start = self.window.map_or(0, |w| start.saturating_sub(w.saturating_sub(1)));
            let key_start = window_start.max(record_starts[start]);
            let keys = end - key_start;
            let q_block = q.narrow(2, start, len)?.reshape((self.kv_heads, group * len, self.head_dim))?;
            let k_block = k.narrow(1, key_start, keys)?;
            let v_block = v.narrow(1, key_start, keys)?;
            let scores = (q_block.matmul(&k_block.t()?)? * scale)?.to_dtype(DType::F32)?;
            let scores = scores.reshape((self.kv_heads, group, len, keys))?;
            let mask = self.mask(start, len, key_start, keys, &record_starts, x.device())?;
            let probabilities = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&mask)?)?;
            let probabilities = probabilities.to_dtype(v.dtype())?.reshape((self.kv_heads, group * len, keys))?;
            let out = probabilities.matmul(&v_block)?.reshape((self.heads, len, self.head_dim))?;
            outputs.push(out);
            start = end;
        }
        let out = Tensor::cat(&outputs, 1)?.transpose(0, 1)?.reshape((t, self.heads * self.head_dim))?;
        forward_linear(&self.o, &out)
    }

    /// CPU attention with [`crate::attention::causal_attention`]: `q` is
    /// `[heads, T, head_dim]`, `k` and `v` `[kv_heads, T, head_dim]`; returns
    /// `[T, heads·head_dim]` in f32.
    fn fused(&self, q: &Tensor, k: &Tensor, v: &Tensor, t: usize, starts: &[usize], scale: f32) -> Result<Tensor> {
        let shape = crate::attention::AttentionShape {
            tokens: t,
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            window: self.window,
        };
        let (q, k, v) =
            (q.to_dtype(DType::F32)?.contiguous()?, k.to_dtype(DType::F32)?.contiguous()?, v.to_dtype(DType::F32)?.contiguous()?);
        let mut out = vec![0f32; t * self.heads * self.head_dim];
        {
            let (q, k, v) = (cpu_f32(&q)?, cpu_f32(&k)?, cpu_f32(&v)?);
            crate::attention::causal_attention_packed(q.values(), k.values(), v.values(), &shape, starts, scale, &mut out)
                .map_err(candle_core::Error::wrap)?;
        }
        Tensor::from_vec(out, (t, self.heads * self.head_dim), q.device())
    }

    /// 0 where query `start + i` may see key `key_start + j`, −∞ elsewhere
    /// (`record_starts[q]`: the first token of query `q`'s record).
    fn mask(&self, start: usize, len: usize, key_start: usize, keys: usize, record_starts: &[usize], device: &Device) -> Result<Tensor> {
        let mut values = vec![0f32; len * keys];
        for i in 0..len {
            let query = start + i;
            for j in 0..keys {
                let key = key_start + j;
                let visible = key <= query && key >= record_starts[query] && self.window.is_none_or(|w| query - key < w);
                if !visible {
                    values[i * keys + j] = f32::NEG_INFINITY;
                }
            }
        }
        Tensor::from_vec(values, (len, keys), device)
    }
}

impl Mlp {
    fn load(config: &Config, vb: VarBuilder, ops: Ops, storage: Storage) -> Result<Self> {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        let gate = candle_nn::linear_b(h, i, config.mlp_bias, vb.pp("gate_proj"))?;
        let up = candle_nn::linear_b(h, i, config.mlp_bias, vb.pp("up_proj"))?;
        let down = candle_nn::linear_b(i, h, config.mlp_bias, vb.pp("down_proj"))?;
        Ok(Mlp {
            gate_up: Projection::fused(vec![gate, up], storage)?,
            intermediate: i,
            down: Projection::fused(vec![down], storage)?,
            ops,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate_up = forward_linear(&self.gate_up, x)?;
        if self.ops == Ops::Fused && gate_up.dtype() == DType::F32 {
            // silu(gate)·up in one pass over each row, into a contiguous tensor.
            let rows = gate_up.dim(0)?;
            let mut gated = vec![0f32; rows * self.intermediate];
            crate::kernels::silu_mul(cpu_f32(&gate_up.contiguous()?)?.values(), self.intermediate, &mut gated);
            return forward_linear(&self.down, &Tensor::from_vec(gated, (rows, self.intermediate), gate_up.device())?);
        }
        let gate = gate_up.narrow(1, 0, self.intermediate)?;
        let up = gate_up.narrow(1, self.intermediate, self.intermediate)?;
        let gated = (candle_nn::ops::silu(&gate)? * up)?;
        forward_linear(&self.down, &gated)
    }
}

impl Layer {
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        intermediate: usize,
        starts: &[usize],
        keep: Option<&mut Option<(Tensor, Tensor)>>,
    ) -> Result<Tensor> {
        let attended = self.attention.forward(&self.input_norm.forward(x)?, cos, sin, starts, keep)?;
        let x = (x + attended)?;
        // The MLP over blocks of positions: its intermediate activations are
        // the largest tensors of a layer.
        let t = x.dim(0)?;
        let block = (BLOCK_BYTES / (4 * 3 * intermediate.max(1))).clamp(1, 4096);
        let mut outputs = Vec::with_capacity(t.div_ceil(block));
        let mut start = 0;
        while start < t {
            let len = block.min(t - start);
            let rows = x.narrow(0, start, len)?;
            let out = (&rows + self.mlp.forward(&self.post_attention_norm.forward(&rows)?)?)?;
            outputs.push(out);
            start += len;
        }
        Tensor::cat(&outputs, 0)
    }
}

impl Decoder {
    /// Builds the decoder from weights under `vb` (HF names: `model.…`,
    /// `lm_head.weight`), with whence's kernels on the CPU and candle's ops elsewhere.
    pub fn load(config: &Config, vb: VarBuilder) -> Result<Self> {
        let ops = Ops::for_device(vb.device());
        Decoder::load_with(config, vb, ops)
    }

    /// [`Decoder::load`] with the ops chosen ([`Ops::Fused`] needs the CPU).
    ///
    /// With [`Ops::Fused`] and bf16, the linear layers' weights, the
    /// embeddings and the head stay in bf16 (products with f32 accumulation,
    /// [`crate::bf16`]) and everything else (norms, RoPE, attention, the
    /// residual stream, the log-sum-exp of the head) runs in f32.
    pub fn load_with(config: &Config, vb: VarBuilder, ops: Ops) -> Result<Self> {
        if ops == Ops::Fused && !vb.device().is_cpu() {
            candle_core::bail!("whence's fused kernels run on the CPU only; use Ops::Generic on {:?}", vb.device().location());
        }
        let storage = Storage::of(ops, vb.dtype());
        let activation = storage.activation(vb.dtype());
        let norms = vb.to_dtype(activation);
        // The embeddings and the head first: packing the head briefly holds
        // it twice, and memory freed then is reused by the layers after it,
        // so loading peaks at about the model's size.
        let tied = config.tie_word_embeddings && !vb.contains_tensor("lm_head.weight");
        let embeddings = vb.pp("model").pp("embed_tokens").get((config.vocab_size, config.hidden_size), "weight")?;
        let (embed, head) = match storage {
            Storage::Bf16(kernel) => {
                if tied {
                    let head = pack_bf16(&embeddings, kernel)?;
                    drop(embeddings);
                    (Embed::TiedHead, Head::Bf16(head))
                } else {
                    let head = vb.pp("lm_head").get((config.vocab_size, config.hidden_size), "weight")?;
                    let head = Head::Bf16(pack_bf16(&head, kernel)?);
                    (Embed::Table(Embedding::new(embeddings, config.hidden_size)), head)
                }
            }
            _ => {
                let head =
                    if tied { embeddings.clone() } else { vb.pp("lm_head").get((config.vocab_size, config.hidden_size), "weight")? };
                (Embed::Table(Embedding::new(embeddings, config.hidden_size)), Head::Tensor(head))
            }
        };
        crate::release_freed_memory();
        let model = vb.pp("model");
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let layer = model.pp(format!("layers.{i}"));
            let norm_of =
                |name: &str| candle_nn::rms_norm(config.hidden_size, config.rms_norm_eps, norms.pp(format!("model.layers.{i}.{name}")));
            layers.push(Layer {
                input_norm: norm_of("input_layernorm")?,
                attention: Attention::load(config, i, layer.pp("self_attn"), ops, storage)?,
                post_attention_norm: norm_of("post_attention_layernorm")?,
                mlp: Mlp::load(config, layer.pp("mlp"), ops, storage)?,
            });
            crate::release_freed_memory();
        }
        let norm = candle_nn::rms_norm(config.hidden_size, config.rms_norm_eps, norms.pp("model.norm"))?;
        Ok(Decoder {
            embed,
            layers,
            norm,
            head,
            inverse_frequencies: config.inverse_frequencies(),
            dtype: vb.dtype(),
            activation,
            ops,
            device: vb.device().clone(),
            vocab_size: config.vocab_size,
        })
    }

    /// Which implementation runs the heavy operations.
    pub fn ops(&self) -> Ops {
        self.ops
    }

    /// The dtype of the hidden states between layers (f32 with whence's
    /// bf16 kernels; else the weights' dtype).
    pub fn activation_dtype(&self) -> DType {
        self.activation
    }

    /// The embeddings of `ids`, `[ids, hidden]` in the activation dtype.
    pub(crate) fn embed(&self, ids: &[u32]) -> Result<Tensor> {
        match (&self.embed, &self.head) {
            (Embed::Table(table), _) => table.forward(&Tensor::new(ids, &self.device)?)?.to_dtype(self.activation),
            (Embed::TiedHead, Head::Bf16(head)) => {
                let mut values = Vec::with_capacity(ids.len() * head.inputs());
                for &id in ids {
                    let row = head.row(id as usize).ok_or_else(|| {
                        candle_core::Error::Msg(format!("token id {id} is outside the model's vocabulary of {}", self.vocab_size))
                    })?;
                    values.extend(row);
                }
                Tensor::from_vec(values, (ids.len(), head.inputs()), &self.device)
            }
            (Embed::TiedHead, Head::Tensor(_)) => unreachable!("a tied head is packed in bf16"),
        }
    }

    /// The head's f32 logits of `hidden`'s rows, `[rows, vocabulary]`.
    pub(crate) fn head_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        match &self.head {
            Head::Bf16(head) => {
                let rows = hidden.dim(0)?;
                let x = hidden.to_dtype(DType::F32)?.contiguous()?;
                let mut out = vec![0f32; rows * self.vocab_size];
                crate::bf16::linear(cpu_f32(&x)?.values(), head, None, rows, &mut out).map_err(candle_core::Error::wrap)?;
                Tensor::from_vec(out, (rows, self.vocab_size), &self.device)
            }
            Head::Tensor(head) if self.ops == Ops::Fused && hidden.dtype() == DType::F32 && head.dtype() == DType::F32 => {
                let (rows, inputs) = hidden.dims2()?;
                let (hidden, head) = (hidden.contiguous()?, head.contiguous()?);
                let mut out = vec![0f32; rows * self.vocab_size];
                crate::linear::linear(cpu_f32(&hidden)?.values(), cpu_f32(&head)?.values(), None, rows, inputs, self.vocab_size, &mut out)
                    .map_err(candle_core::Error::wrap)?;
                Tensor::from_vec(out, (rows, self.vocab_size), &self.device)
            }
            Head::Tensor(head) => hidden.matmul(&head.t()?)?.to_dtype(DType::F32),
        }
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// cos and sin tables with one row per entry of `positions`.
    pub(crate) fn rope_rows(&self, positions: &[usize]) -> Result<(Tensor, Tensor)> {
        let (t, half) = (positions.len(), self.inverse_frequencies.len());
        let mut cos = Vec::with_capacity(t * half);
        let mut sin = Vec::with_capacity(t * half);
        for &position in positions {
            for &frequency in &self.inverse_frequencies {
                // f32 angles, as transformers computes them.
                let angle = (position as f32) * (frequency as f32);
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Ok((Tensor::from_vec(cos, (t, half), &self.device)?, Tensor::from_vec(sin, (t, half), &self.device)?))
    }

    /// The log-probability of `ids[i]` given `ids[..i]`, for every `i` in
    /// `from..ids.len()` (`from` ≥ 1), in one teacher-forced pass.
    pub fn token_logprobs(&self, ids: &[u32], from: usize) -> Result<Vec<f32>> {
        Ok(self.token_logprobs_packed(&[(ids, from)])?.pop().unwrap_or_default())
    }

    /// [`token_logprobs`](Self::token_logprobs) of several sequences `(ids,
    /// from)` in one pass: they are concatenated into one sequence in which
    /// each token attends only to the tokens of its own sequence (a
    /// block-diagonal causal mask) at positions counted from its own start,
    /// so each result equals the sequence's own pass up to the order of f32
    /// sums; the linear layers and the head see all the rows at once.
    pub fn token_logprobs_packed(&self, sequences: &[(&[u32], usize)]) -> Result<Vec<Vec<f32>>> {
        let sequences: Vec<(&[u32], usize)> = sequences.iter().map(|&(ids, from)| (ids, from.max(1))).collect();
        let with_next: Vec<(&[u32], usize, bool)> = sequences.iter().map(|&(ids, from)| (ids, from, false)).collect();
        let Some((hidden, rows)) = self.final_hidden_rows(&with_next)? else {
            return Ok(vec![Vec::new(); sequences.len()]);
        };
        let targets: Vec<u32> = sequences.iter().flat_map(|&(ids, from)| ids.get(from..).unwrap_or(&[]).iter().copied()).collect();
        let all = if self.ops == Ops::Fused {
            self.head_logprobs_cpu(&hidden, &targets)?
        } else {
            let mut out = Vec::with_capacity(targets.len());
            self.visit_head_blocks(&hidden, &mut |start, logits| {
                let len = logits.dim(0)?;
                let logprobs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
                let targets = Tensor::new(&targets[start..start + len], &self.device)?.unsqueeze(1)?;
                out.extend(logprobs.gather(&targets, 1)?.squeeze(1)?.to_vec1::<f32>()?);
                Ok(())
            })?;
            out
        };
        let mut rest = all.as_slice();
        Ok(rows
            .iter()
            .map(|&n| {
                let (mine, others) = rest.split_at(n);
                rest = others;
                mine.to_vec()
            })
            .collect())
    }

    /// Like [`token_logprobs`](Self::token_logprobs), with each target's
    /// rank and the `top` most likely tokens at every position, and with
    /// `next` the most likely token after the last (what `whence serve`
    /// answers for vLLM's `prompt_logprobs` and `max_tokens: 1`).
    pub fn prompt_logprobs(&self, ids: &[u32], from: usize, top: usize, next: bool) -> Result<crate::ranks::PromptLogprobs> {
        Ok(self.prompt_logprobs_packed(&[PromptRequest { ids, from, top, next }])?.pop().unwrap_or_default())
    }

    /// [`prompt_logprobs`](Self::prompt_logprobs) of several requests in one
    /// packed pass (as [`token_logprobs_packed`](Self::token_logprobs_packed)).
    pub fn prompt_logprobs_packed(&self, requests: &[PromptRequest<'_>]) -> Result<Vec<crate::ranks::PromptLogprobs>> {
        let sequences: Vec<(&[u32], usize, bool)> = requests.iter().map(|r| (r.ids, r.from.max(1), r.next)).collect();
        let Some((hidden, rows)) = self.final_hidden_rows(&sequences)? else {
            return Ok(vec![crate::ranks::PromptLogprobs::default(); requests.len()]);
        };
        // Row r of `hidden` belongs to request owner[r], at its row local[r].
        let mut owner = Vec::with_capacity(hidden.dim(0)?);
        for (request, &count) in rows.iter().enumerate() {
            owner.extend((0..count).map(|row| (request, row)));
        }
        let mut out: Vec<crate::ranks::PromptLogprobs> =
            rows.iter().map(|&n| crate::ranks::PromptLogprobs { positions: Vec::with_capacity(n), next: None }).collect();
        self.visit_head_blocks(&hidden, &mut |start, logits| {
            let logits = logits.flatten_all()?.to_vec1::<f32>()?;
            for (row, values) in logits.chunks_exact(self.vocab_size).enumerate() {
                let (request, local) = owner[start + row];
                let r = &requests[request];
                match r.ids.get(r.from.max(1) + local) {
                    Some(&target) => out[request].positions.push(crate::ranks::PositionLogprobs::of(values, target, r.top)),
                    None => out[request].next = crate::ranks::top_tokens(values, 1).first().copied(),
                }
            }
            Ok(())
        })?;
        if self.ops == Ops::Fused {
            // The actual tokens' log-probabilities by the same arithmetic as
            // token_logprobs, so that served numbers equal in-process ones.
            let mut targets = Vec::new();
            let mut keep = Vec::with_capacity(sequences.len());
            for &(ids, from, _) in &sequences {
                targets.extend_from_slice(&ids[from.min(ids.len())..]);
                keep.push(ids.len().saturating_sub(from));
            }
            let mut wanted = Vec::with_capacity(requests.len());
            let mut offset = 0;
            for (&count, &scored) in rows.iter().zip(&keep) {
                if scored > 0 {
                    wanted.push(hidden.narrow(0, offset, scored)?);
                }
                offset += count;
            }
            if !wanted.is_empty() {
                let exact = self.head_logprobs_cpu(&Tensor::cat(&wanted, 0)?, &targets)?;
                let mut exact = exact.into_iter();
                for result in &mut out {
                    for position in &mut result.positions {
                        position.logprob = exact.next().expect("one per scored position");
                    }
                }
            }
        }
        Ok(out)
    }

    /// The head's f32 logits of `hidden`'s rows, a block of rows at a time.
    fn visit_head_blocks(&self, hidden: &Tensor, visit: &mut dyn FnMut(usize, Tensor) -> Result<()>) -> Result<()> {
        let rows = hidden.dim(0)?;
        let block = (BLOCK_BYTES / (4 * self.vocab_size)).clamp(1, 1024);
        let mut start = 0;
        while start < rows {
            let len = block.min(rows - start);
            let logits = self.head_logits(&hidden.narrow(0, start, len)?)?;
            visit(start, logits)?;
            start += len;
        }
        Ok(())
    }

    /// On the CPU, the log-probabilities of `targets[r]` under the head's
    /// logits of `hidden` row `r`, without materialising those logits: the
    /// head runs over tiles of [`HEAD_COLUMNS`] vocabulary entries (and of
    /// rows), and each row keeps a running maximum, sum of exponentials and
    /// its target's logit. The head weight is read once per block of rows.
    fn head_logprobs_cpu(&self, hidden: &Tensor, targets: &[u32]) -> Result<Vec<f32>> {
        head_logprobs_tiled(hidden, &self.head, targets, HEAD_COLUMNS, HEAD_ROWS)
    }

    /// The final-normed hidden states of the positions that predict
    /// `ids[from..]` (and with `next` the token after `ids`) of several
    /// sequences `(ids, from ≥ 1, next)` packed into one pass: their rows one
    /// after another, and how many rows each has; `None` when none has any.
    fn final_hidden_rows(&self, sequences: &[(&[u32], usize, bool)]) -> Result<Option<(Tensor, Vec<usize>)>> {
        let rows: Vec<usize> = sequences
            .iter()
            .map(|&(ids, from, next)| if ids.is_empty() { 0 } else { (ids.len() + usize::from(next)).saturating_sub(from) })
            .collect();
        if rows.iter().all(|&r| r == 0) {
            return Ok(None);
        }
        // Sequences with no row to score are left out of the pass.
        let included: Vec<(&[u32], usize, bool)> = sequences.iter().zip(&rows).filter(|(_, &r)| r > 0).map(|(&s, _)| s).collect();
        let total: usize = included.iter().map(|(ids, ..)| ids.len()).sum();
        let mut all = Vec::with_capacity(total);
        let mut starts = Vec::with_capacity(included.len());
        let mut positions = Vec::with_capacity(total);
        for (ids, ..) in &included {
            if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
                candle_core::bail!("token id {bad} is outside the model's vocabulary of {}", self.vocab_size);
            }
            starts.push(all.len());
            all.extend_from_slice(ids);
            positions.extend(0..ids.len());
        }
        let mut x = self.embed(&all)?;
        let (cos, sin) = self.rope_rows(&positions)?;
        let intermediate = self.layers.first().map_or(1, |l| l.mlp.intermediate);
        let starts = if starts.len() == 1 { Vec::new() } else { starts };
        for layer in &self.layers {
            x = layer.forward(&x, &cos, &sin, intermediate, &starts, None)?;
        }
        // Only the positions that predict a wanted token go through the head.
        let mut wanted = Vec::with_capacity(included.len());
        let mut offset = 0;
        for &(ids, from, next) in &included {
            let count = (ids.len() + usize::from(next)) - from;
            wanted.push(x.narrow(0, offset + from - 1, count)?);
            offset += ids.len();
        }
        let hidden = if wanted.len() == 1 { wanted.pop().expect("one") } else { Tensor::cat(&wanted, 0)? };
        Ok(Some((self.norm.forward(&hidden)?, rows)))
    }
}

/// One request of [`Decoder::prompt_logprobs_packed`]: score `ids[from..]`
/// with ranks and the `top` most likely tokens, and with `next` the most
/// likely token after `ids`.
#[derive(Clone, Copy, Debug)]
pub struct PromptRequest<'a> {
    pub ids: &'a [u32],
    pub from: usize,
    pub top: usize,
    pub next: bool,
}

/// Per token of a packed pass, the first token of its record (`starts`
/// empty: all 0).
fn record_start_of_each_token(starts: &[usize], tokens: usize) -> Vec<usize> {
    let mut first = vec![0; tokens];
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(tokens).min(tokens);
        if start < end {
            first[start..end].fill(start);
        }
    }
    first
}

/// Per row of a tile of logits: `(max, Σ e^(x − max))`, and the target's logit if the tile holds it.
type TileStats = Vec<((f32, f64), Option<f32>)>;

/// `log_softmax(hidden · headᵀ)[r, targets[r]]` over tiles of `columns`
/// vocabulary entries and `row_block` rows (CPU). In f32 the tiles of a
/// block of rows are independent tasks on rayon's pool (each a
/// single-threaded product into its own buffer); the running sums are merged
/// in tile order, so the result does not depend on the threads.
fn head_logprobs_tiled(hidden: &Tensor, head: &Head, targets: &[u32], columns: usize, row_block: usize) -> Result<Vec<f32>> {
    let (rows, inputs) = hidden.dims2()?;
    let vocab = match head {
        Head::Tensor(head) => head.dim(0)?,
        Head::Bf16(head) => head.outputs(),
    };
    if targets.len() != rows {
        candle_core::bail!("{rows} hidden rows for {} targets", targets.len());
    }
    if let Some(&bad) = targets.iter().find(|&&id| id as usize >= vocab) {
        candle_core::bail!("token id {bad} is outside the model's vocabulary of {vocab}");
    }
    let (mut columns, row_block) = (columns.max(1), row_block.max(1));
    if matches!(head, Head::Bf16(_)) {
        // bf16 tiles start on a panel of the packed head.
        columns = columns.next_multiple_of(crate::bf16::PANEL);
    }
    let tiles = vocab.div_ceil(columns);
    let f32_cpu = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
    let head_f32 = match head {
        Head::Tensor(head) if f32_cpu(hidden) && f32_cpu(head) => Some(head.contiguous()?),
        _ => None,
    };
    let mut state = vec![RunningLogsumexp::default(); rows];
    for row_start in (0..rows).step_by(row_block) {
        let len = row_block.min(rows - row_start);
        let block = hidden.narrow(0, row_start, len)?.contiguous()?;
        let targets = &targets[row_start..row_start + len];
        // Per tile, per row: (max, Σ e^(x − max)) and the target's logit if in the tile.
        let stats_of = |tile: usize, logits: &[f32]| -> TileStats {
            let (column, width) = (tile * columns, columns.min(vocab - tile * columns));
            logits
                .chunks_exact(width)
                .zip(targets)
                .map(|(row, &target)| {
                    let target = (target as usize).checked_sub(column).filter(|&i| i < width).map(|i| row[i]);
                    (crate::kernels::row_max_and_sum(row), target)
                })
                .collect()
        };
        let stats: Vec<TileStats> = match (&head_f32, head) {
            (_, Head::Bf16(head)) => {
                let block = block.to_dtype(DType::F32)?;
                let x = Bf16Rows::new(cpu_f32(&block)?.values(), len, inputs, head.kernel()).map_err(candle_core::Error::wrap)?;
                (0..tiles)
                    .into_par_iter()
                    .map_init(
                        || (Vec::new(), crate::bf16::Scratch::default()),
                        |(buffer, scratch): &mut (Vec<f32>, crate::bf16::Scratch), tile| {
                            let (column, width) = (tile * columns, columns.min(vocab - tile * columns));
                            buffer.clear();
                            buffer.resize(len * width, 0.0);
                            // SAFETY: `buffer` holds len × width values, owned by this task;
                            // `column` is a multiple of the panel width and column + width ≤ vocab.
                            unsafe { crate::bf16::product(&x, head, column, width, buffer.as_mut_ptr(), width, scratch) };
                            stats_of(tile, buffer)
                        },
                    )
                    .collect()
            }
            (Some(head_f32), _) => {
                let (x, w) = (cpu_f32(&block)?, cpu_f32(head_f32)?);
                let (x, w) = (x.values(), w.values());
                (0..tiles)
                    .into_par_iter()
                    .map_init(Vec::new, |buffer: &mut Vec<f32>, tile| {
                        let (column, width) = (tile * columns, columns.min(vocab - tile * columns));
                        buffer.clear();
                        buffer.resize(len * width, 0.0);
                        // SAFETY: `buffer` holds len × width values, owned by this task;
                        // x is [len, inputs] and the rows of w are those of this tile.
                        unsafe {
                            crate::linear::product(
                                x,
                                &w[column * inputs..(column + width) * inputs],
                                len,
                                inputs,
                                width,
                                buffer.as_mut_ptr(),
                                width,
                            )
                        };
                        stats_of(tile, buffer)
                    })
                    .collect()
            }
            (None, Head::Tensor(head)) => (0..tiles)
                .map(|tile| {
                    let (column, width) = (tile * columns, columns.min(vocab - tile * columns));
                    let logits = block.matmul(&head.narrow(0, column, width)?.t()?)?.to_dtype(DType::F32)?.contiguous()?;
                    let logits = cpu_f32(&logits)?;
                    Ok(stats_of(tile, logits.values()))
                })
                .collect::<Result<_>>()?,
        };
        for tile in stats {
            for (state, (tile_stats, target)) in state[row_start..row_start + len].iter_mut().zip(tile) {
                state.add(tile_stats, target);
            }
        }
    }
    Ok(state.iter().map(RunningLogsumexp::logprob).collect())
}

#[cfg(test)]
mod tests {
    use super::RunningLogsumexp;

    #[test]
    fn running_logsumexp_over_tiles_equals_the_whole_row() {
        let row: Vec<f32> = (0..5000).map(|i| ((i * 7919) % 2003) as f32 / 50.0 - 20.0 + if i == 4321 { 30.0 } else { 0.0 }).collect();
        let max = row.iter().copied().fold(f64::NEG_INFINITY, |m, x| m.max(f64::from(x)));
        let log_z = max + row.iter().map(|&x| (f64::from(x) - max).exp()).sum::<f64>().ln();
        for target in [0usize, 1999, 4321, 4999] {
            for width in [1, 7, 2048, 5000] {
                let mut state = RunningLogsumexp::default();
                for (tile, values) in row.chunks(width).enumerate() {
                    let start = tile * width;
                    let hit = (start..start + values.len()).contains(&target).then(|| row[target]);
                    state.add(crate::kernels::row_max_and_sum(values), hit);
                }
                let want = f64::from(row[target]) - log_z;
                assert!((f64::from(state.logprob()) - want).abs() < 2e-5, "target {target} width {width}: {} vs {want}", state.logprob());
            }
        }
    }

    #[test]
    fn tiled_head_equals_a_plain_log_softmax() {
        use candle_core::{Device, Tensor, D};
        let device = Device::Cpu;
        let (rows, hidden, vocab) = (37, 24, 1000);
        let h = Tensor::randn(0f32, 1.0, (rows, hidden), &device).unwrap();
        let head = Tensor::randn(0f32, 1.0, (vocab, hidden), &device).unwrap();
        let targets: Vec<u32> = (0..rows as u32).map(|r| (r * 331 + 17) % vocab as u32).collect();
        let logprobs = candle_nn::ops::log_softmax(&h.matmul(&head.t().unwrap()).unwrap(), D::Minus1).unwrap();
        let logprobs: Vec<Vec<f32>> = logprobs.to_vec2().unwrap();
        for (columns, row_block) in [(1000, 37), (128, 5), (999, 1), (7, 100), (4096, 16)] {
            let got = super::head_logprobs_tiled(&h, &super::Head::Tensor(head.clone()), &targets, columns, row_block).unwrap();
            for (r, (&g, &target)) in got.iter().zip(&targets).enumerate() {
                let want = logprobs[r][target as usize];
                assert!((g - want).abs() < 2e-5, "columns {columns} rows {row_block}, row {r}: {g} vs {want}");
            }
        }
        // Other dtypes (here f64) go through candle's matmul, tile by tile.
        let (h64, head64) = (h.to_dtype(candle_core::DType::F64).unwrap(), head.to_dtype(candle_core::DType::F64).unwrap());
        let got = super::head_logprobs_tiled(&h64, &super::Head::Tensor(head64), &targets, 300, 8).unwrap();
        for (r, (&g, &target)) in got.iter().zip(&targets).enumerate() {
            let want = logprobs[r][target as usize];
            assert!((g - want).abs() < 2e-5, "f64, row {r}: {g} vs {want}");
        }
        // A bf16 head (every kernel of this CPU): the log-softmax of the
        // products of the bf16-rounded hidden states and head, in f64.
        let head_bf16: Vec<half::bf16> =
            head.flatten_all().unwrap().to_vec1::<f32>().unwrap().into_iter().map(half::bf16::from_f32).collect();
        let rounded: Vec<f64> =
            h.flatten_all().unwrap().to_vec1::<f32>().unwrap().into_iter().map(|x| f64::from(crate::bf16::round_to_bf16(x))).collect();
        for kernel in crate::bf16::Bf16Kernel::available() {
            let packed = crate::bf16::PackedBf16::new(head_bf16.clone(), vocab, hidden, kernel).unwrap();
            for (columns, row_block) in [(1024, 37), (100, 5), (33, 100)] {
                let got = super::head_logprobs_tiled(&h, &super::Head::Bf16(packed.clone()), &targets, columns, row_block).unwrap();
                for (r, (&g, &target)) in got.iter().zip(&targets).enumerate() {
                    let logits: Vec<f64> = (0..vocab)
                        .map(|c| (0..hidden).map(|i| rounded[r * hidden + i] * f64::from(head_bf16[c * hidden + i].to_f32())).sum())
                        .collect();
                    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let want = logits[target as usize] - max - logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
                    assert!((f64::from(g) - want).abs() < 2e-5, "bf16 {kernel:?} columns {columns}, row {r}: {g} vs {want}");
                }
            }
        }
        assert!(super::head_logprobs_tiled(&h, &super::Head::Tensor(head.clone()), &targets[1..], 64, 8).is_err());
        let mut bad = targets.clone();
        bad[3] = vocab as u32;
        assert!(super::head_logprobs_tiled(&h, &super::Head::Tensor(head.clone()), &bad, 64, 8).is_err());
    }
}
