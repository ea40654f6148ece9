//! The throwaway cluster with the reference schema, and backlogs of qualifying changes.

use std::time::Duration;

use fuse_cdc_bridge::ephemeral::{Cluster, ClusterOptions};
use fuse_cdc_bridge::Lsn;

use crate::sys::R;

pub const PUBLICATION: &str = "fuse_cdc_bridge";
pub const BRIDGE_SLOT: &str = "fuse_cdc_bridge";
pub const RECV_SLOT: &str = "bench_recvlogical";
const TABLES: &str =
    "users, learning_plans, learning_plan_enrollments, scorm_attempts, event_attendances";
/// Users that exist before the backlog, so updates and rows that reference users have targets.
const BASE_USERS: u64 = 1000;

/// Builds a backlog server-side, one COMMIT per transaction, so no client round trip slows it.
/// Transactions rotate through six kinds of change, each of which yields exactly one event:
/// user insert, user profile update, learning plan insert, completed enrolment, completed SCORM
/// attempt, attended event. Returns the WAL insert position just before the last COMMIT: every
/// commit whose end lies past it is the backlog's last (or later).
const BACKLOG_PROC: &str = r#"
CREATE OR REPLACE PROCEDURE bench_backlog(total bigint, per_txn int, INOUT before_last_commit pg_lsn DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
  g bigint := 0;
  n bigint;
  u bigint;
BEGIN
  WHILE g < total LOOP
    n := least(per_txn, total - g);
    CASE (g / per_txn) % 6
    WHEN 0 THEN
      INSERT INTO users (email, first_name, last_name)
        SELECT 'bench' || i || '@example.com', 'First' || i, 'Last' || i FROM generate_series(g, g + n - 1) i;
    WHEN 1 THEN
      u := g % 900 + 1;
      UPDATE users SET job_title = 'Title ' || g, updated_at = now() WHERE id BETWEEN u AND u + n - 1;
    WHEN 2 THEN
      INSERT INTO learning_plans (title) SELECT 'Plan ' || i FROM generate_series(g, g + n - 1) i;
    WHEN 3 THEN
      INSERT INTO learning_plan_enrollments (user_id, learning_plan_id, status, progress_percent, completed_at)
        SELECT i % 1000 + 1, i / 1000 + 1, 'completed', 100, now() FROM generate_series(g, g + n - 1) i;
    WHEN 4 THEN
      INSERT INTO scorm_attempts (user_id, content_id, completion_status, success_status, score_raw)
        SELECT i % 1000 + 1, i, 'completed', 'passed', 87.5 FROM generate_series(g, g + n - 1) i;
    ELSE
      INSERT INTO event_attendances (user_id, event_id, occurrence_id, status, marked_at)
        SELECT i % 1000 + 1, i / 10, i, 'attended', now() FROM generate_series(g, g + n - 1) i;
    END CASE;
    g := g + n;
    IF g >= total THEN
      before_last_commit := pg_current_wal_insert_lsn();
    END IF;
    COMMIT;
  END LOOP;
END $$;
"#;

pub struct Db {
    pub cluster: Cluster,
}

impl Db {
    pub fn start() -> R<Db> {
        let opts = ClusterOptions {
            // Generous: on a loaded 2-core machine a busy walsender must not time out a client.
            wal_sender_timeout: Duration::from_secs(60),
            extra_conf: vec![
                // No checkpoint in the middle of a backlog.
                ("max_wal_size".into(), "8GB".into()),
                ("checkpoint_timeout".into(), "1h".into()),
            ],
            ..ClusterOptions::default()
        };
        let cluster = Cluster::start(opts)?;
        let mut sql = String::from(fuse_cdc_bridge::demo::FUSE_SCHEMA);
        for table in TABLES.split(", ") {
            sql.push_str(&format!("ALTER TABLE {table} REPLICA IDENTITY FULL;\n"));
        }
        sql.push_str(&format!(
            "CREATE PUBLICATION {PUBLICATION} FOR TABLE {TABLES};\n"
        ));
        cluster.psql(&sql)?;
        cluster.psql(BACKLOG_PROC)?;
        Ok(Db { cluster })
    }

    pub fn url(&self) -> String {
        self.cluster.superuser_url()
    }

    /// Empty tables and no slots, then the rows a backlog of `events` refers to.
    pub fn reset(&self, events: u64) -> R<()> {
        self.cluster.psql(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE database = 'postgres'",
        )?;
        self.cluster
            .psql(&format!("TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))?;
        let plans = events / 1000 + 1;
        self.cluster.psql(&format!(
            "INSERT INTO users (email) SELECT 'base' || i || '@example.com' \
               FROM generate_series(1, {BASE_USERS}) i; \
             INSERT INTO learning_plans (title) SELECT 'Base ' || i FROM generate_series(1, {plans}) i"
        ))?;
        self.cluster.psql("CHECKPOINT")?;
        Ok(())
    }

    pub fn create_slot(&self, name: &str) -> R<()> {
        self.cluster.psql(&format!(
            "SELECT pg_create_logical_replication_slot('{name}', 'pgoutput')"
        ))?;
        Ok(())
    }

    /// `events` qualifying changes in transactions of `per_txn` rows; returns the position
    /// that only the backlog's last commit ends beyond.
    pub fn backlog(&self, events: u64, per_txn: u64) -> R<Lsn> {
        assert!(
            per_txn <= 100 || per_txn >= events,
            "updates touch at most 100 base users"
        );
        let out = self
            .cluster
            .psql(&format!("CALL bench_backlog({events}, {per_txn})"))?;
        Ok(out.trim().parse()?)
    }

    /// The slot's confirmed position, once a consumer confirmed anything.
    pub fn confirmed(&self, slot: &str) -> R<Option<Lsn>> {
        let out = self.cluster.psql(&format!(
            "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{slot}'"
        ))?;
        let text = out.trim();
        Ok(if text.is_empty() {
            None
        } else {
            Some(text.parse()?)
        })
    }

    pub fn slot_active(&self, slot: &str) -> R<bool> {
        let out = self.cluster.psql(&format!(
            "SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'"
        ))?;
        Ok(out.trim() == "t")
    }

    pub fn version(&self) -> String {
        self.cluster
            .psql("SHOW server_version")
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }
}
