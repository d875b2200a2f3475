//! Enumeration / traversal (OWASP API1:2023 BOLA probing, R-THR-2).
//!
//! **Actor keys:** account (JWT `sub`, session, API key, Basic user), else client IP; per
//! endpoint template (service + template, any method).
//!
//! **Signals per window** (`enumeration.window_secs`) over the ID values of one template
//! (template parameters, id-like path segments, or id-like query parameters): distinct IDs
//! (exact up to 8, a mergeable HyperLogLog beyond) must reach `min_distinct_ids` (raised to
//! `baseline_factor` × the population baseline when adaptive), and then either
//! - 403/404/410 answers ≥ `min_error_ratio` of the walk (probing for objects), or
//! - a sequential (steps of 1–2 between consecutive numeric IDs ≥ `min_sequential_ratio`) or
//!   dense (distinct / (max − min + 1) ≥ `min_density`) sweep, of IDs mostly
//!   (≥ `min_unreturned_ratio`) never returned to that actor in an earlier response, or
//! - four times the distinct-ID threshold of IDs mostly never returned to the actor.
//!
//! The last two need an object-level context: an authenticated actor, or answers carrying
//! sensitive records (a public catalogue crawled page by page is the crawling detector's).
//!
//! "Returned to the actor": IDs (`"id"`, `"…Id"`, `"…_id"` JSON members) in the actor's 2xx
//! JSON responses go into a 512-bit Bloom filter per actor, so that a client opening the items
//! of a list it was given is not taken for a sweep.
//!
//! **State:** one ~130-byte entry per (actor, template) with an ID (+ 256 bytes once more than
//! 8 distinct IDs), one 80-byte Bloom entry per actor with JSON responses; both bounded by
//! `limits.max_keys_per_table`.
use serde::{Deserialize, Serialize};

use crate::DetectError;
use crate::baseline::Ewma;
use crate::bounded::{BoundedMap, Touched};
use crate::campaign::{Hit, Scope};
use crate::config::{BaselineConfig, DetectConfig, check};
use crate::detections::{Cx, Detection, ratio, roll, us};
use crate::engine::Obs;
use crate::finding::{Detector, Severity};
use crate::keys::{Domain, Keyer};
use crate::sketch::{Bloom, Distinct};

/// Enumeration / BOLA (API1:2023). Actor: account, else client IP; per endpoint template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnumerationConfig {
    /// Detection on.
    pub enabled: bool,
    /// Window length in seconds.
    pub window_secs: u64,
    /// Distinct ID values per actor and template per window.
    pub min_distinct_ids: u32,
    /// Fraction of 403/404 answers along the walk that counts as probing.
    pub min_error_ratio: f64,
    /// Fraction of steps of ±1..2 between consecutive numeric IDs that counts as sequential.
    pub min_sequential_ratio: f64,
    /// Distinct numeric IDs / (max − min + 1) that counts as a dense sweep.
    pub min_density: f64,
    /// Fraction of requested IDs never returned to the actor before that counts.
    pub min_unreturned_ratio: f64,
    /// Adaptive threshold from the population baseline.
    pub adaptive: bool,
    /// Factor over the baseline mean for adaptive thresholds.
    pub baseline_factor: f64,
}

impl Default for EnumerationConfig {
    fn default() -> Self {
        EnumerationConfig {
            enabled: true,
            window_secs: 60,
            min_distinct_ids: 40,
            min_error_ratio: 0.3,
            min_sequential_ratio: 0.5,
            min_density: 0.5,
            min_unreturned_ratio: 0.8,
            adaptive: true,
            baseline_factor: 10.0,
        }
    }
}

impl EnumerationConfig {
    /// Checks the section; an error names the field (`enumeration.window_secs`).
    pub(crate) fn validate(&self) -> Result<(), DetectError> {
        check::positive("enumeration.window_secs", self.window_secs)?;
        if self.min_distinct_ids < 3 {
            return Err(DetectError::config(
                "enumeration.min_distinct_ids",
                "must be ≥ 3",
            ));
        }
        check::ratio("enumeration.min_error_ratio", self.min_error_ratio)?;
        check::ratio(
            "enumeration.min_sequential_ratio",
            self.min_sequential_ratio,
        )?;
        check::ratio("enumeration.min_density", self.min_density)?;
        check::ratio(
            "enumeration.min_unreturned_ratio",
            self.min_unreturned_ratio,
        )?;
        check::factor("enumeration.baseline_factor", self.baseline_factor)?;
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Walk {
    start_us: u64,
    last_us: u64,
    hot_until: u64,
    min: u64,
    max: u64,
    last_num: u64,
    total: u32,
    ok: u32,
    missing: u32,
    numeric: u32,
    seq_steps: u32,
    unreturned: u32,
    /// Answers along the walk that carried sensitive records.
    sensitive: u32,
    ids: Distinct,
}

impl Touched for Walk {
    /// A key in an open campaign stays until the campaign could close.
    fn last_us(&self) -> u64 {
        self.last_us.max(self.hot_until)
    }
}

/// IDs returned to an actor: a 512-bit Bloom filter with two probes.
#[derive(Debug, Default)]
struct Returned {
    last_us: u64,
    ids: Bloom<8>,
}

impl Touched for Returned {
    fn last_us(&self) -> u64 {
        self.last_us
    }
}

/// The enumeration detector.
#[derive(Debug)]
pub struct Enumeration {
    cfg: EnumerationConfig,
    base: BaselineConfig,
    quiet_us: u64,
    walks: BoundedMap<Walk>,
    returned: BoundedMap<Returned>,
    pop_distinct: Ewma,
}

/// Response bytes scanned for returned IDs.
const SCAN_BYTES: usize = 64 * 1024;

/// Does the member name closed by the quote at `close` end in `id`, `Id`, `ID`, `_id`?
fn is_id_name(b: &[u8], close: usize) -> bool {
    if close < 3 {
        return false;
    }
    let (p, q, c) = (b[close - 2], b[close - 1], b[close - 3]);
    match (p, q) {
        (b'i', b'd') => matches!(c, b'"' | b'_' | b'-'),
        (b'I', b'd') | (b'I', b'D') => {
            c == b'"' || c == b'_' || c == b'-' || c.is_ascii_lowercase()
        }
        _ => false,
    }
}

/// IDs in a JSON response: values (numbers or strings ≤ 128 bytes) of members named `id`,
/// `…Id`, `…ID`, `…_id`.
fn returned_ids(body: &[u8], mut each: impl FnMut(&[u8])) {
    let b = &body[..body.len().min(SCAN_BYTES)];
    let mut skip_to = 0;
    for q in memchr::memchr_iter(b'"', b) {
        if q < skip_to || !is_id_name(b, q) {
            continue;
        }
        let mut i = q + 1;
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if i >= b.len() || b[i] != b':' {
            continue;
        }
        i += 1;
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        if b[i] == b'"' {
            let s = i + 1;
            let Some(e) = memchr::memchr(b'"', &b[s..]) else {
                break;
            };
            if e > 0 && e <= 128 {
                each(&b[s..s + e]);
            }
            // Skip the value's closing quote.
            skip_to = s + e + 1;
        } else if b[i].is_ascii_digit() {
            let s = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            each(&b[s..i]);
        }
    }
}

impl Enumeration {
    fn actor(o: &Obs) -> u64 {
        o.actor.account.map_or(o.actor.ip_key, |a| a.key)
    }

    fn learn_returned(&mut self, o: &Obs, keyer: &Keyer) {
        let Some(r) = &o.ev.response else { return };
        if !(200..300).contains(&r.status) {
            return;
        }
        // The body as the application sent it, gzip/br and base64 removed (a compressed
        // list read raw yielded no ids, so opening its items looked like a walk).
        let Ok(body) = o.facts.response_body() else {
            return;
        };
        let d = body.bytes.trim_ascii_start();
        if !(d.starts_with(b"{") || d.starts_with(b"[")) {
            return;
        }
        let now = o.now;
        let mut found = false;
        let entry = self.returned.entry(Self::actor(o), || Returned {
            last_us: now,
            ..Returned::default()
        });
        returned_ids(d, |id| {
            entry.ids.insert(keyer.hash(Domain::Id, id));
            found = true;
        });
        if found {
            entry.last_us = now;
        }
    }
}

impl Detection for Enumeration {
    fn new(cfg: &DetectConfig) -> Result<Self, DetectError> {
        Ok(Enumeration {
            cfg: cfg.enumeration.clone(),
            base: cfg.baseline.clone(),
            quiet_us: us(cfg.lifecycle.quiet_secs),
            walks: BoundedMap::new(cfg.limits.max_keys_per_table),
            returned: BoundedMap::new(cfg.limits.max_keys_per_table),
            pop_distinct: Ewma::default(),
        })
    }

    fn id(&self) -> Detector {
        Detector::Enumeration
    }

    fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    fn observe(&mut self, o: &Obs, cx: &mut Cx) {
        let now = o.now;
        let actor = Self::actor(o);
        let Some((id, num)) = o.id else {
            self.learn_returned(o, cx.keyer);
            return;
        };
        let was_returned = self.returned.get(actor).is_some_and(|r| r.ids.contains(id));
        let c = &self.cfg;
        let thr = if c.adaptive {
            self.pop_distinct.threshold(
                f64::from(c.min_distinct_ids),
                c.baseline_factor,
                self.base.sigmas,
                self.base.min_samples,
            )
        } else {
            f64::from(c.min_distinct_ids)
        };
        let key = cx.keyer.pair(Domain::Id, actor, o.template_key);
        let w = self.walks.entry(key, || Walk {
            start_us: now,
            ..Walk::default()
        });
        if roll(&mut w.start_us, now, us(c.window_secs)) {
            if w.hot_until < now && w.total > 0 {
                self.pop_distinct
                    .update(w.ids.count() as f64, self.base.alpha);
            }
            let hot = w.hot_until;
            *w = Walk {
                start_us: now,
                hot_until: hot,
                ..Walk::default()
            };
        }
        w.last_us = w.last_us.max(now);
        w.total += 1;
        match o.status {
            Some(200..=299) => w.ok += 1,
            Some(403 | 404 | 410) => w.missing += 1,
            _ => {}
        }
        if o.records.is_some_and(|r| r > 0) {
            w.sensitive += 1;
        }
        let new = w.ids.insert(id);
        if new && !was_returned {
            w.unreturned += 1;
        }
        if let Some(n) = num
            && new
        {
            if w.numeric == 0 {
                w.min = n;
                w.max = n;
            } else {
                if n.abs_diff(w.last_num) <= 2 {
                    w.seq_steps += 1;
                }
                w.min = w.min.min(n);
                w.max = w.max.max(n);
            }
            w.last_num = n;
            w.numeric += 1;
        }
        let distinct = w.ids.count();
        let total = u64::from(w.total);
        let err = ratio(u64::from(w.missing), total);
        let seq = ratio(
            u64::from(w.seq_steps),
            u64::from(w.numeric.saturating_sub(1)),
        );
        let density = if w.numeric >= 2 {
            ratio(u64::from(w.numeric), w.max - w.min + 1)
        } else {
            0.0
        };
        let unret = ratio(u64::from(w.unreturned), distinct);
        let unreturned = unret >= c.min_unreturned_ratio;
        let big = distinct as f64 >= thr;
        // A walk over objects served to anyone (a public catalogue crawled page by page,
        // no credentials, no sensitive data) is crawling, not object-level authorization
        // probing (API1): the sweep signals need an authenticated actor or sensitive answers.
        let object_level = o.actor.account.is_some() || w.sensitive > 0;
        let sweep = seq >= c.min_sequential_ratio
            || density >= c.min_density
            || distinct as f64 >= 4.0 * thr;
        let triggered = big && (err >= c.min_error_ratio || (object_level && unreturned && sweep));
        if triggered || w.hot_until >= now {
            if triggered {
                w.hot_until = now + self.quiet_us;
            }
            // Objects actually served along an unreturned walk: data exposed.
            let severity = if w.ok >= 10 && unreturned {
                Severity::High
            } else {
                Severity::Medium
            };
            let counts = [
                ("requests", total),
                ("distinct_ids", distinct),
                ("ok_responses", u64::from(w.ok)),
                ("not_found_or_forbidden", u64::from(w.missing)),
                ("sequential_steps", u64::from(w.seq_steps)),
                (
                    "id_range",
                    if w.numeric > 0 { w.max - w.min + 1 } else { 0 },
                ),
                ("unreturned_ids", u64::from(w.unreturned)),
                ("error_ratio_pct", (err * 100.0).round() as u64),
            ];
            cx.campaigns.hit(
                &Hit {
                    detector: Detector::Enumeration,
                    kind: "id_walk",
                    scope: Scope::Account,
                    any_endpoint: false,
                    severity,
                    confidence: if seq >= c.min_sequential_ratio {
                        90
                    } else {
                        75
                    },
                    counts: &counts,
                },
                o,
                cx.keyer,
            );
            cx.baselines.poison(o.endpoint_key);
        }
        self.learn_returned(o, cx.keyer);
    }

    fn expire(&mut self, now: u64) {
        let keep = now.saturating_sub(us(self.cfg.window_secs));
        self.walks.expire(keep);
        // Returned IDs stay relevant longer: an hour.
        self.returned.expire(now.saturating_sub(us(3_600)));
    }

    fn evicted(&self) -> u64 {
        self.walks.evicted + self.returned.evicted
    }

    fn tracked_keys(&self) -> usize {
        self.walks.len() + self.returned.len()
    }

    fn state_bytes(&self) -> usize {
        self.walks.table_bytes()
            + self.returned.table_bytes()
            + self
                .walks
                .values()
                .map(|w| w.ids.heap_bytes())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detections::testkit::*;

    #[test]
    fn returned_id_extraction() {
        let mut got = Vec::new();
        returned_ids(
            br#"[{"id": 17,"userId":"u-9","order_id":5,"paid":1,"kid":"x","grid":3,"ID":"A1"}]"#,
            |v| got.push(String::from_utf8(v.to_vec()).unwrap()),
        );
        assert_eq!(got, ["17", "u-9", "5", "A1"]);
    }

    #[test]
    fn ffuf_sequential_id_sweep_is_enumeration() {
        let mut eng = engine(DetectConfig::default());
        let reqs: Vec<Req> = (0..300u64)
            .map(|i| {
                let r = Req::get(
                    "203.0.113.9",
                    &format!("/api/users/{}", 1 + i),
                    T0 + i * 20_000,
                )
                .ua("Fuzz Faster U Fool v2.1.0");
                if i % 3 == 0 { r } else { r.status(404) }
            })
            .collect();
        let out = run(&mut eng, reqs, |_| {
            (Some("/api/users/{user_id}"), None, None)
        });
        let c = creates(&out);
        assert_eq!(c.len(), 1, "{c:#?}");
        let f = c[0];
        assert_eq!(f.detector, Detector::Enumeration);
        assert_eq!(f.endpoint.template, "/api/users/{user_id}");
        assert_eq!(f.actor_key("client_ip"), Some("203.0.113.9"));
        assert!(f.count("distinct_ids").unwrap() >= 40);
        // IDs never appear in clear in the samples.
        for s in &f.samples {
            assert!(s.path.ends_with('*'), "{}", s.path);
        }
    }

    #[test]
    fn anonymous_walk_over_a_public_catalogue_is_not_enumeration() {
        // wget --mirror over /products/1.html … /products/150.html: all 200, no credentials,
        // no sensitive data. The crawling detector owns this; API1 needs object-level context.
        let mut eng = engine(DetectConfig::default());
        let reqs: Vec<Req> = (0..150u64)
            .map(|i| {
                Req::get(
                    "203.0.113.20",
                    &format!("/products/{}", 1 + i),
                    T0 + i * 50_000,
                )
                .ua("Wget/1.21.3")
            })
            .collect();
        let out = run(&mut eng, reqs, |_| {
            (Some("/products/{product_id}"), None, None)
        });
        assert!(
            creates(&out)
                .iter()
                .all(|f| f.detector != Detector::Enumeration),
            "{out:#?}"
        );
    }

    #[test]
    fn opening_items_of_a_returned_list_is_not_enumeration() {
        opening_items_of_a_list(false);
    }

    #[test]
    fn opening_items_of_a_gzip_coded_list_is_not_enumeration() {
        opening_items_of_a_list(true);
    }

    fn opening_items_of_a_list(gzip: bool) {
        let mut eng = engine(DetectConfig::default());
        let mut reqs = Vec::new();
        let list: Vec<String> = (1..=60)
            .map(|i| format!("{{\"id\":{i},\"name\":\"n\"}}"))
            .collect();
        let list = format!("[{}]", list.join(","));
        let jwt = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln";
        let listing = Req::get("198.51.100.3", "/api/orders", T0)
            .header("Authorization", jwt)
            .resp(&list);
        reqs.push(if gzip { listing.resp_gzip() } else { listing });
        for i in 1..=60u64 {
            reqs.push(
                Req::get(
                    "198.51.100.3",
                    &format!("/api/orders/{i}"),
                    T0 + i * 500_000,
                )
                .header("Authorization", jwt)
                .ua(CHROME),
            );
        }
        let out = run(&mut eng, reqs, |r| {
            (
                Some(if r.path == "/api/orders" {
                    "/api/orders"
                } else {
                    "/api/orders/{order_id}"
                }),
                None,
                None,
            )
        });
        assert!(creates(&out).is_empty(), "{:#?}", creates(&out));
    }

    #[test]
    fn uuid_probing_with_many_404_is_enumeration_and_small_walks_are_not() {
        let mut eng = engine(DetectConfig::default());
        let mut reqs = Vec::new();
        for i in 0..100u64 {
            reqs.push(
                Req::get(
                    "203.0.113.20",
                    &format!("/api/docs/3f25b9c0-0c1d-4e6f-9a8b-{i:012x}"),
                    T0 + i * 100_000,
                )
                .status(404),
            );
        }
        // A benign user reading 20 distinct documents: below the threshold.
        for i in 0..20u64 {
            reqs.push(
                Req::get(
                    "198.51.100.20",
                    &format!("/api/docs/{}", 5000 + i * 37),
                    T0 + i * SEC,
                )
                .ua(CHROME),
            );
        }
        let out = run(&mut eng, reqs, no_ctx);
        let c = creates(&out);
        assert_eq!(c.len(), 1, "{c:#?}");
        assert_eq!(c[0].kind, "id_walk");
        assert!(c[0].count("error_ratio_pct").unwrap() >= 90);
        assert_eq!(c[0].endpoint.template, "/api/docs/{id}");
    }
}
