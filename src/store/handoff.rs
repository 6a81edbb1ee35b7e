//! SQLite: the events each commit wrote, handed to the relay in memory. One instance owns a
//! SQLite file, so the relay need not find its work in the outbox: reading every event back and
//! leasing it rewrote each event's row once more and read its body again. The outbox stays the
//! record: an event is marked published there once the broker confirmed it, and whatever a
//! crash, a broker outage or an overflow left unpublished is found there again.
//!
//! The relay starts by reading the outbox (`claim_events`, as on PostgreSQL). Once that finds
//! nothing, it goes *live*: from then on every commit hands its events over, in commit order.
//! Going live and committing take one lock, so no commit falls between the relay's last look at
//! the outbox and the first handed-over event. A publish that fails, or a relay that falls more
//! than `CAP` events behind, ends the live spell: what was not handed over is read from the
//! outbox again, after what was.

use std::collections::VecDeque;

use tokio::sync::{Mutex, MutexGuard, Notify};

use super::{OutboxEvent, Result, Store};

/// Events waiting for the relay at most (some 600 bytes each); past it, the relay reads the
/// outbox again.
const CAP: usize = 20_000;

#[derive(Default)]
pub struct Handoff {
    state: Mutex<Waiting>,
    ready: Notify,
}

#[derive(Default)]
pub(super) struct Waiting {
    live: bool,
    events: VecDeque<OutboxEvent>,
}

/// What the relay finds.
pub enum Handed {
    /// Events in commit order.
    Events(Vec<OutboxEvent>),
    /// None waiting, and commits hand theirs over: wait for `ready`.
    Nothing,
    /// Not live: read the outbox.
    ReadOutbox,
}

impl Waiting {
    /// After a commit: its events, if live and there is room; else the live spell ends.
    pub(super) fn push(&mut self, events: Vec<OutboxEvent>) -> bool {
        if !self.live || events.is_empty() {
            return false;
        }
        if self.events.len() + events.len() > CAP {
            tracing::warn!(
                waiting = self.events.len(),
                "the relay fell behind; it reads further events from the outbox"
            );
            self.live = false;
            return false;
        }
        self.events.extend(events);
        true
    }
}

impl Handoff {
    /// Held from before a commit until its events are handed over.
    pub(super) async fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.state.lock().await
    }

    /// Wakes the relay after `push`.
    pub(super) fn notify(&self) {
        self.ready.notify_one();
    }

    /// Up to `max` waiting events, oldest first.
    pub async fn take(&self, max: usize) -> Handed {
        let mut w = self.state.lock().await;
        if w.events.is_empty() {
            return if w.live {
                Handed::Nothing
            } else {
                Handed::ReadOutbox
            };
        }
        let n = max.min(w.events.len());
        Handed::Events(w.events.drain(..n).collect())
    }

    /// Until a commit hands events over.
    pub async fn ready(&self) {
        self.ready.notified().await
    }

    /// Goes live if the outbox holds no unpublished event; whether it did.
    pub async fn go_live(&self, store: &Store) -> Result<bool> {
        let mut w = self.state.lock().await;
        if !w.live && w.events.is_empty() && store.unpublished(1).await?.is_empty() {
            w.live = true;
        }
        Ok(w.live)
    }

    /// Ends the live spell (a publish failed): the waiting events are read from the outbox again.
    pub async fn fall_back(&self) {
        let mut w = self.state.lock().await;
        w.live = false;
        w.events.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: i64) -> OutboxEvent {
        OutboxEvent {
            event_id: format!("c:{seq}"),
            case_id: "c".into(),
            seq,
            routing_key: "case.received".into(),
            body: "{}".into(),
        }
    }

    #[test]
    fn events_are_kept_only_while_live_and_within_the_cap() {
        let mut w = Waiting::default();
        assert!(!w.push(vec![event(1)]), "not live: left in the outbox");
        w.live = true;
        assert!(w.push(vec![event(1), event(2)]));
        assert_eq!(w.events.len(), 2);
        let over: Vec<OutboxEvent> = (3..CAP as i64 + 2).map(event).collect();
        assert!(!w.push(over), "past the cap");
        assert!(!w.live, "the live spell ended");
        assert!(!w.push(vec![event(9)]));
        assert_eq!(w.events.len(), 2, "what was handed over stays, in order");
    }
}
