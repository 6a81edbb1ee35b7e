//! The health simulator against its interface document: the gateway's requests are accepted,
//! bad ones refused with the documented codes, duplicates answered as duplicates, the simulator
//! rules produce their outcomes, and callbacks arrive signed and are repeated when unanswered.

mod simkit;
mod support;

use onething::mapping::answer::Outcome;
use onething::mapping::operation::OpKind;
use onething::mapping::report::Change;
use simkit::Kit;
use support::*;

fn with_name(name: &str) -> serde_json::Value {
    let mut s = fixture("newborn.json");
    s["form"]["child"]["name"] = name.into();
    s
}

/// Reads a callback with the gateway's own mapping: verified, then turned into a report.
fn read_callback(cb: &simkit::Callback) -> Change {
    cb.report().change
}

#[tokio::test]
async fn gateway_requests_are_accepted_and_results_come_back() {
    let kit = Kit::start("health-ok").await;
    let a = kit
        .send(&kit.render("newborn.json", "birth-cert", "submit", None, None))
        .await;
    let Outcome::Ok {
        reference: Some(apply_no),
    } = a.outcome("birth-cert", OpKind::Submit)
    else {
        panic!("{}", a.text())
    };
    assert!(apply_no.starts_with("CS"), "{apply_no}");
    // Accepted, then issued with a licence number of the documented shape.
    assert!(matches!(
        read_callback(&kit.next_callback(5).await),
        Change::Accepted {
            accepted_at: Some(_)
        }
    ));
    match read_callback(&kit.next_callback(5).await) {
        Change::Approved { results, .. } => {
            let no = &results["licence_no"];
            assert!(
                no.len() == 10
                    && no.chars().next().unwrap().is_ascii_uppercase()
                    && no[1..].chars().all(|c| c.is_ascii_digit()),
                "{no}"
            );
        }
        other => panic!("{other:?}"),
    }
    // The query shows the same; the received log has the decoded request.
    let q = kit
        .send(&kit.render("newborn.json", "birth-cert", "query", None, None))
        .await;
    assert_eq!(q.json()["data"]["status"], "ISSUED");
    let received = kit.sim_get("health", "/_sim/received").await;
    assert_eq!(received[0]["body"]["baby"]["name"], "王子涵");
    // A second push of the same case is a duplicate with the same reference.
    let d = kit
        .send(&kit.render("newborn.json", "birth-cert", "submit", None, None))
        .await;
    assert_eq!(
        d.outcome("birth-cert", OpKind::Submit),
        Outcome::Duplicate {
            reference: Some(apply_no.clone())
        }
    );
    let stats = kit.sim_get("health", "/_sim/stats").await;
    assert_eq!(stats["health"]["submits"], 1);
    assert_eq!(stats["health"]["duplicates"], 1);
    // Withdrawing a finished application: 4009.
    let w = kit
        .send(&kit.render(
            "newborn.json",
            "birth-cert",
            "withdraw",
            Some(&apply_no),
            None,
        ))
        .await;
    assert_eq!(w.outcome("birth-cert", OpKind::Withdraw), Outcome::Finished);
    kit.stop().await;
}

#[tokio::test]
async fn bad_signature_missing_field_and_wrong_code_are_refused() {
    let kit = Kit::start("health-bad").await;
    let raw = kit.render("newborn.json", "birth-cert", "submit", None, None);
    // A signature over other bytes.
    let tampered = String::from_utf8(raw.clone())
        .unwrap()
        .replace("王子涵", "王子寒")
        .into_bytes();
    let a = kit.send(&tampered).await;
    assert_eq!(a.json()["code"], "1001");
    // The same nonce twice: 1002.
    kit.send(&raw).await;
    assert_eq!(kit.send(&raw).await.json()["code"], "1002");
    // A missing required field and a wrong code value, each signed correctly: 2001 naming it.
    // (The gateway never sends a wrong code; edit a correct request and sign it again.)
    let raw = kit.render("newborn.json", "birth-cert", "submit", None, None);
    let text = String::from_utf8(raw)
        .unwrap()
        .replace("\"sex\":\"M\"", "\"sex\":\"X\"");
    let resigned = resign(&text);
    let a = kit.send(resigned.as_bytes()).await;
    assert_eq!(a.json()["code"], "2001");
    assert!(a.json()["msg"].as_str().unwrap().contains("baby.sex"));
    let text = String::from_utf8(kit.render("newborn.json", "birth-cert", "submit", None, None))
        .unwrap()
        .replace("\"contactPhone\":\"13803780001\",", "");
    let a = kit.send(resign(&text).as_bytes()).await;
    assert_eq!(a.json()["code"], "2001");
    assert!(a.json()["msg"].as_str().unwrap().contains("contactPhone"));
    let violations = kit.sim_get("health", "/_sim/violations").await;
    assert!(violations.as_array().unwrap().len() >= 4);
    kit.stop().await;
}

/// Re-signs an edited raw request with a fresh nonce (so only the edit is wrong).
fn resign(raw: &str) -> String {
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let ts = chrono::Utc::now().timestamp_millis().to_string();
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let msg = format!(
        "yjs-gateway\n{ts}\n{nonce}\n{}",
        hex::encode(Sha256::digest(body.as_bytes()))
    );
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(cred("ONETHING_DEPT_HEALTH_SECRET").as_bytes())
            .unwrap();
    mac.update(msg.as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    let head: Vec<String> = head
        .split("\r\n")
        .map(|l| {
            if l.starts_with("X-Timestamp:") {
                format!("X-Timestamp: {ts}")
            } else if l.starts_with("X-Nonce:") {
                format!("X-Nonce: {nonce}")
            } else if l.starts_with("X-Signature:") {
                format!("X-Signature: {sig}")
            } else {
                l.to_string()
            }
        })
        .collect();
    format!("{}\r\n\r\n{body}", head.join("\r\n"))
}

#[tokio::test]
async fn simulator_rules_steer_the_outcome() {
    let kit = Kit::start("health-rules").await;
    let cases = [
        ("王驳回", Some("rejected")),
        ("王不予", Some("denied")),
        ("王驳回:hrss", Some("approved")),
    ];
    for (i, (name, want)) in cases.iter().enumerate() {
        let mut s = with_name(name);
        s["case_id"] = format!("410225-20260316-10{i}").into();
        let a = kit
            .send(&kit.render_value(&s, "birth-cert", "submit", None, None))
            .await;
        assert!(
            matches!(a.outcome("birth-cert", OpKind::Submit), Outcome::Ok { .. }),
            "{}",
            a.text()
        );
        let mut last = None;
        while last.as_ref().is_none_or(|c: &Change| {
            !matches!(
                c,
                Change::Rejected { .. } | Change::Denied { .. } | Change::Approved { .. }
            )
        }) {
            last = Some(read_callback(&kit.next_callback(5).await));
        }
        let got = match last.unwrap() {
            Change::Rejected { reason } => {
                assert_eq!(reason, "材料不符合要求");
                "rejected"
            }
            Change::Denied { reason, .. } => {
                assert_eq!(reason, "不符合许可条件");
                "denied"
            }
            _ => "approved",
        };
        assert_eq!(Some(got), *want, "{name}");
    }
    // 失联: a server error every time; 抖动: twice, then success.
    let mut s = with_name("王失联");
    s["case_id"] = "410225-20260316-200".into();
    for _ in 0..3 {
        let a = kit
            .send(&kit.render_value(&s, "birth-cert", "submit", None, None))
            .await;
        assert!(
            matches!(
                a.outcome("birth-cert", OpKind::Submit),
                Outcome::Retry { .. }
            ),
            "{}",
            a.status
        );
    }
    let mut s = with_name("王抖动");
    s["case_id"] = "410225-20260316-201".into();
    let outcomes: Vec<bool> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            let a = kit
                .send(&kit.render_value(&s, "birth-cert", "submit", None, None))
                .await;
            v.push(matches!(
                a.outcome("birth-cert", OpKind::Submit),
                Outcome::Ok { .. }
            ));
        }
        v
    };
    assert_eq!(outcomes, [false, false, true]);
    kit.stop().await;
}

#[tokio::test]
async fn shelved_and_delayed_cases_stop_where_the_rules_say() {
    let kit = Kit::start("health-shelve").await;
    for (i, (name, want)) in [("王搁置", "RECEIVED"), ("王缓办", "ACCEPTED")]
        .iter()
        .enumerate()
    {
        let mut s = with_name(name);
        s["case_id"] = format!("410225-20260316-30{i}").into();
        kit.send(&kit.render_value(&s, "birth-cert", "submit", None, None))
            .await;
        let q = kit
            .send(&kit.render_value(&s, "birth-cert", "query", None, None))
            .await;
        assert_eq!(q.json()["data"]["status"], *want, "{name}");
    }
    kit.stop().await;
}

#[tokio::test]
async fn unanswered_callbacks_are_repeated_five_times() {
    let kit = Kit::start("health-repeat").await;
    kit.refuse_callbacks
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut s = with_name("王缓办");
    s["case_id"] = "410225-20260316-400".into();
    kit.send(&kit.render_value(&s, "birth-cert", "submit", None, None))
        .await;
    // ACCEPTED, then never decided: one try and five repeats of the same body.
    let first = kit.next_callback(5).await;
    for _ in 0..5 {
        let again = kit.next_callback(5).await;
        assert_eq!(again.body, first.body);
    }
    let extra = tokio::time::timeout(std::time::Duration::from_millis(300), async {
        kit.callbacks.lock().await.recv().await
    })
    .await;
    assert!(extra.is_err(), "no seventh delivery");
    kit.stop().await;
}

#[tokio::test]
async fn withdrawal_of_an_open_application_is_reported() {
    let kit = Kit::start("health-withdraw").await;
    let mut s = with_name("王缓办");
    s["case_id"] = "410225-20260316-500".into();
    let a = kit
        .send(&kit.render_value(&s, "birth-cert", "submit", None, None))
        .await;
    let Outcome::Ok { reference: Some(r) } = a.outcome("birth-cert", OpKind::Submit) else {
        panic!()
    };
    assert!(matches!(
        read_callback(&kit.next_callback(5).await),
        Change::Accepted { .. }
    ));
    let w = kit
        .send(&kit.render_value(&s, "birth-cert", "withdraw", Some(&r), None))
        .await;
    assert_eq!(
        w.outcome("birth-cert", OpKind::Withdraw),
        Outcome::Ok { reference: None }
    );
    assert!(matches!(
        read_callback(&kit.next_callback(5).await),
        Change::Withdrawn { .. }
    ));
    let unknown = kit
        .send(&kit.render_value(&s, "birth-cert", "withdraw", Some("CS000"), None))
        .await;
    assert_eq!(unknown.json()["code"], "4004");
    kit.stop().await;
}
