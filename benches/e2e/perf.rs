//! Optional `perf record` of the bridge binary during one phase (FUSE_BENCH_PERF=DIR).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::child::Guard;
use crate::sys::R;

/// A recording in progress; stopped (SIGINT, so perf writes its file) when finished or dropped.
pub struct Recording {
    child: Option<Guard>,
    out: PathBuf,
}

impl Recording {
    /// Attaches to `pid` when `dir` is set; otherwise does nothing.
    pub fn attach(dir: Option<&Path>, pid: u32, phase: &str) -> R<Recording> {
        let out = dir.map_or_else(PathBuf::new, |d| d.join(format!("{phase}.perf.data")));
        let Some(dir) = dir else {
            return Ok(Recording { child: None, out });
        };
        std::fs::create_dir_all(dir)?;
        let mut cmd = Command::new("perf");
        // DWARF call graphs: the release build has no frame pointers, only line tables.
        cmd.args(["record", "-F", "499", "--call-graph", "dwarf,16384", "-o"])
            .arg(&out)
            .args(["-p", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = Guard::spawn(cmd, "perf record")?;
        // perf needs a moment to attach before the interesting part starts.
        std::thread::sleep(Duration::from_millis(300));
        Ok(Recording {
            child: Some(child),
            out,
        })
    }

    pub fn finish(mut self) -> R<()> {
        if let Some(mut child) = self.child.take() {
            child.stop(Signal::SIGINT, Duration::from_secs(60))?;
            eprintln!(
                "perf: wrote {} (view: perf report -i {} --no-children --stdio)",
                self.out.display(),
                self.out.display()
            );
        }
        Ok(())
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.stop(Signal::SIGINT, Duration::from_secs(60));
        }
    }
}
