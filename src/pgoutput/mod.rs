//! Pure decoding of PostgreSQL logical replication: the walsender's CopyData envelope
//! ([`envelope`]), pgoutput protocol version 1 messages ([`message`], [`mod@tuple`]), and a stateful
//! [`Decoder`] that attaches relation metadata to row changes and checks transaction framing.
//!
//! Nothing here does I/O: bytes go in, values or a [`DecodeError`] come out, and no input can make
//! it panic.

pub mod decoder;
mod encode;
pub mod envelope;
mod error;
pub mod message;
mod reader;
pub mod relations;
pub mod row;
pub mod time;
pub mod tuple;

pub use decoder::{Decoder, Item, Transaction};
pub use envelope::{
    decode_envelope, encode_keepalive, encode_standby_status_update, encode_xlog_data,
    ReplicationMessage,
};
pub use error::DecodeError;
pub use message::{
    decode_message, Begin, Commit, Delete, Insert, LogicalMessage, OldTuple, Origin,
    PgOutputMessage, Truncate, TypeInfo, Update,
};
pub use relations::{Column, Relation, RelationCache, ReplicaIdentity};
pub use row::{ChangeKind, Row, RowChange};
pub use time::{
    pg_micros_from_system_time, pg_micros_now, pg_micros_to_rfc3339, pg_micros_to_system_time,
};
pub use tuple::{TupleData, Value};
