//! From a record to the token ids a model scores, shared by every scorer
//! that tokenizes on this side: the in-process checkpoint scorer and the
//! inference-server client (which sends token ids, so that the server scores
//! exactly the tokens whose spans are known here).
//!
//! An [`Encoder`] is a checkpoint directory's `tokenizer.json` and chat
//! template (or raw text, for base models); [`Encoder::encode`] renders a
//! record's prompt, tokenizes prompt + response as one text ([`encode`]) and
//! returns the ids with each scored token's byte span in the response.
//!
//! The other way, [`TextStream`] turns generated ids into the text they add
//! after a prompt, decoded in the prompt's context (SPEC §10), for
//! in-process generation, the check of server answers and `whence serve`.

mod detokenize;
mod encode;

pub use detokenize::{text_after, TextStream};
pub use encode::{encode, overlap, Encoded};

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokenizers::Tokenizer;
use whence_core::{Prompt, Record};
use whence_score::ScoreError;
use whence_template::{ChatTemplate, Message};

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

/// Why a tokenizer directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

enum Renderer {
    Raw,
    Chat(ChatTemplate),
}

/// A tokenizer and a prompt renderer, from a checkpoint (or tokenizer)
/// directory.
pub struct Encoder {
    dir: PathBuf,
    tokenizer: Tokenizer,
    renderer: Renderer,
    digest: String,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").field("dir", &self.dir).field("digest", &self.digest).finish()
    }
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

impl Encoder {
    /// Opens `dir/tokenizer.json` and the prompt renderer `template` names.
    pub fn open(dir: &Path, template: &TemplateMode) -> Result<Self, EncoderError> {
        let invalid = |path: &Path, message: String| EncoderError::Invalid { path: path.display().to_string(), message };
        if !dir.is_dir() {
            return Err(invalid(dir, "is not a directory; give the model's checkpoint or tokenizer directory".into()));
        }
        let tokenizer_path = dir.join("tokenizer.json");
        if !tokenizer_path.exists() {
            return Err(invalid(&tokenizer_path, "is missing; whence needs the fast tokenizer file tokenizer.json".into()));
        }
        let tokenizer_bytes =
            std::fs::read(&tokenizer_path).map_err(|source| EncoderError::Io { path: tokenizer_path.display().to_string(), source })?;
        let tokenizer =
            Tokenizer::from_bytes(&tokenizer_bytes).map_err(|e| invalid(&tokenizer_path, format!("not a valid tokenizer: {e}")))?;
        let template_error = |e: whence_template::TemplateError| invalid(dir, e.to_string());
        let renderer = match template {
            TemplateMode::Raw => Renderer::Raw,
            TemplateMode::Auto => match ChatTemplate::from_dir(dir) {
                Ok(template) => Renderer::Chat(template),
                Err(whence_template::TemplateError::Missing { .. }) => Renderer::Raw,
                Err(e) => return Err(template_error(e)),
            },
            TemplateMode::File(path) => {
                let source =
                    std::fs::read_to_string(path).map_err(|source| EncoderError::Io { path: path.display().to_string(), source })?;
                let (bos, eos) = special_tokens(dir);
                Renderer::Chat(ChatTemplate::from_source(&source, &path.display().to_string(), bos, eos).map_err(template_error)?)
            }
        };
        let mut hasher = Sha256::new();
        hasher.update(&tokenizer_bytes);
        hasher.update(b"\0");
        match &renderer {
            Renderer::Raw => hasher.update(b"template:raw\0"),
            Renderer::Chat(template) => {
                hasher.update(b"template:");
                hasher.update(template.source().as_bytes());
                hasher.update(b"\0");
            }
        }
        let digest = format!("{:x}", hasher.finalize());
        Ok(Encoder { dir: dir.to_path_buf(), tokenizer, renderer, digest })
    }

    /// The directory the tokenizer was read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Hex sha256 of what determines the token ids: tokenizer.json and the
    /// template source (or `raw`); part of a scorer's fingerprint.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The prompt as text, and whether the tokenizer adds its special tokens
    /// (raw text: yes, as `tokenizer(text)` does; a rendered chat template
    /// writes its own).
    pub fn prompt_text(&self, record: &Record) -> Result<(String, bool), ScoreError> {
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
                    Prompt::Text(text) => vec![Message::new("user", text.clone())],
                    Prompt::Chat(turns) => turns.iter().map(|t| Message::new(t.role.clone(), t.content.clone())).collect(),
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

    /// The token ids of the record's rendered prompt alone, what a model
    /// continues when it generates (the prompt's text, then its ids).
    pub fn prompt_ids(&self, record: &Record) -> Result<(String, Vec<u32>), ScoreError> {
        let (prompt, add_special_tokens) = self.prompt_text(record)?;
        let encoding = self
            .tokenizer
            .encode(prompt.as_str(), add_special_tokens)
            .map_err(|e| ScoreError::Failed(format!("{}: record `{}`: tokenizer failed: {e}", self.dir.display(), record.id)))?;
        Ok((prompt, encoding.get_ids().to_vec()))
    }

    /// The tokens that end a generation: `eos_token_id` of
    /// `generation_config.json` and of `config.json` (a number or a list),
    /// and `eos_token` of `tokenizer_config.json`, sorted and deduplicated.
    /// A chat model lists its end-of-turn token there (`<|im_end|>`,
    /// `<|eot_id|>`).
    pub fn stop_token_ids(&self) -> Vec<u32> {
        let mut ids = Vec::new();
        let read =
            |name: &str| -> Option<serde_json::Value> { serde_json::from_str(&std::fs::read_to_string(self.dir.join(name)).ok()?).ok() };
        for name in ["generation_config.json", "config.json"] {
            match read(name).as_ref().and_then(|v| v.get("eos_token_id")) {
                Some(serde_json::Value::Number(n)) => ids.extend(n.as_u64().map(|n| n as u32)),
                Some(serde_json::Value::Array(list)) => ids.extend(list.iter().filter_map(|v| v.as_u64()).map(|n| n as u32)),
                _ => {}
            }
        }
        if let (_, Some(eos)) = special_tokens(&self.dir) {
            ids.extend(self.tokenizer.token_to_id(&eos));
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The text of `ids`, special tokens included (as sampled).
    pub fn decode(&self, ids: &[u32]) -> Result<String, String> {
        self.tokenizer.decode(ids, false).map_err(|e| format!("{}: cannot decode tokens: {e}", self.dir.display()))
    }

    /// A stream that decodes tokens drawn after `context` (a prompt's ids)
    /// in that context, special tokens included (SPEC §10).
    pub fn text_stream(&self, context: &[u32]) -> Result<TextStream<'_>, String> {
        TextStream::new(&self.tokenizer, context, false).map_err(|e| format!("{}: {e}", self.dir.display()))
    }

    /// The token ids of the record's rendered prompt + response and the
    /// scored tokens' spans in the response.
    pub fn encode(&self, record: &Record) -> Result<Encoded, ScoreError> {
        let (prompt, add_special_tokens) = self.prompt_text(record)?;
        encode(&self.tokenizer, &prompt, &record.response, add_special_tokens)
            .map_err(|e| ScoreError::Failed(format!("{}: record `{}`: {e}", self.dir.display(), record.id)))
    }
}

impl Encoded {
    /// Keeps the first `limit` tokens (a response longer than a model's
    /// context, scored with `--truncate`).
    pub fn truncate(&mut self, limit: usize) {
        self.ids.truncate(limit);
        self.spans.truncate(limit.saturating_sub(self.first_scored));
    }
}
