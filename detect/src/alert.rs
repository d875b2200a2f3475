//! The one findings vocabulary of apitap (issue 13): every alert — a threat detection
//! ([`Finding`]), an inventory change, a weak point — becomes one typed [`Alert`] before it is
//! rendered. [`crate::ocsf::render`] is the only OCSF renderer (Detection Finding 2004, Data
//! Security Finding 2006, Application Security Posture Finding 2007); the analyzer's ECS
//! renderer reads the same value; the alert key (Kafka message key) is [`Alert::uid`].
//!
//! The value carries what the OCSF document says, typed: class, activity, the one
//! [`Severity`], times, title, types, analytic, ATT&CK techniques, the endpoint (the OCSF
//! resource), evidences, and class-specific objects on the [`FindingClass`] itself (the
//! `data_security` of a 2006). What is apitap's own (detector counters, change details, weak
//! point evidence) stays one JSON object, rendered as `unmapped.apitap` (OCSF `json_t`).

use serde_json::{Map, Value, json};

use crate::finding::{Activity, Attack, Finding, Severity};

/// OCSF class of an alert (category 2 Findings), holding the objects only that class has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindingClass {
    /// *Detection Finding* (OCSF class 2004): threat detections; names its `type_name`.
    Detection,
    /// *Data Security Finding* (OCSF class 2006): data-exposure weak points, with the OCSF
    /// `data_security` object when the weak point is about one label.
    DataSecurity(Option<DataSecurity>),
    /// *Application Security Posture Finding* (OCSF class 2007): inventory changes and the
    /// other weak points; its OCSF `application` is the endpoint's service.
    Posture,
}

impl FindingClass {
    /// OCSF `class_uid`.
    pub fn uid(&self) -> u32 {
        match self {
            FindingClass::Detection => 2004,
            FindingClass::DataSecurity(_) => 2006,
            FindingClass::Posture => 2007,
        }
    }

    /// OCSF `class_name`.
    pub fn name(&self) -> &'static str {
        match self {
            FindingClass::Detection => "Detection Finding",
            FindingClass::DataSecurity(_) => "Data Security Finding",
            FindingClass::Posture => "Application Security Posture Finding",
        }
    }
}

/// OCSF `data_security` object of a Data Security Finding (class 2006): found by apitap in
/// API traffic (detection system 99 "Other"), data in transit (lifecycle state 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSecurity {
    /// Data category: the label's class (`personal`, `financial`, …).
    pub category: String,
    /// The rule that found the data: the label name.
    pub detection_pattern: String,
    /// What matched: the label name again (values never leave apitap).
    pub pattern_match: String,
}

/// Which part of apitap raised an alert: its OCSF `metadata.log_name` and
/// `metadata.product.feature.name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Threat detections (`apitap_detections`, feature `detect`).
    Detection,
    /// The inventory's change log (`apitap_inventory_changes`, feature `inventory`).
    Inventory,
    /// Weak points of the sensitive-data labelling (`apitap_weak_points`, feature `labels`).
    WeakPoint,
}

impl Source {
    /// OCSF `metadata.log_name`.
    pub fn log_name(self) -> &'static str {
        match self {
            Source::Detection => "apitap_detections",
            Source::Inventory => "apitap_inventory_changes",
            Source::WeakPoint => "apitap_weak_points",
        }
    }

    /// OCSF `metadata.product.feature.name`.
    pub fn feature(self) -> &'static str {
        match self {
            Source::Detection => "detect",
            Source::Inventory => "inventory",
            Source::WeakPoint => "labels",
        }
    }
}

/// The events a finding aggregates (detections): OCSF `start_time`, `end_time`, `count`,
/// `finding_info.first_seen_time`, `last_seen_time` and `related_events_count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First event, µs since the epoch.
    pub start_us: u64,
    /// Last event so far, µs since the epoch.
    pub end_us: u64,
    /// Events attributed to the finding.
    pub events: u64,
}

/// OCSF `finding_info.analytic` (Analytic object): what raised the finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analytic {
    /// `uid` (`apitap.detect.credential_stuffing`).
    pub uid: String,
    /// `name` (`credential_stuffing`).
    pub name: String,
    /// `type_id` / `type`.
    pub kind: AnalyticType,
}

/// OCSF analytic `type_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnalyticType {
    /// 2 Behavioral: the detectors model actor and endpoint behaviour over windows.
    Behavioral = 2,
}

impl AnalyticType {
    /// OCSF caption.
    pub fn name(self) -> &'static str {
        match self {
            AnalyticType::Behavioral => "Behavioral",
        }
    }
}

/// The API endpoint an alert is about: the OCSF resource (`resources[0]`, type `API
/// Endpoint`), the ECS `url` and `http.request.method`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiEndpoint {
    /// Inventory endpoint id, when the alert names one (`resources[0].uid`).
    pub uid: Option<String>,
    /// Service (Host).
    pub service: String,
    /// Method (`*` for campaigns over many methods).
    pub method: String,
    /// Template (`*` for campaigns over many endpoints).
    pub template: String,
}

/// One OCSF evidence (Evidence Artifacts object): an actor or a masked sample request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Evidence {
    /// `src_endpoint.ip`.
    pub src_ip: Option<String>,
    /// `user.uid`: an account (keyed hash).
    pub user_uid: Option<String>,
    /// `user.name`: a user name, masked or a keyed hash.
    pub user_name: Option<String>,
    /// `http_request`.
    pub request: Option<HttpRequest>,
    /// `http_response.code`.
    pub response_code: Option<u16>,
    /// `dst_endpoint.ip` and `.port`: the server.
    pub dst: Option<(String, u16)>,
    /// `container`, and the rest of the server's workload (unit, processes, pod, controller)
    /// under `data.server_workload` (R-CAP-5).
    pub server_workload: Option<std::sync::Arc<apitap_schema::Workload>>,
    /// `data` (OCSF `json_t`): actor keys, sample time, user-agent family, record counts.
    pub data: Map<String, Value>,
}

/// OCSF `http_request` of an evidence: method and URL, values masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// `http_method`.
    pub method: String,
    /// `url.hostname`.
    pub hostname: String,
    /// `url.path`, ID-like segments masked.
    pub path: String,
    /// `url.query_string`, every value masked, when there was one.
    pub query: Option<String>,
}

/// One alert of any source, as OCSF 1.x (category 2 Findings) describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// OCSF class and its class-specific objects.
    pub class: FindingClass,
    /// What raised it.
    pub source: Source,
    /// OCSF `activity_id`: Create, Update, Close (`status` Closed).
    pub activity: Activity,
    /// OCSF `severity_id`.
    pub severity: Severity,
    /// OCSF `confidence_score` 0–100 (and `confidence_id`), when the source rates it.
    pub confidence: Option<u8>,
    /// OCSF `is_alert`, when the source says.
    pub is_alert: Option<bool>,
    /// `finding_info.uid`: the stable id of the finding, its key on the alert topic.
    pub uid: String,
    /// Number of this report among the reports of one finding (detections: 0 is the Create):
    /// `metadata.uid` is then `{uid}-{seq}` and `metadata.correlation_uid` the `uid`; `None`
    /// for one report per uid (`metadata.uid` = `uid`).
    pub seq: Option<u32>,
    /// Kind within the source: the detection kind (`per_source`), the inventory change
    /// (`discovered`), the weak point (`login_via_get`). The ECS `rule.name` without an
    /// analytic.
    pub kind: String,
    /// One-line title: `message` and `finding_info.title`.
    pub title: String,
    /// `finding_info.desc`.
    pub desc: Option<String>,
    /// `finding_info.types`.
    pub types: Vec<String>,
    /// `metadata.labels` (OWASP / ATT&CK mapping of detections), when any.
    pub labels: Vec<String>,
    /// When this report was produced (event time), µs since the epoch: `time`.
    pub time_us: u64,
    /// When the finding was first reported, µs: `finding_info.created_time`.
    pub created_us: u64,
    /// When the finding last changed, µs: `finding_info.modified_time`.
    pub modified_us: Option<u64>,
    /// The events the finding aggregates.
    pub span: Option<Span>,
    /// `finding_info.analytic`.
    pub analytic: Option<Analytic>,
    /// `finding_info.attacks` (MITRE ATT&CK, version [`crate::ocsf::ATTACK_VERSION`]).
    pub attacks: Vec<Attack>,
    /// The endpoint (`resources`; `application` of a posture finding).
    pub endpoint: ApiEndpoint,
    /// The address the alert is about (ECS `source.ip`): the actor's, else the first source
    /// of a distributed campaign.
    pub src_ip: Option<String>,
    /// The account the alert is about, a keyed hash (ECS `user.name`).
    pub user: Option<String>,
    /// `evidences`, when any.
    pub evidences: Vec<Evidence>,
    /// apitap's own record of the finding (a JSON object): `unmapped.apitap`, ECS `apitap`.
    pub apitap: Value,
}

impl Alert {
    /// OCSF `metadata.uid` (ECS `event.id`): the uid of this report.
    pub fn report_uid(&self) -> String {
        match self.seq {
            Some(seq) => format!("{}-{seq}", self.uid),
            None => self.uid.clone(),
        }
    }
}

fn ms(us: u64) -> u64 {
    us / 1_000
}

impl From<&Finding> for Alert {
    /// A campaign transition as a Detection Finding (OCSF class 2004), with the OWASP API
    /// Top 10 2023, OWASP OAT and MITRE ATT&CK mapping of its detector (`finding_info.types`,
    /// `finding_info.attacks`, `metadata.labels`).
    fn from(f: &Finding) -> Alert {
        let kind = f.kind;
        let detector = f.detector.name();
        let attacks = f.detector.attacks(kind);
        let owasp = f.detector.owasp_api(kind);
        let oat = f.detector.oat();
        let mut labels: Vec<String> = vec![format!("apitap:detector:{detector}")];
        labels.extend(owasp.iter().map(|c| format!("owasp-api-2023:{c}")));
        labels.extend(
            oat.iter()
                .map(|o| format!("owasp-oat:{}", o.split(' ').next().unwrap_or(o))),
        );
        labels.extend(attacks.iter().map(|a| {
            format!(
                "mitre-attack:{}",
                a.sub_technique.map_or(a.technique, |(uid, _)| uid)
            )
        }));
        let mut types = vec![
            "API Threat".to_owned(),
            detector.to_owned(),
            format!("{detector}:{kind}"),
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
        // Actor evidence first, even without samples (never empty: OCSF recommends evidences).
        let mut evidences = Vec::with_capacity(1 + f.samples.len());
        evidences.push(Evidence {
            src_ip: f.actor_key("client_ip").map(str::to_owned),
            user_uid: f
                .actor_key("account")
                .or(f.actor_key("login_user"))
                .map(str::to_owned),
            data: Map::from_iter([("actor_keys".to_owned(), Value::Object(actor_keys.clone()))]),
            ..Evidence::default()
        });
        evidences.extend(f.samples.iter().map(|s| {
            let mut data = Map::new();
            data.insert("time".into(), json!(ms(s.time_us)));
            data.insert("user_agent_family".into(), json!(s.user_agent_family));
            if let Some(r) = s.records {
                data.insert("sensitive_records".into(), json!(r));
            }
            if let Some((outcome, signal)) = s.outcome {
                data.insert("login_outcome".into(), json!(outcome));
                data.insert("login_outcome_signal".into(), json!(signal));
            }
            Evidence {
                src_ip: Some(s.client_ip.to_string()),
                user_uid: None,
                user_name: s.login_user.clone(),
                request: Some(HttpRequest {
                    method: s.method.clone(),
                    hostname: f.endpoint.service.clone(),
                    path: s.path.clone(),
                    query: s.query.clone(),
                }),
                response_code: s.status,
                dst: s.server.map(|(ip, port)| (ip.to_string(), port)),
                server_workload: s.server_workload.clone(),
                data,
            }
        }));
        let actor_str = |k: &str| actor_keys.get(k).and_then(Value::as_str);
        let src_ip = actor_str("client_ip")
            .map(str::to_owned)
            .or_else(|| f.sources.first().map(ToString::to_string));
        let user = actor_str("account")
            .or(actor_str("login_user"))
            .or(actor_str("jwt_sub"))
            .map(str::to_owned);
        let desc = format!(
            "{} ({kind}); counters: {}",
            f.title,
            Value::Object(counts.clone())
        );
        let apitap = json!({
            "detector": detector,
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
        });
        let mut apitap = apitap;
        if f.source_count > 1 && !f.networks.is_empty() {
            apitap["networks"] = f
                .networks
                .iter()
                .map(|(n, k)| json!({"network": n, "sources": k}))
                .collect();
            if f.networks_other > 0 {
                apitap["networks_other_sources"] = json!(f.networks_other);
            }
        }
        Alert {
            class: FindingClass::Detection,
            source: Source::Detection,
            activity: f.activity,
            severity: f.severity,
            confidence: Some(f.confidence),
            is_alert: Some(f.activity != Activity::Close),
            uid: f.uid.clone(),
            seq: Some(f.seq),
            kind: kind.to_owned(),
            title: f.title.clone(),
            desc: Some(desc),
            types,
            labels,
            time_us: f.time_us,
            created_us: f.created_us,
            modified_us: Some(f.time_us),
            span: Some(Span {
                start_us: f.start_us,
                end_us: f.end_us,
                events: f.events,
            }),
            analytic: Some(Analytic {
                uid: format!("apitap.detect.{detector}"),
                name: detector.to_owned(),
                kind: AnalyticType::Behavioral,
            }),
            attacks,
            endpoint: ApiEndpoint {
                uid: None,
                service: f.endpoint.service.clone(),
                method: f.endpoint.method.clone(),
                template: f.endpoint.template.clone(),
            },
            src_ip,
            user,
            evidences,
            apitap,
        }
    }
}
