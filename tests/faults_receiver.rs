//! Receivers misbehaving, end to end: refusing connections for a while, hanging past the
//! endpoint's timeout, closing the connection in the middle of a response.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use fuse_cdc_bridge::receiver::{Received, Receiver, Reply, Responder};

use support::bridge::*;
use support::workload;

fn always(status: u16) -> Responder {
    Arc::new(move |_| Reply::status(status))
}

fn endpoint(url: &str, extra: &str) -> String {
    format!("[[endpoints]]\nname = \"all\"\nurl = \"{url}\"\nconcurrency = 8\nbackoff = {{ initial = \"100ms\", max = \"1s\" }}\n{extra}\n")
}

fn ids(got: &[Received]) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for r in got {
        *n.entry(r.header("webhook-id").unwrap().to_string())
            .or_default() += 1;
    }
    n
}

fn wait_distinct(
    count: impl Fn() -> usize,
    n: usize,
    timeout: Duration,
    bridge: &Bridge,
) -> Duration {
    let start = Instant::now();
    while count() < n {
        assert!(
            start.elapsed() < timeout,
            "{} of {n} delivered\n{}",
            count(),
            bridge.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

#[test]
fn a_receiver_refusing_connections_gets_everything_when_back_and_wal_is_not_held() {
    let outage = Duration::from_secs(sized(6, 30));
    let c = fuse_cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hooks = rt.block_on(Receiver::start(always(200))).unwrap();
    // Short backoff for a quick recovery, so more attempts than the default 20 to outlast the
    // outage (with the default, events would end in dead letters: a guarantee, but not this one).
    let mut bridge = Bridge::start(&c, &endpoint(&hooks.url("/"), "max_attempts = 1000"));
    wait_streaming(&c, &bridge);
    let addr = rt.block_on(async { hooks.stop() });
    let down = Instant::now();
    let rounds = 30;
    workload::run_rounds(&c, 1, rounds);
    let target = current_wal_lsn(&c);
    // While nobody answers, the slot still moves on: the events are safe in the outbox.
    wait_until(
        Duration::from_secs(20),
        || bridge.log(),
        || confirmed_flush_lsn(&c) >= target,
    );
    let confirmed_after = down.elapsed();
    std::thread::sleep(outage.saturating_sub(down.elapsed()));
    let log = bridge.log();
    assert!(
        log.contains("delivery failed; will retry") && log.contains("cannot connect"),
        "{log}"
    );
    assert!(!log.contains("retries exhausted"), "{log}");
    let outage = down.elapsed();

    let hooks = rt.block_on(Receiver::start_on(addr, always(200))).unwrap();
    let expected = workload::expected(rounds);
    let events: usize = expected.values().sum();
    let count = || ids(&hooks.received()).len();
    let recovery = wait_distinct(count, events, Duration::from_secs(60), &bridge);
    std::thread::sleep(Duration::from_millis(300));
    let t = tally(&hooks.received(), &expected);
    assert_eq!((t.events, t.lost), (events, 0));
    eprintln!(
        "FIGURES receiver refusing {:.1} s: events {}, requests {}, duplicates {}, lost {}, slot confirmed {:.1} s into the outage, all delivered {:.1} s after the receiver came back",
        outage.as_secs_f64(), t.events, t.requests, t.duplicates, t.lost, confirmed_after.as_secs_f64(), recovery.as_secs_f64()
    );
    assert!(bridge.stop().success());
}

#[test]
fn a_receiver_hanging_past_the_timeout_gets_each_event_again_with_its_id() {
    let c = fuse_cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The first request of each event hangs for three timeouts; later ones are answered.
    let seen = Arc::new(Mutex::new(BTreeMap::<String, usize>::new()));
    let counter = Arc::clone(&seen);
    let responder: Responder = Arc::new(move |r: &Received| {
        let id = r.header("webhook-id").unwrap_or_default().to_string();
        let mut seen = counter.lock().unwrap();
        let n = seen.entry(id).or_default();
        *n += 1;
        let mut reply = Reply::status(200);
        if *n == 1 {
            reply.delay = Duration::from_millis(1500);
        }
        reply
    });
    let hooks = rt.block_on(Receiver::start(responder)).unwrap();
    let mut bridge = Bridge::start(&c, &endpoint(&hooks.url("/"), "timeout = \"500ms\""));
    wait_streaming(&c, &bridge);
    let rounds = 6;
    workload::run_rounds(&c, 1, rounds);
    let expected = workload::expected(rounds);
    let events: usize = expected.values().sum();
    let answered = || seen.lock().unwrap().values().filter(|n| **n >= 2).count();
    let took = wait_distinct(answered, events, Duration::from_secs(60), &bridge);
    std::thread::sleep(Duration::from_millis(500));
    let got = hooks.received();
    let t = tally(&got, &expected);
    assert_eq!((t.events, t.lost), (events, 0));
    // Exactly one retry per event, under the same id: the hung attempt counted as failed.
    assert!(ids(&got).values().all(|n| *n == 2), "{:?}", ids(&got));
    assert_eq!(t.duplicates, events);
    let log = bridge.log();
    assert!(
        log.contains("no response within 500ms (the endpoint's timeout)"),
        "{log}"
    );
    eprintln!(
        "FIGURES receiver hanging 1.5 s > 500 ms timeout: events {}, requests {}, duplicates {} (one per event, same id), lost {}, all delivered in {:.1} s",
        t.events, t.requests, t.duplicates, t.lost, took.as_secs_f64()
    );
    assert!(bridge.stop().success());
}

/// A bare HTTP/1.1 server that breaks its responses off: each event's first request gets half a
/// status line, its second a complete head and half the promised body, the third a proper 200.
struct Breaker {
    got: Arc<Mutex<Vec<Received>>>,
    url: String,
    _task: tokio::task::JoinHandle<()>,
}

impl Breaker {
    async fn start() -> Breaker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let log = Arc::clone(&got);
        let task = tokio::spawn(async move {
            let mut connection = 0;
            while let Ok((stream, _)) = listener.accept().await {
                connection += 1;
                tokio::spawn(serve(stream, connection, Arc::clone(&log)));
            }
        });
        Breaker {
            got,
            url,
            _task: task,
        }
    }
}

async fn serve(mut stream: tokio::net::TcpStream, connection: u64, got: Arc<Mutex<Vec<Received>>>) {
    let mut buf = Vec::new();
    loop {
        // One request: the head up to a blank line, then Content-Length bytes.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let headers: Vec<(String, String)> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[head_end..head_end + length].to_vec();
        buf.drain(..head_end + length);
        let received = Received {
            at: Instant::now(),
            method: head.split(' ').next().unwrap_or_default().to_string(),
            path: "/".into(),
            headers,
            body,
            connection,
        };
        let id = received
            .header("webhook-id")
            .unwrap_or_default()
            .to_string();
        let attempt = {
            let mut got = got.lock().unwrap();
            got.push(received);
            got.iter()
                .filter(|r| r.header("webhook-id") == Some(id.as_str()))
                .count()
        };
        match attempt {
            1 => {
                let _ = stream.write_all(b"HTTP/1.1 20").await;
                return;
            }
            2 => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
                    .await;
                return;
            }
            _ => {
                if stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

#[test]
fn a_receiver_closing_mid_response_gets_each_event_again_with_its_id() {
    let c = fuse_cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let breaker = rt.block_on(Breaker::start());
    let mut bridge = Bridge::start(&c, &endpoint(&breaker.url, ""));
    wait_streaming(&c, &bridge);
    let rounds = 6;
    workload::run_rounds(&c, 1, rounds);
    let expected = workload::expected(rounds);
    let events: usize = expected.values().sum();
    let got = || breaker.got.lock().unwrap().clone();
    let done = || ids(&got()).values().filter(|n| **n >= 3).count();
    let took = wait_distinct(done, events, Duration::from_secs(60), &bridge);
    std::thread::sleep(Duration::from_millis(500));
    let got = got();
    let t = tally(&got, &expected);
    assert_eq!((t.events, t.lost), (events, 0));
    // Both broken answers count as failures: exactly three attempts per event, one id.
    assert!(ids(&got).values().all(|n| *n == 3), "{:?}", ids(&got));
    let log = bridge.log();
    assert!(log.contains("but the response was cut off"), "{log}");
    eprintln!(
        "FIGURES receiver closing mid-response: events {}, requests {}, duplicates {} (two per event, same id), lost {}, all delivered in {:.1} s",
        t.events, t.requests, t.duplicates, t.lost, took.as_secs_f64()
    );
    assert!(bridge.stop().success());
}
