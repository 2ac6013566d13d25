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
use tokenizers::Tokenizer;
use whence_core::{Prompt, Record};
use whence_score::{ModelInfo, ScoreError, Scorer, TokenLogprobs};
use whence_template::{ChatTemplate, Message};

use crate::encode::encode;
use crate::weights::{open_weights, safetensors_files};
use crate::{CheckpointError, Config, Decoder};

/// How the prompt becomes text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateMode {
    /// The checkpoint's chat template when it has one, else `Raw`.
    Auto,
    /// Prompt and response as plain concatenated text, tokenized as
    /// `tokenizer(prompt + response)` does by default (base models); chat
    /// turns are joined with newlines.
    Raw,
    /// A chat template file given by the user.
    File(PathBuf),
}

impl std::str::FromStr for TemplateMode {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => TemplateMode::Auto,
            "raw" => TemplateMode::Raw,
            path => TemplateMode::File(PathBuf::from(path)),
        })
    }
}

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
}

impl Default for CheckpointOptions {
    fn default() -> Self {
        CheckpointOptions { dtype: DType::F32, device: Device::Cpu, template: TemplateMode::Auto, truncate: false }
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

enum Renderer {
    Raw,
    Chat(ChatTemplate),
}

/// A checkpoint directory scoring records in-process.
pub struct CheckpointScorer {
    dir: PathBuf,
    config: Config,
    tokenizer: Tokenizer,
    renderer: Renderer,
    options: CheckpointOptions,
    decoder: Option<Decoder>,
    info: ModelInfo,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io { path: path.display().to_string(), source }
}

/// bos/eos from tokenizer_config.json: strings or AddedToken objects.
fn special_tokens(dir: &Path) -> (Option<String>, Option<String>) {
    let Ok(text) = std::fs::read_to_string(dir.join("tokenizer_config.json")) else { return (None, None) };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else { return (None, None) };
    let token = |key: &str| match value.get(key) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(object) => object.get("content").and_then(|c| c.as_str()).map(str::to_string),
        None => None,
    };
    (token("bos_token"), token("eos_token"))
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
        let tokenizer_path = dir.join("tokenizer.json");
        if !tokenizer_path.exists() {
            return Err(CheckpointError::Config {
                path: tokenizer_path.display().to_string(),
                message: "is missing; whence needs the fast tokenizer file tokenizer.json".into(),
            });
        }
        let tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| CheckpointError::Config {
            path: tokenizer_path.display().to_string(),
            message: format!("not a valid tokenizer: {e}"),
        })?;
        let template_error =
            |e: whence_template::TemplateError| CheckpointError::Config { path: dir.display().to_string(), message: e.to_string() };
        let renderer = match &options.template {
            TemplateMode::Raw => Renderer::Raw,
            TemplateMode::Auto => match ChatTemplate::from_dir(dir) {
                Ok(template) => Renderer::Chat(template),
                Err(whence_template::TemplateError::Missing { .. }) => Renderer::Raw,
                Err(e) => return Err(template_error(e)),
            },
            TemplateMode::File(path) => {
                let source = std::fs::read_to_string(path).map_err(io(path))?;
                let (bos, eos) = special_tokens(dir);
                Renderer::Chat(ChatTemplate::from_source(&source, &path.display().to_string(), bos, eos).map_err(template_error)?)
            }
        };
        let files = safetensors_files(dir)?;
        let fingerprint = fingerprint(dir, &files, &renderer, &options)?;
        let info = ModelInfo { kind: "checkpoint".into(), source: dir.display().to_string(), fingerprint };
        Ok(CheckpointScorer { dir: dir.to_path_buf(), config, tokenizer, renderer, options, decoder: None, info })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn decoder(&mut self) -> Result<&Decoder, ScoreError> {
        if self.decoder.is_none() {
            let failed = |e: String| ScoreError::InvalidSource(e);
            let vb = open_weights(&self.dir, self.options.dtype, &self.options.device).map_err(|e| failed(e.to_string()))?;
            let decoder =
                Decoder::load(&self.config, vb).map_err(|e| failed(format!("{}: cannot load the weights: {e}", self.dir.display())))?;
            self.decoder = Some(decoder);
        }
        Ok(self.decoder.as_ref().expect("just loaded"))
    }

    /// The prompt as text, and whether the tokenizer adds its special tokens.
    fn prompt_text(&self, record: &Record) -> Result<(String, bool), ScoreError> {
        match &self.renderer {
            Renderer::Raw => Ok((
                match &record.prompt {
                    Prompt::Text(text) => text.clone(),
                    Prompt::Chat(turns) => turns.iter().map(|t| t.content.as_str()).collect::<Vec<_>>().join("\n"),
                },
                true,
            )),
            Renderer::Chat(template) => {
                let messages: Vec<Message> = match &record.prompt {
                    Prompt::Text(text) => vec![Message { role: "user".into(), content: text.clone(), extra: Default::default() }],
                    Prompt::Chat(turns) => turns
                        .iter()
                        .map(|t| Message { role: t.role.clone(), content: t.content.clone(), extra: Default::default() })
                        .collect(),
                };
                let rendered = template.render(&messages, true, &Default::default()).map_err(|e| ScoreError::InvalidRecord {
                    location: record.source.to_string(),
                    field: "prompt".into(),
                    message: format!("chat template {}: {e}", template.origin()),
                })?;
                Ok((rendered, false))
            }
        }
    }
}

impl Scorer for CheckpointScorer {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn score(&mut self, record: &Record) -> Result<TokenLogprobs, ScoreError> {
        let (prompt, add_special_tokens) = self.prompt_text(record)?;
        let mut encoded = encode(&self.tokenizer, &prompt, &record.response, add_special_tokens)
            .map_err(|e| ScoreError::Failed(format!("{}: record `{}`: {e}", self.dir.display(), record.id)))?;
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
            encoded.ids.truncate(context);
            encoded.spans.truncate(context.saturating_sub(encoded.first_scored));
        }
        let first = encoded.first_scored;
        let ids = encoded.ids;
        let decoder = self.decoder()?;
        let logprobs = decoder
            .token_logprobs(&ids, first)
            .map_err(|e| ScoreError::Failed(format!("{}: record `{}`: {e}", self.info.source, record.id)))?;
        let mut spans = encoded.spans;
        spans.truncate(logprobs.len());
        Ok(TokenLogprobs { spans, logprobs: logprobs.into_iter().map(f64::from).collect() })
    }

    fn release(&mut self) {
        self.decoder = None;
    }
}

/// sha256 over what determines the scores: config.json, tokenizer.json, the
/// template (or `raw`), the compute dtype, truncation, and per weight file its
/// name, size, header and its first and last MiB of data.
fn fingerprint(dir: &Path, files: &[PathBuf], renderer: &Renderer, options: &CheckpointOptions) -> Result<String, CheckpointError> {
    let mut hasher = Sha256::new();
    hasher.update(b"whence-checkpoint-v1\0");
    for name in ["config.json", "tokenizer.json"] {
        let path = dir.join(name);
        hasher.update(std::fs::read(&path).map_err(io(&path))?);
        hasher.update(b"\0");
    }
    match renderer {
        Renderer::Raw => hasher.update(b"template:raw\0"),
        Renderer::Chat(template) => {
            hasher.update(b"template:");
            hasher.update(template.source().as_bytes());
            hasher.update(b"\0");
        }
    }
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
