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
    crate::text::table(HEADER, &cells, |i| i == 8, "(no endpoints)")
}
