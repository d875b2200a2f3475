//! `[inventory]`: configuration of the API inventory (R-INV-1…5, R-OPS-2).

use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Deserialize;

use super::spec::OverrideRule;
use super::tree::TemplatingConfig;

/// How events are grouped into services.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceBy {
    /// The `Host` header (lower-cased), or the server address:port when there is none.
    #[default]
    Host,
    /// The `Host` header and the server address:port (`api.example.com@10.0.0.5:8080`).
    HostAndServer,
    /// The server address:port only.
    Server,
}

/// `[[inventory.partners]]`: a named group of client address ranges (R-INV-4).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerConfig {
    /// Name reported on the endpoints this partner calls.
    pub name: String,
    /// Its client address ranges (CIDR).
    pub cidrs: Vec<IpNet>,
}

/// `[[inventory.specs]]`: an operator-provided OpenAPI document for one service.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecConfig {
    /// The service it documents (as named by `service_by`).
    pub service: String,
    /// Swagger 2.0 or OpenAPI 3.x document, JSON or YAML.
    pub path: PathBuf,
}

/// `[inventory]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InventoryConfig {
    /// Store URL: `sqlite:/var/lib/apitap/inventory.db` (embedded), `postgres://…` (shared by
    /// several analyzers), or `sqlite::memory:`. Absent: no inventory is kept.
    pub store: Option<String>,
    /// PostgreSQL only: owner-only file (`chmod 600`, or a Kubernetes Secret with
    /// `defaultMode: 0400`) holding the password, kept out of `store` and this file.
    pub store_password_file: Option<PathBuf>,
    /// PostgreSQL only: PEM CA bundle the server certificate must chain to; absent: the
    /// system trust store. TLS is required for a server not on loopback (unless `store`
    /// says `sslmode=disable`), and certificates and host names are always verified.
    pub store_ca_file: Option<PathBuf>,
    /// Seconds between flushes of the inventory to the store while running. Default 10.
    pub flush_interval_secs: u64,
    /// Address of the inventory HTTP JSON API (e.g. `127.0.0.1:9480`); absent: no API. An
    /// address other than loopback needs authentication: `api_token_file` and/or
    /// `api_client_ca_file`.
    pub api_listen: Option<SocketAddr>,
    /// File holding a bearer token that every API route but `/healthz` then requires
    /// (`Authorization: Bearer <token>`, RFC 6750). Refused at start unless the file is its
    /// owner's alone (mode 0600 or stricter) and holds at least 16 bytes. Absent: no
    /// authentication. The token is never logged.
    pub api_token_file: Option<PathBuf>,
    /// PEM certificate chain (leaf first) the API serves HTTPS with (TLS 1.2+, issue 20);
    /// needs `api_tls_key_file`. Absent: plain HTTP (loopback, or behind a TLS proxy). Read
    /// at start: rotating it means restarting the analyzer.
    pub api_tls_cert_file: Option<PathBuf>,
    /// PEM private key of `api_tls_cert_file`; the service user's own file, mode 0600 or
    /// stricter (the rule of every credential file).
    pub api_tls_key_file: Option<PathBuf>,
    /// PEM CA bundle for **mutual TLS**: every client must present a certificate that
    /// chains to one of these CAs, or the handshake refuses it. Needs `api_tls_cert_file`.
    /// With `api_token_file` too, a request needs both; alone, the certificate is the
    /// credential (the console then needs no login).
    pub api_client_ca_file: Option<PathBuf>,
    /// Service grouping: `host` (default), `host_and_server` or `server`.
    pub service_by: ServiceBy,
    /// Seconds (event time) a newly discovered endpoint waits before the periodic flush
    /// stores it, so that values are not announced as endpoints just before their position
    /// becomes a parameter; the final flush stores everything. Default 60.
    pub discovery_grace_secs: u64,
    /// Seconds an endpoint stays `new` (or `revived`) before it is `active`. Default 86400.
    pub new_period_secs: u64,
    /// Seconds without requests after which an endpoint is `inactive`, and a parameter not
    /// seen is reported removed. Default 604800 (7 days).
    pub inactive_after_secs: u64,
    /// Requests per endpoint whose parameters and bodies are all inspected; afterwards one
    /// in `shape_sample_every`. Default 64.
    pub shape_full_samples: u64,
    /// After `shape_full_samples`, inspect one request in this many. Default 8.
    pub shape_sample_every: u64,
    /// Client address ranges that are internal; other clients make an endpoint
    /// internet-facing. Default: RFC 1918, loopback, link-local, CGNAT, IPv6 ULA.
    pub internal_cidrs: Vec<IpNet>,
    /// Named client groups.
    pub partners: Vec<PartnerConfig>,
    /// OpenAPI documents, matched before discovery.
    pub specs: Vec<SpecConfig>,
    /// Analyst overrides of templating.
    pub overrides: Vec<OverrideRule>,
    /// Services tracked at most; further services share the `{overflow}` service. Default
    /// 1000.
    pub max_services: usize,
    /// Memory the inventory may hold, estimated, in bytes (at least 1 MiB). At three
    /// quarters it is flushed early; over it, the least recently used endpoints drop their
    /// unstored shapes, then the least recently used services leave memory (counted:
    /// `apitap_inventory_memory_*`; see `docs/inventory.md`). Default 268435456 (256 MiB).
    pub max_memory_bytes: u64,
    /// Templating thresholds and bounds.
    pub templating: TemplatingConfig,
}

/// The default internal ranges.
pub fn default_internal_cidrs() -> Vec<IpNet> {
    [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "100.64.0.0/10",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    ]
    .iter()
    .filter_map(|s| s.parse().ok())
    .collect()
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig {
            store: None,
            store_password_file: None,
            store_ca_file: None,
            flush_interval_secs: 10,
            api_listen: None,
            api_token_file: None,
            api_tls_cert_file: None,
            api_tls_key_file: None,
            api_client_ca_file: None,
            service_by: ServiceBy::Host,
            discovery_grace_secs: 60,
            new_period_secs: 86_400,
            inactive_after_secs: 604_800,
            shape_full_samples: 64,
            shape_sample_every: 8,
            internal_cidrs: default_internal_cidrs(),
            partners: Vec::new(),
            specs: Vec::new(),
            overrides: Vec::new(),
            max_services: 1000,
            max_memory_bytes: 256 << 20,
            templating: TemplatingConfig::default(),
        }
    }
}

impl InventoryConfig {
    /// The password file and CA bundle for a PostgreSQL store.
    pub fn store_access(&self) -> super::store::postgres::PgAccess<'_> {
        super::store::postgres::PgAccess {
            password_file: self.store_password_file.as_deref(),
            ca_file: self.store_ca_file.as_deref(),
            ..Default::default()
        }
    }

    /// Checks ranges of values; returns the offending field and why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |f: &str, r: &str| Err((format!("inventory.{f}"), r.to_owned()));
        if self.flush_interval_secs == 0 {
            return err("flush_interval_secs", "must be at least 1");
        }
        if self.shape_sample_every == 0 {
            return err("shape_sample_every", "must be at least 1");
        }
        if self.max_services == 0 {
            return err("max_services", "must be at least 1");
        }
        if self.max_memory_bytes < 1 << 20 {
            return err("max_memory_bytes", "must be at least 1048576 (1 MiB)");
        }
        if self.inactive_after_secs == 0 || self.new_period_secs == 0 {
            return err("inactive_after_secs", "periods must be at least 1 second");
        }
        let t = &self.templating;
        if t.opaque_min_distinct < 2 || t.word_min_distinct < 2 {
            return err(
                "templating.opaque_min_distinct",
                "distinct-value thresholds must be at least 2",
            );
        }
        if t.max_children_per_node < 2 || t.max_nodes_per_service < 16 {
            return err(
                "templating.max_nodes_per_service",
                "bounds too small (children ≥ 2, nodes ≥ 16)",
            );
        }
        if t.max_endpoints_per_service == 0 {
            return err("templating.max_endpoints_per_service", "must be at least 1");
        }
        if t.word_min_singleton_percent > 100 {
            return err("templating.word_min_singleton_percent", "at most 100");
        }
        for (i, o) in self.overrides.iter().enumerate() {
            if let Err(reason) = super::spec::CompiledOverride::compile(o) {
                return Err((format!("inventory.overrides[{i}]"), reason));
            }
        }
        if self.api_listen.is_some() && self.store.as_deref() == Some("sqlite::memory:") {
            return err(
                "api_listen",
                "the HTTP API needs a store file or PostgreSQL, not sqlite::memory:",
            );
        }
        let postgres = self
            .store
            .as_deref()
            .is_some_and(|s| s.trim_start().starts_with("postgres"));
        if !postgres && self.store_password_file.is_some() {
            return err(
                "store_password_file",
                "only for a PostgreSQL `inventory.store`",
            );
        }
        if !postgres && self.store_ca_file.is_some() {
            return err("store_ca_file", "only for a PostgreSQL `inventory.store`");
        }
        if self.api_token_file.is_some() && self.api_listen.is_none() {
            return err("api_token_file", "set without `inventory.api_listen`");
        }
        for (field, set) in [
            ("api_tls_cert_file", self.api_tls_cert_file.is_some()),
            ("api_tls_key_file", self.api_tls_key_file.is_some()),
            ("api_client_ca_file", self.api_client_ca_file.is_some()),
        ] {
            if set && self.api_listen.is_none() {
                return err(field, "set without `inventory.api_listen`");
            }
        }
        match (&self.api_tls_cert_file, &self.api_tls_key_file) {
            (Some(_), None) => return err("api_tls_key_file", "`api_tls_cert_file` needs its key"),
            (None, Some(_)) => {
                return err(
                    "api_tls_cert_file",
                    "`api_tls_key_file` without its certificate",
                );
            }
            _ => {}
        }
        if self.api_client_ca_file.is_some() && self.api_tls_cert_file.is_none() {
            return err(
                "api_client_ca_file",
                "mutual TLS needs the server's own `api_tls_cert_file` and `api_tls_key_file`",
            );
        }
        // Loopback-only unless authenticated (issue 20, R-OPS-3): the API and console serve
        // the inventory and trace-back of the whole site.
        if let Some(addr) = self.api_listen
            && !addr.ip().is_loopback()
            && self.api_token_file.is_none()
            && self.api_client_ca_file.is_none()
        {
            return err(
                "api_listen",
                "an address other than loopback needs authentication: set `api_token_file` and/or \
                 `api_client_ca_file`",
            );
        }
        if self.api_listen.is_some() && self.store.is_none() {
            return err("api_listen", "the HTTP API needs `inventory.store`");
        }
        Ok(())
    }
}
