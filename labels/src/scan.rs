//! The value scanner: one pass over each value with a byte-class tokenizer (a hand-written
//! DFA), shape counters per token, then only the validators the shape allows
//! (pattern → validation → context → score). Key-driven labels (passwords, names, …) are
//! decided on the whole value first.
use std::collections::HashSet;

use base64::Engine as _;
use serde::Deserialize;

use crate::hash::{HashKey, normalise};
use crate::hints::{HintClassifier, KeyHints};
use crate::label::{Direction, Finding, Label, Location, MaskShape, Notes, Part, ValueHash};
use crate::mask;
use crate::names;
use crate::validate::{self as v, CardScheme, UsccCheck};

/// Which message region a span belongs to (for in-place masking).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Region {
    ReqPath,
    ReqQuery,
    ReqHeader(usize),
    RespHeader(usize),
    ReqBody,
    RespBody,
    None,
}

/// How offsets in a scanned value map back to its region.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RawMap {
    /// Value byte `i` is region byte `off + i`.
    Direct(usize),
    /// The value was decoded from region bytes `[start, end)`: mask all of them.
    Whole(usize, usize),
    /// Not mappable (decompressed, …).
    None,
}

/// A range of a region to mask.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    pub region: Region,
    pub start: usize,
    pub end: usize,
    pub label: Label,
    /// Mask every byte (the range is encoded, policy positions would be meaningless).
    pub full: bool,
}

/// Where the value being scanned sits.
#[derive(Clone, Copy)]
pub(crate) struct Where<'p> {
    pub dir: Direction,
    pub part: Part,
    pub path: &'p [u8],
    pub hints: KeyHints,
    pub region: Region,
    pub raw: RawMap,
    pub notes: Notes,
}

/// Scan limits and knobs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabelConfig {
    /// Findings below this confidence (0–100) are not reported.
    pub min_confidence: u8,
    /// At most this many bytes of each body are scanned (after decoding).
    pub max_scan_bytes: usize,
    /// Compressed bodies (gzip, deflate) are inflated up to this many bytes.
    pub max_inflated_bytes: usize,
    /// JSON/XML nesting deeper than this is scanned without extending the path.
    pub max_depth: usize,
    /// At most this many distinct field names are kept per body.
    pub max_fields: usize,
    /// At most this many keyed hashes per finding.
    pub max_hashes_per_finding: usize,
    /// At most this many findings per event (further ones are counted as dropped).
    pub max_findings: usize,
}

impl Default for LabelConfig {
    fn default() -> Self {
        LabelConfig {
            min_confidence: 50,
            max_scan_bytes: 1 << 20,
            max_inflated_bytes: 4 << 20,
            max_depth: 32,
            max_fields: 256,
            max_hashes_per_finding: 16,
            max_findings: 512,
        }
    }
}

/// Immutable, shareable labelling configuration: hash key, automata, word lists.
pub struct Labeller {
    pub(crate) config: LabelConfig,
    pub(crate) key: HashKey,
    /// `key.id()`, computed once: it goes into every shipped label summary.
    key_id: String,
    pub(crate) hints: HintClassifier,
    pub(crate) weak: HashSet<ValueHash>,
    pub(crate) surnames: Vec<u32>,
    pub(crate) max_year: u32,
}

impl std::fmt::Debug for Labeller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Labeller")
            .field("config", &self.config)
            .field("weak_passwords", &self.weak.len())
            .finish_non_exhaustive()
    }
}

const COMMON_PASSWORDS: &str = include_str!("../data/common-passwords.txt");

impl Labeller {
    /// Builds a labeller. `key` is the site's hash key (see [`HashKey`]).
    pub fn new(key: HashKey, config: LabelConfig) -> Result<Labeller, crate::LabelError> {
        let hints = HintClassifier::new().map_err(|_| crate::LabelError::Automaton)?;
        let weak = COMMON_PASSWORDS
            .lines()
            .filter(|l| !l.is_empty())
            .map(|p| key.hash_normalised(p.as_bytes()))
            .collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let max_year = (1970 + now / 31_556_952) as u32;
        Ok(Labeller {
            config,
            key_id: key.id(),
            key,
            hints,
            weak,
            surnames: names::surname_table(),
            max_year: max_year.max(2024),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LabelConfig {
        &self.config
    }

    /// The hash key (to hash a value for trace-back the same way the scanner does).
    pub fn hash_key(&self) -> &HashKey {
        &self.key
    }

    /// The hash key's public id ([`HashKey::id`]).
    pub fn hash_key_id(&self) -> &str {
        &self.key_id
    }

    /// Is this password on the common-password list? (Compared by keyed hash.)
    pub fn is_common_password(&self, password: &[u8]) -> bool {
        self.weak
            .contains(&self.key.hash_normalised(password.trim_ascii()))
    }
}

/// Every value-validated label needs at least 7 bytes (`A@b.cn`+1, a plate is 9).
const MIN_VALUE: usize = 7;

/// Per-thread cache of name → hints (names repeat across records and events).
#[derive(Default)]
pub(crate) struct HintCache {
    map: std::collections::HashMap<Box<[u8]>, KeyHints, FxBuild>,
    front: Vec<FrontSlot>,
}

/// A name of at most 16 bytes as (length, first 8 bytes, last 8 bytes), with overlapping
/// loads: an exact key for the front cache without copying or comparing byte by byte (with the
/// length known, overlapping loads still determine every byte).
#[inline]
fn short_key(name: &[u8]) -> (u8, u64, u64) {
    let n = name.len();
    let load8 = |s: &[u8]| -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&s[..8]);
        u64::from_le_bytes(a)
    };
    let load4 = |s: &[u8]| -> u64 {
        let mut a = [0u8; 4];
        a.copy_from_slice(&s[..4]);
        u64::from(u32::from_le_bytes(a))
    };
    if n >= 8 {
        (n as u8, load8(name), load8(&name[n - 8..]))
    } else if n >= 4 {
        (n as u8, load4(name) | (load4(&name[n - 4..]) << 32), 0)
    } else if n > 0 {
        let v = u64::from(name[0]) | (u64::from(name[n / 2]) << 8) | (u64::from(name[n - 1]) << 16);
        (n as u8, v, 0)
    } else {
        (0, 0, 0)
    }
}

/// Direct-mapped front of the hint cache: names of ≤ 16 bytes.
const FRONT: usize = 1024;
type FrontSlot = (u8, u64, u64, KeyHints);

impl HintCache {
    #[inline(always)]
    pub fn get(&mut self, c: &HintClassifier, name: &[u8]) -> KeyHints {
        let slot = if name.len() <= 16 {
            if self.front.is_empty() {
                self.front = vec![(u8::MAX, 0, 0, KeyHints::NONE); FRONT];
            }
            let (n, a, b) = short_key(name);
            let h = (a ^ u64::from(n)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
            let i = ((h ^ (h >> 31)).wrapping_mul(0x1656_67B1_9E37_79F9) >> 54) as usize;
            if let Some(e) = self.front.get(i)
                && e.0 == n
                && e.1 == a
                && e.2 == b
            {
                return e.3;
            }
            Some((i, n, a, b))
        } else {
            None
        };
        let h = self.slow(c, name);
        if let Some((i, n, a, b)) = slot
            && let Some(e) = self.front.get_mut(i)
        {
            *e = (n, a, b, h);
        }
        h
    }

    #[inline(never)]
    fn slow(&mut self, c: &HintClassifier, name: &[u8]) -> KeyHints {
        if let Some(h) = self.map.get(name) {
            return *h;
        }
        let h = c.classify(name);
        if name.len() <= 64 {
            if self.map.len() >= 8192 {
                self.map.clear();
            }
            self.map.insert(name.into(), h);
        }
        h
    }
}

/// FxHash (rustc's hasher): fast, non-cryptographic, fine for a bounded cache of names.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxBuild;
pub(crate) struct Fx(u64);
impl std::hash::BuildHasher for FxBuild {
    type Hasher = Fx;
    fn build_hasher(&self) -> Fx {
        Fx(0)
    }
}
impl std::hash::Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(a)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
}

/// Accumulated shape of one message body.
#[derive(Default)]
pub(crate) struct ShapeAcc {
    pub fields: Vec<String>,
    pub seen: HashSet<u64, FxBuild>,
    pub dropped: u32,
    pub max_array_objects: u32,
}

impl ShapeAcc {
    pub fn clear(&mut self) {
        self.fields.clear();
        self.seen.clear();
        self.dropped = 0;
        self.max_array_objects = 0;
    }
}

/// Per-event mutable state.
#[derive(Default)]
pub(crate) struct State {
    pub findings: Vec<Finding>,
    pub dropped_findings: u32,
    pub spans: Vec<Span>,
    pub collect_spans: bool,
    pub req: ShapeAcc,
    pub resp: ShapeAcc,
    pub norm: Vec<u8>,
    pub values: u64,
    pub emitted: u64,
    /// Reusable scratch of the JSON walker (taken while in use; nested walks allocate).
    pub json_buf: Vec<u8>,
    pub json_frames: Vec<crate::body::Frame>,
    /// Reusable field-path buffer of a top-level body walk.
    pub path_buf: Vec<u8>,
}

impl State {
    pub fn reset(&mut self, spans: bool) {
        self.findings.clear();
        self.dropped_findings = 0;
        self.spans.clear();
        self.collect_spans = spans;
        self.req.clear();
        self.resp.clear();
        self.values = 0;
    }
}

/// The scanning context handed to the structure parsers.
pub(crate) struct Ctx<'a> {
    pub lab: &'a Labeller,
    pub cache: &'a mut HintCache,
    pub st: &'a mut State,
}

// Byte classes of the tokenizer.
const DG: u8 = 1; // digit
const UP: u8 = 2; // upper-case letter
const LO: u8 = 4; // lower-case letter
const JN: u8 = 8; // joiner inside a token: . - _ @ : *  +
const STT: u8 = 16; // may start a token: alphanumeric, '+', '*'
const GRP: u8 = 32; // may start a space-joined group: digit, upper-case, '*'
const SPC: u8 = 64; // '@', ':' or '*': e-mail, IPv6 or masked values
const NG: u8 = 128; // inside a token but not in a space-joined group: a-z . - @ : _

// Counter slots.
const K_RUN: usize = 0;
const K_DIG: usize = 1;
const K_UP: usize = 2;
const K_LO: usize = 3;
const K_DOT: usize = 4;
const K_DASH: usize = 5;
const K_AT: usize = 6;
const K_COLON: usize = 7;
const K_STAR: usize = 8;
const K_UNDER: usize = 9;
const K_PLUS: usize = 10;
const K_SP: usize = 11;

const fn build_tables() -> ([u8; 256], [u8; 256]) {
    let mut cls = [0u8; 256];
    let mut kind = [0u8; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        if c == b' ' {
            kind[b] = K_SP as u8;
        } else if c.is_ascii_digit() {
            cls[b] = DG | STT | GRP;
            kind[b] = K_DIG as u8;
        } else if c.is_ascii_uppercase() {
            cls[b] = UP | STT | GRP;
            kind[b] = K_UP as u8;
        } else if c.is_ascii_lowercase() {
            cls[b] = LO | STT | NG;
            kind[b] = K_LO as u8;
        } else {
            match c {
                b'.' => {
                    cls[b] = JN | NG;
                    kind[b] = K_DOT as u8
                }
                b'-' => {
                    cls[b] = JN | NG;
                    kind[b] = K_DASH as u8
                }
                b'@' => {
                    cls[b] = JN | SPC | NG;
                    kind[b] = K_AT as u8
                }
                b':' => {
                    cls[b] = JN | SPC | NG;
                    kind[b] = K_COLON as u8
                }
                b'*' => {
                    cls[b] = JN | STT | GRP | SPC;
                    kind[b] = K_STAR as u8
                }
                b'_' => {
                    cls[b] = JN | NG;
                    kind[b] = K_UNDER as u8
                }
                b'+' => {
                    cls[b] = JN | STT;
                    kind[b] = K_PLUS as u8
                }
                _ => {}
            }
        }
        b += 1;
    }
    (cls, kind)
}

static TABLES: ([u8; 256], [u8; 256]) = build_tables();

type Counts = [u32; 12];

/// Runs of set bits in each byte value: (longest, from bit 0 up, from bit 7 down).
const fn build_runs() -> [(u8, u8, u8); 256] {
    let mut t = [(0u8, 0u8, 0u8); 256];
    let mut v = 0usize;
    while v < 256 {
        let mut x = v;
        let mut longest = 0u8;
        while x != 0 {
            x &= x << 1;
            longest += 1;
        }
        let (mut low, mut high) = (0u8, 0u8);
        while low < 8 && v & (1 << low) != 0 {
            low += 1;
        }
        while high < 8 && v & (0x80 >> high) != 0 {
            high += 1;
        }
        t[v] = (longest, low, high);
        v += 1;
    }
    t
}

static RUNS: [(u8, u8, u8); 256] = build_runs();

const HI: u64 = 0x8080_8080_8080_8080;
const fn splat(b: u8) -> u64 {
    0x0101_0101_0101_0101u64 * b as u64
}

/// Shape counters of a token; slot `K_RUN` holds the longest run of `[0-9+-]`. Eight bytes at
/// a time: digits, letters and the run bytes are found with word arithmetic on ASCII (one high
/// bit per byte), the few other bytes are counted one by one.
fn counts(tok: &[u8]) -> Counts {
    let mut acc = CountAcc::default();
    let mut chunks = tok.chunks_exact(8);
    for ch in &mut chunks {
        let mut a = [0u8; 8];
        a.copy_from_slice(ch);
        acc.word(u64::from_le_bytes(a), ch, HI);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = 0u64;
        for (k, &b) in rest.iter().enumerate() {
            w |= u64::from(b) << (8 * k);
        }
        acc.word(w, rest, HI >> (8 * (8 - rest.len())));
    }
    let mut c = acc.c;
    c[K_DIG] = acc.d;
    c[K_UP] = acc.up;
    c[K_LO] = acc.lo;
    c[K_RUN] = acc.max_run;
    c
}

#[derive(Default)]
struct CountAcc {
    c: Counts,
    d: u32,
    up: u32,
    lo: u32,
    run: u32,
    max_run: u32,
}

impl CountAcc {
    /// Counts the bytes of `ch` (`w` holds them little-endian; `valid` has the high bit of
    /// each byte of `w` that is in `ch`).
    #[inline(always)]
    fn word(&mut self, w: u64, ch: &[u8], valid: u64) {
        if w & HI != 0 {
            // Not ASCII (never in a token; kept exact for any input).
            for &b in ch {
                match b {
                    b'0'..=b'9' => self.d += 1,
                    b'A'..=b'Z' => self.up += 1,
                    b'a'..=b'z' => self.lo += 1,
                    _ => self.c[TABLES.1[b as usize] as usize] += 1,
                }
                self.run = if b.is_ascii_digit() || b == b'-' || b == b'+' {
                    self.run + 1
                } else {
                    0
                };
                self.max_run = self.max_run.max(self.run);
            }
            return;
        }
        // High bit of each byte that is >= x (bytes < 0x80: the sums never carry across).
        let ge = |x: u8| w.wrapping_add(splat(0x80 - x)) & HI;
        // High bit of each byte equal to x.
        let eq = |x: u8| !(w ^ splat(x)).wrapping_add(splat(0x7F)) & HI;
        // Number of high bits set (popcount without the POPCNT instruction of newer CPUs).
        let count = |m: u64| ((m >> 7).wrapping_mul(splat(1)) >> 56) as u32;
        let dm = ge(b'0') & !ge(b'9' + 1);
        let um = ge(b'A') & !ge(b'Z' + 1);
        let lm = ge(b'a') & !ge(b'z' + 1);
        self.d += count(dm);
        self.up += count(um);
        self.lo += count(lm);
        let mut other = valid & !(dm | um | lm);
        while other != 0 {
            let b = (w >> (other.trailing_zeros() - 7)) as u8;
            self.c[TABLES.1[b as usize] as usize] += 1;
            other &= other - 1;
        }
        // Run bytes, one bit per byte (bit k = byte k).
        let rm = (dm | eq(b'-') | eq(b'+')) & valid;
        let m8 = ((rm >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u8;
        if m8 == 0xFF {
            self.run += 8;
            self.max_run = self.max_run.max(self.run);
        } else {
            let (longest, low, high) = RUNS[m8 as usize];
            self.max_run = self
                .max_run
                .max(self.run + u32::from(low))
                .max(u32::from(longest));
            self.run = u32::from(high);
        }
    }
}

#[derive(Deserialize)]
struct JwtHeader {
    alg: Option<String>,
}

#[derive(Deserialize)]
struct JwtClaims {
    exp: Option<serde::de::IgnoredAny>,
}

impl Ctx<'_> {
    /// Emits one occurrence. `token` is the value as it appears in the scanned buffer at
    /// `tstart` (offset in the value), `mask` is set for application-masked values.
    #[allow(clippy::too_many_arguments)]
    pub fn emit(
        &mut self,
        w: &Where<'_>,
        label: Label,
        confidence: u8,
        token: &[u8],
        tstart: usize,
        mask: Option<MaskShape>,
        notes: Notes,
    ) {
        if confidence < self.lab.config.min_confidence {
            return;
        }
        let notes = notes.with(w.notes);
        self.st.emitted += 1;
        if self.st.collect_spans {
            let span = match w.raw {
                RawMap::Direct(off) => Some(Span {
                    region: w.region,
                    start: off + tstart,
                    end: off + tstart + token.len(),
                    label,
                    full: false,
                }),
                RawMap::Whole(a, b) => Some(Span {
                    region: w.region,
                    start: a,
                    end: b,
                    label,
                    full: true,
                }),
                RawMap::None => None,
            };
            if let Some(s) = span
                && s.region != Region::None
            {
                self.st.spans.push(s);
            }
        }
        normalise(label, token, &mut self.st.norm);
        let hashable =
            mask.is_none() && !matches!(label, Label::Password | Label::CardCvv | Label::OtpCode);
        let max_hashes = self.lab.config.max_hashes_per_finding;
        for f in self.st.findings.iter_mut().rev() {
            if f.label == label
                && f.mask == mask
                && f.location.part == w.part
                && f.location.direction == w.dir
                && f.location.path.as_bytes() == w.path
            {
                f.count = f.count.saturating_add(1);
                f.confidence = f.confidence.max(confidence);
                f.notes = f.notes.with(notes);
                if hashable && f.hashes.len() < max_hashes {
                    let h = self.lab.key.hash_normalised(&self.st.norm);
                    if !f.hashes.contains(&h) {
                        f.hashes.push(h);
                    }
                }
                return;
            }
        }
        let hash =
            (hashable && max_hashes > 0).then(|| self.lab.key.hash_normalised(&self.st.norm));
        if self.st.findings.len() >= self.lab.config.max_findings {
            self.st.dropped_findings = self.st.dropped_findings.saturating_add(1);
            return;
        }
        let src: &[u8] = if matches!(label, Label::PersonName | Label::Address) {
            token.trim_ascii()
        } else {
            &self.st.norm
        };
        // Rendered straight into the finding's own string (one allocation, no copy).
        let mut sample = String::with_capacity(src.len().min(48) + 16);
        mask::render_sample(label, src, &mut sample);
        let mut path = String::with_capacity(w.path.len());
        mask::push_lossy(&mut path, w.path);
        self.st.findings.push(Finding {
            label,
            confidence,
            location: Location {
                direction: w.dir,
                part: w.part,
                path,
            },
            count: 1,
            masked_sample: sample,
            mask,
            notes,
            hashes: hash.into_iter().collect(),
        });
    }

    /// Hints of a name, cached.
    #[inline(always)]
    pub fn hints(&mut self, name: &[u8]) -> KeyHints {
        self.cache.get(&self.lab.hints, name)
    }

    /// Counts a value that [`Ctx::scan_value`] would not look into (empty, or shorter than any
    /// value-validated label under a key that decides nothing) and says so: the parsers then
    /// skip building its location.
    #[inline(always)]
    pub fn trivial_value(&mut self, val: &[u8], hints: KeyHints) -> bool {
        if val.is_empty() {
            return true;
        }
        if val.len() < MIN_VALUE && !hints.any(KeyHints::KEYED) {
            self.st.values += 1;
            return true;
        }
        false
    }

    /// Scans one value (a JSON string or number, a form field, a header value, an XML text,
    /// a CSV cell, or a whole free-text body). Inlined into the parsers: most values are short
    /// and leave here after a few compares; the work is out of line.
    #[inline]
    pub fn scan_value(&mut self, val: &[u8], w: &Where<'_>) {
        if val.is_empty() {
            return;
        }
        self.st.values += 1;
        if w.hints.any(KeyHints::KEYED) && self.keyed(val, w) {
            return;
        }
        if val.len() < MIN_VALUE {
            return;
        }
        // Licence plates and masked names start with a Chinese character.
        if val[0] >= 0xE0 && val.len() <= 16 && self.unkeyed_cjk(val, w) {
            return;
        }
        self.tokens(val, w);
    }

    #[inline(never)]
    fn tokens(&mut self, val: &[u8], w: &Where<'_>) {
        let cls = &TABLES.0;
        let n = val.len();
        let mut i = 0;
        while i < n {
            // Skip to the next token start; runs of non-ASCII text (CJK) eight bytes at a time.
            while i < n && cls[val[i] as usize] & STT == 0 {
                i += 1;
                while let Some(chunk) = val[i..].first_chunk::<8>() {
                    if u64::from_le_bytes(*chunk) & 0x8080_8080_8080_8080 != 0x8080_8080_8080_8080 {
                        break;
                    }
                    i += 8;
                }
            }
            if i >= n {
                break;
            }
            let start = i;
            // Only the classes seen are tracked per byte (one table load and an OR); the
            // space-join rule is checked at each space, on the classes of the group before it.
            // Shape counters are computed for tokens long enough to matter (most tokens are
            // short words).
            let mut seen = 0u8;
            let mut gseen = 0u8;
            let mut gstart = i;
            let mut spaces = 0u32;
            while i < n {
                let b = val[i];
                let cl = cls[b as usize];
                if cl & (STT | JN) != 0 {
                    gseen |= cl;
                    i += 1;
                    continue;
                }
                // A group of digits, upper-case letters, '*' and '+' (a digit or '*' in the
                // first group; in a group without NG bytes SPC can only be '*') joins the
                // next group when that starts with a digit, upper-case letter or '*'.
                if b == b' '
                    && gseen & NG == 0
                    && i - gstart <= 6
                    && (gseen & (DG | SPC) != 0 || spaces > 0)
                    && i + 1 < n
                    && cls[val[i + 1] as usize] & GRP != 0
                {
                    spaces += 1;
                    seen |= gseen;
                    gseen = 0;
                    i += 1;
                    gstart = i;
                    continue;
                }
                break;
            }
            seen |= gseen;
            let mut end = i;
            let jwt_like = val[start..end].starts_with(b"eyJ");
            while end > start
                && matches!(val[end - 1], b'.' | b'-' | b'_' | b':' | b'@' | b'+')
                && !(jwt_like && matches!(val[end - 1], b'.' | b'-' | b'_'))
            {
                end -= 1;
            }
            let tok = &val[start..end];
            // Without a digit, '@', ':' or '*' a token can only be a PEM `BEGIN`, a JWT or an
            // AWS key id (base32, may lack digits).
            let worth = if seen & (DG | SPC) != 0 {
                tok.len() >= 7
            } else {
                tok == b"BEGIN"
                    || (tok.len() >= 20 && tok.starts_with(b"eyJ"))
                    || (tok.len() == 20 && tok[0] == b'A')
            };
            if worth {
                let c = counts(tok);
                let resume = self.classify(val, start, end, &c, w);
                if resume > i {
                    i = resume;
                }
            }
        }
    }

    /// Classifies one token; a space-grouped token (`6222 0212 …`, `GB82 WEST …`) that is not
    /// one value as a whole is retried without its trailing groups, then group by group.
    fn classify(&mut self, val: &[u8], s: usize, e: usize, c: &Counts, w: &Where<'_>) -> usize {
        if c[K_SP] == 0 {
            return self.classify_one(val, s, e, c, w);
        }
        let before = self.st.emitted;
        self.classify_one(val, s, e, c, w);
        if self.st.emitted != before {
            return 0;
        }
        let mut end = e;
        while let Some(p) = val[s..end].iter().rposition(|b| *b == b' ') {
            end = s + p;
            let c2 = counts(&val[s..end]);
            if c2[K_SP] == 0 {
                break;
            }
            self.classify_one(val, s, end, &c2, w);
            if self.st.emitted != before {
                self.groups(val, end + 1, e, w);
                return 0;
            }
        }
        self.groups(val, s, e, w);
        0
    }

    fn groups(&mut self, val: &[u8], s: usize, e: usize, w: &Where<'_>) {
        let mut i = s;
        while i < e {
            let st = i;
            while i < e && val[i] != b' ' {
                i += 1;
            }
            if i > st {
                let c = counts(&val[st..i]);
                self.classify_one(val, st, i, &c, w);
            }
            i += 1;
        }
    }

    fn classify_one(&mut self, val: &[u8], s: usize, e: usize, c: &Counts, w: &Where<'_>) -> usize {
        let len = e - s;
        let tok = &val[s..e];
        if len < 7 {
            if tok == b"BEGIN" {
                return self.pem(val, s, w);
            }
            return 0;
        }
        if c[K_AT] == 1 {
            self.email(val, s, e, c, w);
            return 0;
        }
        let letters = c[K_UP] + c[K_LO];
        if c[K_STAR] > 0 {
            self.masked(val, s, e, false, w);
            return 0;
        }
        if letters >= 2 && c[K_DIG] >= 4 && letters <= 16 {
            let xs = tok.iter().filter(|b| matches!(b, b'x' | b'X')).count() as u32;
            if xs == letters && !(xs == 1 && matches!(tok[len - 1], b'x' | b'X')) {
                self.masked(val, s, e, true, w);
                return 0;
            }
        }
        if c[K_COLON] >= 2 && len >= 6 && self.ipv6(val, s, e, w) {
            return 0;
        }
        if c[K_RUN] < 9
            && c[K_DOT] == 0
            && c[K_AT] == 0
            && c[K_COLON] < 2
            && c[K_SP] == 0
            && c[K_LO] + c[K_UP] > 0
            && !(len == 20 || len == 18 || len >= 15 && c[K_DIG] >= 2)
        {
            // Words and identifiers without a long digit run, dot, '@' or ':' pairs cannot be
            // anything but an alphanumeric ID (USCC 18, AWS 20, IBAN ≥ 15, passport 9/11).
            if !(len == 9 || len == 11) {
                return 0;
            }
        }
        if tok.starts_with(b"eyJ") && c[K_DOT] >= 1 {
            self.jwt(val, s, e, w);
            return 0;
        }
        let id_x = letters == 1 && c[K_DIG] == 17 && matches!(tok[len - 1], b'X' | b'x');
        if letters == 0 || id_x {
            if c[K_DOT] == 3 && c[K_DIG] + 3 == len as u32 {
                self.ipv4(val, s, e, w);
            } else if c[K_DOT] + c[K_COLON] + c[K_UNDER] + c[K_STAR] == 0 {
                self.numeric(val, s, e, w);
            } else if c[K_RUN] >= 9 {
                self.split_numeric(val, s, e, w);
            }
            return 0;
        }
        if c[K_LO] == 0 {
            self.upper_alnum(val, s, e, c, w);
            return 0;
        }
        if c[K_RUN] >= 9 {
            self.split_numeric(val, s, e, w);
        }
        0
    }

    /// Numeric runs inside a mixed token (`tel:13812345678`, `id_110105…`).
    fn split_numeric(&mut self, val: &[u8], s: usize, e: usize, w: &Where<'_>) {
        let mut i = s;
        while i < e {
            while i < e && !val[i].is_ascii_digit() && val[i] != b'+' {
                i += 1;
            }
            let st = i;
            while i < e
                && (val[i].is_ascii_digit() || val[i] == b'-' || val[i] == b' ' || val[i] == b'+')
            {
                i += 1;
            }
            // Keep a trailing X of an ID number.
            if i < e && matches!(val[i], b'X' | b'x') && i - st == 17 {
                i += 1;
            }
            let left_ok = st == s || !val[st - 1].is_ascii_alphanumeric();
            let right_ok = i == e || !val[i].is_ascii_alphanumeric();
            if i - st >= 9 && left_ok && right_ok {
                self.numeric(val, st, i, w);
            }
            i = i.max(st + 1);
        }
    }

    /// Hints around a value in free text (the ~40 bytes before it), merged with the key's.
    fn context(&mut self, val: &[u8], s: usize, w: &Where<'_>) -> KeyHints {
        if s == 0 {
            return w.hints;
        }
        let from = s.saturating_sub(40);
        let window = &val[from..s];
        // Only the current clause: cut at the last separator that ends a phrase.
        let cut = window
            .iter()
            .rposition(|b| matches!(b, b',' | b';' | b'\n' | b'"' | b'.' | b'|'))
            .map_or(0, |p| p + 1);
        let window = &window[cut..];
        if window.trim_ascii().is_empty() {
            return w.hints;
        }
        w.hints.or(self.lab.hints.classify(window))
    }

    fn numeric(&mut self, val: &[u8], s: usize, e: usize, w: &Where<'_>) {
        let tok = &val[s..e];
        let mut buf = [0u8; 24];
        let mut n = 0;
        let mut first_sep: Option<usize> = None;
        let mut dashes = 0;
        // Most numbers are plain digit strings: used as they are, without the copy that drops
        // separators.
        let d: &[u8] = if tok.len() <= buf.len() && tok.iter().all(u8::is_ascii_digit) {
            n = tok.len();
            tok
        } else {
            for &b in tok {
                if b.is_ascii_digit() || b == b'X' || b == b'x' {
                    if n == buf.len() {
                        return;
                    }
                    buf[n] = b;
                    n += 1;
                } else if b == b'-' || b == b' ' {
                    if first_sep.is_none() {
                        first_sep = Some(n);
                    }
                    if b == b'-' {
                        dashes += 1;
                    }
                }
            }
            &buf[..n]
        };
        if n < 9 || (matches!(d[n - 1], b'X' | b'x') && n != 18) {
            return;
        }
        let plus = tok[0] == b'+';
        let h = w.hints;
        // +86 / 0086 country code.
        let cc = if d.starts_with(b"0086") {
            4
        } else if d.starts_with(b"86") && (plus || first_sep == Some(2) || h.any(KeyHints::PHONE)) {
            2
        } else {
            0
        };
        if cc > 0 && n - cc >= 9 {
            let rest = &d[cc..];
            if v::cn_mobile(rest) {
                let conf = if h.any(KeyHints::PHONE) { 97 } else { 95 };
                self.emit(w, Label::Mobile, conf, tok, s, None, Notes::NONE);
                return;
            }
            let mut ll = [0u8; 13];
            ll[0] = b'0';
            if rest.len() <= 12 {
                ll[1..=rest.len()].copy_from_slice(rest);
                if v::cn_landline(&ll[..=rest.len()], None) {
                    self.emit(w, Label::Landline, 90, tok, s, None, Notes::NONE);
                }
            }
            return;
        }
        let neg = h.any(KeyHints::NEGNUM) && !h.positive();
        match n {
            11 if v::cn_mobile(d) => {
                let conf = if h.any(KeyHints::PHONE) {
                    97
                } else if neg {
                    return;
                } else if h.positive() {
                    80
                } else {
                    let ctx = self.context(val, s, w);
                    if ctx.any(KeyHints::PHONE) { 95 } else { 88 }
                };
                self.emit(w, Label::Mobile, conf, tok, s, None, Notes::NONE);
                return;
            }
            18 => {
                if v::prc_id18(d, self.lab.max_year) {
                    let conf = if h.any(KeyHints::ID_CTX) { 99 } else { 95 };
                    self.emit(w, Label::PrcId, conf, tok, s, None, Notes::NONE);
                    return;
                }
                match v::uscc(d) {
                    UsccCheck::Strong if !neg || h.any(KeyHints::USCC) => {
                        self.emit(w, Label::Uscc, 85, tok, s, None, Notes::NONE);
                        return;
                    }
                    UsccCheck::CheckOnly if h.any(KeyHints::USCC) => {
                        self.emit(w, Label::Uscc, 80, tok, s, None, Notes::NONE);
                        return;
                    }
                    _ => {}
                }
            }
            15 if v::prc_id15(d) => {
                let ctx = if h.any(KeyHints::ID_CTX) {
                    h
                } else {
                    self.context(val, s, w)
                };
                if ctx.any(KeyHints::ID_CTX) {
                    self.emit(w, Label::PrcId, 85, tok, s, None, Notes::LEGACY_ID15);
                    return;
                }
            }
            9 => {
                let dashed = dashes == 2 && tok.len() == 11 && tok[3] == b'-' && tok[6] == b'-';
                if v::us_ssn(d) {
                    if dashed {
                        self.emit(w, Label::UsSsn, 85, tok, s, None, Notes::NONE);
                    } else if self.context(val, s, w).any(KeyHints::SSN) {
                        self.emit(w, Label::UsSsn, 80, tok, s, None, Notes::NONE);
                    }
                }
                return;
            }
            _ => {}
        }
        if d[0] == b'0' && (10..=12).contains(&n) {
            let area = first_sep.filter(|&p| p == 3 || p == 4);
            if area.is_some() && v::cn_landline(d, area) {
                let conf = if h.any(KeyHints::PHONE) { 95 } else { 80 };
                self.emit(w, Label::Landline, conf, tok, s, None, Notes::NONE);
                return;
            }
            if first_sep.is_none() && v::cn_landline(d, None) {
                let ctx = if h.any(KeyHints::PHONE) {
                    h
                } else {
                    self.context(val, s, w)
                };
                if ctx.any(KeyHints::PHONE) {
                    self.emit(w, Label::Landline, 85, tok, s, None, Notes::NONE);
                }
            }
            return;
        }
        if (13..=19).contains(&n) && d.iter().all(u8::is_ascii_digit) {
            // Only a known scheme or card context can make a card (see `card`); the IIN
            // ranges are cheaper than the checksum.
            let scheme = v::card_scheme(d);
            if (scheme.is_some() || h.any(KeyHints::CARD_CTX)) && v::luhn(d) {
                self.card(val, s, e, d, scheme, w, neg);
            }
        }
    }

    /// Payment cards (ISO/IEC 7812): Luhn already holds. Without card context a number must
    /// also be in a known Chinese issuer's BIN; with context any scheme's IIN range will do.
    #[allow(clippy::too_many_arguments)]
    fn card(
        &mut self,
        val: &[u8],
        s: usize,
        e: usize,
        d: &[u8],
        scheme: Option<CardScheme>,
        w: &Where<'_>,
        neg: bool,
    ) {
        let tok = &val[s..e];
        let h = w.hints;
        let ctx = if h.any(KeyHints::CARD_CTX) {
            h
        } else if scheme.is_some() {
            self.context(val, s, w)
        } else {
            h
        };
        let has_ctx = ctx.any(KeyHints::CARD_CTX);
        let (label, conf) = match scheme {
            Some(CardScheme::ChineseIssuer) if has_ctx => (Label::BankCard, 98),
            Some(CardScheme::ChineseIssuer) if !neg => (Label::BankCard, 90),
            Some(CardScheme::UnionPay) if has_ctx => (Label::BankCard, 95),
            Some(_) if has_ctx => (Label::CreditCard, 92),
            None if has_ctx && d.len() >= 16 => (Label::BankCard, 70),
            _ => return,
        };
        self.emit(w, label, conf, tok, s, None, Notes::NONE);
    }

    fn upper_alnum(&mut self, val: &[u8], s: usize, e: usize, c: &Counts, w: &Where<'_>) {
        let tok = &val[s..e];
        if c[K_DOT] + c[K_COLON] + c[K_UNDER] + c[K_AT] + c[K_PLUS] > 0 {
            if c[K_RUN] >= 9 {
                self.split_numeric(val, s, e, w);
            }
            return;
        }
        let mut buf = [0u8; 40];
        let mut n = 0;
        for &b in tok {
            if b != b' ' && b != b'-' {
                if n == buf.len() {
                    return;
                }
                buf[n] = b;
                n += 1;
            }
        }
        let d = &buf[..n];
        let h = w.hints;
        match n {
            18 if c[K_SP] == 0 => match v::uscc(d) {
                UsccCheck::Strong => {
                    let conf = if h.any(KeyHints::USCC) { 98 } else { 90 };
                    self.emit(w, Label::Uscc, conf, tok, s, None, Notes::NONE);
                    return;
                }
                UsccCheck::CheckOnly if h.any(KeyHints::USCC) => {
                    self.emit(w, Label::Uscc, 80, tok, s, None, Notes::NONE);
                    return;
                }
                _ => {}
            },
            20 if v::aws_access_key(d) => {
                self.emit(w, Label::AwsAccessKey, 97, tok, s, None, Notes::NONE);
                return;
            }
            9 | 11 => {
                self.travel_document(val, s, e, d, w);
                return;
            }
            _ => {}
        }
        if (15..=34).contains(&n)
            && d[0].is_ascii_uppercase()
            && d[1].is_ascii_uppercase()
            && v::iban(d)
        {
            let conf = if h.any(KeyHints::IBAN) { 99 } else { 97 };
            self.emit(w, Label::Iban, conf, tok, s, None, Notes::NONE);
        }
    }

    /// PRC passport (E/G/D/S/P + 8 digits, or E + letter + 7 digits) and mainland travel
    /// permits for Hong Kong/Macau (C/W + 8 digits) or home-return permits (H/M + 8 or 10
    /// digits). These shapes are common in other identifiers, so context is required.
    fn travel_document(&mut self, val: &[u8], s: usize, e: usize, d: &[u8], w: &Where<'_>) {
        let digits = d.iter().filter(|b| b.is_ascii_digit()).count();
        let first = d[0];
        let passport =
            (d.len() == 9 && matches!(first, b'E' | b'G' | b'D' | b'S' | b'P') && digits == 8)
                || (d.len() == 9 && first == b'E' && d[1].is_ascii_uppercase() && digits == 7);
        let permit = (d.len() == 9 && matches!(first, b'C' | b'W' | b'H' | b'M') && digits == 8)
            || (d.len() == 11 && matches!(first, b'H' | b'M') && digits == 10);
        if !passport && !permit {
            return;
        }
        let ctx = self.context(val, s, w);
        let tok = &val[s..e];
        if passport && ctx.any(KeyHints::PASSPORT.or(KeyHints::IDDOC)) {
            self.emit(w, Label::CnPassport, 90, tok, s, None, Notes::NONE);
        } else if permit && ctx.any(KeyHints::PERMIT.or(KeyHints::IDDOC)) {
            self.emit(w, Label::HkMacauPermit, 90, tok, s, None, Notes::NONE);
        }
    }

    fn email(&mut self, val: &[u8], s: usize, e: usize, c: &Counts, w: &Where<'_>) {
        let tok = &val[s..e];
        let Some(at) = memchr::memchr(b'@', tok) else {
            return;
        };
        // The local part starts after the last character that cannot be in it (`mailto:`).
        let ls = tok[..at]
            .iter()
            .rposition(|b| !(b.is_ascii_alphanumeric() || b"._%+-*".contains(b)))
            .map_or(0, |p| p + 1);
        let cand = &tok[ls..];
        if c[K_STAR] > 0 {
            if let Some(shape) = mask::shape_of(&cand[..at - ls], false) {
                let domain = &cand[at - ls..];
                if v::email(&[b"a", domain].concat()) {
                    self.emit(w, Label::Email, 85, cand, s + ls, Some(shape), Notes::NONE);
                }
            }
            return;
        }
        if v::email(cand) {
            let conf = if w.hints.any(KeyHints::EMAIL) { 98 } else { 95 };
            self.emit(w, Label::Email, conf, cand, s + ls, None, Notes::NONE);
        }
    }

    fn ipv4(&mut self, val: &[u8], s: usize, e: usize, w: &Where<'_>) {
        if w.hints.any(KeyHints::VERSION) {
            return;
        }
        let tok = &val[s..e];
        if let Some(o) = v::parse_ipv4(tok) {
            // 0.x.x.x and all-zero-ish version-like dotted numbers are not addresses.
            if o[0] == 0 {
                return;
            }
            let label = if v::ipv4_private(o) {
                Label::IpPrivate
            } else {
                Label::IpPublic
            };
            let conf = if w.hints.any(KeyHints::IP) { 95 } else { 85 };
            self.emit(w, label, conf, tok, s, None, Notes::NONE);
        }
    }

    fn ipv6(&mut self, val: &[u8], s: usize, e: usize, w: &Where<'_>) -> bool {
        let tok = &val[s..e];
        if !tok
            .iter()
            .all(|b| b.is_ascii_hexdigit() || *b == b':' || *b == b'.')
        {
            return false;
        }
        let Ok(text) = std::str::from_utf8(tok) else {
            return false;
        };
        let Ok(addr) = text.parse::<std::net::Ipv6Addr>() else {
            return false;
        };
        if addr.is_unspecified() {
            return false;
        }
        let label = if v::ipv6_private(&addr) {
            Label::IpPrivate
        } else {
            Label::IpPublic
        };
        self.emit(w, label, 90, tok, s, None, Notes::IPV6);
        true
    }

    /// RFC 7519 JWT: three base64url parts (signature may be empty for `alg: none`); the
    /// header must decode to a JSON object with `alg`.
    fn jwt(&mut self, val: &[u8], s: usize, e: usize, w: &Where<'_>) {
        let tok = &val[s..e];
        let mut parts = tok.splitn(3, |&b| b == b'.');
        let (Some(h), Some(p)) = (parts.next(), parts.next()) else {
            return;
        };
        if h.len() > 2048 || p.len() > 16384 {
            return;
        }
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let Ok(hdr) = b64.decode(h) else { return };
        let Ok(hdr) = serde_json::from_slice::<JwtHeader>(&hdr) else {
            return;
        };
        let Some(alg) = hdr.alg else { return };
        let mut notes = Notes::NONE;
        if alg.eq_ignore_ascii_case("none") {
            notes = notes.with(Notes::JWT_ALG_NONE);
        }
        let exp = b64
            .decode(p)
            .ok()
            .and_then(|p| serde_json::from_slice::<JwtClaims>(&p).ok())
            .is_some_and(|c| c.exp.is_some());
        if !exp {
            notes = notes.with(Notes::JWT_NO_EXP);
        }
        self.emit(w, Label::Jwt, 98, tok, s, None, notes);
    }

    /// RFC 7468 private key block starting at the `BEGIN` token at `s`.
    fn pem(&mut self, val: &[u8], s: usize, w: &Where<'_>) -> usize {
        if s < 5 || &val[s - 5..s] != b"-----" {
            return 0;
        }
        let head_end = (s + 48).min(val.len());
        let Some(p) = memchr::memmem::find(&val[s..head_end], b"PRIVATE KEY-----") else {
            return 0;
        };
        let body_from = s + p + 16;
        let limit = (body_from + 16384).min(val.len());
        let end = match memchr::memmem::find(&val[body_from..limit], b"-----END") {
            Some(q) => {
                let after = body_from + q + 8;
                memchr::memmem::find(&val[after..limit], b"-----").map_or(limit, |r| after + r + 5)
            }
            None => limit,
        };
        self.emit(
            w,
            Label::PrivateKey,
            99,
            &val[s - 5..end],
            s - 5,
            None,
            Notes::NONE,
        );
        end
    }

    /// A value the application masked (`138****5678`, `110101********1234`, `6222 **** 1234`):
    /// infer the label from length, visible characters and context; record kept positions.
    fn masked(&mut self, val: &[u8], s: usize, e: usize, x_mask: bool, w: &Where<'_>) {
        let tok = &val[s..e];
        let Some(shape) = mask::shape_of(tok, x_mask) else {
            return;
        };
        let mut buf = [0u8; 64];
        let mut n = 0;
        for &b in tok {
            if b != b' ' && b != b'-' && n < 64 {
                buf[n] = if x_mask && matches!(b, b'x' | b'X') {
                    b'*'
                } else {
                    b
                };
                n += 1;
            }
        }
        let d = &buf[..n];
        if !d
            .iter()
            .all(|b| b.is_ascii_digit() || *b == b'*' || b.is_ascii_uppercase())
        {
            return;
        }
        let visible_digits = d.iter().filter(|b| b.is_ascii_digit()).count();
        let h = self.context(val, s, w);
        let prefix: usize = d.iter().take_while(|b| **b != b'*').count();
        let label = match n {
            11 if d[0] == b'1' && (d[1] == b'*' || (b'3'..=b'9').contains(&d[1])) => Label::Mobile,
            18 if h.any(KeyHints::USCC) => Label::Uscc,
            18 if visible_digits + 1 >= shape.kept_count() as usize => Label::PrcId,
            15 if h.any(KeyHints::ID_CTX) => Label::PrcId,
            13..=19
                if (h.any(KeyHints::CARD_CTX) || prefix >= 4)
                    && (h.any(KeyHints::CARD_CTX)
                        || (prefix >= 6 && v::card_scheme(&pad(d)).is_some())) =>
            {
                if d.starts_with(b"62") || d.starts_with(b"9") || prefix < 2 {
                    Label::BankCard
                } else {
                    match v::card_scheme(&pad(d)) {
                        Some(CardScheme::ChineseIssuer | CardScheme::UnionPay) | None => {
                            Label::BankCard
                        }
                        Some(_) => Label::CreditCard,
                    }
                }
            }
            9..=12 if h.any(KeyHints::PHONE) => Label::Landline,
            9 | 11 if h.any(KeyHints::PASSPORT) => Label::CnPassport,
            9 | 11 if h.any(KeyHints::PERMIT) => Label::HkMacauPermit,
            _ => return,
        };
        let conf = if h.positive() { 90 } else { 80 };
        self.emit(w, label, conf, tok, s, Some(shape), Notes::NONE);
    }

    /// Values decided by their key: credentials, personal attributes.
    #[inline(never)]
    fn keyed(&mut self, val: &[u8], w: &Where<'_>) -> bool {
        let h = w.hints;
        let t = val.trim_ascii();
        let off = t.as_ptr() as usize - val.as_ptr() as usize;
        if t.is_empty() {
            return true;
        }
        let all_stars = t.iter().all(|b| *b == b'*');
        if h.any(KeyHints::PASSWORD) {
            if all_stars || t.len() > 256 || t == b"null" || t == b"undefined" {
                return true;
            }
            let mut notes = Notes::BY_KEY;
            if self.lab.is_common_password(t) {
                notes = notes.with(Notes::WEAK_PASSWORD);
            }
            self.emit(w, Label::Password, 95, t, off, None, notes);
            return true;
        }
        if h.any(KeyHints::CVV) && (3..=4).contains(&t.len()) && t.iter().all(u8::is_ascii_digit) {
            self.emit(w, Label::CardCvv, 95, t, off, None, Notes::BY_KEY);
            return true;
        }
        if h.any(KeyHints::OTP)
            && (4..=8).contains(&t.len())
            && t.iter().all(u8::is_ascii_alphanumeric)
            && t.iter().filter(|b| b.is_ascii_digit()).count() >= 4
        {
            self.emit(w, Label::OtpCode, 92, t, off, None, Notes::BY_KEY);
            return true;
        }
        if h.any(KeyHints::TOKEN.or(KeyHints::SESSION)) {
            let (t2, o2) = match t.get(..7) {
                Some(p) if p.eq_ignore_ascii_case(b"bearer ") => {
                    (t[7..].trim_ascii_start(), off + 7)
                }
                _ => (t, off),
            };
            if t2.starts_with(b"eyJ") {
                return false;
            }
            let min = if h.any(KeyHints::TOKEN) { 16 } else { 8 };
            if t2.len() >= min
                && t2.len() <= 8192
                && t2.iter().all(|b| b.is_ascii_graphic())
                && !all_stars
            {
                let label = if h.any(KeyHints::SESSION) {
                    Label::SessionId
                } else {
                    Label::ApiToken
                };
                self.emit(w, label, 85, t2, o2, None, Notes::BY_KEY);
                return true;
            }
        }
        if h.any(KeyHints::NAME_STRONG.or(KeyHints::NAME_WEAK)) && self.person_name(t, off, w) {
            return true;
        }
        if h.any(KeyHints::ADDRESS) && self.address(t, off, w) {
            return true;
        }
        if h.any(KeyHints::BIRTH) && birth_date(t, self.lab.max_year) {
            self.emit(w, Label::BirthDate, 90, t, off, None, Notes::BY_KEY);
            return true;
        }
        if h.any(KeyHints::GENDER) && gender(t) {
            self.emit(w, Label::Gender, 90, t, off, None, Notes::BY_KEY);
            return true;
        }
        if h.any(KeyHints::PLATE) && plate(t) {
            self.emit(w, Label::LicensePlate, 97, t, off, None, Notes::NONE);
            return true;
        }
        false
    }

    #[inline(never)]
    fn unkeyed_cjk(&mut self, val: &[u8], w: &Where<'_>) -> bool {
        let t = val.trim_ascii();
        if plate(t) {
            self.emit(w, Label::LicensePlate, 85, t, 0, None, Notes::NONE);
            return true;
        }
        false
    }

    fn is_surname(&self, chars: &[char]) -> bool {
        if chars.len() >= 3 {
            let mut buf = [0u8; 8];
            let a = chars[0].encode_utf8(&mut buf).len();
            let b = chars[1].encode_utf8(&mut buf[a..]).len();
            let two = &buf[..a + b];
            if names::COMPOUND_SURNAMES.iter().any(|s| s.as_bytes() == two) {
                return true;
            }
        }
        chars
            .first()
            .is_some_and(|c| self.lab.surnames.binary_search(&u32::from(*c)).is_ok())
    }

    fn person_name(&mut self, t: &[u8], off: usize, w: &Where<'_>) -> bool {
        let strong = w.hints.any(KeyHints::NAME_STRONG);
        if t.len() > 64 {
            return false;
        }
        if t[0] >= 0x80 {
            // Decoded here rather than validating the whole value first: only CJK ideographs,
            // '·' and the two asterisks may occur, and any other sequence (valid UTF-8 or not)
            // means "not a name", so names under `name` keys (products, merchants) are
            // rejected at their first foreign character.
            let mut chars = ['\0'; 8];
            let mut n = 0;
            let mut stars = 0;
            let mut i = 0;
            while i < t.len() {
                if n == chars.len() {
                    return false;
                }
                let Some((ch, len)) = name_char(&t[i..]) else {
                    return false;
                };
                if ch == '*' || ch == '＊' {
                    stars += 1;
                }
                chars[n] = ch;
                n += 1;
                i += len;
            }
            let chars = &chars[..n];
            if stars > 0 {
                let mut kept = 0u64;
                for (i, ch) in chars.iter().enumerate() {
                    if *ch != '*' && *ch != '＊' {
                        kept |= 1 << i;
                    }
                }
                if kept == 0 || n < 2 {
                    return true;
                }
                let conf = if strong {
                    90
                } else if self.is_surname(chars) {
                    80
                } else {
                    60
                };
                let shape = MaskShape { len: n as u8, kept };
                self.emit(
                    w,
                    Label::PersonName,
                    conf,
                    t,
                    off,
                    Some(shape),
                    Notes::BY_KEY,
                );
                return true;
            }
            if !(2..=6).contains(&n) {
                return false;
            }
            let conf = match (strong, self.is_surname(chars)) {
                (true, true) => 95,
                (true, false) => 70,
                (false, true) => 75,
                (false, false) => return false,
            };
            self.emit(w, Label::PersonName, conf, t, off, None, Notes::BY_KEY);
            return true;
        }
        let Ok(text) = std::str::from_utf8(t) else {
            return false;
        };
        // Latin-script names: 2–4 capitalised words.
        let words: Vec<&str> = text.split_whitespace().collect();
        let ok = (2..=4).contains(&words.len())
            && words.iter().all(|wd| {
                let mut cs = wd.chars();
                cs.next().is_some_and(|c| c.is_uppercase())
                    && cs.all(|c| c.is_alphabetic() || c == '\'' || c == '-' || c == '.')
            });
        if ok {
            let conf = if strong { 90 } else { 65 };
            self.emit(w, Label::PersonName, conf, t, off, None, Notes::BY_KEY);
            return true;
        }
        false
    }

    fn address(&mut self, t: &[u8], off: usize, w: &Where<'_>) -> bool {
        let Ok(text) = std::str::from_utf8(t) else {
            return false;
        };
        let cjk = text
            .chars()
            .filter(|c| ('\u{4e00}'..='\u{9fff}').contains(c))
            .count();
        let ok = if cjk >= 4 {
            text.chars().any(|c| names::ADDRESS_MARKERS.contains(c))
        } else {
            t.len() >= 10
                && t.iter().any(u8::is_ascii_digit)
                && t.iter().filter(|b| b.is_ascii_alphabetic()).count() >= 4
                && t.contains(&b' ')
        };
        if ok {
            self.emit(w, Label::Address, 88, t, off, None, Notes::BY_KEY);
        }
        ok
    }
}

/// The character a Chinese name (or its masked form) may contain at the start of `t`, with
/// its UTF-8 length: a CJK unified ideograph (U+4E00–U+9FFF), '·', '*' or '＊'.
fn name_char(t: &[u8]) -> Option<(char, usize)> {
    match *t {
        [b'*', ..] => Some(('*', 1)),
        [0xC2, 0xB7, ..] => Some(('·', 2)),
        [0xEF, 0xBC, 0x8A, ..] => Some(('＊', 3)),
        [b0 @ 0xE4..=0xE9, b1 @ 0x80..=0xBF, b2 @ 0x80..=0xBF, ..] => {
            let cp =
                (u32::from(b0 & 0x0F) << 12) | (u32::from(b1 & 0x3F) << 6) | u32::from(b2 & 0x3F);
            if (0x4E00..=0x9FFF).contains(&cp) {
                char::from_u32(cp).map(|c| (c, 3))
            } else {
                None
            }
        }
        _ => None,
    }
}

fn pad(d: &[u8]) -> Vec<u8> {
    d.iter()
        .map(|b| if *b == b'*' { b'0' } else { *b })
        .collect()
}

/// `YYYY-MM-DD`, `YYYY/MM/DD`, `YYYY.MM.DD`, `YYYYMMDD`, `YYYY年M月D日`, optionally followed by
/// a time.
fn birth_date(t: &[u8], max_year: u32) -> bool {
    let mut groups = [0u32; 3];
    let mut lens = [0usize; 3];
    let mut g = 0;
    let mut i = 0;
    while i < t.len() && g < 3 {
        if t[i].is_ascii_digit() {
            let st = i;
            let mut x = 0u32;
            while i < t.len() && t[i].is_ascii_digit() && i - st < 9 {
                x = x * 10 + u32::from(t[i] - b'0');
                i += 1;
            }
            groups[g] = x;
            lens[g] = i - st;
            g += 1;
        } else if i == 0 {
            return false;
        } else {
            i += 1;
        }
    }
    if g >= 1 && lens[0] == 8 {
        return v::valid_yyyymmdd(&t[..8], 1900, max_year);
    }
    g == 3 && lens[0] == 4 && v::valid_date(groups[0], groups[1], groups[2], 1900, max_year)
}

fn gender(t: &[u8]) -> bool {
    let l = t.to_ascii_lowercase();
    matches!(
        l.as_slice(),
        b"m" | b"f"
            | b"male"
            | b"female"
            | b"man"
            | b"woman"
            | b"0"
            | b"1"
            | b"2"
            | b"u"
            | b"unknown"
            | b"other"
    ) || matches!(
        std::str::from_utf8(t),
        Ok("男" | "女" | "未知" | "男性" | "女性")
    )
}

/// Mainland China plate (GA 36-2018): province abbreviation, issuing-authority letter, an
/// optional separator, then 5 characters (6 for new-energy plates) of A–Z without I/O, 0–9.
fn plate(t: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(t) else {
        return false;
    };
    let mut cs = text.chars();
    let Some(p) = cs.next() else { return false };
    if !names::PLATE_PROVINCES.contains(p) {
        return false;
    }
    let Some(letter) = cs.next() else {
        return false;
    };
    if !letter.is_ascii_uppercase() {
        return false;
    }
    let rest: Vec<char> = cs.filter(|c| !matches!(c, '-' | '·' | '•' | ' ')).collect();
    (rest.len() == 5 || rest.len() == 6)
        && rest
            .iter()
            .all(|c| c.is_ascii_digit() || (c.is_ascii_uppercase() && *c != 'I' && *c != 'O'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-at-a-time definition of [`counts`].
    fn counts_reference(tok: &[u8]) -> Counts {
        let mut c: Counts = [0; 12];
        let (mut run, mut max_run) = (0u32, 0u32);
        for &b in tok {
            match b {
                b'0'..=b'9' => c[K_DIG] += 1,
                b'A'..=b'Z' => c[K_UP] += 1,
                b'a'..=b'z' => c[K_LO] += 1,
                b' ' => c[K_SP] += 1,
                _ => c[TABLES.1[b as usize] as usize] += 1,
            }
            run = if b.is_ascii_digit() || b == b'-' || b == b'+' {
                run + 1
            } else {
                0
            };
            max_run = max_run.max(run);
        }
        c[K_RUN] = max_run;
        c
    }

    #[test]
    fn word_counts_match_the_byte_definition() {
        let alphabet = b"0123456789AZaz.-@:*_+ xX\x80\xe4";
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for len in 0..40 {
            for _ in 0..500 {
                let tok: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        // Runs of digits are what the run counter is about: favour them.
                        if seed.is_multiple_of(3) {
                            b'7'
                        } else {
                            alphabet[(seed >> 8) as usize % alphabet.len()]
                        }
                    })
                    .collect();
                assert_eq!(counts(&tok), counts_reference(&tok), "{tok:?}");
            }
        }
        assert_eq!(counts(b"6222-0212-3456-7890")[K_RUN], 19);
        assert_eq!(counts(b"abc+8613812345678x")[K_RUN], 14);
    }

    #[test]
    fn name_chars_are_the_allowed_utf8_sequences() {
        // Every character a name may hold decodes; every other character, and every invalid
        // sequence, does not.
        for c in ['\u{4e00}', '\u{9fff}', '张', '·', '*', '＊'] {
            let mut b = [0u8; 4];
            let s = c.encode_utf8(&mut b);
            assert_eq!(name_char(s.as_bytes()), Some((c, s.len())), "{c}");
        }
        for c in ['\u{4dff}', '\u{a000}', 'a', '(', '（', '😀', 'é'] {
            let mut b = [0u8; 4];
            assert_eq!(name_char(c.encode_utf8(&mut b).as_bytes()), None, "{c}");
        }
        assert_eq!(name_char(&[0xE5, 0xBC]), None);
        assert_eq!(name_char(&[0xE5, 0xBC, 0x20]), None);
        assert_eq!(name_char(&[0xE5, 0x20, 0xA0]), None);
    }

    #[test]
    fn dates_genders_plates() {
        assert!(birth_date(b"1990-01-02", 2100));
        assert!(birth_date(b"19900102", 2100));
        assert!(birth_date("1990年1月2日".as_bytes(), 2100));
        assert!(!birth_date(b"1990-13-02", 2100));
        assert!(gender("男".as_bytes()));
        assert!(gender(b"Female"));
        assert!(plate("京A12345".as_bytes()));
        assert!(plate("湘H-53374".as_bytes()));
        assert!(plate("粤B·D12345".as_bytes()));
        assert!(!plate("京A1234".as_bytes()));
        assert!(!plate("北京市".as_bytes()));
    }
}
