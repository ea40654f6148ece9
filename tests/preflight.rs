//! `check` and `setup` against real clusters: what an operator sees, exactly.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use fuse_cdc_bridge::config::Config;
use fuse_cdc_bridge::ephemeral::{Cluster, ClusterOptions, StopMode};
use fuse_cdc_bridge::preflight;

const BIN: &str = env!("CARGO_BIN_EXE_fuse-cdc-bridge");

const PUBLICATION_SQL: &str = "CREATE PUBLICATION \"fuse_cdc_bridge\" FOR TABLE \
     \"public\".\"users\", \"public\".\"learning_plans\", \"public\".\"learning_plan_enrollments\", \
     \"public\".\"scorm_attempts\", \"public\".\"event_attendances\";";
const SLOT_SQL: &str = "SELECT pg_create_logical_replication_slot('fuse_cdc_bridge', 'pgoutput');";

/// The four replica identity warnings of the reference schema, as printed.
const REPLICA_IDENTITY_WARNINGS: &str = "\
WARNING the table public.users has REPLICA IDENTITY DEFAULT, so its updates carry no old values: user.updated cannot tell which columns changed and fires on every update
        fix: ALTER TABLE \"public\".\"users\" REPLICA IDENTITY FULL;
WARNING the table public.learning_plan_enrollments has REPLICA IDENTITY DEFAULT, so its updates carry no old values: learning_plan.completed cannot tell whether status already was completed and fires on every update of such a row
        fix: ALTER TABLE \"public\".\"learning_plan_enrollments\" REPLICA IDENTITY FULL;
WARNING the table public.scorm_attempts has REPLICA IDENTITY DEFAULT, so its updates carry no old values: scorm.completed cannot tell whether completion_status already was completed and fires on every update of such a row
        fix: ALTER TABLE \"public\".\"scorm_attempts\" REPLICA IDENTITY FULL;
WARNING the table public.event_attendances has REPLICA IDENTITY DEFAULT, so its updates carry no old values: event_attendance.updated cannot tell whether status already was attended or not_attended and fires on every update of such a row
        fix: ALTER TABLE \"public\".\"event_attendances\" REPLICA IDENTITY FULL;
";

fn publication_warning() -> String {
    format!(
        "WARNING the publication fuse_cdc_bridge does not exist (setup or run creates it; until \
         then no change is captured)\n        fix: {PUBLICATION_SQL}\n"
    )
}

fn slot_warning() -> String {
    format!(
        "WARNING the replication slot fuse_cdc_bridge does not exist (setup or run creates it; \
         changes committed before it exists produce no webhooks)\n        fix: {SLOT_SQL}\n"
    )
}

fn write_config(dir: &Path, url: &str, events: &str) -> PathBuf {
    let path = dir.join("bridge.toml");
    let text = format!(
        "[postgres]\nurl = \"{url}\"\n\n[state]\ndir = \"{}\"\n\n[[endpoints]]\nname = \"x\"\n\
         url = \"http://127.0.0.1:9/\"\n\n{events}",
        dir.join("state").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the binary with `--config`; returns (exit code, stdout, stderr).
fn bridge(args: &[&str], config: &Path) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The PROBLEM/WARNING lines of `check`'s output, each with its fix lines.
fn problem_blocks(stdout: &str, words: &[&str]) -> String {
    let mut out = String::new();
    let mut keep = false;
    for line in stdout.lines() {
        if !line.starts_with("        ") {
            keep = words.iter().any(|w| line.starts_with(&format!("{w} ")));
        }
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn last_line(stdout: &str) -> &str {
    stdout.lines().last().unwrap_or_default()
}

fn with_schema(opts: ClusterOptions) -> Cluster {
    let c = support::cluster_with(opts);
    c.psql(include_str!("../sql/fuse_schema.sql")).unwrap();
    c
}

fn replica_identities(c: &Cluster) -> String {
    c.psql(
        "SELECT string_agg(relname || '=' || relreplident::text, ' ' ORDER BY relname) FROM pg_class \
         WHERE relname IN ('users', 'learning_plans', 'learning_plan_enrollments', \
         'scorm_attempts', 'event_attendances')",
    )
    .unwrap()
    .trim()
    .to_string()
}

fn counts(c: &Cluster) -> String {
    c.psql(
        "SELECT (SELECT count(*) FROM pg_publication) || ' publications, ' || \
                (SELECT count(*) FROM pg_replication_slots) || ' slots'",
    )
    .unwrap()
    .trim()
    .to_string()
}

#[test]
fn check_on_a_fresh_database_lists_every_missing_prerequisite_with_its_fix() {
    let c = with_schema(ClusterOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &c.superuser_url(), "");

    let (code, out, err) = bridge(&["check"], &config);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(
        problem_blocks(&out, &["PROBLEM", "WARNING"]),
        format!(
            "{REPLICA_IDENTITY_WARNINGS}{}{}",
            publication_warning(),
            slot_warning()
        )
    );
    assert!(out.contains("\nok      wal_level is logical\n"), "{out}");
    assert_eq!(
        last_line(&out),
        "not ready: no definite problems, 6 warnings; `fuse-cdc-bridge setup` applies the fixes \
         it can"
    );

    let (code, out, _) = bridge(&["check", "--json"], &config);
    assert_eq!(code, 1);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["ready"], false);
    let kinds: Vec<String> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] == "problem")
        .map(|f| {
            format!(
                "{}/{}",
                f["check"].as_str().unwrap(),
                f["severity"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "replica_identity/warning",
            "replica_identity/warning",
            "replica_identity/warning",
            "replica_identity/warning",
            "publication/warning",
            "slot/warning",
        ]
    );
}

#[test]
fn setup_dry_run_changes_nothing_setup_fixes_everything_and_a_second_run_does_nothing() {
    let c = with_schema(ClusterOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &c.superuser_url(), "");
    let untouched = "event_attendances=d learning_plan_enrollments=d learning_plans=d \
                     scorm_attempts=d users=d";

    let (code, out, err) = bridge(&["setup", "--dry-run", "--replica-identity-full"], &config);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        format!(
            "would run: ALTER TABLE \"public\".\"users\" REPLICA IDENTITY FULL;\n\
             would run: ALTER TABLE \"public\".\"learning_plan_enrollments\" REPLICA IDENTITY FULL;\n\
             would run: ALTER TABLE \"public\".\"scorm_attempts\" REPLICA IDENTITY FULL;\n\
             would run: ALTER TABLE \"public\".\"event_attendances\" REPLICA IDENTITY FULL;\n\
             would run: {PUBLICATION_SQL}\n\
             would run: {SLOT_SQL}\n\
             setup: dry run: 6 statements would run, nothing was changed\n"
        )
    );
    assert_eq!(counts(&c), "0 publications, 0 slots");
    assert_eq!(replica_identities(&c), untouched);

    // Without the flag, replica identity is only suggested, and that is not a failure.
    let (code, out, err) = bridge(&["setup"], &config);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        format!(
            "run: {PUBLICATION_SQL}\nrun: {SLOT_SQL}\n{REPLICA_IDENTITY_WARNINGS}\
             setup: ran 2 statements; 4 tables lack REPLICA IDENTITY FULL: `setup \
             --replica-identity-full` sets it\n"
        )
    );
    assert_eq!(counts(&c), "1 publications, 1 slots");
    assert_eq!(replica_identities(&c), untouched);

    let (code, out, err) = bridge(&["setup", "--replica-identity-full"], &config);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        "run: ALTER TABLE \"public\".\"users\" REPLICA IDENTITY FULL;\n\
         run: ALTER TABLE \"public\".\"learning_plan_enrollments\" REPLICA IDENTITY FULL;\n\
         run: ALTER TABLE \"public\".\"scorm_attempts\" REPLICA IDENTITY FULL;\n\
         run: ALTER TABLE \"public\".\"event_attendances\" REPLICA IDENTITY FULL;\n\
         setup: ran 4 statements; nothing left to fix\n"
    );
    assert_eq!(
        replica_identities(&c),
        "event_attendances=f learning_plan_enrollments=f learning_plans=d scorm_attempts=f \
         users=f"
    );

    let (code, out, err) = bridge(&["check"], &config);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(problem_blocks(&out, &["PROBLEM", "WARNING"]), "");
    assert_eq!(last_line(&out), "ready: no problems found");
    assert!(
        out.contains("\nok      the publication fuse_cdc_bridge covers every rule table\n"),
        "{out}"
    );

    let (code, out, err) = bridge(&["setup", "--replica-identity-full"], &config);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        "setup: nothing to do: everything setup manages is already in place\n"
    );
    assert_eq!(counts(&c), "1 publications, 1 slots");
    assert_eq!(
        c.psql("SELECT plugin FROM pg_replication_slots WHERE slot_name = 'fuse_cdc_bridge'")
            .unwrap()
            .trim(),
        "pgoutput"
    );
}

#[test]
fn wal_level_replica_is_definite_with_the_alter_system_fix_and_setup_leaves_the_slot() {
    let mut c = with_schema(ClusterOptions {
        extra_conf: vec![("wal_level".into(), "replica".into())],
        ..ClusterOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &c.superuser_url(), "");
    let wal_level = "PROBLEM wal_level is replica, but logical replication needs logical\n        \
                     fix: ALTER SYSTEM SET wal_level = logical;\n        \
                     fix: restart PostgreSQL (this setting only changes at server start)\n";

    let (code, out, err) = bridge(&["check"], &config);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(problem_blocks(&out, &["PROBLEM"]), wal_level);
    assert_eq!(
        last_line(&out),
        "not ready: 1 definite problem, 6 warnings; `fuse-cdc-bridge setup` applies the fixes it \
         can"
    );

    // A slot cannot be created before wal_level is logical: setup makes the publication only.
    let (code, out, err) = bridge(&["setup"], &config);
    assert_eq!(code, 1, "{out}{err}");
    let slot_warning = slot_warning();
    assert_eq!(
        out,
        format!(
            "run: {PUBLICATION_SQL}\n{wal_level}{slot_warning}{REPLICA_IDENTITY_WARNINGS}\
             setup: ran 1 statement; 2 problems remain: fix as shown above, then run setup \
             again; 4 tables lack REPLICA IDENTITY FULL: `setup --replica-identity-full` sets it\n"
        )
    );
    assert_eq!(counts(&c), "1 publications, 0 slots");

    // The printed fix works.
    c.psql("ALTER SYSTEM SET wal_level = logical;").unwrap();
    c.stop(StopMode::Fast).unwrap();
    c.start_again().unwrap();
    let (code, out, err) = bridge(&["setup", "--replica-identity-full"], &config);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        last_line(&out),
        "setup: ran 5 statements; nothing left to fix"
    );
}

#[test]
fn a_rule_naming_a_missing_column_is_definite_and_names_the_key_table_and_column() {
    let c = with_schema(ClusterOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &c.superuser_url(),
        "[events.\"user.updated\"]\nchanged = [\"email\", \"nickname\"]\n",
    );
    let message = "the table public.users has no column \"nickname\" \
                   (events.\"user.updated\".changed)";
    let block = format!(
        "PROBLEM {message}\n        fix: edit events.\"user.updated\".changed in the config \
         file; public.users has the columns id, email, first_name, last_name, job_title, \
         department, locale, avatar_url, bio, sign_in_count, last_sign_in_at, created_at, \
         updated_at\n"
    );

    let (code, out, err) = bridge(&["check"], &config);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(problem_blocks(&out, &["PROBLEM"]), block);

    // What `run` will refuse to start on.
    let loaded = Config::load(&config).unwrap();
    let report = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(preflight::inspect(&loaded))
        .unwrap();
    let definite: Vec<&str> = preflight::definite_problems(&report)
        .iter()
        .map(|f| f.message.as_str())
        .collect();
    assert_eq!(definite, [message]);
    assert_eq!(
        preflight::definite_error(&report).unwrap().to_string(),
        format!("the database is not ready: {message}")
    );

    // setup cannot fix a config mistake: it says so and fails.
    let (code, out, err) = bridge(&["setup", "--replica-identity-full"], &config);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(problem_blocks(&out, &["PROBLEM"]), block);
    assert_eq!(
        last_line(&out),
        "setup: ran 6 statements; 1 problem remains: fix as shown above, then run setup again"
    );
}

#[test]
fn a_role_without_replication_or_select_is_named_with_its_fixes() {
    let c = with_schema(ClusterOptions::default());
    c.psql("CREATE ROLE weak LOGIN").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &c.url("weak", None, "postgres"), "");

    let (code, out, err) = bridge(&["check"], &config);
    assert_eq!(code, 1, "{out}{err}");
    let mut expected = "PROBLEM the role weak lacks REPLICATION: it can neither create nor read \
                        a replication slot\n        fix: ALTER ROLE \"weak\" REPLICATION;\n"
        .to_string();
    for t in [
        "users",
        "learning_plans",
        "learning_plan_enrollments",
        "scorm_attempts",
        "event_attendances",
    ] {
        expected.push_str(&format!(
            "PROBLEM the role weak cannot read the table public.{t}\n        \
             fix: GRANT SELECT ON \"public\".\"{t}\" TO \"weak\";\n"
        ));
    }
    assert_eq!(problem_blocks(&out, &["PROBLEM"]), expected);
    assert_eq!(
        last_line(&out),
        "not ready: 6 definite problems, 6 warnings; `fuse-cdc-bridge setup` applies the fixes \
         it can"
    );

    // setup tries what it may, reports the server's refusal, and does not pretend.
    let (code, out, err) = bridge(&["setup"], &config);
    assert_eq!(code, 1, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("run: {PUBLICATION_SQL}"));
    assert!(
        lines[1].starts_with("failed: ") && lines[1].contains("permission denied"),
        "{out}"
    );
    assert_eq!(
        last_line(&out),
        "setup: ran 1 statement, 1 failed; 8 problems remain: fix as shown above, then run setup \
         again; 4 tables lack REPLICA IDENTITY FULL: `setup --replica-identity-full` sets it"
    );
    assert_eq!(counts(&c), "0 publications, 0 slots");
}

#[test]
fn the_least_privilege_role_of_setup_sql_passes_check() {
    let c = with_schema(ClusterOptions::default());
    let setup_sql = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/setup.sql");
    // Twice: a DBA may re-run it.
    for _ in 0..2 {
        let out = Command::new(c.bin_dir().join("psql"))
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-v",
                "bridge_password=s3cret pass",
            ])
            .args(["-h", c.host(), "-p", &c.port().to_string()])
            .args(["-U", c.superuser(), "-d", "postgres", "-f", setup_sql])
            .env_remove("PGPASSWORD")
            .env_remove("PGHOST")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        c.psql(
            "SELECT rolsuper, rolreplication, rolcanlogin FROM pg_roles \
             WHERE rolname = 'fuse_bridge'"
        )
        .unwrap()
        .trim(),
        "f|t|t"
    );
    // The password must really be the one given.
    c.set_hba(&support::hba("scram-sha-256")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &c.url("fuse_bridge", Some("s3cret pass"), "postgres"),
        "",
    );

    let (code, out, err) = bridge(&["check"], &config);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(last_line(&out), "ready: no problems found");
    for line in [
        "ok      the role fuse_bridge can replicate (REPLICATION)",
        "ok      the table public.users exists and fuse_bridge can read it",
        "ok      the publication fuse_cdc_bridge covers every rule table",
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} missing in\n{out}");
    }
    assert!(!out.contains("s3cret") && !err.contains("s3cret"));
    let (code, out, _) = bridge(&["setup"], &config);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "setup: nothing to do: everything setup manages is already in place\n"
    );

    // Without the grant it is named, with the exact fix.
    c.psql("REVOKE SELECT ON public.scorm_attempts FROM fuse_bridge")
        .unwrap();
    let (code, out, _) = bridge(&["check"], &config);
    assert_eq!(code, 1);
    assert_eq!(
        problem_blocks(&out, &["PROBLEM", "WARNING"]),
        "PROBLEM the role fuse_bridge cannot read the table public.scorm_attempts\n        \
         fix: GRANT SELECT ON \"public\".\"scorm_attempts\" TO \"fuse_bridge\";\n"
    );
}

#[test]
fn check_that_cannot_connect_says_why_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    // Port 9 (discard) on loopback: nothing listens there.
    let config = write_config(
        dir.path(),
        "postgres://fuse_bridge:hunter2@127.0.0.1:9/fuse?sslmode=disable",
        "",
    );
    let (code, out, err) = bridge(&["check"], &config);
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains("\nhint: is PostgreSQL running on 127.0.0.1:9"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}
