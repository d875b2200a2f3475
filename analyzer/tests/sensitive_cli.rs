//! Sensitive-data labelling end to end (R-SEN-1..3): `apitap-analyzer process --store
//! sqlite:… --alerts …` on events carrying a password in a GET login's query and PRC ID
//! numbers and mobiles in a response; the inventory records labels, function class and
//! sensitivity, `inventory list` shows the sensitivity, weak points arrive as OCSF findings,
//! and no raw value appears in the alerts, the store, or the process output.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use apitap_labels::validate::gb11643_check;
use apitap_schema::encode_event;
use common::events::Ev;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_apitap-analyzer");
const PASSWORD: &str = "Tr0ub4dor-x9Q";
const MOBILES: [&str; 3] = ["13812345678", "15987654321", "18611112222"];
const HASH_SECRET: &str = "site-secret-9f8e7d6c";

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("sensitive_cli-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Valid 18-digit resident ID numbers (GB 11643 check character).
fn prc_ids() -> Vec<String> {
    [
        "11010519491231002",
        "44030419850612301",
        "31011519920305457",
    ]
    .iter()
    .map(|first17| {
        let check = gb11643_check(first17.as_bytes()).unwrap();
        format!("{first17}{}", check as char)
    })
    .collect()
}

fn fixture(dir: &Path) -> (PathBuf, Vec<String>) {
    let ids = prc_ids();
    let records: Vec<String> = ids
        .iter()
        .zip(MOBILES)
        .enumerate()
        .map(|(i, (id, mobile))| {
            format!(r#"{{"user_id":{i},"name":"user{i}","id_card":"{id}","mobile":"{mobile}"}}"#)
        })
        .collect();
    let users_body = format!(r#"{{"code":0,"data":[{}]}}"#, records.join(","));
    let mut events = Vec::new();
    for i in 0..3u64 {
        events.push(
            Ev::new("GET", "/api/login")
                .query(&format!("username=alice&password={PASSWORD}"))
                .json(200, r#"{"code":0,"token":"ok"}"#)
                .at_secs(i),
        );
        events.push(
            Ev::new("GET", "/api/users")
                .json(200, &users_body)
                .at_secs(i),
        );
    }
    let mut text = Vec::new();
    for (n, ev) in events.into_iter().enumerate() {
        let mut e = ev.e;
        e.event_id = format!("{n:032x}");
        text.extend(encode_event(&e));
        text.push(b'\n');
    }
    let path = dir.join("events.jsonl");
    std::fs::write(&path, text).unwrap();
    let mut raw: Vec<String> = ids;
    raw.extend(MOBILES.iter().map(|m| m.to_string()));
    raw.push(PASSWORD.into());
    (path, raw)
}

fn run(args: &[&str]) -> Output {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn assert_clean(what: &str, bytes: &[u8], raw: &[String]) {
    for v in raw {
        assert!(!contains(bytes, v), "raw value found in {what}");
    }
    assert!(!contains(bytes, HASH_SECRET), "hash key found in {what}");
}

#[test]
fn process_records_labels_sensitivity_and_weak_points_without_values() {
    let dir = scratch("process");
    let (events, raw) = fixture(&dir);
    let key_file = dir.join("hash.key");
    std::fs::write(&key_file, HASH_SECRET).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let config = dir.join("analyzer.toml");
    std::fs::write(
        &config,
        format!(
            "[input]\npath = \"-\"\n[labels]\nhash_key_file = {:?}\n",
            key_file.display().to_string()
        ),
    )
    .unwrap();
    let store = format!("sqlite:{}", dir.join("inventory.db").display());
    let alerts = dir.join("alerts.jsonl");
    let out = run(&[
        "process",
        "--input",
        events.to_str().unwrap(),
        "--summary",
        "-",
        "--store",
        &store,
        "--alerts",
        alerts.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_clean("process stdout", &out.stdout, &raw);
    assert_clean("process stderr", &out.stderr, &raw);

    // Inventory export: labels, function class and sensitivity per endpoint.
    let out = run(&["inventory", "export", "--store", &store, "--format", "json"]);
    assert_clean("export", &out.stdout, &raw);
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let row = |t: &str| {
        rows.iter()
            .find(|r| r["template"] == t)
            .unwrap_or_else(|| panic!("{t} not in {rows:?}"))
            .clone()
    };
    let login = row("/api/login");
    assert_eq!(login["sensitivity"], "high", "{login}");
    assert_eq!(login["function_class"], "login", "{login}");
    assert!(
        login["data_labels"].as_array().unwrap().iter().any(|d| {
            d["label"] == "password"
                && d["direction"] == "request"
                && d["location"] == "query_param"
                && d["events"] == 3
        }),
        "{login}"
    );
    let users = row("/api/users");
    let sens = users["sensitivity"].as_str().unwrap();
    assert!(sens == "medium" || sens == "high", "{users}");
    let labels = users["data_labels"].as_array().unwrap();
    for name in ["prc_id", "mobile"] {
        let d = labels
            .iter()
            .find(|d| d["label"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {users}"));
        assert_eq!(d["direction"], "response", "{users}");
        assert_eq!(d["location"], "json_path", "{users}");
        assert_eq!(d["events"], 3, "{users}");
        assert_eq!(d["occurrences"], 9, "{users}");
    }

    // inventory list shows the sensitivity.
    let out = run(&["inventory", "list", "--store", &store]);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("SENSITIVITY"), "{table}");
    let login_line = table.lines().find(|l| l.contains("/api/login")).unwrap();
    assert!(login_line.contains("high"), "{table}");
    let users_line = table.lines().find(|l| l.contains("/api/users")).unwrap();
    assert!(users_line.contains(sens), "{table}");
    assert!(!table.contains("unknown"), "{table}");

    // Alerts: weak points as OCSF findings, each once, next to the inventory changes.
    let text = std::fs::read(&alerts).unwrap();
    assert_clean("alerts", &text, &raw);
    let docs: Vec<Value> = String::from_utf8(text)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let weak: Vec<&Value> = docs
        .iter()
        .filter(|d| d["metadata"]["log_name"] == "apitap_weak_points")
        .collect();
    let has = |kind: &str, class: u64, template: &str| {
        weak.iter().any(|d| {
            d["unmapped"]["apitap"]["kind"] == kind
                && d["class_uid"] == class
                && d["unmapped"]["apitap"]["template"] == template
        })
    };
    assert!(has("login_via_get", 2007, "/api/login"), "{weak:#?}");
    assert!(has("credential_in_url", 2007, "/api/login"), "{weak:#?}");
    assert!(has("cleartext_password", 2007, "/api/login"), "{weak:#?}");
    assert!(
        has("sensitive_without_auth", 2006, "/api/users"),
        "{weak:#?}"
    );
    assert!(
        has("unmasked_sensitive_response", 2006, "/api/users"),
        "{weak:#?}"
    );
    for d in &weak {
        assert_eq!(d["activity_id"], 1);
        assert!(d["time"].as_u64().unwrap() >= 1_700_000_000_000, "{d}");
        assert!(d["finding_info"]["title"].as_str().is_some(), "{d}");
        assert_eq!(d["unmapped"]["apitap"]["service"], "api.example.com");
    }
    let mut ids: Vec<&str> = weak
        .iter()
        .map(|d| d["metadata"]["uid"].as_str().unwrap())
        .collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "each weak point is raised once");
    assert!(
        docs.iter()
            .any(|d| d["metadata"]["log_name"] == "apitap_inventory_changes"),
        "inventory changes share the alerts output"
    );

    // The store holds no raw value (nor does anything else the run left behind).
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path == events || path == key_file {
            continue;
        }
        assert_clean(
            &path.display().to_string(),
            &std::fs::read(&path).unwrap(),
            &raw,
        );
    }

    // A sensitivity change is recorded in the change log.
    let out = run(&["inventory", "changes", "--store", &store]);
    assert_clean("changes", &out.stdout, &raw);
    let changes = String::from_utf8(out.stdout).unwrap();
    assert!(changes.contains("\"sensitivity\":\"high\""), "{changes}");
}

#[test]
fn sensitivity_rise_is_a_change() {
    let dir = scratch("rise");
    let store = format!("sqlite:{}", dir.join("inventory.db").display());
    let write = |name: &str, evs: Vec<Ev>| {
        let mut text = Vec::new();
        for ev in evs {
            text.extend(encode_event(&ev.e));
            text.push(b'\n');
        }
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let first = write(
        "a.jsonl",
        vec![Ev::new("GET", "/api/profile").json(200, r#"{"ok":true}"#)],
    );
    let ids = prc_ids();
    let body = format!(r#"{{"id_card":"{}","mobile":"{}"}}"#, ids[0], MOBILES[0]);
    let second = write(
        "b.jsonl",
        vec![Ev::new("GET", "/api/profile").json(200, &body).at_secs(60)],
    );
    for input in [&first, &second] {
        run(&[
            "process",
            "--input",
            input.to_str().unwrap(),
            "--summary",
            dir.join("summary.txt").to_str().unwrap(),
            "--store",
            &store,
        ]);
    }
    let out = run(&["inventory", "changes", "--store", &store]);
    let changes: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let c = changes
        .iter()
        .find(|c| c["kind"] == "sensitivity_changed")
        .unwrap_or_else(|| panic!("{changes:#?}"));
    assert_eq!(c["detail"]["from"], "none");
    assert_ne!(c["detail"]["to"], "none");
    assert!(changes.iter().any(|c| c["kind"] == "data_label_added"));
}

#[test]
fn run_labels_events_and_writes_weak_points() {
    let dir = scratch("run");
    let (events, raw) = fixture(&dir);
    let store = format!("sqlite:{}", dir.join("inventory.db").display());
    let alerts = dir.join("alerts.jsonl");
    let config = dir.join("analyzer.toml");
    // No hash key file: a random key, with a warning.
    std::fs::write(
        &config,
        format!(
            "[input]\npath = {:?}\n[output]\nsummary_path = {:?}\nalerts_path = {:?}\n\
             [inventory]\nstore = {:?}\n",
            events.display().to_string(),
            dir.join("summary.txt").display().to_string(),
            alerts.display().to_string(),
            store,
        ),
    )
    .unwrap();
    let out = run(&["run", "--config", config.to_str().unwrap()]);
    assert_clean("run stdout", &out.stdout, &raw);
    assert_clean("run stderr", &out.stderr, &raw);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("hash_key_file is not set"),
        "warning about the random key"
    );
    let text = std::fs::read(&alerts).unwrap();
    assert_clean("alerts", &text, &raw);
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("\"login_via_get\""), "{text}");
    assert!(text.contains("\"unmasked_sensitive_response\""), "{text}");
    let out = run(&["inventory", "export", "--store", &store, "--format", "json"]);
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        rows.iter()
            .any(|r| r["template"] == "/api/login" && r["sensitivity"] == "high"),
        "{rows:?}"
    );
}
