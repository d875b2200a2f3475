//! Text rendering of the inventory for `apitap-analyzer inventory list` and `show`.

use super::record::EndpointSummary;
use super::sensitive::DataMapEntry;
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

const DATA_MAP_HEADER: [&str; 8] = [
    "DIRECTION",
    "LOCATION",
    "FIELD",
    "LABEL",
    "EVENTS",
    "OCCURRENCES",
    "MASKED",
    "MASK",
];

/// The field-level data map of one endpoint (R-SEN-1) as a table: one row per field and
/// label, with the masked state and the application's mask shape. Field names come from
/// traffic, so control characters are escaped.
pub fn render_data_map(map: &[DataMapEntry]) -> String {
    let rows: Vec<[String; 8]> = map
        .iter()
        .map(|d| {
            [
                crate::sensitive::name_of(&d.label.direction),
                crate::sensitive::name_of(&d.label.location),
                if d.label.field.is_empty() {
                    "-".into()
                } else {
                    escape_control(&d.label.field)
                },
                d.label.label.name().to_owned(),
                d.label.events.to_string(),
                d.label.occurrences.to_string(),
                d.masked.as_str().to_owned(),
                d.label.mask_example.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    crate::text::table(
        DATA_MAP_HEADER,
        &rows,
        |i| i == 4 || i == 5,
        "(no sensitive data seen)",
    )
}
