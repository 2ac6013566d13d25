//! HTTP to a set of endpoints serving one model: load spread over them, a
//! bound on requests in flight, timeouts, and retries with backoff.
//!
//! What is retried: connection errors, timeouts, 5xx and 429 answers, each
//! time on the least busy endpoint that is not cooling down after a
//! failure. What is not: other 4xx answers (the server's message is the
//! error) and answers that parse but are wrong (wrong ids, bad numbers):
//! those are errors about the record, never silently used.
//!
//! A request that fails the same way on two different endpoints (the same
//! 5xx status, or the connection dropped after the request was sent) is not
//! tried on the others: the request itself is likely what breaks the servers
//! (a record that crashes them), so it ends as
//! [`RequestError::Unavailable`] with `same_failure_on` naming both
//! endpoints, and the caller treats it as that request's error. A failure on
//! one endpoint only is retried on another as before, and with a single
//! endpoint every retry goes to it (a restarting server is waited for).

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
    /// No attempt got an answer (connection, timeout, 5xx). `same_failure_on`
    /// is empty when the retries ran out; otherwise it names the two
    /// endpoints on which the request failed the same way, after which it was
    /// not tried on the others (see the module).
    Unavailable { attempts: u32, last: String, same_failure_on: Vec<String> },
}

impl RequestError {
    /// Whether the request itself is to blame: it failed the same way on two
    /// endpoints.
    pub fn is_request_specific(&self) -> bool {
        matches!(self, RequestError::Unavailable { same_failure_on, .. } if same_failure_on.len() >= 2)
    }
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Refused { status, url, message } => write!(f, "{url} answered {status}: {message}"),
            RequestError::Unavailable { attempts, last, same_failure_on } if same_failure_on.len() >= 2 => write!(
                f,
                "the request failed the same way on {} ({attempts} attempts; last: {last}); it was not sent to the other endpoints, since it seems to be what makes the servers fail",
                same_failure_on.join(" and ")
            ),
            RequestError::Unavailable { attempts, last, .. } => write!(f, "no answer after {attempts} attempts; last: {last}"),
        }
    }
}

/// A 2xx answer and the endpoint URL that gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The full URL the request went to (endpoint base + path).
    pub url: String,
    pub body: Vec<u8>,
}

/// How an attempt failed, as far as telling "the same way" apart goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// A 5xx answer with this status.
    Status(u16),
    /// The connection closed or was reset after the request was sent,
    /// before a whole answer came.
    Dropped,
    /// Anything else (refused connection, timeout, 429): not the request's
    /// fault as far as can be told.
    Other,
}

fn failure_of(error: &ureq::Error) -> Failure {
    use std::io::ErrorKind;
    match error {
        ureq::Error::Io(e)
            if matches!(
                e.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
            ) =>
        {
            Failure::Dropped
        }
        _ => Failure::Other,
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
    Answer(Answer),
    Retry(String, Failure),
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
            Err(error) => return Attempt::Retry(format!("{url}: {error}"), failure_of(&error)),
        };
        let status = response.status().as_u16();
        let bytes = match response.body_mut().with_config().limit(1 << 31).read_to_vec() {
            Ok(bytes) => bytes,
            Err(error) => return Attempt::Retry(format!("{url}: reading the answer: {error}"), failure_of(&error)),
        };
        match status {
            200..=299 => Attempt::Answer(Answer { url, body: bytes }),
            500..=599 => Attempt::Retry(format!("{url} answered {status}: {}", server_message(&bytes)), Failure::Status(status)),
            429 => Attempt::Retry(format!("{url} answered {status}: {}", server_message(&bytes)), Failure::Other),
            _ => Attempt::Refused(RequestError::Refused { status, url, message: server_message(&bytes) }),
        }
    }

    /// `POST path` (or `GET` without a body) on some endpoint, retried as
    /// the module says; the 2xx answer's body.
    pub fn request(&self, path: &str, body: Option<&[u8]>) -> Result<Vec<u8>, RequestError> {
        self.send(path, body).map(|answer| answer.body)
    }

    /// As [`Client::request`], with the URL that answered.
    pub fn send(&self, path: &str, body: Option<&[u8]>) -> Result<Answer, RequestError> {
        self.attempt(|| self.choose(), path, body)
    }

    /// As [`Client::send`], on endpoint `index` only (every retry too): the
    /// start-up checks of each endpoint.
    pub fn send_to(&self, index: usize, path: &str, body: Option<&[u8]>) -> Result<Answer, RequestError> {
        let endpoint = &self.endpoints[index];
        self.attempt(
            || {
                let until = endpoint.cool_until.lock().map(|c| *c).unwrap_or(None);
                if let Some(until) = until {
                    std::thread::sleep(until.saturating_duration_since(Instant::now()));
                }
                endpoint
            },
            path,
            body,
        )
    }

    fn attempt<'a>(&'a self, choose: impl Fn() -> &'a Endpoint, path: &str, body: Option<&[u8]>) -> Result<Answer, RequestError> {
        let mut wait = self.options.retry_wait;
        let mut attempts = 0;
        // Which endpoint failed how: two endpoints failing the same way end
        // the request.
        let mut failures: Vec<(&str, Failure)> = Vec::new();
        loop {
            let endpoint = choose();
            endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
            let outcome = self.once(endpoint, path, body);
            endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
            attempts += 1;
            let (last, failure) = match outcome {
                Attempt::Answer(answer) => return Ok(answer),
                Attempt::Refused(error) => return Err(error),
                Attempt::Retry(last, failure) => (last, failure),
            };
            if failure != Failure::Other {
                let earlier = failures.iter().find(|&&(base, how)| how == failure && base != endpoint.base).map(|&(base, _)| base);
                if let Some(earlier) = earlier {
                    let same_failure_on = vec![earlier.to_string(), endpoint.base.clone()];
                    return Err(RequestError::Unavailable { attempts, last, same_failure_on });
                }
                failures.push((&endpoint.base, failure));
            }
            if attempts > self.options.retries {
                return Err(RequestError::Unavailable { attempts, last, same_failure_on: Vec::new() });
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

    /// A loopback HTTP server answering every request as `behave(n)` says
    /// (`n`: its 1-based request count): `Some((status, body))`, or `None`
    /// to read the request and close the connection without an answer.
    fn server(behave: impl Fn(usize) -> Option<(u16, &'static str)> + Send + Sync + 'static) -> (String, Arc<AtomicUsize>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(AtomicUsize::new(0));
        let (counter, behave) = (Arc::clone(&seen), Arc::new(behave));
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (counter, behave) = (Arc::clone(&counter), Arc::clone(&behave));
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut stream = stream;
                    loop {
                        let mut length = 0;
                        loop {
                            let mut line = String::new();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                                length = value.trim().parse().unwrap();
                            }
                            if line == "\r\n" {
                                break;
                            }
                        }
                        let mut body = vec![0; length];
                        reader.read_exact(&mut body).unwrap();
                        let Some((status, text)) = behave(counter.fetch_add(1, Ordering::SeqCst) + 1) else { return };
                        let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{text}", text.len());
                        if stream.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (base, seen)
    }

    fn fast() -> ClientOptions {
        ClientOptions { retries: 6, retry_wait: Duration::from_millis(5), timeout: Duration::from_secs(5), ..ClientOptions::default() }
    }

    use std::sync::Arc;

    #[test]
    fn the_same_5xx_on_two_endpoints_ends_the_request() {
        let (a, seen_a) = server(|_| Some((500, r#"{"error":{"message":"CUDA error: illegal memory access"}}"#)));
        let (b, seen_b) = server(|_| Some((500, r#"{"error":{"message":"CUDA error: illegal memory access"}}"#)));
        let client = Client::new(&[a.clone(), b.clone()], fast());
        let error = client.request("/completions", Some(b"{}")).unwrap_err();
        let RequestError::Unavailable { attempts, same_failure_on, .. } = &error else { panic!("{error}") };
        assert_eq!(*attempts, 2);
        assert_eq!(same_failure_on, &vec![a, b]);
        assert!(error.is_request_specific());
        assert_eq!((seen_a.load(Ordering::SeqCst), seen_b.load(Ordering::SeqCst)), (1, 1), "not retried on either");
        assert!(error.to_string().contains("illegal memory access"), "{error}");
    }

    #[test]
    fn a_connection_dropped_on_two_endpoints_ends_the_request() {
        let (a, _) = server(|_| None);
        let (b, _) = server(|_| None);
        let (c, seen_c) = server(|_| Some((200, "{}")));
        let client = Client::new(&[a, b, c], fast());
        // The least busy endpoint first: a, then b (a cools down); c never.
        let error = client.request("/completions", Some(b"{}")).unwrap_err();
        assert!(error.is_request_specific(), "{error}");
        assert_eq!(seen_c.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_failure_on_one_endpoint_is_retried_on_another() {
        let (a, _) = server(|_| Some((503, "overloaded")));
        let (b, _) = server(|_| Some((200, "fine")));
        let client = Client::new(&[a, b.clone()], fast());
        let answer = client.send("/completions", Some(b"{}")).unwrap();
        assert_eq!((answer.url, answer.body), (format!("{b}/completions"), b"fine".to_vec()));
        // Different failures on two endpoints are not "the same way".
        let (a, _) = server(|_| Some((500, "x")));
        let (b, _) = server(|_| None);
        let client = Client::new(&[a, b], ClientOptions { retries: 3, ..fast() });
        let error = client.request("/completions", Some(b"{}")).unwrap_err();
        assert!(!error.is_request_specific(), "{error}");
        assert!(matches!(error, RequestError::Unavailable { attempts: 4, .. }), "{error}");
    }

    #[test]
    fn one_endpoint_is_retried_until_it_answers() {
        let (a, seen) = server(|n| if n < 4 { Some((500, "starting")) } else { Some((200, "up")) });
        let client = Client::new(&[a], fast());
        assert_eq!(client.request("/completions", Some(b"{}")).unwrap(), b"up");
        assert_eq!(seen.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn send_to_stays_on_its_endpoint() {
        let (a, seen_a) = server(|n| if n < 3 { None } else { Some((200, "a")) });
        let (b, seen_b) = server(|_| Some((200, "b")));
        let client = Client::new(&[a, b], fast());
        assert_eq!(client.send_to(0, "/models", None).unwrap().body, b"a");
        assert_eq!((seen_a.load(Ordering::SeqCst), seen_b.load(Ordering::SeqCst)), (3, 0));
    }
}
