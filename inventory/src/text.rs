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
