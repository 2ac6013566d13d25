//! Flags shared by several commands.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use whence_core::SegmenterConfig;
use whence_io::{FieldNames, ReadOptions, RecordSet};
use whence_score::{FileScorer, Scorer, ScorerSpec};

/// The input file and its field names.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// Records: JSONL (.jsonl, .ndjson, .json) or Parquet (.parquet, .pq)
    pub input: PathBuf,
    #[command(flatten)]
    pub fields: FieldArgs,
    /// Skip invalid records (bad fields, missing or bad scores) and count them in the summary
    #[arg(long)]
    pub skip_invalid: bool,
}

/// The input's field names.
#[derive(Debug, Args)]
pub struct FieldArgs {
    /// Field holding the record id; records without it get FILE:LINE (FILE:ROW for Parquet)
    #[arg(long, default_value = "id", help_heading = "Input fields")]
    pub id_field: String,
    /// Field grouping responses to the same question; records without it get a hash of the prompt (questions of `generate`: their id)
    #[arg(long, default_value = "question_id", help_heading = "Input fields")]
    pub question_id_field: String,
    /// Field holding the prompt as text
    #[arg(long, default_value = "prompt", help_heading = "Input fields")]
    pub prompt_field: String,
    /// Field holding the prompt as OpenAI chat messages (role, content)
    #[arg(long, default_value = "messages", help_heading = "Input fields")]
    pub messages_field: String,
    /// Field holding the prompt as ShareGPT turns (from, value)
    #[arg(long, default_value = "conversations", help_heading = "Input fields")]
    pub conversations_field: String,
    /// Field holding the response
    #[arg(long, default_value = "response", help_heading = "Input fields")]
    pub response_field: String,
    /// Field holding a correctness verdict (true/false)
    #[arg(long, default_value = "correct", help_heading = "Input fields")]
    pub correct_field: String,
    /// Field holding the reference answer, graded when no verdict is given
    #[arg(long, default_value = "answer", help_heading = "Input fields")]
    pub answer_field: String,
}

impl InputArgs {
    pub fn read(&self, prompt_optional: bool) -> anyhow::Result<RecordSet> {
        self.fields.read(&self.input, self.skip_invalid, prompt_optional)
    }
}

impl FieldArgs {
    pub fn read(&self, input: &std::path::Path, skip_invalid: bool, prompt_optional: bool) -> anyhow::Result<RecordSet> {
        self.read_with(input, ReadOptions { skip_invalid, prompt_optional, ..Default::default() })
    }

    /// Reads questions (`whence generate`): no response field.
    pub fn read_questions(&self, input: &std::path::Path, skip_invalid: bool) -> anyhow::Result<RecordSet> {
        self.read_with(input, ReadOptions { skip_invalid, questions: true, ..Default::default() })
    }

    fn read_with(&self, input: &std::path::Path, given: ReadOptions) -> anyhow::Result<RecordSet> {
        let options = ReadOptions {
            fields: FieldNames {
                id: self.id_field.clone(),
                question_id: self.question_id_field.clone(),
                prompt: self.prompt_field.clone(),
                messages: self.messages_field.clone(),
                conversations: self.conversations_field.clone(),
                response: self.response_field.clone(),
                correct: self.correct_field.clone(),
                answer: self.answer_field.clone(),
            },
            ..given
        };
        let set = whence_io::read_records(input, &options)?;
        tracing::info!(
            "read {} records from {}{}",
            set.records.len(),
            input.display(),
            if set.skipped.is_empty() { String::new() } else { format!(" ({} skipped as invalid)", set.skipped.len()) }
        );
        Ok(set)
    }
}

/// How responses are cut into actions.
#[derive(Debug, Args)]
#[command(next_help_heading = "Segmentation")]
pub struct SegmentationArgs {
    /// Another literal special token (an action of its own); repeatable
    #[arg(long = "special-token", value_name = "TOKEN")]
    pub special_tokens: Vec<String>,
    /// Another special-token regex; repeatable
    #[arg(long = "special-pattern", value_name = "REGEX")]
    pub special_patterns: Vec<String>,
    /// Drop the default special tokens (<think>, </think>, <|…|>)
    #[arg(long)]
    pub no_default_specials: bool,
    /// Sentence boundary regex; the cut is at the start of its last capture group
    #[arg(long, value_name = "REGEX", default_value = whence_core::segment::DEFAULT_SENTENCE_PATTERN)]
    pub sentence_pattern: String,
}

impl SegmentationArgs {
    pub fn config(&self) -> anyhow::Result<SegmenterConfig> {
        let mut config = if self.no_default_specials {
            SegmenterConfig { special_tokens: vec![], special_patterns: vec![], ..Default::default() }
        } else {
            SegmenterConfig::default()
        };
        config.special_tokens.extend(self.special_tokens.iter().cloned());
        config.special_patterns.extend(self.special_patterns.iter().cloned());
        config.sentence_pattern = self.sentence_pattern.clone();
        // Compile once here so that a bad pattern is a usage error.
        whence_core::Segmenter::new(&config).map_err(|e| crate::errors::UsageError(e.to_string()))?;
        Ok(config)
    }
}

/// Table output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Parquet,
    Jsonl,
}

impl From<FormatArg> for whence_io::OutputFormat {
    fn from(format: FormatArg) -> Self {
        match format {
            FormatArg::Parquet => whence_io::OutputFormat::Parquet,
            FormatArg::Jsonl => whence_io::OutputFormat::Jsonl,
        }
    }
}

/// Answer-extraction fallback for grading.
#[derive(Debug, Args)]
pub struct GradingArgs {
    /// When a response has no \boxed{}: none, answer-is, answer-is-then-last-number
    #[arg(long, default_value = "answer-is-then-last-number", value_parser = parse_fallback)]
    pub fallback: whence_grade::Fallback,
}

fn parse_fallback(s: &str) -> Result<whence_grade::Fallback, String> {
    s.parse().map_err(|e: whence_grade::UnknownFallback| e.to_string())
}

/// How checkpoint scorers run, and the score cache.
#[derive(Debug, Args)]
#[command(next_help_heading = "Models")]
pub struct ModelArgs {
    /// Compute dtype of checkpoint scorers: f32 (exact), bf16 (weights in bf16, half the memory; on the CPU products of bf16 with f32 sums, everything else f32), f16
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    pub dtype: candle_core::DType,
    /// Device of checkpoint scorers: cpu, cuda, cuda:N, metal (cuda/metal need the cargo feature)
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Prompt rendering: auto (the checkpoint's chat template, else raw), raw (plain prompt + response text), or a template FILE
    #[arg(long, default_value = "auto", value_name = "auto|raw|FILE")]
    pub template: whence_encode::TemplateMode,
    /// Score only the first max_position_embeddings tokens of longer sequences instead of failing
    #[arg(long)]
    pub truncate: bool,
    /// Tokens one forward pass of a checkpoint may hold: short records are packed into passes of up to N tokens (each attends only to itself) [default: 8192 on a GPU; 1 on the CPU, one record per pass]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_tokens: Option<u64>,
    /// CPU threads for checkpoint scoring [default: all cores]
    #[arg(long)]
    pub threads: Option<usize>,
    /// Score cache (SQLite): token log-probabilities per model fingerprint and record content, reused by reruns and resumed runs [default: $XDG_CACHE_HOME/whence/scores.sqlite or ~/.cache/whence/scores.sqlite]
    #[arg(long, value_name = "PATH")]
    pub cache: Option<PathBuf>,
    /// Do not read or write the score cache
    #[arg(long, conflicts_with = "cache")]
    pub no_cache: bool,

    /// Tokenizer directory of a role scored by a server (with its chat template) or by a `file:` that gives token ids: ROLE=DIR (teacher, student, distilled, model, or a candidate's name), or DIR for every such role; repeatable
    #[arg(long = "tokenizer", value_name = "[ROLE=]DIR", help_heading = "Inference servers")]
    pub tokenizers: Vec<String>,
    /// Requests in flight at once per server-scored role, over all its endpoints
    #[arg(long, default_value = "8", value_name = "N", help_heading = "Inference servers")]
    pub max_in_flight: usize,
    /// Longest prompt + response sent to a server, in tokens (longer: an error, or with --truncate the first N are scored)
    #[arg(long, default_value = "131072", value_name = "TOKENS", help_heading = "Inference servers")]
    pub max_request_tokens: usize,
    /// Timeout of one server request, in seconds
    #[arg(long, default_value = "600", value_name = "SECONDS", help_heading = "Inference servers")]
    pub request_timeout: f64,
    /// Retries of a request after a connection error, timeout or 5xx answer (each on the least busy endpoint)
    #[arg(long, default_value = "8", value_name = "N", help_heading = "Inference servers")]
    pub retries: u32,
    /// Wait before the first retry, in seconds; doubled each retry up to 60
    #[arg(long, default_value = "1", value_name = "SECONDS", help_heading = "Inference servers")]
    pub retry_wait: f64,
    /// API key sent to servers as `Authorization: Bearer KEY`
    #[arg(long, env = "WHENCE_API_KEY", hide_env_values = true, value_name = "KEY", help_heading = "Inference servers")]
    pub api_key: Option<String>,
}

pub fn parse_dtype(s: &str) -> Result<candle_core::DType, String> {
    match s {
        "f32" => Ok(candle_core::DType::F32),
        "bf16" => Ok(candle_core::DType::BF16),
        "f16" => Ok(candle_core::DType::F16),
        other => Err(format!("unknown dtype `{other}`; valid dtypes: f32, bf16, f16")),
    }
}

/// Opens scorers as the model flags say, sharing one cache. Checkpoint and
/// server scorers go through the cache; file scorers do not.
pub struct ScorerFactory {
    options: Option<whence_checkpoint::CheckpointOptions>,
    args_device: String,
    dtype: candle_core::DType,
    template: whence_encode::TemplateMode,
    truncate: bool,
    batch_tokens: Option<usize>,
    cache_path: Option<PathBuf>,
    cache: Option<std::sync::Arc<whence_cache::ScoreCache>>,
    /// `whence merge`: the shards' scores instead of the named scorers.
    replay: Option<crate::shard::Replay>,
    /// `--tokenizer ROLE=DIR` entries, and the `--tokenizer DIR` for all.
    tokenizers: Vec<(String, PathBuf)>,
    default_tokenizer: Option<PathBuf>,
    client: whence_remote::ClientOptions,
}

impl ScorerFactory {
    pub fn new(args: &ModelArgs) -> anyhow::Result<Self> {
        if let Some(threads) = args.threads {
            if threads == 0 {
                return Err(crate::errors::UsageError("--threads must be at least 1".into()).into());
            }
            // candle's CPU kernels size their pools from this variable.
            // SAFETY: set once at start-up, before any thread is spawned.
            unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
        }
        let cache_path = if args.no_cache { None } else { Some(args.cache.clone().unwrap_or_else(default_cache_path)) };
        let usage = |message: String| anyhow::Error::from(crate::errors::UsageError(message));
        let mut tokenizers = Vec::new();
        let mut default_tokenizer = None;
        for given in &args.tokenizers {
            match given.split_once('=') {
                Some((role, dir)) if !role.is_empty() && role.chars().all(|c| c.is_alphanumeric() || "-_.".contains(c)) => {
                    tokenizers.push((role.to_string(), PathBuf::from(dir)))
                }
                _ if default_tokenizer.is_some() => {
                    return Err(usage(format!(
                        "--tokenizer `{given}`: a tokenizer for every role is already given; name the role: --tokenizer ROLE=DIR"
                    )))
                }
                _ => default_tokenizer = Some(PathBuf::from(given)),
            }
        }
        let seconds = |flag: &str, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(std::time::Duration::from_secs_f64(value))
            } else {
                Err(usage(format!("{flag} `{value}` must be a positive number of seconds")))
            }
        };
        if args.max_in_flight == 0 || args.max_request_tokens == 0 {
            return Err(usage("--max-in-flight and --max-request-tokens must be at least 1".into()));
        }
        let client = whence_remote::ClientOptions {
            max_in_flight: args.max_in_flight,
            max_request_tokens: args.max_request_tokens,
            timeout: seconds("--request-timeout", args.request_timeout)?,
            retries: args.retries,
            retry_wait: seconds("--retry-wait", args.retry_wait)?,
            api_key: args.api_key.clone(),
            truncate: args.truncate,
        };
        Ok(ScorerFactory {
            options: None,
            args_device: args.device.clone(),
            dtype: args.dtype,
            template: args.template.clone(),
            truncate: args.truncate,
            batch_tokens: args.batch_tokens.map(|n| n as usize),
            cache_path,
            cache: None,
            replay: None,
            tokenizers,
            default_tokenizer,
            client,
        })
    }

    /// Replays the shards' scores instead of opening the named scorers.
    pub fn replaying(mut self, replay: Option<crate::shard::Replay>) -> Self {
        self.replay = replay;
        self
    }

    /// The `--tokenizer` directory of a role (`key`: teacher, student,
    /// distilled, model, or a candidate's name), if one is given.
    fn tokenizer_dir(&self, key: &str) -> Option<PathBuf> {
        self.tokenizers.iter().find(|(name, _)| name == key).map(|(_, dir)| dir.clone()).or_else(|| self.default_tokenizer.clone())
    }

    /// The `--tokenizer ROLE=DIR` key of a role.
    fn tokenizer_key(role: &str) -> &str {
        role.strip_prefix("candidate ").unwrap_or(role)
    }

    fn wrap<S: Scorer + 'static>(&mut self, scorer: S) -> anyhow::Result<Box<dyn Scorer>> {
        match self.cache()? {
            Some(cache) => Ok(Box::new(whence_cache::CachedScorer::new(scorer, cache))),
            None => Ok(Box::new(scorer)),
        }
    }

    pub fn checkpoint_options(&mut self) -> anyhow::Result<whence_checkpoint::CheckpointOptions> {
        if self.options.is_none() {
            let device = whence_checkpoint::device(&self.args_device).map_err(|e| crate::errors::UsageError(e.to_string()))?;
            self.options = Some(whence_checkpoint::CheckpointOptions {
                dtype: self.dtype,
                device,
                template: self.template.clone(),
                truncate: self.truncate,
                batch_tokens: self.batch_tokens,
            });
        }
        Ok(self.options.clone().expect("just set"))
    }

    pub fn cache(&mut self) -> anyhow::Result<Option<std::sync::Arc<whence_cache::ScoreCache>>> {
        if self.cache.is_none() {
            if let Some(path) = &self.cache_path {
                let cache = whence_cache::ScoreCache::open(path).context("opening the score cache (pass --no-cache to run without it)")?;
                tracing::debug!("score cache: {}", path.display());
                self.cache = Some(std::sync::Arc::new(cache));
            }
        }
        Ok(self.cache.clone())
    }

    /// The tokenizer and template of a server-scored role (`--tokenizer`).
    pub fn server_encoder(&self, key: &str, role: &str, spec: &ScorerSpec) -> anyhow::Result<whence_encode::Encoder> {
        let dir = self.tokenizer_dir(key).ok_or_else(|| {
            crate::errors::UsageError(format!(
                "the {role} scorer `{spec}` is an inference server, and no tokenizer is given for it\nhint: pass --tokenizer {key}=DIR, DIR being the model's checkpoint (or a directory with its tokenizer.json and tokenizer_config.json): prompts are rendered and tokenized here and sent as token ids"
            ))
        })?;
        whence_encode::Encoder::open(&dir, &self.template)
            .map_err(|e| crate::errors::UsageError(e.to_string()))
            .with_context(|| format!("{role} {spec}: tokenizer"))
    }

    /// The tokenizer that turns a `file:` scorer's token ids into byte
    /// spans (`at`: where the file first gives token ids).
    fn id_decoder(&self, role: &str, spec: &ScorerSpec, at: &str) -> anyhow::Result<whence_score::IdDecoder> {
        let key = Self::tokenizer_key(role);
        let dir = self.tokenizer_dir(key).ok_or_else(|| {
            crate::errors::UsageError(format!(
                "the {role} scorer `{spec}` gives token ids (`token_ids`, first at {at}) instead of byte offsets, and no tokenizer is given to decode them\nhint: pass --tokenizer {key}=DIR, DIR being the checkpoint of the model that gave the log-probabilities (or a directory with its tokenizer.json): the ids are decoded to find each token's bytes in the response"
            ))
        })?;
        // Raw: only the tokenizer is used, and a chat template is not needed.
        let encoder = whence_encode::Encoder::open(&dir, &whence_encode::TemplateMode::Raw)
            .map_err(|e| crate::errors::UsageError(e.to_string()))
            .with_context(|| format!("{role} {spec}: tokenizer"))?;
        Ok(whence_score::IdDecoder::new(encoder.tokenizer().clone(), dir.display().to_string(), encoder.digest()))
    }

    /// How server clients talk to their endpoints.
    pub fn client_options(&self) -> &whence_remote::ClientOptions {
        &self.client
    }

    /// Opens the scorer a role names. Checkpoint scorers go through the
    /// cache; file scorers are already precomputed and do not.
    pub fn open(&mut self, role: &str, spec: &ScorerSpec) -> anyhow::Result<Box<dyn Scorer>> {
        if let Some(replay) = &mut self.replay {
            return replay.take(role);
        }
        match spec {
            ScorerSpec::File(path) => {
                let mut scorer = FileScorer::open(path).with_context(|| format!("{role} scorer {spec}"))?;
                tracing::debug!("{role}: {} records in {}", scorer.len(), path.display());
                if let Some(at) = scorer.token_ids_at().map(str::to_string) {
                    scorer = scorer.with_decoder(self.id_decoder(role, spec, &at)?);
                }
                Ok(Box::new(scorer))
            }
            ScorerSpec::Checkpoint(dir) => {
                let options = self.checkpoint_options()?;
                let scorer = whence_checkpoint::CheckpointScorer::open(dir, options)
                    .map_err(|e| crate::errors::UsageError(e.to_string()))
                    .with_context(|| format!("{role} scorer {}", dir.display()))?;
                tracing::debug!("{role}: checkpoint {} ({})", dir.display(), whence_score::Scorer::info(&scorer).fingerprint);
                self.wrap(scorer)
            }
            ScorerSpec::Server(server) => {
                let encoder = self.server_encoder(Self::tokenizer_key(role), role, spec)?;
                let scorer = whence_remote::ServerScorer::open(server, encoder, self.client.clone())
                    .map_err(|e| if e.is_input_error() { anyhow::Error::from(crate::errors::UsageError(e.to_string())) } else { e.into() })
                    .with_context(|| format!("{role} scorer {spec}"))?;
                tracing::debug!(
                    "{role}: {} ({})",
                    whence_score::Scorer::info(&scorer).source,
                    whence_score::Scorer::info(&scorer).fingerprint
                );
                self.wrap(scorer)
            }
        }
    }
}

/// `$XDG_CACHE_HOME/whence`, else `~/.cache/whence`.
pub fn user_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("whence")
}

fn default_cache_path() -> PathBuf {
    user_cache_dir().join("scores.sqlite")
}

pub fn parse_scorer(s: &str) -> Result<ScorerSpec, String> {
    s.parse().map_err(|e: whence_score::ScorerSpecError| e.to_string())
}

pub fn parse_threshold(s: &str) -> Result<whence_core::Threshold, String> {
    s.parse().map_err(|e: whence_core::label::ThresholdError| e.to_string())
}

pub fn parse_beta(s: &str) -> Result<whence_pipeline::BetaChoice, String> {
    s.parse().map_err(|e: whence_pipeline::BetaChoiceError| e.to_string())
}
