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
//! | `/v1/endpoints/{id}/changes` | that endpoint's change log |
//! | `/v1/changes?after_seq=&since_unix_us=&endpoint_id=&kind=&limit=` | change log |
//! | `/v1/services` | services with endpoint counts |
//! | `/v1/openapi/{service}` | OpenAPI 3.1 document of a service |
//!
//! The server is deliberately small: one request per connection, request heads up to
//! [`MAX_HEAD_BYTES`], a read timeout, no request bodies. It has no authentication: bind it
//! to loopback or a management network (the inventory holds no raw values, but it is a map of
//! the APIs).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::openapi;
use super::record::{ChangeFilter, EndpointFilter, EndpointSummary};
use super::shape::percent_decode;
use super::store::Store;

/// Largest request head accepted.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Time allowed to send the request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

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
        out.insert(k, percent_decode(&v.replace('+', " ")));
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

const ENDPOINT_PARAMS: [&str; 10] = [
    "service",
    "method",
    "template",
    "lifecycle",
    "style",
    "auth",
    "spec_status",
    "exposure",
    "limit",
    "offset",
];
const CHANGE_PARAMS: [&str; 5] = ["after_seq", "since_unix_us", "endpoint_id", "kind", "limit"];

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
        ["v1", "endpoints", id, "changes"] => store
            .changes(&ChangeFilter {
                endpoint_id: Some((*id).to_owned()),
                ..ChangeFilter::default()
            })
            .map(|c| reply(200, serde_json::to_value(c).unwrap_or(Value::Null))),
        ["v1", "changes"] => changes(store, query),
        ["v1", "services"] => services(store),
        ["v1", "openapi", service] => {
            let service = percent_decode(service);
            store
                .endpoints(&EndpointFilter {
                    service: Some(service.clone()),
                    ..EndpointFilter::default()
                })
                .map(|recs| {
                    if recs.is_empty() {
                        error(404, "no such service")
                    } else {
                        reply(200, openapi::service_document(&service, &recs))
                    }
                })
        }
        _ => return error(404, "no such route"),
    };
    result.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "inventory API query failed");
        error(500, format!("store error: {e}"))
    })
}

fn endpoints(store: &mut dyn Store, query: &str) -> Result<Reply, super::StoreError> {
    let q = match parse_query(query, &ENDPOINT_PARAMS) {
        Ok(q) => q,
        Err(r) => return Ok(r),
    };
    let (limit, offset) = match (number(&q, "limit"), number(&q, "offset")) {
        (Ok(l), Ok(o)) => (l, o),
        (Err(r), _) | (_, Err(r)) => return Ok(r),
    };
    let filter = EndpointFilter {
        service: q.get("service").cloned(),
        method: q.get("method").cloned(),
        template: q.get("template").cloned(),
        lifecycle: q.get("lifecycle").cloned(),
        style: q.get("style").cloned(),
        auth: q.get("auth").cloned(),
        spec_status: q.get("spec_status").cloned(),
        exposure: q.get("exposure").cloned(),
        limit: Some(limit.unwrap_or(1000).min(100_000)),
        offset,
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
        limit,
    };
    Ok(reply(
        200,
        serde_json::to_value(store.changes(&filter)?).unwrap_or(Value::Null),
    ))
}

fn services(store: &mut dyn Store) -> Result<Reply, super::StoreError> {
    let mut by: BTreeMap<String, (u64, u64, u64, u64)> = BTreeMap::new();
    for r in store.endpoints(&EndpointFilter::default())? {
        let e = by.entry(r.key.service.clone()).or_default();
        e.0 += 1;
        e.1 += r.data.hits;
        e.2 += u64::from(r.spec_status.is_shadow());
        e.3 += u64::from(r.spec_status.is_zombie_candidate());
    }
    let rows: Vec<Value> = by
        .into_iter()
        .map(|(s, (n, hits, shadow, zombie))| {
            json!({"service": s, "endpoints": n, "hits": hits, "shadow": shadow, "zombie_candidates": zombie})
        })
        .collect();
    Ok(reply(200, Value::Array(rows)))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        _ => "Internal Server Error",
    }
}

/// The store shared by the API's connections.
pub type SharedStore = Arc<Mutex<Box<dyn Store>>>;

/// Answers one request: `(method, target) -> reply`. Runs on a blocking thread (it may query
/// the store).
pub type Handler = Arc<dyn Fn(&str, &str) -> Reply + Send + Sync>;

async fn connection(mut stream: TcpStream, handler: Handler) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let head_end = loop {
        let n = match tokio::time::timeout(READ_TIMEOUT, stream.read(&mut chunk)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD_BYTES {
            return write_reply(&mut stream, &error(413, "request head too large"), false).await;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut words = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (
        words.next().unwrap_or_default().to_owned(),
        words.next().unwrap_or_default().to_owned(),
    );
    let is_head = method == "HEAD";
    let reply = tokio::task::spawn_blocking(move || handler(&method, &target))
        .await
        .unwrap_or_else(|_| error(500, "query task failed"));
    write_reply(&mut stream, &reply, is_head).await
}

async fn write_reply(
    stream: &mut TcpStream,
    reply: &Reply,
    head_only: bool,
) -> std::io::Result<()> {
    let body = match &reply.body {
        Value::String(s) if reply.status == 200 => format!("{s}\n"),
        v => format!("{v}\n"),
    };
    let content_type = if matches!(reply.body, Value::String(_)) && reply.status == 200 {
        "text/plain; charset=utf-8"
    } else {
        "application/json"
    };
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.status,
        reason(reply.status),
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

/// Serves the API on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, store: SharedStore) {
    let handler: Handler = Arc::new(move |method: &str, target: &str| {
        let mut guard = store.lock().unwrap_or_else(PoisonError::into_inner);
        handle(guard.as_mut(), method, target)
    });
    serve_with(listener, handler, "inventory API").await;
}

/// Serves `handler` on `listener` (one small request per connection, see the module docs)
/// until the task is dropped; `what` names the server in logs.
pub async fn serve_with(listener: TcpListener, handler: Handler, what: &'static str) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, server = what, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handler = Arc::clone(&handler);
        tokio::spawn(async move {
            if let Err(e) = connection(stream, handler).await {
                tracing::debug!(error = %e, server = what, "connection failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::record::{EndpointKey, EndpointRecord};
    use crate::inventory::spec::SpecStatus;
    use crate::inventory::store::sqlite::SqliteStore;

    fn store() -> SqliteStore {
        let mut s = SqliteStore::open_in_memory().unwrap();
        let mut r = EndpointRecord::new(
            EndpointKey {
                service: "api".into(),
                method: "GET".into(),
                template: "/users/{user_id}".into(),
                operation: String::new(),
            },
            SpecStatus::NoSpec,
            5,
        );
        r.data.hits = 2;
        s.transaction(&mut |tx| tx.put(&r)).unwrap();
        s
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
