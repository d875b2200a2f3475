//! Links in responses, for the crawling detector's link-following signal (issue 14).
//!
//! A mirroring tool (wget `--mirror`, httrack) requests the links that earlier responses gave
//! it, breadth-first. [`for_each_link`] finds the links of one HTML or JSON response body —
//! `href=` / `src=` attribute values in HTML, string values that are absolute paths or
//! `http(s)://` URLs in JSON — and hands each one on resolved to a normalised path
//! (RFC 3986 §5.2: relative references against the request path, dot segments removed), with
//! its query and fragment dropped, since the detector compares links with request paths and
//! request paths are hashed without their query. Links to another host are skipped.
//!
//! Bounds (hostile bodies): at most [`SCAN_BYTES`] of the body are read, at most
//! [`MAX_LINKS`] links per body are handed on, a link value longer than [`MAX_LINK`] bytes is
//! skipped, an unclosed quote ends the scan; nothing allocates (the caller's fixed buffer
//! holds the resolved path). Raw link values never leave this module: the caller hashes the
//! path with the site key and keeps only the hash.

/// Body bytes scanned per response (the links of a page come early: navigation, lists).
pub(crate) const SCAN_BYTES: usize = 32 * 1024;
/// Links handed on per response (bounds the hashing per event; httpbin's
/// `/links/200/{n}` pages carry 200).
pub(crate) const MAX_LINKS: usize = 256;
/// Longest link value considered (and the resolved path buffer's size).
pub(crate) const MAX_LINK: usize = 1024;

/// What kind of body the links are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    /// HTML (or XHTML): `href` and `src` attribute values.
    Html,
    /// JSON: string values that are paths or URLs.
    Json,
}

impl BodyKind {
    /// From the response's `Content-Type` (`…html…`, `…json…`: `text/html`,
    /// `application/xhtml+xml`, `application/hal+json`, …): `Ok(Some(kind))`; `Ok(None)` for
    /// bodies without links worth reading (images, scripts, CSS, plain text); `Err(())`
    /// without a type (then [`BodyKind::sniff`] the decoded body).
    pub(crate) fn of_type(content_type: Option<&str>) -> Result<Option<BodyKind>, ()> {
        let Some(ct) = content_type.map(str::as_bytes) else {
            return Err(());
        };
        // The media type before its parameters (RFC 9110 §8.3.1), its subtype after `/`.
        let media = ct.split(|&c| c == b';').next().unwrap_or(ct);
        let media = media.trim_ascii();
        if media.is_empty() {
            return Err(());
        }
        let sub = media
            .iter()
            .position(|&c| c == b'/')
            .map_or(media, |i| &media[i + 1..]);
        let ends =
            |w: &[u8]| sub.len() >= w.len() && sub[sub.len() - w.len()..].eq_ignore_ascii_case(w);
        if ends(b"html") || sub.eq_ignore_ascii_case(b"xhtml+xml") {
            Ok(Some(BodyKind::Html))
        } else if ends(b"json") {
            // `json`, `hal+json`, `vnd.api+json`, `problem+json`, `x-ndjson`, …
            Ok(Some(BodyKind::Json))
        } else {
            Ok(None)
        }
    }

    /// By the first non-blank byte: `<` HTML, `{` / `[` JSON.
    pub(crate) fn sniff(body: &[u8]) -> Option<BodyKind> {
        match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'<') => Some(BodyKind::Html),
            Some(b'{' | b'[') => Some(BodyKind::Json),
            _ => None,
        }
    }

    /// [`BodyKind::of_type`], sniffing `body` when there is no type.
    #[cfg(test)]
    fn of(content_type: Option<&str>, body: &[u8]) -> Option<BodyKind> {
        BodyKind::of_type(content_type).unwrap_or_else(|()| BodyKind::sniff(body))
    }
}

/// A path of at most [`MAX_LINK`] bytes in a fixed buffer (no allocation per link).
struct PathBuf {
    buf: [u8; MAX_LINK],
    len: usize,
}

impl Default for PathBuf {
    fn default() -> Self {
        PathBuf {
            buf: [0; MAX_LINK],
            len: 0,
        }
    }
}

impl PathBuf {
    fn clear(&mut self) {
        self.len = 0;
    }
    /// False when full (the link is then too long and skipped).
    fn push(&mut self, b: u8) -> bool {
        match self.buf.get_mut(self.len) {
            Some(slot) => {
                *slot = b;
                self.len += 1;
                true
            }
            None => false,
        }
    }
    fn extend(&mut self, s: &[u8]) -> bool {
        s.iter().all(|&c| self.push(c))
    }
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
    /// Drops the last segment and its slash (`..`, RFC 3986 §5.2.4 step 2C).
    fn pop_segment(&mut self) {
        while self.len > 0 {
            self.len -= 1;
            if self.buf[self.len] == b'/' {
                break;
            }
        }
    }
}

/// Working buffers of the link scan, kept by the caller and reused for every link.
#[derive(Default)]
pub(crate) struct Scratch {
    clean: PathBuf,
    merged: PathBuf,
    out: PathBuf,
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scratch")
    }
}

/// Calls `each` with the resolved path of every link in `body` (of `kind`), served in answer
/// to a request for `base_path` on `host` (the request's `Host`, port ignored; `None` accepts
/// any host of absolute links). Returns the number of links handed on.
pub(crate) fn for_each_link(
    kind: BodyKind,
    body: &[u8],
    base_path: &str,
    host: Option<&str>,
    scratch: &mut Scratch,
    mut each: impl FnMut(&[u8]),
) -> usize {
    let body = &body[..body.len().min(SCAN_BYTES)];
    // Every link this reads has a slash (`/path`, `http://`, `href="a/b"`, `..`); most API
    // answers' first 32 KiB have none: one memchr decides.
    if kind == BodyKind::Json && memchr::memchr(b'/', body).is_none() {
        return 0;
    }
    let base = base_path.as_bytes();
    let host = host.map(|h| host_only(h.as_bytes()));
    let mut n = 0;
    let mut emit = |raw: &[u8], json: bool| -> bool {
        if let Some(p) = plain_path(raw) {
            // Already normalised: hashed as it stands, no copy.
            each(p);
            n += 1;
        } else if resolve(raw, json, base, host, scratch) {
            each(scratch.out.as_bytes());
            n += 1;
        }
        n < MAX_LINKS
    };
    match kind {
        BodyKind::Html => html_links(body, |v| emit(v, false)),
        BodyKind::Json => json_links(body, |v| emit(v, true)),
    }
    n
}

/// The resolved path of one link value `raw` (a `Location` header), as [`for_each_link`]
/// resolves the links of a body.
pub(crate) fn resolve_one<'s>(
    raw: &[u8],
    base_path: &str,
    host: Option<&str>,
    scratch: &'s mut Scratch,
) -> Option<&'s [u8]> {
    let host = host.map(|h| host_only(h.as_bytes()));
    (raw.len() <= MAX_LINK && resolve(raw, false, base_path.as_bytes(), host, scratch))
        .then(|| scratch.out.as_bytes())
}

/// `href` / `src` attribute values (quoted with `"` or `'`, or unquoted) in HTML; `each`
/// returns false to stop.
fn html_links(b: &[u8], mut each: impl FnMut(&[u8]) -> bool) {
    let mut from = 0;
    while let Some(off) = memchr::memchr(b'=', &b[from..]) {
        let eq = from + off;
        from = eq + 1;
        // The attribute name before `=` (spaces allowed around `=`, HTML §13.2.5.33).
        let mut e = eq;
        while e > 0 && b[e - 1].is_ascii_whitespace() {
            e -= 1;
        }
        let name_is = |n: &[u8]| {
            e >= n.len()
                && b[e - n.len()..e].eq_ignore_ascii_case(n)
                && (e == n.len()
                    || matches!(
                        b[e - n.len() - 1],
                        b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' | b'"' | b'\'' | b'-' | b'/'
                    ))
        };
        if !(name_is(b"href") || name_is(b"src")) {
            continue;
        }
        let mut s = eq + 1;
        while s < b.len() && b[s].is_ascii_whitespace() {
            s += 1;
        }
        let Some(&q) = b.get(s) else { return };
        let (start, end) = if q == b'"' || q == b'\'' {
            let window = &b[s + 1..b.len().min(s + 1 + MAX_LINK + 1)];
            match memchr::memchr(q, window) {
                Some(len) => (s + 1, s + 1 + len),
                // No closing quote within a link's length: skip this value; with no closing
                // quote before the end of the scanned bytes, nothing more can be read.
                None if window.len() <= MAX_LINK => return,
                None => {
                    from = s + 1;
                    continue;
                }
            }
        } else {
            let len = b[s..]
                .iter()
                .position(|c| c.is_ascii_whitespace() || *c == b'>')
                .unwrap_or(b.len() - s);
            (s, s + len)
        };
        from = end;
        if end - start <= MAX_LINK && !each(&b[start..end]) {
            return;
        }
    }
}

/// JSON string values (and member names) that start with `/` (or the JSON escape `\/`) or an
/// `http(s)://` scheme; `each` returns false to stop.
fn json_links(b: &[u8], mut each: impl FnMut(&[u8]) -> bool) {
    // Every quote in turn, from one searcher (issue 18: not a `memchr` call per quote).
    let mut quotes = memchr::memchr_iter(b'"', b);
    while let Some(open) = quotes.next() {
        // The closing quote: the next `"` not escaped by an odd run of backslashes.
        let close = loop {
            let Some(q) = quotes.next() else {
                return; // unclosed string: the scanned bytes end inside it
            };
            let slashes = b[open + 1..q]
                .iter()
                .rev()
                .take_while(|&&x| x == b'\\')
                .count();
            if slashes % 2 == 0 {
                break q;
            }
        };
        let v = &b[open + 1..close];
        let linky = v.starts_with(b"/")
            || v.starts_with(b"\\/")
            || starts_with_ignore_case(v, b"http://")
            || starts_with_ignore_case(v, b"https://")
            || starts_with_ignore_case(v, b"http:\\/\\/")
            || starts_with_ignore_case(v, b"https:\\/\\/");
        if linky && v.len() <= MAX_LINK && !each(v) {
            return;
        }
    }
}

fn starts_with_ignore_case(v: &[u8], p: &[u8]) -> bool {
    v.get(..p.len()).is_some_and(|s| s.eq_ignore_ascii_case(p))
}

/// The host of an authority (`user@host:port`), without user info or port.
fn host_only(a: &[u8]) -> &[u8] {
    let a = match memchr::memrchr(b'@', a) {
        Some(at) => &a[at + 1..],
        None => a,
    };
    if a.first() == Some(&b'[') {
        // An IPv6 literal: up to its closing bracket.
        return match memchr::memchr(b']', a) {
            Some(e) => &a[..=e],
            None => a,
        };
    }
    match memchr::memrchr(b':', a) {
        Some(c) => &a[..c],
        None => a,
    }
}

/// `raw` itself when it is an absolute path that resolving would not change (the common
/// `href="/a/b"`): up to its query or fragment, no dot segment, no byte that needs cleaning
/// (whitespace, controls, backslash).
fn plain_path(raw: &[u8]) -> Option<&[u8]> {
    if raw.first() != Some(&b'/') || raw.get(1) == Some(&b'/') {
        return None;
    }
    let end = raw
        .iter()
        .position(|&c| c == b'?' || c == b'#')
        .unwrap_or(raw.len());
    let p = &raw[..end];
    let clean = p.iter().all(|&c| c > b' ' && c != 0x7f && c != b'\\')
        && !memchr::memchr_iter(b'.', p).any(|i| p[i - 1] == b'/');
    clean.then_some(p)
}

/// Resolves the link `raw` (JSON-unescaped `\/` when `json`) against `base` into
/// `s.out`: true when it names a path on `host`. Query and fragment are dropped; `?…` alone
/// names the base path itself; a fragment alone, other schemes (`mailto:`, `javascript:`,
/// `data:`) and other hosts name nothing.
fn resolve(raw: &[u8], json: bool, base: &[u8], host: Option<&[u8]>, s: &mut Scratch) -> bool {
    // Unescape (JSON `\/`), drop whitespace (HTML allows it around and inside URLs, WHATWG
    // URL strips tabs and newlines), cut query and fragment.
    s.clean.clear();
    let mut cut_query = false;
    let mut i = 0;
    while i < raw.len() {
        let mut c = raw[i];
        if json && c == b'\\' {
            if raw.get(i + 1) != Some(&b'/') {
                return false; // other escapes do not occur in the paths worth matching
            }
            i += 1;
            c = b'/';
        }
        if c == b'?' || c == b'#' {
            cut_query = c == b'?';
            break;
        }
        if c < 0x20 || c == 0x7f {
            if !c.is_ascii_whitespace() {
                return false; // control bytes: not a URL (binary data)
            }
        } else if !s.clean.push(c) {
            return false;
        }
        i += 1;
    }
    let r = trim(s.clean.as_bytes());
    if r.is_empty() {
        if !cut_query {
            return false; // empty, or a fragment of this document
        }
        return remove_dot_segments(base, &mut s.out);
    }
    if let Some(rest) = scheme_rest(r) {
        // `scheme:` — only http(s) with an authority names a path here.
        return match rest.strip_prefix(b"//") {
            Some(auth_path) => authority_path(auth_path, host, &mut s.out),
            None => false,
        };
    }
    if let Some(auth_path) = r.strip_prefix(b"//") {
        return authority_path(auth_path, host, &mut s.out);
    }
    if r.first() == Some(&b'/') {
        return remove_dot_segments(r, &mut s.out);
    }
    // A relative path: the base's directory, then the reference (§5.2.3 merge).
    let dir: &[u8] = match memchr::memrchr(b'/', base) {
        Some(p) => &base[..=p],
        None => b"/",
    };
    s.merged.clear();
    if !(s.merged.extend(dir) && s.merged.extend(r)) {
        return false;
    }
    remove_dot_segments(s.merged.as_bytes(), &mut s.out)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !first.is_ascii_whitespace() {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !last.is_ascii_whitespace() {
            break;
        }
        s = rest;
    }
    s
}

/// After `scheme:` when `r` starts with a scheme (RFC 3986 §3.1); `None` for other
/// references. Schemes other than http and https give an empty rest (not a path here).
fn scheme_rest(r: &[u8]) -> Option<&[u8]> {
    let colon = r.iter().position(|&c| c == b':')?;
    let scheme = &r[..colon];
    let valid = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
    if !valid {
        return None; // `a:b` inside a relative path's first segment is not a scheme
    }
    if scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https") {
        Some(&r[colon + 1..])
    } else {
        Some(b"")
    }
}

/// `authority/path…` of an absolute link: the path when the authority's host is `host`.
fn authority_path(ap: &[u8], host: Option<&[u8]>, out: &mut PathBuf) -> bool {
    let slash = ap.iter().position(|&c| c == b'/').unwrap_or(ap.len());
    let (auth, path) = ap.split_at(slash);
    if let Some(h) = host
        && !host_only(auth).eq_ignore_ascii_case(h)
    {
        return false; // another site's page
    }
    let path: &[u8] = if path.is_empty() { b"/" } else { path };
    remove_dot_segments(path, out)
}

/// RFC 3986 §5.2.4 on an absolute path, into `out`.
fn remove_dot_segments(path: &[u8], out: &mut PathBuf) -> bool {
    out.clear();
    if path.len() > MAX_LINK {
        return false;
    }
    let mut segs = path.split(|&c| c == b'/').peekable();
    // An absolute path's first piece is the empty one before its leading slash.
    segs.next();
    while let Some(seg) = segs.next() {
        let last = segs.peek().is_none();
        match seg {
            b"." => {
                if last && !out.push(b'/') {
                    return false;
                }
            }
            b".." => {
                out.pop_segment();
                if last && !out.push(b'/') {
                    return false;
                }
            }
            s => {
                if !out.push(b'/') {
                    return false;
                }
                for &c in s {
                    if !out.push(c) {
                        return false;
                    }
                }
            }
        }
    }
    if out.len == 0 {
        return out.push(b'/');
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(kind: BodyKind, body: &[u8], base: &str, host: Option<&str>) -> Vec<String> {
        let mut scratch = Scratch::default();
        let mut v = Vec::new();
        for_each_link(kind, body, base, host, &mut scratch, |p| {
            v.push(String::from_utf8_lossy(p).into_owned())
        });
        v
    }

    fn html(body: &str, base: &str) -> Vec<String> {
        links(
            BodyKind::Html,
            body.as_bytes(),
            base,
            Some("shop.example.com"),
        )
    }

    #[test]
    fn html_absolute_relative_and_dot_segments_resolve_against_the_request_path() {
        let body = r#"<a href="/docs/intro">x</a> <a href='page2.html'>y</a>
            <A HREF=../up/one>z</A> <img src="./img/logo.png"> <a href="sub/">s</a>
            <a href="../../../../above">a</a> <a href = " /spaced ">b</a>
            <a href="https://shop.example.com:443/abs?q=1#f">c</a> <a href="//shop.example.com">d</a>"#;
        assert_eq!(
            html(body, "/catalog/list/index.html"),
            [
                "/docs/intro",
                "/catalog/list/page2.html",
                "/catalog/up/one",
                "/catalog/list/img/logo.png",
                "/catalog/list/sub/",
                "/above",
                "/spaced",
                "/abs",
                "/",
            ]
        );
    }

    #[test]
    fn httpbin_links_page_gives_every_link() {
        let mut body = String::from("<html><head><title>Links</title></head><body>0 ");
        for i in 1..200 {
            body.push_str(&format!("<a href='/links/200/{i}'>{i}</a> "));
        }
        let got = html(&body, "/links/200/0");
        assert_eq!(got.len(), 199);
        assert_eq!(got[0], "/links/200/1");
        assert_eq!(got[198], "/links/200/199");
    }

    #[test]
    fn fragments_queries_other_schemes_and_hosts() {
        let body = r##"<a href="#top">t</a> <a href="?page=2">p</a> <a href="/a/b?x=1&amp;y=2">q</a>
            <a href="/c#sec">f</a> <a href="mailto:a@b.c">m</a> <a href="javascript:void(0)">j</a>
            <img src="data:image/png;base64,AAAA"> <a href="https://evil.example.net/x">e</a>
            <a href="tel:+100">t</a> <a href="">empty</a> <a href="HTTP://SHOP.EXAMPLE.COM/Up">u</a>"##;
        assert_eq!(
            html(body, "/list"),
            ["/list", "/a/b", "/c", "/Up"],
            "query-only names the base; fragments, other schemes and hosts name nothing"
        );
        // Without a known host every http(s) link's path counts.
        let any = links(BodyKind::Html, body.as_bytes(), "/list", None);
        assert!(any.contains(&"/x".to_owned()), "{any:?}");
    }

    #[test]
    fn attribute_names_must_be_href_or_src() {
        let body = r#"<a data-href="/no-prefix-match-ok" xhref="/not" hrefx="/not2">
            <img data-src="/lazy.png"> <p>a=b href</p> <form action="/post">"#;
        // `data-href` / `data-src` are lazily loaded links (counted); `xhref` is not `href`.
        assert_eq!(html(body, "/"), ["/no-prefix-match-ok", "/lazy.png"]);
    }

    #[test]
    fn json_paths_urls_and_escaped_slashes() {
        let body = br#"{"_links":{"self":{"href":"/api/orders/7"},"next":{"href":"/api/orders?page=2"}},
            "customer":"https:\/\/shop.example.com\/api\/customers\/3","name":"/not \"a\" path/../x",
            "esc":"he said \"/quoted\"","rel":"orders/8","other":"https://cdn.example.org/a.png",
            "weird":"\/api\/u\u0041"}"#;
        assert_eq!(
            links(
                BodyKind::Json,
                body,
                "/api/orders",
                Some("shop.example.com:8443")
            ),
            [
                "/api/orders/7",
                "/api/orders",
                // `\/` unescaped; other escapes (`\"`, `\u0041`) make a value no link.
                "/api/customers/3",
            ]
        );
    }

    #[test]
    fn hostile_bodies_are_bounded() {
        // No closing quote: the scan ends, nothing is reported, no panic.
        assert!(html("<a href=\"/never-closed", "/").is_empty());
        assert!(links(BodyKind::Json, b"{\"a\":\"/never", "/", None).is_empty());
        // A value longer than a link is skipped, the next one still read.
        let long = format!("<a href=\"/{}\">x</a><a href=\"/ok\">", "a".repeat(5_000));
        assert_eq!(html(&long, "/"), ["/ok"]);
        // Huge bodies: only the first SCAN_BYTES are read, at most MAX_LINKS reported.
        let mut huge = String::new();
        while huge.len() < 4 * SCAN_BYTES {
            huge.push_str("<a href=\"/p\">x</a>");
        }
        let got = html(&huge, "/");
        assert_eq!(got.len(), MAX_LINKS);
        let late = format!("{}<a href=\"/late\">", " ".repeat(SCAN_BYTES));
        assert!(html(&late, "/").is_empty());
        // Binary: control bytes are not URLs; arbitrary bytes do not panic.
        assert!(html("<a href=\"/a\u{1}b\">", "/").is_empty());
        let mut noise = Vec::new();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            noise.push(match x % 7 {
                0 => b'=',
                1 => b'"',
                2 => b'\'',
                3 => b'/',
                4 => b'\\',
                _ => (x >> 8) as u8,
            });
        }
        for kind in [BodyKind::Html, BodyKind::Json] {
            let mut scratch = Scratch::default();
            let n = for_each_link(kind, &noise, "/a/b", Some("h"), &mut scratch, |p| {
                assert!(p.starts_with(b"/") && p.len() <= MAX_LINK);
            });
            assert!(n <= MAX_LINKS);
        }
        // A resolved path longer than the buffer is skipped, not truncated.
        let deep = format!("<a href=\"{}\">", "x/".repeat(400));
        assert!(html(&deep, &format!("/{}", "y/".repeat(400))).is_empty());
    }

    #[test]
    fn body_kinds() {
        assert_eq!(
            BodyKind::of(Some("text/html; charset=utf-8"), b""),
            Some(BodyKind::Html)
        );
        assert_eq!(
            BodyKind::of(Some("application/hal+json"), b""),
            Some(BodyKind::Json)
        );
        assert_eq!(
            BodyKind::of(Some("application/xhtml+xml"), b""),
            Some(BodyKind::Html)
        );
        assert_eq!(
            BodyKind::of(Some("Application/JSON ; charset=utf-8"), b""),
            Some(BodyKind::Json)
        );
        assert_eq!(BodyKind::of(Some(" "), b"{}"), Some(BodyKind::Json));
        assert_eq!(BodyKind::of(Some("image/png"), b"<"), None);
        assert_eq!(BodyKind::of(Some("application/javascript"), b"{"), None);
        assert_eq!(BodyKind::of(Some("text/css"), b"a{}"), None);
        assert_eq!(
            BodyKind::of(None, b"  <!doctype html>"),
            Some(BodyKind::Html)
        );
        assert_eq!(BodyKind::of(None, b"\n[1]"), Some(BodyKind::Json));
        assert_eq!(BodyKind::of(None, b"\x89PNG"), None);
    }
}
