//! A small HTTP/1.1 server on `std::net`: one thread per connection (up to
//! a bound; further connections wait in the listen queue), keep-alive,
//! `Content-Length` bodies only, limits on header and body size, and read
//! timeouts so that an idle or stalled client cannot hold a thread forever.
//!
//! It is all `whence serve` needs (JSON in, JSON out), with no behaviour
//! hidden in a framework: every malformed request gets an answer and closes
//! only its own connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::{ApiRequest, ApiResponse};

/// Limits of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    /// How long a connection may sit between requests or stall mid-request.
    pub idle_timeout: Duration,
}

/// A counting semaphore bounding the connection threads.
struct Slots {
    free: Mutex<usize>,
    changed: Condvar,
}

impl Slots {
    fn acquire(&self) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.changed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
    }

    fn release(&self) {
        *self.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.changed.notify_one();
    }
}

/// Accepts connections forever, answering each request with `handle`.
pub fn serve(listener: TcpListener, limits: HttpLimits, handle: Arc<dyn Fn(&ApiRequest) -> ApiResponse + Send + Sync>) {
    let slots = Arc::new(Slots { free: Mutex::new(limits.max_connections.max(1)), changed: Condvar::new() });
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!("accepting a connection failed: {error}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        slots.acquire();
        let (slots, limits, handle) = (Arc::clone(&slots), limits.clone(), Arc::clone(&handle));
        let spawned = std::thread::Builder::new().name("whence-serve-conn".into()).spawn(move || {
            let peer = stream.peer_addr().ok();
            if let Err(error) = connection(stream, &limits, handle.as_ref()) {
                tracing::debug!("connection {peer:?}: {error}");
            }
            slots.release();
        });
        if let Err(error) = spawned {
            tracing::warn!("cannot start a connection thread: {error}");
        }
    }
}

/// A request as read off the wire.
struct Incoming {
    method: String,
    path: String,
    authorization: Option<String>,
    body: Vec<u8>,
    keep_alive: bool,
}

/// What went wrong reading a request: answered with `status`, then the
/// connection closes.
struct Malformed {
    status: u16,
    message: String,
}

fn malformed(status: u16, message: impl Into<String>) -> Malformed {
    Malformed { status, message: message.into() }
}

fn connection(stream: TcpStream, limits: &HttpLimits, handle: &(dyn Fn(&ApiRequest) -> ApiResponse + Send + Sync)) -> std::io::Result<()> {
    stream.set_read_timeout(Some(limits.idle_timeout))?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let request = match read_request(&mut reader, limits) {
            Ok(Some(request)) => request,
            Ok(None) => return Ok(()),
            Err(Malformed { status, message }) => {
                let response = crate::api::error(status, &message);
                tracing::info!("bad HTTP request → {status}: {message}");
                return write_response(&mut writer, &response, false);
            }
        };
        let started = std::time::Instant::now();
        let api_request = ApiRequest {
            method: &request.method,
            path: &request.path,
            authorization: request.authorization.as_deref(),
            body: &request.body,
        };
        // A panic in one request must not stop the server.
        let response = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(&api_request)))
            .unwrap_or_else(|_| crate::api::error(500, "internal error while handling the request (see the server's log)"));
        tracing::info!("{} {} → {} ({:.0} ms)", request.method, request.path, response.status, started.elapsed().as_secs_f64() * 1e3);
        write_response(&mut writer, &response, request.keep_alive)?;
        if !request.keep_alive {
            return Ok(());
        }
    }
}

/// Reads one request; `None` when the client closed the connection (or
/// went idle) between requests.
fn read_request(reader: &mut BufReader<TcpStream>, limits: &HttpLimits) -> Result<Option<Incoming>, Malformed> {
    let mut head = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    loop {
        let mut line = Vec::new();
        let read = reader.by_ref().take(limits.max_header_bytes as u64 + 1).read_until(b'\n', &mut line);
        match read {
            Ok(0) if lines.is_empty() => return Ok(None),
            Ok(0) => return Err(malformed(400, "the connection closed in the middle of the request head")),
            Err(_) if lines.is_empty() && head.is_empty() => return Ok(None),
            Err(error) => return Err(malformed(408, format!("reading the request head: {error}"))),
            Ok(_) => {}
        }
        head.extend_from_slice(&line);
        if head.len() > limits.max_header_bytes {
            return Err(malformed(431, format!("the request head is larger than {} bytes", limits.max_header_bytes)));
        }
        let text = String::from_utf8(line).map_err(|_| malformed(400, "the request head is not UTF-8"))?;
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            if lines.is_empty() {
                continue; // stray CRLF between requests
            }
            break;
        }
        lines.push(text.to_string());
    }
    let mut parts = lines[0].split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(malformed(400, format!("malformed request line `{}`", lines[0])));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(malformed(505, format!("unsupported protocol `{version}`; whence serve speaks HTTP/1.1")));
    }
    let mut content_length = None;
    let mut authorization = None;
    let mut keep_alive = version == "HTTP/1.1";
    for line in &lines[1..] {
        let Some((name, value)) = line.split_once(':') else {
            return Err(malformed(400, format!("malformed header line `{line}`")));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                content_length =
                    Some(value.parse::<usize>().map_err(|_| malformed(400, format!("Content-Length `{value}` is not a number")))?)
            }
            "transfer-encoding" if !value.eq_ignore_ascii_case("identity") => {
                return Err(malformed(411, "chunked request bodies are not supported; send Content-Length"))
            }
            "authorization" => authorization = Some(value.to_string()),
            "connection" if value.eq_ignore_ascii_case("close") => keep_alive = false,
            "connection" if value.eq_ignore_ascii_case("keep-alive") => keep_alive = true,
            _ => {}
        }
    }
    let length = content_length.unwrap_or(0);
    if length > limits.max_body_bytes {
        return Err(malformed(
            413,
            format!("the request body of {length} bytes is larger than the limit of {} bytes", limits.max_body_bytes),
        ));
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).map_err(|error| malformed(400, format!("reading the {length}-byte body: {error}")))?;
    let path = target.split('?').next().unwrap_or_default().to_string();
    Ok(Some(Incoming { method: method.to_string(), path, authorization, body, keep_alive }))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        505 => "HTTP Version Not Supported",
        _ => "Internal Server Error",
    }
}

fn write_response(writer: &mut TcpStream, response: &ApiResponse, keep_alive: bool) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
        response.status,
        reason(response.status),
        response.body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    writer.write_all(head.as_bytes())?;
    writer.write_all(response.body.as_bytes())?;
    writer.flush()
}

/// Binds `addr`.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
}
