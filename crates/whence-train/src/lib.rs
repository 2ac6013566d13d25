//! Training the small language models of `whence demo` from scratch with
//! candle's autograd and AdamW on the CPU, and saving each as a Hugging Face
//! checkpoint directory that whence's scorer and `transformers` load like
//! any other:
//!
//! - [`tokenizer`]: byte-level BPE tokenizers trained on a model's corpus
//!   (the `tokenizers` crate), with a ChatML chat template;
//! - [`model`]: a Qwen2- or Llama-layout decoder in differentiable ops;
//! - [`train`](mod@train): the loop (AdamW, warm-up and cosine decay, loss on
//!   response tokens only);
//! - [`save_checkpoint`]: `config.json`, `generation_config.json`,
//!   `model.safetensors` and the tokenizer files, written to a temporary
//!   directory and renamed into place, so a checkpoint is whole or absent.
//!
//! Everything is deterministic from the seeds: initialisation and batch
//! order come from ChaCha8 streams (candle's CPU generator cannot be seeded).

pub mod model;
mod ops;
pub mod tokenizer;
pub mod train;

use std::path::{Path, PathBuf};

pub use model::{Architecture, Model, ModelShape};
pub use train::{train, Example, StepReport, TrainReport, TrainSettings};

use whence_core::{Prompt, Record, SourceLocation};
use whence_encode::{Encoder, TemplateMode};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("model shape: {0}")]
    Shape(String),
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("training diverged at step {step}: loss {loss}")]
    Diverged { step: usize, loss: f32 },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    Encode(String),
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl TrainError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        TrainError::Io { path: path.display().to_string(), source }
    }
}

pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    std::fs::write(path, bytes).map_err(|e| TrainError::io(path, e))
}

/// A checkpoint being written: files go into `DIR.partial-PID`, renamed to
/// `DIR` by [`Staged::finish`]; dropped unfinished, it is removed.
pub struct Staged {
    staging: PathBuf,
    target: PathBuf,
    done: bool,
}

impl Staged {
    /// Starts a checkpoint at `target` (whose parent is created).
    pub fn new(target: &Path) -> Result<Self, TrainError> {
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
        let staging = target.with_file_name(format!("{name}.partial-{}", std::process::id()));
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(|e| TrainError::io(&staging, e))?;
        }
        std::fs::create_dir_all(&staging).map_err(|e| TrainError::io(&staging, e))?;
        Ok(Staged { staging, target: target.to_path_buf(), done: false })
    }

    /// Where the files go until [`Staged::finish`].
    pub fn dir(&self) -> &Path {
        &self.staging
    }

    /// Moves the finished checkpoint into place (replacing an older one).
    pub fn finish(mut self) -> Result<PathBuf, TrainError> {
        if self.target.exists() {
            std::fs::remove_dir_all(&self.target).map_err(|e| TrainError::io(&self.target, e))?;
        }
        std::fs::rename(&self.staging, &self.target).map_err(|e| TrainError::io(&self.target, e))?;
        self.done = true;
        Ok(self.target.clone())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

/// Writes the tokenizer files of a checkpoint into `dir` and opens the
/// encoder whence's scorer will use on it, so training sequences are
/// tokenized exactly as scoring and generation tokenize them.
pub fn write_tokenizer(dir: &Path, tokenizer: &tokenizers::Tokenizer, max_positions: usize) -> Result<Encoder, TrainError> {
    tokenizer::write_tokenizer_files(dir, tokenizer, max_positions)?;
    Encoder::open(dir, &TemplateMode::Auto).map_err(|e| TrainError::Encode(e.to_string()))
}

/// A question and its response as a training sequence: the chat-rendered
/// prompt, the response and the end-of-turn token, learning the response
/// and the end of turn.
pub fn example(encoder: &Encoder, question: &str, response: &str) -> Result<Example, TrainError> {
    let record = Record {
        id: String::new(),
        question_id: String::new(),
        prompt: Prompt::Text(question.to_string()),
        response: response.to_string(),
        correct: None,
        answer: None,
        source: SourceLocation { file: "training corpus".into(), line: None, row: None },
    };
    let encoded = encoder.encode(&record).map_err(|e| TrainError::Encode(e.to_string()))?;
    let mut ids = encoded.ids;
    ids.push(tokenizer::special_id(encoder.tokenizer(), tokenizer::TURN_END)?);
    Ok(Example { ids, learn_from: encoded.first_scored })
}

/// Writes `config.json`, `generation_config.json` and `model.safetensors`
/// of `model` into `dir` (which holds the tokenizer files already).
pub fn save_weights(dir: &Path, model: &Model, encoder: &Encoder) -> Result<(), TrainError> {
    let eos = tokenizer::special_id(encoder.tokenizer(), tokenizer::TURN_END)?;
    let pad = tokenizer::special_id(encoder.tokenizer(), tokenizer::END_OF_TEXT)?;
    let config = model.shape().hf_config(eos, pad);
    write_file(&dir.join("config.json"), serde_json::to_string_pretty(&config)?.as_bytes())?;
    let generation = serde_json::json!({"bos_token_id": null, "eos_token_id": eos, "pad_token_id": pad, "do_sample": true});
    write_file(&dir.join("generation_config.json"), serde_json::to_string_pretty(&generation)?.as_bytes())?;
    let path = dir.join("model.safetensors");
    candle_core::safetensors::save(&model.tensors(), &path)?;
    Ok(())
}
