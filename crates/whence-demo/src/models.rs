//! Training the world's models, or finding them in the cache.
//!
//! A model's directory is `CACHE/ROLE-KEY`, KEY a digest of the whence
//! version, the role, the plan of the model and the exact texts it learns
//! from (so a change to the world, the model or the code's version trains
//! anew). Checkpoints are written to a temporary directory and renamed, so
//! a directory that exists is whole; beside the weights, `whence-demo.json`
//! holds how the model was trained.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use whence_train::tokenizer::{special_id, train_tokenizer, END_OF_TEXT};
use whence_train::{example, save_weights, train, write_tokenizer, Model, Staged, TrainReport, TrainSettings};
use whence_world::summary::ModelSummary;

use crate::plan::ModelPlan;
use crate::{DemoError, DemoProgress};

/// What the cache keeps beside a model's weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Provenance {
    key: String,
    summary: ModelSummary,
}

/// A trained model on disk.
#[derive(Debug, Clone)]
pub struct Trained {
    pub dir: PathBuf,
    pub summary: ModelSummary,
    /// Found in the cache rather than trained by this run.
    pub cached: bool,
}

/// The digest of what decides a model.
pub fn model_key(role: &str, plan: &impl Serialize, pairs: &[(String, String)], parent: Option<&str>) -> Result<String, DemoError> {
    let mut hasher = Sha256::new();
    hasher.update(b"whence-demo-model-v1\0");
    hasher.update(whence_pipeline::VERSION.as_bytes());
    hasher.update(b"\0");
    hasher.update(role.as_bytes());
    hasher.update(b"\0");
    hasher.update(serde_json::to_vec(plan)?);
    hasher.update(b"\0");
    hasher.update(parent.unwrap_or("").as_bytes());
    for (question, response) in pairs {
        hasher.update((question.len() as u64).to_le_bytes());
        hasher.update(question.as_bytes());
        hasher.update((response.len() as u64).to_le_bytes());
        hasher.update(response.as_bytes());
    }
    Ok(format!("{:x}", hasher.finalize())[..16].to_string())
}

fn cached(dir: &Path, key: &str) -> Option<ModelSummary> {
    let text = std::fs::read_to_string(dir.join("whence-demo.json")).ok()?;
    let provenance: Provenance = serde_json::from_str(&text).ok()?;
    (provenance.key == key && dir.join("model.safetensors").is_file()).then_some(provenance.summary)
}

fn summary(role: &str, model: &Model, trained_on: &str, report: &TrainReport) -> ModelSummary {
    let shape = model.shape();
    ModelSummary {
        role: role.to_string(),
        architecture: shape.architecture.hf_name().to_string(),
        parameters: shape.parameters(),
        vocab_size: shape.vocab_size,
        hidden_size: shape.hidden_size,
        layers: shape.layers,
        trained_on: trained_on.to_string(),
        training_sequences: report.examples,
        steps: report.steps,
        first_loss: report.first_loss,
        final_loss: report.final_loss,
    }
}

fn finish(staged: Staged, key: &str, summary: ModelSummary) -> Result<Trained, DemoError> {
    let provenance = Provenance { key: key.to_string(), summary: summary.clone() };
    let path = staged.dir().join("whence-demo.json");
    std::fs::write(&path, serde_json::to_string_pretty(&provenance)?).map_err(|e| DemoError::io(&path, e))?;
    let dir = staged.finish()?;
    Ok(Trained { dir, summary, cached: false })
}

fn run_training(
    label: &str,
    model: &Model,
    examples: &[whence_train::Example],
    settings: &TrainSettings,
    pad: u32,
    progress: &dyn DemoProgress,
) -> Result<TrainReport, DemoError> {
    progress.training_start(label, settings.steps);
    let report = train(model, examples, settings, pad, &mut |step| progress.training_step(&step));
    progress.training_finish();
    Ok(report?)
}

/// Trains a model from scratch on `pairs` (question, response): its own
/// byte-level BPE of `plan.vocab_size` on `tokenizer_texts` (broad text, as
/// real tokenizers are trained on), then the model, learning the responses.
#[allow(clippy::too_many_arguments)]
pub fn train_from_scratch(
    cache: &Path,
    role: &str,
    plan: &ModelPlan,
    tokenizer_texts: &[(String, String)],
    pairs: &[(String, String)],
    trained_on: &str,
    progress: &dyn DemoProgress,
) -> Result<Trained, DemoError> {
    let tokenizer_key = model_key("tokenizer", &plan.vocab_size, tokenizer_texts, None)?;
    let key = model_key(role, plan, pairs, Some(&tokenizer_key))?;
    let dir = cache.join(format!("{role}-{key}"));
    if let Some(summary) = cached(&dir, &key) {
        return Ok(Trained { dir, summary, cached: true });
    }
    let tokenizer = train_tokenizer(tokenizer_texts.iter().flat_map(|(q, r)| [q.as_str(), r.as_str()]), plan.vocab_size)?;
    let staged = Staged::new(&dir)?;
    let shape = plan.shape(tokenizer.get_vocab_size(true));
    let encoder = write_tokenizer(staged.dir(), &tokenizer, shape.max_positions)?;
    let examples = pairs.iter().map(|(q, r)| example(&encoder, q, r)).collect::<Result<Vec<_>, _>>()?;
    let model = Model::new(shape, plan.train.seed)?;
    let label = format!("training the {role} ({:.2}M parameters)", model.shape().parameters() as f64 / 1e6);
    let report = run_training(&label, &model, &examples, &plan.train, special_id(&tokenizer, END_OF_TEXT)?, progress)?;
    save_weights(staged.dir(), &model, &encoder)?;
    finish(staged, &key, summary(role, &model, trained_on, &report))
}

/// Fine-tunes a copy of `base` on `pairs`, learning the responses only.
pub fn fine_tune(
    cache: &Path,
    role: &str,
    base: &Trained,
    settings: &TrainSettings,
    pairs: &[(String, String)],
    trained_on: &str,
    progress: &dyn DemoProgress,
) -> Result<Trained, DemoError> {
    let parent = base.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let key = model_key(role, settings, pairs, Some(&parent))?;
    let dir = cache.join(format!("{role}-{key}"));
    if let Some(summary) = cached(&dir, &key) {
        return Ok(Trained { dir, summary, cached: true });
    }
    let staged = Staged::new(&dir)?;
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        let (from, to) = (base.dir.join(file), staged.dir().join(file));
        std::fs::copy(&from, &to).map_err(|e| DemoError::io(&from, e))?;
    }
    let encoder = whence_encode::Encoder::open(staged.dir(), &whence_encode::TemplateMode::Auto)
        .map_err(|e| DemoError::Model(format!("{}: {e}", base.dir.display())))?;
    let model = Model::load(&base.dir)?;
    // A sampled response too long for the student's context is left out (counted in `trained_on`).
    let limit = model.shape().max_positions + 1;
    let mut examples = Vec::with_capacity(pairs.len());
    for (q, r) in pairs {
        let e = example(&encoder, q, r)?;
        if e.ids.len() <= limit {
            examples.push(e);
        }
    }
    let left_out = pairs.len() - examples.len();
    let trained_on =
        if left_out > 0 { format!("{trained_on} ({left_out} longer than the context left out)") } else { trained_on.to_string() };
    let trained_on = trained_on.as_str();
    let label = format!("distilling into a copy of the student ({} responses)", examples.len());
    let pad = special_id(encoder.tokenizer(), END_OF_TEXT)?;
    let report = run_training(&label, &model, &examples, settings, pad, progress)?;
    save_weights(staged.dir(), &model, &encoder)?;
    finish(staged, &key, summary(role, &model, trained_on, &report))
}
