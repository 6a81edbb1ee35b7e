//! The nr simulator (县不动产登记中心, exchange folder, GBK XML) against the exchange
//! specification: the gateway's request files (every golden case, re-rendered with the real clock)
//! are taken from `outbox/` and answered in `inbox/` with files the gateway's mapping reads as the
//! right changes, in order; malformed requests (a missing element, a wrong order, a wrong code, a
//! wrong number format, a wrong charset) are answered `09 报文错误`; a request written twice is
//! answered `01` with the same SLBH; withdrawals are answered `06`, `07` or `09`; the simulator
//! rules produce their outcomes, `失联` leaving the request untaken and unanswered.
//!
//! Files are written as the gateway writes them (under a `.` name, then renamed); the tests wait for
//! answer files by looking at the folder until they are there (bounded), never by sleeping alone.

mod simkit;
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use minijinja::value::Value;
use onething::codec::charset::decode_body;
use onething::mapping::expr::{Scope, scalar_string, to_value};
use onething::mapping::report::{Change, StatusReport, records_of};
use simkit::Kit;
use support::*;

const ITEM: &str = "property-transfer";
const HOUSE: &str = "house-transfer.json";
const PROLOG: &[u8] = b"<?xml version=\"1.0\" encoding=\"GBK\"?>";

/// Writes a rendered request (`FILE outbox/<name>`, an empty line, the bytes) into the exchange
/// folder as the gateway does: under a `.` name, then renamed. Returns the file name.
fn put(kit: &Kit, raw: &[u8]) -> String {
    let nl = raw.iter().position(|&b| b == b'\n').unwrap();
    let path = std::str::from_utf8(&raw[..nl])
        .unwrap()
        .strip_prefix("FILE ")
        .unwrap();
    let name = path.strip_prefix("outbox/").unwrap().to_string();
    put_bytes(kit, &name, &raw[nl + 2..]);
    name
}

fn put_bytes(kit: &Kit, name: &str, bytes: &[u8]) {
    let outbox = kit.nr_dir.join("outbox");
    let tmp = outbox.join(format!(".{name}"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, outbox.join(name)).unwrap();
}

/// The request's text (GBK decoded; character references left as written).
fn text_of(raw: &[u8]) -> (String, String) {
    let nl = raw.iter().position(|&b| b == b'\n').unwrap();
    let name = std::str::from_utf8(&raw[..nl])
        .unwrap()
        .strip_prefix("FILE outbox/")
        .unwrap()
        .to_string();
    let (text, _, bad) = encoding_rs::GBK.decode(&raw[nl + 2..]);
    assert!(!bad);
    (name, text.into_owned())
}

/// Writes an edited request (text re-encoded in GBK) under `name`.
fn put_text(kit: &Kit, name: &str, text: &str) {
    let (bytes, _, _) = encoding_rs::GBK.encode(text);
    put_bytes(kit, name, &bytes);
}

/// An answer file, read as the gateway reads it.
#[derive(Debug)]
struct Hz {
    file: String,
    /// The operation the answer belongs to (`answers_op`).
    op: String,
    report: StatusReport,
}

impl Hz {
    fn zt(&self) -> &str {
        &self.report.status
    }
}

/// `<SBLSH>_<ZYDJ|CH>_<yyyyMMddHHmmss>_<ZT>.xml`, split from the right: (case id, stamp, ZT).
fn answer_parts(file: &str) -> Option<(String, String, String)> {
    let stem = file.strip_suffix(".xml")?;
    let mut p = stem.rsplitn(4, '_');
    let zt = p.next()?.to_string();
    let stamp = p.next()?.to_string();
    let _op = p.next()?;
    Some((p.next()?.to_string(), stamp, zt))
}

fn read_answer(dir: &Path, file: &str) -> Hz {
    let bytes = std::fs::read(dir.join(file)).unwrap();
    assert!(bytes.starts_with(PROLOG), "GBK prolog: {file}");
    assert!(
        !encoding_rs::GBK.decode_without_bom_handling(&bytes).1,
        "GBK bytes: {file}"
    );
    let dept = &MAPPING.departments["nr"];
    let x = dept.exchange.as_ref().unwrap();
    let decoded = decode_body(&bytes, None).unwrap();
    let parsed = to_value(&onething::codec::xml::parse(&decoded).unwrap());
    let scope = Scope::new(None)
        .with("answer", parsed)
        .with("file_name", Value::from(file))
        .into_value();
    let records = records_of(x.records.eval(&scope).unwrap());
    assert_eq!(records.len(), 1, "{file}");
    let report = dept
        .report
        .as_ref()
        .unwrap()
        .read(&records[0], Some(ITEM), &[("file_name", Value::from(file))])
        .unwrap();
    let op = scalar_string(&x.answers_op.eval(&scope).unwrap()).unwrap();
    Hz {
        file: file.to_string(),
        op,
        report,
    }
}

/// The answers for `case_id` in `inbox/`, in the order of (stamp, ZT).
fn answers_now(kit: &Kit, case_id: &str) -> Vec<Hz> {
    let inbox = kit.nr_dir.join("inbox");
    let mut files: Vec<(String, String, String)> = std::fs::read_dir(&inbox)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| !f.starts_with('.'))
        .filter_map(|f| {
            let (case, stamp, zt) = answer_parts(&f)?;
            (case == case_id).then_some((stamp, zt, f))
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|(_, _, f)| read_answer(&inbox, &f))
        .collect()
}

/// Waits (bounded) until `case_id` has at least `n` answers, then returns them all.
async fn answers(kit: &Kit, case_id: &str, n: usize) -> Vec<Hz> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = answers_now(kit, case_id);
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{case_id}: {} answers, waited for {n}: {got:?}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn zts(hz: &[Hz]) -> Vec<&str> {
    hz.iter().map(Hz::zt).collect()
}

fn with_buyer(case_id: &str, name: &str) -> serde_json::Value {
    let mut s = fixture(HOUSE);
    s["case_id"] = case_id.into();
    s["form"]["buyer"]["name"] = name.into();
    s
}

fn outbox_has(kit: &Kit, name: &str) -> bool {
    kit.nr_dir.join("outbox").join(name).exists()
}

#[tokio::test]
async fn gateway_requests_are_taken_and_answered_in_order() {
    let kit = Kit::start("nr-ok").await;
    let name = put(&kit, &kit.render(HOUSE, ITEM, "submit", None, None));
    let case = "410225-20260318-000007";
    let hz = answers(&kit, case, 3).await;
    assert_eq!(zts(&hz), ["01", "02", "04"]);
    assert!(hz.iter().all(|h| h.op == "submit"));
    assert!(hz.iter().all(|h| h.file.contains("_ZYDJ_")));
    assert_eq!(hz[0].report.change, Change::Dispatched);
    let slbh = hz[0].report.reference.clone().unwrap();
    assert!(
        slbh.starts_with("BDC")
            && slbh.len() == 16
            && slbh[3..].chars().all(|c| c.is_ascii_digit()),
        "{slbh}"
    );
    assert!(
        hz.iter()
            .all(|h| h.report.reference.as_deref() == Some(&*slbh))
    );
    assert!(matches!(
        hz[1].report.change,
        Change::Accepted {
            accepted_at: Some(_)
        }
    ));
    match &hz[2].report.change {
        Change::Approved { results, .. } => {
            let no = &results["certificate_no"];
            let year = chrono::Utc::now().format("%Y").to_string();
            let digits = no
                .strip_prefix(&format!("豫({year})兰考县不动产权第"))
                .and_then(|r| r.strip_suffix('号'))
                .unwrap_or_else(|| panic!("{no}"));
            assert!(
                digits.len() == 7 && digits.chars().all(|c| c.is_ascii_digit()),
                "{no}"
            );
            assert!(results["registered_at"].ends_with("+08:00"));
        }
        other => panic!("{other:?}"),
    }
    // Taken away, kept for inspection; nothing half-written left in the inbox.
    assert!(!outbox_has(&kit, &name));
    assert!(kit.nr_dir.join("outbox/.taken").join(&name).exists());
    let leftovers = std::fs::read_dir(kit.nr_dir.join("inbox"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .count();
    assert_eq!(leftovers, 0);
    // The received request, decoded: the rare character is back.
    let received = kit.sim.world.received_json("nr");
    assert_eq!(received[0]["operation"], "submit");
    assert_eq!(received[0]["body"]["BDCSQ"]["QLR"]["XM"], "陈𠈌");
    assert_eq!(received[0]["body"]["BDCSQ"]["MJ"], "118.62");

    // Written twice: 01 again with the same SLBH, after the earlier answers.
    put(&kit, &kit.render(HOUSE, ITEM, "submit", None, None));
    let hz = answers(&kit, case, 4).await;
    assert_eq!(zts(&hz), ["01", "02", "04", "01"]);
    assert_eq!(hz[3].report.reference.as_deref(), Some(&*slbh));

    // The golden withdrawal of a registered case: 07 撤回失败, which the gateway ignores.
    put(&kit, &kit.render(HOUSE, ITEM, "withdraw", None, None));
    let hz = answers(&kit, case, 5).await;
    assert_eq!(hz[4].zt(), "07");
    assert_eq!(hz[4].op, "withdraw");
    assert_eq!(hz[4].report.change, Change::Ignore);

    // The other golden cases: a seller with a rare character, no utilities accounts.
    put(
        &kit,
        &kit.render(
            "house-transfer-no-accounts.json",
            ITEM,
            "submit",
            None,
            None,
        ),
    );
    let hz = answers(&kit, "410225-20260318-000008", 3).await;
    assert_eq!(zts(&hz), ["01", "02", "04"]);
    let received = kit.sim.world.received_json("nr");
    assert_eq!(received[1]["body"]["BDCSQ"]["YWR"]["XM"], "刘𠈌芳");

    let stats = kit.sim.world.stats("nr");
    assert_eq!((stats.submits, stats.duplicates), (2, 1));
    kit.stop().await;
}

#[tokio::test]
async fn case_ids_with_underscores_and_withdrawals() {
    let kit = Kit::start("nr-withdraw").await;
    // The golden case with `_CH_` inside its id and a passport holder: registered, then the
    // golden withdrawal fails (07).
    let under = "410225_HT_CH_20260318_000009";
    put(
        &kit,
        &kit.render("nr-underscore-passport.json", ITEM, "submit", None, None),
    );
    let hz = answers(&kit, under, 3).await;
    assert_eq!(zts(&hz), ["01", "02", "04"]);
    assert!(
        hz.iter()
            .all(|h| h.report.case_id == under && h.op == "submit")
    );
    put(
        &kit,
        &kit.render("nr-underscore-passport.json", ITEM, "withdraw", None, None),
    );
    let hz = answers(&kit, under, 4).await;
    assert_eq!((hz[3].zt(), hz[3].op.as_str()), ("07", "withdraw"));

    // 缓办: accepted, never decided; the withdrawal is answered 06 and read as withdrawn.
    let s = with_buyer("410225-20260318-400", "陈缓办");
    put(&kit, &kit.render_value(&s, ITEM, "submit", None, None));
    let hz = answers(&kit, "410225-20260318-400", 2).await;
    assert_eq!(zts(&hz), ["01", "02"]);
    put(&kit, &kit.render_value(&s, ITEM, "withdraw", None, None));
    let hz = answers(&kit, "410225-20260318-400", 3).await;
    assert_eq!(zts(&hz), ["01", "02", "06"]);
    assert_eq!(
        hz[2].report.change,
        Change::Withdrawn {
            reason: Some("申请人主动撤回".into())
        }
    );
    // 搁置: taken, never accepted: 01, then the withdrawal's 06 and nothing in between.
    let s = with_buyer("410225-20260318-401", "陈搁置");
    put(&kit, &kit.render_value(&s, ITEM, "submit", None, None));
    answers(&kit, "410225-20260318-401", 1).await;
    put(&kit, &kit.render_value(&s, ITEM, "withdraw", None, None));
    let hz = answers(&kit, "410225-20260318-401", 2).await;
    assert_eq!(zts(&hz), ["01", "06"]);

    // A withdrawal of a case never received: 09 无此申请, ignored by the gateway.
    let s = with_buyer("410225-20260318-402", "陈");
    put(&kit, &kit.render_value(&s, ITEM, "withdraw", None, None));
    let hz = answers(&kit, "410225-20260318-402", 1).await;
    assert_eq!((hz[0].zt(), hz[0].op.as_str()), ("09", "withdraw"));
    assert_eq!(hz[0].report.change, Change::Ignore);
    let stats = kit.sim.world.stats("nr");
    assert_eq!(stats.withdrawals, 2);
    kit.stop().await;
}

#[tokio::test]
async fn simulator_rules_steer_the_outcome() {
    let kit = Kit::start("nr-rules").await;
    let cases: [(&str, &[&str]); 6] = [
        ("陈驳回", &["01", "03"]),
        ("陈不予", &["01", "02", "05"]),
        ("陈驳回:nr", &["01", "03"]),
        ("陈驳回:water", &["01", "02", "04"]),
        ("陈抖动", &["01", "02", "04"]),
        ("陈缓办", &["01", "02"]),
    ];
    for (i, (buyer, want)) in cases.iter().enumerate() {
        let case = format!("410225-20260318-50{i}");
        put(
            &kit,
            &kit.render_value(&with_buyer(&case, buyer), ITEM, "submit", None, None),
        );
        let hz = answers(&kit, &case, want.len()).await;
        assert_eq!(zts(&hz), *want, "{buyer}");
        match &hz.last().unwrap().report.change {
            Change::Rejected { reason } => assert_eq!(reason, "材料不符合要求"),
            Change::Denied { reason, .. } => assert_eq!(reason, "不符合许可条件"),
            _ => {}
        }
    }
    // 失联: never taken, never answered. A later request is taken and answered, so the folder
    // has been looked at since.
    let down = with_buyer("410225-20260318-600", "陈失联");
    let name = put(&kit, &kit.render_value(&down, ITEM, "submit", None, None));
    let withdraw = put(&kit, &kit.render_value(&down, ITEM, "withdraw", None, None));
    let case = "410225-20260318-601";
    put(
        &kit,
        &kit.render_value(&with_buyer(case, "陈"), ITEM, "submit", None, None),
    );
    answers(&kit, case, 3).await;
    // And once more, for a look at the folder after that one.
    let case = "410225-20260318-602";
    put(
        &kit,
        &kit.render_value(&with_buyer(case, "陈"), ITEM, "submit", None, None),
    );
    answers(&kit, case, 1).await;
    assert!(outbox_has(&kit, &name), "the 失联 request stays");
    assert!(outbox_has(&kit, &withdraw), "so does its withdrawal");
    assert!(answers_now(&kit, "410225-20260318-600").is_empty());
    kit.stop().await;
}

#[tokio::test]
async fn malformed_requests_are_answered_09() {
    let kit = Kit::start("nr-bad").await;
    let (_, good) = text_of(&kit.render(HOUSE, ITEM, "submit", None, None));
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "BDCDYH 28 characters",
            good.replace(
                "410225001001GB00012F00010023",
                "410225001001GB00012F0001002",
            ),
            "BDCDYH 长度错误",
        ),
        (
            "a missing element",
            good.replace("<WQHTH>WQ2026031800211</WQHTH>", ""),
            "WQHTH 缺失",
        ),
        (
            "an empty required element",
            good.replace(
                "<ZL>兰考县城关镇黄河路12号院3号楼2单元501室</ZL>",
                "<ZL></ZL>",
            ),
            "ZL 不能为空",
        ),
        (
            "the wrong order",
            good.replace(
                "<ZL>兰考县城关镇黄河路12号院3号楼2单元501室</ZL><MJ>118.62</MJ>",
                "<MJ>118.62</MJ><ZL>兰考县城关镇黄河路12号院3号楼2单元501室</ZL>",
            ),
            "元素顺序错误",
        ),
        (
            "a ZJZL outside 1–5",
            good.replace(
                "<ZJZL>1</ZJZL><ZJH>410225197001010048",
                "<ZJZL>6</ZJZL><ZJH>410225197001010048",
            ),
            "YWR/ZJZL 代码错误",
        ),
        (
            "MJ with one decimal",
            good.replace("<MJ>118.62</MJ>", "<MJ>118.6</MJ>"),
            "MJ 应为两位小数",
        ),
        (
            "JYJG with decimals",
            good.replace("<JYJG>586000</JYJG>", "<JYJG>586000.00</JYJG>"),
            "JYJG 应为整数",
        ),
        (
            "a wrong YWLX",
            good.replace("<YWLX>200</YWLX>", "<YWLX>100</YWLX>"),
            "YWLX",
        ),
        (
            "a bad check digit in a 居民身份证 number",
            good.replace("410225197001010048", "410225197001010049"),
            "YWR/ZJH",
        ),
        (
            "a material without a name",
            good.replace("<MC>契税完税凭证</MC>", "<MC></MC>"),
            "FJ/CL[2]/MC 不能为空",
        ),
        (
            "an element not in the specification",
            good.replace("</WQHTH>", "</WQHTH><BZ>x</BZ>"),
            "BZ 不是规范中的元素",
        ),
    ];
    for (i, (what, text, reason)) in cases.iter().enumerate() {
        let case = format!("410225-20260318-70{i:02}");
        let text = text.replace("410225-20260318-000007", &case);
        put_text(&kit, &format!("{case}_ZYDJ_20260316091530.xml"), &text);
        let hz = answers(&kit, &case, 1).await;
        assert_eq!(hz.len(), 1);
        assert_eq!(hz[0].zt(), "09", "{what}");
        match &hz[0].report.change {
            Change::Failed { error } => assert!(error.contains(reason), "{what}: {error}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    // Wrong charset: the same document in UTF-8, declared as UTF-8 or (wrongly) as GBK.
    for (i, decl) in ["UTF-8", "GBK"].iter().enumerate() {
        let case = format!("410225-20260318-800{i}");
        let text = good
            .replace("410225-20260318-000007", &case)
            .replace("encoding=\"GBK\"", &format!("encoding=\"{decl}\""))
            .replace("&#131596;", "𠈌");
        put_bytes(
            &kit,
            &format!("{case}_ZYDJ_20260316091530.xml"),
            text.as_bytes(),
        );
        let hz = answers(&kit, &case, 1).await;
        assert_eq!(hz[0].zt(), "09", "{decl}");
        match &hz[0].report.change {
            Change::Failed { error } => assert!(error.contains("编码"), "{decl}: {error}"),
            other => panic!("{other:?}"),
        }
    }
    // A withdrawal without its reason.
    let (name, ch) = text_of(&kit.render(HOUSE, ITEM, "withdraw", None, None));
    put_text(
        &kit,
        &name.replace("000007", "000099"),
        &ch.replace("000007", "000099")
            .replace("<CHYY>申请人主动撤回</CHYY>", ""),
    );
    let hz = answers(&kit, "410225-20260318-000099", 1).await;
    assert_eq!(hz[0].zt(), "09");
    // Nothing malformed was taken on; every refusal is kept.
    assert_eq!(kit.sim.world.stats("nr").submits, 0);
    assert_eq!(
        kit.sim
            .world
            .violations_json("nr")
            .as_array()
            .unwrap()
            .len(),
        cases.len() + 3
    );
    assert!(
        kit.sim
            .world
            .received_json("nr")
            .as_array()
            .unwrap()
            .is_empty()
    );
    kit.stop().await;
}
