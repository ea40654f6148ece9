//! `wrk`: the reference HTTP load generator, POSTing the bridge's own form bodies and headers.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use fuse_cdc_bridge::config::PayloadFormat;
use fuse_cdc_bridge::delivery::payload;
use fuse_cdc_bridge::event::Event;
use fuse_cdc_bridge::store::Store;

use crate::bridge::ENDPOINT;
use crate::child::Guard;
use crate::sys::{self, R};

pub const INSTALL_HINT: &str = "wrk (the HTTP load generator) is not on PATH; \
    install it with `apt-get update && apt-get install -y wrk`, or run only other scenarios \
    (e.g. `cargo bench --bench e2e -- capture latency bigtxn`)";

pub fn find() -> Option<PathBuf> {
    sys::which("wrk")
}

/// One request as the bridge sends it.
pub struct Sample {
    pub id: String,
    pub event_type: &'static str,
    pub body: String,
}

/// Up to `n` requests built from the outbox of a (stopped) bridge's state directory.
pub fn samples(state: &std::path::Path, n: usize) -> R<Vec<Sample>> {
    let store = Store::open(state)?;
    let mut out = Vec::new();
    for entry in store.pending(ENDPOINT, None).take(n) {
        let entry = entry?;
        let event = Event::from_bytes(&entry.payload)?;
        let (body, _) = payload::body(&event, PayloadFormat::Form)?;
        out.push(Sample {
            id: entry.id.to_string(),
            event_type: event.event_type.as_str(),
            body: String::from_utf8(body)?,
        });
    }
    if out.is_empty() {
        return Err("the outbox is empty: no bodies for wrk".into());
    }
    Ok(out)
}

/// Requests are formatted once in `init`: wrk then only writes prepared bytes, its fastest mode.
fn script(samples: &[Sample]) -> String {
    let mut lua = String::from("local samples = {\n");
    let now = sys_unix_secs();
    for s in samples {
        let _ = writeln!(lua, "  {{ {:?}, {:?}, {:?} }},", s.id, s.event_type, s.body);
    }
    let _ = write!(
        lua,
        r#"}}
local requests = {{}}
local i = 0
function init(args)
  for k, s in ipairs(samples) do
    requests[k] = wrk.format("POST", nil, {{
      ["Content-Type"] = "application/x-www-form-urlencoded",
      ["User-Agent"] = "fuse-cdc-bridge/0.1.0",
      ["webhook-id"] = s[1],
      ["webhook-timestamp"] = "{now}",
      ["webhook-event-type"] = s[2],
    }}, s[3])
  end
end
function request()
  i = i % #requests + 1
  return requests[i]
end
"#
    );
    lua
}

fn sys_unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs wrk for `secs` with `connections` on two threads (the machine's cores); returns its
/// requests per second.
pub fn run(url: &str, samples: &[Sample], connections: usize, secs: u64) -> R<f64> {
    let wrk = find().ok_or(INSTALL_HINT)?;
    let dir = tempfile::tempdir()?;
    let lua = dir.path().join("post.lua");
    std::fs::write(&lua, script(samples))?;
    let out_path = dir.path().join("wrk.out");
    let mut cmd = Command::new(wrk);
    cmd.args(["-t", "2", "-c", &connections.to_string()])
        .arg(format!("-d{secs}s"))
        .arg("-s")
        .arg(&lua)
        .arg(url)
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(Stdio::null());
    let mut child = Guard::spawn(cmd, "wrk")?;
    let status = child.wait(Duration::from_secs(secs + 30), Duration::from_millis(50))?;
    let out = std::fs::read_to_string(&out_path)?;
    if !status.success() {
        return Err(format!("wrk failed ({status}):\n{out}").into());
    }
    if out.contains("Non-2xx") || out.contains("Socket errors") {
        return Err(format!("wrk saw errors:\n{out}").into());
    }
    let line = out
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .ok_or_else(|| format!("no Requests/sec in wrk's output:\n{out}"))?;
    Ok(line.trim_start_matches("Requests/sec:").trim().parse()?)
}
