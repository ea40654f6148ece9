//! The `fuse-cdc-bridge` command: parses arguments, sets up logging, calls into the library and
//! maps errors to exit codes. Logs go to stderr; stdout carries only command output.

/// jemalloc instead of glibc's malloc: capture and delivery make many small short-lived
/// allocations (decoding, detection, sled, HTTP), which cost glibc about a quarter of the CPU and
/// left fragmented arenas behind (BENCHMARKS.md: CPU per 100k events −30 %, peak RSS below 64 MB).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Two arenas are plenty for a sidecar with a few busy threads and keep fragmentation low; freed
/// pages go back to the kernel within a second, from jemalloc's own thread. `_RJEM_MALLOC_CONF`
/// in the environment overrides this.
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: &[u8] =
    b"background_thread:true,narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use tokio::sync::watch;

use fuse_cdc_bridge::config::{Config, EventType};
use fuse_cdc_bridge::event::EventId;
use fuse_cdc_bridge::pg::dsn::ConnectParams;
use fuse_cdc_bridge::preflight::{self, OutputFormat, SetupOptions};
use fuse_cdc_bridge::status::{self, Access};
use fuse_cdc_bridge::{app, dead_letters, demo, tail, teardown, Error};

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
    /// Run the bridge: capture, detect, store and deliver, until SIGINT or SIGTERM.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Drop the replication slot (and with --drop-publication the publication) so an abandoned
    /// slot cannot fill the database's disk. Refuses while webhooks are still owed.
    Teardown {
        #[arg(long, short)]
        config: PathBuf,
        /// Drop the slot even if the outbox still holds undelivered events.
        #[arg(long)]
        force: bool,
        /// Also drop the publication.
        #[arg(long)]
        drop_publication: bool,
    },
    /// Print a systemd unit for this binary and config file (save it, then `systemctl enable`).
    SystemdUnit {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Where the bridge stands: checkpoint, slot and retained WAL, and per endpoint the outbox
    /// depth, the oldest undelivered event's age, dead letters and the last delivery error.
    ///
    /// Asks the running bridge (over [http].listen) when it holds the state directory; reads the
    /// state directly otherwise. Exits 1 when the database could not be queried (the local
    /// state is still printed).
    Status {
        #[arg(long, short)]
        config: PathBuf,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// List, retry or purge the events an endpoint refused or that ran out of attempts.
    ///
    /// Works while `run` is running (through its admin routes on [http].listen).
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
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
    /// Start a throwaway PostgreSQL with the reference Fuse schema, a local webhook receiver and
    /// the bridge; generate Fuse activity and show each webhook as it arrives. Needs only
    /// PostgreSQL's server binaries. --duration counts from the start of the activity.
    Demo {
        /// Stop after this long ("20s", "2m"; a bare number is seconds). Default: until Ctrl-C.
        #[arg(long, value_parser = parse_duration_arg)]
        duration: Option<Duration>,
    },
}

#[derive(Subcommand)]
enum DeadLetterAction {
    /// Show dead letters (a table, or JSON with --json).
    List {
        #[command(flatten)]
        select: Select,
        #[arg(long)]
        json: bool,
    },
    /// Put dead letters back in the outbox; they are sent again with the same webhook-id.
    Retry {
        #[command(flatten)]
        select: Select,
        /// Act on every dead letter when no filter is given.
        #[arg(long)]
        all: bool,
    },
    /// Delete dead letters for good.
    Purge {
        #[command(flatten)]
        select: Select,
        /// Act on every dead letter when no filter is given.
        #[arg(long)]
        all: bool,
    },
}

#[derive(clap::Args)]
struct Select {
    #[arg(long, short)]
    config: PathBuf,
    /// Only this endpoint's dead letters.
    #[arg(long)]
    endpoint: Option<String>,
    /// Only this event type (e.g. user.created).
    #[arg(long, value_parser = parse_event_type)]
    event_type: Option<EventType>,
    /// Only this event id (the webhook-id).
    #[arg(long, value_parser = parse_event_id)]
    id: Option<EventId>,
}

impl Select {
    fn filter(&self) -> dead_letters::Filter {
        dead_letters::Filter {
            endpoint: self.endpoint.clone(),
            event_type: self.event_type,
            id: self.id,
        }
    }
}

fn parse_event_type(text: &str) -> Result<EventType, String> {
    text.parse()
        .map_err(|e: fuse_cdc_bridge::config::UnknownEventType| e.to_string())
}

fn parse_event_id(text: &str) -> Result<EventId, String> {
    EventId::parse(text)
        .ok_or_else(|| format!("{text:?} is not an event id (like evt_0000000001a3f2b8_0)"))
}

fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    fuse_cdc_bridge::config::parse_duration(text)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo's output is the webhooks on stdout; the bridge's info lines would drown them.
    let default_level = match cli.command {
        Command::Demo { .. } => "warn",
        _ => "info",
    };
    init_logging(cli.log_format, default_level);
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
        Command::Run { config } => {
            app::run(Config::load(&config)?, shutdown).await?;
            true
        }
        Command::Teardown {
            config,
            force,
            drop_publication,
        } => {
            let config = Config::load(&config)?;
            let opts = teardown::TeardownOptions {
                force,
                drop_publication,
            };
            teardown::run(&config, opts, &mut stdout).await?;
            true
        }
        Command::SystemdUnit { config } => {
            let loaded = Config::load(&config)?;
            let binary =
                std::env::current_exe().map_err(|e| Error::io("finding this program's path", e))?;
            let config = std::path::absolute(&config)
                .map_err(|e| Error::io("resolving the config path", e))?;
            print!(
                "{}",
                fuse_cdc_bridge::systemd::unit(
                    &binary.display().to_string(),
                    &config.display().to_string(),
                    &loaded.state.dir.display().to_string(),
                )
            );
            true
        }
        Command::Status { config, json } => {
            let config = Config::load(&config)?;
            let status = Access::open(&config)?.status(&config).await?;
            if json {
                println!("{}", serde_json::to_string(&status).unwrap_or_default());
            } else {
                print!("{}", status::render_table(&status));
            }
            status.database.error.is_none()
        }
        Command::DeadLetters { action } => {
            dead_letters_command(action).await?;
            true
        }
    };
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn dead_letters_command(action: DeadLetterAction) -> Result<(), Error> {
    let open = |select: &Select| -> Result<Access, Error> {
        let config = Config::load(&select.config)?;
        Access::open(&config)
    };
    match action {
        DeadLetterAction::List { select, json } => {
            let letters = open(&select)?.dead_letters(&select.filter()).await?;
            if json {
                for letter in &letters {
                    println!("{}", serde_json::to_string(letter).unwrap_or_default());
                }
            } else {
                print!("{}", dead_letters::render_table(&letters));
            }
        }
        DeadLetterAction::Retry { select, all } => {
            let n = open(&select)?.retry(&select.filter(), all).await?;
            println!("{n} dead letter(s) put back in the outbox");
        }
        DeadLetterAction::Purge { select, all } => {
            let n = open(&select)?.purge(&select.filter(), all).await?;
            println!("{n} dead letter(s) purged");
        }
    }
    Ok(())
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

fn init_logging(format: LogFormat, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
