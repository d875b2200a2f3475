//! Structure parsers that turn a body into (field path, name hints, value) and hand each
//! value to the scanner: JSON (RFC 8259), `application/x-www-form-urlencoded`, XML, multipart
//! (RFC 7578), CSV (RFC 4180, simplified), and free text. Each is a single forward pass with
//! bounded depth and bounded state; malformed or truncated input is scanned as far as it goes
//! and never panics.
use memchr::{memchr, memmem};

use crate::hints::KeyHints;
use crate::json::{Tok, TokKind, unescape_json};
use crate::label::{Direction, Notes, Part};
use crate::scan::{Ctx, FxBuild, RawMap, Region, Where};

/// Longest field path kept; deeper names are elided with `…`.
const MAX_PATH: usize = 256;
/// How many times a JSON document inside a string may contain another one.
const MAX_NEST: u8 = 2;

/// What every value of one body shares.
#[derive(Clone, Copy)]
pub(crate) struct BodyCtx {
    pub dir: Direction,
    pub part: Part,
    pub region: Region,
    /// How body offsets map to region offsets.
    pub map: RawMap,
    pub notes: Notes,
    pub nest: u8,
    pub inherit: KeyHints,
}

impl BodyCtx {
    /// Where a value of this body is: at `path`, with `hints`, its bytes mapped by `raw`.
    #[inline]
    pub(crate) fn at<'p>(&self, path: &'p [u8], hints: KeyHints, raw: RawMap) -> Where<'p> {
        Where {
            dir: self.dir,
            part: self.part,
            path,
            hints,
            region: self.region,
            raw,
            notes: self.notes,
        }
    }
}

/// Offset mapping of a value at body range `[s, e)`, `decoded` when its bytes were rewritten.
pub(crate) fn sub(map: RawMap, s: usize, e: usize, decoded: bool) -> RawMap {
    match map {
        RawMap::Direct(off) if decoded => RawMap::Whole(off + s, off + e),
        RawMap::Direct(off) => RawMap::Direct(off + s),
        other => other,
    }
}

impl Ctx<'_> {
    /// Records a field name of the body in `dir`.
    pub fn field(&mut self, dir: Direction, path: &[u8]) {
        use std::hash::BuildHasher;
        let max = self.lab.config.max_fields;
        let acc = match dir {
            Direction::Request => &mut self.st.req,
            Direction::Response => &mut self.st.resp,
        };
        let h = FxBuild.hash_one(path);
        if acc.seen.len() >= max * 4 {
            acc.dropped = acc.dropped.saturating_add(1);
            return;
        }
        if acc.seen.insert(h) {
            if acc.fields.len() < max {
                let mut s = String::with_capacity(path.len());
                crate::mask::push_lossy(&mut s, path);
                acc.fields.push(s);
            } else {
                acc.dropped = acc.dropped.saturating_add(1);
            }
        }
    }

    fn array_objects(&mut self, dir: Direction, n: u32) {
        let acc = match dir {
            Direction::Request => &mut self.st.req,
            Direction::Response => &mut self.st.resp,
        };
        acc.max_array_objects = acc.max_array_objects.max(n);
    }
}

#[inline]
fn push_seg(path: &mut Vec<u8>, sep: &str, name: &[u8]) {
    if path.len() + sep.len() + name.len() > MAX_PATH {
        push_ellipsis(path, sep);
        return;
    }
    path.extend_from_slice(sep.as_bytes());
    path.extend_from_slice(name);
}

/// The path is full: deeper names are elided (once).
#[cold]
fn push_ellipsis(path: &mut Vec<u8>, sep: &str) {
    const ELLIPSIS: &[u8] = "…".as_bytes();
    if !path.ends_with(ELLIPSIS) {
        path.extend_from_slice(sep.as_bytes());
        path.extend_from_slice(ELLIPSIS);
    }
}

/// Is this (decoded) string itself a JSON document?
fn looks_like_json(s: &[u8]) -> bool {
    let t = s.trim_ascii();
    t.len() >= 2
        && ((t[0] == b'{' && t[t.len() - 1] == b'}') || (t[0] == b'[' && t[t.len() - 1] == b']'))
}

pub(crate) struct Frame {
    arr: bool,
    path_len: usize,
    hints: KeyHints,
    objs: u32,
    /// Inside the 3rd or later object of an array: field names are not recorded again.
    repeat: bool,
    /// An array directly inside an array (a row of a table such as `{"rows": [[…], […]]}`):
    /// the position of the current element, so scalar values are located by column
    /// (`$.rows[*][4]`) rather than all at `[*][*]`.
    pos: Option<u32>,
}

/// Row positions located by column at most; later ones share `[*]`.
const MAX_COLUMNS: u32 = 64;

/// Column names of a columnar JSON table (`{"columns": ["id", …], "rows": [[…]]}`:
/// Datasette, SQL-over-HTTP APIs; `{"meta": [{"name": …}], "data": [[…]]}`: ClickHouse,
/// Trino), found anywhere in the document, so that findings at `<prefix>.<rows>[*][i]` can
/// be given the column's name after the walk (the names often follow the rows).
#[derive(Default)]
struct Columns {
    /// The path of the object holding the names (`$` for the root).
    prefix: Vec<u8>,
    names: Vec<Vec<u8>>,
    /// Names of a different prefix were seen: only the first table is named.
    other: bool,
}

impl Columns {
    /// Records `name` if `path` is a column-name position (`….columns[*]`,
    /// `….columns[*].name`, `….meta[*].name`).
    fn observe(&mut self, path: &[u8], name: &[u8]) {
        // Called for every string value: one byte decides for almost all of them.
        if !matches!(path.last(), Some(b']' | b'e')) {
            return;
        }
        const AT: [&[u8]; 3] = [b".columns[*]", b".columns[*].name", b".meta[*].name"];
        let Some(prefix) = AT.iter().find_map(|suffix| path.strip_suffix(*suffix)) else {
            return;
        };
        if self.names.is_empty() && !self.other {
            self.prefix = prefix.to_vec();
        } else if self.prefix != prefix {
            self.other = true;
            return;
        }
        if self.names.len() < MAX_COLUMNS as usize && name.len() <= 64 {
            self.names.push(name.to_vec());
        }
    }

    /// `<prefix>.<key>[*][i]…` → `<prefix>.<key>[*].<name i>…` on a finding path.
    fn rename(&self, path: &str) -> Option<String> {
        let prefix = std::str::from_utf8(&self.prefix).ok()?;
        let rest = path.strip_prefix(prefix)?.strip_prefix('.')?;
        let at = rest.find("[*][")?;
        let key = &rest[..at];
        if key.is_empty() || key.contains(['.', '[']) {
            return None;
        }
        let after = &rest[at + 4..];
        let close = after.find(']')?;
        let i: usize = after[..close].parse().ok()?;
        let name = std::str::from_utf8(self.names.get(i)?).ok()?;
        Some(format!("{prefix}.{key}[*].{name}{}", &after[close + 1..]))
    }
}

/// A ',' between values: in an object the next string is a key and replaces the last one;
/// in a table row the position moves on.
#[inline(always)]
fn comma(frames: &mut [Frame], overflow: usize, path: &mut Vec<u8>, expect_key: &mut bool) {
    if overflow == 0
        && let Some(top) = frames.last_mut()
    {
        if !top.arr {
            *expect_key = true;
            path.truncate(top.path_len);
        } else if let Some(p) = top.pos.as_mut() {
            *p = p.saturating_add(1);
        }
    }
}

/// Scans a scalar value; in a table row, located at its position (`[i]` instead of `[*]`).
#[inline(always)]
fn scan_scalar(
    cx: &mut Ctx<'_>,
    frames: &[Frame],
    path: &mut Vec<u8>,
    val: &[u8],
    hints: KeyHints,
    bc: &BodyCtx,
    raw: RawMap,
) {
    match frames.last() {
        Some(top) if top.arr && top.pos.is_some_and(|p| p < MAX_COLUMNS) => {
            let pos = top.pos.unwrap_or(0);
            path.truncate(top.path_len);
            let mut seg = [0u8; 12];
            let n = {
                use std::io::Write as _;
                let mut c = std::io::Cursor::new(&mut seg[..]);
                let _ = write!(c, "[{pos}]");
                c.position() as usize
            };
            push_seg(path, "", &seg[..n]);
            let w = bc.at(path, hints, raw);
            cx.scan_value(val, &w);
            path.truncate(top.path_len);
            push_seg(path, "", b"[*]");
        }
        _ => {
            let w = bc.at(path, hints, raw);
            cx.scan_value(val, &w);
        }
    }
}

/// Walks a JSON document: lexes `b` ([`crate::json::lex_into`]) and walks its tokens
/// ([`json_tokens`]). `path` holds the base path and is restored on return.
pub(crate) fn json(cx: &mut Ctx<'_>, b: &[u8], path: &mut Vec<u8>, bc: BodyCtx) {
    let mut toks = std::mem::take(&mut cx.st.json_toks);
    crate::json::lex_into(b, &mut toks);
    json_tokens(cx, b, &toks, path, bc);
    cx.st.json_toks = toks;
}

/// Walks the tokens `toks` of the JSON text `b` (the event's shared tape, or one lexed here),
/// tolerantly: a truncated or malformed document is read as far as it goes. `path` holds
/// the base path and is restored on return.
pub(crate) fn json_tokens(
    cx: &mut Ctx<'_>,
    b: &[u8],
    toks: &[Tok],
    path: &mut Vec<u8>,
    bc: BodyCtx,
) {
    let base_len = path.len();
    let max_depth = cx.lab.config.max_depth;
    let mut frames: Vec<Frame> = std::mem::take(&mut cx.st.json_frames);
    frames.clear();
    let mut overflow = 0usize;
    let mut key_hints = bc.inherit;
    let mut expect_key = false;
    let mut buf: Vec<u8> = std::mem::take(&mut cx.st.json_buf);
    let first_finding = cx.st.findings.len();
    let mut columns = Columns::default();
    let cur = |frames: &[Frame], key_hints: KeyHints| match frames.last() {
        Some(f) if f.arr => f.hints,
        Some(_) => key_hints,
        None => bc.inherit,
    };
    for t in toks {
        match t.kind {
            TokKind::Object | TokKind::Array => {
                let arr = t.kind == TokKind::Array;
                let hints = cur(&frames, key_hints);
                let mut repeat = false;
                let mut row = false;
                if let Some(top) = frames.last_mut() {
                    if top.arr && !arr && overflow == 0 {
                        top.objs = top.objs.saturating_add(1);
                    }
                    repeat = top.repeat || (top.arr && top.objs > 2);
                    row = top.arr && arr;
                }
                if frames.len() >= max_depth || overflow > 0 {
                    overflow += 1;
                } else {
                    frames.push(Frame {
                        arr,
                        path_len: path.len(),
                        hints,
                        objs: 0,
                        repeat,
                        pos: row.then_some(0),
                    });
                    if arr {
                        push_seg(path, "", b"[*]");
                    }
                }
                expect_key = !arr;
            }
            TokKind::Close => {
                if overflow > 0 {
                    overflow -= 1;
                } else if let Some(f) = frames.pop() {
                    path.truncate(f.path_len);
                    if f.arr {
                        cx.array_objects(bc.dir, f.objs);
                    }
                }
                expect_key = false;
            }
            TokKind::Comma => comma(&mut frames, overflow, path, &mut expect_key),
            TokKind::Colon => expect_key = false,
            TokKind::Str | TokKind::EscStr => {
                let esc = t.kind == TokKind::EscStr;
                let (cs, ce) = (t.start as usize, t.end as usize);
                let raw = &b[cs..ce];
                let s: &[u8] = if esc {
                    unescape_json(raw, &mut buf);
                    &buf
                } else {
                    raw
                };
                let key_frame = if expect_key && overflow == 0 {
                    frames
                        .last()
                        .filter(|f| !f.arr)
                        .map(|f| (f.path_len, f.hints, f.repeat))
                } else {
                    None
                };
                if let Some((plen, fh, repeat)) = key_frame {
                    path.truncate(plen);
                    push_seg(path, ".", s);
                    key_hints = fh.and(KeyHints::INHERITABLE).or(cx.hints(s));
                    if !repeat {
                        cx.field(bc.dir, path);
                    }
                    expect_key = false;
                    continue;
                }
                let hints = cur(&frames, key_hints);
                if bc.nest < MAX_NEST && looks_like_json(s) {
                    let map = sub(bc.map, cs, ce, esc);
                    let inner = BodyCtx {
                        map: match map {
                            RawMap::Direct(off) => RawMap::Direct(off),
                            m => m,
                        },
                        notes: bc.notes.with(Notes::NESTED),
                        nest: bc.nest + 1,
                        inherit: hints.and(KeyHints::INHERITABLE),
                        ..bc
                    };
                    let owned;
                    let s2: &[u8] = if esc {
                        owned = s.to_vec();
                        &owned
                    } else {
                        s
                    };
                    json(cx, s2, path, inner);
                    continue;
                }
                if overflow == 0 {
                    columns.observe(path, s);
                }
                if !cx.trivial_value(s, hints) {
                    let raw = sub(bc.map, cs, ce, esc);
                    scan_scalar(cx, &frames, path, s, hints, &bc, raw);
                }
            }
            TokKind::Scalar => {
                let (st, i) = (t.start as usize, t.end as usize);
                let tok = &b[st..i];
                let hints = cur(&frames, key_hints);
                // RFC 8259 §6: a number with a sign, fraction or exponent is a quantity, never
                // an identifier, phone or card number (`-17179869184` is not a mobile).
                if tok[0].is_ascii_digit()
                    && !tok
                        .iter()
                        .any(|c| matches!(c, b'.' | b'e' | b'E' | b'-' | b'+'))
                    && !cx.trivial_value(tok, hints)
                {
                    let raw = sub(bc.map, st, i, false);
                    scan_scalar(cx, &frames, path, tok, hints, &bc, raw);
                }
            }
        }
    }
    while let Some(f) = frames.pop() {
        if f.arr {
            cx.array_objects(bc.dir, f.objs);
        }
    }
    path.truncate(base_len);
    cx.st.json_frames = frames;
    cx.st.json_buf = buf;
    if !columns.names.is_empty() {
        for f in cx.st.findings.iter_mut().skip(first_finding) {
            if f.location.part == bc.part
                && f.location.direction == bc.dir
                && let Some(p) = columns.rename(&f.location.path)
            {
                f.location.path = p;
            }
        }
    }
}

/// `a=1&b=2` (form bodies and query strings). `prefix` is prepended to each field name.
pub(crate) fn form(cx: &mut Ctx<'_>, b: &[u8], prefix: &str, bc: BodyCtx) {
    let mut kbuf = Vec::new();
    let mut vbuf = Vec::new();
    let mut path: Vec<u8> = Vec::new();
    let mut pos = 0;
    let mut fields = 0;
    while pos <= b.len() && fields < 4096 {
        let end = memchr(b'&', &b[pos..]).map_or(b.len(), |p| pos + p);
        let pair = &b[pos..end];
        let start = pos;
        pos = end + 1;
        fields += 1;
        if pair.is_empty() {
            continue;
        }
        let (k, vs) = match memchr(b'=', pair) {
            Some(e) => (&pair[..e], e + 1),
            None => (pair, pair.len()),
        };
        let key: &[u8] = if crate::facts::percent_decode_into(k, true, &mut kbuf) {
            &kbuf
        } else {
            k
        };
        let hints = bc.inherit.and(KeyHints::INHERITABLE).or(cx.hints(key));
        path.clear();
        path.extend_from_slice(prefix.as_bytes());
        push_seg(&mut path, "", key);
        cx.field(bc.dir, &path);
        let raw = &pair[vs..];
        let decoded = crate::facts::percent_decode_into(raw, true, &mut vbuf);
        let val: &[u8] = if decoded { &vbuf } else { raw };
        let map = sub(bc.map, start + vs, start + pair.len(), decoded);
        if bc.nest < MAX_NEST && looks_like_json(val) {
            let owned = val.to_vec();
            let inner = BodyCtx {
                part: bc.part,
                map,
                nest: bc.nest + 1,
                notes: bc.notes.with(Notes::NESTED),
                inherit: hints.and(KeyHints::INHERITABLE),
                ..bc
            };
            let mut p = path.clone();
            p.push(b'$');
            json(cx, &owned, &mut p, inner);
            continue;
        }
        let w = bc.at(&path, hints, map);
        cx.scan_value(val, &w);
    }
}

/// XML 1.0 entity decoding for the five predefined entities and character references.
fn xml_unescape(raw: &[u8], out: &mut Vec<u8>) -> bool {
    if memchr(b'&', raw).is_none() {
        return false;
    }
    out.clear();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'&'
            && let Some(semi) = raw[i..].iter().take(12).position(|b| *b == b';')
        {
            let ent = &raw[i + 1..i + semi];
            let ch: Option<char> = match ent {
                b"lt" => Some('<'),
                b"gt" => Some('>'),
                b"amp" => Some('&'),
                b"quot" => Some('"'),
                b"apos" => Some('\''),
                _ if ent.first() == Some(&b'#') => {
                    let s = std::str::from_utf8(&ent[1..]).unwrap_or("");
                    let cp = if let Some(h) = s.strip_prefix('x').or_else(|| s.strip_prefix('X')) {
                        u32::from_str_radix(h, 16).ok()
                    } else {
                        s.parse::<u32>().ok()
                    };
                    cp.and_then(char::from_u32)
                }
                _ => None,
            };
            if let Some(ch) = ch {
                let mut tmp = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                i += semi + 1;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    true
}

fn local_name(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|b| *b == b':') {
        Some(p) => &name[p + 1..],
        None => name,
    }
}

/// Walks an XML document (SOAP, XML APIs): element text and attribute values with paths like
/// `/Envelope/Body/user/mobile` and `/…/user/@id` (namespace prefixes dropped).
pub(crate) fn xml(cx: &mut Ctx<'_>, b: &[u8], bc: BodyCtx) {
    let max_depth = cx.lab.config.max_depth;
    let mut path: Vec<u8> = Vec::new();
    let mut stack: Vec<(usize, KeyHints)> = Vec::with_capacity(16);
    let mut overflow = 0usize;
    let mut buf = Vec::new();
    let mut i = 0;
    let n = b.len();
    while i < n {
        let lt = memchr(b'<', &b[i..]).map_or(n, |p| i + p);
        // Text content of the current element.
        if lt > i
            && overflow == 0
            && let Some(&(_, hints)) = stack.last()
        {
            let text = &b[i..lt];
            let t = text.trim_ascii();
            if !t.is_empty() {
                let ts = i + (t.as_ptr() as usize - text.as_ptr() as usize);
                let decoded = xml_unescape(t, &mut buf);
                let val: &[u8] = if decoded { &buf } else { t };
                let w = bc.at(&path, hints, sub(bc.map, ts, ts + t.len(), decoded));
                cx.scan_value(val, &w);
            }
        }
        if lt >= n {
            break;
        }
        let rest = &b[lt..];
        if rest.starts_with(b"<!--") {
            i = memmem::find(&rest[4..], b"-->").map_or(n, |p| lt + 4 + p + 3);
            continue;
        }
        if rest.starts_with(b"<![CDATA[") {
            let cs = lt + 9;
            let ce = memmem::find(&b[cs..], b"]]>").map_or(n, |p| cs + p);
            if overflow == 0
                && let Some(&(_, hints)) = stack.last()
            {
                let w = bc.at(&path, hints, sub(bc.map, cs, ce, false));
                cx.scan_value(&b[cs..ce], &w);
            }
            i = (ce + 3).min(n);
            continue;
        }
        if rest.starts_with(b"<?") || rest.starts_with(b"<!") {
            i = memchr(b'>', rest).map_or(n, |p| lt + p + 1);
            continue;
        }
        if rest.starts_with(b"</") {
            if overflow > 0 {
                overflow -= 1;
            } else if let Some((plen, _)) = stack.pop() {
                path.truncate(plen);
            }
            i = memchr(b'>', rest).map_or(n, |p| lt + p + 1);
            continue;
        }
        // Start tag: name, attributes, end (quotes respected).
        let mut j = lt + 1;
        while j < n && !matches!(b[j], b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>') {
            j += 1;
        }
        let name = local_name(&b[lt + 1..j]);
        let parent_hints = stack.last().map_or(bc.inherit, |s| s.1);
        let pushed = if stack.len() >= max_depth || overflow > 0 {
            overflow += 1;
            false
        } else {
            let hints = parent_hints.and(KeyHints::INHERITABLE).or(cx.hints(name));
            stack.push((path.len(), hints));
            push_seg(&mut path, "/", name);
            cx.field(bc.dir, &path);
            true
        };
        // Attributes.
        let mut self_closing = false;
        loop {
            while j < n && b[j].is_ascii_whitespace() {
                j += 1;
            }
            if j >= n {
                break;
            }
            if b[j] == b'>' {
                j += 1;
                break;
            }
            if b[j] == b'/' {
                self_closing = true;
                j += 1;
                continue;
            }
            let as_ = j;
            while j < n && !matches!(b[j], b'=' | b' ' | b'\t' | b'\r' | b'\n' | b'>' | b'/') {
                j += 1;
            }
            let aname = &b[as_..j];
            while j < n && b[j].is_ascii_whitespace() {
                j += 1;
            }
            if j < n && b[j] == b'=' {
                j += 1;
                while j < n && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                if j < n && (b[j] == b'"' || b[j] == b'\'') {
                    let q = b[j];
                    let vs = j + 1;
                    let ve = memchr(q, &b[vs..]).map_or(n, |p| vs + p);
                    j = (ve + 1).min(n);
                    let lname = local_name(aname);
                    if pushed && !aname.starts_with(b"xmlns") {
                        let plen = path.len();
                        push_seg(&mut path, "/@", lname);
                        cx.field(bc.dir, &path);
                        let hints = parent_hints.and(KeyHints::INHERITABLE).or(cx.hints(lname));
                        let raw = &b[vs..ve];
                        let decoded = xml_unescape(raw, &mut buf);
                        let val: &[u8] = if decoded { &buf } else { raw };
                        let w = bc.at(&path, hints, sub(bc.map, vs, ve, decoded));
                        cx.scan_value(val, &w);
                        path.truncate(plen);
                    }
                }
            } else if j == as_ {
                j += 1;
            }
        }
        if self_closing {
            if pushed {
                if let Some((plen, _)) = stack.pop() {
                    path.truncate(plen);
                }
            } else {
                overflow = overflow.saturating_sub(1);
            }
        }
        i = j.max(lt + 1);
    }
}

/// CSV with a header row: each cell is scanned with its column name as the key.
pub(crate) fn csv(cx: &mut Ctx<'_>, b: &[u8], prefix: &str, bc: BodyCtx) {
    let Some(first_nl) = memchr(b'\n', b) else {
        text(cx, b, bc);
        return;
    };
    let header = &b[..first_nl];
    let delim = [b',', b'\t', b';', b'|']
        .into_iter()
        .max_by_key(|d| header.iter().filter(|c| *c == d).count())
        .unwrap_or(b',');
    let mut cols: Vec<(Vec<u8>, KeyHints)> = Vec::new();
    for cell in header.split(|c| *c == delim).take(256) {
        let name = cell.trim_ascii().trim_ascii_matches_quotes();
        let mut p = prefix.as_bytes().to_vec();
        push_seg(&mut p, "", name);
        cx.field(bc.dir, &p);
        let h = bc.inherit.or(cx.hints(name));
        cols.push((p, h));
    }
    let mut rows = 0u32;
    let mut pos = first_nl + 1;
    while pos < b.len() {
        let end = memchr(b'\n', &b[pos..]).map_or(b.len(), |p| pos + p);
        let line = &b[pos..end];
        let mut cs = pos;
        if !line.trim_ascii().is_empty() {
            rows += 1;
        }
        for (k, cell) in line.split(|c| *c == delim).enumerate() {
            let ce = cs + cell.len();
            if let Some((p, h)) = cols.get(k) {
                let t = cell.trim_ascii().trim_ascii_matches_quotes();
                let ts = cs + (t.as_ptr() as usize).saturating_sub(cell.as_ptr() as usize);
                let w = Where {
                    part: Part::CsvColumn,
                    ..bc.at(p, *h, sub(bc.map, ts, ts + t.len(), false))
                };
                cx.scan_value(t, &w);
            }
            cs = ce + 1;
        }
        pos = end + 1;
    }
    cx.array_objects(bc.dir, rows);
}

trait TrimQuotes {
    fn trim_ascii_matches_quotes(&self) -> &[u8];
}

impl TrimQuotes for [u8] {
    fn trim_ascii_matches_quotes(&self) -> &[u8] {
        if self.len() >= 2 && self[0] == b'"' && self[self.len() - 1] == b'"' {
            &self[1..self.len() - 1]
        } else {
            self
        }
    }
}

/// Free text: the whole body is one value without a key (context comes from nearby words).
pub(crate) fn text(cx: &mut Ctx<'_>, b: &[u8], bc: BodyCtx) {
    let w = Where {
        part: Part::Text,
        ..bc.at(b"", bc.inherit, sub(bc.map, 0, b.len(), false))
    };
    cx.scan_value(b, &w);
}

/// Value of a `; name="value"` parameter in a header such as Content-Disposition.
pub(crate) fn header_param<'a>(h: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let mut i = 0;
    while i < h.len() {
        let p = memmem::find(&h[i..], name)? + i;
        let before_ok = p == 0 || matches!(h[p - 1], b';' | b' ' | b'\t');
        let after = p + name.len();
        if before_ok && h.get(after) == Some(&b'=') {
            let v = &h[after + 1..];
            if v.first() == Some(&b'"') {
                let end = memchr(b'"', &v[1..]).map_or(v.len(), |e| e + 1);
                return Some(&v[1..end.min(v.len())]);
            }
            let end = v.iter().position(|c| *c == b';').unwrap_or(v.len());
            return Some(v[..end].trim_ascii());
        }
        i = p + 1;
    }
    None
}

/// Kind of body content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BodyKind {
    /// Empty body.
    #[default]
    Empty,
    /// JSON.
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
    /// XML (incl. SOAP).
    Xml,
    /// `multipart/form-data`.
    Multipart,
    /// CSV.
    Csv,
    /// gRPC length-prefixed protobuf messages (`application/grpc`, issue 17).
    Protobuf,
    /// Text, HTML, or unknown text.
    Text,
    /// Binary content (not scanned).
    Binary,
    /// Compressed with a coding this build does not inflate (e.g. `br`), not scanned.
    Undecodable,
}

/// Chooses the parser from the content type, falling back to sniffing.
pub(crate) fn kind_of(content_type: Option<&[u8]>, b: &[u8]) -> BodyKind {
    if b.is_empty() {
        return BodyKind::Empty;
    }
    if let Some(ct) = content_type {
        let ct = ct.to_ascii_lowercase();
        let has = |s: &[u8]| memmem::find(&ct, s).is_some();
        if has(b"json") {
            return BodyKind::Json;
        }
        if has(b"x-www-form-urlencoded") {
            return BodyKind::Form;
        }
        if has(b"multipart/") {
            return BodyKind::Multipart;
        }
        if has(b"csv") {
            return BodyKind::Csv;
        }
        if crate::protobuf::is_protobuf_grpc(&ct) {
            return BodyKind::Protobuf;
        }
        if has(b"xml") {
            return BodyKind::Xml;
        }
        if has(b"image/")
            || has(b"audio/")
            || has(b"video/")
            || has(b"octet-stream")
            || has(b"pdf")
            || has(b"zip")
            || has(b"protobuf")
            || has(b"grpc")
            || has(b"font/")
        {
            return BodyKind::Binary;
        }
        if has(b"text/") || has(b"javascript") {
            return sniff(b)
                .filter(|k| *k != BodyKind::Binary)
                .unwrap_or(BodyKind::Text);
        }
    }
    sniff(b).unwrap_or(BodyKind::Text)
}

fn sniff(b: &[u8]) -> Option<BodyKind> {
    let head = &b[..b.len().min(512)];
    if memchr(0, head).is_some() {
        return Some(BodyKind::Binary);
    }
    let t = head.trim_ascii_start();
    match t.first() {
        Some(b'{') | Some(b'[') => Some(BodyKind::Json),
        Some(b'<') if !t.starts_with(b"<!DOCTYPE html") && !t.starts_with(b"<html") => {
            Some(BodyKind::Xml)
        }
        _ => {
            let line = &t[..memchr(b'\n', t).unwrap_or(t.len())];
            if memchr(b'=', line).is_some() && memchr(b' ', line).is_none() && !line.is_empty() {
                Some(BodyKind::Form)
            } else {
                None
            }
        }
    }
}

/// Walks a `multipart/form-data` body (RFC 7578): each part by its name and content type.
pub(crate) fn multipart(cx: &mut Ctx<'_>, b: &[u8], boundary: &[u8], bc: BodyCtx) {
    if boundary.is_empty() || boundary.len() > 200 {
        text(cx, b, bc);
        return;
    }
    let mut delim = Vec::with_capacity(boundary.len() + 2);
    delim.extend_from_slice(b"--");
    delim.extend_from_slice(boundary);
    let finder = memmem::Finder::new(&delim);
    let Some(first) = finder.find(b) else {
        return;
    };
    let mut pos = first + delim.len();
    let mut parts = 0;
    while pos < b.len() && parts < 256 {
        parts += 1;
        if b[pos..].starts_with(b"--") {
            break;
        }
        let next = finder.find(&b[pos..]).map_or(b.len(), |p| pos + p);
        let mut part_start = pos;
        if b[part_start..].starts_with(b"\r\n") {
            part_start += 2;
        } else if b[part_start..].starts_with(b"\n") {
            part_start += 1;
        }
        let part = &b[part_start..next.max(part_start)];
        let (hdr_end, body_start) = match memmem::find(part, b"\r\n\r\n") {
            Some(p) => (p, p + 4),
            None => match memmem::find(part, b"\n\n") {
                Some(p) => (p, p + 2),
                None => (part.len(), part.len()),
            },
        };
        let headers = &part[..hdr_end];
        let mut pbody = &part[body_start..];
        if pbody.ends_with(b"\r\n") {
            pbody = &pbody[..pbody.len() - 2];
        } else if pbody.ends_with(b"\n") {
            pbody = &pbody[..pbody.len() - 1];
        }
        let body_off = part_start + body_start;
        let mut name: &[u8] = b"";
        let mut filename = false;
        let mut ctype: Option<&[u8]> = None;
        for line in headers.split(|c| *c == b'\n') {
            let line = line.trim_ascii();
            let Some(colon) = memchr(b':', line) else {
                continue;
            };
            let (hn, hv) = (&line[..colon], line[colon + 1..].trim_ascii());
            if hn.eq_ignore_ascii_case(b"content-disposition") {
                name = header_param(hv, b"name").unwrap_or(b"");
                filename = header_param(hv, b"filename").is_some();
            } else if hn.eq_ignore_ascii_case(b"content-type") {
                ctype = Some(hv);
            }
        }
        let mut prefix: Vec<u8> = Vec::new();
        push_seg(&mut prefix, "", name);
        cx.field(bc.dir, &prefix);
        let hints = cx.hints(name);
        let inner = BodyCtx {
            part: Part::MultipartPart,
            map: sub(bc.map, body_off, body_off, false),
            inherit: hints.and(KeyHints::INHERITABLE),
            ..bc
        };
        let kind = if filename || ctype.is_some() {
            kind_of(ctype, pbody)
        } else {
            BodyKind::Text
        };
        match kind {
            BodyKind::Json => {
                prefix.push(b'$');
                json(cx, pbody, &mut prefix, inner);
            }
            BodyKind::Form => form(
                cx,
                pbody,
                &format!("{}.", String::from_utf8_lossy(&prefix)),
                inner,
            ),
            BodyKind::Xml => xml(cx, pbody, inner),
            BodyKind::Csv => csv(
                cx,
                pbody,
                &format!("{}.", String::from_utf8_lossy(&prefix)),
                inner,
            ),
            BodyKind::Text => {
                let w = Where {
                    part: Part::MultipartPart,
                    ..bc.at(&prefix, hints, sub(bc.map, body_off, body_off, false))
                };
                cx.scan_value(pbody, &w);
            }
            _ => {}
        }
        pos = next + delim.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_json_strings() {
        let mut out = Vec::new();
        unescape_json(br#"a\"b\u5f20\u4e09\ud83d\ude00\n\x"#, &mut out);
        assert_eq!(String::from_utf8(out.clone()).unwrap(), "a\"b张三😀\n\\x");
        unescape_json(br#"\ud800"#, &mut out);
        assert_eq!(String::from_utf8(out.clone()).unwrap(), "\u{FFFD}");
        unescape_json(br"\u12", &mut out);
        assert_eq!(out, b"\\u12");
    }

    #[test]
    fn header_params_and_kinds() {
        assert_eq!(
            header_param(b"form-data; name=\"file\"; filename=\"a.csv\"", b"name"),
            Some(&b"file"[..])
        );
        assert_eq!(
            header_param(b"multipart/form-data; boundary=xyz", b"boundary"),
            Some(&b"xyz"[..])
        );
        assert_eq!(
            kind_of(Some(b"application/json; charset=utf-8"), b"{}"),
            BodyKind::Json
        );
        assert_eq!(kind_of(None, b" [1]"), BodyKind::Json);
        assert_eq!(kind_of(None, b"a=1&b=2"), BodyKind::Form);
        assert_eq!(kind_of(Some(b"image/png"), b"\x89PNG"), BodyKind::Binary);
    }
}
