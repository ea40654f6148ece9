//! Dispatch: for one endpoint, which outbox entry goes when.
//!
//! Events about one user (one ordering key) go one at a time, in commit order, each waiting for
//! the previous one to be delivered or dead-lettered; events about different users go in parallel
//! up to the endpoint's concurrency. A failing event waits for its retry without holding back
//! other users. Every outcome is written to the store before the next event of that key goes.

mod observe;
mod queue;

pub use observe::Observer;
pub use queue::KeyedQueue;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{watch, Notify};
use tokio::task::{JoinError, JoinSet};
use tracing::{debug, info, warn};

use crate::config::EndpointConfig;
use crate::delivery::client::EndpointClient;
use crate::delivery::outcome::{Attempt, AttemptReport};
use crate::delivery::retry;
use crate::event::{Event, EventId};
use crate::metrics::Outcome;
use crate::store::{DeadLetter, DeliveryState, Store};
use crate::Error;

/// How many outbox entries a dispatcher holds in memory at once (ids, keys and what the scan
/// read), at least; see [`window_for`]. Users blocked by failures never hold the others back
/// whatever the window (`scan` reads on past it), so it only trades memory for how often the
/// outbox is read: 10 000 cost ~8 MB of peak RSS and more CPU than 1 000 (BENCHMARKS.md).
const WINDOW: usize = 1_000;

/// The window for an endpoint: room for several refills of every request slot.
fn window_for(concurrency: usize) -> usize {
    WINDOW.max(concurrency.saturating_mul(8))
}

/// How long a graceful stop waits for requests in flight before leaving them to the next run.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Signals a dispatcher listens to.
#[derive(Clone)]
pub struct Wakeups {
    /// Changes whenever capture commits: new entries may be waiting.
    pub committed: watch::Receiver<crate::capture::Progress>,
    /// Entries may have appeared anywhere in the outbox (a dead letter put back): rescan.
    pub rescan: Arc<Notify>,
}

/// One endpoint's dispatcher.
pub struct Dispatcher {
    endpoint: EndpointConfig,
    client: Arc<EndpointClient>,
    store: Store,
    queue: KeyedQueue,
    /// The newest id read from the outbox; later commits only add larger ones.
    last_seen: Option<EventId>,
    /// The last scan stopped at the window: the outbox holds more than is queued.
    more: bool,
    /// A full rescan stopped at the window: the next scan starts from the beginning again.
    full_pending: bool,
    window: usize,
    /// What the scan read for queued entries not yet sent, so sending does not read them again.
    loaded: HashMap<EventId, (DeliveryState, Vec<u8>)>,
    /// Finished attempts being settled together (kept to reuse its allocation).
    finished: Vec<Finished>,
    observer: Option<observe::EndpointObserver>,
}

struct Finished {
    id: EventId,
    key: Arc<str>,
    report: Option<AttemptReport>,
    /// The event's commit time, when its payload could be read.
    commit_time: Option<i64>,
    /// The entry as sent, to write its new state.
    state: DeliveryState,
    payload: Vec<u8>,
}

impl Dispatcher {
    pub fn new(endpoint: EndpointConfig, store: Store) -> Result<Dispatcher, Error> {
        let client =
            EndpointClient::new(&endpoint).map_err(|e| Error::definite(e.to_string(), None))?;
        let window = window_for(endpoint.concurrency);
        Ok(Dispatcher {
            endpoint,
            client: Arc::new(client),
            store,
            queue: KeyedQueue::default(),
            last_seen: None,
            more: false,
            full_pending: false,
            window,
            loaded: HashMap::new(),
            finished: Vec::new(),
            observer: None,
        })
    }

    /// Reports every attempt's outcome to `observer`.
    /// Holds at most `window` entries in memory (default [`window_for`] the concurrency).
    pub fn with_window(mut self, window: usize) -> Dispatcher {
        self.window = window.max(1);
        self
    }

    pub fn observed(mut self, observer: Observer) -> Dispatcher {
        self.observer = Some(observer.for_endpoint(&self.endpoint.name));
        self
    }

    fn observe(
        &self,
        f: &Finished,
        outcome: Outcome,
        failure: Option<(Option<u16>, &str)>,
        now: SystemTime,
    ) {
        if let Some(observer) = &self.observer {
            observer.report(observe::Report {
                endpoint: &self.endpoint.name,
                id: f.id,
                outcome,
                commit_time: f.commit_time,
                failure,
                now,
            });
        }
    }

    /// Runs until `shutdown`; then waits (a little) for requests in flight.
    pub async fn run(
        mut self,
        mut wake: Wakeups,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), Error> {
        let mut in_flight: JoinSet<Finished> = JoinSet::new();
        let mut capture_alive = true;
        self.scan(false)?;
        loop {
            self.queue.promote_due(unix_ms(SystemTime::now()));
            let idle_slots = in_flight.len() < self.endpoint.concurrency;
            if self.more
                && (self.queue.len() < self.window / 2 || (idle_slots && !self.queue.has_ready()))
            {
                self.scan(false)?;
            }
            self.launch(&mut in_flight)?;
            let next_due = self.queue.next_due().map(|due| {
                let wait = due.saturating_sub(unix_ms(SystemTime::now()));
                tokio::time::Instant::now() + Duration::from_millis(wait)
            });
            tokio::select! {
                Some(done) = in_flight.join_next() => self.settle_finished(done, &mut in_flight, true)?,
                changed = wake.committed.changed(), if capture_alive => {
                    // Without capture, keep delivering what is queued until told to stop.
                    capture_alive = changed.is_ok();
                    self.scan(false)?;
                }
                _ = wake.rescan.notified() => self.scan(true)?,
                _ = sleep_until_opt(next_due) => {}
                _ = crate::capture::stopped(&mut shutdown) => break,
            }
        }
        self.drain(in_flight).await
    }

    /// Sends ready heads until every request slot is busy or nothing is ready.
    fn launch(&mut self, in_flight: &mut JoinSet<Finished>) -> Result<(), Error> {
        while in_flight.len() < self.endpoint.concurrency {
            let Some((id, key)) = self.queue.next_ready() else {
                break;
            };
            let entry = match self.loaded.remove(&id) {
                Some(loaded) => Some(loaded),
                // A retry: its state changed since the scan.
                None => self
                    .store
                    .outbox_entry(&self.endpoint.name, id)?
                    .map(|e| (e.state, e.payload)),
            };
            match entry {
                Some((state, payload)) => {
                    let client = Arc::clone(&self.client);
                    in_flight.spawn(send(client, id, key, state, payload));
                }
                // Purged or retried elsewhere meanwhile.
                None => self.queue.finish(&key, id),
            }
        }
        Ok(())
    }

    /// Reads outbox entries into the queue: only new ones, or (`full`) from the start. At most
    /// a window's worth is held, so a large backlog does not have to fit in memory; past the
    /// window it reads on when the queue runs low, or when everything queued is blocked behind
    /// failing users (so they never hold back users further down the outbox).
    fn scan(&mut self, full: bool) -> Result<(), Error> {
        let full = full || self.full_pending;
        let after = if full { None } else { self.last_seen };
        let room = self.window.saturating_sub(self.queue.len());
        let mut budget = if room == 0 && !self.queue.has_ready() {
            self.window
        } else {
            room
        };
        self.more = false;
        self.full_pending = false;
        for entry in self.store.pending(&self.endpoint.name, after) {
            let entry = entry?;
            if self.queue.contains(entry.id) {
                self.last_seen = self.last_seen.max(Some(entry.id));
                continue;
            }
            if budget == 0 {
                self.more = true;
                self.full_pending = full;
                break;
            }
            budget -= 1;
            self.last_seen = self.last_seen.max(Some(entry.id));
            self.queue
                .push(entry.id, &entry.state.key, entry.state.next_attempt_at);
            self.loaded.insert(entry.id, (entry.state, entry.payload));
        }
        Ok(())
    }

    async fn drain(mut self, mut in_flight: JoinSet<Finished>) -> Result<(), Error> {
        if in_flight.is_empty() {
            return Ok(());
        }
        info!(endpoint = %self.endpoint.name, in_flight = in_flight.len(), "waiting for requests in flight");
        let deadline = tokio::time::sleep(DRAIN_DEADLINE);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                done = in_flight.join_next() => match done {
                    // Stopping: nothing new goes out.
                    Some(done) => self.settle_finished(done, &mut in_flight, false)?,
                    None => return Ok(()),
                },
                _ = &mut deadline => {
                    // Unfinished requests stay in the outbox and go again, same id, next run.
                    warn!(endpoint = %self.endpoint.name, left = in_flight.len(),
                        "stopping with requests in flight; they will be sent again");
                    in_flight.abort_all();
                    return Ok(self.store.record_done(&self.endpoint.name)?);
                }
            }
        }
    }

    /// Settles the task `join_next` returned together with every other one already finished:
    /// under load several requests complete per wakeup, and settling them in one go takes one
    /// store call for all the deliveries instead of a loop iteration (and a `select!`) each.
    fn settle_finished(
        &mut self,
        first: Result<Finished, JoinError>,
        in_flight: &mut JoinSet<Finished>,
        relaunch: bool,
    ) -> Result<(), Error> {
        let mut done = std::mem::take(&mut self.finished);
        let mut outcome = Ok(());
        let mut next = Some(first);
        while let Some(result) = next {
            match result {
                Ok(finished) => done.push(finished),
                Err(e) => {
                    warn!(endpoint = %self.endpoint.name, error = %e, "a delivery task failed")
                }
            }
            next = in_flight.try_join_next();
        }
        if !done.is_empty() {
            // The freed slots go to other users' ready events first, so the receiver works
            // while the outcomes are written; the finished keys are still marked in flight
            // until then, so none of their next events goes early.
            outcome = if relaunch {
                self.launch(in_flight)
            } else {
                Ok(())
            }
            .and_then(|()| self.settle_all(&mut done));
        }
        if outcome.is_ok() && in_flight.is_empty() {
            // Going idle (or stopping): what was delivered is recorded now rather than with
            // the next few hundred deliveries, so a crash meanwhile sends none of it again.
            outcome = self
                .store
                .record_done(&self.endpoint.name)
                .map_err(Error::from);
        }
        done.clear();
        // Kept for the next round, so collecting costs no allocation.
        self.finished = done;
        outcome
    }

    /// Writes the outcomes of several attempts and updates the queue: the deliveries with one
    /// [`Store::delivered_many`], the rest one by one. A key's next event is released only once
    /// its outcome is written; a key has at most one event in flight, so `done` holds at most
    /// one per key and the order across keys does not matter.
    fn settle_all(&mut self, done: &mut Vec<Finished>) -> Result<(), Error> {
        let delivered = |f: &Finished| {
            matches!(
                f.report,
                Some(AttemptReport {
                    attempt: Attempt::Delivered { .. },
                    ..
                })
            )
        };
        let ids: Vec<EventId> = done.iter().filter(|f| delivered(f)).map(|f| f.id).collect();
        if !ids.is_empty() {
            self.store.delivered_many(&self.endpoint.name, &ids)?;
        }
        let now = SystemTime::now();
        for f in done.drain(..) {
            match &f.report {
                Some(AttemptReport {
                    attempt: Attempt::Delivered { status },
                    latency,
                }) => {
                    debug!(endpoint = %self.endpoint.name, event_id = %f.id, status,
                        latency_ms = latency.as_millis() as u64, "delivered");
                    self.observe(&f, Outcome::Delivered, None, now);
                    self.queue.finish(&f.key, f.id);
                }
                _ => self.settle(f)?,
            }
        }
        Ok(())
    }

    /// Writes an attempt's outcome and updates the queue.
    fn settle(&mut self, f: Finished) -> Result<(), Error> {
        let name = self.endpoint.name.clone();
        let now = SystemTime::now();
        let Some(report) = f.report.clone() else {
            // The payload in the store is not an event we can read: nothing will fix it.
            let reason = "the stored event could not be decoded";
            self.observe(&f, Outcome::DeadLettered, Some((None, reason)), now);
            self.dead_letter(&f, None, reason.into(), now)?;
            return Ok(());
        };
        match report.attempt {
            Attempt::Delivered { status } => {
                debug!(endpoint = %name, event_id = %f.id, status, latency_ms = report.latency.as_millis() as u64, "delivered");
                self.store.delivered(&name, f.id)?;
                self.observe(&f, Outcome::Delivered, None, now);
                self.queue.finish(&f.key, f.id);
            }
            Attempt::Reject { status, error } => {
                warn!(endpoint = %name, event_id = %f.id, status, attempt = f.state.attempts + 1,
                    error = %error, "rejected; moved to dead letters");
                self.observe(&f, Outcome::Rejected, Some((status, &error)), now);
                self.dead_letter(&f, status, error, now)?;
            }
            Attempt::Retry {
                status,
                error,
                retry_after,
            } => {
                let mut state = f.state.clone();
                state.attempts += 1;
                let first = *state.first_attempt_at.get_or_insert(unix_ms(now));
                state.last_status = status;
                state.last_error = Some(error.clone());
                let first_at = UNIX_EPOCH + Duration::from_millis(first);
                if retry::exhausted(
                    state.attempts,
                    self.endpoint.max_attempts,
                    first_at,
                    self.endpoint.max_age,
                    now,
                ) {
                    warn!(endpoint = %name, event_id = %f.id, status, attempt = state.attempts,
                        error = %error, "retries exhausted; moved to dead letters");
                    let reason = format!("gave up after {} attempts: {error}", state.attempts);
                    let f = Finished { state, ..f };
                    self.observe(&f, Outcome::DeadLettered, Some((status, &reason)), now);
                    return self.dead_letter(&f, status, reason, now);
                }
                let delay = retry::backoff_delay(
                    state.attempts,
                    self.endpoint.backoff.initial,
                    self.endpoint.backoff.max,
                    retry_after,
                    &mut rand::rng(),
                );
                let due = unix_ms(now) + delay.as_millis() as u64;
                state.next_attempt_at = Some(due);
                warn!(endpoint = %name, event_id = %f.id, status, attempt = state.attempts,
                    retry_in_ms = delay.as_millis() as u64, error = %error, "delivery failed; will retry");
                self.store.update_state(&name, f.id, &state, &f.payload)?;
                self.observe(&f, Outcome::Retry, Some((status, &error)), now);
                self.queue.retry_at(&f.key, due);
            }
        }
        Ok(())
    }

    fn dead_letter(
        &mut self,
        f: &Finished,
        status: Option<u16>,
        reason: String,
        now: SystemTime,
    ) -> Result<(), Error> {
        let dead = DeadLetter {
            key: f.key.to_string(),
            attempts: f.state.attempts.max(1),
            first_attempt_at: f.state.first_attempt_at.or(Some(unix_ms(now))),
            dead_at: unix_ms(now),
            last_status: status,
            reason,
        };
        self.store
            .dead_letter(&self.endpoint.name, f.id, &dead, &f.payload)?;
        self.queue.finish(&f.key, f.id);
        Ok(())
    }
}

async fn send(
    client: Arc<EndpointClient>,
    id: EventId,
    key: Arc<str>,
    state: DeliveryState,
    payload: Vec<u8>,
) -> Finished {
    let (report, commit_time) = match Event::from_bytes(&payload) {
        Ok(event) => (
            Some(client.send(&id, &event).await),
            Some(event.commit_time),
        ),
        Err(_) => (None, None),
    };
    Finished {
        id,
        key,
        report,
        commit_time,
        state,
        payload,
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
