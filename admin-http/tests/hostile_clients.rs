//! The admin HTTP server against hostile clients over real TCP sockets on 127.0.0.1 (issue 22,
//! R-OPS-3): trickled heads, idle connections beyond the cap, clients that never read,
//! oversized heads, other methods, missing or wrong bearer tokens.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use apitap_admin_http::{Handler, HttpStats, Limits, Options, Rejection, Response, Token, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Body of `/big`: far more than loopback socket buffers hold.
const BIG_BYTES: usize = 32 * 1024 * 1024;

async fn start(limits: Limits, token: Option<Token>) -> (SocketAddr, Arc<HttpStats>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(HttpStats::default());
    let handler: Handler = Arc::new(|req| match req.path() {
        "/healthz" => Response::text(200, "ok\n"),
        "/x" => Response::text(200, "hello\n"),
        "/big" => Response::new(200, "application/octet-stream", vec![b'a'; BIG_BYTES]),
        _ => Response::text(404, "no\n"),
    });
    let options = Options {
        name: "test",
        limits,
        token,
        stats: Arc::clone(&stats),
        self_authenticated: &[],
        tls: None,
    };
    tokio::spawn(serve(listener, handler, options));
    (addr, stats)
}

/// Sends `head` and reads the whole reply.
async fn exchange(addr: SocketAddr, head: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

async fn get(addr: SocketAddr, path: &str, extra: &str) -> String {
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n").as_bytes(),
    )
    .await
}

/// Waits (10 s at most) for `cond`; polls, asserts nothing about how long it took.
async fn until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gave up waiting for {what}");
}

/// One byte a second, for longer than the head deadline: the whole-head deadline closes the
/// connection (with 408) long before the head is complete. A per-read timeout of any length
/// over a second would have served it.
#[tokio::test]
async fn trickled_head_is_cut_at_the_deadline() {
    let limits = Limits {
        head_deadline: Duration::from_secs(2),
        ..Limits::default()
    };
    let (addr, stats) = start(limits, None).await;
    let (mut rd, mut wr) = TcpStream::connect(addr).await.unwrap().into_split();
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        let _ = rd.read_to_end(&mut out).await;
        out
    });
    let head = b"GET /x HTTP/1.1\r\nHost: t\r\nX-Trickle: 1\r\n\r\n";
    let mut sent = 0;
    for byte in head {
        if reader.is_finished() || wr.write_all(&[*byte]).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let reply = String::from_utf8_lossy(&reader.await.unwrap()).into_owned();
    eprintln!(
        "trickle: server closed after {sent} of {} bytes",
        head.len()
    );
    assert!(
        sent < head.len(),
        "the connection stayed open for the whole trickled head"
    );
    assert!(reply.starts_with("HTTP/1.1 408 "), "{reply}");
    assert_eq!(stats.rejected(Rejection::HeadTimeout), 1);
    assert_eq!(stats.requests(), 0);
}

/// Cap 2: two idle connections fill it, a third is refused (503) and counted; once the idle
/// ones are gone a normal request is served.
#[tokio::test]
async fn connections_beyond_the_cap_are_refused() {
    let limits = Limits {
        max_connections: 2,
        head_deadline: Duration::from_secs(60),
        ..Limits::default()
    };
    let (addr, stats) = start(limits, None).await;
    let idle = [
        TcpStream::connect(addr).await.unwrap(),
        TcpStream::connect(addr).await.unwrap(),
    ];
    until("two open connections", || stats.open_connections() == 2).await;
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let mut reply = Vec::new();
    let _ = extra.read_to_end(&mut reply).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 503 "), "{reply}");
    assert_eq!(stats.rejected(Rejection::ConnectionLimit), 1);
    assert_eq!(stats.open_connections(), 2);
    drop(idle);
    until("idle connections closed", || stats.open_connections() == 0).await;
    let reply = get(addr, "/x", "").await;
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
    assert!(reply.contains("Connection: close\r\n"), "{reply}");
    assert!(reply.ends_with("\r\n\r\nhello\n"), "{reply}");
    assert_eq!(stats.rejected(Rejection::ConnectionLimit), 1);
}

/// A client that asks for a large response and never reads it is cut off at the write
/// deadline, and its slot is freed.
#[tokio::test]
async fn client_that_never_reads_hits_the_write_deadline() {
    let limits = Limits {
        write_deadline: Duration::from_secs(1),
        ..Limits::default()
    };
    let (addr, stats) = start(limits, None).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    until("the write deadline", || {
        stats.rejected(Rejection::WriteTimeout) == 1
    })
    .await;
    until("the slot freed", || stats.open_connections() == 0).await;
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got).await;
    eprintln!(
        "write deadline: client received {} of {BIG_BYTES} body bytes",
        got.len()
    );
    assert!(got.len() < BIG_BYTES, "the whole response was delivered");
    assert_eq!(stats.requests(), 1);
}

#[tokio::test]
async fn oversized_heads_and_other_methods_are_refused() {
    let (addr, stats) = start(Limits::default(), None).await;
    let big = format!("X-Pad: {}\r\n", "a".repeat(20 * 1024));
    let reply = get(addr, "/x", &big).await;
    assert!(reply.starts_with("HTTP/1.1 431 "), "{reply}");
    let many: String = (0..100).map(|i| format!("X-{i}: 1\r\n")).collect();
    let reply = get(addr, "/x", &many).await;
    assert!(reply.starts_with("HTTP/1.1 431 "), "{reply}");
    assert_eq!(stats.rejected(Rejection::HeadTooLarge), 2);
    let reply = exchange(addr, b"POST /x HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 405 "), "{reply}");
    assert!(reply.contains("Allow: GET, HEAD\r\n"), "{reply}");
    assert_eq!(stats.rejected(Rejection::Method), 1);
    let reply = exchange(addr, b"GET /x HTTP/1.1\r\nno colon here\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 400 "), "{reply}");
    assert_eq!(stats.rejected(Rejection::BadRequest), 1);
    let reply = exchange(addr, b"HEAD /x HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
    assert!(reply.contains("Content-Length: 6\r\n"), "{reply}");
    assert!(reply.ends_with("\r\n\r\n"), "HEAD has no body: {reply}");
    assert_eq!(stats.requests(), 1);
}

fn token_file(name: &str, text: &str, mode: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = std::env::temp_dir().join(format!("apitap-admin-http-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

#[tokio::test]
async fn bearer_token_guards_every_route_but_healthz() {
    const SECRET: &str = "s3cret-token-of-32-bytes-0123456";
    let token = Token::from_file(&token_file("ok", &format!("{SECRET}\n"), 0o600)).unwrap();
    let (addr, stats) = start(Limits::default(), Some(token)).await;
    let reply = get(addr, "/x", "").await;
    assert!(reply.starts_with("HTTP/1.1 401 "), "{reply}");
    assert!(
        reply.contains("WWW-Authenticate: Bearer realm=\"apitap\"\r\n"),
        "{reply}"
    );
    assert!(!reply.contains("hello"), "{reply}");
    let reply = get(
        addr,
        "/x",
        "Authorization: Bearer wrong-token-wrong-token-00\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 401 "), "{reply}");
    assert!(reply.contains("error=\"invalid_token\""), "{reply}");
    assert!(!reply.contains(SECRET), "{reply}");
    let reply = get(addr, "/x", &format!("Authorization: Bearer {SECRET}\r\n")).await;
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
    assert!(reply.ends_with("hello\n"), "{reply}");
    let reply = get(addr, "/healthz", "").await;
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
    let reply = get(addr, "/healthz?x=1", "").await;
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
    assert_eq!(stats.rejected(Rejection::Unauthorized), 2);
    assert_eq!(stats.requests(), 3);
}

#[test]
fn token_file_readable_by_others_is_refused() {
    let p = token_file("open", "s3cret-token-of-32-bytes-0123456\n", 0o644);
    let e = Token::from_file(&p).unwrap_err();
    assert!(
        matches!(e, apitap_admin_http::KeyFileError::Exposed { mode: 0o644 }),
        "{e}"
    );
    assert!(!e.to_string().contains("s3cret"), "{e}");
    let p = token_file("short", "short\n", 0o600);
    assert!(matches!(
        Token::from_file(&p),
        Err(apitap_admin_http::KeyFileError::TooShort { bytes: 5, .. })
    ));
}

/// Bounded content (issue 20, the console's login form): `POST` only where the owner allows
/// content, framed by `Content-Length`, at most `max_body_bytes`, within the head deadline;
/// the handler sees the content and header fields; a self-authenticated prefix skips the
/// bearer check, nothing else does.
#[tokio::test]
async fn post_content_is_bounded_and_self_authenticated_prefixes_skip_the_token() {
    // Without `max_body_bytes`, POST is refused as before.
    let (plain, _) = start(Limits::default(), None).await;
    let r = exchange(plain, b"POST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nab").await;
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
    assert!(r.contains("Allow: GET, HEAD\r\n"), "{r}");

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(HttpStats::default());
    let handler: Handler = Arc::new(|req| {
        let cookie = req
            .header_values("cookie")
            .next()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        Response::text(
            200,
            format!(
                "{} {} body={} cookie={cookie}\n",
                req.method,
                req.path(),
                String::from_utf8_lossy(&req.body)
            ),
        )
    });
    let dir = std::env::temp_dir().join(format!("apitap-admin-post-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("token");
    std::fs::write(&p, "0123456789abcdef0123").unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let token = Token::from_file(&p).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let options = Options {
        name: "test",
        limits: Limits {
            max_body_bytes: 16,
            head_deadline: Duration::from_secs(2),
            ..Limits::default()
        },
        token: Some(token),
        stats: Arc::clone(&stats),
        self_authenticated: &["/self"],
        tls: None,
    };
    tokio::spawn(serve(listener, handler, options));

    // Content arriving after the head, in a second write, reaches the handler.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /self/login HTTP/1.1\r\nCookie: a=b\r\nContent-Length: 12\r\n\r\ntoken")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.write_all(b"=secret").await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let r = String::from_utf8_lossy(&out);
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(
        r.ends_with("POST /self/login body=token=secret cookie=a=b\n"),
        "{r}"
    );
    // The prefix is a path prefix, not a string prefix; other paths need the token.
    assert!(get(addr, "/self", "").await.starts_with("HTTP/1.1 200"));
    assert!(get(addr, "/selfish", "").await.starts_with("HTTP/1.1 401"));
    assert!(get(addr, "/x", "").await.starts_with("HTTP/1.1 401"));
    // Over the bound, unframed, or never arriving: refused and counted.
    let r = exchange(addr, b"POST /self/x HTTP/1.1\r\nContent-Length: 17\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    let r = exchange(
        addr,
        b"POST /self/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 411"), "{r}");
    let r = exchange(
        addr,
        b"POST /self/x HTTP/1.1\r\nContent-Length: 5\r\n\r\nab",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 408"), "{r}");
    assert_eq!(stats.rejected(Rejection::BodyTooLarge), 3);
    let r = exchange(addr, b"PUT /self/x HTTP/1.1\r\n\r\n").await;
    assert!(r.contains("Allow: GET, HEAD, POST\r\n"), "{r}");
}
