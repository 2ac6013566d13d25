//! The served model: the checkpoint's decoder and tokenizer. A request
//! takes the decoder for as long as it runs ([`Model::session`]), so
//! requests are answered one at a time.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use whence_checkpoint::ranks::PromptLogprobs;
use whence_checkpoint::weights::open_weights;
use whence_checkpoint::{CheckpointError, CheckpointOptions, Config, Continuation, Decoder, Encoder, NextToken, TemplateMode};

/// What one prompt's scoring returns.
pub type PromptScores = PromptLogprobs;

/// A loaded checkpoint.
pub struct Model {
    name: String,
    config: Config,
    encoder: Encoder,
    decoder: Mutex<Decoder>,
    stop_token_ids: Vec<u32>,
    created: u64,
}

/// The decoder, held by one request until it is dropped.
pub struct Session<'a> {
    decoder: MutexGuard<'a, Decoder>,
}

impl Model {
    pub fn load(dir: &Path, options: CheckpointOptions, name: String) -> Result<Self, CheckpointError> {
        let config = Config::from_dir(dir)?;
        // Text prompts are tokenized as vLLM does (special tokens added);
        // the chat template is the client's business.
        let encoder = Encoder::open(dir, &TemplateMode::Raw)?;
        let vb = open_weights(dir, options.dtype, &options.device)?;
        let decoder =
            Decoder::load(&config, vb).map_err(|e| CheckpointError::Model(format!("{}: cannot load the weights: {e}", dir.display())))?;
        let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let stop_token_ids = encoder.stop_token_ids();
        Ok(Model { name, config, encoder, decoder: Mutex::new(decoder), stop_token_ids, created })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn created(&self) -> u64 {
        self.created
    }

    pub fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    /// The longest sequence, prompt and completion together (`max_position_embeddings`).
    pub fn max_len(&self) -> usize {
        self.config.max_position_embeddings
    }

    /// The model's EOS and end-of-turn tokens (`eos_token_id` of
    /// generation_config.json and config.json, `eos_token` of
    /// tokenizer_config.json): they end a completion unless `ignore_eos`.
    pub fn stop_token_ids(&self) -> &[u32] {
        &self.stop_token_ids
    }

    /// Token ids of a text prompt, with the tokenizer's special tokens.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, String> {
        self.encoder.tokenizer().encode(text, true).map(|e| e.get_ids().to_vec()).map_err(|e| format!("cannot tokenize the prompt: {e}"))
    }

    /// The text of one token, as vLLM's `decoded_token`.
    pub fn token_text(&self, id: u32) -> String {
        self.encoder.tokenizer().decode(&[id], false).unwrap_or_default()
    }

    /// The text of `ids`, special tokens dropped or kept (the whole
    /// sequence at once, so that characters split over tokens come out whole).
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, String> {
        self.encoder.tokenizer().decode(ids, skip_special_tokens).map_err(|e| format!("cannot decode tokens: {e}"))
    }

    /// Takes the decoder (waits while another request holds it).
    pub fn session(&self) -> Session<'_> {
        Session { decoder: self.decoder.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) }
    }

    /// Scores every token of `ids` after the first (waits for the model when
    /// another request holds it).
    pub fn score(&self, ids: &[u32], top: usize, next: bool) -> Result<PromptScores, String> {
        self.session().score(ids, top, next)
    }
}

impl Session<'_> {
    /// Scores every token of `ids` after the first: log-probability, rank
    /// and the `top` most likely tokens; with `next` the most likely token
    /// after `ids`.
    pub fn score(&self, ids: &[u32], top: usize, next: bool) -> Result<PromptScores, String> {
        self.decoder.prompt_logprobs(ids, 1, top, next).map_err(|e| format!("scoring failed: {e}"))
    }

    /// `sequences` continuations of `prompt` decoded together, drawn by `next`.
    pub fn generate(
        &self,
        prompt: &[u32],
        sequences: usize,
        max_new_tokens: usize,
        next: &mut dyn NextToken,
    ) -> Result<Vec<Continuation>, String> {
        self.decoder.generate(prompt, sequences, max_new_tokens, next).map_err(|e| format!("generation failed: {e}"))
    }

    /// Bytes of KV cache per token of one continuation.
    pub fn kv_bytes_per_token(&self) -> usize {
        self.decoder.kv_bytes_per_token()
    }

    /// Whether the model runs on the CPU (its KV cache then takes main memory).
    pub fn on_cpu(&self) -> bool {
        self.decoder.device().is_cpu()
    }
}
