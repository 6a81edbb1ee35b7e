//! The outbox relay: publishes stored events in order, each with publisher confirms, and marks
//! them published only once the broker confirmed. A lost broker pauses it; nothing is skipped.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::gateway::Gateway;
use crate::broker::{Broker, EventMessage};

pub async fn run(gw: Arc<Gateway>, broker: Broker, mut stop: watch::Receiver<bool>) {
    let mut pause = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return;
        }
        match publish_some(&gw, &broker).await {
            Ok(0) => {
                pause = Duration::from_millis(100);
                tokio::select! {
                    _ = gw.events_added.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
            Ok(_) => pause = Duration::from_millis(100),
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
async fn publish_some(gw: &Arc<Gateway>, broker: &Broker) -> Result<usize, String> {
    let (token, batch) = gw
        .store
        .claim_events(&gw.instance, gw.clock.real_ms(), gw.lease, 500)
        .await
        .map_err(|e| e.to_string())?;
    let mut cases: indexmap::IndexMap<String, Vec<crate::store::OutboxEvent>> =
        indexmap::IndexMap::new();
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
        Some(e) => {
            let _ = gw.store.release_events(&token).await;
            Err(e)
        }
        None => Ok(confirmed.len()),
    }
}
