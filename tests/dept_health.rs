//! health (县卫健委): what `translate` produces, decoded and checked against the interface document
//! independently of the mapping; and how its answers, reports and callbacks are read.

mod support;

use hmac::{Hmac, Mac};
use onething::mapping::answer::Outcome;
use onething::mapping::callback::CallbackRead;
use onething::mapping::expr::to_value;
use onething::mapping::operation::OpKind;
use onething::mapping::report::Change;
use sha2::{Digest, Sha256};
use support::*;

fn sign(app_id: &str, ts: &str, nonce: &str, body: &[u8]) -> String {
    let msg = format!(
        "{app_id}\n{ts}\n{nonce}\n{}",
        hex::encode(Sha256::digest(body))
    );
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(cred("ONETHING_DEPT_HEALTH_SECRET").as_bytes())
            .unwrap();
    mac.update(msg.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[test]
fn submit_is_signed_json_per_the_document() {
    let raw = render("newborn.json", "birth-cert", "submit", None, None).unwrap();
    let (line, headers, body, v) = json_request(&raw, "127.0.0.1:9101");
    assert_eq!(line, "POST /api/v1/birth-cert/applications HTTP/1.1");
    let ts = header(&headers, "X-Timestamp").unwrap();
    assert_eq!(ts, "1773623730000", "Unix milliseconds of the fixed clock");
    let nonce = header(&headers, "X-Nonce").unwrap();
    assert_eq!(header(&headers, "X-App-Id"), Some("yjs-gateway"));
    assert_eq!(
        header(&headers, "X-Signature").unwrap(),
        sign("yjs-gateway", ts, nonce, body.as_bytes())
    );

    assert_eq!(v["sblsh"], "410225-20260316-000123");
    assert_eq!(v["sxbm"], "WJ-CSYXZM-01");
    assert_eq!(v["applyTime"], "2026-03-16 09:15:00");
    assert_eq!(v["baby"]["sex"], "M");
    assert_eq!(v["baby"]["birthTime"], "2026-03-15 08:30");
    assert_eq!(v["baby"]["weight"], 3400);
    assert_eq!(v["baby"]["nation"], "01");
    assert_eq!(v["mother"]["idType"], "01");
    assert_eq!(v["father"]["idNo"], "410225199303050036");
    assert_eq!(v["contactPhone"], "13803780001");
    let att = v["attachments"].as_array().unwrap();
    assert_eq!(att.len(), 1, "only birth_medical_record materials");
    assert_eq!(att[0]["name"], "分娩记录");
}

#[test]
fn no_father_means_no_father_object() {
    let raw = render("newborn-no-father.json", "birth-cert", "submit", None, None).unwrap();
    let (_, _, body) = split_http(&raw);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(v.get("father").is_none(), "father omitted, not null: {v}");
    assert_eq!(v["baby"]["name"], "王𠈌");
}

#[test]
fn query_is_a_signed_get_without_body() {
    let raw = render("newborn.json", "birth-cert", "query", None, None).unwrap();
    let (line, headers, body) = split_http(&raw);
    assert_eq!(
        line,
        "GET /api/v1/birth-cert/applications?sblsh=410225-20260316-000123 HTTP/1.1"
    );
    assert!(body.is_empty());
    assert!(header(&headers, "Content-Length").is_none());
    let ts = header(&headers, "X-Timestamp").unwrap();
    assert_eq!(
        header(&headers, "X-Signature").unwrap(),
        sign("yjs-gateway", ts, NONCE, b"")
    );
}

#[test]
fn withdraw_needs_the_reference() {
    let err = render("newborn.json", "birth-cert", "withdraw", None, None).unwrap_err();
    assert!(err.contains("--ref"), "{err}");
    let raw = render(
        "newborn.json",
        "birth-cert",
        "withdraw",
        Some("CS2026031600012"),
        None,
    )
    .unwrap();
    let (line, _, body) = split_http(&raw);
    assert_eq!(
        line,
        "POST /api/v1/birth-cert/applications/CS2026031600012/withdraw HTTP/1.1"
    );
    assert_eq!(body, "{\"reason\":\"申请人主动撤回\"}".as_bytes());
}

fn answer(kind: OpKind, status: u16, body: &str) -> Outcome {
    let answer = &op("health", "birth-cert", kind).answer;
    read_answer(answer, status, JSON, body.as_bytes()).outcome
}

#[test]
fn answers_are_read_per_the_code_table() {
    use OpKind::*;
    assert_eq!(
        answer(
            Submit,
            200,
            r#"{"code":"0","msg":"ok","data":{"applyNo":"CS2026031600012"}}"#
        ),
        Outcome::Ok {
            reference: Some("CS2026031600012".into())
        }
    );
    assert_eq!(
        answer(
            Submit,
            200,
            r#"{"code":"3001","msg":"dup","data":{"applyNo":"CS1"}}"#
        ),
        Outcome::Duplicate {
            reference: Some("CS1".into())
        }
    );
    assert!(matches!(
        answer(Submit, 200, r#"{"code":"1001","msg":"sig"}"#),
        Outcome::Permanent { .. }
    ));
    assert!(
        matches!(answer(Submit, 200, r#"{"code":"2001","msg":"baby.name"}"#), Outcome::Permanent { error } if error.contains("baby.name"))
    );
    assert!(matches!(
        answer(Submit, 200, r#"{"code":"1002","msg":"nonce"}"#),
        Outcome::Retry { .. }
    ));
    assert!(matches!(
        answer(Submit, 200, r#"{"code":"5000","msg":"busy"}"#),
        Outcome::Retry { .. }
    ));
    assert!(matches!(
        answer(Submit, 503, "<html>down</html>"),
        Outcome::Retry { .. }
    ));
    assert_eq!(
        answer(Query, 200, r#"{"code":"4004","msg":"none"}"#),
        Outcome::NotFound
    );
    assert_eq!(
        answer(Withdraw, 200, r#"{"code":"4009","msg":"done"}"#),
        Outcome::Finished
    );
    assert!(matches!(
        answer(Submit, 200, "not json"),
        Outcome::Unrecognised { .. }
    ));
}

#[test]
fn every_status_maps_to_its_transition() {
    let base = serde_json::json!({"applyNo": "CS1", "sblsh": "410225-20260316-000123", "reason": null,
        "certNo": null, "acceptTime": "2026-03-16 09:20:11", "finishTime": null});
    let with = |status: &str, extra: serde_json::Value| {
        let mut r = base.clone();
        r["status"] = status.into();
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        change_of("health", Some("birth-cert"), &r)
    };
    assert_eq!(with("RECEIVED", serde_json::json!({})), Change::Dispatched);
    assert_eq!(
        with("ACCEPTED", serde_json::json!({})),
        Change::Accepted {
            accepted_at: Some("2026-03-16T09:20:11+08:00".into())
        }
    );
    assert_eq!(
        with("REJECTED", serde_json::json!({"reason": "材料不符合要求"})),
        Change::Rejected {
            reason: "材料不符合要求".into()
        }
    );
    match with(
        "ISSUED",
        serde_json::json!({"certNo": "Q410123456", "finishTime": "2026-03-16 09:40:02"}),
    ) {
        Change::Approved {
            results,
            accepted_at,
        } => {
            assert_eq!(results["licence_no"], "Q410123456");
            assert_eq!(results["issued_at"], "2026-03-16T09:40:02+08:00");
            assert_eq!(accepted_at.as_deref(), Some("2026-03-16T09:20:11+08:00"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        with("REFUSED", serde_json::json!({"reason": "不符合许可条件"})),
        Change::Denied {
            reason: "不符合许可条件".into(),
            accepted_at: Some("2026-03-16T09:20:11+08:00".into()),
        }
    );
    assert!(matches!(
        with("WITHDRAWN", serde_json::json!({})),
        Change::Withdrawn { .. }
    ));
    let lost = to_value(&serde_json::json!({"sblsh": "x", "status": "LOST"}));
    let unknown = report("health", &lost, Some("birth-cert"));
    assert!(unknown.unwrap_err().contains("LOST"));
}

#[test]
fn callbacks_are_verified_before_they_are_read() {
    let body = r#"{"applyNo": "CS2026031600012", "sblsh": "410225-20260316-000123", "status": "ISSUED", "reason": null, "certNo": "Q410123456", "acceptTime": "2026-03-16 09:20:11", "finishTime": "2026-03-16 09:40:02"}"#;
    let headers = |sig: String| {
        headers(&[
            ("content-type", "application/json"),
            ("x-app-id", "health-system"),
            ("x-timestamp", "1773623730000"),
            ("x-nonce", "aabbccddeeff00112233"),
            ("x-signature", &sig),
        ])
    };
    let good = sign(
        "health-system",
        "1773623730000",
        "aabbccddeeff00112233",
        body.as_bytes(),
    );
    let r = callback_report("health", &headers(good.clone()), body.as_bytes());
    assert_eq!(r.case_id, "410225-20260316-000123");
    assert_eq!(r.reference.as_deref(), Some("CS2026031600012"));
    assert!(matches!(r.change, Change::Approved { .. }));
    let tampered = body.replace("Q410123456", "Q410123457");
    assert!(matches!(
        callback("health", &headers(good), tampered.as_bytes()),
        CallbackRead::Unauthorized
    ));
    assert!(matches!(
        callback("health", &headers("00".repeat(32)), body.as_bytes()),
        CallbackRead::Unauthorized
    ));
    let cb = MAPPING.departments["health"].callback.as_ref().unwrap();
    assert_eq!(cb.ok.status, 200);
    assert_eq!(cb.unauthorized.status, 401);
}
