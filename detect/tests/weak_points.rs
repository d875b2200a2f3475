//! Weak points (R-SEN-3) end to end over the public API: labelled events in, each weak point
//! once per endpoint with evidence, never a raw value, bounded memory. Moved with the tracker
//! from `labels/tests/behaviour.rs` (issue 13), assertions unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code
// The labels tests' event helper (one copy for both crates).
#[path = "../../labels/tests/common/mod.rs"]
mod common;

use apitap_detect::weak::*;
use apitap_labels::*;
use common::*;

fn observe(
    t: &mut WeakPointTracker,
    sc: &mut Scanner,
    ev: &apitap_schema::ApiEvent,
) -> Vec<WeakFinding> {
    let l = sc.label_event(ev);
    t.observe(&EndpointKey::from_event(ev), ev, &l)
}

#[test]
fn weak_points_are_raised_once_per_endpoint_with_evidence() {
    let mut sc = scanner();
    let mut t = WeakPointTracker::new(WeakPointConfig::default());
    // Cleartext login with a common password that succeeds.
    let (s, h, b) = ok_json(r#"{"token":"abcdefghijklmnopqrstuvwxyz"}"#);
    let login = event(
        "POST",
        "/api/login",
        None,
        &[("Content-Type", "application/json")],
        br#"{"username":"alice","password":"123456"}"#,
        Some((s, h, &b)),
    );
    let w = observe(&mut t, &mut sc, &login);
    let kinds: Vec<WeakKind> = w.iter().map(|x| x.kind).collect();
    assert!(kinds.contains(&WeakKind::CleartextPassword), "{kinds:?}");
    assert!(kinds.contains(&WeakKind::WeakPasswordAccepted), "{kinds:?}");
    assert!(
        observe(&mut t, &mut sc, &login).is_empty(),
        "deduplicated per endpoint"
    );
    // A failed login with a common password is not "accepted".
    let mut t2 = WeakPointTracker::new(WeakPointConfig::default());
    let failed = event(
        "POST",
        "/api/login",
        None,
        &[("Content-Type", "application/json")],
        br#"{"password":"123456"}"#,
        Some((401, &[], b"{}")),
    );
    assert!(
        !observe(&mut t2, &mut sc, &failed)
            .iter()
            .any(|x| x.kind == WeakKind::WeakPasswordAccepted)
    );

    // Login via GET with the password and a token in the URL.
    let get_login = event(
        "GET",
        "/login",
        Some("user=a&password=s3cretpass&access_token=abcdefghijklmnop1234"),
        &[],
        b"",
        Some((302, &[], b"")),
    );
    let kinds: Vec<WeakKind> = observe(&mut t, &mut sc, &get_login)
        .iter()
        .map(|x| x.kind)
        .collect();
    assert!(
        kinds.contains(&WeakKind::LoginViaGet) && kinds.contains(&WeakKind::CredentialInUrl),
        "{kinds:?}"
    );

    // A list API without auth returning 150 unmasked ID numbers and mobiles.
    let recs: Vec<String> = (0..150)
        .map(|_| format!(r#"{{"idCard":"{ID}","mobile":"{MOBILE}"}}"#))
        .collect();
    let body = format!(r#"{{"list":[{}]}}"#, recs.join(","));
    let (s, h, b) = ok_json(&body);
    let list = event(
        "GET",
        "/api/customers",
        Some("page=1"),
        &[],
        b"",
        Some((s, h, &b)),
    );
    let w = observe(&mut t, &mut sc, &list);
    let kinds: Vec<WeakKind> = w.iter().map(|x| x.kind).collect();
    for k in [
        WeakKind::SensitiveWithoutAuth,
        WeakKind::ExcessiveDataExposure,
        WeakKind::UnmaskedSensitiveResponse,
    ] {
        assert!(kinds.contains(&k), "{k:?} in {kinds:?}");
    }
    let ex = w
        .iter()
        .find(|x| x.kind == WeakKind::ExcessiveDataExposure)
        .unwrap();
    assert_eq!(ex.evidence.count, Some(150));
    let summary = t.endpoint(&EndpointKey::from_event(&list)).unwrap();
    assert_eq!(summary.function, Some(FunctionClass::SearchList));
    assert_eq!(summary.sensitivity, Some(Sensitivity::High));
}

#[test]
fn inconsistent_masking_reports_the_leaking_combination() {
    let mut sc = scanner();
    let mut t = WeakPointTracker::new(WeakPointConfig::default());
    let auth: &[(&str, &str)] = &[("Authorization", "Bearer abcdefghijklmnopqrstuvwxyz")];
    let (s, h, b) = ok_json(r#"{"mobile":"138****5678"}"#);
    let a = event("GET", "/api/profile", None, auth, b"", Some((s, h, &b)));
    assert!(
        observe(&mut t, &mut sc, &a)
            .iter()
            .all(|x| x.kind != WeakKind::InconsistentMasking)
    );
    // Same mask elsewhere: fine.
    let (s, h, b) = ok_json(r#"{"phone":"139****0000"}"#);
    let same = event("GET", "/api/orders/1", None, auth, b"", Some((s, h, &b)));
    assert!(
        observe(&mut t, &mut sc, &same)
            .iter()
            .all(|x| x.kind != WeakKind::InconsistentMasking)
    );
    // Keep first 7, last 2: together with 3+4 every digit is visible.
    let (s, h, b) = ok_json(r#"{"contactMobile":"1381234**78"}"#);
    let c = event("GET", "/api/contacts", None, auth, b"", Some((s, h, &b)));
    let w = observe(&mut t, &mut sc, &c);
    let im = w
        .iter()
        .find(|x| x.kind == WeakKind::InconsistentMasking)
        .expect("leak reported");
    assert_eq!(im.label, Some(Label::Mobile));
    assert_eq!(im.evidence.unknown_positions, Some(0));
    assert_eq!(im.evidence.other_endpoints[0].path, "/api/profile");
    assert_eq!(im.evidence.mask_shapes.len(), 2);
}

#[test]
fn debug_and_display_never_show_raw_values() {
    let mut sc = scanner();
    let ev = sensitive_event();
    let l = sc.label_event(&ev);
    let mut t = WeakPointTracker::new(WeakPointConfig::default());
    let w = t.observe(
        &EndpointKey::new("POST", "api.example.com", "/api/user/{id}/bind"),
        &ev,
        &l,
    );
    assert!(!w.is_empty());
    assert_no_raw(&format!("{w:?}"));
    assert_no_raw(&serde_json::to_string(&w).unwrap());
    assert_no_raw(&format!("{t:?}"));
    assert_labels_never_raw(&sc, &l);
}

#[test]
fn weak_point_tracker_memory_is_bounded() {
    let mut sc = scanner();
    let mut t = WeakPointTracker::new(WeakPointConfig {
        max_endpoints: 10,
        ..Default::default()
    });
    for i in 0..50 {
        let ev = event(
            "GET",
            &format!("/p/{i}"),
            None,
            &[],
            b"",
            Some((200, &[], b"")),
        );
        let l = sc.label_event(&ev);
        t.observe(&EndpointKey::from_event(&ev), &ev, &l);
    }
    assert_eq!(t.stats().endpoints, 10);
    assert_eq!(t.stats().events_untracked, 40);
}

/// Loading a login page is not a login via GET (Django's admin: `GET /admin/login/` and its
/// stylesheet); a GET carrying the password in the URL is.
#[test]
fn login_page_loads_are_not_login_via_get() {
    let mut sc = scanner();
    let mut t = WeakPointTracker::new(WeakPointConfig::default());
    let page = event(
        "GET",
        "/admin/login/",
        Some("next=/admin/"),
        &[],
        b"",
        Some((
            200,
            &[("Content-Type", "text/html")],
            b"<form><input type=password name=password></form>",
        )),
    );
    let css = event(
        "GET",
        "/static/admin/css/login.css",
        None,
        &[],
        b"",
        Some((200, &[("Content-Type", "text/css")], b"body{}")),
    );
    for ev in [&page, &css] {
        let w = observe(&mut t, &mut sc, ev);
        assert!(!w.iter().any(|x| x.kind == WeakKind::LoginViaGet), "{w:?}");
    }
    let creds = event(
        "GET",
        "/admin/login/",
        Some("username=bob&password=River2024!"),
        &[],
        b"",
        Some((302, &[], b"")),
    );
    let w = observe(&mut t, &mut sc, &creds);
    assert!(w.iter().any(|x| x.kind == WeakKind::LoginViaGet), "{w:?}");
}
