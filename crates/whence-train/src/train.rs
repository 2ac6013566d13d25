//! The training loop: AdamW over shuffled batches of right-padded
//! sequences, the loss on each sequence's response tokens only.

use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::model::Model;
use crate::TrainError;

/// One training sequence: token ids, and the first position whose token is
/// learned (the tokens before it, the prompt, are context only).
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub ids: Vec<u32>,
    pub learn_from: usize,
}

/// How a model is trained; part of a demo model's cache key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    pub steps: usize,
    pub batch_size: usize,
    /// Peak learning rate, reached after `warmup_steps` (linear), then a
    /// cosine decay to a tenth of it at the last step.
    pub learning_rate: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    /// Seeds the batch order.
    pub seed: u64,
}

impl TrainSettings {
    /// The learning rate at `step` (0-based).
    pub fn learning_rate_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.learning_rate * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay_steps = self.steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / decay_steps as f64).min(1.0);
        let floor = self.learning_rate / 10.0;
        floor + (self.learning_rate - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// What one step did, for progress bars.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// 1-based.
    pub step: usize,
    pub steps: usize,
    pub loss: f32,
    /// Tokens (padding included) per second since the start.
    pub tokens_per_second: f64,
}

/// The outcome of a training run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainReport {
    pub steps: usize,
    pub examples: usize,
    /// Mean loss over the first and the last tenth of the steps.
    pub first_loss: f32,
    pub final_loss: f32,
    pub tokens: u64,
    pub seconds: f64,
}

/// Batches of one window: sequences of similar length are batched together
/// within each window of this many batches, so a batch pads little.
const WINDOW_BATCHES: usize = 16;

/// The batch order: each epoch a fresh permutation of the examples, then,
/// within each window of [`WINDOW_BATCHES`] batches, the examples sorted by
/// length, cut into batches and the batches shuffled (padding is compute: on
/// the demo's mixed-length corpora this saves a sixth to a third of it).
struct Batches {
    rng: ChaCha8Rng,
    lengths: Vec<usize>,
    batch: usize,
    order: Vec<usize>,
    next: usize,
}

impl Batches {
    fn new(lengths: Vec<usize>, batch: usize, seed: u64) -> Self {
        let count = lengths.len();
        Batches { rng: ChaCha8Rng::seed_from_u64(seed), lengths, batch: batch.max(1), order: (0..count).collect(), next: count }
    }

    fn shuffle<T>(rng: &mut ChaCha8Rng, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }

    fn new_epoch(&mut self) {
        Self::shuffle(&mut self.rng, &mut self.order);
        let mut order = Vec::with_capacity(self.order.len());
        for window in self.order.chunks(self.batch * WINDOW_BATCHES) {
            let mut window = window.to_vec();
            window.sort_by_key(|&i| self.lengths[i]);
            let mut batches: Vec<&[usize]> = window.chunks(self.batch).collect();
            Self::shuffle(&mut self.rng, &mut batches);
            order.extend(batches.into_iter().flatten());
        }
        self.order = order;
        self.next = 0;
    }

    fn take(&mut self, size: usize) -> Vec<usize> {
        let mut batch = Vec::with_capacity(size);
        while batch.len() < size.min(self.order.len()) {
            if self.next == self.order.len() {
                self.new_epoch();
            }
            batch.push(self.order[self.next]);
            self.next += 1;
        }
        batch
    }
}

/// Inputs, targets and loss mask of a batch, right-padded with `pad`.
fn batch_tensors(examples: &[&Example], pad: u32) -> candle_core::Result<(Tensor, Tensor, Tensor, usize)> {
    let time = examples.iter().map(|e| e.ids.len() - 1).max().unwrap_or(0);
    let mut inputs = Vec::with_capacity(examples.len() * time);
    let mut targets = Vec::with_capacity(examples.len() * time);
    let mut mask = Vec::with_capacity(examples.len() * time);
    for example in examples {
        let n = example.ids.len() - 1;
        for t in 0..time {
            let real = t < n;
            inputs.push(if real { example.ids[t] } else { pad });
            targets.push(if real { example.ids[t + 1] } else { pad });
            mask.push(if real && t + 1 >= example.learn_from { 1f32 } else { 0.0 });
        }
    }
    let shape = (examples.len(), time);
    let device = Device::Cpu;
    Ok((
        Tensor::from_vec(inputs, shape, &device)?,
        Tensor::from_vec(targets, shape, &device)?,
        Tensor::from_vec(mask, shape, &device)?,
        examples.len() * time,
    ))
}

/// Trains `model` on `examples`; `on_step` sees every step.
pub fn train(
    model: &Model,
    examples: &[Example],
    settings: &TrainSettings,
    pad: u32,
    on_step: &mut dyn FnMut(StepReport),
) -> Result<TrainReport, TrainError> {
    let limit = model.shape().max_positions;
    if let Some(long) =
        examples.iter().find(|e| e.ids.len() > limit + 1 || e.ids.len() < 2 || e.learn_from == 0 || e.learn_from >= e.ids.len())
    {
        return Err(TrainError::Shape(format!(
            "a training sequence of {} tokens learning from {} does not fit a model of {limit} positions",
            long.ids.len(),
            long.learn_from
        )));
    }
    if examples.is_empty() || settings.steps == 0 || settings.batch_size == 0 {
        return Err(TrainError::Shape("nothing to train: no examples, steps or batch".into()));
    }
    let params = ParamsAdamW { lr: settings.learning_rate, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: settings.weight_decay };
    let mut optimizer = AdamW::new(model.parameters(), params)?;
    let mut batches = Batches::new(examples.iter().map(|e| e.ids.len()).collect(), settings.batch_size, settings.seed);
    let started = Instant::now();
    let mut tokens = 0u64;
    let mut losses = Vec::with_capacity(settings.steps);
    for step in 0..settings.steps {
        optimizer.set_learning_rate(settings.learning_rate_at(step));
        let batch: Vec<&Example> = batches.take(settings.batch_size).into_iter().map(|i| &examples[i]).collect();
        let (inputs, targets, mask, count) = batch_tensors(&batch, pad)?;
        let loss = model.loss(&inputs, &targets, &mask)?;
        optimizer.backward_step(&loss)?;
        let loss = loss.to_scalar::<f32>()?;
        if !loss.is_finite() {
            return Err(TrainError::Diverged { step: step + 1, loss });
        }
        losses.push(loss);
        tokens += count as u64;
        on_step(StepReport {
            step: step + 1,
            steps: settings.steps,
            loss,
            tokens_per_second: tokens as f64 / started.elapsed().as_secs_f64().max(1e-9),
        });
    }
    let tenth = (losses.len() / 10).max(1);
    let mean = |s: &[f32]| s.iter().sum::<f32>() / s.len() as f32;
    Ok(TrainReport {
        steps: settings.steps,
        examples: examples.len(),
        first_loss: mean(&losses[..tenth]),
        final_loss: mean(&losses[losses.len() - tenth..]),
        tokens,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learning_rate_warms_up_then_decays_to_a_tenth() {
        let s = TrainSettings { steps: 100, batch_size: 1, learning_rate: 1.0, warmup_steps: 10, weight_decay: 0.0, seed: 0 };
        assert!((s.learning_rate_at(0) - 0.1).abs() < 1e-12);
        assert!((s.learning_rate_at(9) - 1.0).abs() < 1e-12);
        assert!((s.learning_rate_at(10) - 1.0).abs() < 1e-12);
        assert!((s.learning_rate_at(100) - 0.1).abs() < 1e-12);
        assert!(s.learning_rate_at(50) < s.learning_rate_at(20));
    }

    #[test]
    fn every_example_is_seen_once_per_epoch() {
        let mut batches = Batches::new((0..10).map(|i| i % 4).collect(), 2, 3);
        let mut seen: Vec<usize> = (0..5).flat_map(|_| batches.take(2)).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        let mut big = Batches::new((0..1000).map(|i| i % 97).collect(), 8, 1);
        for _ in 0..3 {
            let mut epoch: Vec<usize> = (0..125).flat_map(|_| big.take(8)).collect();
            epoch.sort_unstable();
            assert_eq!(epoch, (0..1000).collect::<Vec<_>>());
        }
    }

    #[test]
    fn batches_group_similar_lengths_in_a_seeded_order() {
        let lengths: Vec<usize> = (0..4096).map(|i| 50 + (i * 7919) % 150).collect();
        let padding = |batches: &mut Batches| -> usize {
            (0..256)
                .map(|_| {
                    let batch = batches.take(16);
                    let longest = batch.iter().map(|&i| lengths[i]).max().unwrap();
                    batch.iter().map(|&i| longest - lengths[i]).sum::<usize>()
                })
                .sum()
        };
        let total: usize = lengths.iter().sum();
        let wasted = padding(&mut Batches::new(lengths.clone(), 16, 5));
        assert!(wasted * 20 < total, "padding {wasted} of {total} tokens");
        let a: Vec<Vec<usize>> = {
            let mut b = Batches::new(lengths.clone(), 16, 5);
            (0..40).map(|_| b.take(16)).collect()
        };
        let b: Vec<Vec<usize>> = {
            let mut b = Batches::new(lengths.clone(), 16, 5);
            (0..40).map(|_| b.take(16)).collect()
        };
        let c: Vec<Vec<usize>> = {
            let mut b = Batches::new(lengths.clone(), 16, 6);
            (0..40).map(|_| b.take(16)).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn padding_is_masked_and_the_prompt_is_not_learned() {
        let a = Example { ids: vec![1, 2, 3, 4], learn_from: 2 };
        let b = Example { ids: vec![5, 6], learn_from: 1 };
        let (inputs, targets, mask, _) = batch_tensors(&[&a, &b], 0).unwrap();
        assert_eq!(inputs.to_vec2::<u32>().unwrap(), vec![vec![1, 2, 3], vec![5, 0, 0]]);
        assert_eq!(targets.to_vec2::<u32>().unwrap(), vec![vec![2, 3, 4], vec![6, 0, 0]]);
        assert_eq!(mask.to_vec2::<f32>().unwrap(), vec![vec![0.0, 1.0, 1.0], vec![1.0, 0.0, 0.0]]);
    }
}
