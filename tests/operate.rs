//! The operator's surface of `run`: `/metrics` after a known workload, `/healthz` and `/readyz`,
//! the loopback-only admin routes, `status` and `dead-letters` while the bridge runs (over HTTP)
//! and when it is stopped (state read directly), and logs free of secrets. A real cluster, the
//! real binary, real receivers.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use fuse_cdc_bridge::ephemeral::{Cluster, StopMode};
use fuse_cdc_bridge::receiver::{Received, Receiver, Reply, Responder};
use fuse_cdc_bridge::Lsn;

const BIN: &str = env!("CARGO_BIN_EXE_fuse-cdc-bridge");
const TABLES: &str =
    "users, learning_plans, learning_plan_enrollments, scorm_attempts, event_attendances";

fn cluster() -> Cluster {
    let c = support::cluster();
    let mut sql = String::from(fuse_cdc_bridge::demo::FUSE_SCHEMA);
    for table in TABLES.split(", ") {
        sql.push_str(&format!("ALTER TABLE {table} REPLICA IDENTITY FULL;\n"));
    }
    c.psql(&sql).unwrap();
    c
}

fn always(status: u16) -> Responder {
    Arc::new(move |_| Reply::status(status))
}

/// A port free a moment ago, for a listener the CLI must find from the config.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The bridge process, its config and log.
struct Bridge {
    dir: tempfile::TempDir,
    child: Option<Child>,
    http: SocketAddr,
}

impl Bridge {
    fn start(url: &str, endpoints: &str) -> Bridge {
        Bridge::start_with(url, endpoints, "info")
    }

    fn start_with(url: &str, endpoints: &str, log_level: &str) -> Bridge {
        let dir = tempfile::tempdir().unwrap();
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = format!(
            "[postgres]\nurl = \"{url}\"\n[state]\ndir = \"{}\"\n[http]\nlisten = \"{http}\"\n{endpoints}\n",
            dir.path().join("state").display()
        );
        std::fs::write(dir.path().join("bridge.toml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("bridge.log")).unwrap();
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(dir.path().join("bridge.toml"))
            .env("RUST_LOG", log_level)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Bridge {
            dir,
            child: Some(child),
            http,
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("bridge.toml")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bridge.log")).unwrap_or_default()
    }

    /// SIGTERM; asserts a clean exit.
    fn stop(&mut self) {
        let mut child = self.child.take().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        assert!(child.wait().unwrap().success(), "{}", self.log());
    }

    /// Runs a CLI command with `--config`: (success, stdout, stderr).
    fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(self.config())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn status_json(&self) -> Json {
        let (ok, out, err) = self.cli(&["status", "--json"]);
        assert!(ok, "status failed: {err}\n{out}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// `GET path` on the bridge's listener: (status, content type, body).
    fn get(&self, path: &str) -> (u16, String, String) {
        http_get(self.http, path)
    }

    fn wait_until(&self, what: &str, secs: u64, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "timed out waiting for {what}\nbridge log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A bare HTTP/1.1 GET (the server closes after answering `Connection: close`).
fn http_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return (0, String::new(), String::new());
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or("")
        .to_string();
    (status, content_type, body.to_string())
}

fn wait_streaming(c: &Cluster, bridge: &Bridge) -> String {
    let mut pid = String::new();
    bridge.wait_until("the bridge to stream", 30, || {
        pid = c
            .psql("SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'fuse_cdc_bridge' AND active")
            .unwrap()
            .trim()
            .to_string();
        !pid.is_empty()
    });
    pid
}

fn wait_for(rt: &tokio::runtime::Runtime, receiver: &Receiver, n: usize, bridge: &Bridge) {
    if !rt.block_on(receiver.wait_for(n, Duration::from_secs(30))) {
        panic!(
            "expected {n} requests, got {}\nbridge log:\n{}",
            receiver.count(),
            bridge.log()
        );
    }
}

/// The sample lines of a Prometheus text exposition: series (with labels) → value.
fn samples(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(series, value)| (series.to_string(), value.to_string()))
        .collect()
}

fn current_lsn(c: &Cluster) -> Lsn {
    c.psql("SELECT pg_current_wal_lsn()")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn metrics_count_a_known_workload_and_health_routes_answer() {
    let c = cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ok = rt.block_on(Receiver::start(always(200))).unwrap();
    let bad = rt.block_on(Receiver::start(always(400))).unwrap();
    let endpoints = format!(
        "[[endpoints]]\nname = \"ok\"\nurl = \"{}\"\nevents = [\"user.created\", \"user.updated\"]\n\
         [[endpoints]]\nname = \"bad\"\nurl = \"{}\"\nevents = [\"learning_plan.created\"]\n",
        ok.url("/"),
        bad.url("/")
    );
    let mut bridge = Bridge::start(&c.superuser_url(), &endpoints);
    let first_pid = wait_streaming(&c, &bridge);

    assert_eq!(
        bridge.get("/healthz"),
        (200, "text/plain; charset=utf-8".into(), "ok\n".into())
    );
    bridge.wait_until("/readyz 200", 10, || bridge.get("/readyz").0 == 200);
    assert_eq!(bridge.get("/readyz").2, "ready\n");
    assert_eq!(bridge.get("/nope").0, 404);

    c.psql(
        "INSERT INTO users (email) VALUES ('a@example.com'), ('b@example.com'), ('c@example.com')",
    )
    .unwrap();
    c.psql("UPDATE users SET job_title = 'Engineer' WHERE id = 2")
        .unwrap();
    c.psql("INSERT INTO learning_plans (title) VALUES ('Safety')")
        .unwrap();
    wait_for(&rt, &ok, 4, &bridge);
    wait_for(&rt, &bad, 1, &bridge);
    let rejected = "fuse_cdc_bridge_deliveries_total{endpoint=\"bad\",outcome=\"rejected\"}";
    bridge.wait_until("the rejection to be counted", 10, || {
        samples(&bridge.get("/metrics").2)
            .get(rejected)
            .map(String::as_str)
            == Some("1")
    });
    // The lag sampler runs every 5 s: wait for its first reading of the slot.
    let retained = "fuse_cdc_bridge_replication_retained_wal_bytes";
    bridge.wait_until("a lag sample", 15, || {
        samples(&bridge.get("/metrics").2)
            .get(retained)
            .is_some_and(|v| v != "0")
    });

    let (status, content_type, text) = bridge.get("/metrics");
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let got = samples(&text);
    let expected = [
        (
            "fuse_cdc_bridge_events_detected_total{event_type=\"user.created\"}",
            "3",
        ),
        (
            "fuse_cdc_bridge_events_detected_total{event_type=\"user.updated\"}",
            "1",
        ),
        (
            "fuse_cdc_bridge_events_detected_total{event_type=\"learning_plan.created\"}",
            "1",
        ),
        (
            "fuse_cdc_bridge_events_detected_total{event_type=\"learning_plan.completed\"}",
            "0",
        ),
        (
            "fuse_cdc_bridge_deliveries_total{endpoint=\"ok\",outcome=\"delivered\"}",
            "4",
        ),
        (
            "fuse_cdc_bridge_deliveries_total{endpoint=\"ok\",outcome=\"retry\"}",
            "0",
        ),
        (
            "fuse_cdc_bridge_deliveries_total{endpoint=\"ok\",outcome=\"rejected\"}",
            "0",
        ),
        (
            "fuse_cdc_bridge_deliveries_total{endpoint=\"ok\",outcome=\"dead_lettered\"}",
            "0",
        ),
        (
            "fuse_cdc_bridge_deliveries_total{endpoint=\"bad\",outcome=\"delivered\"}",
            "0",
        ),
        (
            "fuse_cdc_bridge_deliveries_total{endpoint=\"bad\",outcome=\"rejected\"}",
            "1",
        ),
        (
            "fuse_cdc_bridge_delivery_latency_seconds_count{endpoint=\"ok\"}",
            "4",
        ),
        (
            "fuse_cdc_bridge_delivery_latency_seconds_bucket{endpoint=\"ok\",le=\"60\"}",
            "4",
        ),
        (
            "fuse_cdc_bridge_delivery_latency_seconds_count{endpoint=\"bad\"}",
            "0",
        ),
        ("fuse_cdc_bridge_outbox_depth{endpoint=\"ok\"}", "0"),
        ("fuse_cdc_bridge_outbox_depth{endpoint=\"bad\"}", "0"),
        (
            "fuse_cdc_bridge_outbox_oldest_age_seconds{endpoint=\"ok\"}",
            "0.0",
        ),
        ("fuse_cdc_bridge_dead_letters{endpoint=\"ok\"}", "0"),
        ("fuse_cdc_bridge_dead_letters{endpoint=\"bad\"}", "1"),
        ("fuse_cdc_bridge_replication_connected", "1"),
        ("fuse_cdc_bridge_replication_reconnects_total", "0"),
        ("fuse_cdc_bridge_replication_lag_seconds", "0.0"),
    ];
    for (series, value) in expected {
        assert_eq!(
            got.get(series).map(String::as_str),
            Some(value),
            "{series} in\n{text}"
        );
    }
    // Commit to 2xx on loopback: well under the 60 s bucket, and more than nothing.
    let sum: f64 = got["fuse_cdc_bridge_delivery_latency_seconds_sum{endpoint=\"ok\"}"]
        .parse()
        .unwrap();
    assert!(sum > 0.0 && sum < 60.0, "{sum}");
    let lag_bytes: i64 = got["fuse_cdc_bridge_replication_lag_bytes"]
        .parse()
        .unwrap();
    assert!((0..16 * 1024 * 1024).contains(&lag_bytes), "{lag_bytes}");

    // A lost session is a reconnect.
    c.psql("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'fuse_cdc_bridge'")
        .unwrap();
    bridge.wait_until("a new walsender", 30, || {
        let pid = c
            .psql("SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'fuse_cdc_bridge' AND active")
            .unwrap();
        !pid.trim().is_empty() && pid.trim() != first_pid
    });
    bridge.wait_until("connected again", 10, || {
        let got = samples(&bridge.get("/metrics").2);
        got.get("fuse_cdc_bridge_replication_connected")
            .map(String::as_str)
            == Some("1")
            && got.contains_key("fuse_cdc_bridge_replication_reconnects_total")
    });
    let got = samples(&bridge.get("/metrics").2);
    assert_eq!(got["fuse_cdc_bridge_replication_reconnects_total"], "1");
    assert_eq!(got["fuse_cdc_bridge_replication_connected"], "1");
    bridge.stop();
}

#[tokio::test]
async fn admin_routes_answer_loopback_peers_only() {
    use fuse_cdc_bridge::http::{respond, State};
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("bridge.toml");
    std::fs::write(
        &config_path,
        format!(
            "[postgres]\nurl = \"postgres://u@127.0.0.1:9/db\"\n[state]\ndir = \"{}\"\n\
             [[endpoints]]\nname = \"hr\"\nurl = \"http://127.0.0.1:9/\"\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let config = fuse_cdc_bridge::config::Config::load(&config_path).unwrap();
    let store = fuse_cdc_bridge::store::Store::open(&config.state.dir).unwrap();
    let (_tx, progress) = tokio::sync::watch::channel(Default::default());
    let state = Arc::new(State {
        metrics: Arc::new(fuse_cdc_bridge::metrics::Metrics::new(&config)),
        config,
        store,
        progress,
        failures: Default::default(),
        rescans: Vec::new(),
    });
    let request = |method: &str, path: &str| {
        hyper::Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap()
    };
    let remote: SocketAddr = "203.0.113.7:40000".parse().unwrap();
    let mapped_remote: SocketAddr = "[::ffff:10.0.0.5]:40000".parse().unwrap();
    let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let local6: SocketAddr = "[::1]:40000".parse().unwrap();

    for path in ["/admin/status", "/admin/dead-letters", "/admin/nothing"] {
        for peer in [remote, mapped_remote] {
            let reply = respond(&state, peer, &request("GET", path)).await;
            assert_eq!(reply.status(), 403, "{path} from {peer}");
        }
    }
    let reply = respond(
        &state,
        remote,
        &request("POST", "/admin/dead-letters/purge?all=true"),
    )
    .await;
    assert_eq!(reply.status(), 403);
    // Public routes answer anyone.
    assert_eq!(
        respond(&state, remote, &request("GET", "/healthz"))
            .await
            .status(),
        200
    );
    assert_eq!(
        respond(&state, remote, &request("GET", "/metrics"))
            .await
            .status(),
        200
    );
    // Not streaming: not ready.
    assert_eq!(
        respond(&state, local, &request("GET", "/readyz"))
            .await
            .status(),
        503
    );
    // Loopback gets the admin routes.
    for peer in [local, local6] {
        let reply = respond(&state, peer, &request("GET", "/admin/dead-letters")).await;
        assert_eq!(reply.status(), 200, "from {peer}");
    }
    let reply = respond(&state, local, &request("POST", "/admin/dead-letters/retry")).await;
    assert_eq!(reply.status(), 400, "acting on everything needs all=true");
    let reply = respond(&state, local, &request("GET", "/admin/dead-letters/retry")).await;
    assert_eq!(reply.status(), 405);
}

#[test]
fn status_is_exact_with_the_bridge_running_and_stopped() {
    let mut c = cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ok = rt.block_on(Receiver::start(always(200))).unwrap();
    let bad = rt.block_on(Receiver::start(always(400))).unwrap();
    let down = rt.block_on(Receiver::start(always(503))).unwrap();
    let endpoints = format!(
        "[[endpoints]]\nname = \"ok\"\nurl = \"{}\"\nevents = [\"user.created\"]\n\
         [[endpoints]]\nname = \"bad\"\nurl = \"{}\"\nevents = [\"learning_plan.created\"]\n\
         [[endpoints]]\nname = \"down\"\nurl = \"{}\"\nevents = [\"user.updated\"]\n\
         backoff = {{ initial = \"1h\", max = \"1h\" }}\n",
        ok.url("/"),
        bad.url("/"),
        down.url("/")
    );
    let mut bridge = Bridge::start(&c.superuser_url(), &endpoints);
    wait_streaming(&c, &bridge);
    c.psql("INSERT INTO users (email) VALUES ('a@example.com'), ('b@example.com')")
        .unwrap();
    c.psql("UPDATE users SET job_title = 'Engineer' WHERE id = 1")
        .unwrap();
    let before_last = current_lsn(&c);
    c.psql("INSERT INTO learning_plans (title) VALUES ('Safety')")
        .unwrap();
    wait_for(&rt, &ok, 2, &bridge);
    wait_for(&rt, &bad, 1, &bridge);
    wait_for(&rt, &down, 1, &bridge);
    let bad_id = bad.received()[0].header("webhook-id").unwrap().to_string();
    let down_id = down.received()[0].header("webhook-id").unwrap().to_string();

    let mut running = Json::Null;
    bridge.wait_until("status to show the dead letter and the failure", 10, || {
        running = bridge.status_json();
        running["endpoints"][1]["dead_letters"] == 1
            && running["endpoints"][2]["last_error"].is_object()
    });
    assert_eq!(running["source"], "bridge");
    assert_eq!(running["replication_connected"], true);
    let checkpoint: Lsn = running["checkpoint_lsn"].as_str().unwrap().parse().unwrap();
    assert!(checkpoint > before_last, "{checkpoint} <= {before_last}");
    let db = &running["database"];
    assert_eq!(db["error"], Json::Null);
    assert_eq!(db["slot"]["name"], "fuse_cdc_bridge");
    assert_eq!(db["slot"]["wal_status"], "reserved");
    assert!(db["slot"]["active_pid"].as_i64().unwrap() > 0);
    assert!(db["slot"]["retained_bytes"].as_i64().unwrap() > 0);
    let dead_at = {
        let (ok_, out, err) = bridge.cli(&["dead-letters", "list", "--json"]);
        assert!(ok_, "{err}");
        let line: Json = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(line["id"], bad_id.as_str());
        line["dead_at"].as_u64().unwrap()
    };
    let down_age = running["endpoints"][2]["oldest_pending_age_seconds"]
        .as_f64()
        .unwrap();
    assert!(down_age > 0.0 && down_age < 60.0, "{down_age}");
    let down_at = running["endpoints"][2]["last_error"]["at"]
        .as_u64()
        .unwrap();
    let expected_endpoints = serde_json::json!([
        {"name": "ok", "configured": true, "pending": 0, "oldest_pending_age_seconds": null,
         "dead_letters": 0, "last_error": null},
        {"name": "bad", "configured": true, "pending": 0, "oldest_pending_age_seconds": null,
         "dead_letters": 1,
         "last_error": {"event_id": bad_id, "status": 400, "error": "HTTP 400 Bad Request",
                        "at": dead_at}},
        {"name": "down", "configured": true, "pending": 1, "oldest_pending_age_seconds": down_age,
         "dead_letters": 0,
         "last_error": {"event_id": down_id, "status": 503,
                        "error": "HTTP 503 Service Unavailable", "at": down_at}},
    ]);
    assert_eq!(running["endpoints"], expected_endpoints);
    let (_, table, _) = bridge.cli(&["status"]);
    assert!(
        table.contains("bridge       running, replication streaming"),
        "{table}"
    );

    bridge.stop();
    let stopped = bridge.status_json();
    assert_eq!(stopped["source"], "state");
    assert_eq!(stopped["replication_connected"], Json::Null);
    assert_eq!(stopped["checkpoint_lsn"], running["checkpoint_lsn"]);
    assert_eq!(stopped["database"]["error"], Json::Null);
    assert_eq!(stopped["database"]["slot"]["active_pid"], Json::Null);
    // Read back from the state: the dead letter as it was; the pending failure without the
    // time of failure, which only the running bridge remembers.
    let mut expected = expected_endpoints.clone();
    expected[2]["last_error"]["at"] = Json::Null;
    let stopped_age = stopped["endpoints"][2]["oldest_pending_age_seconds"]
        .as_f64()
        .unwrap();
    assert!(stopped_age >= down_age && stopped_age < down_age + 60.0);
    expected[2]["oldest_pending_age_seconds"] = stopped_age.into();
    assert_eq!(stopped["endpoints"], expected);

    // Without the database: the local state still, the reason, and exit 1.
    c.stop(StopMode::Fast).unwrap();
    let (ok_, out, _) = bridge.cli(&["status"]);
    assert!(!ok_);
    assert!(out.contains("database     UNREACHABLE: "), "{out}");
    let row = format!(
        "{:<20} {:>9} {:>12} {:>6}  {bad_id}: HTTP 400 Bad Request",
        "bad", 0, "-", 1
    );
    assert!(out.lines().any(|l| l == row), "{row:?} not in\n{out}");
}

#[test]
fn dead_letters_list_retry_and_purge_while_running() {
    let c = cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let refuse: Responder = Arc::new(|r: &Received| match r.body.as_slice() {
        b"user_id=1" => Reply::status(200),
        _ => Reply::status(400),
    });
    let hooks = rt.block_on(Receiver::start(refuse)).unwrap();
    let endpoints = format!(
        "[[endpoints]]\nname = \"hr\"\nurl = \"{}\"\nevents = [\"user.created\"]\n",
        hooks.url("/")
    );
    let mut bridge = Bridge::start(&c.superuser_url(), &endpoints);
    wait_streaming(&c, &bridge);
    c.psql("INSERT INTO users (email) VALUES ('a@example.com'), ('b@example.com')")
        .unwrap();
    wait_for(&rt, &hooks, 2, &bridge);
    let refused = hooks
        .received()
        .into_iter()
        .find(|r| r.body == b"user_id=2")
        .unwrap();
    let id = refused.header("webhook-id").unwrap().to_string();

    let mut lines: Vec<Json> = Vec::new();
    bridge.wait_until("the dead letter to be listed", 10, || {
        let (ok, out, err) = bridge.cli(&["dead-letters", "list", "--json"]);
        assert!(ok, "list while running: {err}");
        lines = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        !lines.is_empty()
    });
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["endpoint"], "hr");
    assert_eq!(lines[0]["id"], id.as_str());
    assert_eq!(lines[0]["event_type"], "user.created");
    assert_eq!(lines[0]["last_status"], 400);
    assert_eq!(lines[0]["reason"], "HTTP 400 Bad Request");

    let (ok, _, err) = bridge.cli(&["dead-letters", "retry"]);
    assert!(
        !ok && err.contains("--all"),
        "retry without a filter must refuse: {err}"
    );

    hooks.set_responder(always(200));
    let (ok, out, err) = bridge.cli(&["dead-letters", "retry", "--id", &id]);
    assert!(ok, "{err}");
    assert_eq!(out, "1 dead letter(s) put back in the outbox\n");
    // Nothing else happens in the database: only the wakeup makes the dispatcher look.
    if !rt.block_on(hooks.wait_for(3, Duration::from_secs(5))) {
        panic!("the retried event was not sent promptly\n{}", bridge.log());
    }
    let again = hooks.received().pop().unwrap();
    assert_eq!(again.body, b"user_id=2");
    assert_eq!(again.header("webhook-id"), Some(id.as_str()));
    bridge.wait_until("the retried event to leave the outbox", 10, || {
        bridge.status_json()["endpoints"][0]["pending"] == 0
    });
    let (_, out, _) = bridge.cli(&["dead-letters", "list"]);
    assert!(out.ends_with("0 dead letter(s)\n"), "{out}");

    // Purge, through the running bridge too.
    hooks.set_responder(always(422));
    c.psql("INSERT INTO users (email) VALUES ('c@example.com')")
        .unwrap();
    wait_for(&rt, &hooks, 4, &bridge);
    bridge.wait_until("the second dead letter", 10, || {
        bridge.status_json()["endpoints"][0]["dead_letters"] == 1
    });
    let (ok, out, err) = bridge.cli(&["dead-letters", "purge", "--endpoint", "hr"]);
    assert!(ok, "{err}");
    assert_eq!(out, "1 dead letter(s) purged\n");
    assert_eq!(bridge.status_json()["endpoints"][0]["dead_letters"], 0);
    bridge.stop();
}

#[test]
fn logs_show_neither_the_database_password_nor_endpoint_secrets() {
    const DB_PASSWORD: &str = "Db-pa55-Zq9xK";
    const URL_PASSWORD: &str = "Url-pa55-Wm4";
    const SECRET_KEY_B64: &str = "c2VjcmV0LWtleS1mb3ItbG9ncy10ZXN0LTAxMjM0NQ==";
    let c = cluster();
    c.psql(&format!(
        "SET password_encryption = 'scram-sha-256'; \
         CREATE ROLE bridge_u LOGIN SUPERUSER REPLICATION PASSWORD '{DB_PASSWORD}';"
    ))
    .unwrap();
    c.set_hba(&support::hba("scram-sha-256")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let responder: Responder = Arc::new(|r: &Received| match r.body.as_slice() {
        b"user_id=1" => Reply::status(400),
        _ => Reply::status(503),
    });
    let hooks = rt.block_on(Receiver::start(responder)).unwrap();
    let url = hooks
        .url("/hooks")
        .replace("http://", &format!("http://hooks:{URL_PASSWORD}@"));
    let endpoints = format!(
        "[[endpoints]]\nname = \"hr\"\nurl = \"{url}\"\nevents = [\"user.created\"]\n\
         secret = \"whsec_{SECRET_KEY_B64}\"\nbackoff = {{ initial = \"100ms\", max = \"200ms\" }}\n"
    );
    let dsn = c.url("bridge_u", Some(DB_PASSWORD), "postgres");
    let mut bridge = Bridge::start_with(&dsn, &endpoints, "debug");
    let first_pid = wait_streaming(&c, &bridge);
    c.psql("INSERT INTO users (email) VALUES ('a@example.com'), ('b@example.com')")
        .unwrap();
    wait_for(&rt, &hooks, 4, &bridge);
    // A lost session: reconnecting logs the error and connects (authenticates) again.
    c.psql("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'fuse_cdc_bridge'")
        .unwrap();
    bridge.wait_until("a new walsender", 30, || {
        let pid = c
            .psql("SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'fuse_cdc_bridge' AND active")
            .unwrap();
        !pid.trim().is_empty() && pid.trim() != first_pid
    });
    let (ok, _, err) = bridge.cli(&["status"]);
    assert!(ok, "{err}");
    bridge.stop();

    let log = bridge.log();
    // The failure paths whose lines could carry them did run.
    for needle in [
        "rejected; moved to dead letters",
        "delivery failed; will retry",
        "replication interrupted, reconnecting",
        "streaming",
    ] {
        assert!(log.contains(needle), "{needle:?} not in the log:\n{log}");
    }
    for secret in [DB_PASSWORD, URL_PASSWORD, SECRET_KEY_B64, "whsec_"] {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
    assert!(!err.contains(DB_PASSWORD));
}

#[test]
fn debug_output_hides_the_database_password_and_endpoint_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    std::fs::write(
        &path,
        format!(
            "[postgres]\nurl = \"postgres://bridge:Db-pa55-Zq9xK@127.0.0.1:9/fuse?password=Db-pa55-Zq9xK\"\n\
             [state]\ndir = \"{}\"\n\
             [[endpoints]]\nname = \"hr\"\nurl = \"https://hooks:Url-pa55-Wm4@hr.example.com/x\"\n\
             secret = \"whsec_c2VjcmV0LWtleS1mb3ItbG9ncy10ZXN0LTAxMjM0NQ==\"\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let config = fuse_cdc_bridge::config::Config::load(&path).unwrap();
    let params =
        fuse_cdc_bridge::pg::dsn::ConnectParams::parse(config.postgres.url.expose()).unwrap();
    let settings = fuse_cdc_bridge::capture::CaptureSettings::new(
        params.clone(),
        "slot",
        "publication",
        config.tables(),
    );
    let client =
        fuse_cdc_bridge::delivery::client::EndpointClient::new(&config.endpoints[0]).unwrap();
    for (what, text) in [
        ("Config", format!("{config:?}")),
        ("EndpointConfig", format!("{:?}", config.endpoints[0])),
        ("ConnectParams", format!("{params:?}")),
        ("CaptureSettings", format!("{settings:?}")),
        ("EndpointClient", format!("{client:?}")),
    ] {
        for secret in [
            "Db-pa55-Zq9xK",
            "Url-pa55-Wm4",
            "c2VjcmV0LWtleS1mb3",
            "whsec_",
        ] {
            assert!(!text.contains(secret), "{what} shows {secret:?}: {text}");
        }
    }
    // Redacted, not dropped: the rest stays readable.
    assert!(
        format!("{:?}", config.endpoints[0]).contains("https://hooks:***@hr.example.com/x"),
        "{:?}",
        config.endpoints[0]
    );
}
