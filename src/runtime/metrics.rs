//! Counters for `/metrics` (Prometheus text format).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub consumed: AtomicU64,
    pub published: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub unknown_case_reports: AtomicU64,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// (department, limit) → overdue events.
    overdue: Mutex<BTreeMap<(String, String), u64>>,
    /// (department, outcome) → pushes.
    pushes: Mutex<BTreeMap<(String, String), u64>>,
    /// department → (bucket upper bounds in seconds, counts, sum, total).
    latency: Mutex<BTreeMap<String, Histogram>>,
}

const BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; 10],
    sum: f64,
    total: u64,
}

impl Metrics {
    pub fn push(&self, department: &str, outcome: &str, seconds: f64) {
        *self
            .pushes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((department.to_string(), outcome.to_string()))
            .or_default() += 1;
        let mut l = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let h = l.entry(department.to_string()).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += seconds;
        h.total += 1;
    }

    pub fn overdue(&self, department: &str, limit: &str) {
        *self
            .overdue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((department.to_string(), limit.to_string()))
            .or_default() += 1;
    }

    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition; `gauges` are computed by the caller (open items, overdue…).
    pub fn render(&self, gauges: &[(String, f64)]) -> String {
        let mut s = String::new();
        let c = |s: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        c(
            &mut s,
            "onething_messages_consumed_total",
            "Inbound messages taken from the intake queue.",
            self.consumed.load(Ordering::Relaxed),
        );
        c(
            &mut s,
            "onething_events_published_total",
            "Events confirmed by the broker.",
            self.published.load(Ordering::Relaxed),
        );
        c(
            &mut s,
            "onething_dead_lettered_total",
            "Inbound messages dead-lettered.",
            self.dead_lettered.load(Ordering::Relaxed),
        );
        c(
            &mut s,
            "onething_unknown_case_reports_total",
            "Department reports for cases the gateway does not know.",
            self.unknown_case_reports.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            s,
            "# HELP onething_reloads_total Configuration reloads (SIGHUP) by result.\n# TYPE onething_reloads_total counter\n\
             onething_reloads_total{{result=\"ok\"}} {}\nonething_reloads_total{{result=\"refused\"}} {}",
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_failed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP onething_pushes_total Requests to departments by outcome.\n# TYPE onething_pushes_total counter"
        );
        for ((d, o), v) in self.pushes.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(
                s,
                "onething_pushes_total{{department=\"{d}\",outcome=\"{o}\"}} {v}"
            );
        }
        let _ = writeln!(
            s,
            "# HELP onething_overdue_total Items past a legal time limit (督办), by department and limit.\n# TYPE onething_overdue_total counter"
        );
        for ((d, l), v) in self
            .overdue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                s,
                "onething_overdue_total{{department=\"{d}\",limit=\"{l}\"}} {v}"
            );
        }
        let _ = writeln!(
            s,
            "# HELP onething_push_seconds Request latency by department.\n# TYPE onething_push_seconds histogram"
        );
        for (d, h) in self
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "onething_push_seconds_bucket{{department=\"{d}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                s,
                "onething_push_seconds_bucket{{department=\"{d}\",le=\"+Inf\"}} {}",
                h.total
            );
            let _ = writeln!(
                s,
                "onething_push_seconds_sum{{department=\"{d}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                s,
                "onething_push_seconds_count{{department=\"{d}\"}} {}",
                h.total
            );
        }
        let mut typed = std::collections::BTreeSet::new();
        for (name, v) in gauges {
            let metric = name.split('{').next().unwrap_or(name);
            if typed.insert(metric.to_string()) {
                let _ = writeln!(s, "# TYPE {metric} gauge");
            }
            let _ = writeln!(s, "{name} {v}");
        }
        s
    }
}
