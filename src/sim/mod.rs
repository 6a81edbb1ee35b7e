//! The ten simulated department systems of `../shared/spec/departments/` (`onething sim`).
//!
//! This module tree is the one place where code names departments, and the gateway never imports
//! it: it reuses the codecs (`crate::codec`) and check characters (`crate::validate::ids`), not the
//! gateway's mappings or logic, so a mistake in a mapping shows up as a refused request here.
//!
//! | file | job |
//! | --- | --- |
//! | `behaviour.rs` | the simulator rules (`驳回`, `不予`, …) and application timelines, pure |
//! | `world.rs` | shared state: applications, received requests, violations, statistics |
//! | `callback.rs` | callbacks of connected systems, with repeats |
//! | `results.rs` | plausible results: citizen ids, USCCs, certificate numbers |
//! | `departments/*.rs` | one file per interface document |

pub mod behaviour;
pub mod callback;
pub mod departments;
pub mod results;
pub mod world;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use indexmap::IndexMap;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use behaviour::Timing;
use callback::CallbackSettings;
use world::World;

/// The HTTP systems and their default ports.
pub const HTTP_SYSTEMS: &[(&str, u16)] = &[
    ("health", 9101),
    ("police", 9102),
    ("medicare", 9103),
    ("hrss", 9104),
    ("amr", 9105),
    ("tax", 9106),
    ("water", 9108),
    ("power", 9109),
    ("gas", 9110),
];

/// How the simulators run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where each HTTP system listens (port 0: any free port).
    pub addrs: IndexMap<&'static str, SocketAddr>,
    /// nr's exchange folder.
    pub nr_dir: PathBuf,
    /// `ONETHING_DEPT_<ID>_<NAME>` credentials (the documents' test credentials).
    pub credentials: IndexMap<String, String>,
    pub timing: Timing,
    pub callbacks: CallbackSettings,
    /// The gas company's slowness: answers take up to this long.
    pub gas_delay_max: Duration,
    /// How often nr looks at its outbox.
    pub nr_scan: Duration,
    /// Whether the documents' request limits are enforced (police's 2 at a time and 20 a second,
    /// tax's 30 calls a minute, amr's rate). Always, but for capacity measurements of the gateway
    /// itself (`ONETHING_SIM_LIMITS=off`, used by `onething-load --unlimited`).
    pub documented_limits: bool,
}

impl SimConfig {
    /// Defaults of the documents; `env` gives `ONETHING_DEPT_<ID>_URL`/`_DIR` overrides and
    /// credentials.
    pub fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
        credentials: IndexMap<String, String>,
        gateway: String,
    ) -> Result<SimConfig, String> {
        let mut addrs = IndexMap::new();
        for (id, port) in HTTP_SYSTEMS {
            let var = format!("ONETHING_DEPT_{}_URL", id.to_ascii_uppercase());
            let addr = match env(&var) {
                Some(url) => {
                    let (host, _) = crate::mapping::operation::split_base(&url)?;
                    host.parse::<SocketAddr>()
                        .map_err(|_| format!("{var}: `{host}` is not an IP address and port"))?
                }
                None => SocketAddr::from(([127, 0, 0, 1], *port)),
            };
            addrs.insert(*id, addr);
        }
        Ok(SimConfig {
            addrs,
            nr_dir: env("ONETHING_DEPT_NR_DIR")
                .unwrap_or_else(|| "data/exchange/nr".into())
                .into(),
            credentials,
            timing: Timing::default(),
            callbacks: CallbackSettings {
                gateway,
                interval: Duration::from_secs(2),
                repeats: 5,
            },
            gas_delay_max: Duration::from_secs(3),
            nr_scan: Duration::from_millis(200),
            documented_limits: env("ONETHING_SIM_LIMITS").is_none_or(|v| v != "off"),
        })
    }
}

/// What every department handler gets.
#[derive(Clone)]
pub struct Ctx {
    pub dept: &'static str,
    pub world: Arc<World>,
    pub config: Arc<SimConfig>,
    pub http: reqwest::Client,
}

impl Ctx {
    /// A credential of this department (`ONETHING_DEPT_<ID>_<NAME>`); empty when not configured,
    /// which makes every signature check fail rather than pass.
    pub fn cred(&self, name: &str) -> String {
        let key = format!("ONETHING_DEPT_{}_{name}", self.dept.to_ascii_uppercase());
        self.config
            .credentials
            .get(&key)
            .cloned()
            .unwrap_or_default()
    }

    pub fn callbacks(&self) -> Arc<CallbackSettings> {
        Arc::new(self.config.callbacks.clone())
    }
}

/// Requests in flight at this system when a request arrived, itself included.
#[derive(Debug, Clone, Copy)]
pub struct Concurrency(pub u64);

async fn track(State(ctx): State<Ctx>, mut req: Request, next: Next) -> Response {
    if req.uri().path().starts_with("/_sim/") {
        return next.run(req).await;
    }
    let guard = ctx.world.begin(ctx.dept);
    req.extensions_mut().insert(Concurrency(guard.concurrent));
    let resp = next.run(req).await;
    drop(guard);
    resp
}

fn sim_routes(ctx: Ctx) -> Router {
    let c1 = ctx.clone();
    let c2 = ctx.clone();
    let c3 = ctx.clone();
    Router::new()
        .route(
            "/_sim/received",
            get(move || async move { axum::Json(c1.world.received_json(c1.dept)) }),
        )
        .route(
            "/_sim/violations",
            get(move || async move { axum::Json(c2.world.violations_json(c2.dept)) }),
        )
        .route(
            "/_sim/stats",
            get(move || async move { axum::Json(c3.world.stats_json()) }),
        )
        .route(
            "/_sim/reset",
            post(move || async move {
                ctx.world.reset();
                "reset".into_response()
            }),
        )
}

/// The running simulators.
pub struct SimHandle {
    /// Where each HTTP system actually listens.
    pub addrs: IndexMap<&'static str, SocketAddr>,
    pub world: Arc<World>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl SimHandle {
    pub fn url(&self, dept: &str) -> String {
        format!("http://{}", self.addrs[dept])
    }

    /// Stops every system and waits for them.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Binds every system (all or nothing) and starts serving.
pub async fn start(config: SimConfig) -> Result<SimHandle, String> {
    let world = World::new(config.timing);
    let config = Arc::new(config);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let (tx, rx) = watch::channel(false);
    let mut listeners = Vec::new();
    for (id, addr) in &config.addrs {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("{id}: cannot listen on {addr}: {e}"))?;
        listeners.push((*id, l));
    }
    let mut addrs = IndexMap::new();
    let mut tasks = Vec::new();
    for (id, listener) in listeners {
        addrs.insert(id, listener.local_addr().map_err(|e| e.to_string())?);
        let ctx = Ctx {
            dept: id,
            world: world.clone(),
            config: config.clone(),
            http: http.clone(),
        };
        let app = departments::router(ctx.clone())
            .merge(sim_routes(ctx.clone()))
            .layer(middleware::from_fn_with_state(ctx, track));
        let mut rx = rx.clone();
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                })
                .await;
        }));
    }
    let nr = Ctx {
        dept: "nr",
        world: world.clone(),
        config: config.clone(),
        http,
    };
    std::fs::create_dir_all(config.nr_dir.join("outbox"))
        .map_err(|e| format!("nr: {}: {e}", config.nr_dir.display()))?;
    std::fs::create_dir_all(config.nr_dir.join("inbox"))
        .map_err(|e| format!("nr: {}: {e}", config.nr_dir.display()))?;
    tasks.push(tokio::spawn(departments::nr::run(nr, rx)));
    Ok(SimHandle {
        addrs,
        world,
        shutdown: tx,
        tasks,
    })
}
