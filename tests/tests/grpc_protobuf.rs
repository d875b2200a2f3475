//! gRPC protobuf bodies through the whole pipeline (issue 17, R-INV-2, R-SEN-1): the real
//! grpcio capture `tests/fixtures/h2/kyc.pcap` (a Python grpcio KYC client and server on
//! loopback, Faker zh_CN people: PRC resident ids, mobiles, names, e-mail addresses; see
//! `capture_kyc.sh`) replayed by the sensor binary, then processed by the analyzer binary
//! with and without the descriptor set `kyc.pb` (`protoc --include_imports
//! --descriptor_set_out`). Asserted from the inventory the analyzer stored: the calls the
//! client reports, protobuf shapes (number paths, wire kinds, nested messages, repeated
//! fields; names and declared types with the descriptor set, numbers without), labels on
//! the right field paths, the OpenAPI export's gRPC rendering, no value stored, and a bad
//! descriptor file refused with the field's name.
//!
//! gRPC-Web (`grpcweb.pcap`, sonora 0.2.3 under hypercorn, `capture_grpcweb.sh`): the calls
//! in binary and text, over HTTP/1.1 and h2c, as the client logged them; the text calls alone
//! give the inventory the same protobuf shapes and labels as protobuf on the wire would.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::path::Path;
use std::process::Command;

use apitap_tests::{output_of, read_events, workspace_bin, workspace_root};
use serde_json::Value;

fn ok(cmd: &mut Command) -> Vec<u8> {
    output_of(cmd).unwrap()
}

/// `apitap-analyzer inventory <args…> --store <store>`, its JSON output.
fn inventory_json(store: &str, args: &[&str]) -> Value {
    let analyzer = workspace_bin("apitap-analyzer").unwrap();
    serde_json::from_slice(&ok(Command::new(analyzer)
        .arg("inventory")
        .args(args)
        .args(["--store", store])))
    .unwrap()
}

fn fixture(name: &str) -> std::path::PathBuf {
    workspace_root().join("tests/fixtures/h2").join(name)
}

/// The sensor binary's `replay` of the fixture `pcap` (capturing `port`) into a fresh
/// directory named after `tag`: (the directory, its events file).
fn replay(tag: &str, pcap: &str, port: u16) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sensor_cfg = dir.join("sensor.toml");
    std::fs::write(&sensor_cfg, format!("[capture]\nports = [{port}]\n")).unwrap();
    let events = dir.join("events.jsonl");
    let _ = std::fs::remove_file(&events);
    ok(Command::new(workspace_bin("apitap-sensor").unwrap())
        .arg("replay")
        .arg("--config")
        .arg(&sensor_cfg)
        .arg("--events-file")
        .arg(&events)
        .arg(fixture(pcap)));
    (dir, events)
}

/// The analyzer's inventory of `events`: (list, `show` record per template, OpenAPI doc).
fn inventory(dir: &Path, events: &Path, descriptor: bool) -> (Value, Vec<(String, Value)>, Value) {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = dir.join("analyzer.toml");
    let labels = if descriptor {
        format!(
            "[labels]\nprotobuf_descriptor_sets = [{:?}]\n",
            fixture("kyc.pb")
        )
    } else {
        String::new()
    };
    std::fs::write(&cfg, format!("[input]\npath = \"-\"\n{labels}")).unwrap();
    let db = dir.join("inventory.db");
    let _ = std::fs::remove_file(&db);
    let store = format!("sqlite:{}", db.display());
    let analyzer = workspace_bin("apitap-analyzer").unwrap();
    ok(Command::new(&analyzer)
        .args(["process", "--input"])
        .arg(events)
        .args(["--store", &store, "--summary", "/dev/null", "--config"])
        .arg(&cfg));
    let list = inventory_json(&store, &["list", "--format", "json"]);
    let shown = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let id = r["id"].as_str().unwrap();
            let v = inventory_json(&store, &["show", id, "--format", "json"]);
            (r["template"].as_str().unwrap().to_owned(), v)
        })
        .collect();
    let openapi = inventory_json(&store, &["export", "--format", "openapi"]);
    (list, shown, openapi)
}

/// (label, direction, field) of an endpoint's data labels.
fn labels(list: &Value, template: &str) -> Vec<(String, String, String)> {
    let r = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["template"] == template)
        .unwrap_or_else(|| panic!("{template} in {list}"));
    let mut out: Vec<(String, String, String)> = r["data_labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["location"], "protobuf_field", "{d}");
            (
                d["label"].as_str().unwrap().to_owned(),
                d["direction"].as_str().unwrap().to_owned(),
                d["field"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

fn has(l: &[(String, String, String)], label: &str, dir: &str, field: &str) -> bool {
    l.iter()
        .any(|(a, b, c)| a == label && b == dir && c == field)
}

/// The protobuf body shape of `template` (`request`, or `response` status 200).
fn body<'v>(shown: &'v [(String, Value)], template: &str, dir: &str) -> &'v Value {
    let (_, v) = shown.iter().find(|(t, _)| t == template).unwrap();
    let data = &v["record"]["data"];
    let b = match dir {
        "request" => &data["request"]["bodies"]["protobuf"],
        _ => &data["responses"]["200"]["bodies"]["protobuf"],
    };
    assert!(b.is_object(), "{template} {dir}: {data}");
    &b["fields"]["fields"]
}

/// (number path, wire kinds, declared type, repeated) of one field.
fn proto(fields: &Value, path: &str) -> (String, Vec<String>, Option<String>, bool) {
    let p = &fields[path]["protobuf"];
    assert!(p.is_object(), "{path} in {fields}");
    (
        p["number_path"].as_str().unwrap().to_owned(),
        p["wire"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap().to_owned())
            .collect(),
        p["declared_type"].as_str().map(str::to_owned),
        p["repeated"].as_bool().unwrap_or(false),
    )
}

/// The PRC ids (18 characters) and mobiles (11 digits) the captured bodies carry.
fn sent_values(evs: &[apitap_schema::ApiEvent]) -> Vec<String> {
    let mut out = Vec::new();
    for e in evs {
        let bodies = [Some(&e.request.body), e.response.as_ref().map(|r| &r.body)];
        for b in bodies.into_iter().flatten() {
            let bytes = b.bytes().unwrap();
            let mut run = String::new();
            for &c in bytes.iter().chain(std::iter::once(&b' ')) {
                if c.is_ascii_digit() || (c == b'X' && run.len() == 17) {
                    run.push(c as char);
                    continue;
                }
                if run.len() == 18 || (run.len() == 11 && run.starts_with('1')) {
                    out.push(run.clone());
                }
                run.clear();
            }
        }
    }
    out
}

/// None of `values` is in `text`.
fn no_values(text: &str, values: &[String]) {
    for v in values {
        assert!(!text.contains(v.as_str()), "a sent value is stored");
    }
}

#[test]
fn grpc_bodies_give_shapes_and_labels_with_and_without_descriptors() {
    let (dir, events) = replay("apitap-grpc-proto", "kyc.pcap", 18083);
    // Every call the client reports (kyc.log), with its message counts.
    let evs = read_events(&events).unwrap();
    let log = std::fs::read_to_string(fixture("kyc.log")).unwrap();
    let reported: Vec<(String, u32)> = log
        .lines()
        .map(|l| {
            let method = l.split_whitespace().nth(2).unwrap().to_owned();
            let resp = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("resp_msgs="))
                .unwrap()
                .parse()
                .unwrap();
            (method, resp)
        })
        .collect();
    let seen: Vec<(String, u32)> = evs
        .iter()
        .map(|e| {
            let g = e.grpc.as_ref().unwrap();
            assert_eq!(g.service, "kyc.v1.Kyc");
            assert_eq!(g.status, Some(0));
            (g.method.clone(), g.response_messages)
        })
        .collect();
    assert_eq!(seen, reported);
    let values = sent_values(&evs);
    assert!(values.len() >= 20, "{} ids and mobiles sent", values.len());

    // With the descriptor set: names and declared types.
    let (list, shown, openapi) = inventory(&dir.join("named"), &events, true);
    let verify = "/kyc.v1.Kyc/Verify";
    let list_customers = "/kyc.v1.Kyc/ListCustomers";
    for r in list.as_array().unwrap() {
        assert_eq!(r["style"], "grpc", "{r}");
    }
    let req = body(&shown, verify, "request");
    let s = |v: &str| vec![v.to_owned()];
    let decl = |v: &str| Some(v.to_owned());
    assert_eq!(
        proto(req, "person"),
        (
            "1".into(),
            s("message"),
            decl("message kyc.v1.Person"),
            false
        )
    );
    assert_eq!(
        proto(req, "person.id_number"),
        ("1.2".into(), s("string"), decl("string"), false)
    );
    assert_eq!(
        proto(req, "person.address.city"),
        ("1.4.2".into(), s("string"), decl("string"), false)
    );
    assert_eq!(
        proto(req, "person.emails"),
        ("1.5".into(), s("string"), decl("string"), true)
    );
    assert_eq!(
        proto(req, "person.age"),
        ("1.6".into(), s("varint"), decl("int32"), false)
    );
    assert_eq!(req["person.age"]["seen"], 5, "every Verify call");
    let resp = body(&shown, verify, "response");
    assert_eq!(
        proto(resp, "ok"),
        ("1".into(), s("varint"), decl("bool"), false)
    );
    assert_eq!(
        proto(resp, "person.mobile"),
        ("3.3".into(), s("string"), decl("string"), false)
    );
    assert_eq!(
        proto(resp, "warnings"),
        ("4".into(), s("string"), decl("string"), true)
    );
    let stream = body(&shown, list_customers, "response");
    assert_eq!(
        proto(stream, "address"),
        (
            "4".into(),
            s("message"),
            decl("message kyc.v1.Address"),
            false
        )
    );
    assert_eq!(
        proto(stream, "emails"),
        ("5".into(), s("string"), decl("string"), true)
    );
    assert_eq!(stream["id_number"]["seen"], 5, "every streamed message");
    let l = labels(&list, verify);
    for dir in ["request", "response"] {
        assert!(has(&l, "prc_id", dir, "person.id_number"), "{l:?}");
        assert!(has(&l, "mobile", dir, "person.mobile"), "{l:?}");
        assert!(has(&l, "email", dir, "person.emails"), "{l:?}");
    }
    let l = labels(&list, list_customers);
    assert!(has(&l, "prc_id", "response", "id_number"), "{l:?}");
    assert!(has(&l, "mobile", "response", "mobile"), "{l:?}");
    // The OpenAPI export keeps the operation; the body is the gRPC media type with the
    // protobuf fields (no JSON Schema).
    let doc = if openapi["paths"].is_object() {
        &openapi
    } else {
        openapi.as_object().unwrap().values().next().unwrap()
    };
    let content = &doc["paths"][verify]["post"]["requestBody"]["content"]["application/grpc"];
    assert_eq!(
        content["x-apitap-protobuf"]["person.id_number"]["number"],
        "1.2"
    );
    assert!(content.get("schema").is_none(), "{content}");
    let text = format!("{list}{shown:?}{openapi}");
    no_values(&text, &values);

    // Without it: field numbers, the same wire facts, the labels at number paths.
    let (list, shown, _) = inventory(&dir.join("numbered"), &events, false);
    let req = body(&shown, verify, "request");
    assert_eq!(proto(req, "1"), ("1".into(), s("message"), None, false));
    assert_eq!(proto(req, "1.2"), ("1.2".into(), s("string"), None, false));
    assert_eq!(proto(req, "1.4"), ("1.4".into(), s("message"), None, false));
    assert_eq!(proto(req, "1.6"), ("1.6".into(), s("varint"), None, false));
    assert!(req.get("person.id_number").is_none());
    let stream = body(&shown, list_customers, "response");
    assert_eq!(proto(stream, "5"), ("5".into(), s("string"), None, true));
    let l = labels(&list, verify);
    assert!(has(&l, "prc_id", "request", "1.2"), "{l:?}");
    assert!(has(&l, "mobile", "request", "1.3"), "{l:?}");
    assert!(has(&l, "prc_id", "response", "3.2"), "{l:?}");
    let l = labels(&list, list_customers);
    assert!(has(&l, "prc_id", "response", "2"), "{l:?}");
    no_values(&format!("{list}{shown:?}"), &values);

    // A file that is not a descriptor set stops the analyzer, naming the field.
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        format!(
            "[input]\npath = \"-\"\n[labels]\nprotobuf_descriptor_sets = [{:?}]\n",
            fixture("kyc.proto")
        ),
    )
    .unwrap();
    let out = Command::new(workspace_bin("apitap-analyzer").unwrap())
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("labels.protobuf_descriptor_sets"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// gRPC-Web from sonora (issue 17): replayed, every call of `grpcweb.log` is one event with
/// its status and counts; the grpc-web-text calls alone (their kept bodies are base64) give
/// protobuf shapes and labels: Transfer's fields with the IBAN at `3`, Account's fields.
#[test]
fn grpc_web_text_bodies_give_the_protobuf_shapes_of_binary() {
    let (dir, events) = replay("apitap-grpc-web", "grpcweb.pcap", 18085);
    let mut evs = read_events(&events).unwrap();
    evs.sort_by_key(|e| e.request_start_unix_us);
    let log = std::fs::read_to_string(fixture("grpcweb.log")).unwrap();
    // "rpc unary GetAccount mode=text status=5 req_msgs=1 resp_msgs=0 message='…'"
    let reported: Vec<(String, bool, u32, u32)> = log
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let f = |k: &str| w.iter().find_map(|x| x.strip_prefix(k)).unwrap();
            (
                w[2].to_owned(),
                f("mode=").ends_with("text"),
                f("status=").parse().unwrap(),
                f("resp_msgs=").parse().unwrap(),
            )
        })
        .collect();
    let seen: Vec<(String, bool, u32, u32)> = evs
        .iter()
        .map(|e| {
            let g = e.grpc.as_ref().unwrap();
            assert!(g.web && g.service == "bank.v1.Accounts");
            (
                g.method.clone(),
                g.text,
                g.status.unwrap(),
                g.response_messages,
            )
        })
        .collect();
    assert_eq!(seen, reported);
    assert_eq!(reported.len(), 24);
    let text_events = dir.join("text.jsonl");
    let mut lines = String::new();
    for e in evs.iter().filter(|e| e.grpc.as_ref().unwrap().text) {
        lines += &serde_json::to_string(e).unwrap();
        lines.push('\n');
    }
    assert_eq!(lines.lines().count(), 12);
    std::fs::write(&text_events, lines).unwrap();
    let (list, shown, _) = inventory(&dir.join("text"), &text_events, false);
    for r in list.as_array().unwrap() {
        assert_eq!(r["style"], "grpc", "{r}");
    }
    let s = |v: &str| vec![v.to_owned()];
    let list_transfers = "/bank.v1.Accounts/ListTransfers";
    let stream = body(&shown, list_transfers, "response");
    assert_eq!(proto(stream, "1"), ("1".into(), s("string"), None, false));
    assert_eq!(proto(stream, "2"), ("2".into(), s("message"), None, false));
    assert_eq!(
        proto(stream, "2.2"),
        ("2.2".into(), s("varint"), None, false)
    );
    assert_eq!(proto(stream, "3"), ("3".into(), s("string"), None, false));
    assert_eq!(proto(stream, "4"), ("4".into(), s("fixed64"), None, false));
    // Every streamed message: 4 + 2 per mode, two text modes.
    assert_eq!(stream["1"]["seen"], 12);
    let req = body(&shown, list_transfers, "request");
    assert_eq!(proto(req, "2"), ("2".into(), s("varint"), None, false));
    let account = body(&shown, "/bank.v1.Accounts/GetAccount", "response");
    assert_eq!(
        proto(account, "3.3"),
        ("3.3".into(), s("fixed32"), None, false)
    );
    assert_eq!(proto(account, "4"), ("4".into(), s("string"), None, true));
    assert_eq!(proto(account, "5"), ("5".into(), s("fixed64"), None, false));
    let l = labels(&list, list_transfers);
    assert!(has(&l, "iban", "response", "3"), "{l:?}");
    no_values(
        &format!("{list}{shown:?}"),
        &["DE89370400440532013000".to_owned()],
    );
    let _ = std::fs::remove_dir_all(&dir);
}
