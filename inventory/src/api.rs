//! The inventory HTTP JSON API of `apitap-analyzer run` (R-INV-5).
//!
//! Read-only, `GET` only, served from the store (so it shows what was last flushed, at most
//! `flush_interval_secs` old, and the same data on every analyzer sharing a PostgreSQL
//! store):
//!
//! | route | answer |
//! |---|---|
//! | `/healthz` | `ok` |
//! | `/v1/endpoints?service=&method=&template=&lifecycle=&style=&auth=&spec_status=&exposure=&limit=&offset=` | JSON array of endpoint summaries |
//! | `/v1/endpoints/{id}` | full endpoint record |
//! | `/v1/endpoints/{id}/changes?after_seq=&limit=` | that endpoint's change log |
//! | `/v1/changes?after_seq=&since_unix_us=&endpoint_id=&kind=&limit=` | change log |
//! | `/v1/services?limit=&offset=` | services with endpoint counts |
//! | `/v1/openapi/{service}?limit=&offset=` | OpenAPI 3.1 document of a service |
//!
//! Every list is paged (issue 22, R-OPS-3): `limit` defaults to [`DEFAULT_LIMIT`] rows and
//! is capped at [`MAX_LIMIT`] (larger values are treated as the cap); page on with `offset`
//! (or `after_seq` for change logs). An OpenAPI document holds at most `limit` paths (default
//! and cap [`MAX_LIMIT`]), sorted, from `offset`; a document with more paths left says so in
//! `x-apitap-truncated` (`total_paths`, `offset`, `limit`, `next_offset`).
//!
//! Store failures are answered `500 {"error":"internal error"}` and logged with their cause
//! on the server only: their text can name files, tables and records.
//!
//! The server is `apitap-admin-http` (connection cap, whole-head and write deadlines, one
//! request per connection, optional bearer token `inventory.api_token_file`). Bind it to
//! loopback or a management network (the inventory holds no raw values, but it is a map of
//! the APIs); TLS, if needed, is terminated by a proxy in front of it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use apitap_admin_http::{Handler, Options, Request, Response};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

use super::openapi;
use super::record::{ChangeFilter, EndpointFilter, EndpointSummary};
use super::shape::percent_decode;
use super::store::Store;

/// Rows of a list when the request gives no `limit`.
pub const DEFAULT_LIMIT: u64 = 100;
/// Largest `limit` honoured (rows of a list, paths of an OpenAPI document); larger values are
/// treated as this (issue 22, R-OPS-3: no unbounded response).
pub const MAX_LIMIT: u64 = 1000;

/// A response: status and JSON (or text) body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: Value,
}

/// A reply with `status` and `body` (a JSON string body is sent as text).
pub fn reply(status: u16, body: Value) -> Reply {
    Reply { status, body }
}

fn error(status: u16, message: impl Into<String>) -> Reply {
    reply(status, json!({"error": message.into()}))
}

fn parse_query(query: &str, allowed: &[&str]) -> Result<BTreeMap<String, String>, Reply> {
    let mut out = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k);
        if !allowed.contains(&k.as_str()) {
            return Err(error(
                400,
                format!("unknown query parameter; allowed: {}", allowed.join(", ")),
            ));
        }
        out.insert(
            k,
            apitap_labels::facts::percent_decode(v, true).into_owned(),
        );
    }
    Ok(out)
}

fn number<T: std::str::FromStr>(
    q: &BTreeMap<String, String>,
    name: &str,
) -> Result<Option<T>, Reply> {
    q.get(name)
        .map(|v| {
            v.parse()
                .map_err(|_| error(400, format!("`{name}` must be a number")))
        })
        .transpose()
}

/// `limit` (default `default`, capped at [`MAX_LIMIT`]) and `offset` (default 0) of `q`.
fn page(q: &BTreeMap<String, String>, default: u64) -> Result<(u64, u64), Reply> {
    let limit = number::<u64>(q, "limit")?.unwrap_or(default).min(MAX_LIMIT);
    let offset = number::<u64>(q, "offset")?.unwrap_or(0);
    Ok((limit, offset))
}

const ENDPOINT_PARAMS: [&str; 13] = [
    "service",
    "method",
    "template",
    "lifecycle",
    "style",
    "auth",
    "spec_status",
    "exposure",
    "label",
    "sensitivity",
    "min_sensitivity",
    "limit",
    "offset",
];

/// `label`, `sensitivity` and `min_sensitivity` name closed lists: an unknown value is a
/// client error naming the parameter, not an empty answer that looks like "no such data".
fn check_data_filters(q: &BTreeMap<String, String>) -> Result<(), Reply> {
    if let Some(l) = q.get("label")
        && apitap_labels::Label::from_name(l).is_none()
    {
        return Err(error(400, "unknown data label in `label`"));
    }
    for name in ["sensitivity", "min_sensitivity"] {
        if let Some(v) = q.get(name) {
            let ok = crate::sensitive::LEVELS.contains(&v.as_str())
                || (name == "sensitivity" && v == crate::sensitive::UNKNOWN);
            if !ok {
                return Err(error(
                    400,
                    format!("`{name}` must be one of none, low, medium, high"),
                ));
            }
        }
    }
    Ok(())
}
const CHANGE_PARAMS: [&str; 5] = ["after_seq", "since_unix_us", "endpoint_id", "kind", "limit"];
const ENDPOINT_CHANGE_PARAMS: [&str; 2] = ["after_seq", "limit"];
const PAGE_PARAMS: [&str; 2] = ["limit", "offset"];

/// Answers one `GET` for `target` (path and query, as sent) from `store`.
pub fn handle(store: &mut dyn Store, method: &str, target: &str) -> Reply {
    if method != "GET" && method != "HEAD" {
        return error(405, "only GET is supported");
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let result = match parts.as_slice() {
        ["healthz"] => return reply(200, json!("ok")),
        ["v1", "endpoints"] => endpoints(store, query),
        ["v1", "endpoints", id] => match store.endpoint(id) {
            Ok(Some(r)) => Ok(reply(200, serde_json::to_value(r).unwrap_or(Value::Null))),
            Ok(None) => Ok(error(404, "no such endpoint")),
            Err(e) => Err(e),
        },
        ["v1", "endpoints", id, "changes"] => endpoint_changes(store, id, query),
        ["v1", "changes"] => changes(store, query),
        ["v1", "services"] => services(store, query),
        ["v1", "openapi", service] => service_openapi(store, &percent_decode(service), query),
        _ => return error(404, "no such route"),
    };
    result.unwrap_or_else(|e| {
        // The cause stays in the server's log: store errors name files, tables and records
        // (issue 22, R-OPS-3).
        tracing::warn!(error = %crate::text::error_chain(&e), "inventory API query failed");
        error(500, "internal error")
    })
}

fn endpoints(store: &mut dyn Store, query: &str) -> Result<Reply, super::StoreError> {
    let q = match parse_query(query, &ENDPOINT_PARAMS) {
        Ok(q) => q,
        Err(r) => return Ok(r),
    };
    let (limit, offset) = match page(&q, DEFAULT_LIMIT) {
        Ok(p) => p,
        Err(r) => return Ok(r),
    };
    if let Err(r) = check_data_filters(&q) {
        return Ok(r);
    }
    let filter = EndpointFilter {
        service: q.get("service").cloned(),
        method: q.get("method").cloned(),
        template: q.get("template").cloned(),
        lifecycle: q.get("lifecycle").cloned(),
        style: q.get("style").cloned(),
        auth: q.get("auth").cloned(),
        spec_status: q.get("spec_status").cloned(),
        exposure: q.get("exposure").cloned(),
        label: q.get("label").cloned(),
        sensitivity: q.get("sensitivity").cloned(),
        min_sensitivity: q.get("min_sensitivity").cloned(),
        limit: Some(limit),
        offset: Some(offset),
    };
    let rows: Vec<EndpointSummary> = store
        .endpoints(&filter)?
        .iter()
        .map(|r| r.summary())
        .collect();
    Ok(reply(
        200,
        serde_json::to_value(rows).unwrap_or(Value::Null),
    ))
}

fn changes(store: &mut dyn Store, query: &str) -> Result<Reply, super::StoreError> {
    let q = match parse_query(query, &CHANGE_PARAMS) {
        Ok(q) => q,
        Err(r) => return Ok(r),
    };
    let parsed = (
        number::<i64>(&q, "after_seq"),
        number::<u64>(&q, "since_unix_us"),
        number::<u64>(&q, "limit"),
    );
    let (after_seq, since, limit) = match parsed {
        (Ok(a), Ok(s), Ok(l)) => (a, s, l),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return Ok(r),
    };
    let filter = ChangeFilter {
        after_seq,
        since_unix_us: since,
        endpoint_id: q.get("endpoint_id").cloned(),
        kind: q.get("kind").cloned(),
        limit: Some(limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT)),
    };
    Ok(reply(
        200,
        serde_json::to_value(store.changes(&filter)?).unwrap_or(Value::Null),
    ))
}

fn endpoint_changes(
    store: &mut dyn Store,
    id: &str,
    query: &str,
) -> Result<Reply, super::StoreError> {
    let q = match parse_query(query, &ENDPOINT_CHANGE_PARAMS) {
        Ok(q) => q,
        Err(r) => return Ok(r),
    };
    let (after_seq, limit) = match (number::<i64>(&q, "after_seq"), number::<u64>(&q, "limit")) {
        (Ok(a), Ok(l)) => (a, l),
        (Err(r), _) | (_, Err(r)) => return Ok(r),
    };
    let filter = ChangeFilter {
        after_seq,
        endpoint_id: Some(id.to_owned()),
        limit: Some(limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT)),
        ..ChangeFilter::default()
    };
    Ok(reply(
        200,
        serde_json::to_value(store.changes(&filter)?).unwrap_or(Value::Null),
    ))
}

fn services(store: &mut dyn Store, query: &str) -> Result<Reply, super::StoreError> {
    let (limit, offset) =
        match parse_query(query, &PAGE_PARAMS).and_then(|q| page(&q, DEFAULT_LIMIT)) {
            Ok(p) => p,
            Err(r) => return Ok(r),
        };
    // Counted by the database (issue 22): reading every record to count them let one
    // request cost a full scan and deserialisation of the inventory.
    let rows = store.services(limit, offset)?;
    Ok(reply(
        200,
        serde_json::to_value(rows).unwrap_or(Value::Null),
    ))
}

fn service_openapi(
    store: &mut dyn Store,
    service: &str,
    query: &str,
) -> Result<Reply, super::StoreError> {
    let (limit, offset) = match parse_query(query, &PAGE_PARAMS).and_then(|q| page(&q, MAX_LIMIT)) {
        Ok(p) => p,
        Err(r) => return Ok(r),
    };
    let recs = store.endpoints(&EndpointFilter {
        service: Some(service.to_owned()),
        ..EndpointFilter::default()
    })?;
    if recs.is_empty() {
        return Ok(error(404, "no such service"));
    }
    let mut doc = openapi::service_document(service, &recs);
    page_paths(&mut doc, limit, offset);
    Ok(reply(200, doc))
}

/// Keeps `limit` paths of `doc` from `offset` (in path order), and says in
/// `x-apitap-truncated` where the next page starts when paths are left over.
fn page_paths(doc: &mut Value, limit: u64, offset: u64) {
    let Some(Value::Object(paths)) = doc.get_mut("paths") else {
        return;
    };
    let mut all: Vec<(String, Value)> = std::mem::take(paths).into_iter().collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let total = all.len() as u64;
    let kept: Map<String, Value> = all
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .collect();
    let next = offset.saturating_add(kept.len() as u64);
    *paths = kept;
    if next < total {
        doc["x-apitap-truncated"] = json!({
            "total_paths": total,
            "offset": offset,
            "limit": limit,
            "next_offset": next,
        });
    }
}

impl From<Reply> for Response {
    /// A JSON string body of a `200` is sent as text, everything else as JSON.
    fn from(r: Reply) -> Response {
        match r.body {
            Value::String(s) if r.status == 200 => Response::text(200, format!("{s}\n")),
            // The same escaping as the CLI exports: traffic-derived names may hold C1
            // controls that YAML-based consumers reject.
            v => Response::json(
                r.status,
                format!("{}\n", crate::text::portable(v.to_string())),
            ),
        }
    }
}

/// The store shared by the API's connections.
pub type SharedStore = Arc<Mutex<Box<dyn Store>>>;

/// The admin HTTP handler answering from `store`.
pub fn handler(store: SharedStore) -> Handler {
    Arc::new(move |req: &Request| {
        let mut guard = store.lock().unwrap_or_else(PoisonError::into_inner);
        handle(guard.as_mut(), &req.method, &req.target).into()
    })
}

/// Serves the API on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, store: SharedStore, options: Options) {
    apitap_admin_http::serve(listener, handler(store), options).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreError;
    use crate::record::{EndpointKey, EndpointRecord};
    use crate::spec::SpecStatus;
    use crate::store::sqlite::SqliteStore;

    fn record(service: &str, template: &str) -> EndpointRecord {
        let mut r = EndpointRecord::new(
            EndpointKey {
                service: service.into(),
                method: "GET".into(),
                template: template.into(),
                operation: String::new(),
            },
            SpecStatus::NoSpec,
            5,
        );
        r.data.hits = 2;
        r
    }

    fn store_of(records: &[EndpointRecord]) -> SqliteStore {
        let mut s = SqliteStore::open_in_memory().unwrap();
        s.transaction(&mut |tx| {
            for r in records {
                tx.put(r)?;
            }
            Ok(())
        })
        .unwrap();
        s
    }

    fn store() -> SqliteStore {
        store_of(&[record("api", "/users/{user_id}")])
    }

    /// A store whose every query fails with text that must stay on the server.
    struct FailingStore;

    fn failure() -> StoreError {
        StoreError::Corrupt {
            id: "secret-row-7".into(),
            reason: "table apitap_endpoints in /var/lib/secret/inventory.db".into(),
        }
    }

    impl Store for FailingStore {
        fn backend(&self) -> &'static str {
            "sqlite"
        }
        fn transaction(
            &mut self,
            _work: &mut (dyn FnMut(&mut dyn crate::store::Tx) -> Result<(), StoreError> + Send),
        ) -> Result<(), StoreError> {
            Err(failure())
        }
        fn endpoints(&mut self, _: &EndpointFilter) -> Result<Vec<EndpointRecord>, StoreError> {
            Err(failure())
        }
        fn endpoint(&mut self, _: &str) -> Result<Option<EndpointRecord>, StoreError> {
            Err(failure())
        }
        fn changes(&mut self, _: &ChangeFilter) -> Result<Vec<crate::record::Change>, StoreError> {
            Err(failure())
        }
        fn schema_version(&mut self) -> Result<i64, StoreError> {
            Err(failure())
        }
        fn services(
            &mut self,
            _: u64,
            _: u64,
        ) -> Result<Vec<crate::store::ServiceCounts>, StoreError> {
            Err(failure())
        }
    }

    /// Log lines written while `f` runs.
    fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let out = tracing::subscriber::with_default(sub, f);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        (out, text)
    }

    #[test]
    fn store_errors_are_logged_not_echoed() {
        let mut s = FailingStore;
        for target in [
            "/v1/endpoints",
            "/v1/endpoints/abc",
            "/v1/endpoints/abc/changes",
            "/v1/changes",
            "/v1/services",
            "/v1/openapi/api",
        ] {
            let (r, log) = logged(|| handle(&mut s, "GET", target));
            assert_eq!(r.status, 500, "{target}");
            assert_eq!(r.body, json!({"error": "internal error"}), "{target}");
            let sent = String::from_utf8(Response::from(r).body).unwrap();
            assert!(!sent.contains("secret"), "{target}: {sent}");
            assert!(log.contains("secret-row-7"), "{target}: logged {log:?}");
        }
    }

    #[test]
    fn services_are_paged() {
        let recs: Vec<EndpointRecord> = ["c", "a", "b"]
            .iter()
            .flat_map(|s| [record(s, "/x"), record(s, "/y")])
            .collect();
        let mut s = store_of(&recs);
        let names = |r: &Reply| -> Vec<String> {
            r.body
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["service"].as_str().unwrap().to_owned())
                .collect()
        };
        let all = handle(&mut s, "GET", "/v1/services");
        assert_eq!(names(&all), ["a", "b", "c"]);
        assert_eq!(all.body[0]["endpoints"], 2);
        let first = handle(&mut s, "GET", "/v1/services?limit=2");
        assert_eq!(names(&first), ["a", "b"]);
        let rest = handle(&mut s, "GET", "/v1/services?limit=2&offset=2");
        assert_eq!(names(&rest), ["c"]);
        assert_eq!(handle(&mut s, "GET", "/v1/services?limit=x").status, 400);
        assert_eq!(handle(&mut s, "GET", "/v1/services?bogus=1").status, 400);
        let q = parse_query("limit=5000", &PAGE_PARAMS).unwrap();
        assert_eq!(page(&q, DEFAULT_LIMIT).unwrap(), (MAX_LIMIT, 0));
        let q = parse_query("", &PAGE_PARAMS).unwrap();
        assert_eq!(page(&q, DEFAULT_LIMIT).unwrap(), (DEFAULT_LIMIT, 0));
    }

    #[test]
    fn endpoints_filter_by_data_label_and_sensitivity() {
        use apitap_labels::{Classification, Direction, EventLabels, FunctionClass, Label, Part};
        let labelled = |template: &str, label: Option<Label>, s: Sensitivity| {
            let mut r = record("api", template);
            let findings = label
                .map(|l| {
                    crate::sensitive::finding(
                        l,
                        Direction::Response,
                        Part::JsonPath,
                        "$.id_card",
                        1,
                        None,
                    )
                })
                .into_iter()
                .collect();
            r.data.sensitive.record(
                &EventLabels {
                    findings,
                    ..EventLabels::default()
                },
                &Classification {
                    function: FunctionClass::QueryById,
                    sensitivity: s,
                },
            );
            r.refresh_sensitive();
            r
        };
        use apitap_labels::Sensitivity;
        let mut s = store_of(&[
            labelled("/customers/{id}", Some(Label::PrcId), Sensitivity::High),
            labelled("/orders/{id}", Some(Label::Email), Sensitivity::Medium),
            labelled("/health", None, Sensitivity::None),
            record("api", "/never-labelled"),
        ]);
        let templates = |s: &mut SqliteStore, q: &str| -> Vec<String> {
            let r = handle(s, "GET", &format!("/v1/endpoints?{q}"));
            assert_eq!(r.status, 200, "{q}: {}", r.body);
            r.body
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["template"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(templates(&mut s, "label=prc_id"), ["/customers/{id}"]);
        assert_eq!(
            templates(&mut s, "min_sensitivity=medium"),
            ["/customers/{id}", "/orders/{id}"]
        );
        assert_eq!(templates(&mut s, "sensitivity=none"), ["/health"]);
        assert_eq!(
            templates(&mut s, "sensitivity=unknown"),
            ["/never-labelled"]
        );
        assert!(templates(&mut s, "label=email&sensitivity=high").is_empty());
        // The data map rides along: which field carries the label, and in clear.
        let r = handle(&mut s, "GET", "/v1/endpoints?label=prc_id");
        let row = &r.body[0]["data_labels"][0];
        assert_eq!(row["field"], "$.id_card", "{row}");
        assert_eq!(row["masked"], "unmasked", "{row}");
        for bad in [
            "label=card_number_ish",
            "min_sensitivity=urgent",
            "sensitivity=5",
        ] {
            let r = handle(&mut s, "GET", &format!("/v1/endpoints?{bad}"));
            assert_eq!(r.status, 400, "{bad}");
            let name = bad.split('=').next().unwrap();
            assert!(
                r.body["error"].as_str().unwrap().contains(name),
                "{bad}: {}",
                r.body
            );
        }
    }

    #[test]
    fn endpoint_lists_default_to_a_page() {
        let recs: Vec<EndpointRecord> = (0..DEFAULT_LIMIT + 5)
            .map(|i| record("api", &format!("/p{i:04}")))
            .collect();
        let mut s = store_of(&recs);
        let list = handle(&mut s, "GET", "/v1/endpoints");
        assert_eq!(list.body.as_array().unwrap().len() as u64, DEFAULT_LIMIT);
        let rest = handle(
            &mut s,
            "GET",
            &format!("/v1/endpoints?offset={DEFAULT_LIMIT}"),
        );
        assert_eq!(rest.body.as_array().unwrap().len(), 5);
        let all = handle(&mut s, "GET", "/v1/endpoints?limit=100000");
        assert_eq!(all.body.as_array().unwrap().len() as u64, DEFAULT_LIMIT + 5);
    }

    #[test]
    fn openapi_paths_are_paged_and_truncation_is_said() {
        let recs: Vec<EndpointRecord> = ["/c", "/a", "/b"]
            .iter()
            .map(|t| record("api", t))
            .collect();
        let mut s = store_of(&recs);
        let paths = |r: &Reply| -> Vec<String> {
            r.body["paths"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect()
        };
        let whole = handle(&mut s, "GET", "/v1/openapi/api");
        assert_eq!(paths(&whole), ["/a", "/b", "/c"]);
        assert!(whole.body.get("x-apitap-truncated").is_none());
        let first = handle(&mut s, "GET", "/v1/openapi/api?limit=2");
        assert_eq!(paths(&first), ["/a", "/b"]);
        assert_eq!(
            first.body["x-apitap-truncated"],
            json!({"total_paths": 3, "offset": 0, "limit": 2, "next_offset": 2})
        );
        let rest = handle(&mut s, "GET", "/v1/openapi/api?limit=2&offset=2");
        assert_eq!(paths(&rest), ["/c"]);
        assert!(rest.body.get("x-apitap-truncated").is_none());
        assert_eq!(rest.body["openapi"], "3.1.0");
        assert_eq!(handle(&mut s, "GET", "/v1/openapi/api?x=1").status, 400);
    }

    #[test]
    fn replies_become_text_or_json() {
        let r = Response::from(reply(200, json!("ok")));
        assert_eq!(
            (r.status, r.content_type),
            (200, "text/plain; charset=utf-8")
        );
        assert_eq!(r.body, b"ok\n");
        let r = Response::from(error(404, "no such route"));
        assert_eq!((r.status, r.content_type), (404, "application/json"));
        assert_eq!(r.body, b"{\"error\":\"no such route\"}\n");
    }

    #[test]
    fn routes() {
        let mut s = store();
        assert_eq!(handle(&mut s, "GET", "/healthz").status, 200);
        let list = handle(&mut s, "GET", "/v1/endpoints?service=api&method=get");
        assert_eq!(list.status, 200);
        let id = list.body[0]["id"].as_str().unwrap().to_owned();
        assert_eq!(list.body[0]["template"], "/users/{user_id}");
        assert_eq!(
            handle(&mut s, "GET", "/v1/endpoints?template=%7Buser").body[0]["id"],
            json!(id)
        );
        assert_eq!(
            handle(&mut s, "GET", "/v1/endpoints?service=nope").body,
            json!([])
        );
        assert_eq!(
            handle(&mut s, "GET", &format!("/v1/endpoints/{id}")).body["id"],
            json!(id)
        );
        assert_eq!(handle(&mut s, "GET", "/v1/endpoints/ffff").status, 404);
        assert_eq!(handle(&mut s, "GET", "/v1/endpoints?bogus=1").status, 400);
        assert_eq!(handle(&mut s, "GET", "/v1/endpoints?limit=x").status, 400);
        assert_eq!(
            handle(&mut s, "GET", "/v1/changes?after_seq=0").body,
            json!([])
        );
        assert_eq!(
            handle(&mut s, "GET", "/v1/services").body[0]["endpoints"],
            1
        );
        let doc = handle(&mut s, "GET", "/v1/openapi/api");
        assert_eq!(doc.body["openapi"], "3.1.0");
        assert_eq!(handle(&mut s, "GET", "/v1/openapi/none").status, 404);
        assert_eq!(handle(&mut s, "POST", "/v1/endpoints").status, 405);
        assert_eq!(handle(&mut s, "GET", "/nope").status, 404);
    }
}
