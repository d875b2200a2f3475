//! Helpers shared by the integration tests.
#![allow(dead_code)]
use std::sync::Arc;

use apitap_labels::{EventLabels, HashKey, LabelConfig, LabelError, Labeller, Scanner};
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

pub const ID: &str = "11010519491231002X";
pub const MOBILE: &str = "13812345678";
pub const CARD: &str = "6222021234567890128";
pub fn scanner() -> Scanner {
    let lab = Labeller::new(HashKey::from_secret(b"test"), LabelConfig::default()).unwrap();
    Scanner::new(Arc::new(lab))
}
pub fn ok_json(body: &str) -> (u16, &'static [(&'static str, &'static str)], Vec<u8>) {
    (
        200,
        &[("Content-Type", "application/json")],
        body.as_bytes().to_vec(),
    )
}
pub fn sensitive_event() -> apitap_schema::ApiEvent {
    let resp = format!(
        r#"{{"data":{{"idCard":"{ID}","mobile":"{MOBILE}","card":"{CARD}","note":"{}"}}}}"#,
        "x".repeat(2000)
    );
    event(
        "POST",
        &format!("/api/user/{MOBILE}/bind"),
        Some(&format!("sfzh={ID}&page=1")),
        &[
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer abcdefghijklmnopqrstuvwxyz"),
            ("Cookie", "SESSION=sessval9f8e7d6c5b"),
            ("X-Api-Key", "k-0123456789abcdef"),
        ],
        format!(r#"{{"password":"hunter2hunter2","mobile":"{MOBILE}","name":"张三丰"}}"#)
            .as_bytes(),
        Some((
            200,
            &[
                ("Content-Type", "application/json"),
                ("Set-Cookie", "sid=zzzzyyyyxxxx; Path=/"),
            ],
            resp.as_bytes(),
        )),
    )
}
pub const RAW: &[&str] = &[
    ID,
    MOBILE,
    CARD,
    "hunter2hunter2",
    "张三丰",
    "abcdefghijklmnopqrstuvwxyz",
    "sessval9f8e7d6c5b",
    "k-0123456789abcdef",
    "zzzzyyyyxxxx",
    "1234567890128",
];
pub fn assert_no_raw(s: &str) {
    for r in RAW {
        assert!(
            !s.contains(r),
            "raw value {r:?} leaked into: {}",
            &s[..s.len().min(400)]
        );
    }
}

/// The labels of `sensitive_event`, the scanner, the hash key and the errors never show a
/// raw value in Debug, Display or JSON.
pub fn assert_labels_never_raw(sc: &Scanner, l: &EventLabels) {
    assert_no_raw(&format!("{l:?}"));
    assert_no_raw(&serde_json::to_string(l).unwrap());
    assert_no_raw(&format!("{sc:?} {:?}", sc.labeller()));
    assert_eq!(
        format!("{:?}", HashKey::from_secret(ID.as_bytes())),
        "HashKey(<redacted>)"
    );
    assert_no_raw(&LabelError::Automaton.to_string());
    for f in &l.findings {
        assert_no_raw(&format!("{} {} {:?}", f.label, f.masked_sample, f.location));
    }
}
