//! One decoder for Qwen2, Qwen3, Llama and Mistral, made for scoring: a
//! teacher-forced pass over all positions, no KV cache, and bounded memory.
//!
//! Nothing of size `[sequence × vocabulary]` or `[heads × sequence ×
//! sequence]` is ever built: attention runs over blocks of queries, the MLP
//! over blocks of positions, and the output head over blocks of positions,
//! each block sized to stay within [`BLOCK_BYTES`]. RoPE tables are computed
//! in f64 and applied in f32 whatever the compute dtype.

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Embedding, Linear, RmsNorm, VarBuilder};

use crate::config::Config;

/// The memory one block of attention scores or head logits may take.
pub const BLOCK_BYTES: usize = 64 << 20;

type Result<T> = candle_core::Result<T>;

struct Attention {
    /// q, k and v projections fused into one (rows: q, then k, then v).
    qkv: Linear,
    o: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    window: Option<usize>,
}

struct Mlp {
    /// gate and up projections fused into one (rows: gate, then up).
    gate_up: Linear,
    intermediate: usize,
    down: Linear,
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

struct Layer {
    input_norm: RmsNorm,
    attention: Attention,
    post_attention_norm: RmsNorm,
    mlp: Mlp,
}

/// A loaded model, ready to score token sequences.
pub struct Decoder {
    embed: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    head: Tensor,
    inverse_frequencies: Vec<f64>,
    dtype: DType,
    device: Device,
    vocab_size: usize,
}

impl Attention {
    fn load(config: &Config, layer: usize, vb: VarBuilder) -> Result<Self> {
        let (h, nh, nkv, hd) = (config.hidden_size, config.num_attention_heads, config.num_key_value_heads, config.head_dim);
        let norm = |name: &str| candle_nn::rms_norm(hd, config.rms_norm_eps, vb.pp(name));
        let q = candle_nn::linear_b(h, nh * hd, config.qkv_bias, vb.pp("q_proj"))?;
        let k = candle_nn::linear_b(h, nkv * hd, config.qkv_bias, vb.pp("k_proj"))?;
        let v = candle_nn::linear_b(h, nkv * hd, config.qkv_bias, vb.pp("v_proj"))?;
        Ok(Attention {
            qkv: fuse(&[q, k, v])?,
            o: candle_nn::linear_b(nh * hd, h, config.o_bias, vb.pp("o_proj"))?,
            q_norm: if config.qk_norm { Some(norm("q_norm")?) } else { None },
            k_norm: if config.qk_norm { Some(norm("k_norm")?) } else { None },
            heads: nh,
            kv_heads: nkv,
            head_dim: hd,
            window: config.sliding_window[layer],
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

    fn forward(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let t = x.dim(0)?;
        let (q_width, kv_width) = (self.heads * self.head_dim, self.kv_heads * self.head_dim);
        let qkv = self.qkv.forward(x)?;
        let q = self.heads_of(qkv.narrow(1, 0, q_width)?, self.q_norm.as_ref(), self.heads, Some((cos, sin)))?;
        let k = self.heads_of(qkv.narrow(1, q_width, kv_width)?, self.k_norm.as_ref(), self.kv_heads, Some((cos, sin)))?;
        let v = self.heads_of(qkv.narrow(1, q_width + kv_width, kv_width)?, None, self.kv_heads, None)?;
        let group = self.heads / self.kv_heads;
        // Heads h = j·group + i share kv head j (transformers' repeat_kv).
        let q = q.reshape((self.kv_heads, group, t, self.head_dim))?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let block = (BLOCK_BYTES / (4 * self.heads * t.max(1))).clamp(1, 512);
        let mut outputs = Vec::with_capacity(t.div_ceil(block));
        let mut start = 0;
        while start < t {
            let len = block.min(t - start);
            let end = start + len;
            let key_start = self.window.map_or(0, |w| start.saturating_sub(w.saturating_sub(1)));
            let keys = end - key_start;
            let q_block = q.narrow(2, start, len)?.reshape((self.kv_heads, group * len, self.head_dim))?;
            let k_block = k.narrow(1, key_start, keys)?;
            let v_block = v.narrow(1, key_start, keys)?;
            let scores = (q_block.matmul(&k_block.t()?)? * scale)?.to_dtype(DType::F32)?;
            let probabilities = if x.device().is_cpu() {
                // In place, row by row, with each row's causal limit.
                let scores = scores.contiguous()?;
                crate::kernels::expect_shape(scores.shape(), self.kv_heads * group, len, keys)?;
                scores.inplace_op1(&crate::kernels::CausalSoftmax {
                    rows: len,
                    keys,
                    first_query: start,
                    key_start,
                    window: self.window,
                })?;
                scores
            } else {
                let scores = scores.reshape((self.kv_heads, group, len, keys))?;
                let mask = self.mask(start, len, key_start, keys, x.device())?;
                candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&mask)?)?
            };
            let probabilities = probabilities.to_dtype(v.dtype())?.reshape((self.kv_heads, group * len, keys))?;
            let out = probabilities.matmul(&v_block)?.reshape((self.heads, len, self.head_dim))?;
            outputs.push(out);
            start = end;
        }
        let out = Tensor::cat(&outputs, 1)?.transpose(0, 1)?.reshape((t, self.heads * self.head_dim))?;
        self.o.forward(&out)
    }

    /// 0 where query `start + i` may see key `key_start + j`, −∞ elsewhere.
    fn mask(&self, start: usize, len: usize, key_start: usize, keys: usize, device: &Device) -> Result<Tensor> {
        let mut values = vec![0f32; len * keys];
        for i in 0..len {
            let query = start + i;
            for j in 0..keys {
                let key = key_start + j;
                let visible = key <= query && self.window.is_none_or(|w| query - key < w);
                if !visible {
                    values[i * keys + j] = f32::NEG_INFINITY;
                }
            }
        }
        Tensor::from_vec(values, (len, keys), device)
    }
}

impl Mlp {
    fn load(config: &Config, vb: VarBuilder) -> Result<Self> {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        let gate = candle_nn::linear_b(h, i, config.mlp_bias, vb.pp("gate_proj"))?;
        let up = candle_nn::linear_b(h, i, config.mlp_bias, vb.pp("up_proj"))?;
        Ok(Mlp { gate_up: fuse(&[gate, up])?, intermediate: i, down: candle_nn::linear_b(i, h, config.mlp_bias, vb.pp("down_proj"))? })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate_up = self.gate_up.forward(x)?;
        let gate = gate_up.narrow(1, 0, self.intermediate)?;
        let up = gate_up.narrow(1, self.intermediate, self.intermediate)?;
        let gated = (candle_nn::ops::silu(&gate)? * up)?;
        self.down.forward(&gated)
    }
}

impl Layer {
    fn forward(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, intermediate: usize) -> Result<Tensor> {
        let attended = self.attention.forward(&self.input_norm.forward(x)?, cos, sin)?;
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
    /// Builds the decoder from weights under `vb` (HF names: `model.…`, `lm_head.weight`).
    pub fn load(config: &Config, vb: VarBuilder) -> Result<Self> {
        let model = vb.pp("model");
        let embed = candle_nn::embedding(config.vocab_size, config.hidden_size, model.pp("embed_tokens"))?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let layer = model.pp(format!("layers.{i}"));
            layers.push(Layer {
                input_norm: candle_nn::rms_norm(config.hidden_size, config.rms_norm_eps, layer.pp("input_layernorm"))?,
                attention: Attention::load(config, i, layer.pp("self_attn"))?,
                post_attention_norm: candle_nn::rms_norm(config.hidden_size, config.rms_norm_eps, layer.pp("post_attention_layernorm"))?,
                mlp: Mlp::load(config, layer.pp("mlp"))?,
            });
        }
        let norm = candle_nn::rms_norm(config.hidden_size, config.rms_norm_eps, model.pp("norm"))?;
        let head = if config.tie_word_embeddings && !vb.contains_tensor("lm_head.weight") {
            embed.embeddings().clone()
        } else {
            vb.pp("lm_head").get((config.vocab_size, config.hidden_size), "weight")?
        };
        Ok(Decoder {
            embed,
            layers,
            norm,
            head,
            inverse_frequencies: config.inverse_frequencies(),
            dtype: vb.dtype(),
            device: vb.device().clone(),
            vocab_size: config.vocab_size,
        })
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    fn rope_tables(&self, t: usize) -> Result<(Tensor, Tensor)> {
        let half = self.inverse_frequencies.len();
        let mut cos = Vec::with_capacity(t * half);
        let mut sin = Vec::with_capacity(t * half);
        for position in 0..t {
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
        let t = ids.len();
        let from = from.max(1);
        if from >= t {
            return Ok(Vec::new());
        }
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            candle_core::bail!("token id {bad} is outside the model's vocabulary of {}", self.vocab_size);
        }
        let input = Tensor::new(ids, &self.device)?;
        let mut x = self.embed.forward(&input)?;
        let (cos, sin) = self.rope_tables(t)?;
        let intermediate = self.layers.first().map_or(1, |l| l.mlp.intermediate);
        for layer in &self.layers {
            x = layer.forward(&x, &cos, &sin, intermediate)?;
        }
        // Only the positions that predict a scored token go through the head.
        let hidden = self.norm.forward(&x.narrow(0, from - 1, t - from)?)?;
        let rows = t - from;
        let block = (BLOCK_BYTES / (4 * self.vocab_size)).clamp(1, 1024);
        let head_t = self.head.t()?;
        let mut out = Vec::with_capacity(rows);
        let mut start = 0;
        while start < rows {
            let len = block.min(rows - start);
            let logits = hidden.narrow(0, start, len)?.matmul(&head_t)?.to_dtype(DType::F32)?;
            let targets = &ids[from + start..from + start + len];
            if self.device.is_cpu() {
                let logits = logits.flatten_all()?.to_vec1::<f32>()?;
                out.extend(crate::kernels::target_logprobs(&logits, self.vocab_size, targets));
            } else {
                let logprobs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
                let targets = Tensor::new(targets, &self.device)?.unsqueeze(1)?;
                out.extend(logprobs.gather(&targets, 1)?.squeeze(1)?.to_vec1::<f32>()?);
            }
            start += len;
        }
        Ok(out)
    }
}
