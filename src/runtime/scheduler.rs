//! The scheduler: claims due timers from the store (so a restart, or another instance, resumes
//! them) and runs each as its own task, bounded in number overall and, for work that contacts a
//! department, per department (`admission`), so that one slow or rate-limited department never
//! holds the slots the others need.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{Id, JoinError, JoinSet};

use super::admission::{self, InHand};
use super::dispatch;
use super::gateway::Gateway;
use super::rounds::Rounds;

/// Timers running (or waiting for their department's limits) at once.
const SLOTS: usize = 256;
/// Timers claimed in one round.
const CLAIM: usize = 128;
/// Rounds start at most this often (`rounds.rs`): under load every timer that ends or is added
/// woke the loop for a read and a write of the store, some 150 times a second.
const ROUND: Duration = Duration::from_millis(10);

/// The running timers' tasks, and what each counts against (department, class) until it ends,
/// whether it ends well or by a panic.
#[derive(Default)]
struct Running {
    tasks: JoinSet<()>,
    keys: HashMap<Id, (String, String)>,
    in_hand: InHand,
}

impl Running {
    fn finished(&mut self, done: Result<(Id, ()), JoinError>) {
        let id = match done {
            Ok((id, ())) => id,
            Err(e) => {
                tracing::error!(error = %e, "a timer's task ended abnormally; its timer runs again after its lease");
                e.id()
            }
        };
        if let Some(key) = self.keys.remove(&id) {
            self.in_hand.done(&key);
        }
    }
}

pub async fn run(gw: Arc<Gateway>, mut stop: watch::Receiver<bool>) -> JoinSet<()> {
    let mut r = Running::default();
    let mut rounds = Rounds::new(ROUND);
    loop {
        if !rounds.start(&mut stop).await {
            return r.tasks;
        }
        while let Some(done) = r.tasks.try_join_next_with_id() {
            r.finished(done);
        }
        if r.tasks.len() >= SLOTS {
            // Every slot is busy: wait for one to free up rather than asking the store again.
            tokio::select! {
                done = r.tasks.join_next_with_id() => r.finished(done.expect("not empty")),
                _ = stop.wait_for(|s| *s) => return r.tasks,
            }
            continue;
        }
        let rooms = r.in_hand.rooms(&gw.config());
        let admit = admission::admit(&rooms);
        let free = (SLOTS - r.tasks.len()).min(CLAIM) as i64;
        let now = (gw.clock.now_ms(), gw.clock.real_ms());
        let began = std::time::Instant::now();
        let claimed = gw
            .store
            .claim_due(now, &gw.instance, gw.lease, free, admit)
            .await;
        tracing::debug!(
            asked = free,
            claimed = claimed.as_ref().map(Vec::len).unwrap_or(0),
            running = r.tasks.len(),
            ms = began.elapsed().as_secs_f64() * 1e3,
            "claimed due timers"
        );
        match claimed {
            Ok(timers) if !timers.is_empty() => {
                // Fewer than asked for: nothing else is claimable now, so wait for news rather
                // than ask again at once (with a department's backlog waiting for its limits,
                // every claim reads past that backlog).
                let all = (timers.len() as i64) < free;
                for t in timers {
                    let key = r.in_hand.took(&t.kind, &t.department);
                    let gw = gw.clone();
                    let id = r.tasks.spawn(dispatch::handle(gw, t)).id();
                    if let Some(key) = key {
                        r.keys.insert(id, key);
                    }
                }
                if !all {
                    continue;
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read timers"),
        }
        let wait = next_wait(&gw, admit).await;
        // A task that ends may free a department's room: look again then too.
        let running = !r.tasks.is_empty();
        tokio::select! {
            _ = gw.timers_added.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            done = r.tasks.join_next_with_id(), if running => r.finished(done.expect("not empty")),
            _ = stop.wait_for(|s| *s) => return r.tasks,
        }
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
