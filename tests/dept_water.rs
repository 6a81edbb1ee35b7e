//! water (县自来水公司, 联合过户接口): what `translate` produces, decoded and checked against the
//! interface document independently of the mapping, and how answers and status objects are read
//! (polled: no callback). power and gas share the interface (tests/dept_power.rs, dept_gas.rs).

mod support;

use onething::mapping::answer::{Outcome, RawAnswer};
use onething::mapping::expr::to_value;
use onething::mapping::operation::OpKind;
use onething::mapping::report::{Change, records_of};
use serde_json::{Value, json};
use support::*;

const DEPT: &str = "water";
const ITEM: &str = "water-transfer";
const HOST: &str = "127.0.0.1:9108";
const KEY_VAR: &str = "ONETHING_DEPT_WATER_API_KEY";
const ACCOUNT: &str = "SW0012345";
const TICKET: &str = "GS2026031800001";

fn call(
    fixture: &str,
    op: &str,
    reference: Option<&str>,
    results: Option<&str>,
) -> (String, Value) {
    let raw = render(fixture, ITEM, op, reference, results).unwrap();
    let (line, headers, body) = split_http(&raw);
    assert_eq!(header(&headers, "Host"), Some(HOST));
    assert_eq!(header(&headers, "X-Api-Key"), Some(cred(KEY_VAR).as_str()));
    if body.is_empty() {
        assert!(header(&headers, "Content-Type").is_none());
        return (line, Value::Null);
    }
    assert_eq!(
        header(&headers, "Content-Type"),
        Some("application/json; charset=UTF-8")
    );
    assert_eq!(
        header(&headers, "Content-Length"),
        Some(body.len().to_string().as_str())
    );
    (line, serde_json::from_slice(&body).unwrap())
}

fn keys_of(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

fn check_owners(v: &Value, seller: &str) {
    assert_eq!(keys_of(&v["newOwner"]), ["name", "idNo", "phone"]);
    assert_eq!(
        v["newOwner"],
        json!({"name": "陈𠈌", "idNo": "410225198808080017", "phone": "13603789999"}),
        "the buyer, with the applicant's phone"
    );
    assert_eq!(
        v["oldOwner"],
        json!({"name": seller, "idNo": "410225197001010048"}),
        "the seller"
    );
    assert_eq!(
        v["address"], "兰考县城关镇黄河路12号院3号楼2单元501室",
        "property.address"
    );
}

#[test]
fn prereview_has_no_certificate_number() {
    let (line, v) = call("house-transfer.json", "submit", None, None);
    assert_eq!(line, "POST /api/transfer HTTP/1.1");
    assert_eq!(
        keys_of(&v),
        [
            "orderNo",
            "stage",
            "address",
            "oldAccount",
            "newOwner",
            "oldOwner"
        ]
    );
    assert_eq!(v["orderNo"], "410225-20260318-000007");
    assert_eq!(v["stage"], "prereview");
    assert_eq!(v["oldAccount"], ACCOUNT, "utilities.water_account");
    check_owners(&v, "刘芳");
}

#[test]
fn unknown_account_is_omitted() {
    let (_, v) = call("house-transfer-no-accounts.json", "submit", None, None);
    assert_eq!(
        keys_of(&v),
        ["orderNo", "stage", "address", "newOwner", "oldOwner"]
    );
    assert_eq!(v["stage"], "prereview");
    check_owners(&v, "刘𠈌芳");
    let (_, v) = call(
        "house-transfer-no-accounts.json",
        "submit",
        None,
        Some("house-transfer.json"),
    );
    assert_eq!(
        keys_of(&v),
        [
            "orderNo",
            "stage",
            "address",
            "newOwner",
            "oldOwner",
            "certificateNo"
        ]
    );
    assert_eq!(v["stage"], "full");
}

#[test]
fn complete_hands_the_ticket_the_registration() {
    assert!(
        render(
            "house-transfer.json",
            ITEM,
            "complete",
            None,
            Some("house-transfer.json")
        )
        .unwrap_err()
        .contains("--ref")
    );
    let (line, v) = call(
        "house-transfer.json",
        "complete",
        Some(TICKET),
        Some("house-transfer.json"),
    );
    assert_eq!(
        line,
        format!("POST /api/transfer/{TICKET}/complete HTTP/1.1")
    );
    assert_eq!(keys_of(&v), ["certificateNo", "registeredAt"]);
    assert_eq!(v["certificateNo"], "豫(2026)兰考县不动产权第0001234号");
    assert_eq!(
        v["registeredAt"], "2026-03-19 15:20:00",
        "yyyy-MM-dd HH:mm:ss, +08:00"
    );
}

#[test]
fn one_step_is_stage_full_with_the_certificate_number() {
    let (line, v) = call(
        "house-transfer.json",
        "submit",
        None,
        Some("house-transfer.json"),
    );
    assert_eq!(line, "POST /api/transfer HTTP/1.1");
    assert_eq!(
        keys_of(&v),
        [
            "orderNo",
            "stage",
            "address",
            "oldAccount",
            "newOwner",
            "oldOwner",
            "certificateNo"
        ]
    );
    assert_eq!(v["stage"], "full");
    assert_eq!(v["oldAccount"], ACCOUNT);
    assert_eq!(
        v["certificateNo"], "豫(2026)兰考县不动产权第0001234号",
        "the property-transfer result"
    );
    check_owners(&v, "刘芳");
}

#[test]
fn query_by_order_and_cancel_by_ticket() {
    let (line, v) = call("house-transfer.json", "query", None, None);
    assert_eq!(
        line,
        "GET /api/transfer?orderNo=410225-20260318-000007 HTTP/1.1"
    );
    assert!(v.is_null());
    let (line, v) = call("house-transfer.json", "withdraw", Some(TICKET), None);
    assert_eq!(line, format!("POST /api/transfer/{TICKET}/cancel HTTP/1.1"));
    assert_eq!(v, json!({"reason": "申请人主动撤回"}));
}

fn answer(op: OpKind, status: u16, body: &str) -> Outcome {
    let headers = vec![("content-type".to_string(), "application/json".to_string())];
    MAPPING.departments[DEPT].items[ITEM]
        .get(op)
        .unwrap()
        .answer
        .read(&RawAnswer {
            status,
            headers: &headers,
            body: body.as_bytes(),
        })
        .outcome
}

#[test]
fn answers_are_read_per_the_code_table() {
    use OpKind::*;
    for op in [Prereview, Submit] {
        assert_eq!(
            answer(
                op,
                200,
                r#"{"code": 0, "msg": "ok", "data": {"ticket": "GS2026031800001"}}"#
            ),
            Outcome::Ok {
                reference: Some(TICKET.into())
            }
        );
        assert_eq!(
            answer(
                op,
                200,
                r#"{"code": 1, "msg": "duplicate orderNo", "data": {"ticket": "GS1"}}"#
            ),
            Outcome::Duplicate {
                reference: Some("GS1".into())
            }
        );
        assert!(
            matches!(answer(op, 200, r#"{"code": 2, "msg": "newOwner.idNo"}"#), Outcome::Permanent { error } if error.contains("newOwner.idNo"))
        );
        assert!(matches!(
            answer(op, 200, r#"{"code": 9, "msg": "busy"}"#),
            Outcome::Retry { .. }
        ));
        assert!(
            matches!(answer(op, 401, ""), Outcome::Permanent { .. }),
            "wrong key"
        );
        assert!(matches!(answer(op, 500, ""), Outcome::Retry { .. }));
        assert!(matches!(answer(op, 503, "<html/>"), Outcome::Retry { .. }));
    }
    assert!(matches!(
        answer(Complete, 200, r#"{"code": 0, "msg": "ok", "data": {}}"#),
        Outcome::Ok { .. }
    ));
    assert!(matches!(
        answer(Complete, 200, r#"{"code": 2, "msg": "certificateNo"}"#),
        Outcome::Permanent { .. }
    ));
    assert_eq!(
        answer(Complete, 200, r#"{"code": 4, "msg": "not found"}"#),
        Outcome::NotFound
    );
    assert!(matches!(
        answer(
            Query,
            200,
            r#"{"code": 0, "msg": "ok", "data": {"ticket": "GS1"}}"#
        ),
        Outcome::Ok { .. }
    ));
    assert_eq!(
        answer(Query, 200, r#"{"code": 4, "msg": "not found"}"#),
        Outcome::NotFound
    );
    assert!(matches!(
        answer(Withdraw, 200, r#"{"code": 0, "msg": "ok"}"#),
        Outcome::Ok { .. }
    ));
    assert_eq!(
        answer(Withdraw, 200, r#"{"code": 2, "msg": "已办结"}"#),
        Outcome::Finished
    );
    assert!(matches!(
        answer(Withdraw, 200, r#"{"code": 2, "msg": "reason"}"#),
        Outcome::Permanent { .. }
    ));
    assert_eq!(
        answer(Withdraw, 200, r#"{"code": 4, "msg": "not found"}"#),
        Outcome::NotFound
    );
}

fn status_object(status: &str) -> Value {
    json!({"ticket": TICKET, "orderNo": "410225-20260318-000007", "status": status, "reason": null,
        "accountNo": null, "acceptedAt": "2026-03-19 16:00:00", "doneAt": null})
}

#[test]
fn every_status_maps_to_its_transition() {
    let reader = MAPPING.departments[DEPT].report.as_ref().unwrap();
    let read = |r: Value| reader.read(&to_value(&r), Some(ITEM), &[]).unwrap();
    let change = |r: Value| read(r).change;
    let r = read(status_object("RECEIVED"));
    assert_eq!(r.change, Change::Dispatched);
    assert_eq!(r.case_id, "410225-20260318-000007");
    assert_eq!(r.reference.as_deref(), Some(TICKET));
    assert_eq!(
        change(status_object("PRECHECKED")),
        Change::Progress {
            stage: "prereview-passed".into(),
            note: None
        }
    );
    assert_eq!(
        change(status_object("ACCEPTED")),
        Change::Accepted {
            accepted_at: Some("2026-03-19T16:00:00+08:00".into())
        }
    );
    let mut r = status_object("REJECTED");
    r["reason"] = "材料不符合要求".into();
    assert_eq!(
        change(r),
        Change::Rejected {
            reason: "材料不符合要求".into()
        }
    );
    let mut r = status_object("DONE");
    r["accountNo"] = "SW0098765".into();
    r["doneAt"] = "2026-03-19 17:00:00".into();
    match change(r) {
        Change::Approved {
            results,
            accepted_at,
        } => {
            assert_eq!(results.len(), 1);
            assert_eq!(results["account_no"], "SW0098765");
            assert_eq!(accepted_at.as_deref(), Some("2026-03-19T16:00:00+08:00"));
        }
        other => panic!("{other:?}"),
    }
    let mut r = status_object("FAILED");
    r["reason"] = "不符合许可条件".into();
    assert_eq!(
        change(r),
        Change::Denied {
            reason: "不符合许可条件".into(),
            accepted_at: Some("2026-03-19T16:00:00+08:00".into()),
        }
    );
    assert!(matches!(
        change(status_object("CANCELLED")),
        Change::Withdrawn { .. }
    ));
    assert!(
        reader
            .read(&to_value(&status_object("LOST")), Some(ITEM), &[])
            .is_err()
    );
}

#[test]
fn query_answers_give_the_status_object() {
    let body = json!({"code": 0, "msg": "ok", "data": status_object("ACCEPTED")}).to_string();
    let op = MAPPING.departments[DEPT].items[ITEM]
        .get(OpKind::Query)
        .unwrap();
    let headers = vec![("content-type".to_string(), "application/json".to_string())];
    let got = op.answer.read(&RawAnswer {
        status: 200,
        headers: &headers,
        body: body.as_bytes(),
    });
    let records = records_of(
        op.records
            .as_ref()
            .unwrap()
            .eval(&to_value(&json!({"answer": got.parsed})))
            .unwrap(),
    );
    assert_eq!(records.len(), 1);
    let rep = MAPPING.departments[DEPT]
        .report
        .as_ref()
        .unwrap()
        .read(&records[0], Some(ITEM), &[])
        .unwrap();
    assert!(matches!(rep.change, Change::Accepted { .. }));
}

#[test]
fn water_is_polled() {
    let d = &MAPPING.departments[DEPT];
    assert!(!d.connected && d.callback.is_none());
    assert!(d.items[ITEM].prereview.is_some() && d.items[ITEM].complete.is_some());
}
