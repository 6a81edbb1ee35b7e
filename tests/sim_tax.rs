//! The tax simulator against its interface document: the gateway's requests (every golden case,
//! re-rendered with the real clock) are accepted and read back by the gateway's mapping, bad ones
//! are refused with the documented answers, duplicates are answered as duplicates, the simulator
//! rules produce their outcomes (read through the query and the batch status query), and the 30
//! status calls a minute are enforced with 429 and `Retry-After`.

mod simkit;
mod support;

use onething::mapping::answer::{Outcome, RawAnswer};
use onething::mapping::context::{Clock, RenderInput, build};
use onething::mapping::operation::{OpKind, Request};
use onething::mapping::report::Change;
use onething::model::time::{cst, parse_rfc3339};
use onething::validate::ids::gb32100_valid;
use serde_json::{Value, json};
use simkit::{Answer, Kit};
use support::*;

const ITEM: &str = "tax-registration";
const USCC: &str = "91410225MA9G2XK36T";

/// tax-individual-prior.json (tax registration only) with its own case id and a business licence
/// in `prior_results` whose `company_name`, the taxpayer's name, steers the simulator.
fn with_name(case_id: &str, name: &str) -> Value {
    let mut s = fixture("tax-individual-prior.json");
    s["case_id"] = case_id.into();
    s["prior_results"] = json!({"business-licence": {
        "uscc": USCC, "licence_no": "410225000123456", "company_name": name}});
    s
}

/// Lower-case header names, as the mapping reads them.
fn lower(a: &Answer) -> Vec<(String, String)> {
    a.headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect()
}

/// The changes the gateway reads from a query (`kind` Query) or batch status query answer.
fn changes(a: &Answer, kind: OpKind, case_id: &str) -> Vec<(Option<String>, Change)> {
    let dept = &MAPPING.departments["tax"];
    let op = match kind {
        OpKind::BatchQuery => dept.batch_query.as_ref().unwrap(),
        k => op("tax", ITEM, k),
    };
    let headers = lower(a);
    let read = op.answer.read(&RawAnswer {
        status: a.status,
        headers: &headers,
        body: &a.body,
    });
    assert!(
        matches!(read.outcome, Outcome::Ok { .. }),
        "{}: {}",
        a.status,
        a.text()
    );
    let records = op.query_records(&read, case_id, ITEM, None).unwrap();
    records
        .iter()
        .map(|r| {
            let rep = dept
                .report
                .as_ref()
                .unwrap()
                .read(r, Some(ITEM), &[])
                .unwrap();
            (rep.reference, rep.change)
        })
        .collect()
}

/// The query by case, read by the gateway: the one change.
async fn query(kit: &Kit, s: &Value) -> Change {
    let a = kit
        .send(&kit.render_value(s, ITEM, "query", None, None))
        .await;
    let case_id = s["case_id"].as_str().unwrap();
    let mut c = changes(&a, OpKind::Query, case_id);
    assert_eq!(c.len(), 1);
    c.remove(0).1
}

/// The gateway's batch status query for `tickets`, rendered by its mapping.
fn batch_request(kit: &Kit, tickets: &[String]) -> Vec<u8> {
    let dept = &MAPPING.departments["tax"];
    let now = chrono::Utc::now().with_timezone(&cst());
    let ctx = build(RenderInput {
        case: onething::mapping::expr::to_value(&json!({})),
        item: ITEM,
        results: onething::mapping::expr::to_value(&json!({})),
        reference: None,
        refs: Some(tickets.to_vec()),
        reason: None,
        clock: Clock { now, real_now: now },
        nonce: NONCE,
        token: None,
        env: env_value("tax"),
        codes: MAPPING.codes_value.clone(),
    });
    let Request::Http(h) = dept.batch_query.as_ref().unwrap().render(ctx).unwrap() else {
        panic!("HTTP")
    };
    h.to_wire(&kit.sim.url("tax")).unwrap()
}

fn submitted(a: &Answer) -> String {
    match a.outcome(ITEM, OpKind::Submit) {
        Outcome::Ok { reference: Some(r) } => r,
        other => panic!("{other:?}: {} {}", a.status, a.text()),
    }
}

fn edit(raw: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(raw.to_vec()).unwrap();
    assert!(text.contains(from), "{from} not in {text}");
    text.replace(from, to).into_bytes()
}

#[tokio::test]
async fn gateway_requests_are_accepted_and_read_back() {
    let kit = Kit::start("tax-ok").await;
    // Golden: with accountant and invoice; and without accountant (licence in prior_results).
    let a = kit
        .send(&kit.render(
            "restaurant.json",
            ITEM,
            "submit",
            None,
            Some("restaurant.json"),
        ))
        .await;
    assert_eq!(a.status, 202);
    let t1 = submitted(&a);
    assert!(
        t1.len() == 16 && t1.starts_with("SW") && t1[2..].chars().all(|c| c.is_ascii_digit()),
        "{t1}"
    );
    let b = kit
        .send(&kit.render("tax-individual-prior.json", ITEM, "submit", None, None))
        .await;
    let t2 = submitted(&b);
    assert_ne!(t1, t2);

    // Golden query by case: completed (the kit's timing is immediate), with plausible results.
    let s = fixture("restaurant.json");
    match query(&kit, &s).await {
        Change::Approved {
            results,
            accepted_at,
        } => {
            assert_eq!(results["taxpayer_id"], USCC);
            assert!(gb32100_valid(&results["taxpayer_id"]));
            assert_eq!(results["tax_office"], "国家税务总局兰考县税务局");
            let at = parse_rfc3339(&accepted_at.unwrap()).unwrap();
            assert_eq!(at.offset().local_minus_utc(), 8 * 3600);
        }
        other => panic!("{other:?}"),
    }
    // The raw status object has every documented field, acceptedAt in ISO 8601 with offset.
    let raw = kit
        .send(&kit.render("restaurant.json", ITEM, "query", None, None))
        .await
        .json();
    let keys: Vec<&str> = raw
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "ticket",
            "requestId",
            "status",
            "reason",
            "acceptedAt",
            "taxpayerId",
            "taxOffice"
        ]
    );
    assert_eq!(raw["status"], "COMPLETED");
    assert!(parse_rfc3339(raw["acceptedAt"].as_str().unwrap()).is_some());

    // The batch status query the gateway polls with: both tickets, an unknown one left out.
    let a = kit
        .send(&batch_request(
            &kit,
            &[t1.clone(), "SW000".into(), t2.clone()],
        ))
        .await;
    let got = changes(&a, OpKind::BatchQuery, "");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0.as_deref(), Some(t1.as_str()));
    assert_eq!(got[1].0.as_deref(), Some(t2.as_str()));
    assert!(
        got.iter()
            .all(|(_, c)| matches!(c, Change::Approved { .. }))
    );

    // Status by ticket; 404 for an unknown one, and for an unknown case.
    let url = kit.sim.url("tax");
    let by_ticket = |t: String| {
        kit.http
            .get(format!("{url}/v1/new-taxpayers/{t}"))
            .header("X-Api-Key", "tax-test-key")
            .send()
    };
    let r = by_ticket(t2.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["requestId"], "410225-20260317-000047");
    assert_eq!(v["taxpayerId"], "92410225MA9G7H2X1J");
    assert_eq!(by_ticket("SW1".into()).await.unwrap().status(), 404);
    let mut other = fixture("restaurant.json");
    other["case_id"] = "410225-20260317-999999".into();
    let q = kit
        .send(&kit.render_value(&other, ITEM, "query", None, None))
        .await;
    assert_eq!(q.status, 404);
    assert_eq!(q.outcome(ITEM, OpKind::Query), Outcome::NotFound);

    // A second push of the same case: 409 with the same ticket.
    let d = kit
        .send(&kit.render(
            "restaurant.json",
            ITEM,
            "submit",
            None,
            Some("restaurant.json"),
        ))
        .await;
    assert_eq!(d.status, 409);
    assert_eq!(
        d.outcome(ITEM, OpKind::Submit),
        Outcome::Duplicate {
            reference: Some(t1.clone())
        }
    );

    // Golden cancel of a completed application: 409, read as finished.
    let w = kit
        .send(&kit.render("restaurant.json", ITEM, "withdraw", Some(&t1), None))
        .await;
    assert_eq!(w.status, 409);
    assert_eq!(w.outcome(ITEM, OpKind::Withdraw), Outcome::Finished);

    // What was received, decoded; the statistics.
    let received = kit.sim_get("tax", "/_sim/received").await;
    assert_eq!(received[0]["operation"], "submit");
    assert_eq!(
        received[0]["body"]["taxpayerName"],
        "兰考县焦桐餐饮有限公司"
    );
    assert_eq!(received[0]["body"]["accountant"]["name"], "孙悦");
    assert_eq!(received[1]["body"]["needInvoice"], false);
    let stats = kit.sim_get("tax", "/_sim/stats").await;
    assert_eq!(stats["tax"]["submits"], 2);
    assert_eq!(stats["tax"]["duplicates"], 1);
    assert_eq!(stats["tax"]["queries"], 6);
    kit.stop().await;
}

#[tokio::test]
async fn wrong_key_missing_field_wrong_value_and_charset_are_refused() {
    let kit = Kit::start("tax-bad").await;
    let raw = kit.render(
        "restaurant.json",
        ITEM,
        "submit",
        None,
        Some("restaurant.json"),
    );
    // A wrong key: 401, read as a permanent failure; on a status call too.
    let a = kit
        .send(&edit(&raw, "X-Api-Key: tax-test-key", "X-Api-Key: nope"))
        .await;
    assert_eq!(a.status, 401);
    assert!(matches!(
        a.outcome(ITEM, OpKind::Submit),
        Outcome::Permanent { .. }
    ));
    let q = kit.render("restaurant.json", ITEM, "query", None, None);
    let a = kit
        .send(&edit(&q, "X-Api-Key: tax-test-key", "X-Api-Key: nope"))
        .await;
    assert_eq!(a.status, 401);

    // One thing wrong at a time: 422 naming the field, read as permanent.
    let cases = [
        // A required field missing.
        (
            edit(&raw, "\"address\":\"河南省开封市兰考县中山街16号\",", ""),
            "address",
        ),
        (edit(&raw, "{\"name\":\"赵磊\",", "{"), "legalRep.name"),
        // A USCC whose check character is wrong (GB 32100).
        (edit(&raw, USCC, "91410225MA9G2XK36U"), "uscc"),
        // needInvoice must be a boolean.
        (
            edit(&raw, "\"needInvoice\":true", "\"needInvoice\":\"Y\""),
            "needInvoice",
        ),
        // An accountant without a name; an unknown field.
        (edit(&raw, "\"name\":\"孙悦\",", ""), "accountant.name"),
        (
            edit(&raw, "\"needInvoice\":true", "\"needInvoice\":true,\"x\":1"),
            "x",
        ),
    ];
    for (bad, field) in cases {
        let a = kit.send(&bad).await;
        assert_eq!(a.status, 422, "{field}: {}", a.text());
        let fields: Vec<String> = a.json()["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(fields, [field], "{}", a.text());
        match a.outcome(ITEM, OpKind::Submit) {
            Outcome::Permanent { error } => assert!(error.contains(field), "{error}"),
            other => panic!("{other:?}"),
        }
    }
    // Wrong charset: the same JSON in GBK, declared as GBK; and GBK bytes declared as UTF-8.
    let (line, headers, body) = split_http(&raw);
    let text = String::from_utf8(body).unwrap();
    let (gbk, _, _) = encoding_rs::GBK.encode(&text);
    for ct in [
        "application/json; charset=GBK",
        "application/json; charset=UTF-8",
    ] {
        let mut wire = format!("{line}\r\n");
        for (k, v) in &headers {
            let v = if k == "Content-Type" { ct } else { v.as_str() };
            wire.push_str(&format!("{k}: {v}\r\n"));
        }
        wire.push_str("\r\n");
        let mut wire = wire.into_bytes();
        wire.extend_from_slice(&gbk);
        let a = kit.send(&wire).await;
        assert_eq!(a.status, 422, "{ct}");
        assert_eq!(a.json()["errors"][0]["field"], "body");
    }
    // Nothing was taken; every refusal was kept.
    let stats = kit.sim_get("tax", "/_sim/stats").await;
    assert!(stats["tax"]["submits"].is_null() || stats["tax"]["submits"] == 0);
    let violations = kit.sim_get("tax", "/_sim/violations").await;
    assert_eq!(violations.as_array().unwrap().len(), 10);
    // Cancel without a reason: 422; of an unknown ticket: 404, read as not found.
    let w = kit.render("restaurant.json", ITEM, "withdraw", Some("SW0"), None);
    assert_eq!(
        kit.send(&w).await.outcome(ITEM, OpKind::Withdraw),
        Outcome::NotFound
    );
    let a = kit
        .send(&edit(
            &w,
            "{\"reason\":\"申请人主动撤回\"}",
            "{\"reason\":\"\"}",
        ))
        .await;
    assert_eq!(a.status, 422);
    kit.stop().await;
}

#[tokio::test]
async fn simulator_rules_steer_the_outcome() {
    let kit = Kit::start("tax-rules").await;
    let cases = [
        ("焦桐驳回餐饮", "rejected"),
        ("焦桐不予餐饮", "denied"),
        ("焦桐搁置餐饮", "dispatched"),
        ("焦桐缓办餐饮", "accepted"),
        ("焦桐驳回:hrss", "approved"),
        ("焦桐驳回:tax", "rejected"),
        ("焦桐抖动餐饮", "approved"),
    ];
    let mut tickets = Vec::new();
    for (i, (name, _)) in cases.iter().enumerate() {
        let s = with_name(&format!("410225-20260317-10{i}"), name);
        let raw = kit.render_value(&s, ITEM, "submit", None, None);
        let mut a = kit.send(&raw).await;
        // 抖动: the first two pushes fail with a server error, read as "retry".
        if name.contains("抖动") {
            for _ in 0..2 {
                assert_eq!(a.status, 503);
                assert!(matches!(
                    a.outcome(ITEM, OpKind::Submit),
                    Outcome::Retry { .. }
                ));
                a = kit.send(&raw).await;
            }
        }
        tickets.push(submitted(&a));
    }
    // One batch status query reads them all.
    let a = kit.send(&batch_request(&kit, &tickets)).await;
    let got = changes(&a, OpKind::BatchQuery, "");
    assert_eq!(got.len(), cases.len());
    for ((name, want), (_, change)) in cases.iter().zip(got) {
        let kind = match change {
            Change::Rejected { reason } => {
                assert_eq!(reason, "材料不符合要求");
                "rejected"
            }
            Change::Denied {
                reason,
                accepted_at,
            } => {
                assert_eq!(reason, "不符合许可条件");
                assert!(accepted_at.is_some());
                "denied"
            }
            Change::Dispatched => "dispatched",
            Change::Accepted { accepted_at } => {
                assert!(accepted_at.is_some());
                "accepted"
            }
            Change::Approved { .. } => "approved",
            other => panic!("{other:?}"),
        };
        assert_eq!(kind, *want, "{name}");
    }
    // 失联: a server error every time.
    let s = with_name("410225-20260317-200", "焦桐失联餐饮");
    for _ in 0..3 {
        let a = kit
            .send(&kit.render_value(&s, ITEM, "submit", None, None))
            .await;
        assert_eq!(a.status, 503);
        assert!(matches!(
            a.outcome(ITEM, OpKind::Submit),
            Outcome::Retry { .. }
        ));
    }
    assert_eq!(
        query(&kit, &with_name("410225-20260317-102", "x")).await,
        Change::Dispatched
    );
    kit.stop().await;
}

#[tokio::test]
async fn thirty_status_calls_a_minute_then_429_with_retry_after() {
    let kit = Kit::start("tax-rate").await;
    let a = kit
        .send(&kit.render(
            "restaurant.json",
            ITEM,
            "submit",
            None,
            Some("restaurant.json"),
        ))
        .await;
    let t = submitted(&a);
    let q = kit.render("restaurant.json", ITEM, "query", None, None);
    // Query by case and batch query count together; submissions and cancels do not.
    for i in 0..30 {
        let a = if i % 2 == 0 {
            kit.send(&q).await
        } else {
            kit.send(&batch_request(&kit, std::slice::from_ref(&t)))
                .await
        };
        assert_eq!(a.status, 200, "call {}", i + 1);
    }
    for raw in [q.clone(), batch_request(&kit, std::slice::from_ref(&t))] {
        let a = kit.send(&raw).await;
        assert_eq!(a.status, 429);
        let retry_after: u64 = simkit_header(&a, "retry-after").parse().unwrap();
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        match a.outcome(ITEM, OpKind::Query) {
            Outcome::Retry { after_secs, .. } => assert_eq!(after_secs, Some(retry_after)),
            other => panic!("{other:?}"),
        }
    }
    let d = kit
        .send(&kit.render(
            "restaurant.json",
            ITEM,
            "submit",
            None,
            Some("restaurant.json"),
        ))
        .await;
    assert_eq!(d.status, 409, "submissions are not status calls");
    let stats = kit.sim_get("tax", "/_sim/stats").await;
    assert_eq!(stats["tax"]["queries"], 30);
    kit.stop().await;
}

fn simkit_header(a: &Answer, name: &str) -> String {
    a.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn batch_of_more_than_100_tickets_is_refused() {
    let kit = Kit::start("tax-batch").await;
    let many: Vec<String> = (0..101).map(|i| format!("SW{i}")).collect();
    let a = kit.send(&batch_request(&kit, &many)).await;
    assert_eq!(a.status, 422);
    assert_eq!(a.json()["errors"][0]["field"], "tickets");
    let a = kit.send(&batch_request(&kit, &many[..100])).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json(), json!({"items": []}));
    kit.stop().await;
}

#[tokio::test]
async fn cancelling_an_open_application() {
    let kit = Kit::start("tax-cancel").await;
    let s = with_name("410225-20260317-300", "焦桐缓办餐饮");
    let t = submitted(
        &kit.send(&kit.render_value(&s, ITEM, "submit", None, None))
            .await,
    );
    assert!(matches!(query(&kit, &s).await, Change::Accepted { .. }));
    let w = kit
        .send(&kit.render_value(&s, ITEM, "withdraw", Some(&t), None))
        .await;
    assert_eq!(w.status, 204);
    assert_eq!(
        w.outcome(ITEM, OpKind::Withdraw),
        Outcome::Ok { reference: None }
    );
    assert_eq!(
        query(&kit, &s).await,
        Change::Withdrawn {
            reason: Some("申请人主动撤回".into())
        }
    );
    // A repeated cancel changes nothing and still answers 204.
    let again = kit
        .send(&kit.render_value(&s, ITEM, "withdraw", Some(&t), None))
        .await;
    assert_eq!(again.status, 204);
    let received = kit.sim_get("tax", "/_sim/received").await;
    assert_eq!(received[1]["operation"], "withdraw");
    assert_eq!(received[1]["body"]["reason"], "申请人主动撤回");
    let stats = kit.sim_get("tax", "/_sim/stats").await;
    assert_eq!(stats["tax"]["withdrawals"], 2);
    kit.stop().await;
}
