//! Per-token log-probabilities equal those of Hugging Face transformers (f32)
//! within 1e-4 on tiny random-weight checkpoints of the four architectures
//! (fixtures made by tests/reference/make_reference.py).

use std::path::PathBuf;

use candle_core::{DType, Device};
use whence_checkpoint::{weights::open_weights, Config, Decoder};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/fixtures")
}

fn check(name: &str) {
    let dir = fixtures().join(name);
    let config = Config::from_dir(&dir).unwrap();
    let vb = open_weights(&dir, DType::F32, &Device::Cpu).unwrap();
    let decoder = Decoder::load(&config, vb).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join(format!("expected/{name}.json"))).unwrap()).unwrap();
    let mut worst = 0f64;
    for case in expected["cases"].as_array().unwrap() {
        let ids: Vec<u32> = case["input_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let want: Vec<f64> = case["logprobs"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let got = decoder.token_logprobs(&ids, 1).unwrap();
        assert_eq!(got.len(), want.len(), "{name}/{}", case["name"]);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let difference = (f64::from(*g) - w).abs();
            worst = worst.max(difference);
            assert!(difference < 1e-4, "{name}/{} token {}: whence {g}, transformers {w}", case["name"], i + 1);
        }
        // Scoring from a later position gives the same values for those positions.
        let from = case["first_response_token"].as_u64().unwrap() as usize;
        let tail = decoder.token_logprobs(&ids, from).unwrap();
        assert_eq!(tail.as_slice(), &got[from - 1..]);
    }
    eprintln!("{name}: max |difference| {worst:.2e}");
}

#[test]
fn qwen2_tied_bias_bf16_on_disk() {
    check("tiny-qwen2");
}

#[test]
fn qwen3_qk_norm_untied() {
    check("tiny-qwen3");
}

#[test]
fn llama3_rope_scaling_sharded_f16() {
    check("tiny-llama3");
}

#[test]
fn mistral_gqa() {
    check("tiny-mistral");
}
