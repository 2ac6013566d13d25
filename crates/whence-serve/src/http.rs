//! The HTTP layer of `whence serve`: hyper's HTTP/1.1 server on a tokio
//! runtime, with the limits a server bound to a network needs.
//!
//! - **Open connections** are bounded (`max_connections`); past the bound a
//!   connection waits in the listen queue until one closes.
//! - **Request heads** must arrive within `header_timeout` (hyper's header
//!   read timer, counted from when the connection opens or the previous
//!   answer went out, so it also closes a keep-alive connection idle that
//!   long), **bodies** within `body_timeout` (else 408), at most
//!   `max_body_bytes` (else 413). A client that sends half a head, or trickles its body, holds
//!   only its own socket, and only until its timer runs out.
//! - **Requests handled at once** are bounded separately
//!   (`max_concurrent_requests`): a request takes a slot only once its body
//!   has arrived, so slow or idle connections never keep a normal request
//!   waiting. The model itself answers one request at a time; the handler
//!   runs on tokio's blocking pool, so the I/O threads stay free.
//! - **Shutdown** on SIGTERM or SIGINT is graceful: requests in flight
//!   (their body still arriving, waiting for the model, or being scored)
//!   finish and are answered; requests that arrive meanwhile get a 503 and
//!   the connection closes; once none is in flight (or after
//!   `shutdown_timeout`) the server closes every connection and returns. A
//!   second signal stops at once.
//!
//! Parsing HTTP is hyper's; this module only turns a request into an
//! [`ApiRequest`] and an [`ApiResponse`] back into a response.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{watch, Semaphore};

use crate::{ApiRequest, ApiResponse};

/// Limits and timeouts of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    pub max_concurrent_requests: usize,
    /// How long a request head may take to arrive, counted from when the
    /// connection opens or the previous answer was sent (so a keep-alive
    /// connection idle that long is closed too).
    pub header_timeout: Duration,
    /// How long a request body may take to arrive.
    pub body_timeout: Duration,
    /// How long requests in flight may take to finish after a signal.
    pub shutdown_timeout: Duration,
}

/// What answers a request (the API; it runs on a blocking thread).
pub type Handler = Arc<dyn Fn(&ApiRequest) -> ApiResponse + Send + Sync>;

/// Why the server stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every request in flight was answered.
    Drained,
    /// Requests were still in flight after the shutdown timeout.
    TimedOut { in_flight: usize },
    /// A second signal came before the requests in flight were answered.
    Interrupted { in_flight: usize },
}

/// State shared by the accept loop and every request.
struct Shared {
    limits: HttpLimits,
    handler: Handler,
    /// Slots for requests whose body has arrived.
    handling: Semaphore,
    /// Set by the first signal: new requests get a 503.
    draining: AtomicBool,
    /// Requests in flight, from their head to their answer.
    in_flight: watch::Sender<usize>,
    /// Connections open.
    open: watch::Sender<usize>,
    /// Set once the server stops: every connection closes.
    closing: watch::Sender<bool>,
}

/// Counts one request in flight while it lives.
struct InFlight<'a>(&'a watch::Sender<usize>);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a watch::Sender<usize>) -> Self {
        counter.send_modify(|n| *n += 1);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// Serves on `listener` until SIGTERM or SIGINT, then drains.
pub fn serve(listener: std::net::TcpListener, limits: HttpLimits, handler: Handler) -> std::io::Result<Stopped> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("whence-serve-io").enable_all().build()?;
    runtime.block_on(async move {
        let signals = Signals::new()?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        Ok(accept_loop(listener, limits, handler, signals).await)
    })
}

/// SIGTERM and SIGINT as one stream.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals { terminate: signal(SignalKind::terminate())?, interrupt: signal(SignalKind::interrupt())? })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, limits: HttpLimits, handler: Handler, mut signals: Signals) -> Stopped {
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let shared = Arc::new(Shared {
        handling: Semaphore::new(limits.max_concurrent_requests.max(1)),
        limits,
        handler,
        draining: AtomicBool::new(false),
        in_flight: watch::channel(0).0,
        open: watch::channel(0).0,
        closing: watch::channel(false).0,
    });
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    let mut in_flight = shared.in_flight.subscribe();
    let stopped = loop {
        let accept = async {
            let permit = Arc::clone(&connections).acquire_owned().await.expect("the connection semaphore is never closed");
            (permit, listener.accept().await)
        };
        tokio::select! {
            (permit, accepted) = accept => match accepted {
                Ok((stream, peer)) => {
                    let shared = Arc::clone(&shared);
                    shared.open.send_modify(|n| *n += 1);
                    tokio::spawn(async move {
                        if let Err(error) = connection(&shared, stream, peer).await {
                            tracing::debug!("connection {peer}: {error}");
                        }
                        shared.open.send_modify(|n| *n -= 1);
                        drop(permit);
                    });
                }
                Err(error) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!("accepting a connection failed: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            signal = signals.next() => {
                let busy = *shared.in_flight.borrow();
                if drain_deadline.is_some() {
                    tracing::warn!("{signal} again: stopping with {busy} request(s) unanswered");
                    break Stopped::Interrupted { in_flight: busy };
                }
                shared.draining.store(true, Ordering::SeqCst);
                drain_deadline = Some(tokio::time::Instant::now() + shared.limits.shutdown_timeout);
                eprintln!(
                    "whence serve: {signal}: finishing {busy} request(s) in flight (at most {} s), answering new ones 503; \
                     a second signal stops at once",
                    shared.limits.shutdown_timeout.as_secs()
                );
            },
            _ = in_flight.wait_for(|n| *n == 0), if drain_deadline.is_some() => break Stopped::Drained,
            _ = tokio::time::sleep_until(drain_deadline.unwrap_or_else(tokio::time::Instant::now)), if drain_deadline.is_some() => {
                let busy = *shared.in_flight.borrow();
                tracing::warn!("{busy} request(s) still in flight after {} s: stopping", shared.limits.shutdown_timeout.as_secs());
                break Stopped::TimedOut { in_flight: busy };
            },
        }
    };
    drop(listener);
    // Idle keep-alive connections close now; ones writing an answer finish it.
    shared.closing.send_replace(true);
    let mut open = shared.open.subscribe();
    if tokio::time::timeout(Duration::from_secs(2), open.wait_for(|n| *n == 0)).await.is_err() {
        tracing::debug!("{} connection(s) did not close within 2 s of shutting down", *shared.open.borrow());
    }
    stopped
}

/// One connection: hyper's HTTP/1.1 state machine with its header timer,
/// closed gracefully when the server stops.
async fn connection(shared: &Arc<Shared>, stream: tokio::net::TcpStream, peer: SocketAddr) -> hyper::Result<()> {
    let _ = stream.set_nodelay(true);
    let limits = &shared.limits;
    let service = {
        let shared = Arc::clone(shared);
        hyper::service::service_fn(move |request| {
            let shared = Arc::clone(&shared);
            async move { Ok::<_, Infallible>(answer(&shared, request, peer).await) }
        })
    };
    // hyper (1.12) starts the header timer whenever it waits for a request
    // head: when the connection opens and after each answer, so it also
    // closes keep-alive connections idle that long.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).max_buf_size(limits.max_header_bytes.max(8192));
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut closing = shared.closing.subscribe();
    tokio::select! {
        result = connection.as_mut() => return result,
        _ = closing.wait_for(|&closing| closing) => connection.as_mut().graceful_shutdown(),
    }
    connection.await
}

/// A JSON answer; `close` ends the connection after it.
fn response(answer: ApiResponse, close: bool) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(answer.body)));
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if close {
        response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn answer(shared: &Shared, request: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let method = parts.method.as_str().to_string();
    let path = parts.uri.path().to_string();
    let refuse = |status: u16, message: String| {
        tracing::info!("{method} {path} from {peer} → {status}: {message}");
        response(crate::api::error(status, &message), true)
    };
    if shared.draining.load(Ordering::SeqCst) {
        return refuse(503, "the server is shutting down; send the request to another server or retry later".into());
    }
    let _in_flight = InFlight::enter(&shared.in_flight);
    let limits = &shared.limits;
    let declared = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = declared.filter(|&length| length > limits.max_body_bytes as u64) {
        return refuse(413, format!("the request body of {length} bytes is larger than the limit of {} bytes", limits.max_body_bytes));
    }
    let body = match tokio::time::timeout(limits.body_timeout, Limited::new(body, limits.max_body_bytes).collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return refuse(413, format!("the request body is larger than the limit of {} bytes", limits.max_body_bytes))
        }
        Ok(Err(error)) => return refuse(400, format!("reading the request body: {error}")),
        Err(_) => {
            return refuse(408, format!("the request body did not arrive within {} s", limits.body_timeout.as_secs_f64()));
        }
    };
    let Ok(_slot) = shared.handling.acquire().await else {
        return refuse(503, "the server is shutting down".into());
    };
    let authorization = parts.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    let handler = Arc::clone(&shared.handler);
    let (method_owned, path_owned) = (method.clone(), path.clone());
    let answered = tokio::task::spawn_blocking(move || {
        let request = ApiRequest { method: &method_owned, path: &path_owned, authorization: authorization.as_deref(), body: &body };
        handler(&request)
    })
    .await;
    // A panic in one request must not stop the server.
    let answer = answered.unwrap_or_else(|_| crate::api::error(500, "internal error while handling the request (see the server's log)"));
    tracing::info!("{method} {path} → {} ({:.0} ms)", answer.status, started.elapsed().as_secs_f64() * 1e3);
    response(answer, false)
}

/// Binds `addr`.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(addr)
}

/// Raises the soft limit on open files to what `connections` need (up to
/// the hard limit), so that the connection bound, not the descriptor
/// limit, decides when connections wait.
pub fn raise_open_file_limit(connections: usize) {
    let wanted = connections as u64 + 256;
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= wanted {
            return;
        }
        let raised = wanted.min(limit.rlim_max);
        if raised > limit.rlim_cur {
            limit.rlim_cur = raised;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
        if raised < wanted {
            tracing::warn!(
                "the open-file limit ({raised}) is below what {connections} connections need; \
                 connections past it wait (hint: raise `ulimit -n` or lower --max-connections)"
            );
        }
    }
}
