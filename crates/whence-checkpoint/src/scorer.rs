//! The in-process checkpoint scorer: a Hugging Face checkpoint directory as
//! a [`Scorer`].
//!
//! Opening reads the config, the tokenizer and the chat template and checks
//! the weight files; the weights are loaded on the first record scored and
//! freed by [`Scorer::release`], so a run that scores model by model holds
//! one model at a time.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use sha2::{Digest, Sha256};
use whence_core::Record;
use whence_encode::Encoder;
pub use whence_encode::TemplateMode;
use whence_score::{ModelInfo, ScoreError, Scorer, TokenLogprobs};

use crate::weights::{open_weights, safetensors_files};
use crate::{CheckpointError, Config, Decoder};

/// How a checkpoint is run.
#[derive(Debug, Clone)]
pub struct CheckpointOptions {
    /// Compute dtype (f32 by default: exact, and fastest on CPU).
    pub dtype: DType,
    pub device: Device,
    pub template: TemplateMode,
    /// Score only the first `max_position_embeddings` tokens of longer
    /// sequences instead of failing.
    pub truncate: bool,
    /// Tokens one forward pass may hold: records scored together are packed
    /// into passes of up to this many tokens (a longer record runs alone);
    /// `None`: [`CheckpointOptions::default_batch_tokens`] for the device.
    pub batch_tokens: Option<usize>,
}

impl Default for CheckpointOptions {
    fn default() -> Self {
        CheckpointOptions { dtype: DType::F32, device: Device::Cpu, template: TemplateMode::Auto, truncate: false, batch_tokens: None }
    }
}

impl CheckpointOptions {
    /// Packing by default on a GPU (8,192 tokens a pass, so that it is not
    /// idle on short responses); one record per pass on the CPU, where a
    /// record's pass already keeps the cores busy and its results then do
    /// not depend on which records it was scored with (a resumed run gives
    /// the bytes of an uninterrupted one; packed, they agree to 1e-5 in f32).
    pub fn default_batch_tokens(device: &Device) -> usize {
        if device.is_cpu() {
            1
        } else {
            8192
        }
    }

    /// The pass budget in effect.
    pub fn pass_tokens(&self) -> usize {
        self.batch_tokens.unwrap_or_else(|| CheckpointOptions::default_batch_tokens(&self.device)).max(1)
    }
}

/// The device named `cpu`, `cuda` (or `cuda:N`) or `metal`, if compiled in.
pub fn device(name: &str) -> Result<Device, CheckpointError> {
    let model = |m: String| CheckpointError::Model(m);
    match name {
        "cpu" => Ok(Device::Cpu),
        cuda if cuda == "cuda" || cuda.starts_with("cuda:") => {
            let ordinal: usize = cuda
                .strip_prefix("cuda:")
                .map_or(Ok(0), str::parse)
                .map_err(|_| model(format!("invalid device `{cuda}`; write cuda or cuda:N")))?;
            if !candle_core::utils::cuda_is_available() {
                return Err(model("device `cuda` is not compiled in; rebuild whence with `--features cuda`".into()));
            }
            Device::new_cuda(ordinal).map_err(|e| model(format!("cannot open CUDA device {ordinal}: {e}")))
        }
        "metal" => {
            if !candle_core::utils::metal_is_available() {
                return Err(model("device `metal` is not compiled in; rebuild whence with `--features metal`".into()));
            }
            Device::new_metal(0).map_err(|e| model(format!("cannot open the Metal device: {e}")))
        }
        other => Err(model(format!("unknown device `{other}`; valid devices: cpu, cuda, cuda:N, metal"))),
    }
}

/// A checkpoint directory scoring records in-process.
pub struct CheckpointScorer {
    dir: PathBuf,
    config: Config,
    encoder: Encoder,
    options: CheckpointOptions,
    decoder: Option<Decoder>,
    info: ModelInfo,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io { path: path.display().to_string(), source }
}

impl std::fmt::Debug for CheckpointScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointScorer")
            .field("dir", &self.dir)
            .field("architecture", &self.config.architecture)
            .field("loaded", &self.decoder.is_some())
            .field("fingerprint", &self.info.fingerprint)
            .finish()
    }
}

impl CheckpointScorer {
    /// Opens `dir`: config, tokenizer, template, weight file headers.
    pub fn open(dir: &Path, options: CheckpointOptions) -> Result<Self, CheckpointError> {
        if !dir.is_dir() {
            return Err(CheckpointError::Config { path: dir.display().to_string(), message: "is not a checkpoint directory".into() });
        }
        let config = Config::from_dir(dir)?;
        let encoder = Encoder::open(dir, &options.template)?;
        let files = safetensors_files(dir)?;
        let fingerprint = fingerprint(dir, &files, &encoder, &options)?;
        let info = ModelInfo { kind: "checkpoint".into(), source: dir.display().to_string(), fingerprint };
        Ok(CheckpointScorer { dir: dir.to_path_buf(), config, encoder, options, decoder: None, info })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The tokenizer and prompt renderer.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    pub fn options(&self) -> &CheckpointOptions {
        &self.options
    }

    /// The checkpoint directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The loaded model and the encoder, loading the model on first use.
    pub fn decoder_and_encoder(&mut self) -> Result<(&Decoder, &Encoder), ScoreError> {
        self.decoder()?;
        Ok((self.decoder.as_ref().expect("just loaded"), &self.encoder))
    }

    /// The loaded model, loading it on first use (freed by [`Scorer::release`]).
    pub fn decoder(&mut self) -> Result<&Decoder, ScoreError> {
        if self.decoder.is_none() {
            let failed = |e: String| ScoreError::InvalidSource(e);
            let vb = open_weights(&self.dir, self.options.dtype, &self.options.device).map_err(|e| failed(e.to_string()))?;
            let decoder =
                Decoder::load(&self.config, vb).map_err(|e| failed(format!("{}: cannot load the weights: {e}", self.dir.display())))?;
            self.decoder = Some(decoder);
        }
        Ok(self.decoder.as_ref().expect("just loaded"))
    }
}

impl CheckpointScorer {
    /// `record` encoded, checked against the context (or truncated to it).
    fn prepare(&self, record: &Record) -> Result<whence_encode::Encoded, ScoreError> {
        let mut encoded = self.encoder.encode(record)?;
        let context = self.config.max_position_embeddings;
        if encoded.ids.len() > context {
            if !self.options.truncate {
                return Err(ScoreError::InvalidRecord {
                    location: record.source.to_string(),
                    field: "response".into(),
                    message: format!(
                        "{} tokens exceed the context of {} ({} tokens, max_position_embeddings); pass --truncate to score the first {context}",
                        encoded.ids.len(),
                        self.dir.display(),
                        context
                    ),
                });
            }
            encoded.truncate(context);
        }
        Ok(encoded)
    }

    /// Scores the encoded records of `pack` (indices into `records`) in one pass.
    fn score_pack(
        &mut self,
        pack: Vec<(usize, whence_encode::Encoded)>,
        records: &[&Record],
        deliver: &mut dyn FnMut(usize, Result<TokenLogprobs, ScoreError>),
    ) {
        let decoder = match self.decoder() {
            Ok(decoder) => decoder,
            Err(e) => {
                // Loading failed: the same error for every record of the pack.
                let message = match &e {
                    ScoreError::InvalidSource(message) => message.clone(),
                    other => other.to_string(),
                };
                let mut error = Some(e);
                for (index, _) in pack {
                    deliver(index, Err(error.take().unwrap_or_else(|| ScoreError::InvalidSource(message.clone()))));
                }
                return;
            }
        };
        let sequences: Vec<(&[u32], usize)> = pack.iter().map(|(_, e)| (e.ids.as_slice(), e.first_scored)).collect();
        match decoder.token_logprobs_packed(&sequences) {
            Ok(results) => {
                for ((index, encoded), logprobs) in pack.into_iter().zip(results) {
                    deliver(index, Ok(finish(encoded, logprobs)));
                }
            }
            Err(_) if pack.len() > 1 => {
                for (index, _) in pack {
                    deliver(index, self.score(records[index]));
                }
            }
            Err(e) => {
                let (index, _) = &pack[0];
                let record = records[*index];
                deliver(*index, Err(ScoreError::Failed(format!("{}: record `{}`: {e}", self.info.source, record.id))));
            }
        }
    }
}

impl Scorer for CheckpointScorer {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn score(&mut self, record: &Record) -> Result<TokenLogprobs, ScoreError> {
        let encoded = self.prepare(record)?;
        let logprobs = self
            .decoder()?
            .token_logprobs(&encoded.ids, encoded.first_scored)
            .map_err(|e| ScoreError::Failed(format!("{}: record `{}`: {e}", self.info.source, record.id)))?;
        Ok(finish(encoded, logprobs))
    }

    /// Packs the records into passes of up to [`CheckpointOptions::pass_tokens`]
    /// tokens, in input order (a record that cannot be encoded is delivered
    /// as its error at once); a pass that fails is retried record by record,
    /// so that the error names the record it belongs to.
    fn score_each(&mut self, records: &[&Record], deliver: &mut dyn FnMut(usize, Result<TokenLogprobs, ScoreError>)) {
        let budget = self.options.pass_tokens();
        if budget <= 1 {
            for (index, record) in records.iter().enumerate() {
                deliver(index, self.score(record));
            }
            return;
        }
        let mut pack: Vec<(usize, whence_encode::Encoded)> = Vec::new();
        let mut tokens = 0;
        for (index, record) in records.iter().enumerate() {
            match self.prepare(record) {
                Err(e) => deliver(index, Err(e)),
                Ok(encoded) => {
                    if !pack.is_empty() && tokens + encoded.ids.len() > budget {
                        self.score_pack(std::mem::take(&mut pack), records, deliver);
                        tokens = 0;
                    }
                    tokens += encoded.ids.len();
                    pack.push((index, encoded));
                }
            }
        }
        if !pack.is_empty() {
            self.score_pack(pack, records, deliver);
        }
    }

    fn release(&mut self) {
        self.decoder = None;
    }
}

/// The scores of an encoded record: one log-probability per scored span.
fn finish(encoded: whence_encode::Encoded, logprobs: Vec<f32>) -> TokenLogprobs {
    let mut spans = encoded.spans;
    spans.truncate(logprobs.len());
    TokenLogprobs { spans, logprobs: logprobs.into_iter().map(f64::from).collect() }
}

/// sha256 over what determines the scores: config.json, the encoder
/// (tokenizer.json and the template, or `raw`), the compute dtype, truncation, and per weight file its
/// name, size, header and its first and last MiB of data.
fn fingerprint(dir: &Path, files: &[PathBuf], encoder: &Encoder, options: &CheckpointOptions) -> Result<String, CheckpointError> {
    let mut hasher = Sha256::new();
    hasher.update(b"whence-checkpoint-v2\0");
    let config = dir.join("config.json");
    hasher.update(std::fs::read(&config).map_err(io(&config))?);
    hasher.update(b"\0");
    hasher.update(format!("encoder:{}\0", encoder.digest()).as_bytes());
    hasher.update(format!("dtype:{:?}\0truncate:{}\0", options.dtype, options.truncate).as_bytes());
    for file in files {
        let mut handle = std::fs::File::open(file).map_err(io(file))?;
        let size = handle.metadata().map_err(io(file))?.len();
        hasher.update(format!("{}:{size}\0", file.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()).as_bytes());
        let mut sample = |offset: u64, len: u64| -> std::io::Result<()> {
            let mut buffer = vec![0u8; len.min(size.saturating_sub(offset)) as usize];
            handle.seek(SeekFrom::Start(offset))?;
            handle.read_exact(&mut buffer)?;
            hasher.update(&buffer);
            Ok(())
        };
        const MIB: u64 = 1 << 20;
        sample(0, MIB).map_err(io(file))?;
        sample(size.saturating_sub(MIB), MIB).map_err(io(file))?;
    }
    Ok(format!("sha256:{:x}", hasher.finalize()))
}
