//! The pace of a loop that asks the store for work (the scheduler): rounds start at most every
//! so often. Under load every change wakes such a loop, and each round costs reads and
//! a write of the store whatever it finds; gathering the wakes of a moment into one round makes
//! the rounds fewer and fuller. Idle, a round still starts at once.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

pub struct Rounds {
    every: Duration,
    last: Option<Instant>,
}

impl Rounds {
    pub fn new(every: Duration) -> Rounds {
        Rounds { every, last: None }
    }

    /// Waits until the next round may start and starts it; `false`: `stop` was set first.
    pub async fn start(&mut self, stop: &mut watch::Receiver<bool>) -> bool {
        if let Some(last) = self.last {
            tokio::select! {
                _ = tokio::time::sleep_until(last + self.every) => {}
                _ = stop.wait_for(|s| *s) => return false,
            }
        }
        self.last = Some(Instant::now());
        !*stop.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_round_starts_at_once_then_no_sooner_than_its_pace_allows() {
        let (_set, mut stop) = watch::channel(false);
        let mut rounds = Rounds::new(Duration::from_millis(10));
        let t0 = Instant::now();
        assert!(rounds.start(&mut stop).await);
        assert_eq!(t0.elapsed(), Duration::ZERO);
        assert!(rounds.start(&mut stop).await);
        assert_eq!(t0.elapsed(), Duration::from_millis(10));
        tokio::time::advance(Duration::from_millis(30)).await;
        let t1 = Instant::now();
        assert!(rounds.start(&mut stop).await);
        assert_eq!(
            t1.elapsed(),
            Duration::ZERO,
            "a round long after the last waits for nothing"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stop_ends_the_wait() {
        let (set, mut stop) = watch::channel(false);
        let mut rounds = Rounds::new(Duration::from_secs(3600));
        assert!(rounds.start(&mut stop).await);
        set.send(true).unwrap();
        assert!(!rounds.start(&mut stop).await);
    }
}
