//! The `fuse-cdc-bridge` command: parses arguments, sets up logging, calls into the library and
//! maps errors to exit codes. Logs go to stderr; stdout carries only command output.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use tokio::sync::watch;

use fuse_cdc_bridge::config::Config;
use fuse_cdc_bridge::pg::dsn::ConnectParams;
use fuse_cdc_bridge::preflight::{self, OutputFormat, SetupOptions};
use fuse_cdc_bridge::{demo, tail, Error};

#[derive(Parser)]
#[command(
    name = "fuse-cdc-bridge",
    version,
    about = "Fuse webhooks from PostgreSQL logical replication"
)]
struct Cli {
    /// Log format on stderr. Filter with RUST_LOG (default: info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Check the database's prerequisites and print each finding with its fix.
    ///
    /// Exits 0 only when there is nothing to fix: warnings (e.g. a missing publication or slot,
    /// which `setup` creates) make it exit 1, like definite problems (which stop `run`).
    Check {
        /// The bridge's configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Print the report as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Apply the fixes SQL can make: create or extend the publication, create the slot.
    ///
    /// Prints each statement before running it. What it cannot fix (wal_level, missing columns,
    /// privileges it lacks) is printed with its fix and makes it exit 1. Running it again
    /// changes nothing.
    Setup {
        /// The bridge's configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Print the statements, run none.
        #[arg(long)]
        dry_run: bool,
        /// Also set REPLICA IDENTITY FULL on the tables whose rules compare old and new values
        /// (their updates then log the whole old row: more WAL). Without it they are only
        /// suggested.
        #[arg(long)]
        replica_identity_full: bool,
    },
    /// Print each committed change as a JSON line (through a temporary slot of its own).
    Tail {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Start a throwaway PostgreSQL with the reference Fuse schema, generate activity and show
    /// what the bridge captures. Needs only PostgreSQL's server binaries.
    Demo {
        /// Stop after this long ("20s", "2m"; a bare number is seconds). Default: until Ctrl-C.
        #[arg(long, value_parser = parse_duration_arg)]
        duration: Option<Duration>,
    },
}

fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    fuse_cdc_bridge::config::parse_duration(text)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(hint) = e.hint() {
                eprintln!("hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<ExitCode, Error> {
    let shutdown = shutdown_signal();
    let mut stdout = std::io::stdout();
    let ok = match command {
        Command::Check { config, json } => {
            let config = Config::load(&config)?;
            let format = if json {
                OutputFormat::Json
            } else {
                OutputFormat::Text
            };
            preflight::check_command(&config, format, &mut stdout).await?
        }
        Command::Setup {
            config,
            dry_run,
            replica_identity_full,
        } => {
            let config = Config::load(&config)?;
            let opts = SetupOptions {
                dry_run,
                replica_identity_full,
            };
            preflight::setup_command(&config, opts, &mut stdout).await?
        }
        Command::Tail { config } => {
            let config = Config::load(&config)?;
            let settings = tail::TailSettings {
                params: ConnectParams::parse(config.postgres.url.expose())?,
                publication: config.postgres.publication.clone(),
                status_interval: Duration::from_secs(1),
            };
            tail::run(&settings, &mut stdout, shutdown).await?;
            true
        }
        Command::Demo { duration } => {
            demo::run(duration, shutdown).await?;
            true
        }
    };
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A watch that turns true on SIGINT or SIGTERM.
fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    rx
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
