//! Withdrawals, duplicates and bad input through the whole chain: nothing is lost, nothing reaches a
//! department twice or at all when it should not, and every refusal says why.

mod stack;
mod support;

use lapin::types::AMQPValue;
use serde_json::{Value, json};
use stack::{Stack, kinds};
use support::fixture;

fn header(h: &lapin::types::FieldTable, name: &str) -> String {
    match h.inner().get(name) {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_withdrawal_midway_withdraws_what_is_open() {
    let stack = Stack::start("withdraw").await;
    // The hukou is never accepted at the police (搁置), so the case is open when withdrawn.
    let mut s = fixture("newborn.json");
    s["form"]["child"]["name"] = "王搁置:police".into();
    stack.submit(&s).await;
    let case_id = "410225-20260316-000123";
    stack
        .events_until(case_id, 30, |ev| {
            ev.iter()
                .any(|e| e["type"] == "item.dispatched" && e["item"] == "hukou")
        })
        .await;
    let w = json!({"schema": "onething.withdrawal/v1", "case_id": case_id, "reason": "申请人主动撤回", "requested_at": "2026-03-16T10:00:00+08:00"});
    stack.publish("withdrawal", w.to_string().as_bytes()).await;
    let ev = stack.completed(case_id).await;
    let k = kinds(&ev);
    assert!(k.contains(&"item.withdrawn hukou".to_string()), "{k:#?}");
    assert!(
        k.contains(&"item.withdrawn social-card".to_string()),
        "{k:#?}"
    );
    let withdrawn = ev.iter().find(|e| e["type"] == "case.withdrawn").unwrap();
    assert_eq!(withdrawn["detail"]["reason"], "申请人主动撤回");
    assert!(
        k.iter().position(|e| e == "case.withdrawn") < k.iter().position(|e| e == "case.completed")
    );
    let finals = &ev.last().unwrap()["detail"]["items"];
    assert_eq!(
        finals["birth-cert"], "approved",
        "a final item stays as it is"
    );
    // The police got the withdrawal; a second withdrawal is ignored.
    assert_eq!(stack.sim_stats().await["police"]["withdrawals"], 1);
    stack.publish("withdrawal", w.to_string().as_bytes()).await;
    // An unknown case's withdrawal is dead-lettered.
    let unknown = json!({"schema": "onething.withdrawal/v1", "case_id": "nope-1", "reason": "r", "requested_at": "2026-03-16T10:00:00+08:00"});
    stack
        .publish("withdrawal", unknown.to_string().as_bytes())
        .await;
    let dead = stack.dead_letters(1).await;
    assert_eq!(header(&dead[0].1, "x-onething-reason"), "unknown case");
    assert_eq!(
        stack.events_of(case_id).len(),
        ev.len(),
        "no event for the repeated withdrawal"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicates_and_bad_input_are_handled_without_contacting_anyone_twice() {
    let stack = Stack::start("input").await;
    let s = fixture("restaurant.json");
    stack.submit(&s).await;
    stack.submit(&s).await; // the same again: acked, nothing else
    let mut conflicting = s.clone();
    conflicting["form"]["shop"]["name"] = "另一家".into();
    stack.submit(&conflicting).await;
    stack.publish("submission", b"{not json").await;
    let mut schema = fixture("newborn.json");
    schema["case_id"] = "410225-input-schema".into();
    schema.as_object_mut().unwrap().remove("channel");
    stack.submit(&schema).await;
    let mut digit = fixture("newborn.json");
    digit["case_id"] = "410225-input-digit".into();
    digit["form"]["mother"]["id_number"] = "410225199506120023".into();
    stack.submit(&digit).await;

    let ev = stack.completed("410225-20260317-000045").await;
    assert_eq!(
        ev.iter().filter(|e| e["type"] == "case.received").count(),
        1
    );
    let dead = stack.dead_letters(4).await;
    let reasons: Vec<String> = dead
        .iter()
        .map(|(_, h)| header(h, "x-onething-reason"))
        .collect();
    for want in ["conflicting duplicate", "not json", "invalid"] {
        assert!(reasons.iter().any(|r| r == want), "{reasons:?}");
    }
    assert_eq!(reasons.iter().filter(|r| *r == "invalid").count(), 2);
    // Dead letters keep the body unchanged and say why.
    let bad = dead
        .iter()
        .find(|(b, _)| b.as_slice() == b"{not json")
        .expect("body unchanged");
    assert_eq!(header(&bad.1, "x-onething-reason"), "not json");
    let digit_dead = dead
        .iter()
        .find(|(b, _)| String::from_utf8_lossy(b).contains("410225-input-digit"))
        .unwrap();
    let errors: Value = serde_json::from_str(&header(&digit_dead.1, "x-onething-errors")).unwrap();
    assert!(
        errors
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"] == "/form/mother/id_number"),
        "{errors}"
    );
    // Invalid submissions whose case id can be read are announced.
    let inv = stack
        .events_until("410225-input-digit", 30, |e| !e.is_empty())
        .await;
    assert_eq!(inv[0]["type"], "case.invalid");
    assert!(inv[0].get("seq").is_none());
    assert_eq!(
        inv[0]["detail"]["errors"][0]["path"],
        "/form/mother/id_number"
    );
    let inv = stack
        .events_until("410225-input-schema", 30, |e| !e.is_empty())
        .await;
    assert_eq!(inv[0]["type"], "case.invalid");
    // No department heard of the invalid ones; the restaurant's items were applied for once each.
    let stats = stack.sim_stats().await;
    assert_eq!(stats["health"]["submits"].as_u64().unwrap_or(0), 0);
    assert_eq!(
        stats["amr"]["submits"], 2,
        "licence and food permit, once each"
    );
    assert_eq!(stats["amr"]["duplicates"].as_u64().unwrap_or(0), 0);
    assert_eq!(stats["police"]["submits"], 1);
    assert_eq!(stats["tax"]["submits"], 1);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_callback_with_a_bad_signature_is_refused_and_changes_nothing() {
    let stack = Stack::start("badcb").await;
    let mut s = fixture("newborn.json");
    s["form"]["child"]["name"] = "王缓办:health".into();
    stack.submit(&s).await;
    let case_id = "410225-20260316-000123";
    stack
        .events_until(case_id, 30, |ev| {
            ev.iter().any(|e| e["type"] == "item.accepted")
        })
        .await;
    let birth_cert_events = |ev: &[Value]| ev.iter().filter(|e| e["item"] == "birth-cert").count();
    let before = birth_cert_events(&stack.events_of(case_id));
    let body = json!({"applyNo": "CS1", "sblsh": case_id, "status": "ISSUED", "reason": null, "certNo": "Q410000001",
                      "acceptTime": "2026-03-16 09:20:11", "finishTime": "2026-03-16 09:40:02"});
    let r = reqwest::Client::new()
        .post(format!("http://{}/callbacks/health", stack.daemon().addr))
        .header("X-App-Id", "health-system")
        .header(
            "X-Timestamp",
            chrono::Utc::now().timestamp_millis().to_string(),
        )
        .header("X-Nonce", "00112233445566778899aabbccddeeff")
        .header("X-Signature", "0".repeat(64))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.text().await.unwrap(), r#"{"code": "1001"}"#);
    // The forged ISSUED changed nothing: birth-cert is still only accepted, with no new event.
    let stored = onething::store::Store::open(&stack.config.database_url)
        .await
        .unwrap();
    let case = stored.load(case_id).await.unwrap().unwrap();
    assert_eq!(
        case.state.items["birth-cert"].status,
        onething::engine::Status::Accepted
    );
    assert_eq!(birth_cert_events(&stack.events_of(case_id)), before);
    let audit = stored.case_audit(case_id).await.unwrap();
    assert!(audit.iter().any(|a| a.record.kind == "callback"));
    stack.stop().await;
}
