//! Sensitive-data labelling of every event (R-SEN-1..3, `docs/sensitive-data.md`): one
//! [`Scanner`] pass per event, the classification the inventory records per endpoint, and the
//! weak-point tracker whose findings go to the alerts output as OCSF findings.
//!
//! Events a sensor minimised (`payload` `sample` or `labels`, schema 1.2, R-CAP-8) are not
//! scanned: their bodies are masked, cut or absent, so the labels the sensor shipped with them
//! (from the transaction as captured) are used instead.
//!
//! Nothing here logs or stores values: findings carry label names, locations (field names),
//! counts and masked samples only; the hash key is never logged.

use std::sync::Arc;

use apitap_detect::weak::{EndpointKey, WeakFinding, WeakKind, WeakPointConfig, WeakPointTracker};
use apitap_labels::facts::EventFacts;
use apitap_labels::protobuf::ProtoSchema;
use apitap_labels::{
    Classification, EventLabels, HashKey, KeyFileError, LabelConfig, Labeller, Scanner,
    classify_event, labels_from_wire,
};
use apitap_schema::{ApiEvent, PayloadMode};

use crate::config::LabelsConfig;
use crate::error::Error;
use crate::inventory::record;
use crate::inventory::sensitive::name_of;

/// Weak findings held for the alerts output at most; further ones are counted and dropped.
/// (The tracker raises each endpoint, kind and label once, so this is rarely reached.)
pub const MAX_PENDING_FINDINGS: usize = 100_000;

/// The hash key: from `labels.hash_key_file`, or a random per-process key (with a warning).
pub fn hash_key(cfg: &LabelsConfig) -> Result<HashKey, Error> {
    match &cfg.hash_key_file {
        Some(path) => HashKey::from_secret_file(path).map_err(|e| match e {
            KeyFileError::Read(source) => Error::HashKeyRead {
                path: path.clone(),
                source,
            },
            KeyFileError::Empty => Error::HashKey("labels.hash_key_file is empty"),
            KeyFileError::TooShort { .. } => Error::HashKey(
                "labels.hash_key_file: the secret is shorter than 16 bytes (e.g. `head -c 32 /dev/urandom | base64 > FILE`)",
            ),
            KeyFileError::Exposed { .. } => Error::HashKey(
                "labels.hash_key_file is accessible to group or others; `chmod 600` it",
            ),
        })
        .inspect(|k| tracing::info!(hash_key_id = %k.id(), "labels hash key loaded")),
        None => {
            tracing::warn!(
                "labels.hash_key_file is not set: using a random per-process hash key; value \
                 hashes will not correlate across restarts or analyzer instances"
            );
            HashKey::random()
                .map_err(|_| Error::HashKey("cannot read random bytes for the hash key"))
        }
    }
}

/// The descriptor sets of `labels.protobuf_descriptor_sets` (issue 17), `None` when none is
/// configured. They are trusted configuration; the bodies they name are not.
pub fn protobuf_schema(cfg: &LabelsConfig) -> Result<Option<Arc<ProtoSchema>>, Error> {
    if cfg.protobuf_descriptor_sets.is_empty() {
        return Ok(None);
    }
    let schema = ProtoSchema::load(&cfg.protobuf_descriptor_sets).map_err(Error::Descriptor)?;
    tracing::info!(
        files = cfg.protobuf_descriptor_sets.len(),
        messages = schema.message_count(),
        methods = schema.method_count(),
        "protobuf descriptor sets loaded"
    );
    Ok(Some(Arc::new(schema)))
}

/// Per-ingest-thread labelling state.
pub struct Labelling {
    scanner: Scanner,
    tracker: WeakPointTracker,
    pending: Vec<(WeakFinding, u64)>,
    /// Weak findings dropped because [`MAX_PENDING_FINDINGS`] were waiting.
    pub dropped_findings: u64,
    /// Events labelled from the labels their sensor shipped (minimised payloads).
    pub shipped_labels: u64,
    /// Shipped labels whose value hashes a different key made (schema 1.3 `hash_key_id`):
    /// they do not correlate with this analyzer's (a missed rotation or a misconfiguration).
    pub foreign_key_labels: u64,
    key_id: String,
    protobuf: Option<Arc<ProtoSchema>>,
}

impl std::fmt::Debug for Labelling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Labelling")
            .field("tracker", &self.tracker)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Labelling {
    /// A labeller keyed with `key`, default rules and weak-point thresholds.
    pub fn new(key: HashKey) -> Result<Labelling, Error> {
        Labelling::with_traced_hashes(key, 0)
    }

    /// [`Labelling::new`] also collecting up to `max_traced` distinct value hashes per event
    /// for the trace-back store (`EventLabels::traced`).
    pub fn with_traced_hashes(key: HashKey, max_traced: usize) -> Result<Labelling, Error> {
        let key_id = key.id();
        let config = LabelConfig {
            max_traced_hashes: max_traced,
            ..LabelConfig::default()
        };
        let labeller = Labeller::new(key, config).map_err(Error::Labeller)?;
        Ok(Labelling {
            foreign_key_labels: 0,
            key_id,
            scanner: Scanner::new(Arc::new(labeller)),
            tracker: WeakPointTracker::new(WeakPointConfig::default()),
            pending: Vec::new(),
            dropped_findings: 0,
            shipped_labels: 0,
            protobuf: None,
        })
    }

    /// This labelling naming gRPC body fields from `schema` (see [`protobuf_schema`]).
    pub fn with_protobuf(mut self, schema: Option<Arc<ProtoSchema>>) -> Labelling {
        self.protobuf = schema;
        self
    }

    /// The descriptor sets, for the event facts the inventory shares.
    pub fn protobuf(&self) -> Option<Arc<ProtoSchema>> {
        self.protobuf.clone()
    }

    /// Labels and classifies one event (once): scanned, or for a minimised event the labels
    /// its sensor shipped.
    pub fn label(&mut self, ev: &ApiEvent) -> (EventLabels, Classification) {
        let facts = EventFacts::new(ev, self.max_decoded_bytes()).with_protobuf(self.protobuf());
        self.label_facts(&facts)
    }

    /// Cap on a body once its content coding is removed (`labels.max_inflated_bytes`): the
    /// cap of the event facts this labeller reads.
    pub fn max_decoded_bytes(&self) -> usize {
        self.scanner.labeller().config().max_inflated_bytes
    }

    /// [`Labelling::label`] reading the event's shared facts (its decoded bodies).
    pub fn label_facts(&mut self, facts: &EventFacts<'_>) -> (EventLabels, Classification) {
        let ev = facts.event;
        let labels = match shipped(ev) {
            Some(l) => {
                self.shipped_labels += 1;
                let foreign = ev
                    .labels
                    .as_ref()
                    .and_then(|w| w.hash_key_id.as_deref())
                    .filter(|id| *id != self.key_id);
                if let Some(id) = foreign {
                    if self.foreign_key_labels == 0 {
                        tracing::warn!(
                            sensor_hash_key_id = id,
                            hash_key_id = %self.key_id,
                            "a sensor hashes values with another key: its hashes do not \
                             correlate with this analyzer's (further ones are only counted)"
                        );
                    }
                    self.foreign_key_labels += 1;
                }
                l
            }
            None => self.scanner.label_facts(facts),
        };
        let class = classify_event(ev, &labels);
        (labels, class)
    }

    /// Feeds the weak-point tracker with the event (its shared facts) under `key`; new
    /// findings wait for [`Labelling::take_findings`].
    pub fn observe(
        &mut self,
        key: &EndpointKey,
        facts: &EventFacts<'_>,
        labels: &EventLabels,
        class: &Classification,
    ) {
        for f in self
            .tracker
            .observe_facts(key, facts, labels, class.function)
        {
            if self.pending.len() < MAX_PENDING_FINDINGS {
                self.pending.push((f, facts.event.request_start_unix_us));
            } else {
                self.dropped_findings += 1;
            }
        }
    }

    /// New weak findings with their event time (µs since the epoch), oldest first.
    pub fn take_findings(&mut self) -> Vec<(WeakFinding, u64)> {
        std::mem::take(&mut self.pending)
    }

    /// Weak points raised so far.
    pub fn raised(&self) -> u64 {
        self.tracker.stats().raised
    }
}

/// The labels a sensor shipped with a minimised event: its bodies no longer show what was
/// captured. Full events are scanned here (with this analyzer's rules and hash key).
fn shipped(ev: &ApiEvent) -> Option<EventLabels> {
    if ev.payload == PayloadMode::Full {
        return None;
    }
    ev.labels.as_deref().map(labels_from_wire)
}

/// The weak-point key of an inventory endpoint: method, service (as host) and template.
pub fn weak_key(key: &record::EndpointKey) -> EndpointKey {
    EndpointKey::new(&key.method, &key.service, &key.template)
}

use apitap_detect::alert::{Alert, ApiEndpoint, DataSecurity, FindingClass, Source};
use apitap_detect::finding::Activity;
use serde_json::json;

/// Data-exposure weak points are OCSF *Data Security Findings* (2006); the others are
/// *Application Security Posture Findings* (2007).
fn is_data_finding(kind: WeakKind) -> bool {
    matches!(
        kind,
        WeakKind::SensitiveWithoutAuth
            | WeakKind::InconsistentMasking
            | WeakKind::ExcessiveDataExposure
            | WeakKind::UnmaskedSensitiveResponse
    )
}

fn title(f: &WeakFinding) -> String {
    let what = match f.kind {
        WeakKind::CleartextPassword => "Password sent over cleartext HTTP",
        WeakKind::CredentialInUrl => "Credential or ID number in the URL",
        WeakKind::LoginViaGet => "Login via GET",
        WeakKind::SensitiveWithoutAuth => "Sensitive data returned without authentication",
        WeakKind::WeakPasswordAccepted => "Weak password accepted",
        WeakKind::InconsistentMasking => "Inconsistent masking across endpoints",
        WeakKind::ExcessiveDataExposure => "Excessive data exposure",
        WeakKind::UnmaskedSensitiveResponse => "Unmasked sensitive data in response",
    };
    match f.label {
        Some(l) => format!("{what} ({}): {}", l.name(), f.endpoint),
        None => format!("{what}: {}", f.endpoint),
    }
}

/// The alert of one weak point raised at `time_us` (event time): a Data Security Finding
/// (OCSF class 2006) for data exposure, with the label as its `data_security` pattern, else
/// an Application Security Posture Finding (2007); keyed by a hash of the endpoint, the kind
/// and the label.
pub fn weak_alert(f: &WeakFinding, time_us: u64) -> Alert {
    let kind = name_of(&f.kind);
    let label = f.label.map(|l| l.name());
    let class = if is_data_finding(f.kind) {
        FindingClass::DataSecurity(f.label.map(|l| DataSecurity {
            category: name_of(&l.class()),
            detection_pattern: l.name().to_owned(),
            pattern_match: l.name().to_owned(),
        }))
    } else {
        FindingClass::Posture
    };
    let ident = format!(
        "{}\0{}\0{}\0{kind}\0{}",
        f.endpoint.method,
        f.endpoint.host,
        f.endpoint.path,
        label.unwrap_or("")
    );
    let uid = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(ident.as_bytes()));
    let apitap = json!({
        "kind": kind,
        "label": label,
        "service": f.endpoint.host,
        "method": f.endpoint.method,
        "template": f.endpoint.path,
        "evidence": f.evidence,
    });
    Alert {
        class,
        source: Source::WeakPoint,
        activity: Activity::Create,
        severity: f.severity.into(),
        confidence: None,
        is_alert: None,
        uid,
        seq: None,
        types: vec!["API Weak Point".to_owned(), kind.clone()],
        kind,
        title: title(f),
        desc: None,
        labels: Vec::new(),
        time_us,
        created_us: time_us,
        modified_us: None,
        span: None,
        analytic: None,
        attacks: Vec::new(),
        endpoint: ApiEndpoint {
            uid: None,
            service: f.endpoint.host.clone(),
            method: f.endpoint.method.clone(),
            template: f.endpoint.path.clone(),
        },
        src_ip: None,
        user: None,
        evidences: Vec::new(),
        apitap,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{Ingestor, LineOutcome};
    use crate::inventory::{Inventory, InventoryConfig, store};
    use crate::reader::Line;
    use crate::summary::tests::builder;
    use apitap_detect::weak::{Evidence, Severity};
    use apitap_labels::{Direction, Label, MinimiseOptions, minimise};
    use apitap_schema::{decode_event, encode_event};

    /// A missing or non-descriptor file is refused with the field's name; none configured
    /// is no schema.
    #[test]
    fn descriptor_sets_are_checked_at_start() {
        let chain = |e: &Error| {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(x) = src {
                s.push_str(": ");
                s.push_str(&x.to_string());
                src = x.source();
            }
            s
        };
        assert!(protobuf_schema(&LabelsConfig::default()).unwrap().is_none());
        let dir = std::env::temp_dir().join(format!("apitap-desc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.pb");
        std::fs::write(&bad, b"\xff\xff\xff").unwrap();
        for (path, what) in [
            (dir.join("missing.pb"), "cannot read"),
            (bad, "not a FileDescriptorSet"),
        ] {
            let cfg = LabelsConfig {
                protobuf_descriptor_sets: vec![path],
                ..LabelsConfig::default()
            };
            let e = chain(&protobuf_schema(&cfg).unwrap_err());
            assert!(e.contains("labels.protobuf_descriptor_sets"), "{e}");
            assert!(e.contains(what), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    const ID: &str = "11010519491231002X";
    const MOBILE: &str = "13812345678";

    /// A user lookup answering an ID number and a mobile, minimised by a sensor in `mode`,
    /// as the line the analyzer reads.
    fn minimised_line(mode: PayloadMode) -> Vec<u8> {
        let body = format!(r#"{{"data":{{"idCard":"{ID}","mobile":"{MOBILE}"}}}}"#);
        let ev = builder(Some("api"), "GET", "/api/users/7")
            .response_body("application/json", body)
            .build();
        let lab = Labeller::new(HashKey::from_secret(b"sensor"), LabelConfig::default()).unwrap();
        let mut sensor = Scanner::new(Arc::new(lab));
        let m = minimise(&mut sensor, &ev, mode, &MinimiseOptions::default());
        encode_event(&m.event)
    }

    #[test]
    fn labels_mode_events_use_the_shipped_labels() {
        let line = minimised_line(PayloadMode::Labels);
        let text = String::from_utf8(line.clone()).unwrap();
        assert!(!text.contains(ID) && !text.contains(MOBILE));
        let ev = decode_event(&line).unwrap();
        let mut l = Labelling::new(HashKey::from_secret(b"analyzer")).unwrap();
        let (labels, class) = l.label(&ev);
        assert_eq!(l.shipped_labels, 1);
        assert!(labels.has(Direction::Response, Label::PrcId), "{labels:?}");
        assert!(labels.has(Direction::Response, Label::Mobile));
        assert_eq!(class, classify_event(&ev, &labels));
        // Scanning the body-less event would have found nothing in the response.
        let mut scanned = l.scanner.label_event(&ev);
        scanned
            .findings
            .retain(|f| f.location.direction == Direction::Response);
        assert!(scanned.findings.is_empty());
        // A full event is scanned even when labels are attached.
        let full = decode_event(&minimised_line(PayloadMode::Full)).unwrap();
        assert!(full.labels.is_some());
        let (labels, _) = l.label(&full);
        assert_eq!(l.shipped_labels, 1);
        assert!(labels.has(Direction::Response, Label::PrcId));
    }

    #[test]
    fn labels_hashed_with_another_key_are_counted() {
        let ev = decode_event(&minimised_line(PayloadMode::Labels)).unwrap();
        let sensor_id = HashKey::from_secret(b"sensor").id();
        assert_eq!(
            ev.labels.as_ref().unwrap().hash_key_id.as_deref(),
            Some(sensor_id.as_str())
        );
        // The analyzer keyed differently: counted.
        let mut other = Labelling::new(HashKey::from_secret(b"analyzer")).unwrap();
        other.label(&ev);
        other.label(&ev);
        assert_eq!(other.foreign_key_labels, 2);
        // The same key: not counted.
        let mut same = Labelling::new(HashKey::from_secret(b"sensor")).unwrap();
        same.label(&ev);
        assert_eq!(same.foreign_key_labels, 0);
        // A 1.2 sensor says nothing: not counted either.
        let mut old = ev.clone();
        old.labels.as_mut().unwrap().hash_key_id = None;
        other.label(&old);
        assert_eq!(other.foreign_key_labels, 2);
    }

    #[test]
    fn inventory_records_the_shipped_labels_on_the_endpoint() {
        let mut ing = Ingestor {
            inventory: Some(Inventory::new(InventoryConfig::default()).unwrap()),
            labelling: Some(Labelling::new(HashKey::from_secret(b"analyzer")).unwrap()),
            ..Ingestor::default()
        };
        let line = minimised_line(PayloadMode::Labels);
        assert_eq!(ing.ingest_line(1, Line::Data(&line)), LineOutcome::Event);
        let mut st = store::open("sqlite::memory:").unwrap();
        ing.inventory.as_mut().unwrap().flush(st.as_mut()).unwrap();
        let eps = st.endpoints(&Default::default()).unwrap();
        assert_eq!(eps.len(), 1);
        let names = &eps[0].data_labels;
        assert!(names.contains(&"prc_id".to_owned()), "{names:?}");
        assert!(names.contains(&"mobile".to_owned()), "{names:?}");
        assert_eq!(ing.labelling.as_ref().unwrap().shipped_labels, 1);
    }

    #[test]
    fn weak_findings_map_to_ocsf_classes() {
        let f = WeakFinding {
            kind: WeakKind::LoginViaGet,
            severity: Severity::Medium,
            endpoint: EndpointKey::new("GET", "api", "/login"),
            label: None,
            evidence: Evidence::default(),
        };
        let d = apitap_detect::ocsf::render(&weak_alert(&f, 1_700_000_000_000_000));
        apitap_detect::ocsf::validate(&d).unwrap();
        assert_eq!(d["class_uid"], 2007);
        assert_eq!(d["type_uid"], 200_701);
        assert_eq!(d["time"], 1_700_000_000_000u64);
        assert_eq!(d["unmapped"]["apitap"]["kind"], "login_via_get");
        let f = WeakFinding {
            kind: WeakKind::UnmaskedSensitiveResponse,
            label: Some(apitap_labels::Label::PrcId),
            ..f
        };
        let d = apitap_detect::ocsf::render(&weak_alert(&f, 0));
        apitap_detect::ocsf::validate(&d).unwrap();
        assert_eq!(d["class_uid"], 2006);
        assert_eq!(d["data_security"]["pattern_match"], "prc_id");
    }

    /// The OCSF and ECS documents, byte for byte, as apitap wrote them before every alert
    /// became one typed `Alert` (issue 13).
    #[test]
    fn data_security_documents_are_unchanged() {
        let f = WeakFinding {
            kind: WeakKind::UnmaskedSensitiveResponse,
            severity: Severity::Medium,
            endpoint: EndpointKey::new("GET", "api", "/login"),
            label: Some(apitap_labels::Label::PrcId),
            evidence: Evidence::default(),
        };
        let a = weak_alert(&f, 0);
        let d = apitap_detect::ocsf::render(&a);
        apitap_detect::ocsf::validate(&d).unwrap();
        assert_eq!(
            d.to_string(),
            r#"{"activity_id":1,"activity_name":"Create","category_name":"Findings","category_uid":2,"class_name":"Data Security Finding","class_uid":2006,"data_security":{"category":"C2","data_lifecycle_state":"Data in Transit","data_lifecycle_state_id":2,"detection_pattern":"prc_id","detection_system":"API traffic monitor","detection_system_id":99,"pattern_match":"prc_id"},"finding_info":{"created_time":0,"title":"Unmasked sensitive data in response (prc_id): GET api/login","types":["API Weak Point","unmasked_sensitive_response"],"uid":"53b993a0a5eb9f5857b85d6ee055e23d"},"message":"Unmasked sensitive data in response (prc_id): GET api/login","metadata":{"log_name":"apitap_weak_points","product":{"feature":{"name":"labels"},"name":"apitap","vendor_name":"apitap"},"uid":"53b993a0a5eb9f5857b85d6ee055e23d","version":"1.3.0"},"resources":[{"group":{"name":"api"},"name":"GET /login","type":"API Endpoint"}],"severity":"Medium","severity_id":3,"status":"New","status_id":1,"time":0,"type_uid":200601,"unmapped":{"apitap":{"evidence":{"event_id":"","summary":""},"kind":"unmasked_sensitive_response","label":"prc_id","method":"GET","service":"api","template":"/login"}}}"#
        );
        assert_eq!(
            crate::ecs::render(&a).to_string(),
            r#"{"@timestamp":"1970-01-01T00:00:00.000Z","apitap":{"evidence":{"event_id":"","summary":""},"kind":"unmasked_sensitive_response","label":"prc_id","method":"GET","service":"api","template":"/login"},"ecs":{"version":"8.11.0"},"event":{"action":"create","category":["web"],"created":"1970-01-01T00:00:00.000Z","dataset":"apitap.data_security","id":"53b993a0a5eb9f5857b85d6ee055e23d","kind":"alert","module":"apitap","severity":3,"type":["info"]},"http":{"request":{"method":"GET"}},"labels":{"finding_uid":"53b993a0a5eb9f5857b85d6ee055e23d","ocsf_class_uid":2006},"message":"Unmasked sensitive data in response (prc_id): GET api/login","observer":{"product":"apitap","type":"api-security","vendor":"apitap"},"rule":{"description":"Unmasked sensitive data in response (prc_id): GET api/login","id":"unmasked_sensitive_response","name":"unmasked_sensitive_response","ruleset":"apitap"},"tags":["API Weak Point","unmasked_sensitive_response"],"url":{"domain":"api","path":"/login"}}"#
        );
    }

    #[test]
    fn key_file_is_read_and_empty_is_rejected() {
        let dir = std::env::temp_dir().join(format!("apitap-labelling-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("key");
        std::fs::write(&p, "a long enough s3cret\n").unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let cfg = LabelsConfig {
            hash_key_file: Some(p.clone()),
            ..LabelsConfig::default()
        };
        assert!(hash_key(&cfg).is_ok());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = hash_key(&cfg).unwrap_err().to_string();
        assert!(
            e.contains("labels.hash_key_file") && e.contains("chmod 600"),
            "{e}"
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&p, "\n").unwrap();
        assert!(hash_key(&cfg).is_err());
        assert!(hash_key(&LabelsConfig::default()).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
