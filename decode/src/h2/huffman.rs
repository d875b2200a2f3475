//! The HPACK static Huffman code (RFC 7541 §5.2, Appendix B), decode side only.
//!
//! The code of Appendix B is canonical (codes of one length are consecutive and ordered by
//! symbol; a test checks this against the RFC's own examples), so only the code *lengths* are
//! kept here and the decoder works from per-length first codes — no 257-entry code table to
//! mistype, no tree allocation. Decoding rules enforced (§5.2): padding longer than 7 bits, or
//! padding that is not the most significant bits of EOS (all ones), or an EOS symbol inside
//! the string, are decoding errors.

/// Code length in bits of each symbol 0..=256 (256 is EOS), RFC 7541 Appendix B.
const LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];

const MIN_LEN: usize = 5;
const MAX_LEN: usize = 30;
const EOS: u16 = 256;

/// Per-length canonical decoding tables, built at compile time.
struct Tables {
    /// First code of each length (left-aligned to that length).
    first: [u32; MAX_LEN + 1],
    /// Codes of each length.
    count: [u32; MAX_LEN + 1],
    /// Index in `sorted` of the first symbol of each length.
    offset: [u16; MAX_LEN + 1],
    /// Symbols ordered by (code length, symbol).
    sorted: [u16; 257],
}

const fn build() -> Tables {
    let mut count = [0u32; MAX_LEN + 1];
    let mut s = 0;
    while s < 257 {
        count[LENGTHS[s] as usize] += 1;
        s += 1;
    }
    let mut first = [0u32; MAX_LEN + 1];
    let mut offset = [0u16; MAX_LEN + 1];
    let mut code = 0u32;
    let mut off = 0u16;
    let mut len = 1;
    while len <= MAX_LEN {
        first[len] = code;
        offset[len] = off;
        code = (code + count[len]) << 1;
        off += count[len] as u16;
        len += 1;
    }
    let mut sorted = [0u16; 257];
    let mut next = offset;
    let mut s = 0;
    while s < 257 {
        let l = LENGTHS[s] as usize;
        sorted[next[l] as usize] = s as u16;
        next[l] += 1;
        s += 1;
    }
    Tables {
        first,
        count,
        offset,
        sorted,
    }
}

static TABLES: Tables = build();

/// Why a Huffman string did not decode (RFC 7541 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HuffmanError {
    /// The string contains the EOS symbol.
    #[error("EOS symbol inside a Huffman string")]
    Eos,
    /// Trailing padding is longer than 7 bits or not all ones.
    #[error("invalid Huffman padding")]
    Padding,
}

/// Decodes a Huffman-coded string, appending to `out`.
pub fn decode(input: &[u8], out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    let t = &TABLES;
    // Bits not yet decoded, right-aligned in `acc`; never more than 37 are kept.
    let mut acc: u64 = 0;
    let mut nbits: usize = 0;
    out.reserve(input.len() + input.len() / 2);
    for &b in input {
        acc = (acc << 8) | u64::from(b);
        nbits += 8;
        'symbols: while nbits >= MIN_LEN {
            let mut len = MIN_LEN;
            while len <= nbits.min(MAX_LEN) {
                let code = ((acc >> (nbits - len)) & ((1u64 << len) - 1)) as u32;
                // Canonical code: a code of `len` bits is one of the `count` after `first`.
                let rel = code.wrapping_sub(t.first[len]);
                if code >= t.first[len] && rel < t.count[len] {
                    let sym = t.sorted[usize::from(t.offset[len]) + rel as usize];
                    if sym == EOS {
                        return Err(HuffmanError::Eos);
                    }
                    out.push(sym as u8);
                    nbits -= len;
                    acc &= (1u64 << nbits) - 1;
                    continue 'symbols;
                }
                len += 1;
            }
            // No complete code in the bits held: wait for the next byte.
            break;
        }
    }
    // §5.2: at most 7 bits of padding, all ones (the high bits of EOS).
    if nbits > 7 || acc != (1u64 << nbits) - 1 {
        return Err(HuffmanError::Padding);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn dec(h: &str) -> Result<Vec<u8>, HuffmanError> {
        let mut out = Vec::new();
        decode(&hex(h), &mut out).map(|()| out)
    }

    /// RFC 7541 Appendix C.4 and C.6 Huffman strings.
    #[test]
    fn rfc_examples() {
        assert_eq!(
            dec("f1e3 c2e5 f23a 6ba0 ab90 f4ff").unwrap(),
            b"www.example.com"
        );
        assert_eq!(dec("a8eb 1064 9cbf").unwrap(), b"no-cache");
        assert_eq!(dec("25a8 49e9 5ba9 7d7f").unwrap(), b"custom-key");
        assert_eq!(dec("25a8 49e9 5bb8 e8b4 bf").unwrap(), b"custom-value");
        assert_eq!(dec("6402").unwrap(), b"302");
        assert_eq!(dec("aec3 771a 4b").unwrap(), b"private");
        assert_eq!(
            dec("d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff").unwrap(),
            b"Mon, 21 Oct 2013 20:13:21 GMT"
        );
        assert_eq!(
            dec("9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3").unwrap(),
            b"https://www.example.com"
        );
        assert_eq!(
            dec("94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07").unwrap(),
            b"foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
        );
        assert_eq!(dec("").unwrap(), b"");
    }

    /// Every symbol round-trips through a canonical encoder built from the same lengths, and
    /// the lengths satisfy Kraft's equality (a complete prefix code).
    #[test]
    fn every_symbol_decodes_and_code_is_complete() {
        let kraft: f64 = LENGTHS.iter().map(|&l| 0.5f64.powi(i32::from(l))).sum();
        assert!((kraft - 1.0).abs() < 1e-12, "{kraft}");
        let t = &TABLES;
        let code_of = |s: u16| {
            let l = usize::from(LENGTHS[usize::from(s)]);
            let pos = t.sorted.iter().position(|&x| x == s).unwrap();
            (t.first[l] + (pos as u32 - u32::from(t.offset[l])), l)
        };
        // 'a' is 00011 (5 bits), '0' is 00000, EOS is 30 ones (Appendix B).
        assert_eq!(code_of(u16::from(b'a')), (0b00011, 5));
        assert_eq!(code_of(u16::from(b'0')), (0, 5));
        assert_eq!(code_of(256), ((1 << 30) - 1, 30));
        for s in 0u16..256 {
            let (code, len) = code_of(s);
            // Symbol followed by EOS-prefix padding to a byte boundary.
            let pad = (8 - len % 8) % 8;
            let bits = (u64::from(code) << pad) | ((1u64 << pad) - 1);
            let nbytes = (len + pad) / 8;
            let bytes: Vec<u8> = (0..nbytes).rev().map(|i| (bits >> (8 * i)) as u8).collect();
            let mut out = Vec::new();
            decode(&bytes, &mut out).unwrap();
            assert_eq!(out, vec![s as u8], "symbol {s}");
        }
    }

    #[test]
    fn padding_and_eos_rules() {
        // 8 bits of padding (a full 0xff byte after "a" + 3 pad bits).
        assert_eq!(dec("1fff"), Err(HuffmanError::Padding));
        // Padding with a zero bit.
        assert_eq!(dec("18"), Err(HuffmanError::Padding));
        // EOS itself (30 ones) then 2 padding ones.
        assert_eq!(dec("ffff ffff"), Err(HuffmanError::Eos));
    }
}
