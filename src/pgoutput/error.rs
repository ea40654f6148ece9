//! The module's one error type.

use crate::lsn::Lsn;

/// Why a byte sequence or a message sequence could not be decoded.
///
/// Every variant means the stream is not what protocol version 1 of pgoutput promises (or that we
/// misparsed it): the caller should stop consuming the stream rather than skip the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// An empty buffer where a tagged message was expected.
    #[error("empty {context}: expected at least a tag byte")]
    Empty { context: &'static str },

    /// A tag byte this decoder does not know (for pgoutput, this includes the streaming and
    /// two-phase messages of protocol versions 2 and later).
    #[error("unknown {context} tag {}", show_byte(*tag))]
    UnknownTag { context: &'static str, tag: u8 },

    /// The buffer ended inside a field.
    #[error(
        "{message}: truncated {field} at offset {offset}: need {needed} bytes, {available} left"
    )]
    Truncated {
        message: &'static str,
        field: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },

    /// A complete message was followed by more bytes, so the layout we assumed was wrong.
    #[error("{message}: {extra} trailing bytes after a complete message of {consumed} bytes")]
    TrailingBytes {
        message: &'static str,
        consumed: usize,
        extra: usize,
    },

    /// A NUL-terminated string with no NUL before the end of the buffer.
    #[error("{message}: unterminated string {field} at offset {offset}")]
    UnterminatedString {
        message: &'static str,
        field: &'static str,
        offset: usize,
    },

    /// A string or text value that is not UTF-8 (the database encoding must be UTF8).
    #[error("{message}: {field} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 {
        message: &'static str,
        field: &'static str,
        offset: usize,
    },

    /// A length field below zero.
    #[error("{message}: negative length {length} for {field} at offset {offset}")]
    NegativeLength {
        message: &'static str,
        field: &'static str,
        offset: usize,
        length: i32,
    },

    /// A byte with a fixed set of allowed values held something else.
    #[error("{message}: unexpected {field} {} at offset {offset} (expected {expected})", show_byte(*found))]
    UnexpectedByte {
        message: &'static str,
        field: &'static str,
        offset: usize,
        found: u8,
        expected: &'static str,
    },

    /// A change names a relation OID no Relation message has described on this stream.
    #[error("{message} for relation OID {oid}, which no Relation message has described")]
    UnknownRelation { message: &'static str, oid: u32 },

    /// A tuple's column count differs from its relation's.
    #[error(
        "{message} on {schema}.{table} (OID {oid}): tuple has {found} columns, relation has {expected}"
    )]
    ColumnCountMismatch {
        message: &'static str,
        schema: String,
        table: String,
        oid: u32,
        expected: usize,
        found: usize,
    },

    /// A message that belongs inside a transaction arrived outside Begin/Commit.
    #[error("{message} outside a transaction (no Begin before it)")]
    OutsideTransaction { message: &'static str },

    /// A Begin arrived while another transaction was still open.
    #[error("Begin of xid {xid} while xid {open_xid} is still open (no Commit in between)")]
    NestedBegin { open_xid: u32, xid: u32 },

    /// A Commit whose commit LSN is not the final LSN announced by its Begin.
    #[error("Commit at LSN {commit_lsn} does not match its Begin's final LSN {final_lsn}")]
    CommitLsnMismatch { final_lsn: Lsn, commit_lsn: Lsn },
}

/// Shows a tag byte as a character when it is printable, and always as hex.
fn show_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}' (0x{b:02x})", b as char)
    } else {
        format!("0x{b:02x}")
    }
}
