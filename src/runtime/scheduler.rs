//! The scheduler: claims due timers from the store (so a restart, or another instance, resumes
//! them) and runs each as its own task, bounded in number.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::dispatch;
use super::gateway::Gateway;

/// How long a claimed timer is ours before another instance may take it over. Long enough for a
/// request that waits for its department's rate limit (an instance that restarts frees its own
/// leases at once).
pub const LEASE: Duration = Duration::from_secs(600);

pub async fn run(gw: Arc<Gateway>, mut stop: watch::Receiver<bool>) -> JoinSet<()> {
    let slots = Arc::new(Semaphore::new(256));
    let mut tasks = JoinSet::new();
    loop {
        if *stop.borrow() {
            return tasks;
        }
        while tasks.try_join_next().is_some() {}
        if slots.available_permits() == 0 {
            // Every slot is busy: wait for one to free up rather than asking the store again.
            tokio::select! {
                _ = tasks.join_next() => {}
                _ = stop.wait_for(|s| *s) => return tasks,
            }
            continue;
        }
        let free = slots.available_permits().min(128) as i64;
        let claimed = if free > 0 {
            gw.store
                .claim_due(
                    gw.clock.now_ms(),
                    gw.clock.real_ms(),
                    &gw.instance,
                    LEASE,
                    free,
                )
                .await
        } else {
            Ok(Vec::new())
        };
        match claimed {
            Ok(timers) if !timers.is_empty() => {
                for t in timers {
                    let permit = slots
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("semaphore never closed");
                    let gw = gw.clone();
                    tasks.spawn(async move {
                        dispatch::handle(gw, t).await;
                        drop(permit);
                    });
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read timers"),
        }
        let wait = next_wait(&gw).await;
        tokio::select! {
            _ = gw.timers_added.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return tasks,
        }
    }
}

/// Until the earliest timer (in real time), at most a second.
async fn next_wait(gw: &Gateway) -> Duration {
    let cap = Duration::from_secs(1);
    match gw.store.next_due().await {
        Ok((g, r)) => {
            let g = g.map(|ms| gw.clock.real_wait_until(ms)).unwrap_or(cap);
            let r = r
                .map(|ms| Duration::from_millis((ms - gw.clock.real_ms()).max(0) as u64))
                .unwrap_or(cap);
            g.min(r).min(cap).max(Duration::from_millis(5))
        }
        Err(_) => cap,
    }
}
