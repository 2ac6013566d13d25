//! HTTP to a set of endpoints serving one model: load spread over them, a
//! bound on requests in flight, timeouts, and retries with backoff.
//!
//! What is retried: connection errors, timeouts, 5xx and 429 answers, each
//! time on the least busy endpoint that is not cooling down after a
//! failure. What is not: other 4xx answers (the server's message is the
//! error) and answers that parse but are wrong (wrong ids, bad numbers):
//! those are errors about the record, never silently used.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How the client talks to servers.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Requests in flight at once for this model, over all its endpoints.
    pub max_in_flight: usize,
    /// Longest sequence (prompt + response tokens) sent in one request.
    pub max_request_tokens: usize,
    /// Whole-request timeout (connect, send, the server's work, receive).
    pub timeout: Duration,
    /// Retries of one request after its first attempt.
    pub retries: u32,
    /// Wait before the first retry; doubled each retry, up to a minute.
    pub retry_wait: Duration,
    /// Sent as `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// Score only the first `max_request_tokens` tokens of longer sequences
    /// instead of failing.
    pub truncate: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            max_in_flight: 8,
            max_request_tokens: 131_072,
            timeout: Duration::from_secs(600),
            retries: 8,
            retry_wait: Duration::from_secs(1),
            api_key: None,
            truncate: false,
        }
    }
}

/// Why a request failed for good.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestError {
    /// The server refused the request (4xx other than 429), with its message.
    Refused { status: u16, url: String, message: String },
    /// Every attempt failed to get an answer (connection, timeout, 5xx).
    Unavailable { attempts: u32, last: String },
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Refused { status, url, message } => write!(f, "{url} answered {status}: {message}"),
            RequestError::Unavailable { attempts, last } => write!(f, "no answer after {attempts} attempts; last: {last}"),
        }
    }
}

struct Endpoint {
    base: String,
    in_flight: AtomicUsize,
    /// Not chosen before this instant (after a failure).
    cool_until: Mutex<Option<Instant>>,
}

/// The endpoints of one model and an HTTP agent (keep-alive connections).
pub struct Client {
    endpoints: Vec<Endpoint>,
    agent: ureq::Agent,
    options: ClientOptions,
}

/// One attempt's outcome.
enum Attempt {
    Answer(Vec<u8>),
    Retry(String),
    Refused(RequestError),
}

impl Client {
    pub fn new(bases: &[String], options: ClientOptions) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(options.timeout))
            .timeout_connect(Some(options.timeout.min(Duration::from_secs(10))))
            .max_idle_connections_per_host(options.max_in_flight.max(1))
            .max_idle_connections(options.max_in_flight.max(1) * bases.len().max(1))
            .user_agent(concat!("whence/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let endpoints = bases
            .iter()
            .map(|base| Endpoint { base: base.clone(), in_flight: AtomicUsize::new(0), cool_until: Mutex::new(None) })
            .collect();
        Client { endpoints, agent, options }
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The least busy endpoint not cooling down (or, when all are, the one
    /// that recovers first, after waiting for it).
    fn choose(&self) -> &Endpoint {
        let now = Instant::now();
        let cooling = |e: &Endpoint| e.cool_until.lock().map(|c| c.filter(|&t| t > now)).unwrap_or(None);
        let ready = self.endpoints.iter().filter(|e| cooling(e).is_none()).min_by_key(|e| e.in_flight.load(Ordering::Relaxed));
        if let Some(endpoint) = ready {
            return endpoint;
        }
        let (endpoint, until) =
            self.endpoints.iter().filter_map(|e| cooling(e).map(|t| (e, t))).min_by_key(|&(_, t)| t).expect("at least one endpoint");
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
        endpoint
    }

    fn once(&self, endpoint: &Endpoint, path: &str, body: Option<&[u8]>) -> Attempt {
        let url = format!("{}{path}", endpoint.base);
        let result = match body {
            Some(body) => {
                let mut request = self.agent.post(&url).header("Content-Type", "application/json");
                if let Some(key) = &self.options.api_key {
                    request = request.header("Authorization", format!("Bearer {key}"));
                }
                request.send(body)
            }
            None => {
                let mut request = self.agent.get(&url);
                if let Some(key) = &self.options.api_key {
                    request = request.header("Authorization", format!("Bearer {key}"));
                }
                request.call()
            }
        };
        let mut response = match result {
            Ok(response) => response,
            Err(error) => return Attempt::Retry(format!("{url}: {error}")),
        };
        let status = response.status().as_u16();
        let bytes = match response.body_mut().with_config().limit(1 << 31).read_to_vec() {
            Ok(bytes) => bytes,
            Err(error) => return Attempt::Retry(format!("{url}: reading the answer: {error}")),
        };
        match status {
            200..=299 => Attempt::Answer(bytes),
            429 | 500..=599 => Attempt::Retry(format!("{url} answered {status}: {}", server_message(&bytes))),
            _ => Attempt::Refused(RequestError::Refused { status, url, message: server_message(&bytes) }),
        }
    }

    /// `POST path` (or `GET` without a body) on some endpoint, retried as
    /// the module says; the 2xx answer's body.
    pub fn request(&self, path: &str, body: Option<&[u8]>) -> Result<Vec<u8>, RequestError> {
        let mut wait = self.options.retry_wait;
        let mut attempts = 0;
        loop {
            let endpoint = self.choose();
            endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
            let outcome = self.once(endpoint, path, body);
            endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
            attempts += 1;
            let last = match outcome {
                Attempt::Answer(bytes) => return Ok(bytes),
                Attempt::Refused(error) => return Err(error),
                Attempt::Retry(last) => last,
            };
            if attempts > self.options.retries {
                return Err(RequestError::Unavailable { attempts, last });
            }
            tracing::warn!("{last}; retrying in {:.1} s (attempt {} of {})", wait.as_secs_f64(), attempts + 1, self.options.retries + 1);
            if let Ok(mut cool) = endpoint.cool_until.lock() {
                *cool = Some(Instant::now() + wait);
            }
            wait = (wait * 2).min(Duration::from_secs(60));
        }
    }

    /// Endpoint base URLs.
    pub fn bases(&self) -> Vec<&str> {
        self.endpoints.iter().map(|e| e.base.as_str()).collect()
    }
}

/// An error body's message: OpenAI-style `{"error": {"message"}}`,
/// `{"message"}`, `{"detail"}` (FastAPI), `{"error": "…"}`, else its text.
pub fn server_message(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let text = value
            .pointer("/error/message")
            .or_else(|| value.get("message"))
            .or_else(|| value.get("detail"))
            .or_else(|| value.get("error"))
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string));
        if let Some(text) = text {
            return text;
        }
    }
    let text = crate::protocol::excerpt(body);
    if text.trim().is_empty() {
        "(empty body)".into()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages_are_found_in_the_usual_shapes() {
        assert_eq!(server_message(br#"{"error":{"message":"too long","type":"BadRequestError"}}"#), "too long");
        assert_eq!(server_message(br#"{"object":"error","message":"bad model","code":404}"#), "bad model");
        assert_eq!(server_message(br#"{"detail":"Not Found"}"#), "Not Found");
        assert_eq!(server_message(b"Internal Server Error"), "Internal Server Error");
        assert_eq!(server_message(b""), "(empty body)");
    }
}
