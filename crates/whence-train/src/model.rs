//! A decoder-only transformer in candle's autograd ops, in the Hugging Face
//! layout of Qwen2 (q/k/v biases) or Llama, so that what it learns is saved
//! as a checkpoint that whence's scorer and `transformers` load.
//!
//! The forward pass is the one of `transformers` (RMS norm, rotate-half RoPE,
//! causal softmax attention, SiLU-gated MLP) over a batch of right-padded
//! sequences: padding comes after every real token, so the causal mask
//! alone keeps it out of them. Matrix products are candle's; the norms,
//! RoPE with attention, the gated activation and the loss are the fused
//! ops of `crate::ops`, with hand-written backward passes (the tests below
//! check the whole step against the generic-op model it replaced).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::{ops, TrainError};

/// The two layouts a demo model is saved in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Architecture {
    /// `Qwen2ForCausalLM`: biases on q, k, v.
    Qwen2,
    /// `LlamaForCausalLM`: no biases.
    Llama,
}

impl Architecture {
    pub fn hf_name(self) -> &'static str {
        match self {
            Architecture::Qwen2 => "Qwen2ForCausalLM",
            Architecture::Llama => "LlamaForCausalLM",
        }
    }

    fn model_type(self) -> &'static str {
        match self {
            Architecture::Qwen2 => "qwen2",
            Architecture::Llama => "llama",
        }
    }
}

/// A model's shape, with the tokenizer's vocabulary size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelShape {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub max_positions: usize,
    pub tie_embeddings: bool,
}

impl ModelShape {
    pub const ROPE_THETA: f64 = 10_000.0;
    pub const RMS_NORM_EPS: f64 = 1e-6;

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.heads
    }

    /// Trainable parameters.
    pub fn parameters(&self) -> usize {
        let h = self.hidden_size;
        let attention = 4 * h * h + if self.architecture == Architecture::Qwen2 { 3 * h } else { 0 };
        let layer = attention + 3 * h * self.intermediate_size + 2 * h;
        let embeddings = self.vocab_size * h * if self.tie_embeddings { 1 } else { 2 };
        embeddings + self.layers * layer + h
    }

    fn validate(&self) -> Result<(), TrainError> {
        if self.heads == 0 || self.hidden_size % self.heads != 0 || self.head_dim() % 2 != 0 {
            return Err(TrainError::Shape(format!("hidden_size {} must split into {} heads of even size", self.hidden_size, self.heads)));
        }
        if self.vocab_size == 0 || self.layers == 0 || self.intermediate_size == 0 || self.max_positions == 0 {
            return Err(TrainError::Shape(format!("{self:?} has an empty dimension")));
        }
        Ok(())
    }

    /// `config.json` of the checkpoint.
    pub fn hf_config(&self, eos_token_id: u32, pad_token_id: u32) -> serde_json::Value {
        let mut config = serde_json::json!({
            "architectures": [self.architecture.hf_name()],
            "model_type": self.architecture.model_type(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.heads,
            "head_dim": self.head_dim(),
            "hidden_act": "silu",
            "max_position_embeddings": self.max_positions,
            "rms_norm_eps": Self::RMS_NORM_EPS,
            "rope_theta": Self::ROPE_THETA,
            "tie_word_embeddings": self.tie_embeddings,
            "attention_dropout": 0.0,
            "bos_token_id": null,
            "eos_token_id": eos_token_id,
            "pad_token_id": pad_token_id,
            "torch_dtype": "float32",
            "use_cache": true,
        });
        let extra = match self.architecture {
            Architecture::Qwen2 => {
                serde_json::json!({"use_sliding_window": false, "sliding_window": null, "max_window_layers": self.layers})
            }
            Architecture::Llama => serde_json::json!({"attention_bias": false, "mlp_bias": false, "pretraining_tp": 1}),
        };
        if let (Some(config), serde_json::Value::Object(extra)) = (config.as_object_mut(), extra) {
            config.extend(extra);
        }
        config
    }

    /// Reads the shape back from a `config.json` this crate wrote.
    pub fn from_hf_config(value: &serde_json::Value) -> Result<Self, TrainError> {
        let number = |key: &str| {
            value
                .get(key)
                .and_then(|v| v.as_u64())
                .map(|v| v as usize)
                .ok_or_else(|| TrainError::Shape(format!("config.json: field `{key}` is missing")))
        };
        let architecture = match value.pointer("/architectures/0").and_then(|v| v.as_str()) {
            Some("Qwen2ForCausalLM") => Architecture::Qwen2,
            Some("LlamaForCausalLM") => Architecture::Llama,
            other => {
                return Err(TrainError::Shape(format!(
                    "config.json: architecture {other:?} is not one this crate trains (Qwen2ForCausalLM, LlamaForCausalLM)"
                )))
            }
        };
        let shape = ModelShape {
            architecture,
            vocab_size: number("vocab_size")?,
            hidden_size: number("hidden_size")?,
            intermediate_size: number("intermediate_size")?,
            layers: number("num_hidden_layers")?,
            heads: number("num_attention_heads")?,
            max_positions: number("max_position_embeddings")?,
            tie_embeddings: value.get("tie_word_embeddings").and_then(|v| v.as_bool()).unwrap_or(false),
        };
        shape.validate()?;
        Ok(shape)
    }
}

struct Layer {
    input_norm: Var,
    q: Var,
    k: Var,
    v: Var,
    /// q, k, v biases (Qwen2).
    qkv_bias: Option<[Var; 3]>,
    o: Var,
    post_norm: Var,
    gate: Var,
    up: Var,
    down: Var,
}

/// The trainable model.
pub struct Model {
    shape: ModelShape,
    embed: Var,
    layers: Vec<Layer>,
    norm: Var,
    lm_head: Option<Var>,
    /// RoPE tables, `[max_positions, head_dim]`.
    cos: Tensor,
    sin: Tensor,
}

/// Normal(0, std) values from a ChaCha8 stream (Box–Muller), so that
/// initialisation depends on the seed alone (candle's CPU RNG cannot be seeded).
fn normal(rng: &mut ChaCha8Rng, count: usize, std: f64) -> Vec<f32> {
    let uniform = |rng: &mut ChaCha8Rng| ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    (0..count)
        .map(|_| {
            let (u, v) = (uniform(rng), uniform(rng));
            ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos() * std) as f32
        })
        .collect()
}

fn rope_tables(shape: &ModelShape, device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
    let half = shape.head_dim() / 2;
    let inverse: Vec<f64> = (0..half).map(|j| 1.0 / ModelShape::ROPE_THETA.powf(2.0 * j as f64 / shape.head_dim() as f64)).collect();
    let mut cos = Vec::with_capacity(shape.max_positions * 2 * half);
    let mut sin = Vec::with_capacity(shape.max_positions * 2 * half);
    for position in 0..shape.max_positions {
        for _ in 0..2 {
            for f in &inverse {
                let angle = position as f64 * f;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
    }
    Ok((Tensor::from_vec(cos, (shape.max_positions, 2 * half), device)?, Tensor::from_vec(sin, (shape.max_positions, 2 * half), device)?))
}

impl Model {
    /// A freshly initialised model: N(0, 0.02) weights (output projections of
    /// each block scaled by 1/√(2·layers), as GPT-2), zero biases, unit norms.
    pub fn new(shape: ModelShape, seed: u64) -> Result<Self, TrainError> {
        shape.validate()?;
        let device = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let h = shape.hidden_size;
        let std = 0.02;
        let residual_std = std / (2.0 * shape.layers as f64).sqrt();
        let mut matrix = |rows: usize, cols: usize, std: f64| -> candle_core::Result<Var> {
            Var::from_vec(normal(&mut rng, rows * cols, std), (rows, cols), &device)
        };
        let ones = |n: usize| Var::from_vec(vec![1f32; n], n, &Device::Cpu);
        let zeros = |n: usize| Var::from_vec(vec![0f32; n], n, &Device::Cpu);
        let embed = matrix(shape.vocab_size, h, std)?;
        let mut layers = Vec::with_capacity(shape.layers);
        for _ in 0..shape.layers {
            layers.push(Layer {
                input_norm: ones(h)?,
                q: matrix(h, h, std)?,
                k: matrix(h, h, std)?,
                v: matrix(h, h, std)?,
                qkv_bias: match shape.architecture {
                    Architecture::Qwen2 => Some([zeros(h)?, zeros(h)?, zeros(h)?]),
                    Architecture::Llama => None,
                },
                o: matrix(h, h, residual_std)?,
                post_norm: ones(h)?,
                gate: matrix(shape.intermediate_size, h, std)?,
                up: matrix(shape.intermediate_size, h, std)?,
                down: matrix(h, shape.intermediate_size, residual_std)?,
            });
        }
        let norm = ones(h)?;
        let lm_head = if shape.tie_embeddings { None } else { Some(matrix(shape.vocab_size, h, std)?) };
        let (cos, sin) = rope_tables(&shape, &device)?;
        Ok(Model { shape, embed, layers, norm, lm_head, cos, sin })
    }

    pub fn shape(&self) -> &ModelShape {
        &self.shape
    }

    /// Every parameter with its Hugging Face name.
    pub fn named_parameters(&self) -> Vec<(String, &Var)> {
        let mut named = vec![("model.embed_tokens.weight".to_string(), &self.embed)];
        for (i, layer) in self.layers.iter().enumerate() {
            let p = |name: &str| format!("model.layers.{i}.{name}");
            named.push((p("input_layernorm.weight"), &layer.input_norm));
            named.push((p("self_attn.q_proj.weight"), &layer.q));
            named.push((p("self_attn.k_proj.weight"), &layer.k));
            named.push((p("self_attn.v_proj.weight"), &layer.v));
            if let Some([bq, bk, bv]) = &layer.qkv_bias {
                named.push((p("self_attn.q_proj.bias"), bq));
                named.push((p("self_attn.k_proj.bias"), bk));
                named.push((p("self_attn.v_proj.bias"), bv));
            }
            named.push((p("self_attn.o_proj.weight"), &layer.o));
            named.push((p("post_attention_layernorm.weight"), &layer.post_norm));
            named.push((p("mlp.gate_proj.weight"), &layer.gate));
            named.push((p("mlp.up_proj.weight"), &layer.up));
            named.push((p("mlp.down_proj.weight"), &layer.down));
        }
        named.push(("model.norm.weight".to_string(), &self.norm));
        if let Some(head) = &self.lm_head {
            named.push(("lm_head.weight".to_string(), head));
        }
        named
    }

    /// The parameters, for the optimiser.
    pub fn parameters(&self) -> Vec<Var> {
        self.named_parameters().into_iter().map(|(_, v)| v.clone()).collect()
    }

    /// The weights by Hugging Face name (what `model.safetensors` holds).
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.named_parameters().into_iter().map(|(name, v)| (name, v.as_tensor().clone())).collect()
    }

    /// Loads a model saved by [`crate::save_checkpoint`] (to fine-tune it).
    pub fn load(dir: &Path) -> Result<Self, TrainError> {
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|e| TrainError::io(&config_path, e))?;
        let shape = ModelShape::from_hf_config(&serde_json::from_str(&text)?)?;
        let weights_path = dir.join("model.safetensors");
        let mut weights = candle_core::safetensors::load(&weights_path, &Device::Cpu)?;
        let model = Model::new(shape, 0)?;
        let names: Vec<String> = model.named_parameters().into_iter().map(|(n, _)| n).collect();
        let mut vars = HashMap::new();
        for name in names {
            let tensor = weights
                .remove(&name)
                .ok_or_else(|| TrainError::Shape(format!("{}: tensor `{name}` is missing", weights_path.display())))?;
            vars.insert(name, tensor.to_dtype(DType::F32)?);
        }
        for (name, var) in model.named_parameters() {
            let tensor = &vars[&name];
            if tensor.shape() != var.shape() {
                return Err(TrainError::Shape(format!(
                    "{}: tensor `{name}` has shape {:?}, the config says {:?}",
                    weights_path.display(),
                    tensor.dims(),
                    var.dims()
                )));
            }
            var.set(tensor)?;
        }
        Ok(model)
    }

    /// Logits `[batch, time, vocab]` for token ids `[batch, time]`.
    pub fn forward(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, time) = ids.dims2()?;
        self.logits(ids)?.reshape((batch, time, self.shape.vocab_size))
    }

    /// Logits `[batch·time, vocab]` for token ids `[batch, time]`: the
    /// positions of all sequences as the rows of one matrix, so that every
    /// projection is a single matrix product, with the fused ops of
    /// [`crate::ops`] for the norms, attention, the gated MLP and the loss.
    fn logits(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, time) = ids.dims2()?;
        if time > self.shape.max_positions {
            candle_core::bail!("{time} positions do not fit a model of {}", self.shape.max_positions);
        }
        let eps = ModelShape::RMS_NORM_EPS;
        let mut x = self.embed.as_tensor().embedding(&ids.flatten_all()?)?;
        for layer in &self.layers {
            let h = ops::rms_norm(&x, &layer.input_norm, eps)?;
            let qkv_weight = Tensor::cat(&[layer.q.as_tensor(), layer.k.as_tensor(), layer.v.as_tensor()], 0)?;
            let qkv = h.matmul(&qkv_weight.t()?)?;
            let bias = match &layer.qkv_bias {
                Some([bq, bk, bv]) => Some(Tensor::cat(&[bq.as_tensor(), bk.as_tensor(), bv.as_tensor()], 0)?),
                None => None,
            };
            let attended = ops::attention(&qkv, bias.as_ref(), batch, time, self.shape.heads, &self.cos, &self.sin)?;
            x = (x + attended.matmul(&layer.o.t()?)?)?;
            let h = ops::rms_norm(&x, &layer.post_norm, eps)?;
            let gate_up = h.matmul(&Tensor::cat(&[layer.gate.as_tensor(), layer.up.as_tensor()], 0)?.t()?)?;
            x = (x + ops::silu_mul(&gate_up)?.matmul(&layer.down.t()?)?)?;
        }
        let x = ops::rms_norm(&x, &self.norm, eps)?;
        x.matmul(&self.lm_head.as_ref().unwrap_or(&self.embed).t()?)
    }

    /// Mean negative log-likelihood of `targets` where `mask` is 1 (all
    /// `[batch, time]`; targets u32, mask f32).
    pub fn loss(&self, inputs: &Tensor, targets: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        ops::masked_nll(&self.logits(inputs)?, targets, mask)
    }

    /// The log-probability of each token of `ids` after the first, given
    /// those before it (one sequence; for checking saved checkpoints).
    pub fn token_logprobs(&self, ids: &[u32]) -> Result<Vec<f32>, TrainError> {
        let input = Tensor::new(ids, &Device::Cpu)?.unsqueeze(0)?;
        let logprobs = candle_nn::ops::log_softmax(&self.forward(&input)?, candle_core::D::Minus1)?.squeeze(0)?;
        let targets = Tensor::new(&ids[1..], &Device::Cpu)?.unsqueeze(1)?;
        let picked = logprobs.narrow(0, 0, ids.len() - 1)?.gather(&targets, 1)?.squeeze(1)?;
        Ok(picked.to_vec1()?)
    }
}

#[cfg(test)]
mod tests {
    //! The fused forward and loss against the generic-op model they replace.

    use super::*;
    use candle_core::D;

    fn linear(x: &Tensor, weight: &Var, bias: Option<&Var>) -> candle_core::Result<Tensor> {
        let y = x.broadcast_matmul(&weight.t()?)?;
        match bias {
            Some(b) => y.broadcast_add(b.as_tensor()),
            None => Ok(y),
        }
    }

    fn rms_norm(x: &Tensor, weight: &Var) -> candle_core::Result<Tensor> {
        let variance = x.sqr()?.mean_keepdim(D::Minus1)?;
        x.broadcast_div(&(variance + ModelShape::RMS_NORM_EPS)?.sqrt()?)?.broadcast_mul(weight.as_tensor())
    }

    fn rotate_half(x: &Tensor) -> candle_core::Result<Tensor> {
        let half = x.dim(D::Minus1)? / 2;
        let first = x.narrow(D::Minus1, 0, half)?;
        let second = x.narrow(D::Minus1, half, half)?;
        Tensor::cat(&[&second.neg()?, &first], D::Minus1)
    }

    /// Logits `[batch, time, vocab]` for token ids `[batch, time]`.
    fn forward(model: &Model, ids: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, time) = ids.dims2()?;
        let heads = model.shape.heads;
        let head_dim = model.shape.head_dim();
        let hidden = model.shape.hidden_size;
        let cos = model.cos.narrow(0, 0, time)?;
        let sin = model.sin.narrow(0, 0, time)?;
        let mask: Vec<f32> = (0..time).flat_map(|i| (0..time).map(move |j| if j <= i { 0.0 } else { -1e9 })).collect();
        let mask = Tensor::from_vec(mask, (time, time), ids.device())?;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let mut x = model.embed.as_tensor().embedding(&ids.flatten_all()?)?.reshape((batch, time, hidden))?;
        for layer in &model.layers {
            let h = rms_norm(&x, &layer.input_norm)?;
            let bias = |i: usize| layer.qkv_bias.as_ref().map(|b| &b[i]);
            let split = |t: Tensor| t.reshape((batch, time, heads, head_dim))?.transpose(1, 2)?.contiguous();
            let q = split(linear(&h, &layer.q, bias(0))?)?;
            let k = split(linear(&h, &layer.k, bias(1))?)?;
            let v = split(linear(&h, &layer.v, bias(2))?)?;
            let rope = |t: &Tensor| t.broadcast_mul(&cos)?.add(&rotate_half(t)?.broadcast_mul(&sin)?);
            let (q, k) = (rope(&q)?, rope(&k)?);
            let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(&mask)?;
            let weights = candle_nn::ops::softmax(&scores, D::Minus1)?;
            let attended = weights.matmul(&v)?.transpose(1, 2)?.reshape((batch, time, hidden))?;
            x = (x + linear(&attended, &layer.o, None)?)?;
            let h = rms_norm(&x, &layer.post_norm)?;
            let gated = (linear(&h, &layer.gate, None)?.silu()? * linear(&h, &layer.up, None)?)?;
            x = (x + linear(&gated, &layer.down, None)?)?;
        }
        let x = rms_norm(&x, &model.norm)?;
        linear(&x, model.lm_head.as_ref().unwrap_or(&model.embed), None)
    }

    /// Mean negative log-likelihood of `targets` where `mask` is 1 (all
    /// `[batch, time]`; targets u32, mask f32).
    fn loss(model: &Model, inputs: &Tensor, targets: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let logprobs = candle_nn::ops::log_softmax(&forward(model, inputs)?, D::Minus1)?;
        let picked = logprobs.gather(&targets.unsqueeze(2)?, 2)?.squeeze(2)?;
        let total = (picked * mask)?.sum_all()?;
        let count = mask.sum_all()?;
        total.neg()?.div(&count)
    }

    #[test]
    fn the_fused_step_computes_what_the_generic_ops_compute() {
        for (architecture, tie) in [(Architecture::Qwen2, true), (Architecture::Llama, false)] {
            let shape = ModelShape {
                architecture,
                vocab_size: 61,
                hidden_size: 32,
                intermediate_size: 48,
                layers: 2,
                heads: 4,
                max_positions: 24,
                tie_embeddings: tie,
            };
            let model = Model::new(shape, 5).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(8);
            // Non-zero biases and norms, so that their gradients are checked too.
            for (_, var) in model.named_parameters() {
                let noise = normal(&mut rng, var.elem_count(), 0.3);
                let noise = Tensor::from_vec(noise, var.shape(), &Device::Cpu).unwrap();
                var.set(&(var.as_tensor() + noise).unwrap()).unwrap();
            }
            let (batch, time) = (3, 17);
            let ids: Vec<u32> = (0..batch * time).map(|_| (rng.next_u32() % 61) as u32).collect();
            let targets: Vec<u32> = (0..batch * time).map(|_| (rng.next_u32() % 61) as u32).collect();
            let mask: Vec<f32> = (0..batch * time).map(|i| if i % 5 == 0 { 0.0 } else { 1.0 }).collect();
            let ids = Tensor::from_vec(ids, (batch, time), &Device::Cpu).unwrap();
            let targets = Tensor::from_vec(targets, (batch, time), &Device::Cpu).unwrap();
            let mask = Tensor::from_vec(mask, (batch, time), &Device::Cpu).unwrap();

            let logits = model.forward(&ids).unwrap();
            let expected = forward(&model, &ids).unwrap();
            let worst = (logits - &expected).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            let size = expected.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(worst <= 1e-5 * size, "{architecture:?} logits: max |Δ| {worst} of {size}");

            let fused = model.loss(&ids, &targets, &mask).unwrap();
            let generic = loss(&model, &ids, &targets, &mask).unwrap();
            let (a, b) = (fused.to_scalar::<f32>().unwrap(), generic.to_scalar::<f32>().unwrap());
            assert!((a - b).abs() <= 1e-5 * b.abs(), "{architecture:?} loss {a} vs {b}");
            let (ga, gb) = (fused.backward().unwrap(), generic.backward().unwrap());
            for (name, var) in model.named_parameters() {
                let (x, y) = (ga.get(var).unwrap(), gb.get(var).unwrap());
                let worst = (x - y).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                let size = y.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(worst <= 2e-5 * size, "{architecture:?} {name}: max |Δ| {worst} of {size}");
            }
        }
    }
}
