//! End-to-end behaviour of the public API: labels with locations (R-SEN-1), classification
//! (R-SEN-2), minimisation (R-CAP-8), no raw values in any output, and hostile input (R-CAP-7).
//! Weak points (R-SEN-3) moved to apitap-detect with their tests (`detect/tests/weak_points.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code
mod common;

use std::sync::Arc;

use apitap_labels::*;
use common::*;

fn find(l: &EventLabels, label: Label) -> Vec<&Finding> {
    l.findings.iter().filter(|f| f.label == label).collect()
}

fn luhn_fix(prefix: &str) -> String {
    for d in 0..10 {
        let s = format!("{prefix}{d}");
        if validate::luhn(s.as_bytes()) {
            return s;
        }
    }
    unreachable!()
}

#[test]
fn card_constant_is_valid() {
    assert!(validate::luhn(CARD.as_bytes()), "{}", luhn_fix(&CARD[..18]));
}

#[test]
fn labels_carry_locations_in_every_part() {
    let mut sc = scanner();
    let body = format!(
        r#"{{"data":{{"list":[{{"idCard":"{ID}","mobile":"{MOBILE}"}},{{"idCard":"{ID}","mobile":"+86 138 1234 5678"}}]}}}}"#
    );
    let ev = event(
        "GET",
        &format!("/api/users/{MOBILE}"),
        Some("email=alice%40example.com&page=1"),
        &[
            ("Authorization", "Bearer abcdefghijklmnopqrstuvwxyz012345"),
            ("Cookie", "JSESSIONID=0123456789ABCDEF; lang=zh"),
        ],
        b"",
        Some((
            200,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )),
    );
    let l = sc.label_event(&ev);
    let ids = find(&l, Label::PrcId);
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].location.path, "$.data.list[*].idCard");
    assert_eq!(ids[0].location.part, Part::JsonPath);
    assert_eq!(ids[0].location.direction, Direction::Response);
    assert_eq!(ids[0].count, 2, "records");
    assert_eq!(ids[0].hashes.len(), 1, "same value twice: one hash");
    assert_eq!(ids[0].masked_sample, "11**************2X");
    let mobiles = find(&l, Label::Mobile);
    assert!(
        mobiles
            .iter()
            .any(|f| f.location.part == Part::PathSegment && f.location.path == "[2]")
    );
    let m = mobiles
        .iter()
        .find(|f| f.location.part == Part::JsonPath)
        .unwrap();
    assert_eq!(m.count, 2);
    assert_eq!(m.hashes.len(), 1, "+86 form hashes like the plain form");
    assert!(
        find(&l, Label::Email)
            .iter()
            .any(|f| f.location.part == Part::QueryParam && f.location.path == "email")
    );
    assert!(
        find(&l, Label::BearerToken)
            .iter()
            .any(|f| f.location.path == "authorization")
    );
    assert!(
        find(&l, Label::SessionId)
            .iter()
            .any(|f| f.location.part == Part::Cookie && f.location.path == "JSESSIONID")
    );
    assert!(l.auth.contains(&AuthScheme::Bearer) && l.auth.contains(&AuthScheme::SessionCookie));
    assert_eq!(l.response.as_ref().unwrap().sensitive_records, 2);
    assert_eq!(l.query_params, vec!["email", "page"]);
    // Trace-back: an analyst hashes the leaked value the same way.
    let key = HashKey::from_secret(b"test");
    assert_eq!(
        ids[0].hashes[0],
        key.hash_value(Label::PrcId, ID.as_bytes())
    );
}

#[test]
fn form_xml_multipart_csv_and_text_bodies() {
    let mut sc = scanner();
    let f = sc.label_body(
        Direction::Request,
        Some("application/x-www-form-urlencoded"),
        format!("name=%E5%BC%A0%E4%B8%89&sfzh={ID}&pwd=secret1").as_bytes(),
    );
    assert!(f.iter().any(|x| x.label == Label::PrcId
        && x.location.part == Part::FormField
        && x.location.path == "sfzh"));
    assert!(
        f.iter()
            .any(|x| x.label == Label::PersonName && x.masked_sample == "张*")
    );
    assert!(
        f.iter()
            .any(|x| x.label == Label::Password && x.masked_sample == "******")
    );

    let xml = format!(
        r#"<?xml version="1.0"?><soap:Envelope xmlns:soap="x"><soap:Body><user id="7"><mobile>{MOBILE}</mobile><card no="{CARD}"/></user></soap:Body></soap:Envelope>"#
    );
    let f = sc.label_body(Direction::Response, Some("text/xml"), xml.as_bytes());
    assert!(
        f.iter()
            .any(|x| x.label == Label::Mobile && x.location.path == "/Envelope/Body/user/mobile")
    );
    assert!(
        f.iter().any(
            |x| x.label == Label::BankCard && x.location.path == "/Envelope/Body/user/card/@no"
        )
    );

    let mp = format!(
        "--b1\r\nContent-Disposition: form-data; name=\"meta\"\r\nContent-Type: application/json\r\n\r\n{{\"idNo\":\"{ID}\"}}\r\n--b1\r\nContent-Disposition: form-data; name=\"phone\"\r\n\r\n{MOBILE}\r\n--b1--\r\n"
    );
    let f = sc.label_body(
        Direction::Request,
        Some("multipart/form-data; boundary=b1"),
        mp.as_bytes(),
    );
    assert!(f.iter().any(|x| x.label == Label::PrcId
        && x.location.part == Part::MultipartPart
        && x.location.path == "meta$.idNo"));
    assert!(
        f.iter()
            .any(|x| x.label == Label::Mobile && x.location.path == "phone")
    );

    let csv = format!("姓名,身份证号,手机号\n张三,{ID},{MOBILE}\n李四,{ID},{MOBILE}\n");
    let f = sc.label_body(Direction::Response, Some("text/csv"), csv.as_bytes());
    assert!(
        f.iter()
            .any(|x| x.label == Label::PrcId && x.location.part == Part::CsvColumn && x.count == 2)
    );

    let text = format!("客户身份证号码{ID}，手机{MOBILE}，卡号 6222 0212 3456 7890 128");
    let f = sc.label_body(Direction::Response, Some("text/plain"), text.as_bytes());
    for l in [Label::PrcId, Label::Mobile, Label::BankCard] {
        assert!(
            f.iter()
                .any(|x| x.label == l && x.location.part == Part::Text),
            "{l}"
        );
    }
}

#[test]
fn validation_rejects_lookalikes() {
    let mut sc = scanner();
    let body = r#"{"orderNo":"20240615123456789012","ts":1717171717123,"idCard":"110105194913310021","n":"4111111111111112","v":"1.2.3.4","phone":"14012345678","imei":"356938035643809"}"#;
    let f = sc.label_body(
        Direction::Response,
        Some("application/json"),
        body.as_bytes(),
    );
    assert!(f.is_empty(), "{f:?}");
    // A Luhn-valid Visa number without card context is not reported; with context it is.
    let f = sc.label_body(
        Direction::Response,
        Some("application/json"),
        br#"{"ref":"4111111111111111"}"#,
    );
    assert!(f.is_empty());
    let f = sc.label_body(
        Direction::Response,
        Some("application/json"),
        br#"{"cardNo":"4111111111111111"}"#,
    );
    assert_eq!(f[0].label, Label::CreditCard);
    // 15-digit legacy IDs need context.
    let f = sc.label_body(
        Direction::Response,
        Some("application/json"),
        br#"{"x":"110105491231002","idCard":"110105491231002"}"#,
    );
    assert_eq!(f.len(), 1);
    assert!(f[0].notes.contains(Notes::LEGACY_ID15));
    // JSON numbers with a sign, fraction or exponent are quantities (schemathesis fills
    // json-server with such values): `-17179869184` is not a mobile, whatever the digits.
    let f = sc.label_body(
        Direction::Response,
        Some("application/json"),
        br#"{"x":[-17179869184, 1.3812345678e10, 13812345678.0], "y": -13812345678}"#,
    );
    assert!(f.is_empty(), "{f:?}");
    let f = sc.label_body(
        Direction::Response,
        Some("application/json"),
        br#"{"mobile":13812345678}"#,
    );
    assert_eq!(f[0].label, Label::Mobile, "a plain integer still is");
}

#[test]
fn credentials_and_secrets() {
    let mut sc = scanner();
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    };
    let none_jwt = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(r#"{"sub":"1"}"#)
    );
    let hs_jwt = format!(
        "{}.{}.c2lnbmF0dXJl",
        b64(r#"{"alg":"HS256"}"#),
        b64(r#"{"sub":"1","exp":1}"#)
    );
    let body = format!(
        r#"{{"access_token":"{none_jwt}","id_token":"{hs_jwt}","aws":"AKIAIOSFODNN7EXAMPLE","smsCode":"123456","cvv2":"123","key":"-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----","登录密码":"hunter2","notJwt":"eyJzdWIiOiIxIn0.e30.x"}}"#
    );
    let f = sc.label_body(
        Direction::Response,
        Some("application/json"),
        body.as_bytes(),
    );
    let jwts: Vec<_> = f.iter().filter(|x| x.label == Label::Jwt).collect();
    assert_eq!(jwts.len(), 2, "header without alg is not a JWT: {f:?}");
    let none = jwts
        .iter()
        .find(|x| x.location.path == "$.access_token")
        .unwrap();
    assert!(none.notes.contains(Notes::JWT_ALG_NONE) && none.notes.contains(Notes::JWT_NO_EXP));
    let hs = jwts
        .iter()
        .find(|x| x.location.path == "$.id_token")
        .unwrap();
    assert!(!hs.notes.contains(Notes::JWT_NO_EXP));
    for l in [
        Label::AwsAccessKey,
        Label::OtpCode,
        Label::CardCvv,
        Label::PrivateKey,
        Label::Password,
    ] {
        assert!(f.iter().any(|x| x.label == l), "{l}");
    }
    // Secrets carry no hashes.
    assert!(
        f.iter()
            .filter(|x| matches!(x.label, Label::Password | Label::OtpCode | Label::CardCvv))
            .all(|x| x.hashes.is_empty())
    );
}

#[test]
fn masked_values_are_recognised_with_kept_positions() {
    let mut sc = scanner();
    let body = r#"{"mobile":"138****5678","idCard":"110101********1234","name":"张*","card":"6222 **** **** 1234"}"#;
    let f = sc.label_body(
        Direction::Response,
        Some("application/json"),
        body.as_bytes(),
    );
    let get = |l| {
        f.iter()
            .find(|x| x.label == l)
            .unwrap_or_else(|| panic!("{l:?} in {f:?}"))
    };
    assert_eq!(get(Label::Mobile).mask.unwrap().pattern(), "KKK****KKKK");
    assert_eq!(
        get(Label::PrcId).mask.unwrap().kept_ranges(),
        vec![[0, 6], [14, 18]]
    );
    assert_eq!(get(Label::PersonName).mask.unwrap().pattern(), "K*");
    assert_eq!(get(Label::BankCard).mask.unwrap().len, 16);
}

#[test]
fn function_classes() {
    let mut sc = scanner();
    let cases: Vec<(apitap_schema::ApiEvent, FunctionClass)> = vec![
        (event("POST", "/api/v1/user/login", None, &[], b"", None), FunctionClass::Login),
        (event("POST", "/auth/denglu", None, &[], b"", None), FunctionClass::Login),
        (event("POST", "/api/session", None, &[("Content-Type", "application/json")], br#"{"pwd":"x1234567"}"#, None), FunctionClass::Login),
        (event("POST", "/api/logout", None, &[], b"", None), FunctionClass::Logout),
        (event("POST", "/api/user/register", None, &[], b"", None), FunctionClass::Registration),
        (event("POST", "/api/sms/sendSmsCode", None, &[], b"", None), FunctionClass::SmsSend),
        (event("POST", "/api/fasong/yzm", None, &[], b"", None), FunctionClass::SmsSend),
        (event("POST", "/api/sms/verifyCode", None, &[], b"", None), FunctionClass::SmsVerify),
        (event("POST", "/api/%E9%87%8D%E7%BD%AE%E5%AF%86%E7%A0%81", None, &[], b"", None), FunctionClass::PasswordReset),
        (event("GET", "/api/orders/export", None, &[], b"", None), FunctionClass::Export),
        (event("GET", "/api/report", None, &[], b"", Some((200, &[("Content-Type", "text/csv")], b"a,b\n1,2\n"))), FunctionClass::Export),
        (event("POST", "/api/files", None, &[("Content-Type", "multipart/form-data; boundary=x")], b"--x\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.png\"\r\n\r\nPNG\r\n--x--", None), FunctionClass::FileUpload),
        (event("GET", "/api/files/xiazai", None, &[], b"", None), FunctionClass::FileDownload),
        (event("GET", "/api/users", Some("page=2&pageSize=20"), &[], b"", None), FunctionClass::SearchList),
        (event("GET", "/api/users/1024", None, &[], b"", None), FunctionClass::QueryById),
        (event("DELETE", "/api/users/1024", None, &[], b"", None), FunctionClass::Delete),
        (event("PUT", "/api/users/1024", None, &[], b"", None), FunctionClass::Update),
        (event("POST", "/api/users", None, &[], b"", None), FunctionClass::Create),
        (event("GET", "/health", None, &[], b"", None), FunctionClass::Other),
    ];
    for (ev, want) in cases {
        let l = sc.label_event(&ev);
        assert_eq!(
            function_class(&ev, &l),
            want,
            "{} {}",
            ev.request.method,
            ev.request.path
        );
    }
}

#[test]
fn sensitivity_levels() {
    let mut sc = scanner();
    let lvl = |sc: &mut Scanner, body: &str| {
        let (s, h, b) = ok_json(body);
        let ev = event(
            "GET",
            "/x",
            None,
            &[("Authorization", "Bearer abcdefghijklmnopqrstuvwxyz")],
            b"",
            Some((s, h, &b)),
        );
        sensitivity(&sc.label_event(&ev))
    };
    assert_eq!(
        lvl(&mut sc, r#"{"ok":true}"#),
        Sensitivity::None,
        "auth header alone is not data"
    );
    assert_eq!(lvl(&mut sc, r#"{"gender":"男"}"#), Sensitivity::Low);
    assert_eq!(
        lvl(&mut sc, r#"{"mobile":"138****5678"}"#),
        Sensitivity::Low
    );
    assert_eq!(
        lvl(&mut sc, &format!(r#"{{"mobile":"{MOBILE}"}}"#)),
        Sensitivity::Medium
    );
    assert_eq!(
        lvl(
            &mut sc,
            &format!(r#"{{"mobile":"{MOBILE}","realName":"张三","idCard":"{ID}"}}"#)
        ),
        Sensitivity::High
    );
    assert_eq!(lvl(&mut sc, r#"{"password":"x"}"#), Sensitivity::High);
}

#[test]
fn minimise_sample_masks_and_truncates() {
    let mut sc = scanner();
    let ev = sensitive_event();
    let m = minimise(
        &mut sc,
        &ev,
        PayloadMode::Sample,
        &MinimiseOptions {
            sample_bytes: 256,
            attach_labels: true,
        },
    );
    let json = serde_json::to_string(&m).unwrap();
    assert_no_raw(&json);
    assert!(json.contains("\"payload\":\"sample\""));
    let resp = &m.event.response.as_ref().unwrap().body;
    assert!(resp.truncated && resp.captured_bytes <= 256);
    assert_eq!(
        resp.length_bytes,
        ev.response.as_ref().unwrap().body.length_bytes
    );
    let body = m.event.request.body.bytes().unwrap();
    let body = String::from_utf8(body).unwrap();
    assert!(body.contains("138****5678"), "{body}");
    assert!(
        serde_json::from_str::<serde_json::Value>(&body).is_ok(),
        "masking keeps JSON valid: {body}"
    );
    assert!(m.event.request.path.contains("138****5678"));
    assert!(m.event.request.query.as_deref().unwrap().contains("page=1"));
    let auth = &m
        .event
        .request
        .headers
        .iter()
        .find(|h| h.name == "Authorization")
        .unwrap()
        .value;
    assert_eq!(auth, "Bearer ******");
    let ck = &m
        .event
        .request
        .headers
        .iter()
        .find(|h| h.name == "Cookie")
        .unwrap()
        .value;
    assert_eq!(ck, "SESSION=******");
    // Readers of the event schema still read it.
    let back = apitap_schema::decode_event(json.as_bytes()).unwrap();
    assert_eq!(back.request.method, "POST");
}

#[test]
fn minimise_labels_ships_no_body() {
    let mut sc = scanner();
    let ev = sensitive_event();
    let m = minimise(
        &mut sc,
        &ev,
        PayloadMode::Labels,
        &MinimiseOptions::default(),
    );
    let json = serde_json::to_string(&m).unwrap();
    assert_no_raw(&json);
    assert!(m.event.request.body.data.is_empty() && m.event.request.body.captured_bytes == 0);
    assert!(m.event.response.as_ref().unwrap().body.data.is_empty());
    let l = m.labels.as_ref().unwrap();
    assert!(
        l.findings
            .iter()
            .any(|f| f.label == Label::PrcId && f.location.direction == Direction::Response)
    );
    assert!(l.request.fields.contains(&"$.password".to_owned()));
    let full = minimise(
        &mut sc,
        &ev,
        PayloadMode::Full,
        &MinimiseOptions {
            attach_labels: false,
            ..Default::default()
        },
    );
    assert_eq!(full.event, ev);
    assert!(full.labels.is_none());
}

#[test]
fn debug_and_display_never_show_raw_values() {
    let mut sc = scanner();
    let ev = sensitive_event();
    let l = sc.label_event(&ev);
    assert_labels_never_raw(&sc, &l);
}

#[test]
fn hostile_input_is_bounded_and_never_panics() {
    let cfg = LabelConfig {
        max_scan_bytes: 1 << 20,
        max_findings: 64,
        ..LabelConfig::default()
    };
    let lab = Labeller::new(HashKey::from_secret(b"t"), cfg).unwrap();
    let mut sc = Scanner::new(Arc::new(lab));
    let mut inputs: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", vec![b'['; 500_000]),
        ("application/json", "{\"a\":".repeat(100_000).into_bytes()),
        ("application/json", b"{\"a\":\"unterminated \\".to_vec()),
        (
            "application/json",
            b"{\"\\ud800\\u12\":\"\\uZZZZ\"}".to_vec(),
        ),
        ("text/xml", "<a>".repeat(100_000).into_bytes()),
        ("text/xml", b"<a b=\"unterminated><![CDATA[x".to_vec()),
        (
            "multipart/form-data; boundary=zz",
            b"--zz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n".to_vec(),
        ),
        (
            "application/x-www-form-urlencoded",
            "a=%&b=%zz&=&&".repeat(10_000).into_bytes(),
        ),
        ("text/plain", "1".repeat(300_000).into_bytes()),
        ("text/plain", "*".repeat(300_000).into_bytes()),
        (
            "text/plain",
            format!("{MOBILE} ").repeat(10_000).into_bytes(),
        ),
        ("text/csv", ",\n".repeat(100_000).into_bytes()),
    ];
    let mut seed = 7u64;
    let random: Vec<u8> = (0..200_000)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 56) as u8
        })
        .collect();
    for ct in [
        "application/json",
        "text/xml",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=a",
        "text/csv",
    ] {
        inputs.push((ct, random.clone()));
    }
    for (ct, body) in &inputs {
        let start = std::time::Instant::now();
        let f = sc.label_body(Direction::Request, Some(ct), body);
        assert!(f.len() <= 64);
        assert!(
            start.elapsed().as_secs() < 5,
            "{ct} took {:?}",
            start.elapsed()
        );
    }
    // A gzip bomb in a 1.0 event (compressed body as sent) is inflated only up to the cap.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &vec![b'a'; 50 << 20]).unwrap();
    let bomb = gz.finish().unwrap();
    let mut ev = event(
        "GET",
        "/",
        None,
        &[],
        b"",
        Some((
            200,
            &[("Content-Encoding", "gzip"), ("Content-Type", "text/plain")],
            &bomb,
        )),
    );
    ev.schema_version = "1.0".into();
    let l = sc.label_event(&ev);
    assert!(l.stats.scanned_bytes <= 4 << 20, "{:?}", l.stats);
}

/// Columnar JSON tables (Datasette, SQL-over-HTTP APIs, ClickHouse/Trino): values in rows are
/// located by column name, even when the names follow the rows (issue 15, R-SEN-1).
#[test]
fn columnar_tables_are_located_by_column() {
    let mut sc = scanner();
    let body = format!(
        r#"{{"database":"shop","rows":[["amy.reed","{ID}","{MOBILE}",3],["bo","{ID}","x",4]],"truncated":false,"columns":["handle","id_card","mobile","n"]}}"#
    );
    let f = sc.label_body(
        Direction::Response,
        Some("application/json"),
        body.as_bytes(),
    );
    let at = |l: Label| -> Vec<String> {
        f.iter()
            .filter(|x| x.label == l)
            .map(|x| x.location.path.clone())
            .collect()
    };
    assert_eq!(at(Label::PrcId), ["$.rows[*].id_card"], "{f:?}");
    assert_eq!(at(Label::Mobile), ["$.rows[*].mobile"], "{f:?}");
    assert_eq!(f.iter().find(|x| x.label == Label::PrcId).unwrap().count, 2);
    // Names as objects (ClickHouse `meta`), the table nested in an object.
    let body = format!(
        r#"{{"result":{{"meta":[{{"name":"phone","type":"String"}},{{"name":"k","type":"UInt8"}}],"data":[["{MOBILE}",1]]}}}}"#
    );
    let f = sc.label_body(
        Direction::Response,
        Some("application/json"),
        body.as_bytes(),
    );
    assert_eq!(f[0].location.path, "$.result.data[*].phone", "{f:?}");
    // Without names the position is kept; arrays of arrays of objects stay `[*]`.
    let body =
        format!(r#"{{"rows":[["{ID}"]],"pages":[[{{"idCard":"{ID}"}}],[{{"idCard":"{ID}"}}]]}}"#);
    let f = sc.label_body(
        Direction::Response,
        Some("application/json"),
        body.as_bytes(),
    );
    let mut paths: Vec<&str> = f.iter().map(|x| x.location.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["$.pages[*][*].idCard", "$.rows[*][0]"], "{f:?}");
}
