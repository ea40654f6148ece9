//! Resources through one huge transaction: does the bridge's memory stay bounded?
//!
//! One run (it takes minutes): a single transaction inserting `FUSE_BENCH_BIG_TXN` users, each
//! a `user.created` event, captured by the binary with delivery paused (black-hole endpoint).

use std::time::{Duration, Instant};

use crate::bridge::{Bridge, Endpoint, Workdir};
use crate::db::{Db, BRIDGE_SLOT};
use crate::report::{Report, Target};
use crate::settings::Settings;
use crate::sink::BlackHole;
use crate::sys::{self, wait_until, MB, R};

pub fn run(db: &Db, s: &Settings, report: &mut Report) -> R<()> {
    let n = s.big_txn;
    if n == 0 {
        return Ok(());
    }
    db.reset(s.events)?;
    db.create_slot(BRIDGE_SLOT)?;
    let built = Instant::now();
    let end = db.backlog(n, n)?;
    eprintln!(
        "bigtxn: one {n}-row transaction built in {:.1?}",
        built.elapsed()
    );
    let load = vec![sys::load1()];
    let work = Workdir::new()?;
    let hole = BlackHole::start()?;
    let hole_url = hole.url();
    let paused = Endpoint::paused(&hole_url);
    let mut bridge = Bridge::start(&work, &work.config(&db.url(), &paused), "bigtxn")?;
    // The machine is shared: an unbounded bridge is stopped before it can hurt anyone.
    let limit = s.rss_limit_mb as f64 * MB;
    let mut over = false;
    let took = wait_until(
        "the bridge to confirm the huge transaction",
        Duration::from_secs(1800),
        Duration::from_millis(100),
        || {
            bridge.alive()?;
            over = sys::status_bytes(bridge.pid(), "VmRSS:")? as f64 > limit;
            Ok(over || db.confirmed(BRIDGE_SLOT)?.is_some_and(|l| l > end))
        },
    )?;
    let rss = bridge.peak_rss()? as f64 / MB;
    if over {
        eprintln!(
            "bigtxn: the bridge passed FUSE_BENCH_RSS_LIMIT_MB={} after {took:.1?}; stopped it",
            s.rss_limit_mb
        );
        report.add(
            &format!("{n}-row transaction: peak RSS (stopped at the limit)"),
            "MB",
            vec![rss],
            load,
            Some(Target::AtMost(64.0)),
        );
        return Ok(());
    }
    let cpu = bridge.cpu_secs()?;
    drop(hole);
    bridge.stop()?;
    let state = sys::dir_bytes(&work.state())? as f64 / MB;
    let per_100k = 100_000.0 / n as f64;
    let name = |what: &str| format!("{n}-row transaction: {what}");
    report.add(
        &name("peak RSS"),
        "MB",
        vec![rss],
        load.clone(),
        Some(Target::AtMost(64.0)),
    );
    report.add(
        &name("capture until confirmed"),
        "s",
        vec![took.as_secs_f64()],
        load.clone(),
        None,
    );
    report.add(
        &name("CPU per 100k events"),
        "s",
        vec![cpu * per_100k],
        load.clone(),
        None,
    );
    report.add(
        &name("state dir per 100k pending"),
        "MB",
        vec![state * per_100k],
        load,
        None,
    );
    Ok(())
}
