//! Event times as text.

/// Formats microseconds since the Unix epoch as UTC `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_unix_us(us: u64) -> String {
    let secs = us / 1_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Parses UTC `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339 §5.6 with the `Z` offset, optional
/// fractional seconds) or `YYYY-MM-DD` to microseconds since the Unix epoch; `None` when it
/// is not such a time.
pub fn parse_unix_us(s: &str) -> Option<u64> {
    let s = s.trim();
    let (date, time) = match s.split_once(['T', 't', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut d = date.splitn(3, '-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || !(1970..=9999).contains(&year) {
        return None;
    }
    let mut micros: u64 = 0;
    let mut secs_of_day: u64 = 0;
    if let Some(t) = time {
        let t = t.strip_suffix(['Z', 'z'])?;
        let (hms, frac) = t.split_once('.').unwrap_or((t, ""));
        let mut p = hms.splitn(3, ':');
        let h: u64 = p.next()?.parse().ok()?;
        let m: u64 = p.next()?.parse().ok()?;
        let sec: u64 = p.next()?.parse().ok()?;
        if h > 23 || m > 59 || sec > 60 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        secs_of_day = h * 3600 + m * 60 + sec;
        for (i, b) in frac.bytes().take(6).enumerate() {
            micros += u64::from(b - b'0') * 10u64.pow(5 - i as u32);
        }
    }
    let days = days_from_civil(year, month, day);
    if civil_from_days(days) != (year, month, day) {
        return None;
    }
    Some((u64::try_from(days).ok()? * 86_400 + secs_of_day) * 1_000_000 + micros)
}

/// (year, month, day) to days since 1970-01-01 (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_is_the_inverse_of_format() {
        for us in [
            0,
            1_700_000_000_000_000,
            951_782_400_000_000,
            4_102_444_799_000_000,
        ] {
            assert_eq!(parse_unix_us(&format_unix_us(us)), Some(us));
        }
        assert_eq!(
            parse_unix_us("2023-11-14T22:13:20.5Z"),
            Some(1_700_000_000_500_000)
        );
        assert_eq!(parse_unix_us("1970-01-02"), Some(86_400_000_000));
        for bad in [
            "",
            "2023-02-30",
            "2023-11-14T22:13:20",
            "2023-13-01",
            "yesterday",
        ] {
            assert_eq!(parse_unix_us(bad), None, "{bad}");
        }
    }
}
