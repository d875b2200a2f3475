//! The small HTTP/1.1 server of apitap's admin endpoints: the sensor's and the analyzer's
//! `/metrics` and `/healthz` (R-OPS-2) and the analyzer's inventory API (R-INV-5). Both
//! binaries serve through this one implementation.
//!
//! Its clients may be hostile (issue 22, R-OPS-3), so every connection is bounded:
//!
//! - at most [`Limits::max_connections`] connections at once; one more is answered `503`
//!   without being read and closed, and counted (`connection_limit`);
//! - the whole request head must arrive within [`Limits::head_deadline`], one deadline for
//!   all reads (a per-read timeout lets a client sending one byte every few seconds hold a
//!   connection for hours); late heads get `408` (RFC 9110 §15.5.9), counted (`head_timeout`);
//! - heads over [`Limits::max_head_bytes`] get `431` (RFC 6585 §5), counted
//!   (`head_too_large`); malformed heads get `400` (RFC 9112 §3), counted (`bad_request`);
//! - the response must be taken by the client within [`Limits::write_deadline`], otherwise
//!   the connection is dropped and counted (`write_timeout`);
//! - one request per connection, answered with `Connection: close` (RFC 9112 §9.6); request
//!   content is read only when [`Limits::max_body_bytes`] allows it (the console's login
//!   form, issue 20): then `POST` is accepted with a `Content-Length` of at most that many
//!   bytes, read within the same deadline as the head; larger or unframed content gets `413`
//!   or `411`, counted (`body_too_large`);
//! - `GET` and `HEAD` (and `POST` as above) only: anything else gets `405` with `Allow` (RFC
//!   9110 §15.5.6), counted (`method`);
//! - optionally a bearer token ([`Token`], RFC 6750): every route but `/healthz` then needs
//!   `Authorization: Bearer <token>`, compared in constant time; otherwise `401` with
//!   `WWW-Authenticate: Bearer` (RFC 6750 §3), counted (`unauthorized`). `/healthz` stays open
//!   for liveness probes and tells nothing but `ok`. Paths under [`Options::self_authenticated`]
//!   prefixes skip the bearer check: their handler authenticates them itself (the console's
//!   session cookie, issue 20).
//!
//! - optionally TLS, and mutual TLS ([`Tls`], issue 20): the handshake must complete within
//!   the same head deadline, or the connection is closed and counted (`tls_handshake`, which
//!   also counts clients refused for a missing or unverified certificate). A verified client
//!   certificate's subject reaches the handler ([`Request::client_certificate`]); with both a
//!   token and mutual TLS, a request needs both.
//!
//! Bind to loopback unless a scraper or analyst elsewhere needs it.
//!
//! [`HttpStats`] counts rejections per cause, requests answered and open connections;
//! [`HttpStats::render`] adds them to the binary's own `/metrics` exposition
//! ([`apitap_metrics::Exposition`]).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use apitap_metrics::{Exposition, Kind};
use apitap_secret::Secret;
pub use apitap_secret::SecretFileError as KeyFileError;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

mod tls;
pub use tls::{Tls, TlsError};

/// Bounds of the server (issue 22, R-OPS-3). The defaults suit a metrics scrape or a few
/// API clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; further ones are answered `503` and closed. Default 64.
    pub max_connections: usize,
    /// Time for the whole request head to arrive, from accepting the connection (not per
    /// read). Default 5 s.
    pub head_deadline: Duration,
    /// Largest request head in bytes (request line and header fields). Default 16 KiB.
    pub max_head_bytes: usize,
    /// Time for the client to take the whole response. Default 10 s.
    pub write_deadline: Duration,
    /// Largest request content in bytes; 0 (the default): no content is read and only `GET`
    /// and `HEAD` are accepted. Above 0, `POST` with a `Content-Length` up to this is
    /// accepted and its content read within [`Limits::head_deadline`] (issue 20: the
    /// console's login form).
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            head_deadline: Duration::from_secs(5),
            max_head_bytes: 16 * 1024,
            write_deadline: Duration::from_secs(10),
            max_body_bytes: 0,
        }
    }
}

/// Header fields parsed per request at most; more get `431`.
pub const MAX_HEADER_FIELDS: usize = 64;

/// Why a connection was refused or cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// [`Limits::max_connections`] were open.
    ConnectionLimit,
    /// The head did not arrive within [`Limits::head_deadline`].
    HeadTimeout,
    /// The head exceeded [`Limits::max_head_bytes`] or [`MAX_HEADER_FIELDS`].
    HeadTooLarge,
    /// The head is not HTTP/1.x.
    BadRequest,
    /// A method other than `GET` or `HEAD`.
    Method,
    /// No or a wrong bearer token.
    Unauthorized,
    /// The response was not taken within [`Limits::write_deadline`].
    WriteTimeout,
    /// Content over [`Limits::max_body_bytes`], without a `Content-Length`, or not
    /// received within [`Limits::head_deadline`].
    BodyTooLarge,
    /// The TLS handshake failed or did not finish within [`Limits::head_deadline`]; with
    /// mutual TLS, also a client without a verified certificate.
    TlsHandshake,
}

impl Rejection {
    /// Every cause, in rendering order.
    pub const ALL: [Rejection; 9] = [
        Rejection::ConnectionLimit,
        Rejection::HeadTimeout,
        Rejection::HeadTooLarge,
        Rejection::BadRequest,
        Rejection::Method,
        Rejection::Unauthorized,
        Rejection::WriteTimeout,
        Rejection::BodyTooLarge,
        Rejection::TlsHandshake,
    ];

    /// The `cause` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::ConnectionLimit => "connection_limit",
            Rejection::HeadTimeout => "head_timeout",
            Rejection::HeadTooLarge => "head_too_large",
            Rejection::BadRequest => "bad_request",
            Rejection::Method => "method",
            Rejection::Unauthorized => "unauthorized",
            Rejection::WriteTimeout => "write_timeout",
            Rejection::BodyTooLarge => "body_too_large",
            Rejection::TlsHandshake => "tls_handshake",
        }
    }
}

/// Counters of one server, shared with the `/metrics` handler that renders them.
#[derive(Debug, Default)]
pub struct HttpStats {
    rejected: [AtomicU64; Rejection::ALL.len()],
    requests: AtomicU64,
    open: AtomicU64,
}

impl HttpStats {
    /// Connections rejected for `cause` so far.
    pub fn rejected(&self, cause: Rejection) -> u64 {
        self.rejected[cause as usize].load(Ordering::Relaxed)
    }

    /// Requests passed to the handler so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Connections open now (accepted within the cap and not yet finished).
    pub fn open_connections(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    fn reject(&self, cause: Rejection) {
        self.rejected[cause as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Adds the counters of `servers` (`(server label, stats)`) to `out`:
    /// `{prefix}_http_rejected_connections_total{server,cause}`,
    /// `{prefix}_http_requests_total{server}` and the gauge `{prefix}_http_open_connections`.
    pub fn render(out: &mut Exposition, prefix: &str, servers: &[(&str, &HttpStats)]) {
        let mut f = out.family(
            &format!("{prefix}_http_rejected_connections_total"),
            Kind::Counter,
            "Admin HTTP connections refused or cut short, by server and cause.",
        );
        for (server, stats) in servers {
            for cause in Rejection::ALL {
                f.sample(
                    &[("server", server), ("cause", cause.as_str())],
                    stats.rejected(cause),
                );
            }
        }
        let mut f = out.family(
            &format!("{prefix}_http_requests_total"),
            Kind::Counter,
            "Admin HTTP requests answered by their route.",
        );
        for (server, stats) in servers {
            f.sample(&[("server", server)], stats.requests());
        }
        let mut f = out.family(
            &format!("{prefix}_http_open_connections"),
            Kind::Gauge,
            "Admin HTTP connections open now.",
        );
        for (server, stats) in servers {
            f.sample(&[("server", server)], stats.open_connections());
        }
    }
}

/// A bearer token required by every route but `/healthz` (RFC 6750). Never logged: its
/// Shortest bearer token accepted, in bytes.
pub const MIN_TOKEN_BYTES: usize = 16;

/// `Debug` shows nothing of it.
pub struct Token(Secret);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// The token in `path`, surrounding whitespace trimmed. Refused unless the file is its
    /// owner's alone (no group or other permission bits) and holds at least
    /// [`MIN_TOKEN_BYTES`]: the rule of every credential file ([`apitap_secret`]).
    pub fn from_file(path: &Path) -> Result<Token, KeyFileError> {
        apitap_secret::read_secret_file(path, MIN_TOKEN_BYTES).map(Token)
    }

    /// Whether `presented` is the token, in time independent of where they differ.
    fn matches(&self, presented: &[u8]) -> bool {
        self.0.matches(presented)
    }
}

/// One request, as passed to the handler.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// `GET` or `HEAD`, or `POST` when [`Limits::max_body_bytes`] allows content (others
    /// never reach the handler).
    pub method: String,
    /// The request target as sent: path and query (RFC 9112 §3.2, origin form).
    pub target: String,
    /// The header fields, names lower-cased, in order (at most [`MAX_HEADER_FIELDS`]).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The content (empty unless [`Limits::max_body_bytes`] allows it).
    pub body: Vec<u8>,
    /// The client's address (for logs and per-client limits; never a credential).
    pub peer: Option<std::net::SocketAddr>,
    /// With mutual TLS: the verified client certificate's holder (its subject common name,
    /// else its first DNS or e-mail alternative name). `None` without mutual TLS.
    pub client_certificate: Option<String>,
}

impl Request {
    /// A request without header fields or content.
    pub fn new(method: &str, target: &str) -> Request {
        Request {
            method: method.to_owned(),
            target: target.to_owned(),
            ..Request::default()
        }
    }

    /// The values of the header fields named `name` (lower case).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The target's path (before `?`).
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The target's query (after `?`, empty when absent).
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }
}

/// A response: status, content type, body and any further header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type` field value.
    pub content_type: &'static str,
    /// Content (omitted for `HEAD`, its length still sent, RFC 9110 §9.3.2).
    pub body: Vec<u8>,
    /// Further header fields.
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    /// A `text/plain` response.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(
            status,
            "text/plain; charset=utf-8",
            body.into().into_bytes(),
        )
    }

    /// An `application/json` response; `body` must be JSON text.
    pub fn json(status: u16, body: impl Into<String>) -> Response {
        Response::new(status, "application/json", body.into().into_bytes())
    }

    /// A response with any content type.
    pub fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type,
            body,
            headers: Vec::new(),
        }
    }

    fn error(status: u16, message: &str) -> Response {
        Response::json(status, format!("{{\"error\":\"{message}\"}}\n"))
    }

    /// The response with one more header field.
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

/// Answers one request. Runs on a blocking thread (it may query a database).
pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// How a server runs.
#[derive(Debug)]
pub struct Options {
    /// Names the server in logs and in the `server` label of its metrics.
    pub name: &'static str,
    /// Its bounds.
    pub limits: Limits,
    /// The bearer token required by every route but `/healthz`; `None`: no authentication.
    pub token: Option<Token>,
    /// Where it counts (rendered by the owner's `/metrics`).
    pub stats: Arc<HttpStats>,
    /// Path prefixes whose requests skip the bearer check because their handler
    /// authenticates them itself (the console's session cookie, issue 20). Empty: every
    /// route but `/healthz` needs the token.
    pub self_authenticated: &'static [&'static str],
    /// TLS (and mutual TLS) on the listener; `None`: plain HTTP.
    pub tls: Option<Arc<Tls>>,
}

/// What the connection-limit refusal sends (a fixed, tiny reply written without waiting).
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 22\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{\"error\":\"too busy\"}\r\n";

/// Serves `handler` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, handler: Handler, options: Options) {
    let Options {
        name,
        limits,
        token,
        stats,
        self_authenticated,
        tls,
    } = options;
    let token = token.map(Arc::new);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // E.g. EMFILE: back off rather than spin.
                tracing::warn!(error = %e, server = name, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Connection cap (issue 22, R-OPS-3): taken here, in accept order, so one more than
        // the cap is refused however fast the others are.
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            stats.reject(Rejection::ConnectionLimit);
            // Best effort, never waits: a fresh socket's send buffer takes these few bytes.
            let _ = stream.try_write(BUSY);
            tracing::debug!(server = name, "connection limit reached");
            continue;
        };
        stats.open.fetch_add(1, Ordering::Relaxed);
        let (handler, token, stats) = (Arc::clone(&handler), token.clone(), Arc::clone(&stats));
        let tls = tls.clone();
        tokio::spawn(async move {
            let auth = Auth {
                token: token.as_deref(),
                self_authenticated,
            };
            // One deadline for the TLS handshake and the whole head, not per read (issue
            // 22, R-OPS-3): a client trickling a byte at a time is cut off when it expires.
            let deadline = Instant::now() + limits.head_deadline;
            let peer = Peer {
                addr: Some(peer),
                certificate: None,
            };
            let done = match tls {
                None => connection(stream, peer, handler, auth, &limits, &stats, deadline).await,
                Some(tls) => match handshake(&tls, stream, deadline).await {
                    Ok((stream, certificate)) => {
                        let peer = Peer {
                            certificate,
                            ..peer
                        };
                        connection(stream, peer, handler, auth, &limits, &stats, deadline).await
                    }
                    Err(e) => {
                        stats.reject(Rejection::TlsHandshake);
                        Err(e)
                    }
                },
            };
            if let Err(e) = done {
                tracing::debug!(error = %e, server = name, "connection failed");
            }
            stats.open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}

/// A connection's byte stream: plain TCP or TLS over it.
trait Conn: AsyncRead + AsyncWrite + Unpin + Send {
    /// Makes the close abortive (RST): the kernel discards unsent data instead of keeping
    /// it, and the socket, past the connection's end.
    fn abort(&self);
}

impl Conn for TcpStream {
    fn abort(&self) {
        let _ = self.set_zero_linger();
    }
}

impl Conn for tokio_openssl::SslStream<TcpStream> {
    fn abort(&self) {
        let _ = self.get_ref().set_zero_linger();
    }
}

/// Who is on the other end, as far as the transport says.
struct Peer {
    addr: Option<std::net::SocketAddr>,
    certificate: Option<String>,
}

/// The server side of a TLS handshake, by `deadline`; with mutual TLS, the verified client
/// certificate's holder.
async fn handshake(
    tls: &Tls,
    stream: TcpStream,
    deadline: Instant,
) -> std::io::Result<(tokio_openssl::SslStream<TcpStream>, Option<String>)> {
    let ssl = openssl::ssl::Ssl::new(tls.acceptor().context()).map_err(std::io::Error::other)?;
    let mut s = tokio_openssl::SslStream::new(ssl, stream).map_err(std::io::Error::other)?;
    match tokio::time::timeout_at(deadline, std::pin::Pin::new(&mut s).accept()).await {
        Err(_) => {
            s.abort();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "TLS handshake not finished in time",
            ));
        }
        Ok(Err(e)) => return Err(std::io::Error::other(e)),
        Ok(Ok(())) => {}
    }
    let certificate = if tls.mutual() {
        // The handshake verified it (`FAIL_IF_NO_PEER_CERT`); absent here would be a bug,
        // and is refused rather than served unauthenticated.
        match s.ssl().peer_certificate() {
            Some(c) => Some(tls::client_name(&c)),
            None => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "no client certificate",
                ));
            }
        }
    } else {
        None
    };
    Ok((s, certificate))
}

/// What reading the head gave.
enum Head {
    /// A complete head of this many bytes.
    Complete(usize),
    /// The client closed (or reset) before sending a whole head.
    Closed,
    /// Over the size limit.
    TooLarge,
}

async fn read_head<S: Conn>(stream: &mut S, buf: &mut Vec<u8>, max: usize) -> Head {
    let mut chunk = [0u8; 2048];
    loop {
        // Never buffer more than one byte beyond the limit.
        let room = (max + 1).saturating_sub(buf.len()).min(chunk.len());
        let n = match stream.read(&mut chunk[..room]).await {
            Ok(0) | Err(_) => return Head::Closed,
            Ok(n) => n,
        };
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        // The head ends with an empty line (RFC 9112 §2.1).
        if let Some(i) = buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            return Head::Complete(from + i + 4);
        }
        if buf.len() > max {
            return Head::TooLarge;
        }
    }
}

/// How requests are authenticated.
#[derive(Clone, Copy)]
struct Auth<'a> {
    token: Option<&'a Token>,
    self_authenticated: &'static [&'static str],
}

async fn connection<S: Conn>(
    mut stream: S,
    peer: Peer,
    handler: Handler,
    auth: Auth<'_>,
    limits: &Limits,
    stats: &HttpStats,
    deadline: Instant,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let head = tokio::time::timeout_at(
        deadline,
        read_head(&mut stream, &mut buf, limits.max_head_bytes),
    )
    .await;
    let answer = match head {
        Err(_) => {
            stats.reject(Rejection::HeadTimeout);
            Answer::Full(Response::error(408, "request head not received in time"))
        }
        Ok(Head::Closed) => return Ok(()),
        Ok(Head::TooLarge) => {
            stats.reject(Rejection::HeadTooLarge);
            Answer::Full(Response::error(431, "request head too large"))
        }
        Ok(Head::Complete(len)) => {
            let mut ctx = Ctx {
                stream: &mut stream,
                peer,
                buf: &mut buf,
                deadline,
                limits,
                stats,
            };
            respond(len, &mut ctx, handler, auth).await
        }
    };
    let (response, head_only) = match answer {
        Answer::Full(r) => (r, false),
        Answer::HeadOnly(r) => (r, true),
    };
    // Write deadline (issue 22, R-OPS-3): a client that stops reading cannot hold the
    // connection (and its slot) while the response sits in the send buffer.
    match tokio::time::timeout(
        limits.write_deadline,
        write_response(&mut stream, &response, head_only),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => {
            stats.reject(Rejection::WriteTimeout);
            stream.abort();
            Ok(())
        }
    }
}

/// A response, and whether only its head is sent (`HEAD`).
enum Answer {
    Full(Response),
    HeadOnly(Response),
}

impl From<Response> for Answer {
    fn from(r: Response) -> Answer {
        Answer::Full(r)
    }
}

/// The connection while a request is answered.
struct Ctx<'a, S> {
    stream: &'a mut S,
    peer: Peer,
    /// What was read so far: the head, and possibly the start of the content.
    buf: &'a mut Vec<u8>,
    deadline: Instant,
    limits: &'a Limits,
    stats: &'a HttpStats,
}

/// Reads the content of `length` bytes following a head of `head_len` bytes in `ctx.buf`,
/// within the head's deadline.
async fn read_body<S: Conn>(
    ctx: &mut Ctx<'_, S>,
    head_len: usize,
    length: usize,
) -> Option<Vec<u8>> {
    let want = head_len + length;
    let read = async {
        let mut chunk = [0u8; 2048];
        while ctx.buf.len() < want {
            let room = (want - ctx.buf.len()).min(chunk.len());
            match ctx.stream.read(&mut chunk[..room]).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => ctx.buf.extend_from_slice(&chunk[..n]),
            }
        }
        true
    };
    match tokio::time::timeout_at(ctx.deadline, read).await {
        Ok(true) => Some(ctx.buf[head_len..want].to_vec()),
        _ => None,
    }
}

async fn respond<S: Conn>(
    head_len: usize,
    ctx: &mut Ctx<'_, S>,
    handler: Handler,
    auth: Auth<'_>,
) -> Answer {
    let stats = ctx.stats;
    let head = ctx.buf[..head_len].to_vec();
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADER_FIELDS];
    let mut req = httparse::Request::new(&mut fields);
    match req.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => {
            stats.reject(Rejection::HeadTooLarge);
            return Response::error(431, "too many header fields").into();
        }
        Ok(httparse::Status::Partial) | Err(_) => {
            stats.reject(Rejection::BadRequest);
            return Response::error(400, "malformed request").into();
        }
    }
    let (Some(method), Some(target)) = (req.method, req.path) else {
        stats.reject(Rejection::BadRequest);
        return Response::error(400, "malformed request").into();
    };
    // Only safe methods, and `POST` of bounded content where the owner allows it (RFC 9110
    // §15.5.6: 405 lists `Allow`).
    let post = ctx.limits.max_body_bytes > 0;
    if method != "GET" && method != "HEAD" && !(post && method == "POST") {
        stats.reject(Rejection::Method);
        let (text, allow) = if post {
            ("only GET, HEAD and POST are supported", "GET, HEAD, POST")
        } else {
            ("only GET and HEAD are supported", "GET, HEAD")
        };
        return Response::error(405, text).with("Allow", allow).into();
    }
    let mut request = Request {
        method: method.to_owned(),
        target: target.to_owned(),
        headers: req
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
            .collect(),
        body: Vec::new(),
        peer: ctx.peer.addr,
        client_certificate: ctx.peer.certificate.take(),
    };
    if method == "POST" {
        // Bounded content only (issue 20, R-OPS-3): framed by `Content-Length`, at most
        // `max_body_bytes`, in by the head's deadline.
        if request.header_values("transfer-encoding").next().is_some() {
            stats.reject(Rejection::BodyTooLarge);
            return Response::error(411, "content must have a Content-Length").into();
        }
        let lengths: Vec<&[u8]> = request.header_values("content-length").collect();
        let length = match lengths.as_slice() {
            [] => 0,
            [v] => match std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                Some(n) => n,
                None => {
                    stats.reject(Rejection::BadRequest);
                    return Response::error(400, "malformed request").into();
                }
            },
            _ => {
                stats.reject(Rejection::BadRequest);
                return Response::error(400, "malformed request").into();
            }
        };
        if length > ctx.limits.max_body_bytes {
            stats.reject(Rejection::BodyTooLarge);
            return Response::error(413, "request content too large").into();
        }
        match read_body(ctx, head_len, length).await {
            Some(body) => request.body = body,
            None => {
                stats.reject(Rejection::BodyTooLarge);
                return Response::error(408, "request content not received in time").into();
            }
        }
    }
    let head_only = method == "HEAD";
    let path = request.path();
    let exempt = path == "/healthz"
        || auth
            .self_authenticated
            .iter()
            .any(|p| path == *p || path.starts_with(&format!("{p}/")));
    if let Some(token) = auth.token
        && !exempt
    {
        let credentials: Vec<&[u8]> = req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("authorization"))
            .map(|h| h.value)
            .collect();
        if let Some(challenge) = authorize(token, &credentials) {
            stats.reject(Rejection::Unauthorized);
            let r = Response::error(401, "unauthorized").with("WWW-Authenticate", challenge);
            return if head_only {
                Answer::HeadOnly(r)
            } else {
                Answer::Full(r)
            };
        }
    }
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let response = tokio::task::spawn_blocking(move || handler(&request))
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "admin HTTP handler failed");
            Response::error(500, "internal error")
        });
    if head_only {
        Answer::HeadOnly(response)
    } else {
        Answer::Full(response)
    }
}

/// `None` when the credentials carry the token; otherwise the `WWW-Authenticate` challenge
/// (RFC 6750 §3: `error="invalid_token"` when a token was presented, none when absent).
fn authorize(token: &Token, credentials: &[&[u8]]) -> Option<&'static str> {
    const ABSENT: &str = "Bearer realm=\"apitap\"";
    const INVALID: &str = "Bearer realm=\"apitap\", error=\"invalid_token\"";
    let [value] = credentials else {
        // None, or several (ambiguous): refused.
        return Some(if credentials.is_empty() {
            ABSENT
        } else {
            INVALID
        });
    };
    // `Bearer 1*SP b64token` (RFC 6750 §2.1); the scheme is case-insensitive (RFC 9110 §11.1).
    let value = value.trim_ascii();
    let presented = match value.split_at_checked(7) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case(b"bearer ") => rest.trim_ascii(),
        _ => return Some(INVALID),
    };
    if token.matches(presented) {
        None
    } else {
        Some(INVALID)
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        303 => "See Other",
        304 => "Not Modified",
        403 => "Forbidden",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

async fn write_response<S: Conn>(
    stream: &mut S,
    response: &Response,
    head_only: bool,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    for (name, value) in &response.headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(&response.body).await?;
    }
    stream.shutdown().await
}

/// One `GET` over a fresh connection, `extra_headers` (CRLF-terminated lines) added, and the
/// whole answer (status line, headers, body) as text: for probes and tests of the servers.
pub async fn get_once(
    addr: std::net::SocketAddr,
    path: &str,
    extra_headers: &str,
) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: apitap\r\n{extra_headers}\r\n").as_bytes())
        .await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(text: &str) -> Token {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("apitap-admin-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("token");
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let t = Token::from_file(&p).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        t
    }

    #[test]
    fn bearer_credentials_are_checked_exactly() {
        let t = token("0123456789abcdef0123\n");
        assert_eq!(authorize(&t, &[b"Bearer 0123456789abcdef0123"]), None);
        assert_eq!(authorize(&t, &[b"bearer   0123456789abcdef0123 "]), None);
        for bad in [
            &b"Bearer 0123456789abcdef012"[..],
            b"Bearer 0123456789abcdef01234",
            b"Bearer 0123456789abcdef0124",
            b"Basic 0123456789abcdef0123",
            b"Bearer",
            b"0123456789abcdef0123",
        ] {
            assert!(authorize(&t, &[bad]).is_some(), "{bad:?}");
        }
        assert_eq!(authorize(&t, &[]), Some("Bearer realm=\"apitap\""));
        let twice: [&[u8]; 2] = [b"Bearer 0123456789abcdef0123"; 2];
        assert!(authorize(&t, &twice).is_some());
        assert_eq!(format!("{t:?}"), "Token(..)");
    }

    #[test]
    fn request_splits_path_and_query() {
        let r = Request::new("GET", "/v1/services?limit=2");
        assert_eq!((r.path(), r.query()), ("/v1/services", "limit=2"));
    }

    #[test]
    fn busy_reply_declares_its_length() {
        let text = std::str::from_utf8(BUSY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{text}"
        );
    }

    #[test]
    fn renders_every_cause_per_server() {
        let a = HttpStats::default();
        a.reject(Rejection::HeadTimeout);
        let b = HttpStats::default();
        let mut exp = Exposition::new();
        HttpStats::render(&mut exp, "apitap_x", &[("metrics", &a), ("api", &b)]);
        let out = exp.finish();
        assert!(out.contains(
            "apitap_x_http_rejected_connections_total{server=\"metrics\",cause=\"head_timeout\"} 1\n"
        ));
        assert!(out.contains(
            "apitap_x_http_rejected_connections_total{server=\"api\",cause=\"write_timeout\"} 0\n"
        ));
        assert!(out.contains("apitap_x_http_open_connections{server=\"api\"} 0\n"));
        assert_eq!(
            out.lines()
                .filter(|l| l.starts_with("apitap_x_http_rejected"))
                .count(),
            2 * Rejection::ALL.len()
        );
    }

    #[test]
    fn rendered_families_are_well_formed_and_named_by_the_house_rule() {
        let a = HttpStats::default();
        let mut exp = Exposition::new();
        HttpStats::render(&mut exp, "apitap_sensor", &[("metrics", &a)]);
        HttpStats::render(&mut exp, "apitap_sensor", &[("inventory_api", &a)]);
        let out = exp.finish();
        apitap_metrics::check_exposition(&out).unwrap();
        assert_eq!(out.matches("# TYPE ").count(), 3, "{out}");
        assert!(out.contains("apitap_sensor_http_open_connections{server=\"inventory_api\"} 0\n"));
    }
}
