//! Helpers shared by the integration tests.
#![allow(dead_code)]
use apitap_schema::{ApiEvent, Body, Endpoint, Header, Request, Response, SensorInfo};

pub fn headers(h: &[(&str, &str)]) -> Vec<Header> {
    h.iter()
        .map(|(n, v)| Header {
            name: (*n).into(),
            value: (*v).into(),
        })
        .collect()
}

/// A response: status, headers, body.
pub type Resp<'a> = (u16, &'a [(&'a str, &'a str)], &'a [u8]);

/// A transaction with the given request and optional response.
pub fn event(
    method: &str,
    path: &str,
    query: Option<&str>,
    req_headers: &[(&str, &str)],
    req_body: &[u8],
    resp: Option<Resp<'_>>,
) -> ApiEvent {
    ApiEvent {
        schema_version: apitap_schema::SCHEMA_VERSION.into(),
        event_id: "0123456789abcdef0123456789abcdef".into(),
        sensor: SensorInfo {
            id: "s1".into(),
            host: "h1".into(),
        },
        connection_id: "0123456789abcdef".into(),
        transaction_index: 0,
        request_start_unix_us: 1,
        response_end_unix_us: resp.map(|_| 2),
        latency_us: resp.map(|_| 1),
        client: Endpoint {
            ip: "203.0.113.9".parse().unwrap(),
            port: 40000,
        },
        server: Endpoint {
            ip: "10.0.0.1".parse().unwrap(),
            port: 80,
        },
        tls: false,
        http_version: "1.1".into(),
        request: Request {
            method: method.into(),
            host: Some("api.example.com".into()),
            path: path.into(),
            query: query.map(Into::into),
            headers: headers(req_headers),
            body: Body::from_bytes(req_body, req_body.len() as u64),
        },
        response: resp.map(|(status, h, b)| Response {
            status,
            reason: "OK".into(),
            headers: headers(h),
            body: Body::from_bytes(b, b.len() as u64),
        }),
        anomalies: vec![],
        payload: Default::default(),
        labels: None,
    }
}
