//! `fuse-cdc-bridge run` end to end: a real cluster, the real binary, real HTTP receivers on
//! loopback. Exact bodies and headers, retries, dead letters, per-user order, kill -9, a receiver
//! that is down, and backpressure.

mod support;

use support::bridge::{wait_streaming, Bridge};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{KeyInit, Mac};
use serde_json::Value as Json;

use fuse_cdc_bridge::ephemeral::Cluster;
use fuse_cdc_bridge::event::EventId;
use fuse_cdc_bridge::receiver::{Received, Receiver, Reply, Responder};
use fuse_cdc_bridge::Lsn;

const TABLES: &str =
    "users, learning_plans, learning_plan_enrollments, scorm_attempts, event_attendances";
const SECRET_KEY: &[u8] = b"fuse-test-secret-0123456789abcdef";

fn cluster() -> Cluster {
    let c = support::cluster();
    let mut sql = String::from(fuse_cdc_bridge::demo::FUSE_SCHEMA);
    for table in TABLES.split(", ") {
        sql.push_str(&format!("ALTER TABLE {table} REPLICA IDENTITY FULL;\n"));
    }
    c.psql(&sql).unwrap();
    c
}

fn whsec() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(SECRET_KEY)
    )
}

fn always(status: u16) -> Responder {
    Arc::new(move |_| Reply::status(status))
}

/// Starts `run` with `endpoints` (the `[[endpoints]]` TOML) and the `[outbox]` keys in `outbox`.
fn start_bridge(c: &Cluster, endpoints: &str, outbox: &str) -> Bridge {
    Bridge::start(c, &format!("[outbox]\n{outbox}\n{endpoints}"))
}

fn wait_for(
    rt: &tokio::runtime::Runtime,
    receiver: &Receiver,
    n: usize,
    secs: u64,
    bridge: &Bridge,
) {
    if !rt.block_on(receiver.wait_for(n, Duration::from_secs(secs))) {
        panic!(
            "expected {n} requests, got {}: {:#?}\nbridge log:\n{}",
            receiver.count(),
            receiver
                .received()
                .iter()
                .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                .collect::<Vec<_>>(),
            bridge.log()
        );
    }
}

/// Standard Webhooks, written here from the spec rather than taken from the bridge.
fn verify_signature(r: &Received) {
    let id = r.header("webhook-id").unwrap();
    let ts = r.header("webhook-timestamp").unwrap();
    let mut signed = format!("{id}.{ts}.").into_bytes();
    signed.extend_from_slice(&r.body);
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET_KEY).unwrap();
    mac.update(&signed);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(r.header("webhook-signature"), Some(expected.as_str()));
}

fn id_of(r: &Received) -> EventId {
    EventId::parse(r.header("webhook-id").unwrap()).unwrap()
}

#[test]
fn six_events_reach_two_endpoints_with_exact_bodies_and_headers() {
    let c = cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hr = rt.block_on(Receiver::start(always(200))).unwrap();
    let lms = rt.block_on(Receiver::start(always(204))).unwrap();
    let endpoints = format!(
        r#"
[[endpoints]]
name = "hr"
url = "{}"
events = ["user.created", "user.updated"]
secret = "{}"

[[endpoints]]
name = "lms"
url = "{}"
format = "json"
"#,
        hr.url("/hooks?tenant=7"),
        whsec(),
        lms.url("/fuse")
    );
    let bridge = start_bridge(&c, &endpoints, "");
    wait_streaming(&c, &bridge);
    let started = std::time::SystemTime::now();
    c.psql("INSERT INTO users (email, first_name, last_name) VALUES ('ada@example.com', 'Ada', 'Lovelace')").unwrap();
    c.psql("UPDATE users SET job_title = 'Analyst & Engineer' WHERE id = 1")
        .unwrap();
    c.psql("UPDATE users SET last_sign_in_at = now(), sign_in_count = 1 WHERE id = 1")
        .unwrap();
    c.psql("INSERT INTO learning_plans (title) VALUES ('Safety')")
        .unwrap();
    c.psql("INSERT INTO learning_plan_enrollments (user_id, learning_plan_id, status) VALUES (1, 1, 'in_progress')").unwrap();
    c.psql("UPDATE learning_plan_enrollments SET status = 'completed' WHERE id = 1")
        .unwrap();
    c.psql("INSERT INTO scorm_attempts (user_id, content_id) VALUES (1, 4242)")
        .unwrap();
    c.psql("UPDATE scorm_attempts SET completion_status = 'completed' WHERE id = 1")
        .unwrap();
    c.psql("INSERT INTO event_attendances (user_id, event_id, occurrence_id) VALUES (1, 77, 7701)")
        .unwrap();
    c.psql("UPDATE event_attendances SET status = 'attended' WHERE id = 1")
        .unwrap();

    wait_for(&rt, &lms, 6, 30, &bridge);
    wait_for(&rt, &hr, 2, 30, &bridge);
    std::thread::sleep(Duration::from_millis(500));

    // hr: form bodies, signed, only its two types, in commit order.
    let got = hr.received();
    assert_eq!(got.len(), 2, "hr got {got:#?}");
    let types: Vec<&str> = got
        .iter()
        .map(|r| r.header("webhook-event-type").unwrap())
        .collect();
    assert_eq!(types, ["user.created", "user.updated"]);
    for r in &got {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/hooks?tenant=7");
        assert_eq!(
            r.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(r.body, b"user_id=1");
        verify_signature(r);
        let ts: u64 = r.header("webhook-timestamp").unwrap().parse().unwrap();
        let since = started
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(ts >= since && ts < since + 60, "timestamp {ts}");
    }
    assert!(id_of(&got[0]) < id_of(&got[1]));

    // lms: JSON, unsigned, all six types.
    let got = lms.received();
    assert_eq!(got.len(), 6, "lms got {got:#?}");
    let mut by_type: BTreeMap<String, Json> = BTreeMap::new();
    for r in &got {
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("webhook-signature"), None);
        let body: Json = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["type"], r.header("webhook-event-type").unwrap());
        let ts = body["timestamp"].as_str().unwrap();
        assert!(ts.ends_with('Z') && ts.len() >= 20, "{ts}");
        // Keys in the documented order.
        let text = String::from_utf8(r.body.clone()).unwrap();
        assert!(
            text.starts_with("{\"type\":")
                && text.contains(",\"timestamp\":")
                && text.contains(",\"data\":{"),
            "{text}"
        );
        by_type.insert(
            body["type"].as_str().unwrap().to_string(),
            body["data"].clone(),
        );
    }
    let expected: BTreeMap<String, Json> = [
        ("user.created", serde_json::json!({"user_id": 1})),
        ("user.updated", serde_json::json!({"user_id": 1})),
        ("learning_plan.created", serde_json::json!({"learning_plan_id": 1})),
        ("learning_plan.completed", serde_json::json!({"user_id": 1, "learning_plan_id": 1})),
        ("scorm.completed", serde_json::json!({"user_id": 1, "content_id": 4242})),
        ("event_attendance.updated", serde_json::json!({"user_id": 1, "event_id": 77, "occurrence_id": 7701, "status": "attended"})),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(by_type, expected);
    // The same event has the same id at both endpoints.
    let hr_ids: BTreeSet<String> = hr
        .received()
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_string())
        .collect();
    let lms_ids: BTreeSet<String> = got
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_string())
        .collect();
    assert!(hr_ids.is_subset(&lms_ids), "{hr_ids:?} vs {lms_ids:?}");
    // user 1's events arrive at lms in commit order.
    let user_ids: Vec<EventId> = got
        .iter()
        .filter(|r| r.header("webhook-event-type") != Some("learning_plan.created"))
        .map(id_of)
        .collect();
    assert!(user_ids.windows(2).all(|w| w[0] < w[1]), "{user_ids:?}");

    let mut bridge = bridge;
    assert!(bridge.stop().success(), "{}", bridge.log());
}

#[test]
fn retries_honour_backoff_and_retry_after_and_dead_letters_can_be_retried() {
    let c = cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Per event id: how many times it was seen. Ada's (user 1) event fails 3 times with 503,
    // Grace's (user 2) once with 429 + Retry-After, Alan's (user 3) is refused with 400.
    let seen = Arc::new(std::sync::Mutex::new(BTreeMap::<String, usize>::new()));
    let counter = Arc::clone(&seen);
    let responder: Responder = Arc::new(move |r: &Received| {
        let id = r.header("webhook-id").unwrap_or_default().to_string();
        let n = {
            let mut seen = counter.lock().unwrap();
            let n = seen.entry(id).or_default();
            *n += 1;
            *n
        };
        match (r.body.as_slice(), n) {
            (b"user_id=1", 1..=3) => Reply::status(503),
            (b"user_id=2", 1) => Reply::status(429).with_header("Retry-After", "2"),
            (b"user_id=3", _) => Reply::status(400),
            _ => Reply::status(200),
        }
    });
    let hooks = rt.block_on(Receiver::start(responder)).unwrap();
    let endpoints = format!(
        "[[endpoints]]\nname = \"hr\"\nurl = \"{}\"\nevents = [\"user.created\"]\nbackoff = {{ initial = \"200ms\", max = \"2s\" }}\n",
        hooks.url("/")
    );
    let mut bridge = start_bridge(&c, &endpoints, "");
    wait_streaming(&c, &bridge);
    c.psql("INSERT INTO users (email) VALUES ('ada@example.com'), ('grace@example.com'), ('alan@example.com')").unwrap();
    // Ada: 3 failures + 1 success; Grace: 1 + 1; Alan: 1 (rejected).
    wait_for(&rt, &hooks, 7, 30, &bridge);
    std::thread::sleep(Duration::from_millis(800));
    let got = hooks.received();
    assert_eq!(got.len(), 7, "{got:#?}");

    let attempts =
        |body: &[u8]| -> Vec<&Received> { got.iter().filter(|r| r.body == body).collect() };
    let ada = attempts(b"user_id=1");
    assert_eq!(ada.len(), 4);
    assert!(
        ada.iter()
            .all(|r| r.header("webhook-id") == ada[0].header("webhook-id")),
        "one id on every attempt"
    );
    // Equal jitter: the nth wait is between half and all of 200 ms * 2^(n-1).
    for (n, pair) in ada.windows(2).enumerate() {
        let gap = pair[1].at - pair[0].at;
        let nominal = Duration::from_millis(200 * (1 << n));
        assert!(
            gap >= nominal / 2,
            "attempt {} came after {gap:?}, before {:?}",
            n + 2,
            nominal / 2
        );
        assert!(
            gap < nominal + Duration::from_millis(600),
            "attempt {} came after {gap:?}",
            n + 2
        );
    }
    let grace = attempts(b"user_id=2");
    assert_eq!(grace.len(), 2);
    assert!(
        grace[1].at - grace[0].at >= Duration::from_secs(2),
        "Retry-After: 2 honoured"
    );
    assert_eq!(grace[0].header("webhook-id"), grace[1].header("webhook-id"));
    let alan = attempts(b"user_id=3");
    assert_eq!(alan.len(), 1, "400 is not retried");
    let alan_id = alan[0].header("webhook-id").unwrap().to_string();
    assert!(
        bridge.log().contains("rejected; moved to dead letters"),
        "{}",
        bridge.log()
    );

    // The state directory is the running bridge's; stop it to use the CLI on it.
    assert!(bridge.stop().success());
    let (ok, out, err) = bridge.cli(&["dead-letters", "list", "--json"]);
    assert!(ok, "{err}");
    let lines: Vec<Json> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["endpoint"], "hr");
    assert_eq!(lines[0]["id"], alan_id.as_str());
    assert_eq!(lines[0]["event_type"], "user.created");
    assert_eq!(lines[0]["last_status"], 400);
    assert!(
        lines[0]["reason"].as_str().unwrap().contains("400"),
        "{}",
        lines[0]
    );
    let (ok, _, err) = bridge.cli(&["dead-letters", "retry"]);
    assert!(
        !ok && err.contains("--all"),
        "retry without a filter must refuse: {err}"
    );
    let (ok, out, err) = bridge.cli(&["dead-letters", "retry", "--id", &alan_id]);
    assert!(ok, "{err}");
    assert!(out.contains("1 dead letter(s) put back"), "{out}");

    hooks.set_responder(always(200));
    bridge.restart();
    wait_for(&rt, &hooks, 8, 30, &bridge);
    let last = hooks.received().pop().unwrap();
    assert_eq!(last.body, b"user_id=3");
    assert_eq!(
        last.header("webhook-id"),
        Some(alan_id.as_str()),
        "same id after dead-letters retry"
    );
    assert!(bridge.stop().success());
    let (_, out, _) = bridge.cli(&["dead-letters", "list"]);
    assert!(out.contains("0 dead letter(s)"), "{out}");
}

#[test]
fn per_user_order_holds_at_concurrency_8_and_a_failing_user_blocks_no_one_else() {
    let c = cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let failing_until = Instant::now() + Duration::from_secs(3);
    let responder: Responder = Arc::new(move |r: &Received| {
        if r.body == b"user_id=1" && Instant::now() < failing_until {
            return Reply::status(503);
        }
        // Shuffle completion order a little.
        let mut reply = Reply::status(200);
        reply.delay = Duration::from_millis(rand::random::<u64>() % 15);
        reply
    });
    let hooks = rt.block_on(Receiver::start(responder)).unwrap();
    let endpoints = format!(
        "[[endpoints]]\nname = \"hr\"\nurl = \"{}\"\nevents = [\"user.updated\"]\nconcurrency = 8\nbackoff = {{ initial = \"100ms\", max = \"300ms\" }}\n",
        hooks.url("/")
    );
    c.psql(
        "INSERT INTO users (email) SELECT 'u' || g || '@example.com' FROM generate_series(1, 20) g",
    )
    .unwrap();
    let mut bridge = start_bridge(&c, &endpoints, "");
    wait_streaming(&c, &bridge);
    for round in 1..=5 {
        c.psql(&format!("UPDATE users SET job_title = 'title {round}'"))
            .unwrap();
    }
    // 100 successes, after user 1's failed attempts.
    let start = Instant::now();
    let succeeded = |r: &Received| !(r.body == b"user_id=1" && r.at < failing_until);
    while hooks.received().iter().filter(|r| succeeded(r)).count() < 100 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{}",
            bridge.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let got = hooks.received();
    let delivered: Vec<&Received> = got
        .iter()
        .filter(|r| !(r.body == b"user_id=1" && r.at < failing_until))
        .collect();
    // Every user's five events, each once, in commit order.
    let mut per_user: BTreeMap<String, Vec<EventId>> = BTreeMap::new();
    for r in &delivered {
        per_user
            .entry(String::from_utf8(r.body.clone()).unwrap())
            .or_default()
            .push(id_of(r));
    }
    assert_eq!(per_user.len(), 20);
    for (user, ids) in &per_user {
        assert_eq!(ids.len(), 5, "{user}: {ids:?}");
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "{user} out of order: {ids:?}"
        );
    }
    // While user 1 was failing, everyone else got all of theirs.
    let others_done = delivered
        .iter()
        .filter(|r| r.body != b"user_id=1")
        .map(|r| r.at)
        .max()
        .unwrap();
    assert!(others_done < failing_until, "other users waited for user 1");
    assert!(
        got.iter()
            .filter(|r| r.body == b"user_id=1" && r.at < failing_until)
            .count()
            >= 2
    );
    assert!(bridge.stop().success());
}

#[test]
fn kill_9_ten_times_during_10000_events_loses_nothing() {
    let c = cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hooks = rt.block_on(Receiver::start(always(200))).unwrap();
    let endpoints = format!(
        "[[endpoints]]\nname = \"hr\"\nurl = \"{}\"\nevents = [\"user.created\"]\nconcurrency = 16\n",
        hooks.url("/")
    );
    let mut bridge = start_bridge(&c, &endpoints, "");
    wait_streaming(&c, &bridge);
    const EVENTS: usize = 10_000;
    let url = c.superuser_url();
    let inserted = Arc::new(AtomicUsize::new(0));
    let progress = Arc::clone(&inserted);
    let writer = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let params = fuse_cdc_bridge::pg::dsn::ConnectParams::parse(&url).unwrap();
            let admin = fuse_cdc_bridge::pg::admin::Admin::connect(&params).await.unwrap();
            for batch in 0..(EVENTS / 50) {
                let first = batch * 50 + 1;
                admin
                    .client()
                    .batch_execute(&format!(
                        "INSERT INTO users (email) SELECT 'k' || g || '@example.com' FROM generate_series({first}, {}) g",
                        first + 49
                    ))
                    .await
                    .unwrap();
                progress.store(first + 49, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        });
    });
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(200 + rand::random::<u64>() % 500));
        bridge.kill9();
        bridge.restart();
    }
    writer.join().unwrap();
    assert_eq!(inserted.load(Ordering::SeqCst), EVENTS);
    let start = Instant::now();
    loop {
        let distinct: BTreeSet<Vec<u8>> = hooks.received().into_iter().map(|r| r.body).collect();
        if distinct.len() == EVENTS {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{} of {EVENTS} delivered\n{}",
            distinct.len(),
            bridge.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Duplicates (from kills between a delivery and its removal) carry the same id.
    let mut id_of_body: BTreeMap<Vec<u8>, String> = BTreeMap::new();
    let got = hooks.received();
    for r in &got {
        let id = r.header("webhook-id").unwrap().to_string();
        let previous = id_of_body
            .entry(r.body.clone())
            .or_insert_with(|| id.clone());
        assert_eq!(*previous, id, "a duplicate with another id");
    }
    let ids: BTreeSet<&String> = id_of_body.values().collect();
    assert_eq!(ids.len(), EVENTS);
    eprintln!(
        "kill -9 x10: {EVENTS} events, {} requests, {} duplicates",
        got.len(),
        got.len() - EVENTS
    );
    assert!(bridge.stop().success());
}

#[test]
fn a_dead_receiver_does_not_hold_wal_and_gets_everything_when_back() {
    let c = cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hooks = rt.block_on(Receiver::start(always(200))).unwrap();
    let endpoints = format!(
        "[[endpoints]]\nname = \"hr\"\nurl = \"{}\"\nevents = [\"user.created\"]\nbackoff = {{ initial = \"200ms\", max = \"1s\" }}\n",
        hooks.url("/")
    );
    let mut bridge = start_bridge(&c, &endpoints, "");
    wait_streaming(&c, &bridge);
    let addr = rt.block_on(async { hooks.stop() });
    c.psql("INSERT INTO users (email) SELECT 'd' || g || '@example.com' FROM generate_series(1, 200) g").unwrap();
    let target: Lsn = c
        .psql("SELECT pg_current_wal_lsn()")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let start = Instant::now();
    loop {
        let confirmed: Lsn = c
            .psql("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'fuse_cdc_bridge'")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        if confirmed >= target {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "slot stuck at {confirmed} < {target}\n{}",
            bridge.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        bridge.log().contains("delivery failed; will retry"),
        "{}",
        bridge.log()
    );
    let hooks = rt.block_on(Receiver::start_on(addr, always(200))).unwrap();
    wait_for(&rt, &hooks, 200, 60, &bridge);
    let distinct: BTreeSet<Vec<u8>> = hooks.received().into_iter().map(|r| r.body).collect();
    assert_eq!(distinct.len(), 200);
    assert!(bridge.stop().success());
}

#[test]
fn backpressure_pauses_and_resumes_with_a_tiny_bound_losing_nothing() {
    let c = cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let slow: Responder = Arc::new(|_| {
        let mut r = Reply::status(200);
        r.delay = Duration::from_millis(20);
        r
    });
    let hooks = rt.block_on(Receiver::start(slow)).unwrap();
    let endpoints = format!(
        "[[endpoints]]\nname = \"hr\"\nurl = \"{}\"\nevents = [\"user.created\"]\nconcurrency = 1\n",
        hooks.url("/")
    );
    let mut bridge = start_bridge(&c, &endpoints, "max_pending = 5");
    wait_streaming(&c, &bridge);
    for batch in 0..10 {
        c.psql(&format!(
            "INSERT INTO users (email) SELECT 'b' || g || '@example.com' FROM generate_series({}, {}) g",
            batch * 10 + 1,
            batch * 10 + 10
        ))
        .unwrap();
    }
    wait_for(&rt, &hooks, 100, 60, &bridge);
    std::thread::sleep(Duration::from_millis(300));
    let got = hooks.received();
    let distinct: BTreeSet<Vec<u8>> = got.iter().map(|r| r.body.clone()).collect();
    assert_eq!(distinct.len(), 100);
    assert_eq!(got.len(), 100, "nothing sent twice");
    let log = bridge.log();
    assert!(log.contains("outbox full: replication paused"), "{log}");
    assert!(log.contains("replication resumed"), "{log}");
    assert!(bridge.stop().success());
}

#[test]
fn teardown_refuses_while_webhooks_are_owed_and_drops_the_slot_when_forced() {
    let c = cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hooks = rt.block_on(Receiver::start(always(503))).unwrap();
    let endpoints = format!(
        "[[endpoints]]\nname = \"hr\"\nurl = \"{}\"\nevents = [\"user.created\"]\n",
        hooks.url("/")
    );
    let mut bridge = start_bridge(&c, &endpoints, "");
    wait_streaming(&c, &bridge);
    c.psql("INSERT INTO users (email) VALUES ('owed@example.com')")
        .unwrap();
    wait_for(&rt, &hooks, 1, 30, &bridge);

    let (ok, _, err) = bridge.cli(&["teardown"]);
    assert!(!ok && err.contains("the bridge is running"), "{err}");
    assert!(bridge.stop().success());

    let (ok, out, err) = bridge.cli(&["teardown"]);
    assert!(!ok, "{out}");
    assert!(err.contains("1 webhook(s) are still owed (hr: 1)"), "{err}");
    assert!(err.contains("hint: ") && err.contains("--force"), "{err}");
    let slots = || {
        c.psql("SELECT count(*) FROM pg_replication_slots")
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(slots(), "1");

    let (ok, out, err) = bridge.cli(&["teardown", "--force", "--drop-publication"]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "run: SELECT pg_drop_replication_slot('fuse_cdc_bridge');\n\
         note: 1 undelivered webhook(s) stay in the state directory; `run` would deliver them after `setup` re-creates the slot\n\
         run: DROP PUBLICATION \"fuse_cdc_bridge\";\n\
         teardown: done\n"
    );
    assert_eq!(slots(), "0");
    assert_eq!(
        c.psql("SELECT count(*) FROM pg_publication")
            .unwrap()
            .trim(),
        "0"
    );
    // Again: nothing left to do, and it says so.
    let (ok, out, _) = bridge.cli(&["teardown", "--force", "--drop-publication"]);
    assert!(ok);
    assert_eq!(
        out,
        "ok: replication slot \"fuse_cdc_bridge\" does not exist\n\
         ok: publication \"fuse_cdc_bridge\" does not exist\n\
         teardown: done\n"
    );
}

#[test]
fn run_waits_for_a_database_that_is_down_at_start() {
    let mut c = cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hooks = rt.block_on(Receiver::start(always(200))).unwrap();
    let endpoints = format!(
        "[[endpoints]]\nname = \"hr\"\nurl = \"{}\"\nevents = [\"user.created\"]\n",
        hooks.url("/")
    );
    c.stop(fuse_cdc_bridge::ephemeral::StopMode::Fast).unwrap();
    let mut bridge = start_bridge(&c, &endpoints, "");
    let start = Instant::now();
    while !bridge
        .log()
        .contains("cannot check the database yet; retrying")
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}",
            bridge.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        bridge.wait_exit(Duration::from_millis(100)).is_none(),
        "run gave up"
    );
    c.start_again().unwrap();
    wait_streaming(&c, &bridge);
    c.psql("INSERT INTO users (email) VALUES ('late@example.com')")
        .unwrap();
    wait_for(&rt, &hooks, 1, 30, &bridge);
    assert_eq!(hooks.received()[0].body, b"user_id=1");
    assert!(bridge.stop().success());
}
