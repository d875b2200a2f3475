//! From HTTP/2 streams to API events (R-CAP-3): what [`crate::Session`] emits for a
//! connection whose client opened with the connection preface (prior-knowledge h2c, RFC 9113
//! §3.3, or h2 over TLS, whose plaintext the uprobes feed into the same session), or whose
//! mid-connection bytes are HTTP/2 frames.
//!
//! One event per stream, `http_version` `"2"`, `stream_id` set. Pseudo-header fields (§8.3)
//! become the method, path, query, host and status; the regular fields are the headers, as
//! sent. A field whose name or value refers to HPACK state the sensor did not see is left out
//! and counted in `unknown_header_fields`, with the `hpack_unknown_field` anomaly: nothing is
//! invented. gRPC streams carry the call's summary in `grpc`.

use apitap_schema::{Anomaly, Body, Grpc, Header, Request, Response};

use super::conn::{End, H2Anomaly, H2Message, Part};
use super::hpack::Field;

/// The request, response, anomalies and times of one stream, for [`crate::Session`] to wrap
/// into an event.
pub(crate) struct StreamEvent {
    pub request: Request,
    pub response: Option<Response>,
    pub anomalies: Vec<Anomaly>,
    pub start_us: u64,
    pub end_us: Option<u64>,
    pub stream_id: u32,
    pub unknown_fields: u32,
    pub grpc: Option<Grpc>,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Regular (non-pseudo) fields whose name and value are known.
fn headers(fields: &[Field]) -> Vec<Header> {
    fields
        .iter()
        .filter_map(|f| {
            let (name, value) = (f.name.as_deref()?, f.value.as_deref()?);
            (!name.starts_with(b":")).then(|| Header {
                name: text(name),
                value: text(value),
            })
        })
        .collect()
}

fn body(part: &Part) -> Body {
    let b = &part.body;
    match part.header("content-encoding").filter(|_| b.decoded) {
        Some(coding) => Body::from_decoded(&b.data, b.wire_len, &text(coding), !b.truncated),
        None => Body::from_bytes(&b.data, b.wire_len),
    }
}

/// The parts of an event for `m`.
pub(crate) fn stream_event(m: &H2Message) -> StreamEvent {
    let mut anomalies = Vec::new();
    let mut push = |a: Anomaly| {
        if !anomalies.contains(&a) {
            anomalies.push(a);
        }
    };
    for a in &m.anomalies {
        match a {
            H2Anomaly::UnknownHpackIndex => push(Anomaly::HpackUnknownField),
            H2Anomaly::HeadersTooLarge => push(Anomaly::HeadersTooLarge),
            H2Anomaly::TooManyHeaders => push(Anomaly::TooManyHeaders),
            H2Anomaly::RequestHeadersMissing => push(Anomaly::MidstreamStart),
            H2Anomaly::Gap => push(if m.response.is_some() {
                Anomaly::ResponseGap
            } else {
                Anomaly::RequestGap
            }),
            H2Anomaly::ContentLengthMismatch => push(Anomaly::InvalidContentLength),
            H2Anomaly::BodyDecodeFailed => push(Anomaly::BodyDecodeFailed),
            H2Anomaly::DecompressionBomb => push(Anomaly::DecompressionBomb),
            H2Anomaly::HeaderBlockInvalid
            | H2Anomaly::MalformedHeaders
            | H2Anomaly::ProtocolError
            | H2Anomaly::FlowControlViolation => push(Anomaly::H2ProtocolError),
            // A pushed stream is a fact, not a fault.
            H2Anomaly::Pushed => {}
        }
    }
    match m.end {
        End::Complete => {}
        End::Reset { .. } | End::Refused { .. } => push(Anomaly::StreamReset),
        End::ConnectionClosed => push(if m.response.is_some() {
            Anomaly::ResponseIncomplete
        } else {
            Anomaly::NoResponse
        }),
        End::Evicted => push(Anomaly::StateEvicted),
    }
    let unknown_fields = m.unknown_fields() as u32;
    if unknown_fields > 0 {
        push(Anomaly::HpackUnknownField);
    }
    let path = m.path().map(text).unwrap_or_default();
    let (path, query) = crate::session::split_target(&path);
    let request = Request {
        method: m.method().map(text).unwrap_or_default(),
        host: m.authority().map(text),
        path,
        query,
        headers: headers(&m.request.headers).into(),
        body: body(&m.request),
    };
    let response = m.response.as_ref().map(|r| Response {
        status: m.status().unwrap_or(0),
        reason: String::new(),
        headers: headers(&r.headers).into(),
        body: body(r),
    });
    let start_us = m.request.start_us;
    let end_us = m
        .response
        .as_ref()
        .map(|r| r.end_us.max(start_us))
        .filter(|_| m.response.is_some());
    StreamEvent {
        request,
        response,
        anomalies,
        start_us,
        end_us,
        stream_id: m.stream_id,
        unknown_fields,
        grpc: m.grpc.as_ref().map(crate::grpc::Rpc::to_event),
    }
}
