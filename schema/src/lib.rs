//! The apitap API event schema (R-BUS-1).
//!
//! This crate owns the one document type that crosses the sensor→analyzer boundary: an
//! [`ApiEvent`], one per HTTP transaction (a request and, when seen, its response). It is
//! serialised as JSON (one object per line in files, one object per message on Kafka).
//!
//! Versioning: [`SCHEMA_VERSION`] is `MAJOR.MINOR`. A minor version only adds optional fields,
//! so readers ignore fields they do not know. A major version changes the meaning or type of
//! existing fields; readers reject events whose major version they do not know
//! ([`decode_event`]). The field-by-field reference is `docs/event-schema.md`; each field is also
//! documented here.
//!
//! Cargo feature `test-support` (off by default; enable it in `[dev-dependencies]` only):
//! `test_support::EventBuilder`, a fluent builder of events with fixed defaults for tests
//! and benchmarks, e.g. `EventBuilder::get("/users/7").status(404).build()`.
mod fastdecode;
mod fastjson;
pub mod headers;
pub mod msgpack;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub use headers::{FieldSpan, Headers, SpanError};
pub use msgpack::{EventEncoding, decode_event_msgpack, encode_event_msgpack_into};
pub mod time;

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Version written into every event by this build. History: 1.0 initial; 1.1 adds
/// `Body::content_encoding`, `Body::decoded_length_bytes` and the `body_decode_failed`,
/// `decompression_bomb` and `overlap_conflict` anomalies; 1.2 adds [`ApiEvent::payload`] and
/// [`ApiEvent::labels`] (data minimisation at the sensor, R-CAP-8); 1.3 adds
/// [`LabelSummary::hash_key_id`] (which key made the value hashes, for rotation); 1.4 adds
/// [`SensorInfo::node`], [`ApiEvent::server_workload`] and [`ApiEvent::client_workload`]
/// (attribution to cgroup, systemd unit, container and Kubernetes pod, R-CAP-5) and
/// [`ApiEvent::bodies_sampled_out`] (body sampling per endpoint); 1.5 adds
/// [`ApiEvent::tls_library`] and [`ApiEvent::process`] (TLS plaintext capture with uprobes,
/// R-CAP-4, and the process that served it, R-CAP-5); 1.6 adds [`ApiEvent::tls_sni`], the
/// `tls_library` values `boringssl` and `go`, HTTP/2 (`http_version` `"2"`,
/// [`ApiEvent::stream_id`], [`ApiEvent::grpc`], [`ApiEvent::unknown_header_fields`]) and the
/// anomalies `hpack_unknown_field`, `stream_reset` and `h2_protocol_error`.
pub const SCHEMA_VERSION: &str = "1.6";
/// Major version this build reads.
pub const SCHEMA_MAJOR: u32 = 1;

/// One HTTP transaction observed on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiEvent {
    /// `MAJOR.MINOR` of this schema, e.g. `"1.0"`.
    pub schema_version: String,
    /// 32 lowercase hex digits, unique per transaction and stable: the same transaction decoded
    /// twice (e.g. a pcap replayed, or a spool replayed to Kafka) gets the same id, so consumers
    /// deduplicate on it. Derived from the sensor id, the connection's endpoints and first
    /// packet time, and [`ApiEvent::transaction_index`].
    pub event_id: String,
    /// Which sensor saw the transaction (R-CAP-5).
    pub sensor: SensorInfo,
    /// 16 lowercase hex digits identifying the TCP connection (stable like `event_id`).
    pub connection_id: String,
    /// 0-based position of this transaction on its connection (keep-alive, pipelining).
    pub transaction_index: u64,
    /// When the first byte of the request was seen, microseconds since the Unix epoch.
    pub request_start_unix_us: u64,
    /// When the last byte of the response was seen (or, for a response cut short, when the
    /// decoder gave up on it), microseconds since the Unix epoch; present exactly when
    /// `response` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_end_unix_us: Option<u64>,
    /// `response_end_unix_us - request_start_unix_us`; present exactly when `response` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    /// The side that sent the request.
    pub client: Endpoint,
    /// The side that served it.
    pub server: Endpoint,
    /// True when the bytes were obtained from a TLS library (uprobes) rather than the wire.
    pub tls: bool,
    /// HTTP version of the request: `"1.0"`, `"1.1"` (later `"2"`).
    pub http_version: String,
    /// The request.
    pub request: Request,
    /// The response, absent when none was seen (see `anomalies` for why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Response>,
    /// Protocol anomalies seen while decoding this transaction, in the order seen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anomalies: Vec<Anomaly>,
    /// (1.2) What the sensor did to the payload (R-CAP-8); absent means `full`, which is also
    /// how a 1.0 or 1.1 event reads.
    #[serde(default, skip_serializing_if = "PayloadMode::is_full")]
    pub payload: PayloadMode,
    /// (1.2) The sensor's sensitive-data scan of the transaction as captured: field names and
    /// locations, label kinds, counts and masked samples, never raw values. Always present in
    /// `labels` mode; in `full` and `sample` mode when the sensor is configured to attach it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Box<LabelSummary>>,
    /// (1.4) True when the sensor left this transaction's bodies out because its endpoint
    /// exceeded the sensor's body rate (`payload.max_bodies_per_endpoint_per_sec`): the bodies'
    /// `data` is empty, `captured_bytes` 0, `length_bytes` kept; everything else is as
    /// captured. Absent means false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub bodies_sampled_out: bool,
    /// (1.4) What on this host owns the server's socket: its cgroup, systemd unit, processes,
    /// container and Kubernetes pod (R-CAP-5). Absent when the server is not local to the
    /// sensor's host, attribution is off, or the socket's owner was not recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_workload: Option<Arc<Workload>>,
    /// (1.4) The same for the client's socket, when the client runs on this host (an
    /// application calling another API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_workload: Option<Arc<Workload>>,
    /// (1.5) With `tls`: the TLS library whose calls the plaintext was read from: `openssl`
    /// (shared or linked into the executable) or `gnutls`; (1.6) also `boringssl` and `go`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_library: Option<String>,
    /// (1.6) With `tls`: the server name (SNI, RFC 6066 §3) of the connection, as the traced
    /// client set it or the traced server read it from the ClientHello; absent when none was
    /// sent or the library's call for it is not probed (Go).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_sni: Option<String>,
    /// (1.5) The process on the sensor's host whose TLS calls carried the transaction (the
    /// server's, or the client's when the client was traced); absent for cleartext capture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Arc<Process>>,
    /// (1.6) HTTP/2: the stream that carried the exchange (RFC 9113 §5.1.1); absent for
    /// HTTP/1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<u32>,
    /// (1.6) HTTP/2: header fields of either side whose name or value refers to HPACK state
    /// the sensor did not see (it joined the connection after they were indexed, RFC 7541
    /// §2.3.2). They are left out of `headers`, never guessed; `hpack_unknown_field` is set.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unknown_header_fields: u32,
    /// (1.6) The gRPC call the exchange was (`content-type: application/grpc*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<Grpc>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// (1.6) One gRPC call (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grpc {
    /// Fully qualified service from `:path`, e.g. `bank.v1.Accounts`; empty when `:path` was
    /// not seen.
    pub service: String,
    /// Method from `:path`, e.g. `GetAccount`.
    pub method: String,
    /// `grpc-status` (0 = OK), from the trailers or a trailers-only response; absent when not
    /// seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u32>,
    /// `grpc-message`, percent-decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Length-prefixed messages the client sent whole.
    pub request_messages: u32,
    /// Messages the server sent whole.
    pub response_messages: u32,
    /// Messages with the compressed flag, both directions.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub compressed_messages: u32,
    /// gRPC-Web rather than native gRPC.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub web: bool,
    /// (1.6) gRPC-Web text (`application/grpc-web-text`): the body of either direction was
    /// base64 of the message framing (PROTOCOL-WEB); the kept `body` is that base64.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub text: bool,
}

/// (1.5) A process on the sensor's host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// Process id (thread group id) in the sensor's PID namespace.
    pub pid: u32,
    /// Path of the executable as `execve` was given it (or `/proc/<pid>/exe` for processes
    /// running when the sensor started), at most 127 bytes; absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    /// Command name (`comm`) of the thread that made the call, at most 15 bytes.
    pub comm: String,
}

/// (1.4) The owner of a socket on the sensor's host (R-CAP-5), from the socket's cgroup v2
/// (recorded in the kernel per connection) and, in Kubernetes, the API server's pod objects.
/// Every field but `cgroup` and `uid` is present only when known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    /// cgroup v2 path of the socket relative to the hierarchy's root, e.g.
    /// `/system.slice/nginx.service` or `/kubepods.slice/…/cri-containerd-<id>.scope`; `/` for
    /// the root cgroup; empty when the cgroup no longer exists (exited before it was resolved).
    pub cgroup: String,
    /// Owner uid of the socket (initial user namespace).
    pub uid: u32,
    /// systemd unit the cgroup belongs to (`nginx.service`, `session-3.scope`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Distinct command names (`comm`) of the processes in the cgroup when it was resolved,
    /// sorted, at most 8; empty when they are not visible (another PID namespace).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<String>,
    /// Container id (64 lowercase hex digits) from the cgroup path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Container runtime named by the cgroup path: `containerd`, `cri-o`, `docker`, `podman`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_runtime: Option<String>,
    /// Kubernetes pod UID from the cgroup path (kubelet's `pod<uid>` component).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// The pod as the Kubernetes API describes it; absent without Kubernetes, or when the API
    /// does not (yet) know the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesPod>,
}

impl Workload {
    /// A short name for people and tables: `namespace/Kind/name` of the pod's controller,
    /// else `namespace/pod`; else the systemd unit; else `container:<first 12 hex digits>`;
    /// else the cgroup path.
    pub fn name(&self) -> String {
        let mut out = String::new();
        self.write_name(&mut out);
        out
    }

    /// [`Workload::name`] into `out` (cleared first), for callers that reuse one buffer.
    pub fn write_name(&self, out: &mut String) {
        use std::fmt::Write as _;
        out.clear();
        // Writing to a String cannot fail.
        let _ = match &self.kubernetes {
            Some(k) => match (&k.workload_kind, &k.workload_name) {
                (Some(kind), Some(name)) => write!(out, "{}/{kind}/{name}", k.namespace),
                _ => write!(out, "{}/{}", k.namespace, k.pod),
            },
            None => match (&self.unit, &self.container_id) {
                (Some(u), _) => write!(out, "{u}"),
                (None, Some(id)) => write!(out, "container:{}", &id[..id.len().min(12)]),
                (None, None) => write!(out, "{}", self.cgroup),
            },
        };
    }
}

/// (1.4) A Kubernetes pod and container, from the API server's pod object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesPod {
    /// Namespace of the pod.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Container name within the pod, found by the container id; absent when the id is not
    /// (yet) in the pod's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Kind of the controller owning the pod: `Deployment` (through its ReplicaSet),
    /// `ReplicaSet`, `StatefulSet`, `DaemonSet`, `Job`, `CronJob` (through its Job), or the
    /// owner's own kind; absent for a bare pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_kind: Option<String>,
    /// Name of that controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_name: Option<String>,
}

/// (1.2) What the sensor did to an event's payload before it left the host (R-CAP-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PayloadMode {
    /// Bodies, URL and headers as captured.
    #[default]
    Full,
    /// Detected sensitive values masked in place in the URL, headers and bodies; credential
    /// headers masked; bodies cut to the sensor's `payload.sample_bytes` (`truncated` is then
    /// true).
    Sample,
    /// URL and headers as in `sample`; bodies removed (`data` empty, `captured_bytes` 0,
    /// `length_bytes` kept); the content is described by [`ApiEvent::labels`] only.
    Labels,
    /// A mode from a newer minor schema version. Readers should treat the payload as
    /// minimised (not as captured).
    #[serde(other)]
    Unknown,
}

impl PayloadMode {
    /// True for [`PayloadMode::Full`] (the value a missing `payload` key reads as).
    pub fn is_full(&self) -> bool {
        *self == PayloadMode::Full
    }

    /// The serialised name.
    pub const fn as_str(self) -> &'static str {
        match self {
            PayloadMode::Full => "full",
            PayloadMode::Sample => "sample",
            PayloadMode::Labels => "labels",
            PayloadMode::Unknown => "unknown",
        }
    }
}

/// (1.2) The sensor's sensitive-data scan of one transaction (the `labels` field). Contains no
/// raw value: field names and locations, label kinds, counts, masked samples and keyed hashes.
/// The vocabularies (label names, parts, body kinds, auth schemes, notes) are those of
/// `docs/sensitive-data.md`; readers skip values they do not know.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelSummary {
    /// One entry per (label, location, mask shape), in order of first occurrence.
    #[serde(default)]
    pub findings: Vec<LabelFinding>,
    /// Query parameter names, in order of first appearance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<String>,
    /// Shape of the request body.
    #[serde(default)]
    pub request: BodyShape,
    /// Shape of the response body, when there was a response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<BodyShape>,
    /// How the request authenticated itself: `basic`, `bearer`, `other_authorization`,
    /// `api_key_header`, `query_token`, `session_cookie`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth: Vec<String>,
    /// Scan counters.
    #[serde(default)]
    pub stats: ScanCounters,
    /// (1.3) Public id (8 hex digits) of the key that made the value hashes: a reader
    /// compares it with its own to know whether the hashes correlate with its own (same key)
    /// and to follow a key rotation. Reveals nothing about the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_key_id: Option<String>,
}

/// (1.2) One kind of sensitive value at one location, with how often it occurred.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelFinding {
    /// Label name, e.g. `prc_id`, `mobile`, `bank_card`.
    pub label: String,
    /// Confidence 0–100, the highest over the occurrences.
    #[serde(default)]
    pub confidence: u8,
    /// Where the values were found.
    pub location: LabelLocation,
    /// Occurrences at this location (for `[*]` paths: records).
    #[serde(default)]
    pub count: u32,
    /// A masked rendering of the first occurrence, e.g. `138****5678`.
    #[serde(default)]
    pub masked_sample: String,
    /// Present when the application had already masked the value: its visible positions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<KeptPositions>,
    /// Qualifiers, e.g. `jwt_alg_none`, `weak_password`, `by_key`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Keyed hashes (32 hex digits) of the distinct occurrences, for correlation without the
    /// value; never for passwords, CVV or SMS codes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<String>,
}

/// (1.2) Where a finding was made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelLocation {
    /// `request` or `response`.
    pub direction: String,
    /// `path_segment`, `query_param`, `header`, `cookie`, `json_path`, `form_field`,
    /// `xml_element`, `multipart_part`, `csv_column`, `protobuf_field` (a gRPC message field:
    /// `owner`, `balance.currency`, or numbers such as `3.1` without a descriptor) or `text`.
    pub part: String,
    /// Field path within the part (`$.data[*].mobile`, a parameter or header name, `[2]` for
    /// a path segment, empty for text): names and indices only, never values.
    #[serde(default)]
    pub path: String,
}

/// (1.2) Visible positions of a value the application masked itself (`138****5678`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptPositions {
    /// Length of the value in characters.
    pub len: u8,
    /// Visible ranges as half-open `[start, end)` pairs.
    #[serde(default)]
    pub kept: Vec<[u8; 2]>,
}

/// (1.2) Shape of one message body: field names, never values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyShape {
    /// Parsed as: `empty`, `json`, `form`, `xml`, `multipart`, `csv`, `protobuf` (gRPC
    /// messages), `text`, `binary` or `undecodable`.
    #[serde(default)]
    pub kind: String,
    /// Field paths seen (arrays folded to `[*]`), capped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// Distinct field paths not listed because of the cap.
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub fields_dropped: u32,
    /// Largest number of objects in one array (or CSV rows).
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub array_records: u32,
    /// Largest count of one unmasked C2/C3 label at one location.
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub sensitive_records: u32,
    /// Distinct (label, location) pairs of unmasked C2/C3 data.
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub sensitive_fields: u32,
}

/// (1.2) Counters of the sensor's scan (nothing skipped silently, R-CAP-7).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanCounters {
    /// Bytes handed to the parsers (after decoding).
    #[serde(default)]
    pub scanned_bytes: u64,
    /// Captured bytes not scanned (over the scan cap, binary, undecodable coding).
    #[serde(default, skip_serializing_if = "is_zero64")]
    pub unscanned_bytes: u64,
    /// Values examined.
    #[serde(default)]
    pub values: u64,
    /// Findings dropped because of the per-event cap.
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub dropped_findings: u32,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero32(n: &u32) -> bool {
    *n == 0
}

fn is_zero64(n: &u64) -> bool {
    *n == 0
}

/// The sensor that produced an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SensorInfo {
    /// Operator-chosen sensor id (defaults to the host name).
    pub id: String,
    /// Host name of the machine the sensor runs on.
    pub host: String,
    /// (1.4) Kubernetes node name (`$NODE_NAME` in the DaemonSet), when the sensor runs in
    /// Kubernetes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A TCP endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    /// IPv4 or IPv6 address, in its usual text form.
    pub ip: IpAddr,
    /// TCP port.
    pub port: u16,
}

/// An HTTP request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Method token as sent (`GET`, `POST`, …; case preserved).
    pub method: String,
    /// `Host` header (HTTP/1.x) or `:authority` (HTTP/2), absent if the client sent none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Path part of the request target, still percent-encoded, without the query.
    pub path: String,
    /// Raw query string after `?`, without the `?`; absent when the target had no `?`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Header fields in wire order. Names keep their case; values are decoded as UTF-8 with
    /// invalid bytes replaced (and a `non_utf8_header` anomaly). Reads as a `Vec<Header>`;
    /// the sensor keeps them as ranges of the message's header block ([`Headers`]).
    pub headers: Headers,
    /// The request body (message content after removing chunked framing).
    pub body: Body,
}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Reason phrase as sent (may be empty).
    pub reason: String,
    /// Header fields in wire order (see [`Request::headers`]).
    pub headers: Headers,
    /// The response body.
    pub body: Body,
}

/// One header field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Field name as sent.
    pub name: String,
    /// Field value, surrounding whitespace removed.
    pub value: String,
}

/// How [`Body::data`] is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BodyEncoding {
    /// `data` is the captured bytes verbatim (they were valid UTF-8).
    #[default]
    Utf8,
    /// `data` is standard base64 (RFC 4648 §4) of the captured bytes.
    Base64,
    /// An encoding from a newer minor schema version; `data` cannot be decoded by this build.
    #[serde(other)]
    Unknown,
}

/// A message body, captured up to the sensor's configured cap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Body {
    /// Length of the whole body as it crossed the wire after removing chunked framing,
    /// whether or not all of it was captured.
    pub length_bytes: u64,
    /// How many of those bytes are in `data` (≤ `length_bytes`).
    pub captured_bytes: u64,
    /// True when `captured_bytes < length_bytes` (cap reached or bytes missing on the wire).
    pub truncated: bool,
    /// Encoding of `data`.
    pub encoding: BodyEncoding,
    /// The captured bytes, encoded per `encoding`. Empty for an empty body. When
    /// `content_encoding` is present these are the *decoded* bytes.
    pub data: String,
    /// (1.1) The content coding (`Content-Encoding`, RFC 9110 §8.4) the sensor removed to
    /// produce `data`, e.g. `"gzip"`; absent when `data` is the body as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// (1.1) Length of the whole decoded body when decoding reached its end within the cap;
    /// absent otherwise. `length_bytes` stays the length as sent (compressed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoded_length_bytes: Option<u64>,
}

impl Body {
    /// Builds a body from the captured bytes and the full wire length.
    pub fn from_bytes(captured: &[u8], length_bytes: u64) -> Self {
        let (encoding, data) = match std::str::from_utf8(captured) {
            Ok(s) => (BodyEncoding::Utf8, s.to_owned()),
            Err(_) => (
                BodyEncoding::Base64,
                base64::engine::general_purpose::STANDARD.encode(captured),
            ),
        };
        let captured_bytes = captured.len() as u64;
        Body {
            length_bytes: length_bytes.max(captured_bytes),
            captured_bytes,
            truncated: captured_bytes < length_bytes,
            encoding,
            data,
            content_encoding: None,
            decoded_length_bytes: None,
        }
    }

    /// Like [`Body::from_bytes`], taking ownership of the captured bytes (no copy when they
    /// are UTF-8, which API bodies usually are).
    pub fn from_vec(captured: Vec<u8>, length_bytes: u64) -> Self {
        let captured_bytes = captured.len() as u64;
        let (encoding, data) = match String::from_utf8(captured) {
            Ok(s) => (BodyEncoding::Utf8, s),
            Err(e) => (
                BodyEncoding::Base64,
                base64::engine::general_purpose::STANDARD.encode(e.as_bytes()),
            ),
        };
        Body {
            length_bytes: length_bytes.max(captured_bytes),
            captured_bytes,
            truncated: captured_bytes < length_bytes,
            encoding,
            data,
            content_encoding: None,
            decoded_length_bytes: None,
        }
    }

    /// Builds a body whose `data` was decoded from `coding`: `decoded` are the decoded bytes
    /// kept, `length_bytes` the body length as sent, `complete` whether the decoded bytes are
    /// the whole body.
    pub fn from_decoded(decoded: &[u8], length_bytes: u64, coding: &str, complete: bool) -> Self {
        let mut b = Body::from_bytes(decoded, 0);
        b.length_bytes = length_bytes;
        b.truncated = !complete;
        b.content_encoding = Some(coding.to_owned());
        b.decoded_length_bytes = complete.then_some(decoded.len() as u64);
        b
    }

    /// The captured bytes, decoded from `data`.
    pub fn bytes(&self) -> Result<Vec<u8>, SchemaError> {
        match self.encoding {
            BodyEncoding::Utf8 => Ok(self.data.as_bytes().to_vec()),
            BodyEncoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(&self.data)
                .map_err(|_| SchemaError::BadBase64),
            BodyEncoding::Unknown => Err(SchemaError::UnknownBodyEncoding),
        }
    }
}

/// A protocol anomaly: something the peers did that a conforming implementation would not, or
/// something the sensor could not observe. The analyzer decides whether it matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Anomaly {
    /// Capture began in the middle of this connection; the decoder resynchronised on a
    /// request line.
    MidstreamStart,
    /// Bytes of the request were missing on the wire (packet loss or capture drop).
    RequestGap,
    /// Bytes of the response were missing on the wire.
    ResponseGap,
    /// The connection closed, reset or timed out before a complete response was seen.
    NoResponse,
    /// The response ended early (connection closed or gap inside the body).
    ResponseIncomplete,
    /// The request ended early.
    RequestIncomplete,
    /// Both `Transfer-Encoding: chunked` and `Content-Length` (RFC 9112 §6.3: smuggling vector).
    ContentLengthWithChunked,
    /// `Content-Length` not a valid non-negative integer, or several different values
    /// (RFC 9110 §8.6).
    InvalidContentLength,
    /// A `Transfer-Encoding` other than a final `chunked` on a request (RFC 9112 §6.3 ¶4).
    UnsupportedTransferEncoding,
    /// Malformed chunked framing (RFC 9112 §7.1).
    InvalidChunk,
    /// Header block larger than the configured limit.
    HeadersTooLarge,
    /// More header fields than the decoder accepts.
    TooManyHeaders,
    /// The request line or header block did not parse (RFC 9112 §3, §5).
    MalformedRequest,
    /// The status line or header block did not parse (RFC 9112 §4, §5).
    MalformedResponse,
    /// A header value had bytes that are not UTF-8 (obs-text, RFC 9110 §5.5).
    NonUtf8Header,
    /// A response arrived with no outstanding request; it was paired with nothing.
    UnsolicitedResponse,
    /// The connection switched protocols (`101`, RFC 9110 §15.2.2); later bytes are not HTTP/1.
    ProtocolUpgrade,
    /// The sensor evicted this connection's state under memory pressure.
    StateEvicted,
    /// (1.1) The body's content coding could not be decoded (corrupt data); `data` holds the
    /// body as sent.
    BodyDecodeFailed,
    /// (1.1) Decompression hit the output cap at more than 100× the input: a decompression
    /// bomb. Output was truncated at the cap.
    DecompressionBomb,
    /// (1.1) A retransmitted TCP segment carried bytes different from the first copy of the
    /// same sequence range (the first copy was used): a possible IDS-evasion attempt.
    OverlapConflict,
    /// (1.6) HTTP/2: some header field referred to HPACK state the sensor did not see; it is
    /// counted in `unknown_header_fields`, not reported.
    HpackUnknownField,
    /// (1.6) HTTP/2: the stream was reset (RST_STREAM) or refused (GOAWAY) before it ended.
    StreamReset,
    /// (1.6) HTTP/2: a frame or header block broke the protocol's rules (RFC 9113 §5.1,
    /// §6.9.1, §8.3), or a header block did not decode.
    H2ProtocolError,
    /// An anomaly code from a newer minor schema version.
    #[serde(other)]
    Unknown,
}

/// Errors reading events.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// Not JSON, or not an event object.
    #[error("malformed event: {0}")]
    Malformed(String),
    /// The event's major version is not one this build reads.
    #[error("unsupported schema version {found:?} (this build reads major version {SCHEMA_MAJOR})")]
    UnsupportedVersion {
        /// The version found in the event, reduced to at most 16 digits and dots (the field is
        /// attacker-controlled on a shared topic and must not carry content into logs).
        found: String,
    },
    /// `Body::data` claimed base64 but was not.
    #[error("body data is not valid base64")]
    BadBase64,
    /// `Body::encoding` is from a newer schema version.
    #[error("body encoding unknown to this build")]
    UnknownBodyEncoding,
}

#[derive(Deserialize)]
pub(crate) struct VersionProbe {
    schema_version: Option<String>,
}

/// Rejects an event whose (probed) major version this build does not read.
pub(crate) fn check_major(probe: VersionProbe) -> Result<(), SchemaError> {
    let version = probe
        .schema_version
        .ok_or_else(|| SchemaError::Malformed("missing schema_version".into()))?;
    check_version(&version)
}

/// Rejects a `schema_version` whose major version this build does not read.
fn check_version(version: &str) -> Result<(), SchemaError> {
    let major = version
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    if major != Some(SCHEMA_MAJOR) {
        let found = version
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '.')
            .take(16)
            .collect();
        return Err(SchemaError::UnsupportedVersion { found });
    }
    Ok(())
}

/// Parses one event, rejecting unknown major versions before interpreting any other field.
///
/// Error messages never include the input: events carry sensitive values (R-OPS-3).
///
/// One pass on the hot path (issue 18: the separate version probe was a full scan of every
/// event, a quarter of the decode): the whole event is parsed first and its version checked;
/// only when that parse fails is the document probed for its version, so a newer major
/// version with other field types is still reported as [`SchemaError::UnsupportedVersion`]
/// and not as malformed. The outcome is the probe-first one in every case: a document that
/// parses as an event carries a `schema_version` string, which is what the probe reads.
pub fn decode_event(bytes: &[u8]) -> Result<ApiEvent, SchemaError> {
    // One UTF-8 check of the whole document (RFC 8259 §8.1: JSON text is UTF-8), then the
    // parse from `&str`, which does not check each string again (issue 18: the check per
    // string was an eighth of the decode). A document that is not UTF-8 takes the byte
    // parser, which reports where: the outcome is the same either way, since the two
    // parsers differ only in where they check the encoding.
    // The check is simdutf8's (16 or 32 bytes per step where the CPU has SSE4.2 or AVX2):
    // it accepts exactly what `std::str::from_utf8` accepts, and the position std would
    // report of an error is never used here.
    let parsed = match simdutf8::basic::from_utf8(bytes) {
        Ok(text) => match fastdecode::event(text) {
            // The sensor's compact events: read directly, to the same value (the module's
            // docs say which documents it reads; every other one is serde_json's).
            Some(event) => Ok(event),
            None => serde_json::from_str::<ApiEvent>(text),
        },
        Err(_) => serde_json::from_slice::<ApiEvent>(bytes),
    };
    match parsed {
        Ok(event) => {
            check_version(&event.schema_version)?;
            Ok(event)
        }
        Err(e) => {
            let probe: VersionProbe =
                serde_json::from_slice(bytes).map_err(|e| SchemaError::Malformed(classify(&e)))?;
            check_major(probe)?;
            Err(SchemaError::Malformed(classify(&e)))
        }
    }
}

/// Describes a serde_json error by kind and position only, never by content.
fn classify(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let kind = match e.classify() {
        Category::Io => "io error",
        Category::Syntax => "syntax error",
        Category::Data => "wrong field type or missing field",
        Category::Eof => "truncated input",
    };
    format!("{kind} at line {} column {}", e.line(), e.column())
}

/// Serialises an event as one line of JSON (no trailing newline).
pub fn encode_event(event: &ApiEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    encode_event_into(event, &mut out);
    out
}

/// Appends an event as one line of JSON (no trailing newline) to `out`, reusing its capacity
/// (the sensor's sinks call this once per event on the hot path). Byte-identical to
/// `serde_json::to_vec(event)`, several times faster.
pub fn encode_event_into(event: &ApiEvent, out: &mut Vec<u8>) {
    fastjson::event(out, event);
}

impl BodyEncoding {
    /// The serialised name.
    pub const fn as_str(self) -> &'static str {
        match self {
            BodyEncoding::Utf8 => "utf8",
            BodyEncoding::Base64 => "base64",
            BodyEncoding::Unknown => "unknown",
        }
    }
}

impl Anomaly {
    /// Every code, for exhaustive tests and metrics.
    pub const ALL: [Anomaly; 25] = [
        Anomaly::MidstreamStart,
        Anomaly::RequestGap,
        Anomaly::ResponseGap,
        Anomaly::NoResponse,
        Anomaly::ResponseIncomplete,
        Anomaly::RequestIncomplete,
        Anomaly::ContentLengthWithChunked,
        Anomaly::InvalidContentLength,
        Anomaly::UnsupportedTransferEncoding,
        Anomaly::InvalidChunk,
        Anomaly::HeadersTooLarge,
        Anomaly::TooManyHeaders,
        Anomaly::MalformedRequest,
        Anomaly::MalformedResponse,
        Anomaly::NonUtf8Header,
        Anomaly::UnsolicitedResponse,
        Anomaly::ProtocolUpgrade,
        Anomaly::StateEvicted,
        Anomaly::BodyDecodeFailed,
        Anomaly::DecompressionBomb,
        Anomaly::OverlapConflict,
        Anomaly::HpackUnknownField,
        Anomaly::StreamReset,
        Anomaly::H2ProtocolError,
        Anomaly::Unknown,
    ];

    /// The serialised (snake_case) code.
    pub const fn as_str(self) -> &'static str {
        match self {
            Anomaly::MidstreamStart => "midstream_start",
            Anomaly::RequestGap => "request_gap",
            Anomaly::ResponseGap => "response_gap",
            Anomaly::NoResponse => "no_response",
            Anomaly::ResponseIncomplete => "response_incomplete",
            Anomaly::RequestIncomplete => "request_incomplete",
            Anomaly::ContentLengthWithChunked => "content_length_with_chunked",
            Anomaly::InvalidContentLength => "invalid_content_length",
            Anomaly::UnsupportedTransferEncoding => "unsupported_transfer_encoding",
            Anomaly::InvalidChunk => "invalid_chunk",
            Anomaly::HeadersTooLarge => "headers_too_large",
            Anomaly::TooManyHeaders => "too_many_headers",
            Anomaly::MalformedRequest => "malformed_request",
            Anomaly::MalformedResponse => "malformed_response",
            Anomaly::NonUtf8Header => "non_utf8_header",
            Anomaly::UnsolicitedResponse => "unsolicited_response",
            Anomaly::ProtocolUpgrade => "protocol_upgrade",
            Anomaly::StateEvicted => "state_evicted",
            Anomaly::BodyDecodeFailed => "body_decode_failed",
            Anomaly::DecompressionBomb => "decompression_bomb",
            Anomaly::OverlapConflict => "overlap_conflict",
            Anomaly::HpackUnknownField => "hpack_unknown_field",
            Anomaly::StreamReset => "stream_reset",
            Anomaly::H2ProtocolError => "h2_protocol_error",
            Anomaly::Unknown => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ApiEvent {
        test_support::EventBuilder::post("/v1/users")
            .at_us(1)
            .latency_us(2)
            .client("10.0.0.2:40000")
            .server("[::1]:80")
            .host("api")
            .query("a=1")
            .header("Host", "api")
            .body_bytes(b"{\"x\":1}")
            .status(201)
            .response_body_raw(Body::from_bytes(&[0xff, 0x00], 10))
            .anomaly(Anomaly::ContentLengthWithChunked)
            .build()
    }

    /// `decode_event` checks the document's encoding with simdutf8 (issue 18): it answers as
    /// `std::str::from_utf8` does on every kind of sequence (RFC 3629 §3-4: overlong forms,
    /// surrogates, code points past U+10FFFF, truncated and stray continuation bytes), at
    /// every offset around its 16- and 32-byte steps, and a document that is not UTF-8 is
    /// refused with the same error either way.
    #[test]
    fn utf8_check_answers_as_std_does() {
        let pieces: [&[u8]; 16] = [
            b"a",
            "é".as_bytes(),
            "€".as_bytes(),
            "😀".as_bytes(),
            b"\xc0\xaf",
            b"\xe0\x80\xaf",
            b"\xed\xa0\x80",
            b"\xf4\x90\x80\x80",
            b"\xf8\x88\x80\x80\x80",
            b"\x80",
            b"\xbf",
            b"\xc3",
            b"\xe2\x82",
            b"\xf0\x9f\x98",
            b"\xff",
            b"\x00",
        ];
        let mut invalid = 0;
        for lead in 0..40 {
            for p in pieces {
                for tail in [0, 1, 7, 33] {
                    let mut b = "x".repeat(lead).into_bytes();
                    b.extend_from_slice(p);
                    b.extend(std::iter::repeat_n(b'y', tail));
                    let std_ok = std::str::from_utf8(&b).is_ok();
                    assert_eq!(simdutf8::basic::from_utf8(&b).is_ok(), std_ok, "{b:?}");
                    invalid += usize::from(!std_ok);
                }
            }
        }
        assert!(invalid > 1000, "{invalid}");
        let mut doc = encode_event(&sample());
        let at = doc.len() / 2;
        doc.insert(at, 0xff);
        let simd = decode_event(&doc).unwrap_err().to_string();
        let std_err = match std::str::from_utf8(&doc) {
            Ok(_) => unreachable!("the document has a 0xff byte"),
            Err(_) => serde_json::from_slice::<ApiEvent>(&doc).unwrap_err(),
        };
        assert!(simd.contains(&classify(&std_err)), "{simd}");
    }

    fn summary(s: &str, n: usize) -> LabelSummary {
        let finding = |i: usize| LabelFinding {
            label: format!("{s}{i}"),
            confidence: (i * 37 % 256) as u8,
            location: LabelLocation {
                direction: "response".into(),
                part: s.into(),
                path: format!("$.data[*].{s}"),
            },
            count: u32::MAX - i as u32,
            masked_sample: s.repeat(i % 3),
            mask: i.is_multiple_of(2).then(|| KeptPositions {
                len: 11,
                kept: (0..i % 4).map(|k| [k as u8, 255]).collect(),
            }),
            notes: vec![s.to_owned(); i % 3],
            hashes: vec![format!("{i:032x}"); i % 2],
        };
        let shape = |k: u32| BodyShape {
            kind: s.into(),
            fields: vec![s.to_owned(); (k % 3) as usize],
            fields_dropped: k % 2,
            array_records: k % 3,
            sensitive_records: k % 5,
            sensitive_fields: k,
        };
        LabelSummary {
            findings: (0..n).map(finding).collect(),
            query_params: vec![s.to_owned(); n % 2],
            request: shape(n as u32),
            response: (!n.is_multiple_of(3)).then(|| shape(n as u32 + 1)),
            auth: vec![s.to_owned(); n % 3],
            stats: ScanCounters {
                scanned_bytes: u64::MAX,
                unscanned_bytes: (n % 2) as u64,
                values: n as u64,
                dropped_findings: (n % 4) as u32,
            },
            hash_key_id: (n % 2 == 1).then(|| format!("{s}{n:08x}")),
        }
    }

    fn workload(s: &str, n: usize) -> Workload {
        let some = |k: usize| (!n.is_multiple_of(k)).then(|| s.to_owned());
        Workload {
            cgroup: s.to_owned(),
            uid: n as u32 * 1000,
            unit: some(2),
            processes: (0..n % 3).map(|k| format!("{s}{k}")).collect(),
            container_id: some(3),
            container_runtime: some(4),
            pod_uid: some(5),
            kubernetes: (n % 2 == 1).then(|| KubernetesPod {
                namespace: s.to_owned(),
                pod: format!("{s}-pod"),
                container: some(3),
                workload_kind: some(5),
                workload_name: some(7),
            }),
        }
    }

    #[test]
    fn workload_names_prefer_the_controller_then_unit_container_cgroup() {
        let mut w = workload("x", 1);
        assert_eq!(w.name(), "x/x/x", "namespace/kind/name");
        w.kubernetes.as_mut().unwrap().workload_kind = None;
        assert_eq!(w.name(), "x/x-pod");
        w.kubernetes = None;
        w.unit = Some("nginx.service".into());
        assert_eq!(w.name(), "nginx.service");
        w.unit = None;
        w.container_id = Some("8c1f0a6e2d4b9f7a3e5c".into());
        assert_eq!(w.name(), "container:8c1f0a6e2d4b");
        w.container_id = None;
        assert_eq!(w.name(), "x");
    }

    #[test]
    fn fast_encoder_is_byte_identical_to_serde_json() {
        let mut e = sample();
        let nasty = "q\"b\\s/\u{0}\u{1f}\u{7f}\u{8}\u{c}\n\r\t é 中文 😀 \u{2028}";
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut strings: Vec<String> =
            vec![String::new(), nasty.into(), nasty.repeat(7), "a".repeat(17)];
        for n in 0..300 {
            let mut s = String::new();
            for _ in 0..(n % 41) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let c = match state % 6 {
                    0 => char::from((state >> 8) as u8 % 0x20),
                    1 => ['"', '\\', '/', '\u{7f}'][(state >> 9) as usize % 4],
                    2 => char::from_u32(0x80 + (state >> 10) as u32 % 0x7000).unwrap_or('x'),
                    _ => char::from(b' ' + (state >> 11) as u8 % 95),
                };
                s.push(c);
            }
            strings.push(s);
        }
        for (i, s) in strings.iter().enumerate() {
            e.request.path = s.clone();
            e.request.headers.push(Header {
                name: s.clone(),
                value: s.clone(),
            });
            e.request.body.data = s.clone();
            e.request.query = (i % 2 == 0).then(|| s.clone());
            e.request.host = (i % 3 == 0).then(|| s.clone());
            if e.response.is_none() {
                e.response = sample().response;
            }
            e.response.as_mut().unwrap().body.content_encoding =
                (i % 5 == 0).then(|| "gzip".into());
            e.response.as_mut().unwrap().body.decoded_length_bytes =
                (i % 7 == 0).then_some(u64::MAX);
            e.latency_us = (i % 4 != 0).then_some(i as u64);
            e.response_end_unix_us = (i % 4 != 0).then_some(u64::MAX - i as u64);
            e.server.ip = if i % 2 == 0 {
                "2001:db8::1".parse().unwrap()
            } else {
                "255.0.10.1".parse().unwrap()
            };
            e.anomalies = Anomaly::ALL[..i % 22].to_vec();
            if i % 9 == 0 {
                e.response = None;
            }
            e.payload = [
                PayloadMode::Full,
                PayloadMode::Sample,
                PayloadMode::Labels,
                PayloadMode::Unknown,
            ][i % 4];
            e.labels = (i % 3 != 1).then(|| Box::new(summary(s, i % 6)));
            e.sensor.node = (i % 2 == 0).then(|| s.clone());
            e.bodies_sampled_out = i % 5 == 3;
            e.server_workload = (i % 3 != 2).then(|| Arc::new(workload(s, i)));
            e.client_workload = (i % 4 == 1).then(|| Arc::new(workload(s, i + 1)));
            e.tls_library = (i % 3 == 0).then(|| s.clone());
            e.process = (i % 2 == 1).then(|| {
                Arc::new(Process {
                    pid: i as u32,
                    executable: (i % 4 == 1).then(|| s.clone()),
                    comm: s.clone(),
                })
            });
            let mut fast = Vec::new();
            encode_event_into(&e, &mut fast);
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                serde_json::to_string(&e).unwrap(),
                "string #{i}"
            );
        }
    }

    #[test]
    fn anomaly_and_encoding_names_match_serde() {
        for a in Anomaly::ALL {
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
        }
        for b in [
            BodyEncoding::Utf8,
            BodyEncoding::Base64,
            BodyEncoding::Unknown,
        ] {
            assert_eq!(serde_json::to_value(b).unwrap(), b.as_str());
        }
    }

    #[test]
    fn round_trips_through_json() {
        let mut e = sample();
        let back = decode_event(&encode_event(&e)).unwrap();
        assert_eq!(back, e);
        e.payload = PayloadMode::Labels;
        e.labels = Some(Box::new(summary("mobile", 4)));
        let back = decode_event(&encode_event(&e)).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn payload_is_omitted_when_full_and_older_events_read_as_full() {
        let e = sample();
        let text = String::from_utf8(encode_event(&e)).unwrap();
        assert!(!text.contains("\"payload\""), "{text}");
        assert!(!text.contains("\"labels\""), "{text}");
        let mut v = serde_json::to_value(&e).unwrap();
        v["schema_version"] = "1.1".into();
        let old = decode_event(v.to_string().as_bytes()).unwrap();
        assert_eq!(old.payload, PayloadMode::Full);
        assert!(old.labels.is_none());
    }

    #[test]
    fn payload_modes_have_their_names_and_newer_modes_read_as_unknown() {
        for m in [
            PayloadMode::Full,
            PayloadMode::Sample,
            PayloadMode::Labels,
            PayloadMode::Unknown,
        ] {
            assert_eq!(serde_json::to_value(m).unwrap(), m.as_str());
        }
        let mut v = serde_json::to_value(sample()).unwrap();
        v["schema_version"] = "1.9".into();
        v["payload"] = "hashed_only".into();
        v["labels"] = serde_json::json!({
            "findings": [{"label": "future_label", "location": {"direction": "request",
                "part": "new_part"}, "future": 1}],
            "future_shape": {}
        });
        let e = decode_event(v.to_string().as_bytes()).unwrap();
        assert_eq!(e.payload, PayloadMode::Unknown);
        let l = e.labels.unwrap();
        assert_eq!(l.findings[0].label, "future_label");
        assert_eq!(l.findings[0].count, 0);
    }

    #[test]
    fn binary_body_is_base64_and_truncation_is_flagged() {
        let b = Body::from_bytes(&[0xff, 0x00], 10);
        assert_eq!(b.encoding, BodyEncoding::Base64);
        assert!(b.truncated);
        assert_eq!(b.bytes().unwrap(), vec![0xff, 0x00]);
        let full = Body::from_bytes(b"ok", 2);
        assert!(!full.truncated);
        assert_eq!(full.encoding, BodyEncoding::Utf8);
        assert_eq!(Body::from_vec(vec![0xff, 0x00], 10), b);
        assert_eq!(Body::from_vec(b"ok".to_vec(), 2), full);
    }

    #[test]
    fn rejects_unknown_major_version() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["schema_version"] = "2.0".into();
        let err = decode_event(v.to_string().as_bytes()).unwrap_err();
        assert!(matches!(err, SchemaError::UnsupportedVersion { .. }));
    }

    #[test]
    fn accepts_newer_minor_with_unknown_fields_and_anomalies() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["schema_version"] = "1.7".into();
        v["future_field"] = 42.into();
        v["anomalies"] = serde_json::json!(["request_gap", "something_new"]);
        let e = decode_event(v.to_string().as_bytes()).unwrap();
        assert_eq!(e.anomalies, vec![Anomaly::RequestGap, Anomaly::Unknown]);
    }

    #[test]
    fn unknown_body_encoding_is_tolerated_but_not_decoded() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["request"]["body"]["encoding"] = "zstd_base64".into();
        let e = decode_event(v.to_string().as_bytes()).unwrap();
        assert_eq!(e.request.body.encoding, BodyEncoding::Unknown);
        assert!(matches!(
            e.request.body.bytes(),
            Err(SchemaError::UnknownBodyEncoding)
        ));
    }

    #[test]
    fn errors_never_echo_the_input() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["schema_version"] = "9 secret-token-abc".into();
        let msg = decode_event(v.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(!msg.contains("secret"), "{msg}");
        let secret = br#"{"schema_version":"1.0","password":"hunter2""#;
        let msg = decode_event(secret).unwrap_err().to_string();
        assert!(!msg.contains("hunter2"), "{msg}");
        let msg = decode_event(b"hunter2").unwrap_err().to_string();
        assert!(!msg.contains("hunter2"), "{msg}");
    }
}
