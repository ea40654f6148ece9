use super::evaluate;
use crate::config::{Config, TableName};
use crate::pg::admin::{PublicationInfo, RoleInfo, ServerSettings, SlotInfo, TableInfo};
use crate::preflight::facts::{Facts, PublicationFacts};
use crate::preflight::report::{render_finding, Check, Finding, Report};

fn config(events: &str) -> Config {
    let text = format!(
        "[postgres]\nurl = \"postgres://bridge@db/fuse\"\n[state]\ndir = \"/tmp/s\"\n\
         [[endpoints]]\nname = \"x\"\nurl = \"http://127.0.0.1:9/\"\n{events}"
    );
    Config::parse_str(&text, &|_| None).unwrap()
}

fn columns(table: &str) -> Vec<String> {
    let cols: &[&str] = match table {
        "users" => &[
            "id",
            "email",
            "first_name",
            "last_name",
            "job_title",
            "department",
            "locale",
        ],
        "learning_plans" => &["id", "title"],
        "learning_plan_enrollments" => &["id", "user_id", "learning_plan_id", "status"],
        "scorm_attempts" => &["id", "user_id", "content_id", "completion_status"],
        _ => &["id", "user_id", "event_id", "occurrence_id", "status"],
    };
    cols.iter().map(|c| c.to_string()).collect()
}

/// A ready database: every check passes.
fn ready(config: &Config) -> Facts {
    Facts {
        address: "db:5432".into(),
        user: "bridge".into(),
        server: Ok(ServerSettings {
            version_num: 150_004,
            version: "15.4".into(),
            wal_level: "logical".into(),
            server_encoding: "UTF8".into(),
            max_replication_slots: 10,
            max_wal_senders: 10,
            slots_used: 1,
            wal_senders_used: 0,
            database: "fuse".into(),
        }),
        role: Ok(RoleInfo {
            name: "bridge".into(),
            superuser: false,
            replication: true,
        }),
        tables: config
            .tables()
            .into_iter()
            .map(|t: TableName| {
                let info = TableInfo {
                    replica_identity: 'f',
                    columns: columns(&t.name),
                    can_select: true,
                    schema_usage: true,
                };
                (t, Ok(Some(info)))
            })
            .collect(),
        publication: Ok(PublicationFacts {
            info: Some(PublicationInfo {
                all_tables: false,
                insert: true,
                update: true,
                delete: true,
                truncate: true,
            }),
            missing: vec![],
            fixes: vec![],
        }),
        slot: Ok(Some(SlotInfo {
            name: "fuse_cdc_bridge".into(),
            plugin: Some("pgoutput".into()),
            database: Some("fuse".into()),
            temporary: false,
            active_pid: None,
            confirmed_flush_lsn: Some("0/16B3748".parse().unwrap()),
            restart_lsn: Some("0/16B3700".parse().unwrap()),
            wal_status: Some("reserved".into()),
            retained_bytes: Some(2048),
        })),
    }
}

fn problems(report: &Report) -> Vec<String> {
    report.problems().map(render_finding).collect()
}

fn find(report: &Report, check: Check) -> Vec<&Finding> {
    report
        .findings
        .iter()
        .filter(|f| f.check == check)
        .collect()
}

#[test]
fn a_ready_database_has_no_problem() {
    let c = config("");
    let report = evaluate(&c, &ready(&c));
    assert_eq!(problems(&report), Vec::<String>::new());
    assert_eq!(
        find(&report, Check::Slot)[0].message,
        "the replication slot fuse_cdc_bridge exists (pgoutput, database fuse, confirmed up to \
         0/16B3748, retaining 2.0 KiB of WAL)"
    );
}

#[test]
fn a_missing_column_names_the_key_the_table_and_the_column() {
    let c = config(
        "[events.\"learning_plan.completed\"]\n\
         becomes = { column = \"state\", values = [\"completed\"] }\n",
    );
    let report = evaluate(&c, &ready(&c));
    assert_eq!(
        problems(&report),
        [
            "PROBLEM the table public.learning_plan_enrollments has no column \"state\" \
          (events.\"learning_plan.completed\".becomes.column)\n\
          \x20       fix: edit events.\"learning_plan.completed\".becomes.column in the config \
          file; public.learning_plan_enrollments has the columns id, user_id, learning_plan_id, \
          status\n"
        ]
    );
}

#[test]
fn replica_identity_is_asked_only_for_rules_that_compare_old_and_new_values() {
    let c = config("");
    let mut facts = ready(&c);
    for (_, info) in &mut facts.tables {
        if let Ok(Some(info)) = info {
            info.replica_identity = 'd';
        }
    }
    let report = evaluate(&c, &facts);
    let tables: Vec<String> = report
        .problems()
        .map(|f| f.statements().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        tables,
        [
            "ALTER TABLE \"public\".\"users\" REPLICA IDENTITY FULL;",
            "ALTER TABLE \"public\".\"learning_plan_enrollments\" REPLICA IDENTITY FULL;",
            "ALTER TABLE \"public\".\"scorm_attempts\" REPLICA IDENTITY FULL;",
            "ALTER TABLE \"public\".\"event_attendances\" REPLICA IDENTITY FULL;",
        ]
    );
    assert_eq!(
        report.problems().next().unwrap().message,
        "the table public.users has REPLICA IDENTITY DEFAULT, so its updates carry no old \
         values: user.updated cannot tell which columns changed and fires on every update"
    );
}

#[test]
fn a_lost_slot_is_definite_and_says_events_are_lost() {
    let c = config("");
    let mut facts = ready(&c);
    if let Ok(Some(slot)) = &mut facts.slot {
        slot.wal_status = Some("lost".into());
    }
    let report = evaluate(&c, &facts);
    assert_eq!(
        problems(&report),
        [
            "PROBLEM the replication slot fuse_cdc_bridge is unusable: the server removed WAL it \
          needed (wal_status lost). Dropping and re-creating it starts from now: changes \
          committed after 0/16B3748 until then are lost and produce no webhooks\n\
          \x20       fix: SELECT pg_drop_replication_slot('fuse_cdc_bridge');\n\
          \x20       fix: SELECT pg_create_logical_replication_slot('fuse_cdc_bridge', \
          'pgoutput');\n"
        ]
    );
}

#[test]
fn a_slot_of_another_plugin_or_an_active_one() {
    let c = config("");
    let mut facts = ready(&c);
    if let Ok(Some(slot)) = &mut facts.slot {
        slot.plugin = Some("test_decoding".into());
    }
    let report = evaluate(&c, &facts);
    assert_eq!(
        problems(&report)[0].lines().next().unwrap(),
        "PROBLEM the replication slot fuse_cdc_bridge uses the plugin test_decoding, not \
         pgoutput: it was made for something else"
    );

    let mut facts = ready(&c);
    if let Ok(Some(slot)) = &mut facts.slot {
        slot.active_pid = Some(4242);
    }
    let report = evaluate(&c, &facts);
    assert!(report.is_clean());
    assert_eq!(
        find(&report, Check::Slot)[1].message,
        "the replication slot fuse_cdc_bridge is in use by PID 4242: another consumer is \
         reading it (run waits until it is free)"
    );
}

#[test]
fn a_publication_without_updates_is_fixed_keeping_what_it_publishes() {
    let c = config("");
    let mut facts = ready(&c);
    if let Ok(p) = &mut facts.publication {
        p.info = Some(PublicationInfo {
            all_tables: false,
            insert: true,
            update: false,
            delete: false,
            truncate: true,
        });
    }
    let report = evaluate(&c, &facts);
    assert_eq!(
        problems(&report),
        [
            "WARNING the publication fuse_cdc_bridge does not publish update: those changes \
          produce no webhooks\n\
          \x20       fix: ALTER PUBLICATION \"fuse_cdc_bridge\" SET (publish = 'insert, update, \
          truncate');\n"
        ]
    );
}

#[test]
fn no_room_for_a_slot_when_it_does_not_exist_yet() {
    let c = config("");
    let mut facts = ready(&c);
    facts.slot = Ok(None);
    if let Ok(s) = &mut facts.server {
        s.slots_used = 10;
    }
    let report = evaluate(&c, &facts);
    assert_eq!(
        render_finding(find(&report, Check::MaxReplicationSlots)[0]),
        "WARNING max_replication_slots is 10, 10 in use: no room for the bridge's slot\n\
         \x20       fix: ALTER SYSTEM SET max_replication_slots = 11;\n\
         \x20       fix: restart PostgreSQL (this setting only changes at server start)\n"
    );
}
