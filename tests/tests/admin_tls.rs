//! HTTPS and mutual TLS on the analyzer's API listener (issue 20: "token or mTLS,
//! configurable"; R-OPS-3), with real `curl` clients and certificates made by `openssl`:
//! first the `apitap-admin-http` server itself (handshake refusals counted, the client
//! certificate's holder passed to the handler, token and certificate both needed when both
//! are configured, bad files named), then a real `apitap-analyzer run` fed a recorded capture
//! whose console and JSON API admit only certificates of the site's client CA.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apitap_admin_http::{
    Handler, HttpStats, Limits, Options, Rejection, Request, Response, Tls, TlsError, Token,
};
use apitap_tests::attacks::{fixture_pcap_in, fixtures_dir, replay_to};
use apitap_tests::pki::{ANALYST_CN, TestPki};
use apitap_tests::{Killed, require, run_analyzer_on, workspace_bin};

fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("apitap-tls-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A handler that names who it sees.
fn whoami() -> Handler {
    Arc::new(|req: &Request| {
        Response::text(
            200,
            format!(
                "cert={} peer_is_loopback={}\n",
                req.client_certificate.as_deref().unwrap_or("-"),
                req.peer.is_some_and(|p| p.ip().is_loopback())
            ),
        )
    })
}

async fn start(tls: Tls, token: Option<Token>) -> (SocketAddr, Arc<HttpStats>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(HttpStats::default());
    let options = Options {
        name: "inventory_api",
        limits: Limits {
            head_deadline: Duration::from_secs(1),
            ..Limits::default()
        },
        token,
        stats: Arc::clone(&stats),
        self_authenticated: &[],
        tls: Some(Arc::new(tls)),
    };
    tokio::spawn(apitap_admin_http::serve(listener, whoami(), options));
    (addr, stats)
}

/// `curl https://localhost:<port><path>` with `args`: (exit code, body or `-w` output).
fn curl(addr: SocketAddr, path: &str, args: &[String]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--resolve"])
        .arg(format!("localhost:{}:127.0.0.1", addr.port()))
        .args(args)
        .arg(format!("https://localhost:{}{path}", addr.port()))
        .output()
        .expect("curl runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

async fn curl_async(addr: SocketAddr, args: Vec<String>) -> (i32, String) {
    tokio::task::spawn_blocking(move || curl(addr, "/v1/x", &args))
        .await
        .unwrap()
}

/// Waits (5 s at most) until the server counted a refused handshake beyond `before`.
async fn handshakes_refused_beyond(stats: &Arc<HttpStats>, before: u64, what: &'static str) {
    let st = Arc::clone(stats);
    tokio::task::spawn_blocking(move || {
        wait_for(what, 5, || st.rejected(Rejection::TlsHandshake) > before)
    })
    .await
    .unwrap();
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_clients_that_trust_the_site_ca_and_refuses_plain_http() {
    let dir = temp_dir("tls");
    let pki = TestPki::make(&dir).unwrap();
    let tls = Tls::from_files(&pki.path("server.crt"), &pki.path("server.key"), None).unwrap();
    assert!(!tls.mutual());
    let (addr, stats) = start(tls, None).await;
    let (code, body) = curl_async(addr, pki.curl_args(None)).await;
    assert_eq!(code, 0, "{body}");
    assert_eq!(body, "cert=- peer_is_loopback=true\n");
    // A client that does not trust the site CA refuses the server (curl: exit 60).
    let (code, _) = curl_async(addr, Vec::new()).await;
    assert_eq!(code, 60);
    // Plain HTTP to the TLS port: nothing served, counted.
    let before = stats.rejected(Rejection::TlsHandshake);
    let text = apitap_admin_http::get_once(addr, "/v1/x", "")
        .await
        .unwrap_or_default();
    assert!(!text.contains("cert="), "{text}");
    handshakes_refused_beyond(&stats, before, "the refusal").await;
    assert_eq!(stats.requests(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_certificates_of_the_client_ca() {
    let dir = temp_dir("mtls");
    let pki = TestPki::make(&dir).unwrap();
    let ca = pki.path("site-ca.crt");
    let tls = Tls::from_files(&pki.path("server.crt"), &pki.path("server.key"), Some(&ca)).unwrap();
    assert!(tls.mutual());
    let (addr, stats) = start(tls, None).await;
    let (code, body) = curl_async(addr, pki.curl_args(Some("analyst"))).await;
    assert_eq!(code, 0, "{body}");
    assert_eq!(body, format!("cert={ANALYST_CN} peer_is_loopback=true\n"));
    // No certificate, or one of another CA: the handshake refuses them, nothing is served.
    for leaf in [None, Some("intruder")] {
        let before = stats.rejected(Rejection::TlsHandshake);
        let (code, body) = curl_async(addr, pki.curl_args(leaf)).await;
        assert_ne!(code, 0, "{leaf:?}: {body}");
        assert!(body.is_empty(), "{body}");
        handshakes_refused_beyond(&stats, before, "the refusal").await;
    }
    // A client that connects and never starts the handshake is cut at the head deadline.
    let before = stats.rejected(Rejection::TlsHandshake);
    let silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    handshakes_refused_beyond(&stats, before, "the deadline").await;
    drop(silent);
    assert_eq!(stats.requests(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_and_a_token_need_both() {
    let dir = temp_dir("both");
    let pki = TestPki::make(&dir).unwrap();
    let tok = dir.join("token");
    std::fs::write(&tok, "0123456789abcdef0123456789\n").unwrap();
    std::fs::set_permissions(&tok, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ca = pki.path("site-ca.crt");
    let tls = Tls::from_files(&pki.path("server.crt"), &pki.path("server.key"), Some(&ca)).unwrap();
    let (addr, stats) = start(tls, Some(Token::from_file(&tok).unwrap())).await;
    let mut args = pki.curl_args(Some("analyst"));
    args.extend(s(&["-o", "/dev/null", "-w", "%{http_code}"]));
    let (_, status) = curl_async(addr, args.clone()).await;
    assert_eq!(status, "401");
    assert_eq!(stats.rejected(Rejection::Unauthorized), 1);
    args.extend(s(&[
        "-H",
        "Authorization: Bearer 0123456789abcdef0123456789",
    ]));
    let (_, status) = curl_async(addr, args).await;
    assert_eq!(status, "200");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unusable_tls_files_are_named() {
    let dir = temp_dir("files");
    let pki = TestPki::make(&dir).unwrap();
    let (crt, key) = (pki.path("server.crt"), pki.path("server.key"));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = Tls::from_files(&crt, &key, None).unwrap_err();
    assert!(matches!(e, TlsError::KeyFile { .. }), "{e}");
    assert!(e.to_string().contains("server.key"), "{e}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The key of another certificate.
    let e = Tls::from_files(&crt, &pki.path("analyst.key"), None).unwrap_err();
    assert!(matches!(e, TlsError::Key { .. }), "{e}");
    let e = Tls::from_files(&dir.join("missing.crt"), &key, None).unwrap_err();
    assert!(e.to_string().contains("missing.crt"), "{e}");
    // A key is not a CA bundle.
    let e = Tls::from_files(&crt, &key, Some(&pki.path("server.key"))).unwrap_err();
    assert!(matches!(e, TlsError::ClientCa { .. }), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn metric(metrics: SocketAddr, line_start: &str) -> u64 {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .arg(format!("http://{metrics}/metrics"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_analyzer_console_and_api_over_mutual_tls_admit_only_the_client_ca() {
    if !require(
        "admin_tls",
        "analyzer over mutual TLS",
        workspace_bin("apitap-sensor").err().map(|e| e.to_string()),
    ) {
        return;
    }
    let dir = temp_dir("analyzer");
    let pki = TestPki::make(&dir.join("pki")).unwrap();
    let pcap = fixture_pcap_in(&fixtures_dir(), "enum_ffuf.pcapng.gz", &dir).unwrap();
    let events = dir.join("events.jsonl");
    replay_to(&pcap, &events, "tls-test").unwrap();
    let (api, metrics) = (free_addr(), free_addr());
    let config = dir.join("analyzer.toml");
    // Mutual TLS alone: the certificate is the credential, of the API and of the console.
    std::fs::write(
        &config,
        format!(
            "[input]\npath = \"-\"\n\n[inventory]\nstore = {store:?}\napi_listen = \"{api}\"\n\
             api_tls_cert_file = {crt:?}\napi_tls_key_file = {key:?}\napi_client_ca_file = {ca:?}\n\
             flush_interval_secs = 1\ndiscovery_grace_secs = 0\n\n[output]\nsummary_path = {summary:?}\n\n\
             [metrics]\nlisten = \"{metrics}\"\n\n[console]\nenabled = true\n",
            store = format!("sqlite:{}", dir.join("inventory.db").display()),
            crt = pki.path("server.crt").display().to_string(),
            key = pki.path("server.key").display().to_string(),
            ca = pki.path("site-ca.crt").display().to_string(),
            summary = dir.join("summary.txt").display().to_string(),
        ),
    )
    .unwrap();
    let check = Command::new(workspace_bin("apitap-analyzer").unwrap())
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let (child, _stdin) = run_analyzer_on(&config, &events, "warn").unwrap();
    let _analyzer = Killed(child);
    let analyst = pki.curl_args(Some("analyst"));
    wait_for("the user endpoint over mutual TLS", 60, || {
        let (code, body) = curl(api, "/v1/endpoints", &analyst);
        code == 0 && body.contains("users/{")
    });
    let (code, page) = curl(api, "/console/", &analyst);
    assert_eq!(code, 0);
    assert!(page.contains("users/{") && page.contains("<nav>"), "{page}");
    let mut status = analyst.clone();
    status.extend(s(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
    ]));
    let (_, login) = curl(api, "/console/login", &status);
    assert!(
        login.starts_with("303 ") && login.ends_with("/console/"),
        "{login}"
    );
    // Refused in the handshake: no certificate, a foreign CA's, plain HTTP.
    let refused = "apitap_analyzer_http_rejected_connections_total{server=\"inventory_api\",cause=\"tls_handshake\"}";
    let before = metric(metrics, refused);
    for leaf in [None, Some("intruder")] {
        for path in ["/console/", "/v1/endpoints"] {
            let (code, body) = curl(api, path, &pki.curl_args(leaf));
            assert_ne!(code, 0, "{leaf:?} {path}: {body}");
            assert!(body.is_empty(), "{body}");
        }
    }
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .arg(format!("http://{api}/console/"))
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("<nav>"));
    wait_for("the refusals counted", 10, || {
        metric(metrics, refused) >= before + 5
    });
    std::fs::remove_dir_all(&dir).unwrap();
}
