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

    /// Field holding the record id [default: FILE:LINE, or FILE:ROW for Parquet]
    #[arg(long, default_value = "id", help_heading = "Input fields")]
    pub id_field: String,
    /// Field grouping responses to the same question [default: a hash of the prompt]
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

    /// Skip invalid records (bad fields, missing or bad scores) and count them in the summary
    #[arg(long)]
    pub skip_invalid: bool,
}

impl InputArgs {
    pub fn read(&self, prompt_optional: bool) -> anyhow::Result<RecordSet> {
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
            skip_invalid: self.skip_invalid,
            prompt_optional,
        };
        let set = whence_io::read_records(&self.input, &options)?;
        tracing::info!(
            "read {} records from {}{}",
            set.records.len(),
            self.input.display(),
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

/// Opens the scorer a role names.
pub fn open_scorer(role: &str, spec: &ScorerSpec) -> anyhow::Result<Box<dyn Scorer>> {
    match spec {
        ScorerSpec::File(path) => {
            let scorer = FileScorer::open(path).with_context(|| format!("{role} scorer {spec}"))?;
            tracing::debug!("{role}: {} records in {}", scorer.len(), path.display());
            Ok(Box::new(scorer))
        }
    }
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
