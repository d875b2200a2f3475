//! Synthetic events for inventory tests.

use std::net::IpAddr;

use apitap_schema::test_support::{DEFAULT_START_US, EventBuilder};
use apitap_schema::{ApiEvent, Body, Header};

/// A builder of one event.
#[derive(Debug, Clone)]
pub struct Ev {
    /// The event.
    pub e: ApiEvent,
}

impl Ev {
    /// `method path` on host `api.example.com` (server `10.0.0.5:8080`) from client
    /// `10.1.1.1`, answered 200 with `{}` after 1 ms.
    pub fn new(method: &str, path: &str) -> Ev {
        Ev {
            e: EventBuilder::new(method, path)
                .client("10.1.1.1")
                .server("10.0.0.5")
                .response_body("application/json", "{}")
                .build(),
        }
    }

    /// Request time, seconds after the base time.
    pub fn at_secs(mut self, secs: u64) -> Ev {
        self.e.request_start_unix_us = DEFAULT_START_US + secs * 1_000_000;
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
