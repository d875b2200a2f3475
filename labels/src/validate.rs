//! Format and checksum validators. Each function takes the *compact* candidate (separators
//! already removed) and returns whether it satisfies the standard it cites. None allocates.

/// Province-level codes (first two digits of the administrative division code, GB/T 2260),
/// used by PRC resident ID numbers (GB 11643-1999) and unified social credit codes
/// (GB 32100-2015 positions 3–8). 71 = Taiwan, 81 = Hong Kong, 82 = Macau, 83 = residence
/// permits for Taiwan residents (GB 11643 as amended for residence permits, 2018).
pub fn valid_province(d0: u8, d1: u8) -> bool {
    if !d0.is_ascii_digit() || !d1.is_ascii_digit() {
        return false;
    }
    let p = (d0 - b'0') * 10 + (d1 - b'0');
    matches!(p, 11..=15 | 21..=23 | 31..=37 | 41..=46 | 50..=54 | 61..=65 | 71 | 81..=83)
}

fn digit(b: u8) -> Option<u32> {
    b.is_ascii_digit().then(|| u32::from(b - b'0'))
}

fn num(bytes: &[u8]) -> Option<u32> {
    let mut n = 0u32;
    for &b in bytes {
        n = n.checked_mul(10)?.checked_add(digit(b)?)?;
    }
    Some(n)
}

/// A real calendar date (proleptic Gregorian) with `min_year <= year <= max_year`.
pub fn valid_date(year: u32, month: u32, day: u32, min_year: u32, max_year: u32) -> bool {
    if year < min_year || year > max_year || !(1..=12).contains(&month) || day == 0 {
        return false;
    }
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    let dim = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    day <= dim
}

/// `YYYYMMDD` as a real date in `[min_year, max_year]`.
pub fn valid_yyyymmdd(s: &[u8], min_year: u32, max_year: u32) -> bool {
    if s.len() != 8 {
        return false;
    }
    match (num(&s[0..4]), num(&s[4..6]), num(&s[6..8])) {
        (Some(y), Some(m), Some(d)) => valid_date(y, m, d, min_year, max_year),
        _ => false,
    }
}

/// GB 11643-1999 check character of an 18-character resident ID (ISO 7064 MOD 11-2):
/// weights 2^(17-i) mod 11, check = (12 - sum mod 11) mod 11, 10 written `X`.
pub fn gb11643_check(first17: &[u8]) -> Option<u8> {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    if first17.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (b, w) in first17.iter().zip(W) {
        sum += digit(*b)? * w;
    }
    let c = (12 - sum % 11) % 11;
    Some(if c == 10 { b'X' } else { b'0' + c as u8 })
}

/// An 18-character PRC resident identity number per GB 11643-1999: valid province prefix,
/// a real birth date (`YYYYMMDD` at positions 7–14, year in `[1900, max_year]`) and the
/// MOD 11-2 check character (`X` accepted in either case).
pub fn prc_id18(s: &[u8], max_year: u32) -> bool {
    if s.len() != 18 || !valid_province(s[0], s[1]) {
        return false;
    }
    if !valid_yyyymmdd(&s[6..14], 1900, max_year) {
        return false;
    }
    match gb11643_check(&s[..17]) {
        Some(c) => s[17].eq_ignore_ascii_case(&c),
        None => false,
    }
}

/// A 15-digit first-generation resident ID (GB 11643-1989): province prefix and a real
/// `YYMMDD` birth date in the 1900s. It has no check digit, so callers require context.
pub fn prc_id15(s: &[u8]) -> bool {
    if s.len() != 15 || !s.iter().all(u8::is_ascii_digit) || !valid_province(s[0], s[1]) {
        return false;
    }
    match (num(&s[6..8]), num(&s[8..10]), num(&s[10..12])) {
        (Some(y), Some(m), Some(d)) => valid_date(1900 + y, m, d, 1900, 1999),
        _ => false,
    }
}

/// Character set of GB 32100-2015 (digits and upper-case letters without I, O, Z, S, V).
const USCC_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

fn uscc_value(b: u8) -> Option<u32> {
    USCC_ALPHABET.iter().position(|&c| c == b).map(|p| p as u32)
}

/// GB 11714-1997 organisation code check character over 8 characters (MOD 11, weights
/// 3 7 9 10 5 8 4 2; letters count A=10…Z=35; 10 is written `X`, 11 as `0`).
pub fn gb11714_check(first8: &[u8]) -> Option<u8> {
    const W: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];
    let mut sum = 0u32;
    for (b, w) in first8.iter().zip(W) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return None,
        };
        sum += v * w;
    }
    let c = 11 - sum % 11;
    Some(match c {
        10 => b'X',
        11 => b'0',
        c => b'0' + c as u8,
    })
}

/// Result of checking a unified social credit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsccCheck {
    /// Not a USCC.
    Invalid,
    /// GB 32100 check character valid, embedded organisation code check (GB 11714) not.
    CheckOnly,
    /// Both checks valid and the region code has a valid province prefix.
    Strong,
}

/// A unified social credit code (GB 32100-2015): registration authority (1–9, A–H, N, Y),
/// category, 6-digit administrative division code, 9-character organisation code and a
/// MOD 31 check character (weights 3^i mod 31).
pub fn uscc(s: &[u8]) -> UsccCheck {
    const W: [u32; 17] = [
        1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
    ];
    if s.len() != 18 {
        return UsccCheck::Invalid;
    }
    // Registration authority and the entity categories it assigns (GB 32100-2015 table 1).
    let categories: &[u8] = match s[0] {
        b'1' | b'5' | b'N' => b"1239",
        b'3' => b"123459",
        b'6' => b"129",
        b'9' => b"123",
        b'2' | b'4' | b'7' | b'8' | b'A' => b"19",
        b'Y' => b"1",
        _ => return UsccCheck::Invalid,
    };
    if !categories.contains(&s[1]) {
        return UsccCheck::Invalid;
    }
    if !s[2..8].iter().all(u8::is_ascii_digit) {
        return UsccCheck::Invalid;
    }
    let mut sum = 0u32;
    for (b, w) in s[..17].iter().zip(W) {
        match uscc_value(*b) {
            Some(v) => sum += v * w,
            None => return UsccCheck::Invalid,
        }
    }
    let c = USCC_ALPHABET[((31 - sum % 31) % 31) as usize];
    if s[17] != c {
        return UsccCheck::Invalid;
    }
    let org_ok = gb11714_check(&s[8..16]) == Some(s[16]);
    if org_ok && valid_province(s[2], s[3]) {
        UsccCheck::Strong
    } else {
        UsccCheck::CheckOnly
    }
}

/// ISO/IEC 7812-1 Annex B (Luhn) check over a digit string.
pub fn luhn(s: &[u8]) -> bool {
    if s.is_empty() {
        return false;
    }
    let mut sum = 0u32;
    for (i, &b) in s.iter().rev().enumerate() {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return false;
        }
        let d = u32::from(d);
        // Every second digit from the right is doubled, its digits summed (14 → 5).
        sum += if i % 2 == 1 {
            2 * d - if d >= 5 { 9 } else { 0 }
        } else {
            d
        };
    }
    sum.is_multiple_of(10)
}

/// Payment-card scheme identified from the issuer identification number (ISO/IEC 7812).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardScheme {
    /// A known Chinese issuer BIN ([`CN_ISSUER_BINS`]).
    ChineseIssuer,
    /// China UnionPay IIN range 62 (and 81), 16–19 digits.
    UnionPay,
    /// Visa 4, 13/16/19 digits.
    Visa,
    /// Mastercard 51–55 and 2221–2720, 16 digits.
    Mastercard,
    /// American Express 34/37, 15 digits.
    Amex,
    /// Discover 6011, 644–649, 65, 16–19 digits.
    Discover,
    /// JCB 3528–3589, 16–19 digits.
    Jcb,
    /// Diners Club 300–305, 36, 38–39, 14–19 digits.
    Diners,
    /// Maestro 50, 56–58, 6 (not above), 12–19 digits.
    Maestro,
    /// Mir 2200–2204, 16–19 digits.
    Mir,
}

/// Six-digit BINs of Chinese issuers (debit and credit, incl. 19-digit UnionPay debit cards and
/// the legacy 9558/95599 ranges). A number matching one of these and the Luhn check is a card
/// even without context: the table covers ~0.01 % of the six-digit space.
pub const CN_ISSUER_BINS: &[u32] = &[
    // ICBC
    620058, 621225, 621226, 621281, 621558, 621559, 621722, 621723, 622200, 622202, 622203, 622208,
    622230, 622235, 622236, 622237, 622238, 622239, 622240, 622245, 622246, 625330, 625331, 625332,
    955880, 955881, 955882, 955888, 427010, 427018, 427020, 427029, 427062, 438125, 438126, 451804,
    451810, 451811, 458071, 489734, 489735, 489736, 510529, 524047, // ABC
    622821, 622822, 622823, 622824, 622825, 622826, 622827, 622828, 622836, 622837, 622840, 622841,
    622843, 622844, 622845, 622846, 622847, 622848, 622849, 623018, 623206, 625996, 625997, 625998,
    955990, 955991, 955992, 955993, 955994, 955995, 955996, 955997, 955998, 955999, 103000, 403361,
    404117, 404118, 404119, 404120, 404121, 463758, 519412, 519413, // BOC
    601382, 621283, 621330, 621331, 621332, 621333, 621660, 621661, 621662, 621663, 621665, 621666,
    621667, 621668, 621669, 621725, 621756, 621785, 621786, 621787, 621788, 621789, 621790, 622750,
    622751, 622752, 622753, 622754, 622755, 622756, 622757, 622758, 622759, 622760, 622761, 622762,
    622763, 623208, 625905, 625906, 625907, 625908, 409665, 409666, 409667, 409668, 409669, 409670,
    409671, 409672, 456351, 456352, 512315, 512316, 512411, // CCB
    621081, 621284, 621466, 621467, 621488, 621499, 621598, 621621, 621700, 622166, 622168, 622280,
    622700, 622707, 622725, 622728, 623211, 623668, 625362, 625363, 625955, 625956, 436728, 436742,
    436745, 453242, 491031, 524094, 526410, 552245, 553242, // BOCOM
    621069, 621335, 621436, 622250, 622251, 622252, 622253, 622258, 622259, 622260, 622261, 622262,
    622284, 622656, 628216, 628218, 405512, 458123, 458124, 520169, 521899, // CMB
    621286, 621483, 621485, 621486, 621299, 622575, 622576, 622577, 622578, 622579, 622580, 622581,
    622582, 622588, 622598, 622609, 623126, 623136, 625802, 625803, 439188, 439225, 439227, 479228,
    479229, 521302, 545619, 545620, 545621, 545623, 545947, 545948, // PSBC
    620062, 621095, 621096, 621098, 621285, 621599, 621622, 621674, 621797, 621798, 621799, 622150,
    622151, 622180, 622181, 622188, 622199, 623218, 623219, 625919, 955100,
    // CITIC, CEB, CMBC, Ping An, CIB, SPDB, Huaxia, CGB
    621767, 621768, 621770, 621771, 621772, 621773, 622690, 622691, 622692, 622696, 622698, 622998,
    622999, 433670, 433671, 433680, 442729, 442730, 621489, 621490, 622660, 622661, 622662, 622663,
    622664, 622665, 622666, 622667, 622668, 622669, 622670, 622671, 622672, 622673, 622674, 621691,
    622615, 622616, 622617, 622618, 622619, 622620, 622622, 415599, 421393, 421865, 427570, 427571,
    472067, 472068, 621626, 622155, 622156, 622157, 622525, 622526, 623058, 625360, 625361, 628296,
    602907, 622909, 622908, 622901, 622902, 622922, 438588, 438589, 451289, 451290, 486493, 486494,
    486861, 523036, 524070, 622516, 622517, 622518, 622521, 622522, 622523, 628222, 456418, 498451,
    515672, 517650, 525998, 622630, 622631, 622632, 622633, 625967, 625968, 625969, 539867, 539868,
    620037, 621462, 622555, 622556, 622557, 622558, 622559, 622560, 622568, 628259, 406365, 406366,
    428911, 436768, 436769, 487013, 491032, 491034, 491035, 491036, 491037, 491038, 518364, 520152,
    520382, 548844, 552794,
];

/// [`CN_ISSUER_BINS`] sorted at compile time, for binary search.
static SORTED_BINS: [u32; CN_ISSUER_BINS.len()] = {
    let mut a = [0u32; CN_ISSUER_BINS.len()];
    let mut i = 0;
    while i < a.len() {
        a[i] = CN_ISSUER_BINS[i];
        i += 1;
    }
    // Insertion sort: const-evaluable, a few hundred entries.
    let mut i = 1;
    while i < a.len() {
        let mut j = i;
        while j > 0 && a[j - 1] > a[j] {
            let t = a[j];
            a[j] = a[j - 1];
            a[j - 1] = t;
            j -= 1;
        }
        i += 1;
    }
    a
};

fn cn_issuer(s: &[u8]) -> bool {
    match num(s.get(..6).unwrap_or(&[])) {
        Some(bin) => SORTED_BINS.binary_search(&bin).is_ok(),
        None => false,
    }
}

/// The scheme whose IIN range and length rules the digit string fits (ISO/IEC 7812 and the
/// schemes' published ranges), Chinese issuers first.
pub fn card_scheme(s: &[u8]) -> Option<CardScheme> {
    let n = s.len();
    if !(12..=19).contains(&n) {
        return None;
    }
    if (16..=19).contains(&n) && cn_issuer(s) {
        return Some(CardScheme::ChineseIssuer);
    }
    let p2 = num(&s[..2])?;
    let p3 = num(&s[..3])?;
    let p4 = num(&s[..4])?;
    use CardScheme::*;
    let scheme = match s[0] {
        b'4' if matches!(n, 13 | 16 | 19) => Visa,
        b'3' if (p2 == 34 || p2 == 37) && n == 15 => Amex,
        b'3' if (3528..=3589).contains(&p4) && (16..=19).contains(&n) => Jcb,
        b'1' | b'2' if (p4 == 1800 || p4 == 2131) && n == 15 => Jcb,
        b'3' if ((300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39) && n >= 14 => {
            Diners
        }
        b'5' if (51..=55).contains(&p2) && n == 16 => Mastercard,
        b'2' if (2221..=2720).contains(&p4) && n == 16 => Mastercard,
        b'2' if (2200..=2204).contains(&p4) && n >= 16 => Mir,
        b'6' if p2 == 62 && n >= 16 => UnionPay,
        b'8' if p2 == 81 && n >= 16 => UnionPay,
        b'6' if (p4 == 6011 || (644..=649).contains(&p3) || p2 == 65) && n >= 16 => Discover,
        b'5' | b'6' if matches!(p2, 50 | 56..=69) => Maestro,
        _ => return None,
    };
    Some(scheme)
}

/// Mobile number segments (first three digits) allocated by MIIT for public mobile service in
/// mainland China (China Mobile, Unicom, Telecom, Broadnet, MVNOs); 140–144 (IoT data-only),
/// 154, 160, 161, 163, 164, 168, 169, 179 and 194 are not.
pub fn cn_mobile(s: &[u8]) -> bool {
    if s.len() != 11 || s[0] != b'1' || !s.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let seg = u32::from(s[1] - b'0') * 10 + u32::from(s[2] - b'0');
    matches!(
        seg,
        30..=39
            | 45..=49
            | 50..=53
            | 55..=59
            | 62
            | 65..=67
            | 70..=78
            | 80..=89
            | 90..=93
            | 95..=99
    )
}

/// A mainland China landline in national format: trunk prefix `0`, area code (`10`, `2x`, or
/// three digits `[3-9]xx`), subscriber number of 7–8 digits not starting with 0 or 1. `area_len`
/// is the length of the area code including the `0` when a separator told us, else `None`.
pub fn cn_landline(s: &[u8], area_len: Option<usize>) -> bool {
    if !(10..=12).contains(&s.len()) || s[0] != b'0' || !s.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let area = match s[1] {
        b'1' if s[2] == b'0' => 3,
        b'2' => 3,
        b'3'..=b'9' => 4,
        _ => return false,
    };
    if let Some(a) = area_len
        && a != area
    {
        return false;
    }
    let sub = &s[area..];
    (7..=8).contains(&sub.len()) && sub[0] >= b'2'
}

/// US Social Security number (SSA rules): area not 000, 666 or 9xx; group not 00; serial not
/// 0000.
pub fn us_ssn(s: &[u8]) -> bool {
    if s.len() != 9 || !s.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let area = num(&s[..3]).unwrap_or(0);
    area != 0 && area != 666 && area < 900 && &s[3..5] != b"00" && &s[5..] != b"0000"
}

/// IBAN lengths per country (ISO 13616 registry, SWIFT release 2024).
const IBAN_LENGTHS: &[(&[u8; 2], u8)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BI", 27),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DJ", 27),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FK", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MN", 20),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NI", 28),
    (b"NL", 18),
    (b"NO", 15),
    (b"OM", 23),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"RU", 33),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"SO", 23),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
    (b"YE", 30),
];

/// An IBAN (ISO 13616-1): known country code and length, alphanumeric BBAN, and
/// ISO 7064 MOD 97-10 over the rearranged number equal to 1. Input is compact upper-case.
pub fn iban(s: &[u8]) -> bool {
    if s.len() < 15 || s.len() > 34 || !s[2].is_ascii_digit() || !s[3].is_ascii_digit() {
        return false;
    }
    let cc = [s[0], s[1]];
    match IBAN_LENGTHS.iter().find(|(c, _)| **c == cc) {
        Some((_, len)) if usize::from(*len) == s.len() => {}
        _ => return false,
    }
    let mut rem = 0u32;
    for &b in s[4..].iter().chain(&s[..4]) {
        match b {
            b'0'..=b'9' => rem = (rem * 10 + u32::from(b - b'0')) % 97,
            b'A'..=b'Z' => rem = (rem * 100 + u32::from(b - b'A') + 10) % 97,
            _ => return false,
        }
    }
    rem == 1
}

/// AWS access key id: a documented four-letter prefix and 16 characters of the base32 alphabet.
pub fn aws_access_key(s: &[u8]) -> bool {
    const PREFIXES: &[&[u8; 4]] = &[
        b"AKIA", b"ASIA", b"ABIA", b"ACCA", b"AGPA", b"AIDA", b"AIPA", b"ANPA", b"ANVA", b"AROA",
        b"APKA", b"ASCA",
    ];
    s.len() == 20
        && PREFIXES.iter().any(|p| s.starts_with(*p))
        && s[4..]
            .iter()
            .all(|b| matches!(b, b'A'..=b'Z' | b'2'..=b'7'))
}

/// Is the IPv4 address private or otherwise not globally routable (RFC 1918, RFC 6598 shared,
/// loopback, link-local, documentation, unspecified)?
pub fn ipv4_private(o: [u8; 4]) -> bool {
    matches!(
        o,
        [10, ..]
            | [127, ..]
            | [0, ..]
            | [169, 254, ..]
            | [192, 168, ..]
            | [192, 0, 2, _]
            | [198, 51, 100, _]
            | [203, 0, 113, _]
    ) || (o[0] == 172 && (16..=31).contains(&o[1]))
        || (o[0] == 100 && (64..=127).contains(&o[1]))
        || o[0] >= 224
}

/// Parse a dotted-quad IPv4 address (no leading zeros, RFC 6943 §3.1.1 strict form).
pub fn parse_ipv4(s: &[u8]) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = s.split(|&b| b == b'.');
    for o in &mut out {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || (p.len() > 1 && p[0] == b'0') {
            return None;
        }
        *o = u8::try_from(num(p)?).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Is the IPv6 address not globally routable (RFC 4193 ULA, link-local, loopback,
/// unspecified, documentation 2001:db8::/32, IPv4-mapped private)?
pub fn ipv6_private(a: &std::net::Ipv6Addr) -> bool {
    let s = a.segments();
    a.is_loopback()
        || a.is_unspecified()
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || a.to_ipv4_mapped()
            .is_some_and(|v4| ipv4_private(v4.octets()))
}

/// An e-mail address (RFC 5321 §4.1.2 dot-atom local part, RFC 1035 host names with an
/// alphabetic TLD of ≥ 2 letters). Input is the candidate `local@domain` token.
pub fn email(s: &[u8]) -> bool {
    let Some(at) = memchr::memchr(b'@', s) else {
        return false;
    };
    let (local, domain) = (&s[..at], &s[at + 1..]);
    if local.is_empty() || local.len() > 64 || domain.len() < 4 || domain.len() > 253 {
        return false;
    }
    if local[0] == b'.' || local[local.len() - 1] == b'.' {
        return false;
    }
    if !local
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || b"._%+-".contains(b))
    {
        return false;
    }
    let mut labels = 0;
    let mut last: &[u8] = &[];
    for label in domain.split(|&b| b == b'.') {
        if label.is_empty()
            || label.len() > 63
            || label[0] == b'-'
            || label[label.len() - 1] == b'-'
            || !label
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        {
            return false;
        }
        labels += 1;
        last = label;
    }
    labels >= 2 && last.len() >= 2 && last.iter().all(u8::is_ascii_alphabetic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prc_id_needs_check_digit_date_and_province() {
        assert!(prc_id18(b"11010519491231002X", 2100));
        assert!(prc_id18(b"11010519491231002x", 2100));
        assert!(!prc_id18(b"110105194912310021", 2100), "bad check digit");
        // Check digit recomputed for a 13th month: still rejected on the date.
        let mut bad = *b"11010519491331002X";
        bad[17] = gb11643_check(&bad[..17]).unwrap();
        assert!(!prc_id18(&bad, 2100));
        // Province 99 does not exist.
        let mut bad = *b"99010519491231002X";
        bad[17] = gb11643_check(&bad[..17]).unwrap();
        assert!(!prc_id18(&bad, 2100));
        assert!(valid_date(2000, 2, 29, 1900, 2100));
        assert!(!valid_date(1900, 2, 29, 1900, 2100));
        assert!(prc_id15(b"110105491231002"));
        assert!(!prc_id15(b"110105491331002"));
    }

    #[test]
    fn uscc_checks() {
        assert_eq!(uscc(b"91110000600037341L"), UsccCheck::Strong);
        assert_eq!(uscc(b"91110000600037341M"), UsccCheck::Invalid);
        assert_eq!(uscc(b"9111000060003734"), UsccCheck::Invalid);
    }

    #[test]
    fn cards() {
        assert!(SORTED_BINS.is_sorted());
        assert!(
            CN_ISSUER_BINS
                .iter()
                .all(|b| SORTED_BINS.binary_search(b).is_ok())
        );
        assert!(luhn(b"4111111111111111"));
        assert!(!luhn(b"4111111111111112"));
        assert_eq!(card_scheme(b"4111111111111111"), Some(CardScheme::Visa));
        assert_eq!(card_scheme(b"378282246310005"), Some(CardScheme::Amex));
        assert_eq!(
            card_scheme(b"6222021234567890123"),
            Some(CardScheme::ChineseIssuer)
        );
        assert_eq!(
            card_scheme(b"6299991234567890123"),
            Some(CardScheme::UnionPay)
        );
        assert_eq!(card_scheme(b"1234567890123456"), None);
    }

    #[test]
    fn phones_ssn_iban_aws_ip_email() {
        assert!(cn_mobile(b"13812345678"));
        assert!(cn_mobile(b"19912345678"));
        assert!(!cn_mobile(b"14012345678"));
        assert!(!cn_mobile(b"12812345678"));
        assert!(cn_landline(b"01062345678", Some(3)));
        assert!(cn_landline(b"075582345678", None));
        assert!(!cn_landline(b"075582345678", Some(3)));
        assert!(us_ssn(b"123456789"));
        assert!(!us_ssn(b"666456789"));
        assert!(iban(b"GB82WEST12345698765432"));
        assert!(!iban(b"GB82WEST12345698765433"));
        assert!(iban(b"DE89370400440532013000"));
        assert!(aws_access_key(b"AKIAIOSFODNN7EXAMPLE"));
        assert!(!aws_access_key(b"AKIAIOSFODNN7EXAMPL1"));
        assert_eq!(parse_ipv4(b"10.0.0.1"), Some([10, 0, 0, 1]));
        assert_eq!(parse_ipv4(b"10.0.0.01"), None);
        assert_eq!(parse_ipv4(b"256.0.0.1"), None);
        assert!(ipv4_private([172, 20, 1, 1]));
        assert!(!ipv4_private([8, 8, 8, 8]));
        assert!(email(b"a.b+c@example.com"));
        assert!(!email(b"a@b"));
        assert!(!email(b"a@example.c0m"));
    }
}
