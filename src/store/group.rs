//! Group commit of transactions: several replication transactions written by one sled batch.
//!
//! sled seals and writes an I/O buffer at the end of every `apply_batch` (that is how it keeps a
//! batch atomic across a crash), so one batch per small transaction caps intake at a few
//! thousand transactions a second (BENCHMARKS.md). While more of the stream is already waiting
//! to be read, capture gathers its transactions here and writes them together with the
//! checkpoint past the last one: after a crash either the whole group is there or none of it,
//! and the server sends the missing ones again.

use std::collections::BTreeMap;

use super::runs::RunWriter;
use super::{checkpoint_bytes, entries, keys, Checkpoint, Store, StoreError};
use crate::lsn::Lsn;
use crate::store::Outgoing;

/// Transactions gathered for one write.
#[derive(Default)]
pub struct Group {
    batch: sled::Batch,
    writer: RunWriter,
    added: BTreeMap<String, u64>,
    transactions: usize,
    entries: u64,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("transactions", &self.transactions)
            .field("entries", &self.entries)
            .finish()
    }
}

impl Group {
    pub fn is_empty(&self) -> bool {
        self.transactions == 0
    }

    /// Transactions gathered.
    pub fn transactions(&self) -> usize {
        self.transactions
    }

    /// Outbox entries gathered (one per event and endpoint).
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Adds a committed transaction's outbox entries: the `n`th of `outgoing` gets ordinal
    /// `first_ordinal + n`.
    pub fn add(
        &mut self,
        commit_lsn: Lsn,
        first_ordinal: u32,
        outgoing: &[Outgoing],
    ) -> Result<(), StoreError> {
        entries(
            &mut self.batch,
            &mut self.writer,
            &mut self.added,
            commit_lsn,
            first_ordinal,
            outgoing,
        )?;
        self.entries += outgoing
            .iter()
            .map(|o| o.endpoints.len() as u64)
            .sum::<u64>();
        self.transactions += 1;
        Ok(())
    }
}

impl Store {
    /// Writes a group and the checkpoint past its last transaction as one atomic batch, and
    /// drops the staging mark (the group holds the staged transaction's rest, or the mark is for
    /// a transaction that already went by). Not durable until [`Store::flush`] returns.
    pub fn apply(&self, group: Group, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let Group {
            mut batch,
            writer,
            added,
            ..
        } = group;
        let written = writer.finish(&mut batch);
        batch.insert(keys::CHECKPOINT, checkpoint_bytes(checkpoint)?);
        batch.remove(keys::STAGED);
        self.db.apply_batch(batch).map_err(StoreError::Write)?;
        self.register_runs(written);
        self.count_added(added);
        Ok(())
    }
}
