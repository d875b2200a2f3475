//! Elastic Common Schema (ECS 8.x) rendering of apitap's alerts (the analyzer's
//! `output.alert_format = "ecs"`, issue 7): for SIEMs that ingest ECS rather than OCSF. It
//! reads the same typed [`Alert`] as the OCSF renderer ([`crate::ocsf::render`]) and
//! maps it onto ECS names (event, rule, threat, source, user, url, http), apitap's own details
//! under `apitap`.
//!
//! Nothing is added that the OCSF document does not carry, so the same rules hold: no raw
//! sensitive values (actors are keyed hashes, samples masked).

use crate::alert::{Alert, FindingClass};
use serde_json::{Map, Value, json};

/// ECS version the documents follow.
pub const ECS_VERSION: &str = "8.11.0";

/// `…Z` with milliseconds of a time in µs since the epoch.
fn iso_ms(us: u64) -> Value {
    let ms = us / 1000;
    let base = apitap_schema::time::format_unix_us(ms * 1000);
    Value::String(format!("{}.{:03}Z", base.trim_end_matches('Z'), ms % 1000))
}

/// Drops nulls and empty objects so that absent fields do not become empty ECS fields.
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

/// The ECS document of one alert.
pub fn render(a: &Alert) -> Value {
    let (dataset, category) = match a.class {
        FindingClass::Detection => ("apitap.detections", json!(["intrusion_detection", "web"])),
        FindingClass::DataSecurity(_) => ("apitap.data_security", json!(["web"])),
        FindingClass::Posture => ("apitap.posture", json!(["configuration", "web"])),
    };
    let threat = match a.attacks.first() {
        None => Value::Null,
        Some(first) => json!({
            "framework": "MITRE ATT&CK",
            "technique": a.attacks.iter()
                .map(|t| json!({"id": t.technique, "name": t.technique_name}))
                .collect::<Vec<_>>(),
            "technique_subtechnique": a.attacks.iter()
                .filter_map(|t| t.sub_technique)
                .map(|(id, name)| json!({"id": id, "name": name}))
                .collect::<Vec<_>>(),
            "tactic": {"id": first.tactic, "name": first.tactic_name},
        }),
    };
    let rule_name = a
        .analytic
        .as_ref()
        .map_or(a.kind.as_str(), |an| an.name.as_str());
    let rule_id = a.analytic.as_ref().map_or(rule_name, |an| an.uid.as_str());
    let ep = &a.endpoint;
    prune(json!({
        "@timestamp": iso_ms(a.time_us),
        "ecs": {"version": ECS_VERSION},
        "message": a.title,
        "event": {
            "kind": "alert",
            "module": "apitap",
            "dataset": dataset,
            "category": category,
            "type": ["info"],
            "action": a.activity.name().to_lowercase(),
            "id": a.report_uid(),
            "severity": a.severity as u8,
            "created": iso_ms(a.created_us),
            "start": a.span.map(|s| iso_ms(s.start_us)),
            "end": a.span.map(|s| iso_ms(s.end_us)),
            "risk_score": a.confidence,
        },
        "rule": {
            "id": rule_id,
            "name": rule_name,
            "description": a.title,
            "ruleset": "apitap",
        },
        "threat": threat,
        "tags": a.types,
        "labels": {"finding_uid": a.uid, "ocsf_class_uid": a.class.uid()},
        "observer": {"vendor": "apitap", "product": "apitap", "type": "api-security"},
        "source": {"ip": a.src_ip},
        "user": {"name": a.user},
        "url": {"domain": ep.service, "path": ep.template},
        "http": {"request": {"method": ep.method}},
        "apitap": a.apitap,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Severity;
    use crate::alert::{Analytic, AnalyticType, ApiEndpoint, Source, Span};
    use crate::finding::{Activity, Attack, Finding};

    fn weak_point() -> Alert {
        Alert {
            class: FindingClass::Posture,
            source: Source::WeakPoint,
            activity: Activity::Create,
            severity: Severity::Medium,
            confidence: None,
            is_alert: None,
            uid: "u".into(),
            seq: None,
            kind: "login_via_get".into(),
            title: "Login via GET".into(),
            desc: None,
            types: Vec::new(),
            labels: Vec::new(),
            time_us: 0,
            created_us: 0,
            modified_us: None,
            span: None,
            analytic: None,
            attacks: Vec::new(),
            endpoint: ApiEndpoint {
                uid: None,
                service: "api".into(),
                method: "GET".into(),
                template: "/login".into(),
            },
            src_ip: None,
            user: None,
            evidences: Vec::new(),
            apitap: json!({"kind": "login_via_get", "service": "api", "method": "GET",
                           "template": "/login"}),
        }
    }

    #[test]
    fn detection_finding_maps_to_ecs_alert() {
        let alert = Alert {
            class: FindingClass::Detection,
            source: Source::Detection,
            severity: Severity::High,
            confidence: Some(80),
            uid: "abc".into(),
            seq: Some(0),
            kind: "per_source".into(),
            title: "Credential stuffing by 10.0.0.9".into(),
            types: vec!["API Threat".into(), "OAT-008 Credential Stuffing".into()],
            time_us: 1_700_000_000_123_000,
            created_us: 1_700_000_000_123_000,
            analytic: Some(Analytic {
                uid: "apitap.detect.credential_stuffing".into(),
                name: "credential_stuffing".into(),
                kind: AnalyticType::Behavioral,
            }),
            attacks: vec![Attack {
                technique: "T1110",
                technique_name: "Brute Force",
                sub_technique: Some(("T1110.004", "Credential Stuffing")),
                tactic: "TA0006",
                tactic_name: "Credential Access",
            }],
            endpoint: ApiEndpoint {
                uid: None,
                service: "api.bank".into(),
                method: "POST".into(),
                template: "/login".into(),
            },
            src_ip: Some("10.0.0.9".into()),
            user: Some("login_user:1a2b".into()),
            apitap: json!({
                "actor": {"client_ip": "10.0.0.9", "login_user": "login_user:1a2b"},
                "endpoint": {"service": "api.bank", "method": "POST", "template": "/login"}
            }),
            ..weak_point()
        };
        let e = render(&alert);
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
        // Absent fields leave no empty ECS fields.
        assert!(e["event"].get("end").is_none());
        let spanned = Alert {
            span: Some(Span {
                start_us: 1_699_999_999_000_000,
                end_us: 1_700_000_000_000_000,
                events: 3,
            }),
            ..alert
        };
        assert_eq!(render(&spanned)["event"]["end"], "2023-11-14T22:13:20.000Z");
    }

    /// The campaign transition of `crate::ocsf`'s tests.
    fn campaign(activity: Activity) -> Finding {
        crate::ocsf::tests::finding(activity)
    }

    /// The ECS document of a detection, byte for byte, as apitap wrote it (from the OCSF
    /// document) before every alert became one typed `Alert` (issue 13).
    #[test]
    fn detection_document_is_unchanged() {
        let a = Alert::from(&campaign(Activity::Create));
        assert_eq!(
            render(&a).to_string(),
            r#"{"@timestamp":"2023-11-14T22:14:20.000Z","apitap":{"actor":{"client_ip":"203.0.113.7","subnet":"203.0.113.0/24"},"counts":{"attempts":120,"distinct_usernames":118},"detector":"credential_stuffing","endpoint":{"method":"POST","service":"api","template":"/login"},"kind":"per_source","seq":0,"source_count":1,"sources":["203.0.113.7"]},"ecs":{"version":"8.11.0"},"event":{"action":"create","category":["intrusion_detection","web"],"created":"2023-11-14T22:14:20.000Z","dataset":"apitap.detections","end":"2023-11-14T22:14:10.000Z","id":"0123456789abcdef0123456789abcdef-0","kind":"alert","module":"apitap","risk_score":85,"severity":4,"start":"2023-11-14T22:13:20.000Z","type":["info"]},"http":{"request":{"method":"POST"}},"labels":{"finding_uid":"0123456789abcdef0123456789abcdef","ocsf_class_uid":2004},"message":"Credential stuffing by 203.0.113.7 on POST api /login","observer":{"product":"apitap","type":"api-security","vendor":"apitap"},"rule":{"description":"Credential stuffing by 203.0.113.7 on POST api /login","id":"apitap.detect.credential_stuffing","name":"credential_stuffing","ruleset":"apitap"},"source":{"ip":"203.0.113.7"},"tags":["API Threat","credential_stuffing","credential_stuffing:per_source","API2:2023","API4:2023","OAT-008 Credential Stuffing"],"threat":{"framework":"MITRE ATT&CK","tactic":{"id":"TA0006","name":"Credential Access"},"technique":[{"id":"T1110","name":"Brute Force"}],"technique_subtechnique":[{"id":"T1110.004","name":"Credential Stuffing"}]},"url":{"domain":"api","path":"/login"}}"#
        );
    }

    #[test]
    fn weak_point_maps_without_threat() {
        let e = render(&weak_point());
        assert_eq!(e["rule"]["name"], "login_via_get");
        assert_eq!(e["event"]["dataset"], "apitap.posture");
        assert!(e.get("threat").is_none());
        assert_eq!(e["url"]["path"], "/login");
    }
}
