//! Shared helpers of the inventory evaluation tests and benchmark: the recorded httpbin
//! fixture, endpoint-level metrics against a spec, and the Akto baseline.

#![allow(dead_code)]

pub mod akto;
pub mod conformance;
pub mod events;
pub mod pg;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};

use apitap_analyzer::inventory::spec::PathPattern;
use apitap_schema::{ApiEvent, decode_event};

/// Returns true when `problem` is `None`; otherwise skips (prints why, returns false) or,
/// under `CI=true`, fails the test ([`apitap_tests::require`]).
pub fn require(test: &str, problem: Option<String>) -> bool {
    apitap_tests::require(test, "test", problem)
}

/// `tests/data/httpbin`.
pub fn httpbin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/httpbin")
}

/// The recorded httpbin events (real sensor capture, see `record_httpbin.rs`).
pub fn httpbin_events() -> Vec<ApiEvent> {
    httpbin_events_from("events.jsonl.gz")
}

/// The two independent recordings (generator seeds 5 and 11).
pub const HTTPBIN_RECORDINGS: [&str; 2] = ["events.jsonl.gz", "events-seed11.jsonl.gz"];

/// One recording of `tests/data/httpbin`.
pub fn httpbin_events_from(file: &str) -> Vec<ApiEvent> {
    let gz = std::fs::read(httpbin_dir().join(file)).expect("fixture present");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .expect("fixture is gzip");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| decode_event(l.as_bytes()).expect("fixture events decode"))
        .collect()
}

/// httpbin's own spec (`/spec.json`, Swagger 2.0) as recorded with the fixture.
pub fn httpbin_spec() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(httpbin_dir().join("spec.json")).unwrap()).unwrap()
}

/// `/a/{x}/b` → `/a/{}/b`: templates compare without parameter names.
pub fn normalize(template: &str) -> String {
    apitap_analyzer::inventory::openapi::path_shape(template)
}

/// (METHOD, template) of every operation of a Swagger/OpenAPI document.
pub fn spec_operations(spec: &serde_json::Value) -> Vec<(String, String)> {
    let base = spec["basePath"]
        .as_str()
        .unwrap_or("")
        .trim_end_matches('/');
    let mut out = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for m in [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ] {
            if item.get(m).is_some() {
                out.push((m.to_ascii_uppercase(), format!("{base}{path}")));
            }
        }
    }
    out.sort();
    out
}

/// Endpoint-level evaluation of discovered (method, template) pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// Discovered endpoints.
    pub discovered: usize,
    /// Truth endpoints (that saw traffic).
    pub truth: usize,
    /// Discovered that equal a truth endpoint (names ignored).
    pub true_positives: usize,
    /// `true_positives / discovered`.
    pub precision: f64,
    /// `true_positives / truth`.
    pub recall: f64,
    /// Harmonic mean.
    pub f1: f64,
    /// Discovered endpoints whose requests belong to two or more truth endpoints.
    pub over_merges: usize,
    /// Truth endpoints whose requests landed in two or more discovered endpoints.
    pub splits: usize,
    /// Discovered endpoints that are not truth endpoints.
    pub false_positives: Vec<String>,
    /// Truth endpoints not discovered.
    pub missed: Vec<String>,
}

impl std::fmt::Display for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "discovered {} truth {} tp {} precision {:.4} recall {:.4} f1 {:.4} over-merges {} splits {}",
            self.discovered,
            self.truth,
            self.true_positives,
            self.precision,
            self.recall,
            self.f1,
            self.over_merges,
            self.splits
        )
    }
}

/// Patterns of one endpoint set: literal templates by (method, path) for an exact lookup (a
/// literal match is always the most specific), the templated ones for a scan.
struct Index {
    literal: std::collections::HashMap<(String, String), String>,
    templated: Vec<(String, PathPattern)>,
}

fn index(patterns: Vec<(String, PathPattern)>) -> Index {
    let mut literal = std::collections::HashMap::new();
    let mut templated = Vec::new();
    for (m, p) in patterns {
        if p.template.contains('{') {
            templated.push((m, p));
        } else {
            let key: Vec<&str> = p.template.split('/').filter(|s| !s.is_empty()).collect();
            literal.insert((m, key.join("/")), p.template.clone());
        }
    }
    Index { literal, templated }
}

/// The most specific pattern of `index` (same method) that matches `path`.
fn best_match<'a>(index: &'a Index, method: &str, path: &str) -> Option<&'a str> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if let Some(t) = index.literal.get(&(method.to_owned(), segs.join("/"))) {
        return Some(t);
    }
    index
        .templated
        .iter()
        .filter(|(m, _)| m == method)
        .filter(|(_, p)| p.captures(&segs).is_some())
        .max_by_key(|(_, p)| {
            let literals = p
                .template
                .split('/')
                .filter(|s| !s.is_empty() && !s.contains('{'))
                .count();
            (literals, p.template.len())
        })
        .map(|(_, p)| p.template.as_str())
}

/// Scores `discovered` against `truth` on the traffic `requests` (method, path): precision,
/// recall and F1 over (method, template) with parameter names ignored, and over-merges and
/// splits by where each request lands in either set. Only truth endpoints that received
/// traffic count.
pub fn evaluate(
    discovered: &[(String, String)],
    truth: &[(String, String)],
    requests: &[(String, String)],
) -> Metrics {
    let compile = |set: &[(String, String)]| -> Vec<(String, PathPattern)> {
        set.iter()
            .filter_map(|(m, t)| PathPattern::parse(t).ok().map(|p| (m.clone(), p)))
            .collect()
    };
    let truth_p = index(compile(truth));
    let disc_p = index(compile(discovered));
    let mut truth_to_disc: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut disc_to_truth: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, path) in requests {
        let t = best_match(&truth_p, m, path).map(|t| format!("{m} {}", normalize(t)));
        let d = best_match(&disc_p, m, path).map(|d| format!("{m} {}", normalize(d)));
        if let (Some(t), Some(d)) = (t, d) {
            truth_to_disc
                .entry(t.clone())
                .or_default()
                .insert(d.clone());
            disc_to_truth.entry(d).or_default().insert(t);
        }
    }
    let truth_set: BTreeSet<String> = truth
        .iter()
        .map(|(m, t)| format!("{m} {}", normalize(t)))
        .filter(|k| truth_to_disc.contains_key(k))
        .collect();
    let disc_set: BTreeSet<String> = discovered
        .iter()
        .map(|(m, t)| format!("{m} {}", normalize(t)))
        .collect();
    let tp = disc_set.intersection(&truth_set).count();
    let precision = if disc_set.is_empty() {
        0.0
    } else {
        tp as f64 / disc_set.len() as f64
    };
    let recall = if truth_set.is_empty() {
        0.0
    } else {
        tp as f64 / truth_set.len() as f64
    };
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    Metrics {
        discovered: disc_set.len(),
        truth: truth_set.len(),
        true_positives: tp,
        precision,
        recall,
        f1,
        over_merges: disc_to_truth.values().filter(|t| t.len() > 1).count(),
        splits: truth_to_disc.values().filter(|d| d.len() > 1).count(),
        false_positives: disc_set.difference(&truth_set).cloned().collect(),
        missed: truth_set.difference(&disc_set).cloned().collect(),
    }
}

/// (method, path) of each event.
pub fn requests(events: &[ApiEvent]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e.request.method.to_ascii_uppercase(),
                e.request.path.clone(),
            )
        })
        .collect()
}
