//! The scheduler: claims due timers from the store (so a restart, or another instance, resumes
//! them) and runs each as its own task, bounded in number overall and, for work that contacts a
//! department, per department (`admission`), so that one slow or rate-limited department never
//! holds the slots the others need.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::admission::{self, InHand};
use super::dispatch;
use super::gateway::Gateway;

/// Timers running (or waiting for their department's limits) at once.
const SLOTS: usize = 256;
/// Timers claimed in one round.
const CLAIM: usize = 128;

/// What a finished task gives back: the (department, class) it counted against, if any.
pub type Key = Option<(String, String)>;

pub async fn run(gw: Arc<Gateway>, mut stop: watch::Receiver<bool>) -> JoinSet<Key> {
    let mut tasks: JoinSet<Key> = JoinSet::new();
    let mut in_hand = InHand::default();
    loop {
        if *stop.borrow() {
            return tasks;
        }
        while let Some(done) = tasks.try_join_next() {
            finished(&mut in_hand, done);
        }
        if tasks.len() >= SLOTS {
            // Every slot is busy: wait for one to free up rather than asking the store again.
            tokio::select! {
                done = tasks.join_next() => finished(&mut in_hand, done.expect("not empty")),
                _ = stop.wait_for(|s| *s) => return tasks,
            }
            continue;
        }
        let rooms = in_hand.rooms(&gw.config());
        let admit = admission::admit(&rooms);
        let free = (SLOTS - tasks.len()).min(CLAIM) as i64;
        let now = (gw.clock.now_ms(), gw.clock.real_ms());
        match gw
            .store
            .claim_due(now, &gw.instance, gw.lease, free, admit)
            .await
        {
            Ok(timers) if !timers.is_empty() => {
                for t in timers {
                    let key = in_hand.took(&t.kind, &t.department);
                    let gw = gw.clone();
                    tasks.spawn(async move {
                        dispatch::handle(gw, t).await;
                        key
                    });
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read timers"),
        }
        let wait = next_wait(&gw, admit).await;
        // A task that ends may free a department's room: look again then too.
        let running = !tasks.is_empty();
        tokio::select! {
            _ = gw.timers_added.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            done = tasks.join_next(), if running => finished(&mut in_hand, done.expect("not empty")),
            _ = stop.wait_for(|s| *s) => return tasks,
        }
    }
}

fn finished(in_hand: &mut InHand, done: Result<Key, tokio::task::JoinError>) {
    match done {
        Ok(Some(key)) => in_hand.done(&key),
        Ok(None) => {}
        // A panicked task's count is lost with it; its timer runs again after its lease.
        Err(e) => tracing::error!(error = %e, "a timer's task ended abnormally"),
    }
}

/// Until the earliest timer that may be claimed (in real time), at most a second.
async fn next_wait(gw: &Gateway, admit: crate::store::Admit<'_>) -> Duration {
    let cap = Duration::from_secs(1);
    match gw.store.next_due(admit).await {
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
