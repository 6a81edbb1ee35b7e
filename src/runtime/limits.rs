//! Per-department limits from the mapping: requests in flight at once, requests per second, and
//! polls per minute — all in real time, whatever the drill clock says.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Limiter {
    slots: std::sync::Arc<Semaphore>,
    per_second: Option<Window>,
    polls_per_minute: Option<Window>,
}

/// A sliding window of at most `max` starts per `span`.
struct Window {
    max: usize,
    span: Duration,
    starts: Mutex<std::collections::VecDeque<Instant>>,
}

impl Window {
    fn new(max: u32, span: Duration) -> Window {
        Window {
            max: max.max(1) as usize,
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
}

impl Limiter {
    pub fn new(
        concurrency: u32,
        per_second: Option<u32>,
        polls_per_minute: Option<u32>,
    ) -> Limiter {
        Limiter {
            slots: std::sync::Arc::new(Semaphore::new(concurrency.max(1) as usize)),
            per_second: per_second.map(|n| Window::new(n, Duration::from_secs(1))),
            polls_per_minute: polls_per_minute.map(|n| Window::new(n, Duration::from_secs(60))),
        }
    }

    /// A slot for one request (held until the permit is dropped).
    pub async fn request(&self) -> OwnedSemaphorePermit {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        if let Some(w) = &self.per_second {
            w.take().await;
        }
        permit
    }

    /// A slot for one poll: the poll budget first, then a request slot.
    pub async fn poll(&self) -> OwnedSemaphorePermit {
        if let Some(w) = &self.polls_per_minute {
            w.take().await;
        }
        self.request().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
