//! Optional Elastic Common Schema (ECS 8.x) rendering of the analyzer's alerts
//! (`output.alert_format = "ecs"`, issue 7): for SIEMs that ingest ECS rather than OCSF. The
//! OCSF finding stays the source of truth; this maps its fields onto ECS names (event, rule,
//! threat, source, user, url, http) and keeps apitap's own details under `apitap`.
//!
//! Nothing is added that the OCSF document does not carry, so the same rules hold: no raw
//! sensitive values (actors are keyed hashes, samples masked).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// ECS version the documents follow.
pub const ECS_VERSION: &str = "8.11.0";

/// Document format of the alert outputs (file and Kafka alert topic alike).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AlertFormat {
    /// OCSF 1.x findings (2004 detections, 2006 data security, 2007 posture).
    #[default]
    Ocsf,
    /// The same findings mapped to ECS 8.x.
    Ecs,
}

fn iso_ms(ms: &Value) -> Value {
    match ms.as_u64() {
        Some(ms) => {
            let base = crate::output::format_unix_us(ms * 1000);
            // `…Z` with milliseconds.
            Value::String(format!("{}.{:03}Z", base.trim_end_matches('Z'), ms % 1000))
        }
        None => Value::Null,
    }
}

/// Drops nulls and empty objects so that absent OCSF fields do not become empty ECS fields.
fn prune(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let out: Map<String, Value> = m
                .into_iter()
                .map(|(k, v)| (k, prune(v)))
                .filter(|(_, v)| !v.is_null() && v.as_object().is_none_or(|o| !o.is_empty()))
                .collect();
            Value::Object(out)
        }
        other => other,
    }
}

/// The ECS document of one OCSF finding.
pub fn from_ocsf(f: &Value) -> Value {
    let info = &f["finding_info"];
    let apitap = &f["unmapped"]["apitap"];
    let class = f["class_uid"].as_u64().unwrap_or(0);
    let (dataset, category) = match class {
        2004 => ("apitap.detections", json!(["intrusion_detection", "web"])),
        2006 => ("apitap.data_security", json!(["web"])),
        _ => ("apitap.posture", json!(["configuration", "web"])),
    };
    let technique: Vec<Value> = info["attacks"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| json!({"id": t["technique"]["uid"], "name": t["technique"]["name"]}))
                .collect()
        })
        .unwrap_or_default();
    let sub: Vec<Value> = info["attacks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|t| t["sub_technique"].is_object())
                .map(|t| json!({"id": t["sub_technique"]["uid"], "name": t["sub_technique"]["name"]}))
                .collect()
        })
        .unwrap_or_default();
    let tactic = info["attacks"]
        .as_array()
        .and_then(|a| a.first())
        .map(|t| json!({"id": t["tactic"]["uid"], "name": t["tactic"]["name"]}));
    let threat = if technique.is_empty() {
        Value::Null
    } else {
        json!({
            "framework": "MITRE ATT&CK",
            "technique": technique,
            "technique_subtechnique": sub,
            "tactic": tactic,
        })
    };
    let endpoint = &apitap["endpoint"];
    let actor = &apitap["actor"];
    let source_ip = actor["client_ip"]
        .as_str()
        .or_else(|| apitap["sources"].as_array()?.first()?.as_str());
    let user = actor["account"]
        .as_str()
        .or(actor["login_user"].as_str())
        .or(actor["jwt_sub"].as_str());
    let domain = endpoint["service"].as_str().or(apitap["service"].as_str());
    let path = endpoint["template"]
        .as_str()
        .or(apitap["template"].as_str());
    let method = endpoint["method"].as_str().or(apitap["method"].as_str());
    let rule_name = info["analytic"]["name"]
        .as_str()
        .or(apitap["kind"].as_str())
        .unwrap_or("apitap");
    prune(json!({
        "@timestamp": iso_ms(&f["time"]),
        "ecs": {"version": ECS_VERSION},
        "message": f["message"],
        "event": {
            "kind": "alert",
            "module": "apitap",
            "dataset": dataset,
            "category": category,
            "type": ["info"],
            "action": f["activity_name"].as_str().map(str::to_lowercase),
            "id": f["metadata"]["uid"],
            "severity": f["severity_id"],
            "created": iso_ms(&info["created_time"]),
            "start": iso_ms(&info["first_seen_time"]),
            "end": iso_ms(&info["last_seen_time"]),
            "risk_score": f["confidence_score"],
        },
        "rule": {
            "id": info["analytic"]["uid"].as_str().unwrap_or(rule_name),
            "name": rule_name,
            "description": info["title"],
            "ruleset": "apitap",
        },
        "threat": threat,
        "tags": info["types"],
        "labels": {"finding_uid": info["uid"], "ocsf_class_uid": class},
        "observer": {"vendor": "apitap", "product": "apitap", "type": "api-security"},
        "source": {"ip": source_ip},
        "user": {"name": user},
        "url": {"domain": domain, "path": path},
        "http": {"request": {"method": method}},
        "apitap": apitap,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_finding_maps_to_ecs_alert() {
        let ocsf = json!({
            "class_uid": 2004, "activity_name": "Create", "severity_id": 4, "time": 1_700_000_000_123u64,
            "confidence_score": 80, "message": "Credential stuffing by 10.0.0.9",
            "metadata": {"uid": "abc-0", "version": "1.3.0"},
            "finding_info": {
                "uid": "abc", "title": "Credential stuffing by 10.0.0.9",
                "created_time": 1_700_000_000_123u64, "first_seen_time": 1_699_999_999_000u64,
                "types": ["API Threat", "OAT-008 Credential Stuffing"],
                "analytic": {"name": "credential_stuffing", "uid": "apitap.detect.credential_stuffing"},
                "attacks": [{"technique": {"uid": "T1110", "name": "Brute Force"},
                             "sub_technique": {"uid": "T1110.004", "name": "Credential Stuffing"},
                             "tactic": {"uid": "TA0006", "name": "Credential Access"}}]
            },
            "unmapped": {"apitap": {
                "actor": {"client_ip": "10.0.0.9", "login_user": "login_user:1a2b"},
                "endpoint": {"service": "api.bank", "method": "POST", "template": "/login"}
            }}
        });
        let e = from_ocsf(&ocsf);
        assert_eq!(e["@timestamp"], "2023-11-14T22:13:20.123Z");
        assert_eq!(e["event"]["kind"], "alert");
        assert_eq!(e["event"]["action"], "create");
        assert_eq!(e["rule"]["name"], "credential_stuffing");
        assert_eq!(e["threat"]["technique"][0]["id"], "T1110");
        assert_eq!(e["threat"]["technique_subtechnique"][0]["id"], "T1110.004");
        assert_eq!(e["source"]["ip"], "10.0.0.9");
        assert_eq!(e["user"]["name"], "login_user:1a2b");
        assert_eq!(e["url"]["path"], "/login");
        assert_eq!(e["http"]["request"]["method"], "POST");
        assert_eq!(e["labels"]["finding_uid"], "abc");
        // Absent OCSF fields leave no empty ECS fields.
        assert!(e["event"].get("end").is_none());
    }

    #[test]
    fn weak_point_maps_without_threat() {
        let ocsf = json!({
            "class_uid": 2007, "activity_name": "Create", "severity_id": 3, "time": 0,
            "metadata": {"uid": "u"}, "finding_info": {"uid": "u", "title": "Login via GET"},
            "unmapped": {"apitap": {"kind": "login_via_get", "service": "api", "method": "GET",
                                    "template": "/login"}}
        });
        let e = from_ocsf(&ocsf);
        assert_eq!(e["rule"]["name"], "login_via_get");
        assert_eq!(e["event"]["dataset"], "apitap.posture");
        assert!(e.get("threat").is_none());
        assert_eq!(e["url"]["path"], "/login");
    }
}
