//! How a role's scorer is named on the command line.

use std::path::PathBuf;

/// A scorer as given by the user: `file:teacher.jsonl`, or a checkpoint
/// directory (`checkpoints/Qwen2.5-7B-Instruct`, or `checkpoint:DIR`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScorerSpec {
    /// Precomputed token log-probabilities: `file:PATH`.
    File(PathBuf),
    /// A Hugging Face checkpoint directory scored in-process.
    Checkpoint(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scorer `{given}`; valid forms: file:PATH (precomputed token log-probabilities, JSONL), DIR or checkpoint:DIR (a Hugging Face checkpoint directory)")]
pub struct ScorerSpecError {
    pub given: String,
}

impl std::str::FromStr for ScorerSpec {
    type Err = ScorerSpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = || ScorerSpecError { given: s.to_string() };
        match s.split_once(':') {
            Some(("file", path)) if !path.is_empty() => Ok(ScorerSpec::File(PathBuf::from(path))),
            Some(("checkpoint", path)) if !path.is_empty() => Ok(ScorerSpec::Checkpoint(PathBuf::from(path))),
            // Another `scheme:` (not a Windows drive letter) is not known.
            Some((scheme, _)) if scheme.len() > 1 && scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '+') => Err(error()),
            _ if s.is_empty() => Err(error()),
            _ => Ok(ScorerSpec::Checkpoint(PathBuf::from(s))),
        }
    }
}

impl std::fmt::Display for ScorerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScorerSpec::File(path) => write!(f, "file:{}", path.display()),
            ScorerSpec::Checkpoint(path) => write!(f, "{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_specs_and_rejects_others() {
        assert_eq!("file:a/b.jsonl".parse::<ScorerSpec>().unwrap(), ScorerSpec::File("a/b.jsonl".into()));
        let message = "hf:Qwen".parse::<ScorerSpec>().unwrap_err().to_string();
        assert!(message.starts_with("unknown scorer `hf:Qwen`; valid forms: file:PATH"), "{message}");
        assert!("file:".parse::<ScorerSpec>().is_err());
        assert_eq!("models/qwen".parse::<ScorerSpec>().unwrap(), ScorerSpec::Checkpoint("models/qwen".into()));
        assert_eq!("checkpoint:a:b".parse::<ScorerSpec>().unwrap(), ScorerSpec::Checkpoint("a:b".into()));
    }
}
