//! The `status` command's readable form.

use std::fmt::Write;

use super::{Source, Status};

pub fn render_table(s: &Status) -> String {
    let mut out = String::new();
    let running = match (s.source, s.replication_connected) {
        (Source::Bridge, Some(true)) => "running, replication streaming",
        (Source::Bridge, _) => "running, replication NOT connected",
        (Source::State, _) => "not running (state read directly)",
    };
    let _ = writeln!(out, "bridge       {running}");
    let _ = writeln!(out, "state        {}", s.state_dir);
    let _ = writeln!(
        out,
        "checkpoint   {}",
        s.checkpoint_lsn.as_deref().unwrap_or("none yet")
    );
    match (&s.database.error, &s.database.slot) {
        (Some(error), _) => {
            let _ = writeln!(out, "database     UNREACHABLE: {error}");
        }
        (None, None) => {
            let _ = writeln!(out, "slot         does not exist");
        }
        (None, Some(slot)) => {
            let _ = writeln!(
                out,
                "slot         {} confirmed {} (server at {}, {} behind), retains {}, wal_status {}, {}",
                slot.name,
                slot.confirmed_flush_lsn.as_deref().unwrap_or("-"),
                s.database.current_wal_lsn.as_deref().unwrap_or("-"),
                bytes(slot.lag_bytes),
                bytes(slot.retained_bytes),
                slot.wal_status.as_deref().unwrap_or("-"),
                match slot.active_pid {
                    Some(pid) => format!("active pid {pid}"),
                    None => "inactive".to_string(),
                }
            );
        }
    }
    let _ = writeln!(
        out,
        "\n{:<20} {:>9} {:>12} {:>6}  LAST ERROR",
        "ENDPOINT", "PENDING", "OLDEST", "DEAD"
    );
    for e in &s.endpoints {
        let name = if e.configured {
            e.name.clone()
        } else {
            format!("{} (unconfigured)", e.name)
        };
        let oldest = e
            .oldest_pending_age_seconds
            .map(|a| format!("{a:.1}s"))
            .unwrap_or_else(|| "-".into());
        let error = e
            .last_error
            .as_ref()
            .map(|l| format!("{}: {}", l.event_id, l.error))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{name:<20} {:>9} {oldest:>12} {:>6}  {error}",
            e.pending, e.dead_letters
        );
    }
    out
}

fn bytes(n: Option<i64>) -> String {
    let Some(n) = n else {
        return "-".into();
    };
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
