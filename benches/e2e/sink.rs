//! A lean webhook receiver: counts requests and answers 200, nothing else (the library's
//! `Receiver` records every request with its headers, which costs more than the bridge would).
//! Optionally it timestamps arrivals against the JSON body's commit timestamp.
//!
//! Also a black hole: an endpoint that accepts connections and never answers, so the bridge's
//! dispatcher holds one request in flight and delivers nothing: delivery paused.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::sys::R;

struct Shared {
    base: Instant,
    count: AtomicU64,
    /// Nanoseconds since `base` of the first and the latest arrival (0: none yet).
    first: AtomicU64,
    last: AtomicU64,
    /// `(commit unix µs, latency µs)` per request, when measuring latency.
    latencies: Option<Mutex<Vec<(i64, i64)>>>,
}

pub struct Sink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Sink {
    /// Listens on a free loopback port, on its own two worker threads (the machine's cores).
    pub fn start(latency: bool) -> R<Sink> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let shared = Arc::new(Shared {
            base: Instant::now(),
            count: AtomicU64::new(0),
            first: AtomicU64::new(0),
            last: AtomicU64::new(0),
            latencies: latency.then(|| Mutex::new(Vec::new())),
        });
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let accept_shared = Arc::clone(&shared);
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let shared = Arc::clone(&accept_shared);
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(Arc::clone(&shared), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Sink {
            addr,
            shared,
            runtime: Some(runtime),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn count(&self) -> u64 {
        self.shared.count.load(Ordering::SeqCst)
    }

    /// Requests per second between the first and the latest arrival.
    pub fn rate(&self) -> f64 {
        let n = self.count();
        let first = self.shared.first.load(Ordering::SeqCst);
        let last = self.shared.last.load(Ordering::SeqCst);
        if n < 2 || last <= first {
            return f64::NAN;
        }
        (n - 1) as f64 / ((last - first) as f64 / 1e9)
    }

    pub fn reset(&self) {
        self.shared.count.store(0, Ordering::SeqCst);
        self.shared.first.store(0, Ordering::SeqCst);
        self.shared.last.store(0, Ordering::SeqCst);
    }

    pub fn latencies(&self) -> Vec<(i64, i64)> {
        self.shared
            .latencies
            .as_ref()
            .and_then(|l| l.lock().ok().map(|v| v.clone()))
            .unwrap_or_default()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, Infallible> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let now = (shared.base.elapsed().as_nanos() as u64).max(1);
    let _ = shared
        .first
        .compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst);
    shared.last.fetch_max(now, Ordering::SeqCst);
    shared.count.fetch_add(1, Ordering::SeqCst);
    if let Some(latencies) = &shared.latencies {
        if let Some(commit) = commit_micros(&body) {
            let arrived = unix_micros(SystemTime::now());
            if let Ok(mut l) = latencies.lock() {
                l.push((commit, arrived - commit));
            }
        }
    }
    Ok(Response::new(Empty::new()))
}

pub fn unix_micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// The commit time in a JSON body: `"timestamp":"2024-05-06T07:08:09.123456Z"`.
fn commit_micros(body: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(body).ok()?;
    let at = text.find("\"timestamp\":\"")? + "\"timestamp\":\"".len();
    let ts = text.get(at..at + 27)?;
    let num = |a: usize, b: usize| ts.get(a..b)?.parse::<u32>().ok();
    let date = chrono::NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 7)?, num(8, 10)?)?;
    let time = date.and_hms_micro_opt(num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 26)?)?;
    Some(time.and_utc().timestamp_micros())
}

/// Accepts connections and never answers them.
pub struct BlackHole {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BlackHole {
    pub fn start() -> R<BlackHole> {
        let listener = StdListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (stop2, held2) = (Arc::clone(&stop), Arc::clone(&held));
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                if let (Ok(s), Ok(mut h)) = (stream, held2.lock()) {
                    h.push(s);
                }
            }
        });
        Ok(BlackHole {
            addr,
            stop,
            held,
            thread: Some(thread),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }
}

impl Drop for BlackHole {
    /// Closes every held connection (the bridge sees a reset and schedules a retry) and
    /// wakes the accept loop with a last connection so the thread ends.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Ok(mut h) = self.held.lock() {
            for s in h.drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
