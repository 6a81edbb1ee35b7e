//! Callbacks of the connected systems: on every status change the simulator calls
//! `<gateway>/callbacks/<id>`, and repeats an unanswered callback up to 5 times.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::behaviour::Phase;
use super::world::{App, View, World};

/// Where and how persistently to call back.
#[derive(Debug, Clone)]
pub struct CallbackSettings {
    /// The gateway's base URL, e.g. `http://127.0.0.1:8700`.
    pub gateway: String,
    /// Pause between repeats (the documents say 2 s).
    pub interval: Duration,
    /// Repeats after the first try (the documents say 5).
    pub repeats: u32,
}

/// A callback request, rendered by the department.
pub struct Outgoing {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Renders the callback for a phase; `None` when the phase is not reported.
pub type Render = Arc<dyn Fn(&App, &View) -> Option<Outgoing> + Send + Sync>;
/// Whether the gateway's answer means "stored".
pub type Accepts = Arc<dyn Fn(u16, &[u8]) -> bool + Send + Sync>;

/// Sends, in order, the callbacks of every phase change of `app` from now on, until its timeline
/// changes (a follow-up or a withdrawal schedules a new task).
pub fn schedule(
    world: Arc<World>,
    http: reqwest::Client,
    settings: Arc<CallbackSettings>,
    app: App,
    render: Render,
    accepts: Accepts,
) {
    // After a follow-up or a withdrawal, only what follows that change is new.
    let from = [app.timeline.follow_up, app.timeline.withdrawn]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or_default();
    tokio::spawn(async move {
        let steps = app.timeline.steps(world.timing);
        for (at, phase) in steps {
            if phase == Phase::Received || at < from {
                continue;
            }
            tokio::time::sleep_until((app.created + at).into()).await;
            if world.generation(app.dept, &app.case_id, &app.kind) != Some(app.generation) {
                return;
            }
            let elapsed = at;
            let view = View {
                phase: phase.clone(),
                phase_at: world.wall(app.created + at),
                accepted_at: app
                    .timeline
                    .accepted_at(world.timing, elapsed)
                    .map(|a| world.wall(app.created + a)),
                created_at: world.wall(app.created),
            };
            let Some(out) = render(&app, &view) else {
                continue;
            };
            send(&world, &http, &settings, app.dept, out, &accepts).await;
        }
    });
}

async fn send(
    world: &World,
    http: &reqwest::Client,
    s: &CallbackSettings,
    dept: &'static str,
    out: Outgoing,
    accepts: &Accepts,
) {
    let url = format!("{}/callbacks/{dept}", s.gateway.trim_end_matches('/'));
    for attempt in 0..=s.repeats {
        if attempt > 0 {
            tokio::time::sleep(s.interval).await;
        }
        let mut req = http
            .post(&url)
            .body(out.body.clone())
            .timeout(Duration::from_secs(10));
        for (k, v) in &out.headers {
            req = req.header(k, v);
        }
        world.count(dept, |st| st.callbacks_sent += 1);
        let started = Instant::now();
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.bytes().await.unwrap_or_default();
                if accepts(status, &body) {
                    return;
                }
                tracing::debug!(dept, status, attempt, "callback not accepted");
            }
            Err(e) => {
                tracing::debug!(dept, attempt, error = %e, elapsed_ms = started.elapsed().as_millis() as u64, "callback failed")
            }
        }
    }
}
