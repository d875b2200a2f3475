//! The inventory's templating tree under arbitrary hosts, methods and paths (issue 22):
//! never panics, and however many distinct paths arrive, the endpoints stay within the
//! configured bounds (services, endpoints per service, overflow endpoints).
#![no_main]
use std::sync::OnceLock;

use apitap_analyzer::inventory::{Inventory, InventoryConfig};
use apitap_schema::{ApiEvent, decode_event};
use libfuzzer_sys::fuzz_target;

fn template() -> &'static ApiEvent {
    static T: OnceLock<ApiEvent> = OnceLock::new();
    T.get_or_init(|| decode_event(include_bytes!("template.json").trim_ascii()).expect("template"))
}

fuzz_target!(|data: &[u8]| {
    let mut cfg = InventoryConfig::default();
    cfg.max_services = 4;
    cfg.templating.max_endpoints_per_service = 16;
    cfg.templating.max_nodes_per_service = 64;
    let mut inv = Inventory::new(cfg).expect("inventory");
    let mut ev = template().clone();
    // One request per line: `<host byte><method byte><path>`.
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        let [h, m, path @ ..] = line else { continue };
        ev.request.host = Some(format!("h{}.example", h % 8));
        ev.request.method = ["GET", "POST", "PUT", "DELETE", "PATCH", "BREW", "get", "X"][usize::from(m % 8)].into();
        ev.request.path = format!("/{}", String::from_utf8_lossy(path));
        ev.request_start_unix_us = 1_795_402_367_922_551 + i as u64;
        inv.observe(&ev);
    }
    let keys = inv.endpoint_keys();
    let mut services: Vec<&str> = keys.iter().map(|k| k.service.as_str()).collect();
    services.sort_unstable();
    services.dedup();
    // The bound plus the shared overflow service.
    assert!(services.len() <= 4 + 1, "{} services", services.len());
    for s in &services {
        let n = keys.iter().filter(|k| k.service == *s).count();
        // Endpoints per service, plus the per-service overflow endpoints (one per method class).
        assert!(n <= 16 + 16, "{n} endpoints in {s}");
    }
});
