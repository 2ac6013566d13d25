//! `config.json` of a Hugging Face checkpoint, with HF's field names.
//!
//! Both the transformers 4 form (`rope_theta`, `rope_scaling`) and the
//! transformers 5 form (`rope_parameters`) are read.

use std::path::Path;

use serde::Deserialize;

use crate::CheckpointError;

/// The architectures this decoder implements, by `architectures[0]`.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["Qwen2ForCausalLM", "Qwen3ForCausalLM", "LlamaForCausalLM", "MistralForCausalLM"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Qwen2,
    Qwen3,
    Llama,
    Mistral,
}

/// RoPE frequency scaling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    None,
    /// Llama 3's piecewise scaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

/// The decoder's shape and options.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Bias on the q, k, v projections.
    pub qkv_bias: bool,
    /// Bias on the output projection.
    pub o_bias: bool,
    pub mlp_bias: bool,
    /// Per-head RMS norm of q and k (Qwen3).
    pub qk_norm: bool,
    /// Per layer: the sliding window of its attention, if any.
    pub sliding_window: Vec<Option<usize>>,
}

#[derive(Debug, Deserialize)]
struct RawConfig {
    architectures: Option<Vec<String>>,
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_scaling: Option<serde_json::Value>,
    rope_parameters: Option<serde_json::Value>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    hidden_act: Option<String>,
    sliding_window: Option<usize>,
    use_sliding_window: Option<bool>,
    max_window_layers: Option<usize>,
    layer_types: Option<Vec<String>>,
}

impl Config {
    /// Reads `dir/config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self, CheckpointError> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|source| CheckpointError::Io { path: path.display().to_string(), source })?;
        Config::from_json(&text, &path.display().to_string())
    }

    /// Parses a config's JSON text; `origin` names it in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Self, CheckpointError> {
        let invalid = |message: String| CheckpointError::Config { path: origin.to_string(), message };
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| invalid(format!("not a valid config: {e}")))?;
        let architecture_name = raw
            .architectures
            .as_ref()
            .and_then(|a| a.first())
            .ok_or_else(|| invalid(format!("field `architectures` is missing; supported: {}", SUPPORTED_ARCHITECTURES.join(", "))))?;
        let architecture = match architecture_name.as_str() {
            "Qwen2ForCausalLM" => Architecture::Qwen2,
            "Qwen3ForCausalLM" => Architecture::Qwen3,
            "LlamaForCausalLM" => Architecture::Llama,
            "MistralForCausalLM" => Architecture::Mistral,
            other => {
                return Err(invalid(format!(
                    "field `architectures`: unsupported architecture `{other}`; supported: {}",
                    SUPPORTED_ARCHITECTURES.join(", ")
                )))
            }
        };
        let required = |value: Option<usize>, name: &str| value.ok_or_else(|| invalid(format!("field `{name}` is missing")));
        let hidden_size = required(raw.hidden_size, "hidden_size")?;
        let num_attention_heads = required(raw.num_attention_heads, "num_attention_heads")?;
        let num_key_value_heads = raw.num_key_value_heads.unwrap_or(num_attention_heads);
        if num_attention_heads == 0 || num_key_value_heads == 0 || num_attention_heads % num_key_value_heads != 0 {
            return Err(invalid(format!(
                "num_attention_heads = {num_attention_heads} is not a positive multiple of num_key_value_heads = {num_key_value_heads}"
            )));
        }
        let head_dim = raw.head_dim.unwrap_or(hidden_size / num_attention_heads);
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(invalid(format!("head_dim = {head_dim} must be even and positive")));
        }
        if let Some(act) = raw.hidden_act.as_deref() {
            if act != "silu" {
                return Err(invalid(format!("field `hidden_act`: `{act}` is not supported; supported: silu")));
            }
        }
        let rope = raw.rope_parameters.as_ref().or(raw.rope_scaling.as_ref());
        let rope_theta = raw
            .rope_theta
            .or_else(|| raw.rope_parameters.as_ref().and_then(|p| p.get("rope_theta")).and_then(|v| v.as_f64()))
            .unwrap_or(10_000.0);
        let rope_scaling = match rope {
            None | Some(serde_json::Value::Null) => RopeScaling::None,
            Some(value) => {
                let kind = value.get("rope_type").or_else(|| value.get("type")).and_then(|v| v.as_str()).unwrap_or("default");
                let number = |key: &str| {
                    value.get(key).and_then(|v| v.as_f64()).ok_or_else(|| invalid(format!("rope `{kind}`: field `{key}` is missing")))
                };
                match kind {
                    "default" => RopeScaling::None,
                    "llama3" => RopeScaling::Llama3 {
                        factor: number("factor")?,
                        low_freq_factor: number("low_freq_factor")?,
                        high_freq_factor: number("high_freq_factor")?,
                        original_max_position_embeddings: number("original_max_position_embeddings")?,
                    },
                    other => return Err(invalid(format!("rope type `{other}` is not supported; supported: default, llama3"))),
                }
            }
        };
        let num_hidden_layers = required(raw.num_hidden_layers, "num_hidden_layers")?;
        let sliding_window = (0..num_hidden_layers)
            .map(|layer| {
                let window = raw.sliding_window?;
                match (&raw.layer_types, architecture) {
                    (Some(types), _) => (types.get(layer).map(String::as_str) == Some("sliding_attention")).then_some(window),
                    (None, Architecture::Mistral) => Some(window),
                    (None, Architecture::Qwen2 | Architecture::Qwen3) => {
                        let from = raw.max_window_layers.unwrap_or(num_hidden_layers);
                        (raw.use_sliding_window == Some(true) && layer >= from).then_some(window)
                    }
                    (None, Architecture::Llama) => None,
                }
            })
            .collect();
        let attention_bias = raw.attention_bias.unwrap_or(false);
        Ok(Config {
            architecture,
            vocab_size: required(raw.vocab_size, "vocab_size")?,
            hidden_size,
            intermediate_size: required(raw.intermediate_size, "intermediate_size")?,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(usize::MAX),
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            qkv_bias: architecture == Architecture::Qwen2 || attention_bias,
            o_bias: architecture != Architecture::Qwen2 && attention_bias,
            mlp_bias: raw.mlp_bias.unwrap_or(false),
            qk_norm: architecture == Architecture::Qwen3,
            sliding_window,
        })
    }

    /// RoPE inverse frequencies (length head_dim / 2), in f64.
    pub fn inverse_frequencies(&self) -> Vec<f64> {
        let dim = self.head_dim as f64;
        let base: Vec<f64> = (0..self.head_dim / 2).map(|j| 1.0 / self.rope_theta.powf(2.0 * j as f64 / dim)).collect();
        match self.rope_scaling {
            RopeScaling::None => base,
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings: old } => {
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                base.into_iter()
                    .map(|freq| {
                        let wavelen = 2.0 * std::f64::consts::PI / freq;
                        if wavelen < high_wavelen {
                            freq
                        } else if wavelen > low_wavelen {
                            freq / factor
                        } else {
                            let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * freq / factor + smooth * freq
                        }
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_architecture_lists_the_supported_ones() {
        let error = Config::from_json(r#"{"architectures": ["GPT2LMHeadModel"]}"#, "c.json").unwrap_err().to_string();
        assert_eq!(
            error,
            "c.json: field `architectures`: unsupported architecture `GPT2LMHeadModel`; supported: Qwen2ForCausalLM, Qwen3ForCausalLM, LlamaForCausalLM, MistralForCausalLM"
        );
    }

    #[test]
    fn reads_old_and_new_rope_keys() {
        let base = r#""architectures": ["LlamaForCausalLM"], "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
            "num_hidden_layers": 1, "num_attention_heads": 2"#;
        let old = Config::from_json(&format!(r#"{{{base}, "rope_theta": 500000.0, "rope_scaling": {{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}}}"#), "c").unwrap();
        let new = Config::from_json(&format!(r#"{{{base}, "rope_parameters": {{"rope_theta": 500000.0, "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}}}"#), "c").unwrap();
        assert_eq!(old, new);
        assert_eq!(old.rope_theta, 500000.0);
        assert_eq!(old.head_dim, 4);
        assert_eq!(old.num_key_value_heads, 2);
    }
}
