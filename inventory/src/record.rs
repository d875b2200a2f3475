//! Stored inventory entries: endpoint records, lifecycle, the change log, and the views the
//! CLI and HTTP API print (R-INV-3, R-INV-5).

use serde::{Deserialize, Serialize};

use super::learn::EndpointData;
use super::sensitive::DataMapEntry;
use super::spec::SpecStatus;
use crate::text::format_unix_us;

/// Identifies an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EndpointKey {
    /// Service (Host, or server address:port, per `inventory.service_by`).
    pub service: String,
    /// Method (upper case).
    pub method: String,
    /// Path template (`/users/{user_id}`).
    pub template: String,
    /// GraphQL/JSON-RPC/SOAP operation; empty for other styles.
    pub operation: String,
}

impl EndpointKey {
    /// Stable id: 32 hex digits of a 128-bit hash of the key, the same across restarts and
    /// analyzer instances.
    pub fn id(&self) -> String {
        let mut bytes = Vec::with_capacity(
            self.service.len() + self.method.len() + self.template.len() + self.operation.len() + 3,
        );
        for part in [&self.service, &self.method, &self.template, &self.operation] {
            bytes.extend_from_slice(part.as_bytes());
            bytes.push(0);
        }
        format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes))
    }
}

/// Lifecycle of an endpoint (R-INV-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    /// First seen less than `new_period_secs` ago.
    New,
    /// Seen regularly.
    Active,
    /// Not seen for `inactive_after_secs` (or documented and never seen).
    Inactive,
    /// Seen again after being inactive, less than `new_period_secs` ago.
    Revived,
}

impl Lifecycle {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::New => "new",
            Lifecycle::Active => "active",
            Lifecycle::Inactive => "inactive",
            Lifecycle::Revived => "revived",
        }
    }

    /// Parses [`Lifecycle::as_str`].
    pub fn parse(s: &str) -> Option<Lifecycle> {
        [
            Lifecycle::New,
            Lifecycle::Active,
            Lifecycle::Inactive,
            Lifecycle::Revived,
        ]
        .into_iter()
        .find(|l| l.as_str() == s)
    }
}

/// Sensitivity (and function class) of an endpoint never labelled.
pub const SENSITIVITY_UNKNOWN: &str = "unknown";

fn unknown() -> String {
    SENSITIVITY_UNKNOWN.into()
}

/// One endpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    /// [`EndpointKey::id`].
    pub id: String,
    /// The key.
    #[serde(flatten)]
    pub key: EndpointKey,
    /// Lifecycle state.
    pub lifecycle: Lifecycle,
    /// When it entered that state, µs since the epoch.
    pub lifecycle_since_unix_us: u64,
    /// Against the operator's spec.
    pub spec_status: SpecStatus,
    /// Names of the data labels carried (R-SEN-1); details in `data.sensitive`.
    #[serde(default)]
    pub data_labels: Vec<String>,
    /// Highest sensitivity level seen (R-SEN-2): `none`, `low`, `medium`, `high`; `unknown`
    /// when never labelled.
    pub sensitivity: String,
    /// Function class (R-SEN-2): most frequent class other than `other`; `unknown` when never
    /// labelled.
    #[serde(default = "unknown")]
    pub function_class: String,
    /// Last write, µs since the epoch (event time).
    pub updated_unix_us: u64,
    /// What was learned.
    pub data: EndpointData,
}

impl EndpointRecord {
    /// Refreshes the sensitive-data columns (labels, sensitivity, function class) from
    /// `data.sensitive`.
    pub fn refresh_sensitive(&mut self) {
        let s = &self.data.sensitive;
        if s.events == 0 {
            return;
        }
        self.data_labels = s.label_names();
        self.sensitivity = s.sensitivity_name();
        self.function_class = s.function_class_name();
    }

    /// A fresh record.
    pub fn new(key: EndpointKey, spec_status: SpecStatus, now_us: u64) -> Self {
        EndpointRecord {
            id: key.id(),
            key,
            lifecycle: Lifecycle::New,
            lifecycle_since_unix_us: now_us,
            spec_status,
            data_labels: Vec::new(),
            sensitivity: unknown(),
            function_class: unknown(),
            updated_unix_us: now_us,
            data: EndpointData::default(),
        }
    }

    /// The summary row of this record.
    pub fn summary(&self) -> EndpointSummary {
        let d = &self.data;
        let ms = |us: Option<u64>| us.map(|v| v as f64 / 1000.0);
        let mut statuses: Vec<u16> = d.responses.keys().copied().collect();
        statuses.sort_unstable();
        let mut content_types: Vec<String> = d.request.content_types.keys().cloned().collect();
        for r in d.responses.values() {
            for ct in r.content_types.keys() {
                if !content_types.contains(ct) {
                    content_types.push(ct.clone());
                }
            }
        }
        EndpointSummary {
            id: self.id.clone(),
            service: self.key.service.clone(),
            method: self.key.method.clone(),
            template: self.key.template.clone(),
            operation: self.key.operation.clone(),
            style: d.style(),
            auth: d.auth_schemes(),
            lifecycle: self.lifecycle,
            spec_status: self.spec_status,
            shadow: self.spec_status.is_shadow(),
            zombie_candidate: self.spec_status.is_zombie_candidate(),
            exposure: d.exposure_class().into(),
            partners: d.exposure.partners.keys().cloned().collect(),
            data_labels: d.sensitive.data_map(&self.key.template),
            sensitivity: self.sensitivity.clone(),
            function_class: self.function_class.clone(),
            hits: d.hits,
            distinct_clients: d.clients.estimate(),
            status_codes: statuses,
            content_types,
            latency_p50_ms: ms(d.latency_us.quantile(0.5)),
            latency_p95_ms: ms(d.latency_us.quantile(0.95)),
            latency_p99_ms: ms(d.latency_us.quantile(0.99)),
            request_bytes_p50: d.request_bytes.quantile(0.5),
            request_bytes_p95: d.request_bytes.quantile(0.95),
            response_bytes_p50: d.response_bytes.quantile(0.5),
            response_bytes_p95: d.response_bytes.quantile(0.95),
            first_seen: (d.first_seen_unix_us > 0).then(|| format_unix_us(d.first_seen_unix_us)),
            last_seen: (d.last_seen_unix_us > 0).then(|| format_unix_us(d.last_seen_unix_us)),
            first_seen_unix_us: d.first_seen_unix_us,
            last_seen_unix_us: d.last_seen_unix_us,
        }
    }
}

/// One row of `inventory export --format json` and of the HTTP endpoint list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointSummary {
    /// Stable id.
    pub id: String,
    /// Service.
    pub service: String,
    /// Method.
    pub method: String,
    /// Path template.
    pub template: String,
    /// Operation (GraphQL, JSON-RPC, SOAP), empty otherwise.
    pub operation: String,
    /// Main API style.
    pub style: String,
    /// Auth schemes seen, most used first.
    pub auth: Vec<String>,
    /// Lifecycle.
    pub lifecycle: Lifecycle,
    /// Against the spec.
    pub spec_status: SpecStatus,
    /// Observed but undocumented.
    pub shadow: bool,
    /// Deprecated but used, or documented but never seen.
    pub zombie_candidate: bool,
    /// `internet_facing`, `internal` or `unknown`.
    pub exposure: String,
    /// Partners (client groups) that call it.
    pub partners: Vec<String>,
    /// The field-level data map (R-SEN-1): per field (direction, location kind, field name)
    /// the labels carried, counts, masked state and the application's mask shape; never
    /// values.
    pub data_labels: Vec<DataMapEntry>,
    /// Highest sensitivity seen (`none`, `low`, `medium`, `high`; `unknown`: never labelled).
    pub sensitivity: String,
    /// Function class (`login`, `query_by_id`, …; `unknown`: never labelled).
    pub function_class: String,
    /// Requests seen.
    pub hits: u64,
    /// Estimated distinct client addresses.
    pub distinct_clients: u64,
    /// Response status codes seen.
    pub status_codes: Vec<u16>,
    /// Request and response content types.
    pub content_types: Vec<String>,
    /// Median latency, ms.
    pub latency_p50_ms: Option<f64>,
    /// 95th percentile latency, ms.
    pub latency_p95_ms: Option<f64>,
    /// 99th percentile latency, ms.
    pub latency_p99_ms: Option<f64>,
    /// Median request body size, bytes.
    pub request_bytes_p50: Option<u64>,
    /// 95th percentile request body size, bytes.
    pub request_bytes_p95: Option<u64>,
    /// Median response body size, bytes.
    pub response_bytes_p50: Option<u64>,
    /// 95th percentile response body size, bytes.
    pub response_bytes_p95: Option<u64>,
    /// First request, UTC.
    pub first_seen: Option<String>,
    /// Last request, UTC.
    pub last_seen: Option<String>,
    /// First request, µs since the epoch (0: never).
    pub first_seen_unix_us: u64,
    /// Last request, µs since the epoch.
    pub last_seen_unix_us: u64,
}

/// One entry of the change log (R-INV-3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Position in the log (assigned by the store; 0 before).
    pub seq: i64,
    /// When, µs since the epoch (event time).
    pub at_unix_us: u64,
    /// The endpoint.
    pub endpoint_id: String,
    /// Its key.
    #[serde(flatten)]
    pub key: EndpointKey,
    /// `discovered`, `lifecycle`, `merged`, `parameter_added`, `parameter_removed`,
    /// `auth_changed`, `status_added`, `content_type_added`, `sensitivity_changed`,
    /// `data_label_added`.
    pub kind: String,
    /// Details: names, schemes, codes, states; never values.
    pub detail: serde_json::Value,
}

/// Filter of endpoint queries. Every field is optional; all given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct EndpointFilter {
    /// Exact service.
    pub service: Option<String>,
    /// Exact method (case-insensitive).
    pub method: Option<String>,
    /// Substring of the template.
    pub template: Option<String>,
    /// Lifecycle state.
    pub lifecycle: Option<String>,
    /// API style.
    pub style: Option<String>,
    /// Auth scheme (one of the endpoint's schemes).
    pub auth: Option<String>,
    /// Spec status.
    pub spec_status: Option<String>,
    /// Exposure.
    pub exposure: Option<String>,
    /// Carries this data label (`prc_id`, `mobile`, …) in some field.
    pub label: Option<String>,
    /// Exact sensitivity (`none`, `low`, `medium`, `high`, `unknown`).
    pub sensitivity: Option<String>,
    /// Sensitivity at least this level (`none`, `low`, `medium`, `high`).
    pub min_sensitivity: Option<String>,
    /// Rows at most.
    pub limit: Option<u64>,
    /// Rows skipped.
    pub offset: Option<u64>,
}

/// Filter of change-log queries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ChangeFilter {
    /// Changes with `seq` greater than this.
    pub after_seq: Option<i64>,
    /// Changes at or after this time.
    pub since_unix_us: Option<u64>,
    /// One endpoint's changes.
    pub endpoint_id: Option<String>,
    /// One kind.
    pub kind: Option<String>,
    /// Rows at most (default 1000).
    pub limit: Option<u64>,
}
