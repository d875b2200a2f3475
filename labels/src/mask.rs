//! Masking policy: how much of each label a masked sample (and the in-place masking of
//! `payload = sample`, R-CAP-8) keeps. The table is mirrored in `docs/sensitive-data.md`.
use crate::label::{Label, MaskShape};

/// What a masked rendering keeps of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Keep this many leading and trailing characters.
    Chars(u8, u8),
    /// Keep nothing; samples are a fixed `******` (length not revealed).
    Secret,
    /// Keep the first character of the local part and the domain.
    Email,
    /// Keep the first two octets (v4) or groups (v6).
    Ip,
    /// Keep the year of a date.
    Year,
}

/// The masking policy of each label.
pub fn policy(label: Label) -> Keep {
    use Label::*;
    match label {
        PrcId | Uscc => Keep::Chars(2, 2),
        Mobile => Keep::Chars(3, 4),
        Landline | UsSsn => Keep::Chars(0, 4),
        BankCard | CreditCard => Keep::Chars(4, 4),
        Iban => Keep::Chars(2, 4),
        CnPassport | HkMacauPermit => Keep::Chars(1, 2),
        Email => Keep::Email,
        IpPublic | IpPrivate => Keep::Ip,
        Password | CardCvv | OtpCode | BearerToken | BasicAuth | ApiToken | SessionId
        | PrivateKey => Keep::Secret,
        Jwt => Keep::Chars(3, 0),
        AwsAccessKey => Keep::Chars(4, 0),
        PersonName => Keep::Chars(1, 0),
        Address => Keep::Chars(3, 0),
        BirthDate => Keep::Year,
        Gender => Keep::Chars(0, 0),
        LicensePlate => Keep::Chars(2, 0),
    }
}

fn prefix_bytes(s: &[u8], chars: usize) -> usize {
    let mut i = 0;
    let mut n = 0;
    while i < s.len() && n < chars {
        i += utf8_len(s[i]);
        n += 1;
    }
    i.min(s.len())
}

fn suffix_bytes(s: &[u8], chars: usize) -> usize {
    let mut i = s.len();
    let mut n = 0;
    while i > 0 && n < chars {
        i -= 1;
        while i > 0 && (s[i] & 0xC0) == 0x80 {
            i -= 1;
        }
        n += 1;
    }
    s.len() - i
}

fn utf8_len(b: u8) -> usize {
    match b {
        0xF0..=0xF7 => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

fn char_count(s: &[u8]) -> usize {
    s.iter().filter(|b| (**b & 0xC0) != 0x80).count()
}

/// Leading and trailing bytes of `raw` that the label's policy keeps (on character
/// boundaries; never more than half the value for short values).
pub fn keep_bytes(label: Label, raw: &[u8]) -> (usize, usize) {
    let (p, s) = match policy(label) {
        Keep::Chars(p, s) => {
            let n = char_count(raw);
            let (mut p, mut s) = (usize::from(p), usize::from(s));
            // Short values: never reveal more than two thirds.
            while p + s > 0 && (p + s) * 3 > n * 2 {
                if s >= p && s > 0 {
                    s -= 1;
                } else {
                    p -= 1;
                }
            }
            (prefix_bytes(raw, p), suffix_bytes(raw, s))
        }
        Keep::Secret => (0, 0),
        Keep::Email => match memchr::memchr(b'@', raw) {
            Some(at) if at > 0 => (prefix_bytes(raw, 1), raw.len() - at),
            _ => (0, 0),
        },
        Keep::Ip => {
            let sep = if raw.contains(&b':') { b':' } else { b'.' };
            let mut seen = 0;
            let mut p = 0;
            for (i, b) in raw.iter().enumerate() {
                if *b == sep {
                    seen += 1;
                    if seen == 2 {
                        p = i + 1;
                        break;
                    }
                }
            }
            (p, 0)
        }
        Keep::Year => (prefix_bytes(raw, 4.min(char_count(raw) / 2)), 0),
    };
    if p + s > raw.len() { (0, 0) } else { (p, s) }
}

/// Appends the masked sample of `value` to `out` (at most 16 mask characters in the middle).
pub fn render_sample(label: Label, value: &[u8], out: &mut String) {
    if policy(label) == Keep::Secret {
        out.push_str(if label == Label::PrivateKey {
            "-----BEGIN PRIVATE KEY-----******"
        } else {
            "******"
        });
        return;
    }
    let (p, s) = keep_bytes(label, value);
    let middle = &value[p..value.len() - s];
    push_lossy(out, &value[..p]);
    let stars = char_count(middle).clamp(1, 16);
    out.push_str(&"****************"[..stars]);
    push_lossy(out, &value[value.len() - s..]);
}

/// Appends bytes as text, invalid UTF-8 replaced (validating first: `from_utf8_lossy` walks
/// chunk by chunk even when everything is valid).
pub(crate) fn push_lossy(out: &mut String, b: &[u8]) {
    match std::str::from_utf8(b) {
        Ok(s) => out.push_str(s),
        Err(_) => out.push_str(&String::from_utf8_lossy(b)),
    }
}

/// Masks `buf` in place per the label's policy, keeping its byte length (every masked byte
/// becomes `*`, so UTF-8 stays valid when the range is on character boundaries).
pub fn mask_in_place(label: Label, buf: &mut [u8]) {
    let (p, s) = keep_bytes(label, buf);
    let end = buf.len() - s;
    for b in &mut buf[p..end] {
        *b = b'*';
    }
}

/// Shape of an application-masked token: mask characters are `*`, `•`-less ASCII only, or
/// `x`/`X` runs; separators (space, `-`) are skipped. `None` when longer than 64 characters
/// or nothing is kept / nothing is masked.
// Out of line: inlined into the scanner's `masked` the loop runs out of registers.
#[inline(never)]
pub fn shape_of(token: &[u8], x_is_mask: bool) -> Option<MaskShape> {
    let mut len = 0u8;
    let mut kept = 0u64;
    let mut masked = 0;
    for &b in token {
        if b == b' ' || b == b'-' {
            continue;
        }
        if len >= 64 {
            return None;
        }
        let is_mask = b == b'*' || (x_is_mask && (b == b'x' || b == b'X'));
        if is_mask {
            masked += 1;
        } else {
            kept |= 1u64 << len;
        }
        len += 1;
    }
    (masked > 0 && kept != 0).then_some(MaskShape { len, kept })
}

/// Can the union of these masks' kept positions rebuild the value? Returns the number of
/// positions still unknown when that union reveals more than each mask alone.
pub fn union_unknown(shapes: &[MaskShape]) -> Option<u32> {
    let len = shapes.first()?.len;
    if shapes.iter().any(|m| m.len != len) {
        return None;
    }
    let union = shapes.iter().fold(0u64, |a, m| a | m.kept);
    let best_single = shapes.iter().map(|m| m.kept_count()).max().unwrap_or(0);
    let union_count = union.count_ones();
    (union_count > best_single).then(|| u32::from(len) - union_count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(label: Label, v: &str) -> String {
        let mut s = String::new();
        render_sample(label, v.as_bytes(), &mut s);
        s
    }

    #[test]
    fn samples_follow_the_policy() {
        assert_eq!(sample(Label::Mobile, "13812345678"), "138****5678");
        assert_eq!(
            sample(Label::PrcId, "11010519491231002X"),
            "11**************2X"
        );
        assert_eq!(
            sample(Label::Email, "alice@example.com"),
            "a****@example.com"
        );
        assert_eq!(sample(Label::IpPublic, "203.0.113.7"), "203.0.*****");
        assert_eq!(sample(Label::Password, "hunter2"), "******");
        assert_eq!(sample(Label::PersonName, "张三"), "张*");
        assert_eq!(sample(Label::BirthDate, "1990-01-02"), "1990******");
        assert_eq!(sample(Label::Gender, "男"), "*");
    }

    #[test]
    fn in_place_keeps_length_and_utf8() {
        let mut v = "张三丰".as_bytes().to_vec();
        mask_in_place(Label::PersonName, &mut v);
        assert_eq!(std::str::from_utf8(&v).unwrap(), "张******");
        let mut m = b"13812345678".to_vec();
        mask_in_place(Label::Mobile, &mut m);
        assert_eq!(&m, b"138****5678");
    }

    #[test]
    fn mask_shapes_and_reassembly() {
        let a = shape_of(b"138****5678", false).unwrap();
        assert_eq!(a.pattern(), "KKK****KKKK");
        let b = shape_of(b"138123**678", false).unwrap();
        assert_eq!(union_unknown(&[a, b]), Some(1));
        assert_eq!(union_unknown(&[a, a]), None);
        let x = shape_of(b"110101xxxxxxxx1234", true).unwrap();
        assert_eq!(x.kept_count(), 10);
        assert!(shape_of(b"********", false).is_none());
    }
}
