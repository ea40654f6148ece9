//! What leaves the runs: done records, finished runs, and the index rebuilt at open (see
//! `runs` for the layout and why).

use super::runs::{self, Finished};
use super::{keys, Store, StoreError};
use crate::event::EventId;

impl Store {
    /// Rebuilds the index of runs at open: every run's range, then every done record; and
    /// finishes what a crash may have left half done (runs with every entry done, records
    /// that mention no live run).
    pub(super) fn load_runs(&self) -> Result<(), StoreError> {
        let mut index = runs::RunIndex::default();
        for item in self.db.scan_prefix(keys::RUN) {
            let (key, value) = item.map_err(StoreError::Write)?;
            let (endpoint, first) =
                keys::parse_entry(keys::RUN, &key).ok_or_else(|| StoreError::Corrupt {
                    what: "outbox run key",
                    detail: format!("{} bytes", key.len()),
                })?;
            let ids = runs::run_ids(&value)?;
            // The index finds a run by its key's first id: it must be the value's.
            if ids.first() != Some(&first) {
                return Err(StoreError::Corrupt {
                    what: "outbox run",
                    detail: format!("its key says it starts at {first}, its value does not"),
                });
            }
            let last = ids.last().copied().unwrap_or(first);
            index.add(
                &endpoint,
                runs::RunMeta {
                    first,
                    last,
                    len: ids.len() as u32,
                },
            );
        }
        let mut leftover = Finished::default();
        for item in self.db.scan_prefix(keys::DONE) {
            let (key, value) = item.map_err(StoreError::Write)?;
            let (endpoint, seq) = keys::parse_done(&key).ok_or_else(|| StoreError::Corrupt {
                what: "outbox done record key",
                detail: format!("{} bytes", key.len()),
            })?;
            let ids = runs::record_ids(&value)?;
            let finished = index.mark_done(&endpoint, &ids);
            index.recorded(&endpoint, seq, &ids);
            leftover.runs.extend(finished.runs);
            leftover.records.extend(finished.records);
            if !index.has_record(seq) && !leftover.records.contains(&key.to_vec()) {
                leftover.records.push(key.to_vec());
            }
        }
        self.remove_finished(leftover)?;
        if let Ok(mut runs) = self.runs.lock() {
            *runs = index;
        }
        Ok(())
    }

    /// Deletes finished runs, then the records that only they needed (in that order: a crash
    /// in between leaves a record that mentions nothing, removed at the next open).
    pub(super) fn remove_finished(&self, finished: Finished) -> Result<(), StoreError> {
        for key in finished.runs.into_iter().chain(finished.records) {
            self.db.remove(key).map_err(StoreError::Write)?;
        }
        Ok(())
    }

    /// Writes `ids` (done in memory) as one done record, in `with` when given (atomically with
    /// what it holds); returns the record's key.
    pub(super) fn write_record(
        &self,
        index: &mut runs::RunIndex,
        endpoint: &str,
        ids: &[EventId],
        with: Option<sled::Batch>,
    ) -> Result<(u64, Vec<u8>), StoreError> {
        let seq = index.next_seq();
        let (key, value) = (keys::done(endpoint, seq), runs::record_value(ids));
        match with {
            Some(mut batch) => {
                batch.insert(key.clone(), value);
                self.db.apply_batch(batch).map_err(StoreError::Write)?;
            }
            None => {
                self.db
                    .insert(key.clone(), value)
                    .map_err(StoreError::Write)?;
            }
        }
        index.recorded(endpoint, seq, ids);
        Ok((seq, key))
    }

    /// Takes one entry (owed from a run) out of its run, atomically with what `batch` writes
    /// in its place (its own entry, or a dead letter).
    pub(super) fn take_from_run(
        &self,
        index: &mut runs::RunIndex,
        endpoint: &str,
        id: EventId,
        batch: sled::Batch,
    ) -> Result<u64, StoreError> {
        let finished = index.mark_done(endpoint, &[id]);
        let done = finished.done;
        let (seq, record) = self.write_record(index, endpoint, &[id], Some(batch))?;
        self.remove_finished(finished)?;
        // The entry finished its run: the record is needed only until the run is gone.
        if !index.has_record(seq) {
            self.db.remove(record).map_err(StoreError::Write)?;
        }
        Ok(done)
    }

    /// Writes the done ids still in no record (a graceful stop, or delivery going idle), so
    /// a crash afterwards sends none of them again.
    pub fn record_done(&self, endpoint: &str) -> Result<(), StoreError> {
        let mut index = self.lock_runs()?;
        let dirty = index.take_dirty(endpoint, 1, std::time::Duration::ZERO);
        if !dirty.is_empty() {
            self.write_record(&mut index, endpoint, &dirty, None)?;
        }
        Ok(())
    }

    pub(super) fn lock_runs(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, runs::RunIndex>, StoreError> {
        self.runs.lock().map_err(|_| StoreError::Corrupt {
            what: "outbox run index",
            detail: "a thread panicked while updating it".into(),
        })
    }
}
