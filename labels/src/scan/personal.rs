//! Key-driven and personal values: passwords and secrets by field name, Chinese names and
//! addresses, birth dates, gender, licence plates.

use super::*;

impl Ctx<'_> {
    /// Values decided by their key: credentials, personal attributes.
    #[inline(never)]
    pub(crate) fn keyed(&mut self, val: &[u8], w: &Where<'_>) -> bool {
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
    pub(crate) fn unkeyed_cjk(&mut self, val: &[u8], w: &Where<'_>) -> bool {
        let t = val.trim_ascii();
        if plate(t) {
            self.emit(w, Label::LicensePlate, 85, t, 0, None, Notes::NONE);
            return true;
        }
        false
    }

    pub(crate) fn is_surname(&self, chars: &[char]) -> bool {
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

    pub(crate) fn person_name(&mut self, t: &[u8], off: usize, w: &Where<'_>) -> bool {
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

    pub(crate) fn address(&mut self, t: &[u8], off: usize, w: &Where<'_>) -> bool {
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
pub(crate) fn name_char(t: &[u8]) -> Option<(char, usize)> {
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

pub(crate) fn pad(d: &[u8]) -> Vec<u8> {
    d.iter()
        .map(|b| if *b == b'*' { b'0' } else { *b })
        .collect()
}

/// `YYYY-MM-DD`, `YYYY/MM/DD`, `YYYY.MM.DD`, `YYYYMMDD`, `YYYY年M月D日`, optionally followed by
/// a time.
pub(crate) fn birth_date(t: &[u8], max_year: u32) -> bool {
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

pub(crate) fn gender(t: &[u8]) -> bool {
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
pub(crate) fn plate(t: &[u8]) -> bool {
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
