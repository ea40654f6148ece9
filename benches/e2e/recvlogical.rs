//! `pg_recvlogical`: the reference consumer, draining a slot to /dev/null.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fuse_cdc_bridge::Lsn;

use crate::child::Guard;
use crate::db::{Db, PUBLICATION};
use crate::sys::R;

/// Drains `slot` up to `endpos`; returns how long from start to exit.
pub fn drain(db: &Db, slot: &str, endpos: Lsn) -> R<Duration> {
    let c = &db.cluster;
    let log = tempfile::NamedTempFile::new()?;
    let mut cmd = Command::new(c.bin_dir().join("pg_recvlogical"));
    cmd.args(["-h", c.host(), "-p", &c.port().to_string()])
        .args(["-U", c.superuser(), "-d", "postgres"])
        .args(["--slot", slot, "--start", "--no-loop"])
        .args(["-o", "proto_version=1"])
        .args(["-o", &format!("publication_names={PUBLICATION}")])
        .arg(format!("--endpos={endpos}"))
        .args(["-f", "/dev/null"])
        .stdout(Stdio::null())
        .stderr(Stdio::from(log.reopen()?));
    // The caller's PGHOST etc. must not steer it to another server.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PG") {
            cmd.env_remove(k);
        }
    }
    let started = Instant::now();
    let mut child = Guard::spawn(cmd, "pg_recvlogical")?;
    let status = child.wait(Duration::from_secs(900), Duration::from_millis(1))?;
    let elapsed = started.elapsed();
    if !status.success() {
        let stderr = std::fs::read_to_string(log.path()).unwrap_or_default();
        return Err(format!("pg_recvlogical failed ({status}): {}", stderr.trim()).into());
    }
    Ok(elapsed)
}
