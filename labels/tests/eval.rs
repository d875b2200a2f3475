//! Evaluation on the labelled corpus (`labels/eval/gen_corpus.py`, committed as
//! `tests/data/corpus.jsonl.gz`): precision and recall per label, and the false-positive rate
//! of card labels on numeric fields without card context. Asserts the targets of issue 6
//! (R-SEN-1).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code
mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::sync::Arc;

use apitap_labels::{HashKey, Label, LabelConfig, Labeller, Scanner, ValueHash};

#[derive(Default, Clone, Copy)]
struct Counts {
    tp: u64,
    fp: u64,
    fn_: u64,
}

impl Counts {
    fn precision(&self) -> f64 {
        if self.tp + self.fp == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fp) as f64
        }
    }
    fn recall(&self) -> f64 {
        if self.tp + self.fn_ == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fn_) as f64
        }
    }
}

struct Sample {
    v: serde_json::Value,
}

fn load() -> Vec<Sample> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/corpus.jsonl.gz");
    let f = std::fs::File::open(path).expect("corpus present (run labels/eval/gen_corpus.py)");
    let r = BufReader::new(flate2::read::GzDecoder::new(f));
    r.lines()
        .map(|l| Sample {
            v: serde_json::from_str(&l.unwrap()).unwrap(),
        })
        .collect()
}

fn to_event(s: &Sample) -> apitap_schema::ApiEvent {
    let v = &s.v;
    let ct = v["ct"].as_str();
    let body = v["body"].as_str().unwrap().as_bytes();
    let path = v["path"].as_str().unwrap();
    let query = v["query"].as_str();
    let hdrs: Vec<(&str, &str)> = ct.map(|c| vec![("Content-Type", c)]).unwrap_or_default();
    if v["dir"] == "request" {
        common::event("POST", path, query, &hdrs, body, Some((200, &[], b"")))
    } else {
        common::event("GET", path, query, &[], b"", Some((200, &hdrs, body)))
    }
}

#[test]
fn corpus_precision_recall_meets_targets() {
    let key = HashKey::from_secret(b"eval");
    let cfg = LabelConfig {
        max_hashes_per_finding: 1_000_000,
        max_findings: 1_000_000,
        ..LabelConfig::default()
    };
    let lab = Arc::new(Labeller::new(key.clone(), cfg).unwrap());
    let mut scanner = Scanner::new(lab);
    let samples = load();
    assert!(samples.len() >= 5000, "corpus too small: {}", samples.len());

    let mut per: BTreeMap<Label, Counts> = BTreeMap::new();
    let mut card_negatives = 0u64;
    let mut card_fp_on_negatives = 0u64;
    let mut masked_findings = 0u64;
    let mut fp_by_neg: BTreeMap<String, u64> = BTreeMap::new();
    for s in &samples {
        let ev = to_event(s);
        let labels = scanner.label_event(&ev);
        let mut truth: HashSet<(Label, ValueHash)> = HashSet::new();
        let mut truth_pw = 0u64;
        for t in s.v["truth"].as_array().unwrap() {
            let l = Label::from_name(t[0].as_str().unwrap()).unwrap();
            let val = t[1].as_str().unwrap();
            if l == Label::Password {
                truth_pw += 1;
            } else {
                truth.insert((l, key.hash_value(l, val.as_bytes())));
            }
        }
        let mut detected: HashSet<(Label, ValueHash)> = HashSet::new();
        let mut det_pw = 0u64;
        for f in &labels.findings {
            if f.mask.is_some() {
                masked_findings += 1;
                continue;
            }
            if f.label == Label::Password {
                det_pw += u64::from(f.count);
            }
            for h in &f.hashes {
                detected.insert((f.label, *h));
            }
        }
        for (l, h) in &detected {
            let c = per.entry(*l).or_default();
            if truth.contains(&(*l, *h)) {
                c.tp += 1;
            } else {
                c.fp += 1;
                // Which hard negative, if any, was mistaken?
                for n in s.v["neg"].as_array().unwrap() {
                    if key.hash_value(*l, n[1].as_str().unwrap().as_bytes()) == *h {
                        *fp_by_neg
                            .entry(format!("{} as {}", n[0].as_str().unwrap(), l))
                            .or_default() += 1;
                    }
                }
            }
        }
        for (l, h) in &truth {
            if !detected.contains(&(*l, *h)) {
                per.entry(*l).or_default().fn_ += 1;
                if std::env::var_os("EVAL_DEBUG").is_some() {
                    let other: Vec<_> = detected
                        .iter()
                        .filter(|(_, x)| x == h)
                        .map(|(l, _)| *l)
                        .collect();
                    println!("FN {l} (detected as {other:?}) in sample {}", s.v["id"]);
                }
            }
        }
        let pw = per.entry(Label::Password).or_default();
        pw.tp += truth_pw.min(det_pw);
        pw.fp += det_pw.saturating_sub(truth_pw);
        pw.fn_ += truth_pw.saturating_sub(det_pw);
        // Cards on numeric fields without card context.
        for n in s.v["neg"].as_array().unwrap() {
            let cat = n[0].as_str().unwrap();
            if cat == "random_numeric" || cat == "luhn_noncard" {
                card_negatives += 1;
                let val = n[1].as_str().unwrap().as_bytes();
                let hit = [Label::BankCard, Label::CreditCard]
                    .iter()
                    .any(|l| detected.contains(&(*l, key.hash_value(*l, val))));
                if hit {
                    card_fp_on_negatives += 1;
                }
            }
        }
    }

    println!("\n{} samples", samples.len());
    println!("| label | TP | FP | FN | precision | recall |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (l, c) in &per {
        println!(
            "| {} | {} | {} | {} | {:.2} % | {:.2} % |",
            l,
            c.tp,
            c.fp,
            c.fn_,
            100.0 * c.precision(),
            100.0 * c.recall()
        );
    }
    let card_fp_rate = card_fp_on_negatives as f64 / card_negatives.max(1) as f64;
    println!(
        "cards on numeric fields without card context: {card_fp_on_negatives} of {card_negatives} ({:.3} %)",
        100.0 * card_fp_rate
    );
    println!("masked findings (corpus has no masked values): {masked_findings}");
    println!("false positives on hard negatives: {fp_by_neg:?}");

    let get = |l: Label| per.get(&l).copied().unwrap_or_default();
    for l in [Label::PrcId, Label::Uscc, Label::Iban] {
        let c = get(l);
        assert!(c.tp > 100, "{l}: too few positives");
        assert!(
            c.precision() >= 0.995 && c.recall() >= 0.995,
            "{l}: below 99.5 %"
        );
    }
    let cards = Counts {
        tp: get(Label::BankCard).tp + get(Label::CreditCard).tp,
        fp: get(Label::BankCard).fp + get(Label::CreditCard).fp,
        fn_: get(Label::BankCard).fn_ + get(Label::CreditCard).fn_,
    };
    assert!(get(Label::BankCard).recall() >= 0.99, "bank card recall");
    assert!(cards.recall() >= 0.99, "card recall");
    assert!(
        card_fp_rate <= 0.001,
        "card false positives on numeric fields"
    );
    let m = get(Label::Mobile);
    assert!(m.recall() >= 0.99 && m.precision() >= 0.98, "mobile");
    // Regression guard for every other label the corpus exercises.
    for (l, c) in &per {
        if c.tp + c.fn_ >= 100 {
            assert!(
                c.precision() >= 0.97 && c.recall() >= 0.97,
                "{l}: {:.2} / {:.2}",
                c.precision(),
                c.recall()
            );
        }
    }
    assert_eq!(masked_findings, 0);
}

/// Every corpus body cut at random points and with random bytes overwritten, in every
/// content type: the scanner must not panic (R-CAP-7).
#[test]
fn mutated_corpus_never_panics() {
    let lab = Arc::new(Labeller::new(HashKey::from_secret(b"m"), LabelConfig::default()).unwrap());
    let mut sc = Scanner::new(lab);
    let cts = [
        "application/json",
        "application/x-www-form-urlencoded",
        "text/xml",
        "multipart/form-data; boundary=----apitapBoundary1",
        "text/csv",
        "text/plain",
    ];
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for (k, s) in load().iter().enumerate().step_by(3) {
        let body = s.v["body"].as_str().unwrap().as_bytes();
        if body.is_empty() {
            continue;
        }
        let mut b = body.to_vec();
        for _ in 0..3 {
            let p = (next() as usize) % b.len();
            b[p] = (next() >> 56) as u8;
        }
        let cut = (next() as usize) % (b.len() + 1);
        let ct = cts[k % cts.len()];
        sc.label_body(apitap_labels::Direction::Request, Some(ct), &b[..cut]);
        sc.label_body(apitap_labels::Direction::Response, Some(ct), &b);
        sc.label_body(apitap_labels::Direction::Response, None, &b[cut..]);
    }
}
