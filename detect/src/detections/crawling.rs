//! Crawling / scraping (OAT-011, R-THR-1).
//!
//! **Actor keys:** client IP (per-source campaigns); client fingerprint — User-Agent, header
//! names in wire order, method — across addresses (distributed campaigns, non-browser
//! fingerprints only, since real browsers of one version share a fingerprint).
//!
//! **Signals per window** (`crawling.window_secs`). Counted per address: requests, distinct
//! concrete paths, templates, and the machine-likeness signals: non-browser or rotating (≥ 3)
//! user agents; no Referer on ≥ 90 % of requests; no Cookie on ≥ 90 %; regular timing
//! (coefficient of variation of gaps < `regular_timing_cv`, ≥ 20 gaps); a pagination walk
//! (≥ `min_pagination_steps` increasing `page`/`offset` query values or `/page/N` path pages,
//! or changing `cursor`/`_next`/`after`/… cursors); sensitive records ≥ `records_signal_min`;
//! `/robots.txt` fetched (RFC 9309 crawlers read it first; remembered while the address's
//! entry lives).
//!
//! **Link-following** (issue 14): the links of the HTML (`href`, `src`) and JSON (paths,
//! URLs) responses served to an address, and the `Location` of its redirects, go into a
//! per-address Bloom filter of keyed path hashes ([`links`] reads them: bounded bytes,
//! relative links resolved against the request path). A request whose path is in it followed
//! a link. A *link walk*: ≥ `min_link_follow_ratio` of the window's requests (robots.txt
//! aside) followed links, over ≥ `min_linked_pages` distinct linked paths.
//!
//! **Rules** (either raises `per_source`):
//! - *breadth*: requests ≥ `min_requests` and distinct paths ≥ `min_distinct_paths` (both
//!   raised to `baseline_factor` × the population's per-actor baseline when adaptive), spread
//!   over ≥ `min_distinct_templates` templates, a pagination walk or a link walk (breadth over
//!   one template without links is enumeration, left to that detector so that one campaign
//!   raises one alert), and ≥ `min_signals` signals;
//! - *robots link walk*: robots.txt fetched and a link walk of ≥ `min_linked_pages` (scaled
//!   like the path floor when adaptive), and ≥ `min_signals` signals (robots.txt is one) —
//!   `wget --mirror` and httrack over one template of linked pages, at httrack's 1 request/s.
//!
//! **Distributed:** ≥ `min_distributed_sources` addresses sharing a non-browser fingerprint
//! reach the breadth thresholds together while each stays under `min_requests` on average,
//! and at most half of the fleet's requests carry an account (a mobile app's many signed-in
//! users share a fingerprint too; they are not one crawler).
//!
//! **State:** one entry per client address and per non-browser fingerprint
//! (`limits.max_keys_per_table` each), ~200 bytes plus a 256-byte sketch per distinct set that
//! outgrows 8 values; a 1 KiB link filter per address served links
//! (`crawling.max_link_actors` of them, least recently touched evicted and counted).
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
use crate::sketch::Distinct;

mod links;

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
    /// Fraction of a window's requests (robots.txt aside) whose path was a link in an
    /// earlier response to the same address, for a link walk.
    pub min_link_follow_ratio: f64,
    /// Distinct linked paths per window for a link walk (the robots link walk's floor,
    /// scaled with the path floor when adaptive).
    pub min_linked_pages: u32,
    /// Addresses whose served links are remembered (1 KiB each; least recently touched
    /// evicted, counted).
    pub max_link_actors: usize,
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
            // Measured (issue 14): wget --mirror and httrack follow 99 % of links (all but
            // the start page); a browsing user follows ~97 % too, so the ratio is breadth
            // evidence, not a machine signal.
            min_link_follow_ratio: 0.8,
            // httrack fetches one page a second: 40 linked pages is 40 s of it; a user
            // reading 30 pages a minute stays below.
            min_linked_pages: 40,
            max_link_actors: 20_000,
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
        if self.min_signals > SIGNALS {
            return Err(DetectError::config(
                "crawling.min_signals",
                "must be ≤ 7 (signals known)",
            ));
        }
        if !(self.min_link_follow_ratio > 0.0 && self.min_link_follow_ratio <= 1.0) {
            return Err(DetectError::config(
                "crawling.min_link_follow_ratio",
                "must be in (0, 1]",
            ));
        }
        check::positive("crawling.min_linked_pages", self.min_linked_pages.into())?;
        check::positive("crawling.max_link_actors", self.max_link_actors as u64)?;
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

/// Machine-likeness signals known (the bound of `min_signals`).
const SIGNALS: u32 = 7;

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
    /// When the address last fetched `/robots.txt` (0: never); kept across windows.
    robots_us: u64,
    /// Requests that could follow a link (robots.txt aside), and those that did.
    link_base: u32,
    followed: u32,
    /// Distinct paths requested that were linked.
    linked: Distinct,
    /// Keyed hash of the last cursor value (`cursor`, `_next`, …) requested.
    last_cursor: u64,
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

/// The distributed condition of one fingerprint's window, `[distinct sources, requests,
/// distinct paths, authenticated requests]` (both stages use it, issue 18): enough
/// addresses reach the breadth thresholds together, each under `min_requests` on average,
/// most requests without an account.
pub(crate) fn fleet_holds(
    cfg: &CrawlingConfig,
    [sources, requests, paths, authenticated]: [u64; 4],
    thr_requests: f64,
    thr_paths: f64,
) -> bool {
    let per_source = requests as f64 / sources.max(1) as f64;
    sources >= u64::from(cfg.min_distributed_sources)
        && requests as f64 >= thr_requests
        && paths as f64 >= thr_paths
        && per_source < thr_requests
        && ratio(authenticated, requests) < 0.5
}

/// The distributed crawling campaign's hit.
pub(crate) fn fleet_hit<'a>(counts: &'a [(&'static str, u64)]) -> Hit<'a> {
    Hit {
        detector: Detector::Crawling,
        kind: "distributed",
        scope: Scope::Fingerprint,
        any_endpoint: true,
        severity: Severity::High,
        confidence: 75,
        counts,
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
    /// Links served to each address (`crawling.max_link_actors`).
    links: BoundedMap<LinkFilter>,
    scratch: Box<links::Scratch>,
    /// The link hashes of one response (at most `links::MAX_LINKS`, reused).
    link_hashes: Vec<u64>,
    /// Population baseline of requests and distinct paths per actor window.
    pop_requests: Ewma,
    pop_paths: Ewma,
}

impl Crawling {
    /// Floors of requests, distinct paths and linked pages per window: the configured ones,
    /// or raised by the population baseline when adaptive (the linked-pages floor in
    /// proportion to the path floor).
    fn thresholds(&self) -> (f64, f64, f64) {
        let c = &self.cfg;
        let linked = f64::from(c.min_linked_pages);
        if !c.adaptive {
            return (
                f64::from(c.min_requests),
                f64::from(c.min_distinct_paths),
                linked,
            );
        }
        let b = &self.base;
        let paths = self.pop_paths.threshold(
            f64::from(c.min_distinct_paths),
            c.baseline_factor,
            b.sigmas,
            b.min_samples,
        );
        (
            self.pop_requests.threshold(
                f64::from(c.min_requests),
                c.baseline_factor,
                b.sigmas,
                b.min_samples,
            ),
            paths,
            linked.max(paths * linked / f64::from(c.min_distinct_paths)),
        )
    }
}

/// Words of one generation of a [`LinkFilter`] (4 096 bits).
const LINK_WORDS: usize = 64;
/// New links per generation before the filter turns over: 10 bits per link with 3 probes,
/// ≤ 1.7 % false positives per generation (≤ 3.5 % over both).
const LINK_ROTATE: u16 = 410;

/// Paths linked from the responses served to one address: two generations of a Bloom filter
/// of keyed path hashes (3 probes of 12 bits each); when the current one holds
/// [`LINK_ROTATE`] new links, the older is cleared and becomes current, so the filter
/// remembers the last 410–820 distinct links and its false-positive rate stays bounded
/// however many links an address is served. No raw value is kept.
#[derive(Debug)]
struct LinkFilter {
    last_us: u64,
    cur: u8,
    fill: u16,
    gens: [[u64; LINK_WORDS]; 2],
}

impl Touched for LinkFilter {
    fn last_us(&self) -> u64 {
        self.last_us
    }
}

impl LinkFilter {
    fn new(now: u64) -> LinkFilter {
        LinkFilter {
            last_us: now,
            cur: 0,
            fill: 0,
            gens: [[0; LINK_WORDS]; 2],
        }
    }

    fn probes(h: u64) -> [usize; 3] {
        [
            (h & 0xfff) as usize,
            ((h >> 12) & 0xfff) as usize,
            ((h >> 24) & 0xfff) as usize,
        ]
    }

    fn insert(&mut self, h: u64) {
        let g = &mut self.gens[usize::from(self.cur & 1)];
        let mut new = false;
        for p in Self::probes(h) {
            let (w, bit) = (p / 64, 1u64 << (p % 64));
            new |= g[w] & bit == 0;
            g[w] |= bit;
        }
        if new {
            self.fill += 1;
            if self.fill >= LINK_ROTATE {
                self.cur ^= 1;
                self.gens[usize::from(self.cur & 1)] = [0; LINK_WORDS];
                self.fill = 0;
            }
        }
    }

    fn contains(&self, h: u64) -> bool {
        let probes = Self::probes(h);
        self.gens
            .iter()
            .any(|g| probes.iter().all(|&p| g[p / 64] & (1 << (p % 64)) != 0))
    }
}

/// Learns the links of `o`'s response for its address: the `Location` of a redirect, the
/// links of a 2xx HTML or JSON body (bounded scan, [`links`]). Links are keyed path hashes,
/// as the requests' `path_key`.
fn learn_links(
    table: &mut BoundedMap<LinkFilter>,
    scratch: &mut links::Scratch,
    hashes: &mut Vec<u64>,
    o: &Obs,
    keyer: &Keyer,
) {
    let Some(resp) = &o.ev.response else { return };
    let req = &o.ev.request;
    let host = req.host.as_deref();
    let now = o.now;
    if (300..400).contains(&resp.status) {
        // RFC 9110 §10.2.2: a redirect's target is the next request a client makes.
        let Some(loc) = o.facts.response_header("location") else {
            return;
        };
        if let Some(p) = links::resolve_one(loc.as_bytes(), &req.path, host, scratch) {
            let h = keyer.hash(Domain::Path, p);
            let f = table.entry(o.actor.ip_key, || LinkFilter::new(now));
            f.last_us = now;
            f.insert(h);
        }
        return;
    }
    if !(200..300).contains(&resp.status) || resp.body.data.is_empty() {
        return;
    }
    // Decided on the declared type before decoding: only HTML and JSON are read.
    let typed = links::BodyKind::of_type(o.facts.response_header("content-type"));
    if matches!(typed, Ok(None)) {
        return;
    }
    let Ok(body) = o.facts.response_body() else {
        return;
    };
    let Some(kind) = typed.unwrap_or_else(|()| links::BodyKind::sniff(&body.bytes)) else {
        return;
    };
    hashes.clear();
    links::for_each_link(kind, &body.bytes, &req.path, host, scratch, |p| {
        hashes.push(keyer.hash(Domain::Path, p));
    });
    if hashes.is_empty() {
        return;
    }
    let f = table.entry(o.actor.ip_key, || LinkFilter::new(now));
    f.last_us = now;
    for &h in hashes.iter() {
        f.insert(h);
    }
}

/// A page number in the path: `/page/3`, `/p/3`, `/pages/3` (the last two segments).
fn path_page(path: &str) -> Option<u64> {
    let b = path.as_bytes();
    let b = b.strip_suffix(b"/").unwrap_or(b);
    let slash = memchr::memrchr(b'/', b)?;
    let num = &b[slash + 1..];
    // At most 18 digits: fits a u64.
    if num.is_empty() || num.len() > 18 || !num.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let head = &b[..slash];
    let word = &head[memchr::memrchr(b'/', head).map_or(0, |s| s + 1)..];
    let paged = [&b"page"[..], b"pages", b"p"]
        .iter()
        .any(|w| word.eq_ignore_ascii_case(w));
    paged.then(|| num.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Query parameters that carry an opaque pagination cursor.
const CURSOR_PARAMS: &[&str] = &[
    "cursor",
    "_next",
    "next",
    "after",
    "page_token",
    "pagetoken",
    "next_token",
    "nexttoken",
    "continuation",
    "continuationtoken",
    "starting_after",
    "marker",
    "scroll_id",
];

/// Keyed hash of the request's cursor value, when it carries one (never 0).
fn cursor_of(query: Option<&str>, keyer: &Keyer) -> Option<u64> {
    let (_, v) = apitap_labels::facts::query_pairs(query?)
        .find(|(k, v)| !v.is_empty() && CURSOR_PARAMS.iter().any(|c| k.eq_ignore_ascii_case(c)))?;
    Some(keyer.hash(Domain::Id, v.as_bytes()).max(1))
}

impl Detection for Crawling {
    fn new(cfg: &DetectConfig) -> Result<Self, DetectError> {
        Ok(Crawling {
            cfg: cfg.crawling.clone(),
            base: cfg.baseline.clone(),
            quiet_us: us(cfg.lifecycle.quiet_secs),
            sources: BoundedMap::new(cfg.limits.max_keys_per_table),
            fleets: BoundedMap::new(cfg.limits.max_keys_per_table),
            links: BoundedMap::new(
                cfg.crawling
                    .max_link_actors
                    .min(cfg.limits.max_keys_per_table),
            ),
            scratch: Box::default(),
            link_hashes: Vec::with_capacity(links::MAX_LINKS),
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
        let (thr_req, thr_paths, thr_linked) = self.thresholds();
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
            let (hot, robots_us) = (s.hot_until, s.robots_us);
            *s = Source {
                start_us: now,
                hot_until: hot,
                robots_us,
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
        let path = o.ev.request.path.as_str();
        if path == "/robots.txt" {
            // RFC 9309 §2.3: crawlers fetch it before crawling; browsers never do.
            s.robots_us = now;
        } else {
            // Followed a link served earlier to this address (checked before this
            // response's own links are learnt).
            s.link_base += 1;
            if self
                .links
                .get(a.ip_key)
                .is_some_and(|l| l.contains(o.path_key))
            {
                s.followed += 1;
                s.linked.insert(o.path_key);
            }
        }
        if let Some(p) = o.page.or_else(|| path_page(path)) {
            if s.has_page && p > s.last_page {
                s.page_steps += 1;
            }
            s.last_page = p;
            s.has_page = true;
        } else if let Some(c) = cursor_of(o.ev.request.query.as_deref(), cx.keyer) {
            // A cursor walk: each request carries the next opaque cursor.
            if c != s.last_cursor && s.last_cursor != 0 {
                s.page_steps += 1;
            }
            s.last_cursor = c;
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
        let robots = s.robots_us != 0;
        signals += u32::from(robots);
        let walks_pages = s.page_steps >= self.cfg.min_pagination_steps;
        let linked = s.linked.count();
        let follow = ratio(u64::from(s.followed), u64::from(s.link_base));
        let link_walk = follow >= self.cfg.min_link_follow_ratio && linked as f64 >= thr_linked;
        let templates = s.templates.count_ones();
        let by_templates = templates >= self.cfg.min_distinct_templates;
        let enough = signals >= self.cfg.min_signals;
        // Breadth: many requests over many paths, spread over templates, pages or links.
        let breadth = req as f64 >= thr_req
            && paths as f64 >= thr_paths
            && (by_templates || walks_pages || link_walk)
            && enough;
        // A crawler that read robots.txt and walks the links it is served: the lower floor.
        let robots_walk = robots && link_walk && enough;
        let triggered = breadth || robots_walk;
        if triggered || s.hot_until >= now {
            if triggered {
                s.hot_until = now + self.quiet_us;
            }
            let severity = if s.records >= self.cfg.records_signal_min {
                Severity::High
            } else {
                Severity::Medium
            };
            // What decided, for the analyst: the rules that held and every signal's count.
            let counts = [
                ("requests", req),
                ("distinct_paths", paths),
                ("distinct_templates", u64::from(templates)),
                ("signals", u64::from(signals)),
                ("pagination_steps", u64::from(s.page_steps)),
                ("sensitive_records", s.records),
                ("user_agent_changes", u64::from(s.ua_changes)),
                ("robots_txt", u64::from(robots)),
                ("linked_pages", linked),
                ("link_follow_pct", (follow * 100.0).round() as u64),
                ("rule_breadth", u64::from(breadth)),
                ("rule_robots_link_walk", u64::from(robots_walk)),
                // Last: only once the timing has enough gaps to mean something.
                ("timing_cv_pct", (cv.min(100.0) * 100.0).round() as u64),
            ];
            let n = counts.len() - usize::from(!cv.is_finite());
            cx.campaigns.hit(
                &Hit {
                    detector: Detector::Crawling,
                    kind: "per_source",
                    scope: Scope::Ip,
                    any_endpoint: true,
                    severity,
                    confidence: (50 + 8 * signals).min(95) as u8,
                    counts: &counts[..n],
                },
                o,
                cx.keyer,
            );
            cx.baselines.poison(o.endpoint_key);
        }
        learn_links(
            &mut self.links,
            &mut self.scratch,
            &mut self.link_hashes,
            o,
            cx.keyer,
        );
        // Distributed: group non-browser fingerprints across addresses.
        if a.ua.is_browser() {
            return;
        }
        // Two-stage processing (issue 18): the fleets are merged across analyzers by
        // [`crate::global`]; this one only contributes its requests.
        if let Some(sink) = cx.partials.as_deref_mut() {
            sink.crawling(o, cx.keyer, thr_req, thr_paths);
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
        let triggered = fleet_holds(
            &self.cfg,
            [n_src, freq, fpaths, f.authenticated.into()],
            thr_req,
            thr_paths,
        );
        if triggered || f.hot_until >= now {
            if triggered {
                f.hot_until = now + self.quiet_us;
            }
            let counts = [
                ("requests", freq),
                ("distinct_paths", fpaths),
                ("distinct_sources", n_src),
            ];
            cx.campaigns.hit(&fleet_hit(&counts), o, cx.keyer);
        }
    }

    fn expire(&mut self, now: u64) {
        let keep = now.saturating_sub(us(self.cfg.window_secs));
        self.sources.expire(keep);
        self.fleets.expire(keep);
        // An address idle for a window forgets the links it was served.
        self.links.expire(keep);
    }

    fn evicted(&self) -> u64 {
        self.sources.evicted + self.fleets.evicted + self.links.evicted
    }

    fn tracked_keys(&self) -> usize {
        self.sources.len() + self.fleets.len() + self.links.len()
    }

    fn state_bytes(&self) -> usize {
        let heap = |d: &Distinct| d.heap_bytes();
        self.sources.table_bytes()
            + self.fleets.table_bytes()
            + self.links.table_bytes()
            + std::mem::size_of::<links::Scratch>()
            + self.link_hashes.capacity() * 8
            + self
                .sources
                .values()
                .map(|s| heap(&s.paths) + heap(&s.linked))
                .sum::<usize>()
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

    /// An HTML response linking `links`.
    fn html(mut r: Req, links: impl Iterator<Item = String>) -> Req {
        let mut body = String::from("<html><body>");
        for l in links {
            body.push_str(&format!("<a href='{l}'>x</a> "));
        }
        r.resp_headers = vec![("Content-Type".into(), "text/html; charset=utf-8".into())];
        r.resp(&body)
    }

    /// A mirroring crawl of one template: the index linking 200 pages, robots.txt (when
    /// `robots`), then `n` of the pages `gap_ms` apart, each linking the next ones.
    fn mirror(ip: &str, robots: bool, n: u64, gap_ms: u64) -> Vec<Req> {
        let ua = "Wget/1.21.3";
        let mut v = vec![html(
            Req::get(ip, "/links/200/0", T0).ua(ua),
            (1..200).map(|i| format!("/links/200/{i}")),
        )];
        if robots {
            v.push(Req::get(ip, "/robots.txt", T0 + 5_000).ua(ua));
        }
        for i in 1..=n {
            let r = Req::get(ip, &format!("/links/200/{i}"), T0 + i * gap_ms * 1_000)
                .ua(ua)
                .header("Referer", "http://api.example.com/links/200/0");
            // Relative links, as many sites write them.
            v.push(html(r, (i + 1..i + 5).map(|k| k.to_string())));
        }
        v
    }

    fn crawls(out: &[crate::Finding]) -> Vec<&crate::Finding> {
        creates(out)
            .into_iter()
            .filter(|f| f.detector == Detector::Crawling)
            .collect()
    }

    #[test]
    fn robots_and_a_one_template_link_walk_raise_at_the_lower_floor() {
        let mut eng = engine(DetectConfig::default());
        // httrack's pace: one page a second.
        let out = run(&mut eng, mirror("203.0.113.5", true, 55, 1_000), no_ctx);
        let c = crawls(&out);
        assert_eq!(c.len(), 1, "{out:#?}");
        let f = c[0];
        assert_eq!(f.count("rule_robots_link_walk"), Some(1));
        assert_eq!(f.count("rule_breadth"), Some(0));
        assert_eq!(f.count("robots_txt"), Some(1));
        assert!(f.count("link_follow_pct").unwrap() >= 95, "{f:?}");
        assert!(f.count("linked_pages").unwrap() >= 40);
        assert!(f.count("timing_cv_pct").is_some());
        // At the 40th linked page, ~40 s in.
        assert!(
            (38 * SEC..=45 * SEC).contains(&(f.time_us - T0)),
            "{}",
            f.time_us - T0
        );
    }

    #[test]
    fn link_walk_without_robots_needs_the_breadth_floors() {
        // 55 linked pages a minute without robots.txt: not enough.
        let mut eng = engine(DetectConfig::default());
        let out = run(&mut eng, mirror("203.0.113.5", false, 55, 1_000), no_ctx);
        assert!(crawls(&out).is_empty(), "{:#?}", crawls(&out));
        // 150 pages fast: the link walk spreads the breadth rule over one template.
        let mut eng = engine(DetectConfig::default());
        let out = run(&mut eng, mirror("203.0.113.5", false, 150, 50), no_ctx);
        let c = crawls(&out);
        assert_eq!(c.len(), 1, "{out:#?}");
        assert_eq!(c[0].count("rule_breadth"), Some(1));
        assert_eq!(c[0].count("distinct_templates"), Some(1));
        assert_eq!(c[0].count("robots_txt"), Some(0));
    }

    #[test]
    fn a_walk_of_pages_never_served_as_links_is_not_a_link_walk() {
        // robots.txt, then 150 pages of one template that no response linked.
        let mut eng = engine(DetectConfig::default());
        let mut reqs = vec![Req::get("203.0.113.5", "/robots.txt", T0).ua("Wget/1.21.3")];
        reqs.extend((1..=150).map(|i| {
            Req::get("203.0.113.5", &format!("/links/200/{i}"), T0 + i * 50_000).ua("Wget/1.21.3")
        }));
        let out = run(&mut eng, reqs, no_ctx);
        assert!(crawls(&out).is_empty(), "{:#?}", crawls(&out));
    }

    #[test]
    fn a_browser_reading_linked_pages_with_their_assets_is_silent() {
        let mut eng = engine(DetectConfig::default());
        let mut reqs = Vec::new();
        let assets = ["/static/site.css", "/static/app.js", "/img/logo.png"];
        // 50 pages in 2 minutes, each with its assets (the first time) right after it.
        for i in 0..50u64 {
            let t = T0 + i * 2_400_000 + (i * 7_919 % 900) * 1_000;
            let page = Req::get("198.51.100.7", &format!("/docs/{i}"), t)
                .ua(CHROME)
                .header("Referer", "https://api.example.com/docs/")
                .header("Cookie", "sid=user-session-0001");
            reqs.push(html(
                page,
                (i + 1..i + 30)
                    .map(|k| format!("/docs/{k}"))
                    .chain(assets.iter().map(|a| (*a).to_owned())),
            ));
            if i == 0 {
                for (k, a) in assets.iter().enumerate() {
                    reqs.push(
                        Req::get("198.51.100.7", a, t + 40_000 + k as u64 * 5_000)
                            .ua(CHROME)
                            .header("Cookie", "sid=user-session-0001"),
                    );
                }
            }
        }
        let out = run(&mut eng, reqs, no_ctx);
        assert!(crawls(&out).is_empty(), "{:#?}", crawls(&out));
    }

    #[test]
    fn redirect_targets_and_json_links_are_followed_links() {
        let mut eng = engine(DetectConfig::default());
        let ip = "203.0.113.5";
        let ua = "python-requests/2.31.0";
        let mut reqs = vec![Req::get(ip, "/robots.txt", T0).ua(ua)];
        for i in 0..60u64 {
            let t = T0 + SEC + i * 500_000;
            // A redirect to the item, whose JSON links the next redirect.
            let mut redirect = Req::get(ip, &format!("/go/{i}"), t).ua(ua).status(302);
            redirect.resp_headers = vec![(
                "Location".into(),
                format!("http://api.example.com/items/{i}"),
            )];
            redirect.resp_body = String::new();
            reqs.push(redirect);
            reqs.push(
                Req::get(ip, &format!("/items/{i}"), t + 100_000)
                    .ua(ua)
                    .resp(&format!("{{\"id\":{i},\"next\":\"\\/go\\/{}\"}}", i + 1)),
            );
        }
        let out = run(&mut eng, reqs, no_ctx);
        let c = crawls(&out);
        assert_eq!(c.len(), 1, "{out:#?}");
        assert!(c[0].count("link_follow_pct").unwrap() >= 95, "{:?}", c[0]);
    }

    #[test]
    fn path_pages_walk_one_template() {
        // /blog/page/1..150: one template, breadth by the page walk.
        let mut eng = engine(DetectConfig::default());
        let reqs = (1..=150)
            .map(|i| {
                Req::get("203.0.113.5", &format!("/blog/page/{i}"), T0 + i * 100_000)
                    .ua("Scrapy/2.11")
            })
            .collect();
        let out = run(&mut eng, reqs, no_ctx);
        let c = crawls(&out);
        assert_eq!(c.len(), 1, "{out:#?}");
        assert!(c[0].count("pagination_steps").unwrap() >= 20);
    }

    #[test]
    fn page_and_cursor_parsing() {
        assert_eq!(path_page("/blog/page/3"), Some(3));
        assert_eq!(path_page("/blog/p/12/"), Some(12));
        assert_eq!(path_page("/Pages/7"), Some(7));
        assert_eq!(path_page("/links/200/3"), None);
        assert_eq!(path_page("/page/"), None);
        assert_eq!(path_page("/page/99999999999999999999999"), None);
        assert_eq!(path_page("/page/1e3"), None);
        let k = crate::keys::Keyer::new(&apitap_labels::HashKey::from_secret(b"t"));
        let a = cursor_of(Some("limit=50&cursor=eyJpZCI6MTB9"), &k);
        let b = cursor_of(Some("_next=eyJpZCI6MjB9"), &k);
        assert!(a.is_some() && b.is_some() && a != b);
        assert_eq!(cursor_of(Some("cursor="), &k), None);
        assert_eq!(cursor_of(Some("page=2"), &k), None);
        assert_eq!(cursor_of(None, &k), None);
    }

    #[test]
    fn link_filter_remembers_recent_links_with_bounded_false_positives() {
        let h = |i: u64| {
            let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            x ^= x >> 31;
            x.wrapping_mul(0xBF58_476D_1CE4_E5B9)
        };
        let mut f = LinkFilter::new(0);
        for i in 0..10_000 {
            f.insert(h(i));
        }
        // The last generation's worth is remembered.
        assert!((10_000 - u64::from(LINK_ROTATE)..10_000).all(|i| f.contains(h(i))));
        // However many were inserted, few unseen hashes look linked.
        let fp = (1_000_000..1_010_000).filter(|&i| f.contains(h(i))).count();
        assert!(fp < 400, "{fp} of 10 000");
    }

    #[test]
    fn per_address_state_is_as_documented() {
        // Module docs and docs/detections.md: ~200 B per address, 1 KiB per link filter.
        let source = std::mem::size_of::<Source>();
        let filter = std::mem::size_of::<LinkFilter>();
        println!("Source {source} B, LinkFilter {filter} B");
        assert!(source <= 208, "{source}");
        assert!(filter <= 1_040, "{filter}");
    }

    #[test]
    fn link_filters_are_bounded_and_evictions_counted() {
        let mut cfg = DetectConfig::default();
        cfg.crawling.max_link_actors = 10;
        let mut eng = engine(cfg);
        let reqs = (0..50u64)
            .map(|u| {
                html(
                    Req::get(&format!("198.51.100.{u}"), "/", T0 + u * 1_000).ua(CHROME),
                    (0..20).map(|k| format!("/p/{k}")),
                )
            })
            .collect();
        run(&mut eng, reqs, no_ctx);
        let m = eng.metrics();
        let evicted = m
            .evicted
            .iter()
            .find(|(n, _)| *n == "crawling")
            .map_or(0, |(_, e)| *e);
        assert_eq!(evicted, 40);
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
