//! Data minimisation at the sensor (R-CAP-8): `payload = full | sample | labels`.
//!
//! - `full`: the event as captured (labels attached when asked).
//! - `sample`: bodies cut to `sample_bytes` with every detected value masked in place; path,
//!   query, header and cookie values masked the same way, credentials headers always masked.
//! - `labels`: bodies removed (`data` empty, `captured_bytes` 0); only field names, labels,
//!   counts and masked samples travel, in the `labels` field; URL and headers as in `sample`.
use apitap_schema::{ApiEvent, Body, BodyEncoding, Header};
use serde::{Deserialize, Serialize};

use crate::event::{EventLabels, Scanner};
use crate::hints::KeyHints;
use crate::mask;
use crate::scan::{Region, Span};

/// What leaves the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PayloadMode {
    /// Everything captured.
    #[default]
    Full,
    /// Truncated, masked bodies.
    Sample,
    /// No bodies: field names, labels, counts, masked samples.
    Labels,
}

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

/// A minimised event: the schema 1.0 event plus the proposed optional `payload` and `labels`
/// fields (schema 1.1). Serialises as one flat JSON object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinimisedEvent {
    /// The event, minimised per `payload`.
    #[serde(flatten)]
    pub event: ApiEvent,
    /// The payload mode applied (`full` when absent: a plain 1.x event reads as one).
    #[serde(default)]
    pub payload: PayloadMode,
    /// Labels of the original event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<EventLabels>,
}

/// Headers whose whole value is a credential: masked in `sample` and `labels` mode whatever
/// the scan found (the auth scheme word is kept).
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

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

/// Minimises one event for the configured payload mode (R-CAP-8). Runs the scanner once.
pub fn minimise(
    scanner: &mut Scanner,
    event: &ApiEvent,
    mode: PayloadMode,
    opts: &MinimiseOptions,
) -> MinimisedEvent {
    if mode == PayloadMode::Full {
        let labels = opts.attach_labels.then(|| scanner.label_event(event));
        return MinimisedEvent {
            event: event.clone(),
            payload: mode,
            labels,
        };
    }
    let (labels, spans) = scanner.run(event, true);
    let mut ev = event.clone();
    ev.request.path = masked_string(&event.request.path, &spans, Region::ReqPath);
    ev.request.query = event
        .request
        .query
        .as_ref()
        .map(|q| masked_string(q, &spans, Region::ReqQuery));
    ev.request.headers = minimise_headers(scanner, &event.request.headers, &spans, true);
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
        out.headers = minimise_headers(scanner, &orig.headers, &spans, false);
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
    MinimisedEvent {
        event: ev,
        payload: mode,
        labels: attach.then_some(labels),
    }
}
