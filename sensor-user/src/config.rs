//! The sensor's TOML configuration (one file, `deny_unknown_fields`, units in field names).
//!
//! Every field has a default except `capture.interfaces`; `apitap-sensor run --config FILE`
//! flags may override the capture interfaces, ports and sink. Invalid values are rejected at
//! startup with an error naming the field (R-OPS-2).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use apitap_bus::KafkaConfig;
use apitap_common::MAX_SNAP_BYTES;
use apitap_decode::{ReassemblyConfig, SessionConfig};
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Identity of this sensor.
    #[serde(default)]
    pub sensor: SensorSection,
    /// What to capture.
    #[serde(default)]
    pub capture: CaptureSection,
    /// Decoder limits.
    #[serde(default)]
    pub decode: DecodeSection,
    /// What of each event leaves the host (data minimisation, R-CAP-8).
    #[serde(default)]
    pub payload: PayloadSection,
    /// Where events go.
    #[serde(default)]
    pub sink: SinkSection,
    /// Kafka brokers, topics, producer and spool; required when `sink.kind = "kafka"`
    /// (see `apitap_bus::config` for every field).
    #[serde(default)]
    pub kafka: Option<KafkaConfig>,
    /// Prometheus metrics and health endpoint.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// Which process, container and pod owns each connection (R-CAP-5).
    #[serde(default)]
    pub attribution: AttributionSection,
    /// HTTPS plaintext from the TLS library (uprobes, R-CAP-4).
    #[serde(default)]
    pub tls: TlsSection,
}

/// `[tls]`: plaintext of HTTPS connections, read by uprobes from OpenSSL 3 (`libssl.so.3`, or
/// linked into an executable: `SSL_read`, `SSL_read_ex`, `SSL_write`, `SSL_write_ex`,
/// `SSL_free`) and GnuTLS 3 (`libgnutls.so.30`: `gnutls_record_recv`, `gnutls_record_send`,
/// `gnutls_deinit`), decoded by the same HTTP decoder as cleartext capture (R-CAP-4). Events
/// carry `tls: true`, the library and the process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// Capture TLS plaintext (default false). Needs CAP_PERFMON and CAP_SYS_ADMIN besides the
    /// capture capabilities (uprobes and raw tracepoints) at start, dropped after attach; a kernel with BTF
    /// (`/sys/kernel/btf/vmlinux`) and 6.3 or later.
    pub enabled: bool,
    /// Command names (`comm`: the executable's file name, cut to 15 bytes) of the processes to
    /// trace, e.g. `["nginx"]`; matched in the kernel, so other processes calling the library
    /// cost one map lookup per call. Empty: every process that uses the libraries.
    pub processes: Vec<String>,
    /// Absolute paths of executables whose processes to trace besides `processes`, e.g.
    /// `["/usr/sbin/nginx"]` (at most 127 bytes each): matched in the kernel against the path
    /// the process was started by (`execve`'s, so a process started through a symlink or a
    /// relative path is not matched) or, for processes running at start, `/proc/<pid>/exe`.
    /// Both empty: every process that uses the libraries.
    pub executables: Vec<PathBuf>,
    /// Ports whose TLS connections to capture, e.g. `[443, 8443]`: the local port of
    /// accepted connections (a server's), the remote port of connections the process opened
    /// (a client's). Connections whose socket was established before the sensor started
    /// cannot be told apart and are captured. Empty (default): every port.
    pub ports: Vec<u16>,
    /// Paths of the files to probe: shared libraries or executables whose symbol table defines
    /// OpenSSL's (`SSL_read`, `SSL_write`, `SSL_free`) or GnuTLS's (`gnutls_record_recv`,
    /// `gnutls_record_send`, `gnutls_deinit`) functions. Empty (default): `libssl.so.3` and
    /// `libgnutls.so.30` in the standard library directories, and every file a running
    /// process maps executable at start that defines either set (its executable included, so
    /// OpenSSL linked in statically; through `/proc/<pid>/root`, so containers' own copies
    /// too). A probe is on the file (inode): every process that runs or maps it later is
    /// covered without attaching again.
    pub libraries: Vec<PathBuf>,
    /// Probe library files first seen after start (a new container's `libssl.so.3`, a new
    /// Go build, a library loaded later) through a helper process that keeps CAP_BPF,
    /// CAP_PERFMON, CAP_SYS_ADMIN and CAP_SYS_PTRACE, and nothing else, while the sensor drops
    /// all (docs/tls.md). Default true; false: such processes are only counted.
    pub attach_later: bool,
    /// Seconds between the helper's reads of every selected process's mapped files (new
    /// processes are also looked at 0.1 s and 1 s after their exec). 1..=3600, default 5.
    pub rescan_interval_secs: u64,
    /// Size of the TLS plaintext ring buffer in bytes (power of two, at least 65536).
    pub ring_buffer_bytes: u32,
    /// TLS connections decoded at once at most (1..=1048576); beyond it the least recently
    /// used is closed (counted in `apitap_tls_connections_evicted_total`).
    pub max_connections: usize,
    /// A TLS connection without plaintext for this long is closed (its pending transactions
    /// reported); the library's free call normally closes it first.
    pub idle_timeout_secs: u64,
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection {
            enabled: false,
            processes: Vec::new(),
            executables: Vec::new(),
            ports: Vec::new(),
            libraries: Vec::new(),
            attach_later: true,
            rescan_interval_secs: 5,
            ring_buffer_bytes: 8 * 1024 * 1024,
            max_connections: 16_384,
            idle_timeout_secs: 300,
        }
    }
}

/// `[attribution]`: the owner of each connection's local socket (R-CAP-5), recorded in the
/// kernel by a `cgroup_skb` egress program on the cgroup v2 root and resolved to cgroup path,
/// systemd unit, processes, container id and (with `[attribution.kubernetes]`) pod.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttributionSection {
    /// Attribute events to their owners (default true). Off: no cgroup program is attached
    /// and events carry no `server_workload`/`client_workload`.
    pub enabled: bool,
    /// Mount point of the cgroup v2 hierarchy (in Kubernetes, the host's, mounted into the
    /// pod). Absent: `/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid v1/v2 hosts.
    pub cgroup_root: Option<PathBuf>,
    /// Connections whose owners the agent remembers at most (1..=1048576); beyond it the
    /// cache starts over (counted in `apitap_attribution_cache_resets_total`).
    pub max_cached_connections: usize,
    /// Pod names, namespaces, containers and controllers from the Kubernetes API.
    pub kubernetes: KubernetesSection,
}

impl Default for AttributionSection {
    fn default() -> Self {
        AttributionSection {
            enabled: true,
            cgroup_root: None,
            max_cached_connections: 65_536,
            kubernetes: KubernetesSection::default(),
        }
    }
}

/// `attribution.kubernetes.mode`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum KubernetesMode {
    /// On inside a pod (`$KUBERNETES_SERVICE_HOST` set) or with `kubeconfig`, when the node
    /// name is known; off otherwise (the same file serves hosts and DaemonSets).
    #[default]
    Auto,
    /// Always on: a missing node name or API server is an error at start.
    On,
    /// Never.
    Off,
}

/// `[attribution.kubernetes]`: a watch of the pods on this node (get/list/watch on pods, no
/// other permission), cached in memory.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesSection {
    /// Look pods up in the Kubernetes API: `auto` (default), `on` or `off`.
    pub mode: KubernetesMode,
    /// This node's name, which selects the pods watched and is written into every event
    /// (`sensor.node`). Absent: `$NODE_NAME` (the DaemonSet sets it from `spec.nodeName`).
    pub node_name: Option<String>,
    /// kubeconfig file to reach the API server with. Absent: the pod's service account
    /// (in-cluster), else `$KUBECONFIG` or `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
}

impl KubernetesSection {
    /// Whether pods are looked up (see [`KubernetesMode`]).
    pub fn active(&self) -> bool {
        match self.mode {
            KubernetesMode::On => true,
            KubernetesMode::Off => false,
            KubernetesMode::Auto => {
                (self.kubeconfig.is_some()
                    || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|h| !h.is_empty()))
                    && self.node().is_some()
            }
        }
    }

    /// The node name: `node_name`, else a non-empty `$NODE_NAME`.
    pub fn node(&self) -> Option<String> {
        self.node_name
            .clone()
            .or_else(|| std::env::var("NODE_NAME").ok())
            .filter(|n| !n.is_empty())
    }
}

/// `[sensor]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SensorSection {
    /// Sensor id written into every event; defaults to the host name.
    pub id: Option<String>,
}

/// XDP attach mode.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum XdpModeSetting {
    /// Generic XDP in the kernel stack: works on every interface and never reconfigures the
    /// NIC (attaching native XDP resets some drivers' rings), at some CPU cost.
    #[default]
    Skb,
    /// Native XDP in the driver.
    Driver,
    /// Let the kernel choose.
    Default,
}

/// `[capture]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSection {
    /// Interfaces to attach to (XDP ingress and TC egress on each).
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// XDP attach mode: `skb` (default), `driver` or `default`.
    #[serde(default)]
    pub xdp_mode: XdpModeSetting,
    /// TCP ports to capture (either side of a connection); empty captures every port.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// TCP payload bytes copied per packet at most (1..=65535); longer payloads are counted
    /// as truncated and the missing tail becomes a gap.
    #[serde(default = "default_snap")]
    pub snap_len_bytes: u32,
    /// Size of the kernel→agent ring buffer: a power of two, at least 64 KiB.
    #[serde(default = "default_ring")]
    pub ring_buffer_bytes: u32,
    /// Unread bytes in the ring buffer at which the kernel wakes the agent (at most half of
    /// `ring_buffer_bytes`); below it the agent drains the ring every `poll_interval_ms`.
    /// Batching wake-ups saves an inter-processor interrupt per packet and a context switch
    /// per record under load. 0 wakes the agent on every record it is waiting for (lowest
    /// latency, highest CPU cost).
    #[serde(default = "default_wakeup")]
    pub wakeup_bytes: u32,
    /// How often the agent drains the ring buffer without being woken (1..=1000 ms): the
    /// longest a record waits below `wakeup_bytes`.
    #[serde(default = "default_poll")]
    pub poll_interval_ms: u64,
}

impl Default for CaptureSection {
    fn default() -> Self {
        CaptureSection {
            interfaces: Vec::new(),
            xdp_mode: XdpModeSetting::default(),
            ports: Vec::new(),
            snap_len_bytes: default_snap(),
            ring_buffer_bytes: default_ring(),
            wakeup_bytes: default_wakeup(),
            poll_interval_ms: default_poll(),
        }
    }
}

fn default_snap() -> u32 {
    MAX_SNAP_BYTES
}
fn default_ring() -> u32 {
    16 * 1024 * 1024
}
fn default_wakeup() -> u32 {
    256 * 1024
}
fn default_poll() -> u64 {
    10
}

/// `[decode]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeSection {
    /// Body bytes kept per request or response; longer bodies are truncated (flagged, with
    /// the full length kept).
    pub max_body_bytes: usize,
    /// Header block size at most per message.
    pub max_header_bytes: usize,
    /// Header fields per message at most.
    pub max_headers: usize,
    /// Requests awaiting a response per connection (pipelining depth).
    pub max_pending_requests: usize,
    /// Connections tracked at most.
    pub max_connections: usize,
    /// Out-of-order bytes held per connection before a gap is declared; also the bytes that
    /// requests awaiting a response (heads and body samples) may hold per connection before
    /// the oldest is reported without its response.
    pub max_buffered_bytes_per_connection: usize,
    /// Bytes held by the decoder across all connections before connections are evicted.
    pub max_buffered_bytes_total: usize,
    /// How long out-of-order data waits for missing bytes before they are declared lost.
    pub gap_timeout_ms: u64,
    /// Connections idle this long are closed.
    pub idle_timeout_secs: u64,
    /// Connections that never carried payload are closed after this long.
    pub handshake_timeout_secs: u64,
}

impl Default for DecodeSection {
    fn default() -> Self {
        let r = ReassemblyConfig::default();
        DecodeSection {
            max_body_bytes: r.session.max_body_bytes,
            max_header_bytes: r.session.max_header_bytes,
            max_headers: r.session.max_headers,
            max_pending_requests: r.session.max_pending_requests,
            max_connections: r.max_connections,
            max_buffered_bytes_per_connection: r.max_buffered_bytes_per_connection,
            max_buffered_bytes_total: r.max_buffered_bytes_total,
            gap_timeout_ms: r.gap_timeout_us / 1000,
            idle_timeout_secs: r.idle_timeout_us / 1_000_000,
            handshake_timeout_secs: r.handshake_timeout_us / 1_000_000,
        }
    }
}

/// `payload.mode`: what leaves the host (R-CAP-8).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum PayloadSetting {
    /// Events as captured.
    #[default]
    Full,
    /// Detected values masked in URL, headers and bodies; bodies cut to `sample_bytes`.
    Sample,
    /// No bodies: only field names, labels, counts and masked samples (the event's `labels`).
    Labels,
}

impl PayloadSetting {
    /// The schema's payload mode.
    pub fn mode(self) -> apitap_schema::PayloadMode {
        match self {
            PayloadSetting::Full => apitap_schema::PayloadMode::Full,
            PayloadSetting::Sample => apitap_schema::PayloadMode::Sample,
            PayloadSetting::Labels => apitap_schema::PayloadMode::Labels,
        }
    }
}

/// `[payload]`: data minimisation at the sensor (R-CAP-8, schema 1.2 `payload` and `labels`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PayloadSection {
    /// `full` (default), `sample` or `labels`: see `docs/event-schema.md`.
    pub mode: PayloadSetting,
    /// Bytes kept of each body in `sample` mode (after masking), 1..=`decode.max_body_bytes`.
    pub sample_bytes: usize,
    /// Also ship the labels (`labels` field) in `full` and `sample` mode; `labels` mode always
    /// ships them. In `full` mode this costs one scan per event.
    pub attach_labels: bool,
    /// File holding the site secret that keys the value hashes in shipped labels (the same
    /// secret as the analyzer's `labels.hash_key_file`, so hashes correlate). Absent: a random
    /// per-process key, and hashes correlate only within one sensor run.
    pub hash_key_file: Option<PathBuf>,
    /// Bodies shipped per endpoint and second at most (0: every body, the default). Beyond
    /// it, events of that endpoint leave with their metadata only (`bodies_sampled_out`,
    /// lengths kept), which caps what a very hot endpoint costs the agent; counted in
    /// `apitap_payload_sampled_out_events_total`. An endpoint is server, method and path with
    /// identifier-like segments merged (see `sensor-user/src/sampling.rs`).
    pub max_bodies_per_endpoint_per_sec: u32,
    /// Endpoints the sampler tracks at most (1..=1048576); beyond it the table starts over.
    pub max_sampled_endpoints: usize,
}

impl Default for PayloadSection {
    fn default() -> Self {
        PayloadSection {
            mode: PayloadSetting::Full,
            sample_bytes: 1024,
            attach_labels: false,
            hash_key_file: None,
            max_bodies_per_endpoint_per_sec: 0,
            max_sampled_endpoints: 16_384,
        }
    }
}

impl PayloadSection {
    /// True when events are scanned for sensitive data (anything but `full` without labels).
    pub fn scans(&self) -> bool {
        self.mode != PayloadSetting::Full || self.attach_labels
    }
}

/// Where events are written.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// JSON lines on standard output.
    #[default]
    Stdout,
    /// JSON lines appended to `sink.path`.
    File,
    /// The `[kafka]` section's events topic, through the on-disk spool (R-BUS-1, R-BUS-2).
    Kafka,
}

/// `[sink]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SinkSection {
    /// `stdout` (default), `file` or `kafka`.
    #[serde(default)]
    pub kind: SinkKind,
    /// File to append JSON lines to (required when `kind = "file"`).
    pub path: Option<PathBuf>,
}

/// `[metrics]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Address for the Prometheus `/metrics` and `/healthz` HTTP endpoint; absent disables it.
    /// Keep it on loopback unless a scraper elsewhere needs it (R-OPS-3).
    pub listen: Option<SocketAddr>,
    /// File holding a bearer token that `/metrics` then requires (`Authorization: Bearer
    /// <token>`, RFC 6750); `/healthz` stays open for probes. Refused at start unless the file
    /// is its owner's alone (mode 0600 or stricter) and holds at least 16 bytes. Absent: no
    /// authentication. The token is never logged. TLS or mTLS: terminate them in a proxy in
    /// front (e.g. kube-rbac-proxy).
    pub token_file: Option<PathBuf>,
}

/// A configuration value that cannot work, with the field it came from.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: `{field}`: {reason}")]
pub struct ConfigError {
    /// Dotted field path, e.g. `capture.snap_len_bytes`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        use anyhow::Context as _;
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let cfg = Config::parse(&text).with_context(|| format!("in {}", path.display()))?;
        Ok(cfg)
    }

    /// Parses TOML text (serde names the offending field on type or name errors).
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let cfg: Config = toml::from_str(text)?;
        Ok(cfg)
    }

    /// Checks values that parse but cannot work, for live capture.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_capture()?;
        self.validate_offline()
    }

    fn validate_capture(&self) -> Result<(), ConfigError> {
        let c = &self.capture;
        if c.interfaces.is_empty() {
            return Err(invalid(
                "capture.interfaces",
                "at least one interface is required",
            ));
        }
        for i in &c.interfaces {
            if i.is_empty() || i.len() > 15 || i.contains(['/', ' ', '\0']) {
                return Err(invalid(
                    "capture.interfaces",
                    format!("{i:?} is not an interface name"),
                ));
            }
        }
        if c.snap_len_bytes == 0 || c.snap_len_bytes > MAX_SNAP_BYTES {
            return Err(invalid(
                "capture.snap_len_bytes",
                format!("must be 1..={MAX_SNAP_BYTES}"),
            ));
        }
        if !c.ring_buffer_bytes.is_power_of_two() || c.ring_buffer_bytes < 64 * 1024 {
            return Err(invalid(
                "capture.ring_buffer_bytes",
                "must be a power of two of at least 65536",
            ));
        }
        if c.wakeup_bytes > c.ring_buffer_bytes / 2 {
            return Err(invalid(
                "capture.wakeup_bytes",
                format!(
                    "must be at most half of capture.ring_buffer_bytes ({})",
                    c.ring_buffer_bytes / 2
                ),
            ));
        }
        if !(1..=1000).contains(&c.poll_interval_ms) {
            return Err(invalid("capture.poll_interval_ms", "must be 1..=1000"));
        }
        if c.ports.len() > apitap_common::MAX_PORTS as usize {
            return Err(invalid(
                "capture.ports",
                format!("at most {} ports", apitap_common::MAX_PORTS),
            ));
        }
        if c.ports.contains(&0) {
            return Err(invalid("capture.ports", "port 0 is not a TCP port"));
        }
        self.validate_tls()?;
        let k = &self.attribution.kubernetes;
        if k.mode == KubernetesMode::On && k.node().is_none() {
            return Err(invalid(
                "attribution.kubernetes.node_name",
                "unset and $NODE_NAME is empty: the node's pods cannot be selected",
            ));
        }
        Ok(())
    }

    fn validate_tls(&self) -> Result<(), ConfigError> {
        let t = &self.tls;
        if !t.ring_buffer_bytes.is_power_of_two() || t.ring_buffer_bytes < 64 * 1024 {
            return Err(invalid(
                "tls.ring_buffer_bytes",
                "must be a power of two of at least 65536",
            ));
        }
        if !(1..=1 << 20).contains(&t.max_connections) {
            return Err(invalid("tls.max_connections", "must be 1..=1048576"));
        }
        if t.idle_timeout_secs == 0 {
            return Err(invalid("tls.idle_timeout_secs", "must be greater than 0"));
        }
        if !(1..=3600).contains(&t.rescan_interval_secs) {
            return Err(invalid("tls.rescan_interval_secs", "must be 1..=3600"));
        }
        if t.processes.len() > apitap_common::tls::MAX_TLS_COMMS as usize {
            return Err(invalid(
                "tls.processes",
                format!("at most {} names", apitap_common::tls::MAX_TLS_COMMS),
            ));
        }
        for p in &t.processes {
            if p.is_empty() || p.len() > 15 || p.contains(['/', '\0']) {
                return Err(invalid(
                    "tls.processes",
                    format!(
                        "{p:?} is not a command name (1 to 15 bytes, no '/': the file name, not the path)"
                    ),
                ));
            }
        }
        if t.executables.len() > apitap_common::tls::MAX_TLS_COMMS as usize {
            return Err(invalid(
                "tls.executables",
                format!("at most {} paths", apitap_common::tls::MAX_TLS_COMMS),
            ));
        }
        for e in &t.executables {
            let len = e.as_os_str().len();
            if !e.is_absolute() || len >= apitap_common::tls::EXE_BYTES {
                return Err(invalid(
                    "tls.executables",
                    format!(
                        "{} is not an absolute path of at most {} bytes",
                        e.display(),
                        apitap_common::tls::EXE_BYTES - 1
                    ),
                ));
            }
        }
        if t.ports.len() > apitap_common::tls::MAX_TLS_PORTS as usize || t.ports.contains(&0) {
            return Err(invalid(
                "tls.ports",
                format!(
                    "at most {} ports, each 1..=65535",
                    apitap_common::tls::MAX_TLS_PORTS
                ),
            ));
        }
        for l in &t.libraries {
            if !l.is_absolute() {
                return Err(invalid(
                    "tls.libraries",
                    format!("{} is not an absolute path", l.display()),
                ));
            }
        }
        Ok(())
    }

    /// Checks everything but the capture section (what `replay` uses).
    pub fn validate_offline(&self) -> Result<(), ConfigError> {
        let d = &self.decode;
        for (field, v) in [
            ("decode.max_header_bytes", d.max_header_bytes),
            ("decode.max_headers", d.max_headers),
            ("decode.max_pending_requests", d.max_pending_requests),
            ("decode.max_connections", d.max_connections),
            (
                "decode.max_buffered_bytes_per_connection",
                d.max_buffered_bytes_per_connection,
            ),
            (
                "decode.max_buffered_bytes_total",
                d.max_buffered_bytes_total,
            ),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be greater than 0"));
            }
        }
        if d.max_headers > 128 {
            return Err(invalid("decode.max_headers", "at most 128"));
        }
        if d.gap_timeout_ms == 0 {
            return Err(invalid("decode.gap_timeout_ms", "must be greater than 0"));
        }
        if d.idle_timeout_secs == 0 || d.handshake_timeout_secs == 0 {
            return Err(invalid(
                if d.idle_timeout_secs == 0 {
                    "decode.idle_timeout_secs"
                } else {
                    "decode.handshake_timeout_secs"
                },
                "must be greater than 0",
            ));
        }
        let p = &self.payload;
        if p.mode == PayloadSetting::Sample
            && (p.sample_bytes == 0 || p.sample_bytes > d.max_body_bytes)
        {
            return Err(invalid(
                "payload.sample_bytes",
                format!(
                    "must be 1..={} (decode.max_body_bytes) in sample mode",
                    d.max_body_bytes
                ),
            ));
        }
        if !(1..=1 << 20).contains(&p.max_sampled_endpoints) {
            return Err(invalid(
                "payload.max_sampled_endpoints",
                "must be 1..=1048576",
            ));
        }
        if matches!(&p.hash_key_file, Some(f) if f.as_os_str().is_empty()) {
            return Err(invalid("payload.hash_key_file", "must not be empty"));
        }
        if matches!(&self.metrics.token_file, Some(f) if f.as_os_str().is_empty()) {
            return Err(invalid("metrics.token_file", "must not be empty"));
        }
        let a = &self.attribution;
        if matches!(&a.cgroup_root, Some(f) if f.as_os_str().is_empty()) {
            return Err(invalid("attribution.cgroup_root", "must not be empty"));
        }
        if !(1..=1 << 20).contains(&a.max_cached_connections) {
            return Err(invalid(
                "attribution.max_cached_connections",
                "must be 1..=1048576",
            ));
        }
        if a.kubernetes.mode == KubernetesMode::On && !a.enabled {
            return Err(invalid(
                "attribution.kubernetes.mode",
                "needs attribution.enabled = true (pods are found through the socket's cgroup)",
            ));
        }
        if matches!(&a.kubernetes.node_name, Some(n) if n.is_empty() || n.len() > 253) {
            return Err(invalid(
                "attribution.kubernetes.node_name",
                "must be a node name (1 to 253 characters)",
            ));
        }
        if matches!(&a.kubernetes.kubeconfig, Some(f) if f.as_os_str().is_empty()) {
            return Err(invalid(
                "attribution.kubernetes.kubeconfig",
                "must not be empty",
            ));
        }
        if self.metrics.token_file.is_some() && self.metrics.listen.is_none() {
            return Err(invalid(
                "metrics.token_file",
                "set without `metrics.listen` (or --metrics-listen)",
            ));
        }
        if self.sink.kind == SinkKind::File && self.sink.path.is_none() {
            return Err(invalid("sink.path", "required when sink.kind = \"file\""));
        }
        if matches!(&self.sensor.id, Some(id) if id.trim().is_empty()) {
            return Err(invalid("sensor.id", "must not be empty"));
        }
        if self.sink.kind == SinkKind::Kafka && self.kafka.is_none() {
            return Err(invalid(
                "kafka.brokers",
                "a [kafka] section is required when sink.kind = \"kafka\"",
            ));
        }
        if let Some(k) = &self.kafka {
            k.validate().map_err(|e| ConfigError {
                field: e.field,
                reason: e.reason,
            })?;
        }
        Ok(())
    }

    /// The decoder settings this configuration describes.
    pub fn reassembly(&self) -> ReassemblyConfig {
        let d = &self.decode;
        ReassemblyConfig {
            max_connections: d.max_connections,
            max_buffered_bytes_per_connection: d.max_buffered_bytes_per_connection,
            max_buffered_bytes_total: d.max_buffered_bytes_total,
            gap_timeout_us: d.gap_timeout_ms * 1000,
            idle_timeout_us: d.idle_timeout_secs * 1_000_000,
            handshake_timeout_us: d.handshake_timeout_secs * 1_000_000,
            server_ports: self.capture.ports.clone(),
            session: SessionConfig {
                max_body_bytes: d.max_body_bytes,
                max_header_bytes: d.max_header_bytes,
                max_headers: d.max_headers,
                max_pending_requests: d.max_pending_requests,
                max_pending_bytes: d.max_buffered_bytes_per_connection,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse("[capture]\ninterfaces = [\"eth0\"]\n").unwrap();
        c.validate().unwrap();
        assert_eq!(c.capture.snap_len_bytes, 65535);
        assert_eq!(c.decode.max_body_bytes, 64 * 1024);
        assert_eq!(c.sink.kind, SinkKind::Stdout);
        assert_eq!(c.capture.xdp_mode, XdpModeSetting::Skb);
        assert_eq!(c.payload.mode, PayloadSetting::Full);
        assert!(!c.payload.scans());
    }

    #[test]
    fn payload_section_parses_and_maps_to_schema_modes() {
        let c = Config::parse(
            "[capture]\ninterfaces = [\"eth0\"]\n[payload]\nmode = \"sample\"\nsample_bytes = 256\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.payload.mode.mode(), apitap_schema::PayloadMode::Sample);
        assert_eq!(c.payload.sample_bytes, 256);
        assert!(c.payload.scans());
        let c = Config::parse("[payload]\nmode = \"labels\"\n").unwrap();
        assert_eq!(c.payload.mode.mode(), apitap_schema::PayloadMode::Labels);
        let e = Config::parse("[payload]\nmode = \"hashed\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("mode"), "{e:#}");
        let e = Config::parse("[payload]\nsample_size = 3\n").unwrap_err();
        assert!(format!("{e:#}").contains("sample_size"), "{e:#}");
    }

    #[test]
    fn kafka_sink_with_defaults() {
        let c = Config::parse(
            "[capture]\ninterfaces = [\"eth0\"]\n[sink]\nkind = \"kafka\"\n[kafka]\nbrokers = [\"k1:9092\"]\n",
        )
        .unwrap();
        c.validate().unwrap();
        let k = c.kafka.unwrap();
        assert_eq!(k.events_topic, "apitap.events.v1");
        assert_eq!(k.spool.dir, PathBuf::from("/var/lib/apitap-sensor/spool"));
    }

    #[test]
    fn unknown_and_mistyped_fields_are_named() {
        let e = Config::parse("[capture]\ninterfaces = [\"eth0\"]\nsnaplen = 3\n").unwrap_err();
        assert!(format!("{e:#}").contains("snaplen"), "{e:#}");
        let e = Config::parse("[decode]\nmax_body_bytes = \"big\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("max_body_bytes"), "{e:#}");
    }

    #[test]
    fn impossible_values_name_the_field() {
        let cases = [
            ("[capture]\ninterfaces = []\n", "capture.interfaces"),
            (
                "[capture]\ninterfaces = [\"e\"]\nsnap_len_bytes = 70000\n",
                "capture.snap_len_bytes",
            ),
            (
                "[capture]\ninterfaces = [\"e\"]\nring_buffer_bytes = 100000\n",
                "capture.ring_buffer_bytes",
            ),
            (
                "[capture]\ninterfaces = [\"e\"]\nring_buffer_bytes = 65536\nwakeup_bytes = 65536\n",
                "capture.wakeup_bytes",
            ),
            (
                "[capture]\ninterfaces = [\"e\"]\npoll_interval_ms = 0\n",
                "capture.poll_interval_ms",
            ),
            (
                "[capture]\ninterfaces = [\"e\"]\nports = [0]\n",
                "capture.ports",
            ),
            (
                "[capture]\ninterfaces = [\"e\"]\n[decode]\nmax_connections = 0\n",
                "decode.max_connections",
            ),
            (
                "[capture]\ninterfaces = [\"e\"]\n[sink]\nkind = \"file\"\n",
                "sink.path",
            ),
            (
                "[capture]\ninterfaces = [\"e\"]\n[tls]\nprocesses = [\"/usr/sbin/nginx\"]\n",
                "tls.processes",
            ),
            (
                "[capture]\ninterfaces = [\"e\"]\n[tls]\nlibraries = [\"libssl.so.3\"]\n",
                "tls.libraries",
            ),
            (
                "[capture]\ninterfaces = [\"e\"]\n[tls]\nexecutables = [\"nginx\"]\n",
                "tls.executables",
            ),
            (
                "[capture]\ninterfaces = [\"e\"]\n[tls]\nports = [443, 0]\n",
                "tls.ports",
            ),
            (
                "[capture]\ninterfaces = [\"e\"]\n[tls]\nring_buffer_bytes = 1000\n",
                "tls.ring_buffer_bytes",
            ),
            (
                "[capture]\ninterfaces = [\"e\"]\n[tls]\nmax_connections = 0\n",
                "tls.max_connections",
            ),
            ("[capture]\ninterfaces = [\"a/b\"]\n", "capture.interfaces"),
            (
                "[capture]\ninterfaces = [\"e\"]\n[sink]\nkind = \"kafka\"\n",
                "kafka.brokers",
            ),
            (
                "[capture]\ninterfaces = [\"e\"]\n[sink]\nkind = \"kafka\"\n[kafka]\nbrokers = [\"k:9092\"]\n[kafka.librdkafka_options]\nacks = 1\n",
                "kafka.librdkafka_options.\"acks\"",
            ),
            (
                "[capture]\ninterfaces = [\"e\"]\n[kafka]\nbrokers = [\"k:9092\"]\n[kafka.spool]\nmax_bytes = 1\n",
                "kafka.spool.max_bytes",
            ),
            (
                "[capture]\ninterfaces = [\"e\"]\n[payload]\nmode = \"sample\"\nsample_bytes = 0\n",
                "payload.sample_bytes",
            ),
            (
                "[capture]\ninterfaces = [\"e\"]\n[payload]\nmode = \"sample\"\nsample_bytes = 70000\n",
                "payload.sample_bytes",
            ),
            (
                "[capture]\ninterfaces = [\"e\"]\n[payload]\nhash_key_file = \"\"\n",
                "payload.hash_key_file",
            ),
            (
                "[capture]\ninterfaces = [\"e\"]\n[metrics]\ntoken_file = \"/etc/apitap/t\"\n",
                "metrics.token_file",
            ),
            (
                "[capture]\ninterfaces = [\"e\"]\n[metrics]\nlisten = \"127.0.0.1:9464\"\ntoken_file = \"\"\n",
                "metrics.token_file",
            ),
            (
                "[capture]\ninterfaces = [\"e\"]\n[attribution]\ncgroup_root = \"\"\n",
                "attribution.cgroup_root",
            ),
            (
                "[capture]\ninterfaces = [\"e\"]\n[attribution]\nmax_cached_connections = 0\n",
                "attribution.max_cached_connections",
            ),
            (
                "[capture]\ninterfaces = [\"e\"]\n[attribution]\nenabled = false\n[attribution.kubernetes]\nmode = \"on\"\nnode_name = \"n\"\n",
                "attribution.kubernetes.mode",
            ),
            (
                "[capture]\ninterfaces = [\"e\"]\n[attribution.kubernetes]\nnode_name = \"\"\n",
                "attribution.kubernetes.node_name",
            ),
            (
                "[capture]\ninterfaces = [\"e\"]\n[attribution.kubernetes]\nkubeconfig = \"\"\n",
                "attribution.kubernetes.kubeconfig",
            ),
        ];
        for (text, field) in cases {
            let err = Config::parse(text).unwrap().validate().unwrap_err();
            assert_eq!(err.field, field, "{text}");
            assert!(err.to_string().contains(field));
        }
    }

    /// Kubernetes lookups need a node to select the pods by: the field, else `$NODE_NAME`.
    #[test]
    fn kubernetes_attribution_needs_a_node_name() {
        let text = "[capture]\ninterfaces = [\"e\"]\n[attribution.kubernetes]\nmode = \"on\"\n";
        let cfg = Config::parse(text).unwrap();
        if std::env::var_os("NODE_NAME").is_none() {
            let err = cfg.validate().unwrap_err();
            assert_eq!(err.field, "attribution.kubernetes.node_name");
        }
        let named = Config::parse(&format!("{text}node_name = \"node-1\"\n")).unwrap();
        named.validate().unwrap();
        assert_eq!(
            named.attribution.kubernetes.node().as_deref(),
            Some("node-1")
        );
        assert!(named.attribution.kubernetes.active());
        // `auto` off a cluster (no $KUBERNETES_SERVICE_HOST in tests) and without kubeconfig.
        if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
            let auto = Config::parse("[attribution.kubernetes]\nnode_name = \"n\"\n").unwrap();
            assert!(!auto.attribution.kubernetes.active());
            let with_kubeconfig =
                Config::parse("[attribution.kubernetes]\nnode_name = \"n\"\nkubeconfig = \"/k\"\n")
                    .unwrap();
            assert!(with_kubeconfig.attribution.kubernetes.active());
        }
        // Unknown keys are refused with their name.
        let e = Config::parse("[attribution]\ncgroup_path = \"/x\"\n").unwrap_err();
        assert!(e.to_string().contains("cgroup_path"), "{e}");
    }
}
