//! Inventory discovery evaluated on real traffic (issue 5, R-INV-1): httpbin's whole spec
//! driven by generated requests, captured by the real sensor in the testbed
//! (`tests/data/httpbin/events.jsonl.gz`, recorded by `record_httpbin.rs`). Discovered
//! (method, template) pairs are scored against httpbin's `/spec.json` — without giving the
//! analyzer the spec — and against the Akto baseline on the same traffic.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use std::collections::HashMap;

use apitap_analyzer::inventory::spec::ServiceSpec;
use apitap_analyzer::inventory::{Inventory, InventoryConfig};
use common::akto::Akto;
use common::{evaluate, httpbin_events, httpbin_spec, requests, spec_operations};

fn discovered(inv: &Inventory) -> Vec<(String, String)> {
    inv.endpoint_keys()
        .into_iter()
        .filter(|k| k.template != "/{overflow}")
        .map(|k| (k.method, k.template))
        .collect()
}

#[test]
fn httpbin_discovery_f1_beats_target_and_akto() {
    for file in common::HTTPBIN_RECORDINGS {
        println!("recording {file}:");
        evaluate_recording(&common::httpbin_events_from(file));
    }
}

fn evaluate_recording(events: &[apitap_schema::ApiEvent]) {
    assert!(events.len() > 900, "fixture has {} events", events.len());
    let truth = spec_operations(&httpbin_spec());
    let reqs = requests(events);

    let mut inv = Inventory::new(InventoryConfig::default()).unwrap();
    for e in events {
        inv.observe(e);
    }
    let ours = evaluate(&discovered(&inv), &truth, &reqs);

    let mut akto = Akto::new();
    for (m, p) in &reqs {
        akto.observe(m, p);
    }
    let baseline = evaluate(&akto.endpoints(), &truth, &reqs);

    println!("apitap: {ours}");
    println!("  false positives: {:?}", ours.false_positives);
    println!("  missed: {:?}", ours.missed);
    println!("akto baseline: {baseline}");
    assert_eq!(ours.truth, 78, "every operation of the spec was exercised");
    assert!(ours.f1 >= 0.97, "F1 {:.4} below 0.97: {ours:?}", ours.f1);
    assert_eq!(ours.over_merges, 0, "{ours:?}");
    assert!(
        ours.f1 > baseline.f1,
        "apitap F1 {:.4} does not beat Akto's {:.4}",
        ours.f1,
        baseline.f1
    );
}

#[test]
fn httpbin_spec_first_matches_everything() {
    let events = httpbin_events();
    let spec_doc = httpbin_spec();
    let truth = spec_operations(&spec_doc);
    let service = {
        let inv = Inventory::new(InventoryConfig::default()).unwrap();
        inv.service_of(&events[0])
    };
    let mut specs = HashMap::new();
    specs.insert(service, ServiceSpec::from_document(&spec_doc).unwrap());
    let mut inv = Inventory::with_specs(InventoryConfig::default(), specs);
    for e in &events {
        inv.observe(e);
    }
    let m = evaluate(&discovered(&inv), &truth, &requests(&events));
    println!("apitap with the spec: {m}");
    assert_eq!((m.precision, m.recall), (1.0, 1.0), "{m:?}");
}
