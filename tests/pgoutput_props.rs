//! Property tests for the pgoutput decoders: well-formed input round-trips, and no input, however
//! mangled, makes them panic.

use fuse_cdc_bridge::pgoutput::{
    decode_envelope, decode_message, encode_keepalive, encode_standby_status_update,
    encode_xlog_data, Begin, Column, Commit, Decoder, Delete, Insert, Item, LogicalMessage,
    OldTuple, Origin, PgOutputMessage, Relation, ReplicaIdentity, ReplicationMessage, Truncate,
    TupleData, TypeInfo, Update, Value,
};
use fuse_cdc_bridge::Lsn;
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,11}"
}

fn lsn() -> impl Strategy<Value = Lsn> {
    any::<u64>().prop_map(Lsn)
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(Value::UnchangedToast),
        any::<String>().prop_map(Value::Text),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(Value::Binary),
    ]
}

fn tuple() -> impl Strategy<Value = TupleData> {
    proptest::collection::vec(value(), 0..5).prop_map(TupleData)
}

fn old_tuple() -> impl Strategy<Value = OldTuple> {
    prop_oneof![
        tuple().prop_map(OldTuple::Key),
        tuple().prop_map(OldTuple::Full)
    ]
}

fn relation() -> impl Strategy<Value = Relation> {
    let column = (any::<bool>(), name(), any::<u32>(), any::<i32>()).prop_map(
        |(is_key, name, type_oid, type_modifier)| Column {
            is_key,
            name,
            type_oid,
            type_modifier,
        },
    );
    let identity = prop_oneof![
        Just(ReplicaIdentity::Default),
        Just(ReplicaIdentity::Nothing),
        Just(ReplicaIdentity::Full),
        Just(ReplicaIdentity::Index),
    ];
    (
        0u32..4,
        prop_oneof![Just(String::new()), name()],
        name(),
        identity,
        proptest::collection::vec(column, 0..5),
    )
        .prop_map(
            |(oid, namespace, name, replica_identity, columns)| Relation {
                oid,
                namespace,
                name,
                replica_identity,
                columns,
            },
        )
}

/// Any message; relation OIDs and LSNs come from small ranges so that sequences of these
/// sometimes line up into valid transactions.
fn message() -> impl Strategy<Value = PgOutputMessage> {
    let small_lsn = (0u64..3).prop_map(Lsn);
    prop_oneof![
        (small_lsn.clone(), any::<i64>(), any::<u32>()).prop_map(
            |(final_lsn, commit_time, xid)| {
                PgOutputMessage::Begin(Begin {
                    final_lsn,
                    commit_time,
                    xid,
                })
            }
        ),
        (any::<u8>(), small_lsn, lsn(), any::<i64>()).prop_map(
            |(flags, commit_lsn, end_lsn, commit_time)| PgOutputMessage::Commit(Commit {
                flags,
                commit_lsn,
                end_lsn,
                commit_time,
            })
        ),
        (lsn(), name())
            .prop_map(|(commit_lsn, name)| PgOutputMessage::Origin(Origin { commit_lsn, name })),
        relation().prop_map(PgOutputMessage::Relation),
        (any::<u32>(), name(), name()).prop_map(|(oid, namespace, name)| {
            PgOutputMessage::Type(TypeInfo {
                oid,
                namespace,
                name,
            })
        }),
        (0u32..4, tuple())
            .prop_map(|(relation_oid, new)| PgOutputMessage::Insert(Insert { relation_oid, new })),
        (0u32..4, proptest::option::of(old_tuple()), tuple()).prop_map(
            |(relation_oid, old, new)| PgOutputMessage::Update(Update {
                relation_oid,
                old,
                new
            })
        ),
        (0u32..4, old_tuple())
            .prop_map(|(relation_oid, old)| PgOutputMessage::Delete(Delete { relation_oid, old })),
        (
            any::<bool>(),
            any::<bool>(),
            proptest::collection::vec(0u32..4, 0..4)
        )
            .prop_map(|(cascade, restart_identity, relation_oids)| {
                PgOutputMessage::Truncate(Truncate {
                    cascade,
                    restart_identity,
                    relation_oids,
                })
            }),
        (
            any::<bool>(),
            lsn(),
            name(),
            proptest::collection::vec(any::<u8>(), 0..16)
        )
            .prop_map(
                |(transactional, lsn, prefix, content)| PgOutputMessage::Message(LogicalMessage {
                    transactional,
                    lsn,
                    prefix,
                    content,
                })
            ),
    ]
}

/// A byte-level edit of a valid message.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1u8..).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
    ]
}

fn mutate(mut bytes: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let len = bytes.len();
    match *m {
        Mutation::Truncate(i) => bytes.truncate(i % (len + 1)),
        Mutation::Flip(i, x) if len > 0 => bytes[i % len] ^= x,
        Mutation::Insert(i, b) => bytes.insert(i % (len + 1), b),
        Mutation::Remove(i) if len > 0 => {
            bytes.remove(i % len);
        }
        _ => {}
    }
    bytes
}

/// Every decoder entry point on the same bytes; returning at all is the property.
fn feed_everywhere(bytes: &[u8], decoder: &mut Decoder) {
    let _ = decode_envelope(bytes);
    let _ = decode_message(bytes);
    let _ = decoder.decode(bytes);
    if let Ok(ReplicationMessage::XLogData { data, .. }) = decode_envelope(bytes) {
        let _ = decoder.decode(data);
    }
}

/// Cases per property: 2 000 in CI (about 20 s in all on a 2-core machine); with
/// `FUSE_CDC_LONG=1`, 30 000 (about two minutes). `PROPTEST_CASES` is not used for this so that the long mode is one switch
/// for every suite.
fn cases() -> u32 {
    if std::env::var("FUSE_CDC_LONG").is_ok_and(|v| v == "1") {
        30_000
    } else {
        2_000
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        feed_everywhere(&bytes, &mut Decoder::new());
    }

    #[test]
    fn arbitrary_bodies_behind_known_tags_never_panic(
        tag in prop::sample::select(b"BCORYIUDTMwkSEcA".to_vec()),
        oid in proptest::option::of(0u32..4),
        body in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        let mut bytes = vec![tag];
        if let Some(oid) = oid {
            bytes.extend_from_slice(&oid.to_be_bytes());
        }
        bytes.extend_from_slice(&body);
        feed_everywhere(&bytes, &mut seeded_decoder());
    }

    #[test]
    fn messages_round_trip(m in message()) {
        prop_assert_eq!(decode_message(&m.encode()), Ok(m));
    }

    #[test]
    fn every_proper_prefix_is_an_error(m in message()) {
        let bytes = m.encode();
        for len in 0..bytes.len() {
            prop_assert!(decode_message(&bytes[..len]).is_err(), "prefix {} of {:?}", len, m);
        }
        let mut longer = bytes;
        longer.push(0);
        prop_assert!(decode_message(&longer).is_err());
    }

    #[test]
    fn mutated_messages_never_panic(
        m in message(),
        edits in proptest::collection::vec(mutation(), 1..4),
    ) {
        let bytes = edits.iter().fold(m.encode(), mutate);
        feed_everywhere(&bytes, &mut Decoder::new());
        let wrapped = encode_xlog_data(Lsn(1), Lsn(2), 3, &bytes);
        feed_everywhere(&wrapped, &mut Decoder::new());
    }

    #[test]
    fn message_sequences_never_panic(ms in proptest::collection::vec(message(), 0..24)) {
        let mut decoder = Decoder::new();
        for m in &ms {
            let before = decoder.transaction().copied();
            match decoder.apply(m.clone()) {
                Ok(_) => {}
                // A rejected message leaves the framing state as it was.
                Err(_) => prop_assert_eq!(decoder.transaction().copied(), before),
            }
        }
    }

    #[test]
    fn well_formed_transactions_decode(
        rel in relation(),
        rows in proptest::collection::vec(proptest::collection::vec(value(), 0..5), 0..10),
        final_lsn in 1u64..,
    ) {
        let columns = rel.columns.len();
        let oid = rel.oid;
        let mut decoder = Decoder::new();
        let mut stream = vec![
            PgOutputMessage::Begin(Begin { final_lsn: Lsn(final_lsn), commit_time: 0, xid: 7 }),
            PgOutputMessage::Relation(rel),
        ];
        for mut values in rows.clone() {
            values.resize(columns, Value::Null);
            stream.push(PgOutputMessage::Insert(Insert { relation_oid: oid, new: TupleData(values) }));
        }
        stream.push(PgOutputMessage::Commit(Commit {
            flags: 0, commit_lsn: Lsn(final_lsn), end_lsn: Lsn(final_lsn), commit_time: 0,
        }));
        let mut changes = 0;
        for m in stream {
            match decoder.decode(&m.encode()) {
                Ok(Some(Item::Change(c))) => {
                    prop_assert_eq!(c.new.map(|r| r.len()), Some(columns));
                    changes += 1;
                }
                Ok(_) => {}
                Err(e) => prop_assert!(false, "{}", e),
            }
        }
        prop_assert_eq!(changes, rows.len());
        prop_assert!(decoder.transaction().is_none());
    }

    #[test]
    fn envelope_encoders_round_trip(
        start in lsn(), end in lsn(), time in any::<i64>(), reply in any::<bool>(),
        data in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let x = encode_xlog_data(start, end, time, &data);
        let k = encode_keepalive(end, time, reply);
        prop_assert_eq!(
            decode_envelope(&x),
            Ok(ReplicationMessage::XLogData { wal_start: start, wal_end: end, server_time: time, data: &data })
        );
        prop_assert_eq!(
            decode_envelope(&k),
            Ok(ReplicationMessage::PrimaryKeepalive { wal_end: end, server_time: time, reply_requested: reply })
        );
        let r = encode_standby_status_update(start, end, Lsn(start.0 ^ end.0), time, reply);
        prop_assert_eq!(r.len(), 34);
        prop_assert_eq!(r[0], b'r');
        let field = |i: usize| u64::from_be_bytes(r[1 + 8 * i..9 + 8 * i].try_into().unwrap());
        prop_assert_eq!((field(0), field(1), field(2)), (start.0, end.0, start.0 ^ end.0));
        prop_assert_eq!(field(3) as i64, time);
        prop_assert_eq!(r[33], u8::from(reply));
    }
}

/// A decoder inside a transaction that knows relations 0 to 3, each with two columns, so
/// mangled changes get past the framing and relation checks to the tuple checks.
fn seeded_decoder() -> Decoder {
    let mut decoder = Decoder::new();
    for oid in 0..4 {
        let column = |name: &str| Column {
            is_key: true,
            name: name.into(),
            type_oid: 25,
            type_modifier: -1,
        };
        let rel = Relation {
            oid,
            namespace: "public".into(),
            name: format!("t{oid}"),
            replica_identity: ReplicaIdentity::Full,
            columns: vec![column("a"), column("b")],
        };
        decoder.apply(PgOutputMessage::Relation(rel)).unwrap();
    }
    let begin = Begin {
        final_lsn: Lsn(1),
        commit_time: 0,
        xid: 1,
    };
    decoder.apply(PgOutputMessage::Begin(begin)).unwrap();
    decoder
}
