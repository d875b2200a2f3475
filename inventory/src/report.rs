//! Text rendering of the inventory for `apitap-analyzer inventory list`.

use super::record::EndpointSummary;
use crate::text::escape_control;

const HEADER: [&str; 10] = [
    "SERVICE",
    "METHOD",
    "TEMPLATE",
    "STYLE",
    "AUTH",
    "LIFECYCLE",
    "SPEC",
    "SENSITIVITY",
    "HITS",
    "LAST_SEEN",
];

/// An aligned text table, one row per endpoint (control characters escaped, so hostile hosts
/// or paths cannot rewrite the terminal). The operation, when there is one, follows the
/// template after `#`.
pub fn render_table(rows: &[EndpointSummary]) -> String {
    let cells: Vec<[String; 10]> = rows
        .iter()
        .map(|r| {
            let template = if r.operation.is_empty() {
                r.template.clone()
            } else {
                format!("{}#{}", r.template, r.operation)
            };
            [
                escape_control(&r.service),
                escape_control(&r.method),
                escape_control(&template),
                r.style.clone(),
                if r.auth.is_empty() {
                    "-".into()
                } else {
                    r.auth.join(",")
                },
                r.lifecycle.as_str().into(),
                r.spec_status.as_str().into(),
                r.sensitivity.clone(),
                r.hits.to_string(),
                r.last_seen.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut widths = HEADER.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let header = HEADER.map(String::from);
    for row in std::iter::once(&header).chain(&cells) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = width - cell.chars().count();
            if i == 8 {
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
        out.push_str("(no endpoints)\n");
    }
    out
}
