//! The police simulator against its interface document (SOAP 1.1 in GB18030, Auth header, at most
//! 2 requests at a time and about 20 a second, QueryStatus polling): the gateway's requests are
//! accepted and read back through the gateway's mapping, bad ones refused with the documented
//! faults and result codes, duplicates answered as duplicates, and the simulator rules produce
//! their outcomes in QueryStatus.
//!
//! The system allows about 20 requests a second, so each test stays well under 20 requests.

mod simkit;
mod support;

use std::time::{Duration, Instant};

use minijinja::value::Value;
use onething::mapping::answer::{Outcome, ReadAnswer};
use onething::mapping::operation::OpKind;
use onething::mapping::report::Change;
use onething::validate::ids::gb11643_valid;
use simkit::{Answer, Kit};
use support::*;

fn newborn(name: &str, case_id: &str) -> serde_json::Value {
    let mut s = fixture("newborn.json");
    s["form"]["child"]["name"] = name.into();
    s["case_id"] = case_id.into();
    s
}

fn restaurant(name: &str, case_id: &str) -> serde_json::Value {
    let mut s = fixture("restaurant.json");
    s["form"]["company"]["name"] = name.into();
    s["case_id"] = case_id.into();
    s
}

/// The results an item's submission needs.
fn results_for(item: &str) -> &'static str {
    if item == "hukou" {
        "newborn.json"
    } else {
        "restaurant.json"
    }
}

async fn submit(kit: &Kit, s: &serde_json::Value, item: &str) -> Answer {
    kit.send(&kit.render_value(s, item, "submit", None, Some(results_for(item))))
        .await
}

/// An answer as the gateway's mapping reads it (outcome and parsed document).
fn read(a: &Answer, item: &str, kind: OpKind) -> ReadAnswer {
    let h: Vec<(String, String)> = a
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    read_answer(&op("police", item, kind).answer, a.status, &h, &a.body)
}

/// Polls once and reads the QueryStatus answer as the gateway does: the query's records, then
/// the department's report reader for the item asked about.
async fn poll(kit: &Kit, s: &serde_json::Value, item: &str) -> Change {
    let a = kit
        .send(&kit.render_value(s, item, "query", None, None))
        .await;
    let read = read(&a, item, OpKind::Query);
    assert!(
        matches!(read.outcome, Outcome::Ok { .. }),
        "{:?}: {}",
        read.outcome,
        text(&a)
    );
    let case_id = s["case_id"].as_str().unwrap();
    let extra = [
        ("case_id", Value::from(case_id)),
        ("item", Value::from(item)),
    ];
    let records = query_records(op("police", item, OpKind::Query), read.parsed, &extra);
    assert_eq!(records.len(), 1);
    let r = report("police", &records[0], Some(item)).unwrap();
    assert_eq!(r.case_id, case_id);
    r.change
}

/// The answer's body as text (it is GB18030).
fn text(a: &Answer) -> String {
    encoding_rs::GB18030.decode(&a.body).0.into_owned()
}

/// The answer as a tree keyed by local names.
fn tree(a: &Answer) -> serde_json::Value {
    onething::codec::xml::parse(&text(a)).unwrap_or_else(|e| panic!("{e}: {}", text(a)))
}

/// (faultcode, faultstring) of a fault answer, which is HTTP 500.
fn fault(a: &Answer) -> (String, String) {
    assert_eq!(a.status, 500, "{}", text(a));
    let f = &tree(a)["Envelope"]["Body"]["Fault"];
    (
        f["faultcode"].as_str().unwrap().to_string(),
        f["faultstring"].as_str().unwrap().to_string(),
    )
}

/// (Code, Message) of a `<ga:Result>` answer.
fn code(a: &Answer) -> (String, String) {
    assert_eq!(a.status, 200, "{}", text(a));
    let body = &tree(a)["Envelope"]["Body"];
    let response = body.as_object().unwrap().values().next().unwrap();
    let r = &response["Result"];
    (
        r["Code"].as_str().unwrap().to_string(),
        r["Message"].as_str().unwrap().to_string(),
    )
}

/// Edits the head (request line and headers) and the decoded body of a raw GB18030 request,
/// writing the body back in `charset`.
fn edit_as(
    raw: &[u8],
    charset: &'static encoding_rs::Encoding,
    head: impl Fn(String) -> String,
    body: impl Fn(String) -> String,
) -> Vec<u8> {
    let pos = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let h = head(String::from_utf8(raw[..pos].to_vec()).unwrap());
    let (text, _, bad) = encoding_rs::GB18030.decode(&raw[pos + 4..]);
    assert!(!bad);
    let b = body(text.into_owned());
    let (bytes, _, unmappable) = charset.encode(&b);
    assert!(!unmappable);
    [h.as_bytes(), b"\r\n\r\n", &bytes].concat()
}

/// Edits the body of a raw request, keeping it GB18030.
fn edit(raw: &[u8], body: impl Fn(String) -> String) -> Vec<u8> {
    edit_as(raw, encoding_rs::GB18030, |h| h, body)
}

fn without(element: &str) -> impl Fn(String) -> String {
    let element = element.to_string();
    move |b| {
        let start = b.find(&format!("<ga:{element}>")).unwrap();
        let close = format!("</ga:{element}>");
        let end = b[start..].find(&close).unwrap() + start + close.len();
        format!("{}{}", &b[..start], &b[end..])
    }
}

fn with_value(element: &str, value: &str) -> impl Fn(String) -> String {
    let (element, value) = (element.to_string(), value.to_string());
    move |b| {
        let open = format!("<ga:{element}>");
        let start = b.find(&open).unwrap() + open.len();
        let end = b[start..].find("</ga:").unwrap() + start;
        format!("{}{value}{}", &b[..start], &b[end..])
    }
}

#[derive(serde::Deserialize)]
struct Cases {
    case: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    fixture: String,
    item: String,
    op: String,
    results: Option<String>,
}

fn golden_cases() -> Vec<Case> {
    let text = std::fs::read_to_string(golden_dir().join("police/cases.toml")).unwrap();
    toml::from_str::<Cases>(&text).unwrap().case
}

#[tokio::test]
async fn every_golden_request_is_accepted_and_read_by_the_mapping() {
    let kit = Kit::start("police-golden").await;
    let cases = golden_cases();
    let mut refs = std::collections::HashMap::new();
    let mut submits = 0;
    for c in cases.iter().filter(|c| c.op == "submit") {
        let raw = kit.render(&c.fixture, &c.item, "submit", None, c.results.as_deref());
        let a = kit.send(&raw).await;
        assert_eq!(
            simkit_header(&a, "content-type"),
            "text/xml; charset=GB18030"
        );
        assert!(
            a.body
                .starts_with(b"<?xml version=\"1.0\" encoding=\"GB18030\"?>")
        );
        let Outcome::Ok { reference: Some(r) } = a.outcome(&c.item, OpKind::Submit) else {
            panic!("{} {}: {}", c.fixture, c.item, text(&a))
        };
        assert!(
            r.starts_with("GA") && r.len() == 16 && r[2..].chars().all(|c| c.is_ascii_digit()),
            "{r}"
        );
        refs.insert((c.fixture.clone(), c.item.clone()), r);
        submits += 1;
    }
    assert_eq!(submits, 5);
    // Phases are immediate with the kit's timing: the queries show the approval and its results.
    for c in cases.iter().filter(|c| c.op == "query") {
        let s = fixture(&c.fixture);
        match poll(&kit, &s, &c.item).await {
            Change::Approved {
                results,
                accepted_at,
            } => {
                assert!(accepted_at.is_some());
                if c.item == "hukou" {
                    let id = &results["citizen_id"];
                    assert!(gb11643_valid(id), "{id}");
                    assert_eq!(&id[6..14], "20260315", "the child's birth date");
                    assert_eq!((id.as_bytes()[16] - b'0') % 2, 1, "a boy: odd");
                    let hh = &results["hukou_no"];
                    assert!(
                        hh.len() == 12 && hh.chars().all(|c| c.is_ascii_digit()),
                        "{hh}"
                    );
                } else {
                    let bah = &results["filing_no"];
                    assert!(bah.starts_with("BA") && bah.len() > 2, "{bah}");
                }
            }
            other => panic!("{}: {other:?}", c.item),
        }
    }
    // Withdrawing an approved application: 2001, read as finished.
    for c in cases.iter().filter(|c| c.op == "withdraw") {
        let a = kit
            .send(&kit.render(&c.fixture, &c.item, "withdraw", None, None))
            .await;
        assert_eq!(code(&a).0, "2001");
        assert_eq!(a.outcome(&c.item, OpKind::Withdraw), Outcome::Finished);
    }
    // A repeated submission: 0001 with the existing YWLSH, read as a duplicate.
    let a = kit
        .send(&kit.render(
            "newborn.json",
            "hukou",
            "submit",
            None,
            Some("newborn.json"),
        ))
        .await;
    assert_eq!(code(&a).0, "0001");
    let r = &refs[&("newborn.json".to_string(), "hukou".to_string())];
    assert_eq!(
        a.outcome("hukou", OpKind::Submit),
        Outcome::Duplicate {
            reference: Some(r.clone())
        }
    );
    // What was received, decoded from GB18030 (the rare character included).
    let received = kit.sim_get("police", "/_sim/received").await;
    let received = received.as_array().unwrap();
    let bodies: Vec<&serde_json::Value> = received.iter().map(|r| &r["body"]).collect();
    assert!(
        bodies.iter().any(|b| b["XM"] == "王\u{2020C}"),
        "{bodies:?}"
    );
    assert!(
        bodies
            .iter()
            .any(|b| b["YZ"] == serde_json::json!([{"YZLX": "01"}, {"YZLX": "02"}, {"YZLX": "03"}])),
        "{bodies:?}"
    );
    assert!(received.iter().any(|r| r["operation"] == "SubmitSeal"));
    let stats = kit.sim_get("police", "/_sim/stats").await;
    assert_eq!(stats["police"]["submits"], 5);
    assert_eq!(stats["police"]["duplicates"], 1);
    assert_eq!(stats["police"]["queries"], 2);
    kit.stop().await;
}

fn simkit_header<'a>(a: &'a Answer, name: &str) -> &'a str {
    a.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

#[tokio::test]
async fn transport_charset_namespace_and_credentials_are_checked() {
    let kit = Kit::start("police-transport").await;
    let raw = kit.render(
        "newborn.json",
        "hukou",
        "submit",
        None,
        Some("newborn.json"),
    );
    // A wrong password: soap:Client 认证失败, not retried.
    let a = kit
        .send(&edit(&raw, |b| b.replace("police-test-pw", "wrong-pw")))
        .await;
    assert_eq!(fault(&a), ("soap:Client".into(), "认证失败".into()));
    assert!(matches!(
        a.outcome("hukou", OpKind::Submit),
        Outcome::Permanent { .. }
    ));
    // No SOAP header: soap:Client.
    let a = kit
        .send(&edit(&raw, |b| {
            let start = b.find("<soap:Header>").unwrap();
            let end = b.find("</soap:Header>").unwrap() + "</soap:Header>".len();
            format!("{}{}", &b[..start], &b[end..])
        }))
        .await;
    assert_eq!(fault(&a).0, "soap:Client");
    // UTF-8 instead of GB18030 (body, prolog and Content-Type all saying so): soap:Client.
    let utf8 = edit_as(
        &raw,
        encoding_rs::UTF_8,
        |h| h.replace("charset=GB18030", "charset=UTF-8"),
        |b| b.replace("encoding=\"GB18030\"", "encoding=\"UTF-8\""),
    );
    let a = kit.send(&utf8).await;
    assert_eq!(fault(&a), ("soap:Client".into(), "报文格式错误".into()));
    // GB18030 bytes, but the Content-Type says UTF-8: soap:Client.
    let a = kit
        .send(&edit_as(
            &raw,
            encoding_rs::GB18030,
            |h| h.replace("charset=GB18030", "charset=UTF-8"),
            |b| b,
        ))
        .await;
    assert_eq!(fault(&a), ("soap:Client".into(), "报文格式错误".into()));
    // The operation, or one of its elements, in another namespace: 报文格式错误.
    let a = kit
        .send(&edit(&raw, |b| {
            b.replace(
                "<ga:SubmitHukou>",
                "<x:SubmitHukou xmlns:x=\"urn:yjs:other\">",
            )
            .replace("</ga:SubmitHukou>", "</x:SubmitHukou>")
        }))
        .await;
    assert_eq!(fault(&a), ("soap:Client".into(), "报文格式错误".into()));
    let a = kit
        .send(&edit(&raw, |b| {
            b.replace(
                "<ga:XB>1</ga:XB>",
                "<x:XB xmlns:x=\"urn:yjs:other\">1</x:XB>",
            )
        }))
        .await;
    assert_eq!(fault(&a), ("soap:Client".into(), "报文格式错误".into()));
    // A SOAPAction that does not name the operation: 报文格式错误.
    let a = kit
        .send(&edit_as(
            &raw,
            encoding_rs::GB18030,
            |h| h.replace("#SubmitHukou", "#SubmitSeal"),
            |b| b,
        ))
        .await;
    assert_eq!(fault(&a), ("soap:Client".into(), "报文格式错误".into()));
    // Elements out of the documented order: 报文格式错误.
    let a = kit
        .send(&edit(&raw, |b| {
            b.replace(
                "<ga:XB>1</ga:XB><ga:MZ>01</ga:MZ>",
                "<ga:MZ>01</ga:MZ><ga:XB>1</ga:XB>",
            )
        }))
        .await;
    assert_eq!(fault(&a), ("soap:Client".into(), "报文格式错误".into()));
    // Any prefix is fine, and so is the default namespace: matched by namespace and name.
    let a = kit
        .send(&edit(&raw, |b| {
            b.replace("ga:", "yjs:")
                .replace("xmlns:ga=", "xmlns:yjs=")
                .replace("soap:", "env:")
                .replace("xmlns:soap=", "xmlns:env=")
        }))
        .await;
    assert!(
        matches!(a.outcome("hukou", OpKind::Submit), Outcome::Ok { .. }),
        "{}",
        text(&a)
    );
    let q = kit.render("newborn.json", "hukou", "query", None, None);
    let a = kit
        .send(&edit(&q, |b| {
            b.replace("ga:", "").replace("xmlns:ga=", "xmlns=")
        }))
        .await;
    assert_eq!(code(&a).0, "0000", "{}", text(&a));
    let violations = kit.sim_get("police", "/_sim/violations").await;
    assert_eq!(violations.as_array().unwrap().len(), 8);
    kit.stop().await;
}

#[tokio::test]
async fn hukou_fields_are_validated_with_the_documented_codes() {
    let kit = Kit::start("police-hukou-fields").await;
    let raw = kit.render(
        "newborn.json",
        "hukou",
        "submit",
        None,
        Some("newborn.json"),
    );
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (edit(&raw, without("MZ")), "1001", "MZ"),
        (edit(&raw, without("CSYXZMBH")), "1001", "CSYXZMBH"),
        (edit(&raw, without("FQSFZH")), "1001", "FQSFZH"),
        (edit(&raw, with_value("XB", "男")), "1002", "XB"),
        (edit(&raw, with_value("MZ", "99")), "1002", "MZ"),
        (edit(&raw, with_value("CSRQ", "2026-03-15")), "1002", "CSRQ"),
        (edit(&raw, with_value("CSRQ", "20260230")), "1002", "CSRQ"),
        (edit(&raw, with_value("CSSJ", "2460")), "1002", "CSSJ"),
        (edit(&raw, with_value("SXBM", "GA-ZA-GZKZ")), "1002", "SXBM"),
        (
            edit(&raw, with_value("MQSFZH", "410225199506120023")),
            "1003",
            "MQSFZH",
        ),
        (
            edit(&raw, with_value("FQSFZH", "410225199303050037")),
            "1003",
            "FQSFZH",
        ),
    ];
    for (req, want, element) in &cases {
        let a = kit.send(req).await;
        let (c, message) = code(&a);
        assert_eq!(
            (c.as_str(), true),
            (*want, message.contains(element)),
            "{message}"
        );
        assert!(
            matches!(
                a.outcome("hukou", OpKind::Submit),
                Outcome::Permanent { .. }
            ),
            "{element}"
        );
    }
    // Nothing was taken.
    let stats = kit.sim_get("police", "/_sim/stats").await;
    assert_eq!(stats["police"]["submits"], 0);
    assert_eq!(
        kit.sim_get("police", "/_sim/violations")
            .await
            .as_array()
            .unwrap()
            .len(),
        cases.len()
    );
    // The document's own example, pretty-printed, is taken.
    let a = kit
        .send(&document_example(&kit.sim.addrs["police"].to_string()))
        .await;
    assert_eq!(code(&a).0, "0000", "{}", text(&a));
    kit.stop().await;
}

/// The request example of the interface document, as its bytes would travel.
fn document_example(host: &str) -> Vec<u8> {
    let xml = r#"<?xml version="1.0" encoding="GB18030"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ga="urn:yjs:police">
  <soap:Header>
    <ga:Auth><ga:UserId>yjs</ga:UserId><ga:Password>police-test-pw</ga:Password></ga:Auth>
  </soap:Header>
  <soap:Body>
    <ga:SubmitHukou>
      <ga:SBLSH>410225-20260316-000123</ga:SBLSH><ga:SXBM>GA-HJ-CSDJ</ga:SXBM>
      <ga:XM>王子涵</ga:XM><ga:XB>1</ga:XB><ga:MZ>01</ga:MZ><ga:CSRQ>20260315</ga:CSRQ><ga:CSSJ>0830</ga:CSSJ>
      <ga:CSDD>兰考县人民医院</ga:CSDD><ga:CSYXZMBH>Q410123456</ga:CSYXZMBH>
      <ga:MQXM>李娜</ga:MQXM><ga:MQSFZH>410225199506120022</ga:MQSFZH>
      <ga:FQXM>王强</ga:FQXM><ga:FQSFZH>410225199303050036</ga:FQSFZH>
      <ga:HZXM>王强</ga:HZXM><ga:YHZGX>子</ga:YHZGX><ga:LHDZ>河南省开封市兰考县城关镇裕禄大道88号</ga:LHDZ>
      <ga:LXDH>13803780001</ga:LXDH>
    </ga:SubmitHukou>
  </soap:Body>
</soap:Envelope>"#;
    let head = format!(
        "POST /services/YjsService HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/xml; charset=GB18030\r\nSOAPAction: \"urn:yjs:police#SubmitHukou\"\r\n\r\n"
    );
    [head.as_bytes(), &encoding_rs::GB18030.encode(xml).0].concat()
}

#[tokio::test]
async fn seal_fields_are_validated_with_the_documented_codes() {
    let kit = Kit::start("police-seal-fields").await;
    let raw = kit.render(
        "restaurant.json",
        "seal",
        "submit",
        None,
        Some("restaurant.json"),
    );
    let no_seals = |b: String| {
        let start = b.find("<ga:YZ>").unwrap();
        let end = b.rfind("</ga:YZ>").unwrap() + "</ga:YZ>".len();
        format!("{}{}", &b[..start], &b[end..])
    };
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (edit(&raw, without("DWDZ")), "1001", "DWDZ"),
        (edit(&raw, no_seals), "1001", "YZ"),
        (
            edit(&raw, |b| b.replacen("<ga:YZLX>02</ga:YZLX>", "", 1)),
            "1001",
            "YZLX",
        ),
        (
            edit(&raw, |b| {
                b.replacen("<ga:YZLX>02</ga:YZLX>", "<ga:YZLX>05</ga:YZLX>", 1)
            }),
            "1002",
            "YZLX",
        ),
        (
            edit(&raw, |b| {
                b.replacen("<ga:YZLX>02</ga:YZLX>", "<ga:YZLX>01</ga:YZLX>", 1)
            }),
            "1002",
            "YZ",
        ),
        (edit(&raw, with_value("SXBM", "GA-HJ-CSDJ")), "1002", "SXBM"),
        (
            edit(&raw, with_value("TYSHXYDM", "91410225MA9G2XK36X")),
            "1002",
            "TYSHXYDM",
        ),
        (
            edit(&raw, with_value("FDDBRSFZH", "410225198504200058")),
            "1003",
            "FDDBRSFZH",
        ),
    ];
    for (req, want, element) in &cases {
        let a = kit.send(req).await;
        let (c, message) = code(&a);
        assert_eq!(
            (c.as_str(), true),
            (*want, message.contains(element)),
            "{message}"
        );
        assert!(matches!(
            a.outcome("seal", OpKind::Submit),
            Outcome::Permanent { .. }
        ));
    }
    // The correct request is taken.
    let a = kit.send(&raw).await;
    assert!(matches!(
        a.outcome("seal", OpKind::Submit),
        Outcome::Ok { .. }
    ));
    kit.stop().await;
}

#[tokio::test]
async fn simulator_rules_steer_what_query_status_shows() {
    let kit = Kit::start("police-rules").await;
    let cases = ["王驳回", "王不予", "王搁置", "王缓办", "王驳回:hrss"];
    for (i, name) in cases.iter().enumerate() {
        let s = newborn(name, &format!("410225-20260316-10{i}"));
        let a = submit(&kit, &s, "hukou").await;
        assert!(
            matches!(a.outcome("hukou", OpKind::Submit), Outcome::Ok { .. }),
            "{}",
            text(&a)
        );
        let change = poll(&kit, &s, "hukou").await;
        match (*name, change) {
            ("王驳回", Change::Rejected { reason }) => assert_eq!(reason, "材料不符合要求"),
            ("王不予", Change::Denied { reason, .. }) => assert_eq!(reason, "不符合许可条件"),
            ("王搁置", Change::Dispatched) => {}
            (
                "王缓办",
                Change::Accepted {
                    accepted_at: Some(_),
                },
            ) => {}
            ("王驳回:hrss", Change::Approved { .. }) => {}
            (name, other) => panic!("{name}: {other:?}"),
        }
    }
    kit.stop().await;
}

#[tokio::test]
async fn unreachable_and_flaky_pushes_fail_with_server_faults() {
    let kit = Kit::start("police-down").await;
    // 失联: soap:Server every time, retried.
    let s = newborn("王失联", "410225-20260316-200");
    for _ in 0..3 {
        let a = submit(&kit, &s, "hukou").await;
        assert_eq!(fault(&a).0, "soap:Server");
        assert!(matches!(
            a.outcome("hukou", OpKind::Submit),
            Outcome::Retry { .. }
        ));
    }
    // 抖动: twice, then success.
    let s = restaurant("抖动餐饮有限公司", "410225-20260317-201");
    let mut ok = Vec::new();
    for _ in 0..3 {
        let a = submit(&kit, &s, "seal").await;
        ok.push(matches!(
            a.outcome("seal", OpKind::Submit),
            Outcome::Ok { .. }
        ));
    }
    assert_eq!(ok, [false, false, true]);
    // The company name carries the marker for the seal: 不予 → denied.
    let s = restaurant("兰考县不予餐饮有限公司", "410225-20260317-202");
    submit(&kit, &s, "seal").await;
    match poll(&kit, &s, "seal").await {
        Change::Denied {
            reason,
            accepted_at,
        } => {
            assert_eq!(reason, "不符合许可条件");
            assert!(accepted_at.is_some());
        }
        other => panic!("{other:?}"),
    }
    // A marker for another department changes nothing here.
    let s = restaurant("兰考县失联:gas餐饮有限公司", "410225-20260317-203");
    let a = submit(&kit, &s, "seal").await;
    assert!(matches!(
        a.outcome("seal", OpKind::Submit),
        Outcome::Ok { .. }
    ));
    kit.stop().await;
}

#[tokio::test]
async fn withdrawal_of_open_unknown_and_finished_applications() {
    let kit = Kit::start("police-withdraw").await;
    let s = newborn("王缓办", "410225-20260316-500");
    submit(&kit, &s, "hukou").await;
    let w = kit
        .send(&kit.render_value(&s, "hukou", "withdraw", None, None))
        .await;
    assert_eq!(code(&w).0, "0000");
    assert_eq!(
        w.outcome("hukou", OpKind::Withdraw),
        Outcome::Ok { reference: None }
    );
    match poll(&kit, &s, "hukou").await {
        Change::Withdrawn { reason } => assert_eq!(reason.as_deref(), Some("申请人主动撤回")),
        other => panic!("{other:?}"),
    }
    // Unknown case: 0404 for both Withdraw and QueryStatus.
    let unknown = newborn("王子涵", "410225-20260316-599");
    let w = kit
        .send(&kit.render_value(&unknown, "hukou", "withdraw", None, None))
        .await;
    assert_eq!(code(&w).0, "0404");
    assert_eq!(w.outcome("hukou", OpKind::Withdraw), Outcome::NotFound);
    let q = kit
        .send(&kit.render_value(&unknown, "hukou", "query", None, None))
        .await;
    assert_eq!(q.outcome("hukou", OpKind::Query), Outcome::NotFound);
    // The same case as a seal is another application (SBLSH per SXBM).
    let q = kit
        .send(&kit.render_value(
            &restaurant("x", "410225-20260316-500"),
            "seal",
            "query",
            None,
            None,
        ))
        .await;
    assert_eq!(code(&q).0, "0404");
    // CHYY is required.
    let raw = kit.render_value(&s, "hukou", "withdraw", None, None);
    let a = kit.send(&edit(&raw, without("CHYY"))).await;
    assert_eq!(code(&a).0, "1001");
    // Approved already: 2001.
    let s = newborn("王子涵", "410225-20260316-501");
    submit(&kit, &s, "hukou").await;
    let w = kit
        .send(&kit.render_value(&s, "hukou", "withdraw", None, None))
        .await;
    assert_eq!(w.outcome("hukou", OpKind::Withdraw), Outcome::Finished);
    let stats = kit.sim_get("police", "/_sim/stats").await;
    assert_eq!(stats["police"]["withdrawals"], 1);
    assert_eq!(stats["police"]["queries"], 3);
    kit.stop().await;
}

/// Waits (by asking `/_sim/stats`) until `n` requests have been in flight at once.
async fn until_in_flight(kit: &Kit, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = kit.sim_get("police", "/_sim/stats").await;
        if stats["police"]["max_concurrency"].as_u64().unwrap_or(0) >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{stats}");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_third_request_at_a_time_is_answered_busy() {
    let kit = Kit::start("police-concurrency").await;
    let q = kit.render("newborn.json", "hukou", "query", None, None);
    let post = |path: &'static str| {
        let url = format!("{}{path}", kit.sim.url("police"));
        let http = kit.http.clone();
        async move { http.post(url).send().await.unwrap() }
    };
    // Admitted requests wait at the test hook until released: two are in flight, a third comes.
    post("/_sim/hold").await;
    let (first, second, third) = tokio::join!(kit.send(&q), kit.send(&q), async {
        until_in_flight(&kit, 2).await;
        let third = kit.send(&q).await;
        post("/_sim/release").await;
        third
    });
    assert_eq!(fault(&third), ("soap:Server".into(), "系统繁忙".into()));
    assert!(matches!(
        third.outcome("hukou", OpKind::Query),
        Outcome::Retry { .. }
    ));
    for a in [first, second] {
        assert_eq!(code(&a).0, "0404", "{}", text(&a));
    }
    let stats = kit.sim_get("police", "/_sim/stats").await;
    assert_eq!(stats["police"]["max_concurrency"], 3);
    kit.stop().await;
}

#[tokio::test]
async fn about_twenty_requests_a_second() {
    let kit = Kit::start("police-rate").await;
    let q = kit.render("newborn.json", "hukou", "query", None, None);
    let started = Instant::now();
    let mut busy = Vec::new();
    let mut twenty_first_done = None;
    for i in 0..21 {
        let a = kit.send(&q).await;
        busy.push(a.status == 500);
        if i == 20 {
            twenty_first_done = Some(started.elapsed());
            if a.status == 500 {
                assert_eq!(fault(&a), ("soap:Server".into(), "系统繁忙".into()));
            }
        }
    }
    // One at a time, the first 20 of a second are served.
    assert!(busy[..20].iter().all(|b| !b), "{busy:?}");
    // The 21st within the same second is refused (if the machine was too slow to send 21 in a
    // second, there is nothing to see).
    if twenty_first_done.unwrap() < Duration::from_secs(1) {
        assert!(busy[20], "{busy:?}");
    }
    kit.stop().await;
}
