//! The outbox relay: publishes stored events in order, each with publisher confirms, and marks
//! them published only once the broker confirmed. A lost broker pauses it; nothing is skipped.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::gateway::Gateway;
use crate::broker::{Broker, EventMessage};
use crate::store::{Handed, OutboxEvent};

pub async fn run(gw: Arc<Gateway>, broker: Broker, mut stop: watch::Receiver<bool>) {
    let mut pause = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return;
        }
        match step(&gw, &broker).await {
            Ok(Step::Idle) => {
                pause = Duration::from_millis(100);
                let handed = async {
                    match gw.store.handoff() {
                        Some(h) => h.ready().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = gw.events_added.notified() => {}
                    _ = handed => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
            Ok(Step::Busy) => pause = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(error = %e, "events not published yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

enum Step {
    /// Nothing to publish for now.
    Idle,
    /// Published a batch (or went live): look again at once.
    Busy,
}

/// Events handed over at once at most.
const HANDED: usize = 1000;
/// Cases claimed from the outbox at once at most.
const CLAIMED: i64 = 500;

/// Publishes the events handed over by commits (SQLite, live) or else a batch claimed from the
/// outbox; once the outbox has nothing left, goes live.
async fn step(gw: &Arc<Gateway>, broker: &Broker) -> Result<Step, String> {
    if let Some(h) = gw.store.handoff() {
        match h.take(HANDED).await {
            Handed::Events(events) => {
                if let Err(e) = publish(gw, broker, events).await {
                    h.fall_back().await;
                    return Err(e);
                }
                return Ok(Step::Busy);
            }
            Handed::Nothing => return Ok(Step::Idle),
            Handed::ReadOutbox => {}
        }
    }
    let (token, batch) = gw
        .store
        .claim_events(&gw.instance, gw.clock.real_ms(), gw.lease, CLAIMED)
        .await
        .map_err(|e| e.to_string())?;
    if batch.is_empty() {
        let live = match gw.store.handoff() {
            Some(h) => h.go_live(&gw.store).await.map_err(|e| e.to_string())?,
            None => false,
        };
        return Ok(if live { Step::Busy } else { Step::Idle });
    }
    if let Err(e) = publish(gw, broker, batch).await {
        let _ = gw.store.release_events(&token).await;
        return Err(e);
    }
    Ok(Step::Busy)
}

/// What an event's headers repeat of its body (read without building the whole body).
#[derive(serde::Deserialize, Default)]
struct Head<'a> {
    #[serde(borrow)]
    item: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    department: Option<std::borrow::Cow<'a, str>>,
}

/// Publishes a batch: each case's events one after the other (so they stay in `seq` order), the
/// cases side by side (so confirms are awaited in parallel). A case stops at its first failure;
/// what was confirmed is marked published.
async fn publish(
    gw: &Arc<Gateway>,
    broker: &Broker,
    batch: Vec<OutboxEvent>,
) -> Result<(), String> {
    let mut cases: indexmap::IndexMap<String, Vec<OutboxEvent>> = indexmap::IndexMap::new();
    for ev in batch {
        cases.entry(ev.case_id.clone()).or_default().push(ev);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (_, events) in cases {
        let broker = broker.clone();
        tasks.spawn(async move {
            let mut done = Vec::new();
            for ev in &events {
                let head: Head = serde_json::from_str(&ev.body).unwrap_or_default();
                let sent = broker
                    .publish_event(&EventMessage {
                        event_id: &ev.event_id,
                        case_id: &ev.case_id,
                        routing_key: &ev.routing_key,
                        item: head.item.as_deref(),
                        department: head.department.as_deref(),
                        body: ev.body.as_bytes(),
                    })
                    .await;
                if let Err(e) = sent {
                    return (done, Some(e.to_string()));
                }
                done.push(ev.event_id.clone());
            }
            (done, None)
        });
    }
    let mut confirmed = Vec::new();
    let mut failure = None;
    while let Some(r) = tasks.join_next().await {
        let (done, err) = r.map_err(|e| e.to_string())?;
        confirmed.extend(done);
        failure = failure.or(err);
    }
    gw.store
        .mark_published_all(&confirmed, gw.clock.now_ms())
        .await
        .map_err(|e| e.to_string())?;
    for _ in &confirmed {
        super::metrics::Metrics::inc(&gw.metrics.published);
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
