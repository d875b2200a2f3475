//! Helpers shared by the integration tests.
#![allow(dead_code)]
use apitap_schema::ApiEvent;
use apitap_schema::test_support::EventBuilder;

/// A response: status, headers, body.
pub type Resp<'a> = (u16, &'a [(&'a str, &'a str)], &'a [u8]);

/// A transaction with the given request and optional response, to `api.example.com`.
pub fn event(
    method: &str,
    path: &str,
    query: Option<&str>,
    req_headers: &[(&str, &str)],
    req_body: &[u8],
    resp: Option<Resp<'_>>,
) -> ApiEvent {
    let mut b = EventBuilder::new(method, path)
        .headers(req_headers)
        .body_bytes(req_body);
    if let Some(q) = query {
        b = b.query(q);
    }
    match resp {
        Some((status, headers, body)) => b
            .status(status)
            .response_headers(headers)
            .response_body_bytes(body),
        None => b.no_response(),
    }
    .build()
}
