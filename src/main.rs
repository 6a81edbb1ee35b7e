//! The `onething` command line: parses arguments and calls the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use onething::mapping::Mapping;
use onething::sim::SimConfig;
use onething::translate::{TranslateRequest, read_results, translate};

/// mimalloc rather than the system allocator: under load the daemon spent some 15 % of its CPU
/// in glibc's malloc, free and consolidation (many short-lived buffers across threads).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "onething",
    version,
    about = "Integration gateway for one-thing (一件事) government services"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate every mapping file; one line per problem as FILE:LINE: message.
    Check {
        /// The mapping folder (default: $ONETHING_CONFIG, else `mappings`).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The daemon: consume, translate, push, poll, publish, until SIGTERM/SIGINT.
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print a case's items, their states and deadlines, and its audit trail.
    Case { case_id: String },
    /// Inspect and re-submit dead-lettered messages.
    Dead {
        #[command(subcommand)]
        command: DeadCommand,
    },
    /// Check the audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Simulators, daemon and the example cases on this machine, with a live progress view.
    Demo {
        /// Where the demo keeps its state and exchange folder (removed at start).
        #[arg(long, default_value = "data/demo")]
        dir: PathBuf,
    },
    /// Run the ten simulated department systems until SIGTERM/SIGINT.
    Sim {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where connected systems call back (default http:// + $ONETHING_HTTP_ADDR).
        #[arg(long)]
        gateway: Option<String>,
    },
    /// Print the exact request an item's department would receive for a submission.
    Translate {
        #[arg(long)]
        item: String,
        /// submit (default), complete, query or withdraw.
        #[arg(long)]
        op: Option<String>,
        /// The department's reference (for complete, query, withdraw).
        #[arg(long = "ref")]
        reference: Option<String>,
        /// JSON file of prerequisite results: {"<item>": {"<key>": "<value>"}}.
        #[arg(long)]
        results: Option<PathBuf>,
        /// Withdrawal reason.
        #[arg(long)]
        reason: Option<String>,
        /// Fix the clock (RFC 3339) for reproducible output.
        #[arg(long)]
        at: Option<String>,
        /// Fix the nonce (hex).
        #[arg(long)]
        nonce: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// The submission (JSON).
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum DeadCommand {
    /// Every dead letter with its reason and errors (personal data masked).
    List {
        /// Leave out those already replayed.
        #[arg(long)]
        pending: bool,
    },
    /// Re-submit dead letters to the intake exchange (no ID: every one not replayed yet).
    Replay {
        ids: Vec<i64>,
        /// Replay even those replayed before.
        #[arg(long)]
        again: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify every chain (or one case's): exit 0 intact, 1 broken.
    Verify {
        #[arg(long = "case")]
        case_id: Option<String>,
    },
}

/// The test credentials beside the mappings, overridden by the environment.
fn sim_credentials(dir: &std::path::Path) -> indexmap::IndexMap<String, String> {
    let mut creds =
        onething::translate::read_env_file(&dir.join("test-credentials.env")).unwrap_or_default();
    for (k, v) in std::env::vars() {
        if k.starts_with("ONETHING_DEPT_") {
            creds.insert(k, v);
        }
    }
    creds
}

fn run_sim(config: Option<PathBuf>, gateway: Option<String>) -> ExitCode {
    let dir = onething::config::config_dir(config.as_deref());
    let gateway = gateway.unwrap_or_else(|| {
        format!(
            "http://{}",
            std::env::var("ONETHING_HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:8700".into())
        )
    });
    let cfg = match SimConfig::from_env(
        &onething::mapping::department::process_env,
        sim_credentials(&dir),
        gateway,
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("onething sim: {e}");
            return ExitCode::from(1);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("onething sim: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let handle = match onething::sim::start(cfg.clone()).await {
            Ok(h) => h,
            Err(e) => {
                eprintln!("onething sim: {e}");
                return ExitCode::from(1);
            }
        };
        for (id, addr) in &handle.addrs {
            tracing::info!(department = *id, %addr, "simulator listening");
        }
        tracing::info!(department = "nr", folder = %cfg.nr_dir.display(), "simulator watching");
        tracing::info!(gateway = %cfg.callbacks.gateway, "callbacks go to the gateway");
        wait_for_signal().await;
        tracing::info!("stopping");
        handle.stop().await;
        ExitCode::SUCCESS
    })
}

/// Runs an operator verb's future on a fresh runtime.
fn block_on(verb: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match runtime() {
        Ok(rt) => rt.block_on(verb),
        Err(code) => code,
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    built(tokio::runtime::Runtime::new())
}

/// A runtime, or the exit code of a process that could not build one (said on stderr).
fn built(
    rt: std::io::Result<tokio::runtime::Runtime>,
) -> Result<tokio::runtime::Runtime, ExitCode> {
    rt.map_err(|e| {
        eprintln!("onething: {e}");
        ExitCode::from(1)
    })
}

/// The daemon's runtime. Its worker threads run at a lower priority (nice +5) than the store's
/// writer: every case change waits for that one writer, and on a busy machine it spent two thirds
/// of its time waiting for a core between statements, behind work that can wait. A thread starts
/// at its creator's priority: the writer's thread and SQLite's (opened by the migrations) are
/// started from the main thread, before any worker runs store work.
fn daemon_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(|| {
            #[cfg(target_os = "linux")]
            // SAFETY: setpriority has no memory effects; on Linux `who = 0` is the calling thread.
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, 0, WORKER_NICE);
            }
        })
        .build();
    built(rt)
}

/// How much lower the daemon's worker threads run than its writer.
#[cfg(target_os = "linux")]
const WORKER_NICE: libc::c_int = 5;

fn run_daemon(config: Option<PathBuf>) -> ExitCode {
    let dir = onething::config::config_dir(config.as_deref());
    let env: onething::runtime::Env = std::sync::Arc::new(|k: &str| std::env::var(k).ok());
    let cfg = match onething::runtime::RunConfig::from_env(dir, env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("onething run: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match daemon_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async move {
        let running = match onething::runtime::start(cfg).await {
            Ok(r) => r,
            Err(e) => {
                let first = e.lines().next().unwrap_or_default().to_string();
                eprintln!("onething run: {e}");
                tracing::error!(reason = %first, "cannot start");
                return ExitCode::from(2);
            }
        };
        onething::ops::notify::ready();
        // SIGHUP re-reads the mappings; SIGTERM/SIGINT stop.
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
        let stop = wait_for_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = hup.recv() => {
                    onething::ops::notify::reloading();
                    let _ = running.reload().await;
                    onething::ops::notify::ready();
                }
            }
        }
        onething::ops::notify::stopping();
        tracing::info!("stopping: no new work, finishing what is in flight");
        running.stop().await;
        ExitCode::SUCCESS
    })
}

/// Opens the store of `ONETHING_DATABASE_URL` for an operator's verb.
async fn open_store(verb: &str) -> Result<onething::store::Store, ExitCode> {
    let url = std::env::var("ONETHING_DATABASE_URL")
        .unwrap_or_else(|_| "sqlite://data/onething.db".into());
    onething::store::Store::open(&url).await.map_err(|e| {
        eprintln!("onething {verb}: {e}");
        ExitCode::from(2)
    })
}

fn dead(command: DeadCommand) -> ExitCode {
    block_on(async move {
        let store = match open_store("dead").await {
            Ok(s) => s,
            Err(code) => return code,
        };
        match command {
            DeadCommand::List { pending } => match store.dead_letters(pending).await {
                Ok(letters) => {
                    print!("{}", onething::ops::dead::render_list(&letters));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("onething dead list: {e}");
                    ExitCode::from(2)
                }
            },
            DeadCommand::Replay { ids, again } => {
                let env: onething::runtime::Env =
                    std::sync::Arc::new(|k: &str| std::env::var(k).ok());
                let cfg = match onething::runtime::RunConfig::from_env(PathBuf::new(), env) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("onething dead replay: {e}");
                        return ExitCode::from(2);
                    }
                };
                let broker = match connect_broker(&cfg).await {
                    Ok(b) => b,
                    Err(e) => {
                        eprintln!("onething dead replay: {e}");
                        return ExitCode::from(2);
                    }
                };
                let now = chrono::Utc::now().timestamp_millis();
                let r = onething::ops::dead::replay(&store, &broker, &ids, again, now).await;
                broker.close().await;
                match r {
                    Ok(report) => {
                        for l in &report.lines {
                            println!("{l}");
                        }
                        println!("{} replayed, {} failed", report.replayed, report.failed);
                        if report.failed > 0 {
                            ExitCode::from(1)
                        } else {
                            ExitCode::SUCCESS
                        }
                    }
                    Err(e) => {
                        eprintln!("onething dead replay: {e}");
                        ExitCode::from(1)
                    }
                }
            }
        }
    })
}

/// The broker of `ONETHING_AMQP_URL`, connected within 10 s.
async fn connect_broker(
    cfg: &onething::runtime::RunConfig,
) -> Result<onething::broker::Broker, String> {
    let broker = onething::broker::Broker::connect(&cfg.amqp_url, cfg.topology.clone())
        .await
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(std::time::Duration::from_secs(10), broker.wait_connected()).await {
        Ok(Ok(())) => Ok(broker),
        _ => {
            broker.close().await;
            Err(format!("the broker at {} does not answer", cfg.amqp_url))
        }
    }
}

fn audit(command: AuditCommand) -> ExitCode {
    let AuditCommand::Verify { case_id } = command;
    block_on(async move {
        let store = match open_store("audit verify").await {
            Ok(s) => s,
            Err(code) => return code,
        };
        match onething::ops::audit::verify(&store, case_id.as_deref()).await {
            Ok((intact, report)) => {
                print!("{report}");
                if intact {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => {
                eprintln!("onething audit verify: {e}");
                ExitCode::from(2)
            }
        }
    })
}

fn show_case(case_id: &str) -> ExitCode {
    block_on(async move {
        let store = match open_store("case").await {
            Ok(s) => s,
            Err(code) => return code,
        };
        match onething::runtime::casefile::render(&store, case_id).await {
            Ok(Some(text)) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Ok(None) => {
                eprintln!("onething case: unknown case {case_id}");
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("onething case: {e}");
                ExitCode::from(2)
            }
        }
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn load(config: Option<PathBuf>) -> Result<Mapping, ExitCode> {
    let dir = onething::config::config_dir(config.as_deref());
    Mapping::load(&dir).map_err(|problems| {
        for p in problems.sorted() {
            eprintln!("{p}");
        }
        ExitCode::from(1)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo's screen is its progress view: only warnings and errors are logged beside it.
    let level = if matches!(cli.command, Command::Demo { .. }) {
        "warn"
    } else {
        "info"
    };
    onething::ops::logs::init(matches!(cli.command, Command::Run { .. }), level);
    match cli.command {
        Command::Run { config } => run_daemon(config),
        Command::Case { case_id } => show_case(&case_id),
        Command::Dead { command } => dead(command),
        Command::Audit { command } => audit(command),
        Command::Demo { dir } => block_on(onething::demo::run(dir)),
        Command::Sim { config, gateway } => run_sim(config, gateway),
        Command::Check { config } => {
            let dir = onething::config::config_dir(config.as_deref());
            match Mapping::load(&dir) {
                Ok(m) => {
                    for w in &m.warnings {
                        eprintln!("{w}");
                    }
                    let items: usize = m
                        .catalog
                        .onething
                        .values()
                        .map(|o| o.get_ref().items.len())
                        .sum();
                    let mut years: Vec<String> =
                        m.calendars.iter().map(|c| c.year.to_string()).collect();
                    years.sort();
                    let calendars = match years.as_slice() {
                        [] => "no working-day calendar".to_string(),
                        [one] => format!("working-day calendar {one}"),
                        _ => format!("working-day calendars {}", years.join(", ")),
                    };
                    println!(
                        "{}: ok ({} one-things, {} items, {} departments, {} code tables, {calendars})",
                        dir.display(),
                        m.catalog.onething.len(),
                        items,
                        m.departments.len(),
                        m.codes.len(),
                    );
                    ExitCode::SUCCESS
                }
                Err(problems) => {
                    for p in problems.sorted() {
                        println!("{p}");
                    }
                    ExitCode::from(1)
                }
            }
        }
        Command::Translate {
            item,
            op,
            reference,
            results,
            reason,
            at,
            nonce,
            config,
            file,
        } => {
            let m = match load(config) {
                Ok(m) => m,
                Err(code) => return code,
            };
            let run = || -> Result<Vec<u8>, String> {
                let text = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
                let submission: serde_json::Value = serde_json::from_slice(&text)
                    .map_err(|e| format!("{}: not JSON: {e}", file.display()))?;
                let results = results.as_ref().map(read_results).transpose()?;
                translate(
                    &m,
                    &submission,
                    &TranslateRequest {
                        item,
                        op,
                        reference,
                        results,
                        reason,
                        at,
                        nonce,
                    },
                    &onething::mapping::department::process_env,
                )
            };
            match run() {
                Ok(bytes) => {
                    let mut out = std::io::stdout().lock();
                    if out.write_all(&bytes).and_then(|_| out.flush()).is_err() {
                        return ExitCode::from(1);
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("onething translate: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
