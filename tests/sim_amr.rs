//! The amr simulator against its interface document: OAuth 2.0 client credentials with tokens that
//! really expire, the gateway's requests accepted, bad ones refused with 400 VALIDATION_FAILED,
//! duplicates answered 409 DUPLICATE_BIZNO, the rate limit's 429, the food-permit pre-review
//! (never accepted before the licence supplement), the simulator rules, and callbacks with the
//! callback bearer token, repeated when unanswered.

mod simkit;
mod support;

use std::time::Duration;

use onething::mapping::answer::Outcome;
use onething::mapping::expr::to_value;
use onething::mapping::operation::OpKind;
use onething::mapping::report::Change;
use onething::sim::departments::amr::{RATE_LIMIT, TOKEN_LIFETIME};
use onething::validate::ids::gb32100_valid;
use serde_json::{Value, json};
use simkit::{Answer, Kit};
use support::*;

const LICENCE: &str = "business-licence";
const FOOD: &str = "food-permit";

/// A token from the simulator's token endpoint, as the gateway fetches it.
async fn token(kit: &Kit) -> String {
    let a = token_answer(
        kit,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &cred("ONETHING_DEPT_AMR_CLIENT_ID")),
            ("client_secret", &cred("ONETHING_DEPT_AMR_CLIENT_SECRET")),
        ],
    )
    .await;
    assert_eq!(a.0, 200);
    assert_eq!(a.1["token_type"], "Bearer");
    assert_eq!(a.1["expires_in"], 7200);
    a.1["access_token"].as_str().unwrap().to_string()
}

async fn token_answer(kit: &Kit, form: &[(&str, &str)]) -> (u16, Value) {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let resp = kit
        .http
        .post(format!("{}/oauth/token", kit.sim.url("amr")))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap(),
    )
}

/// The rendered request with the real token in place of `Bearer <token>`.
fn authed(raw: &[u8], token: &str) -> Vec<u8> {
    let text = String::from_utf8(raw.to_vec()).unwrap();
    assert!(text.contains("Authorization: Bearer <token>\r\n"));
    text.replace("Bearer <token>", &format!("Bearer {token}"))
        .into_bytes()
}

/// A correct request with its JSON body edited (Content-Length is recomputed by the client).
fn edited(raw: &[u8], f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let text = String::from_utf8(raw.to_vec()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut v: Value = serde_json::from_str(body).unwrap();
    f(&mut v);
    format!("{head}\r\n\r\n{v}").into_bytes()
}

struct Client<'a> {
    kit: &'a Kit,
    token: String,
}

impl Client<'_> {
    async fn new(kit: &Kit) -> Client<'_> {
        Client {
            token: token(kit).await,
            kit,
        }
    }

    fn render(&self, s: &Value, item: &str, op: &str, r: Option<&str>, res: bool) -> Vec<u8> {
        let results = res.then_some("restaurant.json");
        authed(&self.kit.render_value(s, item, op, r, results), &self.token)
    }

    /// Sends a request as the gateway would, waiting out a 429 for its `Retry-After`.
    async fn send(&self, raw: &[u8]) -> Answer {
        loop {
            let a = self.kit.send(raw).await;
            if a.status != 429 {
                return a;
            }
            let secs: u64 = header(&a.headers, "retry-after").unwrap().parse().unwrap();
            tokio::time::sleep(Duration::from_secs(secs)).await;
        }
    }

    async fn call(&self, s: &Value, item: &str, op: &str, r: Option<&str>, res: bool) -> Answer {
        self.send(&self.render(s, item, op, r, res)).await
    }

    async fn get(&self, path: &str) -> Answer {
        let host = self.kit.sim.url("amr");
        let raw = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\r\n",
            host.trim_start_matches("http://"),
            self.token
        );
        self.send(raw.as_bytes()).await
    }
}

fn restaurant(name: &str, case_id: &str) -> Value {
    let mut s = fixture("restaurant.json");
    s["form"]["company"]["name"] = name.into();
    s["case_id"] = case_id.into();
    s
}

fn reference(a: &Answer, item: &str, kind: OpKind) -> String {
    match a.outcome(item, kind) {
        Outcome::Ok { reference: Some(r) } => r,
        other => panic!("{other:?}: {} {}", a.status, a.text()),
    }
}

/// A callback: its Authorization is the callback token; read with the gateway's own mapping.
fn read_callback(cb: &simkit::Callback) -> (Value, Change) {
    assert_eq!(cb.dept, "amr");
    let auth = header(&cb.headers, "authorization").unwrap();
    assert_eq!(
        auth,
        format!("Bearer {}", cred("ONETHING_DEPT_AMR_CALLBACK_TOKEN"))
    );
    let task: Value = serde_json::from_slice(&cb.body).unwrap();
    let rep = cb.report();
    assert_eq!(rep.case_id, task["bizNo"].as_str().unwrap());
    assert_eq!(rep.reference.as_deref(), task["taskId"].as_str());
    (task, rep.change)
}

async fn next(kit: &Kit) -> (Value, Change) {
    read_callback(&kit.next_callback(5).await)
}

/// Callbacks until the application is final.
async fn final_callback(kit: &Kit) -> (Value, Change) {
    loop {
        let (task, change) = next(kit).await;
        if matches!(
            change,
            Change::Rejected { .. }
                | Change::Denied { .. }
                | Change::Approved { .. }
                | Change::Withdrawn { .. }
        ) {
            return (task, change);
        }
    }
}

async fn quiet(kit: &Kit) {
    let extra = tokio::time::timeout(Duration::from_millis(300), async {
        kit.callbacks.lock().await.recv().await
    })
    .await;
    assert!(extra.is_err(), "unexpected callback: {extra:?}");
}

/// The query by bizNo and type, read through the query's records and the report reader.
async fn query(c: &Client<'_>, s: &Value, item: &str) -> Vec<(Value, Change)> {
    let a = c.call(s, item, "query", None, false).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(matches!(a.outcome(item, OpKind::Query), Outcome::Ok { .. }));
    let body = a.json();
    let records = query_records(op("amr", item, OpKind::Query), to_value(&body), &[]);
    let reader = MAPPING.departments["amr"].report.as_ref().unwrap();
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&records)
        .map(|(task, r)| {
            let rep = reader.read(r, Some(item), &[]).unwrap();
            assert_eq!(rep.item.as_deref(), Some(item));
            (task.clone(), rep.change)
        })
        .collect()
}

#[tokio::test]
async fn tokens_are_required_and_expire() {
    let kit = Kit::start("amr-token").await;
    assert_eq!(TOKEN_LIFETIME, Duration::from_secs(60));
    // Wrong client secret, wrong grant type, not a form.
    let (status, body) = token_answer(
        &kit,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "yjs"),
            ("client_secret", "wrong"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, body) = token_answer(
        &kit,
        &[
            ("grant_type", "password"),
            ("client_id", "yjs"),
            ("client_secret", "amr-test-secret"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let c = Client::new(&kit).await;
    let s = fixture("restaurant.json");
    let raw = kit.render_value(&s, LICENCE, "submit", None, None);
    // No token, an unknown token: 401 invalid_token, which the gateway reads as unauthorized.
    for bad in [
        "Bearer <token>",
        "Bearer amr.0123",
        "Basic eWpzOmFtci10ZXN0LXNlY3JldA==",
    ] {
        let text = String::from_utf8(raw.clone())
            .unwrap()
            .replace("Bearer <token>", bad);
        let a = kit.send(text.as_bytes()).await;
        assert_eq!(a.status, 401);
        assert_eq!(a.json(), json!({"error": "invalid_token"}));
        assert_eq!(a.outcome(LICENCE, OpKind::Submit), Outcome::Unauthorized);
    }
    let text = String::from_utf8(raw.clone())
        .unwrap()
        .replace("Authorization: Bearer <token>\r\n", "");
    assert_eq!(kit.send(text.as_bytes()).await.status, 401);
    // A real token works until it expires (made to expire now instead of after 60 s).
    let a = kit.send(&authed(&raw, &c.token)).await;
    assert_eq!(a.status, 201, "{}", a.text());
    kit.sim.world.issue_token(&c.token, Duration::ZERO);
    let a = kit.send(&authed(&raw, &c.token)).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.outcome(LICENCE, OpKind::Submit), Outcome::Unauthorized);
    // A fresh token: the repeat is answered (as a duplicate).
    let fresh = token(&kit).await;
    assert_ne!(fresh, c.token);
    let a = kit.send(&authed(&raw, &fresh)).await;
    assert_eq!(a.status, 409);
    let violations = kit.sim_get("amr", "/_sim/violations").await;
    assert_eq!(violations.as_array().unwrap().len(), 7);
    kit.stop().await;
}

#[tokio::test]
async fn establishments_are_accepted_and_results_come_back() {
    let kit = Kit::start("amr-establishment").await;
    let c = Client::new(&kit).await;
    let s = fixture("restaurant.json");
    let a = c.call(&s, LICENCE, "submit", None, false).await;
    assert_eq!(a.status, 201);
    let task_id = reference(&a, LICENCE, OpKind::Submit);
    assert!(
        task_id.starts_with("SJ") && task_id.len() == 14,
        "{task_id}"
    );
    let (task, change) = next(&kit).await;
    assert_eq!(task["state"], "ACCEPTED");
    assert_eq!(task["type"], "establishment");
    assert!(matches!(
        change,
        Change::Accepted {
            accepted_at: Some(_)
        }
    ));
    let (task, change) = next(&kit).await;
    assert_eq!(task["state"], "APPROVED");
    assert!(chrono::DateTime::parse_from_rfc3339(task["acceptedAt"].as_str().unwrap()).is_ok());
    match change {
        Change::Approved { results, .. } => {
            assert!(gb32100_valid(&results["uscc"]), "{}", results["uscc"]);
            assert!(results["uscc"][2..8] == *"410225");
            let no = &results["licence_no"];
            assert!(
                no.len() == 15 && no.chars().all(|c| c.is_ascii_digit()),
                "{no}"
            );
            assert_eq!(results["company_name"], "兰考县焦桐餐饮有限公司");
        }
        other => panic!("{other:?}"),
    }
    // The query by bizNo and type, and the task by id.
    let found = query(&c, &s, LICENCE).await;
    assert_eq!(found.len(), 1);
    assert!(matches!(found[0].1, Change::Approved { .. }));
    let a = c.get(&format!("/api/v2/tasks/{task_id}")).await;
    assert_eq!(a.json()["data"]["taskId"], task_id.as_str());
    assert_eq!(a.json()["data"]["state"], "APPROVED");
    assert_eq!(c.get("/api/v2/tasks/SJ000").await.status, 404);
    let a = c
        .get("/api/v2/tasks?bizNo=410225-20260317-000045&type=food-permit")
        .await;
    assert_eq!(a.json()["data"], json!([]));
    assert_eq!(
        c.get("/api/v2/tasks?bizNo=410225-20260317-000045&type=annual-report")
            .await
            .status,
        400
    );
    // A second push: 409 DUPLICATE_BIZNO with the task id, read as a duplicate.
    let d = c.call(&s, LICENCE, "submit", None, false).await;
    assert_eq!(d.status, 409);
    assert_eq!(
        d.outcome(LICENCE, OpKind::Submit),
        Outcome::Duplicate {
            reference: Some(task_id.clone())
        }
    );
    // Withdrawing the approved task: 409 ALREADY_FINISHED, read as finished.
    let w = c.call(&s, LICENCE, "withdraw", Some(&task_id), false).await;
    assert_eq!(w.status, 409);
    assert_eq!(w.outcome(LICENCE, OpKind::Withdraw), Outcome::Finished);
    // An individual business (9100) with no investors.
    let s2 = fixture("restaurant-individual.json");
    let a = c.call(&s2, LICENCE, "submit", None, false).await;
    reference(&a, LICENCE, OpKind::Submit);
    let (task, change) = final_callback(&kit).await;
    assert_eq!(task["result"]["entName"], "兰考县老李烩面馆");
    assert!(matches!(change, Change::Approved { .. }));
    let received = kit.sim_get("amr", "/_sim/received").await;
    assert_eq!(received[0]["operation"], "establishment");
    assert_eq!(received[0]["body"]["entName"], "兰考县焦桐餐饮有限公司");
    assert_eq!(received[0]["body"]["investors"][1]["ratio"], "40.00");
    assert_eq!(received[1]["body"]["investors"], json!([]));
    let stats = kit.sim_get("amr", "/_sim/stats").await;
    assert_eq!(stats["amr"]["submits"], 2);
    assert_eq!(stats["amr"]["duplicates"], 1);
    assert_eq!(stats["amr"]["queries"], 5);
    kit.stop().await;
}

#[tokio::test]
async fn food_permit_pre_review_waits_for_the_licence() {
    let kit = Kit::start("amr-food").await;
    let c = Client::new(&kit).await;
    let s = fixture("restaurant.json");
    // Pre-review (no business-licence results): in review, never accepted before the licence.
    let raw = c.render(&s, FOOD, "submit", None, false);
    assert!(raw.starts_with(b"POST /api/v2/food-permits/prereview "));
    let a = c.send(&raw).await;
    let task_id = reference(&a, FOOD, OpKind::Prereview);
    assert!(task_id.starts_with("SP"), "{task_id}");
    let (task, change) = next(&kit).await;
    assert_eq!(task["state"], "IN_REVIEW");
    assert!(matches!(change, Change::Progress { .. }));
    quiet(&kit).await;
    let found = query(&c, &s, FOOD).await;
    assert_eq!(found[0].0["state"], "IN_REVIEW");
    assert!(found[0].0["acceptedAt"].is_null());
    // The one-step form of the same case is a duplicate of the pre-review.
    let d = c.call(&s, FOOD, "submit", None, true).await;
    assert_eq!(
        d.outcome(FOOD, OpKind::Submit),
        Outcome::Duplicate {
            reference: Some(task_id.clone())
        }
    );
    // The licence supplement: accepted, then approved with a permit number.
    let l = c.call(&s, FOOD, "complete", Some(&task_id), true).await;
    assert_eq!(l.status, 200, "{}", l.text());
    assert!(matches!(
        l.outcome(FOOD, OpKind::Complete),
        Outcome::Ok { .. }
    ));
    assert!(matches!(next(&kit).await.1, Change::Accepted { .. }));
    match next(&kit).await.1 {
        Change::Approved { results, .. } => {
            let no = &results["permit_no"];
            assert!(
                no.len() == 16
                    && no.starts_with("JY")
                    && no[2..].chars().all(|c| c.is_ascii_digit()),
                "{no}"
            );
        }
        other => panic!("{other:?}"),
    }
    // A repeated supplement answers success and changes nothing.
    let l = c.call(&s, FOOD, "complete", Some(&task_id), true).await;
    assert_eq!(l.status, 200);
    quiet(&kit).await;
    // A supplement without a matching pre-review: unknown task 404, an establishment 400.
    let l = c.call(&s, FOOD, "complete", Some("SP000"), true).await;
    assert_eq!(l.outcome(FOOD, OpKind::Complete), Outcome::NotFound);
    let e = c.call(&s, LICENCE, "submit", None, false).await;
    let establishment = reference(&e, LICENCE, OpKind::Submit);
    final_callback(&kit).await;
    let l = c
        .call(&s, FOOD, "complete", Some(&establishment), true)
        .await;
    assert_eq!(l.status, 400);
    assert_eq!(l.json()["errorCode"], "VALIDATION_FAILED");
    assert!(l.json()["errorMsg"].as_str().unwrap().contains("taskId"));
    // One step for another case (licence known), then its supplement is refused too.
    let s2 = restaurant("兰考县焦桐餐饮有限公司", "410225-20260317-000900");
    let raw = c.render(&s2, FOOD, "submit", None, true);
    assert!(raw.starts_with(b"POST /api/v2/food-permits "));
    let one = reference(&c.send(&raw).await, FOOD, OpKind::Submit);
    assert!(matches!(next(&kit).await.1, Change::Accepted { .. }));
    assert!(matches!(next(&kit).await.1, Change::Approved { .. }));
    let l = c.call(&s2, FOOD, "complete", Some(&one), true).await;
    assert_eq!(l.status, 400);
    // An individual's pre-review, withdrawn while open.
    let s3 = fixture("restaurant-individual.json");
    let p = c.call(&s3, FOOD, "submit", None, false).await;
    let open_task = reference(&p, FOOD, OpKind::Prereview);
    assert_eq!(next(&kit).await.0["state"], "IN_REVIEW");
    let w = c.call(&s3, FOOD, "withdraw", Some(&open_task), false).await;
    assert_eq!(w.status, 200, "{}", w.text());
    assert!(matches!(
        w.outcome(FOOD, OpKind::Withdraw),
        Outcome::Ok { .. }
    ));
    let (task, change) = next(&kit).await;
    assert_eq!(task["state"], "WITHDRAWN");
    assert_eq!(
        change,
        Change::Withdrawn {
            reason: Some("申请人主动撤回".into())
        }
    );
    // A supplement for the withdrawn pre-review: 409 ALREADY_FINISHED.
    let l = c.call(&s3, FOOD, "complete", Some(&open_task), true).await;
    assert_eq!(
        (l.status, l.json()["errorCode"].as_str()),
        (409, Some("ALREADY_FINISHED"))
    );
    let w = c.call(&s3, FOOD, "withdraw", Some("SP000"), false).await;
    assert_eq!(w.outcome(FOOD, OpKind::Withdraw), Outcome::NotFound);
    let received = kit.sim_get("amr", "/_sim/received").await;
    let ops: Vec<&str> = received
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["operation"].as_str().unwrap())
        .collect();
    assert_eq!(
        ops,
        [
            "food-prereview",
            "licence",
            "establishment",
            "food-permit",
            "food-prereview",
            "withdraw"
        ]
    );
    assert_eq!(received[0]["body"]["area"], 120.5);
    assert_eq!(received[1]["body"]["uscc"], "91410225MA9G2XK36T");
    let stats = kit.sim_get("amr", "/_sim/stats").await;
    assert_eq!(stats["amr"]["follow_ups"], 1);
    kit.stop().await;
}

#[tokio::test]
async fn bad_requests_are_refused_naming_the_field() {
    let kit = Kit::start("amr-bad").await;
    let c = Client::new(&kit).await;
    let s = fixture("restaurant.json");
    let est = c.render(&s, LICENCE, "submit", None, false);
    let food = c.render(&s, FOOD, "submit", None, true);
    type Edit = Box<dyn FnOnce(&mut Value)>;
    let cases: Vec<(&Vec<u8>, Edit, &str)> = vec![
        (
            &est,
            Box::new(|b| {
                b["legalRep"].as_object_mut().unwrap().remove("phone");
            }),
            "legalRep.phone",
        ),
        (
            &est,
            Box::new(|b| {
                b.as_object_mut().unwrap().remove("scope");
            }),
            "scope",
        ),
        (&est, Box::new(|b| b["entType"] = "1200".into()), "entType"),
        (
            &est,
            Box::new(|b| b["regCapital"] = "50".into()),
            "regCapital",
        ),
        (
            &est,
            Box::new(|b| b["legalRep"]["certType"] = "11".into()),
            "legalRep.certType",
        ),
        (
            &est,
            Box::new(|b| b["legalRep"]["certNo"] = "410225198504200058".into()),
            "legalRep.certNo",
        ),
        (
            &est,
            Box::new(|b| b["investors"][0]["ratio"] = "60".into()),
            "investors[0].ratio",
        ),
        (
            &est,
            Box::new(|b| b["investors"][1]["ratio"] = json!(40.0)),
            "investors[1].ratio",
        ),
        (&est, Box::new(|b| b["investors"] = json!([])), "investors"),
        (&food, Box::new(|b| b["area"] = "120.5".into()), "area"),
        (
            &food,
            Box::new(|b| b["categories"] = json!([])),
            "categories",
        ),
        (
            &food,
            Box::new(|b| {
                b.as_object_mut().unwrap().remove("operator");
            }),
            "operator",
        ),
        (
            &food,
            Box::new(|b| b["uscc"] = "91410225MA9G2XK36U".into()),
            "uscc",
        ),
        (
            &food,
            Box::new(|b| b["licenceNo"] = "41022500012345".into()),
            "licenceNo",
        ),
    ];
    for (raw, edit, field) in cases {
        let a = c.send(&edited(raw, edit)).await;
        assert_eq!(a.status, 400, "{field}: {}", a.text());
        assert_eq!(a.json()["errorCode"], "VALIDATION_FAILED");
        assert!(
            a.json()["errorMsg"].as_str().unwrap().contains(field),
            "{field}: {}",
            a.text()
        );
        assert!(matches!(
            a.outcome(LICENCE, OpKind::Submit),
            Outcome::Permanent { .. }
        ));
    }
    // A passport (20) needs no GB 11643 check: accepted.
    let a = c
        .send(&edited(&est, |b| {
            b["investors"][1]["certType"] = "20".into();
            b["investors"][1]["certNo"] = "E12345678".into();
        }))
        .await;
    assert_eq!(a.status, 201, "{}", a.text());
    // The body in GBK, declared as GBK or as UTF-8: refused.
    let text = String::from_utf8(food.clone()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let (gbk, _, _) = encoding_rs::GBK.encode(body);
    for ct in ["charset=GBK", "charset=UTF-8"] {
        let mut raw = head.replace("charset=UTF-8", ct).into_bytes();
        raw.extend_from_slice(b"\r\n\r\n");
        raw.extend_from_slice(&gbk);
        let a = c.send(&raw).await;
        assert_eq!(a.status, 400, "{ct}");
        assert_eq!(a.json()["errorCode"], "VALIDATION_FAILED");
    }
    let received = kit.sim_get("amr", "/_sim/received").await;
    assert_eq!(received.as_array().unwrap().len(), 1);
    kit.stop().await;
}

#[tokio::test]
async fn simulator_rules_steer_the_outcome() {
    let kit = Kit::start("amr-rules").await;
    let c = Client::new(&kit).await;
    let cases = [
        ("兰考县驳回餐饮有限公司", "NOT_ACCEPTED"),
        ("兰考县不予餐饮有限公司", "NOT_APPROVED"),
        ("兰考县驳回:police餐饮有限公司", "APPROVED"),
        ("兰考县不予:amr餐饮有限公司", "NOT_APPROVED"),
    ];
    for (i, (name, want)) in cases.iter().enumerate() {
        let s = restaurant(name, &format!("410225-20260317-00010{i}"));
        let a = c.call(&s, LICENCE, "submit", None, false).await;
        reference(&a, LICENCE, OpKind::Submit);
        let (task, change) = final_callback(&kit).await;
        assert_eq!(task["state"], *want, "{name}");
        match change {
            Change::Rejected { reason } => assert_eq!(reason, "材料不符合要求"),
            Change::Denied { reason, .. } => assert_eq!(reason, "不符合许可条件"),
            Change::Approved { results, .. } => assert_eq!(results["company_name"], *name),
            other => panic!("{other:?}"),
        }
    }
    // 驳回 during the food-permit pre-review: not accepted; the supplement then finds it finished.
    let s = restaurant("兰考县驳回餐饮有限公司", "410225-20260317-000110");
    let p = c.call(&s, FOOD, "submit", None, false).await;
    let task_id = reference(&p, FOOD, OpKind::Prereview);
    let (task, change) = next(&kit).await;
    assert_eq!(task["state"], "NOT_ACCEPTED");
    assert!(matches!(change, Change::Rejected { .. }));
    let l = c.call(&s, FOOD, "complete", Some(&task_id), true).await;
    assert_eq!(l.status, 409);
    // 失联: 503 every time; 抖动: twice, then success (the supplement counts on its own).
    let s = restaurant("兰考县失联餐饮有限公司", "410225-20260317-000120");
    for _ in 0..3 {
        let a = c.call(&s, LICENCE, "submit", None, false).await;
        assert_eq!(a.status, 503);
        assert!(matches!(
            a.outcome(LICENCE, OpKind::Submit),
            Outcome::Retry { .. }
        ));
    }
    let s = restaurant("兰考县抖动餐饮有限公司", "410225-20260317-000121");
    let mut got = Vec::new();
    for _ in 0..3 {
        let a = c.call(&s, FOOD, "submit", None, false).await;
        got.push(a.outcome(FOOD, OpKind::Prereview));
    }
    assert!(matches!(got[0], Outcome::Retry { .. }));
    assert!(matches!(got[1], Outcome::Retry { .. }));
    let Outcome::Ok {
        reference: Some(task_id),
    } = got[2].clone()
    else {
        panic!("{:?}", got[2])
    };
    assert_eq!(next(&kit).await.0["state"], "IN_REVIEW");
    let mut ok = Vec::new();
    for _ in 0..3 {
        let a = c.call(&s, FOOD, "complete", Some(&task_id), true).await;
        ok.push(matches!(
            a.outcome(FOOD, OpKind::Complete),
            Outcome::Ok { .. }
        ));
    }
    assert_eq!(ok, [false, false, true]);
    assert!(matches!(
        final_callback(&kit).await.1,
        Change::Approved { .. }
    ));
    // 搁置: in review forever; 缓办: accepted, never decided.
    for (i, (name, want)) in [
        ("兰考县搁置餐饮", "IN_REVIEW"),
        ("兰考县缓办餐饮", "ACCEPTED"),
    ]
    .iter()
    .enumerate()
    {
        let s = restaurant(name, &format!("410225-20260317-00013{i}"));
        c.call(&s, LICENCE, "submit", None, false).await;
        let found = query(&c, &s, LICENCE).await;
        assert_eq!(found[0].0["state"], *want, "{name}");
    }
    kit.stop().await;
}

#[tokio::test]
async fn more_than_the_rate_limit_a_second_is_answered_429() {
    let kit = Kit::start("amr-rate").await;
    let c = Client::new(&kit).await;
    let raw = c.render(&fixture("restaurant.json"), LICENCE, "query", None, false);
    let mut limited = None;
    for _ in 0..RATE_LIMIT + 5 {
        let a = kit.send(&raw).await;
        if a.status == 429 {
            limited = Some(a);
            break;
        }
    }
    let a = limited.expect("a 429 within the burst");
    assert_eq!(header(&a.headers, "retry-after"), Some("1"));
    assert_eq!(
        a.outcome(LICENCE, OpKind::Query),
        Outcome::Retry {
            after_secs: Some(1),
            error: "429 rate limited".into()
        }
    );
    kit.stop().await;
}

#[tokio::test]
async fn unanswered_callbacks_are_repeated_five_times() {
    let kit = Kit::start("amr-repeat").await;
    let c = Client::new(&kit).await;
    kit.refuse_callbacks
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let s = restaurant("兰考县缓办餐饮有限公司", "410225-20260317-000400");
    c.call(&s, LICENCE, "submit", None, false).await;
    let first = kit.next_callback(5).await;
    assert_eq!(read_callback(&first).0["state"], "ACCEPTED");
    for _ in 0..5 {
        let again = kit.next_callback(5).await;
        assert_eq!(again.body, first.body);
        assert_eq!(again.headers, first.headers);
    }
    quiet(&kit).await;
    kit.stop().await;
}
