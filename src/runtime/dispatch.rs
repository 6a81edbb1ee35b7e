//! Carrying out durable timers: pushes (with retries, back-off, `Retry-After`, and resolution of
//! unknown outcomes through the query operation before any new push), withdrawals, queries, polls,
//! deadlines and untaken files. Every outcome is stored with the timer's release in one transaction.

use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use serde_json::{Value, json};

use super::apply::{self, Extra, kind};
use super::exchange_op::{Sent, exchange};
use super::gateway::{Config, Gateway};
use super::render::{Extras, submission_value};
use super::reports;
use crate::engine::{Case, Input, Status, WithdrawAnswer};
use crate::mapping::answer::Outcome;
use crate::mapping::department::Department;
use crate::model::mask::Personal;
use crate::store::{AuditRecord, Release, StoredCase, Timer, TimerClock};

/// Handles one claimed timer; errors are logged and the lease lets it run again later.
pub async fn handle(gw: Arc<Gateway>, t: Timer) {
    let r = match t.kind.as_str() {
        kind::PUSH => super::push::push(&gw, &t).await,
        kind::WITHDRAW => withdraw(&gw, &t).await,
        kind::QUERY | kind::POLL => poll(&gw, &t).await,
        kind::ACCEPT | kind::COMPLETE => deadline(&gw, &t).await,
        kind::NOT_TAKEN => not_taken(&gw, &t).await,
        other => Err(format!("unknown timer kind `{other}`")),
    };
    if let Err(e) = r {
        // The error may quote a department's answer: mask the case's people in it.
        let personal = match gw.store.load(&t.case_id).await {
            Ok(Some(c)) => serde_json::from_str(&c.submission)
                .map(|v| Personal::of(&v))
                .unwrap_or_default(),
            _ => Personal::default(),
        };
        let e = personal.mask(&e);
        tracing::error!(case_id = %t.case_id, item = %t.item, department = %t.department, kind = %t.kind, error = %e, "timer failed; will run again after one lease");
        let until = gw.clock.real_ms() + gw.lease.as_millis() as i64;
        if let Err(e) = gw.store.defer(t.id, &t.token, until).await {
            tracing::warn!(error = %e, "cannot defer the failed timer; it runs again when its lease ends");
        }
    }
}

pub(super) fn delete(t: &Timer) -> Release {
    Release::Delete {
        id: t.id,
        token: t.token.clone(),
    }
}

pub(super) fn later(t: &Timer, due_at: i64, payload: Value) -> Release {
    Release::Reschedule {
        id: t.id,
        token: t.token.clone(),
        due_at,
        payload,
    }
}

/// Exponential back-off with jitter for the `attempt`-th retry (0-based).
pub fn backoff(dept: &Department, attempt: u32) -> Duration {
    backon::ExponentialBuilder::default()
        .with_min_delay(dept.limits.retry_initial)
        .with_max_delay(dept.limits.retry_max)
        .with_jitter()
        .with_max_times(attempt as usize + 1)
        .build()
        .nth(attempt as usize)
        .unwrap_or(dept.limits.retry_max)
}

pub(super) async fn store_only(
    gw: &Gateway,
    t: &Timer,
    release: Release,
    audit: Vec<AuditRecord>,
) -> Result<(), String> {
    let extra = Extra {
        audit,
        release: vec![release],
        ..Default::default()
    };
    match apply::apply(gw, &t.case_id, &[], extra)
        .await
        .map_err(|e| e.to_string())?
    {
        Some(_) => Ok(()),
        None => gw
            .store
            .release(&[delete(t)])
            .await
            .map_err(|e| e.to_string()),
    }
}

pub(super) async fn load(gw: &Gateway, t: &Timer) -> Result<Option<StoredCase>, String> {
    let stored = gw.store.load(&t.case_id).await.map_err(|e| e.to_string())?;
    if stored.is_none() {
        gw.store
            .release(&[delete(t)])
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(stored)
}

/// The withdrawal reason to send: the case's withdrawal, else (a cancelled dependant) a note.
fn reason(case: &Case) -> String {
    case.withdrawal
        .as_ref()
        .map(|w| w.reason.clone())
        .unwrap_or_else(|| "前置事项未获准予，撤销办理".to_string())
}

async fn withdraw(gw: &Gateway, t: &Timer) -> Result<(), String> {
    let cfg = gw.config();
    let Some(stored) = load(gw, t).await? else {
        return Ok(());
    };
    let case = &stored.state;
    let dept = cfg.department(&t.department).ok_or("unknown department")?;
    let Some(op) = dept.items.get(&t.item).and_then(|o| o.withdraw.as_ref()) else {
        return gw
            .store
            .release(&[delete(t)])
            .await
            .map_err(|e| e.to_string());
    };
    let attempts = t
        .payload
        .get("attempts")
        .and_then(Value::as_u64)
        .unwrap_or(0) as u32;
    let sub = submission_value(&stored.submission);
    let why = reason(case);
    let mut audit = Vec::new();
    let open = case
        .items
        .get(&t.item)
        .is_some_and(|i| !i.status.is_final());
    let answered = |a: WithdrawAnswer| {
        open.then(|| Input::WithdrawAnswered {
            item: t.item.clone(),
            answer: a,
        })
    };
    let outcome = exchange(
        gw,
        &cfg,
        dept,
        op,
        case,
        &sub,
        &t.item,
        Extras {
            reason: Some(&why),
            ..Default::default()
        },
        false,
        &mut audit,
    )
    .await;
    // A withdrawal may be repeated safely: on anything but an answer, keep trying at the back-off's
    // pace (`Retry-After` when the department says).
    let retry = |after: Option<u64>, audit: Vec<AuditRecord>| {
        let wait = backoff(dept, attempts.min(16)).max(Duration::from_secs(after.unwrap_or(0)));
        let due = gw.clock.real_ms() + wait.as_millis() as i64;
        store_only(
            gw,
            t,
            later(t, due, json!({"attempts": attempts + 1})),
            audit,
        )
    };
    let input = match outcome {
        Sent::Answered(read) => match read.outcome {
            Outcome::Ok { .. } | Outcome::Duplicate { .. } => answered(WithdrawAnswer::Done),
            Outcome::NotFound => answered(WithdrawAnswer::NotFound),
            Outcome::Finished | Outcome::Permanent { .. } => answered(WithdrawAnswer::Finished),
            Outcome::Retry { after_secs, .. } => return retry(after_secs, audit).await,
            Outcome::Unauthorized | Outcome::Unrecognised { .. } => {
                return retry(None, audit).await;
            }
        },
        Sent::NotSent(_) | Sent::Unknown(_) => return retry(None, audit).await,
        Sent::RenderFailed(_) => answered(WithdrawAnswer::Finished),
        // The answer comes back as a file.
        Sent::Filed(_) => None,
    };
    let extra = Extra {
        audit,
        release: vec![delete(t)],
        ..Default::default()
    };
    let inputs: Vec<Input> = input.into_iter().collect();
    apply::apply(gw, &t.case_id, &inputs, extra)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A poll (or the query after a refused withdrawal): asks about one item, applies what changed,
/// and asks again later — less often while nothing changes. Departments with a batch query are
/// asked about every due item at once.
async fn poll(gw: &Gateway, t: &Timer) -> Result<(), String> {
    let cfg = gw.config();
    if t.kind == kind::POLL
        && let Some(dept) = cfg.department(&t.department)
        && dept.batch_query.is_some()
    {
        return poll_batch(gw, &cfg, dept, t).await;
    }
    let Some(stored) = load(gw, t).await? else {
        return Ok(());
    };
    let case = &stored.state;
    let dept = cfg.department(&t.department).ok_or("unknown department")?;
    let open = case
        .items
        .get(&t.item)
        .is_some_and(|i| !i.status.is_final());
    let op = dept.items.get(&t.item).and_then(|o| o.query.as_ref());
    let (true, Some(op)) = (open, op) else {
        return gw
            .store
            .release(&[delete(t)])
            .await
            .map_err(|e| e.to_string());
    };
    let quiet = t.payload.get("quiet").and_then(Value::as_u64).unwrap_or(0) as u32;
    let sub = submission_value(&stored.submission);
    let reference = case.items[&t.item].department_ref.clone();
    let mut audit = Vec::new();
    let outcome = exchange(
        gw,
        &cfg,
        dept,
        op,
        case,
        &sub,
        &t.item,
        Extras::default(),
        true,
        &mut audit,
    )
    .await;
    let mut inputs = Vec::new();
    if let Sent::Answered(read) = &outcome
        && let Outcome::Retry {
            after_secs: Some(secs),
            ..
        } = read.outcome
    {
        return wait_as_told(gw, t, secs, audit).await;
    }
    if let Sent::Answered(read) = &outcome
        && matches!(read.outcome, Outcome::Ok { .. } | Outcome::Duplicate { .. })
    {
        let records = op
            .query_records(read, &case.case_id, &t.item, reference.as_deref())
            .unwrap_or_default();
        let (found, bad) = reports::read_all(dept, &records, Some((&case.case_id, &t.item)));
        for e in bad {
            audit.push(AuditRecord::new(
                &case.case_id,
                Some(&t.item),
                Some(&dept.id),
                gw.clock.now_ms(),
                "poll",
                format!("unreadable report: {e}"),
                None,
            ));
        }
        for (item, r) in &found {
            inputs.extend(reports::input(gw, item, r));
        }
    }
    settle(gw, dept, t, quiet, &inputs, audit).await
}

/// The department said when to ask again (`Retry-After`): the next look waits that long.
async fn wait_as_told(
    gw: &Gateway,
    t: &Timer,
    secs: u64,
    audit: Vec<AuditRecord>,
) -> Result<(), String> {
    let due = match t.clock {
        TimerClock::Gateway => gw.clock.now_ms() + gw.clock.real_span_ms(Duration::from_secs(secs)),
        TimerClock::Real => gw.clock.real_ms() + secs as i64 * 1000,
    };
    store_only(gw, t, later(t, due, t.payload.clone()), audit).await
}

/// Applies what a poll found and schedules the next look: the poll interval, doubled (up to 8×)
/// for each look that found nothing new; none once the item is final.
async fn settle(
    gw: &Gateway,
    dept: &Department,
    t: &Timer,
    quiet: u32,
    inputs: &[Input],
    audit: Vec<AuditRecord>,
) -> Result<(), String> {
    let applied = apply::apply(
        gw,
        &t.case_id,
        inputs,
        Extra {
            audit,
            ..Default::default()
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let changed = applied.as_ref().is_some_and(|a| !a.events.is_empty());
    let still_open = applied.as_ref().is_some_and(|a| {
        a.case
            .items
            .get(&t.item)
            .is_some_and(|i| !i.status.is_final())
    });
    if !still_open {
        return gw
            .store
            .release(&[delete(t)])
            .await
            .map_err(|e| e.to_string());
    }
    let quiet = if changed { 0 } else { (quiet + 1).min(3) };
    let base = if t.kind == kind::QUERY {
        dept.limits.retry_initial
    } else {
        dept.limits.poll_interval
    };
    let due = match t.clock {
        TimerClock::Gateway => gw.clock.now_ms() + gw.clock.span_ms(base * (1 << quiet)),
        TimerClock::Real => gw.clock.real_ms() + (base * (1 << quiet)).as_millis() as i64,
    };
    gw.store
        .release(&[later(t, due, json!({"quiet": quiet}))])
        .await
        .map_err(|e| e.to_string())
}

/// One batch query for every due poll of the department (up to its batch size), by reference.
async fn poll_batch(
    gw: &Gateway,
    cfg: &Config,
    dept: &Department,
    first: &Timer,
) -> Result<(), String> {
    let op = dept.batch_query.as_ref().expect("batch department");
    // Another task is asking about every due item of this department right now: look again later.
    let Some(_batch) = cfg
        .batch_polls
        .get(&dept.id)
        .and_then(|m| m.try_lock().ok())
    else {
        let due = gw.clock.now_ms() + gw.clock.span_ms(dept.limits.poll_interval);
        return gw
            .store
            .release(&[later(first, due, first.payload.clone())])
            .await
            .map_err(|e| e.to_string());
    };
    // The department's poll budget first: whatever falls due while waiting for it joins the batch.
    let permit = cfg.permit(&dept.id, true).await;
    let size = op.batch_size.unwrap_or(100).max(1) as i64;
    let now = (gw.clock.now_ms(), gw.clock.real_ms());
    let mut timers = vec![first.clone()];
    timers.extend(
        gw.store
            .claim_kind(kind::POLL, &dept.id, now, &gw.instance, gw.lease, size - 1)
            .await
            .map_err(|e| e.to_string())?,
    );
    // The cases behind the timers; items without a reference yet wait for the next round.
    let mut asked = Vec::new();
    for t in timers {
        let Some(stored) = load(gw, &t).await? else {
            continue;
        };
        let reference = stored
            .state
            .items
            .get(&t.item)
            .filter(|i| !i.status.is_final())
            .and_then(|i| i.department_ref.clone());
        match reference {
            Some(r) => asked.push((t, stored, r)),
            None => settle(gw, dept, &t, 0, &[], Vec::new()).await?,
        }
    }
    let Some((t0, s0, _)) = asked.first() else {
        return Ok(());
    };
    let refs: Vec<String> = asked.iter().map(|(_, _, r)| r.clone()).collect();
    let sub = submission_value(&s0.submission);
    let mut audit = Vec::new();
    let outcome = exchange(
        gw,
        cfg,
        dept,
        op,
        &s0.state,
        &sub,
        &t0.item,
        Extras {
            refs: Some(refs),
            permitted: true,
            ..Default::default()
        },
        true,
        &mut audit,
    )
    .await;
    drop(permit);
    let mut found = Vec::new();
    if let Sent::Answered(read) = &outcome
        && matches!(read.outcome, Outcome::Ok { .. } | Outcome::Duplicate { .. })
    {
        let records = op.query_records(read, "", "", None).unwrap_or_default();
        let (ok, bad) = reports::read_all(dept, &records, None);
        for e in bad {
            tracing::warn!(department = %dept.id, error = %e, "unreadable record in a batch answer");
        }
        found = ok;
    }
    for (i, (t, stored, _)) in asked.iter().enumerate() {
        let inputs: Vec<Input> = found
            .iter()
            .filter(|(item, r)| r.case_id == stored.state.case_id && *item == t.item)
            .filter_map(|(item, r)| reports::input(gw, item, r))
            .collect();
        let quiet = t.payload.get("quiet").and_then(Value::as_u64).unwrap_or(0) as u32;
        let audit = if i == 0 {
            std::mem::take(&mut audit)
        } else {
            Vec::new()
        };
        settle(gw, dept, t, quiet, &inputs, audit).await?;
    }
    Ok(())
}

async fn deadline(gw: &Gateway, t: &Timer) -> Result<(), String> {
    let inputs: Vec<Input> = apply::overdue_input(&t.item, &t.kind, &t.payload)
        .into_iter()
        .collect();
    let extra = Extra {
        release: vec![delete(t)],
        ..Default::default()
    };
    match apply::apply(gw, &t.case_id, &inputs, extra)
        .await
        .map_err(|e| e.to_string())?
    {
        Some(a) => {
            for ev in &a.events {
                gw.metrics
                    .overdue(&t.department, ev.detail["limit"].as_str().unwrap_or(""));
                tracing::warn!(case_id = %t.case_id, item = %t.item, department = %t.department, detail = %ev.detail, "item overdue (督办)");
            }
            Ok(())
        }
        None => gw
            .store
            .release(&[delete(t)])
            .await
            .map_err(|e| e.to_string()),
    }
}

async fn not_taken(gw: &Gateway, t: &Timer) -> Result<(), String> {
    let Some(stored) = load(gw, t).await? else {
        return Ok(());
    };
    let waiting = stored
        .state
        .items
        .get(&t.item)
        .is_some_and(|i| i.status < Status::Dispatched && i.in_flight.is_some());
    let inputs = if waiting {
        vec![Input::PushFailed {
            item: t.item.clone(),
            error: "not taken".into(),
            attempts: 1,
        }]
    } else {
        Vec::new()
    };
    let extra = Extra {
        release: vec![delete(t)],
        ..Default::default()
    };
    apply::apply(gw, &t.case_id, &inputs, extra)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
