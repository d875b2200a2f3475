//! API style and operation of a request: REST, GraphQL, JSON-RPC, SOAP, gRPC, WebSocket.

use super::*;
use apitap_labels::json::JsonType;

/// API style and operation of a request (R-INV-2): GraphQL by operation, JSON-RPC by method,
/// SOAP by action or body element, gRPC by content type, WebSocket by upgrade; else REST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StyleInfo {
    /// `rest`, `graphql`, `json_rpc`, `soap`, `grpc`, `websocket`.
    pub style: &'static str,
    /// Operation name for GraphQL (`query GetUser`), JSON-RPC (`method`), SOAP (action) and
    /// gRPC (`service/method`, from the sensor's HTTP/2 decoding); empty otherwise.
    pub operation: String,
}

/// Longest operation name kept.
pub(crate) const MAX_OPERATION_CHARS: usize = 64;

pub(crate) fn clean_operation(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ' ' | '/' | ':'))
        .take(MAX_OPERATION_CHARS)
        .collect()
}

/// Detects the style of `event`.
pub fn style_of(event: &ApiEvent) -> StyleInfo {
    style_with(&EventFacts::new(
        event,
        apitap_labels::facts::DEFAULT_MAX_DECODED_BYTES,
    ))
}

/// [`style_of`] from the event's shared facts: the header scan, and the request body as
/// bytes (base64 and content coding removed) when the content type calls for reading it.
pub fn style_with(facts: &EventFacts<'_>) -> StyleInfo {
    let event = facts.event;
    let scan = facts.request_headers();
    let req = &event.request;
    let rest = |style| StyleInfo {
        style,
        operation: String::new(),
    };
    if scan.upgrade_websocket || event.response.as_ref().is_some_and(|r| r.status == 101) {
        return rest("websocket");
    }
    // gRPC: the sensor's decoded call names the operation, `service/method` (issue 17).
    if let Some(g) = &event.grpc
        && !g.service.is_empty()
    {
        return StyleInfo {
            style: "grpc",
            operation: clean_operation(&format!("{}/{}", g.service, g.method)),
        };
    }
    let ct = scan.content_type.map(media_type).unwrap_or_default();
    if ct.starts_with("application/grpc") {
        return rest("grpc");
    }
    if let Some(action) = scan.soap_action {
        let action = action.trim_matches('"');
        let op = action.rsplit(['/', '#']).next().unwrap_or(action);
        return StyleInfo {
            style: "soap",
            operation: clean_operation(op),
        };
    }
    let path_graphql = contains_ignore_case(&req.path, "graphql");
    if ct == "application/graphql" {
        let text = String::from_utf8_lossy(req.body.data.as_bytes());
        return StyleInfo {
            style: "graphql",
            operation: graphql_operation(None, &text),
        };
    }
    if path_graphql
        && req.method.eq_ignore_ascii_case("GET")
        && let Some(q) = &req.query
    {
        let mut name = None;
        let mut query = None;
        for (k, v) in query_pairs(q) {
            match k {
                "operationName" => name = Some(percent_decode(v, true).into_owned()),
                "query" => query = Some(percent_decode(v, true).into_owned()),
                _ => {}
            }
        }
        if let Some(query) = query {
            return StyleInfo {
                style: "graphql",
                operation: graphql_operation(name.as_deref(), &query),
            };
        }
    }
    let kind = body_kind(&ct);
    let readable = matches!(kind, Some("json" | "xml")) || ct == "application/soap+xml";
    // Read (and decoded) only when the content type says it can name an operation.
    let body: &[u8] = if readable {
        facts.request_body().map_or(&[], |b| &b.bytes)
    } else {
        &[]
    };
    if kind == Some("json") {
        // JSON-RPC 2.0 and 1.0 calls, read once for every analysis (the event's facts).
        if let Some(m) = facts.rpc_method() {
            return StyleInfo {
                style: "json_rpc",
                operation: clean_operation(m),
            };
        }
        // The markers sit near the top of real requests: only the head is searched.
        let head = &body[..body.len().min(1024)];
        if memfind(head, b"\"query\"")
            && let Some(v) = facts.request_json().and_then(|d| d.root())
        {
            let first = match v.json_type() {
                JsonType::Array => v.items().next(),
                _ => Some(v),
            };
            if let Some(q) = first.and_then(|f| f.get("query")).and_then(|q| q.as_str()) {
                let trimmed = q.trim_start();
                let gql = path_graphql
                    || trimmed.starts_with('{')
                    || ["query", "mutation", "subscription", "fragment"]
                        .iter()
                        .any(|k| trimmed.starts_with(k));
                if gql {
                    let name = first
                        .and_then(|f| f.get("operationName"))
                        .and_then(|n| n.as_str());
                    return StyleInfo {
                        style: "graphql",
                        operation: graphql_operation(name.as_deref(), &q),
                    };
                }
            }
        }
    }
    if kind == Some("xml") || ct == "application/soap+xml" {
        let head: String = String::from_utf8_lossy(&body[..body.len().min(8192)])
            .chars()
            .take(2048)
            .collect();
        if let Some(op) = soap_operation(&head) {
            return StyleInfo {
                style: "soap",
                operation: clean_operation(&op),
            };
        }
    }
    rest("rest")
}

pub(crate) fn memfind(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

pub(crate) fn contains_ignore_case(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    let Some(&first) = n.first() else {
        return true;
    };
    if h.len() < n.len() {
        return false;
    }
    let first = first.to_ascii_lowercase();
    (0..=h.len() - n.len())
        .any(|i| h[i].to_ascii_lowercase() == first && h[i..i + n.len()].eq_ignore_ascii_case(n))
}

/// `query GetUser` from an operation name or the query text.
pub(crate) fn graphql_operation(name: Option<&str>, query: &str) -> String {
    let trimmed = query.trim_start();
    let kind = ["mutation", "subscription", "query"]
        .into_iter()
        .find(|k| trimmed.starts_with(k))
        .unwrap_or("query");
    let parsed = trimmed
        .strip_prefix(kind)
        .map(|rest| {
            rest.trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|n| !n.is_empty());
    let name = name.map(str::to_owned).or(parsed);
    match name {
        Some(n) => clean_operation(&format!("{kind} {n}")),
        None => format!("{kind} (anonymous)"),
    }
}

/// The first element inside a SOAP `Body`, when the document is a SOAP envelope.
pub(crate) fn soap_operation(xml: &str) -> Option<String> {
    let mut names = Vec::new();
    let mut rest = xml;
    while let Some(lt) = rest.find('<') {
        rest = &rest[lt + 1..];
        let gt = rest.find('>')?;
        let tag = &rest[..gt];
        rest = &rest[gt + 1..];
        if tag.starts_with(['?', '!', '/']) {
            continue;
        }
        let name = tag.split_whitespace().next().unwrap_or_default();
        let local = name
            .rsplit(':')
            .next()
            .unwrap_or(name)
            .trim_end_matches('/');
        names.push(local.to_owned());
        if names.len() >= 4 {
            break;
        }
    }
    if names.first().map(String::as_str) != Some("Envelope") {
        return None;
    }
    let body = names.iter().position(|n| n == "Body")?;
    names.get(body + 1).cloned()
}
