//! Data minimisation at the sensor (R-CAP-8): `payload = full | sample | labels`.
//!
//! - `full`: the event as captured (labels attached when asked).
//! - `sample`: bodies cut to `sample_bytes` with every detected value masked in place; path,
//!   query, header and cookie values masked the same way, credentials headers always masked.
//! - `labels`: bodies removed (`data` empty, `captured_bytes` 0); only field names, labels,
//!   counts and masked samples travel, in the `labels` field. The path as in `sample`; query
//!   parameter values and the values of headers outside [`STRUCTURAL_HEADERS`] are reduced
//!   to their shape ([`shape`]: `id=8f3a-12` → `id=0a0a-00`), so a value the labeller did not
//!   recognise does not travel either (issue 22), while the analyzer still learns names and
//!   types. Enumeration detection over query values needs `sample` or `full`.
//!
//! The labels travel as the schema's wire type ([`apitap_schema::LabelSummary`], schema 1.2);
//! [`labels_to_wire`] and [`labels_from_wire`] convert between it and [`EventLabels`].
use apitap_schema::{
    ApiEvent, Body, BodyEncoding, BodyShape, Header, KeptPositions, LabelFinding, LabelLocation,
    LabelSummary, PayloadMode, ScanCounters,
};
use serde::{Deserialize, Serialize};

use crate::body::BodyKind;
use crate::event::{AuthScheme, EventLabels, MessageShape, ScanStats, Scanner};
use crate::hints::KeyHints;
use crate::label::{Direction, Finding, Label, Location, MaskShape, Notes, Part, ValueHash};
use crate::mask;
use crate::scan::{Region, Span};

/// Options of [`minimise`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MinimiseOptions {
    /// Bytes kept of each body in `sample` mode.
    pub sample_bytes: usize,
    /// Attach the labels in `full` and `sample` mode too (always attached in `labels` mode).
    pub attach_labels: bool,
}

impl Default for MinimiseOptions {
    fn default() -> Self {
        MinimiseOptions {
            sample_bytes: 1024,
            attach_labels: true,
        }
    }
}

/// A minimised event. `event` is what leaves the host: a schema 1.2 event whose `payload` and
/// `labels` fields are set; `payload` and `labels` repeat them for the caller, the labels in
/// the labeller's own types. Serialises as `event` (one flat JSON object).
#[derive(Debug, Clone, PartialEq)]
pub struct MinimisedEvent {
    /// The event, minimised per `payload`, with `payload` and `labels` (wire form) set.
    pub event: ApiEvent,
    /// The payload mode applied.
    pub payload: PayloadMode,
    /// Labels of the original event, when attached.
    pub labels: Option<EventLabels>,
}

impl Serialize for MinimisedEvent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.event.serialize(s)
    }
}

impl<'de> Deserialize<'de> for MinimisedEvent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let event = ApiEvent::deserialize(d)?;
        Ok(MinimisedEvent {
            payload: event.payload,
            labels: event.labels.as_deref().map(labels_from_wire),
            event,
        })
    }
}

fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Request => "request",
        Direction::Response => "response",
    }
}

fn part_name(p: Part) -> &'static str {
    match p {
        Part::PathSegment => "path_segment",
        Part::QueryParam => "query_param",
        Part::Header => "header",
        Part::Cookie => "cookie",
        Part::JsonPath => "json_path",
        Part::FormField => "form_field",
        Part::XmlElement => "xml_element",
        Part::MultipartPart => "multipart_part",
        Part::CsvColumn => "csv_column",
        Part::ProtobufField => "protobuf_field",
        Part::Text => "text",
    }
}

fn auth_name(a: AuthScheme) -> &'static str {
    match a {
        AuthScheme::Basic => "basic",
        AuthScheme::Bearer => "bearer",
        AuthScheme::OtherAuthorization => "other_authorization",
        AuthScheme::ApiKeyHeader => "api_key_header",
        AuthScheme::QueryToken => "query_token",
        AuthScheme::SessionCookie => "session_cookie",
    }
}

fn kind_name(k: BodyKind) -> &'static str {
    match k {
        BodyKind::Empty => "empty",
        BodyKind::Json => "json",
        BodyKind::Form => "form",
        BodyKind::Xml => "xml",
        BodyKind::Multipart => "multipart",
        BodyKind::Csv => "csv",
        BodyKind::Protobuf => "protobuf",
        BodyKind::Text => "text",
        BodyKind::Binary => "binary",
        BodyKind::Undecodable => "undecodable",
    }
}

/// Note names through their serde form (a bitset serialised as a list of names).
fn note_names(n: Notes) -> Vec<String> {
    if n.0 == 0 {
        return Vec::new();
    }
    match serde_json::to_value(n) {
        Ok(serde_json::Value::Array(v)) => v
            .into_iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// A snake_case name read back through the type's serde form; `None` for names this build
/// does not know (written by a newer sensor).
fn from_name<T: serde::de::DeserializeOwned>(name: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
}

fn shape_to_wire(m: &MessageShape) -> BodyShape {
    BodyShape {
        kind: kind_name(m.kind).to_owned(),
        fields: m.fields.clone(),
        fields_dropped: m.fields_dropped,
        array_records: m.array_records,
        sensitive_records: m.sensitive_records,
        sensitive_fields: m.sensitive_fields,
    }
}

fn shape_from_wire(b: &BodyShape) -> MessageShape {
    MessageShape {
        kind: from_name(&b.kind).unwrap_or_default(),
        fields: b.fields.clone(),
        fields_dropped: b.fields_dropped,
        array_records: b.array_records,
        sensitive_records: b.sensitive_records,
        sensitive_fields: b.sensitive_fields,
    }
}

/// The wire form (schema 1.2 `labels`) of a scan. Same JSON as `EventLabels` serialises to.
pub fn labels_to_wire(l: &EventLabels) -> LabelSummary {
    LabelSummary {
        findings: l
            .findings
            .iter()
            .map(|f| LabelFinding {
                label: f.label.name().to_owned(),
                confidence: f.confidence,
                location: LabelLocation {
                    direction: direction_name(f.location.direction).to_owned(),
                    part: part_name(f.location.part).to_owned(),
                    path: f.location.path.clone(),
                },
                count: f.count,
                masked_sample: f.masked_sample.clone(),
                mask: f.mask.map(|m| KeptPositions {
                    len: m.len,
                    kept: m.kept_ranges(),
                }),
                notes: note_names(f.notes),
                hashes: f.hashes.iter().map(ToString::to_string).collect(),
            })
            .collect(),
        query_params: l.query_params.clone(),
        request: shape_to_wire(&l.request),
        response: l.response.as_ref().map(shape_to_wire),
        auth: l.auth.iter().map(|a| auth_name(*a).to_owned()).collect(),
        stats: ScanCounters {
            scanned_bytes: l.stats.scanned_bytes,
            unscanned_bytes: l.stats.unscanned_bytes,
            values: l.stats.values,
            dropped_findings: l.stats.dropped_findings,
        },
        hash_key_id: None,
    }
}

/// The labels a sensor shipped, in the labeller's types. Findings whose label, direction or
/// part this build does not know (a newer sensor) are left out, as are unknown notes, auth
/// schemes and malformed hashes.
pub fn labels_from_wire(w: &LabelSummary) -> EventLabels {
    let findings = w
        .findings
        .iter()
        .filter_map(|f| {
            let label = Label::from_name(&f.label)?;
            let location = Location {
                direction: from_name::<Direction>(&f.location.direction)?,
                part: from_name::<Part>(&f.location.part)?,
                path: f.location.path.clone(),
            };
            let mask = f.mask.as_ref().map(|m| {
                let len = m.len.min(64);
                let mut kept = 0u64;
                for [a, b] in &m.kept {
                    for i in (*a).min(len)..(*b).min(len) {
                        kept |= 1u64 << i;
                    }
                }
                MaskShape { len, kept }
            });
            let notes = f
                .notes
                .iter()
                .filter_map(|n| serde_json::from_value::<Notes>(serde_json::json!([n])).ok())
                .fold(Notes::NONE, Notes::with);
            Some(Finding {
                label,
                confidence: f.confidence,
                location,
                count: f.count,
                masked_sample: f.masked_sample.clone(),
                mask,
                notes,
                hashes: f
                    .hashes
                    .iter()
                    .filter_map(|h| from_name::<ValueHash>(h))
                    .collect(),
            })
        })
        .collect();
    EventLabels {
        findings,
        query_params: w.query_params.clone(),
        request: shape_from_wire(&w.request),
        response: w.response.as_ref().map(shape_from_wire),
        auth: w.auth.iter().filter_map(|a| from_name(a)).collect(),
        stats: ScanStats {
            scanned_bytes: w.stats.scanned_bytes,
            unscanned_bytes: w.stats.unscanned_bytes,
            values: w.stats.values,
            dropped_findings: w.stats.dropped_findings,
        },
        // Shipped labels carry the findings' hashes only.
        traced: Vec::new(),
        traced_dropped: 0,
    }
}

/// Headers whose whole value is a credential: masked in `sample` and `labels` mode whatever
/// the scan found (the auth scheme word is kept).
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// Headers whose values `labels` mode keeps (with detected values masked): what the
/// analyzer needs to name the service, decode and type the message, attribute the client
/// behind a proxy and classify the client software. Their values describe the protocol
/// exchange rather than the person; every other header value travels as its [`shape`].
pub const STRUCTURAL_HEADERS: &[&str] = &[
    "host",
    ":authority",
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "accept",
    "accept-encoding",
    "user-agent",
    "x-forwarded-for",
    "x-real-ip",
    "forwarded",
    "x-forwarded-proto",
    "x-forwarded-host",
    "connection",
    "upgrade",
    "te",
    "grpc-status",
    "grpc-encoding",
    "soapaction",
    "www-authenticate",
    "cache-control",
    "server",
    "vary",
];

/// The shape of a value: ASCII digits become `0`, ASCII letters `a`, other characters `*`;
/// ASCII punctuation and spaces are kept. Length and structure survive (an integer, a UUID,
/// a date, an e-mail address keep their form, so types can still be inferred); the value
/// does not.
pub fn shape(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            '0'..='9' => '0',
            'a'..='z' | 'A'..='Z' => 'a',
            c if c.is_ascii_punctuation() || c == ' ' => c,
            _ => '*',
        })
        .collect()
}

/// `labels` mode's query: names kept, each value reduced to its [`shape`].
fn shaped_query(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, value)) => {
                out.push_str(name);
                out.push('=');
                out.push_str(&shape(value));
            }
            None => out.push_str(pair),
        }
    }
    out
}

fn apply(buf: &mut [u8], spans: &[Span], region: Region) {
    for s in spans.iter().filter(|s| s.region == region) {
        let end = s.end.min(buf.len());
        if s.start >= end {
            continue;
        }
        let r = &mut buf[s.start..end];
        if s.full {
            r.fill(b'*');
        } else {
            mask::mask_in_place(s.label, r);
        }
    }
}

fn masked_string(s: &str, spans: &[Span], region: Region) -> String {
    if !spans.iter().any(|x| x.region == region) {
        return s.to_owned();
    }
    let mut b = s.as_bytes().to_vec();
    apply(&mut b, spans, region);
    match String::from_utf8(b) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Masks a credential header, keeping the scheme (`Bearer ******`) or the cookie names
/// (`sid=******; lang=******`).
fn mask_credential_header(name: &str, value: &str) -> String {
    let lname = name.to_ascii_lowercase();
    if lname == "cookie" || lname == "set-cookie" {
        let mut out = String::with_capacity(value.len());
        for (i, pair) in value.split(';').enumerate() {
            if i > 0 {
                out.push(';');
            }
            match pair.split_once('=') {
                Some((k, _)) if lname == "cookie" || i == 0 => {
                    out.push_str(k);
                    out.push_str("=******");
                }
                _ => out.push_str(pair),
            }
        }
        return out;
    }
    match value.split_once(' ') {
        Some((scheme, _)) => format!("{scheme} ******"),
        None => "******".to_owned(),
    }
}

fn minimise_headers(
    scanner: &Scanner,
    headers: &[Header],
    spans: &[Span],
    req: bool,
    mode: PayloadMode,
) -> Vec<Header> {
    let lab = scanner.labeller();
    headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let lname = h.name.to_ascii_lowercase();
            let value = if CREDENTIAL_HEADERS.contains(&lname.as_str()) {
                mask_credential_header(&h.name, &h.value)
            } else if lab
                .hints
                .classify(h.name.as_bytes())
                .any(KeyHints::TOKEN.or(KeyHints::SESSION).or(KeyHints::PASSWORD))
            {
                "******".to_owned()
            } else if mode == PayloadMode::Labels && !STRUCTURAL_HEADERS.contains(&lname.as_str()) {
                shape(&h.value)
            } else {
                let region = if req {
                    Region::ReqHeader(i)
                } else {
                    Region::RespHeader(i)
                };
                masked_string(&h.value, spans, region)
            };
            Header {
                name: h.name.clone(),
                value,
            }
        })
        .collect()
}

fn has_coding(headers: &[Header]) -> bool {
    headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("content-encoding") && {
            let v = h.value.trim();
            !v.is_empty() && !v.eq_ignore_ascii_case("identity")
        }
    })
}

fn sample_body(
    body: &Body,
    headers: &[Header],
    spans: &[Span],
    region: Region,
    max: usize,
) -> Body {
    if body.data.is_empty() {
        return body.clone();
    }
    // Schema 1.0 events carry compressed bodies as sent: they cannot be masked in place
    // without re-compressing, so they are dropped. (1.1 sensors decode first.)
    let coded_on_wire = body.content_encoding.is_none() && has_coding(headers);
    let mut b = match (coded_on_wire, body.bytes()) {
        (false, Ok(b)) => b,
        _ => return removed_body(body),
    };
    apply(&mut b, spans, region);
    let mut cut_short = false;
    if b.len() > max {
        let mut cut = max;
        // Cut on a UTF-8 character boundary when the body was text.
        if body.encoding == BodyEncoding::Utf8 {
            while cut > 0 && (b[cut] & 0xC0) == 0x80 {
                cut -= 1;
            }
        }
        b.truncate(cut);
        cut_short = true;
    }
    match &body.content_encoding {
        None => Body::from_bytes(&b, body.length_bytes),
        Some(coding) => {
            let mut out =
                Body::from_decoded(&b, body.length_bytes, coding, !cut_short && !body.truncated);
            out.decoded_length_bytes = body.decoded_length_bytes;
            out
        }
    }
}

fn removed_body(body: &Body) -> Body {
    let mut out = Body::from_bytes(b"", body.length_bytes);
    out.truncated = body.length_bytes > 0;
    out.content_encoding = body.content_encoding.clone();
    out.decoded_length_bytes = body.decoded_length_bytes;
    out
}

/// The wire labels with the id of the key that made their hashes (schema 1.3).
fn keyed_wire(scanner: &Scanner, labels: &EventLabels) -> LabelSummary {
    let mut wire = labels_to_wire(labels);
    wire.hash_key_id = Some(scanner.labeller().hash_key_id().to_owned());
    wire
}

/// Minimises one event for the configured payload mode (R-CAP-8). Runs the scanner once.
pub fn minimise(
    scanner: &mut Scanner,
    event: &ApiEvent,
    mode: PayloadMode,
    opts: &MinimiseOptions,
) -> MinimisedEvent {
    if mode == PayloadMode::Full {
        let labels = opts.attach_labels.then(|| scanner.label_event(event));
        let mut ev = event.clone();
        ev.payload = PayloadMode::Full;
        ev.labels = labels.as_ref().map(|l| Box::new(keyed_wire(scanner, l)));
        return MinimisedEvent {
            event: ev,
            payload: mode,
            labels,
        };
    }
    // A mode this build does not know is treated as the most restrictive.
    let mode = match mode {
        PayloadMode::Unknown => PayloadMode::Labels,
        m => m,
    };
    let (labels, spans) = scanner.run(
        &crate::facts::EventFacts::new(event, scanner.labeller().config().max_inflated_bytes),
        true,
    );
    let mut ev = event.clone();
    ev.request.path = masked_string(&event.request.path, &spans, Region::ReqPath);
    ev.request.query = event.request.query.as_ref().map(|q| match mode {
        PayloadMode::Labels => shaped_query(q),
        _ => masked_string(q, &spans, Region::ReqQuery),
    });
    ev.request.headers =
        minimise_headers(scanner, &event.request.headers, &spans, true, mode).into();
    ev.request.body = match mode {
        PayloadMode::Sample => sample_body(
            &event.request.body,
            &event.request.headers,
            &spans,
            Region::ReqBody,
            opts.sample_bytes,
        ),
        _ => removed_body(&event.request.body),
    };
    if let (Some(out), Some(orig)) = (ev.response.as_mut(), event.response.as_ref()) {
        out.headers = minimise_headers(scanner, &orig.headers, &spans, false, mode).into();
        out.body = match mode {
            PayloadMode::Sample => sample_body(
                &orig.body,
                &orig.headers,
                &spans,
                Region::RespBody,
                opts.sample_bytes,
            ),
            _ => removed_body(&orig.body),
        };
    }
    let attach = mode == PayloadMode::Labels || opts.attach_labels;
    ev.payload = mode;
    ev.labels = attach.then(|| Box::new(keyed_wire(scanner, &labels)));
    MinimisedEvent {
        event: ev,
        payload: mode,
        labels: attach.then_some(labels),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use apitap_schema::test_support::EventBuilder;
    use apitap_schema::{decode_event, encode_event};

    use super::*;
    use crate::{HashKey, LabelConfig, Labeller};

    const ID: &str = "11010519491231002X";
    const MOBILE: &str = "13812345678";
    const CARD: &str = "6222021234567890128";

    fn scanner() -> Scanner {
        let lab = Labeller::new(HashKey::from_secret(b"unit"), LabelConfig::default())
            .expect("static automaton");
        Scanner::new(Arc::new(lab))
    }

    fn event() -> ApiEvent {
        let req = format!(r#"{{"password":"hunter2hunter2","mobile":"{MOBILE}"}}"#);
        let resp = format!(
            r#"{{"data":[{{"idCard":"{ID}","card":"{CARD}","masked":"138****5678"}},{{"idCard":"{ID}"}}]}}"#
        );
        EventBuilder::post(format!("/api/users/{MOBILE}"))
            .host("api")
            .query(format!("sfzh={ID}&page=1&memo=Zhang-Wei"))
            .body("application/json", req)
            .header("X-Customer-Ref", "ACME-77-Zhang")
            .header("User-Agent", "okhttp/4.9.3")
            .header(
                "Authorization",
                "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl",
            )
            .response_body("application/json", resp)
            .build()
    }

    #[test]
    fn wire_labels_are_the_labellers_json_and_convert_back() {
        let mut sc = scanner();
        let l = sc.label_event(&event());
        assert!(l.findings.iter().any(|f| f.mask.is_some()), "{l:?}");
        assert!(l.findings.iter().any(|f| !f.hashes.is_empty()));
        let wire = labels_to_wire(&l);
        assert_eq!(
            serde_json::to_value(&wire).expect("json"),
            serde_json::to_value(&l).expect("json")
        );
        assert_eq!(labels_from_wire(&wire), l);
    }

    #[test]
    fn labels_mode_event_carries_labels_and_no_raw_value() {
        let mut sc = scanner();
        let m = minimise(
            &mut sc,
            &event(),
            PayloadMode::Labels,
            &MinimiseOptions::default(),
        );
        let text = String::from_utf8(encode_event(&m.event)).expect("utf8");
        assert_eq!(
            text,
            serde_json::to_string(&m).expect("json"),
            "MinimisedEvent serialises as its event"
        );
        for raw in [ID, MOBILE, CARD, "hunter2hunter2", "c2lnbmF0dXJl"] {
            assert!(!text.contains(raw), "{raw} leaked");
        }
        assert!(text.contains(r#""payload":"labels""#));
        assert!(text.contains(r#""label":"prc_id""#));
        assert!(text.contains(r#""path":"$.data[*].idCard""#));
        let back = decode_event(text.as_bytes()).expect("decodes");
        assert_eq!(back.payload, PayloadMode::Labels);
        let shipped = labels_from_wire(back.labels.as_deref().expect("labels shipped"));
        assert_eq!(Some(&shipped), m.labels.as_ref());
        let id = shipped
            .findings
            .iter()
            .find(|f| f.label == Label::PrcId && f.location.direction == Direction::Response)
            .expect("prc_id in the response");
        assert_eq!(id.count, 2);
        assert!(!id.masked_sample.is_empty() && id.masked_sample.contains('*'));
        let back: MinimisedEvent = serde_json::from_str(&text).expect("reads back");
        assert_eq!(back, m);
    }

    #[test]
    fn labels_mode_ships_shapes_of_values_it_did_not_recognise() {
        let mut sc = scanner();
        let ev = event();
        let labels = minimise(
            &mut sc,
            &ev,
            PayloadMode::Labels,
            &MinimiseOptions::default(),
        );
        let text = String::from_utf8(encode_event(&labels.event)).expect("utf8");
        // Neither recognised nor unrecognised values travel; names and shapes do.
        for raw in ["Zhang-Wei", "ACME-77-Zhang"] {
            assert!(!text.contains(raw), "{raw} leaked: {text}");
        }
        let q = labels.event.request.query.as_deref().unwrap();
        assert_eq!(q, "sfzh=00000000000000000a&page=0&memo=aaaaa-aaa");
        let header = |name: &str| {
            let hs = &labels.event.request.headers;
            hs.iter().find(|h| h.name == name).map(|h| h.value.clone())
        };
        assert_eq!(header("X-Customer-Ref").as_deref(), Some("aaaa-00-aaaaa"));
        // Structural headers keep their values: the analyzer needs them.
        assert_eq!(header("User-Agent").as_deref(), Some("okhttp/4.9.3"));
        assert_eq!(header("Content-Type").as_deref(), Some("application/json"));
        assert_eq!(shape("李雷 a1-Z"), "** a0-a");
        // `sample` keeps unrecognised values (masking only what was detected).
        let sample = minimise(
            &mut sc,
            &ev,
            PayloadMode::Sample,
            &MinimiseOptions::default(),
        );
        let q = sample.event.request.query.as_deref().unwrap();
        assert!(q.ends_with("&page=1&memo=Zhang-Wei"), "{q}");
        assert!(!q.contains(ID), "{q}");
    }

    #[test]
    fn unknown_mode_is_treated_as_labels_and_full_attaches_on_request() {
        let mut sc = scanner();
        let ev = event();
        let m = minimise(
            &mut sc,
            &ev,
            PayloadMode::Unknown,
            &MinimiseOptions::default(),
        );
        assert_eq!(m.payload, PayloadMode::Labels);
        assert!(m.event.request.body.data.is_empty());
        let full = minimise(&mut sc, &ev, PayloadMode::Full, &MinimiseOptions::default());
        assert_eq!(full.event.request, ev.request);
        assert_eq!(full.event.payload, PayloadMode::Full);
        assert!(full.event.labels.is_some());
    }

    #[test]
    fn unknown_wire_names_are_skipped() {
        let mut sc = scanner();
        let mut wire = labels_to_wire(&sc.label_event(&event()));
        let n = wire.findings.len();
        wire.findings[0].label = "from_the_future".into();
        wire.findings[1].location.part = "new_part".into();
        wire.auth.push("quantum".into());
        let back = labels_from_wire(&wire);
        assert_eq!(back.findings.len(), n - 2);
    }
}
