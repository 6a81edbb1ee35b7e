//! Per-department limits from the mapping: requests in flight at once, requests per second, and
//! polls per minute — all in real time, whatever the drill clock says. One instance keeps them in
//! memory. Instances sharing a PostgreSQL store share them through it (`share`): a request also
//! holds one of the department's permits in the store, and starts when the store's pacing says,
//! so N instances together still send a department no more than its document allows.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::admission::{ASK, SEND};
use crate::store::Store;

pub struct Limiter {
    slots: Arc<Semaphore>,
    concurrency: u32,
    per_second: Option<Window>,
    polls_per_minute: Option<Window>,
    shared: OnceLock<Shared>,
}

/// The store's side of a department's limits.
struct Shared {
    store: Arc<Store>,
    department: String,
    instance: String,
    /// How long a permit is held at most (the request's timeout and some): a dead instance's
    /// permit frees itself then.
    hold: Duration,
}

/// A request's right to go: the local slot, and the store's permit where limits are shared
/// (given back when dropped).
pub struct Permit {
    _local: OwnedSemaphorePermit,
    _shared: Option<Held>,
}

struct Held {
    store: Arc<Store>,
    department: String,
    slot: i64,
    holder: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        let (store, department, holder) = (
            self.store.clone(),
            std::mem::take(&mut self.department),
            std::mem::take(&mut self.holder),
        );
        let slot = self.slot;
        tokio::spawn(async move {
            if let Err(e) = store.give_permit(&department, slot, &holder).await {
                tracing::warn!(%department, error = %e, "cannot give a permit back; it frees itself when its hold ends");
            }
        });
    }
}

fn real_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A sliding window of at most `max` starts per `span`.
struct Window {
    max: usize,
    span: Duration,
    starts: Mutex<std::collections::VecDeque<Instant>>,
}

impl Window {
    /// At most `max` starts per `span` as a document says, kept at 90 % of it: a request arrives
    /// a little after its start is decided (rendering, scheduling, the network), and without the
    /// margin that jitter could put one start too many inside a department's own window.
    fn new(max: u32, span: Duration) -> Window {
        Window {
            max: (max - max / 10).max(1) as usize,
            span,
            starts: Mutex::new(Default::default()),
        }
    }

    /// Waits until a start is allowed, then records it.
    async fn take(&self) {
        loop {
            let wait = {
                let mut s = self.starts.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                while s
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.span)
                {
                    s.pop_front();
                }
                if s.len() < self.max {
                    s.push_back(now);
                    return;
                }
                self.span - now.duration_since(*s.front().expect("non-empty"))
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// The even spacing of starts that keeps within the window anywhere (ms).
    fn interval_ms(&self) -> i64 {
        (self.span.as_millis() as i64 / self.max as i64).max(1)
    }
}

impl Shared {
    /// One of the department's permits; `None` if the store cannot be asked (the local limits
    /// still hold, and the failure is logged).
    async fn permit(&self) -> Option<Held> {
        let mut wait = Duration::from_millis(5);
        loop {
            let holder = format!(
                "{}:{}",
                self.instance,
                hex::encode(rand::random::<[u8; 6]>())
            );
            let now = real_ms();
            let until = now + self.hold.as_millis() as i64;
            match self
                .store
                .take_permit(&self.department, &holder, now, until)
                .await
            {
                Ok(Some(slot)) => {
                    return Some(Held {
                        store: self.store.clone(),
                        department: self.department.clone(),
                        slot,
                        holder,
                    });
                }
                Ok(None) => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_millis(100));
                }
                Err(e) => {
                    tracing::warn!(department = %self.department, error = %e, "cannot take a shared permit; local limits only");
                    return None;
                }
            }
        }
    }

    /// Waits for the start the department's pacing reserves for this request; `false` if the
    /// store cannot be asked.
    async fn pace(&self, class: &str, interval_ms: i64) -> bool {
        let now = real_ms();
        match self
            .store
            .pace(&self.department, class, interval_ms, now)
            .await
        {
            Ok(at) => {
                if at > now {
                    tokio::time::sleep(Duration::from_millis((at - now) as u64)).await;
                }
                true
            }
            Err(e) => {
                tracing::warn!(department = %self.department, error = %e, "cannot pace through the store; local limits only");
                false
            }
        }
    }
}

impl Limiter {
    pub fn new(
        concurrency: u32,
        per_second: Option<u32>,
        polls_per_minute: Option<u32>,
    ) -> Limiter {
        Limiter {
            slots: Arc::new(Semaphore::new(concurrency.max(1) as usize)),
            concurrency: concurrency.max(1),
            per_second: per_second.map(|n| Window::new(n, Duration::from_secs(1))),
            polls_per_minute: polls_per_minute.map(|n| Window::new(n, Duration::from_secs(60))),
            shared: OnceLock::new(),
        }
    }

    /// From now on, keeps the limits with every instance on `store`: sets the department's
    /// permits to its concurrency. Once per limiter.
    pub async fn share(
        &self,
        store: Arc<Store>,
        department: &str,
        instance: &str,
        hold: Duration,
    ) -> Result<(), String> {
        store
            .set_permits(department, self.concurrency)
            .await
            .map_err(|e| format!("cannot set {department}'s shared permits: {e}"))?;
        let _ = self.shared.set(Shared {
            store,
            department: department.to_string(),
            instance: instance.to_string(),
            hold,
        });
        Ok(())
    }

    /// A slot for one request (held until the permit is dropped).
    pub async fn request(&self) -> Permit {
        let local = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        let shared = match self.shared.get() {
            Some(s) => s.permit().await,
            None => None,
        };
        if let Some(w) = &self.per_second {
            let paced = match (self.shared.get(), &shared) {
                (Some(s), Some(_)) => s.pace(SEND, w.interval_ms()).await,
                _ => false,
            };
            if !paced {
                w.take().await;
            }
        }
        Permit {
            _local: local,
            _shared: shared,
        }
    }

    /// A slot for one poll: the poll budget first, then a request slot.
    pub async fn poll(&self) -> Permit {
        if let Some(w) = &self.polls_per_minute {
            let paced = match self.shared.get() {
                Some(s) => s.pace(ASK, w.interval_ms()).await,
                None => false,
            };
            if !paced {
                w.take().await;
            }
        }
        self.request().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_kept_a_tenth_under_the_documented_ones() {
        // police.md: about 20 a second, 60 queries a minute; tax.md: 30 calls a minute.
        let police = Window::new(20, Duration::from_secs(1));
        assert_eq!((police.max, police.interval_ms()), (18, 55));
        assert_eq!(Window::new(60, Duration::from_secs(60)).max, 54);
        assert_eq!(Window::new(30, Duration::from_secs(60)).interval_ms(), 2222);
        assert_eq!(Window::new(1, Duration::from_secs(60)).max, 1);
    }

    #[tokio::test]
    async fn concurrency_is_bounded() {
        let l = Limiter::new(2, None, None);
        let a = l.request().await;
        let _b = l.request().await;
        assert!(
            tokio::time::timeout(Duration::from_millis(20), l.request())
                .await
                .is_err(),
            "third waits"
        );
        drop(a);
        let _c = tokio::time::timeout(Duration::from_secs(5), l.request())
            .await
            .expect("freed slot");
    }
}
