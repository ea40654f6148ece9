//! Reading an endpoint's outbox: single `out/` entries merged in commit order with what is
//! still owed from its runs.

use std::collections::VecDeque;

use super::outbox::{read, DeliveryState, OutboxEntry};
use super::{keys, runs, Store, StoreError};
use crate::event::EventId;

/// An endpoint's pending entries in commit order: `out/` entries merged with the entries still
/// owed from its runs (see [`Store::pending`]).
pub(super) struct Pending<'a> {
    store: &'a Store,
    endpoint: String,
    after: Option<EventId>,
    alone: std::iter::Peekable<sled::Iter>,
    /// First ids of the runs not read yet.
    runs: VecDeque<EventId>,
    /// What is left of the run read last.
    current: VecDeque<OutboxEntry<DeliveryState>>,
}

impl<'a> Pending<'a> {
    pub(super) fn new(
        store: &'a Store,
        endpoint: &str,
        after: Option<EventId>,
        alone: sled::Iter,
        runs: Vec<EventId>,
    ) -> Pending<'a> {
        Pending {
            store,
            endpoint: endpoint.to_string(),
            after,
            alone: alone.peekable(),
            runs: runs.into(),
            current: VecDeque::new(),
        }
    }

    /// Reads the next run's entries that are still owed.
    fn load(&mut self, first: EventId) -> Result<(), StoreError> {
        // A run finished (and removed) since the list was taken has nothing owed.
        let Some(value) = self
            .store
            .db
            .get(keys::run(&self.endpoint, first))
            .map_err(StoreError::Write)?
        else {
            return Ok(());
        };
        let entries = {
            let index = self.store.lock_runs()?;
            runs::decode_run_where(&value, |id| {
                self.after.is_none_or(|a| id > a) && !index.is_done(&self.endpoint, first, id)
            })?
        };
        for e in entries {
            self.current.push_back(OutboxEntry {
                endpoint: self.endpoint.clone(),
                id: e.id,
                state: DeliveryState::fresh_with(e.key),
                payload: e.payload,
            });
        }
        Ok(())
    }
}

impl Iterator for Pending<'_> {
    type Item = Result<OutboxEntry<DeliveryState>, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.current.is_empty() {
            let Some(first) = self.runs.pop_front() else {
                break;
            };
            if let Err(e) = self.load(first) {
                return Some(Err(e));
            }
        }
        // Here a run entry is at hand, or every run is read.
        let alone_first = match self.alone.peek() {
            None if self.current.is_empty() => return None,
            None => false,
            Some(Ok((key, _))) => {
                match (keys::parse_entry(keys::OUTBOX, key), self.current.front()) {
                    (Some((_, alone)), Some(run)) => alone < run.id,
                    // No run entry left, or a damaged key (`read` reports it).
                    _ => true,
                }
            }
            Some(Err(_)) => true,
        };
        if alone_first {
            return self.alone.next().map(|item| read(keys::OUTBOX, item));
        }
        self.current.pop_front().map(Ok)
    }
}
