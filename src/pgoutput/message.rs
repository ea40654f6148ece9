//! pgoutput protocol version 1 messages, decoded one XLogData payload at a time.

use super::reader::Reader;
use super::relations::{Column, Relation, ReplicaIdentity};
use super::tuple::{read_tuple, TupleData};
use super::DecodeError;
use crate::lsn::Lsn;

/// One pgoutput message (protocol version 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgOutputMessage {
    /// `B`
    Begin(Begin),
    /// `C`
    Commit(Commit),
    /// `O`
    Origin(Origin),
    /// `R`
    Relation(Relation),
    /// `Y`
    Type(TypeInfo),
    /// `I`
    Insert(Insert),
    /// `U`
    Update(Update),
    /// `D`
    Delete(Delete),
    /// `T`
    Truncate(Truncate),
    /// `M`
    Message(LogicalMessage),
}

/// The start of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Begin {
    /// The LSN of the transaction's commit record: equal to its Commit's `commit_lsn`.
    pub final_lsn: Lsn,
    /// Commit time, PostgreSQL microseconds.
    pub commit_time: i64,
    /// Transaction id.
    pub xid: u32,
}

/// The end of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    /// Unused by PostgreSQL so far (always 0); kept, not checked.
    pub flags: u8,
    /// The LSN of the commit record.
    pub commit_lsn: Lsn,
    /// The LSN just past the commit record: the position to confirm once this transaction is
    /// durable.
    pub end_lsn: Lsn,
    /// Commit time, PostgreSQL microseconds.
    pub commit_time: i64,
}

/// The transaction came from another node through replication origin `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The commit LSN on the origin server.
    pub commit_lsn: Lsn,
    /// Origin name.
    pub name: String,
}

/// A data type's name, sent before the first Relation using a non-built-in type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeInfo {
    /// The type's OID.
    pub oid: u32,
    /// Its schema; empty for `pg_catalog`.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// A row inserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    /// The relation, described by an earlier Relation message.
    pub relation_oid: u32,
    /// The new row.
    pub new: TupleData,
}

/// The old values an UPDATE or DELETE carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple {
    /// `K`: only the replica identity columns hold values; the others are NULL.
    Key(TupleData),
    /// `O`: the whole old row (REPLICA IDENTITY FULL).
    Full(TupleData),
}

impl OldTuple {
    /// The values, whichever kind.
    pub fn tuple(&self) -> &TupleData {
        match self {
            OldTuple::Key(t) | OldTuple::Full(t) => t,
        }
    }
}

/// A row updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The relation, described by an earlier Relation message.
    pub relation_oid: u32,
    /// Absent when the replica identity is DEFAULT or INDEX and the key did not change.
    pub old: Option<OldTuple>,
    /// The new row; unchanged TOASTed columns arrive as [`super::Value::UnchangedToast`].
    pub new: TupleData,
}

/// A row deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// The relation, described by an earlier Relation message.
    pub relation_oid: u32,
    /// The old key or row.
    pub old: OldTuple,
}

/// `TRUNCATE` of one or more relations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    /// `TRUNCATE ... CASCADE` (option bit 1).
    pub cascade: bool,
    /// `TRUNCATE ... RESTART IDENTITY` (option bit 2).
    pub restart_identity: bool,
    /// The relations truncated.
    pub relation_oids: Vec<u32>,
}

/// A logical decoding message, from `pg_logical_emit_message` (sent only with the `messages`
/// option).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalMessage {
    /// Part of a transaction (else sent on its own, outside Begin/Commit).
    pub transactional: bool,
    /// The message's LSN.
    pub lsn: Lsn,
    /// The prefix given by the emitter.
    pub prefix: String,
    /// The content, arbitrary bytes.
    pub content: Vec<u8>,
}

/// Decodes one pgoutput message: the data of one XLogData.
///
/// Unknown tags, including those of protocol versions 2 and later (`S`, `E`, `c`, `A`, `b`, `P`,
/// `K`, `r`, `p`), are errors, as are bytes left over after the message.
pub fn decode_message(buf: &[u8]) -> Result<PgOutputMessage, DecodeError> {
    let mut r = Reader::new(buf, "pgoutput message");
    if buf.is_empty() {
        return Err(DecodeError::Empty {
            context: "pgoutput message",
        });
    }
    let message = match r.u8("tag")? {
        b'B' => {
            r.set_message("Begin");
            PgOutputMessage::Begin(Begin {
                final_lsn: r.lsn("final LSN")?,
                commit_time: r.i64("commit time")?,
                xid: r.u32("xid")?,
            })
        }
        b'C' => {
            r.set_message("Commit");
            PgOutputMessage::Commit(Commit {
                flags: r.u8("flags")?,
                commit_lsn: r.lsn("commit LSN")?,
                end_lsn: r.lsn("end LSN")?,
                commit_time: r.i64("commit time")?,
            })
        }
        b'O' => {
            r.set_message("Origin");
            PgOutputMessage::Origin(Origin {
                commit_lsn: r.lsn("origin commit LSN")?,
                name: r.cstr("origin name")?.to_owned(),
            })
        }
        b'R' => {
            r.set_message("Relation");
            PgOutputMessage::Relation(read_relation(&mut r)?)
        }
        b'Y' => {
            r.set_message("Type");
            PgOutputMessage::Type(TypeInfo {
                oid: r.u32("type OID")?,
                namespace: r.cstr("type namespace")?.to_owned(),
                name: r.cstr("type name")?.to_owned(),
            })
        }
        b'I' => {
            r.set_message("Insert");
            let relation_oid = r.u32("relation OID")?;
            expect_marker(&mut r, b"N", "'N'")?;
            PgOutputMessage::Insert(Insert {
                relation_oid,
                new: read_tuple(&mut r)?,
            })
        }
        b'U' => {
            r.set_message("Update");
            let relation_oid = r.u32("relation OID")?;
            let (old, new) = match expect_marker(&mut r, b"KON", "'K', 'O' or 'N'")? {
                b'N' => (None, read_tuple(&mut r)?),
                marker => {
                    let old = read_old(&mut r, marker)?;
                    expect_marker(&mut r, b"N", "'N'")?;
                    (Some(old), read_tuple(&mut r)?)
                }
            };
            PgOutputMessage::Update(Update {
                relation_oid,
                old,
                new,
            })
        }
        b'D' => {
            r.set_message("Delete");
            let relation_oid = r.u32("relation OID")?;
            let marker = expect_marker(&mut r, b"KO", "'K' or 'O'")?;
            PgOutputMessage::Delete(Delete {
                relation_oid,
                old: read_old(&mut r, marker)?,
            })
        }
        b'T' => {
            r.set_message("Truncate");
            PgOutputMessage::Truncate(read_truncate(&mut r)?)
        }
        b'M' => {
            r.set_message("Message");
            let flags = r.u8("flags")?;
            PgOutputMessage::Message(LogicalMessage {
                transactional: flags & 1 != 0,
                lsn: r.lsn("LSN")?,
                prefix: r.cstr("prefix")?.to_owned(),
                content: r.counted_bytes("content")?.to_vec(),
            })
        }
        tag => {
            return Err(DecodeError::UnknownTag {
                context: "pgoutput message",
                tag,
            })
        }
    };
    r.finish()?;
    Ok(message)
}

/// Reads the byte that says which tuple follows, failing unless it is one of `allowed`.
fn expect_marker(
    r: &mut Reader<'_>,
    allowed: &[u8],
    expected: &'static str,
) -> Result<u8, DecodeError> {
    let offset = r.offset();
    let found = r.u8("tuple marker")?;
    if allowed.contains(&found) {
        Ok(found)
    } else {
        Err(DecodeError::UnexpectedByte {
            message: r.message(),
            field: "tuple marker",
            offset,
            found,
            expected,
        })
    }
}

fn read_old(r: &mut Reader<'_>, marker: u8) -> Result<OldTuple, DecodeError> {
    let tuple = read_tuple(r)?;
    Ok(if marker == b'O' {
        OldTuple::Full(tuple)
    } else {
        OldTuple::Key(tuple)
    })
}

fn read_relation(r: &mut Reader<'_>) -> Result<Relation, DecodeError> {
    let oid = r.u32("relation OID")?;
    let namespace = r.cstr("namespace")?.to_owned();
    let name = r.cstr("relation name")?.to_owned();
    let offset = r.offset();
    let byte = r.u8("replica identity")?;
    let replica_identity = ReplicaIdentity::from_byte(byte).ok_or(DecodeError::UnexpectedByte {
        message: r.message(),
        field: "replica identity",
        offset,
        found: byte,
        expected: "'d', 'n', 'f' or 'i'",
    })?;
    let count = usize::from(r.u16("column count")?);
    // A column takes at least 10 bytes; a bogus count must not reserve memory.
    let mut columns = Vec::with_capacity(count.min(r.remaining() / 10));
    for _ in 0..count {
        columns.push(Column {
            is_key: r.u8("column flags")? & 1 != 0,
            name: r.cstr("column name")?.to_owned(),
            type_oid: r.u32("column type OID")?,
            type_modifier: r.i32("column type modifier")?,
        });
    }
    Ok(Relation {
        oid,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

fn read_truncate(r: &mut Reader<'_>) -> Result<Truncate, DecodeError> {
    let count = r.u32("relation count")?;
    let options = r.u8("options")?;
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    let mut relation_oids = Vec::with_capacity(count.min(r.remaining() / 4));
    for _ in 0..count {
        relation_oids.push(r.u32("relation OID")?);
    }
    Ok(Truncate {
        cascade: options & 1 != 0,
        restart_identity: options & 2 != 0,
        relation_oids,
    })
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
