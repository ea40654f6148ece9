//! Detection on hand-built relations and row changes: every branch of the rules, the parameters,
//! the missing-column error and the handler's transaction bookkeeping.

use std::sync::Arc;

use tracing_test::traced_test;

use super::*;
use crate::capture::Handler;
use crate::config::{Becomes, EventType, Operation, Param, Rule, TableName};
use crate::event::{Event, EventParam};
use crate::lsn::Lsn;
use crate::pgoutput::{ChangeKind, Column, Item, Relation, ReplicaIdentity, Row, RowChange};
use crate::pgoutput::{Transaction, Value};

const INT8: u32 = 20;
const INT2: u32 = 21;
const INT4: u32 = 23;
const TEXT: u32 = 25;
const NUMERIC: u32 = 1700;
const TIME: u32 = 1184;

fn defaults() -> Vec<Rule> {
    EventType::ALL
        .iter()
        .map(|t| Rule::default_for(*t))
        .collect()
}

fn relation(schema: &str, name: &str, columns: &[(&str, u32)]) -> Arc<Relation> {
    Arc::new(Relation {
        oid: 16384,
        namespace: schema.into(),
        name: name.into(),
        replica_identity: ReplicaIdentity::Full,
        columns: columns
            .iter()
            .map(|(name, type_oid)| Column {
                is_key: true,
                name: (*name).into(),
                type_oid: *type_oid,
                type_modifier: -1,
            })
            .collect(),
    })
}

fn users_in(schema: &str) -> Arc<Relation> {
    relation(
        schema,
        "users",
        &[
            ("id", INT8),
            ("email", TEXT),
            ("first_name", TEXT),
            ("last_name", TEXT),
            ("job_title", TEXT),
            ("department", TEXT),
            ("locale", TEXT),
            ("bio", TEXT),
            ("sign_in_count", INT4),
            ("updated_at", TIME),
        ],
    )
}

fn users() -> Arc<Relation> {
    users_in("public")
}

fn enrollments() -> Arc<Relation> {
    relation(
        "public",
        "learning_plan_enrollments",
        &[
            ("id", INT8),
            ("user_id", INT8),
            ("learning_plan_id", INT8),
            ("status", TEXT),
            ("progress_percent", INT4),
        ],
    )
}

fn attendances() -> Arc<Relation> {
    relation(
        "public",
        "event_attendances",
        &[
            ("id", INT8),
            ("user_id", INT8),
            ("event_id", INT8),
            ("occurrence_id", INT8),
            ("status", TEXT),
        ],
    )
}

/// A row of `rel` from `(column, value)` pairs; other columns are NULL. `None` text means NULL,
/// `"\u{0}toast"` an unchanged TOASTed value.
fn row(rel: &Arc<Relation>, values: &[(&str, Option<&str>)]) -> Row {
    let mut all = vec![Value::Null; rel.columns.len()];
    for (name, value) in values {
        let i = rel.column_index(name).expect("test column exists");
        all[i] = match value {
            None => Value::Null,
            Some("\u{0}toast") => Value::UnchangedToast,
            Some(text) => Value::Text((*text).into()),
        };
    }
    Row::new(Arc::clone(rel), all).expect("one value per column")
}

fn insert(rel: &Arc<Relation>, new: &[(&str, Option<&str>)]) -> RowChange {
    RowChange {
        relation: Arc::clone(rel),
        kind: ChangeKind::Insert,
        new: Some(row(rel, new)),
        old: None,
        old_is_key_only: false,
    }
}

/// An update with the full old row (REPLICA IDENTITY FULL).
fn update(
    rel: &Arc<Relation>,
    old: &[(&str, Option<&str>)],
    new: &[(&str, Option<&str>)],
) -> RowChange {
    RowChange {
        relation: Arc::clone(rel),
        kind: ChangeKind::Update,
        new: Some(row(rel, new)),
        old: Some(row(rel, old)),
        old_is_key_only: false,
    }
}

/// An update without an old row (REPLICA IDENTITY DEFAULT, key unchanged).
fn blind_update(rel: &Arc<Relation>, new: &[(&str, Option<&str>)]) -> RowChange {
    RowChange {
        relation: Arc::clone(rel),
        kind: ChangeKind::Update,
        new: Some(row(rel, new)),
        old: None,
        old_is_key_only: false,
    }
}

fn delete(rel: &Arc<Relation>, old: &[(&str, Option<&str>)]) -> RowChange {
    RowChange {
        relation: Arc::clone(rel),
        kind: ChangeKind::Delete,
        new: None,
        old: Some(row(rel, old)),
        old_is_key_only: false,
    }
}

fn p(name: &str, value: Option<&str>, integer: bool, column: &str) -> EventParam {
    EventParam {
        name: name.into(),
        value: value.map(Into::into),
        integer,
        column: column.into(),
    }
}

fn run(rules: &[Rule], change: &RowChange) -> Vec<Event> {
    detect(rules, change, 42).expect("no missing column")
}

fn types(events: &[Event]) -> Vec<EventType> {
    events.iter().map(|e| e.event_type).collect()
}

const ADA: &[(&str, Option<&str>)] = &[
    ("id", Some("7")),
    ("email", Some("ada@x")),
    ("first_name", Some("Ada")),
    ("locale", Some("en")),
    ("bio", Some("long")),
    ("sign_in_count", Some("1")),
    ("updated_at", Some("2024-01-01 00:00:00+00")),
];

fn ada_with(
    changes: &[(&'static str, Option<&'static str>)],
) -> Vec<(&'static str, Option<&'static str>)> {
    let mut row: Vec<_> = ADA.to_vec();
    for (name, value) in changes {
        match row.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = *value,
            None => row.push((name, *value)),
        }
    }
    row
}

#[test]
fn insert_into_users_is_user_created_with_its_parameter() {
    let events = run(&defaults(), &insert(&users(), ADA));
    assert_eq!(
        events,
        vec![Event {
            event_type: EventType::UserCreated,
            params: vec![p("user_id", Some("7"), true, "id")],
            commit_time: 42,
            table: "public.users".into(),
        }]
    );
}

#[test]
fn a_rule_applies_only_to_its_table_and_operations() {
    // Same table name in another schema, and another table in the right schema.
    assert!(run(&defaults(), &insert(&users_in("hr"), ADA)).is_empty());
    let other = relation("public", "people", &[("id", INT8)]);
    assert!(run(&defaults(), &insert(&other, &[("id", Some("1"))])).is_empty());
    // No default rule listens to deletes.
    assert!(run(&defaults(), &delete(&users(), ADA)).is_empty());
    // Case is not folded: "Users" is not "users".
    let shouted = relation("public", "Users", &[("id", INT8)]);
    assert!(run(&defaults(), &insert(&shouted, &[("id", Some("1"))])).is_empty());
}

#[test]
fn profile_change_is_user_updated() {
    let change = update(&users(), ADA, &ada_with(&[("last_name", Some("Lovelace"))]));
    let events = run(&defaults(), &change);
    assert_eq!(types(&events), [EventType::UserUpdated]);
    assert_eq!(events[0].params, [p("user_id", Some("7"), true, "id")]);
    // NULL to a value and a value to NULL are changes too.
    let cleared = update(&users(), ADA, &ada_with(&[("first_name", None)]));
    assert_eq!(types(&run(&defaults(), &cleared)), [EventType::UserUpdated]);
}

#[test]
fn no_op_and_bookkeeping_updates_are_silent_when_the_old_row_is_known() {
    assert!(run(&defaults(), &update(&users(), ADA, ADA)).is_empty());
    let bookkeeping = ada_with(&[
        ("sign_in_count", Some("2")),
        ("updated_at", Some("2024-02-02 00:00:00+00")),
        ("bio", Some("changed, but not a profile column")),
    ]);
    assert!(run(&defaults(), &update(&users(), ADA, &bookkeeping)).is_empty());
    // An unchanged TOASTed profile column counts as unchanged.
    let toast = update(&users(), ADA, &ada_with(&[("email", Some("\u{0}toast"))]));
    assert!(run(&defaults(), &toast).is_empty());
}

#[test]
#[traced_test]
fn without_the_old_row_changed_rules_fire_and_warn_once_per_table() {
    // Its own table name: the warning is once per table per process, and tests share a process.
    let rel = users_in("no_old_row");
    let mut rules = defaults();
    rules[1].table = TableName::parse("no_old_row.users").unwrap();
    let bookkeeping = ada_with(&[("sign_in_count", Some("9"))]);
    for _ in 0..3 {
        let events = run(&rules, &blind_update(&rel, &bookkeeping));
        assert_eq!(types(&events), [EventType::UserUpdated]);
    }
    // A key-only old row does not tell either.
    let mut key_only = update(&rel, &[("id", Some("7"))], &bookkeeping);
    key_only.old_is_key_only = true;
    assert_eq!(types(&run(&rules, &key_only)), [EventType::UserUpdated]);
    logs_assert(|lines: &[&str]| {
        let warnings: Vec<&&str> = lines
            .iter()
            .filter(|l| l.contains("needs REPLICA IDENTITY FULL"))
            .collect();
        match warnings.as_slice() {
            [line]
                if line.contains("WARN")
                    && line.contains("no_old_row.users")
                    && line.contains("profile changes from bookkeeping updates")
                    && line.contains(
                        "ALTER TABLE \"no_old_row\".\"users\" REPLICA IDENTITY FULL;",
                    ) =>
            {
                Ok(())
            }
            other => Err(format!("expected one warning, got {other:?}")),
        }
    });
}

#[test]
#[traced_test]
fn a_known_change_does_not_warn() {
    let rel = users_in("known_old_row");
    let mut rules = defaults();
    rules[1].table = TableName::parse("known_old_row.users").unwrap();
    let change = update(&rel, ADA, &ada_with(&[("email", Some("new@x"))]));
    assert_eq!(types(&run(&rules, &change)), [EventType::UserUpdated]);
    assert!(run(&rules, &update(&rel, ADA, ADA)).is_empty());
    assert!(!logs_contain("REPLICA IDENTITY FULL"));
}

#[test]
fn changed_does_not_apply_to_inserts_and_deletes() {
    let mut rule = Rule::default_for(EventType::UserUpdated);
    rule.on = vec![Operation::Insert, Operation::Delete];
    let rules = [rule];
    assert_eq!(
        types(&run(&rules, &insert(&users(), ADA))),
        [EventType::UserUpdated]
    );
    let events = run(&rules, &delete(&users(), ADA));
    assert_eq!(events[0].params, [p("user_id", Some("7"), true, "id")]);
}

#[test]
fn rule_without_conditions_fires_on_every_update() {
    // `changed = []` in the file: "any update", as the config documents it.
    let mut rule = Rule::default_for(EventType::UserUpdated);
    rule.changed = None;
    assert_eq!(
        types(&run(&[rule], &update(&users(), ADA, ADA))),
        [EventType::UserUpdated]
    );
}

fn enrollment(
    status: Option<&'static str>,
    progress: &'static str,
) -> Vec<(&'static str, Option<&'static str>)> {
    vec![
        ("id", Some("100")),
        ("user_id", Some("7")),
        ("learning_plan_id", Some("3")),
        ("status", status),
        ("progress_percent", Some(progress)),
    ]
}

#[test]
fn becomes_fires_on_insert_with_the_value_and_on_transitions_only() {
    let rel = enrollments();
    let rules = defaults();
    let completed = enrollment(Some("completed"), "100");
    let in_progress = enrollment(Some("in_progress"), "50");

    let events = run(&rules, &insert(&rel, &completed));
    assert_eq!(
        events,
        vec![Event {
            event_type: EventType::LearningPlanCompleted,
            params: vec![
                p("user_id", Some("7"), true, "user_id"),
                p("learning_plan_id", Some("3"), true, "learning_plan_id"),
            ],
            commit_time: 42,
            table: "public.learning_plan_enrollments".into(),
        }]
    );
    assert!(run(&rules, &insert(&rel, &in_progress)).is_empty());
    assert_eq!(
        types(&run(&rules, &update(&rel, &in_progress, &completed))),
        [EventType::LearningPlanCompleted]
    );
    // completed -> completed (another column changed) is not a transition.
    let again = enrollment(Some("completed"), "99");
    assert!(run(&rules, &update(&rel, &completed, &again)).is_empty());
    // Moving away from the value is not it either.
    assert!(run(&rules, &update(&rel, &completed, &in_progress)).is_empty());
}

#[test]
fn becomes_with_several_values_fires_between_them() {
    let rel = attendances();
    let row = |status: &'static str| {
        vec![
            ("id", Some("1")),
            ("user_id", Some("7")),
            ("event_id", Some("40")),
            ("occurrence_id", Some("41")),
            ("status", Some(status)),
        ]
    };
    let rules = defaults();
    let events = run(
        &rules,
        &update(&rel, &row("attended"), &row("not_attended")),
    );
    assert_eq!(
        events[0].params,
        [
            p("user_id", Some("7"), true, "user_id"),
            p("event_id", Some("40"), true, "event_id"),
            p("occurrence_id", Some("41"), true, "occurrence_id"),
            p("status", Some("not_attended"), false, "status"),
        ]
    );
    assert_eq!(types(&events), [EventType::EventAttendanceUpdated]);
    assert_eq!(
        types(&run(
            &rules,
            &update(&rel, &row("registered"), &row("attended"))
        )),
        [EventType::EventAttendanceUpdated]
    );
    assert!(run(&rules, &update(&rel, &row("attended"), &row("cancelled"))).is_empty());
    assert!(run(&rules, &update(&rel, &row("attended"), &row("attended"))).is_empty());
}

#[test]
fn null_or_unknown_new_value_never_qualifies() {
    let rel = enrollments();
    let rules = defaults();
    assert!(run(&rules, &insert(&rel, &enrollment(None, "0"))).is_empty());
    let before = enrollment(Some("in_progress"), "0");
    assert!(run(&rules, &update(&rel, &before, &enrollment(None, "0"))).is_empty());
    // An unchanged TOASTed status without a full old row: unknown, and unchanged anyway.
    let toast = enrollment(Some("\u{0}toast"), "1");
    assert!(run(&rules, &blind_update(&rel, &toast)).is_empty());
}

#[test]
#[traced_test]
fn becomes_without_the_old_row_fires_and_warns() {
    let mut rules = defaults();
    rules[3].table = TableName::parse("no_old_status.learning_plan_enrollments").unwrap();
    let rel = relation(
        "no_old_status",
        "learning_plan_enrollments",
        &[
            ("user_id", INT8),
            ("learning_plan_id", INT8),
            ("status", TEXT),
        ],
    );
    let new = [
        ("user_id", Some("7")),
        ("learning_plan_id", Some("3")),
        ("status", Some("completed")),
    ];
    assert_eq!(
        types(&run(&rules, &blind_update(&rel, &new))),
        [EventType::LearningPlanCompleted]
    );
    // A non-qualifying value is a definite no: no doubt, no warning for it.
    let other = relation(
        "no_old_other",
        "learning_plan_enrollments",
        &rel.columns
            .iter()
            .map(|c| (c.name.as_str(), c.type_oid))
            .collect::<Vec<_>>(),
    );
    rules[3].table = TableName::parse("no_old_other.learning_plan_enrollments").unwrap();
    let started = [
        ("user_id", Some("7")),
        ("learning_plan_id", Some("3")),
        ("status", Some("in_progress")),
    ];
    assert!(run(&rules, &blind_update(&other, &started)).is_empty());
    assert!(logs_contain(
        "no_old_status.learning_plan_enrollments needs REPLICA IDENTITY FULL"
    ));
    assert!(!logs_contain("no_old_other"));
}

#[test]
fn a_delete_rule_ignores_becomes_and_reads_the_old_row() {
    let mut rule = Rule::default_for(EventType::EventAttendanceUpdated);
    rule.on = vec![Operation::Delete];
    let rel = attendances();
    let old = [
        ("id", Some("1")),
        ("user_id", Some("7")),
        ("event_id", Some("40")),
        ("occurrence_id", Some("41")),
        ("status", Some("registered")),
    ];
    let events = run(&[rule], &delete(&rel, &old));
    assert_eq!(types(&events), [EventType::EventAttendanceUpdated]);
    assert_eq!(
        events[0].params[3],
        p("status", Some("registered"), false, "status")
    );
}

#[test]
fn parameters_keep_rule_order_types_and_missing_values() {
    let rel = relation(
        "hr",
        "runs",
        &[
            ("small", INT2),
            ("medium", INT4),
            ("big", INT8),
            ("score", NUMERIC),
            ("note", TEXT),
            ("state", TEXT),
        ],
    );
    let rule = Rule {
        event_type: EventType::ScormCompleted,
        table: TableName::parse("hr.runs").unwrap(),
        on: vec![Operation::Insert, Operation::Update],
        changed: None,
        becomes: Some(Becomes {
            column: "state".into(),
            values: vec!["done".into()],
        }),
        params: ["note", "big", "small", "medium", "score"]
            .iter()
            .enumerate()
            .map(|(i, c)| Param {
                name: format!("p{i}"),
                column: (*c).into(),
            })
            .collect(),
    };
    let new = [
        ("small", Some("1")),
        ("medium", None),
        ("big", Some("3")),
        ("score", Some("9.50")),
        ("note", Some("\u{0}toast")),
        ("state", Some("done")),
    ];
    let events = run(&[rule], &insert(&rel, &new));
    assert_eq!(
        events[0].params,
        [
            p("p0", None, false, "note"),
            p("p1", Some("3"), true, "big"),
            p("p2", Some("1"), true, "small"),
            p("p3", None, true, "medium"),
            p("p4", Some("9.50"), false, "score"),
        ]
    );
    assert_eq!(
        events[0].missing_param().map(|p| p.column.as_str()),
        Some("note")
    );
    assert_eq!(events[0].table, "hr.runs");
}

#[test]
fn several_rules_for_one_change_fire_in_rule_order() {
    // A rule set that reads one insert two ways.
    let mut plan = Rule::default_for(EventType::LearningPlanCreated);
    plan.table = TableName::public("users");
    let rules = [Rule::default_for(EventType::UserCreated), plan];
    let events = run(&rules, &insert(&users(), ADA));
    assert_eq!(
        types(&events),
        [EventType::UserCreated, EventType::LearningPlanCreated]
    );
    assert_eq!(
        events[1].params,
        [p("learning_plan_id", Some("7"), true, "id")]
    );
    let reversed = [rules[1].clone(), rules[0].clone()];
    assert_eq!(
        types(&run(&reversed, &insert(&users(), ADA))),
        [EventType::LearningPlanCreated, EventType::UserCreated]
    );
}

fn without(rel: &Relation, column: &str) -> Arc<Relation> {
    let mut rel = rel.clone();
    rel.columns.retain(|c| c.name != column);
    Arc::new(rel)
}

#[test]
fn relation_check_passes_added_and_unused_dropped_columns() {
    let rules = defaults();
    let mut added = (*users()).clone();
    added.columns.push(Column {
        is_key: true,
        name: "nickname".into(),
        type_oid: TEXT,
        type_modifier: -1,
    });
    assert_eq!(check_relation(&rules, &added), Ok(()));
    assert_eq!(check_relation(&rules, &without(&users(), "bio")), Ok(()));
    // A table no rule names may look like anything.
    assert_eq!(
        check_relation(&rules, &relation("public", "other", &[])),
        Ok(())
    );
}

#[test]
fn a_missing_rule_column_is_a_definite_error_naming_it() {
    let rules = defaults();
    let expected = MissingColumn {
        event_type: EventType::UserUpdated,
        table: "public.users".into(),
        column: "last_name".into(),
    };
    let rel = without(&users(), "last_name");
    assert_eq!(check_relation(&rules, &rel), Err(expected.clone()));
    // A change decoded against such a description is refused the same way, whatever its kind.
    assert_eq!(detect(&rules, &insert(&rel, ADA), 1), Err(expected.clone()));

    // becomes.column and parameter columns count too.
    let rel = without(&enrollments(), "status");
    assert_eq!(
        check_relation(&rules, &rel).map_err(|e| (e.event_type, e.column)),
        Err((EventType::LearningPlanCompleted, "status".to_owned()))
    );
    let rel = without(&attendances(), "occurrence_id");
    assert_eq!(
        check_relation(&rules, &rel).map_err(|e| (e.event_type, e.column)),
        Err((
            EventType::EventAttendanceUpdated,
            "occurrence_id".to_owned()
        ))
    );

    let error = crate::Error::from(expected);
    assert!(!error.is_transient());
    assert_eq!(
        error.to_string(),
        "the rule for \"user.updated\" reads column \"last_name\" of public.users, which the \
         table no longer has (dropped or renamed)"
    );
    assert_eq!(
        error.hint().as_deref(),
        Some("restore the column or change [events.\"user.updated\"] in the config, then restart")
    );
}

fn txn() -> Transaction {
    Transaction {
        xid: 1,
        final_lsn: Lsn(0x100),
        commit_time: 777,
    }
}

fn decoded(records: Vec<crate::store::Outgoing>) -> Vec<Event> {
    records
        .iter()
        .map(|r| {
            assert_eq!(&r.endpoints[..], ["x"]);
            Event::from_bytes(&r.payload).expect("an event record")
        })
        .collect()
}

/// Every event type routed to one endpoint.
fn all_to(endpoint: &str) -> Vec<(EventType, Vec<String>)> {
    EventType::ALL
        .iter()
        .map(|t| (*t, vec![endpoint.to_string()]))
        .collect()
}

#[test]
fn detector_returns_the_transactions_events_at_commit() {
    let mut detector = Detector::new(defaults(), all_to("x"));
    let t = txn();
    detector.item(&t, &Item::Relation(users())).unwrap();
    detector
        .item(&t, &Item::Change(insert(&users(), ADA)))
        .unwrap();
    detector
        .item(&t, &Item::Change(update(&users(), ADA, ADA)))
        .unwrap();
    let completed = enrollment(Some("completed"), "100");
    detector
        .item(&t, &Item::Change(insert(&enrollments(), &completed)))
        .unwrap();
    detector
        .item(
            &t,
            &Item::Truncate {
                relations: vec![users()],
                cascade: false,
                restart_identity: false,
            },
        )
        .unwrap();
    assert_eq!(detector.pending().len(), 2);
    let events = decoded(detector.commit(&t, Lsn(0x200)).unwrap());
    assert_eq!(
        types(&events),
        [EventType::UserCreated, EventType::LearningPlanCompleted]
    );
    assert!(events.iter().all(|e| e.commit_time == 777));
    // The next transaction starts empty; one without events gives no records.
    assert!(detector.pending().is_empty());
    detector
        .item(&t, &Item::Change(update(&users(), ADA, ADA)))
        .unwrap();
    assert!(detector.commit(&t, Lsn(0x300)).unwrap().is_empty());
}

#[test]
fn detector_reset_forgets_the_open_transaction() {
    let mut detector = Detector::new(defaults(), all_to("x"));
    let t = txn();
    detector
        .item(&t, &Item::Change(insert(&users(), ADA)))
        .unwrap();
    detector.reset();
    assert!(detector.commit(&t, Lsn(0x200)).unwrap().is_empty());
}

#[test]
fn detector_stops_on_a_relation_or_change_missing_a_rule_column() {
    let mut detector = Detector::new(defaults(), all_to("x"));
    let t = txn();
    let rel = without(&enrollments(), "learning_plan_id");
    let error = detector
        .item(&t, &Item::Relation(Arc::clone(&rel)))
        .unwrap_err();
    assert!(
        error.to_string().contains("\"learning_plan.completed\"")
            && error.to_string().contains("\"learning_plan_id\"")
            && error
                .to_string()
                .contains("public.learning_plan_enrollments"),
        "{error}"
    );
    assert!(matches!(error, crate::Error::Definite { .. }));
    let change = insert(&rel, &[("user_id", Some("7"))]);
    assert!(detector.item(&t, &Item::Change(change)).is_err());
    assert!(detector.pending().is_empty());
}

#[test]
fn detector_from_config_uses_its_rules() {
    let text = r#"
[postgres]
url = "postgres://u@localhost/db"
[state]
dir = "/tmp/x"
[[endpoints]]
name = "x"
url = "http://127.0.0.1:9/"
[events."user.created"]
table = "hr.people"
params = { user_id = "person_no" }
"#;
    let config = crate::config::Config::parse_str(text, &|_| None).unwrap();
    let detector = Detector::from_config(&config);
    assert_eq!(detector.rules(), config.rules());
    let rel = relation("hr", "people", &[("person_no", INT4)]);
    let events = run(detector.rules(), &insert(&rel, &[("person_no", Some("5"))]));
    assert_eq!(
        events[0].params,
        [p("user_id", Some("5"), true, "person_no")]
    );
}
