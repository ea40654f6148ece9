//! Where a dispatcher reports what became of each attempt: the metrics, and the last failure
//! per endpoint for `status`.

use std::sync::Arc;
use std::time::SystemTime;

use crate::event::EventId;
use crate::metrics::{DeliverySeries, Metrics, Outcome};
use crate::pgoutput::time::pg_micros_to_system_time;
use crate::status::{Failures, LastError};

use super::unix_ms;

#[derive(Clone, Debug)]
pub struct Observer {
    pub metrics: Arc<Metrics>,
    pub failures: Arc<Failures>,
}

/// One attempt's outcome, as reported.
pub(super) struct Report<'a> {
    pub endpoint: &'a str,
    pub id: EventId,
    pub outcome: Outcome,
    /// The event's commit time (PostgreSQL microseconds), when the payload could be read.
    pub commit_time: Option<i64>,
    /// For failures: the status and the error as stored (the dead letter's reason when it died).
    pub failure: Option<(Option<u16>, &'a str)>,
    pub now: SystemTime,
}

/// An [`Observer`] for one endpoint, with its metric series looked up once.
#[derive(Clone, Debug)]
pub(super) struct EndpointObserver {
    observer: Observer,
    series: DeliverySeries,
}

impl Observer {
    pub(super) fn for_endpoint(self, endpoint: &str) -> EndpointObserver {
        let series = self.metrics.delivery_series(endpoint);
        EndpointObserver {
            observer: self,
            series,
        }
    }
}

impl EndpointObserver {
    pub(super) fn report(&self, r: Report<'_>) {
        let latency = match r.outcome {
            Outcome::Delivered => r
                .commit_time
                .and_then(pg_micros_to_system_time)
                .map(|committed| r.now.duration_since(committed).unwrap_or_default()),
            _ => None,
        };
        self.series.record(r.outcome, latency);
        if let Some((status, error)) = r.failure {
            self.observer.failures.record(
                r.endpoint,
                LastError {
                    event_id: r.id.to_string(),
                    status,
                    error: error.to_string(),
                    // The same instant a dead letter records as dead_at.
                    at: Some(unix_ms(r.now)),
                },
            );
        }
    }
}
