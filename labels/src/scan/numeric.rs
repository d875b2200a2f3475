//! Numeric tokens: PRC resident IDs, USCC, phone numbers, bank and credit cards, SSNs.

use super::*;

impl Ctx<'_> {
    pub(crate) fn numeric(&mut self, val: &[u8], s: usize, e: usize, w: &Where<'_>) {
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
    pub(crate) fn card(
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
}
