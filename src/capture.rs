//! Capture: the replication stream, decoded, handed to a [`Handler`] one committed transaction at
//! a time, with each transaction's records and checkpoint stored atomically in sled.
//!
//! The position confirmed to the server follows the store's fsyncs (group commit in a flusher
//! task), never what was merely received, so PostgreSQL recycles only WAL whose consequences are
//! on our disk. After a restart the server resends from the slot's confirmed position, which may
//! be behind our checkpoint: transactions whose commit lies below the checkpoint are skipped.
//!
//! A large transaction's entries are stored in chunks as the handler produces them (see
//! [`Handler::take_ready`]), with the ids they get at commit, so memory does not grow with the
//! transaction. That is safe with pgoutput protocol 1, which only sends committed transactions:
//! entries stored before the Commit message belong to a committed transaction. The checkpoint
//! still moves only at Commit, so after a crash or reconnect mid-transaction the server resends
//! it; a mark stored with each chunk says how far it got, and that part is not written again
//! (delivery may have sent and removed it, and read past its ids).

mod flusher;
mod session;
pub(crate) mod watchdog;

use std::time::Duration;

use tokio::sync::watch;

use crate::config::TableName;
use crate::lsn::Lsn;
use crate::pg::dsn::ConnectParams;
use crate::pgoutput::{Item, Transaction};
use crate::store::{Outgoing, Store};
use crate::Error;

pub use session::Backoff;

/// What capture needs to know.
#[derive(Debug, Clone)]
pub struct CaptureSettings {
    pub params: ConnectParams,
    pub slot: String,
    pub publication: String,
    /// The tables the publication must cover.
    pub tables: Vec<TableName>,
    pub application_name: String,
    /// How often a standby status update goes out when nothing else prompts one.
    pub status_interval: Duration,
    /// Group-commit window: how long the flusher waits to gather commits into one fsync.
    pub flush_interval: Duration,
    /// Reconnect delays after transient errors.
    pub backoff: Backoff,
    /// Backpressure: reading pauses while the outbox holds this many entries or more.
    pub max_pending: Option<u64>,
}

impl CaptureSettings {
    pub fn new(
        params: ConnectParams,
        slot: &str,
        publication: &str,
        tables: Vec<TableName>,
    ) -> Self {
        CaptureSettings {
            params,
            slot: slot.to_string(),
            publication: publication.to_string(),
            tables,
            application_name: "fuse-cdc-bridge".to_string(),
            status_interval: Duration::from_secs(1),
            flush_interval: Duration::from_millis(5),
            backoff: Backoff::default(),
            max_pending: None,
        }
    }
}

/// What to do with the stream's transactions. Calls arrive in commit order; a transaction's
/// items come between its `Begin` and `commit`.
pub trait Handler: Send {
    /// An item inside `txn`: a relation (re)description, which precedes the first change to a
    /// table in a session and follows a schema change; a row change; a truncate; or a
    /// transactional message. An error here stops capture before `txn` is confirmed.
    fn item(&mut self, txn: &Transaction, item: &Item) -> Result<(), Error>;
    /// Entries of the open transaction that may be stored before its commit: everything
    /// gathered so far when that is at least `at_least` entries, otherwise nothing. Capture asks
    /// after each item, so a handler that answers keeps memory bounded in a large transaction.
    /// No default: a wrapper that forgot to forward it would silently hold a huge
    /// transaction in memory again.
    fn take_ready(&mut self, at_least: usize) -> Vec<Outgoing>;
    /// `txn` committed at `end_lsn`: return what it leaves for delivery beyond what
    /// [`Handler::take_ready`] handed over, stored atomically with the checkpoint. Entries get
    /// event ids (commit LSN, `n`) with `n` counting on from the ones taken before.
    fn commit(&mut self, txn: &Transaction, end_lsn: Lsn) -> Result<Vec<Outgoing>, Error>;
    /// The session ended mid-transaction: forget what `item` gathered since the last commit.
    fn reset(&mut self);
}

/// Positions that capture publishes as it goes, for tests, status and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// The checkpoint written to the store (maybe not yet fsynced).
    pub committed: Lsn,
    /// The checkpoint known durable, and confirmed to the server at the next status update.
    pub flushed: Lsn,
    /// Whether a replication session is streaming.
    pub connected: bool,
    /// Outbox entries stored ahead of their transaction's commit (a large transaction's chunks),
    /// counted over the run. It changes without `committed` moving, so it also wakes delivery.
    pub staged: u64,
}

/// Runs capture until `shutdown` turns true (returns Ok) or a definite error (returns it).
/// Transient errors reconnect with backoff.
pub async fn run(
    settings: &CaptureSettings,
    store: &Store,
    handler: &mut dyn Handler,
    progress: &watch::Sender<Progress>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    session::supervise(settings, store, handler, progress, &mut shutdown).await
}

/// Resolves once `shutdown` is true (or its sender is gone, which means no one can stop us
/// gracefully any more: treat it as a stop).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
