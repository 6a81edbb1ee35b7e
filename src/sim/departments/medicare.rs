//! 县医疗保障局 城乡居民参保登记系统 v3.1 (`medicare`): HTTP, every body a JSON envelope whose
//! business data is SM4-ECB/PKCS#7 encrypted (`encData`) and SM3 signed (`signData`); answers are
//! plain JSON with a numeric `code`; pre-check (容缺预审) then confirm, or one-step apply; results
//! by callback in the same envelope (`appId` `medicare-system`).
//!
//! Checks, in order: the body is a UTF-8 JSON envelope with all six fields (`encType` `SM4`,
//! `signType` `SM3`; otherwise 2001 naming the field), the app id and the signature (1001), the
//! timestamp within 5 minutes of real time (1003), the decryption to a UTF-8 JSON object (1002),
//! then the business fields (2001 naming the first wrong one).
//!
//! A confirm whose `enrolNo` is unknown is answered 4004; one whose enrolment was not a pre-check
//! (an `apply`), whose pre-check failed, or that was cancelled is answered 2001 naming `enrolNo`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};
use ecb::cipher::block_padding::Pkcs7;
use ecb::cipher::{BlockDecryptMut, BlockEncryptMut, KeyInit};
use indexmap::IndexMap;
use serde_json::{Map, Value, json};

use super::common::{fmt, header, is_ethnicity, push_fails, require, rule, text};
use crate::model::time::cst;
use crate::sim::Ctx;
use crate::sim::behaviour::{DENY_REASON, Phase, REJECT_REASON};
use crate::sim::callback::{self, Outgoing};
use crate::sim::results::digits;
use crate::sim::world::{App, Refusal, Submitted, View};
use crate::validate::ids::gb11643_valid;

/// The one item of this system: 城乡居民参保登记.
const KIND: &str = "enrol";
/// The app id the system signs its callbacks with.
pub const CALLBACK_APP_ID: &str = "medicare-system";
/// How far a timestamp may be from real time.
const WINDOW_SECS: i64 = 300;

/// GA/T 2000.156 常用证件代码 the system knows.
const ID_TYPES: &[&str] = &[
    "111", "112", "113", "114", "115", "116", "117", "118", "119", "120", "121", "122", "123",
    "131", "133", "233", "335", "411", "412", "413", "414", "415", "416", "418", "420", "511",
    "513", "514", "515", "516", "551", "552", "553", "554", "555", "990",
];

pub fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/api/enrol/precheck", post(precheck))
        .route("/api/enrol/apply", post(apply))
        .route("/api/enrol/confirm", post(confirm))
        .route("/api/enrol/query", post(query))
        .route("/api/enrol/cancel", post(cancel))
        .with_state(ctx)
}

fn answer(code: u32, message: &str, data: Value) -> Response {
    axum::Json(json!({"code": code, "message": message, "data": data})).into_response()
}

fn ok(data: Value) -> Response {
    answer(0, "成功", data)
}

/// A refusal, kept for `/_sim/violations`.
fn refuse(ctx: &Ctx, op: &str, code: u32, message: &str) -> Response {
    ctx.world
        .violation(ctx.dept, op, &format!("{code} {message}"));
    answer(code, message, Value::Null)
}

fn invalid(ctx: &Ctx, op: &str, field: &str) -> Response {
    refuse(ctx, op, 2001, &format!("参数校验失败: {field}"))
}

/// `失联`/`抖动`: HTTP 503 with the busy code.
fn busy() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({"code": 5001, "message": "系统繁忙", "data": null})),
    )
        .into_response()
}

/// Lowercase hex SM3 of `appId + timestamp + encData + secret`.
pub fn sign(app_id: &str, ts: &str, enc: &str, secret: &str) -> String {
    use sm3::Digest as _;
    hex::encode(sm3::Sm3::digest(
        format!("{app_id}{ts}{enc}{secret}").as_bytes(),
    ))
}

fn key(hex_key: &str) -> Option<[u8; 16]> {
    hex::decode(hex_key.trim()).ok()?.try_into().ok()
}

/// SM4-ECB/PKCS#7 of the bytes, Base64.
pub fn encrypt(hex_key: &str, plain: &[u8]) -> Option<String> {
    let k = key(hex_key)?;
    let ct = ecb::Encryptor::<sm4::Sm4>::new(&k.into()).encrypt_padded_vec_mut::<Pkcs7>(plain);
    Some(B64.encode(ct))
}

/// The inverse of [`encrypt`] (bytes, not yet checked to be UTF-8).
pub fn decrypt(hex_key: &str, b64: &str) -> Option<Vec<u8>> {
    let k = key(hex_key)?;
    let ct = B64.decode(b64).ok()?;
    ecb::Decryptor::<sm4::Sm4>::new(&k.into())
        .decrypt_padded_vec_mut::<Pkcs7>(&ct)
        .ok()
}

/// The envelope around business data, timestamped now (real time).
pub fn seal(app_id: &str, hex_key: &str, secret: &str, business: &Value) -> Option<Value> {
    let ts = fmt(Utc::now().with_timezone(&cst()), "%Y%m%d%H%M%S");
    let enc = encrypt(hex_key, business.to_string().as_bytes())?;
    let sig = sign(app_id, &ts, &enc, secret);
    Some(
        json!({"appId": app_id, "timestamp": ts, "encType": "SM4", "signType": "SM3",
        "encData": enc, "signData": sig}),
    )
}

/// A charset other than UTF-8 named by the content type.
fn foreign_charset(h: &HeaderMap) -> bool {
    header(h, "content-type")
        .split(';')
        .filter_map(|p| {
            p.trim()
                .to_ascii_lowercase()
                .strip_prefix("charset=")
                .map(str::to_string)
        })
        .any(|c| {
            let c = c.trim_matches('"');
            c != "utf-8" && c != "utf8"
        })
}

/// Opens the envelope: the business data, or the refusal's (code, message).
fn open(ctx: &Ctx, h: &HeaderMap, body: &[u8]) -> Result<Value, (u32, String)> {
    let field = |f: &str| (2001, format!("参数校验失败: {f}"));
    if foreign_charset(h) {
        return Err(field("charset (UTF-8 only)"));
    }
    let env: Value = std::str::from_utf8(body)
        .ok()
        .and_then(|s| serde_json::from_str(s).ok())
        .filter(Value::is_object)
        .ok_or_else(|| field("body (not a JSON envelope)"))?;
    for f in [
        "appId",
        "timestamp",
        "encType",
        "signType",
        "encData",
        "signData",
    ] {
        if text(&env, &format!("/{f}")).is_none() {
            return Err(field(f));
        }
    }
    let get = |f: &str| text(&env, &format!("/{f}")).unwrap_or_default();
    if get("encType") != "SM4" {
        return Err(field("encType"));
    }
    if get("signType") != "SM3" {
        return Err(field("signType"));
    }
    let (app_id, ts, enc) = (get("appId"), get("timestamp"), get("encData"));
    if app_id != ctx.cred("APP_ID") {
        return Err((1001, "签名错误: 未知的 appId".into()));
    }
    if get("signData") != sign(app_id, ts, enc, &ctx.cred("SECRET")) {
        return Err((1001, "签名错误".into()));
    }
    let at = (ts.len() == 14)
        .then(|| NaiveDateTime::parse_from_str(ts, "%Y%m%d%H%M%S").ok())
        .flatten()
        .and_then(|t| cst().from_local_datetime(&t).single());
    match at {
        Some(t) if (Utc::now().timestamp() - t.timestamp()).abs() <= WINDOW_SECS => {}
        _ => return Err((1003, "时间戳超出允许范围".into())),
    }
    let plain = decrypt(&ctx.cred("KEY"), enc).ok_or((1002, "解密失败".to_string()))?;
    let plain = String::from_utf8(plain).map_err(|_| (1002, "解密失败: 数据不是 UTF-8".into()))?;
    serde_json::from_str::<Value>(&plain)
        .ok()
        .filter(Value::is_object)
        .ok_or((1002, "解密失败: 数据不是 JSON 对象".into()))
}

fn date_ok(s: &str) -> bool {
    s.len() == 10 && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

fn phone_ok(s: &str) -> bool {
    (5..=20).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_digit() || c == '-' || c == '+')
}

/// The pre-check fields (and for `apply` also `citizenId`, `hukouNo`); `Err` names the first
/// wrong field.
fn validate_enrol(v: &Value, apply: bool) -> Result<(), String> {
    let dotted = |p: &str| p.trim_start_matches('/').replace('/', ".");
    require(
        v,
        &[
            "/sblsh",
            "/xzqh",
            "/insuredName",
            "/gender",
            "/birthDate",
            "/nation",
        ],
    )
    .map_err(dotted)?;
    let t = |p: &str| text(v, p).unwrap_or_default();
    if !(t("/xzqh").len() == 6 && t("/xzqh").chars().all(|c| c.is_ascii_digit())) {
        return Err("xzqh".into());
    }
    if !matches!(t("/gender"), "0" | "1" | "2" | "9") {
        return Err("gender".into());
    }
    if !date_ok(t("/birthDate")) {
        return Err("birthDate".into());
    }
    if !is_ethnicity(t("/nation")) {
        return Err("nation".into());
    }
    if !v.get("guardian").is_some_and(Value::is_object) {
        return Err("guardian".into());
    }
    require(
        v,
        &[
            "/guardian/name",
            "/guardian/idType",
            "/guardian/idNo",
            "/guardian/phone",
        ],
    )
    .map_err(dotted)?;
    let id_type = t("/guardian/idType");
    if !ID_TYPES.contains(&id_type) {
        return Err("guardian.idType".into());
    }
    if id_type == "111" && !gb11643_valid(t("/guardian/idNo")) {
        return Err("guardian.idNo".into());
    }
    if !phone_ok(t("/guardian/phone")) {
        return Err("guardian.phone".into());
    }
    require(v, &["/address"]).map_err(dotted)?;
    if !v
        .get("payYear")
        .and_then(Value::as_i64)
        .is_some_and(|y| (1900..=2100).contains(&y))
    {
        return Err("payYear".into());
    }
    if apply {
        validate_hukou(v)?;
    }
    Ok(())
}

/// `citizenId` (GB 11643) and `hukouNo`.
fn validate_hukou(v: &Value) -> Result<(), String> {
    if !text(v, "/citizenId").is_some_and(gb11643_valid) {
        return Err("citizenId".into());
    }
    if text(v, "/hukouNo").is_none() {
        return Err("hukouNo".into());
    }
    Ok(())
}

async fn precheck(State(ctx): State<Ctx>, h: HeaderMap, body: Bytes) -> Response {
    enrol(ctx, "precheck", h, body, true).await
}

async fn apply(State(ctx): State<Ctx>, h: HeaderMap, body: Bytes) -> Response {
    enrol(ctx, "apply", h, body, false).await
}

/// A pre-check (`prereview`) or a one-step apply: both create the one enrolment of a case.
async fn enrol(ctx: Ctx, op: &str, h: HeaderMap, body: Bytes, prereview: bool) -> Response {
    let v = match open(&ctx, &h, &body) {
        Ok(v) => v,
        Err((code, msg)) => return refuse(&ctx, op, code, &msg),
    };
    if let Err(field) = validate_enrol(&v, !prereview) {
        return invalid(&ctx, op, &field);
    }
    let case_id = text(&v, "/sblsh").unwrap_or_default().to_string();
    let b = rule(&ctx, text(&v, "/insuredName").unwrap_or_default());
    if push_fails(&ctx, b, &case_id, KIND, op) {
        return busy();
    }
    let today = fmt(ctx.world.now_wall(), "%Y%m%d");
    let division = text(&v, "/xzqh").unwrap_or("410225").to_string();
    let submitted = ctx.world.submit(
        ctx.dept,
        &case_id,
        KIND,
        b,
        prereview,
        v.clone(),
        |n| format!("YB{today}{}", digits(n, 5)),
        |n| {
            IndexMap::from([(
                "insuredNo".to_string(),
                format!("YB{division}{}", digits(n, 6)),
            )])
        },
    );
    match submitted {
        Submitted::Duplicate(app) => {
            answer(3001, "申办流水号重复", json!({"enrolNo": app.reference}))
        }
        Submitted::New(app) => {
            ctx.world.received(ctx.dept, op, v);
            let enrol_no = app.reference.clone();
            schedule(&ctx, app);
            ok(json!({"enrolNo": enrol_no}))
        }
    }
}

async fn confirm(State(ctx): State<Ctx>, h: HeaderMap, body: Bytes) -> Response {
    const OP: &str = "confirm";
    let v = match open(&ctx, &h, &body) {
        Ok(v) => v,
        Err((code, msg)) => return refuse(&ctx, OP, code, &msg),
    };
    if let Err(p) = require(&v, &["/enrolNo", "/sblsh", "/citizenId", "/hukouNo"]) {
        return invalid(&ctx, OP, p.trim_start_matches('/'));
    }
    if let Err(field) = validate_hukou(&v) {
        return invalid(&ctx, OP, &field);
    }
    let enrol_no = text(&v, "/enrolNo").unwrap_or_default();
    let Some(app) = ctx.world.find_ref(ctx.dept, enrol_no) else {
        return refuse(&ctx, OP, 4004, "enrolNo 不存在");
    };
    if text(&v, "/sblsh") != Some(app.case_id.as_str()) {
        return invalid(&ctx, OP, "sblsh (与 enrolNo 不符)");
    }
    if !app.timeline.prereview {
        return invalid(&ctx, OP, "enrolNo (不是预审登记)");
    }
    if app.timeline.follow_up.is_some() {
        // A repeated confirm: success, nothing changes.
        return ok(json!({"enrolNo": app.reference}));
    }
    match ctx.world.view(&app).phase {
        Phase::PrecheckFailed => return invalid(&ctx, OP, "enrolNo (预审未通过)"),
        Phase::Withdrawn => return invalid(&ctx, OP, "enrolNo (已撤销)"),
        _ => {}
    }
    if push_fails(&ctx, app.timeline.behaviour, &app.case_id, KIND, OP) {
        return busy();
    }
    let extra = json!({"citizenId": v["citizenId"], "hukouNo": v["hukouNo"]});
    match ctx.world.follow_up(ctx.dept, enrol_no, extra) {
        Ok(app) => {
            ctx.world.received(ctx.dept, OP, v);
            let enrol_no = app.reference.clone();
            schedule(&ctx, app);
            ok(json!({"enrolNo": enrol_no}))
        }
        Err(Refusal::NotPreReview) => invalid(&ctx, OP, "enrolNo (不是预审登记)"),
        Err(_) => refuse(&ctx, OP, 4004, "enrolNo 不存在"),
    }
}

fn state(phase: &Phase) -> &'static str {
    match phase {
        Phase::Received => "RECEIVED",
        Phase::PrecheckPassed => "PRECHECK_PASSED",
        Phase::PrecheckFailed => "PRECHECK_FAILED",
        Phase::Accepted => "ACCEPTED",
        Phase::Rejected => "REJECTED",
        Phase::Approved => "DONE",
        Phase::Denied => "FAILED",
        Phase::Withdrawn => "CANCELLED",
    }
}

/// The enrolment as the query (`with_sblsh` false) and the callback show it.
fn record(app: &App, view: &View, with_sblsh: bool) -> Value {
    let t = |t: DateTime<FixedOffset>| fmt(t, "%Y-%m-%d %H:%M:%S");
    let reason = match view.phase {
        Phase::PrecheckFailed | Phase::Rejected => json!(REJECT_REASON),
        Phase::Denied => json!(DENY_REASON),
        Phase::Withdrawn => json!(text(&app.data, "/cancelReason").unwrap_or("申请人撤销")),
        _ => Value::Null,
    };
    let insured = match view.phase {
        Phase::Approved => json!(app.results["insuredNo"]),
        _ => Value::Null,
    };
    let finish = if view.phase.is_final() {
        json!(t(view.phase_at))
    } else {
        Value::Null
    };
    let mut r = Map::new();
    r.insert("enrolNo".into(), json!(app.reference));
    if with_sblsh {
        r.insert("sblsh".into(), json!(app.case_id));
    }
    r.insert("state".into(), json!(state(&view.phase)));
    r.insert("reason".into(), reason);
    r.insert("insuredNo".into(), insured);
    r.insert("acceptTime".into(), json!(view.accepted_at.map(t)));
    r.insert("finishTime".into(), finish);
    Value::Object(r)
}

async fn query(State(ctx): State<Ctx>, h: HeaderMap, body: Bytes) -> Response {
    const OP: &str = "query";
    let v = match open(&ctx, &h, &body) {
        Ok(v) => v,
        Err((code, msg)) => return refuse(&ctx, OP, code, &msg),
    };
    ctx.world.count(ctx.dept, |s| s.queries += 1);
    let Some(sblsh) = text(&v, "/sblsh") else {
        return invalid(&ctx, OP, "sblsh");
    };
    match ctx.world.find(ctx.dept, sblsh, KIND) {
        Some(app) => ok(record(&app, &ctx.world.view(&app), false)),
        None => answer(4004, "未找到参保登记", Value::Null),
    }
}

async fn cancel(State(ctx): State<Ctx>, h: HeaderMap, body: Bytes) -> Response {
    const OP: &str = "cancel";
    let v = match open(&ctx, &h, &body) {
        Ok(v) => v,
        Err((code, msg)) => return refuse(&ctx, OP, code, &msg),
    };
    if let Err(p) = require(&v, &["/enrolNo", "/reason"]) {
        return invalid(&ctx, OP, p.trim_start_matches('/'));
    }
    let enrol_no = text(&v, "/enrolNo").unwrap_or_default();
    let Some(app) = ctx.world.find_ref(ctx.dept, enrol_no) else {
        return answer(4004, "enrolNo 不存在", Value::Null);
    };
    if ctx.world.view(&app).phase == Phase::Withdrawn {
        // Already cancelled: success, nothing changes.
        return ok(Value::Null);
    }
    match ctx.world.withdraw(ctx.dept, enrol_no) {
        Ok(_) => {
            let mut extra = Map::new();
            extra.insert("cancelReason".into(), v["reason"].clone());
            let app = ctx.world.annotate(ctx.dept, enrol_no, extra);
            ctx.world.received(ctx.dept, OP, v);
            if let Some(app) = app {
                schedule(&ctx, app);
            }
            ok(Value::Null)
        }
        Err(Refusal::Finished) => answer(2001, "已办结", Value::Null),
        Err(_) => answer(4004, "enrolNo 不存在", Value::Null),
    }
}

/// Calls back on every state change, in the envelope, as `medicare-system`.
fn schedule(ctx: &Ctx, app: App) {
    let (key, secret) = (ctx.cred("KEY"), ctx.cred("SECRET"));
    let render: callback::Render = Arc::new(move |app, view| {
        let business = record(app, view, true);
        let env = seal(CALLBACK_APP_ID, &key, &secret, &business)?;
        Some(Outgoing {
            headers: vec![(
                "Content-Type".into(),
                "application/json; charset=UTF-8".into(),
            )],
            body: serde_json::to_vec(&env).ok()?,
        })
    });
    let accepts: callback::Accepts = Arc::new(|status, body| {
        status == 200
            && serde_json::from_slice::<Value>(body)
                .is_ok_and(|v| v.get("code").and_then(Value::as_i64) == Some(0))
    });
    callback::schedule(
        ctx.world.clone(),
        ctx.http.clone(),
        ctx.callbacks(),
        app,
        render,
        accepts,
    );
}
