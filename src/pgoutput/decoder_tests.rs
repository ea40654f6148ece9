//! The decoder on message sequences: names attached, TOAST filled in, framing enforced.

use super::*;
use crate::pgoutput::message::{Begin, Commit, Delete, Insert, LogicalMessage, Truncate, Update};
use crate::pgoutput::{Column, ReplicaIdentity, Value};

fn users(oid: u32, columns: &[&str]) -> PgOutputMessage {
    PgOutputMessage::Relation(Relation {
        oid,
        namespace: "public".into(),
        name: "users".into(),
        replica_identity: ReplicaIdentity::Full,
        columns: columns
            .iter()
            .map(|c| Column {
                is_key: *c == "id",
                name: (*c).into(),
                type_oid: 25,
                type_modifier: -1,
            })
            .collect(),
    })
}

fn begin(lsn: u64, xid: u32) -> PgOutputMessage {
    PgOutputMessage::Begin(Begin {
        final_lsn: Lsn(lsn),
        commit_time: 100,
        xid,
    })
}

fn commit(lsn: u64) -> PgOutputMessage {
    PgOutputMessage::Commit(Commit {
        flags: 0,
        commit_lsn: Lsn(lsn),
        end_lsn: Lsn(lsn + 8),
        commit_time: 100,
    })
}

fn tuple(values: &[Option<&str>]) -> TupleData {
    TupleData(
        values
            .iter()
            .map(|v| v.map_or(Value::Null, |s| Value::Text(s.into())))
            .collect(),
    )
}

fn insert(oid: u32, values: &[Option<&str>]) -> PgOutputMessage {
    PgOutputMessage::Insert(Insert {
        relation_oid: oid,
        new: tuple(values),
    })
}

fn change(item: Option<Item>) -> RowChange {
    match item {
        Some(Item::Change(c)) => c,
        other => panic!("expected a change, got {other:?}"),
    }
}

#[test]
fn a_transaction_from_bytes() {
    let mut d = Decoder::new();
    let item = d.decode(&begin(0x50, 9).encode()).unwrap();
    assert_eq!(
        item,
        Some(Item::Begin {
            xid: 9,
            final_lsn: Lsn(0x50),
            commit_time: 100
        })
    );
    assert_eq!(d.transaction().map(|t| t.xid), Some(9));
    let rel = d.decode(&users(1, &["id", "email"]).encode()).unwrap();
    assert!(matches!(rel, Some(Item::Relation(r)) if r.name == "users"));
    let c = change(d.decode(&insert(1, &[Some("7"), None]).encode()).unwrap());
    assert_eq!(c.kind, ChangeKind::Insert);
    assert_eq!(c.relation.qualified_name(), "public.users");
    let new = c.new.unwrap();
    assert_eq!(new.text("id"), Some("7"));
    assert_eq!(new.get("email"), Some(&Value::Null));
    assert!(c.old.is_none());
    assert_eq!(
        d.decode(&commit(0x50).encode()).unwrap(),
        Some(Item::Commit {
            commit_lsn: Lsn(0x50),
            end_lsn: Lsn(0x58),
            commit_time: 100
        })
    );
    assert!(d.transaction().is_none());
}

#[test]
fn update_fills_unchanged_toast_from_full_old_row() {
    let mut d = Decoder::new();
    d.apply(users(1, &["id", "bio"])).unwrap();
    d.apply(begin(1, 1)).unwrap();
    let c = change(
        d.apply(PgOutputMessage::Update(Update {
            relation_oid: 1,
            old: Some(OldTuple::Full(tuple(&[Some("1"), Some("long")]))),
            new: TupleData(vec![Value::Text("1".into()), Value::UnchangedToast]),
        }))
        .unwrap(),
    );
    assert_eq!(c.new.as_ref().unwrap().text("bio"), Some("long"));
    assert!(!c.old_is_key_only);

    // With only a key, the value stays unknown rather than becoming NULL.
    let c = change(
        d.apply(PgOutputMessage::Update(Update {
            relation_oid: 1,
            old: Some(OldTuple::Key(tuple(&[Some("1"), None]))),
            new: TupleData(vec![Value::Text("2".into()), Value::UnchangedToast]),
        }))
        .unwrap(),
    );
    assert_eq!(c.new.unwrap().get("bio"), Some(&Value::UnchangedToast));
    assert!(c.old_is_key_only);
}

#[test]
fn delete_carries_old_row() {
    let mut d = Decoder::new();
    d.apply(users(1, &["id"])).unwrap();
    d.apply(begin(1, 1)).unwrap();
    let c = change(
        d.apply(PgOutputMessage::Delete(Delete {
            relation_oid: 1,
            old: OldTuple::Key(tuple(&[Some("5")])),
        }))
        .unwrap(),
    );
    assert_eq!(c.kind, ChangeKind::Delete);
    assert!(c.new.is_none() && c.old_is_key_only);
    assert_eq!(c.old.unwrap().text("id"), Some("5"));
}

#[test]
fn schema_change_replaces_the_relation() {
    let mut d = Decoder::new();
    d.apply(users(1, &["id"])).unwrap();
    d.apply(begin(1, 1)).unwrap();
    let before = change(d.apply(insert(1, &[Some("1")])).unwrap());
    d.apply(users(1, &["id", "email"])).unwrap();
    assert!(matches!(
        d.apply(insert(1, &[Some("2")])),
        Err(DecodeError::ColumnCountMismatch {
            expected: 2,
            found: 1,
            ..
        })
    ));
    let after = change(d.apply(insert(1, &[Some("2"), Some("e")])).unwrap());
    assert_eq!(before.relation.columns.len(), 1);
    assert_eq!(after.new.unwrap().text("email"), Some("e"));
    assert_eq!(d.relations().len(), 1);
}

#[test]
fn truncate_names_its_relations() {
    let mut d = Decoder::new();
    d.apply(users(1, &["id"])).unwrap();
    d.apply(users(2, &["id"])).unwrap();
    let t = |oids: Vec<u32>| {
        PgOutputMessage::Truncate(Truncate {
            cascade: true,
            restart_identity: false,
            relation_oids: oids,
        })
    };
    assert!(matches!(
        d.apply(t(vec![1])),
        Err(DecodeError::OutsideTransaction {
            message: "Truncate"
        })
    ));
    d.apply(begin(1, 1)).unwrap();
    match d.apply(t(vec![2, 1])).unwrap() {
        Some(Item::Truncate {
            relations,
            cascade: true,
            restart_identity: false,
        }) => assert_eq!(relations.iter().map(|r| r.oid).collect::<Vec<_>>(), [2, 1]),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        d.apply(t(vec![3])),
        Err(DecodeError::UnknownRelation {
            message: "Truncate",
            oid: 3
        })
    );
}

#[test]
fn messages_respect_their_transactional_flag() {
    let msg = |transactional| {
        PgOutputMessage::Message(LogicalMessage {
            transactional,
            lsn: Lsn(3),
            prefix: "p".into(),
            content: vec![1],
        })
    };
    let mut d = Decoder::new();
    assert!(matches!(
        d.apply(msg(false)),
        Ok(Some(Item::Message {
            transactional: false,
            ..
        }))
    ));
    assert!(matches!(
        d.apply(msg(true)),
        Err(DecodeError::OutsideTransaction { .. })
    ));
    d.apply(begin(1, 1)).unwrap();
    assert!(d.apply(msg(true)).is_ok());
}

#[test]
fn framing_violations_are_errors() {
    let mut d = Decoder::new();
    d.apply(users(1, &["id"])).unwrap();
    assert_eq!(
        d.apply(insert(1, &[Some("1")])),
        Err(DecodeError::OutsideTransaction { message: "Insert" })
    );
    assert_eq!(
        d.apply(commit(1)),
        Err(DecodeError::OutsideTransaction { message: "Commit" })
    );
    d.apply(begin(0x10, 1)).unwrap();
    assert_eq!(
        d.apply(begin(0x20, 2)),
        Err(DecodeError::NestedBegin {
            open_xid: 1,
            xid: 2
        })
    );
    assert_eq!(
        d.apply(insert(9, &[Some("1")])),
        Err(DecodeError::UnknownRelation {
            message: "Insert",
            oid: 9
        })
    );
    assert_eq!(
        d.apply(commit(0x11)),
        Err(DecodeError::CommitLsnMismatch {
            final_lsn: Lsn(0x10),
            commit_lsn: Lsn(0x11)
        })
    );
    // The failed Commit left the transaction open; the right one closes it.
    assert!(d.apply(commit(0x10)).is_ok());
    d.reset();
    assert!(d.relations().is_empty());
}

#[test]
fn type_and_origin_yield_nothing() {
    let mut d = Decoder::new();
    d.apply(begin(1, 1)).unwrap();
    let origin = PgOutputMessage::Origin(crate::pgoutput::Origin {
        commit_lsn: Lsn(1),
        name: "o".into(),
    });
    assert_eq!(d.apply(origin), Ok(None));
    let ty = PgOutputMessage::Type(crate::pgoutput::TypeInfo {
        oid: 1,
        namespace: String::new(),
        name: "t".into(),
    });
    assert_eq!(d.apply(ty), Ok(None));
}
