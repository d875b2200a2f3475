//! Inventory change events as alerts (R-INV-3, R-BUS-3).
//!
//! Each change-log entry is also written as one JSON line to the analyzer's alerts output, as
//! a minimal OCSF 1.3 *Application Security Posture Finding* (class 2007, category 2
//! Findings): `activity_id` 1 (Create) for a discovered endpoint, 2 (Update) for any other
//! change; the endpoint is the finding's resource; apitap's own change record is under
//! `unmapped.apitap`. [`alert`] makes the typed [`Alert`]; [`apitap_detect::ocsf::render`]
//! renders it (`docs/inventory.md`).

use apitap_detect::Severity;
use apitap_detect::alert::{Alert, ApiEndpoint, FindingClass, Source};
use apitap_detect::finding::Activity;
use serde_json::json;

use super::record::Change;

fn title(c: &Change) -> String {
    let ep = format!("{} {} {}", c.key.method, c.key.service, c.key.template);
    let ep = if c.key.operation.is_empty() {
        ep
    } else {
        format!("{ep} ({})", c.key.operation)
    };
    match c.kind.as_str() {
        "discovered" => format!("New API endpoint: {ep}"),
        "lifecycle" => format!(
            "API endpoint {} → {}: {ep}",
            c.detail["from"].as_str().unwrap_or("?"),
            c.detail["to"].as_str().unwrap_or("?")
        ),
        "merged" => format!("API endpoints merged into {ep}"),
        "parameter_added" => format!("Parameter added to {ep}"),
        "parameter_removed" => format!("Parameter removed from {ep}"),
        "auth_changed" => format!("Auth scheme changed on {ep}"),
        "status_added" => format!("New response status on {ep}"),
        "content_type_added" => format!("New content type on {ep}"),
        "sensitivity_changed" => format!(
            "API sensitivity {} → {}: {ep}",
            c.detail["from"].as_str().unwrap_or("?"),
            c.detail["to"].as_str().unwrap_or("?")
        ),
        "data_label_added" => format!("New sensitive data label on {ep}"),
        other => format!("API inventory change ({other}): {ep}"),
    }
}

/// Severity: informational, except undocumented (shadow) endpoints appearing, deprecated
/// (zombie) endpoints revived, auth changes, new data labels and sensitivity changes, which
/// are low (medium when sensitivity rises to high).
fn severity(c: &Change) -> Severity {
    let shadow = c.kind == "discovered"
        && matches!(
            c.detail["spec_status"].as_str(),
            Some("undocumented" | "undocumented_method" | "deprecated")
        );
    let revived = c.kind == "lifecycle" && c.detail["to"] == "revived";
    if c.kind == "sensitivity_changed" && c.detail["to"] == "high" {
        Severity::Medium
    } else if shadow
        || revived
        || matches!(
            c.kind.as_str(),
            "auth_changed" | "sensitivity_changed" | "data_label_added"
        )
    {
        Severity::Low
    } else {
        Severity::Informational
    }
}

/// The alert of one change: an Application Security Posture Finding (OCSF class 2007) keyed
/// `{endpoint_id}-{seq}`.
pub fn alert(c: &Change) -> Alert {
    let activity = if c.kind == "discovered" {
        Activity::Create
    } else {
        Activity::Update
    };
    Alert {
        class: FindingClass::Posture,
        source: Source::Inventory,
        activity,
        severity: severity(c),
        confidence: None,
        is_alert: None,
        uid: format!("{}-{}", c.endpoint_id, c.seq),
        seq: None,
        kind: c.kind.clone(),
        title: title(c),
        desc: None,
        types: vec!["API Inventory Change".to_owned(), c.kind.clone()],
        labels: Vec::new(),
        time_us: c.at_unix_us,
        created_us: c.at_unix_us,
        modified_us: None,
        span: None,
        analytic: None,
        attacks: Vec::new(),
        endpoint: ApiEndpoint {
            uid: Some(c.endpoint_id.clone()),
            service: c.key.service.clone(),
            method: c.key.method.clone(),
            template: c.key.template.clone(),
        },
        src_ip: None,
        user: None,
        evidences: Vec::new(),
        apitap: json!({
            "seq": c.seq,
            "kind": c.kind,
            "service": c.key.service,
            "method": c.key.method,
            "template": c.key.template,
            "operation": c.key.operation,
            "detail": c.detail,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::EndpointKey;

    fn shadow_endpoint() -> Change {
        Change {
            seq: 7,
            at_unix_us: 1_700_000_000_000_000,
            endpoint_id: "ab".into(),
            key: EndpointKey {
                service: "api".into(),
                method: "GET".into(),
                template: "/users/{user_id}".into(),
                operation: String::new(),
            },
            kind: "discovered".into(),
            detail: json!({"spec_status": "undocumented"}),
        }
    }

    #[test]
    fn discovered_shadow_endpoint_is_a_low_create_finding() {
        let c = shadow_endpoint();
        let f = apitap_detect::ocsf::render(&alert(&c));
        apitap_detect::ocsf::validate(&f).unwrap();
        assert_eq!(f["class_uid"], 2007);
        assert_eq!(f["type_uid"], 200_701);
        assert_eq!(f["severity_id"], 2);
        assert_eq!(f["time"], 1_700_000_000_000u64);
        assert_eq!(f["metadata"]["uid"], "ab-7");
        assert!(f["message"].as_str().unwrap().contains("/users/{user_id}"));
    }

    /// The OCSF and ECS documents, byte for byte, as apitap wrote them before every alert
    /// became one typed `Alert` (issue 13).
    #[test]
    fn change_documents_are_unchanged() {
        let a = alert(&shadow_endpoint());
        assert_eq!(a.uid, "ab-7");
        assert_eq!(
            apitap_detect::ocsf::render(&a).to_string(),
            r#"{"activity_id":1,"activity_name":"Create","application":{"name":"api"},"category_name":"Findings","category_uid":2,"class_name":"Application Security Posture Finding","class_uid":2007,"finding_info":{"created_time":1700000000000,"title":"New API endpoint: GET api /users/{user_id}","types":["API Inventory Change","discovered"],"uid":"ab-7"},"message":"New API endpoint: GET api /users/{user_id}","metadata":{"log_name":"apitap_inventory_changes","product":{"feature":{"name":"inventory"},"name":"apitap","vendor_name":"apitap"},"uid":"ab-7","version":"1.3.0"},"resources":[{"group":{"name":"api"},"name":"GET /users/{user_id}","type":"API Endpoint","uid":"ab"}],"severity":"Low","severity_id":2,"status":"New","status_id":1,"time":1700000000000,"type_uid":200701,"unmapped":{"apitap":{"detail":{"spec_status":"undocumented"},"kind":"discovered","method":"GET","operation":"","seq":7,"service":"api","template":"/users/{user_id}"}}}"#
        );
        assert_eq!(
            apitap_detect::ecs::render(&a).to_string(),
            r#"{"@timestamp":"2023-11-14T22:13:20.000Z","apitap":{"detail":{"spec_status":"undocumented"},"kind":"discovered","method":"GET","operation":"","seq":7,"service":"api","template":"/users/{user_id}"},"ecs":{"version":"8.11.0"},"event":{"action":"create","category":["configuration","web"],"created":"2023-11-14T22:13:20.000Z","dataset":"apitap.posture","id":"ab-7","kind":"alert","module":"apitap","severity":2,"type":["info"]},"http":{"request":{"method":"GET"}},"labels":{"finding_uid":"ab-7","ocsf_class_uid":2007},"message":"New API endpoint: GET api /users/{user_id}","observer":{"product":"apitap","type":"api-security","vendor":"apitap"},"rule":{"description":"New API endpoint: GET api /users/{user_id}","id":"discovered","name":"discovered","ruleset":"apitap"},"tags":["API Inventory Change","discovered"],"url":{"domain":"api","path":"/users/{user_id}"}}"#
        );
    }
}
