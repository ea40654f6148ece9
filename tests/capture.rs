//! Capture against a real PostgreSQL: every pgoutput message kind from a real stream, keepalives
//! and idle progress, a consumer process killed mid-stream, PostgreSQL restarted mid-stream, and a
//! second consumer on a slot that is in use.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};
use tokio::sync::watch;

use fuse_cdc_bridge::capture::{self, CaptureSettings, Handler, Progress};
use fuse_cdc_bridge::config::TableName;
use fuse_cdc_bridge::ephemeral::{Cluster, StopMode};
use fuse_cdc_bridge::pg::dsn::ConnectParams;
use fuse_cdc_bridge::pgoutput::{Item, Transaction};
use fuse_cdc_bridge::store::{Outgoing, Store};
use fuse_cdc_bridge::{tail, Error, Lsn};

const SCHEMA: &str = "
CREATE TABLE items (id bigint PRIMARY KEY, name text, qty integer, note text);
CREATE TABLE full_items (id bigint PRIMARY KEY, name text, big text);
ALTER TABLE full_items REPLICA IDENTITY FULL;
ALTER TABLE full_items ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE TABLE toasty (id bigint PRIMARY KEY, name text, big text);
ALTER TABLE toasty ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE TABLE unpublished (id bigint PRIMARY KEY, v text);
CREATE PUBLICATION fuse_cdc_bridge FOR TABLE items, full_items, toasty;
";

fn tables() -> Vec<TableName> {
    ["items", "full_items", "toasty"]
        .iter()
        .map(|t| TableName::public(t))
        .collect()
}

fn cluster() -> Cluster {
    let c = support::cluster();
    c.psql(SCHEMA).expect("schema");
    c
}

fn settings(c: &Cluster) -> CaptureSettings {
    let params = ConnectParams::parse(&c.superuser_url()).expect("url");
    let mut s = CaptureSettings::new(params, "fuse_cdc_bridge", "fuse_cdc_bridge", tables());
    s.backoff.initial = Duration::from_millis(200);
    s.backoff.max = Duration::from_secs(2);
    s
}

/// Waits until `check` holds, polling; panics with `what` after `timeout`.
fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `Write` into shared memory, for `tail::run`.
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuf {
    fn lines(&self) -> Vec<Json> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// Drops the fields that change from run to run (positions, times, xids).
fn strip(mut line: Json) -> Json {
    for key in ["commit_lsn", "commit_time", "xid", "message_lsn"] {
        line.as_object_mut().unwrap().remove(key);
    }
    line
}

#[test]
fn every_message_kind_decodes_from_a_real_stream() {
    let c = cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let out = SharedBuf::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let settings = tail::TailSettings {
        params: ConnectParams::parse(&c.superuser_url()).unwrap(),
        publication: "fuse_cdc_bridge".into(),
        status_interval: Duration::from_millis(500),
    };
    let mut writer = out.clone();
    let task = rt.spawn(async move { tail::run(&settings, &mut writer, stop_rx).await });
    // tail creates its temporary slot before streaming: changes before that are not its business.
    wait_until(Duration::from_secs(20), "tail's temporary slot", || {
        c.psql("SELECT count(*) FROM pg_replication_slots WHERE temporary")
            .unwrap()
            .trim()
            == "1"
    });

    c.psql(
        "BEGIN;
         INSERT INTO items VALUES (1, 'pen', 3, NULL), (2, 'ink', NULL, 'blue'), (3, 'nib', 1, '');
         COMMIT;",
    )
    .unwrap();
    c.psql("BEGIN; INSERT INTO items VALUES (99, 'ghost', 0, 'x'); ROLLBACK;")
        .unwrap();
    c.psql("INSERT INTO unpublished VALUES (1, 'hidden')")
        .unwrap();
    c.psql("UPDATE items SET id = 10, qty = 4 WHERE id = 1")
        .unwrap();
    c.psql("DELETE FROM items WHERE id = 2").unwrap();
    c.psql(
        "INSERT INTO toasty VALUES (1, 'a', (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 100) i));
         UPDATE toasty SET name = 'b' WHERE id = 1;",
    )
    .unwrap();
    c.psql(
        "INSERT INTO full_items VALUES (1, 'a', repeat('x', 3000));
         UPDATE full_items SET name = 'b' WHERE id = 1;
         DELETE FROM full_items WHERE id = 1;",
    )
    .unwrap();
    c.psql("SELECT pg_logical_emit_message(true, 'fuse', 'in a transaction')")
        .unwrap();
    c.psql("TRUNCATE items").unwrap();

    wait_until(Duration::from_secs(20), "12 lines from tail", || {
        out.lines().len() >= 12
    });
    std::thread::sleep(Duration::from_millis(300));
    stop_tx.send(true).unwrap();
    rt.block_on(task).unwrap().unwrap();

    let lines = out.lines();
    let big_md5: String = c
        .psql("SELECT string_agg(md5(i::text), '') FROM generate_series(1, 100) i")
        .unwrap()
        .trim()
        .to_string();
    let x3000 = "x".repeat(3000);
    let expected = vec![
        json!({"op": "insert", "table": "public.items", "new": {"id": "1", "name": "pen", "qty": "3", "note": null}, "old": null}),
        json!({"op": "insert", "table": "public.items", "new": {"id": "2", "name": "ink", "qty": null, "note": "blue"}, "old": null}),
        json!({"op": "insert", "table": "public.items", "new": {"id": "3", "name": "nib", "qty": "1", "note": ""}, "old": null}),
        // A primary-key change carries the old key.
        json!({"op": "update", "table": "public.items", "new": {"id": "10", "name": "pen", "qty": "4", "note": null}, "old": {"id": "1", "name": null, "qty": null, "note": null}, "old_is_key_only": true}),
        json!({"op": "delete", "table": "public.items", "new": null, "old": {"id": "2", "name": null, "qty": null, "note": null}, "old_is_key_only": true}),
        json!({"op": "insert", "table": "public.toasty", "new": {"id": "1", "name": "a", "big": big_md5}, "old": null}),
        // The TOASTed column the UPDATE left alone is not sent: unknown, not NULL.
        json!({"op": "update", "table": "public.toasty", "new": {"id": "1", "name": "b"}, "old": null, "unchanged_toast": ["big"]}),
        json!({"op": "insert", "table": "public.full_items", "new": {"id": "1", "name": "a", "big": x3000}, "old": null}),
        // REPLICA IDENTITY FULL: the whole old row, and the untouched TOASTed value taken from it.
        json!({"op": "update", "table": "public.full_items", "new": {"id": "1", "name": "b", "big": x3000}, "old": {"id": "1", "name": "a", "big": x3000}}),
        json!({"op": "delete", "table": "public.full_items", "new": null, "old": {"id": "1", "name": "b", "big": x3000}}),
        json!({"op": "message", "transactional": true, "prefix": "fuse", "content": "in a transaction"}),
        json!({"op": "truncate", "tables": ["public.items"], "cascade": false, "restart_identity": false}),
    ];
    let got: Vec<Json> = lines.iter().cloned().map(strip).collect();
    assert_eq!(got, expected, "lines:\n{lines:#?}");

    // The three inserts share one transaction; every line carries its commit position and time.
    let lsns: Vec<Lsn> = lines
        .iter()
        .map(|l| tail::commit_lsn_of(l).unwrap())
        .collect();
    assert_eq!(lsns[0], lsns[1]);
    assert_eq!(lsns[1], lsns[2]);
    assert!(
        lsns.windows(2).all(|w| w[0] <= w[1]),
        "commit order: {lsns:?}"
    );
    assert!(lines[0]["commit_time"].as_str().unwrap().ends_with('Z'));
    // tail's slot is temporary: gone with its session, and the bridge's slot was never made.
    wait_until(Duration::from_secs(10), "the temporary slot to go", || {
        c.psql("SELECT count(*) FROM pg_replication_slots")
            .unwrap()
            .trim()
            == "0"
    });
}

/// A transaction's end LSN and the ids of the rows it changed.
type CapturedTxn = (Lsn, Vec<i64>);

/// A handler that keeps, per transaction, the `id` of every changed row.
#[derive(Clone, Default)]
struct Collector {
    txns: Arc<Mutex<Vec<CapturedTxn>>>,
    pending: Vec<i64>,
}

impl Collector {
    fn ids(&self) -> Vec<i64> {
        self.txns
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, ids)| ids.clone())
            .collect()
    }
}

impl Handler for Collector {
    fn item(&mut self, _txn: &Transaction, item: &Item) -> Result<(), Error> {
        if let Item::Change(change) = item {
            let row = change.new.as_ref().or(change.old.as_ref()).unwrap();
            self.pending.push(row.text("id").unwrap().parse().unwrap());
        }
        Ok(())
    }

    /// One record per transaction: these transactions are small, nothing is handed over early.
    fn take_ready(&mut self, _at_least: usize) -> Vec<Outgoing> {
        Vec::new()
    }

    fn commit(&mut self, _txn: &Transaction, end_lsn: Lsn) -> Result<Vec<Outgoing>, Error> {
        let ids = std::mem::take(&mut self.pending);
        let record = Outgoing {
            payload: serde_json::to_vec(&ids).unwrap(),
            key: String::new(),
            endpoints: vec!["test".to_string()].into(),
        };
        self.txns.lock().unwrap().push((end_lsn, ids));
        Ok(vec![record])
    }

    fn reset(&mut self) {
        self.pending.clear();
    }
}

/// The ids stored in a state directory's outbox, in commit order.
fn stored_ids(store: &Store) -> Vec<i64> {
    store
        .pending("test", None)
        .flat_map(|r| serde_json::from_slice::<Vec<i64>>(&r.unwrap().payload).unwrap())
        .collect()
}

fn walsender_pids(c: &Cluster) -> String {
    c.psql("SELECT string_agg(pid::text, ',') FROM pg_stat_replication WHERE application_name = 'fuse-cdc-bridge'")
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn idle_stream_outlives_wal_sender_timeout_and_confirms_idle_progress() {
    let c = cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let state = tempfile::tempdir().unwrap();
    let store = Store::open(state.path()).unwrap();
    let settings = settings(&c);
    let (progress_tx, progress_rx) = watch::channel(Progress::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let collector = Collector::default();
    let mut handler = collector.clone();
    let task_store = store.clone();
    let task = rt.spawn(async move {
        capture::run(&settings, &task_store, &mut handler, &progress_tx, stop_rx).await
    });
    wait_until(Duration::from_secs(20), "streaming", || {
        progress_rx.borrow().connected
    });
    let pid = walsender_pids(&c);
    assert!(!pid.is_empty());

    // wal_sender_timeout is 3 s: idle for more than three of them, on the same connection.
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(
        walsender_pids(&c),
        pid,
        "the walsender changed: we were disconnected"
    );
    assert!(progress_rx.borrow().connected);

    // WAL that concerns no published table still lets the slot move on.
    c.psql("INSERT INTO unpublished SELECT g, 'x' FROM generate_series(1, 1000) g")
        .unwrap();
    let target: Lsn = c
        .psql("SELECT pg_current_wal_lsn()")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_until(
        Duration::from_secs(15),
        "confirmed_flush_lsn to pass the idle WAL",
        || {
            let confirmed: Lsn = c
            .psql("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'fuse_cdc_bridge'")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
            confirmed >= target
        },
    );
    // ...and only after it is durable in the store.
    assert!(store.checkpoint().unwrap().unwrap().lsn >= target);
    assert!(collector.ids().is_empty());

    stop_tx.send(true).unwrap();
    rt.block_on(task).unwrap().unwrap();
}

#[test]
fn postgres_restart_mid_stream_reconnects_and_loses_nothing() {
    let mut c = cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let state = tempfile::tempdir().unwrap();
    let store = Store::open(state.path()).unwrap();
    let settings = settings(&c);
    let (progress_tx, mut progress_rx) = watch::channel(Progress::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let collector = Collector::default();
    let mut handler = collector.clone();
    let task_store = store.clone();
    let mut task = rt.spawn(async move {
        capture::run(&settings, &task_store, &mut handler, &progress_tx, stop_rx).await
    });
    let connected = progress_rx.clone();
    wait_until(Duration::from_secs(20), "streaming", || {
        connected.borrow().connected
    });
    let disconnects = rt.spawn(async move {
        let mut count = 0;
        let mut was = false;
        while progress_rx.changed().await.is_ok() {
            let now = progress_rx.borrow().connected;
            if was && !now {
                count += 1;
            }
            was = now;
        }
        count
    });
    for id in 1..=50 {
        c.psql(&format!(
            "INSERT INTO items VALUES ({id}, 'n{id}', {id}, NULL)"
        ))
        .unwrap();
    }
    wait_until(Duration::from_secs(20), "the first 50 rows", || {
        collector.ids().len() >= 50
    });
    c.stop(StopMode::Fast).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    c.start_again().unwrap();
    c.psql("INSERT INTO items SELECT g, 'n' || g, g, NULL FROM generate_series(51, 100) g")
        .unwrap();
    c.stop(StopMode::Immediate).unwrap();
    c.start_again().unwrap();
    c.psql("INSERT INTO items SELECT g, 'n' || g, g, NULL FROM generate_series(101, 150) g")
        .unwrap();
    let start = Instant::now();
    while collector.ids().len() < 150 {
        if start.elapsed() > Duration::from_secs(60) || task.is_finished() {
            let ended = task.is_finished().then(|| rt.block_on(&mut task));
            panic!("got {:?}; capture ended with {ended:?}", collector.ids());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));

    stop_tx.send(true).unwrap();
    rt.block_on(task).unwrap().unwrap();
    let disconnects = rt.block_on(disconnects).unwrap();
    assert!(disconnects >= 2, "expected reconnects, saw {disconnects}");
    let expected: Vec<i64> = (1..=150).collect();
    assert_eq!(collector.ids(), expected, "in commit order, each once");
    assert_eq!(stored_ids(&store), expected);
}

/// Not a test of its own: the consumer process that `killed_consumer_resumes_from_its_checkpoint`
/// starts (this test binary, re-run with an environment variable) and kills with SIGKILL. Without
/// the variable it returns at once.
#[test]
fn child_consumer_process() {
    let (Ok(url), Ok(dir)) = (
        std::env::var("FUSE_CDC_CHILD_URL"),
        std::env::var("FUSE_CDC_CHILD_STATE"),
    ) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let params = ConnectParams::parse(&url).unwrap();
        let mut settings =
            CaptureSettings::new(params, "fuse_cdc_bridge", "fuse_cdc_bridge", tables());
        settings.status_interval = Duration::from_millis(200);
        let store = Store::open(std::path::Path::new(&dir)).unwrap();
        let (progress_tx, mut progress_rx) = watch::channel(Progress::default());
        let (_stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            let mut last = Lsn::ZERO;
            while progress_rx.changed().await.is_ok() {
                let flushed = progress_rx.borrow().flushed;
                if flushed > last {
                    last = flushed;
                    println!("DURABLE {flushed}");
                }
            }
        });
        let mut handler = Printing(Collector::default());
        capture::run(&settings, &store, &mut handler, &progress_tx, stop_rx)
            .await
            .unwrap();
    });
}

/// Prints each transaction before it is stored, so the parent sees what was emitted.
struct Printing(Collector);

impl Handler for Printing {
    fn item(&mut self, txn: &Transaction, item: &Item) -> Result<(), Error> {
        self.0.item(txn, item)
    }
    fn take_ready(&mut self, at_least: usize) -> Vec<Outgoing> {
        self.0.take_ready(at_least)
    }
    fn commit(&mut self, txn: &Transaction, end_lsn: Lsn) -> Result<Vec<Outgoing>, Error> {
        let ids = self.0.pending.clone();
        println!("EMIT {end_lsn} {}", serde_json::to_string(&ids).unwrap());
        self.0.commit(txn, end_lsn)
    }
    fn reset(&mut self) {
        self.0.reset()
    }
}

/// What one consumer run printed.
#[derive(Default, Debug)]
struct RunLog {
    emitted: Vec<(Lsn, Vec<i64>)>,
    last_durable: Lsn,
}

/// A consumer process whose stdout is read into a [`RunLog`] as it goes.
struct Consumer {
    child: std::process::Child,
    log: Arc<Mutex<RunLog>>,
    reader: std::thread::JoinHandle<()>,
}

impl Consumer {
    fn spawn(url: &str, state: &std::path::Path) -> Consumer {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_consumer_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("FUSE_CDC_CHILD_URL", url)
            .env("FUSE_CDC_CHILD_STATE", state)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let log = Arc::new(Mutex::new(RunLog::default()));
        let sink = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().unwrap();
                if let Some(rest) = line.strip_prefix("EMIT ") {
                    let (lsn, ids) = rest.split_once(' ').unwrap();
                    log.emitted
                        .push((lsn.parse().unwrap(), serde_json::from_str(ids).unwrap()));
                } else if let Some(lsn) = line.strip_prefix("DURABLE ") {
                    log.last_durable = log.last_durable.max(lsn.parse().unwrap());
                }
            }
        });
        Consumer { child, log, reader }
    }

    fn last_durable(&self) -> Lsn {
        self.log.lock().unwrap().last_durable
    }

    /// SIGKILL, then everything it printed before dying.
    fn kill(mut self) -> RunLog {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.reader.join().unwrap();
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

#[test]
fn killed_consumer_resumes_from_its_checkpoint() {
    use rand::Rng;
    let c = cluster();
    let url = c.superuser_url();
    let state = tempfile::tempdir().unwrap();
    // The slot exists before the first row, so every row is the consumer's to deliver.
    c.psql("SELECT pg_create_logical_replication_slot('fuse_cdc_bridge', 'pgoutput')")
        .unwrap();

    // The workload runs alongside the consumer's kills and restarts, until told to stop.
    let writer_url = c.superuser_url();
    let stop_writing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_flag = Arc::clone(&stop_writing);
    let workload = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let params = ConnectParams::parse(&writer_url).unwrap();
            let admin = fuse_cdc_bridge::pg::admin::Admin::connect(&params)
                .await
                .unwrap();
            let mut next = 1i64;
            let mut rng = rand::rng();
            while !stop_flag.load(std::sync::atomic::Ordering::Relaxed) {
                let n = rng.random_range(1..=4);
                let values: Vec<String> = (next..next + n)
                    .map(|id| format!("({id}, 'r{id}', 1, NULL)"))
                    .collect();
                admin
                    .client()
                    .batch_execute(&format!("INSERT INTO items VALUES {}", values.join(", ")))
                    .await
                    .unwrap();
                next += n;
                tokio::time::sleep(Duration::from_millis(rng.random_range(5..25))).await;
            }
            next - 1
        })
    });

    let mut runs: Vec<RunLog> = Vec::new();
    let mut rng = rand::rng();
    for _ in 0..5 {
        let consumer = Consumer::spawn(&url, state.path());
        std::thread::sleep(Duration::from_millis(rng.random_range(600..1800)));
        runs.push(consumer.kill());
    }
    stop_writing.store(true, std::sync::atomic::Ordering::Relaxed);
    let rows = workload.join().unwrap();

    // A last run drains the rest: everything up to the current WAL position becomes durable.
    let target: Lsn = c
        .psql("SELECT pg_current_wal_lsn()")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let consumer = Consumer::spawn(&url, state.path());
    let start = Instant::now();
    while consumer.last_durable() < target {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the last run never reached {target}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    runs.push(consumer.kill());

    // Nothing at or below a run's durable checkpoint was emitted again by the next run.
    for pair in runs.windows(2) {
        let durable = pair[0].last_durable;
        for (lsn, ids) in &pair[1].emitted {
            assert!(
                *lsn > durable,
                "{ids:?} at {lsn} emitted again after checkpoint {durable}"
            );
        }
    }
    assert!(
        runs.iter().filter(|r| !r.emitted.is_empty()).count() >= 3,
        "kills landed mid-stream: {runs:?}"
    );
    // Nothing lost: the store holds every row exactly once, in commit order.
    let store = Store::open(state.path()).unwrap();
    let expected: Vec<i64> = (1..=rows).collect();
    assert!(rows > 100, "the workload wrote only {rows} rows");
    assert_eq!(stored_ids(&store), expected);
}

#[test]
fn second_consumer_on_a_busy_slot_waits_and_takes_over() {
    let c = cluster();
    let logs = SharedBuf::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // One thread, so every task logs through this test's subscriber.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let state_a = tempfile::tempdir().unwrap();
    let state_b = tempfile::tempdir().unwrap();
    let store_a = Store::open(state_a.path()).unwrap();
    let store_b = Store::open(state_b.path()).unwrap();
    let (progress_a, progress_a_rx) = watch::channel(Progress::default());
    let (progress_b, progress_b_rx) = watch::channel(Progress::default());
    let (stop_a, stop_a_rx) = watch::channel(false);
    let (stop_b, stop_b_rx) = watch::channel(false);
    let a = Collector::default();
    let b = Collector::default();
    let (mut handler_a, mut handler_b) = (a.clone(), b.clone());
    let (settings_a, settings_b) = (settings(&c), settings(&c));
    let task_a = rt.spawn(async move {
        capture::run(
            &settings_a,
            &store_a,
            &mut handler_a,
            &progress_a,
            stop_a_rx,
        )
        .await
    });
    rt.block_on(async {
        let mut rx = progress_a_rx.clone();
        tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|p| p.connected))
            .await
            .unwrap()
            .unwrap();
    });
    let task_b = rt.spawn(async move {
        capture::run(
            &settings_b,
            &store_b,
            &mut handler_b,
            &progress_b,
            stop_b_rx,
        )
        .await
    });
    rt.block_on(async { tokio::time::sleep(Duration::from_secs(3)).await });
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("replication slot in use by another consumer, waiting"),
        "logs:\n{text}"
    );
    assert!(!progress_b_rx.borrow().connected);

    c.psql("INSERT INTO items VALUES (1, 'first', 1, NULL)")
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), async {
            while a.ids().is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap()
    });
    stop_a.send(true).unwrap();
    rt.block_on(task_a).unwrap().unwrap();

    // B gets the slot once A lets go, and carries on from where A confirmed.
    rt.block_on(async {
        let mut rx = progress_b_rx.clone();
        tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|p| p.connected))
            .await
            .unwrap()
            .unwrap();
    });
    c.psql("INSERT INTO items VALUES (2, 'second', 1, NULL)")
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), async {
            while b.ids().is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap()
    });
    stop_b.send(true).unwrap();
    rt.block_on(task_b).unwrap().unwrap();
    assert_eq!(a.ids(), vec![1]);
    assert_eq!(b.ids(), vec![2]);
}
