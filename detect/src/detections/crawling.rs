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
use crate::baseline::Ewma;
use crate::bounded::{BoundedMap, Touched};
use crate::campaign::{Hit, Scope};
use crate::config::{BaselineConfig, CrawlingConfig, DetectConfig};
use crate::detections::{Cx, ratio, roll, us};
use crate::engine::Obs;
use crate::finding::{Detector, Severity};
use crate::sketch::Distinct;

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
    pub(crate) fn new(cfg: &DetectConfig) -> Self {
        Crawling {
            cfg: cfg.crawling.clone(),
            base: cfg.baseline.clone(),
            quiet_us: us(cfg.lifecycle.quiet_secs),
            sources: BoundedMap::new(cfg.limits.max_keys_per_table),
            fleets: BoundedMap::new(cfg.limits.max_keys_per_table),
            pop_requests: Ewma::default(),
            pop_paths: Ewma::default(),
        }
    }

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

    pub(crate) fn observe(&mut self, o: &Obs, cx: &mut Cx) {
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

    pub(crate) fn expire(&mut self, now: u64) {
        let keep = now.saturating_sub(us(self.cfg.window_secs));
        self.sources.expire(keep);
        self.fleets.expire(keep);
    }

    pub(crate) fn evicted(&self) -> u64 {
        self.sources.evicted + self.fleets.evicted
    }

    pub(crate) fn len(&self) -> usize {
        self.sources.len() + self.fleets.len()
    }

    pub(crate) fn bytes(&self) -> usize {
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
