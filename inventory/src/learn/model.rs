//! The stored model of an endpoint: parameters, fields, body and response shapes, exposure,
//! all mergeable ([`EndpointData::absorb`]) and bounded.

use super::*;

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

fn is_zero(n: &u64) -> bool {
    *n == 0
}

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
    /// (gRPC bodies, issue 17) The protobuf field: number path, wire kinds, declared type.
    /// Boxed: every JSON field, form field and parameter would otherwise pay its size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protobuf: Option<Box<ProtoFieldShape>>,
}

/// What the wire says about one protobuf field of a gRPC body (R-INV-2, issue 17).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtoFieldShape {
    /// The field's path in field numbers, e.g. `3.1` (the shape's key has names where a
    /// descriptor set declares them).
    pub number_path: String,
    /// Wire kinds seen (`varint`, `fixed32`, `fixed64`, `string`, `bytes`, `message`,
    /// `group`), sorted.
    pub wire: Vec<String>,
    /// Declared type from the descriptor sets (`string`, `int64`, `message bank.v1.Money`,
    /// `enum bank.v1.Status`); absent for a field no descriptor declares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_type: Option<String>,
    /// Occurred more than once in one message, or declared `repeated`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repeated: bool,
}

impl ProtoFieldShape {
    /// Wire kinds kept at most (there are seven).
    const MAX_WIRE: usize = 7;

    pub(crate) fn absorb(&mut self, o: &ProtoFieldShape) {
        for w in &o.wire {
            self.add_wire(w);
        }
        if self.declared_type.is_none() {
            self.declared_type.clone_from(&o.declared_type);
        }
        self.repeated |= o.repeated;
    }

    pub(crate) fn add_wire(&mut self, w: &str) {
        if let Err(at) = self.wire.binary_search_by(|x| x.as_str().cmp(w))
            && self.wire.len() < Self::MAX_WIRE
        {
            self.wire.insert(at, w.to_owned());
        }
    }
}

impl FieldStats {
    pub(crate) fn observe(&mut self, t: ValueType, text: Option<&str>, now_us: u64) {
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

    pub(crate) fn absorb(&mut self, other: &FieldStats) {
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
        match (&mut self.protobuf, &other.protobuf) {
            (Some(mine), Some(theirs)) => mine.absorb(theirs),
            (None, Some(theirs)) => self.protobuf = Some(theirs.clone()),
            _ => {}
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
    /// Records one observation of `name`; false when the name did not fit under `cap`
    /// (counted in `dropped`). A known name costs one search of the map (issue 18: it cost
    /// two, `contains_key` then `get_mut`).
    pub(crate) fn observe(
        &mut self,
        name: &str,
        t: ValueType,
        text: Option<&str>,
        now_us: u64,
        cap: usize,
    ) -> bool {
        if let Some(f) = self.fields.get_mut(name) {
            f.observe(t, text, now_us);
            return true;
        }
        if self.fields.len() >= cap {
            self.dropped += 1;
            return false;
        }
        // Allocates the name only when it is new.
        let mut f = FieldStats::default();
        f.observe(t, text, now_us);
        self.fields.insert(name.to_owned(), f);
        true
    }

    pub(crate) fn absorb(&mut self, other: &Fields, cap: usize) {
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
    /// (`protobuf` bodies) gRPC messages of the inspected bodies not decoded: cut by the
    /// capture cap, compressed with an encoding other than gzip/deflate, or not protobuf.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped_messages: u64,
    /// Type of the top-level value ([`ValueType`] bits).
    pub root_types: TypeSet,
    /// Fields by path: `a.b`, `items[].id` for JSON; names for forms and multipart; element
    /// paths for XML; for `protobuf` (gRPC) field names where a descriptor set declares them,
    /// numbers elsewhere (`balance.currency`, `3.1`), with [`FieldStats::protobuf`].
    pub fields: Fields,
}

impl BodyShape {
    pub(crate) fn absorb(&mut self, other: &BodyShape) {
        self.samples += other.samples;
        self.unparsed += other.unparsed;
        self.skipped_messages += other.skipped_messages;
        self.root_types |= other.root_types;
        self.fields.absorb(&other.fields, MAX_FIELDS);
    }
}

pub(crate) fn absorb_counts(a: &mut BTreeMap<String, u64>, b: &BTreeMap<String, u64>) {
    for (k, v) in b {
        if let Some(x) = a.get_mut(k) {
            *x += v;
        } else if a.len() < MAX_KINDS {
            a.insert(k.clone(), *v);
        }
    }
}

pub(crate) fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    if let Some(x) = map.get_mut(key) {
        *x += 1;
    } else if map.len() < MAX_KINDS {
        map.insert(key.to_owned(), 1);
    }
}

pub(crate) fn absorb_bodies(a: &mut BTreeMap<String, BodyShape>, b: &BTreeMap<String, BodyShape>) {
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
    pub sensitive: crate::sensitive::SensitiveData,
    /// Probes against this endpoint's path: requests the server answered as not served
    /// (`405`, `501`, automatic `OPTIONS`, `HEAD`; see [`crate::probe`]), by method, then
    /// reason → requests. Not counted in `hits`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub probes: BTreeMap<String, BTreeMap<String, u64>>,
}

impl EndpointData {
    /// Counts one probe (method already bounded by [`crate::engine::overflow_method`]).
    pub fn record_probe(&mut self, method: &str, reason: crate::probe::ProbeReason) {
        *self
            .probes
            .entry(method.to_owned())
            .or_default()
            .entry(reason.as_str().to_owned())
            .or_insert(0) += 1;
    }

    /// Probes counted, all methods and reasons.
    pub fn probe_total(&self) -> u64 {
        self.probes.values().flat_map(|r| r.values()).sum()
    }

    /// Adds another endpoint's data (templating folded them, or another instance's delta).
    pub fn absorb(&mut self, o: &EndpointData) {
        for (m, reasons) in &o.probes {
            let mine = self.probes.entry(m.clone()).or_default();
            for (r, n) in reasons {
                *mine.entry(r.clone()).or_insert(0) += n;
            }
        }
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

pub(crate) fn ranked(map: &BTreeMap<String, u64>) -> Vec<String> {
    let mut v: Vec<(&String, &u64)> = map.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.into_iter().map(|(k, _)| k.clone()).collect()
}
