//! Prometheus metrics of a running bridge, served on `GET /metrics` in the Prometheus text format.
//!
//! Series names are a contract once shipped: dashboards and alerts use them. Every name starts
//! with `fuse_cdc_bridge_`; counters get `_total` from the encoder.
//!
//! | series | type | labels |
//! |---|---|---|
//! | `events_detected_total` | counter | `event_type` |
//! | `deliveries_total` | counter | `endpoint`, `outcome` (`delivered`, `retry`, `rejected`, `dead_lettered`) |
//! | `delivery_latency_seconds` | histogram | `endpoint`: commit in PostgreSQL → 2xx |
//! | `outbox_depth` | gauge | `endpoint` |
//! | `outbox_oldest_age_seconds` | gauge | `endpoint`: age of the oldest undelivered event's commit, 0 when none |
//! | `dead_letters` | gauge | `endpoint` |
//! | `replication_lag_bytes` | gauge | server WAL position − slot's `confirmed_flush_lsn` |
//! | `replication_retained_wal_bytes` | gauge | WAL the server keeps for the slot |
//! | `replication_lag_seconds` | gauge | see [`lag`] |
//! | `replication_reconnects_total` | counter | streaming sessions lost |
//! | `replication_connected` | gauge | 1 while a session streams |
//!
//! Each delivery attempt counts exactly one outcome: `rejected` is an endpoint's definite no
//! (e.g. a 400), `dead_lettered` is giving up (attempts or age exhausted, unreadable payload);
//! both end in dead letters. The outbox and dead-letter gauges are read from the store at scrape
//! time, so they are right even just after a restart.

mod counted;
pub mod lag;

pub use counted::Counted;

use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::config::{Config, EventType};
use crate::store::Store;

/// Commit-to-2xx latency buckets, seconds: 1 ms to 60 s.
const LATENCY_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
];

/// The Content-Type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventTypeLabel {
    event_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    endpoint: String,
    outcome: &'static str,
}

/// What became of one delivery attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Retry,
    Rejected,
    DeadLettered,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retry => "retry",
            Outcome::Rejected => "rejected",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The registry and its series. Shared (`Arc`) by capture, the dispatchers and the HTTP server.
pub struct Metrics {
    registry: Registry,
    events_detected: Family<EventTypeLabel, Counter>,
    /// `events_detected`'s series, looked up once: capture counts every event.
    detected: Vec<(EventType, Counter)>,
    deliveries: Family<DeliveryLabels, Counter>,
    latency: Family<EndpointLabel, Histogram>,
    outbox_depth: Family<EndpointLabel, Gauge>,
    oldest_age: Family<EndpointLabel, FloatGauge>,
    dead_letters: Family<EndpointLabel, Gauge>,
    lag_bytes: Gauge,
    retained_bytes: Gauge,
    lag_seconds: FloatGauge,
    reconnects: Counter,
    connected: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Every series, with the configured endpoints and all event types present from the start
    /// (at 0), so a rate() or an alert sees them before the first event.
    pub fn new(config: &Config) -> Metrics {
        let mut m = Metrics::empty();
        for t in EventType::ALL {
            let counter = m
                .events_detected
                .get_or_create(&EventTypeLabel {
                    event_type: t.as_str().to_string(),
                })
                .clone();
            m.detected.push((t, counter));
        }
        for e in &config.endpoints {
            for o in [
                Outcome::Delivered,
                Outcome::Retry,
                Outcome::Rejected,
                Outcome::DeadLettered,
            ] {
                let _ = m.deliveries.get_or_create(&delivery(&e.name, o));
            }
            let _ = m.latency.get_or_create(&endpoint(&e.name));
        }
        m.register();
        m
    }

    fn empty() -> Metrics {
        Metrics {
            registry: Registry::with_prefix("fuse_cdc_bridge"),
            events_detected: Family::default(),
            detected: Vec::new(),
            deliveries: Family::default(),
            latency: Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS)),
            outbox_depth: Family::default(),
            oldest_age: Family::default(),
            dead_letters: Family::default(),
            lag_bytes: Gauge::default(),
            retained_bytes: Gauge::default(),
            lag_seconds: FloatGauge::default(),
            reconnects: Counter::default(),
            connected: Gauge::default(),
        }
    }

    fn register(&mut self) {
        let r = &mut self.registry;
        r.register(
            "events_detected",
            "Events detected in committed transactions, by type",
            self.events_detected.clone(),
        );
        r.register(
            "deliveries",
            "Delivery attempts by endpoint and outcome (delivered, retry, rejected, dead_lettered)",
            self.deliveries.clone(),
        );
        r.register(
            "delivery_latency_seconds",
            "Seconds from an event's commit in PostgreSQL to its 2xx answer",
            self.latency.clone(),
        );
        r.register(
            "outbox_depth",
            "Events not yet delivered, per endpoint",
            self.outbox_depth.clone(),
        );
        r.register(
            "outbox_oldest_age_seconds",
            "Age of the oldest undelivered event's commit, per endpoint (0 when none)",
            self.oldest_age.clone(),
        );
        r.register(
            "dead_letters",
            "Dead letters per endpoint",
            self.dead_letters.clone(),
        );
        r.register(
            "replication_lag_bytes",
            "Server WAL position minus the slot's confirmed_flush_lsn",
            self.lag_bytes.clone(),
        );
        r.register(
            "replication_retained_wal_bytes",
            "WAL the server retains for the slot (current position minus restart_lsn)",
            self.retained_bytes.clone(),
        );
        r.register(
            "replication_lag_seconds",
            "While behind the server: seconds since the last processed transaction committed; 0 when caught up",
            self.lag_seconds.clone(),
        );
        r.register(
            "replication_reconnects",
            "Replication sessions lost (each is followed by a reconnect)",
            self.reconnects.clone(),
        );
        r.register(
            "replication_connected",
            "1 while a replication session is streaming, else 0",
            self.connected.clone(),
        );
    }

    pub fn event_detected(&self, event_type: EventType) {
        if let Some((_, counter)) = self.detected.iter().find(|(t, _)| *t == event_type) {
            counter.inc();
            return;
        }
        self.events_detected
            .get_or_create(&EventTypeLabel {
                event_type: event_type.as_str().to_string(),
            })
            .inc();
    }

    /// One attempt's outcome; for a delivery, `latency` is commit → 2xx when the commit time is
    /// known.
    pub fn delivery(&self, endpoint_name: &str, outcome: Outcome, latency: Option<Duration>) {
        self.deliveries
            .get_or_create(&delivery(endpoint_name, outcome))
            .inc();
        if let Some(latency) = latency {
            self.latency
                .get_or_create(&endpoint(endpoint_name))
                .observe(latency.as_secs_f64());
        }
    }

    /// One endpoint's delivery series, looked up once: a dispatcher counts every attempt.
    pub fn delivery_series(&self, endpoint_name: &str) -> DeliverySeries {
        let outcome = |o| {
            self.deliveries
                .get_or_create(&delivery(endpoint_name, o))
                .clone()
        };
        DeliverySeries {
            delivered: outcome(Outcome::Delivered),
            retry: outcome(Outcome::Retry),
            rejected: outcome(Outcome::Rejected),
            dead_lettered: outcome(Outcome::DeadLettered),
            latency: self.latency.get_or_create(&endpoint(endpoint_name)).clone(),
        }
    }

    pub fn reconnected(&self) {
        self.reconnects.inc();
    }

    pub fn set_connected(&self, connected: bool) {
        self.connected.set(i64::from(connected));
    }

    pub fn set_lag(&self, lag_bytes: Option<i64>, retained: Option<i64>, seconds: f64) {
        if let Some(b) = lag_bytes {
            self.lag_bytes.set(b.max(0));
        }
        if let Some(b) = retained {
            self.retained_bytes.set(b.max(0));
        }
        self.lag_seconds.set(seconds);
    }

    pub fn lag_seconds(&self) -> f64 {
        self.lag_seconds.get()
    }

    /// Refreshes the store gauges, then renders every series.
    pub fn encode(&self, config: &Config, store: &Store) -> String {
        self.refresh_store_gauges(config, store);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    fn refresh_store_gauges(&self, config: &Config, store: &Store) {
        let depth = store.pending_counts();
        let dead = store.dead_letter_counts().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "metrics: cannot count dead letters");
            Default::default()
        });
        let now = SystemTime::now();
        for name in crate::status::endpoint_names(config, &depth, &dead) {
            let label = endpoint(&name);
            let n = depth.get(&name).copied().unwrap_or(0);
            self.outbox_depth
                .get_or_create(&label)
                .set(i64::try_from(n).unwrap_or(i64::MAX));
            let age = crate::status::oldest_pending_age(store, &name, now)
                .map(|a| a.as_secs_f64())
                .unwrap_or(0.0);
            self.oldest_age.get_or_create(&label).set(age);
            let d = dead.get(&name).copied().unwrap_or(0);
            self.dead_letters
                .get_or_create(&label)
                .set(i64::try_from(d).unwrap_or(i64::MAX));
        }
    }
}

/// [`Metrics::delivery`] for one endpoint, with its series at hand.
#[derive(Clone, Debug)]
pub struct DeliverySeries {
    delivered: Counter,
    retry: Counter,
    rejected: Counter,
    dead_lettered: Counter,
    latency: Histogram,
}

impl DeliverySeries {
    pub fn record(&self, outcome: Outcome, latency: Option<Duration>) {
        match outcome {
            Outcome::Delivered => &self.delivered,
            Outcome::Retry => &self.retry,
            Outcome::Rejected => &self.rejected,
            Outcome::DeadLettered => &self.dead_lettered,
        }
        .inc();
        if let Some(latency) = latency {
            self.latency.observe(latency.as_secs_f64());
        }
    }
}

fn endpoint(name: &str) -> EndpointLabel {
    EndpointLabel {
        endpoint: name.to_string(),
    }
}

fn delivery(name: &str, outcome: Outcome) -> DeliveryLabels {
    DeliveryLabels {
        endpoint: name.to_string(),
        outcome: outcome.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_names_and_exact_values_render() {
        let mut m = Metrics::empty();
        m.register();
        m.event_detected(EventType::UserCreated);
        m.event_detected(EventType::UserCreated);
        m.delivery("hr", Outcome::Delivered, Some(Duration::from_millis(3)));
        m.delivery("hr", Outcome::Rejected, None);
        // Series looked up once count into the same ones.
        let series = m.delivery_series("hr");
        series.record(Outcome::Delivered, None);
        series.record(Outcome::Retry, None);
        m.set_connected(true);
        m.reconnected();
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &m.registry).unwrap();
        for line in [
            "fuse_cdc_bridge_events_detected_total{event_type=\"user.created\"} 2",
            "fuse_cdc_bridge_deliveries_total{endpoint=\"hr\",outcome=\"delivered\"} 2",
            "fuse_cdc_bridge_deliveries_total{endpoint=\"hr\",outcome=\"rejected\"} 1",
            "fuse_cdc_bridge_deliveries_total{endpoint=\"hr\",outcome=\"retry\"} 1",
            "fuse_cdc_bridge_delivery_latency_seconds_count{endpoint=\"hr\"} 1",
            "fuse_cdc_bridge_delivery_latency_seconds_bucket{endpoint=\"hr\",le=\"0.0025\"} 0",
            "fuse_cdc_bridge_delivery_latency_seconds_bucket{endpoint=\"hr\",le=\"0.005\"} 1",
            "fuse_cdc_bridge_replication_connected 1",
            "fuse_cdc_bridge_replication_reconnects_total 1",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing in\n{out}");
        }
    }
}
