//! The crawling detector on real tool traffic (issue 14): `wget --mirror -e robots=on` and
//! httrack crawling httpbin's `/links/200/{n}` (200 linked pages of one template, robots.txt
//! fetched second) raise `crawling`; a user browsing 30 linked pages with pauses and an API
//! client polling one URL at 2 requests/s raise nothing.
//!
//! Fixtures (`detect/tests/data/crawl/*.events.jsonl.gz`, `gzip -9 -n`): `apitap-sensor
//! replay` of `dumpcap -i <veth> -f 'tcp port 80'` captures taken on the server side of a
//! network-namespace pair, `gunicorn httpbin:app` (httpbin 0.10, gunicorn 23) on
//! 10.77.0.1:80:
//! - `wget`: 10.77.0.2, `wget --mirror -e robots=on -l 3 --quota=5m --no-verbose
//!   http://10.77.0.1/links/200/0` (GNU Wget 1.21.3): 201 requests in 0.5 s;
//! - `httrack`: 10.77.0.3, `httrack http://10.77.0.1/links/200/0 -O mirror -r3 -M5000000
//!   -E240 -q` (HTTrack 3.49-4): 201 requests, one a second;
//! - `benign`: 10.77.0.4, curl with a Firefox User-Agent, `Referer` and a cookie jar
//!   following a random link of each of 30 pages, 0.8–4 s apart; 10.77.0.5, curl polling
//!   `/get` every 0.5 s for 150 s (293 requests).
//!
//! (`distributed` beside them is the recorded distributed crawl against the test API,
//! `tests/fixtures/attacks/crawl_distributed`, read by `two_stage.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use apitap_detect::{Activity, DetectConfig, Detector, Engine, Finding};
use apitap_labels::HashKey;
use apitap_schema::ApiEvent;

mod common;
use common::events;

/// Every finding of `evs` through one engine, ticked every second of stream time as the
/// analyzer does.
fn run(evs: &[ApiEvent]) -> Vec<Finding> {
    let mut eng = Engine::with_hash_key(
        DetectConfig::default(),
        &HashKey::from_secret(b"crawl-tools"),
    )
    .expect("engine");
    let out = eng.run(evs);
    for f in &out {
        let doc = apitap_detect::ocsf::detection_finding(f);
        apitap_detect::ocsf::validate(&doc).expect("valid OCSF");
    }
    out
}

fn creates(out: &[Finding]) -> Vec<&Finding> {
    out.iter()
        .filter(|f| f.activity == Activity::Create)
        .collect()
}

/// The crawling Create for `ip`, with its counters printed (the measurements of issue 14).
fn crawl_of<'a>(out: &'a [Finding], ip: &str) -> &'a Finding {
    let c = creates(out);
    let f = c
        .iter()
        .find(|f| f.detector == Detector::Crawling && f.actor_key("client_ip") == Some(ip))
        .unwrap_or_else(|| panic!("no crawling for {ip}: {c:#?}"));
    // The Close carries the campaign's largest window values.
    let close = out
        .iter()
        .find(|x| x.activity == Activity::Close && x.uid == f.uid)
        .expect("closed");
    println!("{ip}: create {:?}\n  close {:?}", f.counts, close.counts);
    f
}

#[test]
fn wget_mirror_raises_crawling_within_60_s() {
    let evs = events("wget");
    let start = evs[0].request_start_unix_us;
    let out = run(&evs);
    assert_eq!(creates(&out).len(), 1, "{:#?}", creates(&out));
    let f = crawl_of(&out, "10.77.0.2");
    assert_eq!(f.kind, "per_source");
    assert!(f.time_us - start <= 60_000_000, "{}", f.time_us - start);
    // Decided by robots.txt and the link walk, over one page template (+ robots.txt).
    assert_eq!(f.count("robots_txt"), Some(1));
    assert_eq!(f.count("rule_robots_link_walk"), Some(1));
    assert!(f.count("link_follow_pct").unwrap() >= 80);
    assert!(f.count("linked_pages").unwrap() >= 40);
    assert!(f.count("distinct_templates").unwrap() <= 2);
}

#[test]
fn httrack_raises_crawling_within_60_s() {
    let evs = events("httrack");
    let start = evs[0].request_start_unix_us;
    let out = run(&evs);
    assert_eq!(creates(&out).len(), 1, "{:#?}", creates(&out));
    let f = crawl_of(&out, "10.77.0.3");
    assert!(f.time_us - start <= 60_000_000, "{}", f.time_us - start);
    assert_eq!(f.count("robots_txt"), Some(1));
    assert_eq!(f.count("rule_robots_link_walk"), Some(1));
    // One request a second, like a metronome.
    assert!(f.count("timing_cv_pct").unwrap() < 35);
    // Far under the breadth rule's 120 requests per window.
    assert!(f.count("requests").unwrap() < 120);
}

#[test]
fn browsing_user_and_one_url_poller_raise_nothing() {
    let out = run(&events("benign"));
    assert!(creates(&out).is_empty(), "{:#?}", creates(&out));
}

#[test]
fn all_together_raise_the_two_crawlers_only() {
    let mut evs = events("benign");
    evs.extend(events("wget"));
    evs.extend(events("httrack"));
    evs.sort_by_key(|e| e.request_start_unix_us);
    let out = run(&evs);
    let mut ips: Vec<&str> = creates(&out)
        .iter()
        .map(|f| {
            assert_eq!(f.detector, Detector::Crawling);
            f.actor_key("client_ip").unwrap_or("")
        })
        .collect();
    ips.sort_unstable();
    assert_eq!(ips, ["10.77.0.2", "10.77.0.3"]);
}
