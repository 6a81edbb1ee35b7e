//! police (县公安局 户政/治安业务系统, SOAP 1.1 in GB18030): the requests are decoded and checked
//! against the interface document independently of the mapping (charset, prolog, headers,
//! namespaces, element order, omitted optionals); the answers and the QueryStatus reports of the
//! document are read through the mapping.

mod support;

use indexmap::IndexMap;
use minijinja::value::Value;
use onething::mapping::answer::{Outcome, ReadAnswer};
use onething::mapping::operation::OpKind;
use onething::mapping::report::{Change, StatusReport};
use support::*;

const ENV_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const GA: &str = "urn:yjs:police";
const PROLOG: &[u8] = b"<?xml version=\"1.0\" encoding=\"GB18030\"?>";

/// Every element of `el`'s tree is in `ns`.
fn assert_all_in(el: &Elem, ns: &str) {
    assert_eq!(el.ns.as_deref(), Some(ns), "<{}> is not in {ns}", el.name);
    el.children.iter().for_each(|c| assert_all_in(c, ns));
}

// ---------------------------------------------------------------------------------------------
// Requests

struct Soap {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    auth: Elem,
    op: Elem,
}

/// Renders, checks the transport (request line, headers, prolog, charset, envelope, Auth header)
/// and returns the operation element.
fn soap(fixture_name: &str, item: &str, op: &str, results: Option<&str>, operation: &str) -> Soap {
    let raw = render(fixture_name, item, op, None, results).unwrap_or_else(|e| panic!("{e}"));
    let (request_line, headers, body) =
        request(&raw, "127.0.0.1:9102", "text/xml; charset=GB18030");
    assert_eq!(request_line, "POST /services/YjsService HTTP/1.1");
    let action = format!("\"urn:yjs:police#{operation}\"");
    assert_eq!(
        header(&headers, "SOAPAction"),
        Some(action.as_str()),
        "SOAPAction with the quotes"
    );
    assert!(body.starts_with(PROLOG), "GB18030 prolog");

    let (text, had_errors) = encoding_rs::GB18030.decode_without_bom_handling(&body);
    assert!(!had_errors, "body is GB18030");
    assert!(
        !text.contains("&#"),
        "GB18030 encodes every character: no character references"
    );
    let env = parse_xml(&text);
    assert_eq!(
        (env.ns.as_deref(), env.name.as_str()),
        (Some(ENV_NS), "Envelope")
    );
    assert_eq!(env.names(), ["Header", "Body"]);
    let mut parts = env.children.into_iter();
    let head = parts.next().unwrap();
    assert_eq!(head.ns.as_deref(), Some(ENV_NS));
    assert_eq!(head.names(), ["Auth"]);
    let auth = head.children.into_iter().next().unwrap();
    assert_all_in(&auth, GA);
    let body_el = parts.next().unwrap();
    assert_eq!(body_el.ns.as_deref(), Some(ENV_NS));
    assert_eq!(body_el.children.len(), 1);
    let op_el = body_el.children.into_iter().next().unwrap();
    assert_eq!(op_el.name, operation);
    assert_all_in(&op_el, GA);
    Soap {
        request_line,
        headers,
        body,
        auth,
        op: op_el,
    }
}

#[test]
fn every_request_carries_the_auth_header_with_the_credentials() {
    let s = soap("newborn.json", "hukou", "query", None, "QueryStatus");
    assert_eq!(
        s.auth.pairs(),
        [
            ("UserId", cred("ONETHING_DEPT_POLICE_USER").as_str()),
            ("Password", cred("ONETHING_DEPT_POLICE_PASSWORD").as_str())
        ]
    );
    assert_eq!(
        s.auth.pairs(),
        [("UserId", "yjs"), ("Password", "police-test-pw")]
    );
    assert!(s.request_line.starts_with("POST "));
    assert!(!s.headers.is_empty());
}

#[test]
fn hukou_submit_is_the_documents_example() {
    let s = soap(
        "newborn.json",
        "hukou",
        "submit",
        Some("newborn.json"),
        "SubmitHukou",
    );
    // The document's example request, element for element and in its order.
    assert_eq!(
        s.op.pairs(),
        [
            ("SBLSH", "410225-20260316-000123"),
            ("SXBM", "GA-HJ-CSDJ"),
            ("XM", "王子涵"),
            ("XB", "1"),
            ("MZ", "01"),
            ("CSRQ", "20260315"),
            ("CSSJ", "0830"),
            ("CSDD", "兰考县人民医院"),
            ("CSYXZMBH", "Q410123456"),
            ("MQXM", "李娜"),
            ("MQSFZH", "410225199506120022"),
            ("FQXM", "王强"),
            ("FQSFZH", "410225199303050036"),
            ("HZXM", "王强"),
            ("YHZGX", "子"),
            ("LHDZ", "河南省开封市兰考县城关镇裕禄大道88号"),
            ("LXDH", "13803780001"),
        ]
    );
}

#[test]
fn hukou_without_father_omits_the_father_and_writes_the_rare_character_in_gb18030() {
    let s = soap(
        "newborn-no-father.json",
        "hukou",
        "submit",
        Some("newborn.json"),
        "SubmitHukou",
    );
    assert_eq!(
        s.op.names(),
        [
            "SBLSH", "SXBM", "XM", "XB", "MZ", "CSRQ", "CSSJ", "CSDD", "CSYXZMBH", "MQXM",
            "MQSFZH", "HZXM", "YHZGX", "LHDZ", "LXDH"
        ]
    );
    assert_eq!(s.op.text_of("XM"), "王𠈌");
    assert_eq!(s.op.text_of("HZXM"), "李娜");
    // U+2020C is a four-byte GB18030 sequence on the wire.
    let (rare, _, unmappable) = encoding_rs::GB18030.encode("𠈌");
    assert!(!unmappable);
    assert_eq!(rare.len(), 4);
    assert!(s.body.windows(4).any(|w| w == rare.as_ref()));
}

#[test]
fn hukou_submit_needs_the_birth_certificate() {
    let err = render("newborn.json", "hukou", "submit", None, None).unwrap_err();
    assert!(
        err.contains("licence_no") || err.contains("birth-cert"),
        "{err}"
    );
}

fn seal_types(op: &Elem) -> Vec<&str> {
    op.children
        .iter()
        .filter(|c| c.name == "YZ")
        .map(|yz| {
            assert_eq!(yz.names(), ["YZLX"]);
            yz.text_of("YZLX")
        })
        .collect()
}

#[test]
fn seal_submit_sends_one_yz_per_seal() {
    let s = soap(
        "restaurant.json",
        "seal",
        "submit",
        Some("restaurant.json"),
        "SubmitSeal",
    );
    assert_eq!(
        s.op.names(),
        [
            "SBLSH",
            "SXBM",
            "DWMC",
            "TYSHXYDM",
            "FDDBR",
            "FDDBRSFZH",
            "YZ",
            "YZ",
            "YZ",
            "DWDZ",
            "LXDH"
        ]
    );
    assert_eq!(s.op.text_of("SBLSH"), "410225-20260317-000045");
    assert_eq!(s.op.text_of("SXBM"), "GA-ZA-GZKZ");
    assert_eq!(s.op.text_of("DWMC"), "兰考县焦桐餐饮有限公司");
    assert_eq!(s.op.text_of("TYSHXYDM"), "91410225MA9G2XK36T");
    assert_eq!(s.op.text_of("FDDBR"), "赵磊");
    assert_eq!(s.op.text_of("FDDBRSFZH"), "410225198504200059");
    assert_eq!(s.op.text_of("DWDZ"), "河南省开封市兰考县中山街16号");
    assert_eq!(s.op.text_of("LXDH"), "13903781234");
    // official, finance, invoice
    assert_eq!(seal_types(&s.op), ["01", "02", "03"]);
}

#[test]
fn seal_without_seals_in_the_form_asks_for_the_official_seal() {
    let s = soap(
        "restaurant-individual.json",
        "seal",
        "submit",
        Some("restaurant.json"),
        "SubmitSeal",
    );
    assert_eq!(seal_types(&s.op), ["01"]);
    assert_eq!(s.op.text_of("DWMC"), "兰考县老李烩面馆");
    assert_eq!(s.op.text_of("DWDZ"), "河南省开封市兰考县中山街20号");
}

#[test]
fn legal_representative_seal_is_04() {
    let s = soap(
        "police-seals-legal-rep.json",
        "seal",
        "submit",
        Some("restaurant.json"),
        "SubmitSeal",
    );
    assert_eq!(seal_types(&s.op), ["01", "04"]);
}

#[test]
fn seal_submit_needs_the_uscc() {
    let err = render("restaurant.json", "seal", "submit", None, None).unwrap_err();
    assert!(
        err.contains("uscc") || err.contains("business-licence"),
        "{err}"
    );
}

#[test]
fn query_and_withdraw_name_the_items_sxbm() {
    for (fixture_name, item, case_id, sxbm) in [
        (
            "newborn.json",
            "hukou",
            "410225-20260316-000123",
            "GA-HJ-CSDJ",
        ),
        (
            "restaurant.json",
            "seal",
            "410225-20260317-000045",
            "GA-ZA-GZKZ",
        ),
    ] {
        let q = soap(fixture_name, item, "query", None, "QueryStatus");
        assert_eq!(q.op.pairs(), [("SBLSH", case_id), ("SXBM", sxbm)]);
        let w = soap(fixture_name, item, "withdraw", None, "Withdraw");
        assert_eq!(
            w.op.pairs(),
            [
                ("SBLSH", case_id),
                ("SXBM", sxbm),
                ("CHYY", "申请人主动撤回")
            ]
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Answers

fn read(item: &str, kind: OpKind, status: u16, xml: &str) -> ReadAnswer {
    let (body, _, _) = encoding_rs::GB18030.encode(xml);
    let gb18030 = [("content-type", "text/xml; charset=GB18030")];
    read_answer(&op("police", item, kind).answer, status, &gb18030, &body)
}

fn outcome(item: &str, kind: OpKind, status: u16, xml: &str) -> Outcome {
    read(item, kind, status, xml).outcome
}

fn result_answer(response: &str, result: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"GB18030\"?>\n\
         <soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:ga=\"urn:yjs:police\">\n\
         \x20 <soap:Body>\n\
         \x20   <ga:{response}>\n\
         \x20     <ga:Result>{result}</ga:Result>\n\
         \x20   </ga:{response}>\n\
         \x20 </soap:Body>\n\
         </soap:Envelope>"
    )
}

fn code(c: &str, message: &str, extra: &str) -> String {
    format!("<ga:Code>{c}</ga:Code><ga:Message>{message}</ga:Message>{extra}")
}

#[test]
fn submit_answers_follow_the_result_codes() {
    for (item, response) in [
        ("hukou", "SubmitHukouResponse"),
        ("seal", "SubmitSealResponse"),
    ] {
        // The document's example answer.
        let ok = result_answer(
            response,
            &code("0000", "接收成功", "<ga:YWLSH>GA20260316000031</ga:YWLSH>"),
        );
        assert_eq!(
            outcome(item, OpKind::Submit, 200, &ok),
            Outcome::Ok {
                reference: Some("GA20260316000031".into())
            }
        );
        let dup = result_answer(
            response,
            &code("0001", "重复申请", "<ga:YWLSH>GA20260316000031</ga:YWLSH>"),
        );
        assert_eq!(
            outcome(item, OpKind::Submit, 200, &dup),
            Outcome::Duplicate {
                reference: Some("GA20260316000031".into())
            }
        );
        for (c, msg) in [
            ("1001", "缺少必填项 XM"),
            ("1002", "格式错误 CSRQ"),
            ("1003", "身份证号码校验失败"),
        ] {
            match outcome(
                item,
                OpKind::Submit,
                200,
                &result_answer(response, &code(c, msg, "")),
            ) {
                Outcome::Permanent { error } => {
                    assert!(error.contains(c) && error.contains(msg), "{error}")
                }
                other => panic!("{c}: {other:?}"),
            }
        }
    }
}

#[test]
fn any_prefix_is_read_by_namespace_and_name() {
    let xml = "<?xml version=\"1.0\" encoding=\"GB18030\"?><S:Envelope xmlns:S=\"http://schemas.xmlsoap.org/soap/envelope/\"><S:Body><p:SubmitHukouResponse xmlns:p=\"urn:yjs:police\"><p:Result><p:Code>0000</p:Code><p:Message>接收成功</p:Message><p:YWLSH>GA1</p:YWLSH></p:Result></p:SubmitHukouResponse></S:Body></S:Envelope>";
    assert_eq!(
        outcome("hukou", OpKind::Submit, 200, xml),
        Outcome::Ok {
            reference: Some("GA1".into())
        }
    );
}

fn fault(prefix: &str, faultcode: &str, faultstring: &str) -> String {
    format!(
        "<{prefix}:Envelope xmlns:{prefix}=\"http://schemas.xmlsoap.org/soap/envelope/\">\n\
         \x20 <{prefix}:Body><{prefix}:Fault><faultcode>{faultcode}</faultcode><faultstring>{faultstring}</faultstring></{prefix}:Fault></{prefix}:Body>\n\
         </{prefix}:Envelope>"
    )
}

#[test]
fn server_faults_are_retried_and_client_faults_are_not() {
    for item in ["hukou", "seal"] {
        for kind in [OpKind::Submit, OpKind::Query, OpKind::Withdraw] {
            // The document's fault example: busy.
            match outcome(item, kind, 500, &fault("soap", "soap:Server", "系统繁忙")) {
                Outcome::Retry { error, .. } => assert!(error.contains("系统繁忙"), "{error}"),
                other => panic!("{item} {kind:?}: {other:?}"),
            }
            match outcome(
                item,
                kind,
                500,
                &fault("SOAP-ENV", "SOAP-ENV:Server", "系统繁忙"),
            ) {
                Outcome::Retry { .. } => {}
                other => panic!("{item} {kind:?}: {other:?}"),
            }
            for msg in ["认证失败", "报文格式错误"] {
                match outcome(item, kind, 500, &fault("soap", "soap:Client", msg)) {
                    Outcome::Permanent { error } => assert!(error.contains(msg), "{error}"),
                    other => panic!("{item} {kind:?}: {other:?}"),
                }
            }
            // No readable fault at all (a proxy's error page): temporary.
            assert!(matches!(
                outcome(item, kind, 503, "Service Unavailable"),
                Outcome::Retry { .. }
            ));
        }
    }
}

#[test]
fn query_and_withdraw_answers() {
    for item in ["hukou", "seal"] {
        let none = result_answer("QueryStatusResponse", &code("0404", "无此申请", ""));
        assert_eq!(outcome(item, OpKind::Query, 200, &none), Outcome::NotFound);

        let done = result_answer("WithdrawResponse", &code("0000", "撤回成功", ""));
        assert!(matches!(
            outcome(item, OpKind::Withdraw, 200, &done),
            Outcome::Ok { .. }
        ));
        let none = result_answer("WithdrawResponse", &code("0404", "无此申请", ""));
        assert_eq!(
            outcome(item, OpKind::Withdraw, 200, &none),
            Outcome::NotFound
        );
        let finished = result_answer("WithdrawResponse", &code("2001", "已办结，不能撤回", ""));
        assert_eq!(
            outcome(item, OpKind::Withdraw, 200, &finished),
            Outcome::Finished
        );
    }
}

// ---------------------------------------------------------------------------------------------
// QueryStatus reports

struct Q<'a> {
    bjzt: &'a str,
    bjztmc: &'a str,
    slsj: &'a str,
    bjsj: &'a str,
    bjjg: &'a str,
    yy: &'a str,
    gmsfhm: &'a str,
    hh: &'a str,
    bah: &'a str,
}

const EMPTY: Q<'static> = Q {
    bjzt: "",
    bjztmc: "",
    slsj: "",
    bjsj: "",
    bjjg: "",
    yy: "",
    gmsfhm: "",
    hh: "",
    bah: "",
};

fn query_answer(q: &Q<'_>) -> String {
    // Empty elements where not applicable, as the document says.
    let ga = |n: &str, v: &str| el(&format!("ga:{n}"), v);
    let result = [
        ga("Code", "0000"),
        ga("Message", "查询成功"),
        ga("BJZT", q.bjzt),
        ga("BJZTMC", q.bjztmc),
        ga("SLSJ", q.slsj),
        ga("BJSJ", q.bjsj),
        ga("BJJG", q.bjjg),
        ga("YY", q.yy),
        ga("GMSFHM", q.gmsfhm),
        ga("HH", q.hh),
        ga("BAH", q.bah),
    ]
    .concat();
    result_answer("QueryStatusResponse", &result)
}

/// The answer read as the query's outcome, its records found by the query's `records`, and each
/// read by the department's report reader for the item asked about.
fn poll(item: &str, case_id: &str, q: &Q<'_>) -> StatusReport {
    let read = read(item, OpKind::Query, 200, &query_answer(q));
    assert!(
        matches!(read.outcome, Outcome::Ok { .. }),
        "{:?}",
        read.outcome
    );
    let extra = [
        ("case_id", Value::from(case_id)),
        ("item", Value::from(item)),
    ];
    let records = query_records(op("police", item, OpKind::Query), read.parsed, &extra);
    assert_eq!(records.len(), 1);
    let r = report("police", &records[0], Some(item)).unwrap();
    assert_eq!(r.case_id, case_id);
    assert_eq!(r.item.as_deref(), Some(item));
    assert_eq!(r.status, q.bjzt);
    r
}

#[test]
fn every_bjzt_of_the_document() {
    for (item, case_id) in [
        ("hukou", "410225-20260316-000123"),
        ("seal", "410225-20260317-000045"),
    ] {
        let r = poll(
            item,
            case_id,
            &Q {
                bjzt: "01",
                bjztmc: "已接件",
                ..EMPTY
            },
        );
        assert_eq!(r.change, Change::Dispatched);

        let r = poll(
            item,
            case_id,
            &Q {
                bjzt: "03",
                bjztmc: "已受理",
                slsj: "20260316100203",
                ..EMPTY
            },
        );
        assert_eq!(
            r.change,
            Change::Accepted {
                accepted_at: Some("2026-03-16T10:02:03+08:00".into())
            }
        );

        let r = poll(
            item,
            case_id,
            &Q {
                bjzt: "04",
                bjztmc: "不予受理",
                yy: "材料不符合要求",
                ..EMPTY
            },
        );
        assert_eq!(
            r.change,
            Change::Rejected {
                reason: "材料不符合要求".into()
            }
        );

        let r = poll(
            item,
            case_id,
            &Q {
                bjzt: "08",
                bjztmc: "办理中",
                slsj: "20260316100203",
                ..EMPTY
            },
        );
        assert_eq!(
            r.change,
            Change::Progress {
                stage: "办理中".into(),
                note: None
            }
        );

        let r = poll(
            item,
            case_id,
            &Q {
                bjzt: "11",
                bjztmc: "办结",
                slsj: "20260316100203",
                bjsj: "20260317153000",
                bjjg: "1",
                yy: "不符合许可条件",
                ..EMPTY
            },
        );
        assert_eq!(
            r.change,
            Change::Denied {
                reason: "不符合许可条件".into(),
                accepted_at: Some("2026-03-16T10:02:03+08:00".into()),
            }
        );

        let r = poll(
            item,
            case_id,
            &Q {
                bjzt: "12",
                bjztmc: "已撤回",
                yy: "申请人主动撤回",
                ..EMPTY
            },
        );
        assert_eq!(
            r.change,
            Change::Withdrawn {
                reason: Some("申请人主动撤回".into())
            }
        );
    }
}

#[test]
fn approval_gives_each_items_results() {
    let r = poll(
        "hukou",
        "410225-20260316-000123",
        &Q {
            bjzt: "11",
            bjztmc: "办结",
            slsj: "20260316100203",
            bjsj: "20260317153000",
            bjjg: "0",
            gmsfhm: "410225202603150017",
            hh: "410225001234",
            ..EMPTY
        },
    );
    assert_eq!(
        r.change,
        Change::Approved {
            results: IndexMap::from([
                ("citizen_id".to_string(), "410225202603150017".to_string()),
                ("hukou_no".to_string(), "410225001234".to_string()),
            ]),
            accepted_at: Some("2026-03-16T10:02:03+08:00".into()),
        }
    );

    let r = poll(
        "seal",
        "410225-20260317-000045",
        &Q {
            bjzt: "11",
            bjztmc: "办结",
            slsj: "20260317150000",
            bjsj: "20260317160000",
            bjjg: "0",
            bah: "BA4102252026000123",
            ..EMPTY
        },
    );
    assert_eq!(
        r.change,
        Change::Approved {
            results: IndexMap::from([("filing_no".to_string(), "BA4102252026000123".to_string())]),
            accepted_at: Some("2026-03-17T15:00:00+08:00".into()),
        }
    );
}

#[test]
fn a_record_built_by_hand_reads_the_same() {
    let report = MAPPING.departments["police"].report.as_ref().unwrap();
    let record = onething::mapping::expr::to_value(&serde_json::json!({
        "SBLSH": "410225-20260316-000123", "Code": "0000", "BJZT": "11", "BJZTMC": "办结",
        "SLSJ": "20260316100203", "BJSJ": "20260317153000", "BJJG": "0", "YY": "",
        "GMSFHM": "410225202603150017", "HH": "410225001234", "BAH": ""
    }));
    let r = report.read(&record, Some("hukou"), &[]).unwrap();
    assert!(
        matches!(r.change, Change::Approved { ref results, .. } if results["citizen_id"] == "410225202603150017")
    );
    // An approval without its results is an error, never an approval with holes.
    let record = onething::mapping::expr::to_value(&serde_json::json!({
        "SBLSH": "410225-20260316-000123", "BJZT": "11", "BJJG": "0", "GMSFHM": "", "HH": ""
    }));
    assert!(report.read(&record, Some("hukou"), &[]).is_err());
    // An unknown status is an error.
    let record =
        onething::mapping::expr::to_value(&serde_json::json!({"SBLSH": "x", "BJZT": "99"}));
    assert!(report.read(&record, Some("seal"), &[]).is_err());
}
