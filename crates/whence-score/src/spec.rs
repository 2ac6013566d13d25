//! How a role's scorer is named on the command line.

use std::path::PathBuf;

/// A scorer as given by the user: `file:teacher.jsonl` (or `.parquet`), a checkpoint
/// directory (`checkpoints/Qwen2.5-7B-Instruct`, or `checkpoint:DIR`), or
/// inference-server endpoints (`vllm+http://host:8000/v1`,
/// `sglang+http://host:30000`, several separated by commas).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScorerSpec {
    /// Precomputed token log-probabilities: `file:PATH`.
    File(PathBuf),
    /// A Hugging Face checkpoint directory scored in-process.
    Checkpoint(PathBuf),
    /// One model served by one or more inference servers.
    Server(ServerSpec),
}

/// How a server is asked for prompt log-probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// vLLM's OpenAI-compatible `POST {base}/completions` with
    /// `prompt_logprobs` (also `whence serve`); base like `http://host:8000/v1`.
    Vllm,
    /// SGLang's native `POST {base}/generate` with `return_logprob`; base like
    /// `http://host:30000`.
    Sglang,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Vllm => "vllm",
            Protocol::Sglang => "sglang",
        }
    }
}

/// Endpoints serving one model: `vllm+URL[,URL…]` or `sglang+URL[,URL…]`,
/// each URL `http://` (or `https://`), optionally ending in `?model=NAME`
/// (the served model name; otherwise asked from the server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    pub protocol: Protocol,
    /// Base URLs without a trailing slash or query.
    pub endpoints: Vec<String>,
    /// The served model name, when given.
    pub model: Option<String>,
}

impl std::fmt::Display for ServerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}+{}", self.protocol.name(), self.endpoints.join(","))?;
        if let Some(model) = &self.model {
            write!(f, "?model={model}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scorer `{given}`{detail}; valid forms: file:PATH (precomputed token log-probabilities, JSONL or Parquet), DIR or checkpoint:DIR (a Hugging Face checkpoint directory), vllm+http://HOST:PORT/v1 or sglang+http://HOST:PORT (inference servers; several URLs separated by commas)")]
pub struct ScorerSpecError {
    pub given: String,
    /// What is wrong, when more is known than "unknown" (starts with `: `).
    pub detail: String,
}

fn parse_server(given: &str, protocol: Protocol, urls: &str) -> Result<ServerSpec, ScorerSpecError> {
    let error = |detail: String| ScorerSpecError { given: given.to_string(), detail: format!(": {detail}") };
    let mut endpoints = Vec::new();
    let mut model = None;
    for url in urls.split(',') {
        let url = url.trim();
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        if !(base.starts_with("http://") || base.starts_with("https://")) || base.len() <= "https://".len() {
            return Err(error(format!("endpoint `{url}` is not an http:// or https:// URL")));
        }
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("model", name)) if !name.is_empty() => {
                    if model.as_deref().is_some_and(|m| m != name) {
                        return Err(error(format!("endpoints name different models (`{}` and `{name}`)", model.unwrap_or_default())));
                    }
                    model = Some(name.to_string());
                }
                _ => return Err(error(format!("unknown URL option `{pair}` in `{url}`; the only option is model=NAME"))),
            }
        }
        endpoints.push(base.trim_end_matches('/').to_string());
    }
    Ok(ServerSpec { protocol, endpoints, model })
}

impl std::str::FromStr for ScorerSpec {
    type Err = ScorerSpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = || ScorerSpecError { given: s.to_string(), detail: String::new() };
        if let Some(urls) = s.strip_prefix("vllm+") {
            return parse_server(s, Protocol::Vllm, urls).map(ScorerSpec::Server);
        }
        if let Some(urls) = s.strip_prefix("sglang+") {
            return parse_server(s, Protocol::Sglang, urls).map(ScorerSpec::Server);
        }
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
            ScorerSpec::Server(server) => write!(f, "{server}"),
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

    #[test]
    fn parses_server_endpoints() {
        let spec: ScorerSpec = "vllm+http://a:8000/v1/,http://b:8000/v1?model=qwq".parse().unwrap();
        let expected = ServerSpec {
            protocol: Protocol::Vllm,
            endpoints: vec!["http://a:8000/v1".into(), "http://b:8000/v1".into()],
            model: Some("qwq".into()),
        };
        assert_eq!(spec, ScorerSpec::Server(expected));
        assert_eq!(spec.to_string(), "vllm+http://a:8000/v1,http://b:8000/v1?model=qwq");
        let spec: ScorerSpec = "sglang+http://h:30000".parse().unwrap();
        assert!(matches!(spec, ScorerSpec::Server(ServerSpec { protocol: Protocol::Sglang, .. })));
        for bad in ["vllm+", "vllm+ftp://x", "vllm+http://a?top_k=3", "vllm+http://a?model=x,http://b?model=y", "tgi+http://a"] {
            let message = bad.parse::<ScorerSpec>().unwrap_err().to_string();
            assert!(message.starts_with(&format!("unknown scorer `{bad}`")), "{message}");
        }
    }
}
