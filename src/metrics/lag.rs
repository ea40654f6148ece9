//! Replication lag, sampled every [`REFRESH`] by a task of `run`, and the connection watcher.
//!
//! - **bytes**: the server's `pg_current_wal_lsn()` minus the slot's `confirmed_flush_lsn`, and
//!   the WAL retained for the slot (`SlotInfo::retained_bytes`).
//! - **seconds**: we are *behind* when our checkpoint has not reached the server WAL position
//!   sampled one refresh earlier (so WAL written in the last few seconds, which no consumer could
//!   have read yet, does not count). While behind, the lag is the time since the last transaction
//!   we processed was committed (or, before any, since we first saw ourselves behind); caught up,
//!   it is 0. After a long idle spell the first slow transaction reads high: an upper bound, as
//!   alerting wants.
//!
//! A database that cannot be reached only logs: the gauges keep their last values and
//! `replication_connected` says the rest.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracing::{debug, warn};

use super::Metrics;
use crate::capture::Progress;
use crate::lsn::Lsn;
use crate::pg::admin::Admin;
use crate::pg::dsn::ConnectParams;
use crate::pgoutput::time::pg_micros_to_system_time;

/// How often lag is sampled.
pub const REFRESH: Duration = Duration::from_secs(5);

/// The commit time (PostgreSQL microseconds) of the last transaction processed.
#[derive(Debug)]
pub struct LastCommit(AtomicI64);

impl Default for LastCommit {
    fn default() -> Self {
        LastCommit(AtomicI64::new(i64::MIN))
    }
}

impl LastCommit {
    pub fn set(&self, pg_micros: i64) {
        self.0.store(pg_micros, Ordering::Relaxed);
    }

    pub fn get(&self) -> Option<SystemTime> {
        match self.0.load(Ordering::Relaxed) {
            i64::MIN => None,
            t => pg_micros_to_system_time(t),
        }
    }
}

/// The seconds part of the lag, from successive samples.
#[derive(Debug, Default)]
pub struct LagClock {
    /// The previous sample: the server's WAL position and when it was read.
    previous: Option<(Lsn, SystemTime)>,
    /// When we first saw ourselves behind, in the current spell of being behind.
    behind_since: Option<SystemTime>,
}

impl LagClock {
    /// Records a sample (`server` read at `now`, our checkpoint `committed`) and returns the lag
    /// in seconds.
    pub fn sample(
        &mut self,
        server: Lsn,
        committed: Lsn,
        last_commit: Option<SystemTime>,
        now: SystemTime,
    ) -> f64 {
        let lag = match self.previous {
            Some((target, read_at)) if committed < target => {
                let since = *self.behind_since.get_or_insert(read_at);
                let from = last_commit.unwrap_or(since);
                now.duration_since(from).unwrap_or_default().as_secs_f64()
            }
            _ => {
                self.behind_since = None;
                0.0
            }
        };
        self.previous = Some((server, now));
        lag
    }
}

/// Samples the lag every [`REFRESH`] until `stop`.
pub async fn refresh(
    params: ConnectParams,
    slot: String,
    metrics: Arc<Metrics>,
    last_commit: Arc<LastCommit>,
    progress: watch::Receiver<Progress>,
    mut stop: watch::Receiver<bool>,
) {
    let mut admin: Option<Admin> = None;
    let mut clock = LagClock::default();
    let mut failing = false;
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::capture::stopped(&mut stop) => return,
        }
        let result = sample(&mut admin, &params, &slot).await;
        match result {
            Ok((server, slot_info)) => {
                failing = false;
                let committed = progress.borrow().committed;
                let seconds = clock.sample(server, committed, last_commit.get(), SystemTime::now());
                let (lag_bytes, retained) = match slot_info {
                    Some((confirmed, retained)) => (
                        confirmed.map(|c| {
                            i64::try_from(server.0.saturating_sub(c.0)).unwrap_or(i64::MAX)
                        }),
                        retained,
                    ),
                    None => (None, None),
                };
                metrics.set_lag(lag_bytes, retained, seconds);
            }
            Err(e) => {
                admin = None;
                if failing {
                    debug!(error = %e, "lag: the database is still unreachable");
                } else {
                    warn!(error = %e, "lag: cannot query the database; replication lag metrics are stale");
                }
                failing = true;
            }
        }
    }
}

type Sample = (Lsn, Option<(Option<Lsn>, Option<i64>)>);

async fn sample(
    admin: &mut Option<Admin>,
    params: &ConnectParams,
    slot: &str,
) -> Result<Sample, crate::pg::admin::AdminError> {
    if admin.is_none() {
        *admin = Some(Admin::connect(params).await?);
    }
    let Some(a) = admin.as_ref() else {
        return Err(crate::pg::admin::AdminError::Unreadable {
            what: "admin connection",
            value: String::new(),
        });
    };
    let server = a.current_wal_lsn().await?;
    let slot = a
        .slot(slot)
        .await?
        .map(|s| (s.confirmed_flush_lsn, s.retained_bytes));
    Ok((server, slot))
}

/// Follows capture's progress: the connected gauge, and a reconnect for every streaming session
/// lost while not stopping. Watch channels keep only the latest value, so a loss and reconnect
/// quicker than this task is scheduled can go uncounted.
pub async fn watch_connection(
    mut progress: watch::Receiver<Progress>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut was = progress.borrow_and_update().connected;
    metrics.set_connected(was);
    loop {
        tokio::select! {
            changed = progress.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = progress.borrow_and_update().connected;
                if was && !now && !*stop.borrow() {
                    metrics.reconnected();
                }
                metrics.set_connected(now);
                was = now;
            }
            _ = crate::capture::stopped(&mut stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    #[test]
    fn lag_counts_only_wal_we_should_have_read() {
        let mut c = LagClock::default();
        // First sample: nothing to compare with.
        assert_eq!(c.sample(Lsn(100), Lsn(50), None, at(0)), 0.0);
        // Caught up with what the server had 5 s ago, though not with its newest WAL.
        assert_eq!(c.sample(Lsn(200), Lsn(100), Some(at(1)), at(5)), 0.0);
        // Behind: since the last processed commit.
        assert_eq!(c.sample(Lsn(300), Lsn(150), Some(at(3)), at(10)), 7.0);
        assert_eq!(c.sample(Lsn(400), Lsn(250), Some(at(3)), at(15)), 12.0);
        // Caught up again.
        assert_eq!(c.sample(Lsn(400), Lsn(400), Some(at(16)), at(20)), 0.0);
        // Behind with no transaction processed yet: since we first saw it.
        let mut c = LagClock::default();
        c.sample(Lsn(100), Lsn(0), None, at(0));
        assert_eq!(c.sample(Lsn(100), Lsn(0), None, at(5)), 5.0);
        assert_eq!(c.sample(Lsn(100), Lsn(0), None, at(10)), 10.0);
    }
}
