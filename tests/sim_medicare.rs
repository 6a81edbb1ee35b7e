//! The medicare simulator against its interface document: the gateway's enveloped requests are
//! accepted, bad envelopes and fields refused with the documented codes, duplicates answered
//! 3001, pre-check then confirm (never accepted before the confirm), the simulator rules, and
//! callbacks in the same envelope, repeated when unanswered.

mod simkit;
mod support;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ecb::cipher::block_padding::Pkcs7;
use ecb::cipher::{BlockDecryptMut, BlockEncryptMut, KeyInit};
use onething::mapping::answer::Outcome;
use onething::mapping::expr::to_value;
use onething::mapping::operation::OpKind;
use onething::mapping::report::Change;
use serde_json::{Value, json};
use simkit::{Answer, Kit};
use support::*;

const ITEM: &str = "medicare-enrol";

fn key() -> [u8; 16] {
    hex::decode(cred("ONETHING_DEPT_MEDICARE_KEY"))
        .unwrap()
        .try_into()
        .unwrap()
}

fn sm3(s: &str) -> String {
    use sm3::Digest as _;
    hex::encode(sm3::Sm3::digest(s.as_bytes()))
}

fn encrypt(plain: &[u8]) -> String {
    let ct = ecb::Encryptor::<sm4::Sm4>::new(&key().into()).encrypt_padded_vec_mut::<Pkcs7>(plain);
    B64.encode(ct)
}

fn decrypt(b64: &str) -> Value {
    let ct = B64.decode(b64).unwrap();
    let pt = ecb::Decryptor::<sm4::Sm4>::new(&key().into())
        .decrypt_padded_vec_mut::<Pkcs7>(&ct)
        .unwrap();
    serde_json::from_slice(&pt).unwrap()
}

fn now_ts() -> String {
    chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y%m%d%H%M%S")
        .to_string()
}

/// A rendered request: (head, envelope, business data).
fn open(raw: &[u8]) -> (String, Value, Value) {
    let text = String::from_utf8(raw.to_vec()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let env: Value = serde_json::from_str(body).unwrap();
    let business = decrypt(env["encData"].as_str().unwrap());
    (head.to_string(), env, business)
}

/// An envelope with the given parts, signed correctly with the test secret.
fn envelope(head: &str, app_id: &str, ts: &str, enc: &str) -> Vec<u8> {
    let sig = sm3(&format!(
        "{app_id}{ts}{enc}{}",
        cred("ONETHING_DEPT_MEDICARE_SECRET")
    ));
    let env = json!({"appId": app_id, "timestamp": ts, "encType": "SM4", "signType": "SM3",
        "encData": enc, "signData": sig});
    format!("{head}\r\n\r\n{env}").into_bytes()
}

/// Encrypts and signs edited business data again (fresh timestamp), so only the edit is wrong.
fn seal(head: &str, business: &Value) -> Vec<u8> {
    let enc = encrypt(business.to_string().as_bytes());
    envelope(head, "yjs-gateway", &now_ts(), &enc)
}

/// A correct request of `op` with its business data edited.
fn edited(
    kit: &Kit,
    s: &Value,
    op: &str,
    results: Option<&str>,
    f: impl FnOnce(&mut Value),
) -> Vec<u8> {
    let (head, _, mut business) = open(&kit.render_value(s, ITEM, op, None, results));
    f(&mut business);
    seal(&head, &business)
}

fn case(name: &str, case_id: &str) -> Value {
    let mut s = fixture("newborn.json");
    s["form"]["child"]["name"] = name.into();
    s["case_id"] = case_id.into();
    s
}

/// A callback read with the gateway's own mapping (signature checked, decrypted), with the
/// business data decrypted independently.
fn read_callback(cb: &simkit::Callback) -> (Value, Change) {
    assert_eq!(cb.dept, "medicare");
    let env: Value = serde_json::from_slice(&cb.body).unwrap();
    assert_eq!(env["appId"], "medicare-system");
    assert_eq!(env["encType"], "SM4");
    assert_eq!(env["signType"], "SM3");
    let business = decrypt(env["encData"].as_str().unwrap());
    let rep = cb.report();
    assert_eq!(rep.case_id, business["sblsh"].as_str().unwrap());
    (business, rep.change)
}

async fn next(kit: &Kit) -> (Value, Change) {
    read_callback(&kit.next_callback(5).await)
}

/// No further callback within a short while.
async fn quiet(kit: &Kit) {
    let extra = tokio::time::timeout(Duration::from_millis(300), async {
        kit.callbacks.lock().await.recv().await
    })
    .await;
    assert!(extra.is_err(), "unexpected callback: {extra:?}");
}

/// The query's answer, read through the query operation's records and the report reader.
async fn query(kit: &Kit, s: &Value) -> (Value, Change) {
    let a = kit
        .send(&kit.render_value(s, ITEM, "query", None, None))
        .await;
    let body = a.json();
    assert_eq!(body["code"], 0, "{body}");
    assert!(
        body["data"].get("sblsh").is_none(),
        "the query's data has no sblsh"
    );
    let records = query_records(op("medicare", ITEM, OpKind::Query), to_value(&body), &[]);
    let case_id = s["case_id"].as_str().unwrap().to_string();
    let r = MAPPING.departments["medicare"]
        .report
        .as_ref()
        .unwrap()
        .read(&records[0], Some(ITEM), &[("case_id", case_id.into())])
        .unwrap();
    (body["data"].clone(), r.change)
}

fn reference(a: &Answer, kind: OpKind) -> String {
    match a.outcome(ITEM, kind) {
        Outcome::Ok { reference: Some(r) } => r,
        other => panic!("{other:?}: {}", a.text()),
    }
}

fn code(a: &Answer) -> i64 {
    a.json()["code"].as_i64().unwrap()
}

fn message(a: &Answer) -> String {
    a.json()["message"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn pre_check_then_confirm_and_one_step_apply() {
    let kit = Kit::start("medicare-ok").await;
    // Pre-check (no hukou results): PRECHECK_PASSED, never accepted before the confirm.
    let a = kit
        .send(&kit.render("newborn.json", ITEM, "submit", None, None))
        .await;
    assert_eq!(
        open(&kit.render("newborn.json", ITEM, "submit", None, None))
            .0
            .lines()
            .next(),
        Some("POST /api/enrol/precheck HTTP/1.1")
    );
    let enrol_no = reference(&a, OpKind::Prereview);
    assert!(
        enrol_no.starts_with("YB") && enrol_no.len() == 15,
        "{enrol_no}"
    );
    let (data, change) = next(&kit).await;
    assert_eq!(data["state"], "PRECHECK_PASSED");
    assert_eq!(data["enrolNo"], enrol_no.as_str());
    assert_eq!(
        change,
        Change::Progress {
            stage: "prereview-passed".into(),
            note: None
        }
    );
    quiet(&kit).await;
    let s = fixture("newborn.json");
    let (data, change) = query(&kit, &s).await;
    assert_eq!(data["state"], "PRECHECK_PASSED");
    assert!(data["acceptTime"].is_null());
    assert!(matches!(change, Change::Progress { .. }));
    // A second pre-check and an apply of the same case: 3001 with the same enrolNo.
    for results in [None, Some("newborn.json")] {
        let d = kit
            .send(&kit.render("newborn.json", ITEM, "submit", None, results))
            .await;
        assert_eq!(code(&d), 3001);
        assert_eq!(
            d.outcome(ITEM, OpKind::Submit),
            Outcome::Duplicate {
                reference: Some(enrol_no.clone())
            }
        );
    }
    // Confirm with the hukou results: accepted, then done with an insured number.
    let confirm = kit.render(
        "newborn.json",
        ITEM,
        "complete",
        Some(&enrol_no),
        Some("newborn.json"),
    );
    let c = kit.send(&confirm).await;
    assert_eq!(code(&c), 0, "{}", c.text());
    assert!(matches!(
        c.outcome(ITEM, OpKind::Complete),
        Outcome::Ok { .. }
    ));
    let (data, change) = next(&kit).await;
    assert_eq!(data["state"], "ACCEPTED");
    assert!(matches!(
        change,
        Change::Accepted {
            accepted_at: Some(_)
        }
    ));
    let (data, change) = next(&kit).await;
    assert_eq!(data["state"], "DONE");
    assert!(data["finishTime"].is_string());
    match change {
        Change::Approved { results, .. } => {
            let no = &results["insured_no"];
            assert!(
                no.len() == 14
                    && no.starts_with("YB")
                    && no[2..].chars().all(|c| c.is_ascii_digit()),
                "{no}"
            );
        }
        other => panic!("{other:?}"),
    }
    // A repeated confirm answers 0 and changes nothing.
    let again = kit
        .send(&kit.render(
            "newborn.json",
            ITEM,
            "complete",
            Some(&enrol_no),
            Some("newborn.json"),
        ))
        .await;
    assert_eq!(code(&again), 0);
    quiet(&kit).await;
    let (data, change) = query(&kit, &s).await;
    assert_eq!(data["state"], "DONE");
    assert!(matches!(change, Change::Approved { .. }));
    // Cancelling a finished enrolment: 2001 已办结, read as finished.
    let w = kit
        .send(&kit.render("newborn.json", ITEM, "withdraw", Some(&enrol_no), None))
        .await;
    assert_eq!((code(&w), message(&w).as_str()), (2001, "已办结"));
    assert_eq!(w.outcome(ITEM, OpKind::Withdraw), Outcome::Finished);

    // A rare (non-BMP) character travels inside the encrypted UTF-8 JSON.
    let a = kit
        .send(&kit.render("newborn-no-father.json", ITEM, "submit", None, None))
        .await;
    reference(&a, OpKind::Prereview);
    let (data, _) = next(&kit).await;
    assert_eq!(data["sblsh"], "410225-20260316-000124");

    // One-step apply when the hukou results are known.
    let s = case("王子涵", "410225-20260316-000200");
    let a = kit
        .send(&kit.render_value(&s, ITEM, "submit", None, Some("newborn.json")))
        .await;
    assert_eq!(
        open(&kit.render_value(&s, ITEM, "submit", None, Some("newborn.json")))
            .0
            .lines()
            .next(),
        Some("POST /api/enrol/apply HTTP/1.1")
    );
    let applied = reference(&a, OpKind::Submit);
    assert_ne!(applied, enrol_no);
    let (data, change) = next(&kit).await;
    assert_eq!(data["sblsh"], "410225-20260316-000200");
    assert!(matches!(change, Change::Accepted { .. }));
    assert!(matches!(next(&kit).await.1, Change::Approved { .. }));

    // What the system received, decoded; what it counted.
    let received = kit.sim_get("medicare", "/_sim/received").await;
    let ops: Vec<&str> = received
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["operation"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["precheck", "confirm", "precheck", "apply"]);
    assert_eq!(received[0]["body"]["insuredName"], "王子涵");
    assert_eq!(received[0]["body"]["guardian"]["idType"], "111");
    assert_eq!(received[1]["body"]["citizenId"], "410225202603150017");
    assert_eq!(received[2]["body"]["insuredName"], "王𠈌");
    let stats = kit.sim_get("medicare", "/_sim/stats").await;
    assert_eq!(stats["medicare"]["submits"], 3);
    assert_eq!(stats["medicare"]["duplicates"], 2);
    assert_eq!(stats["medicare"]["queries"], 2);
    assert_eq!(stats["medicare"]["follow_ups"], 1);
    kit.stop().await;
}

#[tokio::test]
async fn confirm_without_a_matching_pre_check_is_refused() {
    let kit = Kit::start("medicare-confirm").await;
    // An enrolNo the system never issued: 4004.
    let c = kit
        .send(&kit.render(
            "newborn.json",
            ITEM,
            "complete",
            Some("YB2026031699999"),
            Some("newborn.json"),
        ))
        .await;
    assert_eq!(code(&c), 4004);
    assert_eq!(c.outcome(ITEM, OpKind::Complete), Outcome::NotFound);
    // An enrolment made by a one-step apply is no pre-check: 2001 naming enrolNo.
    let a = kit
        .send(&kit.render("newborn.json", ITEM, "submit", None, Some("newborn.json")))
        .await;
    let enrol_no = reference(&a, OpKind::Submit);
    let c = kit
        .send(&kit.render(
            "newborn.json",
            ITEM,
            "complete",
            Some(&enrol_no),
            Some("newborn.json"),
        ))
        .await;
    assert_eq!(code(&c), 2001);
    assert!(message(&c).contains("enrolNo"), "{}", c.text());
    assert!(matches!(
        c.outcome(ITEM, OpKind::Complete),
        Outcome::Permanent { .. }
    ));
    // A pre-check of another case does not match this case's sblsh.
    let s = case("王子涵", "410225-20260316-000300");
    let p = kit
        .send(&kit.render_value(&s, ITEM, "submit", None, None))
        .await;
    let other = reference(&p, OpKind::Prereview);
    let c = kit
        .send(&kit.render(
            "newborn.json",
            ITEM,
            "complete",
            Some(&other),
            Some("newborn.json"),
        ))
        .await;
    assert_eq!(code(&c), 2001);
    assert!(message(&c).contains("sblsh"), "{}", c.text());
    kit.stop().await;
}

#[tokio::test]
async fn bad_envelopes_are_refused_with_their_codes() {
    let kit = Kit::start("medicare-envelope").await;
    let raw = kit.render("newborn.json", ITEM, "submit", None, None);
    let (head, env, business) = open(&raw);
    let enc = env["encData"].as_str().unwrap();
    // A signature over other data: 1001 (do not retry).
    let mut bad = env.clone();
    bad["signData"] = sm3("something else").into();
    let a = kit.send(format!("{head}\r\n\r\n{bad}").as_bytes()).await;
    assert_eq!(code(&a), 1001);
    assert!(matches!(
        a.outcome(ITEM, OpKind::Prereview),
        Outcome::Permanent { .. }
    ));
    // The signature in upper case is not the documented lowercase hex: 1001.
    let mut upper = env.clone();
    upper["signData"] = env["signData"].as_str().unwrap().to_uppercase().into();
    assert_eq!(
        code(&kit.send(format!("{head}\r\n\r\n{upper}").as_bytes()).await),
        1001
    );
    // An unknown app id, correctly signed: 1001.
    assert_eq!(
        code(&kit.send(&envelope(&head, "someone", &now_ts(), enc)).await),
        1001
    );
    // A timestamp 10 minutes old, correctly signed: 1003, which the gateway retries.
    let old = (chrono::Utc::now() - chrono::Duration::minutes(10))
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y%m%d%H%M%S")
        .to_string();
    let a = kit.send(&envelope(&head, "yjs-gateway", &old, enc)).await;
    assert_eq!(code(&a), 1003);
    assert!(matches!(
        a.outcome(ITEM, OpKind::Prereview),
        Outcome::Retry { .. }
    ));
    // Four minutes off is within the window.
    let near = (chrono::Utc::now() + chrono::Duration::minutes(4))
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y%m%d%H%M%S")
        .to_string();
    let a = kit.send(&envelope(&head, "yjs-gateway", &near, enc)).await;
    assert_eq!(code(&a), 0, "{}", a.text());
    // Data that is not SM4 under the key, correctly signed: 1002.
    let a = kit
        .send(&envelope(
            &head,
            "yjs-gateway",
            &now_ts(),
            "bm90IGVuY3J5cHRlZA==",
        ))
        .await;
    assert_eq!(code(&a), 1002);
    let garbage = B64.encode([7u8; 32]);
    assert_eq!(
        code(
            &kit.send(&envelope(&head, "yjs-gateway", &now_ts(), &garbage))
                .await
        ),
        1002
    );
    // The business JSON in GBK instead of UTF-8: 1002.
    let plain = business.to_string();
    let (gbk, _, _) = encoding_rs::GBK.encode(&plain);
    let a = kit
        .send(&envelope(&head, "yjs-gateway", &now_ts(), &encrypt(&gbk)))
        .await;
    assert_eq!(code(&a), 1002, "{}", a.text());
    // An envelope declared in another charset: 2001 naming the charset.
    let gbk_head = head.replace("charset=UTF-8", "charset=GBK");
    let a = kit.send(&seal(&gbk_head, &business)).await;
    assert_eq!(code(&a), 2001);
    assert!(message(&a).contains("charset"));
    // encType other than SM4: 2001 naming it.
    let mut aes = env.clone();
    aes["encType"] = "AES".into();
    let a = kit.send(format!("{head}\r\n\r\n{aes}").as_bytes()).await;
    assert_eq!(code(&a), 2001);
    assert!(message(&a).contains("encType"));
    let violations = kit.sim_get("medicare", "/_sim/violations").await;
    assert_eq!(violations.as_array().unwrap().len(), 9);
    kit.stop().await;
}

#[tokio::test]
async fn wrong_and_missing_fields_are_refused_naming_them() {
    let kit = Kit::start("medicare-fields").await;
    let s = fixture("newborn.json");
    type Edit = Box<dyn FnOnce(&mut Value)>;
    let cases: Vec<(&str, Option<&str>, Edit, &str)> = vec![
        (
            "submit",
            None,
            Box::new(|b| {
                b["guardian"].as_object_mut().unwrap().remove("phone");
            }),
            "guardian.phone",
        ),
        (
            "submit",
            None,
            Box::new(|b| {
                b.as_object_mut().unwrap().remove("sblsh");
            }),
            "sblsh",
        ),
        (
            "submit",
            None,
            Box::new(|b| {
                b.as_object_mut().unwrap().remove("address");
            }),
            "address",
        ),
        (
            "submit",
            None,
            Box::new(|b| b["insuredName"] = "".into()),
            "insuredName",
        ),
        (
            "submit",
            None,
            Box::new(|b| b["gender"] = "M".into()),
            "gender",
        ),
        (
            "submit",
            None,
            Box::new(|b| b["gender"] = "3".into()),
            "gender",
        ),
        (
            "submit",
            None,
            Box::new(|b| b["nation"] = "60".into()),
            "nation",
        ),
        (
            "submit",
            None,
            Box::new(|b| b["xzqh"] = "41022".into()),
            "xzqh",
        ),
        (
            "submit",
            None,
            Box::new(|b| b["birthDate"] = "2026/03/15".into()),
            "birthDate",
        ),
        (
            "submit",
            None,
            Box::new(|b| b["guardian"]["idType"] = "01".into()),
            "guardian.idType",
        ),
        (
            "submit",
            None,
            Box::new(|b| b["guardian"]["idNo"] = "410225199506120023".into()),
            "guardian.idNo",
        ),
        (
            "submit",
            None,
            Box::new(|b| b["payYear"] = "2026".into()),
            "payYear",
        ),
        (
            "submit",
            None,
            Box::new(|b| b["payYear"] = json!(2026.5)),
            "payYear",
        ),
        (
            "submit",
            None,
            Box::new(|b| b["guardian"] = "李娜".into()),
            "guardian",
        ),
        (
            "submit",
            Some("newborn.json"),
            Box::new(|b| {
                b.as_object_mut().unwrap().remove("hukouNo");
            }),
            "hukouNo",
        ),
        (
            "submit",
            Some("newborn.json"),
            Box::new(|b| b["citizenId"] = "410225202603150018".into()),
            "citizenId",
        ),
        (
            "query",
            None,
            Box::new(|b| {
                b.as_object_mut().unwrap().remove("sblsh");
            }),
            "sblsh",
        ),
    ];
    for (op, results, edit, field) in cases {
        let a = kit.send(&edited(&kit, &s, op, results, edit)).await;
        assert_eq!(code(&a), 2001, "{field}: {}", a.text());
        assert!(message(&a).contains(field), "{field}: {}", a.text());
        let kind = if op == "query" {
            OpKind::Query
        } else {
            OpKind::Submit
        };
        assert!(matches!(a.outcome(ITEM, kind), Outcome::Permanent { .. }));
    }
    // A passport (GA/T 414) needs no GB 11643 check; the edited pre-check is accepted.
    let a = kit
        .send(&edited(&kit, &s, "submit", None, |b| {
            b["guardian"]["idType"] = "414".into();
            b["guardian"]["idNo"] = "E12345678".into();
        }))
        .await;
    assert_eq!(code(&a), 0, "{}", a.text());
    // Cancel needs its reason.
    let raw = kit.render(
        "newborn.json",
        ITEM,
        "withdraw",
        Some("YB2026031600001"),
        None,
    );
    let (head, _, mut business) = open(&raw);
    business.as_object_mut().unwrap().remove("reason");
    let a = kit.send(&seal(&head, &business)).await;
    assert_eq!(code(&a), 2001);
    assert!(message(&a).contains("reason"));
    assert_eq!(
        kit.sim_get("medicare", "/_sim/received")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    kit.stop().await;
}

/// Waits for the callback that ends `case_id`'s application (rejected, denied, approved), giving
/// its state and change.
async fn final_callback(kit: &Kit) -> (Value, Change) {
    loop {
        let (data, change) = next(kit).await;
        if matches!(
            change,
            Change::Rejected { .. } | Change::Denied { .. } | Change::Approved { .. }
        ) {
            return (data, change);
        }
    }
}

#[tokio::test]
async fn simulator_rules_steer_the_outcome() {
    let kit = Kit::start("medicare-rules").await;
    let cases = [
        ("王驳回", "REJECTED"),
        ("王不予", "FAILED"),
        ("王驳回:hrss", "DONE"),
        ("王不予:medicare", "FAILED"),
    ];
    for (i, (name, want)) in cases.iter().enumerate() {
        let s = case(name, &format!("410225-20260316-10{i}"));
        let a = kit
            .send(&kit.render_value(&s, ITEM, "submit", None, Some("newborn.json")))
            .await;
        reference(&a, OpKind::Submit);
        let (data, change) = final_callback(&kit).await;
        assert_eq!(data["state"], *want, "{name}");
        match change {
            Change::Rejected { reason } => assert_eq!(reason, "材料不符合要求"),
            Change::Denied {
                reason,
                accepted_at,
            } => {
                assert_eq!(reason, "不符合许可条件");
                assert!(accepted_at.is_some());
            }
            Change::Approved { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    // 驳回 during the pre-check is the pre-check failure; a confirm afterwards is refused.
    let s = case("王驳回", "410225-20260316-110");
    let a = kit
        .send(&kit.render_value(&s, ITEM, "submit", None, None))
        .await;
    let enrol_no = reference(&a, OpKind::Prereview);
    let (data, change) = next(&kit).await;
    assert_eq!(data["state"], "PRECHECK_FAILED");
    assert_eq!(
        change,
        Change::Rejected {
            reason: "材料不符合要求".into()
        }
    );
    let c = kit
        .send(&kit.render_value(&s, ITEM, "complete", Some(&enrol_no), Some("newborn.json")))
        .await;
    assert_eq!(code(&c), 2001);
    // 失联: HTTP 503 every time; 抖动: twice, then success, for the pre-check and the confirm.
    let s = case("王失联", "410225-20260316-120");
    for _ in 0..3 {
        let a = kit
            .send(&kit.render_value(&s, ITEM, "submit", None, None))
            .await;
        assert_eq!(a.status, 503);
        assert!(matches!(
            a.outcome(ITEM, OpKind::Prereview),
            Outcome::Retry { .. }
        ));
    }
    let s = case("王抖动", "410225-20260316-121");
    let mut got = Vec::new();
    for _ in 0..3 {
        let a = kit
            .send(&kit.render_value(&s, ITEM, "submit", None, None))
            .await;
        got.push(a.outcome(ITEM, OpKind::Prereview));
    }
    assert!(matches!(got[0], Outcome::Retry { .. }));
    assert!(matches!(got[1], Outcome::Retry { .. }));
    let Outcome::Ok {
        reference: Some(enrol_no),
    } = got[2].clone()
    else {
        panic!("{:?}", got[2])
    };
    assert_eq!(next(&kit).await.0["state"], "PRECHECK_PASSED");
    let mut got = Vec::new();
    for _ in 0..3 {
        let a = kit
            .send(&kit.render_value(&s, ITEM, "complete", Some(&enrol_no), Some("newborn.json")))
            .await;
        got.push(matches!(
            a.outcome(ITEM, OpKind::Complete),
            Outcome::Ok { .. }
        ));
    }
    assert_eq!(got, [false, false, true]);
    assert!(matches!(
        final_callback(&kit).await.1,
        Change::Approved { .. }
    ));
    // 搁置 never accepts; 缓办 accepts and never decides.
    for (i, (name, want)) in [("王搁置", "RECEIVED"), ("王缓办", "ACCEPTED")]
        .iter()
        .enumerate()
    {
        let s = case(name, &format!("410225-20260316-13{i}"));
        kit.send(&kit.render_value(&s, ITEM, "submit", None, Some("newborn.json")))
            .await;
        let (data, change) = query(&kit, &s).await;
        assert_eq!(data["state"], *want, "{name}");
        match *want {
            "RECEIVED" => assert_eq!(change, Change::Dispatched),
            _ => assert!(matches!(change, Change::Accepted { .. })),
        }
    }
    kit.stop().await;
}

#[tokio::test]
async fn cancel_stops_an_open_enrolment() {
    let kit = Kit::start("medicare-cancel").await;
    let s = case("王缓办", "410225-20260316-500");
    let a = kit
        .send(&kit.render_value(&s, ITEM, "submit", None, Some("newborn.json")))
        .await;
    let enrol_no = reference(&a, OpKind::Submit);
    assert!(matches!(next(&kit).await.1, Change::Accepted { .. }));
    let w = kit
        .send(&kit.render_value(&s, ITEM, "withdraw", Some(&enrol_no), None))
        .await;
    assert_eq!(code(&w), 0, "{}", w.text());
    assert!(matches!(
        w.outcome(ITEM, OpKind::Withdraw),
        Outcome::Ok { .. }
    ));
    let (data, change) = next(&kit).await;
    assert_eq!(data["state"], "CANCELLED");
    assert_eq!(
        change,
        Change::Withdrawn {
            reason: Some("申请人主动撤回".into())
        }
    );
    // A repeated cancel answers 0 without a new callback; the query shows CANCELLED.
    let again = kit
        .send(&kit.render_value(&s, ITEM, "withdraw", Some(&enrol_no), None))
        .await;
    assert_eq!(code(&again), 0);
    quiet(&kit).await;
    let (data, change) = query(&kit, &s).await;
    assert_eq!(data["state"], "CANCELLED");
    assert!(matches!(change, Change::Withdrawn { .. }));
    // Unknown enrolment: 4004; an unknown case's query: 4004.
    let unknown = kit
        .send(&kit.render_value(&s, ITEM, "withdraw", Some("YB2026031699999"), None))
        .await;
    assert_eq!(code(&unknown), 4004);
    assert_eq!(unknown.outcome(ITEM, OpKind::Withdraw), Outcome::NotFound);
    let q = kit
        .send(&kit.render_value(
            &case("王五", "410225-20260316-599"),
            ITEM,
            "query",
            None,
            None,
        ))
        .await;
    assert_eq!(q.outcome(ITEM, OpKind::Query), Outcome::NotFound);
    // A pre-checked enrolment can be cancelled before its confirm; the confirm is then refused.
    let s = case("王子涵", "410225-20260316-501");
    let p = kit
        .send(&kit.render_value(&s, ITEM, "submit", None, None))
        .await;
    let enrol_no = reference(&p, OpKind::Prereview);
    assert_eq!(next(&kit).await.0["state"], "PRECHECK_PASSED");
    let w = kit
        .send(&kit.render_value(&s, ITEM, "withdraw", Some(&enrol_no), None))
        .await;
    assert_eq!(code(&w), 0);
    assert_eq!(next(&kit).await.0["state"], "CANCELLED");
    let c = kit
        .send(&kit.render_value(&s, ITEM, "complete", Some(&enrol_no), Some("newborn.json")))
        .await;
    assert_eq!(code(&c), 2001);
    let stats = kit.sim_get("medicare", "/_sim/stats").await;
    assert_eq!(stats["medicare"]["withdrawals"], 2);
    kit.stop().await;
}

#[tokio::test]
async fn unanswered_callbacks_are_repeated_five_times() {
    let kit = Kit::start("medicare-repeat").await;
    kit.refuse_callbacks
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let s = case("王缓办", "410225-20260316-400");
    kit.send(&kit.render_value(&s, ITEM, "submit", None, Some("newborn.json")))
        .await;
    // ACCEPTED, never decided: one try and five repeats of the same signed envelope.
    let first = kit.next_callback(5).await;
    assert_eq!(read_callback(&first).0["state"], "ACCEPTED");
    for _ in 0..5 {
        let again = kit.next_callback(5).await;
        assert_eq!(again.body, first.body);
    }
    quiet(&kit).await;
    kit.stop().await;
}
