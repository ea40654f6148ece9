//! The outbox: per endpoint, the events still owed to it, with their delivery state; and dead
//! letters, the events an endpoint refused or that ran out of attempts.
//!
//! Fresh entries (never attempted: nearly all of them) are written in runs (`runs`), several
//! per sled value. An entry taken out of its run for a failed attempt or a dead letter, one
//! put back from dead letters, and entries written before runs existed are `out/` entries: the
//! value is the state, then the event payload. A fresh one stores only its ordering key — a
//! `0x01` byte, the key's length (u16, big-endian), the key; any other state is one JSON line.
//! Reading merges both in commit order. Delivery removes the entry (or records it done in its
//! run); that needs no fsync of its own: if a crash loses it the event is sent again with the
//! same id, which receivers deduplicate.

use serde::{Deserialize, Serialize};

use super::pending::Pending;
use super::runs;
use super::{keys, Store, StoreError};
use crate::event::EventId;

/// What a committed transaction leaves for delivery: one event for some endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub payload: Vec<u8>,
    /// Events with the same key reach an endpoint in commit order.
    pub key: String,
    /// Shared by every event of a type: an event costs no copy of the list.
    pub endpoints: std::sync::Arc<[String]>,
}

/// Where an outbox entry stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryState {
    pub key: String,
    pub attempts: u32,
    /// Unix milliseconds of the first attempt.
    pub first_attempt_at: Option<u64>,
    /// Unix milliseconds before which no new attempt is made.
    pub next_attempt_at: Option<u64>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
}

impl DeliveryState {
    pub fn new(key: &str) -> DeliveryState {
        DeliveryState {
            key: key.to_string(),
            ..DeliveryState::default()
        }
    }
}

/// A dead letter: why the event was given up on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub key: String,
    pub attempts: u32,
    pub first_attempt_at: Option<u64>,
    /// Unix milliseconds.
    pub dead_at: u64,
    pub last_status: Option<u16>,
    pub reason: String,
}

/// An outbox entry or dead letter read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry<S> {
    pub endpoint: String,
    pub id: EventId,
    pub state: S,
    pub payload: Vec<u8>,
}

pub(super) fn entry_value<S: Serialize>(state: &S, payload: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut value = serde_json::to_vec(state).map_err(|e| StoreError::Corrupt {
        what: "outbox state",
        detail: e.to_string(),
    })?;
    // serde_json escapes newlines inside strings, so the first one ends the state.
    value.push(b'\n');
    value.extend_from_slice(payload);
    Ok(value)
}

/// Marks a fresh entry's value (JSON states start with `{`).
const FRESH: u8 = 1;

/// The value of an entry no attempt was made for yet.
pub(super) fn fresh_entry_value(key: &str, payload: &[u8]) -> Vec<u8> {
    // Ordering keys are `name=value` of one parameter; one too long for the compact form
    // (never seen in practice) takes the JSON form.
    let Ok(len) = u16::try_from(key.len()) else {
        return entry_value(&DeliveryState::new(key), payload).unwrap_or_default();
    };
    let mut value = Vec::with_capacity(3 + key.len() + payload.len());
    value.push(FRESH);
    value.extend_from_slice(&len.to_be_bytes());
    value.extend_from_slice(key.as_bytes());
    value.extend_from_slice(payload);
    value
}

/// A state that a stored value can hold.
pub(super) trait StoredState: for<'de> Deserialize<'de> {
    /// The state of a fresh entry with this ordering key, if this kind of record has one.
    fn fresh(key: String) -> Option<Self>;
}

impl StoredState for DeliveryState {
    fn fresh(key: String) -> Option<Self> {
        Some(DeliveryState::new(&key))
    }
}

impl StoredState for DeadLetter {
    fn fresh(_: String) -> Option<Self> {
        None
    }
}

fn split_value<S: StoredState>(value: &[u8]) -> Result<(S, Vec<u8>), StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        what: "outbox entry",
        detail,
    };
    if value.first() == Some(&FRESH) {
        let len = value
            .get(1..3)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .ok_or_else(|| corrupt("truncated key".into()))?;
        let key = value
            .get(3..3 + len)
            .and_then(|k| std::str::from_utf8(k).ok())
            .ok_or_else(|| corrupt("damaged key".into()))?;
        let state = S::fresh(key.to_string())
            .ok_or_else(|| corrupt("a fresh outbox entry among dead letters".into()))?;
        return Ok((state, value[3 + len..].to_vec()));
    }
    let split = value
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| corrupt("no state line".into()))?;
    let state = serde_json::from_slice(&value[..split]).map_err(|e| corrupt(e.to_string()))?;
    Ok((state, value[split + 1..].to_vec()))
}

pub(super) fn read<S: StoredState>(
    area: &'static [u8],
    item: sled::Result<(sled::IVec, sled::IVec)>,
) -> Result<OutboxEntry<S>, StoreError> {
    let (key, value) = item.map_err(StoreError::Write)?;
    let (endpoint, id) = keys::parse_entry(area, &key).ok_or_else(|| StoreError::Corrupt {
        what: "outbox key",
        detail: format!("{} bytes", key.len()),
    })?;
    let (state, payload) = split_value(&value)?;
    Ok(OutboxEntry {
        endpoint,
        id,
        state,
        payload,
    })
}

impl Store {
    pub(super) fn count_pending(&self) -> Result<(), StoreError> {
        let mut counts = self.runs.lock().map(|r| r.owed()).unwrap_or_default();
        for item in self.db.scan_prefix(keys::OUTBOX).keys() {
            let key = item.map_err(StoreError::Write)?;
            if let Some((endpoint, _)) = keys::parse_entry(keys::OUTBOX, &key) {
                *counts.entry(endpoint).or_default() += 1;
            }
        }
        if let Ok(mut pending) = self.pending.lock() {
            *pending = counts;
        }
        Ok(())
    }

    fn adjust_pending(&self, endpoint: &str, delta: i64) {
        if let Ok(mut pending) = self.pending.lock() {
            let n = pending.entry(endpoint.to_string()).or_default();
            *n = n.saturating_add_signed(delta);
            if *n == 0 {
                pending.remove(endpoint);
            }
        }
    }

    /// Outbox entries per endpoint (including endpoints no longer configured).
    pub fn pending_counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.pending.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// All outbox entries, over every endpoint.
    pub fn pending_total(&self) -> u64 {
        self.pending.lock().map(|p| p.values().sum()).unwrap_or(0)
    }

    /// `endpoint`'s outbox entries in commit order, starting after `after`.
    pub fn pending(
        &self,
        endpoint: &str,
        after: Option<EventId>,
    ) -> impl Iterator<Item = Result<OutboxEntry<DeliveryState>, StoreError>> + '_ {
        let prefix = keys::endpoint_prefix(keys::OUTBOX, endpoint);
        let mut end = prefix.clone();
        end.extend_from_slice(&[0xFF; 13]);
        let start = match after {
            // The key just after `after`'s: its bytes with a trailing zero.
            Some(id) => {
                let mut k = keys::outbox(endpoint, id);
                k.push(0);
                k
            }
            None => prefix,
        };
        let runs = self
            .runs
            .lock()
            .map(|index| index.runs_after(endpoint, after))
            .unwrap_or_default();
        Pending::new(self, endpoint, after, self.db.range(start..end), runs)
    }

    pub fn outbox_entry(
        &self,
        endpoint: &str,
        id: EventId,
    ) -> Result<Option<OutboxEntry<DeliveryState>>, StoreError> {
        let owed_from = self
            .runs
            .lock()
            .ok()
            .and_then(|index| index.owed_from(endpoint, id));
        if let Some(first) = owed_from {
            let Some(value) = self
                .db
                .get(keys::run(endpoint, first))
                .map_err(StoreError::Write)?
            else {
                return Ok(None);
            };
            return Ok(runs::decode_run_where(&value, |i| i == id)?
                .into_iter()
                .next()
                .map(|e| OutboxEntry {
                    endpoint: endpoint.to_string(),
                    id,
                    state: DeliveryState::fresh_with(e.key),
                    payload: e.payload,
                }));
        }
        let key = keys::outbox(endpoint, id);
        match self.db.get(&key).map_err(StoreError::Write)? {
            Some(value) => read(keys::OUTBOX, Ok((key.into(), value))).map(Some),
            None => Ok(None),
        }
    }

    /// The event reached `endpoint`.
    pub fn delivered(&self, endpoint: &str, id: EventId) -> Result<(), StoreError> {
        self.delivered_many(endpoint, &[id])
    }

    /// Several events reached `endpoint`: [`Store::delivered`] for each, with one update of the
    /// pending count. Ids no longer in the outbox are ignored, as there.
    ///
    /// Plain removes rather than one `sled::Batch`: sled 0.34 rolls (writes out) its I/O buffer
    /// at every batch, and nothing here needs the removals to be atomic together (a lost one
    /// only means that event is sent again, same id). Measured on 200 000 entries: 5.8 µs per
    /// remove one by one, 14 µs in batches of 32, 39 µs in batches of 4.
    ///
    /// Entries owed from runs are recorded done together, with one small insert.
    pub fn delivered_many(&self, endpoint: &str, ids: &[EventId]) -> Result<(), StoreError> {
        let mut removed = 0i64;
        {
            let mut index = self.lock_runs()?;
            let (owed, alone): (Vec<EventId>, Vec<EventId>) = ids
                .iter()
                .partition(|id| index.owed_from(endpoint, **id).is_some());
            for id in alone {
                let key = keys::outbox(endpoint, id);
                if self.db.remove(key).map_err(StoreError::Write)?.is_some() {
                    removed += 1;
                }
            }
            if !owed.is_empty() {
                let finished = index.mark_done(endpoint, &owed);
                removed += finished.done as i64;
                self.remove_finished(finished)?;
                let dirty = index.take_dirty(endpoint, runs::RECORD_IDS, runs::RECORD_AGE);
                if !dirty.is_empty() {
                    self.write_record(&mut index, endpoint, &dirty, None)?;
                }
            }
        }
        if removed > 0 {
            self.adjust_pending(endpoint, -removed);
        }
        Ok(())
    }

    /// Records a failed attempt that will be retried.
    pub fn update_state(
        &self,
        endpoint: &str,
        id: EventId,
        state: &DeliveryState,
        payload: &[u8],
    ) -> Result<(), StoreError> {
        let key = keys::outbox(endpoint, id);
        let value = entry_value(state, payload)?;
        {
            let mut index = self.lock_runs()?;
            if index.owed_from(endpoint, id).is_some() {
                // Out of its run, into an entry of its own: in one batch.
                let mut batch = sled::Batch::default();
                batch.insert(key, value);
                self.take_from_run(&mut index, endpoint, id, batch)?;
                return Ok(());
            }
        }
        // Only an entry still in the outbox is updated: one purged meanwhile stays gone.
        let Some(current) = self.db.get(&key).map_err(StoreError::Write)? else {
            return Ok(());
        };
        // A concurrent removal wins: the swap then fails, and that is the outcome we want.
        let _ = self
            .db
            .compare_and_swap(&key, Some(current), Some(value))
            .map_err(StoreError::Write)?;
        Ok(())
    }

    /// Moves an outbox entry to dead letters, in one batch.
    pub fn dead_letter(
        &self,
        endpoint: &str,
        id: EventId,
        dead: &DeadLetter,
        payload: &[u8],
    ) -> Result<(), StoreError> {
        {
            let mut index = self.lock_runs()?;
            if index.owed_from(endpoint, id).is_some() {
                let mut batch = sled::Batch::default();
                batch.insert(keys::dead(endpoint, id), entry_value(dead, payload)?);
                let taken = self.take_from_run(&mut index, endpoint, id, batch)?;
                drop(index);
                self.adjust_pending(endpoint, -(taken as i64));
                return Ok(());
            }
        }
        let out_key = keys::outbox(endpoint, id);
        let existed = self.db.get(&out_key).map_err(StoreError::Write)?.is_some();
        let mut batch = sled::Batch::default();
        batch.remove(out_key);
        batch.insert(keys::dead(endpoint, id), entry_value(dead, payload)?);
        self.db.apply_batch(batch).map_err(StoreError::Write)?;
        if existed {
            self.adjust_pending(endpoint, -1);
        }
        Ok(())
    }

    /// Every dead letter, by endpoint then commit order.
    pub fn dead_letters(
        &self,
    ) -> impl Iterator<Item = Result<OutboxEntry<DeadLetter>, StoreError>> + '_ {
        self.db
            .scan_prefix(keys::DEAD)
            .map(|item| read(keys::DEAD, item))
    }

    /// Puts a dead letter back in the outbox with a fresh attempt count; same event id.
    pub fn retry_dead_letter(&self, endpoint: &str, id: EventId) -> Result<bool, StoreError> {
        let dead_key = keys::dead(endpoint, id);
        let Some(value) = self.db.get(&dead_key).map_err(StoreError::Write)? else {
            return Ok(false);
        };
        let (dead, payload): (DeadLetter, Vec<u8>) = split_value(&value)?;
        let mut batch = sled::Batch::default();
        batch.remove(dead_key);
        batch.insert(
            keys::outbox(endpoint, id),
            fresh_entry_value(&dead.key, &payload),
        );
        self.db.apply_batch(batch).map_err(StoreError::Write)?;
        self.adjust_pending(endpoint, 1);
        Ok(true)
    }

    /// Deletes a dead letter for good.
    pub fn purge_dead_letter(&self, endpoint: &str, id: EventId) -> Result<bool, StoreError> {
        Ok(self
            .db
            .remove(keys::dead(endpoint, id))
            .map_err(StoreError::Write)?
            .is_some())
    }
}

impl DeliveryState {
    /// The state of a fresh entry, taking the key.
    pub(super) fn fresh_with(key: String) -> DeliveryState {
        DeliveryState {
            key,
            ..DeliveryState::default()
        }
    }
}
