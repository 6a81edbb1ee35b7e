//! 县卫健委 出生医学证明管理系统 v2.3 (`health`): REST, JSON, HMAC-SHA256 signed headers,
//! results by signed callback.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, Mac};
use indexmap::IndexMap;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::common::{fmt, header, is_ethnicity, push_fails, require, rule, text};
use crate::sim::Ctx;
use crate::sim::behaviour::{DENY_REASON, Phase, REJECT_REASON};
use crate::sim::callback::{self, Outgoing};
use crate::sim::results::digits;
use crate::sim::world::{App, Refusal, Submitted, View};

const KIND: &str = "birth-cert";

pub fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/api/v1/birth-cert/applications", post(submit).get(query))
        .route(
            "/api/v1/birth-cert/applications/{apply_no}/withdraw",
            post(withdraw),
        )
        .with_state(ctx)
}

fn answer(code: &str, msg: &str, data: Value) -> Response {
    axum::Json(json!({"code": code, "msg": msg, "data": data})).into_response()
}

fn sign(secret: &str, app_id: &str, ts: &str, nonce: &str, body: &[u8]) -> String {
    let msg = format!(
        "{app_id}\n{ts}\n{nonce}\n{}",
        hex::encode(Sha256::digest(body))
    );
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(msg.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Checks the four signed headers; `Some` is the refusal to answer.
fn authenticate(ctx: &Ctx, op: &str, h: &HeaderMap, body: &[u8]) -> Option<Response> {
    let app_id = header(h, "x-app-id");
    let ts = header(h, "x-timestamp");
    let nonce = header(h, "x-nonce");
    let sig = header(h, "x-signature");
    let refuse = |code: &str, msg: &str| {
        ctx.world.violation(ctx.dept, op, msg);
        Some(answer(code, msg, Value::Null))
    };
    if app_id != ctx.cred("APP_ID") || sig != sign(&ctx.cred("SECRET"), app_id, ts, nonce, body) {
        return refuse("1001", "signature invalid");
    }
    let Ok(ms) = ts.parse::<i64>() else {
        return refuse("1002", "timestamp invalid");
    };
    if (chrono::Utc::now().timestamp_millis() - ms).abs() > 300_000 {
        return refuse("1002", "timestamp expired");
    }
    if !(16..=64).contains(&nonce.len()) || !nonce.chars().all(|c| c.is_ascii_hexdigit()) {
        return refuse("1002", "nonce invalid");
    }
    if !ctx
        .world
        .fresh_nonce(ctx.dept, nonce, Duration::from_secs(600))
    {
        return refuse("1002", "nonce reused");
    }
    None
}

fn id_type_ok(v: &Value, p: &str) -> bool {
    matches!(text(v, p), Some("01" | "02" | "03" | "04" | "99"))
}

/// Field validation of a submission; `Err(field)` names the first wrong field.
fn validate(v: &Value) -> Result<(), String> {
    require(
        v,
        &[
            "/sblsh",
            "/applyTime",
            "/baby/name",
            "/baby/birthTime",
            "/baby/hospital",
            "/mother/name",
            "/mother/idNo",
            "/contactPhone",
        ],
    )
    .map_err(|p| p.trim_start_matches('/').replace('/', "."))?;
    if text(v, "/sxbm") != Some("WJ-CSYXZM-01") {
        return Err("sxbm".into());
    }
    if chrono::NaiveDateTime::parse_from_str(
        text(v, "/applyTime").unwrap_or(""),
        "%Y-%m-%d %H:%M:%S",
    )
    .is_err()
    {
        return Err("applyTime".into());
    }
    if !matches!(text(v, "/baby/sex"), Some("M" | "F")) {
        return Err("baby.sex".into());
    }
    if chrono::NaiveDateTime::parse_from_str(
        text(v, "/baby/birthTime").unwrap_or(""),
        "%Y-%m-%d %H:%M",
    )
    .is_err()
    {
        return Err("baby.birthTime".into());
    }
    if !v.pointer("/baby/weight").is_some_and(Value::is_u64) {
        return Err("baby.weight".into());
    }
    if !text(v, "/baby/nation").is_some_and(is_ethnicity) {
        return Err("baby.nation".into());
    }
    if !id_type_ok(v, "/mother/idType") {
        return Err("mother.idType".into());
    }
    match v.get("father") {
        None => {}
        Some(f) if f.is_object() => {
            require(f, &["/name", "/idNo"])
                .map_err(|p| format!("father{}", p.replace('/', ".")))?;
            if !id_type_ok(f, "/idType") {
                return Err("father.idType".into());
            }
        }
        Some(_) => return Err("father".into()),
    }
    let Some(att) = v.get("attachments").and_then(Value::as_array) else {
        return Err("attachments".into());
    };
    for (i, a) in att.iter().enumerate() {
        if text(a, "/name").is_none() {
            return Err(format!("attachments[{i}].name"));
        }
    }
    Ok(())
}

async fn submit(State(ctx): State<Ctx>, h: HeaderMap, body: Bytes) -> Response {
    const OP: &str = "submit";
    if let Some(r) = authenticate(&ctx, OP, &h, &body) {
        return r;
    }
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            ctx.world.violation(ctx.dept, OP, "body is not JSON");
            return answer("2001", "body is not JSON", Value::Null);
        }
    };
    if let Err(field) = validate(&v) {
        ctx.world
            .violation(ctx.dept, OP, &format!("{field} invalid"));
        return answer("2001", &format!("{field} invalid"), Value::Null);
    }
    let case_id = text(&v, "/sblsh").unwrap_or_default().to_string();
    let b = rule(&ctx, text(&v, "/baby/name").unwrap_or_default());
    if push_fails(&ctx, b, &case_id, KIND, OP) {
        return (StatusCode::SERVICE_UNAVAILABLE, "service unavailable").into_response();
    }
    let today = fmt(ctx.world.now_wall(), "%Y%m%d");
    let submitted = ctx.world.submit(
        ctx.dept,
        &case_id,
        KIND,
        b,
        false,
        v.clone(),
        |n| format!("CS{today}{}", digits(n, 7)),
        |n| IndexMap::from([("certNo".to_string(), format!("Q410{}", digits(n, 6)))]),
    );
    match submitted {
        Submitted::Duplicate(app) => {
            answer("3001", "duplicate sblsh", json!({"applyNo": app.reference}))
        }
        Submitted::New(app) => {
            ctx.world.received(ctx.dept, OP, v);
            schedule(&ctx, app.clone());
            answer("0", "success", json!({"applyNo": app.reference}))
        }
    }
}

fn status(phase: &Phase) -> &'static str {
    match phase {
        Phase::Accepted => "ACCEPTED",
        Phase::Rejected | Phase::PrecheckFailed => "REJECTED",
        Phase::Approved => "ISSUED",
        Phase::Denied => "REFUSED",
        Phase::Withdrawn => "WITHDRAWN",
        Phase::Received | Phase::PrecheckPassed => "RECEIVED",
    }
}

/// The application as the query and the callback show it.
fn record(app: &App, view: &View) -> Value {
    let t = |t: chrono::DateTime<chrono::FixedOffset>| fmt(t, "%Y-%m-%d %H:%M:%S");
    let (reason, cert, finish) = match view.phase {
        Phase::Rejected | Phase::PrecheckFailed => {
            (json!(REJECT_REASON), Value::Null, json!(t(view.phase_at)))
        }
        Phase::Denied => (json!(DENY_REASON), Value::Null, json!(t(view.phase_at))),
        Phase::Approved => (
            Value::Null,
            json!(app.results["certNo"]),
            json!(t(view.phase_at)),
        ),
        Phase::Withdrawn => (json!("申请人撤回"), Value::Null, json!(t(view.phase_at))),
        _ => (Value::Null, Value::Null, Value::Null),
    };
    json!({
        "applyNo": app.reference,
        "sblsh": app.case_id,
        "status": status(&view.phase),
        "reason": reason,
        "certNo": cert,
        "acceptTime": view.accepted_at.map(t),
        "finishTime": finish,
    })
}

async fn query(
    State(ctx): State<Ctx>,
    h: HeaderMap,
    Query(q): Query<IndexMap<String, String>>,
) -> Response {
    if let Some(r) = authenticate(&ctx, "query", &h, b"") {
        return r;
    }
    ctx.world.count(ctx.dept, |s| s.queries += 1);
    let Some(sblsh) = q.get("sblsh") else {
        return answer("2001", "sblsh required", Value::Null);
    };
    match ctx.world.find(ctx.dept, sblsh, KIND) {
        Some(app) => answer("0", "success", record(&app, &ctx.world.view(&app))),
        None => answer("4004", "no such application", Value::Null),
    }
}

async fn withdraw(
    State(ctx): State<Ctx>,
    Path(apply_no): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    const OP: &str = "withdraw";
    if let Some(r) = authenticate(&ctx, OP, &h, &body) {
        return r;
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if text(&v, "/reason").is_none() {
        ctx.world.violation(ctx.dept, OP, "reason invalid");
        return answer("2001", "reason invalid", Value::Null);
    }
    match ctx.world.withdraw(ctx.dept, &apply_no) {
        Ok(app) => {
            ctx.world.received(ctx.dept, OP, v);
            schedule(&ctx, app);
            answer("0", "success", Value::Null)
        }
        Err(Refusal::Finished) => answer("4009", "application already finished", Value::Null),
        Err(_) => answer("4004", "no such application", Value::Null),
    }
}

/// Calls back on every status change, signed like a request with `X-App-Id: health-system`.
fn schedule(ctx: &Ctx, app: App) {
    let secret = ctx.cred("SECRET");
    let render: callback::Render = Arc::new(move |app, view| {
        let body = serde_json::to_vec(&record(app, view)).ok()?;
        let ts = chrono::Utc::now().timestamp_millis().to_string();
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let sig = sign(&secret, "health-system", &ts, &nonce, &body);
        Some(Outgoing {
            headers: vec![
                (
                    "Content-Type".into(),
                    "application/json; charset=UTF-8".into(),
                ),
                ("X-App-Id".into(), "health-system".into()),
                ("X-Timestamp".into(), ts),
                ("X-Nonce".into(), nonce),
                ("X-Signature".into(), sig),
            ],
            body,
        })
    });
    let accepts: callback::Accepts = Arc::new(|status, body| {
        status == 200
            && serde_json::from_slice::<Value>(body)
                .is_ok_and(|v| v.get("code").and_then(Value::as_str) == Some("0"))
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
