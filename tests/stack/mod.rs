//! The whole chain for end-to-end tests: the simulators, the daemon (in-process, its own SQLite file,
//! its own broker names and HTTP port), and a stand-in platform that publishes to the intake
//! exchange and collects events and dead letters from the broker.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indexmap::IndexMap;
use lapin::message::DeliveryResult;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use onething::broker::{QueueType, Topology};
use onething::runtime::{RunConfig, Running};
use onething::sim::behaviour::Timing;
use onething::sim::callback::CallbackSettings;
use onething::sim::{SimConfig, SimHandle};
use serde_json::Value;
use tokio::sync::Notify;

use crate::support::{CREDENTIALS, root};

pub mod balancer;

pub const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A private copy of the mappings with test-speed retries and polls.
pub fn fast_mappings(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "onething-e2e-{name}-{}/mappings",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&root().join("mappings"), &dir);
    let re = |s: &str, key: &str, value: &str| {
        let r = regex::Regex::new(&format!(r#"(?m)^{key} = .*$"#)).unwrap();
        r.replace_all(s, format!("{key} = {value}")).into_owned()
    };
    for e in std::fs::read_dir(dir.join("departments")).unwrap() {
        let p = e.unwrap().path();
        let mut s = std::fs::read_to_string(&p).unwrap();
        s = re(&s, "attempts", "5");
        s = re(&s, "initial", "\"20ms\"");
        s = re(&s, "max", "\"100ms\"");
        // tax allows 30 status calls a minute: poll it (in batches) every 2 s, the others often.
        s = re(
            &s,
            "interval",
            if p.ends_with("tax.toml") {
                "\"2s\""
            } else {
                "\"100ms\""
            },
        );
        s = re(&s, "quiet", "\"5s\"");
        s = re(&s, "timeout", "\"5s\"");
        s = re(&s, "not_taken_after", "\"3s\"");
        // The police simulator does not count polls a minute (tax does: its limit stays).
        if p.ends_with("police.toml") {
            s = re(&s, "per_minute", "6000");
        }
        std::fs::write(&p, s).unwrap();
    }
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A daemon process, killed on drop.
pub struct Daemon(pub std::process::Child);

impl Daemon {
    pub fn sigkill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// SIGTERM, then the exit code.
    pub fn sigterm(&mut self) -> Option<i32> {
        std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        self.0.wait().unwrap().code()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How a stack is built.
pub struct Options {
    pub timing: Timing,
    /// The daemon in this process (else the test spawns processes).
    pub in_process: bool,
    pub warp: f64,
    pub queue_type: QueueType,
    /// The store (default: a SQLite file in the stack's folder).
    pub database_url: Option<String>,
    pub lease: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timing: Timing {
                accept_after: Duration::ZERO,
                decide_after: Duration::ZERO,
            },
            in_process: true,
            warp: 1.0,
            queue_type: QueueType::Classic,
            database_url: None,
            lease: Duration::from_secs(60),
        }
    }
}

/// Events received per case, in arrival order.
#[derive(Default)]
struct Inbox {
    events: Mutex<HashMap<String, Vec<Value>>>,
    dead: Mutex<Vec<(Vec<u8>, FieldTable)>>,
    changed: Notify,
}

pub struct Stack {
    pub name: String,
    /// The environment the daemon runs with (for a daemon started as a process).
    pub env: HashMap<String, String>,
    pub sim: SimHandle,
    pub daemon: Option<Running>,
    pub topology: Topology,
    pub work: PathBuf,
    pub config: RunConfig,
    channel: lapin::Channel,
    _conn: Connection,
    inbox: Arc<Inbox>,
}

impl Stack {
    pub async fn start(name: &str) -> Stack {
        Self::build(name, Options::default(), |_| {}).await
    }

    pub async fn start_with(name: &str, timing: Timing) -> Stack {
        let opts = Options {
            timing,
            ..Default::default()
        };
        Self::build(name, opts, |_| {}).await
    }

    /// Everything but the daemon, which the test runs as a process (`spawn_daemon`).
    pub async fn without_daemon(name: &str, timing: Timing) -> Stack {
        let opts = Options {
            timing,
            in_process: false,
            ..Default::default()
        };
        Self::build(name, opts, |_| {}).await
    }

    /// Starts `onething run` as a process with the stack's environment; waits until it is ready.
    /// The process is killed when the returned guard is dropped (a failing test leaves nothing).
    pub async fn spawn_daemon(&self) -> Daemon {
        self.spawn_instance(&self.config.instance, self.config.http_addr)
            .await
    }

    /// One of several `onething run` processes sharing the stack's store and broker: its own
    /// instance name and HTTP address.
    pub async fn spawn_instance(&self, instance: &str, addr: SocketAddr) -> Daemon {
        let d = self.launch(instance, addr);
        wait_ready(addr).await;
        d
    }

    /// Starts an instance without waiting for it (to start several at once).
    pub fn launch(&self, instance: &str, addr: SocketAddr) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.work.join("daemon.log"))
            .unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_onething"))
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .envs(&self.env)
            .env("ONETHING_INSTANCE", instance)
            .env("ONETHING_HTTP_ADDR", addr.to_string())
            .stdout(log)
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        Daemon(child)
    }

    /// With a drill clock running `warp` times faster.
    pub async fn start_warped(name: &str, warp: f64) -> Stack {
        let opts = Options {
            warp,
            ..Default::default()
        };
        Self::build(name, opts, |_| {}).await
    }

    /// With the test mappings changed by `edit` (given the mapping folder) before the daemon starts.
    pub async fn start_edited(name: &str, edit: impl FnOnce(&Path)) -> Stack {
        Self::build(name, Options::default(), edit).await
    }

    pub async fn build(name: &str, opts: Options, edit: impl FnOnce(&Path)) -> Stack {
        let Options {
            timing,
            in_process,
            warp,
            queue_type,
            database_url,
            lease,
        } = opts;
        let mappings = fast_mappings(name);
        edit(&mappings);
        let work = mappings.parent().unwrap().to_path_buf();
        let gateway_addr = free_addr();
        let mut addrs = IndexMap::new();
        for (id, _) in onething::sim::HTTP_SYSTEMS {
            addrs.insert(*id, SocketAddr::from(([127, 0, 0, 1], 0)));
        }
        let nr_dir = work.join("exchange/nr");
        let sim = onething::sim::start(SimConfig {
            addrs,
            nr_dir: nr_dir.clone(),
            credentials: CREDENTIALS.clone(),
            timing,
            callbacks: CallbackSettings {
                gateway: format!("http://{gateway_addr}"),
                interval: Duration::from_millis(50),
                repeats: 5,
            },
            gas_delay_max: Duration::from_millis(20),
            nr_scan: Duration::from_millis(20),
            documented_limits: true,
        })
        .await
        .unwrap();
        let mut env: HashMap<String, String> = CREDENTIALS
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (id, addr) in &sim.addrs {
            env.insert(
                format!("ONETHING_DEPT_{}_URL", id.to_ascii_uppercase()),
                format!("http://{addr}"),
            );
        }
        env.insert("ONETHING_DEPT_NR_DIR".into(), nr_dir.display().to_string());
        let suffix = format!(".{name}.{}", std::process::id());
        let mut topology = Topology::with_suffix(&suffix);
        topology.queue_type = queue_type;
        for (k, v) in [
            ("ONETHING_AMQP_INTAKE_EXCHANGE", &topology.intake_exchange),
            ("ONETHING_AMQP_INTAKE_QUEUE", &topology.intake_queue),
            ("ONETHING_AMQP_DEAD_EXCHANGE", &topology.dead_exchange),
            ("ONETHING_AMQP_DEAD_QUEUE", &topology.dead_queue),
            ("ONETHING_AMQP_EVENTS_EXCHANGE", &topology.events_exchange),
        ] {
            env.insert(k.into(), v.clone());
        }
        let database_url =
            database_url.unwrap_or_else(|| format!("sqlite://{}/state.db", work.display()));
        env.insert("ONETHING_DATABASE_URL".into(), database_url.clone());
        env.insert(
            "ONETHING_AMQP_QUEUE_TYPE".into(),
            queue_type.as_str().to_string(),
        );
        env.insert("ONETHING_LEASE_SECONDS".into(), lease.as_secs().to_string());
        env.insert("ONETHING_HTTP_ADDR".into(), gateway_addr.to_string());
        env.insert("ONETHING_CONFIG".into(), mappings.display().to_string());
        env.insert(
            "ONETHING_INSTANCE".into(),
            format!("test-{name}-{}", std::process::id()),
        );
        let env_copy = env.clone();
        let env = Arc::new(env);
        let lookup: onething::runtime::Env = {
            let env = env.clone();
            Arc::new(move |k: &str| env.get(k).cloned())
        };
        let config = RunConfig {
            config_dir: mappings,
            database_url,
            amqp_url: AMQP.into(),
            http_addr: gateway_addr,
            warp,
            topology: topology.clone(),
            prefetch: 32,
            instance: format!("test-{name}-{}", std::process::id()),
            lease,
            audit_retention_days: 0,
            env: lookup,
        };
        // The platform's side: an events queue bound to everything, and the dead-letter queue.
        let conn = Connection::connect(AMQP, ConnectionProperties::default())
            .await
            .unwrap();
        let channel = conn.create_channel().await.unwrap();
        let inbox = Arc::new(Inbox::default());
        // The topology exists before anyone binds to it (the daemon declares the same, idempotently).
        onething::broker::Broker::connect(AMQP, topology.clone())
            .await
            .unwrap()
            .close()
            .await;
        let daemon = if in_process {
            let d = onething::runtime::start(config.clone()).await.unwrap();
            wait_ready(d.addr).await;
            Some(d)
        } else {
            None
        };
        let ib = inbox.clone();
        onething::demo::platform::follow_events(&channel, &topology, move |v: Value| {
            let case = v["case_id"].as_str().unwrap_or_default().to_string();
            ib.events.lock().unwrap().entry(case).or_default().push(v);
            ib.changed.notify_waiters();
        })
        .await
        .unwrap();
        let dead = channel
            .basic_consume(
                topology.dead_queue.as_str().into(),
                "dead".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let ib = inbox.clone();
        dead.set_delegate(move |d: DeliveryResult| {
            if let Ok(Some(d)) = d {
                let headers = d.properties.headers().clone().unwrap_or_default();
                ib.dead.lock().unwrap().push((d.data.clone(), headers));
                ib.changed.notify_waiters();
            }
            std::future::ready(())
        });
        Stack {
            name: name.into(),
            env: env_copy,
            sim,
            daemon,
            topology,
            work,
            config,
            channel,
            _conn: conn,
            inbox,
        }
    }

    pub fn daemon(&self) -> &Running {
        self.daemon.as_ref().expect("daemon running")
    }

    /// Publishes as the platform does.
    pub async fn publish(&self, routing_key: &str, body: &[u8]) {
        onething::demo::platform::publish(&self.channel, &self.topology, routing_key, body)
            .await
            .unwrap();
    }

    pub async fn submit(&self, v: &Value) {
        self.publish("submission", v.to_string().as_bytes()).await;
    }

    /// Waits (bounded) until `done` holds for the case's events; returns them.
    pub async fn events_until(
        &self,
        case_id: &str,
        secs: u64,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            // Registered before looking, so that a notification in between is not missed.
            let notified = self.inbox.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let current = self
                .inbox
                .events
                .lock()
                .unwrap()
                .get(case_id)
                .cloned()
                .unwrap_or_default();
            if done(&current) {
                return current;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "{}: case {case_id} did not get there in {secs}s; events so far:\n{}",
                    self.name,
                    current
                        .iter()
                        .map(|e| format!("  {} {} {}", e["seq"], e["type"], e["item"]))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
        }
    }

    /// Every event of the case until `case.completed`.
    pub async fn completed(&self, case_id: &str) -> Vec<Value> {
        self.events_until(case_id, 60, |evs| {
            evs.iter().any(|e| e["type"] == "case.completed")
        })
        .await
    }

    /// Waits for `n` dead letters in total.
    pub async fn dead_letters(&self, n: usize) -> Vec<(Vec<u8>, FieldTable)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let notified = self.inbox.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let d = self.inbox.dead.lock().unwrap().clone();
            if d.len() >= n {
                return d;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("only {} dead letters", d.len());
            }
        }
    }

    /// `/_sim/stats` of every system.
    /// A simulator's JSON endpoint (`/_sim/…`) at department `dept`.
    async fn sim_json(&self, dept: &str, path: &str) -> Value {
        let url = format!("{}{path}", self.sim.url(dept));
        let b = reqwest::get(url).await.unwrap().bytes().await.unwrap();
        serde_json::from_slice(&b).unwrap()
    }

    /// Every simulated department's counts (any HTTP system answers for all).
    pub async fn sim_stats(&self) -> Value {
        self.sim_json("health", "/_sim/stats").await
    }

    /// What a simulated department refused (`/_sim/violations`).
    pub async fn sim_violations(&self, dept: &str) -> Vec<Value> {
        let v = self.sim_json(dept, "/_sim/violations").await;
        v.as_array().expect("/_sim/violations is an array").clone()
    }

    pub fn events_of(&self, case_id: &str) -> Vec<Value> {
        self.inbox
            .events
            .lock()
            .unwrap()
            .get(case_id)
            .cloned()
            .unwrap_or_default()
    }

    pub async fn stop(mut self) {
        if let Some(d) = self.daemon.take() {
            d.stop().await;
        }
        self.cleanup().await;
    }

    /// Deletes the broker objects and the work folder (the daemon must be stopped).
    pub async fn cleanup(self) {
        onething::demo::platform::delete_topology(&self.channel, &self.topology).await;
        self.sim.stop().await;
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// Submits `rounds` × the three example one-things (fresh case ids, the examples' own names, so
/// every item is approved); returns the case ids.
pub async fn submit_rounds(stack: &Stack, tag: &str, rounds: usize) -> Vec<String> {
    let mut cases = Vec::new();
    for n in 0..rounds {
        for f in ["newborn.json", "restaurant.json", "house-transfer.json"] {
            let mut s = crate::support::fixture(f);
            let id = format!("410225-{tag}-{n}-{}", &f[..3]);
            s["case_id"] = id.clone().into();
            stack.submit(&s).await;
            cases.push(id);
        }
    }
    cases
}

impl Stack {
    /// Waits for each case's `case.completed`, then checks that every item was approved and that
    /// the case's events, each counted at its first arrival (a re-published event must equal the
    /// first copy), arrived as seq 1, 2, 3… — none lost, none out of order.
    pub async fn assert_approved_in_order(&self, cases: &[String]) {
        for id in cases {
            let ev = self.completed(id).await;
            let mut first: Vec<Value> = Vec::new();
            for e in ev {
                match first.iter().find(|f| f["event_id"] == e["event_id"]) {
                    Some(prev) => assert_eq!(prev, &e, "a re-published event is the same event"),
                    None => first.push(e),
                }
            }
            let finals = &first
                .iter()
                .find(|e| e["type"] == "case.completed")
                .unwrap()["detail"]["items"];
            assert!(
                finals
                    .as_object()
                    .unwrap()
                    .values()
                    .all(|s| s == "approved"),
                "{id}: {finals} {:#?}",
                first
                    .iter()
                    .map(|e| format!("{} {} {}", e["type"], e["item"], e["detail"]))
                    .collect::<Vec<_>>()
            );
            let seqs: Vec<u64> = first.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
            assert_eq!(
                seqs,
                (1..=seqs.len() as u64).collect::<Vec<_>>(),
                "{id}: events lost or out of order"
            );
        }
    }

    /// Every department received exactly one application per item of `rounds` × the three
    /// one-things (`submit_rounds`), and no second one.
    pub async fn assert_applied_once(&self, rounds: u64) {
        let stats = self.sim_stats().await;
        let per_round = [
            ("health", 1),
            ("police", 2),
            ("medicare", 1),
            ("hrss", 1),
            ("amr", 2),
            ("tax", 1),
            ("nr", 1),
            ("water", 1),
            ("power", 1),
            ("gas", 1),
        ];
        for (dept, n) in per_round {
            assert_eq!(
                stats[dept]["submits"],
                n * rounds,
                "{dept}: {}",
                stats[dept]
            );
            if dept != "nr" {
                assert_eq!(
                    stats[dept]["duplicates"].as_u64().unwrap_or(0),
                    0,
                    "{dept}: a second application"
                );
            }
        }
    }
}

/// The daemon declares the topology once connected to the broker: wait until `/readyz` says so.
pub async fn wait_ready(addr: SocketAddr) {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("http://{addr}/readyz")).send().await
            && r.status().as_u16() == 200
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the daemon never became ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Event types of the case in order, as `type item`.
pub fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e["item"].as_str() {
            Some(i) => format!("{} {i}", e["type"].as_str().unwrap_or("")),
            None => e["type"].as_str().unwrap_or("").to_string(),
        })
        .collect()
}
