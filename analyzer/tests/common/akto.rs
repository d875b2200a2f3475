//! Baseline: Akto's published URL-templating rule, reimplemented for comparison.
//!
//! Akto (open-source API security platform) merges URLs as follows: a path token that is a
//! number or a UUID becomes a parameter at once; two URLs of the same method and length that
//! differ in exactly one string token are "similar", and once 10 similar URLs are seen that
//! position becomes a string parameter; a token that is an English word is never templated.
//! Akto checks words against an English dictionary; this helper counts any letters-only token
//! (optionally with `-`/`_`) as a word, which matches the dictionary for the names and nouns
//! in our traffic. The pairwise comparison is done with one hash map per (position wildcard),
//! which gives the same groups as comparing pairs, in linear time.

use std::collections::{HashMap, HashSet};

/// Distinct similar URLs before Akto merges string tokens.
pub const STRING_MERGING_THRESHOLD: usize = 10;

fn is_number(t: &str) -> bool {
    let t = t.strip_prefix('-').unwrap_or(t);
    !t.is_empty()
        && t.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && t.bytes().filter(|&b| b == b'.').count() <= 1
        && t.bytes().any(|b| b.is_ascii_digit())
}

fn is_uuid(t: &str) -> bool {
    t.len() == 36
        && t.bytes().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Letters only (with `-`/`_`): counted as an English word.
pub fn is_english_word(t: &str) -> bool {
    t.len() >= 2
        && t.bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_')
        && t.bytes().any(|b| b.is_ascii_alphabetic())
}

const INT: &str = "{INTEGER}";
const UUID: &str = "{UUID}";
const STR: &str = "{STRING}";

/// Akto-style templating state.
#[derive(Debug, Default)]
pub struct Akto {
    /// (method, tokens) of static URLs (after number/UUID templating).
    statics: HashSet<(String, Vec<String>)>,
    /// String templates per method.
    templates: HashSet<(String, Vec<String>)>,
    /// (method, tokens with one position as `{STRING}`) → distinct tokens seen there.
    similar: HashMap<(String, Vec<String>), HashSet<String>>,
}

impl Akto {
    /// A fresh state.
    pub fn new() -> Self {
        Akto::default()
    }

    /// Learns one request.
    pub fn observe(&mut self, method: &str, path: &str) {
        let tokens: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|t| {
                if is_number(t) {
                    INT.to_owned()
                } else if is_uuid(t) {
                    UUID.to_owned()
                } else {
                    t.to_owned()
                }
            })
            .collect();
        let method = method.to_ascii_uppercase();
        if self.matches_template(&method, &tokens) {
            return;
        }
        let key = (method.clone(), tokens.clone());
        if self.statics.contains(&key) {
            return;
        }
        self.statics.insert(key);
        for i in 0..tokens.len() {
            let t = &tokens[i];
            if t.starts_with('{') || is_english_word(t) {
                continue;
            }
            let mut wild = tokens.clone();
            wild[i] = STR.to_owned();
            let group = self
                .similar
                .entry((method.clone(), wild.clone()))
                .or_default();
            group.insert(t.clone());
            if group.len() >= STRING_MERGING_THRESHOLD {
                self.statics
                    .retain(|(m, s)| !(m == &method && Self::fits(&wild, s)));
                self.templates.insert((method.clone(), wild));
                return;
            }
        }
    }

    fn fits(template: &[String], tokens: &[String]) -> bool {
        template.len() == tokens.len()
            && template.iter().zip(tokens).all(|(a, b)| a == STR || a == b)
    }

    fn matches_template(&self, method: &str, tokens: &[String]) -> bool {
        self.templates
            .iter()
            .any(|(m, t)| m == method && Self::fits(t, tokens))
    }

    /// Discovered (method, template) pairs, parameters as `{INTEGER}`, `{UUID}`, `{STRING}`.
    pub fn endpoints(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .statics
            .iter()
            .chain(self.templates.iter())
            .map(|(m, t)| (m.clone(), format!("/{}", t.join("/"))))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}
