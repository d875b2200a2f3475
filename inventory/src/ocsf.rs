//! Inventory change events as OCSF findings (R-INV-3, R-BUS-3).
//!
//! Each change-log entry is also written as one JSON line to the analyzer's alerts output, as
//! a minimal OCSF 1.3 *Application Security Posture Finding* (class 2007, category 2
//! Findings): `activity_id` 1 (Create) for a discovered endpoint, 2 (Update) for any other
//! change; the endpoint is the finding's resource; apitap's own change record is under
//! `unmapped.apitap`. The full OCSF alert mapping arrives with the alerting issue; this is the
//! minimal, documented subset (`docs/inventory.md`).

use serde_json::{Value, json};

use super::record::Change;

/// OCSF schema version the findings follow.
pub const OCSF_VERSION: &str = "1.3.0";

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
fn severity(c: &Change) -> (u8, &'static str) {
    let shadow = c.kind == "discovered"
        && matches!(
            c.detail["spec_status"].as_str(),
            Some("undocumented" | "undocumented_method" | "deprecated")
        );
    let revived = c.kind == "lifecycle" && c.detail["to"] == "revived";
    if c.kind == "sensitivity_changed" && c.detail["to"] == "high" {
        (3, "Medium")
    } else if shadow
        || revived
        || matches!(
            c.kind.as_str(),
            "auth_changed" | "sensitivity_changed" | "data_label_added"
        )
    {
        (2, "Low")
    } else {
        (1, "Informational")
    }
}

/// The OCSF finding of one change.
pub fn finding(c: &Change) -> Value {
    let (activity_id, activity) = if c.kind == "discovered" {
        (1, "Create")
    } else {
        (2, "Update")
    };
    let (severity_id, severity_name) = severity(c);
    let time_ms = c.at_unix_us / 1000;
    let uid = format!("{}-{}", c.endpoint_id, c.seq);
    let title = title(c);
    json!({
        "class_uid": 2007,
        "class_name": "Application Security Posture Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": activity_id,
        "activity_name": activity,
        "type_uid": 200_700 + activity_id,
        "severity_id": severity_id,
        "severity": severity_name,
        "status_id": 1,
        "status": "New",
        "time": time_ms,
        "message": title,
        "metadata": {
            "version": OCSF_VERSION,
            "uid": uid,
            "log_name": "apitap_inventory_changes",
            "product": {"name": "apitap", "vendor_name": "apitap", "feature": {"name": "inventory"}},
        },
        "finding_info": {
            "uid": uid,
            "title": title,
            "types": ["API Inventory Change", c.kind],
            "created_time": time_ms,
        },
        "application": {"name": c.key.service},
        "resources": [{
            "type": "API Endpoint",
            "uid": c.endpoint_id,
            "name": format!("{} {}", c.key.method, c.key.template),
            "group": {"name": c.key.service},
        }],
        "unmapped": {"apitap": {
            "seq": c.seq,
            "kind": c.kind,
            "service": c.key.service,
            "method": c.key.method,
            "template": c.key.template,
            "operation": c.key.operation,
            "detail": c.detail,
        }},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::EndpointKey;

    #[test]
    fn discovered_shadow_endpoint_is_a_low_create_finding() {
        let c = Change {
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
        };
        let f = finding(&c);
        apitap_detect::ocsf::validate(&f).unwrap();
        assert_eq!(f["class_uid"], 2007);
        assert_eq!(f["type_uid"], 200_701);
        assert_eq!(f["severity_id"], 2);
        assert_eq!(f["time"], 1_700_000_000_000u64);
        assert_eq!(f["metadata"]["uid"], "ab-7");
        assert!(f["message"].as_str().unwrap().contains("/users/{user_id}"));
    }
}
