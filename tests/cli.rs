//! The binary as an operator runs it: `tail` on a real cluster, and `demo`.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value as Json;

const BIN: &str = env!("CARGO_BIN_EXE_fuse-cdc-bridge");

fn write_config(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let path = dir.join("bridge.toml");
    let text = format!(
        r#"
[postgres]
url = "{url}"

[state]
dir = "{state}"

[[endpoints]]
name = "hr"
url = "http://127.0.0.1:9/hooks"
"#,
        state = dir.join("state").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn sigterm(child: &std::process::Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}

#[test]
fn tail_prints_json_lines_on_stdout_and_exits_cleanly_on_sigterm() {
    let c = support::cluster();
    c.psql(
        "CREATE TABLE users (id bigint PRIMARY KEY, email text, first_name text);
         CREATE PUBLICATION fuse_cdc_bridge FOR TABLE users;",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &c.superuser_url());
    let mut child = Command::new(BIN)
        .args(["tail", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Wait for tail's temporary slot, then change data.
    let start = std::time::Instant::now();
    while c
        .psql("SELECT count(*) FROM pg_replication_slots")
        .unwrap()
        .trim()
        != "1"
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "tail never created its slot"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    c.psql("INSERT INTO users VALUES (7, 'ada@example.com', 'Ada')")
        .unwrap();
    c.psql("UPDATE users SET first_name = 'Ada L.' WHERE id = 7")
        .unwrap();
    let first: Json = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let second: Json = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["op"], "insert");
    assert_eq!(first["table"], "public.users");
    assert_eq!(
        first["new"],
        serde_json::json!({"id": "7", "email": "ada@example.com", "first_name": "Ada"})
    );
    assert_eq!(second["op"], "update");
    assert_eq!(second["new"]["first_name"], "Ada L.");
    assert!(second["commit_lsn"].as_str().unwrap().contains('/'));

    sigterm(&child);
    let status = child.wait().unwrap();
    assert!(status.success(), "tail exited with {status}");
    assert!(
        lines.next().is_none(),
        "stdout carries nothing but change lines"
    );
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("tailing"), "logs go to stderr: {stderr}");
    // The bridge's own slot was never created, and tail's temporary one is gone.
    let start = std::time::Instant::now();
    while c
        .psql("SELECT count(*) FROM pg_replication_slots")
        .unwrap()
        .trim()
        != "0"
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "temporary slot outlived tail"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn tail_names_a_missing_publication_and_the_fix() {
    let c = support::cluster();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &c.superuser_url());
    let out = Command::new(BIN)
        .args(["tail", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("publication \"fuse_cdc_bridge\" does not exist"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn tail_rejects_a_bad_config_with_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[postgres]\nurl = \"postgres://x@127.0.0.1/db\"\nslot = 5\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["tail", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("postgres.slot"), "{stderr}");
}

const EVENT_TYPES: [&str; 6] = [
    "user.created",
    "user.updated",
    "learning_plan.created",
    "learning_plan.completed",
    "scorm.completed",
    "event_attendance.updated",
];

/// The text between `before` and the next `after` on the first line holding `before`.
fn between<'a>(text: &'a str, before: &str, after: &str) -> &'a str {
    let start = text
        .find(before)
        .unwrap_or_else(|| panic!("no {before:?} in:\n{text}"))
        + before.len();
    let rest = &text[start..];
    &rest[..rest.find(after).unwrap_or(rest.len())]
}

/// What every demo run must leave behind: nothing. Its cluster's and state's temp dirs are gone
/// and nothing listens on the cluster's port.
fn assert_cleaned_up(stdout: &str) {
    let cluster_dir = between(stdout, "files in ", "\n");
    let state_dir = between(stdout, "state in ", "…");
    let port: u16 = between(stdout, "on 127.0.0.1:", ",").parse().unwrap();
    for dir in [cluster_dir, state_dir] {
        assert!(
            !std::path::Path::new(dir).exists(),
            "{dir} outlived the demo"
        );
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "PostgreSQL still listens on {port}"
    );
    assert!(
        stdout.contains("Stopped PostgreSQL and removed"),
        "{stdout}"
    );
}

#[test]
fn demo_runs_for_its_duration_and_cleans_up() {
    let out = Command::new(BIN)
        .args(["demo", "--duration", "8"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    for event_type in EVENT_TYPES {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(&format!(" lms        json  {event_type} "))
                    && l.ends_with("verified")
                    && l.trim_start()
                        .split(' ')
                        .next()
                        .is_some_and(|ms| ms.parse::<u64>().is_ok())),
            "no verified {event_type} webhook with its latency:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("hr-system  form  user.created "),
        "the form endpoint got nothing:\n{stdout}"
    );
    assert!(stdout.contains("Summary: "), "{stdout}");
    assert!(
        stdout.contains("latency (COMMIT sent → arrived): p50 "),
        "{stdout}"
    );
    assert!(stdout.contains("unexpected webhooks: 0\n"), "{stdout}");
    assert!(!stdout.contains("INVALID"), "{stdout}");
    assert_cleaned_up(&stdout);
}

#[test]
fn demo_stops_cleanly_on_sigint() {
    let mut child = Command::new(BIN)
        .arg("demo")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    // Interrupt once webhooks flow, as a user pressing Ctrl-C would.
    for line in lines.by_ref() {
        let line = line.unwrap();
        stdout.push_str(&line);
        stdout.push('\n');
        if line.contains("user.updated") && line.ends_with("verified") {
            break;
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    for line in lines {
        stdout.push_str(&line.unwrap());
        stdout.push('\n');
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        status.success(),
        "demo exited with {status}: {stderr}\n{stdout}"
    );
    assert!(stdout.contains("Summary: "), "{stdout}");
    assert_cleaned_up(&stdout);
}
