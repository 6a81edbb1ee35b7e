//! `onething demo`: the whole job on one machine in one command. It checks that RabbitMQ answers,
//! starts the ten simulated departments and the daemon in this process (their own free ports, a
//! fresh state folder, broker names of their own, a drill clock so that polls come quickly), then
//! plays the platform: publishes the example submissions of `demo/` (the spec's three, one that a
//! department rejects, one that is withdrawn midway), follows their events on the events exchange
//! and shows every case and item as it moves. Exit 0 once every case completed.
//!
//! Like `main.rs`, and unlike the gateway, the demo may use the simulators: it stands in for the
//! county around the gateway.

pub mod platform;
pub mod view;

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use lapin::options::ConfirmSelectOptions;
use lapin::{Connection, ConnectionProperties};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::broker::Topology;
use crate::runtime::RunConfig;
use crate::sim::SimConfig;
use view::Progress;

/// The submissions, in publishing order, and the withdrawals (sent once their case is quiet).
const SUBMISSIONS: &[&str] = &[
    include_str!("../../demo/newborn.json"),
    include_str!("../../demo/restaurant.json"),
    include_str!("../../demo/house-transfer.json"),
    include_str!("../../demo/newborn-rejected.json"),
    include_str!("../../demo/newborn-withdrawn.json"),
];
const WITHDRAWALS: &[&str] = &[include_str!("../../demo/newborn-withdrawn.withdrawal.json")];

/// How much faster the demo's clock runs: a one-minute poll interval becomes half a second.
const WARP: f64 = 120.0;
/// A withdrawal goes out once its case has an accepted item and has been quiet this long.
const QUIET_BEFORE_WITHDRAWAL: Duration = Duration::from_secs(2);
/// The demo gives up after this long.
const LIMIT: Duration = Duration::from_secs(300);

fn free_addr() -> Result<SocketAddr, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))
}

/// Says exactly how to get a broker when none answers.
fn broker_missing(url: &str, e: &str) -> String {
    format!(
        "RabbitMQ does not answer at {url} ({e}).\n\
         Start one, then run `onething demo` again:\n\
         \x20 - installed as a package:  sudo rabbitmq-server -detached   (Debian/Ubuntu: sudo apt-get install rabbitmq-server)\n\
         \x20 - a node whose application was stopped:  sudo rabbitmqctl start_app\n\
         \x20 - with Docker:  docker run -d --name rabbitmq -p 5672:5672 rabbitmq:3\n\
         or point ONETHING_AMQP_URL at a broker you have (amqp://user:password@host:5672/%2f)."
    )
}

pub async fn run(dir: PathBuf) -> ExitCode {
    match demo(dir).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("onething demo: {e}");
            ExitCode::from(2)
        }
    }
}

async fn demo(dir: PathBuf) -> Result<bool, String> {
    let amqp = std::env::var("ONETHING_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let conn = Connection::connect(&amqp, ConnectionProperties::default())
        .await
        .map_err(|e| broker_missing(&amqp, &e.to_string()))?;
    let config_dir = crate::config::config_dir(None);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;

    // The departments' published test credentials, as `sim` uses them.
    let mut env: HashMap<String, String> =
        crate::translate::read_env_file(&config_dir.join("test-credentials.env"))?
            .into_iter()
            .collect();
    for (k, v) in std::env::vars() {
        if k.starts_with("ONETHING_DEPT_") && !k.ends_with("_URL") && !k.ends_with("_DIR") {
            env.insert(k, v);
        }
    }
    let gateway_addr = free_addr()?;
    let nr_dir = dir.join("exchange/nr");
    let mut sim_cfg = SimConfig::from_env(
        &|_| None,
        env.clone().into_iter().collect(),
        format!("http://{gateway_addr}"),
    )?;
    for addr in sim_cfg.addrs.values_mut() {
        *addr = SocketAddr::from(([127, 0, 0, 1], 0));
    }
    sim_cfg.nr_dir = nr_dir.clone();
    let sim = crate::sim::start(sim_cfg).await?;
    for (id, addr) in &sim.addrs {
        env.insert(
            format!("ONETHING_DEPT_{}_URL", id.to_ascii_uppercase()),
            format!("http://{addr}"),
        );
    }
    env.insert("ONETHING_DEPT_NR_DIR".into(), nr_dir.display().to_string());

    let topology = Topology::with_suffix(&format!(".demo.{}", std::process::id()));
    let db = dir.join("onething.db");
    let lookup: crate::runtime::Env = {
        let env = Arc::new(env);
        Arc::new(move |k: &str| env.get(k).cloned())
    };
    let mut cfg = RunConfig::from_env(config_dir, lookup)?;
    cfg.database_url = format!("sqlite://{}", db.display());
    cfg.amqp_url = amqp.clone();
    cfg.http_addr = gateway_addr;
    cfg.warp = WARP;
    cfg.topology = topology.clone();
    cfg.instance = format!("demo-{}", std::process::id());
    // The topology exists before the platform's side binds to it.
    crate::broker::Broker::connect(&amqp, topology.clone())
        .await
        .map_err(|e| e.to_string())?
        .close()
        .await;
    let running = crate::runtime::start(cfg).await?;

    let channel = conn.create_channel().await.map_err(|e| e.to_string())?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    platform::follow_events(&channel, &topology, move |v| {
        let _ = tx.send(v);
    })
    .await?;

    println!(
        "onething demo: ten simulated departments, the gateway on http://{gateway_addr} (drill clock ×{WARP}), state in {}",
        db.display()
    );
    let mut progress = Progress::default();
    let mut withdrawals: IndexMap<String, &str> = IndexMap::new();
    for w in WITHDRAWALS {
        let v: Value = serde_json::from_str(w).map_err(|e| e.to_string())?;
        withdrawals.insert(v["case_id"].as_str().unwrap_or_default().to_string(), w);
    }
    for s in SUBMISSIONS {
        let v: Value = serde_json::from_str(s).map_err(|e| e.to_string())?;
        progress.expect(
            v["case_id"].as_str().unwrap_or_default(),
            v["onething"].as_str().unwrap_or_default(),
        );
        platform::publish(&channel, &topology, "submission", s.as_bytes()).await?;
    }
    println!(
        "published {} submission(s); {} will be withdrawn midway\n",
        SUBMISSIONS.len(),
        WITHDRAWALS.len()
    );

    let tty = std::io::stdout().is_terminal();
    let started = Instant::now();
    let mut last_event: HashMap<String, Instant> = HashMap::new();
    let mut drawn = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    while !progress.all_completed() && started.elapsed() < LIMIT {
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                let line = progress.apply(&ev);
                last_event.insert(ev["case_id"].as_str().unwrap_or_default().to_string(), Instant::now());
                if !tty {
                    println!("{:>6.1}s  {line}", started.elapsed().as_secs_f64());
                }
            }
            _ = tick.tick() => {}
        }
        // Withdrawals whose case holds an accepted item and has been quiet for a while.
        let due: Vec<String> = withdrawals
            .keys()
            .filter(|id| {
                let c = progress.cases.get(*id);
                let accepted = c.is_some_and(|c| c.items.values().any(|(_, s)| s == "accepted"));
                let quiet = last_event
                    .get(*id)
                    .is_some_and(|t| t.elapsed() >= QUIET_BEFORE_WITHDRAWAL);
                accepted && quiet
            })
            .cloned()
            .collect();
        for id in due {
            if let Some(body) = withdrawals.shift_remove(&id) {
                platform::publish(&channel, &topology, "withdrawal", body.as_bytes()).await?;
                if !tty {
                    println!(
                        "{:>6.1}s  {id}  withdrawal published",
                        started.elapsed().as_secs_f64()
                    );
                }
            }
        }
        if tty {
            let table = progress.table();
            let mut out = std::io::stdout().lock();
            if drawn > 0 {
                // Back to the top of the previous table, and clear below.
                let _ = write!(out, "\x1b[{drawn}A\x1b[J");
            }
            let _ = write!(out, "{table}");
            let _ = writeln!(out, "{:.1}s", started.elapsed().as_secs_f64());
            let _ = out.flush();
            drawn = table.lines().count() + 1;
        }
    }
    let all = progress.all_completed();
    if !tty {
        println!("\n{}", progress.table());
    }
    print!("{}", progress.summary());
    if all {
        println!(
            "every case completed in {:.1}s. Look at one: ONETHING_DATABASE_URL=sqlite://{} onething case {}",
            started.elapsed().as_secs_f64(),
            db.display(),
            progress
                .cases
                .keys()
                .next()
                .map(String::as_str)
                .unwrap_or_default()
        );
    } else {
        println!(
            "not every case completed within {}s; the daemon's state is in {}",
            LIMIT.as_secs(),
            db.display()
        );
    }
    running.stop().await;
    platform::delete_topology(&channel, &topology).await;
    sim.stop().await;
    let _ = conn.close(0, "demo done".into()).await;
    Ok(all)
}
