//! Figure 2 and the 200 000-event resource figures, on the real binary.
//!
//! Each run: a backlog; the bridge captures it while its endpoint is a black hole (delivery
//! paused: one request hangs, nothing is delivered), which gives capture's peak RSS, CPU and the
//! state directory's size with everything pending; then the bridge restarts on the same state
//! with the endpoint on the lean sink and delivers the backlog; then wrk POSTs the same bodies
//! to the same sink with the same concurrency.

use std::time::Duration;

use crate::bridge::{Bridge, Endpoint, Workdir};
use crate::db::{Db, BRIDGE_SLOT};
use crate::perf::Recording;
use crate::report::{Report, Target};
use crate::settings::Settings;
use crate::sink::{BlackHole, Sink};
use crate::sys::{self, wait_until, MB, R};
use crate::wrk;

#[derive(Default)]
struct Runs {
    loads: Vec<f64>,
    bridge: Vec<f64>,
    wrk: Vec<f64>,
    ratio: Vec<f64>,
    capture_secs: Vec<f64>,
    capture_rss: Vec<f64>,
    delivery_rss: Vec<f64>,
    capture_cpu: Vec<f64>,
    delivery_cpu: Vec<f64>,
    state: Vec<f64>,
}

pub fn run(db: &Db, s: &Settings, report: &mut Report) -> R<()> {
    let mut r = Runs::default();
    let per_100k = 100_000.0 / s.events as f64;
    let mut samples = None;
    for run in 0..s.runs {
        let perf_dir = s.perf_dir.as_deref().filter(|_| run == 0);
        db.reset(s.events)?;
        db.create_slot(BRIDGE_SLOT)?;
        let end = db.backlog(s.events, 100)?;
        let work = Workdir::new()?;
        r.loads.push(sys::load1());

        let hole = BlackHole::start()?;
        let hole_url = hole.url();
        let paused = Endpoint::paused(&hole_url);
        let mut bridge = Bridge::start(&work, &work.config(&db.url(), &paused), "capture")?;
        let perf = Recording::attach(perf_dir, bridge.pid(), "capture")?;
        let took = wait_until(
            "the bridge to confirm the backlog",
            Duration::from_secs(900),
            Duration::from_millis(20),
            || {
                bridge.alive()?;
                Ok(db.confirmed(BRIDGE_SLOT)?.is_some_and(|l| l > end))
            },
        )?;
        perf.finish()?;
        r.capture_secs.push(took.as_secs_f64());
        r.capture_cpu.push(bridge.cpu_secs()? * per_100k);
        r.capture_rss.push(bridge.peak_rss()? as f64 / MB);
        drop(hole);
        bridge.stop()?;
        r.state
            .push(sys::dir_bytes(&work.state())? as f64 / MB * per_100k);
        if samples.is_none() {
            samples = Some(wrk::samples(&work.state(), 1000)?);
        }

        let sink = Sink::start(false)?;
        let live = Endpoint {
            url: &sink.url(),
            format: "form",
            concurrency: s.concurrency,
            timeout: "10s",
        };
        let mut bridge = Bridge::start(&work, &work.config(&db.url(), &live), "deliver")?;
        let perf = Recording::attach(perf_dir, bridge.pid(), "delivery")?;
        wait_until(
            "the bridge to deliver the backlog",
            Duration::from_secs(900),
            Duration::from_millis(5),
            || {
                bridge.alive()?;
                Ok(sink.count() >= s.events)
            },
        )?;
        perf.finish()?;
        let rate = sink.rate();
        r.delivery_cpu.push(bridge.cpu_secs()? * per_100k);
        r.delivery_rss.push(bridge.peak_rss()? as f64 / MB);
        bridge.stop()?;

        sink.reset();
        let samples = samples.as_deref().unwrap_or_default();
        let w = wrk::run(&sink.url(), samples, s.concurrency, s.wrk_secs)?;
        eprintln!("delivery run {run}: bridge {rate:.0} req/s, wrk {w:.0} req/s");
        r.bridge.push(rate);
        r.wrk.push(w);
        r.ratio.push(rate / w);
    }
    let c = s.concurrency;
    let l = &r.loads;
    report.add(
        &format!("delivery c={c}: bridge"),
        "req/s",
        r.bridge,
        l.clone(),
        None,
    );
    report.add(
        &format!("delivery c={c}: wrk"),
        "req/s",
        r.wrk,
        l.clone(),
        None,
    );
    report.add(
        &format!("delivery c={c}: bridge / wrk"),
        "ratio",
        r.ratio,
        l.clone(),
        Some(Target::AtLeast(0.5)),
    );
    let n = s.events;
    report.add(
        &format!("binary capture of {n} (paused delivery), until confirmed"),
        "s",
        r.capture_secs,
        l.clone(),
        None,
    );
    report.add(
        &format!("peak RSS, capturing {n}"),
        "MB",
        r.capture_rss,
        l.clone(),
        Some(Target::AtMost(64.0)),
    );
    report.add(
        &format!("peak RSS, delivering {n}"),
        "MB",
        r.delivery_rss,
        l.clone(),
        Some(Target::AtMost(64.0)),
    );
    report.add(
        "CPU per 100k events, capture",
        "s",
        r.capture_cpu,
        l.clone(),
        None,
    );
    report.add(
        "CPU per 100k events, delivery",
        "s",
        r.delivery_cpu,
        l.clone(),
        None,
    );
    report.add("state dir per 100k pending", "MB", r.state, l.clone(), None);
    Ok(())
}
