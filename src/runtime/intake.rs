//! Intake: each inbound message is validated, stored, then acknowledged — or dead-lettered with
//! its reason (and announced as `case.invalid` when a case id can be read). Duplicates are
//! recognised by `case_id`; withdrawals go to the state machine.

use indexmap::IndexMap;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::apply::{self, Extra};
use super::gateway::{Config, Gateway};
use crate::broker::{Broker, EventMessage, Inbound};
use crate::engine::{self, Case, Input, Item, Status};
use crate::model::time::rfc3339;
use crate::store::{AuditRecord, Inserted, NewDeadLetter};
use crate::validate::{FieldError, validate_submission, validate_withdrawal_value};

/// What became of a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    Stored,
    Duplicate,
    Withdrawal,
    DeadLettered(&'static str),
}

fn errors_json(errors: &[FieldError]) -> Value {
    serde_json::to_value(errors).unwrap_or(Value::Null)
}

/// Handles one message; acks it only once its outcome is durable. An error leaves it unacked (the
/// broker redelivers it).
pub async fn take(gw: &Gateway, broker: &Broker, msg: &Inbound) -> Result<Taken, String> {
    super::metrics::Metrics::inc(&gw.metrics.consumed);
    let taken = classify(gw, broker, msg).await?;
    msg.ack().await.map_err(|e| e.to_string())?;
    Ok(taken)
}

async fn dead(
    gw: &Gateway,
    broker: &Broker,
    msg: &Inbound,
    reason: &'static str,
    errors: Value,
    case_id: Option<&str>,
) -> Result<Taken, String> {
    broker
        .dead_letter(msg, reason, &errors)
        .await
        .map_err(|e| e.to_string())?;
    gw.store
        .dead_letter(&NewDeadLetter {
            at: gw.clock.now_ms(),
            reason,
            errors: &errors.to_string(),
            case_id,
            routing_key: &msg.routing_key,
            body: &msg.body,
        })
        .await
        .map_err(|e| e.to_string())?;
    super::metrics::Metrics::inc(&gw.metrics.dead_lettered);
    tracing::warn!(
        case_id = case_id.unwrap_or(""),
        reason,
        "message dead-lettered"
    );
    Ok(Taken::DeadLettered(reason))
}

async fn classify(gw: &Gateway, broker: &Broker, msg: &Inbound) -> Result<Taken, String> {
    let Ok(v) = serde_json::from_slice::<Value>(&msg.body) else {
        return dead(
            gw,
            broker,
            msg,
            "not json",
            json!([{"path": "", "message": "not JSON"}]),
            None,
        )
        .await;
    };
    let case_id = v.get("case_id").and_then(Value::as_str).map(str::to_string);
    match v.get("schema").and_then(Value::as_str) {
        Some("onething.submission/v1") => submission(gw, broker, msg, &v, case_id).await,
        Some("onething.withdrawal/v1") => withdrawal(gw, broker, msg, &v, case_id).await,
        _ => {
            dead(
                gw,
                broker,
                msg,
                "unknown schema",
                json!([{"path": "/schema", "message": "unknown schema"}]),
                case_id.as_deref(),
            )
            .await
        }
    }
}

async fn submission(
    gw: &Gateway,
    broker: &Broker,
    msg: &Inbound,
    v: &Value,
    case_id: Option<String>,
) -> Result<Taken, String> {
    let cfg = gw.config();
    if let Err(errors) = validate_submission(&msg.body, &cfg.mapping) {
        let ej = errors_json(&errors);
        let taken = dead(gw, broker, msg, "invalid", ej.clone(), case_id.as_deref()).await?;
        if let Some(id) = case_id.as_deref().filter(|id| !id.is_empty()) {
            announce_invalid(gw, broker, msg, id, v, ej).await?;
        }
        return Ok(taken);
    }
    let case_id = case_id.unwrap_or_default();
    let mut case = new_case(&cfg, v);
    let now = gw.clock.now();
    let effects = engine::apply(&mut case, Input::Received, now, &cfg.calendar);
    let extra = Extra {
        audit: vec![AuditRecord::new(
            &case_id,
            None,
            None,
            now.timestamp_millis(),
            "inbound",
            "submission received and valid",
            Some(&msg.body),
        )],
        ..Default::default()
    };
    let (update, _) = apply::to_update(gw, &case, &effects, &extra);
    let text = String::from_utf8_lossy(&msg.body);
    match gw
        .store
        .insert_case(&case, &text, update)
        .await
        .map_err(|e| e.to_string())?
    {
        Inserted::New => {
            gw.timers_added.notify_one();
            gw.events_added.notify_one();
            tracing::info!(case_id = %case_id, onething = %case.onething, "case received");
            Ok(Taken::Stored)
        }
        Inserted::Existing { submission } => {
            let stored: Value = serde_json::from_str(&submission).unwrap_or(Value::Null);
            if &stored == v {
                gw.store
                    .audit(&[AuditRecord::new(
                        &case_id,
                        None,
                        None,
                        gw.clock.now_ms(),
                        "inbound",
                        "duplicate delivery, same content: acknowledged",
                        Some(&msg.body),
                    )])
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Taken::Duplicate)
            } else {
                dead(gw, broker, msg, "conflicting duplicate", json!([{"path": "/case_id", "message": "case_id already taken by a different submission"}]), Some(&case_id)).await
            }
        }
    }
}

/// `case.invalid`: published directly (the case is not stored and takes no `seq`).
async fn announce_invalid(
    gw: &Gateway,
    broker: &Broker,
    msg: &Inbound,
    case_id: &str,
    v: &Value,
    errors: Value,
) -> Result<(), String> {
    let event_id = format!(
        "{case_id}:invalid:{}",
        &hex::encode(Sha256::digest(&msg.body))[..16]
    );
    let body = json!({
        "schema": "onething.event/v1",
        "event_id": event_id,
        "type": "case.invalid",
        "case_id": case_id,
        "onething": v.get("onething").and_then(Value::as_str),
        "item": null,
        "department": null,
        "status": null,
        "at": rfc3339(gw.clock.now()),
        "detail": { "errors": errors },
    });
    let bytes = body.to_string().into_bytes();
    broker
        .publish_event(&EventMessage {
            event_id: &event_id,
            case_id,
            routing_key: "case.invalid",
            item: None,
            department: None,
            body: &bytes,
        })
        .await
        .map_err(|e| e.to_string())?;
    super::metrics::Metrics::inc(&gw.metrics.published);
    Ok(())
}

/// The case of a valid submission: its requested items in catalog order.
pub fn new_case(cfg: &Config, v: &Value) -> Case {
    let onething = v["onething"].as_str().unwrap_or_default();
    let requested: Option<Vec<&str>> = v
        .get("items")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect());
    let mut items = IndexMap::new();
    if let Some(ot) = cfg.mapping.catalog.onething.get(onething) {
        for (code, it) in &ot.get_ref().items {
            if requested
                .as_ref()
                .is_some_and(|r| !r.contains(&code.as_str()))
            {
                continue;
            }
            let it = it.get_ref();
            items.insert(
                code.clone(),
                Item {
                    department: it.department.get_ref().clone(),
                    prerequisites: it
                        .prerequisites
                        .iter()
                        .map(|p| p.get_ref().clone())
                        .collect(),
                    prereview_allowed: it.prereview,
                    complete_days: it.complete_days,
                    status: Status::Pending,
                    in_flight: None,
                    department_ref: None,
                    accepted_at: None,
                    dispatched_at: None,
                    accept_due: None,
                    complete_due: None,
                    results: IndexMap::new(),
                    stage: None,
                    withdrawing: false,
                },
            );
        }
    }
    let prior = v
        .get("prior_results")
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, r)| {
                    let vals = r
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(a, b)| {
                                    (a.clone(), b.as_str().unwrap_or_default().to_string())
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    (k.clone(), vals)
                })
                .collect()
        })
        .unwrap_or_default();
    Case::new(
        v["case_id"].as_str().unwrap_or_default(),
        onething,
        items,
        prior,
        v.get("delivery").cloned().unwrap_or(Value::Null),
    )
}

async fn withdrawal(
    gw: &Gateway,
    broker: &Broker,
    msg: &Inbound,
    v: &Value,
    case_id: Option<String>,
) -> Result<Taken, String> {
    let errors = validate_withdrawal_value(v);
    if !errors.is_empty() {
        return dead(
            gw,
            broker,
            msg,
            "invalid",
            errors_json(&errors),
            case_id.as_deref(),
        )
        .await;
    }
    let case_id = case_id.unwrap_or_default();
    let reason = v["reason"].as_str().unwrap_or_default().to_string();
    let extra = Extra {
        audit: vec![AuditRecord::new(
            &case_id,
            None,
            None,
            gw.clock.now_ms(),
            "inbound",
            format!("withdrawal: {reason}"),
            Some(&msg.body),
        )],
        ..Default::default()
    };
    match apply::apply(gw, &case_id, &[Input::Withdraw { reason }], extra)
        .await
        .map_err(|e| e.to_string())?
    {
        Some(_) => Ok(Taken::Withdrawal),
        None => {
            dead(
                gw,
                broker,
                msg,
                "unknown case",
                json!([{"path": "/case_id", "message": "unknown case"}]),
                Some(&case_id),
            )
            .await
        }
    }
}
