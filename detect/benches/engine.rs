//! Detection engine throughput and state size (issue 7 "Performance").
//!
//! A realistic mixed stream with every detection on: benign browser sessions and API clients
//! over many actors and templates (lists, items by id, logins with 10 % typos), plus a
//! credential-stuffing run, a distributed low-and-slow stuffing, an ID sweep, a crawler and
//! OTP guessing. Reports events/s per core (criterion, one thread) and bytes of detection
//! state per active (actor, template) pair — the engine's own accounting of its tables by
//! capacity, sketches, baselines and campaigns, divided by the (actor, template) pairs seen in
//! the last window. Targets: ≥ 200 000 events/s/core, ≤ 1 KiB per pair.
//!
//! `cargo bench -p apitap-detect -- --save-baseline main` saves a baseline;
//! `cargo bench -p apitap-detect -- --baseline main` compares with it, and this bench prints
//! the throughput ratio new/baseline (`APITAP_BENCH_BASELINE` names the baseline; default
//! `main`).
//!
//! `APITAP_BENCH_DUMP=FILE` writes every finding of the stream to FILE (to diff two versions).
//! `APITAP_BENCH_ITERS=N` skips criterion and runs the stream exactly N times (fixed work, for
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*engine::measured*'`, whose
//! instruction counts are stable where wall time on a shared machine is not);
//! `APITAP_BENCH_STREAM=links` makes that the link stream.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code
use std::collections::HashSet;
use std::hint::black_box;
use std::path::PathBuf;

use apitap_detect::{DetectConfig, Engine, EventContext};
use apitap_labels::{FunctionClass, HashKey};
use apitap_schema::ApiEvent;
use apitap_schema::test_support::EventBuilder;
use criterion::{Criterion, Throughput};

const T0: u64 = 1_704_067_200 * 1_000_000;
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";

struct Item {
    ev: ApiEvent,
    template: &'static str,
    function: Option<FunctionClass>,
    records: Option<u32>,
}

#[allow(clippy::too_many_arguments)] // a plain event builder for the synthetic stream
fn event(
    ip: String,
    method: &str,
    path: String,
    headers: Vec<(&str, String)>,
    body: &str,
    status: u16,
    resp: &str,
    t: u64,
) -> ApiEvent {
    event_typed(
        ip,
        method,
        path,
        headers,
        body,
        status,
        "application/json",
        resp,
        t,
    )
}

/// [`event`] with the response's `Content-Type`.
#[allow(clippy::too_many_arguments)] // a plain event builder for the synthetic stream
fn event_typed(
    ip: String,
    method: &str,
    path: String,
    headers: Vec<(&str, String)>,
    body: &str,
    status: u16,
    content_type: &str,
    resp: &str,
    t: u64,
) -> ApiEvent {
    let mut b = EventBuilder::new(method, path)
        .schema_version("1.2")
        .event_id(format!("{t:032x}"))
        .sensor("s", "h")
        .at_us(t)
        .latency_us(2_000)
        .client_ip(ip.parse::<std::net::IpAddr>().expect("ip"))
        .client_port(40_000)
        .server("10.0.0.1:443")
        .host("api.example.com")
        .body_bytes(body)
        .status(status)
        .reason("")
        .response_header("Content-Type", content_type)
        .response_body_bytes(resp);
    for (n, v) in headers {
        b = b.header(n, v);
    }
    b.build()
}

/// A JWT whose `sub` is the actor number.
fn jwt(actor: u64) -> String {
    use base64::Engine as _;
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.c2ln",
        b.encode(r#"{"alg":"HS256"}"#),
        b.encode(format!(r#"{{"sub":"user-{actor}"}}"#))
    )
}

/// xorshift64*.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const TEMPLATES: [(&str, &str, Option<FunctionClass>); 8] = [
    (
        "/api/products/{id}",
        "/api/products/",
        Some(FunctionClass::QueryById),
    ),
    (
        "/api/orders/{id}",
        "/api/orders/",
        Some(FunctionClass::QueryById),
    ),
    (
        "/api/users/{id}/profile",
        "/api/users/",
        Some(FunctionClass::QueryById),
    ),
    (
        "/api/products",
        "/api/products",
        Some(FunctionClass::SearchList),
    ),
    ("/api/cart", "/api/cart", Some(FunctionClass::Other)),
    (
        "/api/reviews/{id}",
        "/api/reviews/",
        Some(FunctionClass::QueryById),
    ),
    (
        "/api/search",
        "/api/search",
        Some(FunctionClass::SearchList),
    ),
    ("/static/app.js", "/static/app.js", None),
];

fn stream(n: usize) -> Vec<Item> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::with_capacity(n);
    let span_us = 600 * 1_000_000u64; // ten minutes of stream time
    for i in 0..n {
        let t = T0 + (i as u64) * span_us / n as u64;
        let kind = rng.below(100);
        let item = if kind < 80 {
            // Benign: 20 000 actors, browser or API client, JWT accounts for half.
            let actor = rng.below(20_000);
            let ip = format!(
                "198.{}.{}.{}",
                51 + actor / 65_536,
                (actor / 256) % 256,
                actor % 256
            );
            let (tpl, prefix, function) = TEMPLATES[rng.below(TEMPLATES.len() as u64) as usize];
            let path = if tpl.contains("{id}") {
                let id = rng.below(100_000);
                if tpl.ends_with("/profile") {
                    format!("{prefix}{id}/profile")
                } else {
                    format!("{prefix}{id}")
                }
            } else {
                prefix.to_owned()
            };
            let mut headers = vec![
                ("Host", "api.example.com".to_owned()),
                ("Accept", "application/json".to_owned()),
            ];
            if actor.is_multiple_of(2) {
                headers.push(("User-Agent", CHROME.to_owned()));
                headers.push(("Referer", "https://shop.example.com/".to_owned()));
                headers.push(("Cookie", format!("SESSIONID=s{actor:012}")));
            } else {
                headers.push(("User-Agent", "okhttp/4.12.0".to_owned()));
                headers.push(("Authorization", format!("Bearer {}", jwt(actor))));
            }
            let status = if rng.below(50) == 0 { 404 } else { 200 };
            let records = if function == Some(FunctionClass::SearchList) {
                20
            } else {
                1
            };
            Item {
                ev: event(
                    ip,
                    "GET",
                    path,
                    headers,
                    "",
                    status,
                    "{\"id\":1,\"name\":\"x\"}",
                    t,
                ),
                template: tpl,
                function,
                records: Some(records),
            }
        } else if kind < 88 {
            // Benign logins, 10 % failures.
            let actor = rng.below(5_000);
            let ok = rng.below(10) != 0;
            let body = format!("{{\"username\":\"user{actor}@example.com\",\"password\":\"x\"}}");
            let resp = if ok {
                "{\"access_token\":\"eyJ\"}"
            } else {
                "{\"error\":\"invalid credentials\"}"
            };
            let ip = format!("198.51.{}.{}", actor / 256 % 256, actor % 256);
            let headers = vec![
                ("Host", "api.example.com".to_owned()),
                ("User-Agent", CHROME.to_owned()),
            ];
            Item {
                ev: event(
                    ip,
                    "POST",
                    "/api/login".into(),
                    headers,
                    &body,
                    if ok { 200 } else { 401 },
                    resp,
                    t,
                ),
                template: "/api/login",
                function: Some(FunctionClass::Login),
                records: None,
            }
        } else if kind < 92 {
            // Credential stuffing from one source.
            let body = format!("{{\"username\":\"victim{i}@example.com\",\"password\":\"p{i}\"}}");
            let headers = vec![
                ("Host", "api.example.com".to_owned()),
                ("User-Agent", "Fuzz Faster U Fool v2.1.0".to_owned()),
            ];
            Item {
                ev: event(
                    "203.0.113.7".into(),
                    "POST",
                    "/api/login".into(),
                    headers,
                    &body,
                    401,
                    "{\"error\":\"invalid\"}",
                    t,
                ),
                template: "/api/login",
                function: Some(FunctionClass::Login),
                records: None,
            }
        } else if kind < 94 {
            // Distributed stuffing: 2 000 sources.
            let src = rng.below(2_000);
            let body = format!("{{\"username\":\"d{i}\",\"password\":\"p\"}}");
            let headers = vec![
                ("Host", "api.example.com".to_owned()),
                ("User-Agent", "python-requests/2.31".to_owned()),
            ];
            Item {
                ev: event(
                    format!("203.0.{}.{}", src / 250, src % 250 + 1),
                    "POST",
                    "/api/login".into(),
                    headers,
                    &body,
                    401,
                    "{}",
                    t,
                ),
                template: "/api/login",
                function: Some(FunctionClass::Login),
                records: None,
            }
        } else if kind < 97 {
            // ID sweep.
            let headers = vec![
                ("Host", "api.example.com".to_owned()),
                ("User-Agent", "Wfuzz/3.1.0".to_owned()),
            ];
            let status = if i % 4 == 0 { 200 } else { 404 };
            Item {
                ev: event(
                    "203.0.113.9".into(),
                    "GET",
                    format!("/api/users/{i}/profile"),
                    headers,
                    "",
                    status,
                    "{}",
                    t,
                ),
                template: "/api/users/{id}/profile",
                function: Some(FunctionClass::QueryById),
                records: Some(1),
            }
        } else if kind < 99 {
            // Crawler.
            let (tpl, prefix, function) = TEMPLATES[i % TEMPLATES.len()];
            let path = if tpl.contains("{id}") {
                format!("{prefix}{i}")
            } else {
                prefix.to_owned()
            };
            let headers = vec![
                ("Host", "api.example.com".to_owned()),
                ("User-Agent", "Wget/1.21.3".to_owned()),
            ];
            Item {
                ev: event("192.0.2.77".into(), "GET", path, headers, "", 200, "{}", t),
                template: tpl,
                function,
                records: Some(5),
            }
        } else {
            // OTP guessing.
            let body = format!(
                "{{\"mobile\":\"13812345678\",\"smsCode\":\"{:06}\"}}",
                i % 1_000_000
            );
            let headers = vec![("Host", "api.example.com".to_owned())];
            Item {
                ev: event(
                    "203.0.113.30".into(),
                    "POST",
                    "/api/sms/verify".into(),
                    headers,
                    &body,
                    200,
                    "{\"success\":false}",
                    t,
                ),
                template: "/api/sms/verify",
                function: Some(FunctionClass::SmsVerify),
                records: None,
            }
        };
        out.push(item);
    }
    out
}

/// A stream whose responses carry links (the crawling detector's link scan): browser users
/// reading HTML pages of 40 links and 6 assets (~4 KiB) with the assets fetched, API clients
/// given HAL-style JSON with `href`s, and a wget-style crawler following the links, over ten
/// minutes of stream time.
fn link_stream(n: usize) -> Vec<Item> {
    let mut rng = Rng(0x5DEE_CE66_D1CE_4E5B);
    let mut out = Vec::with_capacity(n);
    let span_us = 600 * 1_000_000u64;
    let page = |p: u64| -> String {
        let mut s = String::from(
            "<!doctype html><html><head><title>Shop</title>\
             <link rel=\"stylesheet\" href=\"/static/site.css\">\
             <script src=\"/static/app.js\"></script></head><body><nav>",
        );
        for k in 0..40 {
            s.push_str(&format!(
                "<a class=\"item\" href=\"/shop/p/{}\">Product {k}</a>\n",
                (p * 31 + k * 7) % 5_000
            ));
        }
        s.push_str(
            "<img src=\"/static/logo.png\"><img src=\"../img/banner.jpg\"></nav></body></html>",
        );
        s
    };
    for i in 0..n {
        let t = T0 + (i as u64) * span_us / n as u64;
        let kind = rng.below(100);
        let item = if kind < 60 {
            // Browser users: a page, then its assets.
            let actor = rng.below(5_000);
            let ip = format!("198.51.{}.{}", actor / 256 % 256, actor % 256);
            let headers = vec![
                ("Host", "api.example.com".to_owned()),
                ("User-Agent", CHROME.to_owned()),
                ("Referer", "https://api.example.com/".to_owned()),
                ("Cookie", format!("SESSIONID=s{actor:012}")),
            ];
            if rng.below(4) == 0 {
                let p = rng.below(5_000);
                Item {
                    ev: event_typed(
                        ip,
                        "GET",
                        format!("/shop/p/{p}"),
                        headers,
                        "",
                        200,
                        "text/html; charset=utf-8",
                        &page(p),
                        t,
                    ),
                    template: "/shop/p/{id}",
                    function: None,
                    records: None,
                }
            } else {
                let asset = ["/static/site.css", "/static/app.js", "/static/logo.png"]
                    [rng.below(3) as usize];
                Item {
                    ev: event_typed(
                        ip,
                        "GET",
                        asset.to_owned(),
                        headers,
                        "",
                        200,
                        "text/css",
                        "body{margin:0}",
                        t,
                    ),
                    template: "/static/asset",
                    function: None,
                    records: None,
                }
            }
        } else if kind < 95 {
            // API clients given HAL links.
            let actor = rng.below(5_000);
            let ip = format!("198.52.{}.{}", actor / 256 % 256, actor % 256);
            let o = rng.below(100_000);
            let resp = format!(
                "{{\"id\":{o},\"status\":\"shipped\",\"_links\":{{\"self\":{{\"href\":\"/api/orders/{o}\"}},\
                 \"items\":{{\"href\":\"/api/orders/{o}/items\"}},\"customer\":{{\"href\":\"https://api.example.com/api/customers/{}\"}}}}}}",
                o % 977
            );
            let headers = vec![
                ("Host", "api.example.com".to_owned()),
                ("User-Agent", "okhttp/4.12.0".to_owned()),
                ("Authorization", format!("Bearer {}", jwt(actor))),
            ];
            Item {
                ev: event(
                    ip,
                    "GET",
                    format!("/api/orders/{o}"),
                    headers,
                    "",
                    200,
                    &resp,
                    t,
                ),
                template: "/api/orders/{id}",
                function: Some(FunctionClass::QueryById),
                records: Some(1),
            }
        } else {
            // A mirroring crawler following the pages' links.
            let p = (i as u64 * 7) % 5_000;
            let headers = vec![
                ("Host", "api.example.com".to_owned()),
                ("User-Agent", "Wget/1.21.3".to_owned()),
                ("Referer", "http://api.example.com/".to_owned()),
            ];
            Item {
                ev: event_typed(
                    "192.0.2.77".into(),
                    "GET",
                    format!("/shop/p/{p}"),
                    headers,
                    "",
                    200,
                    "text/html; charset=utf-8",
                    &page(p),
                    t,
                ),
                template: "/shop/p/{id}",
                function: None,
                records: None,
            }
        };
        out.push(item);
    }
    out
}

/// The measured work: the stream through a fresh engine, and dropping it (never inlined: the
/// callgrind toggle names it).
#[inline(never)]
fn measured(mut engine: Engine, items: &[Item]) -> usize {
    run(&mut engine, items)
}

fn run(engine: &mut Engine, items: &[Item]) -> usize {
    let mut findings = 0;
    let mut next_tick = items.first().map_or(0, |i| i.ev.request_start_unix_us);
    for it in items {
        let t = it.ev.request_start_unix_us;
        if t >= next_tick {
            findings += engine.tick(t).len();
            next_tick = t + 1_000_000;
        }
        engine.observe(
            &it.ev,
            &EventContext {
                template: Some(it.template),
                function: it.function,
                sensitive_records: it.records,
                ..EventContext::default()
            },
        );
    }
    findings + engine.finish().len()
}

fn engine() -> Engine {
    Engine::with_hash_key(DetectConfig::default(), &HashKey::from_secret(b"bench")).expect("engine")
}

/// Prints the campaigns and state of `items` through one engine; `dump`: write every
/// finding to `APITAP_BENCH_DUMP`.
fn state_report(items: &[Item], dump: bool) {
    let mut e = engine();
    let mut all = Vec::new();
    let mut next_tick = 0;
    for it in items {
        let t = it.ev.request_start_unix_us;
        if t >= next_tick {
            all.extend(e.tick(t));
            next_tick = t + 1_000_000;
        }
        e.observe(
            &it.ev,
            &EventContext {
                template: Some(it.template),
                function: it.function,
                sensitive_records: it.records,
                ..EventContext::default()
            },
        );
    }
    let end = e.now_us();
    let bytes_before_finish = e.state_bytes();
    let mut kinds: Vec<String> = Vec::new();
    all.extend(e.finish());
    if let Some(path) = std::env::var_os("APITAP_BENCH_DUMP").filter(|_| dump) {
        // Every finding in full, to compare two versions of the engine on this stream.
        let text: String = all.iter().map(|f| format!("{f:?}\n")).collect();
        std::fs::write(&path, text).expect("write APITAP_BENCH_DUMP");
    }
    for f in all {
        if f.activity == apitap_detect::Activity::Create {
            kinds.push(format!(
                "{}:{}:{}",
                f.detector.name(),
                f.kind,
                f.actor.first().map_or("", |k| k.value.as_str())
            ));
        }
    }
    kinds.sort();
    println!("campaigns: {kinds:?}");
    let window = 60 * 1_000_000;
    let pairs: HashSet<(std::net::IpAddr, &str)> = items
        .iter()
        .filter(|i| i.ev.request_start_unix_us + window >= end)
        .map(|i| (i.ev.client.ip, i.template))
        .collect();
    let bytes = bytes_before_finish;
    let per_pair = bytes as f64 / pairs.len().max(1) as f64;
    println!(
        "state: {bytes} bytes for {} active (actor, template) pairs in the last 60 s = {per_pair:.0} bytes/pair (target ≤ 1024); tables {:?}",
        pairs.len(),
        e.table_sizes()
    );
    let m = e.metrics();
    println!(
        "findings: created {} updated {} closed {}; evicted {:?}",
        m.findings_created, m.findings_updated, m.findings_closed, m.evicted
    );
}

fn criterion_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from("../target"), PathBuf::from);
    target
        .join("criterion")
        .join("detect_engine")
        .join("mixed_stream")
}

fn mean_ns(dir: &std::path::Path) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join("estimates.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn main() {
    const N: usize = 200_000;
    let items = stream(N);
    state_report(&items, true);
    if let Some(iters) = std::env::var("APITAP_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        // `APITAP_BENCH_STREAM=links`: the link stream instead of the mixed one.
        let links = std::env::var("APITAP_BENCH_STREAM").is_ok_and(|v| v == "links");
        let fixed = if links { link_stream(50_000) } else { items };
        let mut findings = 0;
        for _ in 0..iters {
            findings += black_box(measured(engine(), &fixed));
        }
        println!(
            "fixed mode: {iters} × {} events, {findings} findings",
            fixed.len()
        );
        return;
    }
    let mut c = Criterion::default().configure_from_args().sample_size(10);
    let mut g = c.benchmark_group("detect_engine");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("mixed_stream", |b| {
        b.iter_batched(
            engine,
            |e| black_box(measured(e, &items)),
            criterion::BatchSize::LargeInput,
        )
    });
    const LINKS_N: usize = 50_000;
    let links = link_stream(LINKS_N);
    print!("link_stream ");
    state_report(&links, false);
    g.throughput(Throughput::Elements(LINKS_N as u64));
    g.bench_function("link_stream", |b| {
        b.iter_batched(
            engine,
            |e| black_box(measured(e, &links)),
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
    c.final_summary();
    let links_dir = criterion_dir().with_file_name("link_stream");
    if let Some(new) = mean_ns(&links_dir.join("new")) {
        println!(
            "link_stream: {:.0} events/s/core ({:.0} ns/event)",
            LINKS_N as f64 / (new / 1e9),
            new / LINKS_N as f64
        );
    }
    let dir = criterion_dir();
    if let Some(new) = mean_ns(&dir.join("new")) {
        println!(
            "throughput: {:.0} events/s/core (target ≥ 200000)",
            N as f64 / (new / 1e9)
        );
        let base = std::env::var("APITAP_BENCH_BASELINE").unwrap_or_else(|_| "main".into());
        if let Some(old) = mean_ns(&dir.join(&base)) {
            println!(
                "ratio vs baseline `{base}`: {:.3} (new/baseline throughput)",
                old / new
            );
        } else {
            println!("no baseline `{base}` saved (run with -- --save-baseline {base})");
        }
    }
}
