//! Crashes end to end, with the real binary: kill -9 of the bridge at random moments during a
//! mixed workload; PostgreSQL stopped mid-stream (fast and immediate) and started again; the
//! network to PostgreSQL turning into a black hole.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use fuse_cdc_bridge::ephemeral::StopMode;
use fuse_cdc_bridge::receiver::{Received, Receiver, Reply, Responder};

use support::bridge::*;
use support::workload::{self, Writer};

fn always(status: u16) -> Responder {
    Arc::new(move |_| Reply::status(status))
}

fn all_six(url: &str) -> String {
    format!("[[endpoints]]\nname = \"all\"\nurl = \"{url}\"\nconcurrency = 16\nbackoff = {{ initial = \"100ms\", max = \"1s\" }}\n")
}

fn distinct(got: &[Received]) -> usize {
    got.iter()
        .filter_map(|r| r.header("webhook-id"))
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

/// Waits until `n` distinct events arrived; the time it took.
fn wait_distinct(hooks: &Receiver, n: usize, timeout: Duration, bridge: &Bridge) -> Duration {
    let start = Instant::now();
    while distinct(&hooks.received()) < n {
        assert!(
            start.elapsed() < timeout,
            "{} of {n} delivered\n{}",
            distinct(&hooks.received()),
            bridge.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

#[test]
fn kill_9_twenty_times_during_a_mixed_workload_loses_nothing() {
    let c = fuse_cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hooks = rt.block_on(Receiver::start(always(200))).unwrap();
    let mut bridge = Bridge::start(&c, &all_six(&hooks.url("/")));
    wait_streaming(&c, &bridge);
    let writer = Writer::start(&c.superuser_url(), Duration::from_millis(100));
    let kills = sized(20, 50);
    let mut rng_state = rand::random::<u64>() | 1;
    let mut next_delay = || {
        // xorshift: no need for a seeded rand API; the moments only have to vary.
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        Duration::from_millis(300 + rng_state % 1200)
    };
    // Kills that landed while requests were going out (not only during start-up).
    let mut mid_delivery = 0;
    for _ in 0..kills {
        let before = hooks.count();
        std::thread::sleep(next_delay());
        if hooks.count() > before {
            mid_delivery += 1;
        }
        bridge.kill9();
        bridge.restart();
    }
    let rounds = writer.finish();
    let restarted = Instant::now();
    let expected = workload::expected(rounds);
    let events: usize = expected.values().sum();
    wait_distinct(&hooks, events, Duration::from_secs(180), &bridge);
    let drained = restarted.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let t = tally(&hooks.received(), &expected);
    assert_eq!((t.events, t.lost), (events, 0));
    assert!(
        rounds >= 2 * workload::BULK_EVERY,
        "the workload ran alongside the kills: {rounds} rounds"
    );
    assert!(
        mid_delivery >= kills / 2,
        "only {mid_delivery} of {kills} kills landed mid-delivery"
    );
    let types: std::collections::BTreeSet<&str> =
        expected.keys().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types.len(), 6, "all six event types");
    eprintln!(
        "FIGURES kill -9 x{kills} ({mid_delivery} mid-delivery): {rounds} rounds, events {}, requests {}, duplicates {}, lost {}, drained {:.1} s after the last restart",
        t.events, t.requests, t.duplicates, t.lost, drained.as_secs_f64()
    );
    assert!(bridge.stop().success(), "{}", bridge.log());
}

#[test]
fn postgres_stopped_fast_and_immediate_mid_stream_loses_nothing() {
    let mut c = fuse_cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hooks = rt.block_on(Receiver::start(always(200))).unwrap();
    let mut bridge = Bridge::start(&c, &all_six(&hooks.url("/")));
    wait_streaming(&c, &bridge);
    // More than capture's staging chunk: stopped while it is half stored.
    const MID: usize = 2_000;
    let per_phase = sized(10, 50);
    let mut recoveries = Vec::new();
    for (phase, mode) in [StopMode::Fast, StopMode::Immediate]
        .into_iter()
        .enumerate()
    {
        let first = phase * per_phase + 1;
        workload::run_rounds(&c, first, first + per_phase - 1);
        // A bulk transaction just before the stop: the server is still sending it.
        c.psql(&format!(
            "INSERT INTO users (id, email) SELECT g, 'mid' || g || '@example.com' FROM generate_series({}, {}) g",
            5_000_000 + phase * 10_000,
            5_000_000 + phase * 10_000 + MID - 1
        ))
        .unwrap();
        c.stop(mode).unwrap();
        std::thread::sleep(Duration::from_secs(2));
        c.start_again().unwrap();
        let up = Instant::now();
        wait_until(Duration::from_secs(60), || bridge.log(), || slot_active(&c));
        recoveries.push(up.elapsed());
    }
    let rounds = 3 * per_phase;
    workload::run_rounds(&c, 2 * per_phase + 1, rounds);
    let target = current_wal_lsn(&c);
    let mut expected = workload::expected(rounds);
    for phase in 0..2 {
        let first = 5_000_000 + phase * 10_000;
        for id in first..first + MID {
            expect(&mut expected, "user.created", format!("user_id={id}"));
        }
    }
    let events: usize = expected.values().sum();
    wait_distinct(&hooks, events, Duration::from_secs(120), &bridge);
    std::thread::sleep(Duration::from_millis(500));
    let t = tally(&hooks.received(), &expected);
    assert_eq!((t.events, t.lost), (events, 0));
    wait_until(
        Duration::from_secs(20),
        || "the slot to move on".into(),
        || confirmed_flush_lsn(&c) >= target,
    );
    let log = bridge.log();
    assert!(
        bridge.wait_exit(Duration::from_millis(10)).is_none(),
        "the bridge kept running"
    );
    assert!(
        log.matches("replication interrupted, reconnecting").count() >= 2,
        "{log}"
    );
    eprintln!(
        "FIGURES postgres stop fast+immediate: {rounds} rounds + 2 x {MID}-row transactions, events {}, requests {}, duplicates {}, lost {}, streaming again {:.1} s (fast) and {:.1} s (immediate) after the server was up",
        t.events, t.requests, t.duplicates, t.lost, recoveries[0].as_secs_f64(), recoveries[1].as_secs_f64()
    );
    assert!(bridge.stop().success(), "{}", bridge.log());
}

/// A TCP proxy to PostgreSQL whose existing connections can be frozen: bytes stop flowing both
/// ways but the sockets stay open, like a network path that drops packets without a reset.
struct Proxy {
    addr: std::net::SocketAddr,
    opened: Arc<AtomicU64>,
    frozen_below: Arc<AtomicU64>,
    _task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let opened = Arc::new(AtomicU64::new(0));
        let frozen_below = Arc::new(AtomicU64::new(0));
        let (counter, frozen) = (Arc::clone(&opened), Arc::clone(&frozen_below));
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let id = counter.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(("127.0.0.1", port)).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, id, Arc::clone(&frozen)));
                tokio::spawn(pump(sr, cw, id, Arc::clone(&frozen)));
            }
        });
        Proxy {
            addr,
            opened,
            frozen_below,
            _task: task,
        }
    }

    /// Freezes every connection opened so far; later ones flow.
    fn freeze_existing(&self) {
        self.frozen_below
            .store(self.opened.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    id: u64,
    frozen_below: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if id < frozen_below.load(Ordering::SeqCst) {
            // Swallow everything from now on, keeping both sockets open.
            let _keep = (from, to);
            std::future::pending::<()>().await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[test]
fn a_network_black_hole_to_postgres_is_noticed_and_streaming_resumes() {
    let c = fuse_cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hooks = rt.block_on(Receiver::start(always(200))).unwrap();
    let proxy = rt.block_on(Proxy::start(c.port()));
    let url = format!(
        "postgres://{}@{}/postgres?sslmode=disable",
        c.superuser(),
        proxy.addr
    );
    let mut bridge = Bridge::configure_url(&url, None, &all_six(&hooks.url("/")));
    bridge.restart();
    wait_streaming(&c, &bridge);
    workload::run_rounds(&c, 1, 3);
    wait_distinct(
        &hooks,
        workload::expected(3).values().sum(),
        Duration::from_secs(30),
        &bridge,
    );

    proxy.freeze_existing();
    let frozen = Instant::now();
    workload::run_rounds(&c, 4, 8);
    let expected = workload::expected(8);
    let events: usize = expected.values().sum();
    wait_distinct(&hooks, events, Duration::from_secs(90), &bridge);
    let recovery = frozen.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let t = tally(&hooks.received(), &expected);
    assert_eq!((t.events, t.lost), (events, 0));
    let log = bridge.log();
    assert!(log.contains("the connection is presumed dead"), "{log}");
    eprintln!(
        "FIGURES network black hole: events {}, requests {}, duplicates {}, lost {}, all delivered {:.1} s after the path went silent",
        t.events, t.requests, t.duplicates, t.lost, recovery.as_secs_f64()
    );
    assert!(bridge.stop().success(), "{}", bridge.log());
}
