//! Which outbox entry may go next to one endpoint: per ordering key, one at a time and in commit
//! order; across keys, anything that is ready. Pure bookkeeping, no I/O, so the ordering rules
//! can be tested on their own.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use crate::event::EventId;

/// Why a key's head is not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Busy {
    InFlight,
    /// Waiting for a retry at this unix-millisecond time.
    Until(u64),
}

#[derive(Debug, Default)]
pub struct KeyedQueue {
    /// Per key, the ids still owed, oldest first; the head is the one being worked on.
    queues: HashMap<String, VecDeque<EventId>>,
    busy: HashMap<String, Busy>,
    /// Keys whose head may be sent now, in the order they became ready.
    ready: VecDeque<String>,
    /// (due time, key) of heads waiting for a retry.
    waiting: BTreeSet<(u64, String)>,
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
        let queue = self.queues.entry(key.to_string()).or_default();
        queue.push_back(id);
        if queue.len() == 1 {
            match not_before {
                Some(due) => self.wait(key, due),
                None => self.ready.push_back(key.to_string()),
            }
        }
    }

    /// Takes the next sendable head, marking its key in flight.
    pub fn next_ready(&mut self) -> Option<(EventId, String)> {
        while let Some(key) = self.ready.pop_front() {
            let Some(&id) = self.queues.get(&key).and_then(|q| q.front()) else {
                continue;
            };
            self.busy.insert(key.clone(), Busy::InFlight);
            return Some((id, key));
        }
        None
    }

    /// The head of `key` is done (delivered, dead-lettered or gone): the next one may go.
    pub fn finish(&mut self, key: &str, id: EventId) {
        self.queued.remove(&id);
        if let Some(Busy::Until(due)) = self.busy.remove(key) {
            self.waiting.remove(&(due, key.to_string()));
        }
        let Some(queue) = self.queues.get_mut(key) else {
            return;
        };
        if queue.front() == Some(&id) {
            queue.pop_front();
        } else {
            queue.retain(|q| *q != id);
        }
        if queue.is_empty() {
            self.queues.remove(key);
        } else {
            self.ready.push_back(key.to_string());
        }
    }

    /// The head of `key` failed and is retried at `due`; everything behind it waits too.
    pub fn retry_at(&mut self, key: &str, due: u64) {
        self.wait(key, due);
    }

    fn wait(&mut self, key: &str, due: u64) {
        self.busy.insert(key.to_string(), Busy::Until(due));
        self.waiting.insert((due, key.to_string()));
    }

    /// Makes heads whose retry time has come ready again.
    pub fn promote_due(&mut self, now: u64) {
        while let Some((due, key)) = self.waiting.first().cloned() {
            if due > now {
                break;
            }
            self.waiting.pop_first();
            self.busy.remove(&key);
            self.ready.push_back(key);
        }
    }

    /// When the earliest waiting head becomes due.
    pub fn next_due(&self) -> Option<u64> {
        self.waiting.first().map(|(due, _)| *due)
    }

    pub fn in_flight(&self) -> usize {
        self.busy.values().filter(|b| **b == Busy::InFlight).count()
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
