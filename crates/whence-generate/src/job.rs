//! The `whence generate` job: every question's samples, as records in
//! whence's input format, with their log-probabilities and a summary.
//!
//! Output records, one per sample, in question order then sample order:
//! `id` (`QID#k`, QID the question's id), `question_id` (the question's
//! `question_id`, else its id), the prompt (`prompt` text or `messages`
//! chat turns), `response`, `answer` when the question has one,
//! `finish_reason` (`stop` / `length`) and `tokens` (the response's tokens).
//!
//! Resuming: with a cache, each question's samples are committed as soon
//! as they are drawn, keyed by the generator's fingerprint and everything the
//! samples depend on (prompt tokens, settings, seed, sample count). A run
//! that is interrupted reuses them and, the draws being deterministic,
//! finishes with the output an uninterrupted run writes.

use std::time::Instant;

use serde::Serialize;
use sha2::{Digest, Sha256};
use whence_cache::ScoreCache;
use whence_core::Record;
use whence_io::Skipped;
use whence_pipeline::Progress;
use whence_score::ModelInfo;

use crate::text::{prompt_fields, response_of};
use crate::{request_seed, FinishReason, GenerateError, Generator, Request, Sample, SamplingParams};

/// What the user asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Samples per question (≥ 1).
    pub samples: usize,
    pub params: SamplingParams,
    pub seed: u64,
    /// Most tokens per sample (≥ 1).
    pub max_new_tokens: usize,
    /// Stop strings (besides the model's stop tokens).
    pub stop: Vec<String>,
    /// Skip questions that cannot be generated for instead of failing.
    pub skip_invalid: bool,
    /// Memory the KV cache of one question's samples may take, in bytes.
    pub memory_limit: Option<u64>,
}

/// The settings as the summary records them.
#[derive(Debug, Clone, Serialize)]
pub struct SettingsSummary {
    pub samples: usize,
    pub temperature: f64,
    pub top_p: f64,
    /// `null`: every token.
    pub top_k: Option<usize>,
    pub seed: u64,
    pub max_new_tokens: usize,
    pub stop: Vec<String>,
    pub stop_token_ids: Vec<u32>,
}

/// How the samples ended.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FinishCounts {
    pub stop: u64,
    pub length: u64,
}

/// The `RESPONSES.jsonl.summary.json` sidecar.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateSummary {
    pub whence_version: &'static str,
    pub command: String,
    pub input: String,
    pub model: ModelInfo,
    pub settings: SettingsSummary,
    pub questions: usize,
    pub samples: usize,
    pub skipped_questions: usize,
    pub skipped: Vec<Skipped>,
    pub finish_reasons: FinishCounts,
    /// Tokens in the written responses.
    pub response_tokens: u64,
    /// Responses whose sampled tokens are not the tokenizer's own
    /// tokenization of their text (see `whence_generate::text`): for these,
    /// `--logprobs` holds the drawn tokens' log-probabilities and `whence
    /// score` would score another spelling of the same text.
    pub non_canonical_responses: usize,
    /// Responses with no text (the model ended at once): written, but
    /// `trace` and `select` refuse them unless `--skip-invalid`.
    pub empty_responses: usize,
    /// Questions whose samples came from the cache.
    pub cached_questions: usize,
    /// Tokens drawn in this run (cached questions not counted), stop tokens included.
    pub generated_tokens: u64,
    pub generation_seconds: f64,
    pub tokens_per_second: f64,
    /// What the KV cache takes per token of one sample (in-process only).
    pub kv_cache_bytes_per_token: Option<usize>,
}

/// What a run produced.
#[derive(Debug)]
pub struct GenerateOutcome {
    /// One JSON line per sample (without the newline).
    pub responses: Vec<String>,
    /// One `file:`-scorer line per sample: id, offsets, logprobs.
    pub logprobs: Vec<String>,
    pub summary: GenerateSummary,
}

/// The cache key of a question's samples.
fn sample_key(prompt: &[u32], request: &Request) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"whence-generate-samples-v1\0");
    hasher.update((prompt.len() as u64).to_le_bytes());
    for id in prompt {
        hasher.update(id.to_le_bytes());
    }
    let p = &request.params;
    hasher.update(p.temperature.value().to_bits().to_le_bytes());
    hasher.update(p.top_p.value().to_bits().to_le_bytes());
    hasher.update((p.top_k.value().map_or(0, |k| k as u64 + 1)).to_le_bytes());
    hasher.update(request.request_seed.to_le_bytes());
    hasher.update((request.samples as u64).to_le_bytes());
    hasher.update((request.max_new_tokens as u64).to_le_bytes());
    hasher.update((request.stop.len() as u64).to_le_bytes());
    for stop in &request.stop {
        hasher.update((stop.len() as u64).to_le_bytes());
        hasher.update(stop.as_bytes());
    }
    hasher.update((request.stop_token_ids.len() as u64).to_le_bytes());
    for id in &request.stop_token_ids {
        hasher.update(id.to_le_bytes());
    }
    format!("{:x}", hasher.finalize())
}

fn human_bytes(bytes: f64) -> String {
    if bytes >= 1e9 {
        format!("{:.1} GB", bytes / 1e9)
    } else if bytes >= 1e6 {
        format!("{:.1} MB", bytes / 1e6)
    } else {
        format!("{:.1} KB", bytes / 1e3)
    }
}

/// Samples every question. `input` names the questions file and `command`
/// the command line, for the summary.
pub fn generate_all(
    questions: &[Record],
    generator: &mut dyn Generator,
    options: &GenerateOptions,
    cache: Option<&ScoreCache>,
    progress: &dyn Progress,
    input: &str,
    command: String,
) -> Result<GenerateOutcome, GenerateError> {
    if options.samples == 0 {
        return Err(GenerateError::Usage("--samples 0: ask for at least 1 sample per question".into()));
    }
    if options.max_new_tokens == 0 {
        return Err(GenerateError::Usage("--max-new-tokens 0: ask for at least 1 token".into()));
    }
    let stop_token_ids = generator.encoder().stop_token_ids();
    if stop_token_ids.is_empty() {
        tracing::warn!(
            "{}: no EOS or end-of-turn token found (generation_config.json, config.json, tokenizer_config.json); samples end at --stop strings or --max-new-tokens",
            generator.encoder().dir().display()
        );
    }
    let kv_bytes = generator.kv_bytes_per_token()?;
    if let (Some(per_token), Some(limit)) = (kv_bytes, options.memory_limit) {
        let need = per_token as f64 * options.samples as f64 * options.max_new_tokens as f64;
        if need > limit as f64 {
            return Err(GenerateError::Usage(format!(
                "--max-new-tokens {} with --samples {} needs a KV cache of {} ({} per token per sample), more than the {} of memory available\nhint: lower --max-new-tokens or --samples",
                options.max_new_tokens,
                options.samples,
                human_bytes(need),
                human_bytes(per_token as f64),
                human_bytes(limit as f64)
            )));
        }
    }
    let mut summary = GenerateSummary {
        whence_version: env!("CARGO_PKG_VERSION"),
        command,
        input: input.to_string(),
        model: generator.info().clone(),
        settings: SettingsSummary {
            samples: options.samples,
            temperature: options.params.temperature.value(),
            top_p: options.params.top_p.value(),
            top_k: options.params.top_k.value(),
            seed: options.seed,
            max_new_tokens: options.max_new_tokens,
            stop: options.stop.clone(),
            stop_token_ids: stop_token_ids.clone(),
        },
        questions: questions.len(),
        samples: 0,
        skipped_questions: 0,
        skipped: Vec::new(),
        finish_reasons: FinishCounts::default(),
        response_tokens: 0,
        non_canonical_responses: 0,
        empty_responses: 0,
        cached_questions: 0,
        generated_tokens: 0,
        generation_seconds: 0.0,
        tokens_per_second: 0.0,
        kv_cache_bytes_per_token: kv_bytes,
    };
    let mut responses = Vec::with_capacity(questions.len() * options.samples);
    let mut logprob_lines = Vec::with_capacity(questions.len() * options.samples);
    let model = generator.info().fingerprint.clone();
    let context = generator.context_length();
    progress.start("generating", questions.len() as u64);
    // 1. Per question: its prompt, its request, and the cache's samples if any.
    let skip_or_fail = |summary: &mut GenerateSummary, question: &Record, error: GenerateError| -> Result<(), GenerateError> {
        if options.skip_invalid && error.is_record_specific() {
            tracing::warn!("skipped: {error}");
            summary.skipped_questions += 1;
            summary.skipped.push(Skipped {
                location: question.source.to_string(),
                id: Some(question.id.clone()),
                reason: error.to_string(),
            });
            Ok(())
        } else {
            Err(error)
        }
    };
    // Per question: None (skipped), or its prompt ids, cache key and samples once known.
    let mut slots: Vec<Option<(Vec<u32>, String, Option<Vec<Sample>>)>> = Vec::with_capacity(questions.len());
    let mut jobs = Vec::new();
    let mut job_slots = Vec::new();
    for question in questions {
        let location = question.source.to_string();
        let prompt_ids = match generator.encoder().prompt_ids(question) {
            Ok((_, ids)) => ids,
            Err(error) => {
                skip_or_fail(&mut summary, question, error.into())?;
                progress.advance(1, 0);
                slots.push(None);
                continue;
            }
        };
        if let Some(context) = context {
            if prompt_ids.len() + options.max_new_tokens > context {
                let message = format!(
                    "the prompt's {} tokens and --max-new-tokens {} exceed the model's context of {context} tokens (max_position_embeddings)\nhint: lower --max-new-tokens to {} or less",
                    prompt_ids.len(),
                    options.max_new_tokens,
                    context.saturating_sub(prompt_ids.len())
                );
                skip_or_fail(&mut summary, question, GenerateError::InvalidRecord { location, message })?;
                progress.advance(1, 0);
                slots.push(None);
                continue;
            }
        }
        let request = Request {
            samples: options.samples,
            params: options.params,
            request_seed: request_seed(options.seed, &question.id),
            max_new_tokens: options.max_new_tokens,
            stop: options.stop.clone(),
            stop_token_ids: stop_token_ids.clone(),
        };
        let key = sample_key(&prompt_ids, &request);
        let cached = match cache {
            Some(cache) => match cache.generation(&model, &key).map_err(|e| GenerateError::Failed(e.to_string()))? {
                Some(bytes) => match serde_json::from_slice::<Vec<Sample>>(&bytes) {
                    Ok(samples) if samples.len() == options.samples => Some(samples),
                    _ => {
                        tracing::warn!("{}: the cached samples of {location} are unreadable; generating them again", cache.path());
                        None
                    }
                },
                None => None,
            },
            None => None,
        };
        if let Some(samples) = &cached {
            summary.cached_questions += 1;
            progress.advance(1, samples.iter().map(|s| s.tokens.len() as u64).sum());
        } else {
            job_slots.push(slots.len());
            jobs.push(crate::Job { prompt: prompt_ids.clone(), request, location });
        }
        slots.push(Some((prompt_ids, key, cached)));
    }

    // 2. The rest, each committed to the cache as soon as it is drawn.
    let started = Instant::now();
    let mut failure = None;
    generator.generate_many(&jobs, &mut |index, result| {
        let slot = job_slots[index];
        let question = &questions[slot];
        match result {
            Ok(samples) => {
                let tokens: u64 = samples.iter().map(|s| s.tokens.len() as u64).sum();
                summary.generated_tokens += tokens;
                if let (Some(cache), Some(Some((_, key, _)))) = (cache, slots.get(slot)) {
                    let stored = serde_json::to_vec(&samples)
                        .map_err(|e| e.to_string())
                        .and_then(|value| cache.put_generations(&model, &[(key.clone(), value)]).map_err(|e| e.to_string()));
                    if let Err(message) = stored {
                        failure.get_or_insert(GenerateError::Failed(message));
                    }
                }
                if let Some(Some((_, _, found))) = slots.get_mut(slot) {
                    *found = Some(samples);
                }
                progress.advance(1, tokens);
            }
            Err(error) => {
                if let Err(error) = skip_or_fail(&mut summary, question, error) {
                    failure.get_or_insert(error);
                }
                slots[slot] = None;
                progress.advance(1, 0);
            }
        }
    });
    summary.generation_seconds = started.elapsed().as_secs_f64();
    if let Some(error) = failure {
        progress.finish();
        return Err(error);
    }

    // 3. The records, in question order.
    for (question, slot) in questions.iter().zip(&slots) {
        let Some((prompt_ids, _, Some(samples))) = slot else { continue };
        let location = question.source.to_string();
        for (k, sample) in samples.iter().enumerate() {
            let response = response_of(generator.encoder(), question, prompt_ids, sample, &options.stop, &stop_token_ids)
                .map_err(|e| GenerateError::Failed(format!("{location}: sample {k}: {e}")))?;
            let id = format!("{}#{k}", question.id);
            let (prompt_field, prompt_value) = prompt_fields(&question.prompt);
            let mut record = serde_json::Map::new();
            record.insert("id".into(), id.clone().into());
            record.insert("question_id".into(), question.question_id.clone().into());
            record.insert(prompt_field.into(), prompt_value);
            record.insert("response".into(), response.text.clone().into());
            if let Some(answer) = &question.answer {
                record.insert("answer".into(), answer.clone().into());
            }
            record.insert("finish_reason".into(), sample.finish_reason.name().into());
            record.insert("tokens".into(), response.tokens.len().into());
            responses.push(serde_json::Value::Object(record).to_string());
            let offsets: Vec<[usize; 2]> = response.spans.iter().map(|s| [s.start, s.end]).collect();
            let logprobs: Vec<f64> = response.logprobs.iter().map(|&x| f64::from(x)).collect();
            logprob_lines.push(serde_json::json!({"id": id, "offsets": offsets, "logprobs": logprobs}).to_string());
            match sample.finish_reason {
                FinishReason::Stop => summary.finish_reasons.stop += 1,
                FinishReason::Length => summary.finish_reasons.length += 1,
            }
            summary.response_tokens += response.tokens.len() as u64;
            summary.non_canonical_responses += usize::from(!response.canonical);
            summary.empty_responses += usize::from(response.text.trim().is_empty());
            summary.samples += 1;
        }
    }
    progress.finish();
    generator.release();
    if summary.generation_seconds > 0.0 {
        summary.tokens_per_second = summary.generated_tokens as f64 / summary.generation_seconds;
    }
    Ok(GenerateOutcome { responses, logprobs: logprob_lines, summary })
}

#[cfg(test)]
mod tests {
    use super::*;
    use whence_core::{Prompt, SourceLocation};
    use whence_encode::{Encoder, TemplateMode};

    /// A generator whose KV cache is 1 MB a token and which draws `[5]`.
    struct Huge {
        encoder: Encoder,
        info: ModelInfo,
        calls: usize,
    }

    impl Generator for Huge {
        fn info(&self) -> &ModelInfo {
            &self.info
        }
        fn encoder(&self) -> &Encoder {
            &self.encoder
        }
        fn context_length(&self) -> Option<usize> {
            Some(64)
        }
        fn generate(&mut self, _: &[u32], request: &Request, _: &str) -> Result<Vec<Sample>, GenerateError> {
            self.calls += 1;
            Ok(vec![Sample { tokens: vec![5], logprobs: vec![-0.5], finish_reason: FinishReason::Length }; request.samples])
        }
        fn kv_bytes_per_token(&mut self) -> Result<Option<usize>, GenerateError> {
            Ok(Some(1_000_000))
        }
    }

    fn huge() -> Huge {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/fixtures/tiny-qwen2");
        Huge {
            encoder: Encoder::open(&dir, &TemplateMode::Auto).unwrap(),
            info: ModelInfo { kind: "test".into(), source: "huge".into(), fingerprint: "sha256:0".into() },
            calls: 0,
        }
    }

    fn question(id: &str) -> Record {
        Record {
            id: id.into(),
            question_id: id.into(),
            prompt: Prompt::Text("1 + 1?".into()),
            response: String::new(),
            correct: None,
            answer: None,
            source: SourceLocation { file: "q.jsonl".into(), line: Some(1), row: None },
        }
    }

    fn options(samples: usize, max_new_tokens: usize, memory_limit: Option<u64>) -> GenerateOptions {
        GenerateOptions {
            samples,
            params: SamplingParams::default(),
            seed: 0,
            max_new_tokens,
            stop: vec![],
            skip_invalid: false,
            memory_limit,
        }
    }

    fn run(generator: &mut Huge, options: &GenerateOptions, cache: Option<&ScoreCache>) -> Result<GenerateOutcome, GenerateError> {
        generate_all(&[question("a"), question("b")], generator, options, cache, &whence_pipeline::NoProgress, "q.jsonl", "test".into())
    }

    #[test]
    fn a_kv_cache_that_cannot_fit_is_refused_before_decoding() {
        let mut generator = huge();
        // 4 samples × 40 tokens × 1 MB = 160 MB against 100 MB.
        let error = run(&mut generator, &options(4, 40, Some(100_000_000)), None).unwrap_err();
        assert!(error.is_input_error());
        let message = error.to_string();
        assert!(message.contains("needs a KV cache of 160.0 MB (1.0 MB per token per sample), more than the 100.0 MB"), "{message}");
        assert_eq!(generator.calls, 0);
        assert!(run(&mut generator, &options(2, 40, Some(100_000_000)), None).is_ok());
    }

    #[test]
    fn cached_questions_are_not_generated_again() {
        let cache = ScoreCache::in_memory().unwrap();
        let mut generator = huge();
        let first = run(&mut generator, &options(2, 8, None), Some(&cache)).unwrap();
        assert_eq!((generator.calls, first.summary.cached_questions), (2, 0));
        let second = run(&mut generator, &options(2, 8, None), Some(&cache)).unwrap();
        assert_eq!((generator.calls, second.summary.cached_questions), (2, 2));
        assert_eq!(first.responses, second.responses);
        // Other settings are other entries.
        run(&mut generator, &options(3, 8, None), Some(&cache)).unwrap();
        assert_eq!(generator.calls, 4);
    }
}
