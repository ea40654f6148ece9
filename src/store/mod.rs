//! Durable state in sled: the replication checkpoint and the records each committed transaction
//! produced, written together in one atomic batch.
//!
//! This module is the only place that knows key layouts. Everything lives in sled's default tree
//! so that one `apply_batch` covers a transaction's records and the checkpoint that moves past it:
//! after a crash either both are there or neither is.
//!
//! Keys:
//! - `meta/checkpoint` → JSON [`Checkpoint`]
//! - `rec/` + commit LSN (8 bytes, big-endian) + ordinal (4 bytes, big-endian) → record bytes.
//!   Big-endian keeps sled's byte order equal to commit order.

mod checkpoint;

pub use checkpoint::{Checkpoint, Mismatch, SlotBinding};

use std::fs::DirBuilder;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::lsn::Lsn;

const CHECKPOINT_KEY: &[u8] = b"meta/checkpoint";
const RECORD_PREFIX: &[u8] = b"rec/";

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
    #[error("the state directory {dir} could not be opened: {source}")]
    Open {
        dir: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("writing to the state directory failed: {0}; is the disk full or read-only?")]
    Write(#[source] sled::Error),
    #[error("the state directory holds a damaged {what}: {detail}; restore it from a backup or remove it to start over")]
    Corrupt { what: &'static str, detail: String },
}

impl StoreError {
    /// A full or briefly unwritable disk can recover; a lock held by another process or damaged
    /// data needs an operator.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Write(_))
    }
}

/// A record produced by a committed transaction, keyed by its position in the WAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub commit_lsn: Lsn,
    pub ordinal: u32,
    pub value: Vec<u8>,
}

/// The sled database under `[state].dir`.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    dir: PathBuf,
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
        Ok(Store {
            db,
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The durable checkpoint, if any transaction (or idle advance) was ever recorded.
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        let Some(bytes) = self.db.get(CHECKPOINT_KEY).map_err(StoreError::Write)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                what: "checkpoint",
                detail: e.to_string(),
            })
    }

    /// Writes a transaction's records and the checkpoint that moves past it as one atomic batch.
    /// Not durable until [`Store::flush`] returns: callers group many commits per flush.
    pub fn commit(&self, checkpoint: &Checkpoint, records: &[Record]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for record in records {
            batch.insert(
                record_key(record.commit_lsn, record.ordinal).as_slice(),
                record.value.as_slice(),
            );
        }
        batch.insert(CHECKPOINT_KEY, checkpoint_bytes(checkpoint)?);
        self.db.apply_batch(batch).map_err(StoreError::Write)
    }

    /// Makes everything written so far durable (fsync).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await.map_err(StoreError::Write)?;
        Ok(())
    }

    /// Forgets the checkpoint (the slot it belonged to is gone); records stay.
    pub fn clear_checkpoint(&self) -> Result<(), StoreError> {
        self.db.remove(CHECKPOINT_KEY).map_err(StoreError::Write)?;
        Ok(())
    }

    /// All records in commit order.
    pub fn records(&self) -> impl Iterator<Item = Result<Record, StoreError>> + '_ {
        self.db.scan_prefix(RECORD_PREFIX).map(|item| {
            let (key, value) = item.map_err(StoreError::Write)?;
            let (commit_lsn, ordinal) = parse_record_key(&key).ok_or(StoreError::Corrupt {
                what: "record key",
                detail: format!("{} bytes", key.len()),
            })?;
            Ok(Record {
                commit_lsn,
                ordinal,
                value: value.to_vec(),
            })
        })
    }
}

fn checkpoint_bytes(checkpoint: &Checkpoint) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(checkpoint).map_err(|e| StoreError::Corrupt {
        what: "checkpoint",
        detail: e.to_string(),
    })
}

fn record_key(commit_lsn: Lsn, ordinal: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(RECORD_PREFIX.len() + 12);
    key.extend_from_slice(RECORD_PREFIX);
    key.extend_from_slice(&commit_lsn.0.to_be_bytes());
    key.extend_from_slice(&ordinal.to_be_bytes());
    key
}

fn parse_record_key(key: &[u8]) -> Option<(Lsn, u32)> {
    let rest = key.strip_prefix(RECORD_PREFIX)?;
    let lsn = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let ordinal = u32::from_be_bytes(rest.get(8..12)?.try_into().ok()?);
    (rest.len() == 12).then_some((Lsn(lsn), ordinal))
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
