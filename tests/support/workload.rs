//! A mixed workload on the reference schema: every round commits all six event types over three
//! transactions, plus a bookkeeping update that must send nothing, a rolled-back transaction
//! every fifth round and a bulk transaction of 1 100 users (more than capture's staging chunk of
//! 1 024) every 25th. What each round must deliver is known exactly.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::bridge::{expect, Content};

/// Users a bulk round inserts in one transaction.
pub const BULK: usize = 1100;
/// Every this many rounds, one bulk transaction.
pub const BULK_EVERY: usize = 25;

fn bulk_ids(r: usize) -> std::ops::RangeInclusive<usize> {
    let first = 1_000_000 + r * 2000;
    first..=first + BULK - 1
}

/// Round `r`'s transactions (each one string of statements), `r` from 1.
pub fn round(r: usize) -> Vec<String> {
    let u = r * 10;
    let mut txns = vec![
        format!(
            "INSERT INTO users (id, email, first_name) VALUES \
               ({a}, 'u{a}@example.com', 'A'), ({b}, 'u{b}@example.com', 'B'), ({c}, 'u{c}@example.com', 'C');
             INSERT INTO learning_plans (id, title) VALUES ({r}, 'plan {r}');",
            a = u + 1,
            b = u + 2,
            c = u + 3
        ),
        format!(
            "UPDATE users SET job_title = 'title {r}' WHERE id = {prev};
             INSERT INTO learning_plan_enrollments (user_id, learning_plan_id, status) VALUES ({a}, {r}, 'in_progress');",
            prev = if r > 1 { u - 9 } else { 0 },
            a = u + 1
        ),
        format!(
            "UPDATE learning_plan_enrollments SET status = 'completed' WHERE user_id = {a} AND learning_plan_id = {r};
             UPDATE users SET sign_in_count = sign_in_count + 1, last_sign_in_at = now() WHERE id = {a};
             INSERT INTO scorm_attempts (user_id, content_id, completion_status) VALUES ({b}, {content}, 'completed');
             INSERT INTO event_attendances (user_id, event_id, occurrence_id) VALUES ({c}, 77, {r});
             UPDATE event_attendances SET status = 'attended' WHERE user_id = {c} AND occurrence_id = {r};",
            a = u + 1,
            b = u + 2,
            c = u + 3,
            content = 5000 + r
        ),
    ];
    if r % 5 == 0 {
        txns.push(format!(
            "INSERT INTO users (id, email) VALUES ({}, 'ghost{r}@example.com');
             UPDATE learning_plan_enrollments SET status = 'not_started' WHERE learning_plan_id = {r};
             SELECT 1/0;",
            u + 4
        ));
    }
    if r % BULK_EVERY == 0 {
        let ids = bulk_ids(r);
        txns.push(format!(
            "INSERT INTO users (id, email) SELECT g, 'bulk' || g || '@example.com' FROM generate_series({}, {}) g;",
            ids.start(),
            ids.end()
        ));
    }
    txns
}

/// Whether `round`'s transaction `n` is meant to fail (and so to send nothing).
pub fn meant_to_fail(sql: &str) -> bool {
    sql.contains("SELECT 1/0")
}

/// The events (as a form endpoint subscribed to all six types receives them) of rounds
/// `1..=rounds`.
pub fn expected(rounds: usize) -> BTreeMap<Content, usize> {
    let mut e = BTreeMap::new();
    for r in 1..=rounds {
        let u = r * 10;
        for id in u + 1..=u + 3 {
            expect(&mut e, "user.created", format!("user_id={id}"));
        }
        expect(
            &mut e,
            "learning_plan.created",
            format!("learning_plan_id={r}"),
        );
        if r > 1 {
            expect(&mut e, "user.updated", format!("user_id={}", u - 9));
        }
        expect(
            &mut e,
            "learning_plan.completed",
            format!("user_id={}&learning_plan_id={r}", u + 1),
        );
        expect(
            &mut e,
            "scorm.completed",
            format!("user_id={}&content_id={}", u + 2, 5000 + r),
        );
        expect(
            &mut e,
            "event_attendance.updated",
            format!(
                "user_id={}&event_id=77&occurrence_id={r}&status=attended",
                u + 3
            ),
        );
        if r % BULK_EVERY == 0 {
            for id in bulk_ids(r) {
                expect(&mut e, "user.created", format!("user_id={id}"));
            }
        }
    }
    e
}

/// Runs rounds `from..=to` through psql, one call per transaction.
pub fn run_rounds(c: &fuse_cdc_bridge::ephemeral::Cluster, from: usize, to: usize) {
    for r in from..=to {
        for sql in round(r) {
            let result = c.psql(&sql);
            assert_eq!(
                result.is_err(),
                meant_to_fail(&sql),
                "round {r}: {result:?}"
            );
        }
    }
}

/// Rounds committed continuously on a thread of their own until stopped.
pub struct Writer {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    handle: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts at round 1, pausing `pause` between rounds.
    pub fn start(url: &str, pause: Duration) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let (stop_flag, progress, url) = (Arc::clone(&stop), Arc::clone(&done), url.to_string());
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let params = fuse_cdc_bridge::pg::dsn::ConnectParams::parse(&url).unwrap();
                let admin = fuse_cdc_bridge::pg::admin::Admin::connect(&params)
                    .await
                    .unwrap();
                let mut r = 1;
                while !stop_flag.load(Ordering::SeqCst) {
                    for sql in round(r) {
                        let result = admin
                            .client()
                            .batch_execute(&format!("BEGIN; {sql} COMMIT;"))
                            .await;
                        if result.is_err() {
                            assert!(meant_to_fail(&sql), "round {r}: {result:?}");
                            admin.client().batch_execute("ROLLBACK").await.unwrap();
                        }
                    }
                    progress.store(r, Ordering::SeqCst);
                    r += 1;
                    tokio::time::sleep(pause).await;
                }
            });
        });
        Writer {
            stop,
            done,
            handle: Some(handle),
        }
    }

    /// Rounds committed so far.
    pub fn rounds(&self) -> usize {
        self.done.load(Ordering::SeqCst)
    }

    /// Stops after the round in progress; returns how many rounds committed.
    pub fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
        self.rounds()
    }
}
