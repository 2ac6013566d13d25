//! In-process generation from a checkpoint directory: the decoder's KV-cache
//! decoding ([`whence_checkpoint::generate`]) with whence's token sampler.
//!
//! The samples of one question are decoded together (one prefill of the
//! prompt, then batched steps); each draws from its own stream, so the
//! output depends only on the model, the settings and the seed, not on the
//! thread count (every product is computed the same way whatever the
//! threads) nor on the other questions.

use std::path::Path;

use whence_checkpoint::{CheckpointOptions, CheckpointScorer, Decoder, NextToken, PromptJob};
use whence_encode::{Encoder, TextStream};
use whence_sample::{choice_seed, TokenSampler};
use whence_score::{ModelInfo, Scorer};

use crate::{FinishReason, GenerateError, Generator, Job, JobResult, Request, Sample};

/// Where one continuation stands against its request's stop rule: its text
/// so far, decoded in the context of its prompt (SPEC §10), so that a stop
/// string is found in the text the record will hold.
struct StopRule<'a> {
    request: &'a Request,
    text: Option<TextStream<'a>>,
}

impl<'a> StopRule<'a> {
    fn new(request: &'a Request, encoder: &'a Encoder, prompt: &[u32]) -> Self {
        // Without stop strings the text is not needed; a prompt the stream
        // cannot decode only means no stop string is found (the response's
        // own decoding reports the error).
        let text = if request.stop.is_empty() { None } else { encoder.text_stream(prompt).ok() };
        StopRule { request, text }
    }

    /// Whether the continuation ends with `token`, just drawn: a stop token,
    /// or a stop string in its text.
    fn ends_with(&mut self, token: u32) -> bool {
        if self.request.stop_token_ids.contains(&token) {
            return true;
        }
        let Some(text) = &mut self.text else { return false };
        text.push(token).is_ok() && crate::text::first_stop(text.text(), &self.request.stop).is_some()
    }
}

/// Draws each continuation from its own sampler and ends it by its stop
/// rule (continuation `s` is the `s`-th added).
struct Policy<'a> {
    samplers: Vec<TokenSampler>,
    rules: Vec<StopRule<'a>>,
}

impl NextToken for Policy<'_> {
    fn choose(&mut self, sequence: usize, logits: &[f32]) -> u32 {
        self.samplers[sequence].sample(logits)
    }

    fn finished(&mut self, sequence: usize, tokens: &[u32]) -> bool {
        tokens.last().is_some_and(|&token| self.rules[sequence].ends_with(token))
    }
}

impl<'a> Policy<'a> {
    /// The policy of `request.samples` samples of `prompt`, after those already added.
    fn add(&mut self, encoder: &'a Encoder, prompt: &[u32], request: &'a Request) {
        for k in 0..request.samples {
            self.samplers.push(TokenSampler::new(request.params, choice_seed(request.request_seed, k)));
            self.rules.push(StopRule::new(request, encoder, prompt));
        }
    }
}

/// `request.samples` samples continuing `prompt`, decoded together.
pub fn sample_continuations(decoder: &Decoder, encoder: &Encoder, prompt: &[u32], request: &Request) -> candle_core::Result<Vec<Sample>> {
    let mut policy = Policy { samplers: Vec::new(), rules: Vec::new() };
    policy.add(encoder, prompt, request);
    let continuations = decoder.generate(prompt, request.samples, request.max_new_tokens, &mut policy)?;
    Ok(continuations.into_iter().map(sample_of).collect())
}

/// A checkpoint directory generating in-process; its fingerprint is the
/// checkpoint scorer's (config, tokenizer, template, dtype, weights).
pub struct CheckpointGenerator {
    scorer: CheckpointScorer,
    /// With more than one, consecutive questions are decoded together while
    /// their samples add up to at most this many rows (on the CPU).
    batch_rows: usize,
}

impl CheckpointGenerator {
    pub fn open(dir: &Path, options: CheckpointOptions) -> Result<Self, GenerateError> {
        let scorer = CheckpointScorer::open(dir, options).map_err(|e| GenerateError::Usage(e.to_string()))?;
        Ok(CheckpointGenerator { scorer, batch_rows: 1 })
    }

    /// Decodes consecutive questions together, up to `rows` samples in all
    /// per batch ([`Decoder::generate_many`]); 1 (the default) decodes one
    /// question at a time. A sample then depends on which questions share
    /// its batch (the products' size can move a logit in its last bits), so
    /// a run is reproduced by the same questions in the same order and the
    /// same `rows`.
    pub fn with_batch_rows(mut self, rows: usize) -> Self {
        self.batch_rows = rows.max(1);
        self
    }

    /// Runs `jobs` as batches of consecutive questions (see [`CheckpointGenerator::with_batch_rows`]).
    fn generate_batched(&mut self, jobs: &[Job], done: &mut dyn FnMut(usize, JobResult)) {
        let source = self.scorer.dir().display().to_string();
        let mut start = 0;
        while start < jobs.len() {
            let mut end = start + 1;
            let mut rows = jobs[start].request.samples;
            while end < jobs.len() && rows + jobs[end].request.samples <= self.batch_rows {
                rows += jobs[end].request.samples;
                end += 1;
            }
            let batch = &jobs[start..end];
            match self.scorer.decoder_and_encoder() {
                Err(e) => {
                    let e: GenerateError = e.into();
                    for index in start..end {
                        done(index, Err(GenerateError::Failed(e.to_string())));
                    }
                }
                Ok((decoder, encoder)) => {
                    let mut policy = Policy { samplers: Vec::with_capacity(rows), rules: Vec::with_capacity(rows) };
                    for job in batch {
                        policy.add(encoder, &job.prompt, &job.request);
                    }
                    let prompts: Vec<PromptJob<'_>> = batch
                        .iter()
                        .map(|job| PromptJob {
                            prompt: &job.prompt,
                            sequences: job.request.samples,
                            max_new_tokens: job.request.max_new_tokens,
                        })
                        .collect();
                    let results = decoder.generate_many(&prompts, &mut policy);
                    for ((offset, job), result) in batch.iter().enumerate().zip(results) {
                        let result = result
                            .map(|continuations| continuations.into_iter().map(sample_of).collect())
                            .map_err(|e| GenerateError::Failed(format!("{source}: generating for {}: {e}", job.location)));
                        done(start + offset, result);
                    }
                }
            }
            start = end;
        }
    }
}

fn sample_of(c: whence_checkpoint::Continuation) -> Sample {
    Sample { tokens: c.tokens, logprobs: c.logprobs, finish_reason: if c.stopped { FinishReason::Stop } else { FinishReason::Length } }
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

    fn generate_many(&mut self, jobs: &[Job], done: &mut dyn FnMut(usize, JobResult)) {
        let on_cpu = self.scorer.decoder().is_ok_and(|decoder| decoder.device().is_cpu());
        if self.batch_rows <= 1 || !on_cpu {
            for (index, job) in jobs.iter().enumerate() {
                let result = self.generate(&job.prompt, &job.request, &job.location);
                done(index, result);
            }
            return;
        }
        self.generate_batched(jobs, done);
    }

    fn release(&mut self) {
        self.scorer.release();
    }

    fn kv_bytes_per_token(&mut self) -> Result<Option<usize>, GenerateError> {
        Ok(Some(self.scorer.decoder()?.kv_bytes_per_token()))
    }
}
