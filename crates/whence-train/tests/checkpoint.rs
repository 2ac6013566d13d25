//! A tiny model trains, saves as a checkpoint, and whence's in-process
//! scorer gives the training forward's log-probabilities on it.

use std::path::Path;

use whence_checkpoint::{CheckpointOptions, CheckpointScorer};
use whence_core::{Prompt, Record, SourceLocation};
use whence_score::Scorer;
use whence_train::tokenizer::{special_id, train_tokenizer, END_OF_TEXT};
use whence_train::{example, save_weights, train, write_tokenizer, Architecture, Model, ModelShape, Staged, TrainSettings};

fn corpus() -> Vec<(String, String)> {
    (0..48)
        .map(|i| {
            let (a, k) = (2 + i % 20, 1 + i % 7);
            (
                format!("Ana has {a} coins. Then Ana finds {k} more. How many coins does Ana have now?"),
                format!("After finding {k} more, Ana has {a} + {k} = {} coins.\nThe answer is \\boxed{{{}}}.", a + k, a + k),
            )
        })
        .collect()
}

fn build(dir: &Path, architecture: Architecture, seed: u64) -> Model {
    let pairs = corpus();
    let tokenizer = train_tokenizer(pairs.iter().flat_map(|(q, r)| [q.clone(), r.clone()]), 320).unwrap();
    let staged = Staged::new(dir).unwrap();
    let shape = ModelShape {
        architecture,
        vocab_size: tokenizer.get_vocab_size(true),
        hidden_size: 32,
        intermediate_size: 64,
        layers: 2,
        heads: 2,
        max_positions: 128,
        tie_embeddings: architecture == Architecture::Qwen2,
    };
    let encoder = write_tokenizer(staged.dir(), &tokenizer, shape.max_positions).unwrap();
    let examples: Vec<_> = pairs.iter().map(|(q, r)| example(&encoder, q, r).unwrap()).collect();
    let model = Model::new(shape, seed).unwrap();
    let settings = TrainSettings { steps: 30, batch_size: 8, learning_rate: 3e-3, warmup_steps: 5, weight_decay: 0.01, seed };
    let pad = special_id(&tokenizer, END_OF_TEXT).unwrap();
    let report = train(&model, &examples, &settings, pad, &mut |_| {}).unwrap();
    assert!(report.final_loss < report.first_loss * 0.7, "the loss fell: {report:?}");
    save_weights(staged.dir(), &model, &encoder).unwrap();
    staged.finish().unwrap();
    model
}

fn record(question: &str, response: &str) -> Record {
    Record {
        id: "r".into(),
        question_id: "q".into(),
        prompt: Prompt::Text(question.into()),
        response: response.into(),
        correct: None,
        answer: None,
        source: SourceLocation { file: "test".into(), line: Some(1), row: None },
    }
}

#[test]
fn saved_checkpoints_score_as_the_training_forward_and_reload() {
    for architecture in [Architecture::Qwen2, Architecture::Llama] {
        let temp = tempdir();
        let dir = temp.join(format!("{architecture:?}"));
        let model = build(&dir, architecture, 7);
        assert!(!dir.with_file_name(format!("{architecture:?}.partial-{}", std::process::id())).exists());

        let (question, response) = (
            "Ben has 9 cards. Then Ben finds 4 more. How many cards does Ben have now?",
            "After finding 4 more, Ben has 9 + 4 = 13 cards.\nThe answer is \\boxed{13}.",
        );
        let mut scorer = CheckpointScorer::open(&dir, CheckpointOptions::default()).unwrap();
        let scored = scorer.score(&record(question, response)).unwrap();
        let encoder = whence_encode::Encoder::open(&dir, &whence_encode::TemplateMode::Auto).unwrap();
        let example = example(&encoder, question, response).unwrap();
        let training = model.token_logprobs(&example.ids).unwrap();
        // The scorer scores the response tokens; the example adds the end of turn.
        let expected = &training[example.learn_from - 1..training.len() - 1];
        assert_eq!(scored.logprobs.len(), expected.len());
        let worst = scored.logprobs.iter().zip(expected).map(|(a, b)| (a - *b as f64).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-4, "{architecture:?}: max |Δ| = {worst}");

        let reloaded = Model::load(&dir).unwrap();
        assert_eq!(reloaded.token_logprobs(&example.ids).unwrap(), training);
    }
}

#[test]
fn training_is_deterministic_from_the_seed() {
    let temp = tempdir();
    build(&temp.join("a"), Architecture::Llama, 3);
    build(&temp.join("b"), Architecture::Llama, 3);
    for file in ["model.safetensors", "tokenizer.json", "config.json", "tokenizer_config.json", "generation_config.json"] {
        assert_eq!(std::fs::read(temp.join("a").join(file)).unwrap(), std::fs::read(temp.join("b").join(file)).unwrap(), "{file}");
    }
}

fn tempdir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("whence-train-test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
