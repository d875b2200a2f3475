//! OCSF 1.x output (R-BUS-3): [`render`] is apitap's one OCSF renderer. It writes any
//! [`Alert`] — a *Detection Finding* (class 2004), a *Data Security Finding* (2006) or an
//! *Application Security Posture Finding* (2007), category 2 Findings — with `activity_id`
//! Create (1) / Update (2) / Close (3), a stable `finding_info.uid`, times, the endpoint as
//! the resource, evidences, the OWASP API Top 10 2023, OWASP OAT and MITRE ATT&CK mapping
//! (`finding_info.attacks`, `finding_info.types`, `metadata.labels`) and apitap's own record
//! under `unmapped.apitap`. [`detection_finding`] renders a campaign transition ([`Finding`]).
//!
//! [`validate`] checks any apitap finding (2004, 2006, 2007) against the vendored compact
//! schema `detect/tests/data/ocsf/ocsf-1.x-findings.json` (extracted from the OCSF schema
//! repository; see its `_source`): required attributes present and non-null, attribute types,
//! enum values and their captions, unknown attributes, `at_least_one` constraints,
//! class/category uids, and `type_uid = class_uid × 100 + activity_id`.
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use crate::alert::{Alert, Evidence, FindingClass};
use crate::finding::{Activity, Finding};

/// OCSF schema version of every apitap finding (detections, inventory changes, weak points).
pub const OCSF_VERSION: &str = "1.3.0";

/// ATT&CK version of the technique ids.
pub const ATTACK_VERSION: &str = "15";

fn ms(us: u64) -> u64 {
    us / 1_000
}

/// The OCSF Detection Finding (class 2004) of a campaign transition.
pub fn detection_finding(f: &Finding) -> Value {
    render(&Alert::from(f))
}

/// OCSF `evidences[]` (Evidence Artifacts object).
fn evidence(e: &Evidence) -> Value {
    let mut v = Map::new();
    if let Some(ip) = &e.src_ip {
        v.insert("src_endpoint".into(), json!({"ip": ip}));
    }
    if let Some(r) = &e.request {
        let mut url = json!({"hostname": r.hostname, "path": r.path});
        if let Some(q) = &r.query {
            url["query_string"] = json!(q);
        }
        v.insert(
            "http_request".into(),
            json!({"http_method": r.method, "url": url}),
        );
    }
    if let Some(code) = e.response_code {
        v.insert("http_response".into(), json!({"code": code}));
    }
    if let Some((ip, port)) = &e.dst {
        v.insert("dst_endpoint".into(), json!({"ip": ip, "port": port}));
    }
    let mut data = e.data.clone();
    if let Some(w) = &e.server_workload {
        workload(w, &mut v, &mut data);
    }
    if e.user_uid.is_some() || e.user_name.is_some() {
        let mut user = Map::new();
        if let Some(uid) = &e.user_uid {
            user.insert("uid".into(), json!(uid));
        }
        if let Some(name) = &e.user_name {
            user.insert("name".into(), json!(name));
        }
        v.insert("user".into(), Value::Object(user));
    }
    if !data.is_empty() {
        v.insert("data".into(), Value::Object(data));
    }
    Value::Object(v)
}

/// The server's workload (R-CAP-5): the OCSF `container` object of the evidence (`uid`,
/// `name`, `runtime`, `pod_uuid`, `orchestrator`) when it ran in one, and everything else
/// (unit, processes, namespace, pod, controller) in the evidence's `data.server_workload`.
fn workload(
    w: &apitap_schema::Workload,
    evidence: &mut Map<String, Value>,
    data: &mut Map<String, Value>,
) {
    let k = w.kubernetes.as_ref();
    if let Some(id) = &w.container_id {
        let mut c = Map::new();
        c.insert("uid".into(), json!(id));
        if let Some(name) = k.and_then(|k| k.container.as_ref()) {
            c.insert("name".into(), json!(name));
        }
        if let Some(rt) = &w.container_runtime {
            c.insert("runtime".into(), json!(rt));
        }
        if let Some(pod) = &w.pod_uid {
            c.insert("pod_uuid".into(), json!(pod));
            c.insert("orchestrator".into(), json!("Kubernetes"));
        }
        evidence.insert("container".into(), Value::Object(c));
    }
    let mut d = Map::new();
    if let Some(u) = &w.unit {
        d.insert("unit".into(), json!(u));
    }
    if !w.processes.is_empty() {
        d.insert("processes".into(), json!(w.processes));
    }
    if let Some(k) = k {
        d.insert("namespace".into(), json!(k.namespace));
        d.insert("pod".into(), json!(k.pod));
        if let (Some(kind), Some(name)) = (&k.workload_kind, &k.workload_name) {
            d.insert("workload".into(), json!(format!("{kind}/{name}")));
        }
    }
    if !d.is_empty() {
        data.insert("server_workload".into(), Value::Object(d));
    }
}

/// The OCSF finding of an alert: the class's own attributes (`type_name` of a Detection
/// Finding 2004, `data_security` of a Data Security Finding 2006, `application` of an
/// Application Security Posture Finding 2007) and whichever optional ones the alert has.
pub fn render(a: &Alert) -> Value {
    let class_uid = u64::from(a.class.uid());
    let activity = a.activity as u64;
    let (status_id, status) = match a.activity {
        Activity::Close => (99, "Closed"),
        _ => (1, "New"),
    };
    let mut doc = Map::new();
    let mut put = |k: &str, v: Value| {
        doc.insert(k.to_owned(), v);
    };
    put("class_uid", json!(class_uid));
    put("class_name", json!(a.class.name()));
    put("category_uid", json!(2));
    put("category_name", json!("Findings"));
    put("activity_id", json!(activity));
    put("activity_name", json!(a.activity.name()));
    put("type_uid", json!(class_uid * 100 + activity));
    if a.class == FindingClass::Detection {
        put(
            "type_name",
            json!(format!("{}: {}", a.class.name(), a.activity.name())),
        );
    }
    put("severity_id", json!(a.severity as u8));
    put("severity", json!(a.severity.name()));
    put("status_id", json!(status_id));
    put("status", json!(status));
    if let Some(c) = a.confidence {
        let confidence_id = match c {
            0..=39 => 1,
            40..=74 => 2,
            _ => 3,
        };
        put("confidence_id", json!(confidence_id));
        put("confidence_score", json!(c));
    }
    if let Some(is_alert) = a.is_alert {
        put("is_alert", json!(is_alert));
    }
    put("time", json!(ms(a.time_us)));
    if let Some(s) = &a.span {
        put("start_time", json!(ms(s.start_us)));
        put("end_time", json!(ms(s.end_us)));
        put("count", json!(s.events));
    }
    put("message", json!(a.title));

    let mut metadata = json!({
        "version": OCSF_VERSION,
        "uid": a.report_uid(),
        "log_name": a.source.log_name(),
        "product": {"name": "apitap", "vendor_name": "apitap", "feature": {"name": a.source.feature()}},
    });
    if a.seq.is_some() {
        metadata["correlation_uid"] = json!(a.uid);
    }
    if !a.labels.is_empty() {
        metadata["labels"] = json!(a.labels);
    }
    put("metadata", metadata);

    let mut info = json!({
        "uid": a.uid,
        "title": a.title,
        "types": a.types,
        "created_time": ms(a.created_us),
    });
    if let Some(desc) = &a.desc {
        info["desc"] = json!(desc);
    }
    if let Some(s) = &a.span {
        info["first_seen_time"] = json!(ms(s.start_us));
        info["last_seen_time"] = json!(ms(s.end_us));
        info["related_events_count"] = json!(s.events);
    }
    if let Some(m) = a.modified_us {
        info["modified_time"] = json!(ms(m));
    }
    if let Some(an) = &a.analytic {
        info["analytic"] = json!({
            "uid": an.uid,
            "name": an.name,
            "type_id": an.kind as u8,
            "type": an.kind.name(),
        });
    }
    if !a.attacks.is_empty() {
        let attacks: Vec<Value> = a
            .attacks
            .iter()
            .map(|t| {
                let mut v = json!({
                    "technique": {"uid": t.technique, "name": t.technique_name},
                    "tactic": {"uid": t.tactic, "name": t.tactic_name},
                    "version": ATTACK_VERSION,
                });
                if let Some((uid, name)) = t.sub_technique {
                    v["sub_technique"] = json!({"uid": uid, "name": name});
                }
                v
            })
            .collect();
        info["attacks"] = Value::Array(attacks);
    }
    put("finding_info", info);

    let ep = &a.endpoint;
    match &a.class {
        FindingClass::Detection => {}
        FindingClass::DataSecurity(ds) => {
            if let Some(ds) = ds {
                // Found in API traffic (detection system 99 "Other"), data in transit.
                put(
                    "data_security",
                    json!({
                        "detection_system_id": 99,
                        "detection_system": "API traffic monitor",
                        "category": ds.category,
                        "data_lifecycle_state_id": 2,
                        "data_lifecycle_state": "Data in Transit",
                        "detection_pattern": ds.detection_pattern,
                        "pattern_match": ds.pattern_match,
                    }),
                );
            }
        }
        // `application` is an attribute of the posture class (2007) only; the endpoint is in
        // `resources` for every class.
        FindingClass::Posture => put("application", json!({"name": ep.service})),
    }
    let mut resource = json!({
        "type": "API Endpoint",
        "name": format!("{} {}", ep.method, ep.template),
        "group": {"name": ep.service},
    });
    if let Some(uid) = &ep.uid {
        resource["uid"] = json!(uid);
    }
    put("resources", json!([resource]));
    if !a.evidences.is_empty() {
        put(
            "evidences",
            Value::Array(a.evidences.iter().map(evidence).collect()),
        );
    }
    put("unmapped", json!({"apitap": a.apitap}));
    Value::Object(doc)
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
pub(crate) mod tests {
    use super::*;
    use crate::finding::{ActorKey, Detector, EndpointRef, Sample, Severity};

    /// A credential-stuffing campaign transition (also used by `crate::ecs`'s tests).
    pub(crate) fn finding(activity: Activity) -> Finding {
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
            networks: Vec::new(),
            networks_other: 0,
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
                outcome: Some(("failure", "status")),
                records: None,
                server: None,
                server_workload: None,
            }],
        }
    }

    /// The server's workload (schema 1.4) reaches the SIEM: OCSF `dst_endpoint` and
    /// `container` on the sample's evidence, the pod and controller in its `data`, and the
    /// document still validates.
    #[test]
    fn sample_evidence_names_the_serving_pod() {
        let mut f = finding(Activity::Create);
        f.samples[0].server = Some(("10.244.1.17".parse().unwrap(), 8080));
        f.samples[0].server_workload = Some(std::sync::Arc::new(apitap_schema::Workload {
            cgroup: "/kubepods.slice/x".into(),
            uid: 0,
            processes: vec!["nginx".into()],
            container_id: Some("ab".repeat(32)),
            container_runtime: Some("containerd".into()),
            pod_uid: Some("3f9d2c8e-5b1a-4e7f-9c6d-2a8b7e1f4c3d".into()),
            kubernetes: Some(apitap_schema::KubernetesPod {
                namespace: "shop".into(),
                pod: "web-6b7f9c8d5-q4xz2".into(),
                container: Some("nginx".into()),
                workload_kind: Some("Deployment".into()),
                workload_name: Some("web".into()),
            }),
            ..Default::default()
        }));
        let doc = detection_finding(&f);
        validate(&doc).unwrap();
        let ev = &doc["evidences"][1];
        assert_eq!(
            ev["dst_endpoint"],
            json!({"ip": "10.244.1.17", "port": 8080})
        );
        assert_eq!(
            ev["container"],
            json!({"uid": "ab".repeat(32), "name": "nginx", "runtime": "containerd",
                   "pod_uuid": "3f9d2c8e-5b1a-4e7f-9c6d-2a8b7e1f4c3d", "orchestrator": "Kubernetes"})
        );
        assert_eq!(
            ev["data"]["server_workload"],
            json!({"processes": ["nginx"], "namespace": "shop", "pod": "web-6b7f9c8d5-q4xz2",
                   "workload": "Deployment/web"})
        );
        // The actor's evidence names no server.
        assert!(doc["evidences"][0].get("dst_endpoint").is_none());
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

    /// The whole document, byte for byte, as apitap wrote it before every alert became one
    /// typed `Alert` (issue 13): SIEM parsers downstream read these fields.
    #[test]
    fn detection_finding_document_is_unchanged() {
        let doc = detection_finding(&finding(Activity::Create));
        validate(&doc).unwrap();
        assert_eq!(
            doc.to_string(),
            r#"{"activity_id":1,"activity_name":"Create","category_name":"Findings","category_uid":2,"class_name":"Detection Finding","class_uid":2004,"confidence_id":3,"confidence_score":85,"count":120,"end_time":1700000050000,"evidences":[{"data":{"actor_keys":{"client_ip":"203.0.113.7","subnet":"203.0.113.0/24"}},"src_endpoint":{"ip":"203.0.113.7"}},{"data":{"login_outcome":"failure","login_outcome_signal":"status","time":1700000000000,"user_agent_family":"ffuf"},"http_request":{"http_method":"POST","url":{"hostname":"api","path":"/login"}},"http_response":{"code":401},"src_endpoint":{"ip":"203.0.113.7"},"user":{"name":"a****@example.com"}}],"finding_info":{"analytic":{"name":"credential_stuffing","type":"Behavioral","type_id":2,"uid":"apitap.detect.credential_stuffing"},"attacks":[{"sub_technique":{"name":"Credential Stuffing","uid":"T1110.004"},"tactic":{"name":"Credential Access","uid":"TA0006"},"technique":{"name":"Brute Force","uid":"T1110"},"version":"15"}],"created_time":1700000060000,"desc":"Credential stuffing by 203.0.113.7 on POST api /login (per_source); counters: {\"attempts\":120,\"distinct_usernames\":118}","first_seen_time":1700000000000,"last_seen_time":1700000050000,"modified_time":1700000060000,"related_events_count":120,"title":"Credential stuffing by 203.0.113.7 on POST api /login","types":["API Threat","credential_stuffing","credential_stuffing:per_source","API2:2023","API4:2023","OAT-008 Credential Stuffing"],"uid":"0123456789abcdef0123456789abcdef"},"is_alert":true,"message":"Credential stuffing by 203.0.113.7 on POST api /login","metadata":{"correlation_uid":"0123456789abcdef0123456789abcdef","labels":["apitap:detector:credential_stuffing","owasp-api-2023:API2:2023","owasp-api-2023:API4:2023","owasp-oat:OAT-008","mitre-attack:T1110.004"],"log_name":"apitap_detections","product":{"feature":{"name":"detect"},"name":"apitap","vendor_name":"apitap"},"uid":"0123456789abcdef0123456789abcdef-0","version":"1.3.0"},"resources":[{"group":{"name":"api"},"name":"POST /login","type":"API Endpoint"}],"severity":"High","severity_id":4,"start_time":1700000000000,"status":"New","status_id":1,"time":1700000060000,"type_name":"Detection Finding: Create","type_uid":200401,"unmapped":{"apitap":{"actor":{"client_ip":"203.0.113.7","subnet":"203.0.113.0/24"},"counts":{"attempts":120,"distinct_usernames":118},"detector":"credential_stuffing","endpoint":{"method":"POST","service":"api","template":"/login"},"kind":"per_source","seq":0,"source_count":1,"sources":["203.0.113.7"]}}}"#
        );
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
