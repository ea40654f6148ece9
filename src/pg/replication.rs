//! The walsender session: `IDENTIFY_SYSTEM`, slots, `START_REPLICATION`, and the CopyBoth stream
//! with its standby status updates.
//!
//! Replication commands only work over the simple query protocol and must be upper-case. Status
//! updates go out on our own clock as well as when a keepalive asks: keepalives can arrive late
//! behind a large transaction, and a silent client is dropped after `wal_sender_timeout`.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use crate::lsn::Lsn;
use crate::pg::dsn::ConnectParams;
use crate::pg::wire::{Connection, CopyEvent, StartupOptions, WireError};
use crate::pgoutput::envelope::{self, ReplicationMessage};
use crate::pgoutput::{pg_micros_from_system_time, DecodeError};

/// Session settings pinned at startup: pgoutput renders values as text with them, so the text a
/// receiver sees must not depend on the server's or the role's defaults.
pub const PINNED_SETTINGS: &[(&str, &str)] = &[
    ("client_encoding", "UTF8"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("TimeZone", "UTC"),
    ("extra_float_digits", "3"),
];

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("the replication stream sent bytes we cannot decode: {0}")]
    Decode(#[from] DecodeError),
    #[error("unexpected reply to {command}: {detail}")]
    UnexpectedReply {
        command: &'static str,
        detail: String,
    },
    #[error("the server ended the replication stream")]
    StreamEnded,
}

impl ReplicationError {
    pub fn is_transient(&self) -> bool {
        match self {
            ReplicationError::Wire(e) => e.is_transient(),
            // A server that ends the stream (shutdown, failover) can be reconnected to.
            ReplicationError::StreamEnded => true,
            ReplicationError::Decode(_) | ReplicationError::UnexpectedReply { .. } => false,
        }
    }

    /// SQLSTATE of a server error, if this is one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            ReplicationError::Wire(WireError::Server(db)) => Some(db.code.as_str()),
            _ => None,
        }
    }

    /// `replication slot "x" is active for PID n`: another consumer holds the slot.
    pub fn is_slot_in_use(&self) -> bool {
        self.sqlstate() == Some("55006")
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            _ if self.is_slot_in_use() => Some(
                "another consumer is reading this slot; stop it, or give this bridge its own [postgres].slot"
                    .into(),
            ),
            ReplicationError::Wire(e) => e.hint(),
            _ => None,
        }
    }
}

/// `IDENTIFY_SYSTEM`'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemIdentity {
    pub system_id: String,
    pub timeline: u32,
    pub xlogpos: Lsn,
    pub dbname: Option<String>,
}

/// A connection in replication mode, before streaming starts.
pub struct ReplicationSession {
    conn: Connection,
}

impl ReplicationSession {
    pub async fn connect(
        params: &ConnectParams,
        application_name: &str,
    ) -> Result<ReplicationSession, ReplicationError> {
        let mut startup: Vec<(String, String)> = PINNED_SETTINGS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        startup.push(("application_name".into(), application_name.into()));
        let opts = StartupOptions {
            replication: true,
            params: startup,
        };
        let conn = Connection::connect(params, &opts).await?;
        Ok(ReplicationSession { conn })
    }

    pub fn backend_pid(&self) -> Option<i32> {
        self.conn.backend_pid()
    }

    /// The server's major version from its `server_version` parameter ("15.4", "16beta1").
    pub fn server_major_version(&self) -> Option<u32> {
        let version = self.conn.parameter("server_version")?;
        let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    }

    pub async fn identify_system(&mut self) -> Result<SystemIdentity, ReplicationError> {
        let rows = self.conn.simple_query("IDENTIFY_SYSTEM").await?;
        let bad = |detail: String| ReplicationError::UnexpectedReply {
            command: "IDENTIFY_SYSTEM",
            detail,
        };
        let row = rows.first().ok_or_else(|| bad("no row".into()))?;
        let field = |name: &str| row.get(name).map(str::to_string);
        let system_id = field("systemid").ok_or_else(|| bad("no systemid".into()))?;
        let timeline = field("timeline")
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| bad("no timeline".into()))?;
        let xlogpos = field("xlogpos")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| bad("no xlogpos".into()))?;
        Ok(SystemIdentity {
            system_id,
            timeline,
            xlogpos,
            dbname: field("dbname"),
        })
    }

    /// Creates a temporary pgoutput slot (dropped by the server when this session ends) and
    /// returns its consistent point.
    pub async fn create_temporary_slot(&mut self, name: &str) -> Result<Lsn, ReplicationError> {
        let sql = format!(
            "CREATE_REPLICATION_SLOT {} TEMPORARY LOGICAL pgoutput NOEXPORT_SNAPSHOT",
            quote_ident(name)
        );
        let rows = self.conn.simple_query(&sql).await?;
        rows.first()
            .and_then(|r| r.get("consistent_point"))
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| ReplicationError::UnexpectedReply {
                command: "CREATE_REPLICATION_SLOT",
                detail: "no consistent_point".into(),
            })
    }

    /// Starts streaming from `start` (the server begins at the later of `start` and the slot's
    /// confirmed position).
    pub async fn start(
        mut self,
        slot: &str,
        start: Lsn,
        publication: &str,
        status_interval: Duration,
        flushed: watch::Receiver<Lsn>,
    ) -> Result<ReplicationStream, ReplicationError> {
        // Logical decoding messages (pg_logical_emit_message) are sent only on request, and the
        // option exists from PostgreSQL 14 on.
        let messages = if self.server_major_version().is_some_and(|v| v >= 14) {
            ", messages 'true'"
        } else {
            ""
        };
        let sql = format!(
            "START_REPLICATION SLOT {} LOGICAL {} (proto_version '1', publication_names {}{messages})",
            quote_ident(slot),
            start,
            quote_literal(&quote_ident(publication)),
        );
        self.conn.start_copy_both(&sql).await?;
        Ok(ReplicationStream {
            conn: self.conn,
            received: start,
            flushed: start,
            flushed_source: flushed,
            status_interval,
            next_status: Instant::now() + status_interval,
        })
    }
}

/// What the stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// A pgoutput message starting at `wal_start`.
    Data {
        wal_start: Lsn,
        wal_end: Lsn,
        data: Bytes,
    },
    /// The server has sent everything up to `wal_end`.
    Keepalive { wal_end: Lsn },
}

/// The CopyBoth stream after `START_REPLICATION`.
pub struct ReplicationStream {
    conn: Connection,
    received: Lsn,
    flushed: Lsn,
    /// Durable positions, published by whoever makes them durable.
    flushed_source: watch::Receiver<Lsn>,
    status_interval: Duration,
    next_status: Instant,
}

impl ReplicationStream {
    /// The next message. Sends a status update whenever one is due while waiting, and answers
    /// keepalives that ask for a reply.
    pub async fn next(&mut self) -> Result<StreamEvent, ReplicationError> {
        loop {
            // Checked here as well as by the timer below, which is polled only when no data is
            // ready: a busy stream must still report its progress every interval, or the
            // walsender times us out.
            if Instant::now() >= self.next_status {
                self.send_status(false).await?;
            }
            let copy = tokio::select! {
                biased;
                copy = self.conn.recv_copy() => copy?,
                _ = sleep_until(self.next_status) => {
                    self.send_status(false).await?;
                    continue;
                }
            };
            let bytes = match copy {
                CopyEvent::Data(bytes) => bytes,
                CopyEvent::Done => return Err(ReplicationError::StreamEnded),
            };
            match envelope::decode_envelope(&bytes)? {
                ReplicationMessage::XLogData {
                    wal_start,
                    wal_end,
                    data,
                    ..
                } => {
                    self.received = self.received.max(wal_start);
                    return Ok(StreamEvent::Data {
                        wal_start,
                        wal_end,
                        data: bytes.slice_ref(data),
                    });
                }
                ReplicationMessage::PrimaryKeepalive {
                    wal_end,
                    reply_requested,
                    ..
                } => {
                    if reply_requested {
                        self.send_status(false).await?;
                    }
                    return Ok(StreamEvent::Keepalive { wal_end });
                }
            }
        }
    }

    /// Whether the next message is already received (so [`ReplicationStream::next`] will not
    /// wait).
    pub fn has_buffered(&self) -> bool {
        self.conn.has_copy_data()
    }

    /// Records that everything up to `lsn` is durable on our side. Never moves backwards: the
    /// server would ignore it, and it would misreport our progress.
    pub fn set_flushed(&mut self, lsn: Lsn) {
        self.flushed = self.flushed.max(lsn);
        self.received = self.received.max(self.flushed);
    }

    pub fn flushed(&self) -> Lsn {
        self.flushed
    }

    /// Sends a standby status update now: written = what we received, flushed = applied = what
    /// is durable.
    pub async fn send_status(&mut self, reply_requested: bool) -> Result<(), ReplicationError> {
        let durable = *self.flushed_source.borrow();
        self.set_flushed(durable);
        let body = envelope::encode_standby_status_update(
            self.received,
            self.flushed,
            self.flushed,
            pg_micros_from_system_time(SystemTime::now()),
            reply_requested,
        );
        self.conn.send_copy_data(&body).await?;
        self.next_status = Instant::now() + self.status_interval;
        Ok(())
    }

    /// Sends a status update if one is due; for callers that are not reading the stream.
    pub async fn send_status_if_due(&mut self) -> Result<(), ReplicationError> {
        if Instant::now() >= self.next_status {
            self.send_status(false).await?;
        }
        Ok(())
    }

    /// Sends a final status update and ends the session.
    pub async fn close(mut self) -> Result<(), ReplicationError> {
        let result = self.send_status(false).await;
        self.conn.close().await;
        result
    }
}

/// Quotes an identifier the way PostgreSQL's `quote_ident` does (always quoting).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("fuse_cdc_bridge"), "\"fuse_cdc_bridge\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(&quote_ident("p")), "'\"p\"'");
    }
}
