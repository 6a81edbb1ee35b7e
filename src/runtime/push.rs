//! Pushing an item to its department: the first push, the pre-review and its follow-up, with
//! retries, back-off and `Retry-After`. An unknown outcome is resolved through the department's
//! query operation before any new push, and a refused follow-up is checked the same way, so no
//! department receives two applications for one item and no decision it made is overwritten.

use std::time::Duration;

use serde_json::{Value, json};

use super::apply::{self, Extra, kind};
use super::dispatch::{backoff, delete, later, load, store_only};
use super::exchange_op::{Sent, exchange};
use super::gateway::{Config, Gateway};
use super::render::{Extras, submission_value};
use super::reports;
use crate::engine::{Case, Input, Push};
use crate::mapping::answer::Outcome;
use crate::mapping::department::Department;
use crate::mapping::operation::{OpKind, Operation};
use crate::mapping::report::StatusReport;
use crate::store::{AuditRecord, NewTimer, Timer, TimerClock};

fn push_of(p: &Value) -> Push {
    match p.get("push").and_then(Value::as_str) {
        Some("prereview") => Push::Prereview,
        Some("complete") => Push::Complete,
        _ => Push::Submit,
    }
}

fn op_kind(p: Push) -> OpKind {
    match p {
        Push::Submit => OpKind::Submit,
        Push::Prereview => OpKind::Prereview,
        Push::Complete => OpKind::Complete,
    }
}

pub async fn push(gw: &Gateway, t: &Timer) -> Result<(), String> {
    let cfg = gw.config();
    let Some(stored) = load(gw, t).await? else {
        return Ok(());
    };
    let case = &stored.state;
    let push = push_of(&t.payload);
    let current = case.items.get(&t.item);
    if current.is_none_or(|i| i.status.is_final() || i.in_flight != Some(push)) {
        return gw
            .store
            .release(&[delete(t)])
            .await
            .map_err(|e| e.to_string());
    }
    let dept = cfg.department(&t.department).ok_or("unknown department")?;
    let ops = dept.items.get(&t.item).ok_or("item not mapped")?;
    let op = ops.get(op_kind(push)).ok_or("operation not mapped")?;
    let attempts = t
        .payload
        .get("attempts")
        .and_then(Value::as_u64)
        .unwrap_or(0) as u32;
    let sent = t
        .payload
        .get("sent")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let sub = submission_value(&stored.submission);
    let mut audit = Vec::new();

    // An earlier push may have arrived: ask before pushing again (a follow-up may simply repeat).
    if sent
        && push != Push::Complete
        && let Some(q) = &ops.query
    {
        match ask(gw, &cfg, dept, q, case, &sub, &t.item, &mut audit).await {
            Asked::Found(inputs) => {
                let note = "earlier push had arrived (found by query)";
                return settle_found(gw, t, Some(push), inputs, note, audit).await;
            }
            Asked::NotFound => {}
            Asked::Unanswered if attempts + 1 >= dept.limits.retry_attempts => {
                let error =
                    "the push's outcome is unknown and the department could not be asked about it"
                        .to_string();
                return failed(gw, t, error, attempts + 1, audit).await;
            }
            Asked::Unanswered => {
                let due = gw.clock.real_ms() + backoff(dept, attempts).as_millis() as i64;
                return store_only(
                    gw,
                    t,
                    later(
                        t,
                        due,
                        json!({"push": t.payload["push"], "attempts": attempts + 1, "sent": true}),
                    ),
                    audit,
                )
                .await;
            }
        }
    }

    // Mark the push as sent before it goes out: after a crash its outcome is unknown, not unsent.
    // Wait for the department's limits first: between marking the push sent and sending it
    // there is no wait, so the lease cannot run out in between under load.
    let permit = cfg.permit(&dept.id, false).await;
    // The lease covers the request's whole timeout by itself (the heartbeat extends it further).
    let lease = gw.clock.real_ms()
        + gw.lease
            .max(dept.limits.timeout + Duration::from_secs(10))
            .as_millis() as i64;
    let marked = json!({"push": t.payload["push"], "attempts": attempts, "sent": true});
    if !gw
        .store
        .touch(t.id, &t.token, &marked, lease)
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(());
    }
    let outcome = exchange(
        gw,
        &cfg,
        dept,
        op,
        case,
        &sub,
        &t.item,
        Extras {
            permitted: true,
            ..Default::default()
        },
        false,
        &mut audit,
    )
    .await;
    drop(permit);
    let retry = |after: Option<u64>, sent: bool, error: String, audit: Vec<AuditRecord>| async move {
        let n = attempts + 1;
        if n >= dept.limits.retry_attempts {
            return failed(gw, t, error, n, audit).await;
        }
        let wait = backoff(dept, attempts).max(Duration::from_secs(after.unwrap_or(0)));
        let due = gw.clock.real_ms() + wait.as_millis() as i64;
        store_only(
            gw,
            t,
            later(
                t,
                due,
                json!({"push": t.payload["push"], "attempts": n, "sent": sent, "error": error}),
            ),
            audit,
        )
        .await
    };
    let fail = |error: String, audit: Vec<AuditRecord>| async move {
        failed(gw, t, error, attempts + 1, audit).await
    };
    // A refused follow-up: the department may have decided already (a pre-review rejected before
    // the gateway learnt of it). Its own word, by query, wins over failing the item.
    let (cfg, sub) = (&*cfg, &sub);
    let refused = |error: String, mut audit: Vec<AuditRecord>| async move {
        if push == Push::Complete
            && let Some(q) = &ops.query
            && let Asked::Found(inputs) =
                ask(gw, cfg, dept, q, case, sub, &t.item, &mut audit).await
            && inputs.iter().any(|(_, r)| r.change.is_final())
        {
            let note = format!(
                "follow-up refused ({error}); the department had already decided (found by query)"
            );
            return settle_found(gw, t, None, inputs, &note, audit).await;
        }
        fail(error, audit).await
    };
    match outcome {
        Sent::Answered(read) => match read.outcome {
            Outcome::Ok { reference } | Outcome::Duplicate { reference } => {
                let input = Input::PushTaken {
                    item: t.item.clone(),
                    push,
                    reference,
                };
                finish(gw, t, &[input], audit).await
            }
            Outcome::Retry { after_secs, error } => retry(after_secs, false, error, audit).await,
            Outcome::Unauthorized => retry(None, false, "token refused".into(), audit).await,
            Outcome::Unrecognised { error } => retry(None, true, error, audit).await,
            Outcome::Permanent { error } => refused(error, audit).await,
            Outcome::NotFound => {
                refused(
                    "the department answered `not found` to a push".into(),
                    audit,
                )
                .await
            }
            Outcome::Finished => {
                refused("the department answered `finished` to a push".into(), audit).await
            }
        },
        Sent::NotSent(e) => retry(None, false, e, audit).await,
        Sent::Unknown(e) => retry(None, true, e, audit).await,
        Sent::RenderFailed(e) => fail(format!("cannot build the request: {e}"), audit).await,
        Sent::Filed(name) => {
            let wait = dept
                .exchange
                .as_ref()
                .map(|x| x.not_taken_after)
                .unwrap_or(Duration::from_secs(7200));
            let timer = NewTimer {
                case_id: t.case_id.clone(),
                item: t.item.clone(),
                kind: kind::NOT_TAKEN.into(),
                department: dept.id.clone(),
                clock: TimerClock::Gateway,
                due_at: gw.clock.now_ms() + gw.clock.span_ms(wait),
                payload: json!({"file": name}),
            };
            // The item stays pending until the department's first answer file says it took it.
            let extra = Extra {
                audit,
                release: vec![delete(t)],
                timers: vec![timer],
                ..Default::default()
            };
            apply::apply(gw, &t.case_id, &[], extra)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    }
}

/// What a department's query operation said about one item.
enum Asked {
    /// It holds the item: its reports, by item.
    Found(Vec<(String, StatusReport)>),
    /// It does not know the item.
    NotFound,
    /// No usable answer (unreachable, busy, unreadable).
    Unanswered,
}

#[allow(clippy::too_many_arguments)]
async fn ask(
    gw: &Gateway,
    cfg: &Config,
    dept: &Department,
    q: &Operation,
    case: &Case,
    sub: &minijinja::Value,
    item: &str,
    audit: &mut Vec<AuditRecord>,
) -> Asked {
    let read = match exchange(
        gw,
        cfg,
        dept,
        q,
        case,
        sub,
        item,
        Extras::default(),
        false,
        audit,
    )
    .await
    {
        Sent::Answered(read) => read,
        _ => return Asked::Unanswered,
    };
    match read.outcome {
        Outcome::Ok { .. } | Outcome::Duplicate { .. } => {
            let records = q
                .query_records(&read, &case.case_id, item, None)
                .unwrap_or_default();
            let (found, _) = reports::read_all(dept, &records, Some((&case.case_id, item)));
            if found.is_empty() {
                Asked::NotFound
            } else {
                Asked::Found(found)
            }
        }
        Outcome::NotFound => Asked::NotFound,
        _ => Asked::Unanswered,
    }
}

/// Applies what a query found (after `taken`, when the push it resolves had arrived) and ends
/// the push timer, noting why in the audit trail.
async fn settle_found(
    gw: &Gateway,
    t: &Timer,
    taken: Option<Push>,
    found: Vec<(String, StatusReport)>,
    note: &str,
    mut audit: Vec<AuditRecord>,
) -> Result<(), String> {
    let Some((item, r)) = found.into_iter().next() else {
        return Ok(());
    };
    let mut inputs = Vec::new();
    if let Some(push) = taken {
        inputs.push(Input::PushTaken {
            item: item.clone(),
            push,
            reference: r.reference.clone(),
        });
    }
    inputs.extend(reports::input(gw, &item, &r));
    audit.push(AuditRecord::new(
        &t.case_id,
        Some(&item),
        Some(&t.department),
        gw.clock.now_ms(),
        "note",
        note,
        None,
    ));
    finish(gw, t, &inputs, audit).await
}

/// Ends the push timer and fails the item after `attempts` pushes.
async fn failed(
    gw: &Gateway,
    t: &Timer,
    error: String,
    attempts: u32,
    audit: Vec<AuditRecord>,
) -> Result<(), String> {
    let input = Input::PushFailed {
        item: t.item.clone(),
        error,
        attempts,
    };
    finish(gw, t, &[input], audit).await
}

/// Applies `inputs` with `audit` and ends the push timer, in one transaction.
async fn finish(
    gw: &Gateway,
    t: &Timer,
    inputs: &[Input],
    audit: Vec<AuditRecord>,
) -> Result<(), String> {
    let extra = Extra {
        audit,
        release: vec![delete(t)],
        ..Default::default()
    };
    apply::apply(gw, &t.case_id, inputs, extra)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
