//! The served model: the checkpoint's decoder and tokenizer. Generation
//! takes the decoder for as long as it runs ([`Model::session`]).
//!
//! Scoring requests that arrive while the decoder is busy are packed into
//! one pass ([`Model::score`], with a budget of `--batch-tokens`): each
//! request waits in a queue; whichever waiting request gets the decoder next
//! takes every queued request that fits the budget (oldest first, always at
//! least one), scores them in one packed pass
//! ([`Decoder::prompt_logprobs_packed`]) and hands each its answer. With a
//! budget of 1 (the CPU's default) requests are scored one per pass.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};

use whence_checkpoint::ranks::PromptLogprobs;
use whence_checkpoint::weights::open_weights;
use whence_checkpoint::{
    CheckpointError, CheckpointOptions, Config, Continuation, Decoder, Encoder, NextToken, PromptRequest, TemplateMode,
};
use whence_encode::TextStream;

/// How many tokens before a step give an alternative token its text
/// ([`Model::alternative_text`]): enough for a decoder that strips a
/// leading space and for a character split over up to four byte tokens
/// (vLLM's incremental detokenizer starts 5 tokens back too).
pub const ALTERNATIVE_CONTEXT: usize = 5;

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
    /// Tokens one scoring pass may hold.
    batch_tokens: usize,
    /// Scoring requests waiting for a pass.
    waiting: Mutex<Vec<Waiting>>,
    /// Scoring passes run, and requests they scored.
    passes: AtomicU64,
    scored: AtomicU64,
}

/// A scoring request in the queue, and where its answer goes.
struct Waiting {
    ids: Vec<u32>,
    top: usize,
    next: bool,
    answer: mpsc::Sender<Result<PromptScores, String>>,
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
        Ok(Model {
            name,
            config,
            encoder,
            decoder: Mutex::new(decoder),
            stop_token_ids,
            created,
            batch_tokens: options.pass_tokens(),
            waiting: Mutex::new(Vec::new()),
            passes: AtomicU64::new(0),
            scored: AtomicU64::new(0),
        })
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

    /// A stream that decodes tokens drawn after `context` in that context
    /// (SPEC §10), special tokens dropped or kept.
    pub fn text_stream(&self, context: &[u32], skip_special_tokens: bool) -> Result<TextStream<'_>, String> {
        TextStream::new(self.encoder.tokenizer(), context, skip_special_tokens)
    }

    /// The text `ids` add after `context`, decoded in context (a trailing
    /// incomplete character left out, as vLLM's detokenizer leaves it out).
    pub fn text_after(&self, context: &[u32], ids: &[u32], skip_special_tokens: bool) -> Result<String, String> {
        whence_encode::text_after(self.encoder.tokenizer(), context, ids, skip_special_tokens)
    }

    /// Each token's text in the context of `context` and the tokens before
    /// it (vLLM's `decoded_token`, special tokens kept): the texts join to
    /// [`Model::text_after`]'s; a token that ends inside a character has
    /// none, the one that completes it has the whole character.
    pub fn token_texts(&self, context: &[u32], ids: &[u32]) -> Vec<String> {
        let Ok(mut stream) = self.text_stream(context, false) else { return vec![String::new(); ids.len()] };
        ids.iter().map(|&id| stream.push(id).map(str::to_string).unwrap_or_default()).collect()
    }

    /// The text `id` would add after `context` (its last
    /// [`ALTERNATIVE_CONTEXT`] tokens): an alternative token's entry in the
    /// top log-probabilities.
    pub fn alternative_text(&self, context: &[u32], id: u32) -> String {
        let context = &context[context.len().saturating_sub(ALTERNATIVE_CONTEXT)..];
        self.text_after(context, &[id], false).unwrap_or_default()
    }

    /// Takes the decoder (waits while another request holds it).
    pub fn session(&self) -> Session<'_> {
        Session { decoder: self.decoder.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) }
    }

    /// Scores every token of `ids` after the first: log-probability, rank
    /// and the `top` most likely tokens; with `next` the most likely token
    /// after `ids`. Waits for the model when it is busy, and is then scored
    /// together with the other requests that waited (see the module docs).
    pub fn score(&self, ids: &[u32], top: usize, next: bool) -> Result<PromptScores, String> {
        if self.batch_tokens <= 1 {
            let result = self.session().score(ids, top, next);
            self.passes.fetch_add(1, Ordering::Relaxed);
            self.scored.fetch_add(1, Ordering::Relaxed);
            return result;
        }
        let (answer, reply) = mpsc::channel();
        self.queue().push(Waiting { ids: ids.to_vec(), top, next, answer });
        loop {
            match reply.try_recv() {
                Ok(result) => return result,
                Err(mpsc::TryRecvError::Disconnected) => return Err("scoring failed: the pass holding this request stopped".into()),
                Err(mpsc::TryRecvError::Empty) => {}
            }
            // A request leaves the queue only in a pass run under the
            // decoder's lock, answered before the lock is let go: once we
            // hold it, ours is answered or still queued.
            let session = self.session();
            match reply.try_recv() {
                Ok(result) => return result,
                Err(mpsc::TryRecvError::Disconnected) => return Err("scoring failed: the pass holding this request stopped".into()),
                Err(mpsc::TryRecvError::Empty) => {}
            }
            let pass = self.take_pass();
            if pass.is_empty() {
                continue;
            }
            let requests: Vec<PromptRequest> =
                pass.iter().map(|w| PromptRequest { ids: &w.ids, from: 1, top: w.top, next: w.next }).collect();
            let results = session.decoder.prompt_logprobs_packed(&requests);
            drop(requests);
            self.passes.fetch_add(1, Ordering::Relaxed);
            self.scored.fetch_add(pass.len() as u64, Ordering::Relaxed);
            tracing::debug!(requests = pass.len(), tokens = pass.iter().map(|w| w.ids.len()).sum::<usize>(), "one scoring pass");
            match results {
                Ok(results) => {
                    for (waiting, result) in pass.into_iter().zip(results) {
                        let _ = waiting.answer.send(Ok(result));
                    }
                }
                Err(e) => {
                    for waiting in pass {
                        let _ = waiting.answer.send(Err(format!("scoring failed: {e}")));
                    }
                }
            }
        }
    }

    /// Scoring passes run so far, and the requests they scored (a pass may
    /// score several).
    pub fn scoring_passes(&self) -> (u64, u64) {
        (self.passes.load(Ordering::Relaxed), self.scored.load(Ordering::Relaxed))
    }

    /// Scoring requests waiting for a pass now.
    pub fn queued(&self) -> usize {
        self.queue().len()
    }

    fn queue(&self) -> MutexGuard<'_, Vec<Waiting>> {
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The queued requests of the next pass: the oldest, then as many of
    /// the next as fit in `batch_tokens` with it.
    fn take_pass(&self) -> Vec<Waiting> {
        let mut queue = self.queue();
        let mut tokens = 0;
        let mut count = 0;
        for waiting in queue.iter() {
            if count > 0 && tokens + waiting.ids.len() > self.batch_tokens {
                break;
            }
            tokens += waiting.ids.len();
            count += 1;
        }
        queue.drain(..count).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(batch_tokens: usize) -> Model {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/fixtures/tiny-qwen2");
        let options = CheckpointOptions { batch_tokens: Some(batch_tokens), ..Default::default() };
        Model::load(&dir, options, "tiny".into()).unwrap()
    }

    #[test]
    fn requests_that_wait_together_are_scored_in_one_pass() {
        let model = tiny(4096);
        let prompts: Vec<Vec<u32>> = (0..6u32).map(|i| (0..40 + 13 * i).map(|t| (t * 31 + i * 7) % 1000).collect()).collect();
        let alone: Vec<PromptScores> = prompts.iter().map(|ids| model.session().score(ids, 3, true).unwrap()).collect();
        let session = model.session();
        let answers = std::thread::scope(|scope| {
            let handles: Vec<_> = prompts.iter().map(|ids| scope.spawn(|| model.score(ids, 3, true))).collect();
            // Every request queues while the decoder is held, then one pass takes them all.
            while model.queued() < prompts.len() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            drop(session);
            handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect::<Vec<_>>()
        });
        assert_eq!(model.scoring_passes(), (1, 6), "six waiting requests, one pass");
        for (got, want) in answers.iter().zip(&alone) {
            assert_eq!(got.next.map(|n| n.0), want.next.map(|n| n.0));
            assert_eq!(got.positions.len(), want.positions.len());
            for (g, w) in got.positions.iter().zip(&want.positions) {
                assert!((g.logprob - w.logprob).abs() <= 1e-5, "{} vs {}", g.logprob, w.logprob);
                assert_eq!((g.rank, g.top.iter().map(|t| t.0).collect::<Vec<_>>()), (w.rank, w.top.iter().map(|t| t.0).collect()));
            }
        }
    }

    #[test]
    fn a_pass_keeps_to_the_token_budget() {
        // 100 tokens a pass: requests of 40 tokens go two at a time.
        let model = tiny(100);
        let prompts: Vec<Vec<u32>> = (0..5u32).map(|i| (0..40).map(|t| (t * 17 + i) % 1000).collect()).collect();
        let session = model.session();
        std::thread::scope(|scope| {
            let handles: Vec<_> = prompts.iter().map(|ids| scope.spawn(|| model.score(ids, 0, false))).collect();
            while model.queued() < prompts.len() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            drop(session);
            for handle in handles {
                handle.join().unwrap().unwrap();
            }
        });
        assert_eq!(model.scoring_passes(), (3, 5));
    }
}
