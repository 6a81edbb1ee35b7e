//! The gateway's HTTP listener: department callbacks (`POST /callbacks/<department>`, verified per
//! its mapping and answered in its format only after the report is stored), `/healthz`, `/readyz`
//! and `/metrics`.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::apply::{self, Extra, kind};
use super::gateway::Gateway;
use super::reports;
use crate::broker::Broker;
use crate::config::department::Reply;
use crate::mapping::callback::CallbackRead;
use crate::store::{AuditRecord, NewTimer, TimerClock};

#[derive(Clone)]
pub struct Web {
    pub gw: Arc<Gateway>,
    /// Set once the broker is connected.
    pub broker: Arc<OnceLock<Broker>>,
}

pub fn router(web: Web) -> Router {
    Router::new()
        .route("/callbacks/{department}", post(callback))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(web)
}

fn reply(r: &Reply) -> Response {
    let mut resp = (
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK),
        r.body.clone(),
    )
        .into_response();
    if let Some(ct) = &r.content_type
        && let Ok(v) = ct.parse()
    {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

async fn callback(
    State(web): State<Web>,
    Path(department): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let gw = &web.gw;
    let cfg = gw.config();
    let Some(dept) = cfg.department(&department).filter(|d| d.connected) else {
        return (StatusCode::NOT_FOUND, "no such department").into_response();
    };
    let Some(reader) = &dept.callback else {
        return (StatusCode::NOT_FOUND, "no callbacks for this department").into_response();
    };
    let hv: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let now = gw.clock.now_ms();
    let note = |summary: String| AuditRecord {
        case_id: None,
        item: None,
        department: Some(dept.id.clone()),
        at: now,
        kind: "callback".into(),
        summary,
        body_sha256: Some(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body))),
    };
    let records = match reader.read(&hv, &body, cfg.credentials_of(&dept.id)) {
        CallbackRead::Unauthorized => {
            let _ = gw
                .store
                .audit(&[note("callback refused: authentication failed".into())])
                .await;
            tracing::warn!(department = %dept.id, "callback refused: authentication failed");
            return reply(&reader.unauthorized);
        }
        CallbackRead::Unreadable(e) => {
            let _ = gw
                .store
                .audit(&[note(format!("callback unreadable: {e}"))])
                .await;
            tracing::warn!(department = %dept.id, error = %e, "callback unreadable");
            return reply(&reader.unreadable);
        }
        CallbackRead::Records(r) => r,
    };
    let (found, bad) = reports::read_all(dept, &records, None);
    if !bad.is_empty() {
        let _ = gw
            .store
            .audit(&[note(format!(
                "callback with unreadable report: {}",
                bad.join("; ")
            ))])
            .await;
        return reply(&reader.unreadable);
    }
    for (item, r) in found {
        let inputs: Vec<_> = reports::input(gw, &item, &r).into_iter().collect();
        // A report resets the quiet period after which the item is queried.
        let quiet = NewTimer {
            case_id: r.case_id.clone(),
            item: item.clone(),
            kind: kind::POLL.into(),
            department: dept.id.clone(),
            clock: TimerClock::Gateway,
            due_at: gw.clock.now_ms() + gw.clock.span_ms(dept.limits.quiet),
            payload: json!({"quiet": 0}),
        };
        let extra = Extra {
            audit: vec![AuditRecord::new(
                &r.case_id,
                Some(&item),
                Some(&dept.id),
                now,
                "callback",
                format!("status {}", r.status),
                Some(&body),
            )],
            timers: vec![quiet],
            ..Default::default()
        };
        match apply::apply(gw, &r.case_id, &inputs, extra).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                super::metrics::Metrics::inc(&gw.metrics.unknown_case_reports);
                let _ = gw
                    .store
                    .audit(&[note(format!("callback for unknown case {}", r.case_id))])
                    .await;
                tracing::warn!(department = %dept.id, case_id = %r.case_id, "callback for an unknown case");
            }
            Err(e) => {
                tracing::error!(department = %dept.id, case_id = %r.case_id, error = %e, "callback not stored");
                return (StatusCode::SERVICE_UNAVAILABLE, "not stored, try again").into_response();
            }
        }
    }
    reply(&reader.ok)
}

async fn ready(State(web): State<Web>) -> Response {
    let store = web.gw.store.ping().await;
    let broker = web.broker.get().is_some_and(Broker::is_connected);
    let body =
        json!({"store": if store {"up"} else {"down"}, "broker": if broker {"up"} else {"down"}});
    let status = if store && broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(web): State<Web>) -> Response {
    let mut gauges = Vec::new();
    let gw = &web.gw;
    if let Ok(c) = gw.store.counts().await {
        gauges.push(("onething_cases_open".to_string(), c.open_cases as f64));
        gauges.push(("onething_outbox_pending".to_string(), c.unpublished as f64));
        gauges.push(("onething_timers".to_string(), c.timers as f64));
    }
    if let Ok(items) = gw.store.item_counts(gw.clock.now_ms()).await {
        for (d, s, n) in items.open {
            gauges.push((
                format!("onething_items_open{{department=\"{d}\",status=\"{s}\"}}"),
                n as f64,
            ));
        }
        // Every department appears, so that an alert on "> 0" also sees a return to 0.
        for d in gw.config().mapping.departments.keys() {
            let n = items
                .overdue
                .iter()
                .find(|(od, _)| od == d)
                .map_or(0, |(_, n)| *n);
            gauges.push((
                format!("onething_items_overdue{{department=\"{d}\"}}"),
                n as f64,
            ));
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        web.gw.metrics.render(&gauges),
    )
        .into_response()
}
