//! medicare (县医保局 城乡居民参保登记系统, interface v3.1): what `translate` produces, decoded and
//! checked against the interface document independently of the mapping — the envelope is decrypted
//! with SM4-ECB and its SM3 signature recomputed here — and how answers, reports and callbacks
//! (the same envelope, built here by encrypting a business JSON ourselves) are read.

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ecb::cipher::block_padding::Pkcs7;
use ecb::cipher::{BlockDecryptMut, BlockEncryptMut, KeyInit};
use onething::mapping::answer::Outcome;
use onething::mapping::callback::CallbackRead;
use onething::mapping::expr::to_value;
use onething::mapping::operation::OpKind;
use onething::mapping::report::{Change, StatusReport};
use serde_json::{Value, json};
use sm3::Digest as _;
use support::*;

const CASE: &str = "410225-20260316-000123";
const ENROL_NO: &str = "YB2026031600001";

fn key() -> [u8; 16] {
    hex::decode(cred("ONETHING_DEPT_MEDICARE_KEY"))
        .unwrap()
        .try_into()
        .unwrap()
}

fn secret() -> String {
    cred("ONETHING_DEPT_MEDICARE_SECRET")
}

fn sm3_hex(s: &str) -> String {
    hex::encode(sm3::Sm3::digest(s.as_bytes()))
}

fn encrypt(plain: &str) -> String {
    let ct = ecb::Encryptor::<sm4::Sm4>::new(&key().into())
        .encrypt_padded_vec_mut::<Pkcs7>(plain.as_bytes());
    B64.encode(ct)
}

fn decrypt(b64: &str) -> String {
    let ct = B64.decode(b64).expect("encData is standard padded Base64");
    let pt = ecb::Decryptor::<sm4::Sm4>::new(&key().into())
        .decrypt_padded_vec_mut::<Pkcs7>(&ct)
        .expect("SM4-ECB/PKCS#7 with the test key");
    String::from_utf8(pt).expect("UTF-8 business JSON")
}

/// Checks the HTTP shape and the envelope, verifies the signature, and returns (path, the raw
/// decrypted business JSON text, the business data parsed).
fn open(raw: &[u8]) -> (String, String, Value) {
    let (line, _, _, env) = json_request(raw, "127.0.0.1:9103");
    let path = line
        .strip_prefix("POST ")
        .and_then(|l| l.strip_suffix(" HTTP/1.1"))
        .unwrap_or_else(|| panic!("every operation is a POST: {line}"))
        .to_string();
    assert_eq!(
        keys_of(&env),
        [
            "appId",
            "timestamp",
            "encType",
            "signType",
            "encData",
            "signData"
        ]
    );
    assert_eq!(env["appId"], cred("ONETHING_DEPT_MEDICARE_APP_ID").as_str());
    assert_eq!(
        env["timestamp"], "20260316091530",
        "real time yyyyMMddHHmmss in +08:00"
    );
    assert_eq!(env["encType"], "SM4");
    assert_eq!(env["signType"], "SM3");
    let enc = env["encData"].as_str().unwrap();
    let sign_input = format!(
        "{}{}{}{}",
        env["appId"].as_str().unwrap(),
        env["timestamp"].as_str().unwrap(),
        enc,
        secret()
    );
    let sign = env["signData"].as_str().unwrap();
    assert_eq!(
        sign,
        sm3_hex(&sign_input),
        "signData = SM3(appId + timestamp + encData + secret)"
    );
    assert_eq!(sign, sign.to_ascii_lowercase(), "lowercase hex");
    let plain = decrypt(enc);
    let data: Value = serde_json::from_str(&plain).unwrap();
    (path, plain, data)
}

const PRECHECK_FIELDS: [&str; 9] = [
    "sblsh",
    "xzqh",
    "insuredName",
    "gender",
    "birthDate",
    "nation",
    "guardian",
    "address",
    "payYear",
];

fn check_precheck_fields(v: &Value) {
    assert_eq!(v["sblsh"], CASE);
    assert_eq!(v["xzqh"], "410225");
    assert_eq!(v["insuredName"], "王子涵");
    assert_eq!(v["gender"], "1", "GB/T 2261.1");
    assert_eq!(v["birthDate"], "2026-03-15");
    assert_eq!(v["nation"], "01", "GB 3304");
    let g = &v["guardian"];
    assert_eq!(keys_of(g), ["name", "idType", "idNo", "phone"]);
    assert_eq!(g["name"], "李娜", "the mother");
    assert_eq!(g["idType"], "111", "GA/T 2000.156");
    assert_eq!(g["idNo"], "410225199506120022");
    assert_eq!(g["phone"], "13803780001", "the applicant's phone");
    assert_eq!(v["address"], "河南省开封市兰考县城关镇裕禄大道88号");
    assert_eq!(v["payYear"], json!(2026), "an integer, not a string");
}

#[test]
fn precheck_without_hukou_results_is_the_pre_review_push() {
    let raw = render("newborn.json", "medicare-enrol", "submit", None, None).unwrap();
    let (path, _, v) = open(&raw);
    assert_eq!(path, "/api/enrol/precheck");
    assert_eq!(keys_of(&v), PRECHECK_FIELDS);
    check_precheck_fields(&v);
}

#[test]
fn rare_character_travels_as_utf8_inside_the_envelope() {
    let raw = render(
        "newborn-no-father.json",
        "medicare-enrol",
        "submit",
        None,
        None,
    )
    .unwrap();
    let (path, plain, v) = open(&raw);
    assert_eq!(path, "/api/enrol/precheck");
    assert_eq!(v["insuredName"], "王𠈌");
    assert!(plain.contains("王𠈌"), "raw UTF-8, not escaped: {plain}");
    assert_eq!(v["sblsh"], "410225-20260316-000124");
    assert_eq!(v["guardian"]["name"], "李娜");
}

#[test]
fn apply_is_the_one_step_push_with_the_hukou_results() {
    let raw = render(
        "newborn.json",
        "medicare-enrol",
        "submit",
        None,
        Some("newborn.json"),
    )
    .unwrap();
    let (path, _, v) = open(&raw);
    assert_eq!(path, "/api/enrol/apply");
    let mut want = PRECHECK_FIELDS.to_vec();
    want.extend(["citizenId", "hukouNo"]);
    assert_eq!(keys_of(&v), want);
    check_precheck_fields(&v);
    assert_eq!(v["citizenId"], "410225202603150017");
    assert_eq!(v["hukouNo"], "410225001234");
}

#[test]
fn confirm_hands_the_enrolment_its_hukou_results() {
    let err = render(
        "newborn.json",
        "medicare-enrol",
        "complete",
        None,
        Some("newborn.json"),
    )
    .unwrap_err();
    assert!(err.contains("--ref"), "{err}");
    let raw = render(
        "newborn.json",
        "medicare-enrol",
        "complete",
        Some(ENROL_NO),
        Some("newborn.json"),
    )
    .unwrap();
    let (path, plain, _) = open(&raw);
    assert_eq!(path, "/api/enrol/confirm");
    assert_eq!(
        plain,
        r#"{"enrolNo":"YB2026031600001","sblsh":"410225-20260316-000123","citizenId":"410225202603150017","hukouNo":"410225001234"}"#
    );
}

#[test]
fn query_and_cancel() {
    let raw = render("newborn.json", "medicare-enrol", "query", None, None).unwrap();
    let (path, plain, _) = open(&raw);
    assert_eq!(path, "/api/enrol/query");
    assert_eq!(plain, r#"{"sblsh":"410225-20260316-000123"}"#);

    let raw = render(
        "newborn.json",
        "medicare-enrol",
        "withdraw",
        Some(ENROL_NO),
        None,
    )
    .unwrap();
    let (path, plain, _) = open(&raw);
    assert_eq!(path, "/api/enrol/cancel");
    assert_eq!(
        plain,
        r#"{"enrolNo":"YB2026031600001","reason":"申请人主动撤回"}"#
    );
}

fn answer(kind: OpKind, status: u16, body: &str) -> Outcome {
    let answer = &op("medicare", "medicare-enrol", kind).answer;
    let json = [("content-type", "application/json;charset=UTF-8")];
    read_answer(answer, status, &json, body.as_bytes()).outcome
}

#[test]
fn answers_are_read_per_the_code_table() {
    use OpKind::*;
    for op in [Prereview, Submit] {
        assert_eq!(
            answer(
                op,
                200,
                r#"{"code": 0, "message": "成功", "data": {"enrolNo": "YB2026031600001"}}"#
            ),
            Outcome::Ok {
                reference: Some(ENROL_NO.into())
            }
        );
        assert_eq!(
            answer(
                op,
                200,
                r#"{"code": 3001, "message": "重复申报", "data": {"enrolNo": "YB1"}}"#
            ),
            Outcome::Duplicate {
                reference: Some("YB1".into())
            },
            "3001 duplicate sblsh: treat as success"
        );
    }
    assert!(matches!(
        answer(Complete, 200, r#"{"code": 0, "message": "成功"}"#),
        Outcome::Ok { .. }
    ));
    for code in [1001, 1002] {
        let body = format!(r#"{{"code": {code}, "message": "x"}}"#);
        assert!(
            matches!(answer(Submit, 200, &body), Outcome::Permanent { .. }),
            "{code}: do not retry"
        );
    }
    assert!(
        matches!(answer(Submit, 200, r#"{"code": 2001, "message": "guardian.idNo"}"#), Outcome::Permanent { error } if error.contains("guardian.idNo"))
    );
    for code in [1003, 5001] {
        let body = format!(r#"{{"code": {code}, "message": "x"}}"#);
        assert!(
            matches!(answer(Submit, 200, &body), Outcome::Retry { .. }),
            "{code}: retry"
        );
    }
    assert!(matches!(
        answer(Submit, 502, "Bad Gateway"),
        Outcome::Retry { .. }
    ));
    assert_eq!(
        answer(Query, 200, r#"{"code": 4004, "message": "无记录"}"#),
        Outcome::NotFound
    );
    assert_eq!(
        answer(Withdraw, 200, r#"{"code": 0, "message": "成功"}"#),
        Outcome::Ok { reference: None }
    );
    assert_eq!(
        answer(Withdraw, 200, r#"{"code": 4004, "message": "无记录"}"#),
        Outcome::NotFound
    );
    assert_eq!(
        answer(Withdraw, 200, r#"{"code": 2001, "message": "已办结"}"#),
        Outcome::Finished
    );
    assert!(
        matches!(
            answer(Withdraw, 200, r#"{"code": 2001, "message": "reason"}"#),
            Outcome::Permanent { .. }
        ),
        "2001 without 已办结 is a validation failure"
    );
    // The code is numeric: a string code is not this system's answer.
    assert!(matches!(
        answer(Submit, 200, r#"{"code": "0"}"#),
        Outcome::Unrecognised { .. }
    ));
}

fn report(record: Value) -> Result<StatusReport, String> {
    support::report("medicare", &to_value(&record), Some("medicare-enrol"))
}

fn record(state: &str) -> Value {
    json!({"enrolNo": ENROL_NO, "sblsh": CASE, "state": state, "reason": null, "insuredNo": null,
        "acceptTime": "2026-03-16 10:02:03", "finishTime": null})
}

#[test]
fn every_state_maps_to_its_transition() {
    let change = |r: Value| report(r).unwrap().change;
    assert_eq!(change(record("RECEIVED")), Change::Dispatched);
    assert_eq!(
        change(record("PRECHECK_PASSED")),
        Change::Progress {
            stage: "prereview-passed".into(),
            note: None
        }
    );
    let mut r = record("PRECHECK_FAILED");
    r["reason"] = "材料不符合要求".into();
    assert_eq!(
        change(r),
        Change::Rejected {
            reason: "材料不符合要求".into()
        }
    );
    assert_eq!(
        change(record("ACCEPTED")),
        Change::Accepted {
            accepted_at: Some("2026-03-16T10:02:03+08:00".into())
        }
    );
    let mut r = record("REJECTED");
    r["reason"] = "材料不符合要求".into();
    assert_eq!(
        change(r),
        Change::Rejected {
            reason: "材料不符合要求".into()
        }
    );
    let mut r = record("DONE");
    r["insuredNo"] = "41022526031500017".into();
    r["finishTime"] = "2026-03-16 10:30:00".into();
    match change(r) {
        Change::Approved {
            results,
            accepted_at,
        } => {
            assert_eq!(results.len(), 1);
            assert_eq!(results["insured_no"], "41022526031500017");
            assert_eq!(accepted_at.as_deref(), Some("2026-03-16T10:02:03+08:00"));
        }
        other => panic!("{other:?}"),
    }
    let mut r = record("FAILED");
    r["reason"] = "不符合许可条件".into();
    assert_eq!(
        change(r),
        Change::Denied {
            reason: "不符合许可条件".into(),
            accepted_at: Some("2026-03-16T10:02:03+08:00".into()),
        }
    );
    assert!(matches!(
        change(record("CANCELLED")),
        Change::Withdrawn { .. }
    ));
    assert!(report(record("LOST")).unwrap_err().contains("LOST"));
    let r = report(record("RECEIVED")).unwrap();
    assert_eq!(r.case_id, CASE);
    assert_eq!(r.reference.as_deref(), Some(ENROL_NO));
}

/// The query's `data` has no `sblsh`: the case id is the one the query asked about, which the
/// runtime hands the report reader as `case_id`.
#[test]
fn query_records_take_the_case_id_asked_about() {
    let answer_body = r#"{"code": 0, "message": "成功", "data": {"enrolNo": "YB2026031600001", "state": "ACCEPTED",
        "reason": null, "insuredNo": null, "acceptTime": "2026-03-16 10:02:03", "finishTime": null}}"#;
    let query = op("medicare", "medicare-enrol", OpKind::Query);
    let read = read_answer(&query.answer, 200, JSON, answer_body.as_bytes());
    assert!(matches!(read.outcome, Outcome::Ok { .. }));
    let answer = to_value(&serde_json::from_str::<Value>(answer_body).unwrap());
    let records = query_records(query, answer, &[]);
    assert_eq!(records.len(), 1);
    let reader = MAPPING.departments["medicare"].report.as_ref().unwrap();
    let r = reader
        .read(
            &records[0],
            Some("medicare-enrol"),
            &[("case_id", CASE.into())],
        )
        .unwrap();
    assert_eq!(r.case_id, CASE);
    assert_eq!(r.reference.as_deref(), Some(ENROL_NO));
    assert_eq!(
        r.change,
        Change::Accepted {
            accepted_at: Some("2026-03-16T10:02:03+08:00".into())
        }
    );
    assert!(
        reader
            .read(&records[0], Some("medicare-enrol"), &[])
            .is_err(),
        "no case id at all"
    );
}

fn envelope(app_id: &str, ts: &str, enc: &str) -> String {
    let sign = sm3_hex(&format!("{app_id}{ts}{enc}{}", secret()));
    json!({"appId": app_id, "timestamp": ts, "encType": "SM4", "signType": "SM3", "encData": enc, "signData": sign})
        .to_string()
}

#[test]
fn callback_envelope_round_trip() {
    let cb = MAPPING.departments["medicare"].callback.as_ref().unwrap();
    let headers = headers(&[("content-type", "application/json")]);
    let business = json!({"enrolNo": ENROL_NO, "sblsh": CASE, "state": "DONE", "reason": null,
        "insuredNo": "41022526031500017", "acceptTime": "2026-03-16 10:02:03", "finishTime": "2026-03-16 10:30:00"});
    let enc = encrypt(&business.to_string());
    let body = envelope("medicare-system", "20260316103001", &enc);

    let r = callback_report("medicare", &headers, body.as_bytes());
    assert_eq!(r.case_id, CASE);
    assert_eq!(r.reference.as_deref(), Some(ENROL_NO));
    assert_eq!(r.status, "DONE");
    match r.change {
        Change::Approved { results, .. } => {
            assert_eq!(results["insured_no"], "41022526031500017")
        }
        other => panic!("{other:?}"),
    }

    // Any change to a signed part, or a wrong secret, is refused.
    let mut tampered: Value = serde_json::from_str(&body).unwrap();
    tampered["timestamp"] = "20260316103002".into();
    assert!(matches!(
        callback("medicare", &headers, tampered.to_string().as_bytes()),
        CallbackRead::Unauthorized
    ));
    let mut tampered: Value = serde_json::from_str(&body).unwrap();
    tampered["encData"] = encrypt(&business.to_string().replace("DONE", "FAILED")).into();
    assert!(matches!(
        callback("medicare", &headers, tampered.to_string().as_bytes()),
        CallbackRead::Unauthorized
    ));
    let wrong_secret = {
        let sign = sm3_hex(&format!("medicare-system20260316103001{enc}wrong-secret"));
        let mut v: Value = serde_json::from_str(&body).unwrap();
        v["signData"] = sign.into();
        v.to_string()
    };
    assert!(matches!(
        callback("medicare", &headers, wrong_secret.as_bytes()),
        CallbackRead::Unauthorized
    ));
    assert!(matches!(
        callback("medicare", &headers, b"not json at all"),
        CallbackRead::Unauthorized
    ));

    // Correctly signed, but encData does not decrypt with the key: unreadable (1002).
    let garbage = envelope("medicare-system", "20260316103001", &B64.encode([7u8; 32]));
    assert!(matches!(
        callback("medicare", &headers, garbage.as_bytes()),
        CallbackRead::Unreadable(_)
    ));
    let not_b64 = envelope("medicare-system", "20260316103001", "%%%");
    assert!(matches!(
        callback("medicare", &headers, not_b64.as_bytes()),
        CallbackRead::Unreadable(_)
    ));
    // Decrypts, but the business data is not JSON.
    let not_json = envelope("medicare-system", "20260316103001", &encrypt("state=DONE"));
    assert!(matches!(
        callback("medicare", &headers, not_json.as_bytes()),
        CallbackRead::Unreadable(_)
    ));

    let reply = |r: &onething::config::department::Reply| {
        (r.status, serde_json::from_str::<Value>(&r.body).unwrap())
    };
    assert_eq!(reply(&cb.ok), (200, json!({"code": 0})));
    assert_eq!(reply(&cb.unauthorized), (401, json!({"code": 1001})));
    assert_eq!(reply(&cb.unreadable), (400, json!({"code": 1002})));
}

#[test]
fn callback_states_before_the_decision() {
    for (state, want) in [
        (
            "PRECHECK_PASSED",
            Change::Progress {
                stage: "prereview-passed".into(),
                note: None,
            },
        ),
        (
            "ACCEPTED",
            Change::Accepted {
                accepted_at: Some("2026-03-16T10:02:03+08:00".into()),
            },
        ),
    ] {
        let body = envelope(
            "medicare-system",
            "20260316100203",
            &encrypt(&record(state).to_string()),
        );
        let CallbackRead::Records(records) = callback("medicare", &[], body.as_bytes()) else {
            panic!("{state}: not read");
        };
        let r = support::report("medicare", &records[0], None).unwrap();
        assert_eq!(r.change, want);
    }
}
