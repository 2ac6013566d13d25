//! Training throughput on the shape of `whence demo`'s models: hidden 128,
//! intermediate 384, 4 layers, 4 heads, vocabulary 640, random sequences of
//! 96–160 tokens (128 on average), for each batch size given.
//!
//! cargo run --release -p whence-train --example train_speed -- [STEPS] [BATCH...]
//!
//! Prints tokens per second (padding included, as `train` counts them) and
//! the losses of the first and last steps, so that a change to the training
//! step can be checked to compute the same thing (and a hash of every
//! step's loss bits, to check that runs are identical).

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use whence_train::{train, Architecture, Example, Model, ModelShape, TrainSettings};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let steps: usize = args.first().map(|s| s.parse().expect("STEPS")).unwrap_or(30);
    let batches: Vec<usize> = if args.len() > 1 { args[1..].iter().map(|s| s.parse().expect("BATCH")).collect() } else { vec![8, 16, 32] };
    let architecture = match std::env::var("ARCH").as_deref() {
        Ok("llama") => Architecture::Llama,
        _ => Architecture::Qwen2,
    };
    let shape = ModelShape {
        architecture,
        vocab_size: 640,
        hidden_size: 128,
        intermediate_size: 384,
        layers: 4,
        heads: 4,
        max_positions: 256,
        tie_embeddings: architecture == Architecture::Qwen2,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let examples: Vec<Example> = (0..256)
        .map(|_| {
            let len = 96 + (rng.next_u64() % 65) as usize;
            let ids = (0..len).map(|_| (rng.next_u64() % 640) as u32).collect();
            Example { ids, learn_from: 1 + (rng.next_u64() % 40) as usize }
        })
        .collect();
    println!("{:?}, {} parameters, {} threads", architecture, shape.parameters(), rayon_threads());
    for batch_size in batches {
        let model = Model::new(shape.clone(), 0).unwrap();
        let settings = TrainSettings { steps, batch_size, learning_rate: 1e-3, warmup_steps: 5, weight_decay: 0.01, seed: 0 };
        let mut losses = Vec::new();
        let report = train(&model, &examples, &settings, 0, &mut |s| losses.push(s.loss)).unwrap();
        println!(
            "batch {batch_size:>2}: {:>8.0} tokens/s ({} tokens in {:.2} s); loss first {:.7} step 2 {:.7} last {:.7}; losses' bits hash {:016x}",
            report.tokens as f64 / report.seconds,
            report.tokens,
            report.seconds,
            losses[0],
            losses[1.min(losses.len() - 1)],
            losses[losses.len() - 1],
            losses.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, l| (h ^ l.to_bits() as u64).wrapping_mul(0x100_0000_01b3))
        );
    }
}

fn rayon_threads() -> String {
    std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into())
}
