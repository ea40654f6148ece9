//! End-to-end benchmark of fuse-cdc-bridge against the limits of this machine: a program that
//! prints figures (one JSON line each, then a table), not a timed test. See BENCHMARKS.md.
//!
//! `cargo bench --bench e2e [-- capture delivery latency bigtxn]`, sizes in `FUSE_BENCH_*`.

/// The binary's allocator and its settings (src/main.rs), so in-process capture measures what
/// `run` does.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: &[u8] =
    b"background_thread:true,narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

mod bigtxn;
mod bridge;
mod capture;
mod child;
mod db;
mod delivery;
mod latency;
mod perf;
mod recvlogical;
mod report;
mod settings;
mod sink;
mod sys;
mod wrk;

use std::process::ExitCode;

use settings::{Scenario, Settings, USAGE};
use sys::R;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let settings = match Settings::parse(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("e2e: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = prerequisites(&settings) {
        eprintln!("e2e: missing prerequisite: {e}");
        return ExitCode::from(2);
    }
    sys::catch_interrupts();
    // Everything that owns a process or a directory lives inside `bench`, so it is all
    // stopped and removed before we exit, also on error or Ctrl-C.
    match bench(&settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("e2e: {e}");
            ExitCode::FAILURE
        }
    }
}

fn prerequisites(s: &Settings) -> Result<(), String> {
    let bin = fuse_cdc_bridge::ephemeral::find_bin_dir().map_err(|e| e.to_string())?;
    if s.wants(Scenario::Capture) && !bin.join("pg_recvlogical").is_file() {
        return Err(format!(
            "pg_recvlogical is not in {} (it comes with Debian's postgresql-client package)",
            bin.display()
        ));
    }
    if s.wants(Scenario::Delivery) && wrk::find().is_none() {
        return Err(wrk::INSTALL_HINT.to_string());
    }
    if s.perf_dir.is_some() && sys::which("perf").is_none() {
        return Err("FUSE_BENCH_PERF is set but perf is not on PATH \
                    (`apt-get install -y linux-perf`)"
            .to_string());
    }
    if !std::path::Path::new(bridge::BIN).is_file() {
        return Err(format!("the bridge binary {} is missing", bridge::BIN));
    }
    Ok(())
}

fn bench(s: &Settings) -> R<()> {
    let db = db::Db::start()?;
    println!("# fuse-cdc-bridge e2e benchmark");
    println!("# machine: {}", sys::machine());
    println!(
        "# postgres {} (fsync=off), bridge {}",
        db.version(),
        bridge::BIN
    );
    println!(
        "# events={} runs={} concurrency={} rates={:?} big_txn={}",
        s.events, s.runs, s.concurrency, s.rates, s.big_txn
    );
    let mut report = report::Report::default();
    let mut result = Ok(());
    for scenario in &s.scenarios {
        eprintln!("== {scenario:?} (load {})", sys::loadavg());
        result = match scenario {
            Scenario::Capture => capture::run(&db, s, &mut report),
            Scenario::Delivery => delivery::run(&db, s, &mut report),
            Scenario::Latency => latency::run(&db, s, &mut report),
            Scenario::BigTxn => bigtxn::run(&db, s, &mut report),
        };
        if result.is_err() {
            break;
        }
    }
    // What was measured before a failure is still worth the table.
    println!("\n{}", report.table());
    println!("# load at the end: {}", sys::loadavg());
    result
}
