//! [`Counted`]: the detector as capture's handler, counting what each committed transaction
//! detected and remembering when the last one committed (for the lag in seconds).

use std::sync::Arc;

use crate::capture::Handler;
use crate::config::EventType;
use crate::detect::Detector;
use crate::lsn::Lsn;
use crate::pgoutput::{Item, Transaction};
use crate::store::Outgoing;
use crate::Error;

use super::lag::LastCommit;
use super::Metrics;

/// Wraps a [`Detector`]; behaves exactly like it.
pub struct Counted<'a> {
    detector: &'a mut Detector,
    metrics: Arc<Metrics>,
    last_commit: Arc<LastCommit>,
}

impl<'a> Counted<'a> {
    pub fn new(
        detector: &'a mut Detector,
        metrics: Arc<Metrics>,
        last_commit: Arc<LastCommit>,
    ) -> Self {
        Counted {
            detector,
            metrics,
            last_commit,
        }
    }
}

impl Handler for Counted<'_> {
    fn item(&mut self, txn: &Transaction, item: &Item) -> Result<(), Error> {
        self.detector.item(txn, item)
    }

    fn take_ready(&mut self, at_least: usize) -> Vec<Outgoing> {
        // Events taken before the commit are counted now: with pgoutput v1 every transaction we
        // see has committed. A session cut mid-transaction resends it, so that count can run
        // over; the webhooks themselves are not duplicated (same ids).
        let types: Vec<EventType> = self
            .detector
            .pending()
            .iter()
            .map(|e| e.event_type)
            .collect();
        let outgoing = self.detector.take_ready(at_least);
        for t in types.into_iter().take(outgoing.len()) {
            self.metrics.event_detected(t);
        }
        outgoing
    }

    fn commit(&mut self, txn: &Transaction, end_lsn: Lsn) -> Result<Vec<Outgoing>, Error> {
        // Read before delegating: commit takes the detector's pending events.
        let types: Vec<EventType> = self
            .detector
            .pending()
            .iter()
            .map(|e| e.event_type)
            .collect();
        let outgoing = self.detector.commit(txn, end_lsn)?;
        for t in types {
            self.metrics.event_detected(t);
        }
        self.last_commit.set(txn.commit_time);
        Ok(outgoing)
    }

    fn reset(&mut self) {
        self.detector.reset();
    }
}
