//! Figure 3: commit-to-2xx latency at a steady rate of single-row transactions.
//!
//! The endpoint uses the JSON format, whose `timestamp` is the transaction's commit time as
//! PostgreSQL recorded it (same machine, same clock); the sink subtracts it from the arrival
//! time. The first second is warm-up (connections opening) and left out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::bridge::{Bridge, Endpoint, Workdir};
use crate::db::{Db, BRIDGE_SLOT};
use crate::report::{Report, Target};
use crate::settings::Settings;
use crate::sink::{unix_micros, Sink};
use crate::sys::{self, wait_until, R};

/// Connections the generator commits through: one alone cannot keep 5 000 commits/s here.
const CONNECTIONS: usize = 8;
const WARM_UP_MICROS: i64 = 1_000_000;

pub fn run(db: &Db, s: &Settings, report: &mut Report) -> R<()> {
    for &rate in &s.rates {
        let (mut p50, mut p99, mut max, mut achieved, mut loads) =
            (vec![], vec![], vec![], vec![], vec![]);
        for run in 0..s.runs {
            db.reset(s.events)?;
            let work = Workdir::new()?;
            let sink = Sink::start(true)?;
            let endpoint = Endpoint {
                url: &sink.url(),
                format: "json",
                concurrency: s.concurrency,
                timeout: "10s",
            };
            let mut bridge = Bridge::start(&work, &work.config(&db.url(), &endpoint), "latency")?;
            wait_until(
                "the bridge to stream",
                Duration::from_secs(60),
                Duration::from_millis(50),
                || {
                    bridge.alive()?;
                    db.slot_active(BRIDGE_SLOT)
                },
            )?;
            std::thread::sleep(Duration::from_millis(500));
            loads.push(sys::load1());
            let total = rate * s.latency_secs;
            let (started, got) = generate(&db.url(), rate, total)?;
            wait_until(
                "every paced event to arrive",
                Duration::from_secs(120),
                Duration::from_millis(10),
                || {
                    bridge.alive()?;
                    Ok(sink.count() >= total)
                },
            )?;
            bridge.stop()?;
            let mut lat: Vec<i64> = sink
                .latencies()
                .into_iter()
                .filter(|(commit, _)| *commit >= started + WARM_UP_MICROS)
                .map(|(_, l)| l)
                .collect();
            lat.sort_unstable();
            let ms = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
            eprintln!(
                "latency {rate}/s run {run}: generator {got:.0}/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                ms(0.5),
                ms(0.99),
                ms(1.0)
            );
            p50.push(ms(0.5));
            p99.push(ms(0.99));
            max.push(ms(1.0));
            achieved.push(got);
        }
        let (t50, t99) = if rate == 1000 {
            (Some(Target::AtMost(5.0)), Some(Target::AtMost(20.0)))
        } else {
            (None, None)
        };
        let name = |what: &str| format!("latency @ {rate}/s: {what}");
        report.add(
            &name("generator rate"),
            "events/s",
            achieved,
            loads.clone(),
            None,
        );
        report.add(&name("p50"), "ms", p50, loads.clone(), t50);
        report.add(&name("p99"), "ms", p99, loads.clone(), t99);
        report.add(&name("max"), "ms", max, loads, None);
    }
    Ok(())
}

/// Commits `total` single-row user inserts paced at `rate`; returns when it started (unix µs)
/// and the rate it achieved.
fn generate(url: &str, rate: u64, total: u64) -> R<(i64, f64)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..CONNECTIONS {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            let insert = client
                .prepare("INSERT INTO users (email) VALUES ($1)")
                .await?;
            clients.push((client, insert));
        }
        let next = Arc::new(AtomicU64::new(0));
        let started_unix = unix_micros(SystemTime::now());
        let started = tokio::time::Instant::now();
        let mut workers = tokio::task::JoinSet::new();
        for (client, insert) in clients {
            let next = Arc::clone(&next);
            workers.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= total {
                        return Ok::<(), tokio_postgres::Error>(());
                    }
                    let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                    tokio::time::sleep_until(due).await;
                    let email = format!("paced{i}@example.com");
                    client.execute(&insert, &[&email]).await?;
                }
            });
        }
        while let Some(done) = workers.join_next().await {
            done??;
        }
        let secs = started.elapsed().as_secs_f64();
        Ok((started_unix, total as f64 / secs))
    })
}
