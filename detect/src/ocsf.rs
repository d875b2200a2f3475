//! OCSF 1.x output (R-BUS-3): [`detection_finding`] renders a [`Finding`] as a *Detection
//! Finding* (class 2004, category 2 Findings) with `activity_id` Create (1) / Update (2) /
//! Close (3), a stable `finding_info.uid`, the time range, counts, evidence (actor keys, the
//! endpoint, masked sample requests) and the OWASP API Top 10 2023, OWASP OAT and MITRE ATT&CK
//! mapping (`finding_info.attacks`, `finding_info.types`, `metadata.labels`).
//!
//! [`validate`] checks any apitap finding (2004, 2006, 2007) against the vendored compact
//! schema `detect/tests/data/ocsf/ocsf-1.x-findings.json` (extracted from the OCSF schema
//! repository; see its `_source`): required attributes present and non-null, attribute types,
//! enum values and their captions, unknown attributes, `at_least_one` constraints,
//! class/category uids, and `type_uid = class_uid × 100 + activity_id`.
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use crate::finding::{Activity, Finding};

/// OCSF schema version of the findings (the analyzer's other findings use the same).
pub const OCSF_VERSION: &str = "1.3.0";

/// ATT&CK version of the technique ids.
pub const ATTACK_VERSION: &str = "15";

fn ms(us: u64) -> u64 {
    us / 1_000
}

/// The OCSF Detection Finding of a campaign transition.
pub fn detection_finding(f: &Finding) -> Value {
    let activity = f.activity as u64;
    let kind = f.kind;
    let attacks: Vec<Value> = f
        .detector
        .attacks(kind)
        .iter()
        .map(|a| {
            let mut v = json!({
                "technique": {"uid": a.technique, "name": a.technique_name},
                "tactic": {"uid": a.tactic, "name": a.tactic_name},
                "version": ATTACK_VERSION,
            });
            if let Some((uid, name)) = a.sub_technique {
                v["sub_technique"] = json!({"uid": uid, "name": name});
            }
            v
        })
        .collect();
    let owasp = f.detector.owasp_api(kind);
    let oat = f.detector.oat();
    let mut labels: Vec<String> = vec![format!("apitap:detector:{}", f.detector.name())];
    labels.extend(owasp.iter().map(|c| format!("owasp-api-2023:{c}")));
    labels.extend(
        oat.iter()
            .map(|o| format!("owasp-oat:{}", o.split(' ').next().unwrap_or(o))),
    );
    labels.extend(f.detector.attacks(kind).iter().map(|a| {
        format!(
            "mitre-attack:{}",
            a.sub_technique.map_or(a.technique, |(uid, _)| uid)
        )
    }));
    let mut types = vec![
        "API Threat".to_owned(),
        f.detector.name().to_owned(),
        format!("{}:{kind}", f.detector.name()),
    ];
    types.extend(owasp.iter().map(|c| (*c).to_owned()));
    types.extend(oat.iter().map(|o| (*o).to_owned()));
    let counts: Map<String, Value> = f
        .counts
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    let actor_keys: Map<String, Value> = f
        .actor
        .iter()
        .map(|k| (k.kind.to_owned(), json!(k.value)))
        .collect();
    let mut evidences: Vec<Value> = f
        .samples
        .iter()
        .map(|s| {
            let mut url = json!({"hostname": f.endpoint.service, "path": s.path});
            if let Some(q) = &s.query {
                url["query_string"] = json!(q);
            }
            let mut e = json!({
                "src_endpoint": {"ip": s.client_ip.to_string()},
                "http_request": {"http_method": s.method, "url": url},
                "data": {
                    "time": ms(s.time_us),
                    "user_agent_family": s.user_agent_family,
                },
            });
            if let Some(code) = s.status {
                e["http_response"] = json!({"code": code});
            }
            if let Some(u) = &s.login_user {
                e["user"] = json!({"name": u});
            }
            if let Some(r) = s.records {
                e["data"]["sensitive_records"] = json!(r);
            }
            e
        })
        .collect();
    // Actor evidence even without samples (never empty: OCSF recommends evidences).
    let mut actor_ev = json!({"data": {"actor_keys": actor_keys.clone()}});
    if let Some(ip) = f.actor_key("client_ip") {
        actor_ev["src_endpoint"] = json!({"ip": ip});
    }
    if let Some(acct) = f.actor_key("account").or(f.actor_key("login_user")) {
        actor_ev["user"] = json!({"uid": acct});
    }
    evidences.insert(0, actor_ev);
    let (status_id, status) = match f.activity {
        Activity::Close => (99, "Closed"),
        _ => (1, "New"),
    };
    let resource_name = format!("{} {}", f.endpoint.method, f.endpoint.template);
    let confidence_id = match f.confidence {
        0..=39 => 1,
        40..=74 => 2,
        _ => 3,
    };
    json!({
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": activity,
        "activity_name": f.activity.name(),
        "type_uid": 200_400 + activity,
        "type_name": format!("Detection Finding: {}", f.activity.name()),
        "severity_id": f.severity as u8,
        "severity": f.severity.name(),
        "status_id": status_id,
        "status": status,
        "confidence_id": confidence_id,
        "confidence_score": f.confidence,
        "is_alert": f.activity != Activity::Close,
        "time": ms(f.time_us),
        "start_time": ms(f.start_us),
        "end_time": ms(f.end_us),
        "count": f.events,
        "message": f.title,
        "metadata": {
            "version": OCSF_VERSION,
            "uid": format!("{}-{}", f.uid, f.seq),
            "correlation_uid": f.uid,
            "log_name": "apitap_detections",
            "labels": labels,
            "product": {"name": "apitap", "vendor_name": "apitap", "feature": {"name": "detect"}},
        },
        "finding_info": {
            "uid": f.uid,
            "title": f.title,
            "desc": format!("{} ({kind}); counters: {}", f.title, Value::Object(counts.clone())),
            "types": types,
            "created_time": ms(f.created_us),
            "first_seen_time": ms(f.start_us),
            "last_seen_time": ms(f.end_us),
            "modified_time": ms(f.time_us),
            "analytic": {
                "uid": format!("apitap.detect.{}", f.detector.name()),
                "name": f.detector.name(),
                "type_id": 2,
                "type": "Behavioral",
            },
            "attacks": attacks,
            "related_events_count": f.events,
        },
        "resources": [{
            "type": "API Endpoint",
            "name": resource_name,
            "group": {"name": f.endpoint.service},
        }],
        "evidences": evidences,
        "unmapped": {"apitap": {
            "detector": f.detector.name(),
            "kind": kind,
            "seq": f.seq,
            "actor": actor_keys,
            "endpoint": {
                "service": f.endpoint.service,
                "method": f.endpoint.method,
                "template": f.endpoint.template,
            },
            "counts": counts,
            "sources": f.sources.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "source_count": f.source_count,
        }},
    })
}

fn schema() -> Option<&'static Value> {
    static S: OnceLock<Option<Value>> = OnceLock::new();
    S.get_or_init(|| {
        serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/ocsf/ocsf-1.x-findings.json"
        )))
        .ok()
    })
    .as_ref()
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "string_t" => v.is_string(),
        "integer_t" | "long_t" | "timestamp_t" => v.is_i64() || v.is_u64(),
        "float_t" => v.is_number(),
        "boolean_t" => v.is_boolean(),
        "object" => v.is_object(),
        _ => true, // json_t
    }
}

/// Sibling caption attributes that must match their enum's caption.
const SIBLINGS: &[(&str, &str)] = &[
    ("activity_id", "activity_name"),
    ("severity_id", "severity"),
    ("status_id", "status"),
    ("confidence_id", "confidence"),
    ("type_id", "type"),
];

fn check_object(
    schema: &Value,
    attrs: &Map<String, Value>,
    at_least_one: Option<&Value>,
    v: &Map<String, Value>,
    path: &str,
    errs: &mut Vec<String>,
) {
    for (name, spec) in attrs {
        if spec["requirement"] == "required" && v.get(name).is_none_or(Value::is_null) {
            errs.push(format!("{path}{name}: required attribute missing"));
        }
    }
    if let Some(group) = at_least_one.and_then(Value::as_array)
        && !group
            .iter()
            .filter_map(Value::as_str)
            .any(|n| v.get(n).is_some_and(|x| !x.is_null()))
    {
        errs.push(format!(
            "{}: needs at least one of {}",
            path.trim_end_matches('.'),
            Value::Array(group.clone())
        ));
    }
    for (name, val) in v {
        let Some(spec) = attrs.get(name) else {
            errs.push(format!("{path}{name}: unknown attribute"));
            continue;
        };
        if val.is_null() {
            continue;
        }
        let t = spec["type"].as_str().unwrap_or("json_t");
        let items: Vec<&Value> = if spec["is_array"] == true {
            match val.as_array() {
                Some(a) => a.iter().collect(),
                None => {
                    errs.push(format!("{path}{name}: expected an array"));
                    continue;
                }
            }
        } else {
            vec![val]
        };
        for (i, item) in items.iter().enumerate() {
            let p = if spec["is_array"] == true {
                format!("{path}{name}[{i}]")
            } else {
                format!("{path}{name}")
            };
            if !type_ok(t, item) {
                errs.push(format!("{p}: expected {t}"));
                continue;
            }
            if let Some(en) = spec.get("enum").and_then(Value::as_object) {
                let key = item.as_u64().map(|n| n.to_string()).unwrap_or_default();
                match en.get(&key) {
                    None => errs.push(format!("{p}: {key} is not a defined enum value")),
                    Some(caption) => {
                        if let Some((_, sib)) = SIBLINGS.iter().find(|(id, _)| id == name)
                            && key != "99"
                            && let Some(s) = v.get(*sib).and_then(Value::as_str)
                            && Some(s) != caption.as_str()
                        {
                            errs.push(format!(
                                "{path}{sib}: {s:?} does not match {name} caption {caption}"
                            ));
                        }
                    }
                }
            }
            if t == "object"
                && let (Some(obj), Some(o)) = (spec["object"].as_str(), item.as_object())
            {
                let def = &schema["objects"][obj];
                match def["attributes"].as_object() {
                    Some(a) => check_object(
                        schema,
                        a,
                        def.get("at_least_one"),
                        o,
                        &format!("{p}."),
                        errs,
                    ),
                    None => errs.push(format!("{p}: schema has no object {obj}")),
                }
            }
        }
    }
}

/// Validates an OCSF finding (classes 2004, 2006, 2007) against the vendored schema; the
/// error list names each offending attribute by its path.
pub fn validate(doc: &Value) -> Result<(), Vec<String>> {
    let Some(schema) = schema() else {
        return Err(vec!["vendored OCSF schema is not valid JSON".into()]);
    };
    let Some(obj) = doc.as_object() else {
        return Err(vec!["finding is not a JSON object".into()]);
    };
    let mut errs = Vec::new();
    let class_uid = obj.get("class_uid").and_then(Value::as_u64).unwrap_or(0);
    let Some(class) = schema["classes"].get(class_uid.to_string()) else {
        return Err(vec![format!(
            "class_uid: {class_uid} is not a vendored class (2004, 2006, 2007)"
        )]);
    };
    let mut attrs = schema["base"].as_object().cloned().unwrap_or_default();
    if let Some(extra) = class["attributes"].as_object() {
        attrs.extend(extra.clone());
    }
    // The class's own activity enum.
    if let Some(act) = attrs.get_mut("activity_id") {
        act["enum"] = class["activity_id"].clone();
    }
    check_object(
        schema,
        &attrs,
        class.get("at_least_one"),
        obj,
        "",
        &mut errs,
    );
    if obj.get("category_uid").and_then(Value::as_u64) != class["category_uid"].as_u64() {
        errs.push("category_uid: does not match the class's category (2 Findings)".into());
    }
    if let Some(n) = obj.get("class_name").and_then(Value::as_str)
        && Some(n) != class["caption"].as_str()
    {
        errs.push(format!("class_name: {n:?} is not {}", class["caption"]));
    }
    if let Some(n) = obj.get("category_name").and_then(Value::as_str)
        && Some(n) != class["category_name"].as_str()
    {
        errs.push(format!(
            "category_name: {n:?} is not {}",
            class["category_name"]
        ));
    }
    let activity = obj.get("activity_id").and_then(Value::as_u64).unwrap_or(0);
    if obj.get("type_uid").and_then(Value::as_u64) != Some(class_uid * 100 + activity) {
        errs.push(format!(
            "type_uid: must be class_uid × 100 + activity_id = {}",
            class_uid * 100 + activity
        ));
    }
    match obj["metadata"]["version"].as_str() {
        Some(v) if v.starts_with("1.") && v.split('.').count() == 3 => {}
        _ => errs.push("metadata.version: must be an OCSF 1.x semantic version".into()),
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::{ActorKey, Detector, EndpointRef, Sample, Severity};

    fn finding(activity: Activity) -> Finding {
        Finding {
            activity,
            uid: "0123456789abcdef0123456789abcdef".into(),
            seq: 0,
            detector: Detector::CredentialStuffing,
            kind: "per_source",
            title: "Credential stuffing by 203.0.113.7 on POST api /login".into(),
            severity: Severity::High,
            confidence: 85,
            time_us: 1_700_000_060_000_000,
            created_us: 1_700_000_060_000_000,
            start_us: 1_700_000_000_000_000,
            end_us: 1_700_000_050_000_000,
            events: 120,
            counts: vec![("attempts", 120), ("distinct_usernames", 118)],
            actor: vec![
                ActorKey {
                    kind: "client_ip",
                    value: "203.0.113.7".into(),
                },
                ActorKey {
                    kind: "subnet",
                    value: "203.0.113.0/24".into(),
                },
            ],
            sources: vec!["203.0.113.7".parse().unwrap()],
            source_count: 1,
            endpoint: EndpointRef {
                service: "api".into(),
                method: "POST".into(),
                template: "/login".into(),
            },
            samples: vec![Sample {
                time_us: 1_700_000_000_000_000,
                client_ip: "203.0.113.7".parse().unwrap(),
                method: "POST".into(),
                path: "/login".into(),
                query: None,
                status: Some(401),
                user_agent_family: "ffuf",
                login_user: Some("a****@example.com".into()),
                records: None,
            }],
        }
    }

    #[test]
    fn detection_findings_validate_for_every_activity_and_detector() {
        for act in [Activity::Create, Activity::Update, Activity::Close] {
            for d in Detector::ALL {
                for kind in [
                    "per_source",
                    "distributed",
                    "possible_account_takeover",
                    "account_sharing",
                    "bulk_records",
                    "foreign_access_internal_api",
                ] {
                    let mut f = finding(act);
                    f.detector = d;
                    f.kind = kind;
                    let doc = detection_finding(&f);
                    validate(&doc)
                        .unwrap_or_else(|e| panic!("{d:?} {kind} {act:?}: {e:?}\n{doc:#}"));
                    assert_eq!(doc["type_uid"], 200_400 + act as u64);
                    assert_eq!(doc["finding_info"]["uid"], f.uid);
                }
            }
        }
        let doc = detection_finding(&finding(Activity::Create));
        assert_eq!(
            doc["finding_info"]["attacks"][0]["sub_technique"]["uid"],
            "T1110.004"
        );
        let labels = doc["metadata"]["labels"].to_string();
        assert!(
            labels.contains("owasp-api-2023:API2:2023") && labels.contains("owasp-oat:OAT-008"),
            "{labels}"
        );
        assert_eq!(doc["start_time"], 1_700_000_000_000u64);
        assert_eq!(doc["count"], 120);
    }

    #[test]
    fn validator_catches_each_kind_of_error() {
        let good = detection_finding(&finding(Activity::Create));
        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "finding_info: required",
                Box::new(|d| {
                    d.as_object_mut().unwrap().remove("finding_info");
                }),
            ),
            (
                "finding_info.uid: required",
                Box::new(|d| {
                    d["finding_info"].as_object_mut().unwrap().remove("uid");
                }),
            ),
            (
                "metadata.product: required",
                Box::new(|d| {
                    d["metadata"].as_object_mut().unwrap().remove("product");
                }),
            ),
            (
                "time: expected timestamp_t",
                Box::new(|d| d["time"] = json!("yesterday")),
            ),
            (
                "severity_id: 7 is not",
                Box::new(|d| d["severity_id"] = json!(7)),
            ),
            (
                "severity: \"High\" does not match",
                Box::new(|d| d["severity_id"] = json!(2)),
            ),
            (
                "activity_id: 4 is not",
                Box::new(|d| {
                    d["activity_id"] = json!(4);
                    d["type_uid"] = json!(200_404);
                }),
            ),
            (
                "type_uid: must be",
                Box::new(|d| d["type_uid"] = json!(200_401 + 5)),
            ),
            (
                "category_uid: does not match",
                Box::new(|d| d["category_uid"] = json!(3)),
            ),
            (
                "bogus: unknown attribute",
                Box::new(|d| d["bogus"] = json!(1)),
            ),
            (
                "finding_info.attacks[0]: needs at least one",
                Box::new(|d| d["finding_info"]["attacks"] = json!([{"version": "15"}])),
            ),
            (
                "evidences: expected an array",
                Box::new(|d| d["evidences"] = json!({})),
            ),
            (
                "finding_info.analytic.type_id: required",
                Box::new(|d| {
                    d["finding_info"]["analytic"]
                        .as_object_mut()
                        .unwrap()
                        .remove("type_id");
                }),
            ),
            (
                "class_uid: 2001 is not",
                Box::new(|d| d["class_uid"] = json!(2001)),
            ),
            (
                "metadata.version: must be",
                Box::new(|d| d["metadata"]["version"] = json!("2.0")),
            ),
        ];
        for (want, mutate) in cases {
            let mut d = good.clone();
            mutate(&mut d);
            let errs = validate(&d).expect_err(want);
            assert!(
                errs.iter().any(|e| e.contains(want)),
                "want {want:?}, got {errs:?}"
            );
        }
    }

    #[test]
    fn application_security_posture_needs_one_of_its_groups() {
        let doc = json!({
            "class_uid": 2007, "class_name": "Application Security Posture Finding",
            "category_uid": 2, "category_name": "Findings", "activity_id": 1, "activity_name": "Create",
            "type_uid": 200_701, "severity_id": 3, "severity": "Medium", "time": 1,
            "metadata": {"version": "1.3.0", "product": {"name": "apitap", "vendor_name": "apitap"}},
            "finding_info": {"uid": "x", "title": "t"},
            "application": {"name": "api"},
        });
        validate(&doc).unwrap();
        let mut bad = doc.clone();
        bad.as_object_mut().unwrap().remove("application");
        assert!(
            validate(&bad)
                .unwrap_err()
                .iter()
                .any(|e| e.contains("at least one"))
        );
    }
}
