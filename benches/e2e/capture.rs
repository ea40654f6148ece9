//! Figure 1: draining a backlog. The bridge's capture + detect + store, in process through the
//! library (delivery paused: no dispatcher runs; outbox durable, group-commit flushes on), versus
//! `pg_recvlogical` to /dev/null, each on its own slot created before the same backlog.
//!
//! In process rather than the binary because the library tells the exact moment the last
//! transaction is stored and flushed; the slot's confirmed position only moves with the status
//! interval (1 s), too coarse for a drain that takes about a second. The binary's capture is
//! measured for RSS and CPU in the delivery scenario.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use fuse_cdc_bridge::capture::{self, CaptureSettings, Progress};
use fuse_cdc_bridge::config::Config;
use fuse_cdc_bridge::detect::Detector;
use fuse_cdc_bridge::pg::dsn::ConnectParams;
use fuse_cdc_bridge::store::Store;
use fuse_cdc_bridge::Lsn;

use crate::bridge::{Endpoint, Workdir};
use crate::db::{Db, BRIDGE_SLOT, PUBLICATION, RECV_SLOT};
use crate::perf::Recording;
use crate::report::{Report, Target};
use crate::settings::Settings;
use crate::sys::{self, R};

pub fn run(db: &Db, s: &Settings, report: &mut Report) -> R<()> {
    for per_txn in [1, 100] {
        let (mut bridge, mut recv, mut ratio, mut loads) = (vec![], vec![], vec![], vec![]);
        for run in 0..s.runs {
            db.reset(s.events)?;
            db.create_slot(RECV_SLOT)?;
            db.create_slot(BRIDGE_SLOT)?;
            let built = Instant::now();
            let end = db.backlog(s.events, per_txn)?;
            eprintln!(
                "capture: {} changes in {per_txn}-row transactions built in {:.1?}",
                s.events,
                built.elapsed()
            );
            loads.push(sys::load1());
            // Profile this process (the library's capture) in the first run only.
            let perf = s.perf_dir.as_deref().filter(|_| run == 0);
            let phase = format!("capture-{per_txn}row-inprocess");
            // Alternate who goes first, so neither always gets the colder cache.
            let (b, r) = if run % 2 == 0 {
                let b = drain_bridge(db, end, perf, &phase)?;
                (b, crate::recvlogical::drain(db, RECV_SLOT, end)?)
            } else {
                let r = crate::recvlogical::drain(db, RECV_SLOT, end)?;
                (drain_bridge(db, end, perf, &phase)?, r)
            };
            let (b, r) = (rate(s.events, b), rate(s.events, r));
            eprintln!("capture run {run}: bridge {b:.0}/s, pg_recvlogical {r:.0}/s");
            bridge.push(b);
            recv.push(r);
            ratio.push(b / r);
        }
        let name = |what: &str| format!("capture {per_txn}-row txns: {what}");
        report.add(&name("bridge"), "changes/s", bridge, loads.clone(), None);
        report.add(
            &name("pg_recvlogical"),
            "changes/s",
            recv,
            loads.clone(),
            None,
        );
        report.add(
            &name("bridge / pg_recvlogical"),
            "ratio",
            ratio,
            loads,
            Some(Target::AtLeast(0.8)),
        );
    }
    Ok(())
}

fn rate(events: u64, d: Duration) -> f64 {
    events as f64 / d.as_secs_f64()
}

/// From the start of capture until the backlog's last transaction is stored and fsynced.
fn drain_bridge(db: &Db, end: Lsn, perf: Option<&Path>, phase: &str) -> R<Duration> {
    let work = Workdir::new()?;
    let unused = Endpoint {
        url: "http://127.0.0.1:9/never",
        format: "form",
        concurrency: 1,
        timeout: "10s",
    };
    let config = Config::parse_str(&work.config(&db.url(), &unused), &|_| None)?;
    let store = Store::open(&config.state.dir)?;
    let mut settings = CaptureSettings::new(
        ConnectParams::parse(config.postgres.url.expose())?,
        BRIDGE_SLOT,
        PUBLICATION,
        config.tables(),
    );
    settings.flush_interval = config.outbox.flush_interval;
    settings.max_pending = Some(config.outbox.max_pending);
    let mut detector = Detector::from_config(&config);
    // What `#[tokio::main]` gives the binary: a worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let recording = Recording::attach(perf, std::process::id(), phase)?;
    let took = runtime.block_on(drain_stored(&settings, &store, &mut detector, end));
    recording.finish()?;
    took
}

async fn drain_stored(
    settings: &CaptureSettings,
    store: &Store,
    detector: &mut Detector,
    end: Lsn,
) -> R<Duration> {
    let (progress_tx, mut progress_rx) = watch::channel(Progress::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let capture = capture::run(settings, store, detector, &progress_tx, stop_rx);
    tokio::pin!(capture);
    let stored = async {
        let _ = progress_rx.wait_for(|p| p.committed > end).await;
        store.flush().await.map(|()| started.elapsed())
    };
    let deadline = tokio::time::sleep(Duration::from_secs(900));
    let elapsed = tokio::select! {
        done = &mut capture => {
            return Err(format!("capture ended before the backlog's end: {done:?}").into());
        }
        elapsed = stored => elapsed?,
        _ = deadline => return Err("capture did not drain the backlog within 900 s".into()),
    };
    let _ = stop_tx.send(true);
    capture.await?;
    Ok(elapsed)
}
