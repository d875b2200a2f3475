//! Endpoint shape learning (R-INV-2, R-INV-4): what one endpoint's requests and responses
//! look like, built up event by event.
//!
//! Everything here is mergeable ([`EndpointData::absorb`]): when templating folds two
//! endpoints into one, or two analyzer instances share a store, their data adds up. Nothing
//! keeps a raw value: parameters and fields are kept by name with their inferred types,
//! formats, a presence count and up to [`MAX_EXAMPLES`] example *shapes* ([`mask`]); header
//! and cookie values, query values and bodies are never stored (R-OPS-3). Memory per endpoint
//! is bounded: parameters per location and fields per body are capped and the excess counted.

use std::collections::BTreeMap;
use std::net::IpAddr;

use apitap_labels::facts::{
    API_KEY_HEADERS, API_KEY_QUERY, BodyBytes, BodyError, EventFacts, RequestHeaders, cookie_pairs,
    header, is_session_cookie, percent_decode, query_pairs,
};
use apitap_schema::{ApiEvent, BodyEncoding};
use serde::{Deserialize, Serialize};

use super::shape::{SegmentShape, TypeSet, ValueType, mask, string_format};

/// Example shapes kept per parameter or field.
pub const MAX_EXAMPLES: usize = 3;
/// Parameters kept per location (query, header, cookie, path).
pub const MAX_PARAMS: usize = 64;
/// Fields kept per body shape.
pub const MAX_FIELDS: usize = 128;
/// Nesting followed into JSON and XML bodies.
pub const MAX_DEPTH: usize = 8;
/// Decompressed bytes inspected per body.
pub const MAX_INFLATED_BYTES: u64 = 256 * 1024;
/// Distinct content types, status codes or styles kept per endpoint.
pub const MAX_KINDS: usize = 32;

/// Statistics of one parameter or body field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldStats {
    /// Sampled messages in which it was present.
    pub seen: u64,
    /// Inferred value types ([`ValueType`] bits).
    pub types: TypeSet,
    /// Well-known string formats seen (`uuid`, `email`, `date`, `date-time`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub formats: Vec<String>,
    /// Example shapes of string values (never values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
    /// When it was last seen, µs since the epoch.
    pub last_seen_unix_us: u64,
}

impl FieldStats {
    fn observe(&mut self, t: ValueType, text: Option<&str>, now_us: u64) {
        self.seen += 1;
        self.types |= t.bit();
        self.last_seen_unix_us = self.last_seen_unix_us.max(now_us);
        // Formats and example shapes settle fast: look at the first values, then one in 64.
        let look = self.seen <= 16 || self.seen.is_multiple_of(64);
        if look && let Some(text) = text.filter(|s| !s.is_empty()) {
            if let Some(f) = string_format(text)
                && !self.formats.iter().any(|x| x == f)
                && self.formats.len() < 4
            {
                self.formats.push(f.to_owned());
            }
            if self.examples.len() < MAX_EXAMPLES {
                let m = mask(text);
                if !self.examples.contains(&m) {
                    self.examples.push(m);
                }
            }
        }
    }

    fn absorb(&mut self, other: &FieldStats) {
        self.seen += other.seen;
        self.types |= other.types;
        self.last_seen_unix_us = self.last_seen_unix_us.max(other.last_seen_unix_us);
        for f in &other.formats {
            if !self.formats.contains(f) && self.formats.len() < 4 {
                self.formats.push(f.clone());
            }
        }
        for e in &other.examples {
            if !self.examples.contains(e) && self.examples.len() < MAX_EXAMPLES {
                self.examples.push(e.clone());
            }
        }
    }
}

/// Named fields with a bound; names beyond it are counted in `dropped`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fields {
    /// Field name (or JSON path) → statistics.
    pub fields: BTreeMap<String, FieldStats>,
    /// Observations of names that did not fit.
    #[serde(default)]
    pub dropped: u64,
}

impl Fields {
    fn observe(&mut self, name: &str, t: ValueType, text: Option<&str>, now_us: u64, cap: usize) {
        if let Some(f) = self.fields.get_mut(name) {
            f.observe(t, text, now_us);
        } else if self.fields.len() < cap {
            let mut f = FieldStats::default();
            f.observe(t, text, now_us);
            self.fields.insert(name.to_owned(), f);
        } else {
            self.dropped += 1;
        }
    }

    fn absorb(&mut self, other: &Fields, cap: usize) {
        self.dropped += other.dropped;
        for (name, stats) in &other.fields {
            if let Some(f) = self.fields.get_mut(name) {
                f.absorb(stats);
            } else if self.fields.len() < cap {
                self.fields.insert(name.clone(), stats.clone());
            } else {
                self.dropped += stats.seen;
            }
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// The structure of one kind of body (JSON, form, multipart, XML).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyShape {
    /// Bodies of this kind inspected.
    pub samples: u64,
    /// Bodies that could not be parsed (cut by the capture cap, malformed).
    #[serde(default)]
    pub unparsed: u64,
    /// Type of the top-level value ([`ValueType`] bits).
    pub root_types: TypeSet,
    /// Fields by path: `a.b`, `items[].id` for JSON; names for forms and multipart; element
    /// paths for XML.
    pub fields: Fields,
}

impl BodyShape {
    fn absorb(&mut self, other: &BodyShape) {
        self.samples += other.samples;
        self.unparsed += other.unparsed;
        self.root_types |= other.root_types;
        self.fields.absorb(&other.fields, MAX_FIELDS);
    }
}

fn absorb_counts(a: &mut BTreeMap<String, u64>, b: &BTreeMap<String, u64>) {
    for (k, v) in b {
        if let Some(x) = a.get_mut(k) {
            *x += v;
        } else if a.len() < MAX_KINDS {
            a.insert(k.clone(), *v);
        }
    }
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    if let Some(x) = map.get_mut(key) {
        *x += 1;
    } else if map.len() < MAX_KINDS {
        map.insert(key.to_owned(), 1);
    }
}

fn absorb_bodies(a: &mut BTreeMap<String, BodyShape>, b: &BTreeMap<String, BodyShape>) {
    for (k, v) in b {
        if let Some(x) = a.get_mut(k) {
            x.absorb(v);
        } else if a.len() < MAX_KINDS {
            a.insert(k.clone(), v.clone());
        }
    }
}

/// What the requests of an endpoint carry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestShape {
    /// Requests inspected for parameters (the sampled ones); presence ratios are relative to
    /// this.
    pub samples: u64,
    /// Query parameters.
    pub query: Fields,
    /// Header fields (names lower-cased; `Cookie` and `Authorization` are reported as cookies
    /// and auth scheme instead).
    pub headers: Fields,
    /// Cookies by name.
    pub cookies: Fields,
    /// Content types (media type only, lower-cased) → count.
    pub content_types: BTreeMap<String, u64>,
    /// Body kind (`json`, `form`, `multipart`, `xml`) → structure.
    pub bodies: BTreeMap<String, BodyShape>,
}

/// What the responses of one status code look like.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseShape {
    /// Responses with this status.
    pub count: u64,
    /// Responses inspected for structure.
    pub samples: u64,
    /// Content types → count.
    pub content_types: BTreeMap<String, u64>,
    /// Header names (lower-cased).
    pub headers: Fields,
    /// Body kind → structure.
    pub bodies: BTreeMap<String, BodyShape>,
}

/// Log-linear histogram of non-negative integers (latency in µs, sizes in bytes): values
/// below 16 get a bucket each, above each power of two is split into 16 buckets, so a
/// percentile is within 1/16 of the true value. Mergeable and bounded (≤ 976 buckets).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// Values recorded.
    pub count: u64,
    /// Largest value recorded.
    pub max: u64,
    /// Bucket index → count.
    pub buckets: BTreeMap<u16, u64>,
}

impl Histogram {
    fn bucket_of(v: u64) -> u16 {
        if v < 16 {
            return v as u16;
        }
        let exp = 63 - v.leading_zeros();
        let shift = exp - 4;
        let sub = (v >> shift) & 15;
        ((u64::from(shift) + 1) * 16 + sub) as u16
    }

    fn bucket_mid(b: u16) -> u64 {
        let b = u64::from(b);
        if b < 16 {
            return b;
        }
        let shift = b / 16 - 1;
        let lower = (16 + b % 16) << shift;
        lower + ((1u64 << shift) >> 1)
    }

    /// Adds a value.
    pub fn record(&mut self, v: u64) {
        *self.buckets.entry(Self::bucket_of(v)).or_insert(0) += 1;
        self.count += 1;
        self.max = self.max.max(v);
    }

    /// Adds another histogram.
    pub fn absorb(&mut self, other: &Histogram) {
        for (b, n) in &other.buckets {
            *self.buckets.entry(*b).or_insert(0) += n;
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
    }

    /// Nearest-rank percentile (`q` in 0..=1), as its bucket's midpoint, never above the
    /// maximum; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return Some(Self::bucket_mid(*b).min(self.max));
            }
        }
        Some(self.max)
    }
}

/// HyperLogLog registers (2⁸): distinct-count estimate within about 6.5 %, exact-ish below a
/// few hundred (linear counting), 256 bytes whatever the count, mergeable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistinctSketch {
    registers: [u8; 256],
}

impl Default for DistinctSketch {
    fn default() -> Self {
        DistinctSketch {
            registers: [0; 256],
        }
    }
}

impl DistinctSketch {
    /// Counts a hashed item.
    pub fn insert_hash(&mut self, h: u64) {
        let idx = (h >> 56) as usize;
        let rest = h << 8 | 0x80;
        let rank = rest.leading_zeros() as u8 + 1;
        if self.registers[idx] < rank {
            self.registers[idx] = rank;
        }
    }

    /// Counts an address.
    pub fn insert_ip(&mut self, ip: IpAddr) {
        let h = match ip {
            IpAddr::V4(v4) => xxhash_rust::xxh3::xxh3_64(&v4.octets()),
            IpAddr::V6(v6) => xxhash_rust::xxh3::xxh3_64(&v6.octets()),
        };
        self.insert_hash(h);
    }

    /// Adds another sketch.
    pub fn absorb(&mut self, other: &DistinctSketch) {
        for (a, b) in self.registers.iter_mut().zip(other.registers.iter()) {
            *a = (*a).max(*b);
        }
    }

    /// Estimated distinct count.
    pub fn estimate(&self) -> u64 {
        let m = 256.0f64;
        let zeros = self.registers.iter().filter(|&&r| r == 0).count();
        if zeros == 256 {
            return 0;
        }
        let sum: f64 = self
            .registers
            .iter()
            .map(|&r| 2f64.powi(-i32::from(r)))
            .sum();
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let raw = alpha * m * m / sum;
        let est = if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        };
        est.round() as u64
    }
}

impl Serialize for DistinctSketch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut hex = String::with_capacity(512);
        for r in self.registers {
            hex.push_str(&format!("{r:02x}"));
        }
        s.serialize_str(&hex)
    }
}

impl<'de> Deserialize<'de> for DistinctSketch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let hex = String::deserialize(d)?;
        let mut sketch = DistinctSketch::default();
        if hex.len() != 512 {
            return Err(serde::de::Error::custom("sketch must be 512 hex digits"));
        }
        for (i, r) in sketch.registers.iter_mut().enumerate() {
            *r = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| serde::de::Error::custom("sketch must be hex"))?;
        }
        Ok(sketch)
    }
}

/// Who calls an endpoint (R-INV-4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exposure {
    /// Requests from addresses outside the configured internal ranges.
    pub internet_requests: u64,
    /// Requests from the configured internal ranges.
    pub internal_requests: u64,
    /// Requests per configured partner (client group) name.
    #[serde(default)]
    pub partners: BTreeMap<String, u64>,
}

/// Everything learned about one endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointData {
    /// Requests seen.
    pub hits: u64,
    /// First request, µs since the epoch (0: none yet).
    pub first_seen_unix_us: u64,
    /// Last request, µs since the epoch.
    pub last_seen_unix_us: u64,
    /// API style → requests (`rest`, `graphql`, `soap`, `grpc`, `json_rpc`, `websocket`).
    pub styles: BTreeMap<String, u64>,
    /// Auth scheme → requests (see [`AuthScheme`]).
    pub auth: BTreeMap<String, u64>,
    /// Path parameters by segment index: value types and shapes.
    pub path_params: BTreeMap<String, FieldStats>,
    /// Request shape.
    pub request: RequestShape,
    /// Status code → response shape.
    pub responses: BTreeMap<u16, ResponseShape>,
    /// Requests without a response.
    pub no_response: u64,
    /// Distinct client addresses.
    pub clients: DistinctSketch,
    /// Internet-facing vs internal, partners.
    pub exposure: Exposure,
    /// Latency in µs.
    pub latency_us: Histogram,
    /// Request body sizes in bytes.
    pub request_bytes: Histogram,
    /// Response body sizes in bytes.
    pub response_bytes: Histogram,
    /// Sensitive data carried: labels, function class, sensitivity (R-SEN-1, R-SEN-2).
    #[serde(default)]
    pub sensitive: super::sensitive::SensitiveData,
}

impl EndpointData {
    /// Adds another endpoint's data (templating folded them, or another instance's delta).
    pub fn absorb(&mut self, o: &EndpointData) {
        if o.hits == 0 && o.first_seen_unix_us == 0 {
            return;
        }
        self.first_seen_unix_us = match (self.first_seen_unix_us, o.first_seen_unix_us) {
            (0, b) => b,
            (a, 0) => a,
            (a, b) => a.min(b),
        };
        self.last_seen_unix_us = self.last_seen_unix_us.max(o.last_seen_unix_us);
        self.hits += o.hits;
        absorb_counts(&mut self.styles, &o.styles);
        absorb_counts(&mut self.auth, &o.auth);
        for (k, v) in &o.path_params {
            self.path_params.entry(k.clone()).or_default().absorb(v);
        }
        let (r, orq) = (&mut self.request, &o.request);
        r.samples += orq.samples;
        r.query.absorb(&orq.query, MAX_PARAMS);
        r.headers.absorb(&orq.headers, MAX_PARAMS);
        r.cookies.absorb(&orq.cookies, MAX_PARAMS);
        absorb_counts(&mut r.content_types, &orq.content_types);
        absorb_bodies(&mut r.bodies, &orq.bodies);
        for (status, resp) in &o.responses {
            if let Some(x) = self.responses.get_mut(status) {
                x.count += resp.count;
                x.samples += resp.samples;
                absorb_counts(&mut x.content_types, &resp.content_types);
                x.headers.absorb(&resp.headers, MAX_PARAMS);
                absorb_bodies(&mut x.bodies, &resp.bodies);
            } else if self.responses.len() < MAX_KINDS {
                self.responses.insert(*status, resp.clone());
            }
        }
        self.no_response += o.no_response;
        self.clients.absorb(&o.clients);
        self.exposure.internet_requests += o.exposure.internet_requests;
        self.exposure.internal_requests += o.exposure.internal_requests;
        absorb_counts(&mut self.exposure.partners, &o.exposure.partners);
        self.latency_us.absorb(&o.latency_us);
        self.request_bytes.absorb(&o.request_bytes);
        self.response_bytes.absorb(&o.response_bytes);
        self.sensitive.absorb(&o.sensitive);
    }

    /// Auth schemes, most used first.
    pub fn auth_schemes(&self) -> Vec<String> {
        ranked(&self.auth)
    }

    /// The main API style.
    pub fn style(&self) -> String {
        ranked(&self.styles)
            .into_iter()
            .next()
            .unwrap_or_else(|| "rest".into())
    }

    /// `internet_facing` when any request came from outside the internal ranges, else
    /// `internal` (or `unknown` before any request).
    pub fn exposure_class(&self) -> &'static str {
        if self.exposure.internet_requests > 0 {
            "internet_facing"
        } else if self.exposure.internal_requests > 0 {
            "internal"
        } else {
            "unknown"
        }
    }
}

fn ranked(map: &BTreeMap<String, u64>) -> Vec<String> {
    let mut v: Vec<(&String, &u64)> = map.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.into_iter().map(|(k, _)| k.clone()).collect()
}

/// Auth schemes recognised in requests (R-INV-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    /// No credential seen.
    None,
    /// `Authorization: Basic`.
    Basic,
    /// `Authorization: Bearer` with a JWT.
    BearerJwt,
    /// `Authorization: Bearer` with an opaque token.
    Bearer,
    /// `Authorization: Digest`.
    Digest,
    /// Another `Authorization` scheme.
    OtherAuthorization,
    /// An API key header (`X-API-Key`, …).
    ApiKeyHeader,
    /// An API key or access token in the query string.
    ApiKeyQuery,
    /// A session cookie.
    CookieSession,
    /// No HTTP credential on a TLS connection: client certificates (mTLS) cannot be observed.
    NoneTlsUnknown,
}

impl AuthScheme {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthScheme::None => "none",
            AuthScheme::Basic => "basic",
            AuthScheme::BearerJwt => "bearer_jwt",
            AuthScheme::Bearer => "bearer",
            AuthScheme::Digest => "digest",
            AuthScheme::OtherAuthorization => "authorization_other",
            AuthScheme::ApiKeyHeader => "api_key_header",
            AuthScheme::ApiKeyQuery => "api_key_query",
            AuthScheme::CookieSession => "cookie_session",
            AuthScheme::NoneTlsUnknown => "none_mtls_unknown",
        }
    }
}

fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts[0].starts_with("eyJ")
        && parts.iter().take(2).all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
        })
}

/// The auth scheme of a request, from its headers and query (values are inspected for their
/// scheme and shape only, never kept).
pub fn auth_scheme(event: &ApiEvent) -> AuthScheme {
    auth_scheme_with(event, &RequestHeaders::of(&event.request.headers))
}

/// [`auth_scheme`] with the headers already scanned.
pub fn auth_scheme_with(event: &ApiEvent, scan: &RequestHeaders<'_>) -> AuthScheme {
    if let Some(value) = scan.authorization {
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        return if scheme.eq_ignore_ascii_case("basic") {
            AuthScheme::Basic
        } else if scheme.eq_ignore_ascii_case("bearer") {
            if looks_like_jwt(rest.trim()) {
                AuthScheme::BearerJwt
            } else {
                AuthScheme::Bearer
            }
        } else if scheme.eq_ignore_ascii_case("digest") {
            AuthScheme::Digest
        } else {
            AuthScheme::OtherAuthorization
        };
    }
    if scan.api_key_header {
        return AuthScheme::ApiKeyHeader;
    }
    // Every API-key query name contains `key` or `token`: split the query only then.
    if let Some(q) = &event.request.query
        && (contains_ignore_case(q, "key") || contains_ignore_case(q, "token"))
        && query_pairs(q).any(|(n, _)| API_KEY_QUERY.iter().any(|k| n.eq_ignore_ascii_case(k)))
    {
        return AuthScheme::ApiKeyQuery;
    }
    if scan.session_cookie {
        return AuthScheme::CookieSession;
    }
    if event.tls {
        AuthScheme::NoneTlsUnknown
    } else {
        AuthScheme::None
    }
}

/// Media type of a `Content-Type` value: lower-cased, parameters removed.
pub fn media_type(content_type: &str) -> std::borrow::Cow<'_, str> {
    let m = content_type
        .split_once(';')
        .map_or(content_type, |(m, _)| m)
        .trim();
    if m.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(m.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(m)
    }
}

/// Body kind of a media type: `json`, `form`, `multipart`, `xml`, or `None` (not inspected).
pub fn body_kind(media: &str) -> Option<&'static str> {
    if media == "application/json" || media.ends_with("+json") || media.ends_with("/json") {
        Some("json")
    } else if media == "application/x-www-form-urlencoded" {
        Some("form")
    } else if media.starts_with("multipart/") {
        Some("multipart")
    } else if media.ends_with("/xml") || media.ends_with("+xml") {
        Some("xml")
    } else {
        None
    }
}

/// A body's bytes for shape learning: the event's shared decoded body, of which at most
/// [`MAX_INFLATED_BYTES`] are inspected when this analyzer removed the coding (a longer JSON
/// document is cut and then not learned).
fn learn_bytes<'x>(body: Result<&'x BodyBytes<'_>, BodyError>) -> Option<&'x [u8]> {
    let b = body.ok()?;
    let cap = usize::try_from(MAX_INFLATED_BYTES).unwrap_or(usize::MAX);
    Some(if b.content_decoded && b.bytes.len() > cap {
        &b.bytes[..cap]
    } else {
        &b.bytes
    })
}

/// A JSON object key as a field name: keys that look like values (numbers, UUIDs, emails,
/// tokens) become `*`, so maps keyed by IDs neither explode the field list nor store values.
fn key_name(key: &str) -> &str {
    // Most keys are short names: no need to classify them.
    if key.len() < 16
        && key
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'-')
    {
        return key;
    }
    match SegmentShape::of(key).strength() {
        super::shape::Strength::Strong | super::shape::Strength::Opaque => "*",
        _ => key,
    }
}

fn json_type(v: &serde_json::Value) -> ValueType {
    match v {
        serde_json::Value::Null => ValueType::Null,
        serde_json::Value::Bool(_) => ValueType::Boolean,
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => ValueType::Integer,
        serde_json::Value::Number(_) => ValueType::Number,
        serde_json::Value::String(_) => ValueType::String,
        serde_json::Value::Array(_) => ValueType::Array,
        serde_json::Value::Object(_) => ValueType::Object,
    }
}

fn walk_json(v: &serde_json::Value, path: &mut String, depth: usize, out: &mut Fields, now: u64) {
    match v {
        serde_json::Value::Object(map) => {
            if depth >= MAX_DEPTH {
                return;
            }
            for (k, child) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key_name(k));
                let text = child.as_str();
                out.observe(path, json_type(child), text, now, MAX_FIELDS);
                walk_json(child, path, depth + 1, out, now);
                path.truncate(len);
            }
        }
        serde_json::Value::Array(items) => {
            if depth >= MAX_DEPTH {
                return;
            }
            let len = path.len();
            path.push_str("[]");
            // Element structure from the first few elements.
            for item in items.iter().take(3) {
                if !matches!(
                    item,
                    serde_json::Value::Object(_) | serde_json::Value::Array(_)
                ) {
                    out.observe(path, json_type(item), item.as_str(), now, MAX_FIELDS);
                }
                walk_json(item, path, depth + 1, out, now);
            }
            path.truncate(len);
        }
        _ => {}
    }
}

/// Parses a body of `kind` into `shape`.
fn learn_body(kind: &str, bytes: &[u8], content_type: &str, shape: &mut BodyShape, now: u64) {
    shape.samples += 1;
    match kind {
        "json" => match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(v) => {
                shape.root_types |= json_type(&v).bit();
                walk_json(&v, &mut String::new(), 0, &mut shape.fields, now);
            }
            Err(_) => shape.unparsed += 1,
        },
        "form" => {
            shape.root_types |= ValueType::Object.bit();
            let text = String::from_utf8_lossy(bytes);
            for (name, value) in query_pairs(&text) {
                let value = percent_decode(value, true).into_owned();
                let name = percent_decode(name, false).into_owned();
                shape.fields.observe(
                    key_name(&name),
                    ValueType::of_text(&value),
                    Some(&value),
                    now,
                    MAX_FIELDS,
                );
            }
        }
        "multipart" => {
            shape.root_types |= ValueType::Object.bit();
            learn_multipart(bytes, content_type, shape, now);
        }
        "xml" => {
            shape.root_types |= ValueType::Object.bit();
            if !learn_xml(bytes, shape, now) {
                shape.unparsed += 1;
            }
        }
        _ => {}
    }
}

fn learn_multipart(bytes: &[u8], content_type: &str, shape: &mut BodyShape, now: u64) {
    let Some(boundary) = content_type.split(';').find_map(|p| {
        let p = p.trim();
        p.strip_prefix("boundary=")
            .map(|b| b.trim_matches('"').to_owned())
    }) else {
        shape.unparsed += 1;
        return;
    };
    let text = String::from_utf8_lossy(bytes);
    let delim = format!("--{boundary}");
    for part in text.split(delim.as_str()).skip(1) {
        let Some((head, _)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let mut name = None;
        let mut file = false;
        for line in head.lines() {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("content-disposition:") {
                for attr in line.split(';').map(str::trim) {
                    if let Some(v) = attr.strip_prefix("name=") {
                        name = Some(v.trim_matches('"').to_owned());
                    }
                    if attr.starts_with("filename=") {
                        file = true;
                    }
                }
            }
        }
        if let Some(name) = name {
            // Part contents are never looked at: only the part's name and whether it is a
            // file.
            shape.fields.observe(
                key_name(&name),
                ValueType::String,
                file.then_some("<file>"),
                now,
                MAX_FIELDS,
            );
        }
    }
}

/// Element paths of an XML document (`Envelope.Body.GetBalance`), by a tolerant tag scanner
/// that needs no DTD or namespace processing. Returns false when no element was found.
fn learn_xml(bytes: &[u8], shape: &mut BodyShape, now: u64) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let mut stack: Vec<String> = Vec::new();
    let mut found = false;
    let mut rest = text.as_ref();
    while let Some(lt) = rest.find('<') {
        rest = &rest[lt + 1..];
        let Some(gt) = rest.find('>') else { break };
        let tag = &rest[..gt];
        rest = &rest[gt + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(close) = tag.strip_prefix('/') {
            let name = local_name(close);
            if let Some(pos) = stack.iter().rposition(|s| *s == name) {
                stack.truncate(pos);
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let name = local_name(tag.trim_end_matches('/'));
        if name.is_empty() || stack.len() >= MAX_DEPTH {
            continue;
        }
        stack.push(name);
        found = true;
        let path = stack.join(".");
        // Text content up to the next tag: typed, shape only.
        let text_end = rest.find('<').unwrap_or(rest.len());
        let content = rest[..text_end].trim();
        let t = if content.is_empty() {
            ValueType::Object
        } else {
            ValueType::of_text(content)
        };
        shape.fields.observe(
            &path,
            t,
            (!content.is_empty()).then_some(content),
            now,
            MAX_FIELDS,
        );
        if self_closing {
            stack.pop();
        }
    }
    found
}

fn local_name(tag: &str) -> String {
    let name = tag.split_whitespace().next().unwrap_or_default();
    let local = name.rsplit(':').next().unwrap_or(name);
    key_name(local).to_owned()
}

/// API style and operation of a request (R-INV-2): GraphQL by operation, JSON-RPC by method,
/// SOAP by action or body element, gRPC by content type, WebSocket by upgrade; else REST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StyleInfo {
    /// `rest`, `graphql`, `json_rpc`, `soap`, `grpc`, `websocket`.
    pub style: &'static str,
    /// Operation name for GraphQL (`query GetUser`), JSON-RPC (`method`) and SOAP (action);
    /// empty otherwise.
    pub operation: String,
}

/// Longest operation name kept.
const MAX_OPERATION_CHARS: usize = 64;

fn clean_operation(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ' ' | '/' | ':'))
        .take(MAX_OPERATION_CHARS)
        .collect()
}

/// Detects the style of `event`.
pub fn style_of(event: &ApiEvent) -> StyleInfo {
    style_with(event, &RequestHeaders::of(&event.request.headers))
}

/// [`style_of`] with the headers already scanned.
pub fn style_with(event: &ApiEvent, scan: &RequestHeaders<'_>) -> StyleInfo {
    let req = &event.request;
    let rest = |style| StyleInfo {
        style,
        operation: String::new(),
    };
    if scan.upgrade_websocket || event.response.as_ref().is_some_and(|r| r.status == 101) {
        return rest("websocket");
    }
    let ct = scan.content_type.map(media_type).unwrap_or_default();
    if ct.starts_with("application/grpc") {
        return rest("grpc");
    }
    if let Some(action) = scan.soap_action {
        let action = action.trim_matches('"');
        let op = action.rsplit(['/', '#']).next().unwrap_or(action);
        return StyleInfo {
            style: "soap",
            operation: clean_operation(op),
        };
    }
    let path_graphql = contains_ignore_case(&req.path, "graphql");
    if ct == "application/graphql" {
        let text = String::from_utf8_lossy(req.body.data.as_bytes());
        return StyleInfo {
            style: "graphql",
            operation: graphql_operation(None, &text),
        };
    }
    if path_graphql
        && req.method.eq_ignore_ascii_case("GET")
        && let Some(q) = &req.query
    {
        let mut name = None;
        let mut query = None;
        for (k, v) in query_pairs(q) {
            match k {
                "operationName" => name = Some(percent_decode(v, true).into_owned()),
                "query" => query = Some(percent_decode(v, true).into_owned()),
                _ => {}
            }
        }
        if let Some(query) = query {
            return StyleInfo {
                style: "graphql",
                operation: graphql_operation(name.as_deref(), &query),
            };
        }
    }
    let body = &req.body.data;
    if req.body.encoding == BodyEncoding::Utf8 && body_kind(&ct) == Some("json") {
        // The markers sit near the top of real requests: only the head is searched.
        let head = &body.as_bytes()[..body.len().min(1024)];
        let maybe_gql = memfind(head, b"\"query\"");
        let maybe_rpc = memfind(head, b"\"jsonrpc\"");
        if (maybe_gql || maybe_rpc)
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(body)
        {
            let first = match &v {
                serde_json::Value::Array(a) => a.first().cloned().unwrap_or_default(),
                other => other.clone(),
            };
            if maybe_rpc
                && first.get("jsonrpc").is_some()
                && let Some(m) = first.get("method").and_then(|m| m.as_str())
            {
                return StyleInfo {
                    style: "json_rpc",
                    operation: clean_operation(m),
                };
            }
            if let Some(q) = first.get("query").and_then(|q| q.as_str()) {
                let trimmed = q.trim_start();
                let gql = path_graphql
                    || trimmed.starts_with('{')
                    || ["query", "mutation", "subscription", "fragment"]
                        .iter()
                        .any(|k| trimmed.starts_with(k));
                if gql {
                    let name = first.get("operationName").and_then(|n| n.as_str());
                    return StyleInfo {
                        style: "graphql",
                        operation: graphql_operation(name, q),
                    };
                }
            }
        }
    }
    if body_kind(&ct) == Some("xml") || ct == "application/soap+xml" {
        let head: String = body.chars().take(2048).collect();
        if let Some(op) = soap_operation(&head) {
            return StyleInfo {
                style: "soap",
                operation: clean_operation(&op),
            };
        }
    }
    rest("rest")
}

fn memfind(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn contains_ignore_case(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    let Some(&first) = n.first() else {
        return true;
    };
    if h.len() < n.len() {
        return false;
    }
    let first = first.to_ascii_lowercase();
    (0..=h.len() - n.len())
        .any(|i| h[i].to_ascii_lowercase() == first && h[i..i + n.len()].eq_ignore_ascii_case(n))
}

/// `query GetUser` from an operation name or the query text.
fn graphql_operation(name: Option<&str>, query: &str) -> String {
    let trimmed = query.trim_start();
    let kind = ["mutation", "subscription", "query"]
        .into_iter()
        .find(|k| trimmed.starts_with(k))
        .unwrap_or("query");
    let parsed = trimmed
        .strip_prefix(kind)
        .map(|rest| {
            rest.trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|n| !n.is_empty());
    let name = name.map(str::to_owned).or(parsed);
    match name {
        Some(n) => clean_operation(&format!("{kind} {n}")),
        None => format!("{kind} (anonymous)"),
    }
}

/// The first element inside a SOAP `Body`, when the document is a SOAP envelope.
fn soap_operation(xml: &str) -> Option<String> {
    let mut names = Vec::new();
    let mut rest = xml;
    while let Some(lt) = rest.find('<') {
        rest = &rest[lt + 1..];
        let gt = rest.find('>')?;
        let tag = &rest[..gt];
        rest = &rest[gt + 1..];
        if tag.starts_with(['?', '!', '/']) {
            continue;
        }
        let name = tag.split_whitespace().next().unwrap_or_default();
        let local = name
            .rsplit(':')
            .next()
            .unwrap_or(name)
            .trim_end_matches('/');
        names.push(local.to_owned());
        if names.len() >= 4 {
            break;
        }
    }
    if names.first().map(String::as_str) != Some("Envelope") {
        return None;
    }
    let body = names.iter().position(|n| n == "Body")?;
    names.get(body + 1).cloned()
}

/// The response fingerprint used by templating: status class, body kind and the top-level
/// structure (JSON object keys, or element keys of a top-level array; XML root element).
pub fn response_fingerprint(shared: &EventFacts<'_>) -> u64 {
    let event = shared.event;
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let Some(resp) = &event.response else {
        0u8.hash(&mut h);
        return h.finish();
    };
    (resp.status / 100).hash(&mut h);
    let media = header(&resp.headers, "content-type")
        .map(media_type)
        .unwrap_or_default();
    let kind = body_kind(&media);
    media.split('/').next().unwrap_or_default().hash(&mut h);
    kind.hash(&mut h);
    if kind == Some("json")
        && let Some(bytes) = learn_bytes(shared.response_body())
        && let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes)
    {
        let obj = match &v {
            serde_json::Value::Array(a) => {
                1u8.hash(&mut h);
                a.first().and_then(|x| x.as_object())
            }
            serde_json::Value::Object(o) => Some(o),
            _ => None,
        };
        if let Some(o) = obj {
            let mut keys: Vec<&str> = o.keys().map(|k| key_name(k)).take(64).collect();
            keys.sort_unstable();
            keys.dedup();
            keys.hash(&mut h);
        }
    }
    h.finish()
}

/// Classifies client addresses (R-INV-4).
#[derive(Debug, Clone, Default)]
pub struct ClientClassifier {
    /// Internal ranges.
    pub internal: Vec<ipnet::IpNet>,
    /// Partner name → ranges.
    pub partners: Vec<(String, Vec<ipnet::IpNet>)>,
}

impl ClientClassifier {
    /// True when `ip` is in an internal range.
    pub fn is_internal(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.internal.iter().any(|n| n.contains(&ip))
    }

    /// The partner `ip` belongs to, if any.
    pub fn partner(&self, ip: IpAddr) -> Option<&str> {
        self.partners
            .iter()
            .find(|(_, nets)| nets.iter().any(|n| n.contains(&ip)))
            .map(|(name, _)| name.as_str())
    }
}

/// The inventory's per-request facts, computed once and shared by templating and learning,
/// beside the event's shared facts (decoded bodies).
#[derive(Debug, Clone)]
pub struct RequestFacts<'f, 'a> {
    /// The event's shared facts.
    pub shared: &'f EventFacts<'a>,
    /// Auth scheme.
    pub auth: AuthScheme,
    /// Style and operation.
    pub style: StyleInfo,
    /// The request's `Content-Type` value.
    pub content_type: Option<&'a str>,
}

impl<'f, 'a> RequestFacts<'f, 'a> {
    /// Computes the facts of the event (one pass over its request headers).
    pub fn of(shared: &'f EventFacts<'a>) -> RequestFacts<'f, 'a> {
        let event = shared.event;
        let scan = shared.request_headers();
        RequestFacts {
            shared,
            auth: auth_scheme_with(event, scan),
            style: style_with(event, scan),
            content_type: scan.content_type,
        }
    }
}

/// Records `event` into `data`. `sample` says whether parameters and bodies are inspected
/// this time (shape learning is sampled; counts, timings and clients never are).
pub fn learn(
    data: &mut EndpointData,
    event: &ApiEvent,
    facts: &RequestFacts<'_, '_>,
    path_values: &[(u16, &str)],
    clients: &ClientClassifier,
    sample: bool,
) {
    let now = event.request_start_unix_us;
    data.hits += 1;
    if data.first_seen_unix_us == 0 || now < data.first_seen_unix_us {
        data.first_seen_unix_us = now;
    }
    data.last_seen_unix_us = data.last_seen_unix_us.max(now);
    bump(&mut data.styles, facts.style.style);
    bump(&mut data.auth, facts.auth.as_str());
    data.clients.insert_ip(event.client.ip);
    if clients.is_internal(event.client.ip) {
        data.exposure.internal_requests += 1;
    } else {
        data.exposure.internet_requests += 1;
    }
    if let Some(p) = clients.partner(event.client.ip) {
        bump(&mut data.exposure.partners, p);
    }
    data.request_bytes.record(event.request.body.length_bytes);
    if let Some(l) = event.latency_us {
        data.latency_us.record(l);
    }
    let req = &event.request;
    let req_ct = facts.content_type.unwrap_or_default();
    let req_media = media_type(req_ct);
    if !req_media.is_empty() {
        bump(&mut data.request.content_types, &req_media);
    }
    if sample {
        let r = &mut data.request;
        r.samples += 1;
        for (index, value) in path_values {
            let decoded = percent_decode(value, false);
            let key = index.to_string();
            if data.path_params.len() < MAX_PARAMS || data.path_params.contains_key(&key) {
                data.path_params.entry(key).or_default().observe(
                    ValueType::of_text(&decoded),
                    Some(&decoded),
                    now,
                );
            }
        }
        if let Some(q) = &req.query {
            for (name, value) in query_pairs(q) {
                let name = percent_decode(name, false).into_owned();
                let value = percent_decode(value, true).into_owned();
                // Keys and tokens in the query are credentials: no shape kept.
                let credential = API_KEY_QUERY.iter().any(|k| name.eq_ignore_ascii_case(k));
                r.query.observe(
                    key_name(&name),
                    ValueType::of_text(&value),
                    (!credential).then_some(value.as_str()),
                    now,
                    MAX_PARAMS,
                );
            }
        }
        for h in &req.headers {
            let lname = h.name.to_ascii_lowercase();
            match lname.as_str() {
                "cookie" => {
                    for (name, value) in cookie_pairs(&h.value) {
                        // Session cookies are credentials: not even their shape is kept.
                        let text = (!is_session_cookie(name.as_bytes())).then_some(value);
                        r.cookies.observe(
                            key_name(name),
                            ValueType::of_text(value),
                            text,
                            now,
                            MAX_PARAMS,
                        );
                    }
                }
                // The scheme is the auth scheme; the credential is never looked at further.
                "authorization" | "proxy-authorization" => {
                    r.headers
                        .observe(&lname, ValueType::String, None, now, MAX_PARAMS);
                }
                _ => {
                    let t = ValueType::of_text(&h.value);
                    // Shapes of credentials-like headers are not kept either.
                    let text =
                        (!API_KEY_HEADERS.contains(&lname.as_str())).then_some(h.value.as_str());
                    r.headers.observe(&lname, t, text, now, MAX_PARAMS);
                }
            }
        }
        if let Some(kind) = body_kind(&req_media)
            && req.body.captured_bytes > 0
            && let Some(bytes) = learn_bytes(facts.shared.request_body())
        {
            let shape = r.bodies.entry(kind.to_owned()).or_default();
            learn_body(kind, bytes, req_ct, shape, now);
        }
    }
    match &event.response {
        None => data.no_response += 1,
        Some(resp) => {
            data.response_bytes.record(resp.body.length_bytes);
            let key = resp.status;
            if !data.responses.contains_key(&key) && data.responses.len() >= MAX_KINDS {
                return;
            }
            let shape = data.responses.entry(key).or_default();
            shape.count += 1;
            let ct = header(&resp.headers, "content-type").unwrap_or_default();
            let media = media_type(ct);
            if !media.is_empty() {
                bump(&mut shape.content_types, &media);
            }
            if sample {
                shape.samples += 1;
                for h in &resp.headers {
                    let lname = h.name.to_ascii_lowercase();
                    shape.headers.observe(
                        &lname,
                        ValueType::of_text(&h.value),
                        None,
                        now,
                        MAX_PARAMS,
                    );
                }
                if let Some(kind) = body_kind(&media)
                    && resp.body.captured_bytes > 0
                    && let Some(bytes) = learn_bytes(facts.shared.response_body())
                {
                    let b = shape.bodies.entry(kind.to_owned()).or_default();
                    learn_body(kind, bytes, ct, b, now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apitap_schema::{Body, Endpoint, Header, Request, Response, SensorInfo};

    pub(crate) fn ev(
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: &[(&str, &str)],
        body: (&str, &str),
        status: u16,
        resp: (&str, &str),
    ) -> ApiEvent {
        let mut req_headers: Vec<Header> = headers
            .iter()
            .map(|(n, v)| Header {
                name: (*n).into(),
                value: (*v).into(),
            })
            .collect();
        if !body.0.is_empty() {
            req_headers.push(Header {
                name: "Content-Type".into(),
                value: body.0.into(),
            });
        }
        ApiEvent {
            schema_version: "1.0".into(),
            event_id: "0".repeat(32),
            sensor: SensorInfo {
                id: "s".into(),
                host: "h".into(),
            },
            connection_id: "0".repeat(16),
            transaction_index: 0,
            request_start_unix_us: 1_700_000_000_000_000,
            response_end_unix_us: Some(1_700_000_000_001_000),
            latency_us: Some(1000),
            client: Endpoint {
                ip: "203.0.113.9".parse().unwrap(),
                port: 5000,
            },
            server: Endpoint {
                ip: "10.0.0.1".parse().unwrap(),
                port: 80,
            },
            tls: false,
            http_version: "1.1".into(),
            request: Request {
                method: method.into(),
                host: Some("api".into()),
                path: path.into(),
                query: query.map(Into::into),
                headers: req_headers,
                body: Body::from_bytes(body.1.as_bytes(), body.1.len() as u64),
            },
            response: Some(Response {
                status,
                reason: String::new(),
                headers: vec![Header {
                    name: "Content-Type".into(),
                    value: resp.0.into(),
                }],
                body: Body::from_bytes(resp.1.as_bytes(), resp.1.len() as u64),
            }),
            anomalies: vec![],
            payload: Default::default(),
            labels: None,
        }
    }

    fn shared(e: &ApiEvent) -> EventFacts<'_> {
        EventFacts::new(e, apitap_labels::facts::DEFAULT_MAX_DECODED_BYTES)
    }

    #[test]
    fn learns_params_bodies_and_responses_without_values() {
        let e = ev(
            "POST",
            "/users/42",
            Some("page=2&q=alice"),
            &[
                (
                    "Authorization",
                    "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
                ),
                ("Cookie", "sid=abc; theme=dark"),
                ("X-Trace", "abc123"),
            ],
            (
                "application/json",
                r#"{"name":"Bob Smith","card":{"number":"4111111111111111"},"tags":["a"]}"#,
            ),
            201,
            ("application/json", r#"{"id":7,"email":"bob@example.com"}"#),
        );
        let mut d = EndpointData::default();
        learn(
            &mut d,
            &e,
            &RequestFacts::of(&shared(&e)),
            &[(1, "42")],
            &ClientClassifier::default(),
            true,
        );
        assert_eq!(d.auth_schemes(), vec!["bearer_jwt"]);
        assert_eq!(
            d.request.query.fields["page"].types,
            ValueType::Integer.bit()
        );
        assert!(d.request.cookies.fields.contains_key("sid"));
        let body = &d.request.bodies["json"].fields.fields;
        assert!(body.contains_key("card.number"), "{body:?}");
        assert!(body.contains_key("tags[]"), "{body:?}");
        assert_eq!(body["name"].examples, vec!["Aaa Aaaaa"]);
        let resp = &d.responses[&201].bodies["json"].fields.fields;
        assert_eq!(resp["email"].formats, vec!["email"]);
        assert_eq!(d.exposure_class(), "internet_facing");
        let text = serde_json::to_string(&d).unwrap();
        for secret in ["alice", "Bob", "4111", "abc123", "dark", "eyJ", "bob@"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        let back: EndpointData = serde_json::from_str(&text).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn detects_styles_and_operations() {
        let gql = ev(
            "POST",
            "/graphql",
            None,
            &[],
            (
                "application/json",
                r#"{"query":"query GetUser($id: ID!) { user(id: $id) { name } }","variables":{"id":1}}"#,
            ),
            200,
            ("application/json", "{}"),
        );
        assert_eq!(
            style_of(&gql),
            StyleInfo {
                style: "graphql",
                operation: "query GetUser".into()
            }
        );
        let named = ev(
            "POST",
            "/api",
            None,
            &[],
            (
                "application/json",
                r#"{"query":"mutation { x }","operationName":"DoIt"}"#,
            ),
            200,
            ("application/json", "{}"),
        );
        assert_eq!(style_of(&named).operation, "mutation DoIt");
        let rpc = ev(
            "POST",
            "/rpc",
            None,
            &[],
            (
                "application/json",
                r#"{"jsonrpc":"2.0","method":"eth_getBalance","id":1}"#,
            ),
            200,
            ("application/json", "{}"),
        );
        assert_eq!(
            style_of(&rpc),
            StyleInfo {
                style: "json_rpc",
                operation: "eth_getBalance".into()
            }
        );
        let soap = ev(
            "POST",
            "/ws",
            None,
            &[],
            (
                "text/xml",
                r#"<?xml version="1.0"?><soap:Envelope xmlns:soap="x"><soap:Body><m:GetBalance><m:Acct>1</m:Acct></m:GetBalance></soap:Body></soap:Envelope>"#,
            ),
            200,
            ("text/xml", ""),
        );
        assert_eq!(
            style_of(&soap),
            StyleInfo {
                style: "soap",
                operation: "GetBalance".into()
            }
        );
        let plain_xml = ev(
            "POST",
            "/x",
            None,
            &[],
            ("application/xml", "<order><id>1</id></order>"),
            200,
            ("text/xml", ""),
        );
        assert_eq!(style_of(&plain_xml).style, "rest");
        let grpc = ev(
            "POST",
            "/pkg.Svc/Get",
            None,
            &[],
            ("application/grpc", ""),
            200,
            ("application/grpc", ""),
        );
        assert_eq!(style_of(&grpc).style, "grpc");
        let ws = ev(
            "GET",
            "/ws",
            None,
            &[("Upgrade", "websocket")],
            ("", ""),
            101,
            ("", ""),
        );
        assert_eq!(style_of(&ws).style, "websocket");
    }

    #[test]
    fn auth_schemes() {
        let with = |h: &[(&str, &str)], q: Option<&str>| {
            auth_scheme(&ev("GET", "/", q, h, ("", ""), 200, ("", ""))).as_str()
        };
        assert_eq!(with(&[("Authorization", "Basic dTpw")], None), "basic");
        assert_eq!(with(&[("authorization", "Bearer opaque")], None), "bearer");
        assert_eq!(with(&[("X-API-Key", "k")], None), "api_key_header");
        assert_eq!(with(&[], Some("api_key=k")), "api_key_query");
        assert_eq!(with(&[("Cookie", "JSESSIONID=1")], None), "cookie_session");
        assert_eq!(with(&[("Cookie", "theme=1")], None), "none");
    }

    #[test]
    fn xml_form_and_multipart_fields() {
        let mut s = BodyShape::default();
        learn_body("xml", b"<a><b x=\"1\">7</b><c/></a>", "", &mut s, 0);
        assert!(s.fields.fields.contains_key("a.b") && s.fields.fields.contains_key("a.c"));
        let mut f = BodyShape::default();
        learn_body("form", b"user=bob&count=3", "", &mut f, 0);
        assert_eq!(f.fields.fields["count"].types, ValueType::Integer.bit());
        let mut m = BodyShape::default();
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhi\r\n--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\ndata\r\n--XX--\r\n";
        learn_body(
            "multipart",
            body,
            "multipart/form-data; boundary=XX",
            &mut m,
            0,
        );
        assert!(m.fields.fields.contains_key("title") && m.fields.fields.contains_key("file"));
    }

    #[test]
    fn histogram_and_sketch() {
        let mut h = Histogram::default();
        for v in 1..=1000 {
            h.record(v);
        }
        let p50 = h.quantile(0.5).unwrap();
        assert!((470..=530).contains(&p50), "{p50}");
        assert_eq!(h.quantile(1.0), Some(1000));
        let mut s = DistinctSketch::default();
        for i in 0..1000u32 {
            s.insert_ip(IpAddr::from(i.to_be_bytes()));
        }
        let est = s.estimate();
        assert!((900..=1100).contains(&est), "{est}");
        let mut small = DistinctSketch::default();
        for i in 0..10u32 {
            small.insert_ip(IpAddr::from(i.to_be_bytes()));
        }
        assert_eq!(small.estimate(), 10);
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<DistinctSketch>(&text).unwrap(), s);
    }

    /// A schema 1.1 sensor removes the coding itself and keeps the `Content-Encoding` header:
    /// the body is read as is, not inflated a second time (which failed and left the
    /// endpoint's response shape empty for every gzip-serving API).
    #[test]
    fn bodies_the_sensor_decoded_are_learned() {
        let mut e = ev(
            "GET",
            "/users/7",
            None,
            &[],
            ("", ""),
            200,
            ("application/json", r#"{"id":7,"email":"bob@example.com"}"#),
        );
        let resp = e.response.as_mut().unwrap();
        resp.headers.push(Header {
            name: "Content-Encoding".into(),
            value: "gzip".into(),
        });
        resp.body.content_encoding = Some("gzip".into());
        let mut d = EndpointData::default();
        learn(
            &mut d,
            &e,
            &RequestFacts::of(&shared(&e)),
            &[],
            &ClientClassifier::default(),
            true,
        );
        let fields = &d.responses[&200].bodies["json"].fields.fields;
        assert_eq!(fields["email"].formats, vec!["email"]);
    }

    #[test]
    fn gzip_bodies_are_inflated() {
        use std::io::Write as _;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(br#"{"a":1}"#).unwrap();
        let gz = enc.finish().unwrap();
        let body = apitap_schema::Body::from_bytes(&gz, gz.len() as u64);
        let headers = vec![apitap_schema::Header {
            name: "Content-Encoding".into(),
            value: "gzip".into(),
        }];
        let decoded = apitap_labels::facts::body_bytes(&body, &headers, 1 << 20);
        assert_eq!(
            learn_bytes(decoded.as_ref().map_err(|e| *e)),
            Some(&br#"{"a":1}"#[..])
        );
    }
}
