//! Store behaviour every backend must have, run against SQLite and PostgreSQL.

use apitap_analyzer::inventory::record::{
    Change, ChangeFilter, EndpointFilter, EndpointKey, EndpointRecord, Lifecycle,
};
use apitap_analyzer::inventory::spec::SpecStatus;
use apitap_analyzer::inventory::store::{ServiceCounts, Store, StoreError, latest_version};

fn record(service: &str, template: &str, hits: u64) -> EndpointRecord {
    let key = EndpointKey {
        service: service.into(),
        method: "GET".into(),
        template: template.into(),
        operation: String::new(),
    };
    let mut r = EndpointRecord::new(key, SpecStatus::NoSpec, 10);
    r.data.hits = hits;
    r.data.first_seen_unix_us = 10;
    r.data.last_seen_unix_us = 20;
    r.data.auth.insert("bearer_jwt".into(), hits);
    r
}

/// Round trip, filters (data label and sensitivity too), service counts, deletion,
/// lifecycle query, change log.
pub fn exercise(store: &mut dyn Store) {
    assert_eq!(store.schema_version().unwrap(), latest_version());
    let mut a = record("api", "/users/{user_id}", 3);
    a.data_labels = vec!["mobile".into(), "prc_id".into()];
    a.sensitivity = "high".into();
    let mut b = record("api", "/orders_100%", 1);
    b.lifecycle = Lifecycle::Inactive;
    b.spec_status = SpecStatus::Undocumented;
    b.data_labels = vec!["email".into()];
    b.sensitivity = "medium".into();
    let c = record("other", "/x", 1);
    store
        .transaction(&mut |tx| {
            for r in [&a, &b, &c] {
                tx.put(r)?;
            }
            tx.add_change(&Change {
                seq: 0,
                at_unix_us: 10,
                endpoint_id: a.id.clone(),
                key: a.key.clone(),
                kind: "discovered".into(),
                detail: serde_json::json!({"lifecycle": "new"}),
            })?;
            Ok(())
        })
        .unwrap();
    assert_eq!(store.endpoint(&a.id).unwrap().unwrap(), a);
    let all = store.endpoints(&EndpointFilter::default()).unwrap();
    assert_eq!(all.len(), 3);
    let mut f = |filter: EndpointFilter| store_ids(store, &filter);
    assert_eq!(
        f(EndpointFilter {
            service: Some("api".into()),
            ..Default::default()
        })
        .len(),
        2
    );
    assert_eq!(
        f(EndpointFilter {
            template: Some("100%".into()),
            ..Default::default()
        }),
        vec![b.id.clone()]
    );
    assert_eq!(
        f(EndpointFilter {
            template: Some("_".into()),
            ..Default::default()
        }),
        vec![b.id.clone(), a.id.clone()]
    );
    assert_eq!(
        f(EndpointFilter {
            auth: Some("bearer_jwt".into()),
            lifecycle: Some("new".into()),
            ..Default::default()
        })
        .len(),
        2
    );
    assert_eq!(
        f(EndpointFilter {
            limit: Some(1),
            offset: Some(1),
            ..Default::default()
        })
        .len(),
        1
    );
    assert_eq!(
        f(EndpointFilter {
            label: Some("prc_id".into()),
            ..Default::default()
        }),
        vec![a.id.clone()]
    );
    assert!(
        f(EndpointFilter {
            label: Some("prc".into()),
            ..Default::default()
        })
        .is_empty(),
        "labels match whole names"
    );
    assert_eq!(
        f(EndpointFilter {
            min_sensitivity: Some("medium".into()),
            ..Default::default()
        }),
        vec![b.id.clone(), a.id.clone()]
    );
    assert_eq!(
        f(EndpointFilter {
            sensitivity: Some("unknown".into()),
            service: Some("other".into()),
            ..Default::default()
        }),
        vec![c.id.clone()]
    );
    assert!(
        f(EndpointFilter {
            min_sensitivity: Some("urgent".into()),
            ..Default::default()
        })
        .is_empty()
    );
    // Service counts come from the database, paged by name.
    let counts = store.services(10, 0).unwrap();
    let row = |s: &str, n, hits, shadow| ServiceCounts {
        service: s.into(),
        endpoints: n,
        hits,
        shadow,
        zombie_candidates: 0,
    };
    assert_eq!(counts, vec![row("api", 2, 4, 1), row("other", 1, 1, 0)]);
    assert_eq!(store.services(1, 1).unwrap(), vec![row("other", 1, 1, 0)]);
    // Lifecycle query: `a` and `c` (new, last seen 20) are due once 20 is in the past.
    store
        .transaction(&mut |tx| {
            let due = tx.due(21, 0)?;
            assert_eq!(due.len(), 2);
            assert!(tx.due(20, 0)?.is_empty());
            tx.delete(&c.id)?;
            Ok(())
        })
        .unwrap();
    assert!(store.endpoint(&c.id).unwrap().is_none());
    // A failed transaction leaves nothing behind.
    let failed = store.transaction(&mut |tx| {
        tx.delete(&a.id)?;
        Err(StoreError::Url("abort".into()))
    });
    assert!(failed.is_err());
    assert!(store.endpoint(&a.id).unwrap().is_some());
    let changes = store.changes(&ChangeFilter::default()).unwrap();
    assert_eq!(changes.len(), 1);
    assert!(changes[0].seq > 0);
    assert_eq!(changes[0].kind, "discovered");
    assert_eq!(changes[0].key, a.key);
    assert!(
        store
            .changes(&ChangeFilter {
                after_seq: Some(changes[0].seq),
                ..Default::default()
            })
            .unwrap()
            .is_empty()
    );
}

fn store_ids(store: &mut dyn Store, filter: &EndpointFilter) -> Vec<String> {
    store
        .endpoints(filter)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect()
}
