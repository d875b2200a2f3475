//! The inventory store against real databases (R-INV-3, R-INV-5): SQLite files and a
//! throwaway PostgreSQL cluster started by the test (Debian `postgresql`; run as the
//! `postgres` user when the test runs as root). Same schema and behaviour on both; two
//! analyzers sharing PostgreSQL add up; templates survive restarts; lifecycle and change log.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use apitap_analyzer::inventory::record::{ChangeFilter, EndpointFilter, Lifecycle};
use apitap_analyzer::inventory::spec::SpecStatus;
use apitap_analyzer::inventory::store::{self, Store};
use apitap_analyzer::inventory::{Inventory, InventoryConfig};
use common::events::Ev;
use common::pg::PgCluster;

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("inv-store-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Probes stored against endpoints (requests answered as not served: not hits).
fn stored_probes(store: &mut dyn Store) -> u64 {
    store
        .endpoints(&EndpointFilter::default())
        .unwrap()
        .iter()
        .map(|r| r.data.probe_total())
        .sum()
}

fn ids(store: &mut dyn Store) -> Vec<(String, String, u64)> {
    let mut v: Vec<(String, String, u64)> = store
        .endpoints(&EndpointFilter::default())
        .unwrap()
        .into_iter()
        .filter(|r| r.spec_status != SpecStatus::Unseen)
        .map(|r| (r.key.method, r.key.template, r.data.hits))
        .collect();
    v.sort();
    v
}

#[test]
fn sqlite_file_conforms() {
    let dir = scratch("conform");
    let url = format!("sqlite:{}", dir.join("inv.db").display());
    let mut s = store::open(&url).unwrap();
    assert_eq!(s.backend(), "sqlite");
    common::conformance::exercise(s.as_mut());
}

#[test]
fn postgres_conforms() {
    let Some(pg) = PgCluster::start("postgres_conforms") else {
        return;
    };
    let url = pg.database("conform");
    let mut s = store::open(&url).unwrap();
    assert_eq!(s.backend(), "postgres");
    common::conformance::exercise(s.as_mut());
    // Reopening does not re-run migrations.
    let mut again = store::open(&url).unwrap();
    assert_eq!(
        again.endpoints(&EndpointFilter::default()).unwrap().len(),
        2
    );
}

#[test]
fn two_analyzers_sharing_postgres_add_up() {
    let Some(pg) = PgCluster::start("two_analyzers_sharing_postgres_add_up") else {
        return;
    };
    let url = pg.database("shared");
    let events = common::httpbin_events();

    // Reference: one instance sees everything.
    let mut single_store = store::open("sqlite::memory:").unwrap();
    let mut single = Inventory::new(InventoryConfig::default()).unwrap();
    for e in &events {
        single.observe(e);
    }
    single.flush(single_store.as_mut()).unwrap();

    // Two instances, each half of the traffic, flushing alternately into PostgreSQL.
    let mut sa = store::open(&url).unwrap();
    let mut sb = store::open(&url).unwrap();
    let mut a = Inventory::new(InventoryConfig::default()).unwrap();
    let mut b = Inventory::new(InventoryConfig::default()).unwrap();
    for (i, e) in events.iter().enumerate() {
        if i % 2 == 0 {
            a.observe(e)
        } else {
            b.observe(e)
        }
        if i % 300 == 299 {
            a.flush(sa.as_mut()).unwrap();
            b.flush(sb.as_mut()).unwrap();
        }
    }
    a.flush(sa.as_mut()).unwrap();
    b.flush(sb.as_mut()).unwrap();

    let shared = ids(sa.as_mut());
    let total: u64 = shared.iter().map(|x| x.2).sum();
    // Every request is counted once: as a hit, or as a probe (stored against its path's
    // endpoint, or only counted when the path is unknown).
    let probes = stored_probes(sa.as_mut())
        + a.counters.probe_unrouted_events
        + b.counters.probe_unrouted_events;
    assert_eq!(
        total + probes,
        events.len() as u64,
        "every request counted once"
    );
    assert_eq!(
        shared,
        ids(single_store.as_mut()),
        "same endpoints as one analyzer"
    );
    // Each endpoint was announced once, whichever instance saw it first (early flushes also
    // announce values not yet folded; those are merged away later, each announced once too).
    let discovered = sa
        .changes(&ChangeFilter {
            kind: Some("discovered".into()),
            limit: Some(10_000),
            ..ChangeFilter::default()
        })
        .unwrap();
    let mut announced: Vec<&str> = discovered.iter().map(|c| c.endpoint_id.as_str()).collect();
    announced.sort_unstable();
    let n = announced.len();
    announced.dedup();
    assert_eq!(announced.len(), n, "an endpoint was announced twice");
    for r in sa.endpoints(&EndpointFilter::default()).unwrap() {
        assert!(
            announced.contains(&r.id.as_str()),
            "{} never announced",
            r.key.template
        );
    }
}

#[test]
fn templates_and_names_survive_a_restart() {
    let dir = scratch("restart");
    let url = format!("sqlite:{}", dir.join("inv.db").display());
    let events = common::httpbin_events();
    let mut first_store = store::open(&url).unwrap();
    let mut first = Inventory::new(InventoryConfig::default()).unwrap();
    for e in &events[..events.len() / 2] {
        first.observe(e);
    }
    first.flush(first_store.as_mut()).unwrap();
    let before = first.endpoint_keys();
    let first_unrouted = first.counters.probe_unrouted_events;
    drop(first);

    // A new process: seeded from the store, it sees the second half of the traffic.
    let mut s = store::open(&url).unwrap();
    let mut second = Inventory::new(InventoryConfig::default()).unwrap();
    assert!(second.seed(s.as_mut()).unwrap() > 0);
    for e in &events[events.len() / 2..] {
        second.observe(e);
    }
    second.flush(s.as_mut()).unwrap();
    let after = ids(s.as_mut());
    for k in &before {
        assert!(
            after
                .iter()
                .any(|(m, t, _)| *m == k.method && *t == k.template),
            "{} {} renamed or lost after restart",
            k.method,
            k.template
        );
    }
    let probes = stored_probes(s.as_mut()) + first_unrouted + second.counters.probe_unrouted_events;
    assert_eq!(
        after.iter().map(|x| x.2).sum::<u64>() + probes,
        events.len() as u64
    );
}

#[test]
fn lifecycle_and_change_log() {
    let mut s = store::open("sqlite::memory:").unwrap();
    let cfg = InventoryConfig {
        new_period_secs: 3600,
        inactive_after_secs: 86_400,
        ..InventoryConfig::default()
    };
    let mut inv = Inventory::new(cfg).unwrap();
    let day = 86_400;
    inv.observe(&Ev::new("GET", "/v1/accounts/1").json(200, r#"{"id":1}"#).e);
    inv.observe(&Ev::new("GET", "/v1/health").e);
    let c0 = inv.flush(s.as_mut()).unwrap();
    assert_eq!(
        c0.iter().filter(|c| c.kind == "discovered").count(),
        2,
        "{c0:?}"
    );
    let get = |s: &mut Box<dyn Store>, t: &str| {
        s.endpoints(&EndpointFilter {
            template: Some(t.into()),
            ..EndpointFilter::default()
        })
        .unwrap()
        .remove(0)
    };
    assert_eq!(get(&mut s, "/v1/accounts/").lifecycle, Lifecycle::New);

    // Two hours later: new → active; a new query parameter, a new status and an auth scheme.
    inv.observe(
        &Ev::new("GET", "/v1/accounts/2")
            .at_secs(7200)
            .query("expand=cards")
            .header("Authorization", "Bearer abc")
            .json(404, r#"{"error":"x"}"#)
            .e,
    );
    let c1 = inv.flush(s.as_mut()).unwrap();
    let kinds: Vec<&str> = c1.iter().map(|c| c.kind.as_str()).collect();
    for k in [
        "parameter_added",
        "status_added",
        "auth_changed",
        "lifecycle",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    assert_eq!(get(&mut s, "/v1/accounts/").lifecycle, Lifecycle::Active);

    // Two days of silence for /v1/accounts while /v1/health is called: inactive.
    inv.observe(&Ev::new("GET", "/v1/health").at_secs(2 * day).e);
    let c2 = inv.flush(s.as_mut()).unwrap();
    assert_eq!(get(&mut s, "/v1/accounts/").lifecycle, Lifecycle::Inactive);
    assert!(
        c2.iter()
            .any(|c| c.kind == "lifecycle" && c.detail["to"] == "inactive")
    );
    // The unused parameter is reported removed once the endpoint is back.
    inv.observe(&Ev::new("GET", "/v1/accounts/3").at_secs(2 * day + 10).e);
    let c3 = inv.flush(s.as_mut()).unwrap();
    assert_eq!(get(&mut s, "/v1/accounts/").lifecycle, Lifecycle::Revived);
    assert!(
        c3.iter()
            .any(|c| c.kind == "parameter_removed" && c.detail["name"] == "expand"),
        "{c3:?}"
    );
    let log = s.changes(&ChangeFilter::default()).unwrap();
    assert!(log.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(log.len(), c0.len() + c1.len() + c2.len() + c3.len());
}

#[test]
fn folded_endpoints_merge_their_stored_rows() {
    let mut s = store::open("sqlite::memory:").unwrap();
    let mut inv = Inventory::new(InventoryConfig::default()).unwrap();
    // Two opaque values: not yet a parameter, stored as two literal endpoints.
    for tok in ["x9Kq2LmZ0p", "Pq81ZzLm2a"] {
        inv.observe(&Ev::new("GET", &format!("/files/{tok}")).e);
    }
    inv.flush(s.as_mut()).unwrap();
    assert_eq!(ids(s.as_mut()).len(), 2);
    inv.observe(&Ev::new("GET", "/files/aa9Q7Lm0Rt").e);
    let changes = inv.flush(s.as_mut()).unwrap();
    assert_eq!(
        ids(s.as_mut()),
        vec![("GET".into(), "/files/{file_id}".into(), 3)]
    );
    assert_eq!(changes.iter().filter(|c| c.kind == "merged").count(), 2);
}

#[test]
fn spec_first_reports_shadow_and_zombie_endpoints() {
    let dir = scratch("spec");
    let spec = dir.join("api.yaml");
    std::fs::write(
        &spec,
        "openapi: 3.0.3\ninfo: {title: t, version: '1'}\nservers: [{url: 'https://api.example.com/v1'}]\n\
         paths:\n  /users/{uid}:\n    get: {}\n    delete: {deprecated: true}\n  /legacy:\n    get: {}\n",
    )
    .unwrap();
    let cfg: InventoryConfig = toml::from_str(&format!(
        "[[specs]]\nservice = \"api.example.com\"\npath = {spec:?}\n"
    ))
    .unwrap();
    let mut inv = Inventory::new(cfg).unwrap();
    let mut s = store::open("sqlite::memory:").unwrap();
    inv.observe(&Ev::new("GET", "/v1/users/alice").e);
    inv.observe(&Ev::new("DELETE", "/v1/users/bob").e);
    inv.observe(&Ev::new("PUT", "/v1/users/bob").e);
    inv.observe(&Ev::new("GET", "/v1/internal/debug").e);
    inv.flush(s.as_mut()).unwrap();
    let status = |s: &mut Box<dyn Store>, m: &str, t: &str| {
        s.endpoints(&EndpointFilter {
            method: Some(m.into()),
            ..EndpointFilter::default()
        })
        .unwrap()
        .into_iter()
        .find(|r| r.key.template == t)
        .map(|r| r.spec_status)
    };
    assert_eq!(
        status(&mut s, "GET", "/v1/users/{uid}"),
        Some(SpecStatus::Documented)
    );
    assert_eq!(
        status(&mut s, "DELETE", "/v1/users/{uid}"),
        Some(SpecStatus::Deprecated)
    );
    assert_eq!(
        status(&mut s, "PUT", "/v1/users/{uid}"),
        Some(SpecStatus::UndocumentedMethod)
    );
    assert_eq!(
        status(&mut s, "GET", "/v1/internal/debug"),
        Some(SpecStatus::Undocumented)
    );
    assert_eq!(
        status(&mut s, "GET", "/v1/legacy"),
        Some(SpecStatus::Unseen)
    );
    let legacy = s
        .endpoints(&EndpointFilter {
            template: Some("/v1/legacy".into()),
            ..EndpointFilter::default()
        })
        .unwrap();
    assert!(legacy[0].summary().zombie_candidate);
    assert_eq!(legacy[0].data.hits, 0);
}

#[test]
fn overrides_force_merge_and_split() {
    let cfg: InventoryConfig = toml::from_str(
        r#"
        [[overrides]]
        kind = "template"
        paths = ["/reports/{report_name}.csv"]
        [[overrides]]
        kind = "merge"
        paths = ["/v1/acct/{id}", "/v1/accounts/{id}"]
        template = "/v1/accounts/{account_id}"
        [[overrides]]
        kind = "split"
        paths = ["/users/7"]
        "#,
    )
    .unwrap();
    let mut inv = Inventory::new(cfg).unwrap();
    for p in [
        "/reports/q1.csv",
        "/reports/q2.csv",
        "/v1/acct/1",
        "/v1/accounts/2",
        "/users/7",
        "/users/8",
    ] {
        inv.observe(&Ev::new("GET", p).e);
    }
    let mut t: Vec<String> = inv
        .endpoint_keys()
        .into_iter()
        .map(|k| k.template)
        .collect();
    t.sort();
    assert_eq!(
        t,
        vec![
            "/reports/{report_name}.csv",
            "/users/7",
            "/users/{user_id}",
            "/v1/accounts/{account_id}"
        ]
    );
}

#[test]
fn exposure_partners_and_clients() {
    let cfg: InventoryConfig = toml::from_str(
        "internal_cidrs = [\"10.0.0.0/8\"]\n[[partners]]\nname = \"acme\"\ncidrs = [\"198.51.100.0/24\"]\n",
    )
    .unwrap();
    let mut inv = Inventory::new(cfg).unwrap();
    let mut s = store::open("sqlite::memory:").unwrap();
    inv.observe(&Ev::new("GET", "/internal").client("10.2.3.4").e);
    inv.observe(&Ev::new("GET", "/public").client("198.51.100.7").e);
    inv.observe(&Ev::new("GET", "/public").client("203.0.113.9").e);
    inv.flush(s.as_mut()).unwrap();
    let rows: Vec<_> = s
        .endpoints(&EndpointFilter::default())
        .unwrap()
        .iter()
        .map(|r| r.summary())
        .collect();
    let internal = rows.iter().find(|r| r.template == "/internal").unwrap();
    let public = rows.iter().find(|r| r.template == "/public").unwrap();
    assert_eq!(internal.exposure, "internal");
    assert_eq!(public.exposure, "internet_facing");
    assert_eq!(public.partners, vec!["acme"]);
    assert_eq!(public.distinct_clients, 2);
}

#[test]
fn periodic_flushes_let_new_endpoints_settle() {
    let mut s = store::open("sqlite::memory:").unwrap();
    let cfg = InventoryConfig {
        discovery_grace_secs: 60,
        ..InventoryConfig::default()
    };
    let mut inv = Inventory::new(cfg).unwrap();
    inv.observe(&Ev::new("GET", "/v1/health").e);
    for (i, tok) in ["x9Kq2LmZ0p", "Pq81ZzLm2a"].iter().enumerate() {
        inv.observe(
            &Ev::new("GET", &format!("/files/{tok}"))
                .at_secs(100 + i as u64)
                .e,
        );
    }
    // /v1/health is 100 s old and is stored; the two file values are younger than the grace.
    let c = inv.flush_settled(s.as_mut()).unwrap();
    assert_eq!(c.len(), 1, "{c:?}");
    inv.observe(&Ev::new("GET", "/files/aa9Q7Lm0Rt").at_secs(200).e);
    inv.observe(&Ev::new("GET", "/v1/health").at_secs(200).e);
    inv.flush_settled(s.as_mut()).unwrap();
    let c = inv.flush(s.as_mut()).unwrap();
    // The values never showed up as endpoints: only the template was announced.
    assert!(c.iter().all(|c| c.kind != "merged"), "{c:?}");
    assert_eq!(
        ids(s.as_mut()),
        vec![
            ("GET".into(), "/files/{file_id}".into(), 3),
            ("GET".into(), "/v1/health".into(), 2)
        ]
    );
}

/// Issue 22, R-OPS-3: a PostgreSQL store over verified TLS with its password in an
/// owner-only file. The server takes TCP clients only over TLS (`hostssl`) with a SCRAM
/// password, so a store that connected in clear text or without the password would fail.
#[test]
fn postgres_over_verified_tls_with_a_password_file() {
    use apitap_analyzer::inventory::store::postgres::PgAccess;
    use std::os::unix::fs::PermissionsExt as _;
    let password = "s3cret-inventory-password";
    let Some((pg, secured)) = PgCluster::start_secure("postgres_over_verified_tls", password)
    else {
        return;
    };
    let dir = scratch("pg-tls");
    let pwfile = dir.join("pg-password");
    std::fs::write(&pwfile, format!("{password}\n")).unwrap();
    std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    let access = PgAccess {
        password_file: Some(&pwfile),
        ca_file: Some(&secured.ca_file),
        ..PgAccess::default()
    };
    let mut s = store::open_with(&pg.url, &access).unwrap();
    assert_eq!(s.backend(), "postgres");
    common::conformance::exercise(s.as_mut());
    drop(s);

    // TLS was negotiated: the server reports it for this very connection.
    let config = store::postgres::connection_config(&pg.url, &access).unwrap();
    let tls = {
        let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls()).unwrap();
        b.set_ca_file(&secured.ca_file).unwrap();
        postgres_openssl::MakeTlsConnector::new(b.build())
    };
    let mut client = config.connect(tls).unwrap();
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(ssl);

    // The inventory CLI reaches the same store with the same files.
    let cli = |extra: &[&std::ffi::OsStr]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_apitap-analyzer"));
        c.args(["inventory", "list", "--format", "json", "--store", &pg.url]);
        c.args(extra);
        c.output().unwrap()
    };
    let out = cli(&[
        "--store-password-file".as_ref(),
        pwfile.as_os_str(),
        "--store-ca-file".as_ref(),
        secured.ca_file.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"template\""));
    let out = cli(&["--store-password-file".as_ref(), pwfile.as_os_str()]);
    assert!(
        !out.status.success(),
        "an untrusted CA was accepted by the CLI"
    );

    // The certificate is verified: without the test CA the system trust store refuses it.
    let untrusted = PgAccess {
        password_file: Some(&pwfile),
        ca_file: None,
        ..PgAccess::default()
    };
    let err = store::open_with(&pg.url, &untrusted)
        .err()
        .expect("untrusted CA accepted");
    assert!(format!("{err:?}").contains("certificate"), "{err:?}");
    // Without the password the server refuses; the password never shows in errors.
    let err = store::open_with(
        &pg.url,
        &PgAccess {
            password_file: None,
            ..access
        },
    )
    .err()
    .expect("no password accepted");
    assert!(!format!("{err} {err:?}").contains(password));
    // A password file others can read is refused before connecting, naming the field.
    std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = store::open_with(&pg.url, &access)
        .err()
        .expect("exposed file accepted");
    let text = err.to_string();
    assert!(text.contains("inventory.store_password_file"), "{text}");
    assert!(
        text.contains("chmod 600") && !text.contains(password),
        "{text}"
    );
}
