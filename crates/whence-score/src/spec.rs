//! How a role's scorer is named on the command line.

use std::path::PathBuf;

/// A scorer as given by the user, e.g. `file:teacher.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScorerSpec {
    /// Precomputed token log-probabilities: `file:PATH`.
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scorer `{given}`; valid forms: file:PATH (precomputed token log-probabilities, JSONL)")]
pub struct ScorerSpecError {
    pub given: String,
}

impl std::str::FromStr for ScorerSpec {
    type Err = ScorerSpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("file", path)) if !path.is_empty() => Ok(ScorerSpec::File(PathBuf::from(path))),
            _ => Err(ScorerSpecError { given: s.to_string() }),
        }
    }
}

impl std::fmt::Display for ScorerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScorerSpec::File(path) => write!(f, "file:{}", path.display()),
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
    }
}
