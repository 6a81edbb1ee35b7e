//! The case writer: feeds inputs to the state machine and stores the outcome — new state, events
//! (outbox), timers and audit records — in one transaction, retrying when another writer changed
//! the case first. The only place where engine effects become durable work.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use serde_json::{Value, json};

use super::gateway::{Config, Gateway};
use crate::engine::{self, Case, Effect, Event, Input, Limit, Push, Status};
use crate::model::time::rfc3339;
use crate::store::{
    AuditRecord, NewTimer, OutboxEvent, Release, StoreError, TimerClock, Update, item_rows,
};

/// Timer kinds.
pub mod kind {
    pub const PUSH: &str = "push";
    pub const WITHDRAW: &str = "withdraw";
    pub const QUERY: &str = "query";
    pub const POLL: &str = "poll";
    pub const ACCEPT: &str = "deadline-accept";
    pub const COMPLETE: &str = "deadline-complete";
    pub const NOT_TAKEN: &str = "not-taken";
    /// Everything an item's final state makes pointless.
    pub const ALL: &[&str] = &[PUSH, WITHDRAW, QUERY, POLL, ACCEPT, COMPLETE, NOT_TAKEN];
}

/// Extra work stored with the case change.
#[derive(Debug, Default, Clone)]
pub struct Extra {
    pub audit: Vec<AuditRecord>,
    pub release: Vec<Release>,
    pub timers: Vec<NewTimer>,
    pub drop_timers: Vec<(String, String)>,
}

/// What applying did.
#[derive(Debug)]
pub struct Applied {
    pub case: Arc<Case>,
    /// Events emitted (empty: the input changed nothing).
    pub events: Vec<Event>,
}

/// The event message of amqp.md, its fields in this order.
#[derive(serde::Serialize)]
struct EventMessage<'a> {
    schema: &'static str,
    event_id: String,
    #[serde(rename = "type")]
    kind: &'a str,
    case_id: &'a str,
    onething: &'a str,
    item: Option<&'a str>,
    department: Option<&'a str>,
    status: Option<&'static str>,
    at: String,
    seq: u64,
    detail: &'a Value,
}

/// Writes the event message of amqp.md, straight to text (built as a `Value` first, then
/// written, it took twice as long).
pub fn event_json(case: &Case, ev: &Event, at: DateTime<FixedOffset>) -> String {
    let message = EventMessage {
        schema: "onething.event/v1",
        event_id: event_id(&case.case_id, ev.seq),
        kind: ev.kind,
        case_id: &case.case_id,
        onething: &case.onething,
        item: ev.item.as_deref(),
        department: ev.department.as_deref(),
        status: ev.status.map(|s| s.as_str()),
        at: rfc3339(at),
        seq: ev.seq,
        detail: &ev.detail,
    };
    serde_json::to_string(&message).expect("an event message is always JSON")
}

/// A stable event id: the case and its sequence number.
pub fn event_id(case_id: &str, seq: u64) -> String {
    format!("{case_id}:{seq}")
}

fn push_name(p: Push) -> &'static str {
    match p {
        Push::Submit => "submit",
        Push::Prereview => "prereview",
        Push::Complete => "complete",
    }
}

/// Turns effects into durable work.
pub fn to_update(
    gw: &Gateway,
    case: &Case,
    effects: &[Effect],
    extra: &Extra,
) -> (Update, Vec<Event>) {
    let cfg = gw.config();
    let now = gw.clock.now();
    let now_ms = now.timestamp_millis();
    let real_ms = gw.clock.real_ms();
    let mut u = Update {
        case_id: case.case_id.clone(),
        now: now_ms,
        audit: extra.audit.clone(),
        release: extra.release.clone(),
        drop_timers: extra.drop_timers.clone(),
        ..Default::default()
    };
    // Extra timers first, so that an item's final state drops them too.
    let mut timers: Vec<NewTimer> = extra.timers.clone();
    let mut events = Vec::new();
    let dept_of = |item: &str| {
        case.items
            .get(item)
            .map(|i| i.department.clone())
            .unwrap_or_default()
    };
    let timer = |item: &str, kind: &str, clock: TimerClock, due_at: i64, payload: Value| NewTimer {
        case_id: case.case_id.clone(),
        item: item.to_string(),
        kind: kind.to_string(),
        department: dept_of(item),
        clock,
        due_at,
        payload,
    };
    for fx in effects {
        match fx {
            Effect::Emit(ev) => {
                let body = event_json(case, ev, now);
                u.events.push(OutboxEvent {
                    event_id: event_id(&case.case_id, ev.seq),
                    case_id: case.case_id.clone(),
                    seq: ev.seq as i64,
                    routing_key: ev.kind.to_string(),
                    body,
                });
                u.audit.push(AuditRecord::new(
                    &case.case_id,
                    ev.item.as_deref(),
                    ev.department.as_deref(),
                    now_ms,
                    "event",
                    format!("{} seq {} {}", ev.kind, ev.seq, ev.detail),
                    None,
                ));
                if let Some(item) = &ev.item {
                    match ev.kind {
                        "item.dispatched" | "item.prereview" => {
                            u.drop_timers.push((item.clone(), kind::NOT_TAKEN.into()));
                            if let Some(t) = first_poll(gw, &cfg, case, item, now_ms) {
                                timers.push(t);
                            }
                        }
                        _ => {}
                    }
                }
                events.push(ev.clone());
            }
            Effect::Push { item, push } => timers.push(timer(
                item,
                kind::PUSH,
                TimerClock::Real,
                real_ms,
                json!({ "push": push_name(*push), "attempts": 0, "sent": false }),
            )),
            Effect::Withdraw { item } => timers.push(timer(
                item,
                kind::WITHDRAW,
                TimerClock::Real,
                real_ms,
                json!({ "attempts": 0 }),
            )),
            Effect::Query { item } => timers.push(timer(
                item,
                kind::QUERY,
                TimerClock::Real,
                real_ms,
                json!({ "attempts": 0 }),
            )),
            Effect::AcceptClock { item, from } => {
                let due = cfg.calendar.deadline(*from, 1);
                timers.push(timer(
                    item,
                    kind::ACCEPT,
                    TimerClock::Gateway,
                    due.timestamp_millis(),
                    json!({ "due_at": rfc3339(due) }),
                ));
            }
            Effect::CompleteClock { item, from, days } => {
                let due = cfg.calendar.deadline(*from, *days);
                timers.push(timer(
                    item,
                    kind::COMPLETE,
                    TimerClock::Gateway,
                    due.timestamp_millis(),
                    json!({ "due_at": rfc3339(due) }),
                ));
            }
            Effect::StopClocks { item } => {
                for k in kind::ALL {
                    u.drop_timers.push((item.clone(), k.to_string()));
                }
                timers.retain(|t: &NewTimer| &t.item != item);
            }
        }
    }
    u.timers = timers;
    (u, events)
}

/// The first poll of an item a department now holds: polled departments after their poll interval,
/// connected ones after their quiet period (a lost callback delays a result, never loses it).
fn first_poll(
    gw: &Gateway,
    cfg: &Config,
    case: &Case,
    item: &str,
    now_ms: i64,
) -> Option<NewTimer> {
    let dept = cfg.department(&case.items.get(item)?.department)?;
    dept.items.get(item)?.query.as_ref()?;
    let wait = if dept.connected {
        dept.limits.quiet
    } else {
        dept.limits.poll_interval
    };
    Some(NewTimer {
        case_id: case.case_id.clone(),
        item: item.to_string(),
        kind: kind::POLL.into(),
        department: dept.id.clone(),
        clock: TimerClock::Gateway,
        due_at: now_ms + gw.clock.span_ms(wait),
        payload: json!({ "quiet": 0 }),
    })
}

/// Applies inputs to a stored case and saves the result; retries on a concurrent change.
pub async fn apply(
    gw: &Gateway,
    case_id: &str,
    inputs: &[Input],
    extra: Extra,
) -> Result<Option<Applied>, StoreError> {
    for _ in 0..20 {
        let Some(stored) = gw.store.load(case_id).await? else {
            return Ok(None);
        };
        let rows_before = item_rows(&stored.state);
        let mut case = Arc::unwrap_or_clone(stored.state);
        let before: Vec<(String, Status)> = case
            .items
            .iter()
            .map(|(code, it)| (code.clone(), it.status))
            .collect();
        let now = gw.clock.now();
        let calendar = &gw.config().calendar;
        let mut effects = Vec::new();
        for input in inputs {
            effects.extend(engine::apply(&mut case, input.clone(), now, calendar));
        }
        let (mut update, events) = to_update(gw, &case, &effects, &extra);
        update
            .audit
            .extend(state_changes(&before, &case, now.timestamp_millis()));
        update.version = stored.version;
        // Only the item rows this change altered (most changes touch one item of four).
        update.items = Some(
            item_rows(&case)
                .into_iter()
                .filter(|r| !rows_before.contains(r))
                .collect(),
        );
        let case = Arc::new(case);
        update.state = Some(case.clone());
        let (timers, published) = (!update.timers.is_empty(), !update.events.is_empty());
        if gw.store.save(update).await? {
            if timers {
                gw.timers_added.notify_one();
            }
            if published {
                gw.events_added.notify_one();
            }
            return Ok(Some(Applied { case, events }));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Err(StoreError::Db(format!(
        "case {case_id}: too many concurrent changes"
    )))
}

/// The overdue input of a deadline timer.
pub fn overdue_input(item: &str, kind_name: &str, payload: &Value) -> Option<Input> {
    let limit = match kind_name {
        kind::ACCEPT => Limit::Accept,
        kind::COMPLETE => Limit::Complete,
        _ => return None,
    };
    let due_at = payload
        .get("due_at")
        .and_then(Value::as_str)
        .and_then(crate::model::time::parse_rfc3339)?;
    Some(Input::Overdue {
        item: item.to_string(),
        limit,
        due_at,
    })
}

/// One `state` audit record per item whose status changed (the trail shows every transition,
/// also those that emit no event).
pub fn state_changes(before: &[(String, Status)], after: &Case, at: i64) -> Vec<AuditRecord> {
    after
        .items
        .iter()
        .filter_map(|(code, it)| {
            let old = before.iter().find(|(c, _)| c == code).map(|(_, s)| *s);
            (old != Some(it.status)).then(|| {
                AuditRecord::new(
                    &after.case_id,
                    Some(code),
                    Some(&it.department),
                    at,
                    "state",
                    match old {
                        Some(o) => format!("{} → {}", o.as_str(), it.status.as_str()),
                        None => format!("→ {}", it.status.as_str()),
                    },
                    None,
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use indexmap::IndexMap;

    #[test]
    fn an_event_message_has_amqp_md_fields_in_order() {
        let case = Case::new(
            "C-1",
            "one-thing-a",
            IndexMap::new(),
            IndexMap::new(),
            Value::Null,
        );
        let at = chrono::DateTime::parse_from_rfc3339("2026-03-16T09:15:00+08:00").unwrap();
        let ev = Event {
            seq: 7,
            kind: "item.accepted",
            item: Some("item-a".into()),
            department: Some("dept-a".into()),
            status: Some(Status::Accepted),
            detail: json!({"due_at": "2026-03-19T23:59:59+08:00", "n": 1}),
        };
        assert_eq!(
            event_json(&case, &ev, at),
            r#"{"schema":"onething.event/v1","event_id":"C-1:7","type":"item.accepted","case_id":"C-1","onething":"one-thing-a","item":"item-a","department":"dept-a","status":"accepted","at":"2026-03-16T09:15:00+08:00","seq":7,"detail":{"due_at":"2026-03-19T23:59:59+08:00","n":1}}"#
        );
        let bare = Event {
            item: None,
            department: None,
            status: None,
            detail: json!({}),
            kind: "case.received",
            seq: 1,
        };
        assert_eq!(
            event_json(&case, &bare, at),
            r#"{"schema":"onething.event/v1","event_id":"C-1:1","type":"case.received","case_id":"C-1","onething":"one-thing-a","item":null,"department":null,"status":null,"at":"2026-03-16T09:15:00+08:00","seq":1,"detail":{}}"#
        );
    }
}
