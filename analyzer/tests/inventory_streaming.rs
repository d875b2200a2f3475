//! Streaming discovery at volume (issue 5, R-INV-1): a million requests over 100 000
//! distinct identifiers must not explode the endpoint count, and identifiers must be
//! templated after very few distinct values (integers and UUIDs ≤ 2, opaque tokens ≤ 5).
//! One route takes letters-only slugs (`/merchants/bakoditu…`), which Akto's rule never
//! templates.
//! Synthetic events; the Akto baseline runs on the same traffic.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use apitap_analyzer::inventory::{Inventory, InventoryConfig};
use common::akto::Akto;
use common::evaluate;
use common::events::Ev;

/// (method, truth template, concrete path for id `i`, response body).
type Route = (&'static str, &'static str, fn(u64) -> String, &'static str);

fn uuid(i: u64) -> String {
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        (h >> 32) as u32,
        (h >> 16) as u16,
        (h & 0xfff) as u16,
        ((h >> 12) & 0xfff) as u16,
        i & 0xffff_ffff_ffff
    )
}

fn token(i: u64) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut h = i.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
    let mut s = String::new();
    for k in 0..16 {
        s.push(A[(h % 62) as usize] as char);
        h = h.rotate_left(7) ^ (k + 1);
    }
    s.push_str(&format!("{}", i % 97));
    s
}

fn routes() -> Vec<Route> {
    vec![
        (
            "GET",
            "/api/v1/users/{id}",
            |i| format!("/api/v1/users/{i}"),
            r#"{"id":1,"name":"x","email":"e"}"#,
        ),
        (
            "DELETE",
            "/api/v1/users/{id}",
            |i| format!("/api/v1/users/{i}"),
            r#"{"deleted":true}"#,
        ),
        (
            "GET",
            "/api/v1/users/{id}/accounts",
            |i| format!("/api/v1/users/{i}/accounts"),
            r#"[{"iban":"x","balance":1}]"#,
        ),
        (
            "GET",
            "/api/v1/users/me",
            |_| "/api/v1/users/me".into(),
            r#"{"id":1,"name":"x","roles":[]}"#,
        ),
        (
            "POST",
            "/api/v1/users/login",
            |_| "/api/v1/users/login".into(),
            r#"{"token":"t"}"#,
        ),
        (
            "GET",
            "/api/v1/accounts/{id}",
            |i| format!("/api/v1/accounts/{}", uuid(i)),
            r#"{"iban":"x","balance":1,"currency":"EUR"}"#,
        ),
        (
            "POST",
            "/api/v1/accounts/{id}/transfers",
            |i| format!("/api/v1/accounts/{}/transfers", uuid(i)),
            r#"{"transfer_id":"x","status":"ok"}"#,
        ),
        (
            "GET",
            "/api/v1/accounts/{id}/transactions/{n}",
            |i| format!("/api/v1/accounts/{}/transactions/{}", uuid(i / 7), i % 1000),
            r#"{"amount":1,"at":"t"}"#,
        ),
        (
            "GET",
            "/api/v1/files/{token}",
            |i| format!("/api/v1/files/{}", token(i)),
            r#"{"name":"f","size":1}"#,
        ),
        (
            "GET",
            "/api/v1/orders/{oid}",
            |i| format!("/api/v1/orders/{:024x}", i.wrapping_mul(0x1000_0000_01b3)),
            r#"{"order":1,"lines":[]}"#,
        ),
        (
            "GET",
            "/api/v1/customers/{cid}",
            |i| format!("/api/v1/customers/cus_{}", token(i + 7).to_lowercase()),
            r#"{"customer":"c","tier":"gold"}"#,
        ),
        (
            "GET",
            "/api/v1/health",
            |_| "/api/v1/health".into(),
            r#"{"status":"up"}"#,
        ),
        (
            "GET",
            "/api/v1/config",
            |_| "/api/v1/config".into(),
            r#"{"features":{}}"#,
        ),
        (
            "GET",
            "/api/v2/users/{id}",
            |i| format!("/api/v2/users/{i}"),
            r#"{"id":1,"profile":{}}"#,
        ),
        (
            "GET",
            "/api/v1/merchants/{slug}",
            |i| format!("/api/v1/merchants/{}", slug(i)),
            r#"{"merchant":"m","mcc":5411}"#,
        ),
    ]
}

/// A pronounceable letters-only slug (`bakoditu`): a word to Akto, a value to apitap once
/// enough of them behave alike.
fn slug(i: u64) -> String {
    const SYL: [&str; 16] = [
        "ba", "ko", "di", "tu", "me", "ra", "sol", "vin", "pe", "lu", "ga", "nor", "fi", "ze",
        "mo", "ta",
    ];
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
    let mut s = String::new();
    for _ in 0..5 {
        s.push_str(SYL[(x & 15) as usize]);
        x >>= 4;
    }
    s
}

/// xorshift: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn a_million_requests_over_100k_ids_stay_within_1_1x_truth() {
    // The full size in release builds (`cargo test --release`); a debug build runs a fifth
    // of it with the same ids-per-request ratio, unless APITAP_STREAMING_FULL=1.
    let full = !cfg!(debug_assertions) || std::env::var("APITAP_STREAMING_FULL").is_ok();
    let (requests, ids) = if full {
        (1_000_000u64, 100_000u64)
    } else {
        (200_000, 20_000)
    };
    let routes = routes();
    let mut evs: Vec<Ev> = routes
        .iter()
        .map(|(m, _, _, body)| Ev::new(m, "/").json(200, body))
        .collect();
    let mut inv = Inventory::new(InventoryConfig::default()).unwrap();
    let mut akto = Akto::new();
    let mut sample = Vec::new();
    let mut rng = Rng(0x5eed);
    let mut ours_time = std::time::Duration::ZERO;
    let mut akto_time = std::time::Duration::ZERO;
    for n in 0..requests {
        let r = (rng.next() % routes.len() as u64) as usize;
        let id = rng.next() % ids;
        let path = (routes[r].2)(id);
        let ev = &mut evs[r];
        ev.e.request.path = path;
        ev.e.request_start_unix_us = 1_700_000_000_000_000 + n;
        let t = std::time::Instant::now();
        inv.observe(&ev.e);
        ours_time += t.elapsed();
        let t = std::time::Instant::now();
        akto.observe(routes[r].0, &ev.e.request.path);
        akto_time += t.elapsed();
        if n % 50 == 0 {
            sample.push((routes[r].0.to_owned(), ev.e.request.path.clone()));
        }
    }
    let truth: Vec<(String, String)> = routes
        .iter()
        .map(|(m, t, _, _)| ((*m).to_owned(), (*t).to_owned()))
        .collect();
    let discovered: Vec<(String, String)> = inv
        .endpoint_keys()
        .into_iter()
        .map(|k| (k.method, k.template))
        .collect();
    let ours = evaluate(&discovered, &truth, &sample);
    let baseline = evaluate(&akto.endpoints(), &truth, &sample);
    println!(
        "{requests} requests, {ids} ids; apitap (discovery + shape) {ours_time:?}, akto rule \
         {akto_time:?}: apitap {} endpoints, akto {} endpoints, truth {}",
        discovered.len(),
        akto.endpoints().len(),
        truth.len()
    );
    println!("apitap: {ours}");
    println!(
        "  false positives {:?} missed {:?}",
        ours.false_positives, ours.missed
    );
    println!("akto baseline: {baseline}");
    println!("templating counters: {:?}", inv.tree_counters());
    assert!(
        discovered.len() as f64 <= 1.1 * truth.len() as f64,
        "{} endpoints for {} true ones: {discovered:?}",
        discovered.len(),
        truth.len()
    );
    assert_eq!(inv.counters.overflow_events, 0);
    assert!(ours.f1 >= 0.97, "{ours:?}");
    assert_eq!(ours.over_merges, 0, "{ours:?}");
    // Slugs are words to Akto: it never templates them.
    assert!(ours.f1 > baseline.f1, "{ours} vs {baseline}");
}

/// Attacker-chosen paths and methods (issue 22): overlong segments never become literal node
/// labels, and invented methods share one overflow endpoint, so memory stays bounded by the
/// configured caps whatever the input.
#[test]
fn hostile_segments_and_methods_stay_bounded() {
    let mut inv = Inventory::new(InventoryConfig::default()).unwrap();
    let mut rng = Rng(0x0bad);
    // Answered 200 (a catch-all handler): served, so the caps are what bounds memory. The
    // same flood answered 404 is all probes (below).
    let mut ev = Ev::new("GET", "/").json(200, r#"{"error":"not found"}"#);
    for n in 0..12_000u64 {
        let len = 129 + (rng.next() % 500) as usize;
        let junk: String = (0..len)
            .map(|i| char::from(b'a' + ((n as usize * 7 + i * 13) % 26) as u8))
            .collect();
        ev.e.request.path = format!("/api/{junk}/x");
        ev.e.request.method = format!("M{:X}", rng.next() % 100_000);
        ev.e.request_start_unix_us = 1_700_000_000_000_000 + n;
        inv.observe(&ev.e);
    }
    let keys = inv.endpoint_keys();
    let longest = keys.iter().map(|k| k.template.len()).max().unwrap_or(0);
    assert!(
        longest <= 64,
        "no overlong literal in a template: {longest} bytes"
    );
    let methods: std::collections::BTreeSet<&str> =
        keys.iter().map(|k| k.method.as_str()).collect();
    assert!(keys.len() <= 5_000 + 10, "{} endpoints", keys.len());
    assert!(
        inv.counters.overflow_events > 0,
        "the endpoint cap was reached"
    );
    let overflow = keys.iter().filter(|k| k.template == "/{overflow}").count();
    assert!(overflow <= 10, "{overflow} overflow endpoints");
    assert!(
        keys.iter()
            .filter(|k| k.template == "/{overflow}")
            .all(|k| k.method == "OTHER"),
        "{methods:?}"
    );

    // Random paths answered 404 (issue 15): probes, counted, no endpoint and no tree node.
    let mut inv = Inventory::new(InventoryConfig::default()).unwrap();
    let mut ev = Ev::new("GET", "/").json(404, r#"{"error":"not found"}"#);
    for n in 0..5_000u64 {
        ev.e.request.path = format!("/api/p{:x}/x{}", rng.next(), n % 7);
        ev.e.request_start_unix_us = 1_700_000_000_000_000 + n;
        inv.observe(&ev.e);
    }
    assert!(inv.endpoint_keys().is_empty(), "{:?}", inv.endpoint_keys());
    assert_eq!(inv.counters.probe_events, 5_000);
    assert_eq!(inv.counters.probe_unrouted_events, 5_000);
}

/// Distinct values of `path_of` needed before discovery reports a single templated endpoint.
fn values_until_templated(path_of: impl Fn(u64) -> String) -> u64 {
    let mut inv = Inventory::new(InventoryConfig::default()).unwrap();
    for i in 1..=20 {
        inv.observe(&Ev::new("GET", &path_of(i)).e);
        let keys = inv.endpoint_keys();
        if keys.len() == 1 && keys[0].template.contains('{') {
            return i;
        }
    }
    u64::MAX
}

#[test]
fn identifiers_are_templated_after_few_values() {
    let int = values_until_templated(|i| format!("/items/{}", i * 7919));
    let uuid_n = values_until_templated(|i| format!("/items/{}", uuid(i)));
    let hex = values_until_templated(|i| {
        format!("/blobs/{:032x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    });
    let opaque = values_until_templated(|i| format!("/files/{}", token(i)));
    let alnum = values_until_templated(|i| format!("/codes/a{i}b{}", i * 3));
    let words = values_until_templated(|i| {
        format!(
            "/users/{}/profile",
            [
                "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"
            ][i as usize % 8]
        )
    });
    println!(
        "distinct values before templating: integer {int}, uuid {uuid_n}, hex {hex}, opaque token {opaque}, \
         alnum {alnum}, word {words}"
    );
    assert!(int <= 2 && uuid_n <= 2 && hex <= 2, "{int} {uuid_n} {hex}");
    assert!(opaque <= 5 && alnum <= 5, "{opaque} {alnum}");
    assert!(words <= 8, "{words}");
}

/// Issue 22: the service cap is not first come, first served. A flood of invented `Host`
/// headers fills the service table; once those services are stored and idle for the
/// discovery grace period, a real service deployed after the flood takes the slot of one of
/// them instead of being lumped into the overflow service. Services with real traffic and
/// services whose learning is not yet stored are never evicted.
#[test]
fn a_host_flood_does_not_blind_the_inventory_to_later_services() {
    use apitap_analyzer::inventory::store;
    const T0: u64 = 1_700_000_000_000_000;
    let cfg = InventoryConfig {
        max_services: 50,
        ..InventoryConfig::default()
    };
    let grace_us = cfg.discovery_grace_secs * 1_000_000;
    let mut inv = Inventory::new(cfg).unwrap();
    let mut store = store::open("sqlite::memory:").unwrap();
    let mut ev = Ev::new("GET", "/api/orders").json(200, r#"{"ok":true}"#);
    let at = |ev: &mut Ev, host: &str, t: u64| {
        ev.e.request.host = Some(host.to_owned());
        ev.e.request_start_unix_us = t;
    };
    // A real service first, then 2,000 invented hosts seen once each.
    for i in 0..20 {
        at(&mut ev, "orders.example", T0 + i);
        inv.observe(&ev.e);
    }
    for i in 0..2_000u64 {
        at(&mut ev, &format!("h{i:x}.junk.example"), T0 + 100 + i);
        inv.observe(&ev.e);
    }
    assert!(inv.counters.overflow_service_events > 1_900);
    // Not yet stored: a newcomer goes to the overflow service, nothing learned is dropped.
    at(&mut ev, "early.example", T0 + 5_000);
    inv.observe(&ev.e);
    assert_eq!(inv.counters.services_evicted, 0);
    inv.flush(store.as_mut()).unwrap();
    // After the flood, stored and idle past the grace period: a new service gets a slot.
    let later = T0 + 3 * grace_us;
    for i in 0..5 {
        at(&mut ev, "payments.example", later + i);
        inv.observe(&ev.e);
    }
    let services: std::collections::BTreeSet<String> =
        inv.endpoint_keys().into_iter().map(|k| k.service).collect();
    assert!(services.contains("payments.example"), "{services:?}");
    assert!(services.contains("orders.example"), "real traffic kept");
    assert_eq!(inv.counters.services_evicted, 1);
    assert!(services.len() <= 50 + 1, "{} services", services.len());
}

/// Issue 22: one memory budget over the whole inventory. A flood of invented hosts, each
/// with varied paths, parameters, JSON bodies and latencies (so every state learns shapes
/// and histograms), runs beside a real API that keeps being called. With a 1 MiB budget the
/// estimate stays within it at every check, least recently used shapes are shed and whole
/// junk services evicted (counted), and the real API keeps its endpoints and shapes; the
/// same flood without the budget grows far past it.
#[test]
fn one_memory_budget_bounds_a_flood_and_keeps_what_is_used() {
    const T0: u64 = 1_700_000_000_000_000;
    const BUDGET: u64 = 1 << 20;
    let run = |budget: u64, events: u64| {
        let cfg = InventoryConfig {
            max_memory_bytes: budget,
            ..InventoryConfig::default()
        };
        let mut inv = Inventory::new(cfg).unwrap();
        let mut rng = Rng(0x5eed);
        let mut peak = 0usize;
        for n in 0..events {
            let t = T0 + n * 1_000;
            let e = if n % 4 == 0 {
                // The real API: two templated endpoints, called all the time.
                let id = rng.next() % 10_000;
                let mut ev = if n % 8 == 0 {
                    Ev::new("GET", &format!("/api/v1/users/{id}"))
                        .json(200, r#"{"id":1,"name":"n","email":"a@b.example"}"#)
                } else {
                    Ev::new("POST", &format!("/api/v1/users/{id}/orders"))
                        .body(r#"{"sku":"A-1","qty":2}"#)
                        .json(201, r#"{"order":7}"#)
                };
                ev.e.request.host = Some("shop.example".into());
                ev.e
            } else {
                let r = rng.next();
                let params: Vec<String> =
                    (0..8).map(|i| format!("q{}={i}", (r >> i) % 97)).collect();
                let body: Vec<String> = (0..12)
                    .map(|i| format!("\"f{}\":\"{}\"", (r >> (i + 3)) % 211, "x".repeat(i)))
                    .collect();
                let mut ev = Ev::new("POST", &format!("/p{}/{}", r % 40, (r >> 8) % 40))
                    .query(&params.join("&"))
                    .body(&format!("{{{}}}", body.join(",")))
                    .json(200, &format!("{{{}}}", body.join(",")));
                ev.e.request.host = Some(format!("h{}.junk.example", r % 1000));
                ev.e.latency_us = Some(r % 1_000_000);
                ev.e
            };
            let mut e = e;
            e.request_start_unix_us = t;
            inv.observe(&e);
            if n % 16 == 0 {
                peak = peak.max(inv.memory_bytes());
            }
        }
        (inv, peak)
    };
    let (unbounded, unbounded_peak) = run(256 << 20, 15_000);
    assert!(
        unbounded.memory_bytes() > 2 * BUDGET as usize,
        "the flood needs more than the budget: {} bytes",
        unbounded.memory_bytes()
    );
    assert_eq!(unbounded.memory_counters.shed_endpoints, 0);
    let (inv, peak) = run(BUDGET, 40_000);
    let m = inv.memory_counters;
    println!(
        "unbounded {unbounded_peak} bytes; budget {BUDGET}: peak {peak}, now {}, {m:?}",
        inv.memory_bytes()
    );
    // Checked every 64 events near the budget: between two checks the flood adds at most
    // 64 new services' worth (a few KiB each), a quarter of this small budget.
    assert!(peak as u64 <= BUDGET + BUDGET / 4, "peak {peak}");
    assert!(m.shed_endpoints > 0 && m.evicted_services > 0, "{m:?}");
    assert!(
        m.lost_events > 0,
        "no store: evicted learning is counted: {m:?}"
    );
    // The real API is still there, templated, with its shapes.
    let keys: Vec<String> = inv
        .endpoint_keys()
        .into_iter()
        .filter(|k| k.service == "shop.example")
        .map(|k| format!("{} {}", k.method, k.template))
        .collect();
    assert_eq!(
        keys,
        [
            "GET /api/v1/users/{user_id}",
            "POST /api/v1/users/{user_id}/orders"
        ],
        "{keys:?}"
    );
}

/// The estimate is not wildly off: for the states learned from the recorded httpbin traffic
/// it is at least the size of the same data serialised as JSON, and at most a few times it.
#[test]
fn memory_estimates_track_the_learned_data() {
    use apitap_analyzer::inventory::store;
    let mut inv = Inventory::new(InventoryConfig::default()).unwrap();
    for e in common::httpbin_events() {
        inv.observe(&e);
    }
    let estimate = inv.memory_bytes();
    let mut st = store::open("sqlite::memory:").unwrap();
    inv.flush(st.as_mut()).unwrap();
    let json: usize = st
        .endpoints(&Default::default())
        .unwrap()
        .iter()
        .map(|r| serde_json::to_vec(&r.data).unwrap().len())
        .sum();
    println!("estimate {estimate} bytes, learned data as JSON {json} bytes");
    assert!(
        estimate >= json && estimate <= 8 * json,
        "{estimate} vs {json}"
    );
    // After the flush the deltas are empty and the account says so.
    assert!(inv.memory_bytes() < estimate / 2, "{}", inv.memory_bytes());
}

/// With a store, pressure is relieved by flushing early (what `run` and `process` do at
/// three quarters of the budget): the same kind of flood loses no request's learning and
/// every request is counted in the store.
#[test]
fn with_a_store_the_budget_flushes_instead_of_losing() {
    use apitap_analyzer::inventory::store;
    const T0: u64 = 1_700_000_000_000_000;
    let cfg = InventoryConfig {
        max_memory_bytes: 2 << 20,
        discovery_grace_secs: 0,
        ..InventoryConfig::default()
    };
    let mut inv = Inventory::new(cfg).unwrap();
    let mut st = store::open("sqlite::memory:").unwrap();
    let mut rng = Rng(0xfeed);
    let mut early_flushes = 0;
    let n_events = 12_000u64;
    for n in 0..n_events {
        let r = rng.next();
        let body: Vec<String> = (0..10)
            .map(|i| format!("\"k{}\":\"{}\"", (r >> i) % 101, "v".repeat(i)))
            .collect();
        let mut ev = Ev::new("POST", &format!("/p{}", r % 30))
            .query(&format!("a{}=1&b{}=2", r % 53, r % 59))
            .body(&format!("{{{}}}", body.join(",")))
            .json(200, r#"{"ok":true}"#);
        ev.e.request.host = Some(format!("h{}.example", r % 300));
        ev.e.latency_us = Some(r % 100_000);
        ev.e.request_start_unix_us = T0 + n * 1_000;
        inv.observe(&ev.e);
        if n % 1024 == 0 && inv.memory_pressure() {
            inv.flush(st.as_mut()).unwrap();
            early_flushes += 1;
        }
    }
    inv.flush(st.as_mut()).unwrap();
    let m = inv.memory_counters;
    let stored: u64 = st
        .endpoints(&Default::default())
        .unwrap()
        .iter()
        .map(|r| r.data.hits)
        .sum();
    println!("{early_flushes} early flushes, {m:?}, {stored} hits stored");
    assert!(early_flushes > 0, "the budget asked for flushes");
    assert_eq!(m.lost_events, 0, "{m:?}");
    assert_eq!(stored, n_events, "every request counted in the store");
}
