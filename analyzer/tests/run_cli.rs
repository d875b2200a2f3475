//! End-to-end tests of `apitap-analyzer run`: config handling and stopping on a signal.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_apitap-analyzer");

fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("run_cli-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn invalid_config_names_the_field() {
    let dir = scratch_dir("invalid");
    let config = dir.join("analyzer.toml");
    std::fs::write(
        &config,
        "[input]\npath = \"-\"\n[output]\nsummary_interval_secs = \"x\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["run", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("output.summary_interval_secs"), "{stderr}");
}

#[test]
fn sigterm_stops_the_service_with_a_final_summary() {
    let dir = scratch_dir("sigterm");
    let config = dir.join("analyzer.toml");
    let summary = dir.join("summary.json");
    std::fs::write(
        &config,
        format!(
            "[input]\npath = \"-\"\n[output]\nsummary_path = {:?}\nsummary_format = \"json\"\n",
            summary
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // One event, then stdin stays open: only the signal can stop the service.
    let mut stdin = child.stdin.take().unwrap();
    let mut event = serde_json::json!({
        "schema_version": "1.0",
        "event_id": "0123456789abcdef0123456789abcdef",
        "sensor": {"id": "s", "host": "h"},
        "connection_id": "0123456789abcdef",
        "transaction_index": 0,
        "request_start_unix_us": 1,
        "client": {"ip": "10.0.0.1", "port": 1234},
        "server": {"ip": "10.0.0.2", "port": 80},
        "tls": false,
        "http_version": "1.1",
        "request": {
            "method": "GET", "host": "api", "path": "/x", "headers": [],
            "body": {"length_bytes": 0, "captured_bytes": 0, "truncated": false,
                     "encoding": "utf8", "data": ""}
        }
    });
    writeln!(stdin, "{event}").unwrap();
    event["request"]["path"] = "/y".into();
    writeln!(stdin, "{event}").unwrap();
    stdin.flush().unwrap();

    // Wait until the service runs (its signal handlers are installed before it says so)
    // and has read both events.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log.contains("analyzer running") {
        assert!(Instant::now() < deadline, "service did not start:\n{log}");
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            panic!("service exited early:\n{log}");
        }
        log.push_str(&line);
    }
    std::thread::sleep(Duration::from_millis(300));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    log.push_str(&rest);
    drop(stdin);
    assert!(exit.success(), "exit {exit:?}:\n{log}");
    assert!(log.contains("stopped by SIGTERM"), "{log}");
    assert!(log.contains("events=2"), "{log}");
    let rows: Vec<Value> = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
}

/// `check-config` (issue 19): what `run` would check, without starting anything; errors
/// name the field, secrets are checked but never shown, and nothing is created.
#[test]
fn check_config_checks_what_run_would_and_starts_nothing() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = scratch_dir("check-config");
    let key = dir.join("hash.key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef-secret-value").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let token = dir.join("api.token");
    std::fs::write(&token, "token-token-token-token").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let db = dir.join("inventory.db");
    let config = dir.join("analyzer.toml");
    let write = |extra: &str| {
        std::fs::write(
            &config,
            format!(
                "[input]\npath = \"-\"\n[labels]\nhash_key_file = {key:?}\n[inventory]\nstore = \"sqlite:{}\"\napi_listen = \"127.0.0.1:1\"\napi_token_file = {token:?}\nmax_memory_bytes = 67108864\n{extra}",
                db.display()
            ),
        )
        .unwrap();
    };
    let check = || {
        Command::new(BIN)
            .args(["check-config", "--config", config.to_str().unwrap()])
            .output()
            .unwrap()
    };
    write("");
    let out = check();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains(": ok"), "{stdout}");
    assert!(stdout.contains("events from   stdin"), "{stdout}");
    assert!(stdout.contains("inventory API 127.0.0.1:1"), "{stdout}");
    assert!(stdout.contains("inventory.api_token_file"), "{stdout}");
    for secret in ["secret-value", "token-token"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} shown"
        );
    }
    assert!(!db.exists(), "check-config must not create the store");

    // A token file others can read: refused, naming the field.
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = check();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("inventory.api_token_file"), "{stderr}");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A spec file that does not parse, and a budget below the minimum: each named.
    let spec = dir.join("broken.yaml");
    std::fs::write(&spec, "openapi: [").unwrap();
    write(&format!(
        "[[inventory.specs]]\nservice = \"api\"\npath = {spec:?}\n"
    ));
    let out = check();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.yaml"), "{stderr}");
    std::fs::write(
        &config,
        "[input]\npath = \"-\"\n[inventory]\nmax_memory_bytes = 1000\n",
    )
    .unwrap();
    let out = check();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("inventory.max_memory_bytes"), "{stderr}");
}
