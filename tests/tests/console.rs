//! The web console (issue 20, `docs/console.md`) in a real browser: a real `apitap-analyzer
//! run` is fed a recorded capture of our test API (a sequential ID walk by ffuf over its
//! user endpoint, whose responses carry PRC ID numbers, mobiles and cards), and headless
//! Chromium is driven through chromedriver's W3C WebDriver protocol (plain HTTP/JSON from
//! here): log in, open the inventory, click an endpoint, click through to a trace-back result
//! and to an alert, screenshot each page (`target/console-screenshots/`).
//!
//! Also checked over plain HTTP: unauthenticated pages are redirected to the login page and
//! API requests refused (the session cookie does not open the JSON API, the bearer token does
//! not open pages); a wrong token is refused; oversized login content is refused; every
//! page carries the security headers; and no page holds a PRC ID number of the capture in
//! clear (R-SEN-*, R-THR-6).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use apitap_labels::{HashKey, Label};
use apitap_schema::ApiEvent;
use apitap_tests::attacks::{fixture_pcap_in, fixtures_dir, replay_to};
use apitap_tests::{
    Killed, prc_ids, require, run_analyzer_on, which, workspace_bin, workspace_root,
};
use serde_json::{Value, json};

const SECRET: &str = "apitap console test site key";
const TOKEN: &str = "console test token, more than sixteen bytes";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One HTTP/1.1 exchange over a fresh connection: status, header fields (names lower-cased)
/// and body.
fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    // Read to the end of the message (chromedriver keeps connections open).
    let mut out = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        let n = s.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
        if complete(&out) {
            break;
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let fields: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = fields
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    (status, fields, body)
}

/// Whether `buf` holds a whole response (by `Content-Length` or the last chunk).
fn complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let body = &buf[end + 4..];
    if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return body.len() >= len;
    }
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    false
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A W3C WebDriver session of chromedriver.
struct Browser {
    driver: SocketAddr,
    session: String,
}

impl Browser {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let target = format!("/session/{}{path}", self.session);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let (status, _, text) = http(
            self.driver,
            method,
            &target,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: {status} {e}: {text}"));
        assert_eq!(status, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    fn go(&self, url: &str) {
        eprintln!("console test: browser to {url}");
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    /// The URL once it satisfies `ok` (a click's navigation may still be under way).
    fn url_when(&self, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let u = self.url();
            if ok(&u) || Instant::now() > deadline {
                // Let the new document finish loading before it is read.
                std::thread::sleep(Duration::from_millis(300));
                return self.url();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn url(&self) -> String {
        self.call("GET", "/url", None).as_str().unwrap().to_owned()
    }

    fn source(&self) -> String {
        self.call("GET", "/source", None)
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn find(&self, using: &str, value: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({ "using": using, "value": value })),
        );
        v[ELEMENT].as_str().unwrap().to_owned()
    }

    fn css(&self, selector: &str) -> String {
        self.find("css selector", selector)
    }

    fn click(&self, element: &str) {
        self.call(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
    }

    fn type_into(&self, element: &str, text: &str) {
        self.call(
            "POST",
            &format!("/element/{element}/clear"),
            Some(json!({})),
        );
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let b64 = self.call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        std::fs::write(path, png).unwrap();
    }

    /// The page's text once it satisfies `ok` (15 s at most; then whatever it is).
    fn text_when(&self, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            // The old document may go away under the query: retried.
            let t = self.try_text().unwrap_or_default();
            if ok(&t) || Instant::now() > deadline {
                return t;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn try_text(&self) -> Option<String> {
        let target = format!("/session/{}/element", self.session);
        let body = json!({"using": "css selector", "value": "body"}).to_string();
        let (code, _, text) = http(
            self.driver,
            "POST",
            &target,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        if code != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&text).ok()?;
        let el = v["value"][ELEMENT].as_str()?.to_owned();
        let (code, _, text) = http(
            self.driver,
            "GET",
            &format!("/session/{}/element/{el}/text", self.session),
            &[],
            b"",
        );
        if code != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&text).ok()?;
        v["value"].as_str().map(str::to_owned)
    }

    /// The page's text as the browser renders it.
    fn text(&self) -> String {
        let body = self.css("body");
        self.call("GET", &format!("/element/{body}/text"), None)
            .as_str()
            .unwrap()
            .to_owned()
    }
}

impl Drop for Browser {
    /// Ends the session, so Chromium exits even when an assertion failed (chromedriver is
    /// killed after it; a browser it started would otherwise be left running).
    fn drop(&mut self) {
        // Never panics (it may run while a failed assertion unwinds).
        if let Ok(mut s) = TcpStream::connect(self.driver) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
            let req = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\n\r\n",
                self.session, self.driver
            );
            let _ = s.write_all(req.as_bytes());
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
        }
    }
}

fn response_text(e: &ApiEvent) -> String {
    e.response
        .as_ref()
        .map(|r| r.body.data.clone())
        .unwrap_or_default()
}

fn private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    eprintln!("console test: waiting for {what}");
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn tool_problem() -> Option<String> {
    for tool in ["chromium", "chromedriver"] {
        if which(tool).is_none() {
            return Some(format!(
                "`{tool}` is not installed (run `cargo xtask setup`)"
            ));
        }
    }
    None
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let d = target.join("console-screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The console's session cookie after logging in with `token` (`None` when refused).
fn login(api: SocketAddr, token: &str) -> (u16, Option<String>) {
    let body = format!("token={}", token.replace(' ', "+").replace(',', "%2C"));
    let (status, fields, _) = http(
        api,
        "POST",
        "/console/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    );
    let cookie = field(&fields, "set-cookie").map(|c| c.split(';').next().unwrap().to_owned());
    (status, cookie)
}

#[test]
fn the_console_in_a_browser_shows_inventory_trace_back_and_alerts_without_values() {
    if !require(
        "console",
        "browser test",
        tool_problem().or_else(|| workspace_bin("apitap-sensor").err().map(|e| e.to_string())),
    ) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("apitap-console-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let shots = screenshots_dir();

    // The capture, replayed into events.
    let pcap = fixture_pcap_in(&fixtures_dir(), "enum_ffuf.pcapng.gz", &dir).unwrap();
    let events_file = dir.join("events.jsonl");
    replay_to(&pcap, &events_file, "console-test").unwrap();
    let events: Vec<ApiEvent> = std::fs::read_to_string(&events_file)
        .unwrap()
        .lines()
        .map(|l| apitap_schema::decode_event(l.as_bytes()).unwrap())
        .collect();
    let all_ids: BTreeSet<String> = events
        .iter()
        .flat_map(|e| prc_ids(&response_text(e)))
        .collect();
    assert!(
        all_ids.len() > 50,
        "{} PRC IDs in the capture",
        all_ids.len()
    );
    let value = all_ids.iter().next().unwrap().clone();
    let carried = events
        .iter()
        .filter(|e| response_text(e).contains(&value))
        .count();

    // The analyzer: inventory store, trace-back store, console on the API listener.
    let key_file = dir.join("site.key");
    private(&key_file, &format!("{SECRET}\n"));
    let token_file = dir.join("api.token");
    private(&token_file, TOKEN);
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = dir.join("analyzer.toml");
    std::fs::write(
        &config,
        format!(
            "[input]\npath = \"-\"\n\n[labels]\nhash_key_file = {key:?}\n\n[trace]\npath = {trace:?}\n\n\
             [inventory]\nstore = {store:?}\napi_listen = \"{api}\"\napi_token_file = {tok:?}\n\
             flush_interval_secs = 1\ndiscovery_grace_secs = 0\n\n[output]\nsummary_path = {summary:?}\n\n\
             [metrics]\nlisten = \"{metrics}\"\n\n\
             [console]\nenabled = true\nsecure_cookie = false\nmax_alerts = 50\n",
            key = key_file.display().to_string(),
            trace = dir.join("trace").display().to_string(),
            store = format!("sqlite:{}", dir.join("inventory.db").display()),
            tok = token_file.display().to_string(),
            summary = dir.join("summary.txt").display().to_string(),
        ),
    )
    .unwrap();
    let (child, stdin) =
        run_analyzer_on(&config, &events_file, "warn,apitap_analyzer::console=info").unwrap();
    let analyzer = Killed(child);

    // Until the analysis is in: the templated customer endpoint in the store, the trace
    // store holding every transaction that carried the value, an alert in the ring.
    let bearer = format!("Bearer {TOKEN}");
    wait_for("the user endpoint", 60, || {
        let Ok(s) = TcpStream::connect(api) else {
            return false;
        };
        drop(s);
        let (code, _, body) = http(
            api,
            "GET",
            "/v1/endpoints?label=prc_id",
            &[("Authorization", &bearer)],
            b"",
        );
        code == 200 && body.contains("users/{")
    });
    let hash = HashKey::from_secret(SECRET.as_bytes())
        .hash_value(Label::PrcId, value.as_bytes())
        .to_string();
    wait_for("the trace records", 60, || {
        let (code, _, body) = http(
            api,
            "GET",
            &format!("/v1/trace?value_hash={hash}"),
            &[("Authorization", &bearer)],
            b"",
        );
        code == 200 && body.matches("\"event_id\"").count() == carried
    });

    // Over plain HTTP: what is refused.
    let (code, fields, _) = http(api, "GET", "/console/", &[], b"");
    assert_eq!(code, 303);
    assert_eq!(field(&fields, "location"), Some("/console/login"));
    let (code, _, body) = http(api, "GET", "/v1/endpoints", &[], b"");
    assert_eq!(code, 401, "{body}");
    let (code, cookie) = login(api, "not the token, but as long as one");
    assert_eq!(code, 401);
    assert_eq!(cookie, None, "a wrong token gets no session");
    let (code, cookie) = login(api, TOKEN);
    assert_eq!(code, 303);
    let cookie = cookie.unwrap();
    assert!(cookie.starts_with("apitap_session="), "{cookie}");
    let (_, fields, _) = {
        let body = format!("token={}", TOKEN.replace(' ', "+").replace(',', "%2C"));
        http(api, "POST", "/console/login", &[], body.as_bytes())
    };
    let set = field(&fields, "set-cookie").unwrap();
    for attr in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=3600",
    ] {
        assert!(set.contains(attr), "{set}");
    }
    let forged = format!("apitap_session={}", "ab".repeat(32));
    let (code, _, _) = http(api, "GET", "/console/", &[("Cookie", &forged)], b"");
    assert_eq!(code, 303, "a forged session is redirected");
    let (code, fields, page) = http(api, "GET", "/console/", &[("Cookie", &cookie)], b"");
    assert_eq!(code, 200);
    assert!(page.contains("users/{"), "{page}");
    let csp = field(&fields, "content-security-policy").unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert_eq!(field(&fields, "x-frame-options"), Some("DENY"));
    assert_eq!(field(&fields, "cache-control"), Some("no-store"));
    // The session opens pages only, the bearer token the API only.
    let (code, _, _) = http(api, "GET", "/v1/endpoints", &[("Cookie", &cookie)], b"");
    assert_eq!(code, 401, "a session cookie does not open the JSON API");
    let (code, _, _) = http(api, "GET", "/console/", &[("Authorization", &bearer)], b"");
    assert_eq!(code, 303, "the bearer token does not open pages");
    let (code, _, _) = http(
        api,
        "POST",
        "/v1/endpoints",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(code, 405);
    let big = vec![b'a'; 8192];
    let (code, _, _) = http(api, "POST", "/console/login", &[], &big);
    assert_eq!(code, 413, "login content is bounded");
    // The alert ring fills as findings are flushed.
    wait_for("an alert on the console", 60, || {
        let (_, _, page) = http(api, "GET", "/console/alerts", &[("Cookie", &cookie)], b"");
        page.contains("class=\"alert ")
    });

    // The browser.
    let driver_port = free_port();
    let driver: SocketAddr = format!("127.0.0.1:{driver_port}").parse().unwrap();
    let _chromedriver = Killed(
        Command::new(which("chromedriver").unwrap())
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("chromedriver", 30, || {
        TcpStream::connect(driver).is_ok() && {
            let (code, _, body) = http(driver, "GET", "/status", &[], b"");
            code == 200 && body.contains("\"ready\":true")
        }
    });
    let caps = json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": which("chromium").unwrap(),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1100", "--user-data-dir=".to_owned() + &dir.join("chrome").display().to_string()],
        }
    }}});
    let (code, _, body) = http(
        driver,
        "POST",
        "/session",
        &[("Content-Type", "application/json")],
        caps.to_string().as_bytes(),
    );
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let b = Browser {
        driver,
        session: v["value"]["sessionId"].as_str().unwrap().to_owned(),
    };
    let base = format!("http://{api}");
    let mut sources: Vec<(&str, String)> = Vec::new();

    // Not logged in: the login page.
    b.go(&format!("{base}/console/"));
    assert!(b.url().ends_with("/console/login"), "{}", b.url());
    b.screenshot(&shots.join("01-login.png"));
    // A wrong token.
    b.type_into(&b.css("#token"), "not the token, but as long as one");
    b.click(&b.css("#login"));
    let text = b.text_when(|t| t.contains("Wrong token."));
    assert!(text.contains("Wrong token."), "{text}");
    assert!(b.url().ends_with("/console/login"));
    b.screenshot(&shots.join("02-wrong-token.png"));
    sources.push(("login", b.source()));
    // The token: the inventory.
    b.type_into(&b.css("#token"), TOKEN);
    b.click(&b.css("#login"));
    let u = b.url_when(|u| u.ends_with("/console/"));
    assert!(u.ends_with("/console/"), "{u}: {}", b.text());
    let text = b.text();
    assert!(text.contains("Inventory"), "{text}");
    assert!(text.contains("/api/users/{"), "{text}");
    b.screenshot(&shots.join("03-inventory.png"));
    sources.push(("inventory", b.source()));
    // The label filter.
    b.go(&format!("{base}/console/?label=prc_id&sensitivity=high"));
    let filtered = b.text();
    assert!(filtered.contains("/api/users/{"), "{filtered}");
    assert!(
        !filtered.contains("/api/logout"),
        "the filter keeps labelled endpoints only: {filtered}"
    );
    b.screenshot(&shots.join("04-inventory-filtered.png"));
    sources.push(("inventory filtered", b.source()));
    // Click the user endpoint.
    let link = b.find(
        "xpath",
        "//table[@id='endpoints']//a[contains(., '/api/users/{')]",
    );
    b.click(&link);
    let u = b.url_when(|u| u.contains("/console/endpoints/"));
    assert!(u.contains("/console/endpoints/"), "{u}");
    let text = b.text();
    for want in [
        "Parameters",
        "Sensitive fields",
        "prc_id",
        "Change log",
        "discovered",
        "Hits per hour",
    ] {
        assert!(text.contains(want), "endpoint page lacks {want:?}: {text}");
    }
    let src = b.source();
    assert!(src.contains("<svg id=\"traffic\""), "no chart");
    assert!(src.matches("class=\"bar\"").count() == 48, "48 hourly bars");
    b.screenshot(&shots.join("05-endpoint.png"));
    sources.push(("endpoint", src));
    let endpoint_url = b.url();
    // Through to trace-back: who called it.
    b.click(&b.find("xpath", "//a[contains(., 'who called this endpoint')]"));
    let u = b.url_when(|u| u.contains("/console/trace?"));
    assert!(u.contains("/console/trace?"), "{u}");
    let text = b.text();
    assert!(text.contains("transaction(s)"), "{text}");
    let rows = b.source().matches("<tr><td>").count();
    assert!(rows > 10, "{rows} trace hits for the endpoint");
    b.screenshot(&shots.join("06-trace-endpoint.png"));
    sources.push(("trace endpoint", b.source()));
    // A trace-back result links back to its endpoint page.
    b.click(&b.css("table#trace a.endpoint"));
    assert_eq!(b.url_when(|u| u == endpoint_url), endpoint_url);
    // Trace-back by value hash, typed into the form.
    b.go(&format!("{base}/console/trace"));
    b.type_into(&b.find("css selector", "input[name=value_hash]"), &hash);
    b.click(&b.css("#search"));
    b.url_when(|u| u.contains("value_hash="));
    let text = b.text();
    assert!(
        text.contains(&format!("{carried} transaction(s)")),
        "{carried} transactions carried the value: {text}"
    );
    assert!(text.contains("prc_id/response"), "{text}");
    b.screenshot(&shots.join("07-trace-value-hash.png"));
    sources.push(("trace value", b.source()));
    // Alerts, from the navigation.
    b.click(&b.find("xpath", "//nav/a[.='Alerts']"));
    assert!(
        b.url_when(|u| u.ends_with("/console/alerts"))
            .ends_with("/console/alerts")
    );
    let text = b.text();
    assert!(text.contains("evicted from the ring"), "{text}");
    let src = b.source();
    assert!(src.contains("class=\"alert "), "no alert: {text}");
    sources.push(("alerts", src));
    // The detections only: the ID walk's, with its actor and masked samples.
    b.click(&b.find("xpath", "//a[.='detections']"));
    b.url_when(|u| u.ends_with("source=detect"));
    let text = b.text();
    assert!(text.contains("source detect"), "{text}");
    assert!(
        !text.contains("New API endpoint"),
        "only detections: {text}"
    );
    let src = b.source();
    assert!(
        src.contains("<table class=\"evidence\">"),
        "no evidence: {text}"
    );
    b.screenshot(&shots.join("08-alerts.png"));
    sources.push(("alerts detect", src));
    // An alert's actor, traced.
    b.click(&b.find("xpath", "//a[starts-with(., 'trace actor ')]"));
    let u = b.url_when(|u| u.contains("/console/trace?ip="));
    assert!(u.contains("/console/trace?ip="), "{u}");
    let text = b.text();
    assert!(text.contains("transaction(s)"), "{text}");
    assert!(b.source().matches("<tr><td>").count() > 10, "{text}");
    b.screenshot(&shots.join("09-trace-actor.png"));
    sources.push(("trace actor", b.source()));
    // The sensitive-data map.
    b.click(&b.find("xpath", "//nav/a[.='Data map']"));
    b.url_when(|u| u.ends_with("/console/data-map"));
    let text = b.text();
    assert!(text.contains("prc_id"), "{text}");
    assert!(text.contains("/api/users/{"), "{text}");
    b.screenshot(&shots.join("10-data-map.png"));
    sources.push(("data map", b.source()));
    // Log out: the session ends.
    b.click(&b.find("xpath", "//header//button[.='Log out']"));
    let u = b.url_when(|u| u.ends_with("/console/login"));
    assert!(u.ends_with("/console/login"), "{u}");
    b.go(&format!("{base}/console/alerts"));
    assert!(
        b.url().ends_with("/console/login"),
        "logged out: {}",
        b.url()
    );

    // The counters: two refused logins (over HTTP and in the browser), alerts in the ring.
    let (code, _, text) = http(metrics, "GET", "/metrics", &[], b"");
    assert_eq!(code, 200);
    let value_of = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing: {text}"))
    };
    assert_eq!(value_of("apitap_console_logins_refused_total"), 2);
    assert!(value_of("apitap_console_alerts_total") > 0);
    assert_eq!(value_of("apitap_console_alerts_evicted_total"), 0);
    assert!(text.contains("cause=\"body_too_large\"} 1\n"), "{text}");

    // Render time of the pages, measured over plain HTTP (one connection each).
    let endpoint_path = endpoint_url.trim_start_matches(&base).to_owned();
    let (_, cookie) = login(api, TOKEN);
    let cookie = cookie.unwrap();
    for path in [
        "/console/",
        endpoint_path.as_str(),
        "/console/alerts",
        "/console/data-map",
    ] {
        let mut times: Vec<Duration> = (0..20)
            .map(|_| {
                let t = Instant::now();
                let (code, _, page) = http(api, "GET", path, &[("Cookie", &cookie)], b"");
                assert_eq!(code, 200, "{path}");
                assert!(!page.contains(&value));
                t.elapsed()
            })
            .collect();
        times.sort();
        eprintln!(
            "console page {path}: median {:?}, max {:?} over 20 requests",
            times[10], times[19]
        );
    }

    // No page holds a value of the capture in clear.
    for (page, html) in &sources {
        assert!(!html.contains(&value), "{page} shows the PRC ID in clear");
        let found = prc_ids(html);
        assert!(found.is_empty(), "{page} shows {} PRC ID(s)", found.len());
    }
    drop(stdin);
    drop(analyzer);
    let _ = std::fs::remove_dir_all(&dir);
}
