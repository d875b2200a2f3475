//! Structured tokens: passports and permits, e-mail, IP addresses, JWTs, PEM keys,
//! application-masked values.

use super::*;

#[derive(Deserialize)]
pub(crate) struct JwtHeader {
    alg: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct JwtClaims {
    exp: Option<serde::de::IgnoredAny>,
}

impl Ctx<'_> {
    pub(crate) fn upper_alnum(
        &mut self,
        val: &[u8],
        s: usize,
        e: usize,
        c: &Counts,
        w: &Where<'_>,
    ) {
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
    pub(crate) fn travel_document(
        &mut self,
        val: &[u8],
        s: usize,
        e: usize,
        d: &[u8],
        w: &Where<'_>,
    ) {
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

    pub(crate) fn email(&mut self, val: &[u8], s: usize, e: usize, c: &Counts, w: &Where<'_>) {
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

    pub(crate) fn ipv4(&mut self, val: &[u8], s: usize, e: usize, w: &Where<'_>) {
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

    pub(crate) fn ipv6(&mut self, val: &[u8], s: usize, e: usize, w: &Where<'_>) -> bool {
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
    pub(crate) fn jwt(&mut self, val: &[u8], s: usize, e: usize, w: &Where<'_>) {
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
    pub(crate) fn pem(&mut self, val: &[u8], s: usize, w: &Where<'_>) -> usize {
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
    pub(crate) fn masked(&mut self, val: &[u8], s: usize, e: usize, x_mask: bool, w: &Where<'_>) {
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
}
