//! The real `fuse-cdc-bridge run`, as a child process, so its RSS and CPU are its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::child::Guard;
use crate::sys::{self, R};

/// Built by cargo in the bench (release) profile alongside this harness.
pub const BIN: &str = env!("CARGO_BIN_EXE_fuse-cdc-bridge");
pub const ENDPOINT: &str = "bench";

/// How the single endpoint behaves.
pub struct Endpoint<'a> {
    pub url: &'a str,
    pub format: &'a str,
    pub concurrency: usize,
    pub timeout: &'a str,
}

impl<'a> Endpoint<'a> {
    /// An endpoint on a black hole: one request hangs, nothing is delivered, so the outbox holds
    /// everything captured (delivery paused, the dispatcher alive).
    pub fn paused(url: &'a str) -> Endpoint<'a> {
        Endpoint {
            url,
            format: "form",
            concurrency: 1,
            timeout: "1h",
        }
    }
}

/// A state directory and config files that survive restarts of the bridge.
pub struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> R<Workdir> {
        Ok(Workdir {
            dir: tempfile::Builder::new().prefix("fuse-bench-").tempdir()?,
        })
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The bridge's TOML: one endpoint named [`ENDPOINT`], a bound high enough that capture
    /// never pauses, the default 5 ms group-commit window.
    pub fn config(&self, db_url: &str, endpoint: &Endpoint) -> String {
        format!(
            r#"[postgres]
url = "{db_url}"

[state]
dir = "{state}"

[outbox]
max_pending = 100000000
flush_interval = "5ms"

[[endpoints]]
name = "{ENDPOINT}"
url = "{url}"
format = "{format}"
concurrency = {concurrency}
timeout = "{timeout}"
max_attempts = 1000
backoff = {{ initial = "10ms", max = "200ms" }}
"#,
            state = self.state().display(),
            url = endpoint.url,
            format = endpoint.format,
            concurrency = endpoint.concurrency,
            timeout = endpoint.timeout,
        )
    }
}

/// A running bridge; killed when dropped.
pub struct Bridge {
    child: Guard,
    log: PathBuf,
}

impl Bridge {
    pub fn start(work: &Workdir, config: &str, name: &str) -> R<Bridge> {
        let path = work.path().join(format!("{name}.toml"));
        std::fs::write(&path, config)?;
        let log = work.path().join(format!("{name}.log"));
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        Ok(Bridge {
            child: Guard::spawn(cmd, "fuse-cdc-bridge run")?,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Fails, with the log's tail, when the bridge has exited.
    pub fn alive(&mut self) -> R<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => {
                Err(format!("the bridge exited ({status}):\n{}", self.log_tail()).into())
            }
        }
    }

    pub fn cpu_secs(&self) -> R<f64> {
        sys::cpu_secs(self.pid())
    }

    pub fn peak_rss(&self) -> R<u64> {
        sys::status_bytes(self.pid(), "VmHWM:")
    }

    /// Graceful stop (SIGTERM), as an operator would: the outbox is flushed on the way out.
    pub fn stop(mut self) -> R<()> {
        let status = self.child.stop(Signal::SIGTERM, Duration::from_secs(30))?;
        if !status.success() {
            return Err(format!("the bridge stopped with {status}:\n{}", self.log_tail()).into());
        }
        Ok(())
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}
