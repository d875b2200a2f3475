//! Synthetic events for inventory tests.

use std::net::IpAddr;

use apitap_schema::{ApiEvent, Body, Endpoint, Header, Request, Response, SensorInfo};

/// A builder of one event.
#[derive(Debug, Clone)]
pub struct Ev {
    /// The event.
    pub e: ApiEvent,
}

impl Ev {
    /// `method path` on host `api.example.com`, answered 200 with `{}` after 1 ms.
    pub fn new(method: &str, path: &str) -> Ev {
        Ev {
            e: ApiEvent {
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
                    ip: "10.1.1.1".parse().unwrap(),
                    port: 40000,
                },
                server: Endpoint {
                    ip: "10.0.0.5".parse().unwrap(),
                    port: 8080,
                },
                tls: false,
                http_version: "1.1".into(),
                request: Request {
                    method: method.into(),
                    host: Some("api.example.com".into()),
                    path: path.into(),
                    query: None,
                    headers: vec![],
                    body: Body::default(),
                },
                response: Some(Response {
                    status: 200,
                    reason: "OK".into(),
                    headers: vec![Header {
                        name: "Content-Type".into(),
                        value: "application/json".into(),
                    }],
                    body: Body::from_bytes(b"{}", 2),
                }),
                anomalies: vec![],
                payload: Default::default(),
                labels: None,
            },
        }
    }

    /// Request time, seconds after the base time.
    pub fn at_secs(mut self, secs: u64) -> Ev {
        self.e.request_start_unix_us = 1_700_000_000_000_000 + secs * 1_000_000;
        self.e.response_end_unix_us = Some(self.e.request_start_unix_us + 1000);
        self
    }

    /// Response status and JSON body.
    pub fn json(mut self, status: u16, body: &str) -> Ev {
        let r = self.e.response.as_mut().unwrap();
        r.status = status;
        r.body = Body::from_bytes(body.as_bytes(), body.len() as u64);
        self
    }

    /// Adds a request header.
    pub fn header(mut self, name: &str, value: &str) -> Ev {
        self.e.request.headers.push(Header {
            name: name.into(),
            value: value.into(),
        });
        self
    }

    /// Sets the query string.
    pub fn query(mut self, q: &str) -> Ev {
        self.e.request.query = Some(q.into());
        self
    }

    /// Sets the client address.
    pub fn client(mut self, ip: &str) -> Ev {
        self.e.client.ip = ip.parse::<IpAddr>().unwrap();
        self
    }

    /// Sets a JSON request body.
    pub fn body(mut self, json: &str) -> Ev {
        self.e.request.headers.push(Header {
            name: "Content-Type".into(),
            value: "application/json".into(),
        });
        self.e.request.body = Body::from_bytes(json.as_bytes(), json.len() as u64);
        self
    }
}
