//! The daemon (`onething run`): intake from RabbitMQ, the scheduler of durable timers (pushes,
//! retries, polls, deadlines), the callback/health/metrics listener, the exchange-folder watcher and
//! the outbox relay — all sharing one [`Gateway`], all stopping on one signal.
//!
//! | file | job |
//! | --- | --- |
//! | `gateway.rs` | what the tasks share |
//! | `clock.rs` | the (drill) clock |
//! | `intake.rs` | inbound messages: validate, store, ack, or dead-letter |
//! | `apply.rs` | the case writer: engine effects → one transaction |
//! | `scheduler.rs` | claims due timers and runs them |
//! | `admission.rs` | how much of each department's work the scheduler holds at once |
//! | `dispatch.rs` | runs a claimed timer: withdrawals, polls, deadlines |
//! | `push.rs` | pushes, pre-review follow-ups, resolution of unknown outcomes |
//! | `exchange_op.rs` | one request/answer with a department |
//! | `render.rs` | the mapping's context for a stored case |
//! | `reports.rs` | department reports → engine inputs |
//! | `http.rs` | callbacks, `/healthz`, `/readyz`, `/metrics` |
//! | `inbox.rs` | answer files of file-exchange departments |
//! | `relay.rs` | the outbox → the events exchange, with confirms |
//! | `reload.rs` | the configuration from the mapping folder and environment, at start and on SIGHUP |
//! | `retention.rs` | removes the audit trails of long-finished cases |
//! | `limits.rs`, `metrics.rs` | per-department limits; counters |

pub mod admission;
pub mod apply;
pub mod casefile;
pub mod clock;
pub mod dispatch;
pub mod exchange_op;
pub mod gateway;
pub mod http;
pub mod inbox;
pub mod intake;
pub mod limits;
pub mod metrics;
pub mod push;
pub mod relay;
pub mod reload;
pub mod render;
pub mod reports;
pub mod retention;
pub mod rounds;
pub mod scheduler;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::broker::{Broker, Topology};
use crate::store::Store;
use clock::Clock;
pub use gateway::{Config, Env, Gateway};

/// How the daemon is configured (runtime.md's environment).
#[derive(Clone)]
pub struct RunConfig {
    pub config_dir: PathBuf,
    pub database_url: String,
    pub amqp_url: String,
    pub http_addr: SocketAddr,
    pub warp: f64,
    pub topology: Topology,
    pub prefetch: u16,
    pub instance: String,
    /// How long claimed work stays this instance's without a heartbeat (`ONETHING_LEASE_SECONDS`):
    /// after a crash, another instance takes it over once this has passed.
    pub lease: Duration,
    /// Days after which a completed case's audit trail is removed (0: never).
    pub audit_retention_days: u32,
    /// Environment lookups (credentials, department URLs and folders).
    pub env: Env,
}

impl RunConfig {
    /// From the environment, as runtime.md fixes it.
    pub fn from_env(config_dir: PathBuf, env: Env) -> Result<RunConfig, String> {
        let get = |k: &str, d: &str| env(k).unwrap_or_else(|| d.to_string());
        let http_addr = get("ONETHING_HTTP_ADDR", "127.0.0.1:8700");
        let warp = get("ONETHING_TIME_WARP", "1");
        Ok(RunConfig {
            config_dir,
            database_url: get("ONETHING_DATABASE_URL", "sqlite://data/onething.db"),
            amqp_url: get("ONETHING_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            http_addr: http_addr
                .parse()
                .map_err(|_| format!("ONETHING_HTTP_ADDR: `{http_addr}` is not an address"))?,
            warp: warp
                .parse()
                .map_err(|_| format!("ONETHING_TIME_WARP: `{warp}` is not a number"))?,
            topology: Topology::from_env(&|k| env(k))?,
            prefetch: get("ONETHING_PREFETCH", "64")
                .parse()
                .map_err(|_| "ONETHING_PREFETCH: not a number")?,
            // Stable across restarts: what this instance had claimed before a crash is resumed at once.
            instance: get("ONETHING_INSTANCE", &hostname()),
            lease: get("ONETHING_LEASE_SECONDS", "60")
                .parse::<u64>()
                .ok()
                .filter(|s| *s >= 3)
                .map(Duration::from_secs)
                .ok_or("ONETHING_LEASE_SECONDS: a number of seconds, at least 3")?,
            audit_retention_days: get("ONETHING_AUDIT_RETENTION_DAYS", "0")
                .parse()
                .map_err(|_| "ONETHING_AUDIT_RETENTION_DAYS: not a number of days")?,
            env,
        })
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "onething".into())
}

/// The running daemon.
pub struct Running {
    pub addr: SocketAddr,
    cfg: RunConfig,
    pub gateway: Arc<Gateway>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    scheduler: JoinHandle<tokio::task::JoinSet<()>>,
}

/// Builds the shared state: the configuration (all credentials present, or a refusal naming each
/// missing one) and the store.
pub async fn gateway(cfg: &RunConfig) -> Result<Arc<Gateway>, String> {
    let config = reload::load_config(cfg, None)?;
    let store = Store::open(&cfg.database_url)
        .await
        .map_err(|e| format!("cannot open the store: {e}"))?;
    let resumed = store
        .release_owner(&cfg.instance)
        .await
        .map_err(|e| format!("cannot open the store: {e}"))?;
    if resumed > 0 {
        tracing::info!(instance = %cfg.instance, timers = resumed, "resuming work claimed before the last stop");
    }
    let store = Arc::new(store);
    config.share_limits(&store, &cfg.instance).await?;
    Ok(Arc::new(Gateway::new(
        config,
        store,
        Clock::new(cfg.warp),
        cfg.instance.clone(),
        cfg.lease,
    )))
}

/// Starts every task; returns once the HTTP listener is bound. The broker may still be
/// connecting: intake and relay begin when it answers.
pub async fn start(cfg: RunConfig) -> Result<Running, String> {
    let gw = gateway(&cfg).await?;
    let (stop, rx) = watch::channel(false);
    let broker_cell: Arc<OnceLock<Broker>> = Arc::new(OnceLock::new());
    let listener = tokio::net::TcpListener::bind(cfg.http_addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.http_addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut tasks = Vec::new();
    let app = http::router(http::Web {
        gw: gw.clone(),
        broker: broker_cell.clone(),
    });
    let mut srx = rx.clone();
    tasks.push(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = srx.wait_for(|s| *s).await;
            })
            .await;
    }));
    tasks.push(tokio::spawn(inbox::run(gw.clone(), rx.clone())));
    tasks.push(tokio::spawn(scheduler::heartbeat(gw.clone(), rx.clone())));
    tasks.push(tokio::spawn(retention::run(
        gw.clone(),
        cfg.audit_retention_days,
        rx.clone(),
    )));
    // The broker: intake and relay once connected (connect keeps trying by itself).
    {
        let gw = gw.clone();
        let mut rx = rx.clone();
        let cell = broker_cell.clone();
        let url = cfg.amqp_url.clone();
        let topo = cfg.topology.clone();
        let prefetch = cfg.prefetch;
        tasks.push(tokio::spawn(async move {
            let broker = tokio::select! {
                b = Broker::connect(&url, topo) => match b {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot use the broker");
                        return;
                    }
                },
                _ = rx.wait_for(|s| *s) => return,
            };
            tracing::info!("connected to the broker");
            let _ = cell.set(broker.clone());
            let relay = tokio::spawn(relay::run(gw.clone(), broker.clone(), rx.clone()));
            intake_loop(gw, broker.clone(), prefetch, rx).await;
            let _ = relay.await;
            broker.close().await;
        }));
    }
    let scheduler = tokio::spawn(scheduler::run(gw.clone(), rx));
    tracing::info!(%addr, instance = %gw.instance, warp = gw.clock.warp(), "gateway started");
    Ok(Running {
        cfg,
        addr,
        gateway: gw,
        stop,
        tasks,
        scheduler,
    })
}

async fn intake_loop(
    gw: Arc<Gateway>,
    broker: Broker,
    prefetch: u16,
    mut stop: watch::Receiver<bool>,
) {
    let mut consumer = loop {
        match broker.consume(prefetch).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot consume yet");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    };
    let slots = Arc::new(Semaphore::new(prefetch.max(1) as usize));
    let mut running = tokio::task::JoinSet::new();
    loop {
        let msg = tokio::select! {
            m = consumer.next() => m,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Some(msg) = msg else { break };
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        let gw = gw.clone();
        let broker = broker.clone();
        running.spawn(async move {
            if let Err(e) = intake::take(&gw, &broker, &msg).await {
                tracing::error!(error = %crate::model::mask::mask_text(&e), "message not taken; the broker will redeliver it");
            }
            drop(permit);
        });
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}

impl Running {
    /// Re-reads the mappings (SIGHUP). A broken or unsafe configuration is refused with the reason
    /// (`onething check`'s lines) and the running one stays in force.
    pub async fn reload(&self) -> Result<reload::Reloaded, String> {
        let r = reload::reload(&self.gateway, &self.cfg).await;
        match &r {
            Ok(done) => {
                metrics::Metrics::inc(&self.gateway.metrics.reloads_ok);
                tracing::info!(generation = done.generation, credentials_changed = ?done.credentials_changed, "mappings reloaded");
            }
            Err(e) => {
                metrics::Metrics::inc(&self.gateway.metrics.reloads_failed);
                for line in e.lines() {
                    tracing::error!(problem = %line, "reload refused; the running mappings stay in force");
                }
            }
        }
        r
    }

    /// Stops taking new work and gives what is in flight up to 10 s to finish; anything still
    /// running then is safe to abandon (its timer lease lets it run again after a restart).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        let mut in_flight = tokio::select! {
            j = self.scheduler => j.unwrap_or_default(),
            _ = &mut deadline => tokio::task::JoinSet::new(),
        };
        loop {
            tokio::select! {
                j = in_flight.join_next() => if j.is_none() { break },
                _ = &mut deadline => break,
            }
        }
        for t in self.tasks {
            tokio::select! {
                _ = t => {}
                _ = &mut deadline => {}
            }
        }
        tracing::info!("gateway stopped");
    }
}
