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

/// Publishes a batch; stops at the first failure so that a case's events stay in `seq` order.
async fn publish_some(gw: &Gateway, broker: &Broker) -> Result<usize, String> {
    let batch = gw.store.unpublished(200).await.map_err(|e| e.to_string())?;
    let mut done = 0;
    for ev in &batch {
        let v: serde_json::Value = serde_json::from_str(&ev.body).unwrap_or_default();
        broker
            .publish_event(&EventMessage {
                event_id: &ev.event_id,
                case_id: &ev.case_id,
                routing_key: &ev.routing_key,
                item: v.get("item").and_then(|x| x.as_str()),
                department: v.get("department").and_then(|x| x.as_str()),
                body: ev.body.as_bytes(),
            })
            .await
            .map_err(|e| e.to_string())?;
        gw.store.mark_published(&ev.event_id, gw.clock.now_ms()).await.map_err(|e| e.to_string())?;
        super::metrics::Metrics::inc(&gw.metrics.published);
        done += 1;
    }
    Ok(done)
}
