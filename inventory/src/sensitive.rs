//! What sensitive data an endpoint carries (R-SEN-1, R-SEN-2): the field-level data map — for
//! each request/response field (JSON path, query parameter, header, cookie, form field, path
//! segment) the labels found in it, with counts, how often the application had already masked
//! them and the shape of its mask — plus function class votes and the highest sensitivity
//! seen. Built from [`apitap_labels::EventLabels`]; holds label names, field names, counts and
//! mask *positions* only, never values, masked samples or value hashes.

use std::collections::BTreeMap;

use apitap_labels::{
    Classification, Direction, EventLabels, FunctionClass, Label, Part, Sensitivity,
};
use serde::{Deserialize, Serialize};

/// Distinct (direction, location, field, label) entries kept per endpoint; further ones are
/// counted in [`SensitiveData::labels_dropped`]. Field names are chosen by clients (query
/// parameter and JSON key names), so the map is bounded like every other learned set.
pub const MAX_DATA_LABELS: usize = 256;

/// Bytes of a field name kept; longer names are cut on a character boundary and end in `…`
/// (the labels crate already elides JSON paths deeper than its own limit the same way).
pub const MAX_FIELD_BYTES: usize = 160;

/// Shown when an endpoint was never labelled.
pub const UNKNOWN: &str = "unknown";

/// One data label an endpoint carries in one field: one row of the data map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataLabel {
    /// Label name (`prc_id`, `mobile`, `password`, …).
    pub label: Label,
    /// `request` or `response`.
    pub direction: Direction,
    /// Location kind (`query_param`, `json_path`, `header`, …).
    pub location: Part,
    /// The field within the location: a JSON path (`$.data[*].id_card`), a query parameter,
    /// header (lower case), cookie or form field name, a path segment index (`[2]`), an XML
    /// path or CSV column; empty for unstructured text and for entries stored before the data
    /// map existed. Names only, at most [`MAX_FIELD_BYTES`].
    #[serde(default)]
    pub field: String,
    /// Events carrying it there.
    pub events: u64,
    /// Occurrences (records) over those events.
    pub occurrences: u64,
    /// Events where every occurrence was already masked by the application.
    #[serde(default)]
    pub masked_events: u64,
    /// The first mask the application applied here, as visible (`K`) and masked (`*`)
    /// positions, e.g. `KKK****KKKK` for `138****5678`: the mask's shape, no character of
    /// the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_example: Option<String>,
}

/// Whether the application masks a field's values (from [`DataLabel::masked_events`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskedState {
    /// Every event had the value masked.
    Masked,
    /// Some events masked, some in clear.
    PartlyMasked,
    /// Always in clear.
    Unmasked,
}

impl MaskedState {
    /// `masked`, `partly_masked`, `unmasked`.
    pub fn as_str(self) -> &'static str {
        match self {
            MaskedState::Masked => "masked",
            MaskedState::PartlyMasked => "partly_masked",
            MaskedState::Unmasked => "unmasked",
        }
    }
}

impl DataLabel {
    /// Map order: direction, location, field, then label, so a field's labels sit together.
    fn key(&self) -> (u8, u8, &str, Label) {
        (
            self.direction as u8,
            self.location as u8,
            self.field.as_str(),
            self.label,
        )
    }

    /// Masked in every, some or none of the events.
    pub fn masked_state(&self) -> MaskedState {
        if self.masked_events == 0 {
            MaskedState::Unmasked
        } else if self.masked_events >= self.events {
            MaskedState::Masked
        } else {
            MaskedState::PartlyMasked
        }
    }
}

/// One row of the data map as exported (`inventory export`, `inventory show`, the HTTP API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataMapEntry {
    /// The stored row; for a path segment that the template makes a parameter, `field` is
    /// the parameter (`{id}`) instead of the segment index.
    #[serde(flatten)]
    pub label: DataLabel,
    /// Whether the application masks the values.
    pub masked: MaskedState,
}

/// `[i]` → the template's `i`-th segment when it is a parameter (`{id}`), else unchanged.
fn segment_field(field: &str, template: &str) -> Option<String> {
    let i: usize = field.strip_prefix('[')?.strip_suffix(']')?.parse().ok()?;
    let seg = template.trim_start_matches('/').split('/').nth(i)?;
    (seg.starts_with('{') && seg.ends_with('}') && seg.len() > 2).then(|| seg.to_owned())
}

/// A field name cut to [`MAX_FIELD_BYTES`] on a character boundary.
fn bounded_field(path: &str) -> std::borrow::Cow<'_, str> {
    if path.len() <= MAX_FIELD_BYTES {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut end = MAX_FIELD_BYTES - '…'.len_utf8();
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}…", &path[..end]))
}

/// One (direction, location, field, label) of one event, before it is added to the map.
struct EventRow<'a> {
    label: Label,
    direction: Direction,
    location: Part,
    field: std::borrow::Cow<'a, str>,
    occurrences: u64,
    /// Every occurrence was masked by the application.
    masked: bool,
    mask: Option<apitap_labels::MaskShape>,
}

impl EventRow<'_> {
    fn key(&self) -> (u8, u8, &str, Label) {
        (
            self.direction as u8,
            self.location as u8,
            &self.field,
            self.label,
        )
    }
}

/// Sensitive-data facts of one endpoint, merged like the rest of its data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SensitiveData {
    /// Events labelled.
    #[serde(default)]
    pub events: u64,
    /// The data map: labels per field, ordered by direction, location, field, label.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "sorted_labels"
    )]
    pub labels: Vec<DataLabel>,
    /// Entries not kept because [`MAX_DATA_LABELS`] was reached.
    #[serde(default)]
    pub labels_dropped: u64,
    /// Function class → events.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub functions: BTreeMap<FunctionClass, u64>,
    /// Highest sensitivity seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitivity: Option<Sensitivity>,
}

/// Stored maps are kept in [`DataLabel::key`] order, which older records (ordered by label)
/// did not use: sort on load so lookups stay binary searches.
fn sorted_labels<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<DataLabel>, D::Error> {
    let mut v = Vec::<DataLabel>::deserialize(d)?;
    v.sort_by(|a, b| a.key().cmp(&b.key()));
    v.dedup_by(|b, a| {
        let same = a.key() == b.key();
        if same {
            a.events += b.events;
            a.occurrences += b.occurrences;
            a.masked_events += b.masked_events;
        }
        same
    });
    Ok(v)
}

/// Sensitivity names from lowest to highest.
pub const LEVELS: [&str; 4] = ["none", "low", "medium", "high"];

/// The levels at or above `min` (empty when `min` is not a level).
pub fn levels_at_least(min: &str) -> &'static [&'static str] {
    LEVELS
        .iter()
        .position(|l| *l == min)
        .map_or(&[], |i| &LEVELS[i..])
}

/// A stable snake_case name of a serialisable unit enum value.
pub fn name_of<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => UNKNOWN.into(),
    }
}

impl SensitiveData {
    /// Records one labelled event.
    pub fn record(&mut self, labels: &EventLabels, class: &Classification) {
        self.events += 1;
        *self.functions.entry(class.function).or_insert(0) += 1;
        self.sensitivity = self.sensitivity.max(Some(class.sensitivity));
        // Per event: one entry per (direction, location kind, field, label), borrowing the
        // findings' paths: a string is allocated only for a row the map does not have yet.
        let mut seen: Vec<EventRow<'_>> = Vec::new();
        for f in &labels.findings {
            let row = EventRow {
                label: f.label,
                direction: f.location.direction,
                location: f.location.part,
                field: bounded_field(&f.location.path),
                occurrences: u64::from(f.count),
                masked: f.is_masked(),
                mask: f.mask,
            };
            match seen.iter_mut().find(|d| d.key() == row.key()) {
                Some(d) => {
                    d.occurrences += row.occurrences;
                    d.masked &= row.masked;
                    d.mask = d.mask.or(row.mask);
                }
                None => seen.push(row),
            }
        }
        for r in &seen {
            match self.labels.binary_search_by(|x| x.key().cmp(&r.key())) {
                Ok(i) => {
                    let x = &mut self.labels[i];
                    x.events += 1;
                    x.occurrences += r.occurrences;
                    x.masked_events += u64::from(r.masked);
                    if x.mask_example.is_none() {
                        x.mask_example = r.mask.map(|m| m.pattern());
                    }
                }
                Err(i) if self.labels.len() < MAX_DATA_LABELS => self.labels.insert(
                    i,
                    DataLabel {
                        label: r.label,
                        direction: r.direction,
                        location: r.location,
                        field: r.field.clone().into_owned(),
                        events: 1,
                        occurrences: r.occurrences,
                        masked_events: u64::from(r.masked),
                        mask_example: r.mask.map(|m| m.pattern()),
                    },
                ),
                Err(_) => self.labels_dropped += 1,
            }
        }
    }

    fn add_label(&mut self, d: &DataLabel) {
        match self.labels.binary_search_by(|x| x.key().cmp(&d.key())) {
            Ok(i) => {
                let x = &mut self.labels[i];
                x.events += d.events;
                x.occurrences += d.occurrences;
                x.masked_events += d.masked_events;
                if x.mask_example.is_none() {
                    x.mask_example.clone_from(&d.mask_example);
                }
            }
            Err(i) if self.labels.len() < MAX_DATA_LABELS => self.labels.insert(i, d.clone()),
            Err(_) => self.labels_dropped += d.events,
        }
    }

    /// Adds another endpoint's (or instance's) facts.
    pub fn absorb(&mut self, o: &SensitiveData) {
        self.events += o.events;
        for d in &o.labels {
            self.add_label(d);
        }
        self.labels_dropped += o.labels_dropped;
        for (k, v) in &o.functions {
            *self.functions.entry(*k).or_insert(0) += v;
        }
        self.sensitivity = self.sensitivity.max(o.sensitivity);
    }

    /// Sensitivity name (`none`, `low`, `medium`, `high`), `unknown` if never labelled.
    pub fn sensitivity_name(&self) -> String {
        self.sensitivity
            .map_or_else(|| UNKNOWN.to_owned(), |s| name_of(&s))
    }

    /// Most frequent function class other than `other` (else `other`), `unknown` if never
    /// labelled.
    pub fn function_class_name(&self) -> String {
        let best = self
            .functions
            .iter()
            .filter(|(c, _)| **c != FunctionClass::Other)
            .max_by_key(|(c, n)| (**n, std::cmp::Reverse(**c)))
            .map(|(c, _)| *c);
        match best {
            Some(c) => name_of(&c),
            None if self.functions.is_empty() => UNKNOWN.into(),
            None => name_of(&FunctionClass::Other),
        }
    }

    /// The data map of an endpoint with path `template`, in [`DataLabel`] order.
    pub fn data_map(&self, template: &str) -> Vec<DataMapEntry> {
        self.labels
            .iter()
            .map(|d| {
                let mut label = d.clone();
                if d.location == Part::PathSegment
                    && let Some(p) = segment_field(&d.field, template)
                {
                    label.field = p;
                }
                DataMapEntry {
                    masked: d.masked_state(),
                    label,
                }
            })
            .collect()
    }

    /// Distinct label names, sorted.
    pub fn label_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.labels.iter().map(|d| d.label.name().into()).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// Test helpers: a finding of `label` at (`direction`, `part`, `path`).
#[cfg(test)]
pub(crate) fn finding(
    label: Label,
    direction: Direction,
    part: Part,
    path: &str,
    count: u32,
    mask: Option<apitap_labels::MaskShape>,
) -> apitap_labels::Finding {
    apitap_labels::Finding {
        label,
        confidence: 90,
        location: apitap_labels::Location {
            direction,
            part,
            path: path.into(),
        },
        count,
        masked_sample: String::new(),
        mask,
        notes: Default::default(),
        hashes: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apitap_labels::MaskShape;

    fn class(sensitivity: Sensitivity) -> Classification {
        Classification {
            function: FunctionClass::QueryById,
            sensitivity,
        }
    }

    fn labels(findings: Vec<apitap_labels::Finding>) -> EventLabels {
        EventLabels {
            findings,
            ..EventLabels::default()
        }
    }

    #[test]
    fn data_map_is_per_field_with_masked_state_and_mask_shape() {
        let mobile_mask = MaskShape {
            len: 11,
            kept: 0b111_1000_0111,
        };
        let mut s = SensitiveData::default();
        // Event 1: ids in clear in two fields, the mobile masked by the application.
        s.record(
            &labels(vec![
                finding(
                    Label::PrcId,
                    Direction::Response,
                    Part::JsonPath,
                    "$.data[*].id_card",
                    3,
                    None,
                ),
                finding(
                    Label::PrcId,
                    Direction::Response,
                    Part::JsonPath,
                    "$.data[*].owner.id_no",
                    1,
                    None,
                ),
                finding(
                    Label::Mobile,
                    Direction::Response,
                    Part::JsonPath,
                    "$.data[*].mobile",
                    3,
                    Some(mobile_mask),
                ),
                finding(
                    Label::Mobile,
                    Direction::Request,
                    Part::PathSegment,
                    "[1]",
                    1,
                    None,
                ),
            ]),
            &class(Sensitivity::High),
        );
        // Event 2: the same mobile field in clear this time.
        s.record(
            &labels(vec![finding(
                Label::Mobile,
                Direction::Response,
                Part::JsonPath,
                "$.data[*].mobile",
                2,
                None,
            )]),
            &class(Sensitivity::Medium),
        );
        let map = s.data_map("/customers/{phone}");
        type Row<'a> = (String, &'a str, u64, u64, MaskedState, Option<&'a str>);
        let rows: Vec<Row<'_>> = map
            .iter()
            .map(|d| {
                (
                    format!("{:?}", d.label.direction),
                    d.label.field.as_str(),
                    d.label.events,
                    d.label.occurrences,
                    d.masked,
                    d.label.mask_example.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                (
                    "Request".into(),
                    "{phone}",
                    1,
                    1,
                    MaskedState::Unmasked,
                    None
                ),
                (
                    "Response".into(),
                    "$.data[*].id_card",
                    1,
                    3,
                    MaskedState::Unmasked,
                    None
                ),
                (
                    "Response".into(),
                    "$.data[*].mobile",
                    2,
                    5,
                    MaskedState::PartlyMasked,
                    Some("KKK****KKKK")
                ),
                (
                    "Response".into(),
                    "$.data[*].owner.id_no",
                    1,
                    1,
                    MaskedState::Unmasked,
                    None
                ),
            ]
        );
        assert_eq!(s.label_names(), vec!["mobile", "prc_id"]);
        // A literal segment keeps its index.
        assert_eq!(s.data_map("/customers/me")[0].label.field, "[1]");
        // Merging keeps the map (and absorbing into itself doubles the counts).
        let mut t = s.clone();
        t.absorb(&s);
        assert_eq!(t.labels.len(), 4);
        assert_eq!(t.labels[2].occurrences, 10);
        assert_eq!(t.labels[2].masked_events, 2);
    }

    #[test]
    fn field_names_are_bounded_and_the_map_is_capped() {
        let long = format!("$.{}", "é".repeat(200));
        let mut s = SensitiveData::default();
        s.record(
            &labels(vec![finding(
                Label::Email,
                Direction::Request,
                Part::QueryParam,
                &long,
                1,
                None,
            )]),
            &class(Sensitivity::Medium),
        );
        let f = &s.labels[0].field;
        assert!(f.len() <= MAX_FIELD_BYTES && f.ends_with('…'), "{f}");
        // Attacker-chosen parameter names cannot grow the map past its cap: counted instead.
        for i in 0..MAX_DATA_LABELS + 10 {
            s.record(
                &labels(vec![finding(
                    Label::Email,
                    Direction::Request,
                    Part::QueryParam,
                    &format!("p{i}"),
                    1,
                    None,
                )]),
                &class(Sensitivity::Medium),
            );
        }
        assert_eq!(s.labels.len(), MAX_DATA_LABELS);
        assert_eq!(s.labels_dropped, 11);
    }

    #[test]
    fn records_stored_in_the_old_order_are_sorted_on_load() {
        // Before the data map, entries had no field and were ordered by label first.
        let old = r#"{"events":2,"labels":[
            {"label":"email","direction":"response","location":"json_path","events":1,"occurrences":1},
            {"label":"mobile","direction":"request","location":"query_param","events":1,"occurrences":1}
        ]}"#;
        let mut s: SensitiveData = serde_json::from_str(old).unwrap();
        assert_eq!(s.labels[0].label, Label::Mobile);
        assert_eq!(s.labels[0].field, "");
        s.record(
            &labels(vec![finding(
                Label::Email,
                Direction::Response,
                Part::JsonPath,
                "",
                1,
                None,
            )]),
            &class(Sensitivity::Medium),
        );
        assert_eq!(s.labels.len(), 2);
        assert_eq!(s.labels[1].events, 2);
    }

    #[test]
    fn sensitivity_levels() {
        assert_eq!(levels_at_least("medium"), &["medium", "high"]);
        assert_eq!(levels_at_least("none").len(), 4);
        assert!(levels_at_least("bogus").is_empty());
    }

    #[test]
    fn names_and_max() {
        let mut s = SensitiveData::default();
        assert_eq!(s.sensitivity_name(), "unknown");
        assert_eq!(s.function_class_name(), "unknown");
        let labels = EventLabels::default();
        s.record(
            &labels,
            &Classification {
                function: FunctionClass::Login,
                sensitivity: Sensitivity::High,
            },
        );
        s.record(
            &labels,
            &Classification {
                function: FunctionClass::Other,
                sensitivity: Sensitivity::Low,
            },
        );
        assert_eq!(s.sensitivity_name(), "high");
        assert_eq!(s.function_class_name(), "login");
        let mut t = SensitiveData::default();
        t.absorb(&s);
        assert_eq!(t, s);
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<SensitiveData>(&j).unwrap(), s);
    }
}
