//! The hrss simulator against its interface document (form post to `/gateway.do`, XML in `data`,
//! upper-case MD5 `sign`, 10-minute time window, `<response><code>` answers, card.query polling):
//! the gateway's requests are accepted and read back through the gateway's mapping, bad ones
//! refused with the documented codes, duplicates answered as duplicates, and the simulator rules
//! produce their outcomes in card.query.

mod simkit;
mod support;

use md5::{Digest, Md5};
use minijinja::value::Value;
use onething::mapping::answer::{Outcome, ReadAnswer};
use onething::mapping::operation::OpKind;
use onething::mapping::report::Change;
use simkit::{Answer, Kit};
use support::*;

const ITEM: &str = "social-card";

fn newborn(name: &str, case_id: &str) -> serde_json::Value {
    let mut s = fixture("newborn.json");
    s["form"]["child"]["name"] = name.into();
    s["case_id"] = case_id.into();
    s
}

async fn apply(kit: &Kit, s: &serde_json::Value) -> Answer {
    kit.send(&kit.render_value(s, ITEM, "submit", None, Some("newborn.json")))
        .await
}

/// An answer as the gateway's mapping reads it (outcome and parsed document).
fn read(a: &Answer, kind: OpKind) -> ReadAnswer {
    let h: Vec<(String, String)> = a
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    read_answer(&op("hrss", ITEM, kind).answer, a.status, &h, &a.body)
}

/// Polls once and reads the card.query answer as the gateway does.
async fn poll(kit: &Kit, s: &serde_json::Value) -> Change {
    let a = kit
        .send(&kit.render_value(s, ITEM, "query", None, None))
        .await;
    let read = read(&a, OpKind::Query);
    assert!(
        matches!(read.outcome, Outcome::Ok { .. }),
        "{:?}: {}",
        read.outcome,
        a.text()
    );
    let case_id = s["case_id"].as_str().unwrap();
    let extra = [
        ("case_id", Value::from(case_id)),
        ("item", Value::from(ITEM)),
    ];
    let records = query_records(op("hrss", ITEM, OpKind::Query), read.parsed, &extra);
    assert_eq!(records.len(), 1);
    let r = report("hrss", &records[0], Some(ITEM)).unwrap();
    assert_eq!(r.case_id, case_id);
    r.change
}

/// (code, message) of an answer (always HTTP 200).
fn code(a: &Answer) -> (String, String) {
    assert_eq!(a.status, 200, "{}", a.text());
    let v = onething::codec::xml::parse(&a.text()).unwrap();
    let r = &v["response"];
    (
        r["code"].as_str().unwrap().to_string(),
        r["message"].as_str().unwrap().to_string(),
    )
}

/// A request's form fields, in order.
fn form_of(raw: &[u8]) -> (String, Vec<(String, String)>) {
    let pos = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..pos].to_vec()).unwrap();
    let fields = form_urlencoded::parse(&raw[pos + 4..])
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    (head, fields)
}

fn get<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    &fields.iter().find(|(k, _)| k == name).unwrap().1
}

fn md5_sign(time: &str, data: &str) -> String {
    let msg = format!(
        "{}{}{time}{data}",
        cred("ONETHING_DEPT_HRSS_APP_KEY"),
        cred("ONETHING_DEPT_HRSS_SECRET")
    );
    hex::encode_upper(Md5::digest(msg.as_bytes()))
}

/// Edits `data` (the raw XML text) and signs the request again with the real time moved by
/// `offset_secs`, so that only the edit is wrong.
fn resign(raw: &[u8], offset_secs: i64, edit: impl Fn(String) -> String) -> Vec<u8> {
    let (head, fields) = form_of(raw);
    let data = edit(get(&fields, "data").to_string());
    let time = (chrono::Utc::now() + chrono::Duration::seconds(offset_secs))
        .with_timezone(&onething::model::time::cst())
        .format("%Y%m%d%H%M%S")
        .to_string();
    let sign = md5_sign(&time, &data);
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &fields {
        let v = match k.as_str() {
            "data" => data.as_str(),
            "time" => time.as_str(),
            "sign" => sign.as_str(),
            _ => v.as_str(),
        };
        ser.append_pair(k, v);
    }
    [head.as_bytes(), b"\r\n\r\n", ser.finish().as_bytes()].concat()
}

fn without(element: &str) -> impl Fn(String) -> String {
    let element = element.to_string();
    move |d| {
        let start = d.find(&format!("<{element}>")).unwrap();
        let close = format!("</{element}>");
        let end = d[start..].find(&close).unwrap() + start + close.len();
        format!("{}{}", &d[..start], &d[end..])
    }
}

fn with_value(element: &str, value: &str) -> impl Fn(String) -> String {
    let (element, value) = (element.to_string(), value.to_string());
    move |d| {
        let open = format!("<{element}>");
        let start = d.find(&open).unwrap() + open.len();
        let end = d[start..].find("</").unwrap() + start;
        format!("{}{value}{}", &d[..start], &d[end..])
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
    let text = std::fs::read_to_string(golden_dir().join("hrss/cases.toml")).unwrap();
    toml::from_str::<Cases>(&text).unwrap().case
}

#[tokio::test]
async fn every_golden_request_is_accepted_and_read_by_the_mapping() {
    let kit = Kit::start("hrss-golden").await;
    let cases = golden_cases();
    let mut refs = std::collections::HashMap::new();
    for c in cases.iter().filter(|c| c.op == "submit") {
        let raw = kit.render(&c.fixture, &c.item, "submit", None, c.results.as_deref());
        let a = kit.send(&raw).await;
        let Outcome::Ok { reference: Some(r) } = a.outcome(&c.item, OpKind::Submit) else {
            panic!("{}: {}", c.fixture, a.text())
        };
        assert!(
            r.starts_with("RS") && r.len() == 15 && r[2..].chars().all(|c| c.is_ascii_digit()),
            "{r}"
        );
        refs.insert(c.fixture.clone(), r);
    }
    assert_eq!(refs.len(), 4);
    // Phases are immediate with the kit's timing: card.query shows the card (zt 4, kh).
    for c in cases.iter().filter(|c| c.op == "query") {
        match poll(&kit, &fixture(&c.fixture)).await {
            Change::Approved {
                results,
                accepted_at,
            } => {
                assert!(accepted_at.is_some());
                let kh = &results["card_no"];
                assert!(
                    kh.len() == 9 && kh[1..].chars().all(|c| c.is_ascii_digit()),
                    "{kh}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
    // Cancelling a finished application: 300 已办结, read as finished.
    for c in cases.iter().filter(|c| c.op == "withdraw") {
        let a = kit
            .send(&kit.render(&c.fixture, &c.item, "withdraw", None, None))
            .await;
        assert_eq!(code(&a), ("300".into(), "已办结".into()));
        assert_eq!(a.outcome(ITEM, OpKind::Withdraw), Outcome::Finished);
    }
    // A repeated application: 301 with the existing ywlsh, read as a duplicate.
    let a = kit
        .send(&kit.render("newborn.json", ITEM, "submit", None, Some("newborn.json")))
        .await;
    assert_eq!(code(&a).0, "301");
    assert_eq!(
        a.outcome(ITEM, OpKind::Submit),
        Outcome::Duplicate {
            reference: Some(refs["newborn.json"].clone())
        }
    );
    // What was received, decoded (the rare character included).
    let received = kit.sim_get("hrss", "/_sim/received").await;
    let received = received.as_array().unwrap();
    assert_eq!(received.len(), 4);
    assert!(
        received
            .iter()
            .any(|r| r["body"]["data"]["xm"] == "王\u{2020C}"),
        "{received:?}"
    );
    assert!(received.iter().all(|r| r["operation"] == "card.apply"));
    assert!(received.iter().any(|r| r["body"]["data"]["mz"] == "回族"));
    let stats = kit.sim_get("hrss", "/_sim/stats").await;
    assert_eq!(stats["hrss"]["submits"], 4);
    assert_eq!(stats["hrss"]["duplicates"], 1);
    assert_eq!(stats["hrss"]["queries"], 1);
    kit.stop().await;
}

#[tokio::test]
async fn signature_time_and_charset_are_checked() {
    let kit = Kit::start("hrss-auth").await;
    let raw = kit.render("newborn.json", ITEM, "submit", None, Some("newborn.json"));
    let permanent =
        |a: &Answer| matches!(a.outcome(ITEM, OpKind::Submit), Outcome::Permanent { .. });
    // `data` changed after signing: 401.
    let (head, fields) = form_of(&raw);
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &fields {
        let v = if k == "data" {
            v.replace("王子涵", "王子寒")
        } else {
            v.clone()
        };
        ser.append_pair(k, &v);
    }
    let tampered = [head.as_bytes(), b"\r\n\r\n", ser.finish().as_bytes()].concat();
    let a = kit.send(&tampered).await;
    assert_eq!(code(&a).0, "401");
    assert!(permanent(&a));
    // A lower-case signature: 401 (upper-case hex is documented).
    let text = String::from_utf8(raw.clone()).unwrap();
    let sign = get(&fields, "sign");
    let a = kit
        .send(text.replace(sign, &sign.to_lowercase()).as_bytes())
        .await;
    assert_eq!(code(&a).0, "401");
    // Signed correctly, but 11 minutes off real time: 401; 9 minutes is fine.
    let a = kit.send(&resign(&raw, -660, |d| d)).await;
    assert_eq!(code(&a).0, "401");
    assert!(code(&a).1.contains("time"), "{}", code(&a).1);
    let a = kit.send(&resign(&raw, 540, |d| d)).await;
    assert_eq!(code(&a).0, "200", "{}", a.text());
    // Another appKey: 401.
    let a = kit
        .send(text.replace("appKey=yjs", "appKey=other").as_bytes())
        .await;
    assert_eq!(code(&a).0, "401");
    // The form in GBK: declared so, 300; declared UTF-8 but GBK bytes, 300 too.
    let data = get(&fields, "data");
    let time = get(&fields, "time");
    let gbk: String = encoding_rs::GBK
        .encode(data)
        .0
        .iter()
        .map(|b| format!("%{b:02X}"))
        .collect();
    let body = format!(
        "method=card.apply&appKey=yjs&time={time}&data={gbk}&sign={}",
        md5_sign(time, data)
    );
    let gbk_head = head.replace("charset=UTF-8", "charset=GBK");
    let a = kit
        .send(&[gbk_head.as_bytes(), b"\r\n\r\n", body.as_bytes()].concat())
        .await;
    assert_eq!(code(&a).0, "300");
    let a = kit
        .send(&[head.as_bytes(), b"\r\n\r\n", body.as_bytes()].concat())
        .await;
    assert_eq!(code(&a).0, "300");
    assert!(code(&a).1.contains("UTF-8"));
    let violations = kit.sim_get("hrss", "/_sim/violations").await;
    assert_eq!(violations.as_array().unwrap().len(), 6);
    kit.stop().await;
}

#[tokio::test]
async fn apply_fields_are_validated_naming_the_element() {
    let kit = Kit::start("hrss-fields").await;
    let raw = kit.render("newborn.json", ITEM, "submit", None, Some("newborn.json"));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (resign(&raw, 0, without("mz")), "mz"),
        (resign(&raw, 0, without("jhrsfzh")), "jhrsfzh"),
        (resign(&raw, 0, without("lqfs")), "lqfs"),
        (resign(&raw, 0, with_value("xb", "1")), "xb"),
        (resign(&raw, 0, with_value("mz", "01")), "mz"),
        (resign(&raw, 0, with_value("csrq", "20260315")), "csrq"),
        (resign(&raw, 0, with_value("csrq", "2026-02-30")), "csrq"),
        (
            resign(&raw, 0, with_value("gmsfhm", "410225202603150018")),
            "gmsfhm",
        ),
        (resign(&raw, 0, with_value("lqfs", "3")), "lqfs"),
        // Post without an address.
        (resign(&raw, 0, without("yjdz")), "yjdz"),
        // An optional element sent empty.
        (resign(&raw, 0, with_value("yhmc", "")), "yhmc"),
    ];
    for (req, element) in &cases {
        let a = kit.send(req).await;
        let (c, message) = code(&a);
        assert_eq!(c, "300", "{element}: {message}");
        assert!(message.contains(element), "{element}: {message}");
        assert!(matches!(
            a.outcome(ITEM, OpKind::Submit),
            Outcome::Permanent { .. }
        ));
    }
    // Window pickup needs no address; the correct request is taken.
    let a = kit
        .send(&resign(&raw, 0, |d| {
            without("yjdz")(d).replace("<lqfs>2</lqfs>", "<lqfs>1</lqfs>")
        }))
        .await;
    assert_eq!(code(&a).0, "200", "{}", a.text());
    let stats = kit.sim_get("hrss", "/_sim/stats").await;
    assert_eq!(stats["hrss"]["submits"], 1);
    kit.stop().await;
}

#[tokio::test]
async fn simulator_rules_steer_what_card_query_shows() {
    let kit = Kit::start("hrss-rules").await;
    let cases = [
        "王驳回",
        "王不予",
        "王搁置",
        "王缓办",
        "王驳回:police",
        "王驳回:hrss",
    ];
    for (i, name) in cases.iter().enumerate() {
        let s = newborn(name, &format!("410225-20260316-10{i}"));
        let a = apply(&kit, &s).await;
        assert!(
            matches!(a.outcome(ITEM, OpKind::Submit), Outcome::Ok { .. }),
            "{}",
            a.text()
        );
        match (*name, poll(&kit, &s).await) {
            ("王驳回" | "王驳回:hrss", Change::Rejected { reason }) => {
                assert_eq!(reason, "材料不符合要求")
            }
            ("王不予", Change::Denied { reason, .. }) => assert_eq!(reason, "不符合许可条件"),
            ("王搁置", Change::Dispatched) => {}
            (
                "王缓办",
                Change::Accepted {
                    accepted_at: Some(_),
                },
            ) => {}
            ("王驳回:police", Change::Approved { .. }) => {}
            (name, other) => panic!("{name}: {other:?}"),
        }
    }
    // 失联: code 500 every time, retried.
    let s = newborn("王失联", "410225-20260316-200");
    for _ in 0..3 {
        let a = apply(&kit, &s).await;
        assert_eq!(code(&a).0, "500");
        assert!(matches!(
            a.outcome(ITEM, OpKind::Submit),
            Outcome::Retry { .. }
        ));
    }
    // 抖动: twice, then success.
    let s = newborn("王抖动", "410225-20260316-201");
    let mut ok = Vec::new();
    for _ in 0..3 {
        let a = apply(&kit, &s).await;
        ok.push(matches!(
            a.outcome(ITEM, OpKind::Submit),
            Outcome::Ok { .. }
        ));
    }
    assert_eq!(ok, [false, false, true]);
    kit.stop().await;
}

#[tokio::test]
async fn cancel_of_open_unknown_and_finished_applications() {
    let kit = Kit::start("hrss-cancel").await;
    let s = newborn("王缓办", "410225-20260316-500");
    apply(&kit, &s).await;
    let w = kit
        .send(&kit.render_value(&s, ITEM, "withdraw", None, None))
        .await;
    assert_eq!(code(&w).0, "200");
    assert_eq!(
        w.outcome(ITEM, OpKind::Withdraw),
        Outcome::Ok { reference: None }
    );
    match poll(&kit, &s).await {
        Change::Withdrawn { reason } => assert_eq!(reason.as_deref(), Some("申请人主动撤回")),
        other => panic!("{other:?}"),
    }
    // A repeated cancel succeeds.
    let w = kit
        .send(&kit.render_value(&s, ITEM, "withdraw", None, None))
        .await;
    assert_eq!(code(&w).0, "200");
    // Unknown: 404 for card.cancel and card.query.
    let unknown = newborn("王子涵", "410225-20260316-599");
    let w = kit
        .send(&kit.render_value(&unknown, ITEM, "withdraw", None, None))
        .await;
    assert_eq!(w.outcome(ITEM, OpKind::Withdraw), Outcome::NotFound);
    let q = kit
        .send(&kit.render_value(&unknown, ITEM, "query", None, None))
        .await;
    assert_eq!(code(&q).0, "404");
    assert_eq!(q.outcome(ITEM, OpKind::Query), Outcome::NotFound);
    // yy is required.
    let raw = kit.render_value(&s, ITEM, "withdraw", None, None);
    let a = kit.send(&resign(&raw, 0, without("yy"))).await;
    assert_eq!(code(&a).0, "300");
    assert!(code(&a).1.contains("yy"));
    let received = kit.sim_get("hrss", "/_sim/received").await;
    let cancel = received
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["operation"] == "card.cancel")
        .unwrap();
    assert_eq!(cancel["body"]["data"]["yy"], "申请人主动撤回");
    let stats = kit.sim_get("hrss", "/_sim/stats").await;
    assert_eq!(stats["hrss"]["withdrawals"], 2);
    assert_eq!(stats["hrss"]["queries"], 2);
    kit.stop().await;
}
