//! The replication checkpoint and the slot it belongs to; the mark of a transaction stored in
//! part ahead of its commit.

use serde::{Deserialize, Serialize};

use crate::lsn::Lsn;

/// Which slot a checkpoint belongs to. A checkpoint must never be applied to another slot: a
/// slot dropped and re-created (or a different database answering at the same URL, or one
/// restored from a backup) starts from positions that mean something else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotBinding {
    /// `IDENTIFY_SYSTEM`'s systemid: tells one cluster from another.
    pub system_id: String,
    pub slot_name: String,
    /// The slot's position when we first bound to it (its creation point when we created it).
    pub bound_at: Lsn,
}

/// The last position whose consequences are durable in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub binding: SlotBinding,
    /// End LSN of the last transaction stored, or a later idle position: everything at or below
    /// it has been handled and may be confirmed to the server.
    pub lsn: Lsn,
}

/// Why a stored checkpoint does not apply to the slot found on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    OtherSystem {
        stored: String,
        found: String,
    },
    OtherSlot {
        stored: String,
        found: String,
    },
    /// The slot's confirmed position is beyond anything we stored, or before the point where we
    /// bound: only a different slot (or another consumer) can have done that.
    Moved {
        slot_confirmed: Lsn,
        checkpoint: Lsn,
        bound_at: Lsn,
    },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::OtherSystem { stored, found } => write!(
                f,
                "the checkpoint belongs to database system {stored}, but the server is system {found}"
            ),
            Mismatch::OtherSlot { stored, found } => {
                write!(f, "the checkpoint belongs to slot {stored:?}, not {found:?}")
            }
            Mismatch::Moved {
                slot_confirmed,
                checkpoint,
                bound_at,
            } => write!(
                f,
                "the slot's confirmed position {slot_confirmed} is outside what this checkpoint \
                 knows ({bound_at}..={checkpoint}): the slot was re-created or advanced by another consumer"
            ),
        }
    }
}

impl Checkpoint {
    /// Whether this checkpoint can be resumed on `slot_name` of system `system_id`, whose
    /// confirmed position is `slot_confirmed`. We only ever confirm durable positions, so for our
    /// own slot `bound_at <= slot_confirmed <= checkpoint` always holds.
    pub fn check_applies(
        &self,
        system_id: &str,
        slot_name: &str,
        slot_confirmed: Lsn,
    ) -> Result<(), Mismatch> {
        if self.binding.system_id != system_id {
            return Err(Mismatch::OtherSystem {
                stored: self.binding.system_id.clone(),
                found: system_id.to_string(),
            });
        }
        if self.binding.slot_name != slot_name {
            return Err(Mismatch::OtherSlot {
                stored: self.binding.slot_name.clone(),
                found: slot_name.to_string(),
            });
        }
        if slot_confirmed > self.lsn || slot_confirmed < self.binding.bound_at {
            return Err(Mismatch::Moved {
                slot_confirmed,
                checkpoint: self.lsn,
                bound_at: self.binding.bound_at,
            });
        }
        Ok(())
    }
}

/// A transaction stored in part ahead of its commit (a large one, in chunks): its entries with
/// ordinals below `stored` are in the store, or were and have been delivered since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staged {
    pub commit_lsn: Lsn,
    pub stored: u32,
}

impl Staged {
    pub(super) fn to_bytes(self) -> [u8; 12] {
        let mut out = [0u8; 12];
        out[..8].copy_from_slice(&self.commit_lsn.0.to_be_bytes());
        out[8..].copy_from_slice(&self.stored.to_be_bytes());
        out
    }

    pub(super) fn from_bytes(bytes: &[u8]) -> Option<Staged> {
        let lsn = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let stored = u32::from_be_bytes(bytes.get(8..12)?.try_into().ok()?);
        (bytes.len() == 12).then_some(Staged {
            commit_lsn: Lsn(lsn),
            stored,
        })
    }

    /// How many of the transaction at `commit_lsn`'s entries are stored according to `mark`.
    pub fn stored_of(mark: Option<Staged>, commit_lsn: Lsn) -> u32 {
        match mark {
            Some(s) if s.commit_lsn == commit_lsn => s.stored,
            _ => 0,
        }
    }
}
