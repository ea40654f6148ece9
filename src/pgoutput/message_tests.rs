//! Hand-built byte sequences, following the documented layouts, for every message kind.

use super::*;
use crate::pgoutput::Value;

/// A byte builder so each test reads like the protocol documentation.
#[derive(Default)]
struct B(Vec<u8>);

impl B {
    fn tag(t: u8) -> Self {
        B(vec![t])
    }
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i32(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i64(mut self, v: i64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn cstr(mut self, s: &str) -> Self {
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        self
    }
    fn text(self, s: &str) -> Self {
        let mut b = self.u8(b't').i32(s.len() as i32);
        b.0.extend_from_slice(s.as_bytes());
        b
    }
}

/// Decodes, and checks the encoder writes the same bytes back.
fn check(b: B, expected: PgOutputMessage) {
    let decoded = decode_message(&b.0).unwrap();
    assert_eq!(decoded, expected);
    assert_eq!(decoded.encode(), b.0, "encoder disagrees with the layout");
}

fn t(s: &str) -> Value {
    Value::Text(s.into())
}

#[test]
fn begin() {
    let b = B::tag(b'B').u64(0x1_0000_00A0).i64(765_432_100).u32(742);
    check(
        b,
        PgOutputMessage::Begin(Begin {
            final_lsn: Lsn(0x1_0000_00A0),
            commit_time: 765_432_100,
            xid: 742,
        }),
    );
}

#[test]
fn commit() {
    let b = B::tag(b'C').u8(0).u64(0xA0).u64(0xD8).i64(-1);
    check(
        b,
        PgOutputMessage::Commit(Commit {
            flags: 0,
            commit_lsn: Lsn(0xA0),
            end_lsn: Lsn(0xD8),
            commit_time: -1,
        }),
    );
}

#[test]
fn origin() {
    let b = B::tag(b'O').u64(5).cstr("pg_16400");
    check(
        b,
        PgOutputMessage::Origin(Origin {
            commit_lsn: Lsn(5),
            name: "pg_16400".into(),
        }),
    );
}

#[test]
fn relation() {
    let b = B::tag(b'R')
        .u32(16384)
        .cstr("public")
        .cstr("users")
        .u8(b'f')
        .u16(2)
        .u8(1)
        .cstr("id")
        .u32(20)
        .i32(-1)
        .u8(0)
        .cstr("email")
        .u32(1043)
        .i32(259);
    check(
        b,
        PgOutputMessage::Relation(Relation {
            oid: 16384,
            namespace: "public".into(),
            name: "users".into(),
            replica_identity: ReplicaIdentity::Full,
            columns: vec![
                Column {
                    is_key: true,
                    name: "id".into(),
                    type_oid: 20,
                    type_modifier: -1,
                },
                Column {
                    is_key: false,
                    name: "email".into(),
                    type_oid: 1043,
                    type_modifier: 259,
                },
            ],
        }),
    );
}

#[test]
fn relation_with_unknown_replica_identity_is_an_error() {
    let b = B::tag(b'R').u32(1).cstr("s").cstr("t").u8(b'x').u16(0);
    let err = decode_message(&b.0).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::UnexpectedByte {
            message: "Relation",
            field: "replica identity",
            offset: 9,
            found: b'x',
            ..
        }
    ));
}

#[test]
fn type_message() {
    let b = B::tag(b'Y').u32(16500).cstr("public").cstr("mood");
    check(
        b,
        PgOutputMessage::Type(TypeInfo {
            oid: 16500,
            namespace: "public".into(),
            name: "mood".into(),
        }),
    );
}

#[test]
fn insert() {
    let b = B::tag(b'I')
        .u32(16384)
        .u8(b'N')
        .u16(3)
        .text("1")
        .u8(b'n')
        .text("a@b");
    check(
        b,
        PgOutputMessage::Insert(Insert {
            relation_oid: 16384,
            new: TupleData(vec![t("1"), Value::Null, t("a@b")]),
        }),
    );
}

#[test]
fn update_without_old() {
    let b = B::tag(b'U').u32(7).u8(b'N').u16(2).text("1").u8(b'u');
    check(
        b,
        PgOutputMessage::Update(Update {
            relation_oid: 7,
            old: None,
            new: TupleData(vec![t("1"), Value::UnchangedToast]),
        }),
    );
}

#[test]
fn update_with_key() {
    let b = B::tag(b'U')
        .u32(7)
        .u8(b'K')
        .u16(2)
        .text("1")
        .u8(b'n')
        .u8(b'N')
        .u16(2)
        .text("2")
        .text("x");
    check(
        b,
        PgOutputMessage::Update(Update {
            relation_oid: 7,
            old: Some(OldTuple::Key(TupleData(vec![t("1"), Value::Null]))),
            new: TupleData(vec![t("2"), t("x")]),
        }),
    );
}

#[test]
fn update_with_full_old_row() {
    let b = B::tag(b'U')
        .u32(7)
        .u8(b'O')
        .u16(1)
        .text("pending")
        .u8(b'N')
        .u16(1)
        .text("completed");
    check(
        b,
        PgOutputMessage::Update(Update {
            relation_oid: 7,
            old: Some(OldTuple::Full(TupleData(vec![t("pending")]))),
            new: TupleData(vec![t("completed")]),
        }),
    );
}

#[test]
fn update_needs_n_after_old() {
    let b = B::tag(b'U').u32(7).u8(b'O').u16(0).u8(b'O').u16(0);
    assert!(matches!(
        decode_message(&b.0),
        Err(DecodeError::UnexpectedByte {
            message: "Update",
            field: "tuple marker",
            offset: 8,
            found: b'O',
            ..
        })
    ));
}

#[test]
fn delete_key_and_full() {
    check(
        B::tag(b'D').u32(9).u8(b'K').u16(1).text("3"),
        PgOutputMessage::Delete(Delete {
            relation_oid: 9,
            old: OldTuple::Key(TupleData(vec![t("3")])),
        }),
    );
    check(
        B::tag(b'D').u32(9).u8(b'O').u16(1).u8(b'n'),
        PgOutputMessage::Delete(Delete {
            relation_oid: 9,
            old: OldTuple::Full(TupleData(vec![Value::Null])),
        }),
    );
    assert!(decode_message(&B::tag(b'D').u32(9).u8(b'N').u16(0).0).is_err());
}

#[test]
fn truncate() {
    check(
        B::tag(b'T').u32(2).u8(3).u32(10).u32(11),
        PgOutputMessage::Truncate(Truncate {
            cascade: true,
            restart_identity: true,
            relation_oids: vec![10, 11],
        }),
    );
    check(
        B::tag(b'T').u32(1).u8(2).u32(10),
        PgOutputMessage::Truncate(Truncate {
            cascade: false,
            restart_identity: true,
            relation_oids: vec![10],
        }),
    );
    // A count far beyond the data is a truncation error, not an allocation.
    assert!(matches!(
        decode_message(&B::tag(b'T').u32(u32::MAX).u8(0).0),
        Err(DecodeError::Truncated { .. })
    ));
}

#[test]
fn logical_message() {
    let mut b = B::tag(b'M').u8(1).u64(0x42).cstr("fuse").u32(3);
    b.0.extend_from_slice(b"\0hi");
    check(
        b,
        PgOutputMessage::Message(LogicalMessage {
            transactional: true,
            lsn: Lsn(0x42),
            prefix: "fuse".into(),
            content: b"\0hi".to_vec(),
        }),
    );
    let b = B::tag(b'M').u8(0).u64(1).cstr("").u32(0);
    check(
        b,
        PgOutputMessage::Message(LogicalMessage {
            transactional: false,
            lsn: Lsn(1),
            prefix: String::new(),
            content: vec![],
        }),
    );
}

#[test]
fn streaming_and_unknown_tags_are_named_errors() {
    for tag in [
        b'S', b'E', b'c', b'A', b'P', b'K', b'r', b'p', b'z', 0, 0xff,
    ] {
        let err = decode_message(&[tag, 0, 0, 0, 1]).unwrap_err();
        assert_eq!(
            err,
            DecodeError::UnknownTag {
                context: "pgoutput message",
                tag
            }
        );
    }
    let msg = decode_message(b"S\0").unwrap_err().to_string();
    assert!(msg.contains("'S'") && msg.contains("0x53"), "{msg}");
    assert!(matches!(
        decode_message(b""),
        Err(DecodeError::Empty { .. })
    ));
}

#[test]
fn trailing_bytes_are_an_error() {
    let mut b = B::tag(b'B').u64(1).i64(2).u32(3);
    b.0.push(0);
    assert_eq!(
        decode_message(&b.0),
        Err(DecodeError::TrailingBytes {
            message: "Begin",
            consumed: 21,
            extra: 1
        })
    );
}

#[test]
fn invalid_utf8_text_is_an_error() {
    let mut b = B::tag(b'I').u32(1).u8(b'N').u16(1).u8(b't').u32(2);
    b.0.extend_from_slice(&[0xc3, 0x28]);
    let err = decode_message(&b.0).unwrap_err();
    assert_eq!(
        err,
        DecodeError::InvalidUtf8 {
            message: "Insert",
            field: "text value",
            offset: 13
        }
    );
    assert!(err.to_string().contains("Insert"));
}

#[test]
fn every_truncation_of_a_valid_message_is_an_error() {
    let full = B::tag(b'U')
        .u32(7)
        .u8(b'O')
        .u16(2)
        .text("a")
        .u8(b'u')
        .u8(b'N')
        .u16(2)
        .text("b")
        .u8(b'n');
    for len in 0..full.0.len() {
        assert!(decode_message(&full.0[..len]).is_err(), "length {len}");
    }
}
