//! Broken checkpoints give clear errors naming the file and what is wrong,
//! never a panic.

use std::path::{Path, PathBuf};

use whence_checkpoint::{CheckpointOptions, CheckpointScorer, TemplateMode};
use whence_core::{Prompt, Record, SourceLocation};
use whence_score::Scorer;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/fixtures").join(name)
}

/// A copy of a fixture checkpoint in a fresh directory.
struct Copy(PathBuf);

impl Copy {
    fn of(name: &str, tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("whence-bad-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(fixture(name)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        Copy(dir)
    }
    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn record(response: &str) -> Record {
    Record {
        id: "r1".into(),
        question_id: "q".into(),
        prompt: Prompt::Text("Problem: 1 + 1?".into()),
        response: response.into(),
        correct: None,
        answer: None,
        source: SourceLocation { file: "in.jsonl".into(), line: Some(3), row: None },
    }
}

fn open(dir: &Path) -> Result<CheckpointScorer, String> {
    CheckpointScorer::open(dir, CheckpointOptions::default()).map_err(|e| e.to_string())
}

fn score_error(dir: &Path, options: CheckpointOptions, response: &str) -> String {
    let mut scorer = CheckpointScorer::open(dir, options).unwrap();
    scorer.score(&record(response)).unwrap_err().to_string()
}

#[test]
fn missing_files() {
    let copy = Copy::of("tiny-qwen3", "missing-config");
    std::fs::remove_file(copy.path("config.json")).unwrap();
    let message = open(&copy.0).unwrap_err();
    assert!(message.contains("config.json") && message.contains("cannot read"), "{message}");

    let copy = Copy::of("tiny-qwen3", "missing-tokenizer");
    std::fs::remove_file(copy.path("tokenizer.json")).unwrap();
    let message = open(&copy.0).unwrap_err();
    assert!(message.contains("tokenizer.json: is missing"), "{message}");

    let copy = Copy::of("tiny-qwen3", "missing-weights");
    std::fs::remove_file(copy.path("model.safetensors")).unwrap();
    let message = open(&copy.0).unwrap_err();
    assert!(message.contains("has no model.safetensors nor model.safetensors.index.json"), "{message}");

    std::fs::write(copy.path("pytorch_model.bin"), b"pickle").unwrap();
    let message = open(&copy.0).unwrap_err();
    assert!(message.contains("pickle weights (pytorch_model.bin), which whence does not load"), "{message}");

    let copy = Copy::of("tiny-llama3", "missing-shard");
    std::fs::remove_file(copy.path("model-00002-of-00003.safetensors")).unwrap();
    let message = open(&copy.0).unwrap_err();
    assert!(
        message.contains("model.safetensors.index.json: lists")
            && message.contains("model-00002-of-00003.safetensors which does not exist"),
        "{message}"
    );

    let message = open(Path::new("/nonexistent/checkpoint")).unwrap_err();
    assert!(message.contains("is not a checkpoint directory"), "{message}");
}

#[test]
fn unknown_architecture() {
    let copy = Copy::of("tiny-mistral", "arch");
    let config = std::fs::read_to_string(copy.path("config.json")).unwrap().replace("MistralForCausalLM", "FalconForCausalLM");
    std::fs::write(copy.path("config.json"), config).unwrap();
    let message = open(&copy.0).unwrap_err();
    assert!(message.contains("unsupported architecture `FalconForCausalLM`; supported: Qwen2ForCausalLM, Qwen3ForCausalLM, LlamaForCausalLM, MistralForCausalLM"), "{message}");
}

#[test]
fn truncated_weights() {
    let copy = Copy::of("tiny-qwen3", "truncated");
    let bytes = std::fs::read(copy.path("model.safetensors")).unwrap();
    std::fs::write(copy.path("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let message = score_error(&copy.0, CheckpointOptions::default(), "Two.");
    assert!(message.contains("model.safetensors: truncated safetensors file"), "{message}");
}

#[test]
fn wrong_shape_tensor() {
    // A config that disagrees with the weights: every tensor of a layer has the wrong shape.
    let copy = Copy::of("tiny-qwen3", "shape");
    let config =
        std::fs::read_to_string(copy.path("config.json")).unwrap().replace("\"intermediate_size\": 128", "\"intermediate_size\": 96");
    std::fs::write(copy.path("config.json"), config).unwrap();
    let message = score_error(&copy.0, CheckpointOptions::default(), "Two.");
    assert!(message.contains("cannot load the weights") && message.contains("shape"), "{message}");
}

#[test]
fn missing_tensor() {
    let copy = Copy::of("tiny-qwen3", "tensor");
    let config = std::fs::read_to_string(copy.path("config.json")).unwrap().replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3");
    std::fs::write(copy.path("config.json"), config).unwrap();
    let message = score_error(&copy.0, CheckpointOptions::default(), "Two.");
    assert!(message.contains("cannot load the weights") && message.contains("model.layers.2"), "{message}");
}

#[test]
fn longer_than_the_context_unless_truncating() {
    let copy = Copy::of("tiny-qwen2", "context");
    let config = std::fs::read_to_string(copy.path("config.json"))
        .unwrap()
        .replace("\"max_position_embeddings\": 512", "\"max_position_embeddings\": 16");
    std::fs::write(copy.path("config.json"), config).unwrap();
    let response = "So the answer is two, because one and one make two. Then we check it again.";
    let options = CheckpointOptions { template: TemplateMode::Raw, ..Default::default() };
    let message = score_error(&copy.0, options.clone(), response);
    assert!(message.contains("in.jsonl:3") && message.contains("exceed the context of") && message.contains("--truncate"), "{message}");
    let mut scorer = CheckpointScorer::open(&copy.0, CheckpointOptions { truncate: true, ..options }).unwrap();
    let scores = scorer.score(&record(response)).unwrap();
    assert!(!scores.logprobs.is_empty() && scores.logprobs.len() < response.len());
}
