//! Child processes that never outlive the harness.

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::sys::{interrupted, R};

/// A child that is killed (and reaped) when dropped.
pub struct Guard {
    child: Option<Child>,
    name: String,
}

impl Guard {
    pub fn spawn(mut cmd: Command, name: &str) -> R<Guard> {
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Guard {
            child: Some(child),
            name: name.to_string(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    pub fn signal(&self, sig: Signal) {
        let _ = kill(Pid::from_raw(self.pid() as i32), sig);
    }

    /// Exited already?
    pub fn try_wait(&mut self) -> R<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => Ok(c.try_wait()?),
            None => Err(format!("{} was already reaped", self.name).into()),
        }
    }

    /// Waits for the exit, polling every `every` (the timing resolution of a drain).
    pub fn wait(&mut self, timeout: Duration, every: Duration) -> R<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            interrupted()?;
            if start.elapsed() > timeout {
                return Err(format!("{} did not exit within {timeout:?}", self.name).into());
            }
            std::thread::sleep(every);
        }
    }

    /// `sig`, then the exit; SIGKILL when it takes longer than `grace`.
    pub fn stop(&mut self, sig: Signal, grace: Duration) -> R<ExitStatus> {
        self.signal(sig);
        match self.wait(grace, Duration::from_millis(10)) {
            Ok(status) => Ok(status),
            Err(e) => {
                self.kill();
                Err(e)
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill();
    }
}
