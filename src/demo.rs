//! `demo`: a throwaway PostgreSQL with the reference Fuse schema, realistic activity, and the
//! bridge's capture showing each committed change as it arrives. Everything is removed on exit.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tracing::info;

use crate::capture::{self, CaptureSettings, Handler, Progress};
use crate::config::TableName;
use crate::ephemeral::{Cluster, ClusterOptions};
use crate::lsn::Lsn;
use crate::pg::admin::Admin;
use crate::pg::dsn::ConnectParams;
use crate::pgoutput::{pg_micros_to_system_time, Item, Transaction, Value};
use crate::store::{Outgoing, Store};
use crate::Error;

/// The reference schema, embedded so the demo runs from any directory.
pub const FUSE_SCHEMA: &str = include_str!("../sql/fuse_schema.sql");

const TABLES: &[&str] = &[
    "users",
    "learning_plans",
    "learning_plan_enrollments",
    "scorm_attempts",
    "event_attendances",
];

pub async fn run(
    duration: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    println!("Starting a throwaway PostgreSQL cluster…");
    let cluster = tokio::task::spawn_blocking(|| Cluster::start(ClusterOptions::default()))
        .await
        .map_err(|e| Error::definite(format!("the cluster start task failed: {e}"), None))??;
    let mut setup = String::from(FUSE_SCHEMA);
    for table in TABLES {
        setup.push_str(&format!("ALTER TABLE {table} REPLICA IDENTITY FULL;\n"));
    }
    cluster.psql(&setup)?;
    println!(
        "PostgreSQL {} on port {}, reference Fuse schema loaded.",
        cluster.bin_dir().display(),
        cluster.port()
    );

    let params = ConnectParams::parse(&cluster.superuser_url())?;
    let state =
        tempfile::tempdir().map_err(|e| Error::io("creating the demo state directory", e))?;
    let store = Store::open(state.path())?;
    let tables = TABLES.iter().map(|t| TableName::public(t)).collect();
    let settings =
        CaptureSettings::new(params.clone(), "fuse_cdc_bridge", "fuse_cdc_bridge", tables);

    let (progress_tx, progress_rx) = watch::channel(Progress::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let generator = tokio::spawn(generate_activity(params, stop_rx.clone()));
    // Ctrl-C or the end of --duration stops the generator and capture alike.
    tokio::spawn(async move {
        let deadline = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = deadline => {}
            _ = crate::capture::stopped(&mut shutdown) => {}
        }
        let _ = stop_tx.send(true);
    });
    let mut printer = Printer::default();
    let started = Instant::now();
    println!("Generating Fuse activity; each committed change is shown as the bridge captures it.");
    println!("Press Ctrl-C to stop.\n");
    let result = capture::run(&settings, &store, &mut printer, &progress_tx, stop_rx).await;
    generator.abort();
    printer.summary(started.elapsed(), progress_rx.borrow().flushed);
    info!("removing the demo cluster");
    drop(cluster);
    result
}

/// Prints each change on one readable line, with the delay from commit to capture.
#[derive(Default)]
struct Printer {
    counts: BTreeMap<String, u64>,
}

impl Handler for Printer {
    fn item(&mut self, txn: &Transaction, item: &Item) -> Result<(), Error> {
        let Item::Change(change) = item else {
            return Ok(());
        };
        let latency = pg_micros_to_system_time(txn.commit_time)
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map(|d| format!("{:>4} ms", d.as_millis()))
            .unwrap_or_default();
        let row = change.new.as_ref().or(change.old.as_ref());
        let fields: Vec<String> = row
            .map(|r| {
                r.iter()
                    .filter(|(name, _)| {
                        !matches!(
                            *name,
                            "created_at"
                                | "updated_at"
                                | "description"
                                | "suspend_data"
                                | "bio"
                                | "avatar_url"
                        )
                    })
                    .take(6)
                    .map(|(name, v)| format!("{name}={}", show(v)))
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "{latency}  {:<6} {:<26} {}",
            change.kind.as_str(),
            change.relation.name,
            fields.join(" ")
        );
        *self
            .counts
            .entry(format!("{} {}", change.kind.as_str(), change.relation.name))
            .or_default() += 1;
        Ok(())
    }

    fn commit(&mut self, _txn: &Transaction, _end_lsn: Lsn) -> Result<Vec<Outgoing>, Error> {
        Ok(Vec::new())
    }

    fn reset(&mut self) {}
}

impl Printer {
    fn summary(&self, elapsed: Duration, confirmed: Lsn) {
        println!(
            "\nSummary after {:.1} s (slot confirmed up to {confirmed}):",
            elapsed.as_secs_f64()
        );
        for (what, n) in &self.counts {
            println!("  {n:>6}  {what}");
        }
    }
}

/// Sign-ups, profile edits, sign-ins, plans, enrolments and completions, SCORM attempts and
/// attendance, a few per second.
async fn generate_activity(
    params: ConnectParams,
    mut stop: watch::Receiver<bool>,
) -> Result<(), Error> {
    let admin = Admin::connect(&params).await?;
    let db = admin.client();
    let steps: &[&str] = &[
        "INSERT INTO users (email, first_name, last_name, job_title, department) \
         SELECT 'learner' || n || '@example.com', (ARRAY['Ada','Grace','Alan','Edsger','Barbara'])[1 + n % 5], \
                (ARRAY['Lovelace','Hopper','Turing','Dijkstra','Liskov'])[1 + n % 5], 'Analyst', 'Finance' \
         FROM (SELECT coalesce(max(id), 0) + 1 AS n FROM users) s",
        "UPDATE users SET job_title = 'Senior ' || job_title, updated_at = now() \
         WHERE id = (SELECT max(id) FROM users)",
        "UPDATE users SET last_sign_in_at = now(), sign_in_count = sign_in_count + 1 \
         WHERE id = (SELECT min(id) FROM users)",
        "INSERT INTO learning_plans (title, created_by) \
         SELECT 'Compliance ' || (count(*) + 1), max(u.id) FROM learning_plans, users u",
        "INSERT INTO learning_plan_enrollments (user_id, learning_plan_id, status) \
         SELECT (SELECT max(id) FROM users), (SELECT max(id) FROM learning_plans), 'in_progress' \
         ON CONFLICT DO NOTHING",
        "UPDATE learning_plan_enrollments SET status = 'completed', completed_at = now(), progress_percent = 100 \
         WHERE id = (SELECT min(id) FROM learning_plan_enrollments WHERE status <> 'completed')",
        "INSERT INTO scorm_attempts (user_id, content_id) SELECT max(id), 4200 + max(id) FROM users",
        "UPDATE scorm_attempts SET completion_status = 'completed', success_status = 'passed', score_raw = 92.5 \
         WHERE id = (SELECT min(id) FROM scorm_attempts WHERE completion_status <> 'completed')",
        "INSERT INTO event_attendances (user_id, event_id, occurrence_id) \
         SELECT max(id), 77, 7700 + max(id) FROM users ON CONFLICT DO NOTHING",
        "UPDATE event_attendances SET status = 'attended', marked_at = now() \
         WHERE id = (SELECT min(id) FROM event_attendances WHERE status = 'registered')",
    ];
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut i = 0usize;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::capture::stopped(&mut stop) => return Ok(()),
        }
        let sql = steps[i % steps.len()];
        db.batch_execute(sql)
            .await
            .map_err(|e| Error::definite(format!("demo activity failed: {e}"), None))?;
        i += 1;
    }
}

fn show(value: &Value) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::UnchangedToast => "(unchanged)".into(),
        Value::Text(text) if text.chars().count() > 40 => {
            format!("{}…", text.chars().take(40).collect::<String>())
        }
        Value::Text(text) => text.clone(),
        Value::Binary(bytes) => format!("({} bytes)", bytes.len()),
    }
}
