//! Labelling a whole [`ApiEvent`]: URL path and query, headers (authorization schemes,
//! cookies), and both bodies (decoded from base64, inflated when gzip/deflate-coded, parsed per
//! content type). Produces [`EventLabels`].
use std::sync::Arc;

use apitap_schema::{ApiEvent, Body, Header};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::body::{self, BodyCtx, BodyKind};
use crate::facts::{self, BodyBytes, BodyError, EventFacts};
use crate::hints::KeyHints;
use crate::json::JsonDoc;
use crate::label::{DataClass, Direction, Finding, Label, Notes, Part, ValueHash};
use crate::scan::{Ctx, HintCache, Labeller, RawMap, Region, Span, State, Where};

/// How the request authenticated itself (R-INV-2 auth scheme; input to the
/// "sensitive API without authentication" weak point): one entry per kind of credential
/// present, shipped in labels (schema names). The inventory's single per-request scheme,
/// with JWT/opaque and TLS distinctions, is `apitap_inventory::learn::AuthScheme`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthScheme {
    /// `Authorization: Basic` (RFC 7617).
    Basic,
    /// `Authorization: Bearer` (RFC 6750), JWT or opaque.
    Bearer,
    /// Another `Authorization` scheme (Digest, AWS4-HMAC-SHA256, custom).
    OtherAuthorization,
    /// An API key or token header (`X-Api-Key`, `X-Auth-Token`, `token`, …).
    ApiKeyHeader,
    /// A token or key in the query string.
    QueryToken,
    /// A session cookie.
    SessionCookie,
}

/// Shape of one message body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageShape {
    /// Parsed as.
    pub kind: BodyKind,
    /// Field paths seen (names only, arrays folded to `[*]`), capped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// Distinct field paths not kept because of the cap.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fields_dropped: u32,
    /// Largest number of objects in one array (or CSV rows): the records of a list response.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub array_records: u32,
    /// Largest count of one unmasked C2/C3 label at one body location: sensitive records.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sensitive_records: u32,
    /// Distinct (label, location) pairs of unmasked C2/C3 data in this body.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sensitive_fields: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Counters of one scan (R-CAP-7: nothing skipped silently).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanStats {
    /// Bytes handed to the parsers (after decoding).
    pub scanned_bytes: u64,
    /// Captured bytes not scanned (over `max_scan_bytes`, binary, undecodable coding).
    #[serde(default, skip_serializing_if = "is_zero64")]
    pub unscanned_bytes: u64,
    /// Values examined.
    pub values: u64,
    /// Findings dropped because of `max_findings`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_findings: u32,
}

fn is_zero64(n: &u64) -> bool {
    *n == 0
}

/// Everything the scanner found in one event. Contains no raw value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventLabels {
    /// Findings, one per (label, location, mask shape), in order of first occurrence.
    pub findings: Vec<Finding>,
    /// Query parameter names, in order of first appearance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<String>,
    /// Request body shape.
    pub request: MessageShape,
    /// Response body shape, when there was a response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<MessageShape>,
    /// Authentication seen on the request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth: Vec<AuthScheme>,
    /// Scan counters.
    pub stats: ScanStats,
    /// Every distinct value hash of the event, up to `LabelConfig::max_traced_hashes`, for
    /// the trace-back store (R-THR-6); empty unless that is set. Not serialised.
    #[serde(skip)]
    pub traced: Vec<TracedHash>,
    /// Value hashes not in `traced` because it was full. Not serialised.
    #[serde(skip)]
    pub traced_dropped: u32,
}

/// One sensitive value of an event by its keyed hash, for trace-back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TracedHash {
    /// What the value is.
    pub label: Label,
    /// Sent (request) or served (response).
    pub direction: Direction,
    /// Its keyed hash.
    pub hash: ValueHash,
}

impl EventLabels {
    /// Findings in one direction.
    pub fn in_direction(&self, dir: Direction) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(move |f| f.location.direction == dir)
    }

    /// Is this label present (unmasked) in this direction?
    pub fn has(&self, dir: Direction, label: Label) -> bool {
        self.in_direction(dir)
            .any(|f| f.label == label && f.mask.is_none())
    }
}

/// A per-thread scanner (holds caches and scratch buffers; cheap to create, reuse it).
pub struct Scanner {
    lab: Arc<Labeller>,
    cache: HintCache,
    st: State,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scanner")
    }
}

/// Header fields whose values are never scanned (protocol and caching fields, not data): a
/// `match`, compiled to a dispatch on the length (issue 18: searching a list name by name
/// made the header scan 7.5k instructions per event instead of 6.3k).
fn skip_header(lname: &str) -> bool {
    matches!(
        lname,
        "content-type"
            | "content-length"
            | "accept"
            | "accept-encoding"
            | "accept-language"
            | "accept-ranges"
            | "user-agent"
            | "host"
            | "connection"
            | "cache-control"
            | "pragma"
            | "date"
            | "server"
            | "vary"
            | "etag"
            | "last-modified"
            | "if-none-match"
            | "if-modified-since"
            | "content-encoding"
            | "transfer-encoding"
            | "upgrade"
            | "keep-alive"
            | "expires"
            | "age"
            | "x-content-type-options"
            | "x-frame-options"
            | "strict-transport-security"
            | "content-security-policy"
            | "access-control-allow-origin"
            | "access-control-allow-headers"
            | "access-control-allow-methods"
            | "access-control-allow-credentials"
            | "x-xss-protection"
            | "sec-fetch-mode"
            | "sec-fetch-site"
            | "sec-fetch-dest"
            | "sec-ch-ua"
            | "sec-ch-ua-platform"
            | "sec-ch-ua-mobile"
            | "te"
            | "via"
            | "x-powered-by"
            | "content-disposition"
            | "range"
            | "content-range"
            | "x-requested-with"
            | "dnt"
            | "upgrade-insecure-requests"
            | "priority"
    )
}

fn strip_ci<'a>(v: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (v.len() >= prefix.len() && v[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| v[prefix.len()..].trim_ascii_start())
}

impl Scanner {
    /// A scanner using `labeller`.
    pub fn new(labeller: Arc<Labeller>) -> Scanner {
        Scanner {
            lab: labeller,
            cache: HintCache::default(),
            st: State::default(),
        }
    }

    /// The shared labeller.
    pub fn labeller(&self) -> &Arc<Labeller> {
        &self.lab
    }

    /// Labels one event (R-SEN-1).
    pub fn label_event(&mut self, ev: &ApiEvent) -> EventLabels {
        let facts = EventFacts::new(ev, self.lab.config().max_inflated_bytes);
        self.run(&facts, false).0
    }

    /// [`Scanner::label_event`] reading the bodies from the event's shared facts.
    pub fn label_facts(&mut self, facts: &EventFacts<'_>) -> EventLabels {
        self.run(facts, false).0
    }

    /// Labels one body of the given content type (for tests, benchmarks and bodies obtained
    /// outside an event). Findings only.
    pub fn label_body(
        &mut self,
        dir: Direction,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Vec<Finding> {
        self.st.reset(false);
        let lab = self.lab.clone();
        let mut cx = Ctx {
            lab: &lab,
            cache: &mut self.cache,
            st: &mut self.st,
        };
        let mut stats = ScanStats::default();
        let region = match dir {
            Direction::Request => Region::ReqBody,
            Direction::Response => Region::RespBody,
        };
        scan_bytes(
            &mut cx,
            dir,
            region,
            content_type.map(str::as_bytes),
            body,
            RawMap::Direct(0),
            || None,
            GrpcBody::default(),
            &mut stats,
        );
        std::mem::take(&mut self.st.findings)
    }

    pub(crate) fn run(&mut self, facts: &EventFacts<'_>, spans: bool) -> (EventLabels, Vec<Span>) {
        let ev = facts.event;
        self.st.reset(spans);
        let lab = self.lab.clone();
        let mut cx = Ctx {
            lab: &lab,
            cache: &mut self.cache,
            st: &mut self.st,
        };
        let mut stats = ScanStats::default();
        let mut auth = Vec::new();
        let mut query_params = Vec::new();
        // The lower-cased name of each header in turn.
        let mut name_buf = String::new();
        let req = &ev.request;
        url_path(&mut cx, req.path.as_bytes());
        if let Some(q) = &req.query {
            let bc = BodyCtx {
                dir: Direction::Request,
                part: Part::QueryParam,
                region: Region::ReqQuery,
                map: RawMap::Direct(0),
                notes: Notes::NONE,
                nest: 0,
                inherit: KeyHints::NONE,
            };
            body::form(&mut cx, q.as_bytes(), "", bc);
            query_params = std::mem::take(&mut cx.st.req.fields);
            cx.st.req.clear();
        }
        for (i, h) in req.headers.iter().enumerate() {
            header(
                &mut cx,
                Direction::Request,
                Region::ReqHeader(i),
                h,
                &mut auth,
                &mut name_buf,
            );
        }
        let (req_type, resp_type) = crate::protobuf::call_types(facts.protobuf(), ev.grpc.as_ref());
        let req_kind = message_body(
            &mut cx,
            Direction::Request,
            &req.headers,
            &req.body,
            facts.request_body(),
            || facts.request_json(),
            GrpcBody {
                encoding: facts::header(&req.headers, "grpc-encoding"),
                root: req_type,
                schema: facts.protobuf(),
            },
            &mut stats,
        );
        let mut resp_kind = None;
        if let Some(resp) = &ev.response {
            for (i, h) in resp.headers.iter().enumerate() {
                header(
                    &mut cx,
                    Direction::Response,
                    Region::RespHeader(i),
                    h,
                    &mut auth,
                    &mut name_buf,
                );
            }
            resp_kind = Some(message_body(
                &mut cx,
                Direction::Response,
                &resp.headers,
                &resp.body,
                facts.response_body(),
                || facts.response_json(),
                GrpcBody {
                    encoding: facts::header(&resp.headers, "grpc-encoding"),
                    root: resp_type,
                    schema: facts.protobuf(),
                },
                &mut stats,
            ));
        }
        if cx.st.findings.iter().any(|f| {
            f.location.part == Part::QueryParam
                && matches!(
                    f.label,
                    Label::ApiToken | Label::Jwt | Label::SessionId | Label::AwsAccessKey
                )
        }) && !auth.contains(&AuthScheme::QueryToken)
        {
            auth.push(AuthScheme::QueryToken);
        }
        stats.values = cx.st.values;
        stats.dropped_findings = cx.st.dropped_findings;
        let findings = std::mem::take(&mut cx.st.findings);
        let shape = |acc: &mut crate::scan::ShapeAcc, kind: BodyKind, dir: Direction| {
            let mut s = MessageShape {
                kind,
                fields: std::mem::take(&mut acc.fields),
                fields_dropped: acc.dropped,
                array_records: acc.max_array_objects,
                ..Default::default()
            };
            for f in findings.iter().filter(|f| {
                f.location.direction == dir
                    && is_body_part(f.location.part)
                    && f.mask.is_none()
                    && f.label.class() >= DataClass::C2
            }) {
                s.sensitive_records = s.sensitive_records.max(f.count);
                s.sensitive_fields += 1;
            }
            s
        };
        let request = shape(&mut cx.st.req, req_kind, Direction::Request);
        let response = resp_kind.map(|k| shape(&mut cx.st.resp, k, Direction::Response));
        let spans = std::mem::take(&mut cx.st.spans);
        let traced = std::mem::take(&mut cx.st.traced);
        let traced_dropped = cx.st.traced_dropped;
        (
            EventLabels {
                findings,
                query_params,
                request,
                response,
                auth,
                stats,
                traced,
                traced_dropped,
            },
            spans,
        )
    }
}

/// Parts that are inside a body.
pub fn is_body_part(p: Part) -> bool {
    matches!(
        p,
        Part::JsonPath
            | Part::FormField
            | Part::XmlElement
            | Part::MultipartPart
            | Part::CsvColumn
            | Part::ProtobufField
            | Part::Text
    )
}

fn url_path(cx: &mut Ctx<'_>, path: &[u8]) {
    let mut idx = 0usize;
    let mut prev: &[u8] = b"";
    let mut pos = 0;
    let mut buf = Vec::new();
    let mut name = String::new();
    while pos <= path.len() && idx < 64 {
        let end = memchr::memchr(b'/', &path[pos..]).map_or(path.len(), |p| pos + p);
        let seg = &path[pos..end];
        if seg.len() >= 6 {
            let decoded = facts::percent_decode_into(seg, false, &mut buf);
            let val: &[u8] = if decoded { &buf } else { seg };
            let hints = cx.hints(prev);
            name.clear();
            name.push_str(&format!("[{idx}]"));
            let w = Where {
                dir: Direction::Request,
                part: Part::PathSegment,
                path: name.as_bytes(),
                hints,
                region: Region::ReqPath,
                raw: body::sub(RawMap::Direct(0), pos, end, decoded),
                notes: Notes::NONE,
            };
            cx.scan_value(val, &w);
        }
        if !seg.is_empty() {
            idx += 1;
        }
        prev = seg;
        pos = end + 1;
    }
}

fn header(
    cx: &mut Ctx<'_>,
    dir: Direction,
    region: Region,
    h: &Header,
    auth: &mut Vec<AuthScheme>,
    name_buf: &mut String,
) {
    let lname = facts::lower_into(&h.name, name_buf);
    if skip_header(lname) {
        return;
    }
    let value = h.value.as_bytes();
    let w = Where {
        dir,
        part: Part::Header,
        path: lname.as_bytes(),
        hints: KeyHints::NONE,
        region,
        raw: RawMap::Direct(0),
        notes: Notes::NONE,
    };
    match lname {
        "authorization" | "proxy-authorization" => {
            let off = |s: &[u8]| s.as_ptr() as usize - value.as_ptr() as usize;
            if let Some(tok) = strip_ci(value, b"bearer ") {
                let before = cx.st.findings.len();
                let count_before: u32 = cx.st.findings.iter().map(|f| f.count).sum();
                if tok.starts_with(b"eyJ") {
                    cx.scan_value(
                        tok,
                        &Where {
                            raw: RawMap::Direct(off(tok)),
                            ..w
                        },
                    );
                }
                let count_after: u32 = cx.st.findings.iter().map(|f| f.count).sum();
                if cx.st.findings.len() == before && count_after == count_before && !tok.is_empty()
                {
                    cx.emit(&w, Label::BearerToken, 95, tok, off(tok), None, Notes::NONE);
                }
                if dir == Direction::Request {
                    push_auth(auth, AuthScheme::Bearer);
                }
            } else if let Some(tok) = strip_ci(value, b"basic ") {
                let mut notes = Notes::NONE;
                if let Ok(dec) = base64::engine::general_purpose::STANDARD.decode(tok.trim_ascii())
                    && let Some(colon) = memchr::memchr(b':', &dec)
                    && cx.lab.is_common_password(&dec[colon + 1..])
                {
                    notes = Notes::WEAK_PASSWORD;
                }
                cx.emit(&w, Label::BasicAuth, 97, tok, off(tok), None, notes);
                if dir == Direction::Request {
                    push_auth(auth, AuthScheme::Basic);
                }
            } else if !value.is_empty() {
                let sp = memchr::memchr(b' ', value).map_or(0, |p| p + 1);
                let cred = &value[sp..];
                cx.scan_value(
                    cred,
                    &Where {
                        raw: RawMap::Direct(sp),
                        ..w
                    },
                );
                cx.emit(&w, Label::ApiToken, 80, cred, sp, None, Notes::BY_KEY);
                if dir == Direction::Request {
                    push_auth(auth, AuthScheme::OtherAuthorization);
                }
            }
        }
        "cookie" | "set-cookie" => {
            let mut pos = 0;
            while pos < value.len() {
                let end = memchr::memchr(b';', &value[pos..]).map_or(value.len(), |p| pos + p);
                let pair = &value[pos..end];
                let lead = pair.len() - pair.trim_ascii_start().len();
                let pair_t = pair.trim_ascii();
                if let Some(eq) = memchr::memchr(b'=', pair_t) {
                    let (name, val) = (&pair_t[..eq], &pair_t[eq + 1..]);
                    let mut hints = cx.hints(name);
                    let is_session = facts::is_session_cookie(name) || hints.any(KeyHints::SESSION);
                    if is_session {
                        hints = hints.or(KeyHints::SESSION);
                        if dir == Direction::Request {
                            push_auth(auth, AuthScheme::SessionCookie);
                        }
                    }
                    let cw = Where {
                        part: Part::Cookie,
                        path: name,
                        hints,
                        raw: RawMap::Direct(pos + lead + eq + 1),
                        ..w
                    };
                    cx.scan_value(val, &cw);
                }
                // Set-Cookie attributes (Path, Expires, …) are not values.
                if lname == "set-cookie" {
                    break;
                }
                pos = end + 1;
            }
        }
        "referer" | "location" | "origin" | "content-location" => {
            if let Some(q) = memchr::memchr(b'?', value) {
                let bc = BodyCtx {
                    dir,
                    part: Part::Header,
                    region,
                    map: RawMap::Direct(q + 1),
                    notes: Notes::NONE,
                    nest: 0,
                    inherit: KeyHints::NONE,
                };
                let prefix = format!("{lname}?");
                body::form(cx, &value[q + 1..], &prefix, bc);
                let acc = match dir {
                    Direction::Request => &mut cx.st.req,
                    Direction::Response => &mut cx.st.resp,
                };
                acc.fields.retain(|f| !f.starts_with(&prefix));
            }
        }
        _ => {
            let hints = cx.hints(h.name.as_bytes());
            if dir == Direction::Request
                && hints.any(KeyHints::TOKEN.or(KeyHints::SESSION))
                && !value.is_empty()
            {
                push_auth(auth, AuthScheme::ApiKeyHeader);
            }
            cx.scan_value(value, &Where { hints, ..w });
        }
    }
}

fn push_auth(auth: &mut Vec<AuthScheme>, a: AuthScheme) {
    if !auth.contains(&a) {
        auth.push(a);
    }
}

/// Scans one message body; a JSON body is read from the event's shared tokens (`shared`,
/// [`EventFacts::request_json`]).
#[allow(clippy::too_many_arguments)] // the body, its facts and its gRPC context: all needed
fn message_body<'t>(
    cx: &mut Ctx<'_>,
    dir: Direction,
    headers: &[Header],
    raw: &Body,
    body: Result<&BodyBytes<'_>, BodyError>,
    shared: impl FnOnce() -> Option<JsonDoc<'t>>,
    grpc: GrpcBody<'_>,
    stats: &mut ScanStats,
) -> BodyKind {
    let body = match body {
        Ok(b) => b,
        Err(BodyError::Empty) => return BodyKind::Empty,
        Err(BodyError::Undecodable) => return BodyKind::Undecodable,
        // Left coded: what cannot be read is counted, never guessed at.
        Err(BodyError::UnsupportedCoding | BodyError::CorruptCoding) => {
            stats.unscanned_bytes += raw.captured_bytes;
            return BodyKind::Undecodable;
        }
    };
    let ct = facts::header(headers, "content-type").map(str::as_bytes);
    stats.unscanned_bytes += body.invalid_text_chars;
    if body.content_decoded {
        // Offsets in decoded bytes do not map to the event's data: no spans.
        return scan_bytes(
            cx,
            dir,
            Region::None,
            ct,
            &body.bytes,
            RawMap::None,
            shared,
            grpc,
            stats,
        );
    }
    let region = match dir {
        Direction::Request => Region::ReqBody,
        Direction::Response => Region::RespBody,
    };
    scan_bytes(
        cx,
        dir,
        region,
        ct,
        &body.bytes,
        RawMap::Direct(0),
        shared,
        grpc,
        stats,
    )
}

/// What a gRPC body's messages are: the direction's `grpc-encoding` and, with descriptor
/// sets, the message type (issue 17).
#[derive(Clone, Copy, Default)]
pub(crate) struct GrpcBody<'a> {
    pub encoding: Option<&'a str>,
    pub root: Option<&'a str>,
    pub schema: Option<&'a crate::protobuf::ProtoSchema>,
}

/// Scans `bytes` (at most `max_scan_bytes` of them) by their kind. A JSON body scanned whole
/// is read from `shared`'s tokens when they are the tokens of `bytes`; otherwise (a body cut
/// to `max_scan_bytes`, no shared tokens) it is lexed here.
#[allow(clippy::too_many_arguments)] // one call per body kind of source; all are needed
fn scan_bytes<'t>(
    cx: &mut Ctx<'_>,
    dir: Direction,
    region: Region,
    ct: Option<&[u8]>,
    bytes: &[u8],
    map: RawMap,
    shared: impl FnOnce() -> Option<JsonDoc<'t>>,
    grpc: GrpcBody<'_>,
    stats: &mut ScanStats,
) -> BodyKind {
    let max = cx.lab.config.max_scan_bytes;
    let b = if bytes.len() > max {
        stats.unscanned_bytes += (bytes.len() - max) as u64;
        &bytes[..max]
    } else {
        bytes
    };
    let kind = body::kind_of(ct, b);
    let bc = BodyCtx {
        dir,
        part: Part::Text,
        region,
        map,
        notes: Notes::NONE,
        nest: 0,
        inherit: KeyHints::NONE,
    };
    match kind {
        BodyKind::Json => {
            let mut path = std::mem::take(&mut cx.st.path_buf);
            path.clear();
            path.push(b'$');
            let bc = BodyCtx {
                part: Part::JsonPath,
                ..bc
            };
            let doc = if b.len() == bytes.len() {
                shared().filter(|d| std::ptr::eq(d.bytes(), b))
            } else {
                None
            };
            match doc {
                Some(d) => body::json_tokens(cx, b, d.toks(), &mut path, bc),
                None => body::json(cx, b, &mut path, bc),
            }
            cx.st.path_buf = path;
        }
        BodyKind::Form => body::form(
            cx,
            b,
            "",
            BodyCtx {
                part: Part::FormField,
                ..bc
            },
        ),
        BodyKind::Xml => body::xml(
            cx,
            b,
            BodyCtx {
                part: Part::XmlElement,
                ..bc
            },
        ),
        BodyKind::Csv => body::csv(cx, b, "", bc),
        BodyKind::Multipart => {
            let boundary = ct
                .and_then(|c| body::header_param(c, b"boundary"))
                .unwrap_or(b"");
            body::multipart(cx, b, boundary, bc);
        }
        BodyKind::Text => body::text(cx, b, bc),
        BodyKind::Protobuf => {
            let skipped = crate::protobuf::scan(
                cx,
                b,
                grpc,
                BodyCtx {
                    part: Part::ProtobufField,
                    ..bc
                },
            );
            stats.unscanned_bytes += skipped;
            stats.scanned_bytes += (b.len() as u64).saturating_sub(skipped);
            return kind;
        }
        BodyKind::Binary | BodyKind::Undecodable | BodyKind::Empty => {
            stats.unscanned_bytes += b.len() as u64;
            return kind;
        }
    }
    stats.scanned_bytes += b.len() as u64;
    kind
}
