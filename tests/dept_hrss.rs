//! hrss (县人社局 社保卡业务系统, a form post with XML in `data` and an MD5 `sign`): the requests
//! are decoded and checked against the interface document independently of the mapping (form
//! fields, signature recomputed with the md-5 crate, the XML's elements and their order, omitted
//! optionals); the answers and the card.query reports of the document are read through the mapping.

mod support;

use indexmap::IndexMap;
use md5::{Digest, Md5};
use minijinja::value::Value;
use onething::mapping::answer::{Outcome, ReadAnswer};
use onething::mapping::operation::OpKind;
use onething::mapping::report::{Change, StatusReport};
use support::*;

/// `AT` as the document's `time`.
const TIME: &str = "20260316091530";

/// The `data` document: a flat <request> of (element, text), read with quick-xml.
fn parse_request(data: &str) -> Vec<(String, String)> {
    assert!(!data.starts_with("<?"), "`data` carries no prolog");
    assert!(
        data.starts_with('<') && data.ends_with('>'),
        "text outside <request>: {data}"
    );
    let request = parse_xml(data);
    assert_eq!(request.name, "request");
    assert!(
        request.text.is_empty(),
        "text outside an element: {:?}",
        request.text
    );
    let flat = |c: &Elem| {
        assert!(
            c.children.is_empty(),
            "<request> is flat: <{}> is nested",
            c.name
        );
        (c.name.clone(), c.text.clone())
    };
    request.children.iter().map(flat).collect()
}

struct Call {
    method: String,
    data: String,
    request: Vec<(String, String)>,
}

impl Call {
    fn get(&self, name: &str) -> Option<&str> {
        self.request
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn names(&self) -> Vec<&str> {
        self.request.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// Renders, checks the transport, the form and the signature, and returns the `data` document.
fn call(fixture_name: &str, op: &str, results: Option<&str>) -> Call {
    let raw =
        render(fixture_name, "social-card", op, None, results).unwrap_or_else(|e| panic!("{e}"));
    let form = "application/x-www-form-urlencoded; charset=UTF-8";
    let (request_line, _, body) = request(&raw, "127.0.0.1:9104", form);
    assert_eq!(request_line, "POST /gateway.do HTTP/1.1");
    assert!(body.is_ascii(), "a form body is percent-encoded");
    let fields: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["method", "appKey", "time", "data", "sign"]);
    let f = |n: &str| fields.iter().find(|(k, _)| k == n).unwrap().1.clone();
    let app_key = cred("ONETHING_DEPT_HRSS_APP_KEY");
    assert_eq!(f("appKey"), app_key);
    assert_eq!(f("appKey"), "yjs");
    assert_eq!(f("time"), TIME, "real time yyyyMMddHHmmss");
    let data = f("data");
    // sign = upper-case hex MD5 of the UTF-8 bytes of appKey + secret + time + data (raw XML).
    let secret = cred("ONETHING_DEPT_HRSS_SECRET");
    assert_eq!(secret, "hrss-test-secret");
    let want = hex::encode_upper(Md5::digest(
        format!("{app_key}{secret}{TIME}{data}").as_bytes(),
    ));
    assert_eq!(f("sign"), want);
    assert_eq!(f("sign").len(), 32);
    Call {
        method: f("method"),
        request: parse_request(&data),
        data,
    }
}

#[test]
fn apply_by_post_with_a_bank() {
    let c = call("newborn.json", "submit", Some("newborn.json"));
    assert_eq!(c.method, "card.apply");
    assert_eq!(
        c.request,
        [
            ("sblsh", "410225-20260316-000123"),
            ("xm", "王子涵"),
            ("xb", "男"),
            ("csrq", "2026-03-15"),
            ("mz", "汉族"),
            ("gmsfhm", "410225202603150017"),
            ("jhrxm", "李娜"),
            ("jhrsfzh", "410225199506120022"),
            ("lxdh", "13803780001"),
            ("yhmc", "中国工商银行"),
            ("lqfs", "2"),
            ("yjdz", "河南省开封市兰考县城关镇裕禄大道88号"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    assert!(c.data.starts_with("<request>"), "no prolog: {}", c.data);
}

#[test]
fn window_pickup_without_a_bank_omits_yhmc_and_yjdz() {
    let c = call("newborn-no-father.json", "submit", Some("newborn.json"));
    assert_eq!(
        c.names(),
        [
            "sblsh", "xm", "xb", "csrq", "mz", "gmsfhm", "jhrxm", "jhrsfzh", "lxdh", "lqfs"
        ]
    );
    assert_eq!(c.get("lqfs"), Some("1"));
    // UTF-8 throughout: the rare character arrives as itself.
    assert_eq!(c.get("xm"), Some("王𠈌"));
    assert!(!c.data.contains("&#"));
}

#[test]
fn no_pickup_in_the_form_means_window() {
    let c = call("hrss-no-pickup.json", "submit", Some("newborn.json"));
    assert_eq!(c.get("lqfs"), Some("1"));
    assert_eq!(c.get("yjdz"), None);
    assert_eq!(c.get("yhmc"), None);
}

#[test]
fn post_without_a_delivery_address_goes_to_the_household_address() {
    let c = call("hrss-post-household.json", "submit", Some("newborn.json"));
    assert_eq!(c.get("lqfs"), Some("2"));
    assert_eq!(c.get("yjdz"), Some("河南省开封市兰考县城关镇裕禄大道88号"));
    // Gender as text, ethnic group by its GB 3304 name.
    assert_eq!(c.get("xb"), Some("女"));
    assert_eq!(c.get("mz"), Some("回族"));
    assert_eq!(c.get("xm"), Some("马小雨"));
}

#[test]
fn apply_needs_the_citizen_id() {
    let err = render("newborn.json", "social-card", "submit", None, None).unwrap_err();
    assert!(err.contains("citizen_id") || err.contains("hukou"), "{err}");
}

#[test]
fn query_and_cancel() {
    let q = call("newborn.json", "query", None);
    assert_eq!(q.method, "card.query");
    assert_eq!(
        q.request,
        [("sblsh".to_string(), "410225-20260316-000123".to_string())]
    );
    let w = call("newborn.json", "withdraw", None);
    assert_eq!(w.method, "card.cancel");
    assert_eq!(
        w.request,
        [
            ("sblsh", "410225-20260316-000123"),
            ("yy", "申请人主动撤回")
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );
}

// ---------------------------------------------------------------------------------------------
// Answers

fn read(kind: OpKind, status: u16, body: &str) -> ReadAnswer {
    let answer = &op("hrss", "social-card", kind).answer;
    let xml = [("content-type", "application/xml; charset=UTF-8")];
    read_answer(answer, status, &xml, body.as_bytes())
}

fn outcome(kind: OpKind, body: &str) -> Outcome {
    read(kind, 200, body).outcome
}

fn answer(code: &str, message: &str, extra: &str) -> String {
    format!("<response><code>{code}</code><message>{message}</message>{extra}</response>")
}

#[test]
fn answer_codes_of_the_document() {
    for kind in [OpKind::Submit, OpKind::Query, OpKind::Withdraw] {
        let ok = answer("200", "成功", "<ywlsh>RS2026031600088</ywlsh>");
        match outcome(kind, &ok) {
            Outcome::Ok { reference } if kind == OpKind::Submit => {
                assert_eq!(reference.as_deref(), Some("RS2026031600088"))
            }
            Outcome::Ok { .. } => {}
            other => panic!("{kind:?}: {other:?}"),
        }
        match outcome(kind, &answer("300", "gmsfhm 格式错误", "")) {
            Outcome::Permanent { error } => {
                assert!(error.contains("300") && error.contains("gmsfhm"), "{error}")
            }
            other => panic!("{kind:?}: {other:?}"),
        }
        match outcome(kind, &answer("401", "签名错误", "")) {
            Outcome::Permanent { error } => assert!(error.contains("401"), "{error}"),
            other => panic!("{kind:?}: {other:?}"),
        }
        assert_eq!(
            outcome(kind, &answer("404", "无此申请", "")),
            Outcome::NotFound
        );
        match outcome(kind, &answer("500", "系统内部错误", "")) {
            Outcome::Retry { error, .. } => assert!(error.contains("500"), "{error}"),
            other => panic!("{kind:?}: {other:?}"),
        }
        // A gateway in front of the system failing: temporary.
        assert!(matches!(
            read(kind, 502, "Bad Gateway").outcome,
            Outcome::Retry { .. }
        ));
    }
    assert_eq!(
        outcome(
            OpKind::Submit,
            &answer("301", "重复申请", "<ywlsh>RS2026031600088</ywlsh>")
        ),
        Outcome::Duplicate {
            reference: Some("RS2026031600088".into())
        }
    );
}

#[test]
fn cancel_of_a_finished_card_is_finished() {
    assert_eq!(
        outcome(OpKind::Withdraw, &answer("300", "已办结", "")),
        Outcome::Finished
    );
    // Another validation failure on cancel stays permanent; 已办结 means nothing to a submit.
    assert!(matches!(
        outcome(OpKind::Withdraw, &answer("300", "yy 不能为空", "")),
        Outcome::Permanent { .. }
    ));
    assert!(matches!(
        outcome(OpKind::Submit, &answer("300", "已办结", "")),
        Outcome::Permanent { .. }
    ));
}

// ---------------------------------------------------------------------------------------------
// card.query reports

fn query_answer(zt: &str, ztmc: &str, slsj: &str, kh: &str, yy: &str) -> String {
    answer(
        "200",
        "成功",
        &[
            el("zt", zt),
            el("ztmc", ztmc),
            el("slsj", slsj),
            el("bjsj", ""),
            el("kh", kh),
            el("yy", yy),
        ]
        .concat(),
    )
}

fn poll(zt: &str, ztmc: &str, slsj: &str, kh: &str, yy: &str) -> StatusReport {
    let read = read(OpKind::Query, 200, &query_answer(zt, ztmc, slsj, kh, yy));
    assert!(
        matches!(read.outcome, Outcome::Ok { .. }),
        "{:?}",
        read.outcome
    );
    let query = op("hrss", "social-card", OpKind::Query);
    let extra = [
        ("case_id", Value::from("410225-20260316-000123")),
        ("item", Value::from("social-card")),
    ];
    let records = query_records(query, read.parsed, &extra);
    assert_eq!(records.len(), 1);
    let r = report("hrss", &records[0], Some("social-card")).unwrap();
    assert_eq!(r.case_id, "410225-20260316-000123");
    assert_eq!(r.item.as_deref(), Some("social-card"));
    assert_eq!(r.status, zt);
    r
}

#[test]
fn every_zt_of_the_document() {
    assert_eq!(poll("0", "已接收", "", "", "").change, Change::Dispatched);
    assert_eq!(
        poll("1", "已受理", "2026-03-17 09:00:00", "", "").change,
        Change::Accepted {
            accepted_at: Some("2026-03-17T09:00:00+08:00".into())
        }
    );
    assert_eq!(
        poll("2", "不予受理", "", "", "材料不符合要求").change,
        Change::Rejected {
            reason: "材料不符合要求".into()
        }
    );
    assert_eq!(
        poll("3", "制卡中", "2026-03-17 09:00:00", "", "").change,
        Change::Progress {
            stage: "制卡中".into(),
            note: None
        }
    );
    assert_eq!(
        poll(
            "4",
            "已制卡",
            "2026-03-17 09:00:00",
            "410225D15600000512",
            ""
        )
        .change,
        Change::Approved {
            results: IndexMap::from([("card_no".to_string(), "410225D15600000512".to_string())]),
            accepted_at: Some("2026-03-17T09:00:00+08:00".into()),
        }
    );
    assert_eq!(
        poll("5", "办理失败", "2026-03-17 09:00:00", "", "不符合许可条件").change,
        Change::Denied {
            reason: "不符合许可条件".into(),
            accepted_at: Some("2026-03-17T09:00:00+08:00".into()),
        }
    );
    assert!(matches!(
        poll("9", "已撤销", "", "", "").change,
        Change::Withdrawn { .. }
    ));
}

#[test]
fn a_record_built_by_hand_reads_the_same() {
    let report = MAPPING.departments["hrss"].report.as_ref().unwrap();
    let record = onething::mapping::expr::to_value(&serde_json::json!({
        "sblsh": "410225-20260316-000123", "code": "200", "zt": "4", "ztmc": "已制卡",
        "slsj": "2026-03-17 09:00:00", "bjsj": "2026-03-20 16:00:00", "kh": "410225D15600000512", "yy": ""
    }));
    let r = report.read(&record, Some("social-card"), &[]).unwrap();
    assert!(
        matches!(r.change, Change::Approved { ref results, .. } if results["card_no"] == "410225D15600000512")
    );
    // Approved without a card number is an error.
    let record =
        onething::mapping::expr::to_value(&serde_json::json!({"sblsh": "x", "zt": "4", "kh": ""}));
    assert!(report.read(&record, Some("social-card"), &[]).is_err());
    let record = onething::mapping::expr::to_value(&serde_json::json!({"sblsh": "x", "zt": "7"}));
    assert!(report.read(&record, Some("social-card"), &[]).is_err());
}
