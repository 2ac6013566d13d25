//! The records the method reads: a prompt, a response, and what is known of
//! its correctness.

use serde::Serialize;

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// The context a response was written in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum Prompt {
    /// Plain text (a `prompt` field).
    Text(String),
    /// Chat turns (OpenAI `messages` or ShareGPT `conversations`), without the
    /// response turn.
    Chat(Vec<ChatMessage>),
}

impl Prompt {
    /// A canonical text form, for hashing into a default question id.
    pub fn canonical_text(&self) -> String {
        match self {
            Prompt::Text(text) => text.clone(),
            Prompt::Chat(messages) => {
                let mut out = String::new();
                for message in messages {
                    out.push_str(&message.role);
                    out.push('\u{1f}');
                    out.push_str(&message.content);
                    out.push('\u{1e}');
                }
                out
            }
        }
    }
}

/// Where a record came from: a file and a 1-based line (JSONL) or 0-based
/// row (Parquet).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SourceLocation {
    pub file: String,
    pub line: Option<usize>,
    pub row: Option<usize>,
}

impl std::fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.row) {
            (Some(line), _) => write!(f, "{}:{}", self.file, line),
            (None, Some(row)) => write!(f, "{} row {}", self.file, row),
            (None, None) => f.write_str(&self.file),
        }
    }
}

/// One response to score, with its context.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    pub id: String,
    pub question_id: String,
    pub prompt: Prompt,
    pub response: String,
    /// The given verdict, or the one computed from `answer`.
    pub correct: Option<bool>,
    /// The reference answer, when given.
    pub answer: Option<String>,
    pub source: SourceLocation,
}
