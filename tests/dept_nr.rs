//! nr (县不动产登记中心, exchange-folder files in GBK): the request files are decoded and checked
//! against the exchange specification independently of the mapping (file names read from the
//! right, GBK prolog and bytes, numeric character references decoding back to the rare character,
//! element order, two-decimal area, integer price, every material); the answer files of the
//! specification are read through the mapping (which operation they answer, their records, and
//! every ZT).

mod support;

use indexmap::IndexMap;
use minijinja::value::Value;
use onething::mapping::expr::Scope;
use onething::mapping::report::{Change, StatusReport, records_of};
use support::*;

const PROLOG: &[u8] = b"<?xml version=\"1.0\" encoding=\"GBK\"?>";

// ---------------------------------------------------------------------------------------------
// Request files

struct File {
    /// The final name in `outbox/`.
    name: String,
    bytes: Vec<u8>,
    /// The GBK text as written (references not yet resolved).
    text: String,
    root: Elem,
}

/// Splits `<SBLSH>_<KIND>_<yyyyMMddHHmmss>.xml` from the right.
fn name_parts(name: &str) -> (String, String, String) {
    let stem = name.strip_suffix(".xml").expect(".xml");
    let mut parts = stem.rsplitn(3, '_');
    let ts = parts.next().unwrap().to_string();
    let kind = parts.next().unwrap().to_string();
    let case_id = parts.next().unwrap().to_string();
    (case_id, kind, ts)
}

fn file(fixture_name: &str, op: &str) -> File {
    let raw =
        render(fixture_name, "property-transfer", op, None, None).unwrap_or_else(|e| panic!("{e}"));
    let nl = raw.iter().position(|&b| b == b'\n').unwrap();
    let first = std::str::from_utf8(&raw[..nl]).unwrap();
    let path = first.strip_prefix("FILE ").expect("FILE line");
    assert_eq!(raw[nl + 1], b'\n', "an empty line after the FILE line");
    let bytes = raw[nl + 2..].to_vec();
    let name = path
        .strip_prefix("outbox/")
        .expect("written to outbox/")
        .to_string();
    assert!(!name.starts_with('.') && !name.contains('/'));
    assert!(bytes.starts_with(PROLOG), "GBK prolog");
    let (text, had_errors) = encoding_rs::GBK.decode_without_bom_handling(&bytes);
    assert!(!had_errors, "file is GBK");
    let root = parse_xml(&text);
    File {
        name,
        text: text.into_owned(),
        bytes,
        root,
    }
}

#[test]
fn submit_file_follows_the_specification() {
    let f = file("house-transfer.json", "submit");
    assert_eq!(f.name, "410225-20260318-000007_ZYDJ_20260316091530.xml");
    assert_eq!(
        name_parts(&f.name),
        (
            "410225-20260318-000007".into(),
            "ZYDJ".into(),
            "20260316091530".into()
        )
    );
    let r = &f.root;
    assert_eq!(r.name, "BDCSQ");
    assert_eq!(
        r.names(),
        [
            "SBLSH", "YWLX", "BDCDYH", "YBDCQZH", "ZL", "MJ", "JYJG", "WQHTH", "QLR", "YWR", "FJ"
        ]
    );
    assert_eq!(r.text_of("SBLSH"), "410225-20260318-000007");
    assert_eq!(r.text_of("YWLX"), "200");
    assert_eq!(r.text_of("BDCDYH"), "410225001001GB00012F00010023");
    assert_eq!(r.text_of("YBDCQZH"), "豫(2019)兰考县不动产权第0004567号");
    assert_eq!(r.text_of("ZL"), "兰考县城关镇黄河路12号院3号楼2单元501室");
    assert_eq!(r.text_of("MJ"), "118.62");
    assert_eq!(r.text_of("JYJG"), "586000");
    assert_eq!(r.text_of("WQHTH"), "WQ2026031800211");
    // 权利人 = the buyer, with the applicant's phone; 义务人 = the seller.
    assert_eq!(
        r.child("QLR").pairs(),
        [
            ("XM", "陈𠈌"),
            ("ZJZL", "1"),
            ("ZJH", "410225198808080017"),
            ("DH", "13603789999")
        ]
    );
    assert_eq!(
        r.child("YWR").pairs(),
        [("XM", "刘芳"), ("ZJZL", "1"), ("ZJH", "410225197001010048")]
    );
    // Every material; LJ and HASH empty (but present) for the electronic licence.
    let fj = r.child("FJ");
    assert_eq!(fj.names(), ["CL", "CL", "CL"]);
    let cl: Vec<Vec<(&str, &str)>> = fj.children.iter().map(Elem::pairs).collect();
    assert_eq!(
        cl,
        [
            vec![("MC", "存量房买卖合同"), ("LJ", ""), ("HASH", "")],
            vec![
                ("MC", "契税完税凭证"),
                (
                    "LJ",
                    "https://platform.example/files/410225-20260318-000007/h2.pdf"
                ),
                (
                    "HASH",
                    "5555555555555555555555555555555555555555555555555555555555555555"
                ),
            ],
            vec![
                ("MC", "不动产权证书"),
                (
                    "LJ",
                    "https://platform.example/files/410225-20260318-000007/h3.pdf"
                ),
                (
                    "HASH",
                    "6666666666666666666666666666666666666666666666666666666666666666"
                ),
            ],
        ]
    );
}

/// The character reference that stands for `ch`, decimal or hexadecimal.
fn is_reference_to(text: &str, ch: char) -> bool {
    text.contains(&format!("&#{};", ch as u32))
        || text
            .to_ascii_lowercase()
            .contains(&format!("&#x{:x};", ch as u32))
}

#[test]
fn rare_characters_become_character_references_that_decode_back() {
    let rare = '𠈌';
    // GBK cannot encode U+2020C at all.
    let (_, _, unmappable) = encoding_rs::GBK.encode(&rare.to_string());
    assert!(unmappable);

    let f = file("house-transfer.json", "submit");
    assert!(is_reference_to(&f.text, rare), "{}", f.text);
    assert!(
        f.text.contains("<XM>陈&#"),
        "the buyer's name as 陈 + reference"
    );
    assert_eq!(f.root.child("QLR").text_of("XM"), "陈𠈌");
    assert!(!f.text.contains('\u{FFFD}'), "no replacement characters");

    let f = file("house-transfer-no-accounts.json", "submit");
    assert_eq!(f.name, "410225-20260318-000008_ZYDJ_20260316091530.xml");
    assert!(f.text.contains("<XM>刘&#"), "{}", f.text);
    assert_eq!(f.root.child("YWR").text_of("XM"), "刘𠈌芳");
    assert_eq!(f.root.child("QLR").text_of("XM"), "陈𠈌");
    // Postal delivery and missing utility accounts change nothing in the registration request.
    assert_eq!(
        f.root.names(),
        file("house-transfer.json", "submit").root.names()
    );
    assert_eq!(f.root.child("FJ").children.len(), 3);
    assert!(f.bytes.len() > PROLOG.len());
}

#[test]
fn case_ids_with_underscores_passports_and_number_formats() {
    let f = file("nr-underscore-passport.json", "submit");
    assert_eq!(
        f.name,
        "410225_HT_CH_20260318_000009_ZYDJ_20260316091530.xml"
    );
    // Read from the right, the name gives the whole case id back.
    assert_eq!(
        name_parts(&f.name),
        (
            "410225_HT_CH_20260318_000009".into(),
            "ZYDJ".into(),
            "20260316091530".into()
        )
    );
    assert_eq!(f.root.text_of("SBLSH"), "410225_HT_CH_20260318_000009");
    assert_eq!(f.root.text_of("MJ"), "88.50", "two decimals");
    assert_eq!(f.root.text_of("JYJG"), "350000", "integer yuan");
    assert_eq!(
        f.root.child("YWR").pairs(),
        [("XM", "JOHNSON Mary"), ("ZJZL", "2"), ("ZJH", "E12345678")]
    );

    let w = file("nr-underscore-passport.json", "withdraw");
    assert_eq!(w.name, "410225_HT_CH_20260318_000009_CH_20260316091530.xml");
    assert_eq!(name_parts(&w.name).1, "CH");
}

#[test]
fn withdrawal_file() {
    let f = file("house-transfer.json", "withdraw");
    assert_eq!(f.name, "410225-20260318-000007_CH_20260316091530.xml");
    assert_eq!(f.root.name, "BDCCH");
    assert_eq!(
        f.root.pairs(),
        [
            ("SBLSH", "410225-20260318-000007"),
            ("CHYY", "申请人主动撤回")
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Answer files

fn answers_op(file_name: &str) -> Option<String> {
    let x = MAPPING.departments["nr"].exchange.as_ref().unwrap();
    let scope = Scope::new(None)
        .with("file_name", Value::from(file_name))
        .into_value();
    onething::mapping::expr::scalar_string(&x.answers_op.eval(&scope).unwrap())
}

#[test]
fn the_answer_file_name_tells_which_operation_it_answers() {
    assert_eq!(
        answers_op("410225-20260318-000007_ZYDJ_20260318104500_01.xml").as_deref(),
        Some("submit")
    );
    assert_eq!(
        answers_op("410225-20260318-000007_CH_20260318110000_06.xml").as_deref(),
        Some("withdraw")
    );
    // Split from the right: a case id with `_`, even `_CH_`, does not confuse it.
    assert_eq!(
        answers_op("410225_HT_CH_20260318_000009_ZYDJ_20260318104500_04.xml").as_deref(),
        Some("submit")
    );
    assert_eq!(
        answers_op("410225_ZYDJ_1_CH_20260318110000_09.xml").as_deref(),
        Some("withdraw")
    );
    let x = MAPPING.departments["nr"].exchange.as_ref().unwrap();
    assert_eq!(x.outbox, "outbox");
    assert_eq!(x.inbox, "inbox");
    assert_eq!(x.not_taken_after, std::time::Duration::from_secs(2 * 3600));
    assert_eq!(
        MAPPING.departments["nr"].folder.as_deref(),
        Some("data/exchange/nr")
    );
}

struct Hz<'a> {
    zt: &'a str,
    ztmc: &'a str,
    sj: &'a str,
    yy: &'a str,
    bdcqzh: &'a str,
}

/// An answer file as the registration system writes it (GBK; rare characters as references), read
/// as the gateway does: decoded by its prolog, parsed, its records found, each read with the file
/// name at hand.
fn answer_file(case_id: &str, op: &str, hz: &Hz<'_>) -> StatusReport {
    let file_name = format!("{case_id}_{op}_20260318104500_{}.xml", hz.zt);
    let text = format!(
        "<?xml version=\"1.0\" encoding=\"GBK\"?>\n<BDCHZ>{}{}{}{}{}{}{}</BDCHZ>",
        el("SBLSH", case_id),
        el("SLBH", "BDC2026031800042"),
        el("ZT", hz.zt),
        el("ZTMC", hz.ztmc),
        el("SJ", hz.sj),
        el("YY", hz.yy),
        el("BDCQZH", hz.bdcqzh),
    );
    let (bytes, _, _) = encoding_rs::GBK.encode(&text);
    let decoded = onething::codec::charset::decode_body(&bytes, None).unwrap();
    let parsed = onething::mapping::expr::to_value(&onething::codec::xml::parse(&decoded).unwrap());
    let dept = &MAPPING.departments["nr"];
    let x = dept.exchange.as_ref().unwrap();
    let scope = Scope::new(None)
        .with("answer", parsed)
        .with("file_name", Value::from(file_name.clone()))
        .into_value();
    let records = records_of(x.records.eval(&scope).unwrap());
    assert_eq!(records.len(), 1);
    let r = dept
        .report
        .as_ref()
        .unwrap()
        .read(
            &records[0],
            Some("property-transfer"),
            &[("file_name", Value::from(file_name))],
        )
        .unwrap();
    assert_eq!(r.case_id, case_id);
    assert_eq!(r.status, hz.zt);
    assert_eq!(r.reference.as_deref(), Some("BDC2026031800042"));
    r
}

const CASE: &str = "410225-20260318-000007";

fn hz<'a>(zt: &'a str, ztmc: &'a str) -> Hz<'a> {
    Hz {
        zt,
        ztmc,
        sj: "2026-03-18 10:45:00",
        yy: "",
        bdcqzh: "",
    }
}

#[test]
fn every_zt_of_the_specification() {
    assert_eq!(
        answer_file(CASE, "ZYDJ", &hz("01", "已接收")).change,
        Change::Dispatched
    );
    assert_eq!(
        answer_file(CASE, "ZYDJ", &hz("02", "已受理")).change,
        Change::Accepted {
            accepted_at: Some("2026-03-18T10:45:00+08:00".into())
        }
    );
    assert_eq!(
        answer_file(
            CASE,
            "ZYDJ",
            &Hz {
                yy: "材料不符合要求",
                ..hz("03", "不予受理")
            }
        )
        .change,
        Change::Rejected {
            reason: "材料不符合要求".into()
        }
    );
    assert_eq!(
        answer_file(
            CASE,
            "ZYDJ",
            &Hz {
                sj: "2026-03-19 15:20:00",
                bdcqzh: "豫(2026)兰考县不动产权第0001234号",
                ..hz("04", "已登簿")
            }
        )
        .change,
        Change::Approved {
            results: IndexMap::from([
                (
                    "certificate_no".to_string(),
                    "豫(2026)兰考县不动产权第0001234号".to_string()
                ),
                (
                    "registered_at".to_string(),
                    "2026-03-19T15:20:00+08:00".to_string()
                ),
            ]),
            accepted_at: None,
        }
    );
    assert_eq!(
        answer_file(
            CASE,
            "ZYDJ",
            &Hz {
                yy: "不符合许可条件",
                ..hz("05", "不予登记")
            }
        )
        .change,
        Change::Denied {
            reason: "不符合许可条件".into(),
            accepted_at: None,
        }
    );
    assert!(matches!(
        answer_file(CASE, "CH", &hz("06", "已撤回")).change,
        Change::Withdrawn { .. }
    ));
    // 撤回失败: the item keeps its state.
    assert_eq!(
        answer_file(CASE, "CH", &hz("07", "撤回失败")).change,
        Change::Ignore
    );
    // 09 to a withdrawal: no such case; to a submission: malformed, the item fails with the reason.
    assert_eq!(
        answer_file(CASE, "CH", &hz("09", "无此申请")).change,
        Change::Ignore
    );
    assert_eq!(
        answer_file(
            CASE,
            "ZYDJ",
            &Hz {
                yy: "BDCDYH 长度错误",
                ..hz("09", "报文错误")
            }
        )
        .change,
        Change::Failed {
            error: "BDCDYH 长度错误".into()
        }
    );
}

#[test]
fn answers_for_case_ids_with_underscores() {
    let case = "410225_HT_CH_20260318_000009";
    assert_eq!(
        answer_file(
            case,
            "ZYDJ",
            &Hz {
                yy: "ZL 不能为空",
                ..hz("09", "报文错误")
            }
        )
        .change,
        Change::Failed {
            error: "ZL 不能为空".into()
        }
    );
    assert_eq!(
        answer_file(case, "CH", &hz("09", "无此申请")).change,
        Change::Ignore
    );
}

#[test]
fn answer_files_with_character_references_read_back() {
    // The registration system writes rare characters as references too (hexadecimal here).
    let text = "<?xml version=\"1.0\" encoding=\"GBK\"?><BDCHZ><SBLSH>410225-20260318-000008</SBLSH><SLBH>BDC1</SLBH><ZT>03</ZT><ZTMC>不予受理</ZTMC><SJ>2026-03-18 11:00:00</SJ><YY>义务人刘&#x2020C;芳身份信息不符</YY><BDCQZH/></BDCHZ>";
    let (bytes, _, _) = encoding_rs::GBK.encode(text);
    let decoded = onething::codec::charset::decode_body(&bytes, None).unwrap();
    let parsed = onething::mapping::expr::to_value(&onething::codec::xml::parse(&decoded).unwrap());
    let x = MAPPING.departments["nr"].exchange.as_ref().unwrap();
    let scope = Scope::new(None)
        .with("answer", parsed)
        .with(
            "file_name",
            Value::from("410225-20260318-000008_ZYDJ_20260318110000_03.xml"),
        )
        .into_value();
    let records = records_of(x.records.eval(&scope).unwrap());
    let r = MAPPING.departments["nr"]
        .report
        .as_ref()
        .unwrap()
        .read(&records[0], Some("property-transfer"), &[])
        .unwrap();
    assert_eq!(
        r.change,
        Change::Rejected {
            reason: "义务人刘𠈌芳身份信息不符".into()
        }
    );
}
