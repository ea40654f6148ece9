//! One replication session at a time, reconnecting with backoff after transient errors.

use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use super::flusher::Flusher;
use super::watchdog::{Watchdog, DEAD_AFTER};
use super::{CaptureSettings, Handler, Progress};
use crate::lsn::Lsn;
use crate::pg::admin::{Admin, SlotInfo};
use crate::pg::replication::{
    ReplicationError, ReplicationSession, ReplicationStream, StreamEvent, SystemIdentity,
};
use crate::pgoutput::{Decoder, Item, Transaction};
use crate::store::{Checkpoint, Group, Mismatch, Outgoing, SlotBinding, Staged, Store};
use crate::Error;

/// Exponential reconnect delays.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

/// How a session ended without an error.
enum Ended {
    Shutdown,
}

pub(super) async fn supervise(
    settings: &CaptureSettings,
    store: &Store,
    handler: &mut dyn Handler,
    progress: &watch::Sender<Progress>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), Error> {
    let mut delay = settings.backoff.initial;
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let mut streamed = false;
        let result = session(settings, store, handler, progress, shutdown, &mut streamed).await;
        progress.send_modify(|p| p.connected = false);
        handler.reset();
        let error = match result {
            Ok(Ended::Shutdown) => return Ok(()),
            Err(e) => e,
        };
        let slot_in_use = matches!(&error, Error::Replication(r) if r.is_slot_in_use());
        if let Error::Store(e) = &error {
            // The message says what to do; the log line says where.
            error!(dir = %store.dir().display(), error = %e, "the state directory failed: intake stopped");
        }
        if !(error.is_transient() || slot_in_use) {
            return Err(error);
        }
        if streamed {
            // The last session got going: whatever broke it is not the same problem again.
            delay = settings.backoff.initial;
        }
        if slot_in_use {
            warn!(slot = %settings.slot, retry_in = ?delay, error = %error,
                "replication slot in use by another consumer, waiting");
        } else {
            warn!(retry_in = ?delay, error = %error, hint = error.hint().unwrap_or_default(),
                "replication interrupted, reconnecting");
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = crate::capture::stopped(shutdown) => return Ok(()),
        }
        delay = (delay * 2).min(settings.backoff.max);
    }
}

async fn session(
    settings: &CaptureSettings,
    store: &Store,
    handler: &mut dyn Handler,
    progress: &watch::Sender<Progress>,
    shutdown: &mut watch::Receiver<bool>,
    streamed: &mut bool,
) -> Result<Ended, Error> {
    let admin = Admin::connect(&settings.params).await?;
    admin.check_wal_level().await?;
    for sql in admin
        .ensure_publication(&settings.publication, &settings.tables)
        .await?
    {
        info!(statement = %sql, "created the publication");
    }
    let mut repl =
        ReplicationSession::connect(&settings.params, &settings.application_name).await?;
    let identity = repl.identify_system().await?;
    let (slot, created) = admin.ensure_slot(&settings.slot).await?;
    if created {
        info!(slot = %slot.name, at = ?slot.confirmed_flush_lsn, "created the replication slot");
    }
    drop(admin);
    let checkpoint = resolve_checkpoint(store, &identity, &slot, created)?;
    store.flush().await?;
    let flusher = Flusher::spawn(store.clone(), checkpoint.lsn, settings.flush_interval);
    let mut stream = repl
        .start(
            &settings.slot,
            checkpoint.lsn,
            &settings.publication,
            settings.status_interval,
            flusher.flushed(),
        )
        .await?;
    info!(slot = %settings.slot, from = %checkpoint.lsn, "streaming");
    progress.send_modify(|p| {
        p.connected = true;
        p.committed = checkpoint.lsn;
        p.flushed = checkpoint.lsn;
    });
    let mut flushed_rx = flusher.flushed();
    let mut watchdog = Watchdog::new(settings.params.addr());
    let mut state = StreamState {
        checkpoint,
        decoder: Decoder::new(),
        open: None,
        skipping: false,
        next_ordinal: 0,
        // Left by an earlier session or run that broke inside a large transaction (and kept by
        // resolve_checkpoint unless it bound the state to another slot).
        staged: store.staged()?,
        chunk: stage_chunk(settings),
        group: Group::default(),
        written: None,
    };
    let report = |lsn: Lsn| {
        flusher.committed(lsn);
        progress.send_modify(|p| p.committed = p.committed.max(lsn));
    };
    loop {
        if outbox_full(settings, store) {
            // What is gathered goes out first, so delivery can see it while intake waits.
            if let Some(lsn) = state.write_group(store)? {
                report(lsn);
            }
            // Backpressure: stop reading (the server holds the WAL) but keep answering, so the
            // walsender does not time us out. Nothing is dropped.
            warn!(pending = store.pending_total(), max_pending = ?settings.max_pending,
                "outbox full: replication paused until delivery catches up");
            while outbox_full(settings, store) {
                tokio::select! {
                    _ = tokio::time::sleep(PAUSE_POLL) => {
                        watchdog.bounded(stream.send_status_if_due()).await?;
                    }
                    _ = crate::capture::stopped(shutdown) => {
                        return finish(stream, &mut state, &flusher, store, progress).await;
                    }
                }
            }
            info!(
                pending = store.pending_total(),
                "outbox below its bound: replication resumed"
            );
        }
        if *shutdown.borrow() {
            return finish(stream, &mut state, &flusher, store, progress).await;
        }
        // The stream first: while it has data ready the stop signal is not polled (that would
        // register a waiter per message); the check above sees a stop asked meanwhile.
        let event = tokio::select! {
            biased;
            event = watchdog.next(&mut stream) => event?,
            _ = crate::capture::stopped(shutdown) => {
                return finish(stream, &mut state, &flusher, store, progress).await;
            }
        };
        if let Some(e) = flusher.take_failure() {
            return Err(e.into());
        }
        if flushed_rx.has_changed().unwrap_or(false) {
            let durable = *flushed_rx.borrow_and_update();
            progress.send_modify(|p| p.flushed = durable);
        }
        *streamed = true;
        match state.apply(event, store, handler)? {
            Applied::Nothing => {}
            Applied::Committed(lsn) => report(lsn),
            // Delivery learns of new entries from progress, and these come without a commit.
            Applied::Staged(n) => progress.send_modify(|p| p.staged += n),
        }
        if let Some(lsn) = state.settle(store, stream.has_buffered())? {
            report(lsn);
        }
    }
}

/// Transactions one group write holds at most (besides the entry bound, [`stage_chunk`]):
/// enough to make sled's per-batch cost small, few enough that the confirmed position and
/// delivery keep moving under a steady stream.
const GROUP_TRANSACTIONS: usize = 256;

/// Entries a large transaction gathers before they are stored: small enough to bound memory,
/// large enough to make few writes; never more than the outbox bound, so backpressure still
/// gets its say inside the transaction.
const STAGE_CHUNK: usize = 1024;

fn stage_chunk(settings: &CaptureSettings) -> usize {
    let bound = settings
        .max_pending
        .and_then(|max| usize::try_from(max).ok())
        .unwrap_or(STAGE_CHUNK);
    STAGE_CHUNK.min(bound).max(1)
}

/// How often a paused capture looks at the outbox again.
const PAUSE_POLL: Duration = Duration::from_millis(20);

fn outbox_full(settings: &CaptureSettings, store: &Store) -> bool {
    settings
        .max_pending
        .is_some_and(|max| store.pending_total() >= max)
}

/// A graceful end: everything stored is made durable and confirmed to the server.
async fn finish(
    stream: ReplicationStream,
    state: &mut StreamState,
    flusher: &Flusher,
    store: &Store,
    progress: &watch::Sender<Progress>,
) -> Result<Ended, Error> {
    let mut stream = stream;
    if let Some(lsn) = state.write_group(store)? {
        flusher.committed(lsn);
    }
    let durable = flusher.drain(store).await?;
    stream.set_flushed(durable);
    progress.send_modify(|p| p.flushed = durable);
    info!(confirmed = %durable, "replication stopped");
    // The last status may not get out if the connection is already broken (or silent: hence
    // the limit); the slot then resumes from an earlier position and we skip what we have.
    let _ = tokio::time::timeout(DEAD_AFTER, stream.close()).await;
    Ok(Ended::Shutdown)
}

/// Picks the checkpoint to resume from, refusing to carry one over to a slot it does not
/// belong to.
fn resolve_checkpoint(
    store: &Store,
    identity: &SystemIdentity,
    slot: &SlotInfo,
    created: bool,
) -> Result<Checkpoint, Error> {
    let confirmed = slot.confirmed_flush_lsn.unwrap_or(Lsn::ZERO);
    let bind = || Checkpoint {
        binding: SlotBinding {
            system_id: identity.system_id.clone(),
            slot_name: slot.name.clone(),
            bound_at: confirmed,
        },
        lsn: confirmed,
    };
    let stored = store.checkpoint()?;
    let checkpoint = match stored {
        Some(cp) if !created => {
            match cp.check_applies(&identity.system_id, &slot.name, confirmed) {
                Ok(()) => return Ok(cp),
                // Bound while another consumer held the slot, and nothing stored since: the slot
                // moved on under that consumer, whose state directory holds what it read.
                Err(Mismatch::Moved { slot_confirmed, .. })
                    if cp.lsn == cp.binding.bound_at && slot_confirmed > cp.lsn =>
                {
                    info!(slot = %slot.name, from = %confirmed,
                        "the slot moved on while this state directory waited for it (another consumer read it); starting from the slot's position");
                    bind()
                }
                Err(mismatch) => {
                    warn!(reason = %mismatch, slot = %slot.name, from = %confirmed,
                    "the stored checkpoint does not belong to this slot; starting from the slot's position");
                    bind()
                }
            }
        }
        Some(cp) => {
            warn!(slot = %slot.name, old = %cp.lsn, from = %confirmed,
                "the replication slot was created anew; the old checkpoint no longer applies");
            bind()
        }
        None => {
            info!(slot = %slot.name, from = %confirmed, "binding the state directory to the slot");
            bind()
        }
    };
    // This also drops a staging mark: another slot's positions say nothing about it.
    store.commit(&checkpoint, checkpoint.lsn, &[])?;
    Ok(checkpoint)
}

/// What one stream event did.
enum Applied {
    Nothing,
    /// The checkpoint moved here.
    Committed(Lsn),
    /// This many entries of the open transaction were stored ahead of its commit.
    Staged(u64),
}

/// Per-session decoding state.
struct StreamState {
    checkpoint: Checkpoint,
    decoder: Decoder,
    open: Option<Transaction>,
    /// The open transaction is at or below the checkpoint: already stored before a restart.
    skipping: bool,
    /// The ordinal of the open transaction's next entry.
    next_ordinal: u32,
    /// How far a transaction is stored ahead of its commit (the store's mark, kept here).
    staged: Option<Staged>,
    /// Store entries ahead of the commit once the handler has this many; also the most a
    /// group of transactions gathers before it is written.
    chunk: usize,
    /// Committed transactions not written to the store yet; `checkpoint` is past them.
    group: Group,
    /// The checkpoint of the last group written and not yet reported.
    written: Option<Lsn>,
}

impl StreamState {
    /// Applies one stream event.
    fn apply(
        &mut self,
        event: StreamEvent,
        store: &Store,
        handler: &mut dyn Handler,
    ) -> Result<Applied, Error> {
        match event {
            StreamEvent::Data { data, .. } => {
                let Some(item) = self.decoder.decode(&data).map_err(ReplicationError::from)? else {
                    return Ok(Applied::Nothing);
                };
                self.item(item, store, handler)
            }
            StreamEvent::Keepalive { wal_end } => {
                // Idle between transactions: everything the server sent up to wal_end is
                // handled, so confirm it and let the server recycle WAL (also other databases').
                if self.decoder.transaction().is_some() || wal_end <= self.checkpoint.lsn {
                    return Ok(Applied::Nothing);
                }
                self.write_group_unreported(store)?;
                self.checkpoint.lsn = wal_end;
                // A transaction resent after a reconnect may still lie ahead: keep its mark.
                store.advance(&self.checkpoint)?;
                Ok(Applied::Committed(wal_end))
            }
        }
    }

    /// Writes the gathered transactions, if any, with the checkpoint past the last of them;
    /// returns the checkpoint of what was written and not reported yet.
    fn write_group(&mut self, store: &Store) -> Result<Option<Lsn>, Error> {
        self.write_group_unreported(store)?;
        Ok(self.written.take())
    }

    /// [`StreamState::write_group`], leaving the report to the next `settle`.
    fn write_group_unreported(&mut self, store: &Store) -> Result<(), Error> {
        if !self.group.is_empty() {
            store.apply(std::mem::take(&mut self.group), &self.checkpoint)?;
            self.written = Some(self.checkpoint.lsn);
        }
        Ok(())
    }

    /// Called after each stream event: writes the group unless more of the stream is already
    /// waiting (`more`) and the group still has room. While data arrives slower than it is
    /// stored every transaction is written at once, so grouping adds no latency.
    fn settle(&mut self, store: &Store, more: bool) -> Result<Option<Lsn>, Error> {
        let full = self.group.entries() >= self.chunk as u64
            || self.group.transactions() >= GROUP_TRANSACTIONS;
        if more && !full {
            return Ok(self.written.take());
        }
        self.write_group(store)
    }

    /// Numbers `outgoing` on from the open transaction's previous entries and drops the ones
    /// stored already, by an earlier session or run that broke inside this transaction (see
    /// [`Store::staged`]). Returns the first ordinal to write and what to write.
    fn number<'o>(&mut self, commit_lsn: Lsn, outgoing: &'o [Outgoing]) -> (u32, &'o [Outgoing]) {
        let first = self.next_ordinal;
        let n = u32::try_from(outgoing.len()).unwrap_or(u32::MAX);
        self.next_ordinal = first.saturating_add(n);
        let stored = Staged::stored_of(self.staged, commit_lsn);
        let skip = stored.saturating_sub(first).min(n);
        (first.saturating_add(skip), &outgoing[skip as usize..])
    }

    /// Stores what the handler has ready of the open transaction, if enough piled up.
    fn stage(
        &mut self,
        txn: &Transaction,
        store: &Store,
        handler: &mut dyn Handler,
    ) -> Result<Applied, Error> {
        let ready = handler.take_ready(self.chunk);
        if ready.is_empty() {
            return Ok(Applied::Nothing);
        }
        let (first, rest) = self.number(txn.final_lsn, &ready);
        if rest.is_empty() {
            return Ok(Applied::Nothing);
        }
        // Earlier transactions first: the group's write drops the staging mark.
        self.write_group_unreported(store)?;
        store.stage(txn.final_lsn, first, rest)?;
        self.staged = Some(Staged {
            commit_lsn: txn.final_lsn,
            stored: self.next_ordinal,
        });
        Ok(Applied::Staged(rest.len() as u64))
    }

    fn item(
        &mut self,
        item: Item,
        store: &Store,
        handler: &mut dyn Handler,
    ) -> Result<Applied, Error> {
        match &item {
            Item::Begin {
                xid,
                final_lsn,
                commit_time,
            } => {
                self.open = Some(Transaction {
                    xid: *xid,
                    final_lsn: *final_lsn,
                    commit_time: *commit_time,
                });
                // A commit record lies wholly below or above the checkpoint (which is always a
                // record boundary), so comparing its start decides.
                self.skipping = *final_lsn < self.checkpoint.lsn;
                self.next_ordinal = 0;
                if self.skipping {
                    debug!(commit_lsn = %final_lsn, checkpoint = %self.checkpoint.lsn,
                        "skipping a transaction already stored");
                }
                Ok(Applied::Nothing)
            }
            Item::Message {
                transactional: false,
                ..
            } if self.open.is_none() => Ok(Applied::Nothing),
            Item::Commit {
                commit_lsn,
                end_lsn,
                ..
            } => {
                let open = self.open.take();
                if std::mem::take(&mut self.skipping) || *end_lsn <= self.checkpoint.lsn {
                    return Ok(Applied::Nothing);
                }
                let Some(txn) = open else {
                    return Ok(Applied::Nothing);
                };
                let outgoing = handler.commit(&txn, *end_lsn)?;
                let (first, rest) = self.number(*commit_lsn, &outgoing);
                self.checkpoint.lsn = *end_lsn;
                self.group.add(*commit_lsn, first, rest)?;
                self.staged = None;
                // Written (and reported) by `settle`, perhaps with the ones that follow.
                Ok(Applied::Nothing)
            }
            _ => {
                if self.skipping {
                    return Ok(Applied::Nothing);
                }
                let Some(txn) = self.open else {
                    return Ok(Applied::Nothing);
                };
                handler.item(&txn, &item)?;
                self.stage(&txn, store, handler)
            }
        }
    }
}
