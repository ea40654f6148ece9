//! What to run and how big: scenario names on the command line, sizes in `FUSE_BENCH_*`.

use std::path::PathBuf;

/// A group of figures that share their setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Backlog drain: the bridge's capture+detect+store vs `pg_recvlogical`.
    Capture,
    /// Backlog delivery: the bridge vs `wrk`, plus the bridge's RSS, CPU and state bytes.
    Delivery,
    /// Commit-to-2xx latency at steady rates.
    Latency,
    /// One huge transaction: does the bridge's memory stay bounded?
    BigTxn,
}

impl Scenario {
    const ALL: [Scenario; 4] = [
        Scenario::Capture,
        Scenario::Delivery,
        Scenario::Latency,
        Scenario::BigTxn,
    ];

    fn parse(s: &str) -> Option<Scenario> {
        match s {
            "capture" => Some(Scenario::Capture),
            "delivery" | "resources" => Some(Scenario::Delivery),
            "latency" => Some(Scenario::Latency),
            "bigtxn" => Some(Scenario::BigTxn),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub scenarios: Vec<Scenario>,
    /// Qualifying changes in each backlog.
    pub events: u64,
    /// Repetitions per figure; the table shows medians.
    pub runs: usize,
    /// Rows in the one huge transaction.
    pub big_txn: u64,
    /// Events per second for the latency figures.
    pub rates: Vec<u64>,
    pub latency_secs: u64,
    pub wrk_secs: u64,
    /// Requests in flight, for the bridge and for wrk alike.
    pub concurrency: usize,
    /// `bigtxn` stops the bridge when its RSS passes this (the machine is shared).
    pub rss_limit_mb: u64,
    /// When set, `perf record` attaches to the bridge binary and writes here.
    pub perf_dir: Option<PathBuf>,
}

pub const USAGE: &str = "\
usage: cargo bench --bench e2e [-- SCENARIO...]
scenarios: capture delivery latency bigtxn (default: all; `resources` = delivery)
environment:
  FUSE_BENCH_EVENTS=200000      changes per backlog
  FUSE_BENCH_RUNS=3             runs per figure (medians are reported)
  FUSE_BENCH_BIG_TXN=1000000    rows in the huge transaction of `bigtxn`
  FUSE_BENCH_RATES=1000,5000    events/s for `latency`
  FUSE_BENCH_LATENCY_SECS=10    seconds of paced load per latency run
  FUSE_BENCH_WRK_SECS=5         seconds of wrk per delivery run
  FUSE_BENCH_CONCURRENCY=32     requests in flight (bridge endpoint and wrk)
  FUSE_BENCH_RSS_LIMIT_MB=4096  `bigtxn` stops a bridge whose RSS passes this
  FUSE_BENCH_PERF=DIR           perf record the first run of each capture/delivery phase into DIR";

impl Settings {
    /// `args` without the program name. Cargo passes `--bench`; flags are ignored.
    pub fn parse(args: &[String]) -> Result<Settings, String> {
        let mut scenarios = Vec::new();
        for arg in args.iter().filter(|a| !a.starts_with('-')) {
            if arg == "all" {
                scenarios.extend(Scenario::ALL);
                continue;
            }
            let s = Scenario::parse(arg).ok_or_else(|| format!("unknown scenario {arg:?}"))?;
            if !scenarios.contains(&s) {
                scenarios.push(s);
            }
        }
        if scenarios.is_empty() {
            scenarios.extend(Scenario::ALL);
        }
        let rates = env_text("FUSE_BENCH_RATES", "1000,5000")
            .split(',')
            .map(|r| r.trim().parse::<u64>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("FUSE_BENCH_RATES: {e}"))?;
        let settings = Settings {
            scenarios,
            events: env_num("FUSE_BENCH_EVENTS", 200_000)?,
            runs: env_num("FUSE_BENCH_RUNS", 3)? as usize,
            big_txn: env_num("FUSE_BENCH_BIG_TXN", 1_000_000)?,
            rates,
            latency_secs: env_num("FUSE_BENCH_LATENCY_SECS", 10)?,
            wrk_secs: env_num("FUSE_BENCH_WRK_SECS", 5)?,
            concurrency: env_num("FUSE_BENCH_CONCURRENCY", 32)? as usize,
            rss_limit_mb: env_num("FUSE_BENCH_RSS_LIMIT_MB", 4096)?,
            perf_dir: std::env::var_os("FUSE_BENCH_PERF").map(PathBuf::from),
        };
        if settings.events < 1000 || settings.runs == 0 || settings.rates.contains(&0) {
            return Err("FUSE_BENCH_EVENTS must be ≥ 1000, runs and rates ≥ 1".into());
        }
        Ok(settings)
    }

    pub fn wants(&self, s: Scenario) -> bool {
        self.scenarios.contains(&s)
    }
}

fn env_text(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn env_num(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Ok(v) => v
            .replace('_', "")
            .parse()
            .map_err(|e| format!("{name}={v:?}: {e}")),
        Err(_) => Ok(default),
    }
}
