//! The replication protocol's CopyData payloads: XLogData (`w`) and Primary keepalive (`k`)
//! from the walsender, and Standby status update (`r`) from us.

use super::reader::Reader;
use super::DecodeError;
use crate::lsn::Lsn;

/// One CopyData payload from the walsender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicationMessage<'a> {
    /// A piece of the stream; with pgoutput, `data` is exactly one pgoutput message.
    XLogData {
        /// Where this data starts in the WAL.
        wal_start: Lsn,
        /// The end of WAL on the server when it was sent.
        wal_end: Lsn,
        /// The server's clock, PostgreSQL microseconds (see [`super::time`]).
        server_time: i64,
        /// The payload, borrowed from the input.
        data: &'a [u8],
    },
    /// A heartbeat; if `reply_requested`, send a standby status update now or be disconnected.
    PrimaryKeepalive {
        /// The end of WAL on the server.
        wal_end: Lsn,
        /// The server's clock, PostgreSQL microseconds.
        server_time: i64,
        /// The server wants a standby status update immediately.
        reply_requested: bool,
    },
}

/// Decodes the bytes inside one CopyData message from the walsender.
pub fn decode_envelope(buf: &[u8]) -> Result<ReplicationMessage<'_>, DecodeError> {
    let mut r = Reader::new(buf, "replication message");
    if buf.is_empty() {
        return Err(DecodeError::Empty {
            context: "replication message",
        });
    }
    match r.u8("tag")? {
        b'w' => {
            r.set_message("XLogData");
            let wal_start = r.lsn("WAL start")?;
            let wal_end = r.lsn("WAL end")?;
            let server_time = r.i64("server time")?;
            let data = r.bytes(r.remaining(), "data")?;
            Ok(ReplicationMessage::XLogData {
                wal_start,
                wal_end,
                server_time,
                data,
            })
        }
        b'k' => {
            r.set_message("Primary keepalive");
            let wal_end = r.lsn("WAL end")?;
            let server_time = r.i64("server time")?;
            let offset = r.offset();
            let reply_requested = match r.u8("reply flag")? {
                0 => false,
                1 => true,
                found => {
                    return Err(DecodeError::UnexpectedByte {
                        message: r.message(),
                        field: "reply flag",
                        offset,
                        found,
                        expected: "0 or 1",
                    })
                }
            };
            r.finish()?;
            Ok(ReplicationMessage::PrimaryKeepalive {
                wal_end,
                server_time,
                reply_requested,
            })
        }
        tag => Err(DecodeError::UnknownTag {
            context: "replication message",
            tag,
        }),
    }
}

/// The Standby status update (`r`) to put inside a CopyData message.
///
/// Each LSN is "last byte + 1" of what is written, flushed and applied: the slot's confirmed
/// position follows `flush`. `client_time` is PostgreSQL microseconds ([`super::pg_micros_now`]).
pub fn encode_standby_status_update(
    write: Lsn,
    flush: Lsn,
    apply: Lsn,
    client_time: i64,
    reply_requested: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(34);
    out.push(b'r');
    out.extend_from_slice(&write.0.to_be_bytes());
    out.extend_from_slice(&flush.0.to_be_bytes());
    out.extend_from_slice(&apply.0.to_be_bytes());
    out.extend_from_slice(&client_time.to_be_bytes());
    out.push(u8::from(reply_requested));
    out
}

/// An XLogData payload as a walsender would send it; for tests and fake servers.
pub fn encode_xlog_data(wal_start: Lsn, wal_end: Lsn, server_time: i64, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(25 + data.len());
    out.push(b'w');
    out.extend_from_slice(&wal_start.0.to_be_bytes());
    out.extend_from_slice(&wal_end.0.to_be_bytes());
    out.extend_from_slice(&server_time.to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// A Primary keepalive payload as a walsender would send it; for tests and fake servers.
pub fn encode_keepalive(wal_end: Lsn, server_time: i64, reply_requested: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(18);
    out.push(b'k');
    out.extend_from_slice(&wal_end.0.to_be_bytes());
    out.extend_from_slice(&server_time.to_be_bytes());
    out.push(u8::from(reply_requested));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_hand_built_xlogdata() {
        let mut buf = vec![b'w'];
        buf.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0x10]); // 1/10
        buf.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0x20]); // 1/20
        buf.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x01, 0x00]); // 256 µs
        buf.extend_from_slice(b"B...");
        assert_eq!(
            decode_envelope(&buf).unwrap(),
            ReplicationMessage::XLogData {
                wal_start: Lsn(0x1_0000_0010),
                wal_end: Lsn(0x1_0000_0020),
                server_time: 256,
                data: b"B...",
            }
        );
    }

    #[test]
    fn xlogdata_may_carry_no_data() {
        let buf = encode_xlog_data(Lsn(1), Lsn(2), -3, b"");
        assert_eq!(buf.len(), 25);
        assert!(matches!(
            decode_envelope(&buf),
            Ok(ReplicationMessage::XLogData { data: [], .. })
        ));
    }

    #[test]
    fn decodes_hand_built_keepalive() {
        let mut buf = vec![b'k'];
        buf.extend_from_slice(&0x16_B374_D848u64.to_be_bytes());
        buf.extend_from_slice(&(-5i64).to_be_bytes());
        buf.push(1);
        assert_eq!(
            decode_envelope(&buf).unwrap(),
            ReplicationMessage::PrimaryKeepalive {
                wal_end: "16/B374D848".parse().unwrap(),
                server_time: -5,
                reply_requested: true,
            }
        );
    }

    #[test]
    fn rejects_bad_keepalives() {
        let good = encode_keepalive(Lsn(7), 8, false);
        assert!(decode_envelope(&good[..good.len() - 1]).is_err());
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(
            decode_envelope(&long),
            Err(DecodeError::TrailingBytes { extra: 1, .. })
        ));
        let mut bad_flag = good;
        *bad_flag.last_mut().unwrap() = 2;
        assert!(matches!(
            decode_envelope(&bad_flag),
            Err(DecodeError::UnexpectedByte { found: 2, .. })
        ));
    }

    #[test]
    fn rejects_unknown_and_empty() {
        assert_eq!(
            decode_envelope(b"r"),
            Err(DecodeError::UnknownTag {
                context: "replication message",
                tag: b'r'
            })
        );
        assert!(matches!(
            decode_envelope(b""),
            Err(DecodeError::Empty { .. })
        ));
        let err = decode_envelope(b"w\0\0").unwrap_err().to_string();
        assert!(
            err.contains("XLogData") && err.contains("WAL start"),
            "{err}"
        );
    }

    #[test]
    fn standby_status_update_layout() {
        let buf = encode_standby_status_update(Lsn(1), Lsn(0x2_0000_0003), Lsn(4), -1, true);
        let mut expected = vec![b'r'];
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
        expected.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 3]);
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 4]);
        expected.extend_from_slice(&[0xff; 8]);
        expected.push(1);
        assert_eq!(buf, expected);
        assert_eq!(
            encode_standby_status_update(Lsn(0), Lsn(0), Lsn(0), 0, false)[33],
            0
        );
    }

    #[test]
    fn encoders_round_trip() {
        let x = encode_xlog_data(Lsn(u64::MAX), Lsn(0), i64::MIN, b"\0\x01");
        assert_eq!(
            decode_envelope(&x).unwrap(),
            ReplicationMessage::XLogData {
                wal_start: Lsn(u64::MAX),
                wal_end: Lsn(0),
                server_time: i64::MIN,
                data: b"\0\x01",
            }
        );
        for reply_requested in [false, true] {
            let k = encode_keepalive(Lsn(42), i64::MAX, reply_requested);
            assert_eq!(
                decode_envelope(&k).unwrap(),
                ReplicationMessage::PrimaryKeepalive {
                    wal_end: Lsn(42),
                    server_time: i64::MAX,
                    reply_requested,
                }
            );
        }
    }
}
