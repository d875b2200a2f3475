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
