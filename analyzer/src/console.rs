//! The web console (issue 20, `docs/console.md`): server-rendered HTML pages on the inventory
//! API's listener (R-INV-5), behind the same API token file.
//!
//! Browsers cannot send a bearer header, so `/console/login` takes the token once (a form
//! `POST`, compared in constant time) and answers a random session cookie (`HttpOnly`,
//! `SameSite=Strict`, `Path=/console`, expiring; kept server-side, at most
//! `console.max_sessions`). Every other `/console` page without a valid session is
//! redirected to the login page; the JSON API keeps its bearer token.
//!
//! Pages: the inventory with filters, an endpoint (parameters, field-level labels, change log,
//! hits per hour as an SVG chart drawn here), trace-back (R-THR-6: keyed hashes, addresses and
//! endpoints only, never a value), the recent alerts (a bounded ring, evictions counted) and
//! the sensitive-data map (R-SEN-1..3: labels per endpoint and exposure). Every value is
//! HTML-escaped; no script runs (`Content-Security-Policy: default-src 'none'`); one static
//! style sheet.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::io::Read as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use apitap_admin_http::{Handler, Request, Response};
use apitap_detect::Alert;
use apitap_inventory::api::SharedStore;
use apitap_inventory::record::{ChangeFilter, EndpointFilter, EndpointKey, EndpointRecord};
use apitap_labels::facts::percent_decode;
use apitap_secret::Secret;
use apitap_trace::TraceReader;
use serde_json::Value;

use crate::config::ConsoleConfig;

/// The console's path prefix; requests under it skip the listener's bearer check and are
/// authenticated here by session cookie.
pub const PREFIX: &str = "/console";
/// Largest login form accepted, in bytes (issue 22, R-OPS-3: bounded request content).
pub const MAX_FORM_BYTES: usize = 4096;
/// Hours of the per-endpoint traffic series.
pub const SERIES_HOURS: usize = 48;
/// The session cookie's name.
const COOKIE: &str = "apitap_session";
/// The style sheet, the console's one static file.
const CSS: &str = include_str!("console.css");
/// Security header fields of every console response (issue 20): no script, no framing, no
/// referrer, no caching of pages that map the APIs.
const SECURITY_HEADERS: [(&str, &str); 6] = [
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
];

/// `text` with `& < > " '` escaped for HTML text and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` percent-encoded for a query value (unreserved characters kept).
pub fn url_enc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The most recent alerts the analyzer emitted, at most `capacity`; older ones are evicted
/// and counted (issue 20).
#[derive(Debug)]
pub struct AlertRing {
    capacity: usize,
    alerts: Mutex<VecDeque<Alert>>,
    evicted: AtomicU64,
    seen: AtomicU64,
}

impl AlertRing {
    /// An empty ring of `capacity` alerts (at least 1).
    pub fn new(capacity: usize) -> AlertRing {
        AlertRing {
            capacity: capacity.max(1),
            alerts: Mutex::new(VecDeque::new()),
            evicted: AtomicU64::new(0),
            seen: AtomicU64::new(0),
        }
    }

    /// Keeps `alert`, evicting the oldest when full.
    pub fn push(&self, alert: &Alert) {
        let mut q = self.alerts.lock().unwrap_or_else(PoisonError::into_inner);
        if q.len() >= self.capacity {
            q.pop_front();
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        q.push_back(alert.clone());
        self.seen.fetch_add(1, Ordering::Relaxed);
    }

    /// The alerts kept, newest first.
    pub fn newest_first(&self) -> Vec<Alert> {
        let q = self.alerts.lock().unwrap_or_else(PoisonError::into_inner);
        q.iter().rev().cloned().collect()
    }

    /// Alerts evicted so far.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Alerts pushed so far.
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }
}

/// Hits per hour of one endpoint over the [`SERIES_HOURS`] hours up to its newest event.
#[derive(Debug, Clone, Copy)]
struct Series {
    /// Hour (since the epoch, event time) of the newest bucket.
    newest_hour: u64,
    /// Ring of hourly counts, indexed by hour modulo [`SERIES_HOURS`].
    counts: [u32; SERIES_HOURS],
}

/// Per-endpoint hits per hour, event time (issue 20: the endpoint page's chart). Bounded:
/// at most `max_endpoints` series of [`SERIES_HOURS`] counters; events of further endpoints
/// are counted, not kept.
#[derive(Debug)]
pub struct Traffic {
    max_endpoints: usize,
    series: Mutex<HashMap<String, Series>>,
    dropped: AtomicU64,
}

impl Traffic {
    /// An empty set of at most `max_endpoints` series.
    pub fn new(max_endpoints: usize) -> Traffic {
        Traffic {
            max_endpoints,
            series: Mutex::new(HashMap::new()),
            dropped: AtomicU64::new(0),
        }
    }

    /// Counts one hit of endpoint `id` at `time_us` (µs since the epoch).
    pub fn hit(&self, id: &str, time_us: u64) {
        let hour = time_us / 3_600_000_000;
        let mut map = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let full = map.len() >= self.max_endpoints;
        let s = match map.get_mut(id) {
            Some(s) => s,
            None if full => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            None => map.entry(id.to_owned()).or_insert(Series {
                newest_hour: hour,
                counts: [0; SERIES_HOURS],
            }),
        };
        if hour > s.newest_hour {
            let steps = (hour - s.newest_hour).min(SERIES_HOURS as u64);
            for h in 1..=steps {
                s.counts[((s.newest_hour + h) % SERIES_HOURS as u64) as usize] = 0;
            }
            s.newest_hour = hour;
        } else if s.newest_hour - hour >= SERIES_HOURS as u64 {
            return;
        }
        let i = (hour % SERIES_HOURS as u64) as usize;
        s.counts[i] = s.counts[i].saturating_add(1);
    }

    /// `(hour since the epoch, hits)` of endpoint `id`, oldest first; `None` when unknown.
    pub fn hours(&self, id: &str) -> Option<Vec<(u64, u32)>> {
        let map = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let s = map.get(id)?;
        let first = s.newest_hour.saturating_sub(SERIES_HOURS as u64 - 1);
        Some(
            (first..=s.newest_hour)
                .map(|h| (h, s.counts[(h % SERIES_HOURS as u64) as usize]))
                .collect(),
        )
    }

    /// Hits of endpoints beyond `max_endpoints`, not kept.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Server-side sessions: random ids with their expiry.
#[derive(Debug)]
struct Sessions {
    ttl: Duration,
    max: usize,
    live: Mutex<Vec<([u8; 32], Instant)>>,
}

/// `a == b` in time independent of where they differ.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn random_id() -> std::io::Result<[u8; 32]> {
    let mut id = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut id)?;
    Ok(id)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Sessions {
    /// A new session's id; the oldest one is ended when `max` are live.
    fn open(&self) -> std::io::Result<[u8; 32]> {
        let id = random_id()?;
        let now = Instant::now();
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|(_, exp)| *exp > now);
        if live.len() >= self.max.max(1) {
            live.remove(0);
        }
        live.push((id, now + self.ttl));
        Ok(id)
    }

    /// Whether `id` is a live session (every live id compared in constant time).
    fn valid(&self, id: &[u8; 32]) -> bool {
        let now = Instant::now();
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.iter()
            .fold(false, |ok, (s, exp)| ok | (ct_eq(s, id) & (*exp > now)))
    }

    /// Sessions live now.
    fn live_count(&self) -> u64 {
        let now = Instant::now();
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.iter().filter(|(_, exp)| *exp > now).count() as u64
    }

    fn close(&self, id: &[u8; 32]) {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|(s, _)| !ct_eq(s, id));
    }
}

/// Failed logins per client address in the current minute (issue 20: a hostile client
/// guessing tokens is slowed down, counted, and cannot grow the table without bound).
struct FailedLogins {
    /// Failures admitted per address per minute.
    per_minute: u32,
    /// Addresses tracked at most; past it the table restarts (a flood of addresses then
    /// forgets earlier counts, which only makes the limit looser, never locks anyone out).
    max_clients: usize,
    window: Mutex<(Instant, HashMap<std::net::IpAddr, u32>)>,
    throttled: AtomicU64,
}

impl FailedLogins {
    const WINDOW: Duration = Duration::from_secs(60);

    fn new(per_minute: u32) -> FailedLogins {
        FailedLogins {
            per_minute,
            max_clients: 4096,
            window: Mutex::new((Instant::now(), HashMap::new())),
            throttled: AtomicU64::new(0),
        }
    }

    /// Whether `ip` may try a login now (false: it failed `per_minute` times this minute).
    fn admits(&self, ip: Option<std::net::IpAddr>) -> bool {
        let Some(ip) = ip else { return true };
        let mut w = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        if w.0.elapsed() >= Self::WINDOW {
            *w = (Instant::now(), HashMap::new());
        }
        let ok = w.1.get(&ip).is_none_or(|n| *n < self.per_minute);
        if !ok {
            self.throttled.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    fn failed(&self, ip: Option<std::net::IpAddr>) {
        let Some(ip) = ip else { return };
        let mut w = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        if w.1.len() >= self.max_clients && !w.1.contains_key(&ip) {
            w.1.clear();
        }
        *w.1.entry(ip).or_insert(0) += 1;
    }
}

/// How a console request was authenticated.
enum Login {
    /// By the session cookie a token login gave.
    Session([u8; 32]),
    /// By the verified client certificate of mutual TLS (no token configured).
    Certificate,
}

/// Everything the console reads.
pub struct Console {
    /// The API token logins take; `None`: mutual TLS alone authenticates.
    token: Option<Secret>,
    failed_logins: FailedLogins,
    secure_cookie: bool,
    sessions: Sessions,
    store: SharedStore,
    trace: Option<TraceReader>,
    /// The recent alerts.
    pub alerts: Arc<AlertRing>,
    /// Hits per hour per endpoint.
    pub traffic: Arc<Traffic>,
    logins_refused: AtomicU64,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

/// Security headers added to `r`.
fn secured(mut r: Response) -> Response {
    for (n, v) in SECURITY_HEADERS {
        r = r.with(n, v);
    }
    r
}

fn html(status: u16, body: String) -> Response {
    secured(Response::new(
        status,
        "text/html; charset=utf-8",
        body.into_bytes(),
    ))
}

fn redirect(to: &str) -> Response {
    secured(Response::text(303, "see other\n").with("Location", to))
}

/// The query of `target` as decoded pairs, empty values dropped (forms send every field).
fn pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                percent_decode(k, true).into_owned(),
                percent_decode(v, true).trim().to_owned(),
            )
        })
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

fn page(title: &str, active: &str, content: &str) -> String {
    let mut nav = String::new();
    for (href, name) in [
        ("/console/", "Inventory"),
        ("/console/trace", "Trace-back"),
        ("/console/alerts", "Alerts"),
        ("/console/data-map", "Data map"),
    ] {
        let class = if name == active {
            " class=\"active\""
        } else {
            ""
        };
        let _ = write!(nav, "<a href=\"{href}\"{class}>{name}</a>");
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{t} · apitap</title><link rel=\"stylesheet\" href=\"/console/static/console.css\">\
         </head><body><header><span class=\"brand\">apitap</span><nav>{nav}</nav>\
         <form method=\"post\" action=\"/console/logout\"><button type=\"submit\">Log out</button></form>\
         </header><main><h1>{t}</h1>{content}</main></body></html>\n",
        t = esc(title)
    )
}

fn login_page(message: Option<&str>) -> String {
    let msg = message
        .map(|m| format!("<p class=\"error\">{}</p>", esc(m)))
        .unwrap_or_default();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Log in · apitap</title>\
         <link rel=\"stylesheet\" href=\"/console/static/console.css\"></head><body><main class=\"login\">\
         <h1>apitap console</h1>{msg}<form method=\"post\" action=\"/console/login\">\
         <label for=\"token\">API token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required>\
         <button id=\"login\" type=\"submit\">Log in</button></form></main></body></html>\n"
    )
}

fn fmt_time(us: u64) -> String {
    apitap_schema::time::format_unix_us(us)
}

/// A trace-back link for one selector (`key=value` of `GET /v1/trace`).
fn trace_link(params: &[(&str, &str)], text: &str) -> String {
    let q: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", url_enc(v)))
        .collect();
    format!(
        "<a class=\"trace\" href=\"/console/trace?{}\">{}</a>",
        esc(&q.join("&")),
        esc(text)
    )
}

fn endpoint_link(id: &str, text: &str) -> String {
    format!(
        "<a class=\"endpoint\" href=\"/console/endpoints/{}\">{}</a>",
        esc(&url_enc(id)),
        esc(text)
    )
}

/// The endpoint trace-back names: template and, when there is one, the operation.
fn traced_template(key: &EndpointKey) -> String {
    if key.operation.is_empty() {
        key.template.clone()
    } else {
        format!("{} {}", key.template, key.operation)
    }
}

/// The inventory id of an endpoint as trace-back records name it.
fn traced_endpoint_id(service: &str, method: &str, template: &str) -> String {
    let (template, operation) = template.split_once(' ').unwrap_or((template, ""));
    EndpointKey {
        service: service.to_owned(),
        method: method.to_owned(),
        template: template.to_owned(),
        operation: operation.to_owned(),
    }
    .id()
}

fn select(name: &str, options: &[&str], chosen: Option<&str>) -> String {
    let mut s = format!("<select id=\"{name}\" name=\"{name}\"><option value=\"\">any</option>");
    for o in options {
        let sel = if Some(*o) == chosen { " selected" } else { "" };
        let _ = write!(s, "<option{sel}>{}</option>", esc(o));
    }
    s.push_str("</select>");
    s
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

impl Console {
    /// The console of `config`, logging in with `token`; without a token, requests are
    /// authenticated by their verified client certificate (mutual TLS on the listener).
    pub fn new(
        config: &ConsoleConfig,
        token: Option<Secret>,
        store: SharedStore,
        trace: Option<TraceReader>,
    ) -> Console {
        Console {
            token,
            failed_logins: FailedLogins::new(config.max_failed_logins_per_minute),
            secure_cookie: config.secure_cookie,
            sessions: Sessions {
                ttl: Duration::from_secs(config.session_ttl_secs.max(1)),
                max: config.max_sessions,
                live: Mutex::new(Vec::new()),
            },
            store,
            trace,
            alerts: Arc::new(AlertRing::new(config.max_alerts)),
            traffic: Arc::new(Traffic::new(config.max_series_endpoints)),
            logins_refused: AtomicU64::new(0),
        }
    }

    /// Login attempts refused so far (wrong or missing token).
    pub fn logins_refused(&self) -> u64 {
        self.logins_refused.load(Ordering::Relaxed)
    }

    /// Adds the console's counters to `/metrics` (issue 20).
    pub fn render(&self, out: &mut apitap_metrics::Exposition) {
        out.counter(
            "apitap_console_logins_refused_total",
            "Console logins refused (wrong or missing token).",
            self.logins_refused(),
        );
        out.counter(
            "apitap_console_logins_throttled_total",
            "Console logins refused unread: the address failed console.max_failed_logins_per_minute times this minute.",
            self.failed_logins.throttled.load(Ordering::Relaxed),
        );
        out.gauge(
            "apitap_console_sessions",
            "Console sessions live now.",
            self.sessions.live_count(),
        );
        out.counter(
            "apitap_console_alerts_total",
            "Alerts kept in the console's ring since start.",
            self.alerts.seen(),
        );
        out.counter(
            "apitap_console_alerts_evicted_total",
            "Alerts evicted from the console's ring (console.max_alerts).",
            self.alerts.evicted(),
        );
        out.counter(
            "apitap_console_traffic_dropped_total",
            "Hits not kept in a traffic series (endpoints beyond console.max_series_endpoints).",
            self.traffic.dropped(),
        );
    }

    fn session(&self, req: &Request) -> Option<[u8; 32]> {
        let mut found = None;
        for value in req.header_values("cookie") {
            let text = std::str::from_utf8(value).ok()?;
            for part in text.split(';') {
                if let Some((k, v)) = part.trim().split_once('=')
                    && k == COOKIE
                {
                    found = unhex32(v.trim());
                }
            }
        }
        found.filter(|id| self.sessions.valid(id))
    }

    fn cookie(&self, value: &str, max_age: u64) -> String {
        format!(
            "{COOKIE}={value}; Path={PREFIX}; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
            if self.secure_cookie { "; Secure" } else { "" }
        )
    }

    /// Answers a request under [`PREFIX`].
    pub fn answer(&self, req: &Request) -> Response {
        let path = req.path();
        if path == "/console/static/console.css" {
            return secured(Response::new(
                200,
                "text/css; charset=utf-8",
                CSS.as_bytes().to_vec(),
            ));
        }
        if path == "/console/login" {
            return self.login(req);
        }
        let Some(login) = self.who(req) else {
            if self.token.is_none() {
                // Only reachable if the listener did not enforce mutual TLS.
                return html(
                    401,
                    page("Refused", "", "<p>A client certificate is required.</p>"),
                );
            }
            return redirect("/console/login");
        };
        if path == "/console/logout" {
            if req.method != "POST" {
                return redirect("/console/");
            }
            return match login {
                Login::Session(session) => {
                    self.sessions.close(&session);
                    redirect("/console/login").with("Set-Cookie", self.cookie("", 0))
                }
                // A certificate cannot be logged out of; the browser holds it.
                Login::Certificate => redirect("/console/"),
            };
        }
        if req.method == "POST" {
            return html(405, page("Not allowed", "", "<p>Only GET here.</p>"));
        }
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let result = match parts.as_slice() {
            ["console"] => self.inventory(req.query()),
            ["console", "endpoints", id] => self.endpoint(&percent_decode(id, false)),
            ["console", "trace"] => Ok(self.trace_page(req.query())),
            ["console", "alerts"] => Ok(self.alerts_page(req.query())),
            ["console", "data-map"] => self.data_map(),
            _ => Ok(html(404, page("Not found", "", "<p>No such page.</p>"))),
        };
        result.unwrap_or_else(|e| {
            // The cause names tables and files: logged, not shown (issue 22, R-OPS-3).
            tracing::warn!(error = %crate::inventory::text::error_chain(&e), "console query failed");
            html(500, page("Error", "", "<p>Internal error.</p>"))
        })
    }

    /// The request's login: its session (token configured) or its verified client
    /// certificate (mutual TLS alone).
    fn who(&self, req: &Request) -> Option<Login> {
        match &self.token {
            Some(_) => self.session(req).map(Login::Session),
            None => req.client_certificate.as_ref().map(|_| Login::Certificate),
        }
    }

    fn login(&self, req: &Request) -> Response {
        let Some(token) = &self.token else {
            // Mutual TLS alone: the certificate is the login.
            return redirect("/console/");
        };
        if req.method != "POST" {
            return html(200, login_page(None));
        }
        let ip = req.peer.map(|p| p.ip());
        if !self.failed_logins.admits(ip) {
            tracing::info!("console login throttled");
            return html(
                429,
                login_page(Some(
                    "Too many failed logins from this address; wait a minute.",
                )),
            )
            .with("Retry-After", "60");
        }
        let body = String::from_utf8_lossy(&req.body);
        let presented = pairs(&body)
            .into_iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v);
        let ok = presented
            .as_deref()
            .is_some_and(|t| token.matches(t.as_bytes()));
        if !ok {
            self.logins_refused.fetch_add(1, Ordering::Relaxed);
            self.failed_logins.failed(ip);
            tracing::info!("console login refused");
            return html(401, login_page(Some("Wrong token.")));
        }
        match self.sessions.open() {
            Ok(id) => {
                tracing::info!("console login");
                let ttl = self.sessions.ttl.as_secs();
                redirect("/console/").with("Set-Cookie", self.cookie(&hex(&id), ttl))
            }
            Err(e) => {
                tracing::warn!(error = %e, "console session id not drawn");
                html(500, login_page(Some("Internal error.")))
            }
        }
    }

    fn lock_store(&self) -> std::sync::MutexGuard<'_, Box<dyn apitap_inventory::Store>> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn inventory(&self, query: &str) -> Result<Response, apitap_inventory::StoreError> {
        let q: BTreeMap<String, String> = pairs(query).into_iter().collect();
        let label = q
            .get("label")
            .filter(|l| apitap_labels::Label::from_name(l).is_some());
        let sens = q.get("sensitivity").filter(|s| {
            apitap_inventory::sensitive::LEVELS.contains(&s.as_str())
                || s.as_str() == apitap_inventory::sensitive::UNKNOWN
        });
        let offset: u64 = q.get("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
        let limit = apitap_inventory::api::DEFAULT_LIMIT;
        let filter = EndpointFilter {
            service: q.get("service").cloned(),
            template: q.get("template").cloned(),
            lifecycle: q.get("lifecycle").cloned(),
            spec_status: q.get("spec_status").cloned(),
            label: label.cloned(),
            sensitivity: sens.cloned(),
            limit: Some(limit + 1),
            offset: Some(offset),
            ..EndpointFilter::default()
        };
        let records = self.lock_store().endpoints(&filter)?;
        let mut c = String::new();
        let labels: Vec<&str> = apitap_labels::Label::ALL.iter().map(|l| l.name()).collect();
        let mut levels: Vec<&str> = apitap_inventory::sensitive::LEVELS.to_vec();
        levels.push(apitap_inventory::sensitive::UNKNOWN);
        let _ = write!(
            c,
            "<form class=\"filters\" method=\"get\" action=\"/console/\">\
             <label>service <input name=\"service\" value=\"{}\"></label>\
             <label>template <input name=\"template\" value=\"{}\"></label>\
             <label>label {}</label><label>sensitivity {}</label><label>lifecycle {}</label>\
             <label>spec status {}</label><button type=\"submit\">Filter</button></form>",
            esc(q.get("service").map_or("", String::as_str)),
            esc(q.get("template").map_or("", String::as_str)),
            select("label", &labels, label.map(String::as_str)),
            select("sensitivity", &levels, sens.map(String::as_str)),
            select(
                "lifecycle",
                &["new", "active", "inactive", "revived"],
                q.get("lifecycle").map(String::as_str)
            ),
            select(
                "spec_status",
                &[
                    "no_spec",
                    "documented",
                    "deprecated",
                    "undocumented",
                    "undocumented_method",
                    "unseen"
                ],
                q.get("spec_status").map(String::as_str)
            ),
        );
        c.push_str(
            "<table id=\"endpoints\"><thead><tr><th>service</th><th>method</th><th>endpoint</th>\
             <th>lifecycle</th><th>spec</th><th>sensitivity</th><th>labels</th><th>auth</th>\
             <th>hits</th><th>clients</th><th>last seen</th></tr></thead><tbody>",
        );
        for r in records.iter().take(limit as usize) {
            let s = r.summary();
            let mut labels: Vec<String> = s
                .data_labels
                .iter()
                .map(|d| d.label.label.name().to_owned())
                .collect();
            labels.sort();
            labels.dedup();
            let _ = write!(
                c,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td class=\"sens-{}\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td>{}</td></tr>",
                esc(&s.service),
                esc(&s.method),
                endpoint_link(&s.id, &traced_template(&r.key)),
                esc(s.lifecycle.as_str()),
                esc(r.spec_status.as_str()),
                esc(&s.sensitivity),
                esc(&s.sensitivity),
                esc(&labels.join(", ")),
                esc(&s.auth.join(", ")),
                s.hits,
                s.distinct_clients,
                esc(&fmt_time(r.data.last_seen_unix_us)),
            );
        }
        c.push_str("</tbody></table>");
        if records.is_empty() {
            c.push_str("<p class=\"empty\">No endpoint matches.</p>");
        }
        if records.len() as u64 > limit {
            let mut next: Vec<String> = q
                .iter()
                .filter(|(k, _)| k.as_str() != "offset")
                .map(|(k, v)| format!("{k}={}", url_enc(v)))
                .collect();
            next.push(format!("offset={}", offset + limit));
            let _ = write!(
                c,
                "<p><a href=\"/console/?{}\">Next {limit}</a></p>",
                esc(&next.join("&"))
            );
        }
        Ok(html(200, page("Inventory", "Inventory", &c)))
    }

    fn endpoint(&self, id: &str) -> Result<Response, apitap_inventory::StoreError> {
        let (rec, changes) = {
            let mut store = self.lock_store();
            let Some(rec) = store.endpoint(id)? else {
                return Ok(html(
                    404,
                    page("No such endpoint", "", "<p>No such endpoint.</p>"),
                ));
            };
            let changes = store.changes(&ChangeFilter {
                endpoint_id: Some(id.to_owned()),
                limit: Some(apitap_inventory::api::DEFAULT_LIMIT),
                ..ChangeFilter::default()
            })?;
            (rec, changes)
        };
        let s = rec.summary();
        let title = format!("{} {} {}", s.method, s.service, traced_template(&rec.key));
        let mut c = String::new();
        let _ = write!(
            c,
            "<dl class=\"facts\"><dt>id</dt><dd>{}</dd><dt>lifecycle</dt><dd>{}</dd>\
             <dt>spec status</dt><dd>{}</dd><dt>style</dt><dd>{}</dd><dt>auth</dt><dd>{}</dd>\
             <dt>exposure</dt><dd>{}</dd><dt>sensitivity</dt><dd>{}</dd><dt>function</dt><dd>{}</dd>\
             <dt>hits</dt><dd>{}</dd><dt>distinct clients</dt><dd>{}</dd><dt>status codes</dt><dd>{}</dd>\
             <dt>first seen</dt><dd>{}</dd><dt>last seen</dt><dd>{}</dd></dl>",
            esc(&s.id),
            esc(s.lifecycle.as_str()),
            esc(rec.spec_status.as_str()),
            esc(&s.style),
            esc(&s.auth.join(", ")),
            esc(&s.exposure),
            esc(&s.sensitivity),
            esc(&s.function_class),
            s.hits,
            s.distinct_clients,
            esc(&s
                .status_codes
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")),
            esc(&fmt_time(rec.data.first_seen_unix_us)),
            esc(&fmt_time(rec.data.last_seen_unix_us)),
        );
        let _ = write!(
            c,
            "<p>{}</p>",
            trace_link(
                &[
                    ("service", &rec.key.service),
                    ("method", &rec.key.method),
                    ("template", &traced_template(&rec.key)),
                ],
                "Trace-back: who called this endpoint"
            )
        );
        c.push_str("<h2>Traffic</h2>");
        c.push_str(&self.chart(id));
        c.push_str("<h2>Parameters</h2>");
        c.push_str(&parameters(&rec));
        c.push_str("<h2>Sensitive fields</h2>");
        if s.data_labels.is_empty() {
            c.push_str("<p class=\"empty\">No sensitive data seen.</p>");
        } else {
            c.push_str(
                "<table id=\"labels\"><thead><tr><th>label</th><th>direction</th><th>location</th>\
                 <th>field</th><th>events</th><th>masked</th><th>mask shape</th></tr></thead><tbody>",
            );
            for d in &s.data_labels {
                let v = serde_json::to_value(d).unwrap_or(Value::Null);
                let _ = write!(
                    c,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
                     <td>{}</td><td>{}</td></tr>",
                    esc(d.label.label.name()),
                    esc(str_of(&v, "direction")),
                    esc(str_of(&v, "location")),
                    esc(&d.label.field),
                    d.label.events,
                    esc(str_of(&v, "masked")),
                    esc(d.label.mask_example.as_deref().unwrap_or("")),
                );
            }
            c.push_str("</tbody></table>");
        }
        c.push_str("<h2>Change log</h2>");
        if changes.is_empty() {
            c.push_str("<p class=\"empty\">No change recorded.</p>");
        } else {
            c.push_str(
                "<table id=\"changes\"><thead><tr><th>seq</th><th>time</th><th>change</th>\
                 <th>detail</th></tr></thead><tbody>",
            );
            for ch in &changes {
                let _ = write!(
                    c,
                    "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                    ch.seq,
                    esc(&fmt_time(ch.at_unix_us)),
                    esc(&ch.kind),
                    esc(&crate::inventory::text::portable(ch.detail.to_string())),
                );
            }
            c.push_str("</tbody></table>");
        }
        Ok(html(200, page(&title, "Inventory", &c)))
    }

    /// Hits per hour as an SVG bar chart (drawn here: no script, no external image).
    fn chart(&self, id: &str) -> String {
        let Some(hours) = self.traffic.hours(id) else {
            return "<p class=\"empty\">No traffic seen by this analyzer since it started.</p>"
                .to_owned();
        };
        let (w, h, left, bottom) = (720u32, 180u32, 40u32, 30u32);
        let max = hours.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
        let bar = (w - left) / SERIES_HOURS as u32;
        let plot = h - bottom - 10;
        let mut svg = format!(
            "<svg id=\"traffic\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
             viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"hits per hour\">\
             <line x1=\"{left}\" y1=\"{y0}\" x2=\"{w}\" y2=\"{y0}\" stroke=\"#888\"/>\
             <text x=\"0\" y=\"16\" font-size=\"11\" fill=\"#444\">{max}</text>\
             <text x=\"0\" y=\"{y0}\" font-size=\"11\" fill=\"#444\">0</text>",
            y0 = h - bottom
        );
        for (i, (hour, n)) in hours.iter().enumerate() {
            let bh = (u64::from(*n) * u64::from(plot) / u64::from(max)) as u32;
            let x = left + i as u32 * bar;
            let _ = write!(
                svg,
                "<rect class=\"bar\" x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{bh}\" fill=\"#3a6ea5\">\
                 <title>{}: {n}</title></rect>",
                h - bottom - bh,
                bar.saturating_sub(2).max(1),
                esc(&fmt_time(hour * 3_600_000_000)),
            );
            if i % 12 == 0 || i + 1 == hours.len() {
                let label = fmt_time(hour * 3_600_000_000);
                let _ = write!(
                    svg,
                    "<text x=\"{x}\" y=\"{}\" font-size=\"10\" fill=\"#444\">{}</text>",
                    h - 10,
                    esc(label.get(..13).unwrap_or(&label))
                );
            }
        }
        svg.push_str("</svg>");
        let total: u64 = hours.iter().map(|(_, n)| u64::from(*n)).sum();
        format!(
            "{svg}<p class=\"note\">Hits per hour (event time), the {SERIES_HOURS} hours up to \
             this endpoint's newest event; {total} in the window.</p>"
        )
    }

    fn trace_page(&self, query: &str) -> Response {
        let given = pairs(query);
        let get = |k: &str| {
            given
                .iter()
                .find(|(n, _)| n == k)
                .map_or("", |(_, v)| v.as_str())
        };
        let mut c = String::new();
        let _ = write!(
            c,
            "<p class=\"note\">Keyed hashes, addresses and endpoints only: a sensitive value is \
             never asked for or shown (R-THR-6). Hash a value with <code>apitap-analyzer trace \
             --value</code> on a host holding the site key.</p>\
             <form class=\"filters\" method=\"get\" action=\"/console/trace\">\
             <label>value hash <input name=\"value_hash\" value=\"{}\" size=\"34\"></label>\
             <label>client address <input name=\"ip\" value=\"{}\"></label>\
             <label>account (kind:hash) <input name=\"account\" value=\"{}\"></label>\
             <label>User-Agent key <input name=\"ua_key\" value=\"{}\" size=\"18\"></label>\
             <label>service <input name=\"service\" value=\"{}\"></label>\
             <label>method <input name=\"method\" value=\"{}\" size=\"7\"></label>\
             <label>template <input name=\"template\" value=\"{}\"></label>\
             <label>since (UTC) <input name=\"since\" value=\"{}\" size=\"20\" \
             placeholder=\"YYYY-MM-DDTHH:MM:SSZ\"></label>\
             <label>until (UTC) <input name=\"until\" value=\"{}\" size=\"20\" \
             placeholder=\"YYYY-MM-DD\"></label>\
             <button id=\"search\" type=\"submit\">Search</button></form>",
            esc(get("value_hash")),
            esc(get("ip")),
            esc(get("account")),
            esc(get("ua_key")),
            esc(get("service")),
            esc(get("method")),
            esc(get("template")),
            esc(get("since")),
            esc(get("until")),
        );
        if given.is_empty() {
            return html(200, page("Trace-back", "Trace-back", &c));
        }
        let Some(reader) = &self.trace else {
            c.push_str(
                "<p class=\"error\">This analyzer keeps no trace-back store (`[trace] path`).</p>",
            );
            return html(200, page("Trace-back", "Trace-back", &c));
        };
        // `since`/`until` are typed as the CLI takes them (UTC `YYYY-MM-DDTHH:MM:SSZ` or
        // `YYYY-MM-DD`); the query takes microseconds.
        let mut rebuilt: Vec<String> = Vec::with_capacity(given.len());
        for (k, v) in &given {
            if k == "since" || k == "until" {
                let Some(us) = apitap_schema::time::parse_unix_us(v) else {
                    let _ = write!(
                        c,
                        "<p class=\"error\">{k} is a UTC time: YYYY-MM-DDTHH:MM:SSZ or \
                         YYYY-MM-DD</p>"
                    );
                    return html(400, page("Trace-back", "Trace-back", &c));
                };
                rebuilt.push(format!("{k}_us={us}"));
            } else {
                rebuilt.push(format!("{}={}", url_enc(k), url_enc(v)));
            }
        }
        let q = match crate::trace::http_query(&rebuilt.join("&")) {
            Ok(q) => q,
            Err(e) => {
                let _ = write!(c, "<p class=\"error\">{}</p>", esc(e.0));
                return html(400, page("Trace-back", "Trace-back", &c));
            }
        };
        let answer = match reader.query(&q) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "console trace query failed");
                c.push_str("<p class=\"error\">Internal error.</p>");
                return html(500, page("Trace-back", "Trace-back", &c));
            }
        };
        let _ = write!(
            c,
            "<p id=\"hits\">{} transaction(s){}; {} partition(s) searched.</p>",
            answer.hits.len(),
            if answer.truncated {
                ", more beyond the limit"
            } else {
                ""
            },
            answer.partitions_searched
        );
        c.push_str(
            "<table id=\"trace\"><thead><tr><th>time</th><th>endpoint</th><th>status</th>\
             <th>client</th><th>account</th><th>User-Agent</th><th>records</th><th>matched</th>\
             </tr></thead><tbody>",
        );
        for h in &answer.hits {
            let e = &h.endpoint;
            let id = traced_endpoint_id(&e.service, &e.method, &e.template);
            let ip = h.client_ip.to_string();
            let account = h
                .account
                .as_deref()
                .map_or_else(|| "-".to_owned(), |a| trace_link(&[("account", a)], a));
            let ua = if h.ua_key.is_empty() {
                esc(&h.ua_family)
            } else {
                trace_link(
                    &[("ua_key", &h.ua_key)],
                    &format!("{} {}", h.ua_family, h.ua_key),
                )
            };
            let matched: Vec<String> = h
                .matched
                .iter()
                .map(|m| format!("{}/{}", m.label, m.direction))
                .collect();
            let _ = write!(
                c,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{account}</td><td>{ua}</td>\
                 <td class=\"num\">{}</td><td>{}</td></tr>",
                esc(&fmt_time(h.time_us)),
                endpoint_link(&id, &format!("{} {} {}", e.method, e.service, e.template)),
                h.status.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                trace_link(&[("ip", &ip)], &ip),
                h.records,
                esc(&matched.join(", ")),
            );
        }
        c.push_str("</tbody></table>");
        html(200, page("Trace-back", "Trace-back", &c))
    }

    fn alerts_page(&self, query: &str) -> Response {
        let q = pairs(query);
        let source = q
            .iter()
            .find(|(k, _)| k == "source")
            .map(|(_, v)| v.as_str());
        let mut alerts = self.alerts.newest_first();
        alerts.retain(|a| source.is_none_or(|s| a.source.feature() == s));
        let mut filter =
            String::from("<p class=\"links\">Show: <a href=\"/console/alerts\">all</a>");
        for (s, name) in [
            ("detect", "detections"),
            ("labels", "weak points"),
            ("inventory", "inventory changes"),
        ] {
            let _ = write!(
                filter,
                " · <a href=\"/console/alerts?source={s}\">{name}</a>"
            );
        }
        filter.push_str("</p>");
        let mut c = filter;
        let _ = write!(
            c,
            "<p class=\"note\">The {} most recent alerts this analyzer emitted since it started \
             ({} in all, {} evicted from the ring), newest first{}. Samples are masked as on the \
             alert topic.</p>",
            alerts.len(),
            self.alerts.seen(),
            self.alerts.evicted(),
            source.map_or_else(String::new, |s| format!(", source {}", esc(s)))
        );
        if alerts.is_empty() {
            c.push_str("<p class=\"empty\">No alert yet.</p>");
        }
        c.push_str("<ol id=\"alerts\" class=\"timeline\">");
        for a in &alerts {
            let ep = &a.endpoint;
            let _ = write!(
                c,
                "<li class=\"alert sev-{}\" id=\"alert-{}\"><div class=\"when\">{}</div>\
                 <div class=\"what\"><strong>{}</strong> <span class=\"kind\">{} · {} · {}</span>",
                esc(&format!("{:?}", a.severity).to_ascii_lowercase()),
                esc(&url_enc(&a.report_uid())),
                esc(&fmt_time(a.time_us)),
                esc(&a.title),
                esc(a.source.feature()),
                esc(&a.kind),
                esc(&format!("{:?}", a.severity)),
            );
            if let Some(d) = &a.desc {
                let _ = write!(c, "<p>{}</p>", esc(d));
            }
            let mut links = Vec::new();
            if ep.method != "*" && ep.template != "*" {
                let id = ep
                    .uid
                    .clone()
                    .unwrap_or_else(|| traced_endpoint_id(&ep.service, &ep.method, &ep.template));
                links.push(endpoint_link(
                    &id,
                    &format!("{} {} {}", ep.method, ep.service, ep.template),
                ));
                links.push(trace_link(
                    &[
                        ("service", &ep.service),
                        ("method", &ep.method),
                        ("template", &ep.template),
                    ],
                    "trace endpoint",
                ));
            } else {
                links.push(esc(&format!(
                    "{} {} {}",
                    ep.method, ep.service, ep.template
                )));
            }
            if let Some(ip) = &a.src_ip {
                links.push(trace_link(&[("ip", ip)], &format!("trace actor {ip}")));
            }
            if let Some(u) = &a.user
                && u.contains(':')
            {
                links.push(trace_link(&[("account", u)], &format!("trace account {u}")));
            }
            let _ = write!(c, "<p class=\"links\">{}</p>", links.join(" · "));
            if let Some(span) = &a.span {
                let _ = write!(
                    c,
                    "<p class=\"note\">{} event(s) from {} to {}</p>",
                    span.events,
                    esc(&fmt_time(span.start_us)),
                    esc(&fmt_time(span.end_us))
                );
            }
            if !a.evidences.is_empty() {
                c.push_str(
                    "<table class=\"evidence\"><thead><tr><th>source</th><th>account</th>\
                     <th>sample request (masked)</th><th>status</th><th>data</th></tr></thead><tbody>",
                );
                for e in a.evidences.iter().take(10) {
                    let req = e.request.as_ref().map_or_else(String::new, |r| {
                        format!(
                            "{} {}{}{}",
                            r.method,
                            r.hostname,
                            r.path,
                            r.query
                                .as_deref()
                                .map_or_else(String::new, |q| format!("?{q}"))
                        )
                    });
                    let data: Vec<String> = e
                        .data
                        .iter()
                        .filter(|(_, v)| !v.is_object() && !v.is_array())
                        .map(|(k, v)| match v {
                            Value::String(s) => format!("{k}={s}"),
                            v => format!("{k}={v}"),
                        })
                        .collect();
                    let _ = write!(
                        c,
                        "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                        esc(e.src_ip.as_deref().unwrap_or("-")),
                        esc(e
                            .user_uid
                            .as_deref()
                            .or(e.user_name.as_deref())
                            .unwrap_or("-")),
                        esc(&req),
                        e.response_code
                            .map_or_else(|| "-".to_owned(), |s| s.to_string()),
                        esc(&data.join(" ")),
                    );
                }
                c.push_str("</tbody></table>");
            }
            c.push_str("</div></li>");
        }
        c.push_str("</ol>");
        html(200, page("Alerts", "Alerts", &c))
    }

    fn data_map(&self) -> Result<Response, apitap_inventory::StoreError> {
        let records = self.lock_store().endpoints(&EndpointFilter {
            min_sensitivity: Some("low".to_owned()),
            limit: Some(apitap_inventory::api::MAX_LIMIT),
            ..EndpointFilter::default()
        })?;
        // label → exposure (client group) → endpoints.
        let mut map: BTreeMap<String, BTreeMap<String, Vec<(String, String)>>> = BTreeMap::new();
        for r in &records {
            let s = r.summary();
            let mut groups = vec![s.exposure.clone()];
            groups.extend(s.partners.iter().map(|p| format!("partner {p}")));
            for d in s.data_labels.iter().filter(|d| {
                serde_json::to_value(d)
                    .ok()
                    .is_some_and(|v| str_of(&v, "direction") == "response")
            }) {
                for g in &groups {
                    let list = map
                        .entry(d.label.label.name().to_owned())
                        .or_default()
                        .entry(g.clone())
                        .or_default();
                    let name = format!("{} {} {}", s.method, s.service, traced_template(&r.key));
                    if !list.iter().any(|(id, _)| id == &s.id) {
                        list.push((s.id.clone(), name));
                    }
                }
            }
        }
        let mut c = String::from(
            "<p class=\"note\">Which endpoints serve which labels (in responses) to which client \
             groups (the inventory's exposure: internal, external, partner).</p>",
        );
        if map.is_empty() {
            c.push_str("<p class=\"empty\">No sensitive data served yet.</p>");
        }
        c.push_str(
            "<table id=\"datamap\"><thead><tr><th>label</th><th>client group</th><th>endpoints</th>\
             </tr></thead><tbody>",
        );
        for (label, groups) in &map {
            for (group, eps) in groups {
                let links: Vec<String> = eps.iter().map(|(id, n)| endpoint_link(id, n)).collect();
                let _ = write!(
                    c,
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(label),
                    esc(group),
                    links.join("<br>")
                );
            }
        }
        c.push_str("</tbody></table>");
        Ok(html(200, page("Sensitive-data map", "Data map", &c)))
    }
}

/// The parameters the inventory learned (names, where, how often, types); example shapes are
/// left out.
fn parameters(rec: &EndpointRecord) -> String {
    let mut rows: Vec<(String, String, u64, String)> = Vec::new();
    let fmt = |f: &apitap_inventory::learn::FieldStats| {
        let mut t = apitap_inventory::shape::type_names(f.types).join(", ");
        if !f.formats.is_empty() {
            let _ = write!(t, " ({})", f.formats.join(", "));
        }
        t
    };
    let d = &rec.data;
    let segments: Vec<&str> = rec
        .key
        .template
        .trim_start_matches('/')
        .split('/')
        .collect();
    for (n, f) in &d.path_params {
        // Keyed by segment index; the template names the parameter there.
        let name = n
            .parse::<usize>()
            .ok()
            .and_then(|i| segments.get(i))
            .map_or_else(|| n.clone(), |s| (*s).to_owned());
        rows.push(("path".into(), name, f.seen, fmt(f)));
    }
    for (n, f) in &d.request.query.fields {
        rows.push(("query".into(), n.clone(), f.seen, fmt(f)));
    }
    for (n, f) in &d.request.headers.fields {
        rows.push(("header".into(), n.clone(), f.seen, fmt(f)));
    }
    for (ct, b) in &d.request.bodies {
        for (n, f) in &b.fields.fields {
            rows.push((format!("body ({ct})"), n.clone(), f.seen, fmt(f)));
        }
    }
    for (status, r) in &d.responses {
        for (ct, b) in &r.bodies {
            for (n, f) in &b.fields.fields {
                rows.push((
                    format!("response {status} ({ct})"),
                    n.clone(),
                    f.seen,
                    fmt(f),
                ));
            }
        }
    }
    if rows.is_empty() {
        return "<p class=\"empty\">No parameter learned.</p>".to_owned();
    }
    let mut s = String::from(
        "<table id=\"params\"><thead><tr><th>in</th><th>name</th><th>seen</th><th>types</th>\
         </tr></thead><tbody>",
    );
    for (place, name, seen, types) in rows.iter().take(500) {
        let _ = write!(
            s,
            "<tr><td>{}</td><td><code>{}</code></td><td class=\"num\">{seen}</td><td>{}</td></tr>",
            esc(place),
            esc(name),
            esc(types)
        );
    }
    s.push_str("</tbody></table>");
    s
}

/// A handler answering [`PREFIX`] from `console` and everything else with `rest`.
pub fn with_console(console: Arc<Console>, rest: Handler) -> Handler {
    Arc::new(move |req: &Request| {
        let p = req.path();
        if p == PREFIX || p.starts_with("/console/") {
            if p == PREFIX {
                return redirect("/console/");
            }
            console.answer(req)
        } else if req.method == "POST" {
            Response::json(405, r#"{"error":"only GET is supported"}"#).with("Allow", "GET, HEAD")
        } else {
            rest(req)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(url_enc("/a/{id} x&y"), "%2Fa%2F%7Bid%7D%20x%26y");
    }

    #[test]
    fn ring_keeps_the_newest_and_counts_evictions() {
        let ring = AlertRing::new(2);
        let key = EndpointKey {
            service: "api".into(),
            method: "GET".into(),
            template: "/a".into(),
            operation: String::new(),
        };
        let mut a = crate::inventory::ocsf::alert(&crate::inventory::record::Change {
            seq: 1,
            at_unix_us: 1,
            endpoint_id: key.id(),
            key,
            kind: "discovered".into(),
            detail: serde_json::json!({}),
        });
        for t in 1..=3 {
            a.time_us = t;
            ring.push(&a);
        }
        let kept: Vec<u64> = ring.newest_first().iter().map(|a| a.time_us).collect();
        assert_eq!(kept, [3, 2]);
        assert_eq!((ring.evicted(), ring.seen()), (1, 3));
    }

    #[test]
    fn traffic_is_bounded_in_hours_and_endpoints() {
        let hour = 3_600_000_000u64;
        let t = Traffic::new(1);
        t.hit("a", 100 * hour);
        t.hit("a", 100 * hour + 5);
        t.hit("a", 101 * hour);
        t.hit("a", 10 * hour); // older than the window: ignored
        t.hit("b", 100 * hour); // over the endpoint cap: counted
        let h = t.hours("a").unwrap();
        assert_eq!(h.len(), SERIES_HOURS);
        assert_eq!(h.last(), Some(&(101, 1)));
        assert_eq!(h[SERIES_HOURS - 2], (100, 2));
        assert_eq!(t.dropped(), 1);
        assert!(t.hours("b").is_none());
        // A jump past the window clears every bucket.
        t.hit("a", 200 * hour);
        let h = t.hours("a").unwrap();
        assert_eq!(h.iter().map(|(_, n)| n).sum::<u32>(), 1);
    }

    #[test]
    fn sessions_expire_and_are_bounded() {
        let s = Sessions {
            ttl: Duration::from_millis(50),
            max: 2,
            live: Mutex::new(Vec::new()),
        };
        let a = s.open().unwrap();
        assert!(s.valid(&a));
        let b = s.open().unwrap();
        let c = s.open().unwrap();
        assert_ne!(a, b);
        assert!(!s.valid(&a), "the oldest session ends at the cap");
        assert!(s.valid(&b) && s.valid(&c));
        s.close(&b);
        assert!(!s.valid(&b));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!s.valid(&c), "expired");
        assert_eq!(unhex32(&hex(&a)), Some(a));
        assert_eq!(unhex32("zz"), None);
    }

    fn console_with(template: &str) -> Console {
        console_of(template, true, None)
    }

    fn console_with_trace(template: &str, trace: Option<TraceReader>) -> Console {
        console_of(template, true, trace)
    }

    /// A console over one endpoint; with `token` it logs in with the unit-test token,
    /// without, mutual TLS alone authenticates.
    fn console_of(template: &str, token: bool, trace: Option<TraceReader>) -> Console {
        use crate::inventory::record::EndpointRecord;
        use crate::inventory::spec::SpecStatus;
        use crate::inventory::store::Store as _;
        let mut store = crate::inventory::store::sqlite::SqliteStore::open_in_memory().unwrap();
        let mut r = EndpointRecord::new(
            EndpointKey {
                service: "api\"><img src=x>".into(),
                method: "GET".into(),
                template: template.into(),
                operation: String::new(),
            },
            SpecStatus::NoSpec,
            5,
        );
        r.data.hits = 3;
        store.transaction(&mut |tx| tx.put(&r)).unwrap();
        let token_secret = {
            use std::os::unix::fs::PermissionsExt as _;
            // One file per call: the tests run in parallel threads of one process.
            static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = std::env::temp_dir()
                .join(format!("apitap-console-unit-{}-{n}", std::process::id()));
            std::fs::write(&p, "a console unit-test token").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            let t = apitap_secret::read_secret_file(&p, 16).unwrap();
            std::fs::remove_file(&p).unwrap();
            t
        };
        let config = ConsoleConfig {
            enabled: true,
            ..ConsoleConfig::default()
        };
        Console::new(
            &config,
            token.then_some(token_secret),
            Arc::new(Mutex::new(Box::new(store))),
            trace,
        )
    }

    fn request(method: &str, target: &str, cookie: Option<&str>, body: &str) -> Request {
        let mut r = Request::new(method, target);
        if let Some(c) = cookie {
            r.headers.push(("cookie".into(), c.as_bytes().to_vec()));
        }
        r.body = body.as_bytes().to_vec();
        r
    }

    fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn pages_need_a_session_from_the_token_and_escape_traffic_names() {
        let c = console_with("/x/<script>alert(1)</script>");
        // No session: the login page.
        let r = c.answer(&request("GET", "/console/", None, ""));
        assert_eq!(
            (r.status, header(&r, "location")),
            (303, Some("/console/login"))
        );
        let r = c.answer(&request("GET", "/console/login", None, ""));
        assert_eq!(r.status, 200);
        assert!(
            header(&r, "content-security-policy")
                .unwrap()
                .starts_with("default-src 'none'")
        );
        // A wrong token: refused, no cookie, the presented text not echoed.
        let r = c.answer(&request(
            "POST",
            "/console/login",
            None,
            "token=guess+me+if+you+can",
        ));
        assert_eq!(r.status, 401);
        assert!(header(&r, "set-cookie").is_none());
        assert!(!String::from_utf8_lossy(&r.body).contains("guess"));
        assert_eq!(c.logins_refused(), 1);
        // The token: a session cookie.
        let r = c.answer(&request(
            "POST",
            "/console/login",
            None,
            "token=a+console+unit-test+token",
        ));
        assert_eq!(r.status, 303, "{}", String::from_utf8_lossy(&r.body));
        let set = header(&r, "set-cookie").unwrap().to_owned();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Secure")
        );
        let cookie = set.split(';').next().unwrap().to_owned();
        // Pages escape what traffic named.
        let r = c.answer(&request("GET", "/console/", Some(&cookie), ""));
        assert_eq!(r.status, 200);
        let page = String::from_utf8(r.body).unwrap();
        assert!(
            page.contains("/x/&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{page}"
        );
        assert!(
            !page.contains("<script>") && !page.contains("<img"),
            "{page}"
        );
        let id = EndpointKey {
            service: "api\"><img src=x>".into(),
            method: "GET".into(),
            template: "/x/<script>alert(1)</script>".into(),
            operation: String::new(),
        }
        .id();
        let r = c.answer(&request(
            "GET",
            &format!("/console/endpoints/{id}"),
            Some(&cookie),
            "",
        ));
        assert_eq!(r.status, 200);
        let page = String::from_utf8(r.body).unwrap();
        assert!(
            !page.contains("<script>") && !page.contains("<img"),
            "{page}"
        );
        assert!(page.contains("api&quot;&gt;&lt;img src=x&gt;"), "{page}");
        // Trace-back takes hashes only; without a store it says so.
        let r = c.answer(&request(
            "GET",
            "/console/trace?ip=10.0.0.1",
            Some(&cookie),
            "",
        ));
        assert!(String::from_utf8_lossy(&r.body).contains("keeps no trace-back store"));
        let mut out = apitap_metrics::Exposition::new();
        c.render(&mut out);
        let text = out.finish();
        apitap_metrics::check_exposition(&text).unwrap();
        assert!(
            text.contains("apitap_console_logins_refused_total 1\n"),
            "{text}"
        );
        assert!(text.contains("apitap_console_sessions 1\n"), "{text}");
        // Logging out ends the session.
        let r = c.answer(&request("POST", "/console/logout", Some(&cookie), ""));
        assert_eq!(r.status, 303);
        assert!(header(&r, "set-cookie").unwrap().contains("Max-Age=0"));
        let r = c.answer(&request("GET", "/console/", Some(&cookie), ""));
        assert_eq!(r.status, 303);
    }

    fn from(ip: &str, mut r: Request) -> Request {
        r.peer = Some(std::net::SocketAddr::new(ip.parse().unwrap(), 40000));
        r
    }

    #[test]
    fn failed_logins_are_throttled_per_address() {
        let c = console_with("/x");
        let guess = |ip| {
            c.answer(&from(
                ip,
                request("POST", "/console/login", None, "token=nope"),
            ))
        };
        for _ in 0..10 {
            assert_eq!(guess("10.0.0.1").status, 401);
        }
        // The 11th attempt this minute is not even read: the right token is refused too.
        let right = "token=a+console+unit-test+token";
        let r = c.answer(&from(
            "10.0.0.1",
            request("POST", "/console/login", None, right),
        ));
        assert_eq!((r.status, header(&r, "retry-after")), (429, Some("60")));
        assert!(header(&r, "set-cookie").is_none());
        assert_eq!(c.logins_refused(), 10);
        // Another address is not affected.
        let r = c.answer(&from(
            "10.0.0.2",
            request("POST", "/console/login", None, right),
        ));
        assert_eq!(r.status, 303);
        let mut out = apitap_metrics::Exposition::new();
        c.render(&mut out);
        let text = out.finish();
        assert!(
            text.contains("apitap_console_logins_throttled_total 1\n"),
            "{text}"
        );
        // The table of addresses is bounded.
        for i in 0..5000u32 {
            c.failed_logins
                .failed(Some(std::net::IpAddr::from(i.to_be_bytes())));
        }
        let w = c.failed_logins.window.lock().unwrap();
        assert!(w.1.len() <= c.failed_logins.max_clients, "{}", w.1.len());
    }

    #[test]
    fn mutual_tls_alone_makes_the_certificate_the_login() {
        let c = console_of("/x", false, None);
        let mut with_cert = request("GET", "/console/", None, "");
        with_cert.client_certificate = Some("analyst-7".into());
        assert_eq!(c.answer(&with_cert).status, 200);
        // No certificate (a listener without mutual TLS): refused, not redirected in a loop.
        let r = c.answer(&request("GET", "/console/", None, ""));
        assert_eq!(r.status, 401);
        // No token form to fill in, and nothing to log out of.
        let r = c.answer(&request("GET", "/console/login", None, ""));
        assert_eq!((r.status, header(&r, "location")), (303, Some("/console/")));
        let mut logout = request("POST", "/console/logout", None, "");
        logout.client_certificate = Some("analyst-7".into());
        let r = c.answer(&logout);
        assert_eq!((r.status, header(&r, "location")), (303, Some("/console/")));
        assert!(header(&r, "set-cookie").is_none());
    }

    #[test]
    fn the_trace_form_bounds_the_time_with_since_and_until() {
        use apitap_trace::{AccessRecord, EndpointRef, Retention, TraceStore};
        let dir = std::env::temp_dir().join(format!("apitap-console-trace-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut store = TraceStore::open(&dir, Retention::default()).unwrap();
        let day = |d: &str| apitap_schema::time::parse_unix_us(d).unwrap();
        let records: Vec<AccessRecord> = ["2026-01-01", "2026-01-02", "2026-01-03"]
            .iter()
            .enumerate()
            .map(|(i, d)| AccessRecord {
                time_us: day(d) + 3_600_000_000,
                event_id: format!("{i:032x}"),
                endpoint: EndpointRef {
                    service: "api".into(),
                    method: "GET".into(),
                    template: "/a".into(),
                },
                status: Some(200),
                client_ip: "10.0.0.1".parse().unwrap(),
                account: None,
                ua_family: "curl".into(),
                ua_key: 1,
                records: 0,
                values: Vec::new(),
            })
            .collect();
        store.append(&records).unwrap();
        let c = console_with_trace("/a", Some(TraceReader::open(&dir).unwrap()));
        let r = c.answer(&request(
            "POST",
            "/console/login",
            None,
            "token=a+console+unit-test+token",
        ));
        let cookie = header(&r, "set-cookie")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let ask = |q: &str| {
            let r = c.answer(&request(
                "GET",
                &format!("/console/trace?{q}"),
                Some(&cookie),
                "",
            ));
            (r.status, String::from_utf8(r.body).unwrap())
        };
        let (status, page) = ask("ip=10.0.0.1");
        assert_eq!(status, 200);
        assert!(page.contains("3 transaction(s)"), "{page}");
        assert!(page.contains("name=\"since\"") && page.contains("name=\"until\""));
        let (status, page) = ask("ip=10.0.0.1&since=2026-01-02&until=2026-01-02T23%3A59%3A59Z");
        assert_eq!(status, 200);
        assert!(page.contains("1 transaction(s)"), "{page}");
        let shown = |d: &str| page.contains(&esc(&fmt_time(day(d) + 3_600_000_000)));
        assert!(shown("2026-01-02") && !shown("2026-01-01") && !shown("2026-01-03"));
        // The typed bounds stay in the form.
        assert!(page.contains("value=\"2026-01-02\""), "{page}");
        let (status, page) = ask("ip=10.0.0.1&since=2026-01-02");
        assert_eq!(status, 200);
        assert!(page.contains("2 transaction(s)"), "{page}");
        let (status, page) = ask("ip=10.0.0.1&since=yesterday");
        assert_eq!(status, 400);
        assert!(page.contains("since is a UTC time"), "{page}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
