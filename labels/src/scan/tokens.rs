//! The tokenizer: byte classes, shape counters per token, and the dispatch from a token's
//! shape to the validators it allows.

use super::*;

// Byte classes of the tokenizer.
pub(crate) const DG: u8 = 1; // digit
pub(crate) const UP: u8 = 2; // upper-case letter
pub(crate) const LO: u8 = 4; // lower-case letter
pub(crate) const JN: u8 = 8; // joiner inside a token: . - _ @ : *  +
pub(crate) const STT: u8 = 16; // may start a token: alphanumeric, '+', '*'
pub(crate) const GRP: u8 = 32; // may start a space-joined group: digit, upper-case, '*'
pub(crate) const SPC: u8 = 64; // '@', ':' or '*': e-mail, IPv6 or masked values
pub(crate) const NG: u8 = 128; // inside a token but not in a space-joined group: a-z . - @ : _

// Counter slots.
pub(crate) const K_RUN: usize = 0;
pub(crate) const K_DIG: usize = 1;
pub(crate) const K_UP: usize = 2;
pub(crate) const K_LO: usize = 3;
pub(crate) const K_DOT: usize = 4;
pub(crate) const K_DASH: usize = 5;
pub(crate) const K_AT: usize = 6;
pub(crate) const K_COLON: usize = 7;
pub(crate) const K_STAR: usize = 8;
pub(crate) const K_UNDER: usize = 9;
pub(crate) const K_PLUS: usize = 10;
pub(crate) const K_SP: usize = 11;

pub(crate) const fn build_tables() -> ([u8; 256], [u8; 256]) {
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

pub(crate) static TABLES: ([u8; 256], [u8; 256]) = build_tables();

pub(crate) type Counts = [u32; 12];

/// Runs of set bits in each byte value: (longest, from bit 0 up, from bit 7 down).
pub(crate) const fn build_runs() -> [(u8, u8, u8); 256] {
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

pub(crate) static RUNS: [(u8, u8, u8); 256] = build_runs();

pub(crate) const HI: u64 = 0x8080_8080_8080_8080;
pub(crate) const fn splat(b: u8) -> u64 {
    0x0101_0101_0101_0101u64 * b as u64
}

/// Shape counters of a token; slot `K_RUN` holds the longest run of `[0-9+-]`. Eight bytes at
/// a time: digits, letters and the run bytes are found with word arithmetic on ASCII (one high
/// bit per byte), the few other bytes are counted one by one.
pub(crate) fn counts(tok: &[u8]) -> Counts {
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
pub(crate) struct CountAcc {
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
    pub(crate) fn word(&mut self, w: u64, ch: &[u8], valid: u64) {
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

impl Ctx<'_> {
    #[inline(never)]
    pub(crate) fn tokens(&mut self, val: &[u8], w: &Where<'_>) {
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
    pub(crate) fn classify(
        &mut self,
        val: &[u8],
        s: usize,
        e: usize,
        c: &Counts,
        w: &Where<'_>,
    ) -> usize {
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

    pub(crate) fn groups(&mut self, val: &[u8], s: usize, e: usize, w: &Where<'_>) {
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

    pub(crate) fn classify_one(
        &mut self,
        val: &[u8],
        s: usize,
        e: usize,
        c: &Counts,
        w: &Where<'_>,
    ) -> usize {
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
    pub(crate) fn split_numeric(&mut self, val: &[u8], s: usize, e: usize, w: &Where<'_>) {
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
    pub(crate) fn context(&mut self, val: &[u8], s: usize, w: &Where<'_>) -> KeyHints {
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
}
