//! `onething-load`: a load test of the daemon. Starts `onething sim` and `onething run` (the release
//! binaries beside this one) as children with their own ports, folder, SQLite file and broker
//! names; publishes N newborn cases (as fast as publisher confirms allow, or at a rate); follows
//! the events; reports throughput and latency per stage (received, first push, completed), the
//! daemon's memory and CPU, its /metrics and log, and the simulators' counts. `--seed N` first
//! stores N completed cases through `onething::store::Store`, to measure memory with a big store.
//!
//! `cargo build --release && cargo run --release --bin onething-load -- --cases 2000`

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod children;
mod measure;
mod seed;
mod unlimited;

use children::{StopOnDrop, free_ports, get, log_summary, spawn, stop, wait_http};
use measure::{cpu, machine, memory, spread, steady};
use seed::{seed, submission};

use clap::{Parser, ValueEnum};
use lapin::message::DeliveryResult;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use onething::broker::Topology;
use onething::engine::{Change, Effect, Input, Push};
use onething::store::AuditRecord;
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Publishes awaiting their confirm at once.
const WINDOW: usize = 256;
const STAGES: [&str; 3] = ["case.received", "item.dispatched", "case.completed"];

#[derive(Clone, Copy, ValueEnum)]
enum Stage {
    Received,
    Dispatched,
    Completed,
}

#[derive(Parser)]
#[command(about = "Load test of `onething run` against `onething sim` (release binaries)")]
struct Args {
    /// Newborn cases to publish.
    #[arg(long, default_value_t = 0)]
    cases: usize,
    /// Cases per second (default: as fast as publisher confirms allow).
    #[arg(long)]
    rate: Option<f64>,
    /// The daemon's store (default: a SQLite file in the temp folder).
    #[arg(long)]
    database: Option<String>,
    /// Gateway instances sharing the store and the broker (several need a postgres:// store).
    #[arg(long, default_value_t = 1)]
    instances: usize,
    /// Keep the temp folder (logs, database) and the broker objects.
    #[arg(long)]
    keep: bool,
    /// Wait until every case reached this stage…
    #[arg(long, value_enum, default_value = "completed")]
    until: Stage,
    /// …or this many seconds after the last publish.
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
    /// Store this many completed cases before the daemon starts.
    #[arg(long, default_value_t = 0)]
    seed: usize,
    /// ONETHING_TIME_WARP for the daemon.
    #[arg(long, default_value = "1")]
    warp: String,
    /// Request only these items (comma-separated; default: all of newborn).
    #[arg(long, value_delimiter = ',')]
    items: Vec<String>,
    /// Lift the departments' documented limits (rates, concurrency, poll pace) in a copy of the
    /// mappings and in the simulators: the gateway's own capacity, not the departments'.
    #[arg(long)]
    unlimited: bool,
    /// RUST_LOG for the daemon (e.g. `warn,sqlx::query=debug` to see every statement).
    #[arg(long, default_value = "warn")]
    log: String,
    /// Only remove what an earlier `--keep` run with this process id left.
    #[arg(long, value_name = "PID")]
    drop: Option<u32>,
}

/// Seconds since `start`, per case: publish, then each of `STAGES` (its first event).
struct Track {
    start: Instant,
    ids: HashMap<String, usize>,
    times: Mutex<Vec<[Option<f64>; 4]>>,
    reached: [AtomicUsize; 3],
    kinds: Mutex<BTreeMap<String, u64>>,
    changed: Notify,
}

/// What a run needs once set up.
struct Run {
    args: Args,
    env: HashMap<String, String>,
    topo: Topology,
    tag: String,
    fixture: Value,
    gateway: String,
}

fn e(x: impl std::fmt::Display) -> String {
    x.to_string()
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

async fn drop_topology(t: &Topology) {
    let Ok(conn) = Connection::connect(AMQP, ConnectionProperties::default()).await else {
        return;
    };
    if let Ok(ch) = conn.create_channel().await {
        for q in [&t.intake_queue, &t.dead_queue] {
            let _ = ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        for x in [&t.intake_exchange, &t.dead_exchange, &t.events_exchange] {
            let _ = ch
                .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
    }
    let _ = conn.close(200, "done".into()).await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    match start(Args::parse()).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(err) => {
            eprintln!("onething-load: {err}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn start(args: Args) -> Result<bool, String> {
    let pid = args.drop.unwrap_or_else(std::process::id);
    let topo = Topology::with_suffix(&format!(".load.{pid}"));
    let work = std::env::temp_dir().join(format!("onething-load-{pid}"));
    if args.drop.is_some() {
        drop_topology(&topo).await;
        // The folder may be gone already (removed by hand): the broker objects were the rest.
        return match std::fs::remove_dir_all(&work) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(e(err)),
            _ => Ok(true),
        };
    }
    let bin = std::env::current_exe()
        .map_err(e)?
        .with_file_name("onething");
    let Ok(built) = std::fs::metadata(&bin).and_then(|m| m.modified()) else {
        return Err(format!(
            "{} is missing: run `cargo build --release`",
            bin.display()
        ));
    };
    let now = std::time::SystemTime::now();
    let age = now.duration_since(built).unwrap_or_default().as_secs();
    let tag = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(e)?
        .as_secs()
        % 0xffffff;
    std::fs::create_dir_all(work.join("exchange/nr")).map_err(e)?;
    let db = args
        .database
        .clone()
        .unwrap_or(format!("sqlite://{}/state.db", work.display()));
    let fixture = std::fs::read_to_string(format!("{ROOT}/fixtures/newborn.json")).map_err(e)?;
    let config = if args.unlimited {
        let copy = work.join("mappings");
        unlimited::copy_lifted(&Path::new(ROOT).join("mappings"), &copy)?;
        copy
    } else {
        Path::new(ROOT).join("mappings")
    };
    let creds = Path::new(ROOT).join("mappings/test-credentials.env");
    let mut env: HashMap<_, _> = onething::translate::read_env_file(&creds)?
        .into_iter()
        .collect();
    let ports = free_ports(args.instances.max(1) + onething::sim::HTTP_SYSTEMS.len());
    let (ports, extra_ports) = ports.split_at(1 + onething::sim::HTTP_SYSTEMS.len());
    let extra_ports = extra_ports.to_vec();
    let addr = format!("127.0.0.1:{}", ports[0]);
    for ((id, _), port) in onething::sim::HTTP_SYSTEMS.iter().zip(&ports[1..]) {
        let var = format!("ONETHING_DEPT_{}_URL", id.to_ascii_uppercase());
        env.insert(var, format!("http://127.0.0.1:{port}"));
    }
    let t = &topo;
    for (k, v) in [
        (
            "DEPT_NR_DIR",
            work.join("exchange/nr").display().to_string(),
        ),
        ("CONFIG", config.display().to_string()),
        ("DATABASE_URL", db.clone()),
        ("AMQP_URL", AMQP.into()),
        ("HTTP_ADDR", addr.clone()),
        ("TIME_WARP", args.warp.clone()),
        ("AMQP_INTAKE_EXCHANGE", t.intake_exchange.clone()),
        ("AMQP_INTAKE_QUEUE", t.intake_queue.clone()),
        ("AMQP_DEAD_EXCHANGE", t.dead_exchange.clone()),
        ("AMQP_DEAD_QUEUE", t.dead_queue.clone()),
        ("AMQP_EVENTS_EXCHANGE", t.events_exchange.clone()),
    ] {
        env.insert(format!("ONETHING_{k}"), v);
    }
    env.insert("RUST_LOG".into(), args.log.clone());
    if args.unlimited {
        env.insert("ONETHING_SIM_LIMITS".into(), "off".into());
    }
    println!(
        "{} built {age} s ago; folder {}; store {db}",
        bin.display(),
        work.display()
    );
    let fixture = serde_json::from_str(&fixture).map_err(e)?;
    let gateway = format!("http://{addr}");
    let run = Run {
        args,
        env,
        topo,
        tag: format!("{tag:x}"),
        fixture,
        gateway,
    };
    if run.args.seed > 0 {
        seed(&run, &db).await?;
    }
    let logs = |a: &str, b: &str| [work.join(a), work.join(b)];
    let sim_args = ["sim", "--gateway", &run.gateway];
    let mut sim = spawn(&bin, &sim_args, &run.env, logs("sim.out", "sim.log"));
    let mut env0 = run.env.clone();
    env0.insert("ONETHING_INSTANCE".into(), "load-0".into());
    let mut daemon = spawn(&bin, &["run"], &env0, logs("daemon.log", "daemon.err"));
    // Further instances: their own HTTP port and name; the simulators call back the first.
    let mut others: Vec<Child> = extra_ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let mut env = run.env.clone();
            env.insert("ONETHING_HTTP_ADDR".into(), format!("127.0.0.1:{port}"));
            env.insert("ONETHING_INSTANCE".into(), format!("load-{}", i + 1));
            let names = (
                format!("daemon{}.log", i + 1),
                format!("daemon{}.err", i + 1),
            );
            spawn(&bin, &["run"], &env, logs(&names.0, &names.1))
        })
        .collect();
    // Should this tool die before it stops them (a panic: printing into a closed pipe, say),
    // the guard stops the children instead of leaving them running.
    let guard = StopOnDrop(
        [&sim, &daemon]
            .into_iter()
            .chain(&others)
            .map(Child::id)
            .collect(),
    );
    let outcome = run.drive(&mut sim, &mut daemon).await;
    std::mem::forget(guard);
    for o in &mut others {
        println!("{}", stop("daemon", o));
    }
    println!("{}\n{}", stop("daemon", &mut daemon), stop("sim", &mut sim));
    let (n, top) = log_summary(&work.join("daemon.log"));
    println!("daemon log: {n} lines at RUST_LOG={}{top}", run.args.log);
    for f in ["daemon.err", "sim.log"] {
        let text = std::fs::read_to_string(work.join(f)).unwrap_or_default();
        if !text.trim().is_empty() {
            let last: Vec<&str> = text.lines().rev().take(3).collect();
            println!("{f} (last lines): {}", last.join(" | "));
        }
    }
    if run.args.keep || outcome.is_err() {
        println!(
            "kept {} and the broker objects: --drop {pid} removes them",
            work.display()
        );
    } else {
        drop_topology(&run.topo).await;
        let _ = std::fs::remove_dir_all(&work);
    }
    let exited = |c: &mut Child| c.try_wait().ok().flatten().is_some_and(|s| s.success());
    Ok(outcome? && exited(&mut sim) && exited(&mut daemon))
}

/// Binds a queue to every event; records each case's first event of each stage.
async fn follow(ch: &Channel, exchange: &str, track: Arc<Track>) -> Result<(), String> {
    let (none, all) = (FieldTable::default(), "#".into());
    let opts = QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    let q = ch
        .queue_declare("".into(), opts, none.clone())
        .await
        .map_err(e)?;
    let bind = ch.queue_bind(
        q.name().clone(),
        exchange.into(),
        all,
        Default::default(),
        none.clone(),
    );
    bind.await.map_err(e)?;
    let opts = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let consumer = ch.basic_consume(q.name().clone(), "load".into(), opts, none);
    consumer
        .await
        .map_err(e)?
        .set_delegate(move |d: DeliveryResult| {
            if let Ok(Some(d)) = d {
                let (now, kind) = (secs(track.start), d.routing_key.as_str());
                *track.kinds.lock().unwrap().entry(kind.into()).or_default() += 1;
                let case = d
                    .properties
                    .correlation_id()
                    .as_ref()
                    .map_or("", |c| c.as_str());
                let stage = STAGES.iter().position(|k| *k == kind);
                if let (Some(s), Some(&i)) = (stage, track.ids.get(case)) {
                    let slot = &mut track.times.lock().unwrap()[i][s + 1];
                    if slot.is_none() {
                        *slot = Some(now);
                        track.reached[s].fetch_add(1, Relaxed);
                        track.changed.notify_waiters();
                    }
                }
            }
            std::future::ready(())
        });
    Ok(())
}

impl Run {
    async fn drive(&self, sim: &mut Child, daemon: &mut Child) -> Result<bool, String> {
        let (args, http) = (&self.args, reqwest::Client::new());
        let sim_url = format!("{}/_sim/stats", self.env["ONETHING_DEPT_HEALTH_URL"]);
        wait_http(&http, &sim_url, sim).await?;
        wait_http(&http, &format!("{}/readyz", self.gateway), daemon).await?;
        let pids = [daemon.id().to_string(), sim.id().to_string(), "self".into()];
        tokio::time::sleep(Duration::from_secs(3)).await; // settle before the idle reading
        let (idle, _) = memory(daemon.id());
        println!(
            "daemon pid {}, sim pid {}; daemon idle RSS {idle:.1} MB",
            pids[0], pids[1]
        );

        let conn = Connection::connect(AMQP, ConnectionProperties::default())
            .await
            .map_err(e)?;
        let ch = conn.create_channel().await.map_err(e)?;
        let ids: Vec<String> = (0..args.cases)
            .map(|i| format!("410225-L{}-{i:06}", self.tag))
            .collect();
        let track = Arc::new(Track {
            start: Instant::now(),
            ids: ids.iter().cloned().zip(0..).collect(),
            times: Mutex::new(vec![[None; 4]; args.cases]),
            reached: Default::default(),
            kinds: Default::default(),
            changed: Notify::new(),
        });
        follow(&ch, &self.topo.events_exchange, track.clone()).await?;

        // Publish, keeping up to WINDOW confirms outstanding.
        let publisher = conn.create_channel().await.map_err(e)?;
        publisher
            .confirm_select(Default::default())
            .await
            .map_err(e)?;
        let (cpu0, m0) = (pids.clone().map(|p| cpu(&p)), machine());
        let (window, refused) = (
            Arc::new(Semaphore::new(WINDOW)),
            Arc::new(AtomicUsize::new(0)),
        );
        let mut publishes = tokio::task::JoinSet::new();
        let t0 = track.start.elapsed();
        for (i, id) in ids.iter().enumerate() {
            if let Some(r) = args.rate {
                let at = track.start + t0 + Duration::from_secs_f64(i as f64 / r);
                tokio::time::sleep_until(at.into()).await;
            }
            let permit = window.clone().acquire_owned().await.map_err(e)?;
            let body = submission(&self.fixture, id, i, &args.items).to_string();
            let (ch, track, refused) = (publisher.clone(), track.clone(), refused.clone());
            let x = self.topo.intake_exchange.clone();
            publishes.spawn(async move {
                let props = BasicProperties::default().with_delivery_mode(2);
                let props = props.with_content_type("application/json".into());
                let (opts, key) = (BasicPublishOptions::default(), "submission".into());
                track.times.lock().unwrap()[i][0] = Some(secs(track.start));
                let r = ch.basic_publish(x.as_str().into(), key, opts, body.as_bytes(), props);
                let confirmed = match r.await {
                    Ok(c) => c.await,
                    Err(err) => Err(err),
                };
                if !matches!(confirmed, Ok(Confirmation::Ack(None))) {
                    refused.fetch_add(1, Relaxed);
                }
                drop(permit);
            });
            while publishes.try_join_next().is_some() {}
        }
        while publishes.join_next().await.is_some() {}
        let took = secs(track.start) - t0.as_secs_f64();
        let refused = refused.load(Relaxed);
        println!(
            "published {} cases in {took:.2} s ({refused} not confirmed)",
            args.cases
        );

        // Wait for the stage; note when the intake queue is empty; progress every 10 s.
        let (goal, deadline) = (
            args.until as usize,
            Instant::now() + Duration::from_secs(args.timeout),
        );
        let (mut drained, mut look, mut note) = (None, Instant::now(), Instant::now());
        let intake = self.topo.intake_queue.as_str();
        while track.reached[goal].load(Relaxed) < args.cases && Instant::now() < deadline {
            let _ =
                tokio::time::timeout(Duration::from_millis(200), track.changed.notified()).await;
            if !conn.status().connected() {
                break; // no more events will come: see the warning below
            }
            if drained.is_none() && Instant::now() >= look {
                look += Duration::from_millis(200);
                let passive = QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                };
                let q = ch
                    .queue_declare(intake.into(), passive, FieldTable::default())
                    .await;
                drained = q
                    .is_ok_and(|q| q.message_count() == 0)
                    .then(|| secs(track.start));
            }
            if Instant::now() >= note {
                note += Duration::from_secs(10);
                let [a, b, c] = &track.reached;
                let (a, b, c) = (a.load(Relaxed), b.load(Relaxed), c.load(Relaxed));
                let rss = memory(daemon.id()).0;
                let at = secs(track.start);
                eprintln!(
                    "[{at:>5.0} s] received {a}, dispatched {b}, completed {c}; RSS {rss:.0} MB"
                );
            }
        }
        let end = secs(track.start);
        let (cpu1, m1) = (pids.map(|p| cpu(&p)), machine());
        let (rss, hwm) = memory(daemon.id());
        let asked = Instant::now();
        let metrics = get(&http, &format!("{}/metrics", self.gateway)).await;
        let scrape = secs(asked) * 1e3;
        let sims = get(&http, &sim_url).await;
        let lost = !conn.status().connected();
        let _ = conn.close(200, "done".into()).await;

        // Report.
        let times = track.times.lock().unwrap().clone();
        let first = times
            .iter()
            .filter_map(|t| t[0])
            .fold(f64::INFINITY, f64::min);
        let rate = args.rate.map_or("max".into(), |r| format!("{r}/s"));
        let db = &self.env["ONETHING_DATABASE_URL"];
        println!(
            "\n{} cases at rate {rate}, store {db}, warp {}",
            args.cases, args.warp
        );
        let head = [
            "stage",
            "cases",
            "cases/s",
            "steady/s",
            "median ms",
            "p99 ms",
            "max ms",
        ];
        println!(
            "{:<17} {:>6} {:>8} {:>8} {:>10} {:>10} {:>10}",
            head[0], head[1], head[2], head[3], head[4], head[5], head[6]
        );
        if let Some(d) = drained {
            let rate = args.cases as f64 / (d - first);
            println!(
                "{:<17} {:>6} {rate:>8.1}   (queue empty {:.1} s after the first publish)",
                "intake drained",
                args.cases,
                d - first
            );
        }
        for (s, name) in ["case.received", "first dispatched", "case.completed"]
            .iter()
            .enumerate()
        {
            let lat: Vec<f64> = times
                .iter()
                .filter_map(|t| Some(t[s + 1]? - t[0]?))
                .collect();
            let arrivals: Vec<f64> = times.iter().filter_map(|t| t[s + 1]).collect();
            let last = arrivals.iter().copied().fold(0.0, f64::max);
            let ([med, p99, max], n) = (spread(lat.clone()), lat.len());
            let (rate, steady) = (n as f64 / (last - first), steady(arrivals));
            match n {
                0 => println!("{name:<17} {n:>6}"),
                _ => println!(
                    "{name:<17} {n:>6} {rate:>8.1} {steady:>8.1} {med:>10.1} {p99:>10.1} {max:>10.1}"
                ),
            }
        }
        let tenths = |stage: usize| {
            let tenth = |k: usize| {
                let part = &times[k * args.cases / 10..(k + 1) * args.cases / 10];
                let lat = part.iter().filter_map(|t| Some(t[stage]? - t[0]?));
                format!("{:.0}", spread(lat.collect())[0])
            };
            (0..10).map(tenth).collect::<Vec<String>>().join(" ")
        };
        println!("median ms per tenth of the cases in publish order:");
        println!("  first push: {}", tenths(2));
        println!("  completed:  {}", tenths(3));
        println!(
            "(cases/s: cases at the stage / (last arrival − first publish); steady/s: the middle 80 %\n \
             of arrivals / the time between the 10th and 90th percentile arrival, what a stage keeps up\n \
             with once a case's delay through the stages is paid; latency: publish → event;\n \
             intake drained: no message ready in the intake queue, up to the prefetch (64) unacked)"
        );
        println!(
            "daemon memory: idle {idle:.1} MB, at the end {rss:.1} MB, peak (VmHWM) {hwm:.1} MB"
        );
        let used: Vec<f64> = (0..3).map(|k| cpu1[k] - cpu0[k]).collect();
        let (busy, all) = (m1.0 - m0.0, m1.1 - m0.1);
        let rest = busy - used.iter().sum::<f64>();
        let cores = all / (end - first);
        println!(
            "CPU s in {:.1} s on {cores:.0} cores: daemon {:.1}, sim {:.1}, this tool {:.1}, \
             everything else (broker, other work) {rest:.1}; machine {:.0}% busy",
            end - first,
            used[0],
            used[1],
            used[2],
            100.0 * busy / all
        );
        println!("events by type: {:?}", track.kinds.lock().unwrap());
        let lines: Vec<&str> = metrics
            .lines()
            .filter(|l| !l.starts_with('#') && !l.contains("_bucket"))
            .collect();
        println!(
            "daemon /metrics (answered in {scrape:.0} ms):\n  {}",
            lines.join("\n  ")
        );
        println!("sim stats: {sims}");
        if lost {
            println!(
                "WARNING: the broker closed this tool's connection at {end:.0} s (restarted?):"
            );
            println!("  later events were not seen, and the counts above are lower bounds");
        }
        Ok(track.reached[goal].load(Relaxed) >= args.cases)
    }
}
