//! Spec-first matching and analyst overrides (R-INV-1).
//!
//! Operators can give OpenAPI documents (Swagger 2.0 or OpenAPI 3.x, JSON or YAML) per
//! service. Observed paths are matched against them before discovery runs: a match takes the
//! spec's template and parameter names, and the endpoint is *documented* (or *deprecated*:
//! a zombie candidate still in use); a path the spec does not have is *undocumented* (a shadow
//! API), as is a documented path called with an undocumented method; documented operations
//! never seen are zombie candidates too ([`SpecStatus`]).
//!
//! Analyst overrides come first of all: force a template, merge several path patterns into
//! one endpoint, or split a literal path out so that it is never folded into a sibling
//! parameter ([`OverrideRule`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::tree::segments;

/// Where an endpoint stands against the operator's spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpecStatus {
    /// No spec was given for the service.
    NoSpec,
    /// The operation is in the spec.
    Documented,
    /// The operation is in the spec, marked deprecated, and still called: a zombie candidate.
    Deprecated,
    /// The path is not in the spec: a shadow API.
    Undocumented,
    /// The path is in the spec but not with this method: a shadow operation.
    UndocumentedMethod,
    /// In the spec but never seen: a zombie candidate.
    Unseen,
}

impl SpecStatus {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            SpecStatus::NoSpec => "no_spec",
            SpecStatus::Documented => "documented",
            SpecStatus::Deprecated => "deprecated",
            SpecStatus::Undocumented => "undocumented",
            SpecStatus::UndocumentedMethod => "undocumented_method",
            SpecStatus::Unseen => "unseen",
        }
    }

    /// Parses [`SpecStatus::as_str`].
    pub fn parse(s: &str) -> Option<SpecStatus> {
        [
            SpecStatus::NoSpec,
            SpecStatus::Documented,
            SpecStatus::Deprecated,
            SpecStatus::Undocumented,
            SpecStatus::UndocumentedMethod,
            SpecStatus::Unseen,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    /// Observed but not documented.
    pub fn is_shadow(self) -> bool {
        matches!(
            self,
            SpecStatus::Undocumented | SpecStatus::UndocumentedMethod
        )
    }

    /// Deprecated but in use, or documented but never seen.
    pub fn is_zombie_candidate(self) -> bool {
        matches!(self, SpecStatus::Deprecated | SpecStatus::Unseen)
    }
}

/// Errors loading specs or overrides.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read OpenAPI document {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Neither JSON nor YAML, or not an OpenAPI/Swagger document.
    #[error("OpenAPI document {}: {reason}", .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A path pattern is malformed.
    #[error("invalid path pattern {pattern:?}: {reason}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// What is wrong.
        reason: &'static str,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatSeg {
    Literal(String),
    /// A parameter, possibly inside a segment (`{name}.json`): prefix, name, suffix.
    Param(String, String, String),
}

/// A path template such as `/users/{id}/files/{name}.json`, matched segment by segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    /// The template text.
    pub template: String,
    segs: Vec<PatSeg>,
}

impl PathPattern {
    /// Parses a template. Braces must pair up within a segment; one parameter per segment.
    pub fn parse(template: &str) -> Result<PathPattern, SpecError> {
        let bad = |reason| SpecError::Pattern {
            pattern: template.to_owned(),
            reason,
        };
        if !template.starts_with('/') {
            return Err(bad("must start with /"));
        }
        let mut segs = Vec::new();
        for seg in segments(template) {
            match (seg.find('{'), seg.find('}')) {
                (None, None) => segs.push(PatSeg::Literal(seg.to_owned())),
                (Some(o), Some(c)) if o < c && seg.matches('{').count() == 1 => {
                    let name = &seg[o + 1..c];
                    if name.is_empty() {
                        return Err(bad("empty parameter name"));
                    }
                    segs.push(PatSeg::Param(
                        seg[..o].to_owned(),
                        name.to_owned(),
                        seg[c + 1..].to_owned(),
                    ));
                }
                _ => return Err(bad("unbalanced or repeated braces in a segment")),
            }
        }
        Ok(PathPattern {
            template: template.to_owned(),
            segs,
        })
    }

    /// Segment indexes of the parameters when `path_segs` matches.
    pub fn captures(&self, path_segs: &[&str]) -> Option<Vec<u16>> {
        if path_segs.len() != self.segs.len() {
            return None;
        }
        let mut caps = Vec::new();
        for (i, (p, s)) in self.segs.iter().zip(path_segs).enumerate() {
            match p {
                PatSeg::Literal(l) => {
                    if l != s {
                        return None;
                    }
                }
                PatSeg::Param(pre, _, post) => {
                    if s.len() <= pre.len() + post.len()
                        || !s.starts_with(pre.as_str())
                        || !s.ends_with(post.as_str())
                    {
                        return None;
                    }
                    caps.push(i.min(u16::MAX as usize) as u16);
                }
            }
        }
        Some(caps)
    }

    /// More literal text matches first (OpenAPI: concrete paths before templated ones).
    fn specificity(&self) -> (usize, usize) {
        let literals = self
            .segs
            .iter()
            .filter(|s| matches!(s, PatSeg::Literal(_)))
            .count();
        let fixed: usize = self
            .segs
            .iter()
            .map(|s| match s {
                PatSeg::Literal(l) => l.len(),
                PatSeg::Param(a, _, b) => a.len() + b.len(),
            })
            .sum();
        (literals, fixed)
    }
}

/// One documented operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecOperation {
    /// Upper-case method.
    pub method: String,
    /// Marked `deprecated: true`.
    pub deprecated: bool,
}

/// One documented path with its operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecPath {
    /// Full template (base path included).
    pub pattern: PathPattern,
    /// Its operations.
    pub operations: Vec<SpecOperation>,
}

/// The documented paths of one service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Paths, most specific first.
    pub paths: Vec<SpecPath>,
}

/// The outcome of matching a request against a service spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecMatch {
    /// The documented template, when the path is documented.
    pub template: Option<String>,
    /// Parameter segment indexes.
    pub captures: Vec<u16>,
    /// Documented, deprecated, undocumented…
    pub status: SpecStatus,
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

impl ServiceSpec {
    /// Loads one document (JSON, or YAML when it does not parse as JSON).
    pub fn load(path: &Path) -> Result<ServiceSpec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let doc: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) => serde_yaml::from_str(&text).map_err(|e| SpecError::Invalid {
                path: path.to_path_buf(),
                reason: format!("neither JSON nor YAML ({})", yaml_position(&e)),
            })?,
        };
        ServiceSpec::from_document(&doc).map_err(|reason| SpecError::Invalid {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Builds the index from a parsed document.
    pub fn from_document(doc: &serde_json::Value) -> Result<ServiceSpec, String> {
        let base = if doc.get("swagger").is_some() {
            doc.get("basePath")
                .and_then(|b| b.as_str())
                .unwrap_or("")
                .to_owned()
        } else if doc
            .get("openapi")
            .and_then(|v| v.as_str())
            .is_some_and(|v| v.starts_with('3'))
        {
            doc.get("servers")
                .and_then(|s| s.get(0))
                .and_then(|s| s.get("url"))
                .and_then(|u| u.as_str())
                .map(server_path)
                .unwrap_or_default()
        } else {
            return Err("not a Swagger 2.0 or OpenAPI 3.x document".into());
        };
        let base = base.trim_end_matches('/');
        let paths = doc
            .get("paths")
            .and_then(|p| p.as_object())
            .ok_or("no `paths` object")?;
        let mut out = Vec::new();
        for (template, item) in paths {
            let full = format!("{base}{template}");
            let pattern = PathPattern::parse(&full).map_err(|e| e.to_string())?;
            let operations = METHODS
                .iter()
                .filter_map(|m| {
                    item.get(*m).map(|op| SpecOperation {
                        method: m.to_ascii_uppercase(),
                        deprecated: op
                            .get("deprecated")
                            .and_then(|d| d.as_bool())
                            .unwrap_or(false),
                    })
                })
                .collect();
            out.push(SpecPath {
                pattern,
                operations,
            });
        }
        out.sort_by(|a, b| {
            b.pattern
                .specificity()
                .cmp(&a.pattern.specificity())
                .then(a.pattern.template.cmp(&b.pattern.template))
        });
        Ok(ServiceSpec { paths: out })
    }

    /// Matches a request.
    pub fn match_request(&self, method: &str, path_segs: &[&str]) -> SpecMatch {
        for p in &self.paths {
            if let Some(captures) = p.pattern.captures(path_segs) {
                let status = match p.operations.iter().find(|o| o.method == method) {
                    Some(op) if op.deprecated => SpecStatus::Deprecated,
                    Some(_) => SpecStatus::Documented,
                    None => SpecStatus::UndocumentedMethod,
                };
                return SpecMatch {
                    template: Some(p.pattern.template.clone()),
                    captures,
                    status,
                };
            }
        }
        SpecMatch {
            template: None,
            captures: Vec::new(),
            status: SpecStatus::Undocumented,
        }
    }
}

fn yaml_position(e: &serde_yaml::Error) -> String {
    match e.location() {
        Some(l) => format!("line {} column {}", l.line(), l.column()),
        None => "unknown position".into(),
    }
}

/// The path part of an OpenAPI 3 server URL (`https://api.example.com/v1` → `/v1`).
fn server_path(url: &str) -> String {
    let rest = match url.split_once("://") {
        Some((_, rest)) => rest.find('/').map(|i| &rest[i..]).unwrap_or(""),
        None => url,
    };
    // Server variables are not resolved: a templated base path is dropped.
    if rest.contains('{') {
        return String::new();
    }
    rest.to_owned()
}

/// What an override does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverrideKind {
    /// Paths matching the pattern are this endpoint (`template` = the pattern).
    Template,
    /// Paths matching any of several patterns become one endpoint, `template`.
    Merge,
    /// A literal path stays its own endpoint, never folded into a sibling parameter.
    Split,
}

/// `[[inventory.overrides]]`: an analyst's correction of discovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideRule {
    /// Service the rule applies to; absent: every service.
    #[serde(default)]
    pub service: Option<String>,
    /// `template`, `merge` or `split`.
    pub kind: OverrideKind,
    /// Path patterns (`/files/{name}`) for `template` and `merge` (one for `template`);
    /// literal paths for `split`.
    pub paths: Vec<String>,
    /// The endpoint template for `merge` (for `template` and `split` the single path).
    #[serde(default)]
    pub template: Option<String>,
}

/// A compiled override.
#[derive(Debug, Clone)]
pub struct CompiledOverride {
    service: Option<String>,
    patterns: Vec<PathPattern>,
    template: String,
}

impl CompiledOverride {
    /// Validates and compiles a rule; `index` names it in errors.
    pub fn compile(rule: &OverrideRule) -> Result<CompiledOverride, String> {
        if rule.paths.is_empty() {
            return Err("`paths` must not be empty".into());
        }
        let patterns = rule
            .paths
            .iter()
            .map(|p| PathPattern::parse(p).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        let template = match rule.kind {
            OverrideKind::Template => {
                if patterns.len() != 1 {
                    return Err("`template` takes exactly one path in `paths`".into());
                }
                patterns[0].template.clone()
            }
            OverrideKind::Split => {
                if patterns.len() != 1 || patterns[0].template.contains('{') {
                    return Err("`split` takes exactly one literal path in `paths`".into());
                }
                patterns[0].template.clone()
            }
            OverrideKind::Merge => {
                let t = rule
                    .template
                    .clone()
                    .ok_or("`merge` needs `template`, the merged endpoint's template")?;
                PathPattern::parse(&t).map_err(|e| e.to_string())?;
                t
            }
        };
        Ok(CompiledOverride {
            service: rule.service.clone(),
            patterns,
            template,
        })
    }

    /// The template and parameter indexes if this rule applies.
    pub fn apply(&self, service: &str, path_segs: &[&str]) -> Option<(&str, Vec<u16>)> {
        if self.service.as_deref().is_some_and(|s| s != service) {
            return None;
        }
        self.patterns
            .iter()
            .find_map(|p| p.captures(path_segs))
            .map(|caps| (self.template.as_str(), caps))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(p: &str) -> Vec<&str> {
        segments(p).collect()
    }

    #[test]
    fn patterns_match_whole_and_partial_segments() {
        let p = PathPattern::parse("/files/{name}.json").unwrap();
        assert_eq!(p.captures(&segs("/files/report.json")), Some(vec![1]));
        assert_eq!(p.captures(&segs("/files/report.csv")), None);
        assert_eq!(p.captures(&segs("/files/.json")), None);
        assert!(PathPattern::parse("files").is_err());
        assert!(PathPattern::parse("/a/{b}{c}").is_err());
    }

    #[test]
    fn swagger2_and_openapi3_documents() {
        let v2 = serde_json::json!({
            "swagger": "2.0", "basePath": "/api",
            "paths": {
                "/users/{id}": {"get": {}, "delete": {"deprecated": true}},
                "/users/me": {"get": {}}
            }
        });
        let s = ServiceSpec::from_document(&v2).unwrap();
        let m = s.match_request("GET", &segs("/api/users/me"));
        assert_eq!(m.template.as_deref(), Some("/api/users/me"));
        let m = s.match_request("GET", &segs("/api/users/7"));
        assert_eq!(
            (m.template.as_deref(), m.status, m.captures),
            (Some("/api/users/{id}"), SpecStatus::Documented, vec![2])
        );
        assert_eq!(
            s.match_request("DELETE", &segs("/api/users/7")).status,
            SpecStatus::Deprecated
        );
        assert_eq!(
            s.match_request("PUT", &segs("/api/users/7")).status,
            SpecStatus::UndocumentedMethod
        );
        assert_eq!(
            s.match_request("GET", &segs("/api/other")).status,
            SpecStatus::Undocumented
        );
        let v3 = serde_json::json!({
            "openapi": "3.0.3", "servers": [{"url": "https://x.example/v1"}],
            "paths": {"/a": {"post": {}}}
        });
        let s = ServiceSpec::from_document(&v3).unwrap();
        assert_eq!(
            s.match_request("POST", &segs("/v1/a")).status,
            SpecStatus::Documented
        );
        assert!(ServiceSpec::from_document(&serde_json::json!({"paths": {}})).is_err());
    }

    #[test]
    fn yaml_documents_load() {
        let dir = std::env::temp_dir().join(format!("apitap-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("api.yaml");
        std::fs::write(
            &p,
            "openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths:\n  /x/{id}:\n    get: {}\n",
        )
        .unwrap();
        let s = ServiceSpec::load(&p).unwrap();
        assert_eq!(s.paths[0].pattern.template, "/x/{id}");
        std::fs::write(&p, "{ not: [valid").unwrap();
        assert!(
            ServiceSpec::load(&p)
                .unwrap_err()
                .to_string()
                .contains("api.yaml")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn overrides() {
        let merge = CompiledOverride::compile(&OverrideRule {
            service: Some("api".into()),
            kind: OverrideKind::Merge,
            paths: vec!["/v1/acct/{id}".into(), "/v1/accounts/{id}".into()],
            template: Some("/v1/accounts/{account_id}".into()),
        })
        .unwrap();
        assert_eq!(
            merge.apply("api", &segs("/v1/acct/9")),
            Some(("/v1/accounts/{account_id}", vec![2]))
        );
        assert_eq!(merge.apply("other", &segs("/v1/acct/9")), None);
        let split = OverrideRule {
            service: None,
            kind: OverrideKind::Split,
            paths: vec!["/users/{x}".into()],
            template: None,
        };
        assert!(CompiledOverride::compile(&split).is_err());
        let no_template = OverrideRule {
            service: None,
            kind: OverrideKind::Merge,
            paths: vec!["/a".into()],
            template: None,
        };
        assert!(CompiledOverride::compile(&no_template).is_err());
    }
}
