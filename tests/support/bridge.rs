//! The `run` binary under test: config, start, kill -9, stop, its log and peak memory; a cluster
//! with the reference schema; and the delivery tally every fault scenario ends with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use fuse_cdc_bridge::ephemeral::{Cluster, ClusterOptions};
use fuse_cdc_bridge::receiver::Received;
use fuse_cdc_bridge::Lsn;

pub const BIN: &str = env!("CARGO_BIN_EXE_fuse-cdc-bridge");
pub const TABLES: &[&str] = &[
    "users",
    "learning_plans",
    "learning_plan_enrollments",
    "scorm_attempts",
    "event_attendances",
];

/// `FUSE_CDC_LONG=1` selects the deeper runs.
pub fn long_mode() -> bool {
    std::env::var("FUSE_CDC_LONG").is_ok_and(|v| v == "1")
}

/// `ci` normally, `long` with `FUSE_CDC_LONG=1`.
pub fn sized<T>(ci: T, long: T) -> T {
    if long_mode() {
        long
    } else {
        ci
    }
}

/// A cluster with the reference schema, REPLICA IDENTITY FULL on its tables.
pub fn fuse_cluster() -> Cluster {
    fuse_cluster_with(ClusterOptions::default())
}

pub fn fuse_cluster_with(opts: ClusterOptions) -> Cluster {
    let c = super::cluster_with(opts);
    let mut sql = String::from(fuse_cdc_bridge::demo::FUSE_SCHEMA);
    for table in TABLES {
        sql.push_str(&format!("ALTER TABLE {table} REPLICA IDENTITY FULL;\n"));
    }
    c.psql(&sql).unwrap();
    c
}

/// The bridge process and its files.
pub struct Bridge {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
}

impl Bridge {
    /// Writes `[postgres]` for `c`, `[state]` in a temp dir, then `rest` (outbox, endpoints,
    /// rules), and starts `run`.
    pub fn start(c: &Cluster, rest: &str) -> Bridge {
        let bridge = Bridge::configure(c, None, rest);
        let mut bridge = bridge;
        bridge.restart();
        bridge
    }

    /// Writes the config without starting; `state` defaults to `<temp dir>/state`.
    pub fn configure(c: &Cluster, state: Option<&Path>, rest: &str) -> Bridge {
        Bridge::configure_url(&c.superuser_url(), state, rest)
    }

    /// [`Bridge::configure`] with another `[postgres].url` (a proxy, say).
    pub fn configure_url(url: &str, state: Option<&Path>, rest: &str) -> Bridge {
        let dir = tempfile::tempdir().unwrap();
        let state = state
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.path().join("state"));
        // Port 0: tests run bridges in parallel, and the default 9187 would clash.
        let config = format!(
            "[postgres]\nurl = \"{url}\"\n[state]\ndir = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n{rest}\n",
            state.display()
        );
        std::fs::write(dir.path().join("bridge.toml"), config).unwrap();
        Bridge { dir, child: None }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("bridge.toml")
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("bridge.log"))
            .unwrap();
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(self.config())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bridge.log")).unwrap_or_default()
    }

    /// Peak resident memory so far (VmHWM), in KiB.
    pub fn vm_hwm_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// SIGTERM, and the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        child.wait().unwrap()
    }

    pub fn kill9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// The exit status once the process ends by itself, or None after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(self.config())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for `check`, polling; panics with `what()` after `timeout`.
pub fn wait_until(timeout: Duration, what: impl Fn() -> String, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < timeout, "timed out: {}", what());
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn slot_active(c: &Cluster) -> bool {
    c.psql(
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'fuse_cdc_bridge' AND active",
    )
    .map(|s| s.trim() == "1")
    .unwrap_or(false)
}

pub fn wait_streaming(c: &Cluster, bridge: &Bridge) {
    wait_until(
        Duration::from_secs(30),
        || format!("streaming\n{}", bridge.log()),
        || slot_active(c),
    );
}

pub fn confirmed_flush_lsn(c: &Cluster) -> Lsn {
    c.psql(
        "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'fuse_cdc_bridge'",
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap()
}

pub fn current_wal_lsn(c: &Cluster) -> Lsn {
    c.psql("SELECT pg_current_wal_lsn()")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// What an event looks like to a receiver, without its id: its type and body.
pub type Content = (String, Vec<u8>);

/// The outcome of a scenario at one receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Distinct events (webhook-ids) received.
    pub events: usize,
    /// Requests received (every attempt that reached the receiver's handler).
    pub requests: usize,
    /// Requests beyond the first per id.
    pub duplicates: usize,
    /// Expected events that never arrived.
    pub lost: usize,
}

/// Checks `got` against the events `expected` (content → how many distinct events have it):
/// every id carries one content only (a duplicate is the same event), and each content arrived
/// under exactly as many distinct ids as expected: none lost, none invented.
pub fn tally(got: &[Received], expected: &BTreeMap<Content, usize>) -> Tally {
    let mut by_id: BTreeMap<&str, &Received> = BTreeMap::new();
    for r in got {
        let id = r.header("webhook-id").expect("a webhook-id header");
        if let Some(first) = by_id.insert(id, r) {
            assert_eq!(
                (first.header("webhook-event-type"), &first.body),
                (r.header("webhook-event-type"), &r.body),
                "webhook-id {id} sent with two different contents"
            );
        }
    }
    let mut ids_per_content: BTreeMap<Content, usize> = BTreeMap::new();
    for r in by_id.values() {
        let content = (
            r.header("webhook-event-type")
                .unwrap_or_default()
                .to_string(),
            r.body.clone(),
        );
        *ids_per_content.entry(content).or_default() += 1;
    }
    let expected_total: usize = expected.values().sum();
    let mut lost = 0;
    for (content, n) in expected {
        let seen = ids_per_content.get(content).copied().unwrap_or(0);
        lost += n.saturating_sub(seen);
    }
    let tally = Tally {
        events: by_id.len(),
        requests: got.len(),
        duplicates: got.len() - by_id.len(),
        lost,
    };
    if ids_per_content != *expected {
        let unexpected: Vec<_> = ids_per_content
            .iter()
            .filter(|(c, n)| expected.get(*c) != Some(n))
            .take(10)
            .map(|((t, b), n)| format!("{t} {} x{n}", String::from_utf8_lossy(b)))
            .collect();
        let missing: Vec<_> = expected
            .iter()
            .filter(|(c, n)| ids_per_content.get(*c) != Some(n))
            .take(10)
            .map(|((t, b), n)| format!("{t} {} x{n}", String::from_utf8_lossy(b)))
            .collect();
        panic!(
            "{tally:?} of {expected_total} expected; got (first differing) {unexpected:?}; expected {missing:?}"
        );
    }
    tally
}

/// `content` once for each of `bodies`, of event type `event_type`.
pub fn expect(expected: &mut BTreeMap<Content, usize>, event_type: &str, body: impl Into<Vec<u8>>) {
    *expected
        .entry((event_type.to_string(), body.into()))
        .or_default() += 1;
}

/// The machine, for the figures each scenario prints.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    format!("{cpus} cpus, {model}")
}
