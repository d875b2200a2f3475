//! The one writer of apitap's Prometheus text exposition (format 0.0.4, R-OPS-2): the sensor's
//! and the analyzer's `/metrics`, with the bus's and the admin HTTP servers' counters in them.
//!
//! It owns the format, not the values: each subsystem keeps its own counters (kernel per-CPU
//! maps, decoder stats, `BusMetrics` atomics, the analyzer's run statistics) and writes them
//! at scrape time into an [`Exposition`], which puts every metric family once, as
//!
//! ```text
//! # HELP <name> <help, `\` and newline escaped>
//! # TYPE <name> counter|gauge
//! <name>{<label>="<value, `\`, `"` and newline escaped>",...} <value>
//! ```
//!
//! Samples of one family may be added in several calls (e.g. the sensor's and the bus's
//! renderers into one exposition): they are gathered under the family's first `# HELP` and
//! `# TYPE`. Families keep the order in which they were first named.
//!
//! Names follow the house rule, checked by [`check_name`] (a `debug_assert!` on every family
//! written, and [`check_exposition`] over whole expositions in the crates' tests): the
//! Prometheus charset, lower case, `apitap_<subsystem>_<name>` with at least two non-empty
//! `_`-separated parts after `apitap_`, counters ending in `_total` (`apitap_<name>_<unit>_total`)
//! and gauges not. Label names are checked by [`check_label_name`].
//!
//! Why not the `prometheus-client` crate: it writes OpenMetrics text (a trailing `# EOF`,
//! counter families named without `_total` in `# TYPE`), which would change what scrapers
//! negotiate and what our dashboards and tests see, and it wants to own the values in its own
//! registered atomics while ours already live in the subsystems (kernel maps, snapshots).
//! Writing the 0.0.4 text over values the caller already holds takes a few hundred lines with
//! no dependency, and keeps every name, label and value as it was (the older `prometheus`
//! crate writes 0.0.4 but also owns the values and brings a protobuf dependency).

#![warn(missing_docs)]

use std::fmt;
use std::fmt::Write as _;

/// The `Content-Type` of the text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Prefix of every metric name.
pub const PREFIX: &str = "apitap_";

/// The type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (reset on restart); named `…_total`.
    Counter,
    /// A value now, may go down; named without `_total`.
    Gauge,
}

impl Kind {
    /// The word of the `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// Metric families being written; [`Exposition::finish`] gives the text.
#[derive(Debug, Default)]
pub struct Exposition {
    /// In the order they were first named.
    families: Vec<FamilyData>,
}

#[derive(Debug)]
struct FamilyData {
    name: String,
    kind: Kind,
    help: String,
    /// `(rendered labels, value)`; labels as `{a="x",b="y"}` or empty.
    samples: Vec<(String, u64)>,
}

/// One family of an [`Exposition`], to add samples to.
#[derive(Debug)]
pub struct Family<'a> {
    data: &'a mut FamilyData,
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// The family `name`: created with `kind` and `help` the first time, the same family
    /// (same `# HELP` and `# TYPE`) when named again; add its samples with [`Family::sample`].
    /// A family without samples is written as its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> Family<'_> {
        debug_assert!(
            check_name(name, kind).is_ok(),
            "{}",
            check_name(name, kind)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        );
        let i = match self.families.iter().position(|f| f.name == name) {
            Some(i) => {
                let f = &self.families[i];
                debug_assert!(
                    f.kind == kind && f.help == help,
                    "metric family {name} named again with another type or help"
                );
                i
            }
            None => {
                self.families.push(FamilyData {
                    name: name.to_owned(),
                    kind,
                    help: help.to_owned(),
                    samples: Vec::new(),
                });
                self.families.len() - 1
            }
        };
        Family {
            data: &mut self.families[i],
        }
    }

    /// A counter family of one sample without labels.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, Kind::Counter, help).sample(&[], value);
    }

    /// A gauge family of one sample without labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, Kind::Gauge, help).sample(&[], value);
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.families.is_empty()
    }

    /// Appends the text of every family, in the order they were first named, to `out`.
    pub fn write_to(&self, out: &mut String) {
        for f in &self.families {
            out.push_str("# HELP ");
            out.push_str(&f.name);
            out.push(' ');
            escape_help(out, &f.help);
            out.push('\n');
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.as_str());
            for (labels, value) in &f.samples {
                let _ = writeln!(out, "{}{labels} {value}", f.name);
            }
        }
    }

    /// The exposition text.
    pub fn finish(self) -> String {
        let mut out = String::with_capacity(64 * self.families.len());
        self.write_to(&mut out);
        out
    }
}

impl Family<'_> {
    /// Adds the sample with `labels` (`(name, value)` pairs, in this order; values escaped) and
    /// `value`. Each label set once per family.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: u64) -> &mut Self {
        let mut rendered = String::new();
        if !labels.is_empty() {
            rendered.push('{');
            for (i, (name, v)) in labels.iter().enumerate() {
                debug_assert!(
                    check_label_name(name).is_ok(),
                    "{}: label {name:?}: {}",
                    self.data.name,
                    check_label_name(name)
                        .err()
                        .map(|e| e.to_string())
                        .unwrap_or_default()
                );
                if i > 0 {
                    rendered.push(',');
                }
                rendered.push_str(name);
                rendered.push_str("=\"");
                escape_label_value(&mut rendered, v);
                rendered.push('"');
            }
            rendered.push('}');
        }
        debug_assert!(
            !self.data.samples.iter().any(|(l, _)| *l == rendered),
            "{}{rendered} written twice",
            self.data.name
        );
        self.data.samples.push((rendered, value));
        self
    }
}

/// Appends `help` escaped for a `# HELP` line: `\` as `\\`, newline as `\n` (a `"` stays as
/// it is: the format knows no `\"` there).
pub fn escape_help(out: &mut String, help: &str) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends `value` escaped for a label value: `\` as `\\`, `"` as `\"`, newline as `\n`.
pub fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Why a metric or label name breaks the format or the house rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// Outside the Prometheus charset (`[a-zA-Z_:][a-zA-Z0-9_:]*` for metrics,
    /// `[a-zA-Z_][a-zA-Z0-9_]*` for labels) or empty.
    Charset(String),
    /// Not lower-case letters, digits and single `_` between non-empty parts (house rule).
    NotSnakeCase(String),
    /// A metric name not starting with [`PREFIX`].
    Prefix(String),
    /// Fewer than two parts after `apitap_` (`apitap_<subsystem>_<name>`).
    TooShort(String),
    /// A counter not ending in `_total`.
    CounterWithoutTotal(String),
    /// A gauge ending in `_total`.
    GaugeWithTotal(String),
    /// A label name starting with `__` (reserved by Prometheus).
    ReservedLabel(String),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Charset(n) => write!(f, "{n:?} is outside the Prometheus name charset"),
            NameError::NotSnakeCase(n) => write!(
                f,
                "{n:?} is not lower-case letters, digits and single underscores"
            ),
            NameError::Prefix(n) => write!(f, "{n:?} does not start with {PREFIX}"),
            NameError::TooShort(n) => write!(
                f,
                "{n:?} has fewer than two parts after {PREFIX} (apitap_<subsystem>_<name>)"
            ),
            NameError::CounterWithoutTotal(n) => {
                write!(f, "counter {n:?} does not end in _total")
            }
            NameError::GaugeWithTotal(n) => write!(f, "gauge {n:?} ends in _total"),
            NameError::ReservedLabel(n) => write!(f, "label {n:?} starts with __ (reserved)"),
        }
    }
}

impl std::error::Error for NameError {}

/// Checks a metric name: the Prometheus charset and the house rule
/// (`apitap_<subsystem>_<name>`, lower snake case, counters `…_total`, gauges not).
pub fn check_name(name: &str, kind: Kind) -> Result<(), NameError> {
    let mut chars = name.chars();
    let charset_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if !charset_ok {
        return Err(NameError::Charset(name.to_owned()));
    }
    if !is_snake_case(name) {
        return Err(NameError::NotSnakeCase(name.to_owned()));
    }
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return Err(NameError::Prefix(name.to_owned()));
    };
    let parts = rest.split('_').count();
    match kind {
        Kind::Counter if !rest.ends_with("_total") => {
            Err(NameError::CounterWithoutTotal(name.to_owned()))
        }
        // `<subsystem>_<name>_total`.
        Kind::Counter if parts < 3 => Err(NameError::TooShort(name.to_owned())),
        Kind::Gauge if rest.ends_with("_total") => Err(NameError::GaugeWithTotal(name.to_owned())),
        Kind::Gauge if parts < 2 => Err(NameError::TooShort(name.to_owned())),
        _ => Ok(()),
    }
}

/// Checks a label name: the Prometheus charset, not `__…`, lower snake case.
pub fn check_label_name(name: &str) -> Result<(), NameError> {
    let mut chars = name.chars();
    let charset_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !charset_ok {
        return Err(NameError::Charset(name.to_owned()));
    }
    if name.starts_with("__") {
        return Err(NameError::ReservedLabel(name.to_owned()));
    }
    if !is_snake_case(name) {
        return Err(NameError::NotSnakeCase(name.to_owned()));
    }
    Ok(())
}

/// Lower-case ASCII letters and digits in non-empty parts joined by single `_`, starting
/// with a letter.
fn is_snake_case(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.split('_').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

/// Where and why a text is not an exposition as this crate writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpositionError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ExpositionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ExpositionError {}

/// Checks a whole exposition (for tests over everything a `/metrics` serves, including
/// text written outside an [`Exposition`]): every family once, as `# HELP`, `# TYPE` (counter or
/// gauge) and then only its own samples; names by [`check_name`] and [`check_label_name`];
/// label values quoted and escaped; each label set once per family; values numbers; a
/// final newline.
pub fn check_exposition(text: &str) -> Result<(), ExpositionError> {
    let mut seen: Vec<&str> = Vec::new();
    // The family being read: name, whether its TYPE line came, its label sets so far.
    let mut current: Option<(&str, bool, Vec<&str>)> = None;
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(ExpositionError {
            line: text.lines().count(),
            reason: "no final newline".into(),
        });
    }
    for (i, line) in text.lines().enumerate() {
        let err = |reason: String| ExpositionError {
            line: i + 1,
            reason,
        };
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            if let Some((prev, false, _)) = &current {
                return Err(err(format!(
                    "# HELP {name} follows # HELP {prev} without # TYPE"
                )));
            }
            if seen.contains(&name) {
                return Err(err(format!("family {name} written twice")));
            }
            if help.is_empty() {
                return Err(err(format!("# HELP {name} without text")));
            }
            check_help_escapes(help).map_err(|r| err(format!("# HELP {name}: {r}")))?;
            seen.push(name);
            current = Some((name, false, Vec::new()));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            match &current {
                Some((help_name, false, _)) if *help_name == name => {}
                _ => return Err(err(format!("# TYPE {name} not right after its # HELP"))),
            }
            let kind = match kind {
                "counter" => Kind::Counter,
                "gauge" => Kind::Gauge,
                other => return Err(err(format!("{name}: type {other:?}"))),
            };
            check_name(name, kind).map_err(|e| err(e.to_string()))?;
            current = Some((name, true, Vec::new()));
        } else if line.starts_with('#') || line.is_empty() {
            return Err(err(format!("unexpected line {line:?}")));
        } else {
            let Some((family, true, label_sets)) = &mut current else {
                return Err(err(format!("sample before any # TYPE: {line:?}")));
            };
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let (name, rest) = line.split_at(name_end);
            if name != *family {
                return Err(err(format!("sample of {name} in family {family}")));
            }
            let (labels, value) = match rest.strip_prefix('{') {
                Some(r) => {
                    let end = labels_end(r).map_err(|r| err(format!("{name}: {r}")))?;
                    (&rest[..end + 2], &r[end + 1..])
                }
                None => ("", rest),
            };
            let Some(value) = value.strip_prefix(' ') else {
                return Err(err(format!("{name}: no space before the value")));
            };
            if value.parse::<f64>().is_err() {
                return Err(err(format!("{name}: value {value:?} is not a number")));
            }
            if label_sets.contains(&labels) {
                return Err(err(format!("{name}{labels} written twice")));
            }
            label_sets.push(labels);
        }
    }
    if let Some((name, false, _)) = current {
        return Err(ExpositionError {
            line: text.lines().count(),
            reason: format!("# HELP {name} without # TYPE"),
        });
    }
    Ok(())
}

/// Only `\\` and `\n` escapes in HELP text.
fn check_help_escapes(help: &str) -> Result<(), String> {
    let mut chars = help.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
            return Err("escape other than \\\\ or \\n".into());
        }
    }
    Ok(())
}

/// In `r` (after a sample's `{`): checks `name="value",...}` and returns the index of `}`.
fn labels_end(r: &str) -> Result<usize, String> {
    let bytes = r.as_bytes();
    let mut i = 0;
    let mut names: Vec<&str> = Vec::new();
    loop {
        let eq = r[i..].find('=').ok_or("label without =")? + i;
        let name = &r[i..eq];
        check_label_name(name).map_err(|e| e.to_string())?;
        if names.contains(&name) {
            return Err(format!("label {name} twice"));
        }
        names.push(name);
        if bytes.get(eq + 1) != Some(&b'"') {
            return Err(format!("label {name}: value not quoted"));
        }
        let mut j = eq + 2;
        loop {
            match bytes.get(j) {
                None => return Err(format!("label {name}: value not closed")),
                Some(b'\\') => match bytes.get(j + 1) {
                    Some(b'\\' | b'"' | b'n') => j += 2,
                    _ => return Err(format!("label {name}: bad escape")),
                },
                Some(b'"') => break,
                Some(b'\n') => return Err(format!("label {name}: raw newline")),
                Some(_) => j += 1,
            }
        }
        match bytes.get(j + 1) {
            Some(b',') => i = j + 2,
            Some(b'}') => return Ok(j + 1),
            _ => return Err(format!("label {name}: no , or }} after the value")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_help_type_and_samples_once_per_family() {
        let mut e = Exposition::new();
        e.counter("apitap_x_events_total", "Events seen.", 7);
        e.gauge("apitap_x_open_connections", "Connections open now.", 2);
        let text = e.finish();
        assert_eq!(
            text,
            "# HELP apitap_x_events_total Events seen.\n\
             # TYPE apitap_x_events_total counter\n\
             apitap_x_events_total 7\n\
             # HELP apitap_x_open_connections Connections open now.\n\
             # TYPE apitap_x_open_connections gauge\n\
             apitap_x_open_connections 2\n"
        );
        check_exposition(&text).unwrap();
    }

    #[test]
    fn samples_added_in_several_calls_stay_in_one_family() {
        let mut e = Exposition::new();
        e.family(
            "apitap_x_dropped_events_total",
            Kind::Counter,
            "Lost, by cause.",
        )
        .sample(&[("cause", "full")], 3);
        e.counter("apitap_x_events_total", "Events seen.", 1);
        e.family(
            "apitap_x_dropped_events_total",
            Kind::Counter,
            "Lost, by cause.",
        )
        .sample(&[("cause", "io")], 1)
        .sample(&[("cause", "encode")], 0);
        let text = e.finish();
        assert_eq!(
            text,
            "# HELP apitap_x_dropped_events_total Lost, by cause.\n\
             # TYPE apitap_x_dropped_events_total counter\n\
             apitap_x_dropped_events_total{cause=\"full\"} 3\n\
             apitap_x_dropped_events_total{cause=\"io\"} 1\n\
             apitap_x_dropped_events_total{cause=\"encode\"} 0\n\
             # HELP apitap_x_events_total Events seen.\n\
             # TYPE apitap_x_events_total counter\n\
             apitap_x_events_total 1\n"
        );
        assert_eq!(text.matches("# TYPE").count(), 2);
        check_exposition(&text).unwrap();
    }

    #[test]
    fn several_labels_in_their_order_and_empty_families() {
        let mut e = Exposition::new();
        e.family(
            "apitap_x_http_rejected_connections_total",
            Kind::Counter,
            "Refused.",
        )
        .sample(&[("server", "metrics"), ("cause", "method")], 1);
        e.family("apitap_x_anomaly_events_total", Kind::Counter, "None yet.");
        let text = e.finish();
        assert!(text.contains(
            "apitap_x_http_rejected_connections_total{server=\"metrics\",cause=\"method\"} 1\n"
        ));
        assert!(text.ends_with(
            "# HELP apitap_x_anomaly_events_total None yet.\n\
             # TYPE apitap_x_anomaly_events_total counter\n"
        ));
        check_exposition(&text).unwrap();
    }

    #[test]
    fn escapes_label_values_and_help() {
        let mut e = Exposition::new();
        e.family(
            "apitap_x_findings_total",
            Kind::Counter,
            "Say \"hi\" \\ twice\nplease.",
        )
        .sample(&[("label", "a\"b\\c\nd")], 1);
        let text = e.finish();
        assert!(
            text.contains("# HELP apitap_x_findings_total Say \"hi\" \\\\ twice\\nplease.\n"),
            "{text}"
        );
        assert!(
            text.contains("apitap_x_findings_total{label=\"a\\\"b\\\\c\\nd\"} 1\n"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 3);
        check_exposition(&text).unwrap();
    }

    #[test]
    fn names_follow_the_house_rule() {
        for ok in [
            "apitap_bus_events_dropped_total",
            "apitap_weak_points_total",
            "apitap_kernel_ipv6_ext_headers_total",
        ] {
            check_name(ok, Kind::Counter).unwrap();
        }
        for ok in ["apitap_bus_spooling", "apitap_decode_held_bytes"] {
            check_name(ok, Kind::Gauge).unwrap();
        }
        let counter = |n| check_name(n, Kind::Counter).unwrap_err();
        let gauge = |n| check_name(n, Kind::Gauge).unwrap_err();
        assert!(matches!(
            counter("apitap_bus_events"),
            NameError::CounterWithoutTotal(_)
        ));
        assert!(matches!(
            counter("apitap_events_total"),
            NameError::TooShort(_)
        ));
        assert!(matches!(counter("bus_events_total"), NameError::Prefix(_)));
        assert!(matches!(
            counter("apitap_bus-x_total"),
            NameError::Charset(_)
        ));
        assert!(matches!(
            counter("1apitap_x_y_total"),
            NameError::Charset(_)
        ));
        assert!(matches!(counter(""), NameError::Charset(_)));
        assert!(matches!(
            counter("apitap_Bus_x_total"),
            NameError::NotSnakeCase(_)
        ));
        assert!(matches!(
            counter("apitap__x_y_total"),
            NameError::NotSnakeCase(_)
        ));
        assert!(matches!(
            counter("apitap:x_y_total"),
            NameError::NotSnakeCase(_)
        ));
        assert!(matches!(
            gauge("apitap_bus_spool_total"),
            NameError::GaugeWithTotal(_)
        ));
        assert!(matches!(gauge("apitap_spooling"), NameError::TooShort(_)));
        check_label_name("cause").unwrap();
        check_label_name("hash_key_id").unwrap();
        assert!(matches!(
            check_label_name("__name"),
            Err(NameError::ReservedLabel(_))
        ));
        assert!(matches!(
            check_label_name("a-b"),
            Err(NameError::Charset(_))
        ));
        assert!(matches!(
            check_label_name("Cause"),
            Err(NameError::NotSnakeCase(_))
        ));
        assert!(matches!(check_label_name(""), Err(NameError::Charset(_))));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "does not end in _total")]
    fn a_counter_named_against_the_rule_fails_in_debug_builds() {
        Exposition::new().counter("apitap_x_events", "No suffix.", 1);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "written twice")]
    fn a_label_set_written_twice_fails_in_debug_builds() {
        let mut e = Exposition::new();
        e.counter("apitap_x_events_total", "A.", 1);
        e.counter("apitap_x_events_total", "A.", 2);
    }

    #[test]
    fn check_exposition_finds_what_the_writer_never_writes() {
        let bad = |t: &str| check_exposition(t).unwrap_err().reason;
        let head = "# HELP apitap_x_a_total A.\n# TYPE apitap_x_a_total counter\n";
        assert!(bad("apitap_x_a_total 1\n").contains("before any # TYPE"));
        assert!(bad(&format!("{head}apitap_x_a_total 1\n{head}")).contains("twice"));
        assert!(bad(&format!("{head}apitap_x_b_total 1\n")).contains("in family"));
        assert!(
            bad(&format!(
                "{head}apitap_x_a_total{{c=\"x\"}} 1\napitap_x_a_total{{c=\"x\"}} 2\n"
            ))
            .contains("twice")
        );
        assert!(bad(&format!("{head}apitap_x_a_total{{c=\"x\\q\"}} 1\n")).contains("escape"));
        assert!(bad(&format!("{head}apitap_x_a_total{{c=x}} 1\n")).contains("not quoted"));
        assert!(bad(&format!("{head}apitap_x_a_total one\n")).contains("not a number"));
        assert!(bad(&format!("{head}apitap_x_a_total 1")).contains("final newline"));
        assert!(bad("# HELP apitap_x_a_total A.\n").contains("without # TYPE"));
        assert!(
            bad("# HELP apitap_x_a_total A \\\"q\\\".\n# TYPE apitap_x_a_total counter\n")
                .contains("escape")
        );
        assert!(bad("# HELP apitap_x_a A.\n# TYPE apitap_x_a counter\n").contains("_total"));
        assert!(bad("# HELP apitap_x_a A.\n# TYPE apitap_x_a summary\n").contains("type"));
        check_exposition("").unwrap();
        check_exposition(&format!(
            "{head}apitap_x_a_total{{c=\"a\\\\\\\"\\n\",d=\"\"}} 1\n"
        ))
        .unwrap();
    }
}
