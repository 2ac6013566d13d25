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
use whence_encode::Encoder;
use whence_sample::{choice_seed, TokenSampler};
use whence_score::{ModelInfo, Scorer};

use crate::{FinishReason, GenerateError, Generator, Job, JobResult, Request, Sample};

/// Whether a sample of `request` ends after `tokens`: a stop token, or a
/// stop string in its text.
fn ends(request: &Request, encoder: &Encoder, tokens: &[u32]) -> bool {
    if tokens.last().is_some_and(|t| request.stop_token_ids.contains(t)) {
        return true;
    }
    if request.stop.is_empty() {
        return false;
    }
    // The whole text each time: a stop string may span tokens, and a
    // token's text can depend on its neighbours (UTF-8 split over tokens).
    encoder.decode(tokens).is_ok_and(|text| crate::text::first_stop(&text, &request.stop).is_some())
}

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
        ends(self.request, self.encoder, tokens)
    }
}

/// `request.samples` samples continuing `prompt`, decoded together.
pub fn sample_continuations(decoder: &Decoder, encoder: &Encoder, prompt: &[u32], request: &Request) -> candle_core::Result<Vec<Sample>> {
    let samplers = (0..request.samples).map(|k| TokenSampler::new(request.params, choice_seed(request.request_seed, k))).collect();
    let mut policy = Policy { samplers, request, encoder };
    let continuations = decoder.generate(prompt, request.samples, request.max_new_tokens, &mut policy)?;
    Ok(continuations.into_iter().map(sample_of).collect())
}

/// Several questions' continuations drawn together: continuation `global`
/// is sample `k` of job `j`, drawn from that sample's own stream.
struct ManyPolicy<'a> {
    samplers: Vec<TokenSampler>,
    /// Per global sequence, its job.
    jobs: Vec<usize>,
    requests: Vec<&'a Request>,
    encoder: &'a Encoder,
}

impl NextToken for ManyPolicy<'_> {
    fn choose(&mut self, sequence: usize, logits: &[f32]) -> u32 {
        self.samplers[sequence].sample(logits)
    }

    fn finished(&mut self, sequence: usize, tokens: &[u32]) -> bool {
        ends(self.requests[self.jobs[sequence]], self.encoder, tokens)
    }
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
                    let mut samplers = Vec::with_capacity(rows);
                    let mut owners = Vec::with_capacity(rows);
                    for (j, job) in batch.iter().enumerate() {
                        for k in 0..job.request.samples {
                            samplers.push(TokenSampler::new(job.request.params, choice_seed(job.request.request_seed, k)));
                            owners.push(j);
                        }
                    }
                    let requests: Vec<&Request> = batch.iter().map(|job| &job.request).collect();
                    let mut policy = ManyPolicy { samplers, jobs: owners, requests, encoder };
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
