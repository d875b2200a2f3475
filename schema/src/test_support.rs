//! A fluent builder of [`ApiEvent`]s for tests and benchmarks (cargo feature `test-support`).
//!
//! ```
//! use apitap_schema::test_support::EventBuilder;
//!
//! let e = EventBuilder::post("/users")
//!     .query("dry_run=1")
//!     .header("Authorization", "Bearer abc")
//!     .body("application/json", r#"{"name":"ada"}"#)
//!     .client("203.0.113.7:5000")
//!     .status(201)
//!     .response_body("application/json", r#"{"id":7}"#)
//!     .build();
//! assert_eq!(e.request.headers.len(), 2);
//! assert_eq!(e.response.unwrap().reason, "Created");
//! ```
//!
//! Every field has a fixed default, so two builders given the same calls build equal events:
//!
//! | field | default |
//! |---|---|
//! | `schema_version` | [`SCHEMA_VERSION`] |
//! | `event_id`, `connection_id` | [`DEFAULT_EVENT_ID`], [`DEFAULT_CONNECTION_ID`] (see [`EventBuilder::id`]) |
//! | `sensor` | id `s1`, host `h1` |
//! | `transaction_index` | 0 |
//! | `request_start_unix_us` | [`DEFAULT_START_US`] (2023-11-14T22:13:20Z) |
//! | `latency_us` | 1000 (`response_end_unix_us` = start + latency; both absent without a response) |
//! | `client` | `203.0.113.9:40000` |
//! | `server` | `10.0.0.1:8080` |
//! | `tls`, `http_version` | `false`, `"1.1"` |
//! | request | host `api.example.com`, no query, no headers, empty body |
//! | response | `200 OK`, no headers, empty body |
//! | `anomalies`, `payload`, `labels` | none, [`PayloadMode::Full`], none |
//!
//! The builder adds no header by itself (no `Host`, no `Content-Length`): the headers are the
//! ones given, in the order given, except that [`EventBuilder::body`] and
//! [`EventBuilder::response_body`] set `Content-Type`.
//!
//! Test code: invalid input (an address that does not parse, a response setter after
//! [`EventBuilder::no_response`]) panics with a message saying which call was wrong.

use std::net::{IpAddr, SocketAddr};

use crate::{
    Anomaly, ApiEvent, Body, Endpoint, Header, Headers, LabelSummary, PayloadMode, Request,
    Response, SCHEMA_VERSION, SensorInfo,
};

/// Default `event_id`.
pub const DEFAULT_EVENT_ID: &str = "0123456789abcdef0123456789abcdef";
/// Default `connection_id`.
pub const DEFAULT_CONNECTION_ID: &str = "0123456789abcdef";
/// Default request time, µs since the Unix epoch (2023-11-14T22:13:20Z).
pub const DEFAULT_START_US: u64 = 1_700_000_000_000_000;
/// Default latency, µs.
pub const DEFAULT_LATENCY_US: u64 = 1_000;

/// Builds one [`ApiEvent`]; see the [module documentation](self) for the defaults.
#[derive(Debug, Clone)]
#[must_use = "an EventBuilder does nothing until .build()"]
pub struct EventBuilder {
    event: ApiEvent,
    latency_us: u64,
}

impl EventBuilder {
    /// `method path` (the path without its query, still percent-encoded), everything else
    /// defaulted.
    pub fn new(method: impl Into<String>, path: impl Into<String>) -> EventBuilder {
        EventBuilder {
            event: ApiEvent {
                schema_version: SCHEMA_VERSION.to_owned(),
                event_id: DEFAULT_EVENT_ID.to_owned(),
                sensor: SensorInfo {
                    id: "s1".to_owned(),
                    host: "h1".to_owned(),
                    node: None,
                },
                connection_id: DEFAULT_CONNECTION_ID.to_owned(),
                transaction_index: 0,
                request_start_unix_us: DEFAULT_START_US,
                response_end_unix_us: None,
                latency_us: None,
                client: Endpoint {
                    ip: IpAddr::from([203, 0, 113, 9]),
                    port: 40000,
                },
                server: Endpoint {
                    ip: IpAddr::from([10, 0, 0, 1]),
                    port: 8080,
                },
                tls: false,
                http_version: "1.1".to_owned(),
                request: Request {
                    method: method.into(),
                    host: Some("api.example.com".to_owned()),
                    path: path.into(),
                    query: None,
                    headers: Headers::new(),
                    body: Body::default(),
                },
                response: Some(Response {
                    status: 200,
                    reason: "OK".to_owned(),
                    headers: Headers::new(),
                    body: Body::default(),
                }),
                anomalies: Vec::new(),
                payload: PayloadMode::Full,
                labels: None,
                bodies_sampled_out: false,
                server_workload: None,
                client_workload: None,
                tls_library: None,
                tls_sni: None,
                stream_id: None,
                unknown_header_fields: 0,
                grpc: None,
                process: None,
            },
            latency_us: DEFAULT_LATENCY_US,
        }
    }

    /// `GET path`.
    pub fn get(path: impl Into<String>) -> EventBuilder {
        EventBuilder::new("GET", path)
    }

    /// `POST path`.
    pub fn post(path: impl Into<String>) -> EventBuilder {
        EventBuilder::new("POST", path)
    }

    /// `PUT path`.
    pub fn put(path: impl Into<String>) -> EventBuilder {
        EventBuilder::new("PUT", path)
    }

    /// `DELETE path`.
    pub fn delete(path: impl Into<String>) -> EventBuilder {
        EventBuilder::new("DELETE", path)
    }

    /// The event.
    pub fn build(self) -> ApiEvent {
        let mut e = self.event;
        if e.response.is_some() {
            e.latency_us = Some(self.latency_us);
            e.response_end_unix_us = Some(e.request_start_unix_us + self.latency_us);
        } else {
            e.latency_us = None;
            e.response_end_unix_us = None;
        }
        e
    }

    // --- Identity -------------------------------------------------------------------------

    /// Sets `schema_version` (default [`SCHEMA_VERSION`]).
    pub fn schema_version(mut self, version: impl Into<String>) -> EventBuilder {
        self.event.schema_version = version.into();
        self
    }

    /// Numbers the event: `event_id` is `n` as 32 hex digits and `connection_id` `n` as 16,
    /// so events numbered differently are distinct to a deduplicating consumer.
    pub fn id(mut self, n: u64) -> EventBuilder {
        self.event.event_id = format!("{n:032x}");
        self.event.connection_id = format!("{n:016x}");
        self
    }

    /// Sets `event_id` as given.
    pub fn event_id(mut self, id: impl Into<String>) -> EventBuilder {
        self.event.event_id = id.into();
        self
    }

    /// Sets `connection_id` as given.
    pub fn connection_id(mut self, id: impl Into<String>) -> EventBuilder {
        self.event.connection_id = id.into();
        self
    }

    /// Sets `transaction_index`.
    pub fn transaction_index(mut self, index: u64) -> EventBuilder {
        self.event.transaction_index = index;
        self
    }

    /// Sets the sensor's id and host name.
    pub fn sensor(mut self, id: impl Into<String>, host: impl Into<String>) -> EventBuilder {
        self.event.sensor = SensorInfo {
            id: id.into(),
            host: host.into(),
            node: None,
        };
        self
    }

    // --- Time and transport ---------------------------------------------------------------

    /// Sets `request_start_unix_us`; the response ends the latency later.
    pub fn at_us(mut self, start_us: u64) -> EventBuilder {
        self.event.request_start_unix_us = start_us;
        self
    }

    /// Sets the latency (`response_end_unix_us - request_start_unix_us`; default 1000 µs).
    pub fn latency_us(mut self, latency_us: u64) -> EventBuilder {
        self.latency_us = latency_us;
        self
    }

    /// Sets the client: `"ip:port"` (`"[v6]:port"`), or `"ip"` to keep the current port.
    pub fn client(mut self, addr: &str) -> EventBuilder {
        self.event.client = endpoint(addr, self.event.client.port, "client");
        self
    }

    /// Sets the client's address, keeping its port.
    pub fn client_ip(mut self, ip: impl Into<IpAddr>) -> EventBuilder {
        self.event.client.ip = ip.into();
        self
    }

    /// Sets the client's port.
    pub fn client_port(mut self, port: u16) -> EventBuilder {
        self.event.client.port = port;
        self
    }

    /// Sets the server: `"ip:port"` (`"[v6]:port"`), or `"ip"` to keep the current port.
    pub fn server(mut self, addr: &str) -> EventBuilder {
        self.event.server = endpoint(addr, self.event.server.port, "server");
        self
    }

    /// Sets the server's address, keeping its port.
    pub fn server_ip(mut self, ip: impl Into<IpAddr>) -> EventBuilder {
        self.event.server.ip = ip.into();
        self
    }

    /// Sets the server's port.
    pub fn server_port(mut self, port: u16) -> EventBuilder {
        self.event.server.port = port;
        self
    }

    /// Sets `tls`.
    pub fn tls(mut self, tls: bool) -> EventBuilder {
        self.event.tls = tls;
        self
    }

    /// Sets `http_version` (default `"1.1"`).
    pub fn http_version(mut self, version: impl Into<String>) -> EventBuilder {
        self.event.http_version = version.into();
        self
    }

    // --- Request --------------------------------------------------------------------------

    /// Sets the request method.
    pub fn method(mut self, method: impl Into<String>) -> EventBuilder {
        self.event.request.method = method.into();
        self
    }

    /// Sets the request path.
    pub fn path(mut self, path: impl Into<String>) -> EventBuilder {
        self.event.request.path = path.into();
        self
    }

    /// Sets the raw query string (without the `?`).
    pub fn query(mut self, query: impl Into<String>) -> EventBuilder {
        self.event.request.query = Some(query.into());
        self
    }

    /// Sets `request.host` (default `api.example.com`). Adds no `Host` header.
    pub fn host(mut self, host: impl Into<String>) -> EventBuilder {
        self.event.request.host = Some(host.into());
        self
    }

    /// Removes `request.host` (a client that sent no `Host`).
    pub fn no_host(mut self) -> EventBuilder {
        self.event.request.host = None;
        self
    }

    /// Appends a request header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> EventBuilder {
        self.event.request.headers.push(header(name, value));
        self
    }

    /// Appends request headers, in order.
    pub fn headers(mut self, headers: &[(&str, &str)]) -> EventBuilder {
        self.event
            .request
            .headers
            .extend(headers.iter().map(|(n, v)| header(*n, *v)));
        self
    }

    /// Sets the request body to `text`, complete, and its `Content-Type` header to
    /// `content_type` (replacing one already set, else appended).
    pub fn body(mut self, content_type: &str, text: impl AsRef<[u8]>) -> EventBuilder {
        set_content_type(&mut self.event.request.headers, content_type);
        self.event.request.body = complete(text.as_ref());
        self
    }

    /// Sets the request body to `bytes`, complete (base64 in the event when not UTF-8);
    /// headers unchanged.
    pub fn body_bytes(mut self, bytes: impl AsRef<[u8]>) -> EventBuilder {
        self.event.request.body = complete(bytes.as_ref());
        self
    }

    /// Sets the request body as given (truncated or decoded bodies: [`Body::from_bytes`],
    /// [`Body::from_decoded`]); headers unchanged.
    pub fn body_raw(mut self, body: Body) -> EventBuilder {
        self.event.request.body = body;
        self
    }

    // --- Response -------------------------------------------------------------------------

    /// Sets the response status and its standard reason phrase (empty for a code without
    /// one; [`EventBuilder::reason`] overrides it).
    pub fn status(mut self, status: u16) -> EventBuilder {
        let r = self.response_mut("status");
        r.status = status;
        r.reason = reason_phrase(status).to_owned();
        self
    }

    /// Sets the response reason phrase.
    pub fn reason(mut self, reason: impl Into<String>) -> EventBuilder {
        self.response_mut("reason").reason = reason.into();
        self
    }

    /// Appends a response header.
    pub fn response_header(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> EventBuilder {
        self.response_mut("response_header")
            .headers
            .push(header(name, value));
        self
    }

    /// Appends response headers, in order.
    pub fn response_headers(mut self, headers: &[(&str, &str)]) -> EventBuilder {
        self.response_mut("response_headers")
            .headers
            .extend(headers.iter().map(|(n, v)| header(*n, *v)));
        self
    }

    /// Sets the response body to `text`, complete, and its `Content-Type` header to
    /// `content_type` (replacing one already set, else appended).
    pub fn response_body(mut self, content_type: &str, text: impl AsRef<[u8]>) -> EventBuilder {
        let r = self.response_mut("response_body");
        set_content_type(&mut r.headers, content_type);
        r.body = complete(text.as_ref());
        self
    }

    /// Sets the response body to `bytes`, complete; headers unchanged.
    pub fn response_body_bytes(mut self, bytes: impl AsRef<[u8]>) -> EventBuilder {
        self.response_mut("response_body_bytes").body = complete(bytes.as_ref());
        self
    }

    /// Sets the response body as given; headers unchanged.
    pub fn response_body_raw(mut self, body: Body) -> EventBuilder {
        self.response_mut("response_body_raw").body = body;
        self
    }

    /// No response was seen: `response`, `response_end_unix_us` and `latency_us` absent.
    /// Adds no anomaly (add [`Anomaly::NoResponse`] with [`EventBuilder::anomaly`] if wanted).
    /// Response setters called afterwards panic.
    pub fn no_response(mut self) -> EventBuilder {
        self.event.response = None;
        self
    }

    // --- Decoder and sensor annotations ---------------------------------------------------

    /// Appends an anomaly.
    pub fn anomaly(mut self, anomaly: Anomaly) -> EventBuilder {
        self.event.anomalies.push(anomaly);
        self
    }

    /// Appends anomalies, in order.
    pub fn anomalies(mut self, anomalies: impl IntoIterator<Item = Anomaly>) -> EventBuilder {
        self.event.anomalies.extend(anomalies);
        self
    }

    /// Sets the payload mode (default [`PayloadMode::Full`]).
    pub fn payload(mut self, mode: PayloadMode) -> EventBuilder {
        self.event.payload = mode;
        self
    }

    /// Attaches a label summary.
    pub fn labels(mut self, labels: LabelSummary) -> EventBuilder {
        self.event.labels = Some(Box::new(labels));
        self
    }

    fn response_mut(&mut self, call: &str) -> &mut Response {
        match self.event.response.as_mut() {
            Some(r) => r,
            None => panic!("EventBuilder::{call}() called after no_response()"),
        }
    }
}

impl From<EventBuilder> for ApiEvent {
    fn from(b: EventBuilder) -> ApiEvent {
        b.build()
    }
}

fn header(name: impl Into<String>, value: impl Into<String>) -> Header {
    Header {
        name: name.into(),
        value: value.into(),
    }
}

fn complete(bytes: &[u8]) -> Body {
    Body::from_bytes(bytes, bytes.len() as u64)
}

fn set_content_type(headers: &mut Vec<Header>, content_type: &str) {
    match headers
        .iter_mut()
        .find(|h| h.name.eq_ignore_ascii_case("content-type"))
    {
        Some(h) => h.value = content_type.to_owned(),
        None => headers.push(header("Content-Type", content_type)),
    }
}

fn endpoint(addr: &str, port: u16, which: &str) -> Endpoint {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Endpoint {
            ip: sa.ip(),
            port: sa.port(),
        };
    }
    match addr.parse::<IpAddr>() {
        Ok(ip) => Endpoint { ip, port },
        Err(_) => panic!("EventBuilder::{which}({addr:?}): not an \"ip:port\" or an \"ip\""),
    }
}

/// The standard reason phrase of common status codes (RFC 9110 §15), else empty.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BodyEncoding, decode_event, encode_event};

    fn round_trip(e: &ApiEvent) -> ApiEvent {
        let text = encode_event(e);
        assert_eq!(
            text,
            serde_json::to_vec(e).expect("serialisable"),
            "fast encoder and serde agree"
        );
        decode_event(&text).expect("the builder's events decode")
    }

    #[test]
    fn defaults_are_a_complete_current_version_transaction() {
        let e = EventBuilder::get("/users/7").build();
        assert_eq!(e.schema_version, SCHEMA_VERSION);
        assert_eq!(e.event_id, DEFAULT_EVENT_ID);
        assert_eq!(e.connection_id, DEFAULT_CONNECTION_ID);
        assert_eq!(e.transaction_index, 0);
        assert_eq!(e.request_start_unix_us, DEFAULT_START_US);
        assert_eq!(e.latency_us, Some(DEFAULT_LATENCY_US));
        assert_eq!(
            e.response_end_unix_us,
            Some(DEFAULT_START_US + DEFAULT_LATENCY_US)
        );
        assert_eq!(parts(e.client), ("203.0.113.9".into(), 40000));
        assert_eq!(parts(e.server), ("10.0.0.1".into(), 8080));
        assert!(!e.tls);
        assert_eq!(e.http_version, "1.1");
        assert_eq!(e.request.method, "GET");
        assert_eq!(e.request.path, "/users/7");
        assert_eq!(e.request.host.as_deref(), Some("api.example.com"));
        assert_eq!(e.request.query, None);
        assert!(e.request.headers.is_empty());
        assert_eq!(e.request.body, Body::default());
        let r = e.response.as_ref().expect("a response by default");
        assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
        assert!(r.headers.is_empty());
        assert_eq!(r.body, Body::default());
        assert!(e.anomalies.is_empty());
        assert_eq!(e.payload, PayloadMode::Full);
        assert!(e.labels.is_none());
        assert_eq!(round_trip(&e), e);
        assert_eq!(EventBuilder::get("/users/7").build(), e, "deterministic");
    }

    #[test]
    fn every_setter_survives_encode_and_decode() {
        let e = EventBuilder::new("PATCH", "/v1/users/42")
            .schema_version("1.1")
            .id(0xbeef)
            .transaction_index(3)
            .sensor("sensor-1", "node-1")
            .at_us(1_000_000)
            .latency_us(2_500)
            .client("[2001:db8::7]:51000")
            .server("192.168.1.10:443")
            .tls(true)
            .http_version("1.0")
            .query("a=1&b=2")
            .host("api")
            .header("Authorization", "Bearer abc")
            .headers(&[("Accept", "*/*"), ("X-Id", "1")])
            .body("application/json", r#"{"name":"ada"}"#)
            .status(422)
            .response_header("Cache-Control", "no-store")
            .response_headers(&[("Vary", "Accept")])
            .response_body("application/problem+json", r#"{"title":"bad"}"#)
            .anomaly(Anomaly::RequestGap)
            .anomalies([Anomaly::OverlapConflict, Anomaly::NonUtf8Header])
            .payload(PayloadMode::Sample)
            .labels(LabelSummary {
                auth: vec!["bearer".into()],
                ..LabelSummary::default()
            })
            .build();
        assert_eq!(e.schema_version, "1.1");
        assert_eq!(e.event_id, format!("{:032x}", 0xbeef));
        assert_eq!(e.connection_id, "000000000000beef");
        assert_eq!(e.transaction_index, 3);
        assert_eq!(
            (e.sensor.id.as_str(), e.sensor.host.as_str()),
            ("sensor-1", "node-1")
        );
        assert_eq!(e.request_start_unix_us, 1_000_000);
        assert_eq!(e.response_end_unix_us, Some(1_002_500));
        assert_eq!(e.latency_us, Some(2_500));
        assert_eq!(parts(e.client), ("2001:db8::7".into(), 51000));
        assert_eq!(parts(e.server), ("192.168.1.10".into(), 443));
        assert!(e.tls);
        assert_eq!(e.http_version, "1.0");
        assert_eq!(e.request.method, "PATCH");
        assert_eq!(e.request.query.as_deref(), Some("a=1&b=2"));
        assert_eq!(e.request.host.as_deref(), Some("api"));
        let names: Vec<&str> = e.request.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["Authorization", "Accept", "X-Id", "Content-Type"]);
        assert_eq!(e.request.body.data, r#"{"name":"ada"}"#);
        assert_eq!(e.request.body.length_bytes, 14);
        assert!(!e.request.body.truncated);
        let r = e.response.as_ref().expect("response");
        assert_eq!(
            (r.status, r.reason.as_str()),
            (422, "Unprocessable Content")
        );
        let names: Vec<&str> = r.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["Cache-Control", "Vary", "Content-Type"]);
        assert_eq!(r.headers[2].value, "application/problem+json");
        assert_eq!(r.body.data, r#"{"title":"bad"}"#);
        assert_eq!(
            e.anomalies,
            [
                Anomaly::RequestGap,
                Anomaly::OverlapConflict,
                Anomaly::NonUtf8Header
            ]
        );
        assert_eq!(e.payload, PayloadMode::Sample);
        assert_eq!(e.labels.as_ref().expect("labels").auth, ["bearer"]);
        assert_eq!(round_trip(&e), e);
    }

    #[test]
    fn bodies_binary_truncated_and_content_type_replaced() {
        let e = EventBuilder::post("/upload")
            .header("content-type", "text/plain")
            .body("application/octet-stream", [0xff, 0x00, 0x01])
            .response_body_raw(Body::from_bytes(b"hello", 100))
            .build();
        assert_eq!(
            e.request.headers.len(),
            1,
            "Content-Type replaced, not added"
        );
        assert_eq!(e.request.headers[0].name, "content-type");
        assert_eq!(e.request.headers[0].value, "application/octet-stream");
        assert_eq!(e.request.body.encoding, BodyEncoding::Base64);
        assert_eq!(e.request.body.bytes().expect("base64"), [0xff, 0x00, 0x01]);
        let r = e.response.as_ref().expect("response");
        assert!(r.body.truncated);
        assert_eq!((r.body.captured_bytes, r.body.length_bytes), (5, 100));
        assert_eq!(round_trip(&e), e);

        let e = EventBuilder::get("/")
            .header("Accept", "*/*")
            .body_bytes("abc")
            .response_body_bytes(b"{}")
            .build();
        assert_eq!(
            e.request.headers.len(),
            1,
            "body_bytes leaves headers alone"
        );
        assert_eq!(e.request.body, Body::from_bytes(b"abc", 3));
        let r = e.response.as_ref().expect("response");
        assert!(r.headers.is_empty());
        assert_eq!(r.body, Body::from_bytes(b"{}", 2));
        assert_eq!(
            EventBuilder::get("/")
                .body_raw(Body::from_bytes(b"x", 9))
                .build()
                .request
                .body,
            Body::from_bytes(b"x", 9)
        );
    }

    #[test]
    fn no_response_no_host_and_ports() {
        let e = EventBuilder::delete("/users/7")
            .no_host()
            .client("10.9.0.1")
            .client_port(40001)
            .server("::1")
            .server_port(80)
            .latency_us(5)
            .no_response()
            .anomaly(Anomaly::NoResponse)
            .build();
        assert_eq!(e.request.host, None);
        assert_eq!(e.response, None);
        assert_eq!(e.response_end_unix_us, None);
        assert_eq!(e.latency_us, None);
        assert_eq!(parts(e.client), ("10.9.0.1".into(), 40001));
        assert_eq!(parts(e.server), ("::1".into(), 80));
        assert_eq!(round_trip(&e), e);
        let keep = EventBuilder::put("/x").client("10.0.0.3").build();
        assert_eq!(
            keep.client.port, 40000,
            "an address without port keeps the port"
        );
        let e = EventBuilder::get("/x")
            .client_ip([10, 0, 0, 4])
            .server_ip(IpAddr::from([0xfe80, 0, 0, 0, 0, 0, 0, 1]))
            .build();
        assert_eq!(parts(e.client), ("10.0.0.4".into(), 40000));
        assert_eq!(parts(e.server), ("fe80::1".into(), 8080));
        let e: ApiEvent = EventBuilder::get("/x").reason("Fine").into();
        assert_eq!(e.response.expect("response").reason, "Fine");
        assert_eq!(
            EventBuilder::get("/x")
                .status(299)
                .build()
                .response
                .expect("r")
                .reason,
            ""
        );
    }

    #[test]
    #[should_panic(expected = "EventBuilder::status() called after no_response()")]
    fn response_setter_after_no_response_panics() {
        let _ = EventBuilder::get("/").no_response().status(500);
    }

    #[test]
    #[should_panic(expected = "EventBuilder::client(\"10.0.0\")")]
    fn bad_address_panics_with_the_call() {
        let _ = EventBuilder::get("/").client("10.0.0");
    }

    fn parts(e: Endpoint) -> (String, u16) {
        (e.ip.to_string(), e.port)
    }
}
