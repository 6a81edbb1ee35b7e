//! water, power and gas (县自来水公司, 国网县供电公司, 县燃气公司): three systems sharing one interface
//! (联合过户接口, spec/departments/utilities.md). What `translate` produces, decoded and
//! checked against the interface document independently of the mapping, and how answers, status
//! objects and power's HMAC-signed callback are read. Every test runs for each system it applies
//! to; `UTILITIES` holds where they differ: gas has no pre-review (stage `full` only) and is slow,
//! power calls back, water and gas are polled.

mod support;

use hmac::{Hmac, Mac};
use onething::mapping::answer::Outcome;
use onething::mapping::callback::CallbackRead;
use onething::mapping::expr::to_value;
use onething::mapping::operation::OpKind;
use onething::mapping::report::Change;
use serde_json::{Value, json};
use sha2::Sha256;
use support::*;

/// One utility company's system, and what the tests expect of it.
struct Utility {
    id: &'static str,
    item: &'static str,
    host: &'static str,
    /// The `X-Api-Key` credential.
    key_var: &'static str,
    /// The seller's account with the company (`utilities.<id>_account` in the fixture).
    account: &'static str,
    /// The department's reference for the case.
    ticket: &'static str,
    /// The buyer's new account, the result of an approval.
    new_account: &'static str,
    /// Accepts `stage` `prereview` (and so has `complete`).
    prereview: bool,
    /// Connected: the callback secret's credential.
    callback_secret: Option<&'static str>,
    /// The least time its answers are waited for.
    min_timeout_secs: Option<u64>,
}

const UTILITIES: [Utility; 3] = [
    Utility {
        id: "water",
        item: "water-transfer",
        host: "127.0.0.1:9108",
        key_var: "ONETHING_DEPT_WATER_API_KEY",
        account: "SW0012345",
        ticket: "GS2026031800001",
        new_account: "SW0098765",
        prereview: true,
        callback_secret: None,
        min_timeout_secs: None,
    },
    Utility {
        id: "power",
        item: "power-transfer",
        host: "127.0.0.1:9109",
        key_var: "ONETHING_DEPT_POWER_API_KEY",
        account: "6600123456",
        ticket: "GD2026031800001",
        new_account: "6600998877",
        prereview: true,
        callback_secret: Some("ONETHING_DEPT_POWER_CALLBACK_SECRET"),
        min_timeout_secs: None,
    },
    Utility {
        id: "gas",
        item: "gas-transfer",
        host: "127.0.0.1:9110",
        key_var: "ONETHING_DEPT_GAS_API_KEY",
        account: "RQ778899",
        ticket: "RQ2026031800001",
        new_account: "RQ0098765",
        prereview: false,
        callback_secret: None,
        // "the system may take up to 3 s to answer"
        min_timeout_secs: Some(10),
    },
];

/// Runs `test` for every system `applies` to (at least one), naming it on stderr first so that a
/// failure says which.
fn each(applies: impl Fn(&Utility) -> bool, test: impl Fn(&Utility)) {
    let mut ran = 0;
    for u in UTILITIES.iter().filter(|u| applies(u)) {
        eprintln!("-- {}", u.id);
        test(u);
        ran += 1;
    }
    assert!(ran > 0, "no system to test");
}

fn all(_: &Utility) -> bool {
    true
}

const CASE: &str = "410225-20260318-000007";
/// A transfer push's keys, in the document's order, the seller's account known; `certificateNo`
/// follows at stage `full`.
const PUSH_KEYS: [&str; 6] = [
    "orderNo",
    "stage",
    "address",
    "oldAccount",
    "newOwner",
    "oldOwner",
];
/// The same, the seller's account unknown.
const NO_ACCOUNT_KEYS: [&str; 5] = ["orderNo", "stage", "address", "newOwner", "oldOwner"];
const CERTIFICATE: &str = "豫(2026)兰考县不动产权第0001234号";

impl Utility {
    /// (request line, body as JSON); checks the headers every call carries.
    fn call(
        &self,
        fixture: &str,
        op: &str,
        reference: Option<&str>,
        results: Option<&str>,
    ) -> (String, Value) {
        let raw = render(fixture, self.item, op, reference, results).unwrap();
        let (line, headers, _, v) = json_request(&raw, self.host);
        assert_eq!(
            header(&headers, "X-Api-Key"),
            Some(cred(self.key_var).as_str())
        );
        (line, v)
    }

    /// `submit`: stage `full` with the property-transfer results, else `prereview`.
    fn push(&self, fixture: &str, full: bool) -> (String, Value) {
        self.call(
            fixture,
            "submit",
            None,
            full.then_some("house-transfer.json"),
        )
    }

    fn answer(&self, op: OpKind, status: u16, body: &str) -> Outcome {
        let answer = &support::op(self.id, self.item, op).answer;
        read_answer(answer, status, JSON, body.as_bytes()).outcome
    }

    fn status_object(&self, status: &str) -> Value {
        json!({"ticket": self.ticket, "orderNo": CASE, "status": status, "reason": null,
            "accountNo": null, "acceptedAt": "2026-03-19 16:00:00", "doneAt": null})
    }

    fn change(&self, record: Value) -> Change {
        change_of(self.id, Some(self.item), &record)
    }
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
    each(
        |u| u.prereview,
        |u| {
            let (line, v) = u.push("house-transfer.json", false);
            assert_eq!(line, "POST /api/transfer HTTP/1.1");
            assert_eq!(keys_of(&v), PUSH_KEYS);
            assert_eq!(v["orderNo"], CASE);
            assert_eq!(v["stage"], "prereview");
            assert_eq!(v["oldAccount"], u.account, "utilities.{}_account", u.id);
            check_owners(&v, "刘芳");
        },
    );
}

#[test]
fn no_pre_review_the_push_waits_for_the_registration() {
    each(
        |u| !u.prereview,
        |u| {
            let ops = &MAPPING.departments[u.id].items[u.item];
            assert!(
                ops.prereview.is_none() && ops.complete.is_none(),
                "{} answers a prereview stage with code 2",
                u.id
            );
            let err = render("house-transfer.json", u.item, "submit", None, None).unwrap_err();
            assert!(err.contains("certificateNo"), "{err}");
            let results = Some("house-transfer.json");
            let complete = render(
                "house-transfer.json",
                u.item,
                "complete",
                Some(u.ticket),
                results,
            );
            assert!(complete.is_err());
        },
    );
}

#[test]
fn unknown_account_is_omitted() {
    each(all, |u| {
        if u.prereview {
            let (_, v) = u.push("house-transfer-no-accounts.json", false);
            assert_eq!(keys_of(&v), NO_ACCOUNT_KEYS);
            assert_eq!(v["stage"], "prereview");
            check_owners(&v, "刘𠈌芳");
        }
        let (_, v) = u.push("house-transfer-no-accounts.json", true);
        assert_eq!(
            keys_of(&v),
            [&NO_ACCOUNT_KEYS[..], &["certificateNo"]].concat()
        );
        assert_eq!(v["orderNo"], "410225-20260318-000008");
        assert_eq!(v["stage"], "full");
        check_owners(&v, "刘𠈌芳");
    });
}

#[test]
fn complete_hands_the_ticket_the_registration() {
    each(
        |u| u.prereview,
        |u| {
            let results = Some("house-transfer.json");
            let err = render("house-transfer.json", u.item, "complete", None, results);
            assert!(err.unwrap_err().contains("--ref"));
            let (line, v) = u.call("house-transfer.json", "complete", Some(u.ticket), results);
            assert_eq!(
                line,
                format!("POST /api/transfer/{}/complete HTTP/1.1", u.ticket)
            );
            assert_eq!(keys_of(&v), ["certificateNo", "registeredAt"]);
            assert_eq!(v["certificateNo"], CERTIFICATE);
            assert_eq!(
                v["registeredAt"], "2026-03-19 15:20:00",
                "yyyy-MM-dd HH:mm:ss, +08:00"
            );
        },
    );
}

#[test]
fn one_step_is_stage_full_with_the_certificate_number() {
    each(all, |u| {
        let (line, v) = u.push("house-transfer.json", true);
        assert_eq!(line, "POST /api/transfer HTTP/1.1");
        assert_eq!(keys_of(&v), [&PUSH_KEYS[..], &["certificateNo"]].concat());
        assert_eq!(v["stage"], "full");
        assert_eq!(v["oldAccount"], u.account);
        assert_eq!(
            v["certificateNo"], CERTIFICATE,
            "the property-transfer result"
        );
        check_owners(&v, "刘芳");
    });
}

#[test]
fn query_by_order_and_cancel_by_ticket() {
    each(all, |u| {
        let (line, v) = u.call("house-transfer.json", "query", None, None);
        assert_eq!(line, format!("GET /api/transfer?orderNo={CASE} HTTP/1.1"));
        assert!(v.is_null());
        let (line, v) = u.call("house-transfer.json", "withdraw", Some(u.ticket), None);
        assert_eq!(
            line,
            format!("POST /api/transfer/{}/cancel HTTP/1.1", u.ticket)
        );
        assert_eq!(v, json!({"reason": "申请人主动撤回"}));
    });
}

#[test]
fn answers_are_read_per_the_code_table() {
    use OpKind::*;
    each(all, |u| {
        let pushes: &[OpKind] = if u.prereview {
            &[Prereview, Submit]
        } else {
            &[Submit]
        };
        for &op in pushes {
            let ticket = u.ticket;
            let ok = format!(r#"{{"code": 0, "msg": "ok", "data": {{"ticket": "{ticket}"}}}}"#);
            assert_eq!(
                u.answer(op, 200, &ok),
                Outcome::Ok {
                    reference: Some(u.ticket.into())
                }
            );
            assert_eq!(
                u.answer(
                    op,
                    200,
                    r#"{"code": 1, "msg": "duplicate orderNo", "data": {"ticket": "GS1"}}"#
                ),
                Outcome::Duplicate {
                    reference: Some("GS1".into())
                }
            );
            assert!(
                matches!(u.answer(op, 200, r#"{"code": 2, "msg": "newOwner.idNo"}"#), Outcome::Permanent { error } if error.contains("newOwner.idNo"))
            );
            assert!(matches!(
                u.answer(op, 200, r#"{"code": 9, "msg": "busy"}"#),
                Outcome::Retry { .. }
            ));
            assert!(
                matches!(u.answer(op, 401, ""), Outcome::Permanent { .. }),
                "wrong key"
            );
            assert!(matches!(u.answer(op, 500, ""), Outcome::Retry { .. }));
            assert!(matches!(
                u.answer(op, 503, "<html/>"),
                Outcome::Retry { .. }
            ));
        }
        if u.prereview {
            assert!(matches!(
                u.answer(Complete, 200, r#"{"code": 0, "msg": "ok", "data": {}}"#),
                Outcome::Ok { .. }
            ));
            assert!(matches!(
                u.answer(Complete, 200, r#"{"code": 2, "msg": "certificateNo"}"#),
                Outcome::Permanent { .. }
            ));
            assert_eq!(
                u.answer(Complete, 200, r#"{"code": 4, "msg": "not found"}"#),
                Outcome::NotFound
            );
        }
        assert!(matches!(
            u.answer(
                Query,
                200,
                r#"{"code": 0, "msg": "ok", "data": {"ticket": "GS1"}}"#
            ),
            Outcome::Ok { .. }
        ));
        assert_eq!(
            u.answer(Query, 200, r#"{"code": 4, "msg": "not found"}"#),
            Outcome::NotFound
        );
        assert!(matches!(
            u.answer(Withdraw, 200, r#"{"code": 0, "msg": "ok"}"#),
            Outcome::Ok { .. }
        ));
        assert_eq!(
            u.answer(Withdraw, 200, r#"{"code": 2, "msg": "已办结"}"#),
            Outcome::Finished
        );
        assert!(matches!(
            u.answer(Withdraw, 200, r#"{"code": 2, "msg": "reason"}"#),
            Outcome::Permanent { .. }
        ));
        assert_eq!(
            u.answer(Withdraw, 200, r#"{"code": 4, "msg": "not found"}"#),
            Outcome::NotFound
        );
    });
}

#[test]
fn every_status_maps_to_its_transition() {
    each(all, |u| {
        let r = report(u.id, &to_value(&u.status_object("RECEIVED")), Some(u.item)).unwrap();
        assert_eq!(r.change, Change::Dispatched);
        assert_eq!(r.case_id, CASE);
        assert_eq!(r.reference.as_deref(), Some(u.ticket));
        if u.prereview {
            assert_eq!(
                u.change(u.status_object("PRECHECKED")),
                Change::Progress {
                    stage: "prereview-passed".into(),
                    note: None
                }
            );
        }
        assert_eq!(
            u.change(u.status_object("ACCEPTED")),
            Change::Accepted {
                accepted_at: Some("2026-03-19T16:00:00+08:00".into())
            }
        );
        let mut r = u.status_object("REJECTED");
        r["reason"] = "材料不符合要求".into();
        assert_eq!(
            u.change(r),
            Change::Rejected {
                reason: "材料不符合要求".into()
            }
        );
        let mut r = u.status_object("DONE");
        r["accountNo"] = u.new_account.into();
        r["doneAt"] = "2026-03-19 17:00:00".into();
        match u.change(r) {
            Change::Approved {
                results,
                accepted_at,
            } => {
                assert_eq!(results.len(), 1);
                assert_eq!(results["account_no"], u.new_account);
                assert_eq!(accepted_at.as_deref(), Some("2026-03-19T16:00:00+08:00"));
            }
            other => panic!("{other:?}"),
        }
        let mut r = u.status_object("FAILED");
        r["reason"] = "不符合许可条件".into();
        assert_eq!(
            u.change(r),
            Change::Denied {
                reason: "不符合许可条件".into(),
                accepted_at: Some("2026-03-19T16:00:00+08:00".into()),
            }
        );
        assert!(matches!(
            u.change(u.status_object("CANCELLED")),
            Change::Withdrawn { .. }
        ));
        let lost = to_value(&u.status_object("LOST"));
        assert!(report(u.id, &lost, Some(u.item)).is_err());
    });
}

#[test]
fn query_answers_give_the_status_object() {
    each(all, |u| {
        let body = json!({"code": 0, "msg": "ok", "data": u.status_object("ACCEPTED")}).to_string();
        let query = op(u.id, u.item, OpKind::Query);
        let got = read_answer(&query.answer, 200, JSON, body.as_bytes());
        let records = query_records(query, got.parsed, &[]);
        assert_eq!(records.len(), 1);
        let rep = report(u.id, &records[0], Some(u.item)).unwrap();
        assert!(matches!(rep.change, Change::Accepted { .. }));
    });
}

fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[test]
fn callbacks_are_hmac_signed_over_the_raw_body() {
    each(
        |u| u.callback_secret.is_some(),
        |u| {
            let secret = cred(u.callback_secret.unwrap());
            let dept = &MAPPING.departments[u.id];
            assert!(dept.connected);
            let cb = dept.callback.as_ref().unwrap();
            let mut done = u.status_object("DONE");
            done["accountNo"] = u.new_account.into();
            // Not re-serialised by the gateway: the signature covers the bytes exactly as sent.
            let body = format!("{}\n", serde_json::to_string_pretty(&done).unwrap());
            let signed = |sig: &str| {
                headers(&[
                    ("content-type", "application/json; charset=UTF-8"),
                    ("x-signature", sig),
                ])
            };
            let good = sign(secret.as_bytes(), body.as_bytes());
            assert_eq!(good, good.to_ascii_lowercase());
            let rep = callback_report(u.id, &signed(&good), body.as_bytes());
            assert_eq!(rep.case_id, CASE);
            assert_eq!(rep.reference.as_deref(), Some(u.ticket));
            match rep.change {
                Change::Approved { results, .. } => {
                    assert_eq!(results["account_no"], u.new_account)
                }
                other => panic!("{other:?}"),
            }
            let compact = serde_json::to_string(&done).unwrap();
            assert!(
                matches!(
                    callback(u.id, &signed(&good), compact.as_bytes()),
                    CallbackRead::Unauthorized
                ),
                "same JSON, other bytes: the signature is over the raw body"
            );
            assert!(matches!(
                callback(u.id, &signed(&"0".repeat(64)), body.as_bytes()),
                CallbackRead::Unauthorized
            ));
            assert!(
                matches!(
                    callback(u.id, &[], body.as_bytes()),
                    CallbackRead::Unauthorized
                ),
                "no signature"
            );
            let wrong_key = sign(b"wrong-secret", body.as_bytes());
            assert!(matches!(
                callback(u.id, &signed(&wrong_key), body.as_bytes()),
                CallbackRead::Unauthorized
            ));
            let garbage = b"status=DONE";
            assert!(matches!(
                callback(u.id, &signed(&sign(secret.as_bytes(), garbage)), garbage),
                CallbackRead::Unreadable(_)
            ));
            assert_eq!(
                (
                    cb.ok.status,
                    serde_json::from_str::<Value>(&cb.ok.body).unwrap()
                ),
                (200, json!({"code": 0}))
            );
            assert_eq!(cb.unauthorized.status, 401);
        },
    );
}

#[test]
fn polled_or_called_back_with_or_without_pre_review() {
    each(all, |u| {
        let d = &MAPPING.departments[u.id];
        let connected = u.callback_secret.is_some();
        assert_eq!((d.connected, d.callback.is_some()), (connected, connected));
        let ops = &d.items[u.item];
        let stages = (ops.prereview.is_some(), ops.complete.is_some());
        assert_eq!(stages, (u.prereview, u.prereview));
        if let Some(secs) = u.min_timeout_secs {
            assert!(
                d.limits.timeout >= std::time::Duration::from_secs(secs),
                "the system may take up to 3 s to answer"
            );
        }
    });
}
