//! `status`: where the bridge stands, as one document: the checkpoint, the slot and the WAL it
//! retains, and per endpoint the outbox depth, the age of the oldest undelivered event, dead
//! letters and the last delivery error.
//!
//! The local part comes from the state directory: read by the running bridge (served on
//! `GET /admin/status`) or, when no bridge holds it, by the `status` command itself. The
//! database part is queried by whichever process builds the document; when the database cannot be
//! reached the document says why and still carries the local part (the command then exits 1).

mod access;
mod failures;
mod render;

pub use access::Access;
pub use failures::Failures;
pub use render::render_table;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::event::Event;
use crate::pg::admin::Admin;
use crate::pg::dsn::ConnectParams;
use crate::pgoutput::time::pg_micros_to_system_time;
use crate::store::Store;
use crate::Error;

/// How long the database part may take before the document goes out without it.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(10);

/// The whole status document (`status --json`, `GET /admin/status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// `bridge` when a running bridge answered, `state` when the state directory was read
    /// directly (no bridge running).
    pub source: Source,
    pub state_dir: String,
    /// The durable replication position in the store; `null` before the first session.
    pub checkpoint_lsn: Option<String>,
    /// Whether a replication session is streaming; `null` when no bridge is running.
    pub replication_connected: Option<bool>,
    pub database: DatabaseStatus,
    /// Configured endpoints in configuration order, then any others the state still holds
    /// entries for.
    pub endpoints: Vec<EndpointStatus>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Bridge,
    State,
}

/// What the database says about the slot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatabaseStatus {
    /// Why the rest is missing (the database could not be queried); `null` when it was.
    pub error: Option<String>,
    pub current_wal_lsn: Option<String>,
    /// `null` when the slot does not exist (or the database could not be queried).
    pub slot: Option<SlotStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotStatus {
    pub name: String,
    pub confirmed_flush_lsn: Option<String>,
    pub restart_lsn: Option<String>,
    /// `current_wal_lsn` − `confirmed_flush_lsn`.
    pub lag_bytes: Option<i64>,
    /// WAL the server keeps for the slot: `current_wal_lsn` − `restart_lsn`.
    pub retained_bytes: Option<i64>,
    pub wal_status: Option<String>,
    /// The walsender's pid while a consumer streams from the slot.
    pub active_pid: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointStatus {
    pub name: String,
    /// `false` for an endpoint the state still holds entries for but the configuration lost.
    pub configured: bool,
    /// Events not yet delivered.
    pub pending: u64,
    /// Seconds since the oldest undelivered event was committed; `null` when none.
    pub oldest_pending_age_seconds: Option<f64>,
    pub dead_letters: u64,
    pub last_error: Option<LastError>,
}

/// The last delivery failure of an endpoint. A running bridge remembers the latest since it
/// started; otherwise (and before the first failure) it comes from the state: the failure of an
/// undelivered event (the one scheduled latest; `at` is then unknown), or else the newest dead
/// letter's reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    pub event_id: String,
    pub status: Option<u16>,
    pub error: String,
    /// Unix milliseconds, when known.
    pub at: Option<u64>,
}

/// Builds the local part of the document from the store.
pub fn local(
    config: &Config,
    store: &Store,
    source: Source,
    connected: Option<bool>,
    failures: Option<&Failures>,
) -> Result<Status, Error> {
    let depth = store.pending_counts();
    let dead = store.dead_letter_counts()?;
    let newest_dead = failures::newest_dead_letters(store)?;
    let now = SystemTime::now();
    let mut endpoints = Vec::new();
    for name in endpoint_names(config, &depth, &dead) {
        let remembered = failures.and_then(|f| f.get(&name));
        let last_error = match remembered {
            Some(e) => Some(e),
            None => {
                failures::pending_failure(store, &name)?.or_else(|| newest_dead.get(&name).cloned())
            }
        };
        endpoints.push(EndpointStatus {
            configured: config.endpoints.iter().any(|e| e.name == name),
            pending: depth.get(&name).copied().unwrap_or(0),
            oldest_pending_age_seconds: oldest_pending_age(store, &name, now)
                .map(|a| a.as_secs_f64()),
            dead_letters: dead.get(&name).copied().unwrap_or(0),
            last_error,
            name,
        });
    }
    Ok(Status {
        source,
        state_dir: store.dir().display().to_string(),
        checkpoint_lsn: store.checkpoint()?.map(|c| c.lsn.to_string()),
        replication_connected: connected,
        database: DatabaseStatus::default(),
        endpoints,
    })
}

/// Queries the slot; a database that cannot be reached is recorded in the document, not
/// returned.
pub async fn database(config: &Config) -> DatabaseStatus {
    let query = async {
        let params = ConnectParams::parse(config.postgres.url.expose())?;
        let admin = Admin::connect(&params).await?;
        let current = admin.current_wal_lsn().await?;
        let slot = admin.slot(&config.postgres.slot).await?;
        Ok::<_, Error>((current, slot))
    };
    match tokio::time::timeout(DATABASE_TIMEOUT, query).await {
        Ok(Ok((current, slot))) => DatabaseStatus {
            error: None,
            current_wal_lsn: Some(current.to_string()),
            slot: slot.map(|s| SlotStatus {
                lag_bytes: s
                    .confirmed_flush_lsn
                    .map(|c| i64::try_from(current.0.saturating_sub(c.0)).unwrap_or(i64::MAX)),
                name: s.name,
                confirmed_flush_lsn: s.confirmed_flush_lsn.map(|l| l.to_string()),
                restart_lsn: s.restart_lsn.map(|l| l.to_string()),
                retained_bytes: s.retained_bytes,
                wal_status: s.wal_status,
                active_pid: s.active_pid,
            }),
        },
        Ok(Err(e)) => DatabaseStatus {
            error: Some(match e.hint() {
                Some(hint) => format!("{e} (hint: {hint})"),
                None => e.to_string(),
            }),
            ..DatabaseStatus::default()
        },
        Err(_) => DatabaseStatus {
            error: Some(format!(
                "no answer from the database within {DATABASE_TIMEOUT:?}"
            )),
            ..DatabaseStatus::default()
        },
    }
}

/// Configured endpoints in order, then the others the state holds entries for, sorted.
pub fn endpoint_names(
    config: &Config,
    depth: &BTreeMap<String, u64>,
    dead: &BTreeMap<String, u64>,
) -> Vec<String> {
    let mut names: Vec<String> = config.endpoints.iter().map(|e| e.name.clone()).collect();
    let mut others: Vec<&String> = depth
        .keys()
        .chain(dead.keys())
        .filter(|n| !names.contains(n))
        .collect();
    others.sort();
    others.dedup();
    names.extend(others.into_iter().cloned());
    names
}

/// How long ago the oldest undelivered event of `endpoint` was committed.
pub fn oldest_pending_age(store: &Store, endpoint: &str, now: SystemTime) -> Option<Duration> {
    let entry = store.pending(endpoint, None).next()?.ok()?;
    let event = Event::from_bytes(&entry.payload).ok()?;
    let committed = pg_micros_to_system_time(event.commit_time)?;
    Some(now.duration_since(committed).unwrap_or_default())
}
