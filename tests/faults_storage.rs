//! Storage faults: the state directory full, read-only, locked by another instance; two
//! instances on one slot; the state directory's permissions.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fuse_cdc_bridge::ephemeral::Cluster;

use fuse_cdc_bridge::receiver::{Received, Receiver, Reply, Responder};

use support::bridge::*;

/// A small tmpfs mounted for one test (root only), unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str, options: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}{options}"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount -t tmpfs failed (these tests need root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .args(["-l"])
            .arg(self.dir.path())
            .status();
    }
}

/// Writes zeros into `path` until the file system says it is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let mut written = 0u64;
    for size in [1 << 20, 4096, 1] {
        let block = vec![0u8; size];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
    }
    let _ = f.sync_all();
    written
}

fn always(status: u16) -> Responder {
    Arc::new(move |_| Reply::status(status))
}

fn endpoint(url: &str) -> String {
    format!(
        "[[endpoints]]\nname = \"hr\"\nurl = \"{url}\"\nevents = [\"user.created\"]\nbackoff = {{ initial = \"100ms\", max = \"500ms\" }}\n"
    )
}

/// Inserts users `first..=last` in transactions of ten, and expects their `user.created`.
fn insert_users(c: &Cluster, first: usize, last: usize, expected: &mut BTreeMap<Content, usize>) {
    let mut from = first;
    while from <= last {
        let to = (from + 9).min(last);
        c.psql(&format!(
            "INSERT INTO users (id, email) SELECT g, 'u' || g || '@example.com' FROM generate_series({from}, {to}) g"
        ))
        .unwrap();
        from = to + 1;
    }
    for id in first..=last {
        expect(expected, "user.created", format!("user_id={id}"));
    }
}

/// Waits until every expected event arrived (distinct ids), then tallies.
fn delivered(
    rt: &tokio::runtime::Runtime,
    hooks: &Receiver,
    expected: &BTreeMap<Content, usize>,
    bridge: &Bridge,
) -> Tally {
    let total: usize = expected.values().sum();
    let distinct = |got: &[Received]| {
        got.iter()
            .filter_map(|r| r.header("webhook-id"))
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    let start = Instant::now();
    while distinct(&hooks.received()) < total {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} of {total} delivered\n{}",
            distinct(&hooks.received()),
            bridge.log()
        );
        rt.block_on(hooks.wait_for(hooks.count() + 1, Duration::from_millis(200)));
    }
    std::thread::sleep(Duration::from_millis(300));
    tally(&hooks.received(), expected)
}

#[test]
fn a_full_state_disk_stops_intake_without_confirming_and_recovers_once_writable() {
    let c = fuse_cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hooks = rt.block_on(Receiver::start(always(200))).unwrap();
    let fs = Tmpfs::mount("32m", "");
    let state: PathBuf = fs.path().join("state");
    let mut bridge = Bridge::configure(&c, Some(&state), &endpoint(&hooks.url("/")));
    bridge.restart();
    wait_streaming(&c, &bridge);
    let mut expected = BTreeMap::new();
    insert_users(&c, 1, 100, &mut expected);
    delivered(&rt, &hooks, &expected, &bridge);
    // Everything so far is durable and confirmed: the slot's position to compare with.
    let baseline = current_wal_lsn(&c);
    wait_until(
        Duration::from_secs(20),
        || "the baseline confirmed".into(),
        || confirmed_flush_lsn(&c) >= baseline,
    );

    let filled = fill(&fs.path().join("filler"));
    let before = current_wal_lsn(&c);
    insert_users(&c, 101, 300, &mut expected);
    let target = current_wal_lsn(&c);
    // The bridge stops by itself, saying why, without confirming the new transactions.
    let status = bridge.wait_exit(Duration::from_secs(30));
    let log = bridge.log();
    assert!(
        matches!(status, Some(s) if !s.success()),
        "{status:?}\n{log}"
    );
    assert!(log.contains("No space left on device"), "{log}");
    assert!(
        log.contains("is its disk full or read-only? Intake stopped"),
        "{log}"
    );
    assert!(
        log.contains("the state directory failed: intake stopped")
            && log.contains(&state.display().to_string()),
        "{log}"
    );
    let confirmed = confirmed_flush_lsn(&c);
    assert!(
        confirmed <= before,
        "confirmed {confirmed} past {before} while full"
    );
    eprintln!("disk full: {}", log.lines().last().unwrap_or_default());
    // A service manager restarting it while the disk is still full changes nothing.
    bridge.restart();
    let status = bridge.wait_exit(Duration::from_secs(30));
    assert!(
        matches!(status, Some(s) if !s.success()),
        "{status:?}\n{}",
        bridge.log()
    );
    assert!(confirmed_flush_lsn(&c) <= before);
    // Sent from sled's memory before the failed write stopped everything.
    let sent_while_full = hooks.count().saturating_sub(100);

    // Room again: the next start delivers everything and the slot moves on.
    std::fs::remove_file(fs.path().join("filler")).unwrap();
    let freed = Instant::now();
    bridge.restart();
    let t = delivered(&rt, &hooks, &expected, &bridge);
    let recovery = freed.elapsed();
    wait_until(
        Duration::from_secs(20),
        || "the slot to move on".into(),
        || confirmed_flush_lsn(&c) >= target,
    );
    assert_eq!(t.lost, 0);
    assert_eq!(t.events, 300);
    eprintln!(
        "FIGURES disk-full: filler {filled} B on a 32 MiB tmpfs; events {}, requests {}, duplicates {}, lost {}, requests while full {sent_while_full}, recovery (room -> all delivered) {:.1} s",
        t.events, t.requests, t.duplicates, t.lost, recovery.as_secs_f64()
    );
    assert!(bridge.stop().success(), "{}", bridge.log());
}

#[test]
fn a_read_only_state_dir_is_refused_at_start_naming_it_and_works_once_writable() {
    let c = fuse_cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hooks = rt.block_on(Receiver::start(always(200))).unwrap();
    let fs = Tmpfs::mount("32m", "");
    let state: PathBuf = fs.path().join("state");
    let mut bridge = Bridge::configure(&c, Some(&state), &endpoint(&hooks.url("/")));
    bridge.restart();
    wait_streaming(&c, &bridge);
    let mut expected = BTreeMap::new();
    insert_users(&c, 1, 20, &mut expected);
    delivered(&rt, &hooks, &expected, &bridge);
    assert!(bridge.stop().success());

    // Nothing holds a file open now, so the mount can turn read-only (while sled has its files
    // open for writing the kernel refuses: "mount point is busy").
    let remount = |mode: &str| {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(fs.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount {mode}");
    };
    remount("ro");
    insert_users(&c, 21, 40, &mut expected);
    let target = current_wal_lsn(&c);
    let confirmed = confirmed_flush_lsn(&c);
    bridge.restart();
    let status = bridge.wait_exit(Duration::from_secs(30));
    let log = bridge.log();
    assert!(
        matches!(status, Some(s) if !s.success()),
        "{status:?}\n{log}"
    );
    assert!(
        log.contains(&state.display().to_string()),
        "the error names the directory: {log}"
    );
    assert!(log.contains("Read-only file system"), "{log}");
    eprintln!(
        "read-only start: {}",
        log.lines().last().unwrap_or_default()
    );
    assert_eq!(
        confirmed_flush_lsn(&c),
        confirmed,
        "nothing confirmed while read-only"
    );

    remount("rw");
    bridge.restart();
    let t = delivered(&rt, &hooks, &expected, &bridge);
    assert_eq!((t.events, t.lost), (40, 0));
    wait_until(
        Duration::from_secs(20),
        || "the slot to move on".into(),
        || confirmed_flush_lsn(&c) >= target,
    );
    eprintln!(
        "FIGURES read-only state dir: events {}, requests {}, duplicates {}, lost {}",
        t.events, t.requests, t.duplicates, t.lost
    );
    assert!(bridge.stop().success());
}

#[test]
fn a_second_run_on_a_locked_state_dir_exits_naming_the_fix() {
    let c = fuse_cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hooks = rt.block_on(Receiver::start(always(200))).unwrap();
    let mut first = Bridge::start(&c, &endpoint(&hooks.url("/")));
    wait_streaming(&c, &first);
    let out = std::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(first.config())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let state = first.dir.path().join("state");
    assert!(
        stderr.contains(&format!(
            "the state directory {} is in use by another process (sled admits one): stop the \
             other fuse-cdc-bridge using it, or give this one its own [state].dir",
            state.display()
        )),
        "{stderr}"
    );
    // The first one is unharmed.
    let mut expected = BTreeMap::new();
    insert_users(&c, 1, 10, &mut expected);
    let t = delivered(&rt, &hooks, &expected, &first);
    assert_eq!((t.events, t.lost), (10, 0));
    assert!(first.stop().success());
}

#[test]
fn two_instances_on_one_slot_the_second_waits_saying_why_and_takes_over() {
    let c = fuse_cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hooks = rt.block_on(Receiver::start(always(200))).unwrap();
    let mut a = Bridge::start(&c, &endpoint(&hooks.url("/")));
    wait_streaming(&c, &a);
    let mut b = Bridge::start(&c, &endpoint(&hooks.url("/")));
    let mut expected = BTreeMap::new();
    wait_until(
        Duration::from_secs(30),
        || b.log(),
        || {
            b.log()
                .contains("replication slot in use by another consumer, waiting")
        },
    );
    let log = b.log();
    assert!(
        log.contains("is active for PID"),
        "the server's reason: {log}"
    );
    insert_users(&c, 1, 50, &mut expected);
    delivered(&rt, &hooks, &expected, &a);
    assert!(
        b.wait_exit(Duration::from_millis(10)).is_none(),
        "b keeps waiting"
    );

    assert!(a.stop().success());
    let stopped = Instant::now();
    // Written while no one reads the slot: kept for whoever takes it.
    insert_users(&c, 51, 100, &mut expected);
    wait_until(Duration::from_secs(60), || b.log(), || slot_active(&c));
    let takeover = stopped.elapsed();
    insert_users(&c, 101, 150, &mut expected);
    let t = delivered(&rt, &hooks, &expected, &b);
    assert_eq!((t.events, t.lost), (150, 0));
    let log = b.log();
    assert!(
        log.contains("the slot moved on while this state directory waited for it"),
        "{log}"
    );
    assert!(!log.contains("does not belong to this slot"), "{log}");
    eprintln!(
        "FIGURES same slot, two instances: events {}, requests {}, duplicates {}, lost {}, takeover after the first stopped {:.1} s",
        t.events, t.requests, t.duplicates, t.lost, takeover.as_secs_f64()
    );
    assert!(b.stop().success());
}
