//! Threat detections against recorded real attack-tool traffic (issue 7, R-THR-1..5, R-BUS-3).
//!
//! Every scenario of `tests/fixtures/attacks/manifest.json` (hydra, ffuf, wfuzz, patator,
//! gobuster, wget, curl from 60 addresses, scripted benign sessions with siege and wrk) is
//! replayed through the real sensor decoder and `apitap-analyzer process --alerts`:
//!
//! - each attack raises its expected detector, for the expected actor, with a Create within
//!   the manifest's `within_s` (60 s) of the attack's start in stream time;
//! - the 10 minutes of benign traffic raise no detection;
//! - every alert (2004 detections, 2006/2007 weak points and inventory changes) validates
//!   against the vendored OCSF schema;
//! - the detections match the committed golden digest (`golden/<scenario>.json`; regenerate
//!   with `APITAP_UPDATE_GOLDEN=1` after reviewing the diff).
//!
//! The campaign ids and actor hashes are keyed with a fixed test key, so they are stable.
//! Unprivileged; needs the built `apitap-sensor` and `apitap-analyzer`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use apitap_tests::attacks::{fixture_pcap, fixtures_dir, manifest, replay_to};
use serde_json::{Value, json};

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("apitap-detections-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// Runs the analyzer over `events`; returns every alert document.
fn analyze(events: &Path, dir: &Path) -> anyhow::Result<Vec<Value>> {
    analyze_as(events, dir, "ocsf")
}

/// [`analyze`] with `--alert-format format`.
fn analyze_as(events: &Path, dir: &Path, format: &str) -> anyhow::Result<Vec<Value>> {
    apitap_tests::attacks::analyze(events, dir, format)
}

/// The reviewed essence of a detection alert: what, who, where, when.
fn digest(alert: &Value) -> Value {
    let a = &alert["unmapped"]["apitap"];
    json!({
        "activity": alert["activity_name"],
        "detector": a["detector"],
        "kind": a["kind"],
        "severity": alert["severity"],
        "endpoint": a["endpoint"],
        "actor": a["actor"],
        "uid": alert["finding_info"]["uid"],
        "first_seen_time": alert["finding_info"]["first_seen_time"],
        "created_time": alert["finding_info"]["created_time"],
    })
}

/// Does the alert's actor match the manifest's `{key, value}`? Account values are keyed hashes
/// in alerts (raw user names never leave the analyzer), so an account key of any kind matches.
fn actor_matches(alert: &Value, want: &Value) -> bool {
    let actor = &alert["unmapped"]["apitap"]["actor"];
    let value = want["value"].as_str().unwrap_or_default();
    match want["key"].as_str().unwrap_or_default() {
        "ip" => actor["client_ip"] == value,
        "subnet" => {
            actor["subnet"] == value
                || (actor["scope"] == "distributed" && {
                    let prefix = value.trim_end_matches("0/24");
                    let sources = alert["unmapped"]["apitap"]["sources"].as_array();
                    sources.is_some_and(|s| {
                        !s.is_empty()
                            && s.iter()
                                .all(|ip| ip.as_str().is_some_and(|ip| ip.starts_with(prefix)))
                    })
                })
        }
        "account" => ["account", "jwt_sub", "login_user", "session", "api_key"]
            .iter()
            .any(|k| actor[*k].is_string()),
        "fingerprint" => actor["user_agent_family"]
            .as_str()
            .is_some_and(|f| value.to_lowercase().contains(&f.to_lowercase())),
        _ => false,
    }
}

#[test]
fn attacks_raise_their_detection_and_benign_traffic_none() -> anyhow::Result<()> {
    let dir = scratch("golden");
    let update = std::env::var_os("APITAP_UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    let mut table = String::from(
        "scenario              | tool      | expected            | raised (create)                       | actor               | latency s\n",
    );
    for entry in manifest()? {
        let name = entry["scenario"].as_str().unwrap_or("?").to_owned();
        let work = dir.join(&name);
        std::fs::create_dir_all(&work)?;
        let pcap = fixture_pcap(entry["fixture"].as_str().unwrap_or_default(), &work)?;
        let events = work.join("events.jsonl");
        replay_to(&pcap, &events, "detections-golden")?;
        let alerts = analyze(&events, &work)?;

        for a in &alerts {
            if let Err(errors) = apitap_detect::ocsf::validate(a) {
                failures.push(format!(
                    "{name}: alert class {} is not valid OCSF: {errors:?}",
                    a["class_uid"]
                ));
            }
        }
        let detections: Vec<&Value> = alerts.iter().filter(|a| a["class_uid"] == 2004).collect();
        let creates: Vec<&&Value> = detections
            .iter()
            .filter(|a| a["activity_id"] == 1)
            .collect();
        let expected = &entry["expected"];
        let want = expected["detector"].as_str().unwrap_or("none");
        let raised: Vec<String> = creates
            .iter()
            .map(|a| {
                format!(
                    "{}/{}",
                    a["unmapped"]["apitap"]["detector"].as_str().unwrap_or("?"),
                    a["unmapped"]["apitap"]["kind"].as_str().unwrap_or("?")
                )
            })
            .collect();
        let (mut actor, mut latency) = (String::from("-"), String::from("-"));
        if want == "none" {
            if !detections.is_empty() {
                failures.push(format!("{name}: benign traffic raised {raised:?}"));
            }
        } else {
            let attack_start = expected_start(&entry);
            let mut wants = vec![expected["actor"].clone()];
            wants.extend(
                expected["also_acceptable"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
            let hit = creates.iter().find(|a| {
                a["unmapped"]["apitap"]["detector"] == want
                    && wants.iter().any(|w| actor_matches(a, w))
            });
            match hit {
                None => failures.push(format!(
                    "{name}: no {want} detection for {wants:?}; raised {raised:?}"
                )),
                Some(a) => {
                    actor = a["unmapped"]["apitap"]["actor"]["client_ip"]
                        .as_str()
                        .or(a["unmapped"]["apitap"]["actor"]["scope"].as_str())
                        .unwrap_or("?")
                        .to_owned();
                    let created =
                        a["finding_info"]["created_time"].as_f64().unwrap_or(0.0) / 1000.0;
                    let l = created - attack_start;
                    latency = format!("{l:.1}");
                    let within = expected["within_s"].as_f64().unwrap_or(60.0);
                    if l > within {
                        failures.push(format!(
                            "{name}: {want} raised {l:.1} s after the attack began (> {within})"
                        ));
                    }
                }
            }
        }
        let _ = writeln!(
            table,
            "{name:<21} | {:<9} | {want:<19} | {:<37} | {actor:<19} | {latency}",
            entry["tool"]
                .as_str()
                .unwrap_or("?")
                .chars()
                .take(9)
                .collect::<String>(),
            raised.join(" "),
        );

        // Golden digest of every detection alert.
        let got = Value::Array(detections.iter().map(|a| digest(a)).collect());
        let golden = fixtures_dir().join("golden").join(format!("{name}.json"));
        if update {
            std::fs::create_dir_all(golden.parent().unwrap_or(Path::new(".")))?;
            std::fs::write(&golden, serde_json::to_string_pretty(&got)? + "\n")?;
        } else {
            match std::fs::read_to_string(&golden) {
                Ok(text) => {
                    let want: Value = serde_json::from_str(&text)?;
                    if want != got {
                        failures.push(format!(
                            "{name}: detections differ from {}:\n{}",
                            golden.display(),
                            serde_json::to_string_pretty(&got)?
                        ));
                    }
                }
                Err(_) => failures.push(format!("{name}: no golden file {}", golden.display())),
            }
        }
    }
    eprintln!("{table}");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}\n{table}", failures.join("\n"));
    Ok(())
}

/// Stream time (s) the attack began; the stream start for scenarios without one.
fn expected_start(entry: &Value) -> f64 {
    entry["attack_start"]
        .as_f64()
        .or(entry["stream_start"].as_f64())
        .unwrap_or(0.0)
}

#[test]
fn ecs_format_carries_the_same_findings() -> anyhow::Result<()> {
    let dir = scratch("ecs");
    let entry = manifest()?
        .into_iter()
        .find(|e| e["scenario"] == "stuffing_ffuf_json")
        .ok_or_else(|| anyhow::anyhow!("scenario missing"))?;
    let pcap = fixture_pcap(entry["fixture"].as_str().unwrap_or_default(), &dir)?;
    let events = dir.join("events.jsonl");
    replay_to(&pcap, &events, "detections-ecs")?;
    let ocsf = analyze_as(&events, &dir, "ocsf")?;
    let ecs = analyze_as(&events, &dir, "ecs")?;
    assert_eq!(ocsf.len(), ecs.len());
    for (o, e) in ocsf.iter().zip(&ecs) {
        assert_eq!(e["event"]["kind"], "alert");
        assert_eq!(e["labels"]["finding_uid"], o["finding_info"]["uid"]);
        assert_eq!(e["labels"]["ocsf_class_uid"], o["class_uid"]);
        if o["class_uid"] == 2004 {
            assert_eq!(e["rule"]["name"], o["unmapped"]["apitap"]["detector"]);
            assert_eq!(e["source"]["ip"], "10.213.0.2");
            assert!(e["threat"]["technique"][0]["id"].is_string(), "{e}");
        }
    }
    assert!(
        ecs.iter()
            .any(|e| e["event"]["dataset"] == "apitap.detections")
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
