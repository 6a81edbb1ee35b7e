//! 县市场监督管理局 企业登记/食品经营许可系统 开放平台 API v2 (`amr`): REST, JSON, UTF-8, OAuth 2.0
//! client credentials; establishments, food permits (pre-review then licence supplement, or one
//! step), tasks; results by callback with the callback bearer token.
//!
//! Test-environment behaviour: tokens are announced with `expires_in` 7200 but expire after
//! [`TOKEN_LIFETIME`] (60 s); more than [`RATE_LIMIT`] authenticated API calls within one second are
//! answered HTTP 429 with `Retry-After: 1`. Unknown task ids are answered HTTP 404 `NOT_FOUND`; a
//! licence supplement for a task that is not a food-permit pre-review is answered HTTP 400
//! `VALIDATION_FAILED` naming `taskId`, one for a finished task HTTP 409 `ALREADY_FINISHED`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use indexmap::IndexMap;
use serde_json::{Value, json};

use super::common::{fmt, header, push_fails, require, rule, text};
use crate::model::time::rfc3339;
use crate::sim::Ctx;
use crate::sim::behaviour::{Behaviour, DENY_REASON, Phase, REJECT_REASON};
use crate::sim::callback::{self, Outgoing};
use crate::sim::results::{digits, uscc};
use crate::sim::world::{App, Refusal, Submitted, View};
use crate::validate::ids::{gb11643_valid, gb32100_valid};

/// How long an issued token really lives (the test environment's 60 s).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// What the token answer announces.
const ANNOUNCED_EXPIRES_IN: u64 = 7200;
/// Prefix of this system's access tokens.
const TOKEN_PREFIX: &str = "amr.";
/// Authenticated API calls allowed within any one second.
pub const RATE_LIMIT: usize = 20;

const ESTABLISHMENT: &str = "establishment";
const FOOD_PERMIT: &str = "food-permit";

#[derive(Clone)]
struct Amr {
    ctx: Ctx,
    /// When recent authenticated API calls arrived (the rate limit's window).
    calls: Arc<Mutex<VecDeque<Instant>>>,
}

pub fn router(ctx: Ctx) -> Router {
    let state = Amr {
        ctx,
        calls: Arc::new(Mutex::new(VecDeque::new())),
    };
    Router::new()
        .route("/oauth/token", post(token))
        .route("/api/v2/establishments", post(establishment))
        .route("/api/v2/food-permits", post(food_permit))
        .route("/api/v2/food-permits/prereview", post(food_prereview))
        .route("/api/v2/food-permits/{task_id}/licence", post(licence))
        .route("/api/v2/tasks", get(tasks))
        .route("/api/v2/tasks/{task_id}", get(task))
        .route("/api/v2/tasks/{task_id}/withdraw", post(withdraw))
        .with_state(state)
}

fn success(status: StatusCode, data: Value) -> Response {
    (status, axum::Json(json!({"success": true, "data": data}))).into_response()
}

fn failure(status: StatusCode, code: &str, msg: &str, data: Option<Value>) -> Response {
    let mut body = json!({"success": false, "errorCode": code, "errorMsg": msg});
    if let Some(d) = data {
        body["data"] = d;
    }
    (status, axum::Json(body)).into_response()
}

/// HTTP 400 `VALIDATION_FAILED` naming the field, kept for `/_sim/violations`.
fn invalid(ctx: &Ctx, op: &str, field: &str) -> Response {
    let msg = format!("{field} invalid");
    ctx.world.violation(ctx.dept, op, &msg);
    failure(StatusCode::BAD_REQUEST, "VALIDATION_FAILED", &msg, None)
}

fn not_found(task_id: &str) -> Response {
    failure(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        &format!("task {task_id} not found"),
        None,
    )
}

/// `失联`/`抖动`: HTTP 503.
fn unavailable() -> Response {
    failure(
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
        "service temporarily unavailable",
        None,
    )
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (status, axum::Json(json!({"error": error}))).into_response()
}

/// `POST /oauth/token`: client credentials in a form.
async fn token(State(s): State<Amr>, h: HeaderMap, body: Bytes) -> Response {
    let ctx = &s.ctx;
    let refuse = |status, error: &str| {
        ctx.world.violation(ctx.dept, "token", error);
        oauth_error(status, error)
    };
    let ct = header(&h, "content-type").to_ascii_lowercase();
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request");
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request");
    };
    let form = crate::codec::form::parse(text);
    let field = |k: &str| form.get(k).and_then(Value::as_str).unwrap_or_default();
    if field("grant_type").is_empty() {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request");
    }
    if field("grant_type") != "client_credentials" {
        return refuse(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let (id, secret) = (ctx.cred("CLIENT_ID"), ctx.cred("CLIENT_SECRET"));
    if id.is_empty() || field("client_id") != id || field("client_secret") != secret {
        return refuse(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(rand::random::<[u8; 20]>()));
    ctx.world.issue_token(&token, TOKEN_LIFETIME);
    axum::Json(json!({"access_token": token, "token_type": "Bearer",
        "expires_in": ANNOUNCED_EXPIRES_IN}))
    .into_response()
}

/// The bearer token, then the rate limit; `Some` is the refusal.
fn gate(s: &Amr, op: &str, h: &HeaderMap) -> Option<Response> {
    let ctx = &s.ctx;
    let auth = header(h, "authorization");
    let token = auth.strip_prefix("Bearer ").unwrap_or_default().trim();
    if !token.starts_with(TOKEN_PREFIX) || !ctx.world.token_valid(token) {
        ctx.world.violation(ctx.dept, op, "invalid_token");
        let mut r = oauth_error(StatusCode::UNAUTHORIZED, "invalid_token");
        r.headers_mut().insert(
            "www-authenticate",
            axum::http::HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        return Some(r);
    }
    let now = Instant::now();
    let mut calls = s.calls.lock().unwrap_or_else(|e| e.into_inner());
    while calls
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
    {
        calls.pop_front();
    }
    if ctx.config.documented_limits && calls.len() >= RATE_LIMIT {
        drop(calls);
        ctx.world.violation(ctx.dept, op, "rate limited");
        let mut r = failure(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            &format!("more than {RATE_LIMIT} calls a second"),
            None,
        );
        r.headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        return Some(r);
    }
    calls.push_back(now);
    None
}

/// A JSON object body in UTF-8; `Err` is the refusal.
fn body_json(ctx: &Ctx, op: &str, h: &HeaderMap, body: &[u8]) -> Result<Value, Box<Response>> {
    let ct = header(h, "content-type").to_ascii_lowercase();
    let mut parts = ct.split(';').map(str::trim);
    if parts.next() != Some("application/json") {
        return Err(Box::new(invalid(
            ctx,
            op,
            "Content-Type (application/json)",
        )));
    }
    let foreign = parts
        .filter_map(|p| p.strip_prefix("charset="))
        .any(|c| !matches!(c.trim_matches('"'), "utf-8" | "utf8"));
    if foreign {
        return Err(Box::new(invalid(ctx, op, "charset (UTF-8 only)")));
    }
    std::str::from_utf8(body)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(t).ok())
        .filter(Value::is_object)
        .ok_or_else(|| Box::new(invalid(ctx, op, "body (not UTF-8 JSON)")))
}

fn cert_type_ok(t: &str) -> bool {
    matches!(t, "10" | "20" | "30" | "31" | "13")
}

fn phone_ok(s: &str) -> bool {
    (5..=20).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_digit() || c == '-' || c == '+')
}

/// A share percentage: a string with exactly two decimals, at most 100.
fn ratio_ok(s: &str) -> bool {
    let Some((int, dec)) = s.split_once('.') else {
        return false;
    };
    !int.is_empty()
        && int.len() <= 3
        && int.chars().all(|c| c.is_ascii_digit())
        && dec.len() == 2
        && dec.chars().all(|c| c.is_ascii_digit())
        && s.parse::<f64>().is_ok_and(|r| (0.0..=100.0).contains(&r))
}

fn number_ok(v: &Value, field: &str) -> bool {
    v.get(field)
        .and_then(Value::as_f64)
        .is_some_and(|n| n.is_finite() && n >= 0.0)
}

/// A person block (`legalRep`, an investor): name, certType, certNo (GB 11643 for `10`).
fn validate_person(p: &Value, at: &str, phone: bool) -> Result<(), String> {
    if !p.is_object() {
        return Err(at.to_string());
    }
    let mut fields = vec!["/name", "/certType", "/certNo"];
    if phone {
        fields.push("/phone");
    }
    require(p, &fields).map_err(|f| format!("{at}.{}", &f[1..]))?;
    let t = text(p, "/certType").unwrap_or_default();
    if !cert_type_ok(t) {
        return Err(format!("{at}.certType"));
    }
    if t == "10" && !text(p, "/certNo").is_some_and(gb11643_valid) {
        return Err(format!("{at}.certNo"));
    }
    if phone && !text(p, "/phone").is_some_and(phone_ok) {
        return Err(format!("{at}.phone"));
    }
    Ok(())
}

fn validate_establishment(v: &Value) -> Result<(), String> {
    require(v, &["/bizNo", "/entName", "/entType"]).map_err(|f| f[1..].to_string())?;
    let ent_type = text(v, "/entType").unwrap_or_default();
    if !matches!(ent_type, "1100" | "9100") {
        return Err("entType".into());
    }
    if !number_ok(v, "regCapital") {
        return Err("regCapital".into());
    }
    require(v, &["/address", "/scope"]).map_err(|f| f[1..].to_string())?;
    validate_person(v.get("legalRep").unwrap_or(&Value::Null), "legalRep", true)?;
    let Some(investors) = v.get("investors").and_then(Value::as_array) else {
        return Err("investors".into());
    };
    if ent_type == "1100" && investors.is_empty() {
        return Err("investors (at least one for entType 1100)".into());
    }
    for (i, inv) in investors.iter().enumerate() {
        let at = format!("investors[{i}]");
        validate_person(inv, &at, false)?;
        if !text(inv, "/ratio").is_some_and(ratio_ok) {
            return Err(format!("{at}.ratio"));
        }
    }
    Ok(())
}

/// The pre-review fields; with `licence` also `uscc` and `licenceNo`.
fn validate_food(v: &Value, licence: bool) -> Result<(), String> {
    require(v, &["/bizNo", "/shopName", "/shopAddress"]).map_err(|f| f[1..].to_string())?;
    if !v
        .get("area")
        .and_then(Value::as_f64)
        .is_some_and(|a| a.is_finite() && a > 0.0)
    {
        return Err("area".into());
    }
    let Some(categories) = v.get("categories").and_then(Value::as_array) else {
        return Err("categories".into());
    };
    if categories.is_empty() {
        return Err("categories".into());
    }
    for (i, c) in categories.iter().enumerate() {
        if c.as_str().is_none_or(str::is_empty) {
            return Err(format!("categories[{i}]"));
        }
    }
    require(v, &["/operator"]).map_err(|f| f[1..].to_string())?;
    if licence {
        validate_licence(v)?;
    }
    Ok(())
}

/// `uscc` (GB 32100) and `licenceNo` (15 digits).
fn validate_licence(v: &Value) -> Result<(), String> {
    if !text(v, "/uscc").is_some_and(gb32100_valid) {
        return Err("uscc".into());
    }
    if !text(v, "/licenceNo")
        .is_some_and(|l| l.len() == 15 && l.chars().all(|c| c.is_ascii_digit()))
    {
        return Err("licenceNo".into());
    }
    Ok(())
}

/// The division a case id starts with (`410225-…`).
fn division(case_id: &str) -> String {
    let d: String = case_id.chars().take(6).collect();
    if d.len() == 6 && d.chars().all(|c| c.is_ascii_digit()) {
        d
    } else {
        "410225".into()
    }
}

async fn establishment(State(s): State<Amr>, h: HeaderMap, body: Bytes) -> Response {
    const OP: &str = "establishment";
    if let Some(r) = gate(&s, OP, &h) {
        return r;
    }
    let ctx = &s.ctx;
    let v = match body_json(ctx, OP, &h, &body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    if let Err(field) = validate_establishment(&v) {
        return invalid(ctx, OP, &field);
    }
    let name = text(&v, "/entName").unwrap_or_default().to_string();
    let b = rule(ctx, &name);
    let case_id = text(&v, "/bizNo").unwrap_or_default().to_string();
    let div = division(&case_id);
    submit(
        ctx,
        OP,
        &v,
        ESTABLISHMENT,
        b,
        false,
        |n| format!("SJ{}{}", today(ctx), digits(n, 4)),
        move |n| {
            IndexMap::from([
                ("uscc".to_string(), uscc(&div, n)),
                ("licenceNo".to_string(), format!("{div}{}", digits(n, 9))),
                ("entName".to_string(), name),
            ])
        },
    )
}

async fn food_prereview(State(s): State<Amr>, h: HeaderMap, body: Bytes) -> Response {
    food(s, "food-prereview", h, body, true).await
}

async fn food_permit(State(s): State<Amr>, h: HeaderMap, body: Bytes) -> Response {
    food(s, "food-permit", h, body, false).await
}

/// A food-permit application: pre-review (no licence yet) or one step.
async fn food(s: Amr, op: &str, h: HeaderMap, body: Bytes, prereview: bool) -> Response {
    if let Some(r) = gate(&s, op, &h) {
        return r;
    }
    let ctx = &s.ctx;
    let v = match body_json(ctx, op, &h, &body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    if let Err(field) = validate_food(&v, !prereview) {
        return invalid(ctx, op, &field);
    }
    let b = rule(ctx, text(&v, "/operator").unwrap_or_default());
    let div = division(text(&v, "/bizNo").unwrap_or_default());
    submit(
        ctx,
        op,
        &v,
        FOOD_PERMIT,
        b,
        prereview,
        |n| format!("SP{}{}", today(ctx), digits(n, 4)),
        move |n| IndexMap::from([("permitNo".to_string(), format!("JY1{div}{}", digits(n, 7)))]),
    )
}

fn today(ctx: &Ctx) -> String {
    fmt(ctx.world.now_wall(), "%Y%m%d")
}

/// Creates the task (201) or answers the duplicate (409 with the existing task id).
#[allow(clippy::too_many_arguments)]
fn submit(
    ctx: &Ctx,
    op: &str,
    v: &Value,
    kind: &str,
    b: Behaviour,
    prereview: bool,
    reference: impl FnOnce(u64) -> String,
    results: impl FnOnce(u64) -> IndexMap<String, String>,
) -> Response {
    let case_id = text(v, "/bizNo").unwrap_or_default();
    if push_fails(ctx, b, case_id, kind, op) {
        return unavailable();
    }
    match ctx.world.submit(
        ctx.dept,
        case_id,
        kind,
        b,
        prereview,
        v.clone(),
        reference,
        results,
    ) {
        Submitted::Duplicate(app) => failure(
            StatusCode::CONFLICT,
            "DUPLICATE_BIZNO",
            &format!("bizNo {case_id} already submitted as {kind}"),
            Some(json!({"taskId": app.reference})),
        ),
        Submitted::New(app) => {
            ctx.world.received(ctx.dept, op, v.clone());
            let task_id = app.reference.clone();
            schedule(ctx, app);
            success(StatusCode::CREATED, json!({"taskId": task_id}))
        }
    }
}

async fn licence(
    State(s): State<Amr>,
    Path(task_id): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    const OP: &str = "licence";
    if let Some(r) = gate(&s, OP, &h) {
        return r;
    }
    let ctx = &s.ctx;
    let v = match body_json(ctx, OP, &h, &body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    if let Err(field) = validate_licence(&v) {
        return invalid(ctx, OP, &field);
    }
    let Some(app) = ctx.world.find_ref(ctx.dept, &task_id) else {
        return not_found(&task_id);
    };
    if app.kind != FOOD_PERMIT || !app.timeline.prereview {
        return invalid(ctx, OP, "taskId (not a food-permit pre-review)");
    }
    if app.timeline.follow_up.is_some() {
        // A repeated supplement: success, nothing changes.
        return success(StatusCode::OK, json!({"taskId": app.reference}));
    }
    if ctx.world.view(&app).phase.is_final() {
        ctx.world.violation(ctx.dept, OP, "task already finished");
        return failure(
            StatusCode::CONFLICT,
            "ALREADY_FINISHED",
            "task already finished",
            None,
        );
    }
    if push_fails(ctx, app.timeline.behaviour, &app.case_id, FOOD_PERMIT, OP) {
        return unavailable();
    }
    match ctx.world.follow_up(ctx.dept, &task_id, v.clone()) {
        Ok(app) => {
            ctx.world.received(ctx.dept, OP, v);
            let task_id = app.reference.clone();
            schedule(ctx, app);
            success(StatusCode::OK, json!({"taskId": task_id}))
        }
        Err(Refusal::NotPreReview) => invalid(ctx, OP, "taskId (not a food-permit pre-review)"),
        Err(_) => not_found(&task_id),
    }
}

fn state(phase: &Phase) -> &'static str {
    match phase {
        Phase::Received | Phase::PrecheckPassed => "IN_REVIEW",
        Phase::Accepted => "ACCEPTED",
        Phase::Rejected | Phase::PrecheckFailed => "NOT_ACCEPTED",
        Phase::Approved => "APPROVED",
        Phase::Denied => "NOT_APPROVED",
        Phase::Withdrawn => "WITHDRAWN",
    }
}

/// The task object of the queries and the callbacks.
fn record(app: &App, view: &View) -> Value {
    let remark = match view.phase {
        Phase::PrecheckPassed => json!("预审通过，待补充营业执照信息"),
        Phase::Rejected | Phase::PrecheckFailed => json!(REJECT_REASON),
        Phase::Denied => json!(DENY_REASON),
        Phase::Withdrawn => json!(text(&app.data, "/withdrawReason").unwrap_or("申请人撤回")),
        _ => Value::Null,
    };
    let result = match view.phase {
        Phase::Approved => serde_json::to_value(&app.results).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    json!({
        "taskId": app.reference,
        "bizNo": app.case_id,
        "type": app.kind,
        "state": state(&view.phase),
        "remark": remark,
        "acceptedAt": view.accepted_at.map(rfc3339),
        "result": result,
    })
}

async fn task(State(s): State<Amr>, Path(task_id): Path<String>, h: HeaderMap) -> Response {
    if let Some(r) = gate(&s, "task", &h) {
        return r;
    }
    let ctx = &s.ctx;
    ctx.world.count(ctx.dept, |st| st.queries += 1);
    match ctx.world.find_ref(ctx.dept, &task_id) {
        Some(app) => success(StatusCode::OK, record(&app, &ctx.world.view(&app))),
        None => not_found(&task_id),
    }
}

async fn tasks(
    State(s): State<Amr>,
    Query(q): Query<IndexMap<String, String>>,
    h: HeaderMap,
) -> Response {
    const OP: &str = "tasks";
    if let Some(r) = gate(&s, OP, &h) {
        return r;
    }
    let ctx = &s.ctx;
    ctx.world.count(ctx.dept, |st| st.queries += 1);
    let Some(biz_no) = q.get("bizNo").filter(|b| !b.is_empty()) else {
        return invalid(ctx, OP, "bizNo");
    };
    let kind = q.get("type").map(String::as_str);
    if !matches!(kind, Some(ESTABLISHMENT | FOOD_PERMIT)) {
        return invalid(ctx, OP, "type");
    }
    let found: Vec<Value> = ctx
        .world
        .find_case(ctx.dept, biz_no)
        .iter()
        .filter(|a| Some(a.kind.as_str()) == kind)
        .map(|a| record(a, &ctx.world.view(a)))
        .collect();
    success(StatusCode::OK, Value::Array(found))
}

async fn withdraw(
    State(s): State<Amr>,
    Path(task_id): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    const OP: &str = "withdraw";
    if let Some(r) = gate(&s, OP, &h) {
        return r;
    }
    let ctx = &s.ctx;
    let v = match body_json(ctx, OP, &h, &body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    if text(&v, "/reason").is_none() {
        return invalid(ctx, OP, "reason");
    }
    let Some(app) = ctx.world.find_ref(ctx.dept, &task_id) else {
        return not_found(&task_id);
    };
    if ctx.world.view(&app).phase == Phase::Withdrawn {
        // Already withdrawn: success, nothing changes.
        return success(StatusCode::OK, json!({"taskId": app.reference}));
    }
    match ctx.world.withdraw(ctx.dept, &task_id) {
        Ok(_) => {
            let mut extra = serde_json::Map::new();
            extra.insert("withdrawReason".into(), v["reason"].clone());
            let app = ctx.world.annotate(ctx.dept, &task_id, extra);
            ctx.world.received(ctx.dept, OP, v);
            if let Some(app) = app {
                schedule(ctx, app);
            }
            success(StatusCode::OK, json!({"taskId": task_id}))
        }
        Err(Refusal::Finished) => failure(
            StatusCode::CONFLICT,
            "ALREADY_FINISHED",
            "task already finished",
            None,
        ),
        Err(_) => not_found(&task_id),
    }
}

/// Calls back with the task object on every state change, with the callback bearer token.
fn schedule(ctx: &Ctx, app: App) {
    let auth = format!("Bearer {}", ctx.cred("CALLBACK_TOKEN"));
    let render: callback::Render = Arc::new(move |app, view| {
        Some(Outgoing {
            headers: vec![
                (
                    "Content-Type".into(),
                    "application/json; charset=UTF-8".into(),
                ),
                ("Authorization".into(), auth.clone()),
            ],
            body: serde_json::to_vec(&record(app, view)).ok()?,
        })
    });
    let accepts: callback::Accepts = Arc::new(|status, body| {
        status == 200
            && serde_json::from_slice::<Value>(body)
                .is_ok_and(|v| v.get("success").and_then(Value::as_bool) == Some(true))
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
