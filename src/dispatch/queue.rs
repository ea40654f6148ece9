//! Which outbox entry may go next to one endpoint: per ordering key, one at a time and in commit
//! order; across keys, anything that is ready. Pure bookkeeping, no I/O, so the ordering rules
//! can be tested on their own.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::event::EventId;

/// Why a key's head is not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Busy {
    InFlight,
    /// Waiting for a retry at this unix-millisecond time.
    Until(u64),
}

/// One ordering key's events.
#[derive(Debug, Default)]
struct KeyState {
    /// The ids still owed, oldest first; the head is the one being worked on.
    queue: VecDeque<EventId>,
    busy: Option<Busy>,
}

/// Keys are shared strings, looked up by `&str`: a key is allocated once while it has events
/// queued, however many go through.
#[derive(Debug, Default)]
pub struct KeyedQueue {
    keys: HashMap<Arc<str>, KeyState>,
    /// Keys whose head may be sent now, in the order they became ready.
    ready: VecDeque<Arc<str>>,
    /// (due time, key) of heads waiting for a retry.
    waiting: BTreeSet<(u64, Arc<str>)>,
    queued: HashSet<EventId>,
}

impl KeyedQueue {
    pub fn len(&self) -> usize {
        self.queued.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    /// Whether some key's head may be sent now (approximately: a key listed as ready may have
    /// been finished meanwhile).
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    pub fn contains(&self, id: EventId) -> bool {
        self.queued.contains(&id)
    }

    /// Appends `id` to `key`'s queue (ids must arrive in commit order per key). An id already
    /// queued is ignored. `not_before` delays it when it becomes the head (a retry persisted
    /// before a restart).
    pub fn push(&mut self, id: EventId, key: &str, not_before: Option<u64>) {
        if !self.queued.insert(id) {
            return;
        }
        if let Some(state) = self.keys.get_mut(key) {
            state.queue.push_back(id);
            return;
        }
        let key: Arc<str> = Arc::from(key);
        let mut state = KeyState::default();
        state.queue.push_back(id);
        match not_before {
            Some(due) => {
                state.busy = Some(Busy::Until(due));
                self.waiting.insert((due, Arc::clone(&key)));
            }
            None => self.ready.push_back(Arc::clone(&key)),
        }
        self.keys.insert(key, state);
    }

    /// Takes the next sendable head, marking its key in flight.
    pub fn next_ready(&mut self) -> Option<(EventId, Arc<str>)> {
        while let Some(key) = self.ready.pop_front() {
            let Some(state) = self.keys.get_mut(&key) else {
                continue;
            };
            let Some(&id) = state.queue.front() else {
                continue;
            };
            state.busy = Some(Busy::InFlight);
            return Some((id, key));
        }
        None
    }

    /// The head of `key` is done (delivered, dead-lettered or gone): the next one may go.
    pub fn finish(&mut self, key: &str, id: EventId) {
        self.queued.remove(&id);
        let Some((key, _)) = self.keys.get_key_value(key) else {
            return;
        };
        let key = Arc::clone(key);
        let Some(state) = self.keys.get_mut(&key) else {
            return;
        };
        if let Some(Busy::Until(due)) = state.busy.take() {
            self.waiting.remove(&(due, Arc::clone(&key)));
        }
        if state.queue.front() == Some(&id) {
            state.queue.pop_front();
        } else {
            state.queue.retain(|q| *q != id);
        }
        if state.queue.is_empty() {
            self.keys.remove(&key);
        } else {
            self.ready.push_back(key);
        }
    }

    /// The head of `key` failed and is retried at `due`; everything behind it waits too.
    pub fn retry_at(&mut self, key: &str, due: u64) {
        let Some((key, _)) = self.keys.get_key_value(key) else {
            return;
        };
        let key = Arc::clone(key);
        if let Some(state) = self.keys.get_mut(&key) {
            state.busy = Some(Busy::Until(due));
        }
        self.waiting.insert((due, key));
    }

    /// Makes heads whose retry time has come ready again.
    pub fn promote_due(&mut self, now: u64) {
        while let Some((due, key)) = self.waiting.first().cloned() {
            if due > now {
                break;
            }
            self.waiting.pop_first();
            if let Some(state) = self.keys.get_mut(&key) {
                state.busy = None;
            }
            self.ready.push_back(key);
        }
    }

    /// When the earliest waiting head becomes due.
    pub fn next_due(&self) -> Option<u64> {
        self.waiting.first().map(|(due, _)| *due)
    }

    pub fn in_flight(&self) -> usize {
        self.keys
            .values()
            .filter(|k| k.busy == Some(Busy::InFlight))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsn::Lsn;

    fn id(n: u64) -> EventId {
        EventId {
            commit_lsn: Lsn(n),
            ordinal: 0,
        }
    }

    #[test]
    fn one_key_goes_one_at_a_time_in_order() {
        let mut q = KeyedQueue::default();
        q.push(id(1), "u1", None);
        q.push(id(2), "u1", None);
        assert_eq!(q.next_ready(), Some((id(1), "u1".into())));
        assert_eq!(
            q.next_ready(),
            None,
            "u1's second event waits for its first"
        );
        q.finish("u1", id(1));
        assert_eq!(q.next_ready(), Some((id(2), "u1".into())));
        q.finish("u1", id(2));
        assert!(q.is_empty());
        assert_eq!(q.next_ready(), None);
    }

    #[test]
    fn a_failing_key_does_not_hold_back_others() {
        let mut q = KeyedQueue::default();
        q.push(id(1), "u1", None);
        q.push(id(2), "u1", None);
        q.push(id(3), "u2", None);
        assert_eq!(q.next_ready(), Some((id(1), "u1".into())));
        assert_eq!(q.next_ready(), Some((id(3), "u2".into())));
        q.retry_at("u1", 1_000);
        q.finish("u2", id(3));
        assert_eq!(q.next_ready(), None);
        assert_eq!(q.next_due(), Some(1_000));
        q.promote_due(999);
        assert_eq!(q.next_ready(), None);
        q.promote_due(1_000);
        // The retried head goes again before anything behind it.
        assert_eq!(q.next_ready(), Some((id(1), "u1".into())));
        q.finish("u1", id(1));
        assert_eq!(q.next_ready(), Some((id(2), "u1".into())));
    }

    #[test]
    fn duplicates_are_ignored_and_persisted_retries_wait() {
        let mut q = KeyedQueue::default();
        q.push(id(1), "u1", Some(500));
        q.push(id(1), "u1", None);
        q.push(id(2), "u2", None);
        assert_eq!(q.len(), 2);
        assert_eq!(q.next_ready(), Some((id(2), "u2".into())));
        assert_eq!(q.next_ready(), None);
        assert_eq!(q.in_flight(), 1);
        q.promote_due(500);
        assert_eq!(q.next_ready(), Some((id(1), "u1".into())));
        assert_eq!(q.in_flight(), 2);
    }

    #[test]
    fn finishing_a_waiting_head_releases_its_key() {
        let mut q = KeyedQueue::default();
        q.push(id(1), "u1", None);
        q.push(id(2), "u1", None);
        assert!(q.next_ready().is_some());
        q.retry_at("u1", 10_000);
        // Purged from dead letters or delivered by another path meanwhile.
        q.finish("u1", id(1));
        assert_eq!(q.next_due(), None);
        assert_eq!(q.next_ready(), Some((id(2), "u1".into())));
    }
}
