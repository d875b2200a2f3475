//! Text helpers shared by the inventory's reports and the analyzer's outputs.
use std::fmt::Write as _;

/// Replaces control characters with `\u{..}` escapes (and `\` with `\\`, so escapes are
/// unambiguous).
pub fn escape_control(s: &str) -> String {
    if !s.chars().any(|c| c.is_control() || c == '\\') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if c.is_control() {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

pub use apitap_schema::time::format_unix_us;

/// `value` as pretty-printed JSON made [`portable`].
pub fn portable_json(value: &impl serde::Serialize) -> Result<String, serde_json::Error> {
    Ok(portable(serde_json::to_string_pretty(value)?))
}

/// Serialised JSON in which every character outside YAML's printable set (C1 controls, DEL,
/// U+FFFE/U+FFFF; serde_json already escapes C0) is a `\uXXXX` escape. Field names and
/// shapes come from traffic; a raw U+0084 is valid JSON but makes YAML-based tools, the
/// OpenAPI validators among them, reject the whole document.
pub fn portable(text: String) -> String {
    let printable = |c: char| {
        matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{85}' | '\u{a0}'..='\u{d7ff}'
            | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
    };
    if text.chars().all(printable) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if printable(c) {
            out.push(c);
        } else {
            // Only inside strings (JSON structure is ASCII), and never astral (printable).
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        }
    }
    out
}

/// `error: cause: cause…`, for logging an error with its sources on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// A plain-text table: the header and rows in columns two spaces apart, each column as wide
/// as its widest cell, columns for which `right_aligned(index)` holds aligned right, trailing
/// spaces trimmed; `empty` on its own line when there are no rows.
pub fn table<const N: usize>(
    header: [&str; N],
    rows: &[[String; N]],
    right_aligned: impl Fn(usize) -> bool,
    empty: &str,
) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let header = header.map(String::from);
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = width - cell.chars().count();
            if right_aligned(i) {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if rows.is_empty() {
        out.push_str(empty);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_json_escapes_what_yaml_rejects() {
        let v = serde_json::json!({"a\u{84}b": "x\u{7f}\u{fffe}y", "ok": "中文 é \u{1f600}"});
        let text = portable_json(&v).unwrap();
        assert!(text.is_ascii() || !text.contains('\u{84}'));
        assert!(text.contains("a\\u0084b"), "{text}");
        assert!(text.contains("x\\u007f\\ufffey"), "{text}");
        assert!(text.contains("中文 é \u{1f600}"), "{text}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
    }
}
