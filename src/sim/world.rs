//! The simulators' shared state: applications per department, what each received, the violations
//! it answered, its statistics, nonces and tokens. One `World` serves all ten systems.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Utc};
use indexmap::IndexMap;
use serde::Serialize;
use serde_json::{Value, json};

use super::behaviour::{Behaviour, Phase, Timeline, Timing};
use crate::model::time::{cst, rfc3339};

/// One application held by a simulated department.
#[derive(Debug, Clone)]
pub struct App {
    pub dept: &'static str,
    pub case_id: String,
    /// The department's own item or task type (`hukou`, `establishment`…).
    pub kind: String,
    pub reference: String,
    pub created: Instant,
    pub timeline: Timeline,
    /// Results the department will hand out when it approves (its own field names).
    pub results: IndexMap<String, String>,
    /// The decoded request, for the department's own use (e.g. a query by case id).
    pub data: Value,
    /// Bumped on every change of timeline, so a stale callback task stops.
    pub generation: u64,
}

/// What the application looks like now.
#[derive(Debug, Clone)]
pub struct View {
    pub phase: Phase,
    pub phase_at: DateTime<FixedOffset>,
    pub accepted_at: Option<DateTime<FixedOffset>>,
    pub created_at: DateTime<FixedOffset>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub submits: u64,
    pub duplicates: u64,
    pub follow_ups: u64,
    pub queries: u64,
    pub withdrawals: u64,
    pub callbacks_sent: u64,
    pub max_concurrency: u64,
    #[serde(skip)]
    pub in_flight: u64,
}

#[derive(Default)]
struct Inner {
    apps: HashMap<(&'static str, String, String), App>,
    refs: HashMap<(&'static str, String), (String, String)>,
    received: HashMap<&'static str, Vec<Value>>,
    violations: HashMap<&'static str, Vec<Value>>,
    stats: IndexMap<&'static str, Stats>,
    attempts: HashMap<(&'static str, String, String, String), u32>,
    nonces: HashMap<(&'static str, String), Instant>,
    tokens: HashMap<String, Instant>,
}

pub struct World {
    inner: Mutex<Inner>,
    pub timing: Timing,
    started: Instant,
    started_wall: DateTime<FixedOffset>,
    seq: AtomicU64,
}

/// Submitting: a new application or a duplicate of one already held.
pub enum Submitted {
    New(App),
    Duplicate(App),
}

/// Why a follow-up or withdrawal was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    NotFound,
    NotPreReview,
    Finished,
}

/// Counts a request in flight while alive.
pub struct InFlight {
    world: Arc<World>,
    dept: &'static str,
    /// Requests in flight, this one included.
    pub concurrent: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut g = self.world.lock();
        if let Some(s) = g.stats.get_mut(self.dept) {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
    }
}

impl World {
    pub fn new(timing: Timing) -> Arc<World> {
        Arc::new(World {
            inner: Mutex::new(Inner::default()),
            timing,
            started: Instant::now(),
            started_wall: Utc::now().with_timezone(&cst()),
            seq: AtomicU64::new(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh number for references.
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Wall-clock time of an instant.
    pub fn wall(&self, at: Instant) -> DateTime<FixedOffset> {
        let d = at.saturating_duration_since(self.started);
        self.started_wall + chrono::Duration::from_std(d).unwrap_or_default()
    }

    pub fn now_wall(&self) -> DateTime<FixedOffset> {
        self.wall(Instant::now())
    }

    pub fn begin(self: &Arc<Self>, dept: &'static str) -> InFlight {
        let mut g = self.lock();
        let s = g.stats.entry(dept).or_default();
        s.in_flight += 1;
        s.max_concurrency = s.max_concurrency.max(s.in_flight);
        let concurrent = s.in_flight;
        drop(g);
        InFlight {
            world: self.clone(),
            dept,
            concurrent,
        }
    }

    pub fn count(&self, dept: &'static str, f: impl FnOnce(&mut Stats)) {
        f(self.lock().stats.entry(dept).or_default());
    }

    /// Keeps what a department accepted (decoded to UTF-8) for `GET /_sim/received`.
    pub fn received(&self, dept: &'static str, operation: &str, body: Value) {
        let entry = json!({"operation": operation, "at": rfc3339(self.now_wall()), "body": body});
        self.lock().received.entry(dept).or_default().push(entry);
    }

    /// Keeps a refused request's reason for `GET /_sim/violations`.
    pub fn violation(&self, dept: &'static str, operation: &str, reason: &str) {
        let entry =
            json!({"operation": operation, "at": rfc3339(self.now_wall()), "reason": reason});
        self.lock().violations.entry(dept).or_default().push(entry);
    }

    /// How many times this push was tried, this one included (for `抖动`).
    pub fn attempt(&self, dept: &'static str, case_id: &str, kind: &str, op: &str) -> u32 {
        let mut g = self.lock();
        let n = g
            .attempts
            .entry((dept, case_id.to_string(), kind.to_string(), op.to_string()))
            .or_default();
        *n += 1;
        *n
    }

    /// False when the nonce was seen within `window`.
    pub fn fresh_nonce(&self, dept: &'static str, nonce: &str, window: Duration) -> bool {
        let mut g = self.lock();
        let now = Instant::now();
        g.nonces.retain(|_, at| now.duration_since(*at) < window);
        g.nonces.insert((dept, nonce.to_string()), now).is_none()
    }

    pub fn issue_token(&self, token: &str, lifetime: Duration) {
        self.lock()
            .tokens
            .insert(token.to_string(), Instant::now() + lifetime);
    }

    pub fn token_valid(&self, token: &str) -> bool {
        self.lock()
            .tokens
            .get(token)
            .is_some_and(|exp| Instant::now() < *exp)
    }

    /// Takes a push: a new application, or the one already held for this case and kind.
    #[allow(clippy::too_many_arguments)]
    pub fn submit(
        &self,
        dept: &'static str,
        case_id: &str,
        kind: &str,
        behaviour: Behaviour,
        prereview: bool,
        data: Value,
        reference: impl FnOnce(u64) -> String,
        results: impl FnOnce(u64) -> IndexMap<String, String>,
    ) -> Submitted {
        let mut g = self.lock();
        let key = (dept, case_id.to_string(), kind.to_string());
        if let Some(app) = g.apps.get(&key) {
            let app = app.clone();
            g.stats.entry(dept).or_default().duplicates += 1;
            return Submitted::Duplicate(app);
        }
        let n = self.next_seq();
        let app = App {
            dept,
            case_id: case_id.to_string(),
            kind: kind.to_string(),
            reference: reference(n),
            created: Instant::now(),
            timeline: Timeline {
                behaviour,
                prereview,
                follow_up: None,
                withdrawn: None,
            },
            results: results(n),
            data,
            generation: 0,
        };
        g.refs.insert(
            (dept, app.reference.clone()),
            (key.1.clone(), key.2.clone()),
        );
        g.apps.insert(key, app.clone());
        g.stats.entry(dept).or_default().submits += 1;
        Submitted::New(app)
    }

    pub fn find(&self, dept: &'static str, case_id: &str, kind: &str) -> Option<App> {
        self.lock()
            .apps
            .get(&(dept, case_id.to_string(), kind.to_string()))
            .cloned()
    }

    pub fn find_ref(&self, dept: &'static str, reference: &str) -> Option<App> {
        let g = self.lock();
        let (case_id, kind) = g.refs.get(&(dept, reference.to_string()))?;
        g.apps.get(&(dept, case_id.clone(), kind.clone())).cloned()
    }

    /// All applications of a department for a case (any kind).
    pub fn find_case(&self, dept: &'static str, case_id: &str) -> Vec<App> {
        let g = self.lock();
        let mut v: Vec<App> = g
            .apps
            .values()
            .filter(|a| a.dept == dept && a.case_id == case_id)
            .cloned()
            .collect();
        v.sort_by_key(|a| a.created);
        v
    }

    fn update(
        &self,
        dept: &'static str,
        reference: &str,
        f: impl FnOnce(&mut App) -> Result<(), Refusal>,
    ) -> Result<App, Refusal> {
        let mut g = self.lock();
        let key = g
            .refs
            .get(&(dept, reference.to_string()))
            .cloned()
            .ok_or(Refusal::NotFound)?;
        let app = g
            .apps
            .get_mut(&(dept, key.0, key.1))
            .ok_or(Refusal::NotFound)?;
        f(app)?;
        app.generation += 1;
        Ok(app.clone())
    }

    /// The pre-review follow-up; a repeat is a success and changes nothing.
    pub fn follow_up(
        &self,
        dept: &'static str,
        reference: &str,
        data: Value,
    ) -> Result<App, Refusal> {
        let r = self.update(dept, reference, |app| {
            if !app.timeline.prereview {
                return Err(Refusal::NotPreReview);
            }
            if app.timeline.follow_up.is_none() {
                app.timeline.follow_up = Some(app.created.elapsed());
                if let (Value::Object(extra), Value::Object(d)) = (data, &mut app.data) {
                    d.extend(extra);
                }
            }
            Ok(())
        });
        if r.is_ok() {
            self.count(dept, |s| s.follow_ups += 1);
        }
        r
    }

    /// Adds fields to an application's kept request data (e.g. a withdrawal's reason) without
    /// changing its timeline or generation; `None` when the reference is unknown.
    pub fn annotate(
        &self,
        dept: &'static str,
        reference: &str,
        extra: serde_json::Map<String, Value>,
    ) -> Option<App> {
        let mut g = self.lock();
        let (case_id, kind) = g.refs.get(&(dept, reference.to_string())).cloned()?;
        let app = g.apps.get_mut(&(dept, case_id, kind))?;
        if let Value::Object(d) = &mut app.data {
            d.extend(extra);
        }
        Some(app.clone())
    }

    /// Withdraws an application that is not final yet.
    pub fn withdraw(&self, dept: &'static str, reference: &str) -> Result<App, Refusal> {
        let timing = self.timing;
        let r = self.update(dept, reference, |app| {
            let elapsed = app.created.elapsed();
            let phase = app.timeline.at(timing, elapsed).1;
            if phase == Phase::Withdrawn {
                return Ok(());
            }
            if phase.is_final() {
                return Err(Refusal::Finished);
            }
            app.timeline.withdrawn = Some(elapsed);
            Ok(())
        });
        if r.is_ok() {
            self.count(dept, |s| s.withdrawals += 1);
        }
        r
    }

    pub fn view(&self, app: &App) -> View {
        let elapsed = app.created.elapsed();
        let (at, phase) = app.timeline.at(self.timing, elapsed);
        View {
            phase,
            phase_at: self.wall(app.created + at),
            accepted_at: app
                .timeline
                .accepted_at(self.timing, elapsed)
                .map(|a| self.wall(app.created + a)),
            created_at: self.wall(app.created),
        }
    }

    /// The current generation of an application (callback tasks stop when it moves on).
    pub fn generation(&self, dept: &'static str, case_id: &str, kind: &str) -> Option<u64> {
        self.lock()
            .apps
            .get(&(dept, case_id.to_string(), kind.to_string()))
            .map(|a| a.generation)
    }

    pub fn received_json(&self, dept: &'static str) -> Value {
        Value::Array(self.lock().received.get(dept).cloned().unwrap_or_default())
    }

    pub fn violations_json(&self, dept: &'static str) -> Value {
        Value::Array(
            self.lock()
                .violations
                .get(dept)
                .cloned()
                .unwrap_or_default(),
        )
    }

    pub fn stats_json(&self) -> Value {
        serde_json::to_value(&self.lock().stats).unwrap_or(Value::Null)
    }

    pub fn stats(&self, dept: &'static str) -> Stats {
        self.lock().stats.get(dept).cloned().unwrap_or_default()
    }

    /// Forgets everything (`POST /_sim/reset`).
    pub fn reset(&self) {
        let mut g = self.lock();
        let in_flight: Vec<(&'static str, u64)> =
            g.stats.iter().map(|(k, s)| (*k, s.in_flight)).collect();
        *g = Inner::default();
        for (k, n) in in_flight {
            g.stats.entry(k).or_default().in_flight = n;
        }
    }
}
