//! `run`: capture → detect → outbox → delivery, wired together, with a clean shutdown; and
//! beside them the HTTP listener (metrics, health, admin) and the lag sampler.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{watch, Notify};
use tracing::{error, info, warn};

use crate::capture::{self, CaptureSettings, Progress};
use crate::config::Config;
use crate::detect::Detector;
use crate::dispatch::{unix_ms, Dispatcher, Observer, Wakeups};
use crate::metrics::lag::{self, LastCommit};
use crate::metrics::{Counted, Metrics};
use crate::pg::dsn::ConnectParams;
use crate::status::Failures;
use crate::store::{DeadLetter, Store};
use crate::Error;

/// Runs the bridge until `shutdown` (Ok) or a definite error (Err). Transient errors are retried
/// inside capture and delivery.
pub async fn run(config: Config, shutdown: watch::Receiver<bool>) -> Result<(), Error> {
    let mut shutdown = shutdown;
    let params = ConnectParams::parse(config.postgres.url.expose())?;
    if !refuse_definite_problems(&config, &mut shutdown).await? {
        return Ok(());
    }
    let store = Store::open(&config.state.dir)?;
    dead_letter_orphans(&store, &config)?;
    let listener = crate::http::bind(config.http.listen).await?;

    let mut settings = CaptureSettings::new(
        params.clone(),
        &config.postgres.slot,
        &config.postgres.publication,
        config.tables(),
    );
    settings.flush_interval = config.outbox.flush_interval;
    settings.max_pending = Some(config.outbox.max_pending);

    let (progress_tx, progress_rx) = watch::channel(Progress::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = Arc::new(Metrics::new(&config));
    let failures = Arc::new(Failures::default());
    let last_commit = Arc::new(LastCommit::default());
    let observer = Observer {
        metrics: Arc::clone(&metrics),
        failures: Arc::clone(&failures),
    };
    let mut rescans = Vec::new();
    let mut dispatchers = tokio::task::JoinSet::new();
    for endpoint in &config.endpoints {
        let dispatcher =
            Dispatcher::new(endpoint.clone(), store.clone())?.observed(observer.clone());
        let rescan = Arc::new(Notify::new());
        rescans.push(Arc::clone(&rescan));
        let wake = Wakeups {
            committed: progress_rx.clone(),
            rescan,
        };
        dispatchers.spawn(dispatcher.run(wake, stop_rx.clone()));
    }

    let http_state = crate::http::State {
        config: config.clone(),
        store: store.clone(),
        metrics: Arc::clone(&metrics),
        progress: progress_rx.clone(),
        failures,
        rescans,
    };
    // Aborted (closing every connection) when run returns.
    let server = AbortOnDrop(tokio::spawn(crate::http::serve(
        listener,
        Arc::new(http_state),
    )));
    tokio::spawn(lag::refresh(
        params,
        config.postgres.slot.clone(),
        Arc::clone(&metrics),
        Arc::clone(&last_commit),
        progress_rx.clone(),
        stop_rx.clone(),
    ));
    tokio::spawn(lag::watch_connection(
        progress_rx.clone(),
        Arc::clone(&metrics),
        stop_rx.clone(),
    ));

    let mut detector = Detector::from_config(&config);
    let mut detector = Counted::new(&mut detector, metrics, last_commit);
    let capture_stop = stop_rx.clone();
    let result = {
        let capture = capture::run(&settings, &store, &mut detector, &progress_tx, capture_stop);
        tokio::pin!(capture);
        tokio::select! {
            result = &mut capture => result,
            _ = capture::stopped(&mut shutdown) => {
                info!("shutting down: stopping intake, finishing deliveries in flight");
                let _ = stop_tx.send(true);
                capture.await
            }
            // A dispatcher only ends early on an error it cannot retry (the state directory
            // refused a write): a bridge that silently stopped delivering to one endpoint would
            // be worse than one that stops and says why.
            Some(done) = dispatchers.join_next() => {
                let failure = match done {
                    Ok(Ok(())) => Error::definite("a dispatcher stopped unexpectedly", None),
                    Ok(Err(e)) => e,
                    Err(e) => Error::definite(format!("a dispatcher task failed: {e}"), None),
                };
                error!(error = %failure, "delivery stopped; stopping intake");
                let _ = stop_tx.send(true);
                let _ = capture.await;
                Err(failure)
            }
        }
    };
    if let Err(e) = &result {
        error!(error = %e, "the bridge is stopping on an error");
    }
    let _ = stop_tx.send(true);
    while let Some(done) = dispatchers.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "a dispatcher stopped with an error"),
            Err(e) => warn!(error = %e, "a dispatcher task failed"),
        }
    }
    store.flush().await?;
    info!(pending = store.pending_total(), "stopped");
    drop(server);
    result
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `run` validates what `check` validates and refuses to start on a definite problem.
/// A database that cannot be reached yet (down, restarting, a network blip) is waited for with
/// backoff, like a dropped connection later on; `Ok(false)` means a stop was asked meanwhile.
async fn refuse_definite_problems(
    config: &Config,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<bool, Error> {
    let mut delay = std::time::Duration::from_millis(500);
    loop {
        match crate::preflight::inspect(config).await {
            Ok(report) => {
                return match crate::preflight::definite_error(&report) {
                    Some(e) => Err(e),
                    None => Ok(true),
                }
            }
            Err(e) if e.is_transient() => {
                warn!(error = %e, hint = e.hint().unwrap_or_default(), retry_in = ?delay,
                    "cannot check the database yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = capture::stopped(shutdown) => return Ok(false),
                }
                delay = (delay * 2).min(std::time::Duration::from_secs(30));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Entries for endpoints that are no longer configured would wait forever: move them to dead
/// letters, where an operator sees them (and can purge them), instead of losing them silently.
fn dead_letter_orphans(store: &Store, config: &Config) -> Result<(), Error> {
    for (endpoint, count) in store.pending_counts() {
        if config.endpoints.iter().any(|e| e.name == endpoint) {
            continue;
        }
        warn!(endpoint = %endpoint, count, "outbox entries for an endpoint no longer configured: moving them to dead letters");
        let entries: Vec<_> = store.pending(&endpoint, None).collect::<Result<_, _>>()?;
        for entry in entries {
            let dead = DeadLetter {
                key: entry.state.key.clone(),
                attempts: entry.state.attempts,
                first_attempt_at: entry.state.first_attempt_at,
                dead_at: unix_ms(SystemTime::now()),
                last_status: entry.state.last_status,
                reason: format!("endpoint {endpoint:?} is no longer in the configuration"),
            };
            store.dead_letter(&endpoint, entry.id, &dead, &entry.payload)?;
        }
    }
    Ok(())
}
