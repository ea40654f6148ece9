//! The last delivery error per endpoint: remembered by the running bridge, or read back from the
//! state.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::LastError;
use crate::store::{Store, StoreError};

/// What the dispatchers of a running bridge last failed with, per endpoint.
#[derive(Debug, Default)]
pub struct Failures(Mutex<BTreeMap<String, LastError>>);

impl Failures {
    pub fn record(&self, endpoint: &str, error: LastError) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(endpoint.to_string(), error);
        }
    }

    pub fn get(&self, endpoint: &str) -> Option<LastError> {
        self.0.lock().ok()?.get(endpoint).cloned()
    }
}

/// The failure of an undelivered event of `endpoint`: of those that failed, the one whose next
/// attempt is scheduled latest (the state keeps no time of failure). Reads the endpoint's whole
/// outbox: for the `status` command, not for every scrape.
pub(super) fn pending_failure(
    store: &Store,
    endpoint: &str,
) -> Result<Option<LastError>, StoreError> {
    let mut best: Option<(u64, LastError)> = None;
    for entry in store.pending(endpoint, None) {
        let entry = entry?;
        let Some(error) = entry.state.last_error else {
            continue;
        };
        let due = entry.state.next_attempt_at.unwrap_or(0);
        if best.as_ref().is_none_or(|(b, _)| due >= *b) {
            best = Some((
                due,
                LastError {
                    event_id: entry.id.to_string(),
                    status: entry.state.last_status,
                    error,
                    at: None,
                },
            ));
        }
    }
    Ok(best.map(|(_, e)| e))
}

/// Per endpoint, the newest dead letter (by when it died) as a failure.
pub(super) fn newest_dead_letters(
    store: &Store,
) -> Result<BTreeMap<String, LastError>, StoreError> {
    let mut newest: BTreeMap<String, LastError> = BTreeMap::new();
    for entry in store.dead_letters() {
        let entry = entry?;
        let at = entry.state.dead_at;
        if newest
            .get(&entry.endpoint)
            .is_some_and(|e| e.at.unwrap_or(0) > at)
        {
            continue;
        }
        newest.insert(
            entry.endpoint,
            LastError {
                event_id: entry.id.to_string(),
                status: entry.state.last_status,
                error: entry.state.reason,
                at: Some(at),
            },
        );
    }
    Ok(newest)
}
