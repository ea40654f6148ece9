//! What sled itself costs the bridge's store, without PostgreSQL or HTTP: 200 000 outbox-sized
//! entries written with `apply_batch` (plus a checkpoint key per batch, and a flush every 5 ms
//! like capture's flusher), varying entries per batch, sled's cache and packing several events
//! into one value. Prints entries/s, VmHWM and the directory's size per configuration.
//!
//! `cargo bench --bench sled_batch` runs the matrix, each configuration in a fresh process (so
//! VmHWM is its own); `-- PER_BATCH CACHE_MB PACK` runs one (CACHE_MB 0 = sled's default).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Entries written per configuration; `FUSE_SLED_TOTAL` changes it (memory as it grows).
const TOTAL: usize = 200_000;
/// (entries per batch, cache MB, events per value): one transaction per batch as the store
/// does today (1-row and 100-row), grouped transactions, a smaller cache, one huge
/// transaction, and one value per transaction.
const MATRIX: [(usize, u64, usize); 9] = [
    (1, 0, 1),
    (100, 0, 1),
    (1000, 0, 1),
    (1, 16, 1),
    (100, 16, 1),
    (200_000, 0, 1),
    (1000, 16, 1),
    (10_000, 16, 1),
    (100, 0, 100),
];

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .filter_map(|a| a.parse().ok())
        .collect();
    if let [per_batch, cache_mb, pack] = args[..] {
        one(per_batch, cache_mb as u64, pack);
        return;
    }
    let me = std::env::current_exe().expect("own path");
    for (per_batch, cache_mb, pack) in MATRIX {
        let status = Command::new(&me)
            .args([
                per_batch.to_string(),
                cache_mb.to_string(),
                pack.to_string(),
            ])
            .status()
            .expect("run a configuration");
        if !status.success() {
            eprintln!("configuration {per_batch} {cache_mb} {pack} failed: {status}");
            std::process::exit(1);
        }
    }
}

fn one(per_batch: usize, cache_mb: u64, pack: usize) {
    let total: usize = std::env::var("FUSE_SLED_TOTAL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(TOTAL);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = sled::Config::new()
        .path(dir.path().join("sled"))
        .mode(sled::Mode::HighThroughput);
    if cache_mb > 0 {
        config = config.cache_capacity(cache_mb << 20);
    }
    let db = config.open().expect("open sled");
    let stop = Arc::new(AtomicBool::new(false));
    let flusher = {
        let (db, stop) = (db.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
                db.flush().expect("flush");
            }
        })
    };
    // Shaped like the bridge's outbox value: the delivery state's JSON line, then the event.
    let value = concat!(
        r#"{"key":"user_id=123","attempts":0,"first_attempt_at":null,"next_attempt_at":null,"last_status":null,"last_error":null}"#,
        "\n",
        r#"{"event_type":"learning_plan.completed","params":[{"name":"user_id","value":"123","integer":true,"column":"user_id"},{"name":"learning_plan_id","value":"45","integer":true,"column":"learning_plan_id"}],"commit_time":786543210123456,"table":"public.learning_plan_enrollments"}"#
    );
    // FUSE_SLED_VALUE_BYTES shrinks (or pads) the value: what a more compact encoding buys.
    let value: String = match std::env::var("FUSE_SLED_VALUE_BYTES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(n) => value.chars().cycle().take(n).collect(),
        None => value.to_string(),
    };
    let checkpoint = br#"{"binding":{"system_id":"7312345678901234567","slot_name":"fuse_cdc_bridge","bound_at":"0/1A2B3C4"},"lsn":"0/5A6B7C8"}"#;
    let start = Instant::now();
    let mut written = 0;
    let mut batches = 0;
    while written < total {
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        while in_batch < per_batch && written < total {
            let n = pack.min(total - written);
            let mut key = b"o\0bench\0".to_vec();
            key.extend_from_slice(&(written as u64).to_be_bytes());
            let mut v = Vec::with_capacity(n * (value.len() + 4));
            for _ in 0..n {
                v.extend_from_slice(&(value.len() as u32).to_be_bytes());
                v.extend_from_slice(value.as_bytes());
            }
            batch.insert(key, v);
            written += n;
            in_batch += n;
        }
        batch.insert(&b"checkpoint"[..], &checkpoint[..]);
        db.apply_batch(batch).expect("apply_batch");
        batches += 1;
    }
    db.flush().expect("flush");
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    let _ = flusher.join();
    println!(
        "{}",
        serde_json::json!({
            "figure": format!("sled: {per_batch} entries/batch, cache {}, {pack} events/value",
                if cache_mb == 0 { "default".to_string() } else { format!("{cache_mb} MB") }),
            "entries": total,
            "entries_per_s": (total as f64 / secs).round(),
            "us_per_batch": (secs * 1e6 / batches as f64).round(),
            "vm_hwm_mb": vm_hwm_mb(),
            "dir_mb": dir_bytes(dir.path()) >> 20,
        })
    );
}

fn vm_hwm_mb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| Some((e.metadata().ok()?, e.path())))
        .map(|(m, p)| m.blocks() * 512 + if m.is_dir() { dir_bytes(&p) } else { 0 })
        .sum()
}
