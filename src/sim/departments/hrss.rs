//! 县人力资源和社会保障局 社保卡业务系统 开放接口 v1.2 (`hrss`): one endpoint `/gateway.do`, a UTF-8
//! form whose `data` field holds an XML document, MD5-signed with a 10-minute time window; every
//! answer is HTTP 200 with `<response><code>…`. Not connected: state is polled with `card.query`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{NaiveDate, NaiveDateTime, TimeZone};
use indexmap::IndexMap;
use md5::{Digest, Md5};
use quick_xml::escape::partial_escape;
use serde_json::{Value, json};

use super::common::{ETHNIC_NAMES, fmt, header, push_fails, rule, text};
use crate::model::time::cst;
use crate::sim::Ctx;
use crate::sim::behaviour::{DENY_REASON, Phase, REJECT_REASON};
use crate::sim::results::digits;
use crate::sim::world::{App, Refusal, Submitted, View};
use crate::validate::ids::gb11643_valid;

const KIND: &str = "social-card";
/// How far `time` may be off real time.
const TIME_WINDOW_SECS: i64 = 600;

struct Hrss {
    ctx: Ctx,
    /// The cancellation reason (`yy`) by department reference.
    reasons: Mutex<HashMap<String, String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn router(ctx: Ctx) -> Router {
    let hrss = Arc::new(Hrss {
        ctx,
        reasons: Mutex::new(HashMap::new()),
    });
    Router::new()
        .route("/gateway.do", post(gateway))
        .with_state(hrss)
}

/// `<response><code>…</code><message>…</message>…</response>`, always HTTP 200.
fn answer(code: &str, message: &str, extra: &[(&str, &str)]) -> Response {
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<response><code>{code}</code><message>{}</message>",
        partial_escape(message)
    );
    for (k, v) in extra {
        if v.is_empty() {
            s.push_str(&format!("<{k}/>"));
        } else {
            s.push_str(&format!("<{k}>{}</{k}>", partial_escape(*v)));
        }
    }
    s.push_str("</response>");
    (
        [(CONTENT_TYPE, "application/xml; charset=UTF-8")],
        s.into_bytes(),
    )
        .into_response()
}

/// A refusal: its code and message.
struct Refused(&'static str, String);

impl Refused {
    fn business(message: impl Into<String>) -> Refused {
        Refused("300", message.into())
    }

    fn auth(message: impl Into<String>) -> Refused {
        Refused("401", message.into())
    }
}

/// Decodes `application/x-www-form-urlencoded` strictly: every name and value must be UTF-8 once
/// percent-decoded (the last of a repeated field wins).
fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, String> {
    fn decode(part: &[u8]) -> Result<String, String> {
        let mut out = Vec::with_capacity(part.len());
        let mut i = 0;
        while i < part.len() {
            match part[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = part
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or("bad percent escape")?;
                    out.push(hex);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).map_err(|_| "form field is not UTF-8".to_string())
    }
    let mut form = HashMap::new();
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (k, v) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        form.insert(decode(k)?, decode(v)?);
    }
    Ok(form)
}

fn sign(app_key: &str, secret: &str, time: &str, data: &str) -> String {
    let digest = Md5::digest(format!("{app_key}{secret}{time}{data}").as_bytes());
    hex::encode_upper(digest)
}

/// Transport and signature; gives (method, the `request` element of `data`).
fn unwrap_request(
    ctx: &Ctx,
    h: &HeaderMap,
    body: &[u8],
) -> Result<(String, Value), (String, Refused)> {
    let ct = header(h, "content-type");
    let mut parts = ct.split(';').map(str::trim);
    let media = parts.next().unwrap_or("");
    let charset = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, c)| c.trim().trim_matches('"').to_string());
    let unknown = String::new();
    if !media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err((
            unknown,
            Refused::business(format!(
                "Content-Type 必须为 application/x-www-form-urlencoded; charset=UTF-8（收到 `{ct}`）"
            )),
        ));
    }
    if charset.is_some_and(|c| !c.eq_ignore_ascii_case("UTF-8")) {
        return Err((
            unknown,
            Refused::business(format!("字符集必须为 UTF-8（收到 `{ct}`）")),
        ));
    }
    let form = parse_form(body).map_err(|e| {
        (
            String::new(),
            Refused::business(format!("字符集必须为 UTF-8：{e}")),
        )
    })?;
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let method = get("method").to_string();
    let refuse = |r: Refused| (method.clone(), r);
    let app_key = get("appKey");
    if app_key.is_empty() || app_key != ctx.cred("APP_KEY") {
        return Err(refuse(Refused::auth("appKey 无效")));
    }
    let time = get("time");
    let at = NaiveDateTime::parse_from_str(time, "%Y%m%d%H%M%S")
        .ok()
        .filter(|_| time.len() == 14)
        .and_then(|t| cst().from_local_datetime(&t).single());
    let Some(at) = at else {
        return Err(refuse(Refused::auth("time 格式错误（yyyyMMddHHmmss）")));
    };
    let data = get("data");
    if get("sign") != sign(app_key, &ctx.cred("SECRET"), time, data) {
        return Err(refuse(Refused::auth("签名错误")));
    }
    if (chrono::Utc::now().timestamp() - at.timestamp()).abs() > TIME_WINDOW_SECS {
        return Err(refuse(Refused::auth("time 与服务器时间相差超过 10 分钟")));
    }
    if !matches!(method.as_str(), "card.apply" | "card.query" | "card.cancel") {
        return Err(refuse(Refused::business(format!(
            "method 不支持：`{method}`"
        ))));
    }
    if data.is_empty() {
        return Err(refuse(Refused::business("data 不能为空")));
    }
    let doc = crate::codec::xml::parse(data)
        .map_err(|e| refuse(Refused::business(format!("data 不是合法的 XML：{e}"))))?;
    let request = match doc.get("request") {
        Some(Value::Object(m)) => Value::Object(m.clone()),
        Some(Value::String(s)) if s.trim().is_empty() => json!({}),
        _ => {
            return Err(refuse(Refused::business("data 的根元素必须为 request")));
        }
    };
    Ok((method, request))
}

async fn gateway(State(p): State<Arc<Hrss>>, h: HeaderMap, body: Bytes) -> Response {
    let ctx = &p.ctx;
    let (method, request) = match unwrap_request(ctx, &h, &body) {
        Ok(r) => r,
        Err((method, Refused(code, message))) => {
            ctx.world.violation(ctx.dept, &method, &message);
            return answer(code, &message, &[]);
        }
    };
    let result = match method.as_str() {
        "card.apply" => apply(&p, request),
        "card.query" => query(&p, &request),
        _ => cancel(&p, request),
    };
    match result {
        Ok(r) => r,
        Err(Refused(code, message)) => {
            ctx.world.violation(ctx.dept, &method, &message);
            answer(code, &message, &[])
        }
    }
}

fn required(v: &Value, names: &[&str]) -> Result<(), Refused> {
    match names.iter().find(|n| text(v, &format!("/{n}")).is_none()) {
        Some(n) => Err(Refused::business(format!("{n} 不能为空"))),
        None => Ok(()),
    }
}

fn wrong(name: &str) -> Refused {
    Refused::business(format!("{name} 取值不正确"))
}

fn validate_apply(v: &Value) -> Result<(), Refused> {
    required(
        v,
        &[
            "sblsh", "xm", "xb", "csrq", "mz", "gmsfhm", "jhrxm", "jhrsfzh", "lxdh", "lqfs",
        ],
    )?;
    // Optional elements are omitted when they have no value, never sent empty.
    for n in ["yhmc", "yjdz"] {
        if v.get(n).is_some() && text(v, &format!("/{n}")).is_none() {
            return Err(Refused::business(format!(
                "{n} 为空（无值的可选元素应省略）"
            )));
        }
    }
    let t = |n: &str| text(v, &format!("/{n}")).unwrap_or("");
    if !matches!(t("xb"), "男" | "女") {
        return Err(wrong("xb"));
    }
    let csrq = t("csrq");
    if csrq.len() != 10 || NaiveDate::parse_from_str(csrq, "%Y-%m-%d").is_err() {
        return Err(wrong("csrq"));
    }
    if !ETHNIC_NAMES.contains(&t("mz")) {
        return Err(wrong("mz"));
    }
    if !gb11643_valid(t("gmsfhm")) {
        return Err(Refused::business("gmsfhm 身份证号码校验失败"));
    }
    match t("lqfs") {
        "1" => {}
        "2" => required(v, &["yjdz"])?,
        _ => return Err(wrong("lqfs")),
    }
    Ok(())
}

fn apply(p: &Hrss, v: Value) -> Result<Response, Refused> {
    const OP: &str = "card.apply";
    let ctx = &p.ctx;
    validate_apply(&v)?;
    let case_id = text(&v, "/sblsh").unwrap_or_default().to_string();
    let b = rule(ctx, text(&v, "/xm").unwrap_or_default());
    if push_fails(ctx, b, &case_id, KIND, OP) {
        return Ok(answer("500", "系统繁忙，请稍后重试", &[]));
    }
    let today = fmt(ctx.world.now_wall(), "%Y%m%d");
    let submitted = ctx.world.submit(
        ctx.dept,
        &case_id,
        KIND,
        b,
        false,
        v.clone(),
        |n| format!("RS{today}{}", digits(n, 5)),
        |n| IndexMap::from([("kh".to_string(), format!("H{}", digits(n, 8)))]),
    );
    Ok(match submitted {
        Submitted::Duplicate(app) => {
            answer("301", "重复申请", &[("ywlsh", app.reference.as_str())])
        }
        Submitted::New(app) => {
            ctx.world
                .received(ctx.dept, OP, json!({"method": OP, "data": v}));
            answer("200", "成功", &[("ywlsh", app.reference.as_str())])
        }
    })
}

/// `zt` and `ztmc` of a phase.
fn zt(phase: &Phase) -> (&'static str, &'static str) {
    match phase {
        Phase::Received | Phase::PrecheckPassed => ("0", "已接收"),
        Phase::Accepted => ("1", "已受理"),
        Phase::Rejected | Phase::PrecheckFailed => ("2", "不予受理"),
        Phase::Approved => ("4", "已制卡"),
        Phase::Denied => ("5", "办理失败"),
        Phase::Withdrawn => ("9", "已撤销"),
    }
}

fn status_fields(p: &Hrss, app: &App, view: &View) -> Vec<(&'static str, String)> {
    let t = |t: chrono::DateTime<chrono::FixedOffset>| fmt(t, "%Y-%m-%d %H:%M:%S");
    let (code, name) = zt(&view.phase);
    let (yy, kh) = match view.phase {
        Phase::Rejected | Phase::PrecheckFailed => (REJECT_REASON.to_string(), String::new()),
        Phase::Denied => (DENY_REASON.to_string(), String::new()),
        Phase::Approved => (String::new(), app.results["kh"].clone()),
        Phase::Withdrawn => (
            lock(&p.reasons)
                .get(&app.reference)
                .cloned()
                .unwrap_or_else(|| "申请人撤销".into()),
            String::new(),
        ),
        _ => (String::new(), String::new()),
    };
    let bjsj = if view.phase.is_final() {
        t(view.phase_at)
    } else {
        String::new()
    };
    vec![
        ("zt", code.into()),
        ("ztmc", name.into()),
        ("slsj", view.accepted_at.map(t).unwrap_or_default()),
        ("bjsj", bjsj),
        ("kh", kh),
        ("yy", yy),
    ]
}

fn query(p: &Hrss, v: &Value) -> Result<Response, Refused> {
    let ctx = &p.ctx;
    required(v, &["sblsh"])?;
    ctx.world.count(ctx.dept, |s| s.queries += 1);
    let Some(app) = ctx
        .world
        .find(ctx.dept, text(v, "/sblsh").unwrap_or_default(), KIND)
    else {
        return Ok(answer("404", "申请不存在", &[]));
    };
    let fields = status_fields(p, &app, &ctx.world.view(&app));
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Ok(answer("200", "成功", &pairs))
}

fn cancel(p: &Hrss, v: Value) -> Result<Response, Refused> {
    const OP: &str = "card.cancel";
    let ctx = &p.ctx;
    required(&v, &["sblsh", "yy"])?;
    let Some(app) = ctx
        .world
        .find(ctx.dept, text(&v, "/sblsh").unwrap_or_default(), KIND)
    else {
        return Ok(answer("404", "申请不存在", &[]));
    };
    Ok(match ctx.world.withdraw(ctx.dept, &app.reference) {
        Ok(app) => {
            lock(&p.reasons)
                .entry(app.reference.clone())
                .or_insert_with(|| text(&v, "/yy").unwrap_or_default().to_string());
            ctx.world
                .received(ctx.dept, OP, json!({"method": OP, "data": v}));
            answer("200", "成功", &[])
        }
        Err(Refusal::Finished) => answer("300", "已办结", &[]),
        Err(_) => answer("404", "申请不存在", &[]),
    })
}
