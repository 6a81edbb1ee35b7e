//! tax (县税务局 新办纳税人 v1): what `translate` produces, decoded and checked against the interface
//! document independently of the mapping; the batch status query; and how answers and status
//! objects are read (not connected: no callback).

mod support;

use onething::mapping::answer::Outcome;
use onething::mapping::context::{Clock, RenderInput, build};
use onething::mapping::expr::to_value;
use onething::mapping::operation::{OpKind, Request};
use onething::mapping::report::{Change, records_of};
use onething::model::time::parse_rfc3339;
use serde_json::{Value, json};
use support::*;

fn call(
    fixture: &str,
    op: &str,
    reference: Option<&str>,
    results: Option<&str>,
) -> (String, Value) {
    let raw = render(fixture, "tax-registration", op, reference, results).unwrap();
    let (line, headers, _, v) = json_request(&raw, "127.0.0.1:9106");
    assert_eq!(
        header(&headers, "X-Api-Key"),
        Some(cred("ONETHING_DEPT_TAX_API_KEY").as_str())
    );
    (line, v)
}

#[test]
fn submit_with_accountant_and_invoice() {
    let (line, v) = call("restaurant.json", "submit", None, Some("restaurant.json"));
    assert_eq!(line, "POST /v1/new-taxpayers HTTP/1.1");
    assert_eq!(
        keys_of(&v),
        [
            "requestId",
            "uscc",
            "taxpayerName",
            "legalRep",
            "address",
            "accountant",
            "needInvoice"
        ]
    );
    assert_eq!(v["requestId"], "410225-20260317-000045");
    assert_eq!(
        v["uscc"], "91410225MA9G2XK36T",
        "from the business licence's results"
    );
    assert_eq!(
        v["taxpayerName"], "兰考县焦桐餐饮有限公司",
        "the licence's company_name"
    );
    assert_eq!(
        v["legalRep"],
        json!({"name": "赵磊", "idNo": "410225198504200059"})
    );
    assert_eq!(
        v["address"], "河南省开封市兰考县中山街16号",
        "company.address"
    );
    assert_eq!(
        v["accountant"],
        json!({"name": "孙悦", "phone": "13703785678"})
    );
    assert_eq!(v["needInvoice"], json!(true));
}

#[test]
fn submit_without_accountant_defaults_invoice_to_false() {
    // restaurant-individual.json with the business licence given in prior_results.
    let (_, v) = call("tax-individual-prior.json", "submit", None, None);
    assert_eq!(
        keys_of(&v),
        [
            "requestId",
            "uscc",
            "taxpayerName",
            "legalRep",
            "address",
            "needInvoice"
        ]
    );
    assert!(
        v.get("accountant").is_none(),
        "omitted, not null or empty: {v}"
    );
    assert_eq!(v["needInvoice"], json!(false));
    assert_eq!(v["uscc"], "92410225MA9G7H2X1J");
    assert_eq!(v["taxpayerName"], "兰考县老李烩面馆");
    assert_eq!(v["address"], "河南省开封市兰考县中山街20号");

    // The same form with the results given on the side: still no accountant.
    let (_, v) = call(
        "restaurant-individual.json",
        "submit",
        None,
        Some("restaurant.json"),
    );
    assert!(v.get("accountant").is_none());
    assert_eq!(v["needInvoice"], json!(false));
}

#[test]
fn submit_needs_the_business_licence() {
    let err = render("restaurant.json", "tax-registration", "submit", None, None).unwrap_err();
    assert!(err.contains("business-licence"), "{err}");
}

#[test]
fn query_by_case_and_cancel_by_ticket() {
    let (line, v) = call("restaurant.json", "query", None, None);
    assert_eq!(
        line,
        "GET /v1/new-taxpayers?requestId=410225-20260317-000045 HTTP/1.1"
    );
    assert!(v.is_null());
    let (line, v) = call(
        "restaurant.json",
        "withdraw",
        Some("SW20260317000001"),
        None,
    );
    assert_eq!(line, "DELETE /v1/new-taxpayers/SW20260317000001 HTTP/1.1");
    assert_eq!(v, json!({"reason": "申请人主动撤回"}));
}

#[test]
fn batch_status_query_of_up_to_100_tickets() {
    let dept = &MAPPING.departments["tax"];
    let op = dept.batch_query.as_ref().expect("tax polls in batches");
    assert_eq!(op.batch_size, Some(100));
    assert_eq!(dept.limits.poll_per_minute, Some(30), "30 calls a minute");
    let t = parse_rfc3339(AT).unwrap();
    let ctx = build(RenderInput {
        case: to_value(&json!({})),
        item: "tax-registration",
        results: to_value(&json!({})),
        reference: None,
        refs: Some(vec!["SW1".into(), "SW2".into()]),
        reason: None,
        clock: Clock {
            now: t,
            real_now: t,
        },
        nonce: NONCE,
        token: None,
        env: env_value("tax"),
        codes: MAPPING.codes_value.clone(),
    });
    let Request::Http(h) = op.render(ctx).unwrap() else {
        panic!("HTTP")
    };
    assert_eq!(h.method, "POST");
    assert_eq!(h.path, "/v1/new-taxpayers/status-query");
    assert!(
        h.headers
            .contains(&("X-Api-Key".into(), "tax-test-key".into()))
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&h.body).unwrap(),
        json!({"tickets": ["SW1", "SW2"]})
    );

    let answer = json!({"items": [
        {"ticket": "SW1", "requestId": "410225-20260317-000045", "status": "ACCEPTED", "reason": null,
         "acceptedAt": "2026-03-17T14:30:00+08:00", "taxpayerId": null, "taxOffice": null},
        {"ticket": "SW2", "requestId": "410225-20260317-000046", "status": "RECEIVED", "reason": null,
         "acceptedAt": null, "taxpayerId": null, "taxOffice": null}]})
    .to_string();
    let read = read_answer(&op.answer, 200, JSON, answer.as_bytes());
    assert!(matches!(read.outcome, Outcome::Ok { .. }));
    let records = records_of(
        op.records
            .as_ref()
            .unwrap()
            .eval(&to_value(&json!({"answer": read.parsed})))
            .unwrap(),
    );
    assert_eq!(records.len(), 2);
    let a = report("tax", &records[0], Some("tax-registration")).unwrap();
    assert_eq!(
        (a.case_id.as_str(), a.reference.as_deref()),
        ("410225-20260317-000045", Some("SW1"))
    );
    assert!(matches!(a.change, Change::Accepted { .. }));
    let b = report("tax", &records[1], Some("tax-registration")).unwrap();
    assert_eq!(b.change, Change::Dispatched);
}

fn answer(kind: OpKind, status: u16, body: &str) -> Outcome {
    let answer = &op("tax", "tax-registration", kind).answer;
    read_answer(answer, status, JSON, body.as_bytes()).outcome
}

#[test]
fn answers_are_read_per_the_document() {
    use OpKind::*;
    assert_eq!(
        answer(Submit, 202, r#"{"ticket": "SW20260317000001"}"#),
        Outcome::Ok {
            reference: Some("SW20260317000001".into())
        }
    );
    assert_eq!(
        answer(Submit, 409, r#"{"ticket": "SW20260317000001"}"#),
        Outcome::Duplicate {
            reference: Some("SW20260317000001".into())
        },
        "duplicate requestId: treat as success"
    );
    assert!(matches!(
        answer(Submit, 422, r#"{"errors": [{"field": "uscc", "message": "校验位错误"}]}"#),
        Outcome::Permanent { error } if error.contains("uscc") && error.contains("校验位错误")
    ));
    assert!(matches!(answer(Submit, 503, ""), Outcome::Retry { .. }));
    assert!(
        matches!(answer(Submit, 401, ""), Outcome::Permanent { .. }),
        "wrong key"
    );
    assert!(matches!(
        answer(Query, 200, r#"{"ticket": "SW1", "status": "RECEIVED"}"#),
        Outcome::Ok { .. }
    ));
    assert_eq!(answer(Query, 404, ""), Outcome::NotFound);
    assert_eq!(answer(Withdraw, 204, ""), Outcome::Ok { reference: None });
    assert_eq!(
        answer(Withdraw, 409, ""),
        Outcome::Finished,
        "already completed"
    );
    assert_eq!(answer(Withdraw, 404, ""), Outcome::NotFound);
    assert!(matches!(answer(Withdraw, 503, ""), Outcome::Retry { .. }));
}

#[test]
fn every_status_maps_to_its_transition() {
    let change = |status: &str, extra: Value| {
        let mut r = json!({"ticket": "SW1", "requestId": "410225-20260317-000045", "status": status,
            "reason": null, "acceptedAt": "2026-03-17T14:30:00+08:00", "taxpayerId": null, "taxOffice": null});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        change_of("tax", Some("tax-registration"), &r)
    };
    assert_eq!(
        change("RECEIVED", json!({"acceptedAt": null})),
        Change::Dispatched
    );
    assert_eq!(
        change("ACCEPTED", json!({})),
        Change::Accepted {
            accepted_at: Some("2026-03-17T14:30:00+08:00".into())
        }
    );
    assert_eq!(
        change("ACCEPTED", json!({"acceptedAt": "2026-03-17T06:30:00Z"})),
        Change::Accepted {
            accepted_at: Some("2026-03-17T14:30:00+08:00".into())
        },
        "ISO 8601 with any offset, shown in +08:00"
    );
    assert_eq!(
        change("REJECTED", json!({"reason": "材料不符合要求"})),
        Change::Rejected {
            reason: "材料不符合要求".into()
        }
    );
    match change(
        "COMPLETED",
        json!({"taxpayerId": "91410225MA9G2XK36T", "taxOffice": "国家税务总局兰考县税务局"}),
    ) {
        Change::Approved {
            results,
            accepted_at,
        } => {
            assert_eq!(results.len(), 2);
            assert_eq!(results["taxpayer_id"], "91410225MA9G2XK36T");
            assert_eq!(results["tax_office"], "国家税务总局兰考县税务局");
            assert_eq!(accepted_at.as_deref(), Some("2026-03-17T14:30:00+08:00"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        change("REFUSED", json!({"reason": "不符合许可条件"})),
        Change::Denied {
            reason: "不符合许可条件".into(),
            accepted_at: Some("2026-03-17T14:30:00+08:00".into()),
        }
    );
    assert!(matches!(
        change("CANCELLED", json!({})),
        Change::Withdrawn { .. }
    ));
    assert!(MAPPING.departments["tax"].callback.is_none() && !MAPPING.departments["tax"].connected);
}
