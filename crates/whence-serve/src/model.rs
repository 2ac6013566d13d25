//! The served model: the checkpoint's decoder and tokenizer, scored one
//! request at a time.

use std::path::Path;
use std::sync::Mutex;

use whence_checkpoint::ranks::PromptLogprobs;
use whence_checkpoint::weights::open_weights;
use whence_checkpoint::{CheckpointError, CheckpointOptions, Config, Decoder, Encoder, TemplateMode};

/// What one prompt's scoring returns.
pub type PromptScores = PromptLogprobs;

/// A loaded checkpoint.
pub struct Model {
    name: String,
    config: Config,
    encoder: Encoder,
    decoder: Mutex<Decoder>,
    created: u64,
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
        Ok(Model { name, config, encoder, decoder: Mutex::new(decoder), created })
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

    /// The longest sequence scored (`max_position_embeddings`).
    pub fn max_len(&self) -> usize {
        self.config.max_position_embeddings
    }

    /// Token ids of a text prompt, with the tokenizer's special tokens.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, String> {
        self.encoder.tokenizer().encode(text, true).map(|e| e.get_ids().to_vec()).map_err(|e| format!("cannot tokenize the prompt: {e}"))
    }

    /// The text of one token, as vLLM's `decoded_token`.
    pub fn token_text(&self, id: u32) -> String {
        self.encoder.tokenizer().decode(&[id], false).unwrap_or_default()
    }

    /// Scores every token of `ids` after the first (waits for the model when
    /// another request holds it).
    pub fn score(&self, ids: &[u32], top: usize, next: bool) -> Result<PromptScores, String> {
        let decoder = self.decoder.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        decoder.prompt_logprobs(ids, 1, top, next).map_err(|e| format!("scoring failed: {e}"))
    }
}
