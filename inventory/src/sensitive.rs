//! What sensitive data an endpoint carries (R-SEN-1, R-SEN-2): data labels per direction and
//! location kind with counts, function class votes and the highest sensitivity seen. Built
//! from [`apitap_labels::EventLabels`]; holds label names, locations kinds and counts only,
//! never values, masked samples or value hashes.

use std::collections::BTreeMap;

use apitap_labels::{
    Classification, Direction, EventLabels, FunctionClass, Label, Part, Sensitivity,
};
use serde::{Deserialize, Serialize};

/// Distinct (label, direction, location) entries kept per endpoint; further ones are counted
/// in [`SensitiveData::labels_dropped`].
pub const MAX_DATA_LABELS: usize = 256;

/// Shown when an endpoint was never labelled.
pub const UNKNOWN: &str = "unknown";

/// One data label an endpoint carries at one kind of location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataLabel {
    /// Label name (`prc_id`, `cn_mobile`, `password`, …).
    pub label: Label,
    /// `request` or `response`.
    pub direction: Direction,
    /// Location kind (`query_param`, `json_path`, `header`, …).
    pub location: Part,
    /// Events carrying it there.
    pub events: u64,
    /// Occurrences (records) over those events.
    pub occurrences: u64,
    /// Events where every occurrence was already masked by the application.
    #[serde(default)]
    pub masked_events: u64,
}

impl DataLabel {
    fn key(&self) -> (Label, u8, u8) {
        (self.label, self.direction as u8, self.location as u8)
    }
}

/// Sensitive-data facts of one endpoint, merged like the rest of its data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SensitiveData {
    /// Events labelled.
    #[serde(default)]
    pub events: u64,
    /// Data labels, ordered by label, direction, location.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
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
        // Per event: one entry per (label, direction, location kind).
        let mut seen: Vec<DataLabel> = Vec::new();
        for f in &labels.findings {
            let entry = DataLabel {
                label: f.label,
                direction: f.location.direction,
                location: f.location.part,
                events: 1,
                occurrences: u64::from(f.count),
                masked_events: u64::from(f.is_masked()),
            };
            match seen.iter_mut().find(|d| d.key() == entry.key()) {
                Some(d) => {
                    d.occurrences += entry.occurrences;
                    d.masked_events &= entry.masked_events;
                }
                None => seen.push(entry),
            }
        }
        for d in &seen {
            self.add_label(d);
        }
    }

    fn add_label(&mut self, d: &DataLabel) {
        match self.labels.binary_search_by_key(&d.key(), DataLabel::key) {
            Ok(i) => {
                let x = &mut self.labels[i];
                x.events += d.events;
                x.occurrences += d.occurrences;
                x.masked_events += d.masked_events;
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

    /// Distinct label names, sorted.
    pub fn label_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.labels.iter().map(|d| d.label.name().into()).collect();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
