//! Labelling throughput (MB/s per core) on realistic bodies, against a naive baseline that
//! runs one regex pass per label type over the body (and validates each match with the same
//! validators). Bodies come from the evaluation corpus (`tests/data/corpus.jsonl.gz`): every
//! JSON, form, XML and text body, plus list responses of 50 records. Run with
//! `cargo bench -p apitap-labels`; the comparison table is printed at the end, and
//! `-- --save-baseline NAME` / `-- --baseline NAME` compare with an earlier run.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code
use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apitap_labels::validate as v;
use apitap_labels::{Direction, HashKey, LabelConfig, Labeller, Scanner};
use criterion::{Criterion, Throughput};
use regex::bytes::Regex;

struct Corpus {
    /// (content type, body)
    bodies: Vec<(String, Vec<u8>)>,
    bytes: usize,
}

fn corpus(kinds: &[&str]) -> Corpus {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/corpus.jsonl.gz");
    let f = std::fs::File::open(path).expect("corpus");
    let mut bodies = Vec::new();
    for line in BufReader::new(flate2::read::GzDecoder::new(f)).lines() {
        let s: serde_json::Value = serde_json::from_str(&line.expect("line")).expect("json");
        let kind = s["kind"].as_str().unwrap_or("");
        if kinds.contains(&kind) {
            let ct = s["ct"].as_str().unwrap_or("").to_owned();
            bodies.push((ct, s["body"].as_str().unwrap_or("").as_bytes().to_vec()));
        }
    }
    let bytes = bodies.iter().map(|(_, b)| b.len()).sum();
    Corpus { bodies, bytes }
}

/// List responses: `{"code":0,"data":{"list":[…50 records…]}}` built from corpus JSON records.
fn list_responses() -> Corpus {
    let src = corpus(&["json"]);
    let mut records = Vec::new();
    for (_, b) in &src.bodies {
        let Ok(doc) = serde_json::from_slice::<serde_json::Value>(b) else {
            continue;
        };
        match &doc["data"]["list"] {
            serde_json::Value::Array(a) => records.extend(a.iter().cloned()),
            _ => records.push(if doc["data"].is_object() {
                doc["data"].clone()
            } else {
                doc
            }),
        }
    }
    let bodies: Vec<(String, Vec<u8>)> = records
        .chunks(50)
        .map(|c| {
            let doc = serde_json::json!({"code": 0, "msg": "success", "data": {"total": c.len(), "list": c}});
            ("application/json".to_owned(), serde_json::to_vec(&doc).unwrap_or_default())
        })
        .collect();
    let bytes = bodies.iter().map(|(_, b)| b.len()).sum();
    Corpus { bodies, bytes }
}

/// Typical banking/e-commerce API traffic (deterministic): transaction lists with masked
/// counterparties, product catalogues without personal data, customer profiles with a handful
/// of unmasked identifiers, and configuration documents. About one sensitive value per
/// 300-500 bytes, which is what list and detail APIs of a bank look like.
const MERCHANTS: [&str; 4] = [
    "星巴克咖啡(国贸店)",
    "美团外卖",
    "中国石化加油站",
    "Apple Store",
];
const CATEGORIES: [&str; 4] = ["餐饮", "交通", "购物", "转账"];

fn realistic() -> Corpus {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut bodies = Vec::new();
    for i in 0..400u64 {
        let doc = match i % 4 {
            0 => {
                let recs: Vec<serde_json::Value> = (0..20)
                    .map(|_| {
                        serde_json::json!({
                            "txnId": format!("{:016x}{:016x}", rnd(u64::MAX), rnd(u64::MAX)),
                            "amount": format!("{}.{:02}", rnd(100_000), rnd(100)),
                            "currency": "CNY",
                            "txnTime": format!("2024-06-{:02}T{:02}:{:02}:{:02}+08:00", 1 + rnd(28), rnd(24), rnd(60), rnd(60)),
                            "merchantName": MERCHANTS[rnd(4) as usize],
                            "category": CATEGORIES[rnd(4) as usize],
                            "status": "SUCCESS",
                            "channel": "APP",
                            "remark": "",
                            "balance": rnd(1_000_000) as f64 / 100.0,
                            "counterpartyCard": format!("6222****{:04}", rnd(10_000)),
                            "orderNo": format!("2024061{}", 10_000_000_000u64 + rnd(9_000_000_000)),
                        })
                    })
                    .collect();
                serde_json::json!({"code": 0, "msg": "success", "data": {"customerName": "张*", "mobile": format!("138****{:04}", rnd(10_000)), "total": 20, "list": recs}})
            }
            1 => {
                let items: Vec<serde_json::Value> = (0..30)
                    .map(|k| {
                        serde_json::json!({
                            "productId": 100_000 + k,
                            "name": "稳健增利理财产品",
                            "riskLevel": "R2",
                            "rate": "3.25%",
                            "minAmount": 10000,
                            "term": 180,
                            "tags": ["稳健", "热销"],
                            "desc": "本产品为非保本浮动收益型理财产品，投资有风险。",
                            "updatedAt": 1_717_000_000_000u64 + rnd(1_000_000),
                        })
                    })
                    .collect();
                serde_json::json!({"code": 0, "data": {"items": items, "page": 1, "pageSize": 30}})
            }
            2 => serde_json::json!({
                "code": 0,
                "data": {
                    "customerId": rnd(1_000_000_000),
                    "realName": "王小明",
                    "mobile": format!("13{}{:08}", 5 + rnd(5), rnd(100_000_000)),
                    "idCard": "11010519491231002X",
                    "email": "wang.xiaoming@example.com",
                    "address": "北京市朝阳区建国路88号",
                    "level": "GOLD",
                    "riskScore": rnd(100),
                    "kycStatus": "VERIFIED",
                    "createdAt": "2021-03-04T05:06:07Z",
                    "preferences": {"lang": "zh-CN", "notify": true, "theme": "dark"},
                    "accounts": [
                        {"acctType": "DEBIT", "cardNo": "6222****1234", "balance": 1234.5},
                        {"acctType": "CREDIT", "cardNo": "6225****5678", "limit": 50000}
                    ],
                }
            }),
            _ => serde_json::json!({
                "version": "3.12.0",
                "features": {"faceLogin": true, "transferLimit": 50000, "abTest": "B"},
                "endpoints": ["https://api.example.com/v1", "https://cdn.example.com/static"],
                "banners": (0..10).map(|k| serde_json::json!({"id": k, "title": "618 年中大促", "url": format!("https://cdn.example.com/b/{k}.png")})).collect::<Vec<_>>(),
            }),
        };
        bodies.push((
            "application/json".to_owned(),
            serde_json::to_vec(&doc).unwrap_or_default(),
        ));
    }
    let bytes = bodies.iter().map(|(_, b)| b.len()).sum();
    Corpus { bodies, bytes }
}

fn scanner() -> Scanner {
    let lab =
        Labeller::new(HashKey::from_secret(b"bench"), LabelConfig::default()).expect("labeller");
    Scanner::new(Arc::new(lab))
}

fn ours(sc: &mut Scanner, c: &Corpus) -> usize {
    let mut n = 0;
    for (ct, b) in &c.bodies {
        n += sc.label_body(Direction::Response, Some(ct), b).len();
    }
    n
}

/// The naive way: one regex per label type, each a full pass over the body, each match
/// validated.
type Pass = (Regex, fn(&[u8]) -> bool);

struct Baseline {
    passes: Vec<Pass>,
}

fn digits_only(m: &[u8]) -> Vec<u8> {
    m.iter()
        .copied()
        .filter(|b| b.is_ascii_alphanumeric())
        .collect()
}

impl Baseline {
    fn new() -> Baseline {
        // ASCII word boundaries and classes (`(?-u)`): the fast configuration of `regex`.
        let r = |p: &str| {
            let ascii = p.is_ascii();
            Regex::new(&if ascii {
                format!("(?-u){p}")
            } else {
                p.to_owned()
            })
            .expect("regex")
        };
        let passes: Vec<Pass> = vec![
            (r(r"\b\d{17}[\dXx]\b"), |m| {
                v::prc_id18(&digits_only(m).to_ascii_uppercase(), 2100)
            }),
            (
                r(r"\b[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}\b"),
                |m| v::uscc(m) != v::UsccCheck::Invalid,
            ),
            (r(r"(?:\+?86[- ]?)?\b1[3-9]\d[- ]?\d{4}[- ]?\d{4}\b"), |m| {
                let d = digits_only(m);
                v::cn_mobile(&d[d.len().saturating_sub(11)..])
            }),
            (r(r"\b0\d{2,3}-\d{7,8}\b"), |m| {
                v::cn_landline(&digits_only(m), None)
            }),
            (r(r"\b(?:\d[ -]?){12,18}\d\b"), |m| {
                let d = digits_only(m);
                v::luhn(&d) && v::card_scheme(&d).is_some()
            }),
            (
                r(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"),
                |m| v::iban(&digits_only(m)),
            ),
            (r(r"\b\d{3}-\d{2}-\d{4}\b"), |m| v::us_ssn(&digits_only(m))),
            (r(r"\b[EGDSP]\d{8}\b"), |_| true),
            (r(r"\b[CWHM]\d{8}\b"), |_| true),
            (
                r(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"),
                v::email,
            ),
            (r(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"), |m| {
                v::parse_ipv4(m).is_some()
            }),
            (r(r"\b(?:[0-9a-fA-F]{1,4}:){2,7}[0-9a-fA-F]{1,4}\b"), |m| {
                std::str::from_utf8(m)
                    .ok()
                    .and_then(|s| s.parse::<std::net::Ipv6Addr>().ok())
                    .is_some()
            }),
            (
                r(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),
                |_| true,
            ),
            (r(r"\b(?:AKIA|ASIA)[A-Z2-7]{16}\b"), v::aws_access_key),
            (r(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), |_| true),
            (r(r#"(?i)"(?:password|passwd|pwd)"\s*:\s*"[^"]*""#), |_| {
                true
            }),
            (
                r(
                    r"[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼][A-Z][-·]?[A-HJ-NP-Z0-9]{5,6}",
                ),
                |_| true,
            ),
        ];
        Baseline { passes }
    }

    fn run(&self, c: &Corpus) -> usize {
        let mut n = 0;
        for (_, b) in &c.bodies {
            for (re, ok) in &self.passes {
                n += re.find_iter(b).filter(|m| ok(m.as_bytes())).count();
            }
        }
        n
    }
}

fn mbps(bytes: usize, f: &mut dyn FnMut() -> usize) -> f64 {
    // Warm up, then run for at least 2 s.
    black_box(f());
    let start = Instant::now();
    let mut iters = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        black_box(f());
        iters += 1;
    }
    (bytes as f64 * iters as f64) / start.elapsed().as_secs_f64() / 1e6
}

fn main() {
    let sets = [
        ("realistic API responses", realistic()),
        ("eval corpus: json bodies", corpus(&["json"])),
        ("eval corpus: list responses (50 records)", list_responses()),
        (
            "eval corpus: all kinds",
            corpus(&["json", "form", "xml", "multipart", "csv", "text"]),
        ),
    ];
    // Fixed-work mode for `time`, `perf stat` or callgrind (cycles or instructions per byte are
    // robust on a busy machine; callgrind: `--toggle-collect='*Scanner*label_body*'`).
    if let Some(n) = std::env::var("APITAP_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        let mut sc = scanner();
        let only = std::env::var("APITAP_BENCH_SET")
            .ok()
            .and_then(|v| v.parse::<usize>().ok());
        for (k, (name, c)) in sets.iter().enumerate() {
            if only.is_some_and(|o| o != k) {
                continue;
            }
            let start = Instant::now();
            for _ in 0..n {
                black_box(ours(&mut sc, c));
            }
            let s = start.elapsed().as_secs_f64();
            println!("{name}: {} bytes x {n} in {s:.3} s", c.bytes);
        }
        return;
    }
    let base = Baseline::new();
    let mut crit = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3));
    {
        let mut g = crit.benchmark_group("labelling");
        for (name, c) in &sets {
            g.throughput(Throughput::Bytes(c.bytes as u64));
            let mut sc = scanner();
            g.bench_function(format!("ours/{name}"), |b| b.iter(|| ours(&mut sc, c)));
            g.bench_function(format!("regex-per-label/{name}"), |b| {
                b.iter(|| base.run(c))
            });
        }
        g.finish();
    }
    crit.final_summary();
    if std::env::var_os("APITAP_BENCH_NO_TABLE").is_some() {
        return;
    }

    println!("\nlabelling throughput, one core (MB/s = 10^6 bytes/s)");
    println!("| bodies | bytes | ours MB/s | regex-per-label MB/s | ours / baseline |");
    println!("|---|---:|---:|---:|---:|");
    for (name, c) in &sets {
        let mut sc = scanner();
        let o = mbps(c.bytes, &mut || ours(&mut sc, c));
        let b = mbps(c.bytes, &mut || base.run(c));
        println!("| {name} | {} | {o:.0} | {b:.0} | {:.1}x |", c.bytes, o / b);
    }
}
