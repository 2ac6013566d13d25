//! In-process generation from a checkpoint directory: the decoder's KV-cache
//! decoding ([`whence_checkpoint::generate`]) with whence's token sampler.
//!
//! The samples of one question are decoded together (one prefill of the
//! prompt, then batched steps); each draws from its own stream, so the
//! output depends only on the model, the settings and the seed, not on the
//! thread count (every product is computed the same way whatever the
//! threads) nor on the other questions.

use std::path::Path;

use whence_checkpoint::{CheckpointOptions, CheckpointScorer, Decoder, NextToken};
use whence_encode::Encoder;
use whence_sample::{choice_seed, TokenSampler};
use whence_score::{ModelInfo, Scorer};

use crate::{FinishReason, GenerateError, Generator, Request, Sample};

/// Draws each continuation from its own sampler and ends it at a stop token
/// or stop string.
struct Policy<'a> {
    samplers: Vec<TokenSampler>,
    request: &'a Request,
    encoder: &'a Encoder,
}

impl NextToken for Policy<'_> {
    fn choose(&mut self, sequence: usize, logits: &[f32]) -> u32 {
        self.samplers[sequence].sample(logits)
    }

    fn finished(&mut self, _sequence: usize, tokens: &[u32]) -> bool {
        if tokens.last().is_some_and(|t| self.request.stop_token_ids.contains(t)) {
            return true;
        }
        if self.request.stop.is_empty() {
            return false;
        }
        // The whole text each time: a stop string may span tokens, and a
        // token's text can depend on its neighbours (UTF-8 split over tokens).
        self.encoder.decode(tokens).is_ok_and(|text| crate::text::first_stop(&text, &self.request.stop).is_some())
    }
}

/// `request.samples` samples continuing `prompt`, decoded together.
pub fn sample_continuations(decoder: &Decoder, encoder: &Encoder, prompt: &[u32], request: &Request) -> candle_core::Result<Vec<Sample>> {
    let samplers = (0..request.samples).map(|k| TokenSampler::new(request.params, choice_seed(request.request_seed, k))).collect();
    let mut policy = Policy { samplers, request, encoder };
    let continuations = decoder.generate(prompt, request.samples, request.max_new_tokens, &mut policy)?;
    Ok(continuations
        .into_iter()
        .map(|c| Sample {
            tokens: c.tokens,
            logprobs: c.logprobs,
            finish_reason: if c.stopped { FinishReason::Stop } else { FinishReason::Length },
        })
        .collect())
}

/// A checkpoint directory generating in-process; its fingerprint is the
/// checkpoint scorer's (config, tokenizer, template, dtype, weights).
pub struct CheckpointGenerator {
    scorer: CheckpointScorer,
}

impl CheckpointGenerator {
    pub fn open(dir: &Path, options: CheckpointOptions) -> Result<Self, GenerateError> {
        let scorer = CheckpointScorer::open(dir, options).map_err(|e| GenerateError::Usage(e.to_string()))?;
        Ok(CheckpointGenerator { scorer })
    }
}

impl Generator for CheckpointGenerator {
    fn info(&self) -> &ModelInfo {
        self.scorer.info()
    }

    fn encoder(&self) -> &Encoder {
        self.scorer.encoder()
    }

    fn context_length(&self) -> Option<usize> {
        Some(self.scorer.config().max_position_embeddings)
    }

    fn generate(&mut self, prompt: &[u32], request: &Request, location: &str) -> Result<Vec<Sample>, GenerateError> {
        let source = self.scorer.dir().display().to_string();
        let (decoder, encoder) = self.scorer.decoder_and_encoder()?;
        sample_continuations(decoder, encoder, prompt, request)
            .map_err(|e| GenerateError::Failed(format!("{source}: generating for {location}: {e}")))
    }

    fn release(&mut self) {
        self.scorer.release();
    }

    fn kv_bytes_per_token(&mut self) -> Result<Option<usize>, GenerateError> {
        Ok(Some(self.scorer.decoder()?.kv_bytes_per_token()))
    }
}
