//! Detection against a real PostgreSQL: capture runs with the [`Detector`], a workload changes
//! rows, and the events stored in the state directory are read back and compared exactly.
//!
//! Covers each of the six events and each change that must send nothing (reference schema), a
//! differently named schema configured without code changes (with a NULL parameter), and schema
//! changes while running: transparent ones, and a dropped rule column that stops capture before
//! the transaction is confirmed and is delivered once the config is fixed.

mod support;

use std::time::{Duration, Instant};

use tokio::sync::watch;

use fuse_cdc_bridge::capture::{self, CaptureSettings, Progress};
use fuse_cdc_bridge::config::{Config, EventType};
use fuse_cdc_bridge::detect::Detector;
use fuse_cdc_bridge::ephemeral::Cluster;
use fuse_cdc_bridge::event::{Event, EventId, EventParam};
use fuse_cdc_bridge::pg::admin::Admin;
use fuse_cdc_bridge::pg::dsn::ConnectParams;
use fuse_cdc_bridge::pgoutput::pg_micros_now;
use fuse_cdc_bridge::store::Store;
use fuse_cdc_bridge::{Error, Lsn};

const REFERENCE_TABLES: &str =
    "users, learning_plans, learning_plan_enrollments, scorm_attempts, event_attendances";

/// A cluster with the reference schema, REPLICA IDENTITY FULL and the publication.
fn reference_cluster() -> Cluster {
    let c = support::cluster();
    let mut sql = String::from(fuse_cdc_bridge::demo::FUSE_SCHEMA);
    for table in REFERENCE_TABLES.split(", ") {
        sql.push_str(&format!("ALTER TABLE {table} REPLICA IDENTITY FULL;\n"));
    }
    sql.push_str(&format!(
        "CREATE PUBLICATION fuse_cdc_bridge FOR TABLE {REFERENCE_TABLES};"
    ));
    c.psql(&sql).expect("reference schema");
    c
}

/// A config with one endpoint (required) and `events`, the `[events."…"]` sections.
fn config(events: &str) -> Config {
    let text = format!(
        r#"
[postgres]
url = "postgres://postgres@127.0.0.1:1/postgres"
[state]
dir = "/nonexistent"
[[endpoints]]
name = "x"
url = "http://127.0.0.1:9/"
{events}
"#
    );
    match Config::parse_str(&text, &|_| None) {
        Ok(c) => c,
        Err(e) => panic!("config: {e}\n{text}"),
    }
}

fn current_lsn(c: &Cluster) -> Lsn {
    c.psql("SELECT pg_current_wal_lsn()")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Capture with a [`Detector`], running on its own runtime.
struct Running {
    rt: tokio::runtime::Runtime,
    task: tokio::task::JoinHandle<Result<(), Error>>,
    stop: watch::Sender<bool>,
}

impl Running {
    /// Starts capture and waits until it streams (the slot exists from then on).
    fn start(c: &Cluster, config: &Config, store: &Store) -> Running {
        let params = ConnectParams::parse(&c.superuser_url()).unwrap();
        let mut settings = CaptureSettings::new(
            params,
            "fuse_cdc_bridge",
            "fuse_cdc_bridge",
            config.tables(),
        );
        settings.status_interval = Duration::from_millis(200);
        let mut detector = Detector::from_config(config);
        let (progress_tx, progress_rx) = watch::channel(Progress::default());
        let (stop, stop_rx) = watch::channel(false);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store = store.clone();
        let task = rt.spawn(async move {
            capture::run(&settings, &store, &mut detector, &progress_tx, stop_rx).await
        });
        let running = Running { rt, task, stop };
        running.wait("streaming", || progress_rx.borrow().connected);
        running
    }

    /// Polls `check`; panics after 30 s or if capture ended.
    fn wait(&self, what: &str, mut check: impl FnMut() -> bool) {
        let start = Instant::now();
        while !check() {
            assert!(!self.task.is_finished(), "capture ended waiting for {what}");
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the store's checkpoint passes the current WAL position: every transaction
    /// committed so far is handled and its events stored.
    fn catch_up(&self, c: &Cluster, store: &Store) {
        let target = current_lsn(c);
        self.wait(&format!("the checkpoint to pass {target}"), || {
            store
                .checkpoint()
                .unwrap()
                .is_some_and(|cp| cp.lsn >= target)
        });
    }

    fn stop(self) {
        self.stop.send(true).unwrap();
        self.rt.block_on(self.task).unwrap().unwrap();
    }

    /// Waits for capture to end on its own, with an error.
    fn failure(self) -> Error {
        let result = self
            .rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(30), self.task).await });
        match result {
            Ok(Ok(Err(e))) => e,
            other => panic!("expected capture to fail, got {other:?}"),
        }
    }
}

fn stored(store: &Store) -> Vec<(EventId, Event)> {
    store
        .pending("x", None)
        .map(|r| {
            let r = r.unwrap();
            assert_eq!(
                r.state.key,
                Event::from_bytes(&r.payload).unwrap().ordering_key()
            );
            (r.id, Event::from_bytes(&r.payload).unwrap())
        })
        .collect()
}

/// What the tests compare: event type, table and parameters.
type Seen = (EventType, String, Vec<EventParam>);

fn seen(events: &[(EventId, Event)]) -> Vec<Seen> {
    events
        .iter()
        .map(|(_, e)| (e.event_type, e.table.clone(), e.params.clone()))
        .collect()
}

/// `(name, column, value, integer)` per parameter.
fn ev(event_type: EventType, table: &str, params: &[(&str, &str, Option<&str>, bool)]) -> Seen {
    let params = params
        .iter()
        .map(|(name, column, value, integer)| EventParam {
            name: (*name).into(),
            value: value.map(Into::into),
            integer: *integer,
            column: (*column).into(),
        })
        .collect();
    (event_type, table.into(), params)
}

fn user_created(id: &str) -> Seen {
    ev(
        EventType::UserCreated,
        "public.users",
        &[("user_id", "id", Some(id), true)],
    )
}

fn user_updated(id: &str) -> Seen {
    ev(
        EventType::UserUpdated,
        "public.users",
        &[("user_id", "id", Some(id), true)],
    )
}

fn plan_created(id: &str) -> Seen {
    ev(
        EventType::LearningPlanCreated,
        "public.learning_plans",
        &[("learning_plan_id", "id", Some(id), true)],
    )
}

fn plan_completed(user: &str, plan: &str) -> Seen {
    ev(
        EventType::LearningPlanCompleted,
        "public.learning_plan_enrollments",
        &[
            ("user_id", "user_id", Some(user), true),
            ("learning_plan_id", "learning_plan_id", Some(plan), true),
        ],
    )
}

fn attendance(status: &str) -> Seen {
    ev(
        EventType::EventAttendanceUpdated,
        "public.event_attendances",
        &[
            ("user_id", "user_id", Some("2"), true),
            ("event_id", "event_id", Some("40"), true),
            ("occurrence_id", "occurrence_id", Some("41"), true),
            ("status", "status", Some(status), false),
        ],
    )
}

#[test]
fn reference_schema_sends_each_event_once_and_nothing_else() {
    let c = reference_cluster();
    let state = tempfile::tempdir().unwrap();
    let store = Store::open(state.path()).unwrap();
    let config = config("");
    let run = Running::start(&c, &config, &store);
    let started = pg_micros_now();
    let sql = |s: &str| {
        c.psql(s).unwrap_or_else(|e| panic!("{e}"));
    };

    sql("INSERT INTO users (id, email, first_name, last_name) VALUES (1, 'ada@example.com', 'Ada', 'Byron')");
    sql("INSERT INTO users (id, email) VALUES (2, 'alan@example.com')");
    // Commit order, not start order: user 3's transaction begins first and commits last.
    run.rt.block_on(async {
        let params = ConnectParams::parse(&c.superuser_url()).unwrap();
        let a = Admin::connect(&params).await.unwrap();
        let b = Admin::connect(&params).await.unwrap();
        a.client()
            .batch_execute("BEGIN; INSERT INTO users (id, email) VALUES (3, 'c@example.com')")
            .await
            .unwrap();
        b.client()
            .batch_execute("INSERT INTO users (id, email) VALUES (4, 'd@example.com')")
            .await
            .unwrap();
        a.client().batch_execute("COMMIT").await.unwrap();
    });
    sql("UPDATE users SET last_name = 'Lovelace' WHERE id = 1");
    // Silent: a no-op update, the same value again, bookkeeping columns only.
    sql("UPDATE users SET email = email, first_name = first_name WHERE id = 1");
    sql("UPDATE users SET last_name = 'Lovelace' WHERE id = 1");
    sql(
        "UPDATE users SET updated_at = now() + interval '1 hour', last_sign_in_at = now(), \
         sign_in_count = sign_in_count + 1 WHERE id = 1",
    );
    sql("INSERT INTO learning_plans (id, title, created_by) VALUES (10, 'Onboarding', 1)");
    // Inserted already completed.
    sql("INSERT INTO learning_plan_enrollments (id, user_id, learning_plan_id, status, progress_percent) \
         VALUES (100, 1, 10, 'completed', 100)");
    // not_started -> in_progress is silent; in_progress -> completed fires; completed again is
    // silent.
    sql(
        "INSERT INTO learning_plan_enrollments (id, user_id, learning_plan_id) VALUES (101, 2, 10)",
    );
    sql("UPDATE learning_plan_enrollments SET status = 'in_progress', progress_percent = 40 WHERE id = 101");
    sql(
        "UPDATE learning_plan_enrollments SET status = 'completed', progress_percent = 100, \
         completed_at = now() WHERE id = 101",
    );
    sql("UPDATE learning_plan_enrollments SET progress_percent = 99, updated_at = now() WHERE id = 101");
    sql("INSERT INTO scorm_attempts (id, user_id, content_id) VALUES (200, 1, 500)");
    sql(
        "UPDATE scorm_attempts SET completion_status = 'completed', success_status = 'passed', \
         score_raw = 92.5 WHERE id = 200",
    );
    sql("UPDATE scorm_attempts SET score_raw = 95 WHERE id = 200");
    sql("INSERT INTO event_attendances (id, user_id, event_id, occurrence_id) VALUES (300, 2, 40, 41)");
    sql("UPDATE event_attendances SET status = 'attended', marked_by = 1, marked_at = now() WHERE id = 300");
    sql("UPDATE event_attendances SET status = 'not_attended' WHERE id = 300");
    sql("UPDATE event_attendances SET marked_at = now() WHERE id = 300");
    sql("UPDATE event_attendances SET status = 'cancelled' WHERE id = 300");
    sql(
        "BEGIN; INSERT INTO users (id, email) VALUES (9, 'ghost@example.com'); \
         INSERT INTO learning_plan_enrollments (id, user_id, learning_plan_id, status) \
         VALUES (109, 9, 10, 'completed'); ROLLBACK;",
    );
    // One transaction, two events.
    sql(
        "BEGIN; INSERT INTO users (id, email) VALUES (5, 'grace@example.com'); \
         INSERT INTO learning_plan_enrollments (id, user_id, learning_plan_id, status) \
         VALUES (102, 5, 10, 'completed'); COMMIT;",
    );
    run.catch_up(&c, &store);
    run.stop();

    let events = stored(&store);
    let expected = vec![
        user_created("1"),
        user_created("2"),
        user_created("4"),
        user_created("3"),
        user_updated("1"),
        plan_created("10"),
        plan_completed("1", "10"),
        plan_completed("2", "10"),
        ev(
            EventType::ScormCompleted,
            "public.scorm_attempts",
            &[
                ("user_id", "user_id", Some("1"), true),
                ("content_id", "content_id", Some("500"), true),
            ],
        ),
        attendance("attended"),
        attendance("not_attended"),
        user_created("5"),
        plan_completed("5", "10"),
    ];
    assert_eq!(seen(&events), expected);

    // One record per event, keyed by commit: the last transaction's two events share its LSN.
    let ids: Vec<EventId> = events.iter().map(|(id, _)| *id).collect();
    let n = ids.len();
    assert_eq!(ids[n - 2].commit_lsn, ids[n - 1].commit_lsn);
    assert_eq!((ids[n - 2].ordinal, ids[n - 1].ordinal), (0, 1));
    assert!(ids[..n - 1]
        .windows(2)
        .all(|w| w[0].commit_lsn < w[1].commit_lsn));
    assert!(ids[..n - 1].iter().all(|id| id.ordinal == 0));
    // Commit times are this run's, in commit order.
    let times: Vec<i64> = events.iter().map(|(_, e)| e.commit_time).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert!(
        times[0] >= started - 5_000_000 && times[n - 1] <= pg_micros_now(),
        "{times:?}"
    );
}

const HR_SCHEMA: &str = "
CREATE SCHEMA hr;
CREATE TABLE hr.people (person_no integer PRIMARY KEY, mail text, display_name text, last_seen timestamptz);
CREATE TABLE hr.curricula (curriculum_code text PRIMARY KEY, title text);
CREATE TABLE hr.curriculum_progress (learner integer, curriculum_code text, phase text,
    PRIMARY KEY (learner, curriculum_code));
CREATE TABLE hr.package_runs (run_id bigint PRIMARY KEY, learner integer, package smallint, outcome text);
CREATE TABLE hr.session_presence (id serial PRIMARY KEY, learner integer, course_event text,
    session_no smallint, mark text);
ALTER TABLE hr.people REPLICA IDENTITY FULL;
ALTER TABLE hr.curricula REPLICA IDENTITY FULL;
ALTER TABLE hr.curriculum_progress REPLICA IDENTITY FULL;
ALTER TABLE hr.package_runs REPLICA IDENTITY FULL;
ALTER TABLE hr.session_presence REPLICA IDENTITY FULL;
CREATE TABLE public.users (id bigint PRIMARY KEY, email text);
CREATE PUBLICATION fuse_cdc_bridge FOR TABLE hr.people, hr.curricula, hr.curriculum_progress,
    hr.package_runs, hr.session_presence, public.users;
";

const HR_EVENTS: &str = r#"
[events."user.created"]
table = "hr.people"
params = { user_id = "person_no" }

[events."user.updated"]
table = "hr.people"
changed = ["mail", "display_name"]
params = { user_id = "person_no" }

[events."learning_plan.created"]
table = "hr.curricula"
params = { learning_plan_id = "curriculum_code" }

[events."learning_plan.completed"]
table = "hr.curriculum_progress"
becomes = { column = "phase", values = ["done"] }
params = { user_id = "learner", learning_plan_id = "curriculum_code" }

[events."scorm.completed"]
table = "hr.package_runs"
becomes = { column = "outcome", values = ["done"] }
params = { user_id = "learner", content_id = "package" }

[events."event_attendance.updated"]
table = "hr.session_presence"
becomes = { column = "mark", values = ["present", "absent"] }
params = { status = "mark", user_id = "learner", event_id = "course_event", occurrence_id = "session_no" }
"#;

#[test]
fn a_differently_named_schema_needs_only_configuration() {
    let c = support::cluster();
    c.psql(HR_SCHEMA).expect("hr schema");
    let state = tempfile::tempdir().unwrap();
    let store = Store::open(state.path()).unwrap();
    let run = Running::start(&c, &config(HR_EVENTS), &store);
    let sql = |s: &str| {
        c.psql(s).unwrap_or_else(|e| panic!("{e}"));
    };

    sql("INSERT INTO hr.people VALUES (7, 'kim@example.com', 'Kim', NULL)");
    // The reference table is published but no rule reads it any more.
    sql("INSERT INTO public.users VALUES (1, 'nobody@example.com')");
    sql("UPDATE hr.people SET last_seen = now() WHERE person_no = 7");
    sql("UPDATE hr.people SET display_name = 'Kim L.' WHERE person_no = 7");
    sql("INSERT INTO hr.curricula VALUES ('SAFETY-1', 'Safety')");
    sql("INSERT INTO hr.curriculum_progress VALUES (7, 'SAFETY-1', 'started')");
    sql("UPDATE hr.curriculum_progress SET phase = 'done' WHERE learner = 7");
    sql("UPDATE hr.curriculum_progress SET phase = 'done' WHERE learner = 7");
    sql("INSERT INTO hr.package_runs VALUES (1, 7, 12, 'done')");
    sql(
        "INSERT INTO hr.session_presence (learner, course_event, session_no, mark) \
         VALUES (7, 'EV-9', 3, 'invited')",
    );
    sql("UPDATE hr.session_presence SET mark = 'present' WHERE learner = 7");
    sql("UPDATE hr.session_presence SET mark = 'completed' WHERE learner = 7");
    // A NULL parameter column: the event is stored with no value for it, and delivery
    // dead-letters it naming the column rather than send an empty value.
    sql(
        "INSERT INTO hr.session_presence (learner, course_event, session_no, mark) \
         VALUES (8, 'EV-9', NULL, 'absent')",
    );
    run.catch_up(&c, &store);
    run.stop();

    let presence = |learner: &str, session: Option<&str>, mark: &str| {
        ev(
            EventType::EventAttendanceUpdated,
            "hr.session_presence",
            &[
                ("status", "mark", Some(mark), false),
                ("user_id", "learner", Some(learner), true),
                ("event_id", "course_event", Some("EV-9"), false),
                ("occurrence_id", "session_no", session, true),
            ],
        )
    };
    let events = stored(&store);
    let expected = vec![
        ev(
            EventType::UserCreated,
            "hr.people",
            &[("user_id", "person_no", Some("7"), true)],
        ),
        ev(
            EventType::UserUpdated,
            "hr.people",
            &[("user_id", "person_no", Some("7"), true)],
        ),
        ev(
            EventType::LearningPlanCreated,
            "hr.curricula",
            &[(
                "learning_plan_id",
                "curriculum_code",
                Some("SAFETY-1"),
                false,
            )],
        ),
        ev(
            EventType::LearningPlanCompleted,
            "hr.curriculum_progress",
            &[
                ("user_id", "learner", Some("7"), true),
                (
                    "learning_plan_id",
                    "curriculum_code",
                    Some("SAFETY-1"),
                    false,
                ),
            ],
        ),
        ev(
            EventType::ScormCompleted,
            "hr.package_runs",
            &[
                ("user_id", "learner", Some("7"), true),
                ("content_id", "package", Some("12"), true),
            ],
        ),
        presence("7", Some("3"), "present"),
        presence("8", None, "absent"),
    ];
    assert_eq!(seen(&events), expected);
    let last = &events[events.len() - 1].1;
    assert_eq!(
        last.missing_param().map(|p| p.column.as_str()),
        Some("session_no")
    );
    assert_eq!(last.ordering_key(), "user_id=8");
}

fn slot_state(c: &Cluster) -> (bool, Lsn) {
    let out = c
        .psql("SELECT active, confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'fuse_cdc_bridge'")
        .unwrap();
    let (active, lsn) = out.trim().split_once('|').unwrap();
    (active == "t", lsn.parse().unwrap())
}

#[test]
fn schema_changes_are_transparent_unless_a_rule_column_goes() {
    let c = reference_cluster();
    let state = tempfile::tempdir().unwrap();
    let store = Store::open(state.path()).unwrap();
    let run = Running::start(&c, &config(""), &store);
    let sql = |s: &str| {
        c.psql(s).unwrap_or_else(|e| panic!("{e}"));
    };

    sql("INSERT INTO users (id, email, first_name, last_name) VALUES (1, 'ada@example.com', 'Ada', 'Byron')");
    // A new column: the table is described afresh, nothing else changes.
    sql("ALTER TABLE users ADD COLUMN nickname text");
    sql("UPDATE users SET nickname = 'Countess' WHERE id = 1");
    sql("UPDATE users SET nickname = 'A', first_name = 'Augusta' WHERE id = 1");
    // Dropping a column no rule reads.
    sql("ALTER TABLE users DROP COLUMN bio");
    sql("UPDATE users SET email = 'ada@lovelace.example' WHERE id = 1");
    sql("INSERT INTO users (id, email, nickname) VALUES (2, 'alan@example.com', 'Alan')");
    run.catch_up(&c, &store);
    assert_eq!(
        seen(&stored(&store)),
        vec![
            user_created("1"),
            user_updated("1"),
            user_updated("1"),
            user_created("2")
        ]
    );

    // Dropping a column user.updated reads: the next change to users stops capture.
    sql("ALTER TABLE users DROP COLUMN last_name");
    sql("INSERT INTO learning_plans (id, title) VALUES (10, 'Before')");
    let xid = c
        .psql("BEGIN; UPDATE users SET first_name = 'Ada' WHERE id = 1; SELECT txid_current(); COMMIT;")
        .unwrap()
        .trim()
        .to_owned();
    sql("INSERT INTO learning_plans (id, title) VALUES (11, 'After')");
    let error = run.failure();
    assert!(matches!(error, Error::Definite { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "the rule for \"user.updated\" reads column \"last_name\" of public.users, which the \
         table no longer has (dropped or renamed)"
    );
    assert_eq!(
        error.hint().as_deref(),
        Some("restore the column or change [events.\"user.updated\"] in the config, then restart")
    );

    // Nothing of the failing transaction is stored or confirmed: the slot still holds it.
    let start = Instant::now();
    while slot_state(&c).0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the slot stays active"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, confirmed) = slot_state(&c);
    let pending = c
        .psql(&format!(
            "SELECT count(*), max(lsn) FROM pg_logical_slot_peek_binary_changes('fuse_cdc_bridge', \
             NULL, NULL, 'proto_version', '1', 'publication_names', 'fuse_cdc_bridge') \
             WHERE xid::text = '{xid}'"
        ))
        .unwrap();
    let (count, end) = pending.trim().split_once('|').unwrap();
    assert!(
        count.parse::<u32>().unwrap() >= 3,
        "begin, change, commit: {pending}"
    );
    let end: Lsn = end.parse().unwrap();
    assert!(
        confirmed < end,
        "confirmed {confirmed} passed the failing commit ({end})"
    );
    assert!(store.checkpoint().unwrap().unwrap().lsn < end);
    assert_eq!(
        seen(&stored(&store)),
        vec![
            user_created("1"),
            user_updated("1"),
            user_updated("1"),
            user_created("2"),
            plan_created("10"),
        ]
    );

    // Fixed config, restart: the change is delivered, and what followed it.
    let fixed = config(
        r#"
[events."user.updated"]
changed = ["email", "first_name", "job_title", "department", "locale"]
"#,
    );
    let run = Running::start(&c, &fixed, &store);
    run.catch_up(&c, &store);
    run.stop();
    let events = stored(&store);
    assert_eq!(
        seen(&events),
        vec![
            user_created("1"),
            user_updated("1"),
            user_updated("1"),
            user_created("2"),
            plan_created("10"),
            user_updated("1"),
            plan_created("11"),
        ]
    );
    assert!(events[5].0.commit_lsn < end);
}
