//! Crawling / scraping (OAT-011, R-THR-1).
//!
//! **Actor keys:** client IP (per-source campaigns); client fingerprint — User-Agent, header
//! names in wire order, method — across addresses (distributed campaigns, non-browser
//! fingerprints only, since real browsers of one version share a fingerprint).
//!
//! **Signals per window** (`crawling.window_secs`): requests and distinct concrete paths
//! (breadth) must reach `min_requests` / `min_distinct_paths` (raised to `baseline_factor` ×
//! the population's per-actor baseline when adaptive), the requests must span
//! `min_distinct_templates` templates or walk pages (breadth over one template is enumeration,
//! left to that detector so that one campaign raises one alert), and at least `min_signals` of:
//! non-browser or rotating (≥ 3) user agents; no Referer on ≥ 90 % of requests; no Cookie on
//! ≥ 90 %; regular timing (coefficient of variation of gaps < `regular_timing_cv`, ≥ 20 gaps);
//! a pagination walk (≥ `min_pagination_steps` increasing page/offset steps); sensitive records
//! ≥ `records_signal_min`. Distributed: ≥ `min_distributed_sources` addresses sharing a
//! non-browser fingerprint reach the breadth thresholds together while each stays under
//! `min_requests` on average, and at most half of the fleet's requests carry an account (a
//! mobile app's many signed-in users share a fingerprint too; they are not one crawler).
//!
//! **State:** one entry per client address and per non-browser fingerprint
//! (`limits.max_keys_per_table` each), ~200 bytes plus a 256-byte sketch per distinct set that
//! outgrows 8 values.
use serde::{Deserialize, Serialize};

use crate::DetectError;
use crate::baseline::Ewma;
use crate::bounded::{BoundedMap, Touched};
use crate::campaign::{Hit, Scope};
use crate::config::{BaselineConfig, DetectConfig, check};
use crate::detections::{Cx, Detection, ratio, roll, us};
use crate::engine::Obs;
use crate::finding::{Detector, Severity};
use crate::sketch::Distinct;

/// Crawling / scraping (OAT-011). Actor: client IP; distributed: client fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrawlingConfig {
    /// Detection on.
    pub enabled: bool,
    /// Window length in seconds.
    pub window_secs: u64,
    /// Requests per window an actor must reach.
    pub min_requests: u32,
    /// Distinct paths (concrete) per window an actor must reach.
    pub min_distinct_paths: u32,
    /// Distinct endpoint templates per window an actor must reach (unless it walks pages):
    /// breadth over one template is enumeration, reported by that detector instead.
    pub min_distinct_templates: u32,
    /// Machine-likeness signals (non-browser or rotating UA, no Referer, no cookies, regular
    /// timing, pagination walk, many sensitive records) of which at least this many must hold.
    pub min_signals: u32,
    /// Coefficient of variation of inter-request gaps below which timing counts as regular.
    pub regular_timing_cv: f64,
    /// Pagination steps per window that count as a pagination walk.
    pub min_pagination_steps: u32,
    /// Sensitive records per window that count as a signal (when records are known).
    pub records_signal_min: u64,
    /// Distributed crawling: distinct client addresses sharing one fingerprint.
    pub min_distributed_sources: u32,
    /// Adaptive thresholds from the population baseline.
    pub adaptive: bool,
    /// Factor over the baseline mean for adaptive thresholds.
    pub baseline_factor: f64,
}

impl Default for CrawlingConfig {
    fn default() -> Self {
        CrawlingConfig {
            enabled: true,
            window_secs: 60,
            min_requests: 120,
            min_distinct_paths: 60,
            min_distinct_templates: 3,
            min_signals: 2,
            regular_timing_cv: 0.35,
            min_pagination_steps: 20,
            records_signal_min: 500,
            min_distributed_sources: 5,
            adaptive: true,
            baseline_factor: 10.0,
        }
    }
}

impl CrawlingConfig {
    /// Checks the section; an error names the field (`crawling.window_secs`).
    pub(crate) fn validate(&self) -> Result<(), DetectError> {
        check::positive("crawling.window_secs", self.window_secs)?;
        check::positive("crawling.min_requests", self.min_requests.into())?;
        check::positive(
            "crawling.min_distinct_paths",
            self.min_distinct_paths.into(),
        )?;
        if self.min_signals > 6 {
            return Err(DetectError::config(
                "crawling.min_signals",
                "must be ≤ 6 (signals known)",
            ));
        }
        if !(self.regular_timing_cv > 0.0 && self.regular_timing_cv.is_finite()) {
            return Err(DetectError::config(
                "crawling.regular_timing_cv",
                "must be > 0",
            ));
        }
        check::positive(
            "crawling.min_pagination_steps",
            self.min_pagination_steps.into(),
        )?;
        if self.min_distributed_sources < 2 {
            return Err(DetectError::config(
                "crawling.min_distributed_sources",
                "must be ≥ 2",
            ));
        }
        check::factor("crawling.baseline_factor", self.baseline_factor)?;
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Source {
    start_us: u64,
    last_us: u64,
    hot_until: u64,
    requests: u32,
    no_referer: u32,
    no_cookie: u32,
    non_browser: u32,
    page_steps: u32,
    gaps: u32,
    last_page: u64,
    has_page: bool,
    gap_mean: f32,
    gap_m2: f32,
    records: u64,
    last_ua: u64,
    ua_changes: u32,
    /// Templates seen, one bit per template hash mod 64 (distinct templates up to 64).
    templates: u64,
    paths: Distinct,
}

impl Touched for Source {
    /// A key in an open campaign stays until the campaign could close.
    fn last_us(&self) -> u64 {
        self.last_us.max(self.hot_until)
    }
}

#[derive(Debug, Default)]
struct Fleet {
    start_us: u64,
    last_us: u64,
    hot_until: u64,
    requests: u32,
    no_referer: u32,
    authenticated: u32,
    sources: Distinct,
    paths: Distinct,
}

impl Touched for Fleet {
    /// A key in an open campaign stays until the campaign could close.
    fn last_us(&self) -> u64 {
        self.last_us.max(self.hot_until)
    }
}

/// The crawling detector.
#[derive(Debug)]
pub struct Crawling {
    cfg: CrawlingConfig,
    base: BaselineConfig,
    quiet_us: u64,
    sources: BoundedMap<Source>,
    fleets: BoundedMap<Fleet>,
    /// Population baseline of requests and distinct paths per actor window.
    pop_requests: Ewma,
    pop_paths: Ewma,
}

impl Crawling {
    fn thresholds(&self) -> (f64, f64) {
        let c = &self.cfg;
        if !c.adaptive {
            return (f64::from(c.min_requests), f64::from(c.min_distinct_paths));
        }
        let b = &self.base;
        (
            self.pop_requests.threshold(
                f64::from(c.min_requests),
                c.baseline_factor,
                b.sigmas,
                b.min_samples,
            ),
            self.pop_paths.threshold(
                f64::from(c.min_distinct_paths),
                c.baseline_factor,
                b.sigmas,
                b.min_samples,
            ),
        )
    }
}

impl Detection for Crawling {
    fn new(cfg: &DetectConfig) -> Result<Self, DetectError> {
        Ok(Crawling {
            cfg: cfg.crawling.clone(),
            base: cfg.baseline.clone(),
            quiet_us: us(cfg.lifecycle.quiet_secs),
            sources: BoundedMap::new(cfg.limits.max_keys_per_table),
            fleets: BoundedMap::new(cfg.limits.max_keys_per_table),
            pop_requests: Ewma::default(),
            pop_paths: Ewma::default(),
        })
    }

    fn id(&self) -> Detector {
        Detector::Crawling
    }

    fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    fn observe(&mut self, o: &Obs, cx: &mut Cx) {
        let (thr_req, thr_paths) = self.thresholds();
        let win = us(self.cfg.window_secs);
        let now = o.now;
        let a = &o.actor;
        let s = self.sources.entry(a.ip_key, || Source {
            start_us: now,
            ..Source::default()
        });
        if roll(&mut s.start_us, now, win) {
            // Fold the finished window into the population baseline unless it was an attack.
            if s.hot_until < now && s.requests > 0 {
                self.pop_requests
                    .update(f64::from(s.requests), self.base.alpha);
                self.pop_paths
                    .update(s.paths.count() as f64, self.base.alpha);
            }
            let hot = s.hot_until;
            *s = Source {
                start_us: now,
                hot_until: hot,
                ..Source::default()
            };
        }
        if s.requests > 0 && now > s.last_us {
            let gap = (now - s.last_us) as f32;
            s.gaps += 1;
            let d = gap - s.gap_mean;
            s.gap_mean += d / s.gaps as f32;
            s.gap_m2 += d * (gap - s.gap_mean);
        }
        s.last_us = s.last_us.max(now);
        s.requests += 1;
        s.no_referer += u32::from(!a.has_referer);
        s.no_cookie += u32::from(!a.has_cookie);
        s.non_browser += u32::from(!a.ua.is_browser());
        s.paths.insert(o.path_key);
        s.templates |= 1 << (o.template_key % 64);
        if s.requests > 1 && a.ua_key != s.last_ua {
            s.ua_changes += 1;
        }
        s.last_ua = a.ua_key;
        if let Some(p) = o.page {
            if s.has_page && p > s.last_page {
                s.page_steps += 1;
            }
            s.last_page = p;
            s.has_page = true;
        }
        s.records += o.records.map_or(0, u64::from);
        let req = u64::from(s.requests);
        let paths = s.paths.count();
        let mut signals = 0u32;
        // Rotating: the user agent changed at least twice (three values) in the window.
        let rotating = s.ua_changes >= 2;
        signals += u32::from(ratio(u64::from(s.non_browser), req) >= 0.9 || rotating);
        signals += u32::from(ratio(u64::from(s.no_referer), req) >= 0.9);
        signals += u32::from(ratio(u64::from(s.no_cookie), req) >= 0.9);
        let cv = if s.gaps >= 20 && s.gap_mean > 0.0 {
            f64::from((s.gap_m2 / s.gaps as f32).sqrt() / s.gap_mean)
        } else {
            f64::INFINITY
        };
        signals += u32::from(cv < self.cfg.regular_timing_cv);
        signals += u32::from(s.page_steps >= self.cfg.min_pagination_steps);
        signals += u32::from(s.records >= self.cfg.records_signal_min);
        let walks_pages = s.page_steps >= self.cfg.min_pagination_steps;
        let broad = s.templates.count_ones() >= self.cfg.min_distinct_templates || walks_pages;
        let triggered = req as f64 >= thr_req
            && paths as f64 >= thr_paths
            && broad
            && signals >= self.cfg.min_signals;
        if triggered || s.hot_until >= now {
            if triggered {
                s.hot_until = now + self.quiet_us;
            }
            let severity = if s.records >= self.cfg.records_signal_min {
                Severity::High
            } else {
                Severity::Medium
            };
            let counts = [
                ("requests", req),
                ("distinct_paths", paths),
                ("distinct_templates", u64::from(s.templates.count_ones())),
                ("signals", u64::from(signals)),
                ("pagination_steps", u64::from(s.page_steps)),
                ("sensitive_records", s.records),
                ("user_agent_changes", u64::from(s.ua_changes)),
            ];
            cx.campaigns.hit(
                &Hit {
                    detector: Detector::Crawling,
                    kind: "per_source",
                    scope: Scope::Ip,
                    any_endpoint: true,
                    severity,
                    confidence: (50 + 8 * signals).min(95) as u8,
                    counts: &counts,
                },
                o,
                cx.keyer,
            );
            cx.baselines.poison(o.endpoint_key);
        }
        // Distributed: group non-browser fingerprints across addresses.
        if a.ua.is_browser() {
            return;
        }
        let f = self.fleets.entry(a.fingerprint, || Fleet {
            start_us: now,
            ..Fleet::default()
        });
        if roll(&mut f.start_us, now, win) {
            let hot = f.hot_until;
            *f = Fleet {
                start_us: now,
                hot_until: hot,
                ..Fleet::default()
            };
        }
        f.last_us = f.last_us.max(now);
        f.requests += 1;
        f.no_referer += u32::from(!a.has_referer);
        f.authenticated += u32::from(a.account.is_some());
        f.sources.insert(a.ip_key);
        f.paths.insert(o.path_key);
        let n_src = f.sources.count();
        let freq = u64::from(f.requests);
        let fpaths = f.paths.count();
        let per_source = freq as f64 / n_src.max(1) as f64;
        let triggered = n_src >= u64::from(self.cfg.min_distributed_sources)
            && freq as f64 >= thr_req
            && fpaths as f64 >= thr_paths
            && per_source < thr_req
            && ratio(u64::from(f.authenticated), freq) < 0.5;
        if triggered || f.hot_until >= now {
            if triggered {
                f.hot_until = now + self.quiet_us;
            }
            let counts = [
                ("requests", freq),
                ("distinct_paths", fpaths),
                ("distinct_sources", n_src),
            ];
            cx.campaigns.hit(
                &Hit {
                    detector: Detector::Crawling,
                    kind: "distributed",
                    scope: Scope::Fingerprint,
                    any_endpoint: true,
                    severity: Severity::High,
                    confidence: 75,
                    counts: &counts,
                },
                o,
                cx.keyer,
            );
        }
    }

    fn expire(&mut self, now: u64) {
        let keep = now.saturating_sub(us(self.cfg.window_secs));
        self.sources.expire(keep);
        self.fleets.expire(keep);
    }

    fn evicted(&self) -> u64 {
        self.sources.evicted + self.fleets.evicted
    }

    fn tracked_keys(&self) -> usize {
        self.sources.len() + self.fleets.len()
    }

    fn state_bytes(&self) -> usize {
        let heap = |d: &Distinct| d.heap_bytes();
        self.sources.table_bytes()
            + self.fleets.table_bytes()
            + self.sources.values().map(|s| heap(&s.paths)).sum::<usize>()
            + self
                .fleets
                .values()
                .map(|f| heap(&f.sources) + heap(&f.paths))
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detections::testkit::*;
    use crate::finding::Activity;

    /// A mirror-style crawl: pages of several sections, followed as linked.
    fn crawl(ip: &str, ua: &str, n: u64, gap_ms: u64, start: u64) -> Vec<Req> {
        const SECTIONS: [&str; 5] = ["products", "category", "brand", "reviews", "docs"];
        (0..n)
            .map(|i| {
                let path = format!(
                    "/{}/item-{}",
                    SECTIONS[(i % 5) as usize],
                    i * 7919 % 100_000
                );
                Req::get(ip, &path, start + i * gap_ms * 1_000).ua(ua)
            })
            .collect()
    }

    #[test]
    fn wget_mirror_style_crawl_raises_one_campaign() {
        let mut eng = engine(DetectConfig::default());
        let out = run(
            &mut eng,
            crawl("203.0.113.5", "Wget/1.21.3", 600, 50, T0),
            no_ctx,
        );
        let c = creates(&out);
        assert_eq!(c.len(), 1, "{out:#?}");
        let f = c[0];
        assert_eq!(f.detector, Detector::Crawling);
        assert_eq!(f.actor_key("client_ip"), Some("203.0.113.5"));
        assert_eq!(f.actor_key("user_agent_family"), Some("wget"));
        assert!(f.count("distinct_paths").unwrap() >= 60);
        // Reported within the first window: at most 60 s after the crawl began.
        assert!(f.time_us - T0 <= 60 * SEC, "{}", f.time_us - T0);
        // Lifecycle: exactly one Close, Updates rate-limited.
        assert_eq!(
            out.iter().filter(|f| f.activity == Activity::Close).count(),
            1
        );
        assert!(
            out.iter()
                .filter(|f| f.activity == Activity::Update)
                .count()
                <= 1
        );
        let close = out.iter().find(|f| f.activity == Activity::Close).unwrap();
        assert_eq!(close.uid, f.uid);
        assert!((400..=600).contains(&close.events), "{}", close.events);
    }

    #[test]
    fn browsing_users_and_wrk_on_one_url_raise_nothing() {
        let mut eng = engine(DetectConfig::default());
        let mut reqs = Vec::new();
        // 50 browser users, 10 minutes, a page every ~3 s each, with Referer and cookies.
        for u in 0..50u64 {
            for i in 0..200u64 {
                reqs.push(
                    Req::get(
                        &format!("198.51.100.{u}"),
                        &format!("/products/{}", (u * 7 + i) % 300),
                        T0 + i * 3 * SEC + u * 17_000,
                    )
                    .ua(CHROME)
                    .header("Referer", "https://shop.example.com/")
                    .header("Cookie", &format!("sid=user-session-{u:04}")),
                );
            }
        }
        // wrk: one URL, very fast, no UA.
        for i in 0..20_000u64 {
            reqs.push(Req::get("192.0.2.50", "/health", T0 + i * 20_000));
        }
        let out = run(&mut eng, reqs, no_ctx);
        assert!(creates(&out).is_empty(), "{:#?}", creates(&out));
    }

    #[test]
    fn distributed_crawler_is_one_campaign() {
        let mut eng = engine(DetectConfig::default());
        let mut reqs = Vec::new();
        // 20 addresses, 30 requests each in a minute, same scraper fingerprint.
        for s in 0..20u64 {
            for i in 0..30u64 {
                reqs.push(
                    Req::get(
                        &format!("203.0.113.{}", s + 10),
                        &format!("/items/{}", s * 100 + i),
                        T0 + i * 2 * SEC + s * 1_000,
                    )
                    .ua("python-requests/2.31.0"),
                );
            }
        }
        let out = run(&mut eng, reqs, no_ctx);
        let c = creates(&out);
        assert_eq!(c.len(), 1, "{c:#?}");
        assert_eq!(c[0].kind, "distributed");
        assert!(c[0].source_count >= 5);
        assert!(c[0].actor_key("fingerprint").is_some());
    }
}
