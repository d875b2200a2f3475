//! The value scanner: one pass over each value with a byte-class tokenizer (a hand-written
//! DFA), shape counters per token, then only the validators the shape allows
//! (pattern → validation → context → score). Key-driven labels (passwords, names, …) are
//! decided on the whole value first.
//!
//! The tokenizer and shape dispatch are in `tokens`, numeric validators in `numeric`,
//! structured formats in `formats`, key-driven and personal values in `personal`.
use std::collections::HashSet;

use base64::Engine as _;
use serde::Deserialize;

use crate::hash::{HashKey, normalise};
use crate::hints::{HintClassifier, KeyHints};
use crate::label::{Direction, Finding, Label, Location, MaskShape, Notes, Part, ValueHash};
use crate::mask;
use crate::names;
use crate::validate::{self as v, CardScheme, UsccCheck};

mod formats;
mod numeric;
mod personal;
mod tokens;

use personal::*;
use tokens::*;

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
    /// At most this many distinct value hashes per event for the trace-back store
    /// ([`crate::EventLabels::traced`]), over every finding, beyond `max_hashes_per_finding`
    /// (a bulk export's thousandth ID must be traceable too); further ones are counted in
    /// `traced_dropped`. 0 (the default): none collected.
    pub max_traced_hashes: usize,
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
            max_traced_hashes: 0,
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

const COMMON_PASSWORDS: &str = include_str!("../../data/common-passwords.txt");

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
    /// Reusable tokens of a JSON text lexed by the labeller itself (one not shared through
    /// the event's facts: nested in a string, in a multipart part or a form value).
    pub json_toks: Vec<crate::json::Tok>,
    /// Reusable field-path buffer of a top-level body walk.
    pub path_buf: Vec<u8>,
    /// Distinct value hashes of the event for trace-back, with their label and direction.
    pub traced: Vec<crate::event::TracedHash>,
    /// Their set (the list can hold thousands; a linear search per value would be quadratic).
    pub traced_seen: HashSet<(Label, Direction, ValueHash)>,
    /// Hashes beyond `max_traced_hashes`.
    pub traced_dropped: u32,
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
        self.traced.clear();
        self.traced_seen.clear();
        self.traced_dropped = 0;
    }
}

/// The scanning context handed to the structure parsers.
pub(crate) struct Ctx<'a> {
    pub lab: &'a Labeller,
    pub cache: &'a mut HintCache,
    pub st: &'a mut State,
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
        let max_traced = self.lab.config.max_traced_hashes;
        if hashable && max_traced > 0 {
            let h = self.lab.key.hash_normalised(&self.st.norm);
            let key = (label, w.dir, h);
            if !self.st.traced_seen.contains(&key) {
                if self.st.traced.len() < max_traced {
                    self.st.traced_seen.insert(key);
                    self.st.traced.push(crate::event::TracedHash {
                        label,
                        direction: w.dir,
                        hash: h,
                    });
                } else {
                    self.st.traced_dropped = self.st.traced_dropped.saturating_add(1);
                }
            }
        }
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
