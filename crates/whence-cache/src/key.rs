//! The content a record's scores depend on.

use sha2::{Digest, Sha256};
use whence_core::{Prompt, Record};

/// What a record's token log-probabilities depend on besides the model: the
/// sha256 (64 lowercase hex digits) of its prompt (every chat turn's role and
/// content, or the plain text) and its response.
///
/// The record's id, question id, verdict, reference answer and source
/// location do not enter the key: two records with the same prompt and
/// response share their scores. The hashed bytes are framed so that no two
/// different records give the same input to the hash: a domain tag, then `T`
/// and the text (a text prompt) or `C`, the turn count and each turn's role
/// and content (a chat prompt), then `R` and the response, every string
/// preceded by its length in bytes as a little-endian u64. A text prompt and
/// a one-turn chat prompt with the same text are different keys.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey(String);

/// Changing this (or the framing) changes every key: earlier caches then miss.
const DOMAIN: &[u8] = b"whence-record-key-v1\0";

impl RecordKey {
    /// The key of `record`.
    pub fn of(record: &Record) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(DOMAIN);
        match &record.prompt {
            Prompt::Text(text) => {
                hasher.update(b"T");
                framed(&mut hasher, text);
            }
            Prompt::Chat(messages) => {
                hasher.update(b"C");
                hasher.update((messages.len() as u64).to_le_bytes());
                for message in messages {
                    framed(&mut hasher, &message.role);
                    framed(&mut hasher, &message.content);
                }
            }
        }
        hasher.update(b"R");
        framed(&mut hasher, &record.response);
        RecordKey(format!("{:x}", hasher.finalize()))
    }

    /// The 64 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RecordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn framed(hasher: &mut Sha256, text: &str) {
    hasher.update((text.len() as u64).to_le_bytes());
    hasher.update(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use whence_core::{ChatMessage, SourceLocation};

    fn record(prompt: Prompt, response: &str) -> Record {
        Record {
            id: "r1".into(),
            question_id: "q1".into(),
            prompt,
            response: response.into(),
            correct: None,
            answer: None,
            source: SourceLocation { file: "in.jsonl".into(), line: Some(1), row: None },
        }
    }

    fn chat(turns: &[(&str, &str)]) -> Prompt {
        Prompt::Chat(turns.iter().map(|&(role, content)| ChatMessage { role: role.into(), content: content.into() }).collect())
    }

    fn key(prompt: Prompt, response: &str) -> String {
        RecordKey::of(&record(prompt, response)).as_str().to_string()
    }

    #[test]
    fn is_pinned() {
        // Caches written by earlier versions stay valid only while this holds.
        // The expected values were computed independently from the documented
        // framing (Python's hashlib).
        assert_eq!(key(Prompt::Text("What is 2+2?".into()), "4"), "4138db7a9c09e3ae0383e4c83b74abba061d0a9adf43234cb6ca4e4d24ef1d86");
        assert_eq!(
            key(chat(&[("system", "Be brief."), ("user", "2+2?")]), "4"),
            "72559dd10e19210bb30683014610c658ee0e4835c86468dbf5839840e5b863a7"
        );
    }

    #[test]
    fn ignores_what_scores_do_not_depend_on() {
        let base = record(Prompt::Text("p".into()), "r");
        let mut other = base.clone();
        other.id = "r2".into();
        other.question_id = "q2".into();
        other.correct = Some(true);
        other.answer = Some("42".into());
        other.source = SourceLocation { file: "other.parquet".into(), line: None, row: Some(7) };
        assert_eq!(RecordKey::of(&base), RecordKey::of(&other));
    }

    #[test]
    fn depends_on_every_part_of_the_content() {
        let keys = [
            key(Prompt::Text("p".into()), "r"),
            key(Prompt::Text("p".into()), "r "),
            key(Prompt::Text("p ".into()), "r"),
            key(Prompt::Text("pr".into()), ""),
            key(Prompt::Text("".into()), "pr"),
            key(chat(&[("user", "p")]), "r"),
            key(chat(&[("system", "p")]), "r"),
            key(chat(&[("user", "ab")]), "r"),
            key(chat(&[("usera", "b")]), "r"),
            key(chat(&[("user", "a"), ("user", "b")]), "r"),
            key(chat(&[("user", "a"), ("assistant", "b")]), "r"),
            key(chat(&[("user", "ab"), ("user", "")]), "r"),
            key(chat(&[]), "r"),
            key(chat(&[("", "")]), "r"),
            key(Prompt::Text("".into()), "r"),
        ];
        let distinct: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len(), "{keys:#?}");
    }
}
