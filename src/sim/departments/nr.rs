//! 县不动产登记中心 前置机文件交换规范 v2.0 (`nr`): no network. Requests arrive as GBK XML files in
//! `outbox/`; the registration system takes them away (to `outbox/.taken/`, where they stay for
//! inspection) and writes its answers into `inbox/`, each under a `.` name first and renamed
//! after fsync. Answers for one case carry increasing (time stamp, ZT).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, NaiveDateTime, Timelike};
use indexmap::IndexMap;
use serde_json::{Map, Value};
use tokio::sync::watch;

use super::common::{fmt, rule};
use crate::codec::xml::{declaration, parse};
use crate::config::department::Charset;
use crate::sim::Ctx;
use crate::sim::behaviour::{Behaviour, DENY_REASON, Phase, REJECT_REASON};
use crate::sim::results::digits;
use crate::sim::world::{Refusal, Submitted};
use crate::validate::ids::gb11643_problem;

const KIND: &str = "property-transfer";
/// Where taken requests are kept (ignored by readers: it starts with `.`).
pub const TAKEN: &str = ".taken";
const STAMP: &str = "%Y%m%d%H%M%S";

pub async fn run(ctx: Ctx, mut stop: watch::Receiver<bool>) {
    let mut nr = Nr::new(ctx);
    loop {
        if *stop.borrow() {
            break;
        }
        // Steps due before anything new arrives are answered first, then the new requests, then
        // what they made due at once.
        nr.pump();
        nr.take();
        nr.pump();
        tokio::select! {
            changed = stop.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep(nr.ctx.config.nr_scan) => {}
        }
    }
}

/// The request kinds, by their name part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Zydj,
    Ch,
}

impl Kind {
    fn code(self) -> &'static str {
        match self {
            Kind::Zydj => "ZYDJ",
            Kind::Ch => "CH",
        }
    }

    fn op(self) -> &'static str {
        match self {
            Kind::Zydj => "submit",
            Kind::Ch => "withdraw",
        }
    }
}

/// A request file name, split from the right: `<SBLSH>_<ZYDJ|CH>_<yyyyMMddHHmmss>.xml`.
struct Name {
    file: String,
    case_id: String,
    kind: Option<Kind>,
    stamp: String,
}

fn split_name(file: &str) -> Option<Name> {
    let stem = file.strip_suffix(".xml")?;
    let mut parts = stem.rsplitn(3, '_');
    let stamp = parts.next()?.to_string();
    let kind = parts.next()?;
    let case_id = parts.next()?.to_string();
    let kind = match kind {
        "ZYDJ" => Some(Kind::Zydj),
        "CH" => Some(Kind::Ch),
        _ => None,
    };
    Some(Name {
        file: file.to_string(),
        case_id,
        kind,
        stamp,
    })
}

/// One answer to write.
struct Hz<'a> {
    case_id: &'a str,
    slbh: &'a str,
    kind: Kind,
    zt: &'static str,
    ztmc: &'static str,
    at: DateTime<FixedOffset>,
    yy: &'a str,
    bdcqzh: &'a str,
}

struct Nr {
    ctx: Ctx,
    outbox: PathBuf,
    inbox: PathBuf,
    /// Request files left where they are (`失联`): never looked at again.
    ignored: HashSet<String>,
    /// Cases whose buyer is `失联` here.
    down: HashSet<String>,
    /// Cases held, with the phases already answered.
    answered: HashMap<String, Vec<Phase>>,
    /// Per case, the (time stamp, ZT) of the last answer written.
    last: HashMap<String, (NaiveDateTime, &'static str)>,
}

impl Nr {
    fn new(ctx: Ctx) -> Nr {
        let dir = ctx.config.nr_dir.clone();
        Nr {
            ctx,
            outbox: dir.join("outbox"),
            inbox: dir.join("inbox"),
            ignored: HashSet::new(),
            down: HashSet::new(),
            answered: HashMap::new(),
            last: HashMap::new(),
        }
    }

    /// Takes every complete request in `outbox/`, oldest stamp first.
    fn take(&mut self) {
        let Ok(dir) = std::fs::read_dir(&self.outbox) else {
            return;
        };
        let mut names: Vec<Name> = Vec::new();
        for entry in dir.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if file.starts_with('.') || self.ignored.contains(&file) {
                continue;
            }
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            match split_name(&file) {
                Some(n) => names.push(n),
                None => {
                    self.violation("submit", &format!("{file}: not a request file name"));
                    self.take_away(&file);
                }
            }
        }
        names.sort_by(|a, b| (&a.stamp, a.kind, &a.file).cmp(&(&b.stamp, b.kind, &b.file)));
        for n in names {
            self.handle(n);
        }
    }

    fn violation(&self, op: &str, reason: &str) {
        self.ctx.world.violation(self.ctx.dept, op, reason);
    }

    /// Moves a request to `outbox/.taken/`.
    fn take_away(&self, file: &str) -> bool {
        let taken = self.outbox.join(TAKEN);
        let moved = std::fs::create_dir_all(&taken)
            .and_then(|_| std::fs::rename(self.outbox.join(file), taken.join(file)));
        if let Err(e) = &moved {
            tracing::warn!(file, error = %e, "nr: cannot take request");
        }
        moved.is_ok()
    }

    fn handle(&mut self, n: Name) {
        let Some(kind) = n.kind else {
            self.violation("submit", &format!("{}: neither ZYDJ nor CH", n.file));
            self.take_away(&n.file);
            return;
        };
        let Ok(bytes) = std::fs::read(self.outbox.join(&n.file)) else {
            return;
        };
        let doc =
            decode(&bytes).and_then(|text| parse(&text).map_err(|e| format!("XML 格式错误：{e}")));
        // 失联: the request is never taken and never answered (nor is anything after it).
        let name = doc
            .as_ref()
            .ok()
            .and_then(|d| d.pointer("/BDCSQ/QLR/XM"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if self.down.contains(&n.case_id)
            || (kind == Kind::Zydj && rule(&self.ctx, &name) == Behaviour::Down)
        {
            self.down.insert(n.case_id.clone());
            self.ignored.insert(n.file);
            return;
        }
        if !self.take_away(&n.file) {
            return;
        }
        let checked = doc.and_then(|d| {
            check_name(&n)?;
            match kind {
                Kind::Zydj => check_submission(&d, &n.case_id),
                Kind::Ch => check_withdrawal(&d, &n.case_id),
            }
            .map(|_| d)
        });
        let held = self.ctx.world.find(self.ctx.dept, &n.case_id, KIND);
        let doc = match checked {
            Ok(d) => d,
            Err(reason) => {
                self.violation(kind.op(), &format!("{}: {reason}", n.file));
                let slbh = held.map(|a| a.reference).unwrap_or_default();
                self.write(&Hz {
                    case_id: &n.case_id,
                    slbh: &slbh,
                    kind,
                    zt: "09",
                    ztmc: "报文错误",
                    at: self.ctx.world.now_wall(),
                    yy: &reason,
                    bdcqzh: "",
                });
                return;
            }
        };
        match kind {
            Kind::Zydj => self.submit(&n.case_id, name, doc),
            Kind::Ch => self.withdraw(&n.case_id, doc),
        }
    }

    fn submit(&mut self, case_id: &str, name: String, doc: Value) {
        let ctx = self.ctx.clone();
        let b = rule(&ctx, &name);
        let now = ctx.world.now_wall();
        let today = fmt(now, "%Y%m%d");
        let year = fmt(now, "%Y");
        let submitted = ctx.world.submit(
            ctx.dept,
            case_id,
            KIND,
            b,
            false,
            doc.clone(),
            |n| format!("BDC{today}{}", digits(n, 5)),
            |n| {
                IndexMap::from([(
                    "BDCQZH".to_string(),
                    format!("豫({year})兰考县不动产权第{}号", digits(n, 7)),
                )])
            },
        );
        let app = match submitted {
            Submitted::New(app) => {
                ctx.world.received(ctx.dept, "submit", doc);
                self.answered
                    .insert(case_id.to_string(), vec![Phase::Received]);
                app
            }
            Submitted::Duplicate(app) => {
                self.answered
                    .entry(case_id.to_string())
                    .or_insert_with(|| vec![Phase::Received]);
                app
            }
        };
        self.write(&Hz {
            case_id,
            slbh: &app.reference,
            kind: Kind::Zydj,
            zt: "01",
            ztmc: "已接收",
            at: now,
            yy: "",
            bdcqzh: "",
        });
    }

    fn withdraw(&mut self, case_id: &str, doc: Value) {
        let ctx = self.ctx.clone();
        let reason = doc
            .pointer("/BDCCH/CHYY")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let Some(app) = ctx.world.find(ctx.dept, case_id, KIND) else {
            self.write(&Hz {
                case_id,
                slbh: "",
                kind: Kind::Ch,
                zt: "09",
                ztmc: "无此申请",
                at: ctx.world.now_wall(),
                yy: "无此申请",
                bdcqzh: "",
            });
            return;
        };
        let result = ctx.world.withdraw(ctx.dept, &app.reference);
        // Whatever happened before the withdrawal is answered before its answer.
        self.pump_case(case_id);
        let now = ctx.world.now_wall();
        match result {
            Ok(_) => {
                ctx.world.received(ctx.dept, "withdraw", doc);
                self.write(&Hz {
                    case_id,
                    slbh: &app.reference,
                    kind: Kind::Ch,
                    zt: "06",
                    ztmc: "已撤回",
                    at: now,
                    yy: &reason,
                    bdcqzh: "",
                });
            }
            Err(Refusal::Finished) => {
                let yy = match ctx.world.view(&app).phase {
                    Phase::Approved => "已登簿",
                    Phase::Denied => "已不予登记",
                    _ => "已不予受理",
                };
                self.write(&Hz {
                    case_id,
                    slbh: &app.reference,
                    kind: Kind::Ch,
                    zt: "07",
                    ztmc: "撤回失败",
                    at: now,
                    yy,
                    bdcqzh: "",
                });
            }
            Err(_) => {}
        }
    }

    /// Answers every step that is due and not answered yet, for every case held.
    fn pump(&mut self) {
        let cases: Vec<String> = self.answered.keys().cloned().collect();
        for c in cases {
            self.pump_case(&c);
        }
    }

    fn pump_case(&mut self, case_id: &str) {
        let world = self.ctx.world.clone();
        let Some(app) = world.find(self.ctx.dept, case_id, KIND) else {
            // Forgotten (`/_sim/reset`).
            self.answered.remove(case_id);
            return;
        };
        let elapsed = app.created.elapsed();
        for (at, phase) in app.timeline.steps(world.timing) {
            if at > elapsed {
                break;
            }
            if self
                .answered
                .get(case_id)
                .is_some_and(|done| done.contains(&phase))
            {
                continue;
            }
            let when = world.wall(app.created + at);
            let (zt, ztmc, yy, bdcqzh) = match phase {
                Phase::Accepted => ("02", "已受理", "", ""),
                Phase::Rejected => ("03", "不予受理", REJECT_REASON, ""),
                Phase::Approved => ("04", "已登簿", "", app.results["BDCQZH"].as_str()),
                Phase::Denied => ("05", "不予登记", DENY_REASON, ""),
                // Received is answered on taking; a withdrawal by its CH answer.
                _ => {
                    self.answered
                        .entry(case_id.to_string())
                        .or_default()
                        .push(phase);
                    continue;
                }
            };
            self.write(&Hz {
                case_id,
                slbh: &app.reference,
                kind: Kind::Zydj,
                zt,
                ztmc,
                at: when,
                yy,
                bdcqzh,
            });
            self.answered
                .entry(case_id.to_string())
                .or_default()
                .push(phase);
        }
    }

    /// Writes an answer: GBK with prolog, under a `.` name, fsync, rename. The name's stamp is the
    /// answer's time, moved on by a second where needed so that a case's answers have increasing
    /// (stamp, ZT) and names never repeat.
    fn write(&mut self, hz: &Hz<'_>) {
        let at = hz.at.naive_local();
        let mut stamp = at.with_nanosecond(0).unwrap_or(at);
        if let Some((prev, prev_zt)) = self.last.get(hz.case_id) {
            if stamp < *prev {
                stamp = *prev;
            }
            if stamp == *prev && hz.zt <= *prev_zt {
                stamp += chrono::Duration::seconds(1);
            }
        }
        let name = loop {
            let name = format!(
                "{}_{}_{}_{}.xml",
                hz.case_id,
                hz.kind.code(),
                stamp.format(STAMP),
                hz.zt
            );
            let exists = ["", "done", "error"]
                .iter()
                .any(|d| self.inbox.join(d).join(&name).exists());
            if !exists {
                break name;
            }
            stamp += chrono::Duration::seconds(1);
        };
        self.last.insert(hz.case_id.to_string(), (stamp, hz.zt));
        let text = format!(
            "{}<BDCHZ>{}{}{}{}{}{}{}</BDCHZ>",
            declaration(Charset::Gbk),
            el("SBLSH", hz.case_id),
            el("SLBH", hz.slbh),
            el("ZT", hz.zt),
            el("ZTMC", hz.ztmc),
            el("SJ", &fmt(hz.at, "%Y-%m-%d %H:%M:%S")),
            el("YY", hz.yy),
            el("BDCQZH", hz.bdcqzh),
        );
        if let Err(e) = write_atomically(&self.inbox, &name, &Charset::Gbk.encode_xml(&text)) {
            tracing::warn!(file = name, error = %e, "nr: cannot write answer");
        }
    }
}

fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(name))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// `<name>value</name>` (escaped), `<name/>` when empty.
fn el(name: &str, value: &str) -> String {
    if value.is_empty() {
        format!("<{name}/>")
    } else {
        format!("<{name}>{}</{name}>", quick_xml::escape::escape(value))
    }
}

/// GBK, as the prolog must declare; `Err` is the 报文错误 reason.
fn decode(bytes: &[u8]) -> Result<String, String> {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(100)]).into_owned();
    let Some(decl) = head
        .strip_prefix("<?xml")
        .and_then(|d| d.find("?>").map(|i| d[..i].to_string()))
    else {
        return Err("编码错误：缺少 XML 声明（应为 GBK）".into());
    };
    let label = decl.split("encoding").nth(1).and_then(|rest| {
        let rest = rest.trim_start().strip_prefix('=')?.trim_start();
        let q = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let rest = &rest[1..];
        Some(rest[..rest.find(q)?].to_string())
    });
    match label {
        Some(l) if l.eq_ignore_ascii_case("GBK") => {}
        Some(l) => return Err(format!("编码错误：声明为 {l}，应为 GBK")),
        None => return Err("编码错误：XML 声明未注明编码（应为 GBK）".into()),
    }
    // Chinese text in UTF-8 is (practically) never valid GBK text that also happens to be valid
    // UTF-8: a file that is valid UTF-8 beyond ASCII was written in UTF-8.
    if !bytes.is_ascii() && std::str::from_utf8(bytes).is_ok() {
        return Err("编码错误：内容为 UTF-8，应为 GBK".into());
    }
    Charset::Gbk
        .decode(bytes)
        .map_err(|_| "编码错误：内容不是 GBK".to_string())
}

fn check_name(n: &Name) -> Result<(), String> {
    if n.case_id.is_empty() {
        return Err("文件名缺少申办流水号".into());
    }
    if n.stamp.len() != 14 || NaiveDateTime::parse_from_str(&n.stamp, STAMP).is_err() {
        return Err(format!("文件名时间戳错误：{}", n.stamp));
    }
    Ok(())
}

/// The children of element `me`, which must be exactly `names`, once each, in that order;
/// `prefix` names them in messages (`QLR/`).
fn children<'a>(
    v: &'a Value,
    me: &str,
    prefix: &str,
    names: &[&str],
) -> Result<&'a Map<String, Value>, String> {
    let Some(m) = v.as_object() else {
        return Err(format!("{me} 缺少子元素"));
    };
    for (k, x) in m {
        if !names.contains(&k.as_str()) {
            return Err(format!("{prefix}{k} 不是规范中的元素"));
        }
        if x.is_array() {
            return Err(format!("{prefix}{k} 重复"));
        }
    }
    for name in names {
        if !m.contains_key(*name) {
            return Err(format!("{prefix}{name} 缺失"));
        }
    }
    if !m.keys().map(String::as_str).eq(names.iter().copied()) {
        return Err(format!("{me} 元素顺序错误，应为 {}", names.join(", ")));
    }
    Ok(m)
}

/// A text element (may be empty).
fn leaf<'a>(m: &'a Map<String, Value>, prefix: &str, name: &str) -> Result<&'a str, String> {
    m.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{prefix}{name} 应为文本"))
}

/// A non-empty text element.
fn filled<'a>(m: &'a Map<String, Value>, prefix: &str, name: &str) -> Result<&'a str, String> {
    let s = leaf(m, prefix, name)?;
    if s.is_empty() {
        return Err(format!("{prefix}{name} 不能为空"));
    }
    Ok(s)
}

fn root<'a>(doc: &'a Value, name: &str) -> Result<&'a Value, String> {
    let m = doc.as_object().ok_or("XML 格式错误")?;
    match m.get(name) {
        Some(v) => Ok(v),
        None => Err(format!(
            "根元素应为 {name}，不是 {}",
            m.keys().next().map(String::as_str).unwrap_or("?")
        )),
    }
}

fn check_submission(doc: &Value, case_id: &str) -> Result<(), String> {
    const P: &str = "";
    let m = children(
        root(doc, "BDCSQ")?,
        "BDCSQ",
        P,
        &[
            "SBLSH", "YWLX", "BDCDYH", "YBDCQZH", "ZL", "MJ", "JYJG", "WQHTH", "QLR", "YWR", "FJ",
        ],
    )?;
    if filled(m, P, "SBLSH")? != case_id {
        return Err("SBLSH 与文件名不一致".into());
    }
    if filled(m, P, "YWLX")? != "200" {
        return Err("YWLX 应为 200（转移登记）".into());
    }
    let unit = filled(m, P, "BDCDYH")?;
    if unit.chars().count() != 28 {
        return Err("BDCDYH 长度错误".into());
    }
    if !unit.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err("BDCDYH 格式错误".into());
    }
    filled(m, P, "YBDCQZH")?;
    filled(m, P, "ZL")?;
    let area = filled(m, P, "MJ")?;
    let two_decimals = area.split_once('.').is_some_and(|(i, f)| {
        !i.is_empty()
            && i.chars().all(|c| c.is_ascii_digit())
            && f.len() == 2
            && f.chars().all(|c| c.is_ascii_digit())
    });
    if !two_decimals || area.parse::<f64>().is_ok_and(|a| a <= 0.0) {
        return Err("MJ 应为两位小数（平方米）".into());
    }
    let price = filled(m, P, "JYJG")?;
    if !price.chars().all(|c| c.is_ascii_digit()) || price.parse::<u64>().is_err() {
        return Err("JYJG 应为整数（元）".into());
    }
    filled(m, P, "WQHTH")?;
    person(&m["QLR"], "QLR", &["XM", "ZJZL", "ZJH", "DH"])?;
    person(&m["YWR"], "YWR", &["XM", "ZJZL", "ZJH"])?;
    materials(&m["FJ"])
}

fn person(v: &Value, me: &str, names: &[&str]) -> Result<(), String> {
    let prefix = format!("{me}/");
    let m = children(v, me, &prefix, names)?;
    for n in names {
        filled(m, &prefix, n)?;
    }
    let zjzl = filled(m, &prefix, "ZJZL")?;
    if !matches!(zjzl, "1" | "2" | "3" | "4" | "5") {
        return Err(format!("{me}/ZJZL 代码错误：{zjzl}"));
    }
    if zjzl == "1"
        && let Some(p) = gb11643_problem(filled(m, &prefix, "ZJH")?)
    {
        return Err(format!("{me}/ZJH 居民身份证号码错误：{p}"));
    }
    Ok(())
}

fn materials(fj: &Value) -> Result<(), String> {
    let Some(m) = fj.as_object() else {
        return Err("FJ 至少应有一个 CL".into());
    };
    if let Some(k) = m.keys().find(|k| k.as_str() != "CL") {
        return Err(format!("FJ/{k} 不是规范中的元素"));
    }
    let list: Vec<&Value> = match &m["CL"] {
        Value::Array(a) => a.iter().collect(),
        one => vec![one],
    };
    for (i, cl) in list.iter().enumerate() {
        let me = format!("FJ/CL[{}]", i + 1);
        let prefix = format!("{me}/");
        let c = children(cl, &me, &prefix, &["MC", "LJ", "HASH"])?;
        filled(c, &prefix, "MC")?;
        leaf(c, &prefix, "LJ")?;
        let hash = leaf(c, &prefix, "HASH")?;
        if !hash.is_empty() && (hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit())) {
            return Err(format!("{prefix}HASH 应为 sha256（64 位十六进制）"));
        }
    }
    Ok(())
}

fn check_withdrawal(doc: &Value, case_id: &str) -> Result<(), String> {
    const P: &str = "";
    let m = children(root(doc, "BDCCH")?, "BDCCH", P, &["SBLSH", "CHYY"])?;
    if filled(m, P, "SBLSH")? != case_id {
        return Err("SBLSH 与文件名不一致".into());
    }
    filled(m, P, "CHYY")?;
    Ok(())
}
