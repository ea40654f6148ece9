//! Durable state in sled: the replication checkpoint, the outbox of webhooks still owed to each
//! endpoint, and dead letters.
//!
//! This module is the only place that knows key layouts (see [`keys`]). Everything lives in
//! sled's default tree so that one `apply_batch` covers a transaction's outbox entries and the
//! checkpoint that moves past them: after a crash either both are there or neither is.

mod checkpoint;
mod counts;
mod done;
mod group;
mod keys;
mod outbox;
mod pending;
mod runs;

pub use checkpoint::{Checkpoint, Mismatch, SlotBinding, Staged};
pub use group::Group;
pub use outbox::{DeadLetter, DeliveryState, OutboxEntry, Outgoing};

use std::fs::DirBuilder;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::event::EventId;
use crate::lsn::Lsn;
use runs::{RunIndex, RunMeta, RunWriter};

/// Errors of the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the state directory {dir} is in use by another process (sled admits one): \
         stop the other fuse-cdc-bridge using it, or give this one its own [state].dir"
    )]
    Locked { dir: PathBuf },
    #[error(
        "cannot create the state directory {dir}: {source}; check [state].dir and its permissions"
    )]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the state directory {dir} could not be opened: {source}; [state].dir must be on a \
         writable file system with room"
    )]
    Open {
        dir: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error(
        "writing to the state directory failed: {0}; is its disk full or read-only? Intake \
         stopped, and PostgreSQL keeps the WAL of everything not on disk here: make room (or \
         make it writable) and start the bridge again"
    )]
    Write(#[source] sled::Error),
    #[error("the state directory holds a damaged {what}: {detail}; restore it from a backup or remove it to start over")]
    Corrupt { what: &'static str, detail: String },
}

impl StoreError {
    /// None of these clears up by retrying in the same process. A lock held by another process
    /// or damaged data needs an operator; and after a failed write (a full or read-only disk)
    /// sled refuses every later write until it is opened again, so the process must stop and be
    /// started again once the disk has room (a service manager's restart-on-failure does it).
    pub fn is_transient(&self) -> bool {
        false
    }
}

const CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// The sled database under `[state].dir`.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    dir: PathBuf,
    /// Outbox entries per endpoint, kept in memory: counting a sled prefix is a full scan.
    pending: Arc<Mutex<BTreeMap<String, u64>>>,
    /// Live runs and done records (`runs`).
    runs: Arc<Mutex<RunIndex>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

impl Store {
    /// Opens (creating with mode 0700 when missing) the state directory.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        create_private_dir(dir)?;
        let db = sled::Config::new()
            .path(dir.join("sled"))
            .mode(sled::Mode::HighThroughput)
            // sled's default page cache is 1 GiB; the outbox is read sequentially and mostly
            // once, so a small cache costs little speed and keeps a sidecar's memory small
            // (BENCHMARKS.md, sled alone: 140 MB at 1 GiB → 58 MB at 8 MiB, at the same speed
            // with compact entries; 4 MiB starts to cost speed).
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|source| match &source {
                sled::Error::Io(io) if is_lock_error(io) => StoreError::Locked {
                    dir: dir.to_path_buf(),
                },
                _ => StoreError::Open {
                    dir: dir.to_path_buf(),
                    source,
                },
            })?;
        let store = Store {
            db,
            dir: dir.to_path_buf(),
            pending: Arc::default(),
            runs: Arc::default(),
        };
        store.load_runs()?;
        store.count_pending()?;
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The durable checkpoint, if any transaction (or idle advance) was ever recorded.
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        let Some(bytes) = self.db.get(keys::CHECKPOINT).map_err(StoreError::Write)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                what: "checkpoint",
                detail: e.to_string(),
            })
    }

    /// Writes a transaction's outbox entries (the `n`th of `outgoing` gets ordinal `n`; one
    /// with no endpoints is written nowhere) and the checkpoint that moves past it as one atomic
    /// batch. Not durable until [`Store::flush`]
    /// returns: callers group many commits per flush.
    pub fn commit(
        &self,
        checkpoint: &Checkpoint,
        commit_lsn: Lsn,
        outgoing: &[Outgoing],
    ) -> Result<(), StoreError> {
        self.commit_from(checkpoint, commit_lsn, 0, outgoing)
    }

    /// [`Store::commit`] for the rest of a transaction whose first `first_ordinal` entries were
    /// [staged](Store::stage) already. Drops the staging mark in the same batch: the
    /// transaction is whole, or (binding a new slot) the mark's positions mean nothing now.
    pub fn commit_from(
        &self,
        checkpoint: &Checkpoint,
        commit_lsn: Lsn,
        first_ordinal: u32,
        outgoing: &[Outgoing],
    ) -> Result<(), StoreError> {
        let mut group = Group::default();
        group.add(commit_lsn, first_ordinal, outgoing)?;
        self.apply(group, checkpoint)
    }

    /// Moves the checkpoint past WAL without transactions for us (an idle stream's keepalive).
    /// A staging mark stays: its transaction is still to come.
    pub fn advance(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        self.db
            .insert(keys::CHECKPOINT, checkpoint_bytes(checkpoint)?)
            .map_err(StoreError::Write)?;
        Ok(())
    }

    /// Writes entries of a transaction that has not reached its Commit message yet (a large
    /// one, in chunks), without moving the checkpoint: the `n`th of `outgoing` gets ordinal
    /// `first_ordinal + n`. A mark saying how far the transaction is stored goes in the same
    /// batch (see [`Store::staged`]).
    pub fn stage(
        &self,
        commit_lsn: Lsn,
        first_ordinal: u32,
        outgoing: &[Outgoing],
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut added = BTreeMap::new();
        let mut writer = RunWriter::default();
        entries(
            &mut batch,
            &mut writer,
            &mut added,
            commit_lsn,
            first_ordinal,
            outgoing,
        )?;
        let written = writer.finish(&mut batch);
        let stored = Staged {
            commit_lsn,
            stored: first_ordinal.saturating_add(outgoing.len() as u32),
        };
        batch.insert(keys::STAGED, stored.to_bytes().as_slice());
        self.db.apply_batch(batch).map_err(StoreError::Write)?;
        self.register_runs(written);
        self.count_added(added);
        Ok(())
    }

    /// Makes runs just written known to delivery.
    fn register_runs(&self, written: Vec<(String, RunMeta)>) {
        if let Ok(mut index) = self.runs.lock() {
            for (endpoint, meta) in written {
                index.add(&endpoint, meta);
            }
        }
    }

    /// The transaction stored in part ahead of its commit, if the last write was such a chunk.
    /// When the server sends that transaction again (after a crash or a reconnect), entries
    /// below the mark must not be written again: they are in the outbox with their delivery
    /// state, or were delivered and removed, or dead-lettered; and delivery has read past them.
    pub fn staged(&self) -> Result<Option<Staged>, StoreError> {
        match self.db.get(keys::STAGED).map_err(StoreError::Write)? {
            None => Ok(None),
            Some(bytes) => {
                Staged::from_bytes(&bytes)
                    .map(Some)
                    .ok_or_else(|| StoreError::Corrupt {
                        what: "staging mark",
                        detail: format!("{} bytes", bytes.len()),
                    })
            }
        }
    }

    fn count_added(&self, added: BTreeMap<String, u64>) {
        if let Ok(mut pending) = self.pending.lock() {
            for (endpoint, n) in added {
                *pending.entry(endpoint).or_default() += n;
            }
        }
    }

    /// Makes everything written so far durable (fsync).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await.map_err(StoreError::Write)?;
        Ok(())
    }

    /// Forgets the checkpoint (the slot it belonged to is gone); records stay.
    pub fn clear_checkpoint(&self) -> Result<(), StoreError> {
        self.db
            .remove(keys::CHECKPOINT)
            .map_err(StoreError::Write)?;
        Ok(())
    }
}

/// Adds a transaction's entries to `batch` (in runs, through `writer`), numbered from
/// `first_ordinal`, and counts them per endpoint in `added`.
fn entries(
    batch: &mut sled::Batch,
    writer: &mut RunWriter,
    added: &mut BTreeMap<String, u64>,
    commit_lsn: Lsn,
    first_ordinal: u32,
    outgoing: &[Outgoing],
) -> Result<(), StoreError> {
    for (n, out) in outgoing.iter().enumerate() {
        let id = EventId {
            commit_lsn,
            ordinal: first_ordinal.saturating_add(n as u32),
        };
        for endpoint in out.endpoints.iter() {
            if u16::try_from(out.key.len()).is_ok() {
                writer.push(batch, endpoint, id, &out.key, &out.payload);
            } else {
                // An ordering key too long for a run (never seen in practice) is stored alone.
                let value = outbox::fresh_entry_value(&out.key, &out.payload);
                batch.insert(keys::outbox(endpoint, id), value);
            }
            match added.get_mut(endpoint.as_str()) {
                Some(count) => *count += 1,
                None => {
                    added.insert(endpoint.clone(), 1);
                }
            }
        }
    }
    Ok(())
}

fn checkpoint_bytes(checkpoint: &Checkpoint) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(checkpoint).map_err(|e| StoreError::Corrupt {
        what: "checkpoint",
        detail: e.to_string(),
    })
}

fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    let err = |source| StoreError::CreateDir {
        dir: dir.to_path_buf(),
        source,
    };
    if !dir.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
        // The builder's mode is filtered by the umask; make sure the result is private.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

fn is_lock_error(io: &std::io::Error) -> bool {
    io.kind() == std::io::ErrorKind::WouldBlock
        || io.to_string().contains("lock")
        || io.raw_os_error() == Some(11)
}

#[cfg(test)]
mod tests;
