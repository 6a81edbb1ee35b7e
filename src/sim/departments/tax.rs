//! 县税务局 新办纳税人"套餐式"服务接口 v1 (`tax`): REST, JSON, UTF-8, `X-Api-Key`; not connected
//! (polled, preferably with the batch status query, 30 status calls a minute).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header::RETRY_AFTER};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use indexmap::IndexMap;
use serde_json::{Map, Value, json};

use super::common::{fmt, header, push_fails, rule, text};
use crate::model::time::rfc3339;
use crate::sim::Ctx;
use crate::sim::behaviour::{DENY_REASON, Phase, REJECT_REASON};
use crate::sim::results::digits;
use crate::sim::world::{App, Refusal, Submitted, View};
use crate::validate::ids::gb32100_problem;

const KIND: &str = "tax-registration";
/// Status calls (single, batch, by case) allowed per rolling minute.
pub const STATUS_CALLS_PER_MINUTE: usize = 30;
const WINDOW: Duration = Duration::from_secs(60);
/// The tax office of the reference county.
pub const TAX_OFFICE: &str = "国家税务总局兰考县税务局";
const MAX_TICKETS: usize = 100;

/// The router's state: the shared context plus this system's own bookkeeping.
#[derive(Clone)]
struct Tax {
    ctx: Ctx,
    /// When the status calls of the last minute were made (oldest first).
    window: Arc<Mutex<VecDeque<Instant>>>,
    /// The reason given when a ticket was cancelled.
    cancel_reasons: Arc<Mutex<HashMap<String, String>>>,
}

pub fn router(ctx: Ctx) -> Router {
    let state = Tax {
        ctx,
        window: Arc::default(),
        cancel_reasons: Arc::default(),
    };
    Router::new()
        .route("/v1/new-taxpayers", post(submit).get(by_case))
        .route("/v1/new-taxpayers/status-query", post(batch))
        .route("/v1/new-taxpayers/{ticket}", get(by_ticket).delete(cancel))
        .with_state(state)
}

fn json_answer(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

/// 422 with the documented error list.
fn invalid(t: &Tax, op: &str, errors: &[(String, String)]) -> Response {
    let reason = errors
        .iter()
        .map(|(f, m)| format!("{f}: {m}"))
        .collect::<Vec<_>>()
        .join("; ");
    t.ctx.world.violation(t.ctx.dept, op, &reason);
    let list: Vec<Value> = errors
        .iter()
        .map(|(f, m)| json!({"field": f, "message": m}))
        .collect();
    json_answer(StatusCode::UNPROCESSABLE_ENTITY, json!({ "errors": list }))
}

/// `X-Api-Key` must be the configured key; `Some` is the 401 to answer.
fn authenticate(t: &Tax, op: &str, h: &HeaderMap) -> Option<Response> {
    let key = header(h, "x-api-key");
    let want = t.ctx.cred("API_KEY");
    if want.is_empty() || key != want {
        t.ctx.world.violation(t.ctx.dept, op, "wrong X-Api-Key");
        return Some(json_answer(
            StatusCode::UNAUTHORIZED,
            json!({"errors": [{"field": "X-Api-Key", "message": "invalid api key"}]}),
        ));
    }
    None
}

/// Takes one status call from the rolling minute, or answers 429 with `Retry-After` (seconds until
/// the oldest call of the window leaves it).
fn rate_limit(t: &Tax, op: &str) -> Option<Response> {
    if !t.ctx.config.documented_limits {
        return None;
    }
    let now = Instant::now();
    let mut w = t.window.lock().unwrap_or_else(|e| e.into_inner());
    while w
        .front()
        .is_some_and(|at| now.duration_since(*at) >= WINDOW)
    {
        w.pop_front();
    }
    if w.len() >= STATUS_CALLS_PER_MINUTE {
        let oldest = *w.front().expect("window is full");
        let wait = WINDOW.saturating_sub(now.duration_since(oldest));
        let secs = wait.as_millis().div_ceil(1000).max(1);
        drop(w);
        t.ctx
            .world
            .violation(t.ctx.dept, op, "more than 30 status calls a minute");
        return Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(RETRY_AFTER, secs.to_string())],
                axum::Json(
                    json!({"errors": [{"field": "rate", "message": "30 status calls a minute"}]}),
                ),
            )
                .into_response(),
        );
    }
    w.push_back(now);
    drop(w);
    t.ctx.world.count(t.ctx.dept, |s| s.queries += 1);
    None
}

/// A JSON body in UTF-8 (a declared charset other than UTF-8 is refused).
fn body_json(h: &HeaderMap, body: &[u8]) -> Result<Value, (String, String)> {
    let ct = header(h, "content-type").to_ascii_lowercase();
    if let Some(cs) = ct
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("charset="))
        .next()
    {
        let cs = cs.trim_matches('"');
        if cs != "utf-8" && cs != "utf8" {
            return Err(("body".into(), format!("charset must be UTF-8, not {cs}")));
        }
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ("body".to_string(), "body is not UTF-8".to_string()))?;
    serde_json::from_str(text).map_err(|_| ("body".to_string(), "body is not JSON".to_string()))
}

/// Every problem of a submission, in document order.
fn validate(v: &Value) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    let mut err = |f: &str, m: &str| errors.push((f.to_string(), m.to_string()));
    let Some(obj) = v.as_object() else {
        err("body", "must be a JSON object");
        return errors;
    };
    const FIELDS: &[&str] = &[
        "requestId",
        "uscc",
        "taxpayerName",
        "legalRep",
        "address",
        "accountant",
        "needInvoice",
    ];
    for k in obj.keys() {
        if !FIELDS.contains(&k.as_str()) {
            err(k, "unknown field");
        }
    }
    let required = |v: &Value, p: &str| text(v, p).is_none();
    if required(v, "/requestId") {
        err("requestId", "required");
    }
    match text(v, "/uscc") {
        None => err("uscc", "required"),
        Some(u) => {
            if let Some(problem) = gb32100_problem(u) {
                err("uscc", problem);
            }
        }
    }
    if required(v, "/taxpayerName") {
        err("taxpayerName", "required");
    }
    match v.get("legalRep") {
        Some(Value::Object(lr)) => {
            for k in lr.keys() {
                if k != "name" && k != "idNo" {
                    err(&format!("legalRep.{k}"), "unknown field");
                }
            }
            if required(v, "/legalRep/name") {
                err("legalRep.name", "required");
            }
            if required(v, "/legalRep/idNo") {
                err("legalRep.idNo", "required");
            }
        }
        Some(_) => err("legalRep", "must be an object"),
        None => err("legalRep", "required"),
    }
    if required(v, "/address") {
        err("address", "required");
    }
    match v.get("accountant") {
        None => {}
        Some(Value::Object(a)) => {
            for k in a.keys() {
                if k != "name" && k != "phone" {
                    err(&format!("accountant.{k}"), "unknown field");
                }
            }
            if required(v, "/accountant/name") {
                err("accountant.name", "required");
            }
            if a.contains_key("phone") && required(v, "/accountant/phone") {
                err("accountant.phone", "must be a non-empty string when given");
            }
        }
        Some(_) => err("accountant", "must be an object"),
    }
    match v.get("needInvoice") {
        Some(Value::Bool(_)) => {}
        Some(_) => err("needInvoice", "must be a boolean"),
        None => err("needInvoice", "required"),
    }
    errors
}

async fn submit(State(t): State<Tax>, h: HeaderMap, body: Bytes) -> Response {
    const OP: &str = "submit";
    if let Some(r) = authenticate(&t, OP, &h) {
        return r;
    }
    let v = match body_json(&h, &body) {
        Ok(v) => v,
        Err(e) => return invalid(&t, OP, &[e]),
    };
    let errors = validate(&v);
    if !errors.is_empty() {
        return invalid(&t, OP, &errors);
    }
    let ctx = &t.ctx;
    let case_id = text(&v, "/requestId").unwrap_or_default().to_string();
    let b = rule(ctx, text(&v, "/taxpayerName").unwrap_or_default());
    if push_fails(ctx, b, &case_id, KIND, OP) {
        return (StatusCode::SERVICE_UNAVAILABLE, "service unavailable").into_response();
    }
    let today = fmt(ctx.world.now_wall(), "%Y%m%d");
    let uscc = text(&v, "/uscc").unwrap_or_default().to_string();
    let submitted = ctx.world.submit(
        ctx.dept,
        &case_id,
        KIND,
        b,
        false,
        v.clone(),
        |n| format!("SW{today}{}", digits(n, 6)),
        |_| {
            IndexMap::from([
                ("taxpayerId".to_string(), uscc),
                ("taxOffice".to_string(), TAX_OFFICE.to_string()),
            ])
        },
    );
    match submitted {
        Submitted::Duplicate(app) => {
            json_answer(StatusCode::CONFLICT, json!({"ticket": app.reference}))
        }
        Submitted::New(app) => {
            ctx.world.received(ctx.dept, OP, v);
            json_answer(StatusCode::ACCEPTED, json!({"ticket": app.reference}))
        }
    }
}

fn status(phase: &Phase) -> &'static str {
    match phase {
        Phase::Received | Phase::PrecheckPassed => "RECEIVED",
        Phase::Accepted => "ACCEPTED",
        Phase::Rejected | Phase::PrecheckFailed => "REJECTED",
        Phase::Approved => "COMPLETED",
        Phase::Denied => "REFUSED",
        Phase::Withdrawn => "CANCELLED",
    }
}

/// The status object of the document.
fn record(t: &Tax, app: &App, view: &View) -> Value {
    let reason = match view.phase {
        Phase::Rejected | Phase::PrecheckFailed => json!(REJECT_REASON),
        Phase::Denied => json!(DENY_REASON),
        Phase::Withdrawn => {
            let reasons = t.cancel_reasons.lock().unwrap_or_else(|e| e.into_inner());
            json!(reasons.get(&app.reference).cloned().unwrap_or_default())
        }
        _ => Value::Null,
    };
    let approved = view.phase == Phase::Approved;
    let result = |k: &str| {
        if approved {
            json!(app.results[k])
        } else {
            Value::Null
        }
    };
    json!({
        "ticket": app.reference,
        "requestId": app.case_id,
        "status": status(&view.phase),
        "reason": reason,
        "acceptedAt": view.accepted_at.map(rfc3339),
        "taxpayerId": result("taxpayerId"),
        "taxOffice": result("taxOffice"),
    })
}

fn show(t: &Tax, app: &App) -> Value {
    record(t, app, &t.ctx.world.view(app))
}

fn not_found(what: &str) -> Response {
    json_answer(
        StatusCode::NOT_FOUND,
        json!({"errors": [{"field": what, "message": "not found"}]}),
    )
}

async fn by_ticket(State(t): State<Tax>, Path(ticket): Path<String>, h: HeaderMap) -> Response {
    const OP: &str = "status";
    if let Some(r) = authenticate(&t, OP, &h).or_else(|| rate_limit(&t, OP)) {
        return r;
    }
    match t.ctx.world.find_ref(t.ctx.dept, &ticket) {
        Some(app) => json_answer(StatusCode::OK, show(&t, &app)),
        None => not_found("ticket"),
    }
}

async fn by_case(
    State(t): State<Tax>,
    h: HeaderMap,
    Query(q): Query<IndexMap<String, String>>,
) -> Response {
    const OP: &str = "query";
    if let Some(r) = authenticate(&t, OP, &h).or_else(|| rate_limit(&t, OP)) {
        return r;
    }
    let Some(request_id) = q.get("requestId").filter(|s| !s.is_empty()) else {
        return invalid(&t, OP, &[("requestId".into(), "required".into())]);
    };
    match t.ctx.world.find(t.ctx.dept, request_id, KIND) {
        Some(app) => json_answer(StatusCode::OK, show(&t, &app)),
        None => not_found("requestId"),
    }
}

async fn batch(State(t): State<Tax>, h: HeaderMap, body: Bytes) -> Response {
    const OP: &str = "status-query";
    if let Some(r) = authenticate(&t, OP, &h).or_else(|| rate_limit(&t, OP)) {
        return r;
    }
    let v = match body_json(&h, &body) {
        Ok(v) => v,
        Err(e) => return invalid(&t, OP, &[e]),
    };
    let obj = v.as_object().cloned().unwrap_or_else(Map::new);
    if let Some(k) = obj.keys().find(|k| k.as_str() != "tickets") {
        return invalid(&t, OP, &[(k.clone(), "unknown field".into())]);
    }
    let Some(list) = obj.get("tickets").and_then(Value::as_array) else {
        return invalid(&t, OP, &[("tickets".into(), "required: a list".into())]);
    };
    if list.len() > MAX_TICKETS {
        return invalid(
            &t,
            OP,
            &[("tickets".into(), format!("at most {MAX_TICKETS} tickets"))],
        );
    }
    let mut seen = Vec::new();
    for (i, x) in list.iter().enumerate() {
        match x.as_str().filter(|s| !s.is_empty()) {
            Some(s) => {
                if !seen.contains(&s) {
                    seen.push(s);
                }
            }
            None => {
                return invalid(
                    &t,
                    OP,
                    &[(format!("tickets[{i}]"), "must be a ticket".into())],
                );
            }
        }
    }
    let items: Vec<Value> = seen
        .into_iter()
        .filter_map(|s| t.ctx.world.find_ref(t.ctx.dept, s))
        .map(|app| show(&t, &app))
        .collect();
    json_answer(StatusCode::OK, json!({ "items": items }))
}

async fn cancel(
    State(t): State<Tax>,
    Path(ticket): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    const OP: &str = "withdraw";
    if let Some(r) = authenticate(&t, OP, &h) {
        return r;
    }
    let v = match body_json(&h, &body) {
        Ok(v) => v,
        Err(e) => return invalid(&t, OP, &[e]),
    };
    if let Some(k) = v
        .as_object()
        .and_then(|o| o.keys().find(|k| k.as_str() != "reason"))
    {
        return invalid(&t, OP, &[(k.clone(), "unknown field".into())]);
    }
    let Some(reason) = text(&v, "/reason") else {
        return invalid(&t, OP, &[("reason".into(), "required".into())]);
    };
    let ctx = &t.ctx;
    match ctx.world.withdraw(ctx.dept, &ticket) {
        Ok(app) => {
            t.cancel_reasons
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(app.reference.clone())
                .or_insert_with(|| reason.to_string());
            ctx.world.received(ctx.dept, OP, v.clone());
            StatusCode::NO_CONTENT.into_response()
        }
        Err(Refusal::Finished) => {
            let app = ctx.world.find_ref(ctx.dept, &ticket);
            let st = app.map(|a| show(&t, &a)["status"].clone());
            json_answer(
                StatusCode::CONFLICT,
                json!({"ticket": ticket, "status": st, "errors": [{"field": "ticket", "message": "already finished"}]}),
            )
        }
        Err(_) => not_found("ticket"),
    }
}
