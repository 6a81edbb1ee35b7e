//! The scheduler: claims due timers from the store (so a restart, or another instance, resumes
//! them) and runs each as its own task, bounded in number.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::dispatch;
use super::gateway::Gateway;

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
                    gw.lease,
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

/// Renews this instance's leases a few times per lease, so that work waiting for a department's
/// rate limit stays ours while we live, and is taken over soon after we die.
pub async fn heartbeat(gw: Arc<Gateway>, mut stop: watch::Receiver<bool>) {
    let every = gw.lease / 3;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let until = gw.clock.real_ms() + gw.lease.as_millis() as i64;
        if let Err(e) = gw.store.renew_leases(&gw.instance, until).await {
            tracing::warn!(error = %e, "cannot renew leases; another instance may take our work over");
        }
    }
}
