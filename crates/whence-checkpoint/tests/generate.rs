//! Decoding with the KV cache equals the teacher-forced pass: every drawn
//! token's log-probability is within 1e-4 of what `token_logprobs` gives for
//! the same ids, on the four reference architectures (GQA, q/k norm, rope
//! scaling, sliding window), for several continuations decoded together,
//! some of which stop early.

use std::path::PathBuf;

use candle_core::{DType, Device};
use whence_checkpoint::{weights::open_weights, Config, Decoder, NextToken};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/fixtures").join(name)
}

fn decoder(name: &str) -> Decoder {
    let dir = fixture(name);
    let config = Config::from_dir(&dir).unwrap();
    Decoder::load(&config, open_weights(&dir, DType::F32, &Device::Cpu).unwrap()).unwrap()
}

/// Draws by a fixed rule from the logits (the k-th most likely token, k
/// varying with the step and sequence) so that sequences differ; sequence s
/// stops after `5 + 7 s` tokens.
struct Rule;

impl NextToken for Rule {
    fn choose(&mut self, sequence: usize, logits: &[f32]) -> u32 {
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
        let rank = (sequence * 3 + logits.len() % 5) % 4;
        order[rank]
    }
    fn finished(&mut self, sequence: usize, tokens: &[u32]) -> bool {
        tokens.len() >= 5 + 7 * sequence
    }
}

fn check(name: &str) {
    check_decoder(name, &decoder(name));
}

fn check_decoder(name: &str, decoder: &Decoder) {
    let prompt: Vec<u32> = (0..37u32).map(|i| (i * 131 + 7) % 900).collect();
    let max_new = 40;
    let continuations = decoder.generate(&prompt, 4, max_new, &mut Rule).unwrap();
    let mut worst = 0f32;
    for (s, continuation) in continuations.iter().enumerate() {
        let want_len = (5 + 7 * s).min(max_new);
        assert_eq!(continuation.tokens.len(), want_len, "{name} sequence {s}");
        assert_eq!(continuation.stopped, 5 + 7 * s <= max_new);
        let mut ids = prompt.clone();
        ids.extend(&continuation.tokens);
        let forced = decoder.token_logprobs(&ids, prompt.len()).unwrap();
        assert_eq!(forced.len(), continuation.logprobs.len());
        for (i, (cached, forced)) in continuation.logprobs.iter().zip(&forced).enumerate() {
            let difference = (cached - forced).abs();
            worst = worst.max(difference);
            assert!(difference < 1e-4, "{name} sequence {s} token {i}: cached {cached}, teacher-forced {forced}");
        }
    }
    eprintln!("{name}: max |KV-cache − teacher-forced| {worst:.2e}");
}

#[test]
fn kv_cache_decoding_equals_teacher_forcing_qwen2() {
    check("tiny-qwen2");
}

#[test]
fn kv_cache_decoding_equals_teacher_forcing_qwen3() {
    check("tiny-qwen3");
}

#[test]
fn kv_cache_decoding_equals_teacher_forcing_llama3() {
    check("tiny-llama3");
}

#[test]
fn kv_cache_decoding_equals_teacher_forcing_mistral_sliding_window() {
    check("tiny-mistral");
}

#[test]
fn kv_cache_decoding_equals_teacher_forcing_with_a_sliding_window() {
    // tiny-mistral with a 16-token window: the prompt alone is longer.
    let dir = fixture("tiny-mistral");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    config["sliding_window"] = 16.into();
    let config = Config::from_json(&config.to_string(), "tiny-mistral/config.json with sliding_window 16").unwrap();
    assert_eq!(config.sliding_window[0], Some(16));
    let decoder = Decoder::load(&config, open_weights(&dir, DType::F32, &Device::Cpu).unwrap()).unwrap();
    check_decoder("tiny-mistral (window 16)", &decoder);
}

#[test]
fn cache_size_per_token() {
    // tiny-qwen2: 2 layers × (k + v) × 2 kv heads × head_dim 16 × 4 bytes.
    assert_eq!(decoder("tiny-qwen2").kv_bytes_per_token(), 2 * 2 * 2 * 16 * 4);
}
