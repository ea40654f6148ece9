//! The stateful layer: relation metadata attached to changes, and transaction framing checked,
//! one message at a time so memory stays bounded however large a transaction is.

use std::sync::Arc;

use super::message::{decode_message, OldTuple, PgOutputMessage};
use super::relations::{Relation, RelationCache};
use super::row::{ChangeKind, Row, RowChange};
use super::tuple::TupleData;
use super::DecodeError;
use crate::lsn::Lsn;

/// The transaction between a Begin and its Commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transaction {
    /// Transaction id.
    pub xid: u32,
    /// The commit LSN its Commit must carry.
    pub final_lsn: Lsn,
    /// Commit time, PostgreSQL microseconds.
    pub commit_time: i64,
}

/// What the [`Decoder`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A transaction starts; `final_lsn` is its commit LSN.
    Begin {
        /// Transaction id.
        xid: u32,
        /// The commit LSN the matching Commit carries.
        final_lsn: Lsn,
        /// Commit time, PostgreSQL microseconds.
        commit_time: i64,
    },
    /// A relation was (re)described; later changes to it use this description.
    Relation(Arc<Relation>),
    /// A row changed, inside the open transaction.
    Change(RowChange),
    /// Relations were truncated, inside the open transaction.
    Truncate {
        /// The relations truncated, as currently described.
        relations: Vec<Arc<Relation>>,
        /// `CASCADE` was given.
        cascade: bool,
        /// `RESTART IDENTITY` was given.
        restart_identity: bool,
    },
    /// A logical decoding message; a non-transactional one may come outside any transaction.
    Message {
        /// Emitted as part of the transaction.
        transactional: bool,
        /// The message's LSN.
        lsn: Lsn,
        /// The emitter's prefix.
        prefix: String,
        /// Arbitrary bytes.
        content: Vec<u8>,
    },
    /// The open transaction committed; confirm `end_lsn` once it is durable.
    Commit {
        /// The commit record's LSN (the Begin's `final_lsn`).
        commit_lsn: Lsn,
        /// Just past the commit record: what to report as flushed once durable.
        end_lsn: Lsn,
        /// Commit time, PostgreSQL microseconds.
        commit_time: i64,
    },
}

/// Turns one session's pgoutput messages into [`Item`]s.
///
/// Use one decoder per replication session: the server describes relations afresh on each
/// session. Any error means the stream cannot be trusted; the decoder's state is left as it was
/// before the failing message, but the caller should end the session rather than continue.
#[derive(Debug, Default)]
pub struct Decoder {
    relations: RelationCache,
    open: Option<Transaction>,
}

impl Decoder {
    /// A decoder that knows no relations and is outside any transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes the data of one XLogData and applies it.
    ///
    /// `Ok(None)` for messages with nothing to report (Type, Origin).
    pub fn decode(&mut self, data: &[u8]) -> Result<Option<Item>, DecodeError> {
        self.apply(decode_message(data)?)
    }

    /// Applies one decoded message.
    pub fn apply(&mut self, message: PgOutputMessage) -> Result<Option<Item>, DecodeError> {
        let item = match message {
            PgOutputMessage::Begin(b) => {
                if let Some(open) = self.open {
                    return Err(DecodeError::NestedBegin {
                        open_xid: open.xid,
                        xid: b.xid,
                    });
                }
                self.open = Some(Transaction {
                    xid: b.xid,
                    final_lsn: b.final_lsn,
                    commit_time: b.commit_time,
                });
                Item::Begin {
                    xid: b.xid,
                    final_lsn: b.final_lsn,
                    commit_time: b.commit_time,
                }
            }
            PgOutputMessage::Commit(c) => {
                let open = self.require_open("Commit")?;
                if open.final_lsn != c.commit_lsn {
                    return Err(DecodeError::CommitLsnMismatch {
                        final_lsn: open.final_lsn,
                        commit_lsn: c.commit_lsn,
                    });
                }
                self.open = None;
                Item::Commit {
                    commit_lsn: c.commit_lsn,
                    end_lsn: c.end_lsn,
                    commit_time: c.commit_time,
                }
            }
            PgOutputMessage::Origin(_) | PgOutputMessage::Type(_) => return Ok(None),
            PgOutputMessage::Relation(rel) => Item::Relation(self.relations.insert(rel)),
            PgOutputMessage::Insert(i) => {
                let relation = self.changed_relation("Insert", i.relation_oid)?;
                let new = row("Insert", &relation, i.new)?;
                Item::Change(RowChange {
                    relation,
                    kind: ChangeKind::Insert,
                    new: Some(new),
                    old: None,
                    old_is_key_only: false,
                })
            }
            PgOutputMessage::Update(u) => {
                let relation = self.changed_relation("Update", u.relation_oid)?;
                let (old, old_is_key_only) = old_row("Update", &relation, u.old)?;
                let mut new = row("Update", &relation, u.new)?;
                if let Some(old) = old.as_ref().filter(|_| !old_is_key_only) {
                    new.fill_unchanged_from(old);
                }
                Item::Change(RowChange {
                    relation,
                    kind: ChangeKind::Update,
                    new: Some(new),
                    old,
                    old_is_key_only,
                })
            }
            PgOutputMessage::Delete(d) => {
                let relation = self.changed_relation("Delete", d.relation_oid)?;
                let (old, old_is_key_only) = old_row("Delete", &relation, Some(d.old))?;
                Item::Change(RowChange {
                    relation,
                    kind: ChangeKind::Delete,
                    new: None,
                    old,
                    old_is_key_only,
                })
            }
            PgOutputMessage::Truncate(t) => {
                self.require_open("Truncate")?;
                let relations = t
                    .relation_oids
                    .iter()
                    .map(|&oid| self.relation("Truncate", oid))
                    .collect::<Result<Vec<_>, _>>()?;
                Item::Truncate {
                    relations,
                    cascade: t.cascade,
                    restart_identity: t.restart_identity,
                }
            }
            PgOutputMessage::Message(m) => {
                if m.transactional {
                    self.require_open("transactional Message")?;
                }
                Item::Message {
                    transactional: m.transactional,
                    lsn: m.lsn,
                    prefix: m.prefix,
                    content: m.content,
                }
            }
        };
        Ok(Some(item))
    }

    /// The relations described so far on this session.
    pub fn relations(&self) -> &RelationCache {
        &self.relations
    }

    /// The open transaction, between Begin and Commit.
    pub fn transaction(&self) -> Option<&Transaction> {
        self.open.as_ref()
    }

    /// Forgets relations and any open transaction, as at the start of a new session.
    pub fn reset(&mut self) {
        self.relations.clear();
        self.open = None;
    }

    fn require_open(&self, message: &'static str) -> Result<Transaction, DecodeError> {
        self.open.ok_or(DecodeError::OutsideTransaction { message })
    }

    fn relation(&self, message: &'static str, oid: u32) -> Result<Arc<Relation>, DecodeError> {
        self.relations
            .get(oid)
            .cloned()
            .ok_or(DecodeError::UnknownRelation { message, oid })
    }

    fn changed_relation(
        &self,
        message: &'static str,
        oid: u32,
    ) -> Result<Arc<Relation>, DecodeError> {
        self.require_open(message)?;
        self.relation(message, oid)
    }
}

fn row(
    message: &'static str,
    relation: &Arc<Relation>,
    tuple: TupleData,
) -> Result<Row, DecodeError> {
    let found = tuple.len();
    Row::new(Arc::clone(relation), tuple.0).ok_or_else(|| DecodeError::ColumnCountMismatch {
        message,
        schema: relation.schema().to_owned(),
        table: relation.name.clone(),
        oid: relation.oid,
        expected: relation.columns.len(),
        found,
    })
}

fn old_row(
    message: &'static str,
    relation: &Arc<Relation>,
    old: Option<OldTuple>,
) -> Result<(Option<Row>, bool), DecodeError> {
    Ok(match old {
        None => (None, false),
        Some(OldTuple::Key(t)) => (Some(row(message, relation, t)?), true),
        Some(OldTuple::Full(t)) => (Some(row(message, relation, t)?), false),
    })
}

#[cfg(test)]
#[path = "decoder_tests.rs"]
mod tests;
