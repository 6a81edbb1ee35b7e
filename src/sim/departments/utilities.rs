//! 供水/供电/供气公司 联合过户接口 (`water`, `power`, `gas`): one interface, three systems. REST,
//! JSON, UTF-8, `X-Api-Key`; answers HTTP 200 `{"code", "msg", "data"}`. `water` and `power` take a
//! pre-review (`stage` `prereview`, completed later), `gas` does not and is slow; `power` calls
//! back with HMAC-SHA256-signed status objects.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use indexmap::IndexMap;
use serde_json::{Value, json};
use sha2::Sha256;

use super::common::{fmt, header, push_fails, rule, text};
use crate::sim::Ctx;
use crate::sim::behaviour::{DENY_REASON, Phase, REJECT_REASON};
use crate::sim::callback::{self, Outgoing};
use crate::sim::results::digits;
use crate::sim::world::{App, Refusal, Submitted, View};
use crate::validate::ids::gb11643_problem;

const KIND: &str = "transfer";

/// Each company's own shapes.
struct Company {
    /// Ticket prefix (`GS2026031800001`).
    ticket: &'static str,
    /// New account numbers: prefix and number of digits (like the companies' existing accounts).
    account: (&'static str, u32),
    prereview: bool,
    connected: bool,
}

fn company(dept: &str) -> Company {
    match dept {
        "water" => Company {
            ticket: "GS",
            account: ("SW", 7),
            prereview: true,
            connected: false,
        },
        "power" => Company {
            ticket: "GD",
            account: ("66", 8),
            prereview: true,
            connected: true,
        },
        _ => Company {
            ticket: "RQ",
            account: ("RQ", 6),
            prereview: false,
            connected: false,
        },
    }
}

pub fn router(ctx: Ctx) -> Router {
    let slow = ctx.dept == "gas";
    let r = Router::new()
        .route("/api/transfer", post(transfer).get(by_order))
        .route("/api/transfer/{ticket}", get(by_ticket))
        .route("/api/transfer/{ticket}/complete", post(complete))
        .route("/api/transfer/{ticket}/cancel", post(cancel))
        .with_state(ctx.clone());
    if slow {
        r.layer(middleware::from_fn_with_state(ctx, slowly))
    } else {
        r
    }
}

/// The gas company's system: every answer takes a random time up to `gas_delay_max`.
async fn slowly(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    let max = ctx.config.gas_delay_max.as_millis() as u64;
    if max > 0 {
        let ms = rand::random_range(0..=max);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    next.run(req).await
}

fn answer(code: u32, msg: &str, data: Value) -> Response {
    axum::Json(json!({"code": code, "msg": msg, "data": data})).into_response()
}

/// Code 2 naming the field (kept as a violation).
fn invalid(ctx: &Ctx, op: &str, msg: &str) -> Response {
    ctx.world.violation(ctx.dept, op, msg);
    answer(2, msg, Value::Null)
}

fn authenticate(ctx: &Ctx, op: &str, h: &HeaderMap) -> Option<Response> {
    let want = ctx.cred("API_KEY");
    if want.is_empty() || header(h, "x-api-key") != want {
        ctx.world.violation(ctx.dept, op, "wrong X-Api-Key");
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"code": 401, "msg": "invalid X-Api-Key", "data": null})),
            )
                .into_response(),
        );
    }
    None
}

/// A JSON object in UTF-8; `Err` is the message for code 2.
fn body_json(h: &HeaderMap, body: &[u8]) -> Result<Value, String> {
    let ct = header(h, "content-type").to_ascii_lowercase();
    if let Some(cs) = ct
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("charset="))
        .next()
    {
        let cs = cs.trim_matches('"');
        if cs != "utf-8" && cs != "utf8" {
            return Err(format!("charset must be UTF-8, not {cs}"));
        }
    }
    let text = std::str::from_utf8(body).map_err(|_| "body is not UTF-8".to_string())?;
    let v: Value = serde_json::from_str(text).map_err(|_| "body is not JSON".to_string())?;
    if !v.is_object() {
        return Err("body must be a JSON object".into());
    }
    Ok(v)
}

/// Only `allowed` keys in the object at `pointer` (`prefix` names it in the message).
fn only(v: &Value, pointer: &str, prefix: &str, allowed: &[&str]) -> Result<(), String> {
    if let Some(o) = v.pointer(pointer).and_then(Value::as_object)
        && let Some(k) = o.keys().find(|k| !allowed.contains(&k.as_str()))
    {
        return Err(format!("{prefix}{k}: unknown field"));
    }
    Ok(())
}

fn need(v: &Value, pointer: &str) -> Result<(), String> {
    if text(v, pointer).is_none() {
        return Err(format!(
            "{}: required",
            pointer.trim_start_matches('/').replace('/', ".")
        ));
    }
    Ok(())
}

/// Checks a transfer; `Err` is the `msg` naming the field.
fn validate(dept: &str, v: &Value) -> Result<(), String> {
    only(
        v,
        "",
        "",
        &[
            "orderNo",
            "stage",
            "address",
            "oldAccount",
            "newOwner",
            "oldOwner",
            "certificateNo",
        ],
    )?;
    need(v, "/orderNo")?;
    let stage = text(v, "/stage");
    match stage {
        Some("full") => {}
        Some("prereview") if company(dept).prereview => {}
        Some("prereview") => return Err("stage: prereview not supported, use full".into()),
        Some(_) => return Err("stage: must be prereview or full".into()),
        None => return Err("stage: required".into()),
    }
    need(v, "/address")?;
    if v.get("oldAccount").is_some() && text(v, "/oldAccount").is_none() {
        return Err("oldAccount: must be a non-empty string when given".into());
    }
    for owner in ["newOwner", "oldOwner"] {
        if !v.get(owner).is_some_and(Value::is_object) {
            return Err(format!("{owner}: required (an object)"));
        }
    }
    only(v, "/newOwner", "newOwner.", &["name", "idNo", "phone"])?;
    need(v, "/newOwner/name")?;
    need(v, "/newOwner/idNo")?;
    if let Some(p) = gb11643_problem(text(v, "/newOwner/idNo").unwrap_or_default()) {
        return Err(format!("newOwner.idNo: {p}"));
    }
    need(v, "/newOwner/phone")?;
    only(v, "/oldOwner", "oldOwner.", &["name", "idNo"])?;
    need(v, "/oldOwner/name")?;
    need(v, "/oldOwner/idNo")?;
    match stage {
        Some("full") => need(v, "/certificateNo")?,
        _ if v.get("certificateNo").is_some() => {
            return Err("certificateNo: must be absent for stage prereview".into());
        }
        _ => {}
    }
    Ok(())
}

async fn transfer(State(ctx): State<Ctx>, h: HeaderMap, body: Bytes) -> Response {
    const OP: &str = "submit";
    if let Some(r) = authenticate(&ctx, OP, &h) {
        return r;
    }
    let v = match body_json(&h, &body) {
        Ok(v) => v,
        Err(m) => return invalid(&ctx, OP, &m),
    };
    if let Err(m) = validate(ctx.dept, &v) {
        return invalid(&ctx, OP, &m);
    }
    let prereview = text(&v, "/stage") == Some("prereview");
    let order_no = text(&v, "/orderNo").unwrap_or_default().to_string();
    let b = rule(&ctx, text(&v, "/newOwner/name").unwrap_or_default());
    if push_fails(&ctx, b, &order_no, KIND, OP) {
        return (StatusCode::SERVICE_UNAVAILABLE, "service unavailable").into_response();
    }
    let c = company(ctx.dept);
    let today = fmt(ctx.world.now_wall(), "%Y%m%d");
    let submitted = ctx.world.submit(
        ctx.dept,
        &order_no,
        KIND,
        b,
        prereview,
        v.clone(),
        |n| format!("{}{today}{}", c.ticket, digits(n, 5)),
        |n| {
            let (prefix, width) = c.account;
            IndexMap::from([(
                "accountNo".to_string(),
                format!("{prefix}{}", digits(n, width)),
            )])
        },
    );
    match submitted {
        Submitted::Duplicate(app) => {
            answer(1, "duplicate orderNo", json!({"ticket": app.reference}))
        }
        Submitted::New(app) => {
            ctx.world.received(ctx.dept, OP, v);
            let ticket = app.reference.clone();
            schedule(&ctx, app);
            answer(0, "ok", json!({ "ticket": ticket }))
        }
    }
}

async fn complete(
    State(ctx): State<Ctx>,
    Path(ticket): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    const OP: &str = "complete";
    if let Some(r) = authenticate(&ctx, OP, &h) {
        return r;
    }
    let v = match body_json(&h, &body) {
        Ok(v) => v,
        Err(m) => return invalid(&ctx, OP, &m),
    };
    let checked = only(&v, "", "", &["certificateNo", "registeredAt"])
        .and_then(|_| need(&v, "/certificateNo"))
        .and_then(|_| need(&v, "/registeredAt"))
        .and_then(|_| {
            chrono::NaiveDateTime::parse_from_str(
                text(&v, "/registeredAt").unwrap_or_default(),
                "%Y-%m-%d %H:%M:%S",
            )
            .map(|_| ())
            .map_err(|_| "registeredAt: must be yyyy-MM-dd HH:mm:ss".to_string())
        });
    if let Err(m) = checked {
        return invalid(&ctx, OP, &m);
    }
    let Some(app) = ctx.world.find_ref(ctx.dept, &ticket) else {
        return answer(4, "no such ticket", Value::Null);
    };
    if !app.timeline.prereview {
        return invalid(&ctx, OP, "ticket: not a prereview ticket");
    }
    if app.timeline.follow_up.is_none() && ctx.world.view(&app).phase.is_final() {
        return invalid(&ctx, OP, "已办结");
    }
    let name = text(&app.data, "/newOwner/name").unwrap_or_default();
    let b = rule(&ctx, name);
    if push_fails(&ctx, b, &app.case_id, KIND, OP) {
        return (StatusCode::SERVICE_UNAVAILABLE, "service unavailable").into_response();
    }
    let first = app.timeline.follow_up.is_none();
    match ctx.world.follow_up(ctx.dept, &ticket, v.clone()) {
        Ok(app) => {
            if first {
                ctx.world.received(ctx.dept, OP, v);
                schedule(&ctx, app.clone());
            }
            answer(0, "ok", json!({"ticket": app.reference}))
        }
        Err(Refusal::NotPreReview) => invalid(&ctx, OP, "ticket: not a prereview ticket"),
        Err(Refusal::Finished) => invalid(&ctx, OP, "已办结"),
        Err(Refusal::NotFound) => answer(4, "no such ticket", Value::Null),
    }
}

fn status(phase: &Phase) -> &'static str {
    match phase {
        Phase::Received => "RECEIVED",
        Phase::PrecheckPassed => "PRECHECKED",
        Phase::Accepted => "ACCEPTED",
        Phase::Rejected | Phase::PrecheckFailed => "REJECTED",
        Phase::Approved => "DONE",
        Phase::Denied => "FAILED",
        Phase::Withdrawn => "CANCELLED",
    }
}

/// The status object of the document (times `yyyy-MM-dd HH:mm:ss`).
fn record(app: &App, view: &View) -> Value {
    let t = |t: chrono::DateTime<chrono::FixedOffset>| fmt(t, "%Y-%m-%d %H:%M:%S");
    let reason = match view.phase {
        Phase::Rejected | Phase::PrecheckFailed => json!(REJECT_REASON),
        Phase::Denied => json!(DENY_REASON),
        Phase::Withdrawn => json!("申请人撤回"),
        _ => Value::Null,
    };
    let done = matches!(
        view.phase,
        Phase::Approved | Phase::Denied | Phase::Rejected | Phase::PrecheckFailed
    );
    json!({
        "ticket": app.reference,
        "orderNo": app.case_id,
        "status": status(&view.phase),
        "reason": reason,
        "accountNo": (view.phase == Phase::Approved).then(|| app.results["accountNo"].clone()),
        "acceptedAt": view.accepted_at.map(t),
        "doneAt": done.then(|| t(view.phase_at)),
    })
}

fn show(ctx: &Ctx, app: Option<App>) -> Response {
    match app {
        Some(app) => answer(0, "ok", record(&app, &ctx.world.view(&app))),
        None => answer(4, "not found", Value::Null),
    }
}

async fn by_ticket(State(ctx): State<Ctx>, Path(ticket): Path<String>, h: HeaderMap) -> Response {
    if let Some(r) = authenticate(&ctx, "query", &h) {
        return r;
    }
    ctx.world.count(ctx.dept, |s| s.queries += 1);
    show(&ctx, ctx.world.find_ref(ctx.dept, &ticket))
}

async fn by_order(
    State(ctx): State<Ctx>,
    h: HeaderMap,
    Query(q): Query<IndexMap<String, String>>,
) -> Response {
    const OP: &str = "query";
    if let Some(r) = authenticate(&ctx, OP, &h) {
        return r;
    }
    ctx.world.count(ctx.dept, |s| s.queries += 1);
    let Some(order_no) = q.get("orderNo").filter(|s| !s.is_empty()) else {
        return invalid(&ctx, OP, "orderNo: required");
    };
    show(&ctx, ctx.world.find(ctx.dept, order_no, KIND))
}

async fn cancel(
    State(ctx): State<Ctx>,
    Path(ticket): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    const OP: &str = "withdraw";
    if let Some(r) = authenticate(&ctx, OP, &h) {
        return r;
    }
    let v = match body_json(&h, &body) {
        Ok(v) => v,
        Err(m) => return invalid(&ctx, OP, &m),
    };
    if let Err(m) = only(&v, "", "", &["reason"]).and_then(|_| need(&v, "/reason")) {
        return invalid(&ctx, OP, &m);
    }
    match ctx.world.withdraw(ctx.dept, &ticket) {
        Ok(app) => {
            ctx.world.received(ctx.dept, OP, v);
            schedule(&ctx, app);
            answer(0, "ok", Value::Null)
        }
        Err(Refusal::Finished) => answer(2, "已办结", Value::Null),
        Err(_) => answer(4, "no such ticket", Value::Null),
    }
}

/// `power` calls back on every status change: the status object, `X-Signature` = lowercase hex
/// HMAC-SHA256 of the raw body keyed with the callback secret.
fn schedule(ctx: &Ctx, app: App) {
    if !company(ctx.dept).connected {
        return;
    }
    let secret = ctx.cred("CALLBACK_SECRET");
    let render: callback::Render = Arc::new(move |app, view| {
        let body = serde_json::to_vec(&record(app, view)).ok()?;
        Some(Outgoing {
            headers: vec![
                (
                    "Content-Type".into(),
                    "application/json; charset=UTF-8".into(),
                ),
                ("X-Signature".into(), sign(&secret, &body)),
            ],
            body,
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

/// Lowercase hex HMAC-SHA256 of `body`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}
