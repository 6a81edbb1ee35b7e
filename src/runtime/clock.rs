//! The gateway's clock. With `ONETHING_TIME_WARP=N` (a drill) it runs N times faster than real time
//! from start-up: timers, deadlines, poll intervals and the timestamps the gateway writes follow it;
//! retry back-off, network timeouts and signature timestamps stay on real time.

use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Utc};

use crate::model::time::cst;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    started: Instant,
    started_wall: DateTime<FixedOffset>,
    warp: f64,
}

impl Clock {
    pub fn new(warp: f64) -> Clock {
        Clock {
            started: Instant::now(),
            started_wall: Utc::now().with_timezone(&cst()),
            warp: if warp.is_finite() && warp >= 1.0 {
                warp
            } else {
                1.0
            },
        }
    }

    pub fn warp(&self) -> f64 {
        self.warp
    }

    /// The gateway's time.
    pub fn now(&self) -> DateTime<FixedOffset> {
        let real = self.started.elapsed().as_secs_f64() * self.warp;
        self.started_wall + chrono::Duration::microseconds((real * 1e6) as i64)
    }

    /// Wall-clock time.
    pub fn real_now(&self) -> DateTime<FixedOffset> {
        Utc::now().with_timezone(&cst())
    }

    pub fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }

    pub fn real_ms(&self) -> i64 {
        Utc::now().timestamp_millis()
    }

    /// How long to wait in real time until the gateway's clock shows `gateway_ms`.
    pub fn real_wait_until(&self, gateway_ms: i64) -> Duration {
        let ahead = (gateway_ms - self.now_ms()).max(0) as f64 / self.warp;
        Duration::from_millis(ahead as u64)
    }

    /// A gateway-clock span for a duration of the mapping (poll intervals, quiet periods): it
    /// passes `warp` times faster under a drill.
    pub fn span_ms(&self, d: Duration) -> i64 {
        d.as_millis() as i64
    }

    /// The gateway-clock span that lasts `d` of real time (a department's `Retry-After`).
    pub fn real_span_ms(&self, d: Duration) -> i64 {
        (d.as_millis() as f64 * self.warp) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drill_clock_runs_faster_and_waits_shorter() {
        let c = Clock::new(3600.0);
        let later = c.now_ms() + 3_600_000;
        let wait = c.real_wait_until(later);
        assert!(wait <= Duration::from_millis(1000), "{wait:?}");
        assert!(
            Clock::new(0.5).warp() == 1.0,
            "a clock never runs slower than real time"
        );
    }
}
