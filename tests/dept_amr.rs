//! amr (县市场监管局 开放平台 API v2): what `translate` produces, decoded and checked against the
//! interface document independently of the mapping; the OAuth2 token request and answer; and how
//! answers, task objects (callback and query) and callbacks are read.

mod support;

use onething::mapping::answer::Outcome;
use onething::mapping::callback::CallbackRead;
use onething::mapping::expr::to_value;
use onething::mapping::operation::OpKind;
use onething::mapping::report::{Change, StatusReport};
use serde_json::{Value, json};
use support::*;

const CASE: &str = "410225-20260317-000045";

/// (request line, headers, body as JSON, body text); checks the headers every call carries.
fn call(
    fixture: &str,
    item: &str,
    op: &str,
    reference: Option<&str>,
    results: Option<&str>,
) -> (String, Value, String) {
    let raw = render(fixture, item, op, reference, results).unwrap();
    let (line, headers, text, v) = json_request(&raw, "127.0.0.1:9105");
    assert_eq!(
        header(&headers, "Authorization"),
        Some("Bearer <token>"),
        "the OAuth2 token, shown as a placeholder"
    );
    (line, v, text)
}

#[test]
fn establishment_of_a_company() {
    let (line, v, text) = call("restaurant.json", "business-licence", "submit", None, None);
    assert_eq!(line, "POST /api/v2/establishments HTTP/1.1");
    assert_eq!(
        keys_of(&v),
        [
            "bizNo",
            "entName",
            "entType",
            "regCapital",
            "address",
            "scope",
            "legalRep",
            "investors"
        ]
    );
    assert_eq!(v["bizNo"], CASE);
    assert_eq!(v["entName"], "兰考县焦桐餐饮有限公司");
    assert_eq!(v["entType"], "1100");
    assert!(
        v["regCapital"].is_f64() && v["regCapital"].as_f64() == Some(50.0),
        "万元, a number"
    );
    assert!(text.contains(r#""regCapital":50.0"#), "{text}");
    assert_eq!(v["address"], "河南省开封市兰考县中山街16号");
    assert_eq!(v["scope"], "餐饮服务；食品销售");
    assert_eq!(
        v["legalRep"],
        json!({"name": "赵磊", "certType": "10", "certNo": "410225198504200059", "phone": "13903781234"})
    );
    assert_eq!(
        keys_of(&v["legalRep"]),
        ["name", "certType", "certNo", "phone"]
    );
    let inv = v["investors"].as_array().unwrap();
    assert_eq!(inv.len(), 2);
    assert_eq!(keys_of(&inv[0]), ["name", "certType", "certNo", "ratio"]);
    assert_eq!(
        inv[0],
        json!({"name": "赵磊", "certType": "10", "certNo": "410225198504200059", "ratio": "60.00"})
    );
    assert_eq!(inv[1]["ratio"], "40.00", "a string with two decimals");
    assert_eq!(inv[1]["name"], "孙悦");
}

#[test]
fn establishment_of_an_individual_business() {
    let (_, v, _) = call(
        "restaurant-individual.json",
        "business-licence",
        "submit",
        None,
        None,
    );
    assert_eq!(v["entType"], "9100");
    assert_eq!(v["regCapital"].as_f64(), Some(3.0));
    assert_eq!(
        v["investors"],
        json!([]),
        "required, and may be empty for an individual business"
    );
    assert_eq!(v["legalRep"]["name"], "赵磊");
    assert_eq!(v["legalRep"]["phone"], "13903781234");
}

#[test]
fn cert_types_cover_every_platform_id_type() {
    let t = &MAPPING.codes["amr-cert-type"];
    for (platform, amr) in [
        ("111", "10"),
        ("414", "20"),
        ("516", "30"),
        ("511", "31"),
        ("113", "13"),
    ] {
        assert_eq!(t.lookup(platform), Some(amr), "{platform}");
    }
    for code in MAPPING.codes["gat2000-156-id-type"].codes.keys() {
        assert!(t.lookup(code).is_some(), "{code} has no certType");
    }
}

#[test]
fn food_permit_pre_review_licence_and_one_step() {
    let (line, v, _) = call("restaurant.json", "food-permit", "submit", None, None);
    assert_eq!(line, "POST /api/v2/food-permits/prereview HTTP/1.1");
    assert_eq!(
        keys_of(&v),
        [
            "bizNo",
            "shopName",
            "shopAddress",
            "area",
            "categories",
            "operator"
        ]
    );
    assert_eq!(v["bizNo"], CASE);
    assert_eq!(v["shopName"], "焦桐小馆");
    assert_eq!(v["shopAddress"], "河南省开封市兰考县中山街16号");
    assert_eq!(v["area"], json!(120.5));
    assert_eq!(v["categories"], json!(["热食类食品制售", "冷食类食品制售"]));
    assert_eq!(v["operator"], "兰考县焦桐餐饮有限公司");

    let (_, v, _) = call(
        "restaurant-individual.json",
        "food-permit",
        "submit",
        None,
        None,
    );
    assert!(v["area"].is_number());
    assert_eq!(v["area"].as_f64(), Some(35.0));
    assert_eq!(v["categories"], json!(["热食类食品制售"]));

    assert!(
        render(
            "restaurant.json",
            "food-permit",
            "complete",
            None,
            Some("restaurant.json")
        )
        .unwrap_err()
        .contains("--ref")
    );
    let (line, v, _) = call(
        "restaurant.json",
        "food-permit",
        "complete",
        Some("SP202603170002"),
        Some("restaurant.json"),
    );
    assert_eq!(
        line,
        "POST /api/v2/food-permits/SP202603170002/licence HTTP/1.1"
    );
    assert_eq!(keys_of(&v), ["uscc", "licenceNo"]);
    assert_eq!(
        v,
        json!({"uscc": "91410225MA9G2XK36T", "licenceNo": "410225000123456"})
    );

    let (line, v, _) = call(
        "restaurant.json",
        "food-permit",
        "submit",
        None,
        Some("restaurant.json"),
    );
    assert_eq!(line, "POST /api/v2/food-permits HTTP/1.1");
    assert_eq!(
        keys_of(&v),
        [
            "bizNo",
            "shopName",
            "shopAddress",
            "area",
            "categories",
            "operator",
            "uscc",
            "licenceNo"
        ]
    );
    assert_eq!(v["uscc"], "91410225MA9G2XK36T");
    assert_eq!(v["licenceNo"], "410225000123456");
}

#[test]
fn tasks_are_queried_by_case_and_type_and_withdrawn_by_task_id() {
    let (line, _, body) = call("restaurant.json", "business-licence", "query", None, None);
    assert_eq!(
        line,
        "GET /api/v2/tasks?bizNo=410225-20260317-000045&type=establishment HTTP/1.1"
    );
    assert!(body.is_empty());
    let (line, _, _) = call("restaurant.json", "food-permit", "query", None, None);
    assert_eq!(
        line,
        "GET /api/v2/tasks?bizNo=410225-20260317-000045&type=food-permit HTTP/1.1"
    );
    for (item, task) in [
        ("business-licence", "SJ202603170001"),
        ("food-permit", "SP202603170002"),
    ] {
        let (line, v, _) = call("restaurant.json", item, "withdraw", Some(task), None);
        assert_eq!(line, format!("POST /api/v2/tasks/{task}/withdraw HTTP/1.1"));
        assert_eq!(v, json!({"reason": "申请人主动撤回"}));
    }
}

#[test]
fn oauth2_client_credentials() {
    let o = MAPPING.departments["amr"].oauth2.as_ref().unwrap();
    assert_eq!(o.token_path, "/oauth/token");
    let env = json!({"env": {"CLIENT_ID": cred("ONETHING_DEPT_AMR_CLIENT_ID"), "CLIENT_SECRET": cred("ONETHING_DEPT_AMR_CLIENT_SECRET")}});
    let form = o.form.render(&to_value(&env)).unwrap().unwrap();
    assert_eq!(
        onething::codec::form::write(&form).unwrap(),
        "grant_type=client_credentials&client_id=yjs&client_secret=amr-test-secret"
    );
    let answer = r#"{"access_token": "eyJ.abc.def", "token_type": "Bearer", "expires_in": 7200}"#;
    let read = read_answer(&o.answer, 200, JSON, answer.as_bytes());
    assert!(
        matches!(read.outcome, Outcome::Ok { .. }),
        "{:?}",
        read.outcome
    );
    let ctx = to_value(&json!({"answer": serde_json::from_str::<Value>(answer).unwrap()}));
    assert_eq!(
        o.token.eval_opt_string(&ctx).unwrap().as_deref(),
        Some("eyJ.abc.def")
    );
    assert_eq!(
        o.expires_in.eval_opt_string(&ctx).unwrap().as_deref(),
        Some("7200")
    );
}

fn answer_with(
    item: &str,
    kind: OpKind,
    status: u16,
    extra: &[(&str, &str)],
    body: &str,
) -> Outcome {
    let mut headers = vec![("content-type", "application/json;charset=UTF-8")];
    headers.extend(extra);
    let answer = &op("amr", item, kind).answer;
    read_answer(answer, status, &headers, body.as_bytes()).outcome
}

fn answer(item: &str, op: OpKind, status: u16, body: &str) -> Outcome {
    answer_with(item, op, status, &[], body)
}

#[test]
fn answers_are_read_per_the_document() {
    use OpKind::*;
    let pushes = [
        ("business-licence", Submit),
        ("food-permit", Prereview),
        ("food-permit", Submit),
    ];
    for (item, op) in pushes {
        for status in [200, 201] {
            assert_eq!(
                answer(
                    item,
                    op,
                    status,
                    r#"{"success": true, "data": {"taskId": "SJ202603170001"}}"#
                ),
                Outcome::Ok {
                    reference: Some("SJ202603170001".into())
                }
            );
        }
        assert_eq!(
            answer(
                item,
                op,
                409,
                r#"{"success": false, "errorCode": "DUPLICATE_BIZNO", "errorMsg": "重复", "data": {"taskId": "SJ1"}}"#
            ),
            Outcome::Duplicate {
                reference: Some("SJ1".into())
            }
        );
        assert!(matches!(
            answer(item, op, 400, r#"{"success": false, "errorCode": "VALIDATION_FAILED", "errorMsg": "entName 不能为空"}"#),
            Outcome::Permanent { error } if error.contains("VALIDATION_FAILED") && error.contains("entName")
        ));
        assert_eq!(
            answer_with(
                item,
                op,
                429,
                &[("retry-after", "7")],
                r#"{"success": false, "errorCode": "RATE_LIMITED"}"#
            ),
            Outcome::Retry {
                after_secs: Some(7),
                error: "429 rate limited".into()
            }
        );
        assert!(matches!(
            answer(item, op, 503, ""),
            Outcome::Retry {
                after_secs: None,
                ..
            }
        ));
        assert_eq!(
            answer(item, op, 401, r#"{"error": "invalid_token"}"#),
            Outcome::Unauthorized
        );
    }
    assert!(matches!(
        answer("food-permit", Complete, 200, r#"{"success": true}"#),
        Outcome::Ok { reference: None }
    ));
    assert_eq!(
        answer(
            "food-permit",
            Complete,
            401,
            r#"{"error": "invalid_token"}"#
        ),
        Outcome::Unauthorized
    );
    for item in ["business-licence", "food-permit"] {
        assert!(matches!(
            answer(item, Query, 200, r#"{"success": true, "data": []}"#),
            Outcome::Ok { .. }
        ));
        assert_eq!(
            answer(item, Withdraw, 200, r#"{"success": true}"#),
            Outcome::Ok { reference: None }
        );
        assert_eq!(
            answer(
                item,
                Withdraw,
                409,
                r#"{"success": false, "errorCode": "ALREADY_FINISHED", "errorMsg": "已办结"}"#
            ),
            Outcome::Finished
        );
    }
}

fn task(ty: &str, state: &str) -> Value {
    json!({"taskId": "SJ202603160001", "bizNo": CASE, "type": ty, "state": state, "remark": null,
        "acceptedAt": "2026-03-16T09:21:00+08:00", "result": null})
}

fn read(record: &Value, asked: Option<&str>) -> StatusReport {
    report("amr", &to_value(record), asked).unwrap()
}

#[test]
fn every_state_maps_to_its_transition_for_both_items() {
    for (ty, item) in [
        ("establishment", "business-licence"),
        ("food-permit", "food-permit"),
    ] {
        let change = |r: Value| {
            let rep = read(&r, None);
            assert_eq!(rep.item.as_deref(), Some(item), "item from `type`");
            assert_eq!(rep.case_id, CASE);
            assert_eq!(rep.reference.as_deref(), Some("SJ202603160001"));
            rep.change
        };
        assert!(
            matches!(change(task(ty, "IN_REVIEW")), Change::Progress { stage, .. } if stage == "IN_REVIEW")
        );
        assert_eq!(
            change(task(ty, "ACCEPTED")),
            Change::Accepted {
                accepted_at: Some("2026-03-16T09:21:00+08:00".into())
            }
        );
        let mut r = task(ty, "ACCEPTED");
        r["acceptedAt"] = "2026-03-16T01:21:00Z".into();
        assert_eq!(
            change(r),
            Change::Accepted {
                accepted_at: Some("2026-03-16T09:21:00+08:00".into())
            },
            "any offset, shown in +08:00"
        );
        let mut r = task(ty, "NOT_ACCEPTED");
        r["remark"] = "材料不符合要求".into();
        assert_eq!(
            change(r),
            Change::Rejected {
                reason: "材料不符合要求".into()
            }
        );
        let mut r = task(ty, "NOT_APPROVED");
        r["remark"] = "不符合许可条件".into();
        assert_eq!(
            change(r),
            Change::Denied {
                reason: "不符合许可条件".into(),
                accepted_at: Some("2026-03-16T09:21:00+08:00".into()),
            }
        );
        assert!(matches!(
            change(task(ty, "WITHDRAWN")),
            Change::Withdrawn { .. }
        ));
    }

    let mut r = task("establishment", "APPROVED");
    r["result"] = json!({"uscc": "91410225MA9G2XK36T", "licenceNo": "410225000123456", "entName": "兰考县焦桐餐饮有限公司"});
    match read(&r, None).change {
        Change::Approved {
            results,
            accepted_at,
        } => {
            assert_eq!(results.len(), 3);
            assert_eq!(results["uscc"], "91410225MA9G2XK36T");
            assert_eq!(results["licence_no"], "410225000123456");
            assert_eq!(results["company_name"], "兰考县焦桐餐饮有限公司");
            assert_eq!(accepted_at.as_deref(), Some("2026-03-16T09:21:00+08:00"));
        }
        other => panic!("{other:?}"),
    }
    let mut r = task("food-permit", "APPROVED");
    r["result"] = json!({"permitNo": "JY14102250012345"});
    match read(&r, None).change {
        Change::Approved { results, .. } => {
            assert_eq!(results.len(), 1);
            assert_eq!(results["permit_no"], "JY14102250012345");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        report("amr", &to_value(&task("annual-report", "ACCEPTED")), None).is_err(),
        "unknown task type"
    );
    assert!(report("amr", &to_value(&task("establishment", "LOST")), None).is_err());
}

#[test]
fn query_answers_give_the_task_array() {
    let body = json!({"success": true, "data": [task("food-permit", "ACCEPTED")]}).to_string();
    let query = op("amr", "food-permit", OpKind::Query);
    let got = read_answer(&query.answer, 200, JSON, body.as_bytes());
    assert!(matches!(got.outcome, Outcome::Ok { .. }));
    let records = query_records(query, got.parsed, &[]);
    assert_eq!(records.len(), 1);
    let rep = report("amr", &records[0], Some("food-permit")).unwrap();
    assert_eq!(rep.item.as_deref(), Some("food-permit"));
    assert!(matches!(rep.change, Change::Accepted { .. }));
}

#[test]
fn callbacks_need_the_callback_token() {
    let cb = MAPPING.departments["amr"].callback.as_ref().unwrap();
    let body = r#"{"taskId": "SJ202603160001", "bizNo": "410225-20260317-000045", "type": "establishment", "state": "APPROVED",
 "remark": null, "acceptedAt": "2026-03-16T09:21:00+08:00",
 "result": {"uscc": "91410225MA9G2XK36T", "licenceNo": "410225000123456", "entName": "兰考县焦桐餐饮有限公司"}}"#;
    let headers = |auth: Option<&str>| {
        let mut h = vec![("content-type", "application/json")];
        h.extend(auth.map(|a| ("authorization", a)));
        support::headers(&h)
    };
    let good = format!("Bearer {}", cred("ONETHING_DEPT_AMR_CALLBACK_TOKEN"));
    let rep = callback_report("amr", &headers(Some(&good)), body.as_bytes());
    assert_eq!(rep.item.as_deref(), Some("business-licence"));
    assert!(matches!(rep.change, Change::Approved { .. }));
    for bad in [
        None,
        Some("Bearer wrong-token"),
        Some("amr-callback-token"),
        Some("Basic amr-callback-token"),
    ] {
        assert!(
            matches!(
                callback("amr", &headers(bad), body.as_bytes()),
                CallbackRead::Unauthorized
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        callback("amr", &headers(Some(&good)), b"{not json"),
        CallbackRead::Unreadable(_)
    ));
    assert_eq!(cb.ok.status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&cb.ok.body).unwrap(),
        json!({"success": true})
    );
    assert_eq!(cb.unauthorized.status, 401);
}
