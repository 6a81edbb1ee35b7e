//! The `onething` command line: parses arguments and calls the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use onething::mapping::Mapping;
use onething::translate::{TranslateRequest, read_results, translate};

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
    match cli.command {
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
                    println!(
                        "{}: ok ({} one-things, {} items, {} departments, {} code tables, {} calendar years)",
                        dir.display(),
                        m.catalog.onething.len(),
                        items,
                        m.departments.len(),
                        m.codes.len(),
                        m.calendars.len()
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
