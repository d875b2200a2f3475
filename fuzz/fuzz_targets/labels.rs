//! The sensitive-data labeller and the sensor's minimisation on arbitrary bodies, queries,
//! header values and content types (issue 22): never panics; `labels` mode ships no body
//! bytes, and its query values are shapes only (`0`, `a`, punctuation).
#![no_main]
use std::sync::{Arc, OnceLock};

use apitap_labels::{HashKey, LabelConfig, Labeller, MinimiseOptions, PayloadMode, Scanner, minimise};
use apitap_schema::{ApiEvent, Body, Header, decode_event};
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: [&str; 6] = [
    "application/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "text/xml",
    "text/csv",
    "application/octet-stream",
];

fn template() -> &'static ApiEvent {
    static T: OnceLock<ApiEvent> = OnceLock::new();
    T.get_or_init(|| decode_event(include_bytes!("template.json").trim_ascii()).expect("template"))
}

fn labeller() -> Arc<Labeller> {
    static L: OnceLock<Arc<Labeller>> = OnceLock::new();
    L.get_or_init(|| {
        Arc::new(Labeller::new(HashKey::from_secret(b"fuzz key"), LabelConfig::default()).expect("labeller"))
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    // Request body | query | header value | response body, separated by 0xff.
    let mut parts = rest.split(|&b| b == 0xff);
    let req = parts.next().unwrap_or_default();
    let query = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let header = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let res = parts.next().unwrap_or_default();
    let mut ev = template().clone();
    let ct = CONTENT_TYPES[usize::from(sel) % CONTENT_TYPES.len()];
    ev.request.body = Body::from_bytes(req, req.len() as u64);
    ev.request.query = Some(query);
    ev.request.headers = vec![
        Header { name: "Content-Type".into(), value: ct.into() },
        Header { name: "X-Ref".into(), value: header },
    ]
    .into();
    if let Some(r) = ev.response.as_mut() {
        r.body = Body::from_bytes(res, res.len() as u64);
        r.headers[0].value = CONTENT_TYPES[usize::from(sel >> 4) % CONTENT_TYPES.len()].into();
    }
    let mut scanner = Scanner::new(labeller());
    let _ = scanner.label_event(&ev);
    let opts = MinimiseOptions { sample_bytes: 64, attach_labels: true };
    let sample = minimise(&mut scanner, &ev, PayloadMode::Sample, &opts);
    assert!(sample.event.request.body.captured_bytes <= 64 + 4);
    let labels = minimise(&mut scanner, &ev, PayloadMode::Labels, &opts);
    assert!(labels.event.request.body.data.is_empty());
    assert!(labels.event.response.as_ref().is_none_or(|r| r.body.data.is_empty()));
    let q = labels.event.request.query.as_deref().unwrap_or_default();
    for pair in q.split('&') {
        if let Some((_, v)) = pair.split_once('=') {
            assert!(
                v.chars().all(|c| c == '0' || c == 'a' || c == '*' || c.is_ascii_punctuation() || c == ' '),
                "a query value left as is: {v:?}"
            );
        }
    }
});
