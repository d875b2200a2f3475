//! Fallback endpoint templating and ID extraction, for when the analyzer's inventory has no
//! template for an event yet (degrade gracefully): numeric, UUID and long hex path segments
//! become `{id}`. The inventory's templates (R-INV-1) are preferred when given.
use std::borrow::Cow;

/// Is this path segment an object id (digits, UUID, ≥ 8 hex digits with a digit, or a long
/// mixed token)?
pub fn id_like(seg: &str) -> bool {
    let b = seg.as_bytes();
    if b.is_empty() || b.len() > 128 {
        return false;
    }
    if b.iter().all(u8::is_ascii_digit) {
        return true;
    }
    if b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
    {
        return true;
    }
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    if b.len() >= 8 && b.iter().all(u8::is_ascii_hexdigit) && digits > 0 {
        return true;
    }
    // Long opaque tokens (base64url ids) with letters and digits mixed.
    b.len() >= 20
        && digits >= 4
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
}

/// The template of a path: id-like segments replaced by `{id}`; the path itself (borrowed)
/// when nothing changes.
pub fn fallback_template(path: &str) -> Cow<'_, str> {
    if !path.split('/').any(id_like) {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(if id_like(seg) { "{id}" } else { seg });
    }
    Cow::Owned(out)
}

/// The pieces of `s` between slashes, as `s.split('/')` gives them, by a plain byte scan
/// (the generic `char` searcher cost more than the rest of the id extraction on short paths).
/// The separator is ASCII, so each piece is a valid `str` slice.
fn segments(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.bytes().position(|b| b == b'/') {
            Some(i) => {
                rest = Some(&r[i + 1..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// An object id taken from a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRef<'a> {
    /// The raw value (never stored or logged; hashed by the caller).
    pub raw: &'a str,
    /// Its numeric value, when it is a decimal number that fits.
    pub numeric: Option<u64>,
}

fn numeric(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Query parameter names that carry an object id.
fn id_param(name: &str) -> bool {
    let n = name.as_bytes();
    n.eq_ignore_ascii_case(b"id")
        || n.eq_ignore_ascii_case(b"uid")
        || (n.len() > 2
            && (n[n.len() - 2..].eq_ignore_ascii_case(b"id") && {
                let c = n[n.len() - 3];
                c == b'_' || c == b'-' || c.is_ascii_lowercase() && n[n.len() - 2] == b'I'
            }))
}

/// The object id of a request: the last path segment at a `{…}` position of `template` (or an
/// id-like segment when the template has none), else an id-like query parameter.
pub fn request_id<'a>(path: &'a str, template: &str, query: Option<&'a str>) -> Option<IdRef<'a>> {
    let mut found = None;
    let mut tsegs = segments(template);
    for (depth, seg) in segments(path).enumerate() {
        let param = tsegs
            .next()
            .is_some_and(|t| t.starts_with('{') && t.ends_with('}') && t != "{overflow}");
        // Objects live in collections (`/users/{id}`): the first segment (`/{x}`) is a route
        // or a file name, even a numeric one (`/2000`, `/123` in forced-browsing word lists).
        if depth <= 1 {
            continue;
        }
        if !seg.is_empty() && (param || id_like(seg)) {
            found = Some(seg);
        }
    }
    if let Some(raw) = found {
        return Some(IdRef {
            raw,
            numeric: numeric(raw),
        });
    }
    for pair in query?.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if !v.is_empty() && id_param(k) {
            return Some(IdRef {
                raw: v,
                numeric: numeric(v),
            });
        }
    }
    None
}

/// Pagination position of a request (`page`, `pageNo`, `offset`, `start`, `cursor`-less):
/// the numeric value, or None.
pub fn page_of(query: Option<&str>) -> Option<u64> {
    for pair in query?.split('&') {
        let (k, v) = pair.split_once('=')?;
        let k = k.as_bytes();
        let is_page = [
            &b"page"[..],
            b"pageno",
            b"page_no",
            b"pagenum",
            b"pageindex",
            b"offset",
            b"start",
            b"from",
            b"skip",
            b"p",
        ]
        .iter()
        .any(|n| k.eq_ignore_ascii_case(n));
        if is_page {
            return numeric(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_templates() {
        assert!(id_like("1024"));
        assert!(id_like("3f25b9c0-0c1d-4e6f-9a8b-0305e82c3301"));
        assert!(id_like("5f0c1e7a9b2d"));
        assert!(!id_like("users"));
        assert!(!id_like("v1"));
        assert!(!id_like("deadbeef")); // hex letters only: a word
        assert_eq!(
            fallback_template("/api/users/1024/orders/77"),
            "/api/users/{id}/orders/{id}"
        );
        assert!(matches!(fallback_template("/api/login"), Cow::Borrowed(_)));
        assert_eq!(fallback_template("/"), "/");
    }

    #[test]
    fn request_ids_from_template_path_or_query() {
        let id = request_id("/api/users/1024", "/api/users/{user_id}", None).unwrap();
        assert_eq!(id.raw, "1024");
        assert_eq!(id.numeric, Some(1024));
        // Inventory template with a word parameter.
        let id = request_id("/files/report-a", "/files/{name}", None).unwrap();
        assert_eq!(id.raw, "report-a");
        assert_eq!(id.numeric, None);
        // No template parameter: an id-like literal still counts (fallback).
        let id = request_id("/api/users/77", "/api/users/77", None).unwrap();
        assert_eq!(id.numeric, Some(77));
        // A root-level segment is a route or file name (forced browsing, gobuster), not an
        // object of a collection.
        assert!(request_id("/admin", "/{id}", None).is_none());
        assert!(request_id("/1024", "/{id}", None).is_none());
        let id = request_id("/api/orders", "/api/orders", Some("a=1&orderId=55")).unwrap();
        assert_eq!(id.numeric, Some(55));
        let id = request_id("/api/orders", "/api/orders", Some("user_id=abc")).unwrap();
        assert_eq!(id.raw, "abc");
        assert!(request_id("/api/orders", "/api/orders", Some("paid=1")).is_none());
        assert!(request_id("/api/login", "/api/login", None).is_none());
    }

    #[test]
    fn segments_split_like_str_split() {
        for s in [
            "",
            "/",
            "//",
            "/api/users/1",
            "api/",
            "/a//b/",
            "/é/ü/{id}",
            "x",
        ] {
            assert_eq!(
                segments(s).collect::<Vec<_>>(),
                s.split('/').collect::<Vec<_>>(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn pages() {
        assert_eq!(page_of(Some("q=x&page=3")), Some(3));
        assert_eq!(page_of(Some("offset=200&limit=50")), Some(200));
        assert_eq!(page_of(Some("q=x")), None);
        assert_eq!(page_of(None), None);
    }
}
